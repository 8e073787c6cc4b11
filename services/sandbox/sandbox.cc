#include "services/sandbox/sandbox.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
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

namespace anchord::sandbox {
namespace {

using ojson = nlohmann::ordered_json;

// Client-supplied strings (filenames) may hold invalid UTF-8; never let dump() throw on them.
std::string Dump(const ojson& j) { return j.dump(-1, ' ', false, ojson::error_handler_t::replace); }

std::string FormatIso(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

int64_t CeilSeconds(absl::Duration d) {
  if (d <= absl::ZeroDuration()) return 0;
  return absl::ToInt64Seconds(absl::Ceil(d, absl::Seconds(1)));
}

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

struct Block {
  std::string merkle_root;  // internal byte order, the commitment the proofs reach
  absl::Time time;
  std::string header;  // 80 bytes, computed on first request
};

// At most `limit` entries in any window: the strictest reading of "N per minute".
struct SlidingLog {
  std::deque<absl::Time> times;
  void Prune(absl::Time now, absl::Duration window) {
    while (!times.empty() && times.front() + window <= now) times.pop_front();
  }
};

struct Reply {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
};

enum class Route { kCreate, kList, kGet, kOts, kUnknown };

}  // namespace

class Sandbox::Impl {
 public:
  explicit Impl(const SandboxOptions& o)
      : opt_(o),
        clock_(o.clock != nullptr ? o.clock : Clock::Real()),
        fault_rng_(o.seed),
        id_rng_(o.seed ^ 0x9e3779b97f4a7c15ULL) {
    SetFaultsLocked(o.faults, clock_->Now());
    next_height_ = o.first_block_height;
    for (const auto& k : o.api_keys) api_keys_.insert(k);
    for (const auto& k : o.not_entitled_keys) not_entitled_.insert(k);
  }
  ~Impl() { Stop(); }

  absl::Status Start();
  void Stop() {
    std::lock_guard<std::mutex> lock(stop_mu_);
    if (stopped_) return;
    stopped_ = true;
    svr_.stop();
    if (listener_.joinable()) listener_.join();
  }
  int port() const { return port_; }

  SandboxStats Stats() {
    std::lock_guard<std::mutex> lock(mu_);
    ConfirmDueLocked(clock_->Now());
    SandboxStats s = stats_;
    s.records_total = static_cast<int64_t>(records_.size());
    return s;
  }
  void SetFaults(const Faults& f) {
    std::lock_guard<std::mutex> lock(mu_);
    SetFaultsLocked(f, clock_->Now());
  }
  Faults GetFaults() {
    std::lock_guard<std::mutex> lock(mu_);
    return GetFaultsLocked(clock_->Now());
  }
  void Reset() {
    std::lock_guard<std::mutex> lock(mu_);
    records_.clear();
    account_ids_.clear();
    account_digests_.clear();
    account_creates_.clear();
    last_created_ms_.clear();
    cert_ids_.clear();
    idem_.clear();
    buckets_.clear();
    earliest_allowed_.clear();
    pending_.clear();
    blocks_.clear();
    stats_ = SandboxStats();
  }

 private:
  // ---- helpers (mu_ held) ----
  void SetFaultsLocked(const Faults& f, absl::Time now) {
    faults_ = f;
    faults_.error_rate = std::clamp(f.error_rate, 0.0, 1.0);
    faults_.drop_rate = std::clamp(f.drop_rate, 0.0, 1.0);
    faults_.latency_ms = std::clamp(f.latency_ms, 0, 60000);
    double storm = std::clamp(f.storm_seconds, 0.0, 86400.0);
    storm_until_ = storm > 0 ? now + absl::Seconds(storm) : absl::InfinitePast();
  }
  Faults GetFaultsLocked(absl::Time now) const {
    Faults f = faults_;
    f.storm_seconds = storm_until_ > now ? absl::ToDoubleSeconds(storm_until_ - now) : 0;
    return f;
  }
  double Draw() { return std::uniform_real_distribution<double>(0.0, 1.0)(fault_rng_); }
  std::string RandomBytes(size_t n) {
    std::string out(n, '\0');
    for (auto& c : out) c = static_cast<char>(id_rng_() & 0xff);
    return out;
  }
  std::string NewRequestId() {
    return absl::StrFormat("req_%08x%08x", static_cast<uint32_t>(id_rng_()), ++request_counter_);
  }
  std::string NewUuid() {
    for (;;) {
      std::string b = RandomBytes(16);
      b[6] = static_cast<char>((b[6] & 0x0f) | 0x40);  // version 4
      b[8] = static_cast<char>((b[8] & 0x3f) | 0x80);  // RFC 4122 variant
      std::string h = HexEncode(b);
      std::string id = absl::StrCat(h.substr(0, 8), "-", h.substr(8, 4), "-", h.substr(12, 4),
                                    "-", h.substr(16, 4), "-", h.substr(20, 12));
      if (!records_.count(id)) return id;
    }
  }
  std::string NewCertificateId() {
    static constexpr char kChars[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    for (;;) {
      std::string id = "TS-";
      for (int i = 0; i < 6; ++i) id.push_back(kChars[id_rng_() % 36]);
      if (cert_ids_.insert(id).second) return id;
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
    j["certificate_url"] = absl::StrCat(opt_.public_base_url, "/cert/", r.certificate_id);
    j["verify_url"] = absl::StrCat(opt_.public_base_url, "/verify/", r.sha256_hex);
    j["ots_url"] = absl::StrCat("/api/v1/timestamps/", r.id, "/ots");
    return j;
  }

  // Confirms every record whose delay has passed. Records due together form one fake block: their
  // proofs share an OTS merkle tree whose tip is the block's merkle root. Done lazily on every
  // request (and Stats()), which clients cannot tell apart from a background confirmer.
  void ConfirmDueLocked(absl::Time now) {
    constexpr size_t kMaxBatch = 1000;  // keeps merkle paths (and proofs) short
    for (;;) {
      std::vector<Record*> batch;
      while (!pending_.empty() && batch.size() < kMaxBatch) {
        auto it = records_.find(pending_.front());
        if (it == records_.end()) {
          pending_.pop_front();
          continue;
        }
        if (it->second.due > now) break;
        batch.push_back(&it->second);
        pending_.pop_front();
      }
      if (batch.empty()) return;
      ConfirmBatchLocked(batch, now);
    }
  }

  void ConfirmBatchLocked(const std::vector<Record*>& batch, absl::Time now) {
    const int64_t height = next_height_++;
    std::vector<std::shared_ptr<ots::Timestamp>> roots, leaves;
    bool ok = true;
    for (Record* r : batch) {
      auto digest = HexDecode(r->sha256_hex);
      auto root = std::make_shared<ots::Timestamp>(digest.ok() ? *digest : std::string(32, '\0'));
      // append(nonce) then sha256: the nonce keeps the digest private from the other leaves.
      auto appended = root->AddOp(ots::Op::Append(r->nonce));
      if (!appended.ok()) { ok = false; break; }
      auto leaf = (*appended)->AddOp(ots::Op::Sha256());
      if (!leaf.ok()) { ok = false; break; }
      roots.push_back(root);
      leaves.push_back(*leaf);
    }
    absl::StatusOr<std::shared_ptr<ots::Timestamp>> tip =
        ok ? ots::MakeMerkleTree(leaves) : absl::InternalError("building leaves failed");
    if (tip.ok()) (*tip)->AddAttestation(ots::Attestation::Bitcoin(static_cast<uint64_t>(height)));
    for (size_t i = 0; i < batch.size(); ++i) {
      Record* r = batch[i];
      absl::StatusOr<std::string> bytes = absl::InternalError("no tip");
      if (tip.ok() && i < roots.size()) {
        bytes = ots::SerializeDetached({ots::Op::Sha256(), roots[i]->msg(), roots[i]});
      }
      if (!bytes.ok()) {
        // Cannot happen for 32-byte digests; a record we cannot prove is reported as failed.
        ANCHORD_LOG(Error) << "sandbox: building proof for " << r->id << ": " << bytes.status();
        r->status = "failed";
        continue;
      }
      r->ots = *std::move(bytes);
      r->status = "confirmed";
      r->bitcoin_block = height;
      r->blockchain_tx = HexEncode(RandomBytes(32));
      r->confirmed_at = now;
      ++stats_.confirmed_total;
    }
    if (tip.ok()) blocks_[height] = Block{(*tip)->msg(), now, {}};
  }

  // ---- rate limits ----
  struct BucketRef {
    std::string key;
    int limit;
  };
  // Returns true when every bucket has room; on success consumes a slot in each and fills the
  // X-RateLimit-* headers from the tightest bucket; on failure fills a 429.
  bool CheckLimitsLocked(const std::vector<BucketRef>& refs, absl::Time now, Reply* reply,
                         int64_t* retry_after) {
    const BucketRef* tightest = nullptr;
    int64_t tightest_remaining = std::numeric_limits<int64_t>::max();
    for (const auto& ref : refs) {
      if (ref.limit <= 0) continue;
      SlidingLog& log = buckets_[ref.key];
      log.Prune(now, opt_.window);
      if (static_cast<int64_t>(log.times.size()) >= ref.limit) {
        // A rejected request does not consume a slot. Retry-After is the time until the oldest
        // entry leaves the window (when a slot frees), rounded up, at least 1 s.
        int64_t wait = std::max<int64_t>(1, CeilSeconds(log.times.front() + opt_.window - now));
        *retry_after = wait;
        reply->headers.emplace_back("Retry-After", std::to_string(wait));
        AddLimitHeaders(ref.limit, 0, wait, reply);
        return false;
      }
    }
    for (const auto& ref : refs) {
      if (ref.limit <= 0) continue;
      SlidingLog& log = buckets_[ref.key];
      log.times.push_back(now);
      int64_t remaining = ref.limit - static_cast<int64_t>(log.times.size());
      if (remaining < tightest_remaining) {
        tightest_remaining = remaining;
        tightest = &ref;
      }
    }
    if (tightest != nullptr) {
      SlidingLog& log = buckets_[tightest->key];
      int64_t reset = log.times.empty() ? 0 : CeilSeconds(log.times.front() + opt_.window - now);
      AddLimitHeaders(tightest->limit, tightest_remaining, reset, reply);
    }
    return true;
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
  static void Send(const Reply& reply, const std::string& rid, bool drop, httplib::Response& res);

  SandboxOptions opt_;
  Clock* clock_;
  httplib::Server svr_;
  std::thread listener_;
  int port_ = 0;
  std::mutex stop_mu_;
  bool stopped_ = false;

  std::mutex mu_;  // guards everything below
  std::mt19937_64 fault_rng_;
  std::mt19937_64 id_rng_;
  uint32_t request_counter_ = 0;
  Faults faults_;
  absl::Time storm_until_ = absl::InfinitePast();
  std::set<std::string> api_keys_, not_entitled_;
  std::map<std::string, Record> records_;                      // id -> record
  std::map<std::string, std::vector<std::string>> account_ids_;  // in created_at order
  std::map<std::string, std::set<std::string>> account_digests_;
  std::map<std::string, int64_t> account_creates_;
  std::map<std::string, int64_t> last_created_ms_;
  std::set<std::string> cert_ids_;
  std::map<std::pair<std::string, std::string>, IdemEntry> idem_;
  std::map<std::string, SlidingLog> buckets_;
  std::map<std::string, absl::Time> earliest_allowed_;
  std::deque<std::string> pending_;  // ids in creation order
  std::map<int64_t, Block> blocks_;
  int64_t next_height_ = 0;
  SandboxStats stats_;
};

void Sandbox::Impl::Send(const Reply& reply, const std::string& rid, bool drop,
                         httplib::Response& res) {
  res.status = reply.status;
  res.set_header("X-Request-Id", rid);
  for (const auto& [k, v] : reply.headers) res.set_header(k, v);
  if (!drop) {
    res.set_content(reply.body, reply.content_type);
    return;
  }
  // The injected drop: headers announce the full length, half the body is written, then the
  // provider fails and httplib closes the connection, so the client sees a truncated response.
  auto body = std::make_shared<std::string>(reply.body);
  const size_t cut = body->size() / 2;
  res.set_content_provider(
      body->size(), reply.content_type,
      [body, cut](size_t offset, size_t, httplib::DataSink& sink) {
        if (offset < cut) sink.write(body->data() + offset, cut - offset);
        return false;
      });
}

void Sandbox::Impl::HandleApi(const httplib::Request& req, httplib::Response& res, Route route) {
  std::string rid;
  int latency_ms = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.requests_total;
    rid = NewRequestId();
    latency_ms = faults_.latency_ms;
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
  // A Retry-After is an answer to one client: a request counts as early when the client that was
  // told to wait sends again before the time passed. A client is its API key (or source IP
  // without one) together with its User-Agent, so two programs sharing a key (anchord's submitter
  // and poller) are judged on the answers each received, not on the other's.
  const std::string client = absl::StrCat(" ua:", req.get_header_value("User-Agent"));
  const std::string early_key =
      (token.empty() ? "ip:" + req.remote_addr : "key:" + token) + client;

  std::unique_lock<std::mutex> lock(mu_);
  const absl::Time now = clock_->Now();
  ConfirmDueLocked(now);
  bool drop = false;
  Reply reply;
  auto finish = [&](const Reply& r) {
    if (drop) ++stats_.faults_injected_total;
    lock.unlock();
    ANCHORD_LOG(Debug) << "sandbox: " << req.method << " " << req.path << " -> " << r.status
                       << " " << rid << (drop ? " (dropped)" : "");
    Send(r, rid, drop, res);
  };

  auto early = earliest_allowed_.find(early_key);
  if (early != earliest_allowed_.end() && now < early->second) {
    ++stats_.early_requests_total;
    ANCHORD_LOG(Warning) << "sandbox: early request " << req.method << " " << req.path << " from "
                         << early_key.substr(early_key.find(" ua:") + 1) << ", "
                         << absl::FormatDuration(early->second - now) << " before its Retry-After";
  }

  // Fault decisions are drawn in a fixed order per request so a seed reproduces a run.
  const bool error_fault = faults_.error_rate > 0 && Draw() < faults_.error_rate;
  drop = faults_.drop_rate > 0 && Draw() < faults_.drop_rate;

  if (now < storm_until_) {
    drop = false;
    ++stats_.rate_limited_total;
    ++stats_.faults_injected_total;
    earliest_allowed_[early_key] = now + absl::Seconds(1);
    reply = Error("RATE_LIMITED", "Rate limit exceeded (sandbox 429 storm).", rid);
    reply.headers.emplace_back("Retry-After", "1");
    AddLimitHeaders(opt_.general_limit, 0, 1, &reply);
    return finish(reply);
  }
  if (error_fault) {
    drop = false;
    ++stats_.faults_injected_total;
    // Half of the injected errors on creates are the upstream OTS step failing (502).
    const bool upstream = route == Route::kCreate && Draw() < 0.5;
    return finish(upstream ? Error("OTS_PROVIDER_ERROR", "OpenTimestamps step failed (injected).", rid)
                           : Error("INTERNAL_ERROR", "Internal error (injected).", rid));
  }

  if (token.empty()) {
    return finish(Error("AUTHENTICATION_REQUIRED", "No Bearer token was provided.", rid));
  }
  if (not_entitled_.count(token)) {
    return finish(Error("PLAN_NOT_ENTITLED",
                        "The account is not on a premium plan with API access.", rid));
  }
  if (!api_keys_.count(token)) {
    return finish(Error("INVALID_API_KEY", "The key does not match an active premium credential.",
                        rid));
  }

  std::vector<BucketRef> refs = {{"general:" + token, opt_.general_limit}};
  if (route == Route::kCreate) {
    refs.push_back({"create-key:" + token, opt_.create_key_limit});
    refs.push_back({"create-ip:" + req.remote_addr, opt_.create_ip_limit});
  }
  int64_t retry_after = 0;
  Reply limits;
  if (!CheckLimitsLocked(refs, now, &limits, &retry_after)) {
    ++stats_.rate_limited_total;
    // A 429 whose answer the drop fault cuts off never reaches the client, so it sets no wait.
    if (!drop) earliest_allowed_[early_key] = now + absl::Seconds(retry_after);
    reply = Error("RATE_LIMITED", "A rate-limit bucket was exceeded.", rid);
    reply.headers = limits.headers;
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


Reply Sandbox::Impl::HandleCreate(const httplib::Request& req,
                                                 const std::string& account,
                                                 const std::string& rid,
                                                 std::unique_lock<std::mutex>& lock,
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
    size_bytes = u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ? 0
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
      ++stats_.replays_total;
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
  if (opt_.monthly_quota > 0 && account_creates_[account] >= opt_.monthly_quota) {
    release_key();
    return Error("MONTHLY_LIMIT_REACHED",
                 "The account exhausted its current monthly timestamp allowance.", rid);
  }

  const absl::Time now = clock_->Now();
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
  rec.due = now + opt_.confirm_after;
  rec.nonce = RandomBytes(16);

  account_digests_[account].insert(hex);
  ++account_creates_[account];
  account_ids_[account].push_back(rec.id);
  pending_.push_back(rec.id);
  ++stats_.creates_total;
  const int64_t n = ++stats_.creates_by_digest[hex];
  stats_.max_creates_per_digest = std::max(stats_.max_creates_per_digest, n);

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

Reply Sandbox::Impl::HandleList(const httplib::Request& req,
                                               const std::string& account,
                                               const std::string& rid) {
  std::string status = req.has_param("status") ? req.get_param_value("status") : "all";
  if (status != "all" && status != "confirmed" && status != "pending" && status != "failed") {
    return Error("INVALID_STATUS", "status must be all, confirmed, pending or failed.", rid);
  }
  // Default page size 20 is the sandbox's choice (the doc gives only the cap of 50).
  int64_t limit = 20;
  if (req.has_param("limit")) {
    const std::string v = req.get_param_value("limit");
    const bool digits = !v.empty() && v.size() <= 9 &&
                        std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; });
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
  reply.headers.emplace_back(
      "Content-Disposition",
      absl::StrCat("attachment; filename=\"", SafeFilename(r.filename, r.certificate_id), ".ots\""));
  return reply;
}

namespace {

std::string Sha256d(absl::string_view b) { return ots::Sha256(ots::Sha256(b)); }

void PutLe32(uint32_t v, std::string* out) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// An 80-byte Bitcoin block header whose merkle root is `root` (internal order), with regtest-easy
// bits 0x207fffff and a nonce found so that its hash meets that target (about 1 in 2 nonces do).
std::string BuildHeader(int64_t height, absl::string_view root, absl::Time time) {
  std::string prefix;
  PutLe32(0x20000000, &prefix);
  prefix += Sha256d(absl::StrCat("anchord-sandbox-block-", height - 1));  // fake previous hash
  prefix += std::string(root);
  PutLe32(static_cast<uint32_t>(absl::ToUnixSeconds(time)), &prefix);
  PutLe32(0x207fffff, &prefix);
  // Target for bits 0x207fffff: 0x7fffff << 232, i.e. big-endian 7f ff ff 00 .. 00.
  std::string target(32, '\0');
  target[0] = '\x7f';
  target[1] = target[2] = '\xff';
  for (uint32_t nonce = 0;; ++nonce) {
    std::string header = prefix;
    PutLe32(nonce, &header);
    std::string hash = Sha256d(header);
    std::reverse(hash.begin(), hash.end());  // the hash is compared as a little-endian number
    if (hash <= target || nonce == std::numeric_limits<uint32_t>::max()) return header;
  }
}

}  // namespace

void Sandbox::Impl::HandleAdmin(const httplib::Request& req, httplib::Response& res,
                                const std::string& what) {
  std::string rid;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.requests_total;
    rid = NewRequestId();
  }
  Reply reply;
  if (what == "stats") {
    SandboxStats s = Stats();
    ojson j;
    j["requests_total"] = s.requests_total;
    j["creates_total"] = s.creates_total;
    j["replays_total"] = s.replays_total;
    j["creates_by_digest"] = ojson::object();
    for (const auto& [k, v] : s.creates_by_digest) j["creates_by_digest"][k] = v;
    j["max_creates_per_digest"] = s.max_creates_per_digest;
    j["rate_limited_total"] = s.rate_limited_total;
    j["early_requests_total"] = s.early_requests_total;
    j["faults_injected_total"] = s.faults_injected_total;
    j["records_total"] = s.records_total;
    j["confirmed_total"] = s.confirmed_total;
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
      if (!ok) {
        reply = Error("INVALID_JSON", "Expected a JSON object of numeric fault fields.", rid);
        return Send(reply, rid, false, res);
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
    reply.body = Dump(j);
  } else if (what == "reset") {
    Reset();
    reply.body = "{}";
  } else if (what == "header") {
    int64_t height = 0;
    std::string header;
    if (req.matches.size() > 1 && absl::SimpleAtoi(std::string(req.matches[1]), &height)) {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = blocks_.find(height);
      if (it != blocks_.end()) {
        if (it->second.header.empty()) {
          it->second.header = BuildHeader(height, it->second.merkle_root, it->second.time);
        }
        header = it->second.header;
      }
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
  Send(reply, rid, false, res);
}

absl::Status Sandbox::Impl::Start() {
  const size_t threads = static_cast<size_t>(std::max(32, opt_.threads));
  svr_.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  svr_.set_payload_max_length(1 << 20);
  svr_.set_keep_alive_max_count(1000);
  // Without TCP_NODELAY every small answer waits on Nagle + delayed ACK (~40 ms a request).
  svr_.set_tcp_nodelay(true);
  svr_.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    res.status = 500;
    res.set_content(R"({"error":{"code":"INTERNAL_ERROR","message":"unexpected exception","request_id":""}})",
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
  svr_.Get("/_sandbox/stats", admin("stats"));
  svr_.Get("/_sandbox/faults", admin("faults"));
  svr_.Post("/_sandbox/faults", admin("faults"));
  svr_.Post("/_sandbox/reset", admin("reset"));
  svr_.Get("/_sandbox/blocks/([0-9]{1,18})/header", admin("header"));
  // Everything else: the error envelope (behind auth under /api/, like the documented routes).
  auto fallback = [this](const httplib::Request& req, httplib::Response& res) {
    if (absl::StartsWith(req.path, "/api/")) {
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

  if (opt_.port == 0) {
    port_ = svr_.bind_to_any_port(opt_.host);
  } else {
    port_ = svr_.bind_to_port(opt_.host, opt_.port) ? opt_.port : -1;
  }
  if (port_ <= 0) {
    return absl::UnavailableError(
        absl::StrCat("sandbox: cannot listen on ", opt_.host, ":", opt_.port));
  }
  listener_ = std::thread([this] { svr_.listen_after_bind(); });
  // stop() is a no-op until the accept loop runs, so wait for it (bounded) before returning.
  for (int i = 0; i < 5000 && !svr_.is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!svr_.is_running()) {
    return absl::InternalError("sandbox: HTTP server did not start");
  }
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
SandboxStats Sandbox::Stats() { return impl_->Stats(); }
void Sandbox::SetFaults(const Faults& faults) { impl_->SetFaults(faults); }
Faults Sandbox::GetFaults() { return impl_->GetFaults(); }
void Sandbox::Reset() { impl_->Reset(); }
void Sandbox::Stop() {
  if (impl_) impl_->Stop();
}

}  // namespace anchord::sandbox
