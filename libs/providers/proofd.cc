#include "libs/providers/proofd.h"

#include <openssl/sha.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"
#include "libs/common/secret.h"
#include "libs/common/validate.h"
#include "libs/providers/adapter_common.h"

namespace anchord::providers {
namespace {

using json = nlohmann::json;

enum class Endpoint { kCreate, kGet, kList, kOts };

const char* EndpointLabel(Endpoint e) {
  switch (e) {
    case Endpoint::kCreate:
      return "create";
    case Endpoint::kGet:
      return "get";
    case Endpoint::kList:
      return "list";
    case Endpoint::kOts:
      return "ots";
  }
  return "other";
}

// Used when a 429 carries no usable Retry-After (the documented limits are per minute).
constexpr absl::Duration kDefaultRetryAfter = absl::Seconds(60);
constexpr int kMaxDuplicatePages = 200;
constexpr int kListPageMax = 50;  // the API caps pages at 50

// .ots magic (docs/ots-format.md, "File layout"); a 200 whose body lacks it is not evidence.
constexpr absl::string_view kOtsMagic(
    "\x00OpenTimestamps\x00\x00Proof\x00\xbf\x89\xe2\xe8\x84\xe8\x92\x94", 31);

bool IsUuid(absl::string_view s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (s[i] != '-') return false;
    } else if (!absl::ascii_isxdigit(s[i])) {
      return false;
    }
  }
  return true;
}

// Shared with the other adapters (adapter_common.h).
using internal::CleanCode;
using internal::ParseIsoTime;
using internal::PercentEncode;
using internal::Printable;
using internal::Wire;

std::string StringField(const json& obj, const char* key) {
  if (!obj.is_object()) return "";
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

// Optional string field: absent or null -> "", string -> value, anything else -> error.
absl::Status OptionalString(const json& obj, const char* key, std::string* out) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_string()) return absl::InvalidArgumentError(absl::StrCat(key, ": not a string"));
  *out = it->get<std::string>();
  return absl::OkStatus();
}

// Validates one timestamp resource before anything in it is trusted. `expected_digest` (may be
// null) and `expected_id` (any case, may be empty) must match when given.
absl::StatusOr<ProviderRecord> ParseRecord(const json& j, const Digest* expected_digest,
                                           absl::string_view expected_id) {
  if (!j.is_object()) return absl::InvalidArgumentError("record: not a JSON object");
  ProviderRecord r;
  auto id = j.find("id");
  if (id == j.end() || !id->is_string()) return absl::InvalidArgumentError("id: missing");
  r.proof_id = id->get<std::string>();
  if (!IsUuid(r.proof_id)) return absl::InvalidArgumentError("id: not a UUID");
  if (!expected_id.empty() && !absl::EqualsIgnoreCase(r.proof_id, expected_id)) {
    return absl::InvalidArgumentError("id: differs from the id requested");
  }
  auto hash = j.find("sha256_hash");
  if (hash == j.end() || !hash->is_string()) {
    return absl::InvalidArgumentError("sha256_hash: missing");
  }
  absl::StatusOr<Digest> digest = Digest::FromHex(hash->get<std::string>(), "sha256_hash");
  if (!digest.ok()) return digest.status();
  r.digest = *digest;
  if (expected_digest != nullptr && r.digest != *expected_digest) {
    return absl::InvalidArgumentError("sha256_hash: differs from the hash sent");
  }
  auto status = j.find("status");
  if (status == j.end() || !status->is_string()) {
    return absl::InvalidArgumentError("status: missing");
  }
  const std::string st = status->get<std::string>();
  if (st == "pending") {
    r.state = RecordState::kPending;
  } else if (st == "confirmed") {
    r.state = RecordState::kConfirmed;
  } else if (st == "failed") {
    r.state = RecordState::kFailed;
  } else {
    return absl::InvalidArgumentError("status: not pending|confirmed|failed");
  }
  auto block = j.find("bitcoin_block");
  if (block != j.end() && !block->is_null()) {
    if (block->is_number_unsigned()) {
      const uint64_t v = block->get<uint64_t>();
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return absl::InvalidArgumentError("bitcoin_block: out of range");
      }
      r.block_height = static_cast<int64_t>(v);
    } else if (block->is_number_integer()) {
      r.block_height = block->get<int64_t>();
      if (r.block_height < 0) return absl::InvalidArgumentError("bitcoin_block: negative");
    } else {
      return absl::InvalidArgumentError("bitcoin_block: not an integer or null");
    }
  }
  // created_at is required: the list cursor is built from it.
  auto created = j.find("created_at");
  if (created == j.end() || !created->is_string()) {
    return absl::InvalidArgumentError("created_at: missing");
  }
  auto ct = ParseIsoTime(created->get<std::string>());
  if (!ct.ok()) return absl::InvalidArgumentError("created_at: not an ISO-8601 time");
  r.created_at = *ct;
  std::string confirmed;
  if (auto s = OptionalString(j, "confirmed_at", &confirmed); !s.ok()) return s;
  if (!confirmed.empty()) {
    auto t = ParseIsoTime(confirmed);
    if (!t.ok()) return absl::InvalidArgumentError("confirmed_at: not an ISO-8601 time");
    r.confirmed_at = *t;
  }
  if (auto s = OptionalString(j, "blockchain_tx", &r.bitcoin_tx); !s.ok()) return s;
  if (auto s = OptionalString(j, "certificate_url", &r.certificate_url); !s.ok()) return s;
  if (auto s = OptionalString(j, "verify_url", &r.verify_url); !s.ok()) return s;
  return r;
}

// The error envelope: {"error":{"code","message","request_id",...}}, or the same fields flat.
struct ErrorInfo {
  std::string code;
  std::string message;
  std::string request_id;
  std::string existing_id;  // id of the original record a 409 may name
};

ErrorInfo ParseErrorBody(const std::string& body) {
  ErrorInfo info;
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return info;
  const json* e = &j;
  auto it = j.find("error");
  if (it != j.end() && it->is_object()) e = &*it;
  info.code = CleanCode(StringField(*e, "code"));
  info.message = StringField(*e, "message");
  info.request_id = StringField(*e, "request_id");
  if (info.request_id.empty()) info.request_id = StringField(j, "request_id");
  // The document does not say whether a 409 names the original; accept every reasonable spelling.
  for (const char* key : {"timestamp_id", "existing_id", "id"}) {
    std::string v = StringField(*e, key);
    if (IsUuid(v)) {
      info.existing_id = v;
      break;
    }
  }
  if (info.existing_id.empty() && e != &j) {
    std::string v = StringField(j, "id");
    if (IsUuid(v)) info.existing_id = v;
  }
  return info;
}

// Maps an HTTP error answer to what the caller must do (see provider.h for the kinds).
OutcomeKind Classify(int status, const std::string& code, Endpoint ep) {
  if (code == "RATE_LIMITED" || status == 429) return OutcomeKind::kRateLimited;
  if (code == "INVALID_API_KEY" || code == "AUTHENTICATION_REQUIRED" ||
      code == "PLAN_NOT_ENTITLED" || code == "IDEMPOTENCY_MISMATCH" ||
      absl::StartsWith(code, "INVALID_")) {
    return OutcomeKind::kPermanent;
  }
  if (code == "TIMESTAMP_NOT_FOUND") {
    return (ep == Endpoint::kGet || ep == Endpoint::kOts) ? OutcomeKind::kNotFound
                                                          : OutcomeKind::kPermanent;
  }
  if (code == "OTS_NOT_FOUND") return OutcomeKind::kNotFound;
  if (code == "MONTHLY_LIMIT_REACHED") return OutcomeKind::kQuotaExhausted;
  if (code == "IDEMPOTENCY_IN_PROGRESS" || code == "OTS_PROVIDER_ERROR" ||
      code == "INTERNAL_ERROR") {
    return OutcomeKind::kRetry;
  }
  if (status >= 500 || status == 408) return OutcomeKind::kRetry;
  return OutcomeKind::kPermanent;  // other 4xx (and unexpected 1xx/3xx: a misconfigured URL)
}

// One HTTP exchange: the outcome (kOk for 2xx) and, for errors, what the envelope said.
struct Exchange {
  CallOutcome outcome;
  std::string body;  // 2xx body
  ErrorInfo error;
};

class ProofdProvider final : public Provider {
 public:
  ProofdProvider(const ProofdConfig& config, const ProofdDeps& deps)
      : config_(config),
        deps_(deps),
        wire_(config.name, config.api_key, deps.http, deps.metrics, deps.clock) {
    config_.base_url = internal::TrimTrailingSlashes(config_.base_url);
    if (deps_.clock == nullptr) deps_.clock = Clock::Real();
  }

  const std::string& name() const override { return config_.name; }

  absl::StatusOr<PreparedCreate> PrepareCreate(const CreateInput& input) const override {
    if (auto s = ValidateFilename(input.filename, "filename"); !s.ok()) return s;
    if (auto s = ValidateSize(input.size_bytes, "size_bytes"); !s.ok()) return s;
    if (auto s = ValidateMimeType(input.mime_type, "mime_type"); !s.ok()) return s;
    PreparedCreate p;
    p.digest = input.digest;
    // ordered_json keeps the documented key order, and dump() has no whitespace: the same input
    // always gives the same bytes, hence the same idempotency key.
    nlohmann::ordered_json body;
    body["sha256_hash"] = p.digest.hex();
    body["filename"] = input.filename;
    body["file_size_bytes"] = input.size_bytes;
    if (!input.mime_type.empty()) body["file_type"] = input.mime_type;
    try {
      p.body = body.dump();
    } catch (const nlohmann::json::exception&) {
      return absl::InvalidArgumentError("filename: must be valid UTF-8");
    }
    p.idempotency_key = ProofdIdempotencyKey(config_.api_key, p.body);
    return p;
  }

  CreateResult Create(const PreparedCreate& request) override {
    CreateResult result;
    const Digest& digest = request.digest;
    if (request.body.empty() || request.idempotency_key.empty() ||
        request.idempotency_key.size() > 200) {
      result.outcome.kind = OutcomeKind::kPermanent;
      result.outcome.code = "INVALID_REQUEST";
      result.outcome.message = "prepared create is incomplete (digest, body or idempotency key)";
      return result;
    }
    Exchange ex = Send(Endpoint::kCreate, "POST", "/api/v1/timestamps", request.body,
                       request.idempotency_key);
    if (ex.outcome.kind == OutcomeKind::kOk) {
      json j = json::parse(ex.body, nullptr, false);
      if (j.is_discarded()) {
        result.outcome = Malformed(Endpoint::kCreate, ex.outcome, "body is not JSON");
        return result;
      }
      auto rec = ParseRecord(j, &digest, "");
      if (!rec.ok()) {
        result.outcome = Malformed(Endpoint::kCreate, ex.outcome, rec.status().message());
        return result;
      }
      result.outcome = ex.outcome;
      result.record = *std::move(rec);
      return result;
    }
    if (ex.outcome.code == "DUPLICATE_TIMESTAMP") {
      return ResolveDuplicate(digest, ex);
    }
    result.outcome = ex.outcome;
    return result;
  }

  LookupResult Lookup(const ProofRef& ref) override { return LookupById(ref.proof_id); }

  LookupResult LookupById(const std::string& proof_id) {
    LookupResult result;
    if (!IsUuid(proof_id)) {
      result.outcome = LocalInvalidId();
      return result;
    }
    Exchange ex =
        Send(Endpoint::kGet, "GET", absl::StrCat("/api/v1/timestamps/", proof_id), "", "");
    if (ex.outcome.kind != OutcomeKind::kOk) {
      result.outcome = ex.outcome;
      return result;
    }
    json j = json::parse(ex.body, nullptr, false);
    if (j.is_discarded()) {
      result.outcome = Malformed(Endpoint::kGet, ex.outcome, "body is not JSON");
      return result;
    }
    auto rec = ParseRecord(j, nullptr, proof_id);
    if (!rec.ok()) {
      result.outcome = Malformed(Endpoint::kGet, ex.outcome, rec.status().message());
      return result;
    }
    result.outcome = ex.outcome;
    result.record = *std::move(rec);
    return result;
  }

  bool SupportsListPending() const override { return true; }

  ListPendingResult ListPending(const std::string& cursor, int limit) override {
    ListPendingResult result;
    limit = std::clamp(limit, 1, kListPageMax);
    std::string path = absl::StrCat("/api/v1/timestamps?status=pending&limit=", limit);
    if (!cursor.empty()) absl::StrAppend(&path, "&before=", PercentEncode(cursor));
    Exchange ex = Send(Endpoint::kList, "GET", path, "", "");
    if (ex.outcome.kind != OutcomeKind::kOk) {
      result.outcome = ex.outcome;
      return result;
    }
    auto page = ParsePage(ex.body);
    if (!page.ok()) {
      result.outcome = Malformed(Endpoint::kList, ex.outcome, page.status().message());
      return result;
    }
    for (const json& item : page->data) {
      auto rec = ParseRecord(item, nullptr, "");
      if (!rec.ok()) {
        ANCHORD_LOG(Warning) << config_.name << " list: skipping invalid record ("
                             << rec.status().message() << ") request_id=" << ex.outcome.request_id;
        continue;
      }
      result.records.push_back(*std::move(rec));
    }
    result.next_cursor = page->next_cursor;
    result.outcome = ex.outcome;
    return result;
  }

  DownloadResult DownloadProof(const ProofRef& ref) override {
    const std::string& proof_id = ref.proof_id;
    DownloadResult result;
    if (!IsUuid(proof_id)) {
      result.outcome = LocalInvalidId();
      return result;
    }
    Exchange ex =
        Send(Endpoint::kOts, "GET", absl::StrCat("/api/v1/timestamps/", proof_id, "/ots"), "", "");
    if (ex.outcome.kind != OutcomeKind::kOk) {
      result.outcome = ex.outcome;
      return result;
    }
    if (!absl::StartsWith(ex.body, kOtsMagic)) {
      result.outcome = Malformed(Endpoint::kOts, ex.outcome, "body is not an .ots file");
      return result;
    }
    result.outcome = ex.outcome;
    result.ots = std::move(ex.body);
    return result;
  }

  void Stop() override {
    if (deps_.create_limiter != nullptr) deps_.create_limiter->Stop();
    if (deps_.general_limiter != nullptr) deps_.general_limiter->Stop();
  }

 private:
  struct Page {
    std::vector<json> data;
    std::string next_cursor;
  };

  static absl::StatusOr<Page> ParsePage(const std::string& body) {
    json j = json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      return absl::InvalidArgumentError("body is not a JSON object");
    auto data = j.find("data");
    if (data == j.end() || !data->is_array()) return absl::InvalidArgumentError("data: missing");
    Page page;
    page.data.assign(data->begin(), data->end());
    auto next = j.find("next_cursor");
    if (next != j.end() && !next->is_null()) {
      if (!next->is_string()) return absl::InvalidArgumentError("next_cursor: not a string");
      page.next_cursor = next->get<std::string>();
      if (page.next_cursor.size() > 256) return absl::InvalidArgumentError("next_cursor: too long");
    }
    return page;
  }

  CallOutcome LocalInvalidId() const {
    CallOutcome o;
    o.kind = OutcomeKind::kPermanent;
    o.code = "INVALID_ID";
    o.message = "proof id is not a UUID; not sent";
    return o;
  }

  CallOutcome Malformed(Endpoint ep, const CallOutcome& base, absl::string_view why) const {
    return wire_.Malformed(EndpointLabel(ep), base, why);
  }

  // A 429 or an exhausted budget closes the create gate for a create, and always the general
  // gate (every request counts there).
  ratelimit::RateLimiter* CreateGate(Endpoint ep) const {
    return ep == Endpoint::kCreate ? deps_.create_limiter : nullptr;
  }

  // X-RateLimit-Remaining: 0 closes the gate until X-RateLimit-Reset.
  void ApplyRateLimitHeaders(Endpoint ep, const http::HttpResponse& resp) {
    int64_t remaining = -1;
    if (!absl::SimpleAtoi(resp.Header("x-ratelimit-remaining"), &remaining) || remaining != 0) {
      return;
    }
    const absl::Time now = deps_.clock->Now();
    const std::optional<absl::Time> until =
        internal::RateLimitReset(resp.Header("x-ratelimit-reset"), now);
    // Which bucket the headers describe is not documented (the sandbox reports the tightest one),
    // so an exhausted answer to a create closes both gates: a poll never runs into a 429 because
    // the general bucket was the one at zero.
    if (until && *until > now) {
      wire_.CloseGateUntil(*until, {CreateGate(ep), deps_.general_limiter});
    }
  }

  Exchange Send(Endpoint ep, const std::string& method, const std::string& path,
                const std::string& body, const std::string& idempotency_key) {
    // One request in flight per adapter: a 429 closes the gate before the next request leaves,
    // so no request of this process is ever sent past a Retry-After it was given (concurrent
    // requests would already be on the wire). The documented limits (at most 2 requests a second
    // per key) leave ample room for sequential loopback-to-provider round trips.
    absl::MutexLock in_flight(&send_mu_);
    Exchange ex;
    CallOutcome& o = ex.outcome;
    if (!wire_.Pace(CreateGate(ep), "create") || !wire_.Pace(deps_.general_limiter, "general")) {
      o = Wire::Cancelled();
      return ex;
    }
    http::HttpRequest req;
    req.method = method;
    req.url = config_.base_url + path;
    req.timeout = config_.request_timeout;
    req.headers.emplace_back("Authorization", "Bearer " + config_.api_key);
    req.headers.emplace_back("Accept", ep == Endpoint::kOts
                                           ? "application/octet-stream, application/json"
                                           : "application/json");
    if (method == "POST") req.headers.emplace_back("Content-Type", "application/json");
    if (!idempotency_key.empty()) req.headers.emplace_back("Idempotency-Key", idempotency_key);
    req.body = body;

    std::optional<http::HttpResponse> resp = wire_.Do(EndpointLabel(ep), req, &o);
    if (!resp) return ex;
    ApplyRateLimitHeaders(ep, *resp);

    if (resp->status >= 200 && resp->status < 300) {
      o.kind = OutcomeKind::kOk;
      ex.body = std::move(resp->body);
      return ex;
    }

    ex.error = ParseErrorBody(resp->body);
    if (o.request_id.empty()) o.request_id = wire_.Redact(Printable(ex.error.request_id, 128));
    o.code = ex.error.code.empty() ? absl::StrCat("HTTP_", resp->status) : ex.error.code;
    o.kind = Classify(resp->status, ex.error.code, ep);
    o.message = wire_.Redact(ex.error.message.empty() ? absl::StrCat("HTTP ", resp->status)
                                                      : ex.error.message);
    if (o.kind == OutcomeKind::kRateLimited) {
      o.retry_after =
          wire_.CloseGate(*resp, kDefaultRetryAfter, {CreateGate(ep), deps_.general_limiter});
    } else if (o.kind == OutcomeKind::kRetry) {
      // A hint for IDEMPOTENCY_IN_PROGRESS / 503; the caller's backoff applies otherwise.
      o.retry_after = wire_.RetryHint(*resp);
    }
    // Duplicates are expected on replays and not-yet-available proofs are routine.
    const bool routine = o.code == "DUPLICATE_TIMESTAMP" || o.kind == OutcomeKind::kNotFound;
    if (routine) {
      ANCHORD_LOG(Info) << config_.name << " " << EndpointLabel(ep) << ": HTTP " << o.http_status
                        << " " << o.code << " request_id=" << o.request_id;
    } else {
      ANCHORD_LOG(Warning) << config_.name << " " << EndpointLabel(ep) << ": HTTP " << o.http_status
                           << " " << o.code << " (" << OutcomeKindName(o.kind) << "): " << o.message
                           << " request_id=" << o.request_id;
    }
    return ex;
  }

  // 409 DUPLICATE_TIMESTAMP: the account already holds this hash. The original record is found
  // by the id the error names (if any), else by walking the account's list newest first.
  CreateResult ResolveDuplicate(const Digest& digest, const Exchange& dup) {
    CreateResult result;
    auto duplicate = [&](ProviderRecord rec) {
      result.outcome = dup.outcome;
      result.outcome.kind = OutcomeKind::kDuplicate;
      result.outcome.message = absl::StrCat("hash already anchored as ", rec.proof_id);
      result.record = std::move(rec);
      return result;
    };
    auto retry = [&](const CallOutcome& cause, absl::string_view why) {
      result.outcome = cause;
      // A rate-limited step keeps its kind so the caller honours retry_after.
      if (cause.kind != OutcomeKind::kRateLimited) result.outcome.kind = OutcomeKind::kRetry;
      result.outcome.message =
          wire_.Redact(absl::StrCat("resolving duplicate: ", why, ": ", cause.message));
      ANCHORD_LOG(Warning) << config_.name << " create: " << result.outcome.message
                           << " request_id=" << cause.request_id;
      return result;
    };

    if (!dup.error.existing_id.empty()) {
      LookupResult lr = LookupById(dup.error.existing_id);
      if (lr.outcome.kind == OutcomeKind::kOk && lr.record && lr.record->digest == digest) {
        return duplicate(*lr.record);
      }
      if (lr.outcome.kind == OutcomeKind::kRetry || lr.outcome.kind == OutcomeKind::kRateLimited ||
          lr.outcome.kind == OutcomeKind::kQuotaExhausted) {
        return retry(lr.outcome, "lookup of the named record failed");
      }
      ANCHORD_LOG(Warning) << config_.name << " create: 409 named record " << dup.error.existing_id
                           << " does not hold this hash (" << lr.outcome.code
                           << "); walking the list";
    }

    std::string cursor;
    for (int page_no = 0; page_no < kMaxDuplicatePages; ++page_no) {
      std::string path = "/api/v1/timestamps?status=all&limit=50";
      if (!cursor.empty()) absl::StrAppend(&path, "&before=", PercentEncode(cursor));
      Exchange ex = Send(Endpoint::kList, "GET", path, "", "");
      if (ex.outcome.kind != OutcomeKind::kOk) return retry(ex.outcome, "list failed");
      auto page = ParsePage(ex.body);
      if (!page.ok()) {
        return retry(Malformed(Endpoint::kList, ex.outcome, page.status().message()),
                     "list page malformed");
      }
      for (const json& item : page->data) {
        if (!absl::EqualsIgnoreCase(StringField(item, "sha256_hash"), digest.hex())) continue;
        auto rec = ParseRecord(item, &digest, "");
        if (rec.ok()) return duplicate(*std::move(rec));
        ANCHORD_LOG(Warning) << config_.name << " list: record for the hash is invalid ("
                             << rec.status().message() << ") request_id=" << ex.outcome.request_id;
      }
      // A cursor that does not move would loop forever.
      if (page->next_cursor.empty() || page->next_cursor == cursor) break;
      cursor = page->next_cursor;
    }
    CallOutcome notfound = dup.outcome;
    notfound.message = "no record with this hash in the account's list";
    return retry(notfound, "original not found");
  }

  ProofdConfig config_;
  ProofdDeps deps_;
  Wire wire_;
  // Held for a whole exchange (see Send); guards no data, only the order of requests.
  absl::Mutex send_mu_;
};

}  // namespace

std::unique_ptr<Provider> MakeProofdProvider(const ProofdConfig& config, const ProofdDeps& deps) {
  return std::make_unique<ProofdProvider>(config, deps);
}

std::string ProofdIdempotencyKey(const std::string& api_key, const std::string& body) {
  const std::string input =
      absl::StrCat("anchord-idempotency-v1\n", SecretFingerprint(api_key), "\n", body);
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(input.data()), input.size(), md);
  return absl::StrCat("anchord-",
                      HexEncode(absl::string_view(reinterpret_cast<const char*>(md), 20)));
}

}  // namespace anchord::providers
