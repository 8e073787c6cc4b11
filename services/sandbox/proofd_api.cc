#include "services/sandbox/proofd_api.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"

namespace anchord::sandbox::internal {
namespace {

// HTTP status for every documented error code. The doc names codes but not statuses except
// DUPLICATE_TIMESTAMP (409); the choices below are the sandbox's, and clients must classify by
// `code`, not by status.
int StatusForCode(absl::string_view code) {
  if (code == "AUTHENTICATION_REQUIRED" || code == "INVALID_API_KEY") return 401;
  if (code == "PLAN_NOT_ENTITLED") return 403;
  if (code == "MONTHLY_LIMIT_REACHED") return 402;  // payment/plan problem, not a rate limit
  if (code == "DUPLICATE_TIMESTAMP" || code == "IDEMPOTENCY_MISMATCH" ||
      code == "IDEMPOTENCY_IN_PROGRESS") {
    return 409;
  }
  if (code == "TIMESTAMP_NOT_FOUND" || code == "OTS_NOT_FOUND" || code == "NOT_FOUND") return 404;
  if (code == "RATE_LIMITED") return 429;
  if (code == "OTS_PROVIDER_ERROR") return 502;
  if (code == "INTERNAL_ERROR") return 500;
  return 400;  // INVALID_*
}

bool IsUuid(absl::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return false;
    } else if (!absl::ascii_isxdigit(static_cast<unsigned char>(s[i]))) {
      return false;
    }
  }
  return true;
}

// The filename for Content-Disposition: only [A-Za-z0-9._-] survive (quotes, slashes and control
// bytes could break the header or escape a download directory), at most 100 bytes.
std::string SafeFilename(absl::string_view name, absl::string_view fallback) {
  std::string out;
  for (char c : name) {
    if (out.size() >= 100) break;
    out.push_back(absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
                          c == '-'
                      ? c
                      : '_');
  }
  while (!out.empty() && out.front() == '.') out.erase(out.begin());
  if (out.empty()) out = std::string(fallback);
  return out;
}

// X-RateLimit-Reset is sent as delta seconds until a slot frees (like Retry-After), not as an
// epoch: the doc does not say which, and a delta needs no synchronized clocks.
void AddLimitHeaders(int64_t limit, int64_t remaining, int64_t reset, Reply* reply) {
  reply->headers.emplace_back("X-RateLimit-Limit", std::to_string(limit));
  reply->headers.emplace_back("X-RateLimit-Remaining", std::to_string(remaining));
  reply->headers.emplace_back("X-RateLimit-Reset", std::to_string(reset));
}

}  // namespace

Reply ProofdError(absl::string_view code, absl::string_view message, const std::string& rid) {
  ojson j;
  j["error"] = {{"code", code}, {"message", message}, {"request_id", rid}};
  Reply r;
  r.status = StatusForCode(code);
  r.body = Dump(j);
  return r;
}

ProofdApi::ProofdApi(Core* core) : core_(core) {
  for (const auto& k : core->opt().api_keys) api_keys_.insert(k);
  for (const auto& k : core->opt().not_entitled_keys) not_entitled_.insert(k);
}

void ProofdApi::Register(httplib::Server& svr) {
  auto route = [this](Route r) {
    return [this, r](const httplib::Request& req, httplib::Response& res) { Handle(req, res, r); };
  };
  svr.Post("/api/v1/timestamps", route(Route::kCreate));
  svr.Get("/api/v1/timestamps", route(Route::kList));
  svr.Get("/api/v1/timestamps/([^/]+)/ots", route(Route::kOts));
  svr.Get("/api/v1/timestamps/([^/]+)", route(Route::kGet));
}

void ProofdApi::HandleUnknown(const httplib::Request& req, httplib::Response& res) {
  Handle(req, res, Route::kUnknown);
}

void ProofdApi::ResetLocked() {
  records_.clear();
  account_ids_.clear();
  account_digests_.clear();
  account_creates_.clear();
  last_created_ms_.clear();
  cert_ids_.clear();
  idem_.clear();
}

std::string ProofdApi::NewRequestIdLocked() {
  return absl::StrFormat("req_%08x%08x", static_cast<uint32_t>(core_->RandomU64()),
                         ++request_counter_);
}
std::string ProofdApi::NewUuid() {
  for (int attempt = 0;; ++attempt) {
    std::string b = core_->RandomBytes(16);
    b[6] = static_cast<char>((b[6] & 0x0f) | 0x40);  // version 4
    b[8] = static_cast<char>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
    std::string h = HexEncode(b);
    std::string id = absl::StrCat(h.substr(0, 8), "-", h.substr(8, 4), "-", h.substr(12, 4), "-",
                                  h.substr(16, 4), "-", h.substr(20, 12));
    // 122 random bits: a collision is practically impossible; the cap only bounds the loop.
    if (!records_.count(id) || attempt >= 64) return id;
  }
}
std::string ProofdApi::NewCertificateId() {
  static constexpr char kChars[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  // 36^6 ids; should a huge run exhaust them, ids grow to 10 characters instead of looping.
  for (int attempt = 0;; ++attempt) {
    std::string id = "TS-";
    const int len = attempt < 1000 ? 6 : 10;
    for (int i = 0; i < len; ++i) id.push_back(kChars[core_->RandomU64() % 36]);
    if (cert_ids_.insert(id).second || attempt >= 2000) return id;
  }
}

ojson ProofdApi::RecordJson(const Record& r) const {
  const std::string& base = core_->opt().public_base_url;
  ojson j;
  j["id"] = r.id;
  j["certificate_id"] = r.certificate_id;
  j["sha256_hash"] = r.sha256_hex;
  j["filename"] = r.filename;
  j["file_size_bytes"] = r.file_size_bytes;
  j["file_type"] = r.file_type ? ojson(*r.file_type) : ojson(nullptr);
  j["status"] = r.status;
  const bool confirmed = r.status == "confirmed";
  j["blockchain_tx"] = confirmed ? ojson(r.blockchain_tx) : ojson(nullptr);
  j["bitcoin_block"] = confirmed ? ojson(r.bitcoin_block) : ojson(nullptr);
  j["confirmed_at"] = confirmed ? ojson(FormatIso(r.confirmed_at)) : ojson(nullptr);
  j["created_at"] = FormatIso(r.created_at);
  j["thumbnail_url"] = nullptr;
  j["branding_snapshot"] = nullptr;
  j["certificate_url"] = absl::StrCat(base, "/cert/", r.certificate_id);
  j["verify_url"] = absl::StrCat(base, "/verify/", r.sha256_hex);
  j["ots_url"] = absl::StrCat("/api/v1/timestamps/", r.id, "/ots");
  return j;
}

void ProofdApi::Handle(const httplib::Request& req, httplib::Response& res, Route route) {
  std::string rid;
  int latency_ms = 0;
  {
    absl::MutexLock lock(&core_->mu());
    ++core_->stats().requests_total;
    rid = NewRequestIdLocked();
    latency_ms = core_->latency_ms();
  }
  // Creates sleep after reserving their Idempotency-Key instead (see HandleCreate), so that a
  // concurrent retry with the same key observes IDEMPOTENCY_IN_PROGRESS as the doc describes.
  if (route != Route::kCreate) Core::SleepLatency(latency_ms);

  // "Authorization: Bearer <key>"; any other form counts as no token.
  const std::string token = BearerToken(req);
  // A client is its API key (or source IP without one) with its User-Agent (see Core::Admit).
  const std::string client =
      ClientKey(token.empty() ? "proofd ip:" + req.remote_addr : "proofd key:" + token, req);

  core_->Answer(ApiId::kProofd, "", rid, req, res,
                [&](bool* drop) ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu()) {
                  return AnswerLocked(req, route, token, client, rid, latency_ms, drop);
                });
}

Reply ProofdApi::AnswerLocked(const httplib::Request& req, Route route, const std::string& token,
                              const std::string& client, const std::string& rid, int latency_ms,
                              bool* drop) {
  const absl::Time now = core_->clock()->Now();
  core_->ConfirmDue(now);
  double upstream_draw = 1;
  const Admission adm =
      core_->Admit(ApiId::kProofd, client, now, route == Route::kCreate ? &upstream_draw : nullptr);
  *drop = adm.drop;
  Reply reply;

  if (adm.storm) {
    reply = ProofdError("RATE_LIMITED", "Rate limit exceeded (sandbox 429 storm).", rid);
    reply.headers.emplace_back("Retry-After", "1");
    AddLimitHeaders(core_->opt().general_limit, 0, 1, &reply);
    return reply;
  }
  if (adm.error) {
    // Half of the injected errors on creates are the upstream OTS step failing (502).
    const bool upstream = route == Route::kCreate && upstream_draw < 0.5;
    return upstream
               ? ProofdError("OTS_PROVIDER_ERROR", "OpenTimestamps step failed (injected).", rid)
               : ProofdError("INTERNAL_ERROR", "Internal error (injected).", rid);
  }

  if (token.empty()) {
    return ProofdError("AUTHENTICATION_REQUIRED", "No Bearer token was provided.", rid);
  }
  if (not_entitled_.count(token)) {
    return ProofdError("PLAN_NOT_ENTITLED", "The account is not on a premium plan with API access.",
                       rid);
  }
  if (!api_keys_.count(token)) {
    return ProofdError("INVALID_API_KEY", "The key does not match an active premium credential.",
                       rid);
  }

  const SandboxOptions& opt = core_->opt();
  std::vector<Core::Bucket> buckets = {{"proofd general:" + token, opt.general_limit, opt.window}};
  if (route == Route::kCreate) {
    buckets.push_back({"proofd create-key:" + token, opt.create_key_limit, opt.window});
    buckets.push_back({"proofd create-ip:" + req.remote_addr, opt.create_ip_limit, opt.window});
  }
  const Core::LimitResult limit = core_->CheckLimits(buckets, now);
  Reply limits;
  if (limit.limit > 0) AddLimitHeaders(limit.limit, limit.remaining, limit.reset, &limits);
  if (!limit.ok) {
    core_->NoteRateLimited(ApiId::kProofd, client, limit.retry_after, *drop, now);
    reply = ProofdError("RATE_LIMITED", "A rate-limit bucket was exceeded.", rid);
    reply.headers.emplace_back("Retry-After", std::to_string(limit.retry_after));
    reply.headers.insert(reply.headers.end(), limits.headers.begin(), limits.headers.end());
    return reply;
  }

  switch (route) {
    case Route::kCreate:
      reply = HandleCreate(req, token, rid, latency_ms);
      break;
    case Route::kList:
      reply = HandleList(req, token, rid);
      break;
    case Route::kGet:
    case Route::kOts:
      reply = HandleGet(req.matches.size() > 1 ? std::string(req.matches[1]) : "", token, rid,
                        route == Route::kOts);
      break;
    case Route::kUnknown:
      reply = ProofdError("NOT_FOUND", "No such route.", rid);
      break;
  }
  reply.headers.insert(reply.headers.begin(), limits.headers.begin(), limits.headers.end());
  return reply;
}

Reply ProofdApi::HandleCreate(const httplib::Request& req, const std::string& account,
                              const std::string& rid, int latency_ms) {
  const bool has_key = req.has_header("Idempotency-Key");
  const std::string idem_key = req.get_header_value("Idempotency-Key");
  if (has_key && (idem_key.empty() || idem_key.size() > 200)) {
    return ProofdError("INVALID_IDEMPOTENCY_KEY", "Idempotency-Key must be 1..200 characters.",
                       rid);
  }
  // The doc requires Content-Type: application/json and lists it under INVALID_JSON's fix.
  const std::string ctype = absl::AsciiStrToLower(req.get_header_value("Content-Type"));
  if (!absl::StartsWith(ctype, "application/json")) {
    return ProofdError("INVALID_JSON", "Content-Type must be application/json.", rid);
  }
  const nlohmann::json body = nlohmann::json::parse(req.body, nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    return ProofdError("INVALID_JSON", "The request body is not a valid JSON object.", rid);
  }
  auto hash = body.find("sha256_hash");
  if (hash == body.end() || !hash->is_string() || !IsSha256Hex(hash->get<std::string>())) {
    return ProofdError("INVALID_SHA256_HASH", "sha256_hash must be 64 hexadecimal characters.",
                       rid);
  }
  const std::string hex = absl::AsciiStrToLower(hash->get<std::string>());
  auto filename = body.find("filename");
  // 255 bytes is the sandbox's cap (the doc gives none); longer names are INVALID_FILENAME.
  if (filename == body.end() || !filename->is_string() || filename->get<std::string>().empty() ||
      filename->get<std::string>().size() > 255) {
    return ProofdError("INVALID_FILENAME", "filename must be a non-empty string.", rid);
  }
  auto size = body.find("file_size_bytes");
  int64_t size_bytes = 0;
  if (size != body.end() && size->is_number_unsigned()) {
    const uint64_t u = size->get<uint64_t>();
    size_bytes = u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
                     ? 0
                     : static_cast<int64_t>(u);
  } else if (size != body.end() && size->is_number_integer()) {
    size_bytes = size->get<int64_t>();
  }
  if (size_bytes <= 0) {
    return ProofdError("INVALID_FILE_SIZE", "file_size_bytes must be a positive integer.", rid);
  }
  // file_type: omitted or null means none (the resource shows null); anything else but a string
  // is INVALID_FILE_TYPE.
  std::optional<std::string> file_type;
  auto type = body.find("file_type");
  if (type != body.end() && !type->is_null()) {
    if (!type->is_string()) {
      return ProofdError("INVALID_FILE_TYPE", "file_type must be a string.", rid);
    }
    file_type = type->get<std::string>();
  }

  const auto idem_id = std::make_pair(account, idem_key);
  if (has_key) {
    auto it = idem_.find(idem_id);
    if (it != idem_.end()) {
      if (!it->second.done) {
        return ProofdError("IDEMPOTENCY_IN_PROGRESS",
                           "A previous request with this Idempotency-Key is still processing.",
                           rid);
      }
      if (it->second.body != req.body) {
        return ProofdError("IDEMPOTENCY_MISMATCH",
                           "The Idempotency-Key was used for a different payload.", rid);
      }
      ++core_->stats().replays_total;
      Reply r;
      r.status = it->second.status;
      r.body = it->second.response;
      return r;
    }
    idem_[idem_id] = IdemEntry{req.body, false, 0, {}};
  }
  if (latency_ms > 0) {
    core_->mu().Unlock();
    Core::SleepLatency(latency_ms);
    core_->mu().Lock();
  }
  auto release_key = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu()) {
    if (has_key) idem_.erase(idem_id);  // only successes are replayed; errors are re-evaluated
  };
  if (account_digests_[account].count(hex)) {
    release_key();
    // The sandbox's choice: the envelope only, without the original id (the doc shows none).
    // Clients must resolve a duplicate by walking the account's list for the hash.
    return ProofdError("DUPLICATE_TIMESTAMP", "The same owner already timestamped this hash.", rid);
  }
  if (core_->opt().monthly_quota > 0 && account_creates_[account] >= core_->opt().monthly_quota) {
    release_key();
    return ProofdError("MONTHLY_LIMIT_REACHED",
                       "The account exhausted its current monthly timestamp allowance.", rid);
  }

  const absl::Time now = core_->clock()->Now();
  Record rec;
  rec.id = NewUuid();
  rec.certificate_id = NewCertificateId();
  rec.account = account;
  rec.sha256_hex = hex;
  rec.filename = filename->get<std::string>();
  rec.file_size_bytes = size_bytes;
  rec.file_type = file_type;
  // created_at has millisecond precision and is strictly increasing per account (+1 ms on a tie),
  // so the `before` cursor never skips or repeats a record.
  int64_t ms = absl::ToUnixMillis(now);
  int64_t& last = last_created_ms_[account];
  if (ms <= last) ms = last + 1;
  last = ms;
  rec.created_at = absl::FromUnixMillis(ms);
  rec.due = now + core_->opt().confirm_after;
  rec.nonce = core_->RandomBytes(16);
  auto leaf = NoncedLeaf(*HexDecode(hex), rec.nonce);
  if (!leaf.ok()) {  // cannot happen for a 32-byte digest
    release_key();
    return ProofdError("INTERNAL_ERROR", "Building the proof leaf failed.", rid);
  }
  rec.root = leaf->first;
  core_->AddPending(rec.due, leaf->second, this, rec.id);

  account_digests_[account].insert(hex);
  ++account_creates_[account];
  account_ids_[account].push_back(rec.id);
  SandboxStats& stats = core_->stats();
  ++stats.creates_total;
  const int64_t n = ++stats.creates_by_digest[hex];
  stats.max_creates_per_digest = std::max(stats.max_creates_per_digest, n);

  Reply r;
  r.status = 201;
  r.body = Dump(RecordJson(rec));
  records_.emplace(rec.id, std::move(rec));
  if (has_key) {
    // A dropped response (fault) happens after this point: the record exists and a retry with the
    // same key replays it, which is exactly the case idempotency keys exist for.
    auto it = idem_.find(idem_id);
    if (it != idem_.end()) {
      it->second.done = true;
      it->second.status = r.status;
      it->second.response = r.body;
    }
  }
  return r;
}

Reply ProofdApi::HandleList(const httplib::Request& req, const std::string& account,
                            const std::string& rid) {
  std::string status = req.has_param("status") ? req.get_param_value("status") : "all";
  if (status != "all" && status != "confirmed" && status != "pending" && status != "failed") {
    return ProofdError("INVALID_STATUS", "status must be all, confirmed, pending or failed.", rid);
  }
  // Default page size 20 is the sandbox's choice (the doc gives only the cap of 50).
  int64_t limit = 20;
  if (req.has_param("limit")) {
    const std::string v = req.get_param_value("limit");
    const bool digits = !v.empty() && v.size() <= 9 && std::all_of(v.begin(), v.end(), [](char c) {
      return c >= '0' && c <= '9';
    });
    if (!digits || !absl::SimpleAtoi(v, &limit) || limit <= 0) {
      return ProofdError("INVALID_LIMIT", "limit must be a positive integer.", rid);
    }
    limit = std::min<int64_t>(limit, 50);
  }
  absl::Time before = absl::InfiniteFuture();
  if (req.has_param("before")) {
    std::string err;
    if (!absl::ParseTime(absl::RFC3339_full, req.get_param_value("before"), &before, &err)) {
      return ProofdError("INVALID_CURSOR", "before must be an ISO-8601 timestamp.", rid);
    }
  }
  ojson data = ojson::array();
  int64_t total = 0;
  bool more = false;
  absl::Time last_created;
  auto ids = account_ids_.find(account);
  if (ids != account_ids_.end()) {
    for (auto it = ids->second.rbegin(); it != ids->second.rend(); ++it) {
      auto rec = records_.find(*it);
      if (rec == records_.end()) continue;
      const Record& r = rec->second;
      if (status != "all" && r.status != status) continue;
      ++total;
      if (r.created_at >= before) continue;
      if (static_cast<int64_t>(data.size()) < limit) {
        data.push_back(RecordJson(r));
        last_created = r.created_at;
      } else {
        more = true;
      }
    }
  }
  ojson j;
  j["data"] = std::move(data);
  j["total_count"] = total;
  j["next_cursor"] = more ? ojson(FormatIso(last_created)) : ojson(nullptr);
  Reply r;
  r.body = Dump(j);
  return r;
}

Reply ProofdApi::HandleGet(const std::string& raw_id, const std::string& account,
                           const std::string& rid, bool ots) {
  if (!IsUuid(raw_id)) return ProofdError("INVALID_ID", "The timestamp id must be a UUID.", rid);
  const std::string id = absl::AsciiStrToLower(raw_id);
  auto it = records_.find(id);
  if (it == records_.end() || it->second.account != account) {
    return ProofdError("TIMESTAMP_NOT_FOUND", "No timestamp with this id for the account.", rid);
  }
  const Record& r = it->second;
  if (!ots) {
    Reply reply;
    reply.body = Dump(RecordJson(r));
    return reply;
  }
  if (r.status != "confirmed" || r.ots.empty()) {
    return ProofdError("OTS_NOT_FOUND", "No OTS payload is available yet for this timestamp.", rid);
  }
  Reply reply;
  reply.body = r.ots;
  reply.content_type = "application/octet-stream";
  reply.headers.emplace_back("Content-Disposition",
                             absl::StrCat("attachment; filename=\"",
                                          SafeFilename(r.filename, r.certificate_id), ".ots\""));
  return reply;
}

void ProofdApi::OnConfirmedLocked(const std::string& id, const Confirmation& c, bool ok) {
  auto it = records_.find(id);
  if (it == records_.end()) return;
  Record& r = it->second;
  std::shared_ptr<ots::Timestamp> root = std::move(r.root);
  absl::StatusOr<std::string> bytes = absl::InternalError("no block was built");
  if (ok && root != nullptr) {
    bytes = ots::SerializeDetached({ots::Op::Sha256(), root->msg(), root});
  }
  if (!bytes.ok()) {
    // Cannot happen for 32-byte digests; a record we cannot prove is reported as failed.
    ANCHORD_LOG(Error) << "sandbox: building proof for " << r.id << ": " << bytes.status();
    r.status = "failed";
    return;
  }
  r.ots = *std::move(bytes);
  r.status = "confirmed";
  r.bitcoin_block = c.height;
  r.blockchain_tx = HexEncode(core_->RandomBytes(32));
  r.confirmed_at = c.time;
  ++core_->stats().confirmed_total;
}

}  // namespace anchord::sandbox::internal
