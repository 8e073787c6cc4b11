#include "services/sandbox/sandbox.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"
#include "libs/ots/ots.h"
#include "services/sandbox/calendar_api.h"
#include "services/sandbox/proofledger_api.h"
#include "services/sandbox/tsa_api.h"
#include "services/sandbox/sandbox_core.h"
#include "services/sandbox/simpleproof_api.h"

// The proofd.id v1 emulation and the process around every API: the main listener, the /_sandbox
// admin routes, the background confirmer. The other APIs live in their own files.

namespace anchord::sandbox {
namespace {

using internal::ApiId;
using internal::Dump;
using internal::FormatIso;
using internal::ojson;
using internal::Reply;

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

struct Record {
  std::string id;
  std::string certificate_id;
  std::string account;
  std::string sha256_hex;  // lowercase
  std::string filename;
  int64_t file_size_bytes = 0;
  std::optional<std::string> file_type;
  std::string status = "pending";
  absl::Time created_at;
  absl::Time due;  // when it confirms
  std::string nonce;
  std::shared_ptr<ots::Timestamp> root;  // the proof tree until confirmed
  std::string blockchain_tx;
  int64_t bitcoin_block = 0;
  absl::Time confirmed_at;
  std::string ots;  // the detached proof once confirmed; kept so every download is identical
};

struct IdemEntry {
  std::string body;
  bool done = false;
  int status = 0;
  std::string response;
};

enum class Route { kCreate, kList, kGet, kOts, kUnknown };

ojson CountsJson(const std::map<std::string, int64_t>& m) {
  ojson j = ojson::object();
  for (const auto& [k, v] : m) j[k] = v;
  return j;
}

ojson ApiJson(const ApiStats& s) {
  ojson j;
  j["requests_total"] = s.requests_total;
  j["creates_total"] = s.creates_total;
  j["creates_by_digest"] = CountsJson(s.creates_by_digest);
  j["max_creates_per_digest"] = s.max_creates_per_digest;
  j["records_total"] = s.records_total;
  j["confirmed_total"] = s.confirmed_total;
  j["rate_limited_total"] = s.rate_limited_total;
  j["early_requests_total"] = s.early_requests_total;
  j["faults_injected_total"] = s.faults_injected_total;
  return j;
}

ojson StatsJson(const SandboxStats& s, const std::vector<std::string>& calendar_urls) {
  ojson j;
  j["requests_total"] = s.requests_total;
  j["creates_total"] = s.creates_total;
  j["replays_total"] = s.replays_total;
  j["creates_by_digest"] = CountsJson(s.creates_by_digest);
  j["max_creates_per_digest"] = s.max_creates_per_digest;
  j["rate_limited_total"] = s.rate_limited_total;
  j["early_requests_total"] = s.early_requests_total;
  j["faults_injected_total"] = s.faults_injected_total;
  j["records_total"] = s.records_total;
  j["confirmed_total"] = s.confirmed_total;
  j["blocks_total"] = s.blocks_total;
  j["proofd"] = ApiJson(s.proofd);
  j["proofd"]["replays_total"] = s.replays_total;

  ojson pl = ApiJson(s.proofledger);
  pl["duplicates_total"] = s.proofledger.duplicates_total;
  pl["verify_requests_total"] = s.proofledger.verify_requests_total;
  pl["verify_requests_by_ip"] = CountsJson(s.proofledger.verify_requests_by_ip);
  pl["verify_rate_limited_by_ip"] = CountsJson(s.proofledger.verify_rate_limited_by_ip);
  j["proofledger"] = std::move(pl);

  const SimpleProofStats& sp = s.simpleproof;
  ojson spj = ApiJson(sp);
  spj["cost_units_total"] = sp.cost_units_total;
  spj["resubmitted_total"] = sp.resubmitted_total;
  spj["verifications_total"] = sp.verifications_total;
  spj["ots_urls_issued_total"] = sp.ots_urls_issued_total;
  spj["ots_downloads_total"] = sp.ots_downloads_total;
  spj["ots_urls_expired_total"] = sp.ots_urls_expired_total;
  spj["callbacks_sent_total"] = sp.callbacks_sent_total;
  spj["callbacks_delivered_total"] = sp.callbacks_delivered_total;
  spj["callbacks_failed_total"] = sp.callbacks_failed_total;
  spj["callbacks_dropped_total"] = sp.callbacks_dropped_total;
  spj["callbacks_skipped_total"] = sp.callbacks_skipped_total;
  j["simpleproof"] = std::move(spj);

  ojson cal = ApiJson(s.calendar);
  cal["submissions_total"] = s.calendar.submissions_total;
  cal["submissions_by_calendar"] = CountsJson(s.calendar.submissions_by_calendar);
  cal["upgrades_served_total"] = s.calendar.upgrades_served_total;
  cal["pending_answers_total"] = s.calendar.pending_answers_total;
  cal["not_found_total"] = s.calendar.not_found_total;
  cal["calendar_urls"] = calendar_urls;
  j["calendar"] = std::move(cal);
  ojson tj = ApiJson(s.tsa);
  tj["tokens_total"] = s.tsa.tokens_total;
  j["tsa"] = std::move(tj);
  return j;
}

}  // namespace

class Sandbox::Impl : public internal::ChainListener {
 public:
  explicit Impl(const SandboxOptions& o)
      : core_(o),
        proofledger_(std::make_unique<internal::ProofLedgerApi>(&core_)),
        simpleproof_(std::make_unique<internal::SimpleProofApi>(&core_)),
        calendars_(std::make_unique<internal::CalendarApi>(&core_)) {
    for (const auto& k : o.api_keys) api_keys_.insert(k);
    for (const auto& k : o.not_entitled_keys) not_entitled_.insert(k);
  }
  ~Impl() override { Stop(); }

  absl::Status Start();
  void Stop() {
    std::lock_guard<std::mutex> lock(stop_mu_);
    if (stopped_) return;
    stopped_ = true;
    svr_.stop();
    if (listener_.joinable()) listener_.join();
    calendars_->Stop();
    simpleproof_->StopCallbacks();
    {
      std::lock_guard<std::mutex> core_lock(core_.mu());
      ticker_stop_ = true;
    }
    ticker_cv_.notify_all();
    if (ticker_.joinable()) ticker_.join();
  }
  int port() const { return port_; }
  std::vector<std::string> calendar_urls() const { return calendars_->urls(); }
  std::string tsa_url() const {
    return absl::StrCat("http://", internal::UrlHost(core_.opt().host), ":", port_, "/tsa");
  }
  std::string tsa_ca_pem() const { return tsa_ ? tsa_->ca_pem() : std::string(); }

  SandboxStats Stats() {
    std::lock_guard<std::mutex> lock(core_.mu());
    core_.ConfirmDue(core_.clock()->Now());
    SandboxStats s = core_.stats();
    s.records_total = static_cast<int64_t>(records_.size());
    // proofd's own counters live at the top level (source compatibility); mirror them.
    s.proofd.creates_total = s.creates_total;
    s.proofd.creates_by_digest = s.creates_by_digest;
    s.proofd.max_creates_per_digest = s.max_creates_per_digest;
    s.proofd.records_total = s.records_total;
    s.proofd.confirmed_total = s.confirmed_total;
    return s;
  }
  void SetFaults(const Faults& f) {
    std::lock_guard<std::mutex> lock(core_.mu());
    core_.SetFaults(f, core_.clock()->Now());
  }
  Faults GetFaults() {
    std::lock_guard<std::mutex> lock(core_.mu());
    return core_.GetFaults(core_.clock()->Now());
  }
  void Reset() {
    std::lock_guard<std::mutex> lock(core_.mu());
    records_.clear();
    account_ids_.clear();
    account_digests_.clear();
    account_creates_.clear();
    last_created_ms_.clear();
    cert_ids_.clear();
    idem_.clear();
    proofledger_->ResetLocked();
    simpleproof_->ResetLocked();
    calendars_->ResetLocked();
    core_.Reset();
  }

  // proofd records reaching their fake block (core mutex held).
  void OnConfirmedLocked(const std::string& id, const internal::Confirmation& c, bool ok) override;

 private:
  // ---- helpers (core mutex held) ----
  std::string NewRequestId() {
    return absl::StrFormat("req_%08x%08x", static_cast<uint32_t>(core_.RandomU64()),
                           ++request_counter_);
  }
  std::string NewUuid() {
    for (int attempt = 0;; ++attempt) {
      std::string b = core_.RandomBytes(16);
      b[6] = static_cast<char>((b[6] & 0x0f) | 0x40);  // version 4
      b[8] = static_cast<char>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
      std::string h = HexEncode(b);
      std::string id = absl::StrCat(h.substr(0, 8), "-", h.substr(8, 4), "-", h.substr(12, 4), "-",
                                    h.substr(16, 4), "-", h.substr(20, 12));
      // 122 random bits: a collision is practically impossible; the cap only bounds the loop.
      if (!records_.count(id) || attempt >= 64) return id;
    }
  }
  std::string NewCertificateId() {
    static constexpr char kChars[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    // 36^6 ids; should a huge run exhaust them, ids grow to 10 characters instead of looping.
    for (int attempt = 0;; ++attempt) {
      std::string id = "TS-";
      const int len = attempt < 1000 ? 6 : 10;
      for (int i = 0; i < len; ++i) id.push_back(kChars[core_.RandomU64() % 36]);
      if (cert_ids_.insert(id).second || attempt >= 2000) return id;
    }
  }

  Reply Error(absl::string_view code, absl::string_view message, const std::string& rid) {
    ojson j;
    j["error"] = {{"code", code}, {"message", message}, {"request_id", rid}};
    Reply r;
    r.status = StatusForCode(code);
    r.body = Dump(j);
    return r;
  }

  ojson RecordJson(const Record& r) const {
    const std::string& base = core_.opt().public_base_url;
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

  // X-RateLimit-Reset is sent as delta seconds until a slot frees (like Retry-After), not as an
  // epoch: the doc does not say which, and a delta needs no synchronized clocks.
  static void AddLimitHeaders(int64_t limit, int64_t remaining, int64_t reset, Reply* reply) {
    reply->headers.emplace_back("X-RateLimit-Limit", std::to_string(limit));
    reply->headers.emplace_back("X-RateLimit-Remaining", std::to_string(remaining));
    reply->headers.emplace_back("X-RateLimit-Reset", std::to_string(reset));
  }

  // ---- request handling ----
  void HandleApi(const httplib::Request& req, httplib::Response& res, Route route);
  Reply HandleCreate(const httplib::Request& req, const std::string& account,
                     const std::string& rid, std::unique_lock<std::mutex>& lock, int latency_ms);
  Reply HandleList(const httplib::Request& req, const std::string& account, const std::string& rid);
  Reply HandleGet(const std::string& id, const std::string& account, const std::string& rid,
                  bool ots);
  void HandleAdmin(const httplib::Request& req, httplib::Response& res, const std::string& what);

  internal::Core core_;
  std::unique_ptr<internal::ProofLedgerApi> proofledger_;
  std::unique_ptr<internal::TsaApi> tsa_;
  std::unique_ptr<internal::SimpleProofApi> simpleproof_;
  std::unique_ptr<internal::CalendarApi> calendars_;
  httplib::Server svr_;
  std::thread listener_;
  int port_ = 0;
  std::mutex stop_mu_;
  bool stopped_ = false;
  std::thread ticker_;
  std::condition_variable ticker_cv_;

  // Guarded by the core mutex.
  bool ticker_stop_ = false;
  uint32_t request_counter_ = 0;
  std::set<std::string> api_keys_, not_entitled_;
  std::map<std::string, Record> records_;                        // id -> record
  std::map<std::string, std::vector<std::string>> account_ids_;  // in created_at order
  std::map<std::string, std::set<std::string>> account_digests_;
  std::map<std::string, int64_t> account_creates_;
  std::map<std::string, int64_t> last_created_ms_;
  std::set<std::string> cert_ids_;
  std::map<std::pair<std::string, std::string>, IdemEntry> idem_;
};

void Sandbox::Impl::HandleApi(const httplib::Request& req, httplib::Response& res, Route route) {
  std::string rid;
  int latency_ms = 0;
  {
    std::lock_guard<std::mutex> lock(core_.mu());
    ++core_.stats().requests_total;
    rid = NewRequestId();
    latency_ms = core_.latency_ms();
  }
  // Creates sleep after reserving their Idempotency-Key instead (see HandleCreate), so that a
  // concurrent retry with the same key observes IDEMPOTENCY_IN_PROGRESS as the doc describes.
  if (latency_ms > 0 && route != Route::kCreate) {
    std::this_thread::sleep_for(std::chrono::milliseconds(latency_ms));
  }

  // "Authorization: Bearer <key>"; any other form counts as no token.
  std::string token;
  const std::string auth = req.get_header_value("Authorization");
  if (auth.size() > 7 && absl::EqualsIgnoreCase(absl::string_view(auth).substr(0, 7), "bearer ")) {
    token = std::string(absl::StripAsciiWhitespace(absl::string_view(auth).substr(7)));
  }
  // A client is its API key (or source IP without one) with its User-Agent (see Core::Admit).
  const std::string client = internal::ClientKey(
      token.empty() ? "proofd ip:" + req.remote_addr : "proofd key:" + token, req);

  std::unique_lock<std::mutex> lock(core_.mu());
  const absl::Time now = core_.clock()->Now();
  core_.ConfirmDue(now);
  double upstream_draw = 1;
  const internal::Admission adm =
      core_.Admit(ApiId::kProofd, client, now, route == Route::kCreate ? &upstream_draw : nullptr);
  const bool drop = adm.drop;
  Reply reply;
  auto finish = [&](const Reply& r) {
    if (drop) core_.CountDrop(ApiId::kProofd);
    lock.unlock();
    ANCHORD_LOG(Debug) << "sandbox: " << req.method << " " << req.path << " -> " << r.status << " "
                       << rid << (drop ? " (dropped)" : "");
    internal::Send(r, rid, drop, res);
  };

  if (adm.storm) {
    reply = Error("RATE_LIMITED", "Rate limit exceeded (sandbox 429 storm).", rid);
    reply.headers.emplace_back("Retry-After", "1");
    AddLimitHeaders(core_.opt().general_limit, 0, 1, &reply);
    return finish(reply);
  }
  if (adm.error) {
    // Half of the injected errors on creates are the upstream OTS step failing (502).
    const bool upstream = route == Route::kCreate && upstream_draw < 0.5;
    return finish(upstream
                      ? Error("OTS_PROVIDER_ERROR", "OpenTimestamps step failed (injected).", rid)
                      : Error("INTERNAL_ERROR", "Internal error (injected).", rid));
  }

  if (token.empty()) {
    return finish(Error("AUTHENTICATION_REQUIRED", "No Bearer token was provided.", rid));
  }
  if (not_entitled_.count(token)) {
    return finish(
        Error("PLAN_NOT_ENTITLED", "The account is not on a premium plan with API access.", rid));
  }
  if (!api_keys_.count(token)) {
    return finish(
        Error("INVALID_API_KEY", "The key does not match an active premium credential.", rid));
  }

  const SandboxOptions& opt = core_.opt();
  std::vector<internal::Core::Bucket> buckets = {
      {"proofd general:" + token, opt.general_limit, opt.window}};
  if (route == Route::kCreate) {
    buckets.push_back({"proofd create-key:" + token, opt.create_key_limit, opt.window});
    buckets.push_back({"proofd create-ip:" + req.remote_addr, opt.create_ip_limit, opt.window});
  }
  const internal::Core::LimitResult limit = core_.CheckLimits(buckets, now);
  Reply limits;
  if (limit.limit > 0) AddLimitHeaders(limit.limit, limit.remaining, limit.reset, &limits);
  if (!limit.ok) {
    core_.NoteRateLimited(ApiId::kProofd, client, limit.retry_after, drop, now);
    reply = Error("RATE_LIMITED", "A rate-limit bucket was exceeded.", rid);
    reply.headers.emplace_back("Retry-After", std::to_string(limit.retry_after));
    reply.headers.insert(reply.headers.end(), limits.headers.begin(), limits.headers.end());
    return finish(reply);
  }

  switch (route) {
    case Route::kCreate:
      reply = HandleCreate(req, token, rid, lock, latency_ms);
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
      reply = Error("NOT_FOUND", "No such route.", rid);
      break;
  }
  reply.headers.insert(reply.headers.begin(), limits.headers.begin(), limits.headers.end());
  finish(reply);
}

Reply Sandbox::Impl::HandleCreate(const httplib::Request& req, const std::string& account,
                                  const std::string& rid, std::unique_lock<std::mutex>& lock,
                                  int latency_ms) {
  const bool has_key = req.has_header("Idempotency-Key");
  const std::string idem_key = req.get_header_value("Idempotency-Key");
  if (has_key && (idem_key.empty() || idem_key.size() > 200)) {
    return Error("INVALID_IDEMPOTENCY_KEY", "Idempotency-Key must be 1..200 characters.", rid);
  }
  // The doc requires Content-Type: application/json and lists it under INVALID_JSON's fix.
  const std::string ctype = absl::AsciiStrToLower(req.get_header_value("Content-Type"));
  if (!absl::StartsWith(ctype, "application/json")) {
    return Error("INVALID_JSON", "Content-Type must be application/json.", rid);
  }
  const nlohmann::json body = nlohmann::json::parse(req.body, nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    return Error("INVALID_JSON", "The request body is not a valid JSON object.", rid);
  }
  auto hash = body.find("sha256_hash");
  if (hash == body.end() || !hash->is_string() || !IsSha256Hex(hash->get<std::string>())) {
    return Error("INVALID_SHA256_HASH", "sha256_hash must be 64 hexadecimal characters.", rid);
  }
  const std::string hex = absl::AsciiStrToLower(hash->get<std::string>());
  auto filename = body.find("filename");
  // 255 bytes is the sandbox's cap (the doc gives none); longer names are INVALID_FILENAME.
  if (filename == body.end() || !filename->is_string() || filename->get<std::string>().empty() ||
      filename->get<std::string>().size() > 255) {
    return Error("INVALID_FILENAME", "filename must be a non-empty string.", rid);
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
    return Error("INVALID_FILE_SIZE", "file_size_bytes must be a positive integer.", rid);
  }
  // file_type: omitted or null means none (the resource shows null); anything else but a string
  // is INVALID_FILE_TYPE.
  std::optional<std::string> file_type;
  auto type = body.find("file_type");
  if (type != body.end() && !type->is_null()) {
    if (!type->is_string()) {
      return Error("INVALID_FILE_TYPE", "file_type must be a string.", rid);
    }
    file_type = type->get<std::string>();
  }

  const auto idem_id = std::make_pair(account, idem_key);
  if (has_key) {
    auto it = idem_.find(idem_id);
    if (it != idem_.end()) {
      if (!it->second.done) {
        return Error("IDEMPOTENCY_IN_PROGRESS",
                     "A previous request with this Idempotency-Key is still processing.", rid);
      }
      if (it->second.body != req.body) {
        return Error("IDEMPOTENCY_MISMATCH",
                     "The Idempotency-Key was used for a different payload.", rid);
      }
      ++core_.stats().replays_total;
      Reply r;
      r.status = it->second.status;
      r.body = it->second.response;
      return r;
    }
    idem_[idem_id] = IdemEntry{req.body, false, 0, {}};
  }
  if (latency_ms > 0) {
    lock.unlock();
    std::this_thread::sleep_for(std::chrono::milliseconds(latency_ms));
    lock.lock();
  }
  auto release_key = [&] {
    if (has_key) idem_.erase(idem_id);  // only successes are replayed; errors are re-evaluated
  };
  if (account_digests_[account].count(hex)) {
    release_key();
    // The sandbox's choice: the envelope only, without the original id (the doc shows none).
    // Clients must resolve a duplicate by walking the account's list for the hash.
    return Error("DUPLICATE_TIMESTAMP", "The same owner already timestamped this hash.", rid);
  }
  if (core_.opt().monthly_quota > 0 && account_creates_[account] >= core_.opt().monthly_quota) {
    release_key();
    return Error("MONTHLY_LIMIT_REACHED",
                 "The account exhausted its current monthly timestamp allowance.", rid);
  }

  const absl::Time now = core_.clock()->Now();
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
  rec.due = now + core_.opt().confirm_after;
  rec.nonce = core_.RandomBytes(16);
  auto leaf = internal::NoncedLeaf(*HexDecode(hex), rec.nonce);
  if (!leaf.ok()) {  // cannot happen for a 32-byte digest
    release_key();
    return Error("INTERNAL_ERROR", "Building the proof leaf failed.", rid);
  }
  rec.root = leaf->first;
  core_.AddPending(rec.due, leaf->second, this, rec.id);

  account_digests_[account].insert(hex);
  ++account_creates_[account];
  account_ids_[account].push_back(rec.id);
  SandboxStats& stats = core_.stats();
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

Reply Sandbox::Impl::HandleList(const httplib::Request& req, const std::string& account,
                                const std::string& rid) {
  std::string status = req.has_param("status") ? req.get_param_value("status") : "all";
  if (status != "all" && status != "confirmed" && status != "pending" && status != "failed") {
    return Error("INVALID_STATUS", "status must be all, confirmed, pending or failed.", rid);
  }
  // Default page size 20 is the sandbox's choice (the doc gives only the cap of 50).
  int64_t limit = 20;
  if (req.has_param("limit")) {
    const std::string v = req.get_param_value("limit");
    const bool digits = !v.empty() && v.size() <= 9 && std::all_of(v.begin(), v.end(), [](char c) {
      return c >= '0' && c <= '9';
    });
    if (!digits || !absl::SimpleAtoi(v, &limit) || limit <= 0) {
      return Error("INVALID_LIMIT", "limit must be a positive integer.", rid);
    }
    limit = std::min<int64_t>(limit, 50);
  }
  absl::Time before = absl::InfiniteFuture();
  if (req.has_param("before")) {
    std::string err;
    if (!absl::ParseTime(absl::RFC3339_full, req.get_param_value("before"), &before, &err)) {
      return Error("INVALID_CURSOR", "before must be an ISO-8601 timestamp.", rid);
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

Reply Sandbox::Impl::HandleGet(const std::string& raw_id, const std::string& account,
                               const std::string& rid, bool ots) {
  if (!IsUuid(raw_id)) return Error("INVALID_ID", "The timestamp id must be a UUID.", rid);
  const std::string id = absl::AsciiStrToLower(raw_id);
  auto it = records_.find(id);
  if (it == records_.end() || it->second.account != account) {
    return Error("TIMESTAMP_NOT_FOUND", "No timestamp with this id for the account.", rid);
  }
  const Record& r = it->second;
  if (!ots) {
    Reply reply;
    reply.body = Dump(RecordJson(r));
    return reply;
  }
  if (r.status != "confirmed" || r.ots.empty()) {
    return Error("OTS_NOT_FOUND", "No OTS payload is available yet for this timestamp.", rid);
  }
  Reply reply;
  reply.body = r.ots;
  reply.content_type = "application/octet-stream";
  reply.headers.emplace_back("Content-Disposition",
                             absl::StrCat("attachment; filename=\"",
                                          SafeFilename(r.filename, r.certificate_id), ".ots\""));
  return reply;
}

void Sandbox::Impl::OnConfirmedLocked(const std::string& id, const internal::Confirmation& c,
                                      bool ok) {
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
  r.blockchain_tx = HexEncode(core_.RandomBytes(32));
  r.confirmed_at = c.time;
  ++core_.stats().confirmed_total;
}

void Sandbox::Impl::HandleAdmin(const httplib::Request& req, httplib::Response& res,
                                const std::string& what) {
  std::string rid;
  {
    std::lock_guard<std::mutex> lock(core_.mu());
    ++core_.stats().requests_total;
    rid = NewRequestId();
  }
  Reply reply;
  if (what == "stats") {
    reply.body = Dump(StatsJson(Stats(), calendar_urls()));
  } else if (what == "calendars") {
    ojson j;
    j["calendar_urls"] = calendar_urls();
    reply.body = Dump(j);
  } else if (what == "faults") {
    if (req.method == "POST") {
      const nlohmann::json body = nlohmann::json::parse(req.body, nullptr, false);
      Faults f = GetFaults();
      bool ok = body.is_object();
      auto num = [&](const char* name, double* out) {
        auto it = ok ? body.find(name) : body.end();
        if (!ok || it == body.end()) return;
        if (!it->is_number()) {
          ok = false;
          return;
        }
        *out = it->get<double>();
      };
      double latency = f.latency_ms;
      num("error_rate", &f.error_rate);
      num("drop_rate", &f.drop_rate);
      num("latency_ms", &latency);
      num("storm_seconds", &f.storm_seconds);
      num("callback_drop_rate", &f.callback_drop_rate);
      if (!ok) {
        reply = Error("INVALID_JSON", "Expected a JSON object of numeric fault fields.", rid);
        return internal::Send(reply, rid, false, res);
      }
      f.latency_ms = static_cast<int>(std::clamp(latency, 0.0, 60000.0));
      SetFaults(f);
    }
    Faults f = GetFaults();
    ojson j;
    j["error_rate"] = f.error_rate;
    j["drop_rate"] = f.drop_rate;
    j["latency_ms"] = f.latency_ms;
    j["storm_seconds"] = f.storm_seconds;
    j["callback_drop_rate"] = f.callback_drop_rate;
    reply.body = Dump(j);
  } else if (what == "reset") {
    Reset();
    reply.body = "{}";
  } else if (what == "header") {
    int64_t height = 0;
    std::string header;
    if (req.matches.size() > 1 && absl::SimpleAtoi(std::string(req.matches[1]), &height)) {
      std::lock_guard<std::mutex> lock(core_.mu());
      header = core_.HeaderAt(height);
    }
    if (header.empty()) {
      reply = Error("NOT_FOUND", "No sandbox block at this height.", rid);
    } else {
      reply.body = HexEncode(header);
      reply.content_type = "text/plain";
    }
  } else {
    reply = Error("NOT_FOUND", "No such route.", rid);
  }
  internal::Send(reply, rid, false, res);
}

absl::Status Sandbox::Impl::Start() {
  const size_t threads = static_cast<size_t>(std::max(32, core_.opt().threads));
  svr_.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  svr_.set_payload_max_length(1 << 20);
  svr_.set_keep_alive_max_count(1000);
  // Without TCP_NODELAY every small answer waits on Nagle + delayed ACK (~40 ms a request).
  svr_.set_tcp_nodelay(true);
  svr_.set_exception_handler([](const httplib::Request&, httplib::Response& res,
                                std::exception_ptr) {
    res.status = 500;
    res.set_content(
        R"({"error":{"code":"INTERNAL_ERROR","message":"unexpected exception","request_id":""}})",
        "application/json");
  });
  auto api = [this](Route route) {
    return [this, route](const httplib::Request& req, httplib::Response& res) {
      HandleApi(req, res, route);
    };
  };
  auto admin = [this](std::string what) {
    return [this, what](const httplib::Request& req, httplib::Response& res) {
      HandleAdmin(req, res, what);
    };
  };
  svr_.Post("/api/v1/timestamps", api(Route::kCreate));
  svr_.Get("/api/v1/timestamps", api(Route::kList));
  svr_.Get("/api/v1/timestamps/([^/]+)/ots", api(Route::kOts));
  svr_.Get("/api/v1/timestamps/([^/]+)", api(Route::kGet));
  proofledger_->Register(svr_);
  simpleproof_->Register(svr_);
  auto tsa = internal::TsaApi::Create(&core_);
  if (!tsa.ok()) return tsa.status();
  tsa_ = *std::move(tsa);
  tsa_->Register(svr_);
  svr_.Get("/_sandbox/stats", admin("stats"));
  svr_.Get("/_sandbox/calendars", admin("calendars"));
  svr_.Get("/_sandbox/faults", admin("faults"));
  svr_.Post("/_sandbox/faults", admin("faults"));
  svr_.Post("/_sandbox/reset", admin("reset"));
  svr_.Get("/_sandbox/blocks/([0-9]{1,18})/header", admin("header"));
  // Everything else: the error shape of the API whose path space it is in (behind auth for
  // proofd's /api/, like its documented routes), else the proofd envelope.
  auto fallback = [this](const httplib::Request& req, httplib::Response& res) {
    if (internal::ProofLedgerApi::Owns(req.path)) {
      proofledger_->HandleUnknown(req, res);
    } else if (internal::SimpleProofApi::Owns(req.path)) {
      simpleproof_->HandleUnknown(req, res);
    } else if (internal::TsaApi::Owns(req.path)) {
      tsa_->HandleUnknown(req, res);
    } else if (absl::StartsWith(req.path, "/api/")) {
      HandleApi(req, res, Route::kUnknown);
    } else {
      HandleAdmin(req, res, "unknown");
    }
  };
  svr_.Get(".*", fallback);
  svr_.Post(".*", fallback);
  svr_.Put(".*", fallback);
  svr_.Patch(".*", fallback);
  svr_.Delete(".*", fallback);

  const SandboxOptions& opt = core_.opt();
  if (opt.port == 0) {
    port_ = svr_.bind_to_any_port(opt.host);
  } else {
    port_ = svr_.bind_to_port(opt.host, opt.port) ? opt.port : -1;
  }
  if (port_ <= 0) {
    return absl::UnavailableError(
        absl::StrCat("sandbox: cannot listen on ", opt.host, ":", opt.port));
  }
  simpleproof_->set_files_origin(absl::StrCat("http://", internal::UrlHost(opt.host), ":", port_));
  if (auto st = calendars_->Start(); !st.ok()) return st;
  listener_ = std::thread([this] { svr_.listen_after_bind(); });
  // stop() is a no-op until the accept loop runs, so wait for it (bounded) before returning.
  for (int i = 0; i < 5000 && !svr_.is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!svr_.is_running()) {
    return absl::InternalError("sandbox: HTTP server did not start");
  }
  simpleproof_->StartCallbacks();
  // Confirms what is due without waiting for a request, so callbacks go out on time. A tick is
  // cheap when nothing is due (one look at the earliest pending leaf).
  ticker_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(core_.mu());
    while (!ticker_stop_) {
      ticker_cv_.wait_for(lock, std::chrono::milliseconds(50));
      if (ticker_stop_) break;
      core_.ConfirmDue(core_.clock()->Now());
    }
  });
  return absl::OkStatus();
}

Sandbox::Sandbox(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Sandbox::~Sandbox() { Stop(); }

absl::StatusOr<std::unique_ptr<Sandbox>> Sandbox::Start(const SandboxOptions& options) {
  auto impl = std::make_unique<Impl>(options);
  if (auto st = impl->Start(); !st.ok()) return st;
  return std::unique_ptr<Sandbox>(new Sandbox(std::move(impl)));
}

int Sandbox::port() const { return impl_->port(); }
std::vector<std::string> Sandbox::calendar_urls() const { return impl_->calendar_urls(); }
std::string Sandbox::tsa_url() const { return impl_->tsa_url(); }
std::string Sandbox::tsa_ca_pem() const { return impl_->tsa_ca_pem(); }
SandboxStats Sandbox::Stats() { return impl_->Stats(); }
void Sandbox::SetFaults(const Faults& faults) { impl_->SetFaults(faults); }
Faults Sandbox::GetFaults() { return impl_->GetFaults(); }
void Sandbox::Reset() { impl_->Reset(); }
void Sandbox::Stop() {
  if (impl_) impl_->Stop();
}

}  // namespace anchord::sandbox
