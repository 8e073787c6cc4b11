#include "libs/providers/proofledger.h"

#include <deque>
#include <limits>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
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
using internal::Wire;

constexpr char kCreate[] = "create";
constexpr char kVerify[] = "verify";

// The document shows no id; the sandbox answers "pl_" + 24 lowercase hex. Any short token of
// [A-Za-z0-9_-] is accepted (UUIDs, numbers, prefixed ids), nothing that could carry a path or
// markup into the ledger or a log.
bool IsProofLedgerId(absl::string_view s) {
  if (s.empty() || s.size() > 128) return false;
  for (char c : s) {
    if (!(absl::ascii_isalnum(c) || c == '_' || c == '-')) return false;
  }
  return true;
}

// Optional string field: absent or null -> "" (ok), string -> value, anything else -> error.
absl::Status OptString(const json& j, const char* key, std::string* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_string()) return absl::InvalidArgumentError(absl::StrCat(key, ": not a string"));
  *out = it->get<std::string>();
  return absl::OkStatus();
}

// The first present key of `keys` (the document names none of these fields precisely).
absl::Status OptStringAny(const json& j, std::initializer_list<const char*> keys,
                          std::string* out) {
  for (const char* k : keys) {
    if (j.contains(k) && !j[k].is_null()) return OptString(j, k, out);
  }
  return absl::OkStatus();
}

absl::Status ParseState(const std::string& s, RecordState* state) {
  const std::string v = absl::AsciiStrToLower(s);
  if (v == "pending") {
    *state = RecordState::kPending;
  } else if (v == "confirmed") {
    *state = RecordState::kConfirmed;
  } else if (v == "failed") {
    *state = RecordState::kFailed;
  } else {
    return absl::InvalidArgumentError("status: not pending|confirmed|failed");
  }
  return absl::OkStatus();
}

// The fields both answers may carry: the hash (must be the one asked about), certificate_url,
// bitcoin_block, bitcoin_tx, times.
absl::Status ParseCommon(const json& j, const Digest& digest, ProviderRecord* r) {
  std::string hash;
  if (auto s = OptStringAny(j, {"sha256", "hash", "sha256_hash"}, &hash); !s.ok()) return s;
  if (!hash.empty()) {
    absl::StatusOr<Digest> answered = Digest::FromHex(hash, "sha256");
    if (!answered.ok()) return answered.status();
    if (*answered != digest)
      return absl::InvalidArgumentError("sha256: differs from the hash asked");
  }
  r->digest = digest;
  if (auto s = OptString(j, "certificate_url", &r->certificate_url); !s.ok()) return s;
  if (!r->certificate_url.empty() && !internal::IsHttpUrl(r->certificate_url)) {
    return absl::InvalidArgumentError("certificate_url: not an http(s) URL");
  }
  std::string verify_url;
  if (auto s = OptString(j, "verify_url", &verify_url); !s.ok()) return s;
  if (!verify_url.empty()) {
    if (!internal::IsHttpUrl(verify_url)) {
      return absl::InvalidArgumentError("verify_url: not an http(s) URL");
    }
    r->verify_url = verify_url;
  }
  auto block = j.find("bitcoin_block");
  if (block != j.end() && !block->is_null()) {
    if (block->is_number_unsigned()) {
      const uint64_t v = block->get<uint64_t>();
      if (v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return absl::InvalidArgumentError("bitcoin_block: out of range");
      }
      r->block_height = static_cast<int64_t>(v);
    } else if (block->is_number_integer()) {
      r->block_height = block->get<int64_t>();
      if (r->block_height < 0) return absl::InvalidArgumentError("bitcoin_block: negative");
    } else {
      return absl::InvalidArgumentError("bitcoin_block: not an integer or null");
    }
  }
  std::string tx;
  if (auto s = OptString(j, "bitcoin_tx", &tx); !s.ok()) return s;
  if (!tx.empty()) {
    r->bitcoin_tx = internal::NormalizeDigestHex(tx);  // a txid is 32 bytes of hex too
    if (r->bitcoin_tx.empty()) return absl::InvalidArgumentError("bitcoin_tx: not 64 hex");
  }
  std::string created;
  if (auto s = OptString(j, "created_at", &created); !s.ok()) return s;
  if (!created.empty()) {
    auto t = internal::ParseIsoTime(created);
    if (!t.ok()) return absl::InvalidArgumentError("created_at: not an ISO-8601 time");
    r->created_at = *t;
  }
  return absl::OkStatus();
}

// A create answer (201 new, or 200 duplicate) validated against the digest sent.
absl::StatusOr<ProviderRecord> ParseCreateAnswer(const json& j, const Digest& digest) {
  if (!j.is_object()) return absl::InvalidArgumentError("body is not a JSON object");
  ProviderRecord r;
  std::string dup;
  if (auto s = OptString(j, "duplicate_of", &dup); !s.ok()) return s;
  if (!dup.empty() && !IsProofLedgerId(dup)) {
    return absl::InvalidArgumentError("duplicate_of: not an id");
  }
  std::string id;
  if (auto s = OptString(j, "id", &id); !s.ok()) return s;
  if (!id.empty() && !IsProofLedgerId(id)) return absl::InvalidArgumentError("id: not an id");
  if (id.empty() && dup.empty()) return absl::InvalidArgumentError("id: missing");
  if (auto s = ParseCommon(j, digest, &r); !s.ok()) return s;
  std::string status;
  if (auto s = OptString(j, "status", &status); !s.ok()) return s;
  if (!status.empty()) {
    if (auto s = ParseState(status, &r.state); !s.ok()) return s;
  }
  if (dup.empty()) {
    r.proof_id = id;
    return r;
  }
  // Duplicate. The sandbox answers with the original's own fields (id == duplicate_of). A
  // provider may instead answer with an id of its own for this request; then status and
  // certificate_url may describe that request rather than the original, and are not taken (the
  // document says to use duplicate_of to find the original's certificate).
  r.proof_id = dup;
  r.duplicate_of = dup;
  if (!id.empty() && id != dup) {
    r.state = RecordState::kPending;
    r.certificate_url.clear();
    r.verify_url.clear();
    r.block_height = 0;
    r.bitcoin_tx.clear();
    r.created_at = absl::InfinitePast();
  }
  return r;
}

// A verify answer validated against the digest asked about and the proof we hold.
absl::StatusOr<ProviderRecord> ParseVerifyAnswer(const json& j, const Digest& digest,
                                                 const std::string& expected_id) {
  if (!j.is_object()) return absl::InvalidArgumentError("body is not a JSON object");
  ProviderRecord r;
  if (auto s = ParseCommon(j, digest, &r); !s.ok()) return s;
  std::string id;
  if (auto s = OptStringAny(j, {"proof_id", "id"}, &id); !s.ok()) return s;
  if (!id.empty() && !IsProofLedgerId(id)) return absl::InvalidArgumentError("proof_id: not an id");
  if (!id.empty() && !expected_id.empty() && id != expected_id) {
    return absl::InvalidArgumentError("proof_id: differs from the proof held for this hash");
  }
  r.proof_id = id.empty() ? expected_id : id;
  if (r.proof_id.empty()) return absl::InvalidArgumentError("proof_id: missing");
  std::string status;
  if (auto s = OptString(j, "status", &status); !s.ok()) return s;
  auto verified = j.find("verified");
  if (verified != j.end() && !verified->is_null() && !verified->is_boolean()) {
    return absl::InvalidArgumentError("verified: not a boolean");
  }
  if (!status.empty()) {
    if (auto s = ParseState(status, &r.state); !s.ok()) return s;
  } else if (verified != j.end() && verified->is_boolean() && verified->get<bool>() &&
             r.block_height > 0) {
    // No status field: a verified hash with a block is confirmed.
    r.state = RecordState::kConfirmed;
  }
  std::string anchored;
  if (auto s = OptStringAny(j, {"anchored_at", "confirmed_at"}, &anchored); !s.ok()) return s;
  if (!anchored.empty()) {
    auto t = internal::ParseIsoTime(anchored);
    if (!t.ok()) return absl::InvalidArgumentError("anchored_at: not an ISO-8601 time");
    if (r.state == RecordState::kConfirmed) r.confirmed_at = *t;
  }
  return r;
}

// The error body: the sandbox sends {"error": "<message>"}; {"error": {"code","message"}},
// {"message"} and {"detail"} are accepted too.
struct ErrorInfo {
  std::string code;
  std::string message;
};

ErrorInfo ParseErrorBody(const std::string& body) {
  ErrorInfo info;
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return info;
  auto e = j.find("error");
  if (e != j.end() && e->is_string()) {
    info.message = e->get<std::string>();
  } else if (e != j.end() && e->is_object()) {
    if (e->contains("code") && (*e)["code"].is_string()) {
      info.code = internal::CleanCode((*e)["code"].get<std::string>());
    }
    if (e->contains("message") && (*e)["message"].is_string()) {
      info.message = (*e)["message"].get<std::string>();
    }
  }
  for (const char* k : {"message", "detail", "msg"}) {
    if (info.message.empty() && j.contains(k) && j[k].is_string()) {
      info.message = j[k].get<std::string>();
    }
  }
  if (info.code.empty() && j.contains("code") && j["code"].is_string()) {
    info.code = internal::CleanCode(j["code"].get<std::string>());
  }
  return info;
}

OutcomeKind Classify(int status, bool verify) {
  if (status == 429) return OutcomeKind::kRateLimited;
  if (verify && status == 404) return OutcomeKind::kNotFound;  // nobody anchored this hash
  // Not documented: 402 Payment Required is the reasonable way to say the plan's quota is spent.
  if (status == 402) return OutcomeKind::kQuotaExhausted;
  if (status == 408 || status >= 500) return OutcomeKind::kRetry;
  // 400/401/403 are the document's non-retryable group; other 4xx (and 1xx/3xx, a wrong URL)
  // cannot be fixed by retrying either.
  return OutcomeKind::kPermanent;
}

class ProofLedgerProvider final : public Provider {
 public:
  ProofLedgerProvider(const ProofLedgerConfig& config, const ProofLedgerDeps& deps)
      : config_(config),
        deps_(deps),
        wire_(config.name, config.api_key, deps.http, deps.metrics,
              deps.clock != nullptr ? deps.clock : Clock::Real()) {
    config_.base_url = internal::TrimTrailingSlashes(config_.base_url);
    if (deps_.clock == nullptr) deps_.clock = Clock::Real();
  }

  const std::string& name() const override { return config_.name; }

  absl::StatusOr<PreparedCreate> PrepareCreate(const CreateInput& input) const override {
    if (auto s = ValidateFilename(input.filename, "filename"); !s.ok()) return s;
    PreparedCreate p;
    p.digest = input.digest;
    // The document's payload, in its order; dump() is deterministic.
    nlohmann::ordered_json body;
    body["sha256"] = p.digest.hex();
    body["filename"] = input.filename;
    try {
      p.body = body.dump();
    } catch (const nlohmann::json::exception&) {
      return absl::InvalidArgumentError("filename: must be valid UTF-8");
    }
    return p;  // no idempotency key: ProofLedger has none, duplicate_of covers re-sends
  }

  CreateResult Create(const PreparedCreate& request) override {
    CreateResult result;
    const Digest& digest = request.digest;
    json sent = json::parse(request.body, nullptr, false);
    if (sent.is_discarded() || !sent.is_object() || !sent.contains("sha256") ||
        sent["sha256"] != digest.hex()) {
      result.outcome.kind = OutcomeKind::kPermanent;
      result.outcome.code = "INVALID_REQUEST";
      result.outcome.message = "prepared create is incomplete (digest or body); not sent";
      return result;
    }
    // maybe_sent needs no check first: a digest that arrived before is answered with
    // duplicate_of, and the provider creates no second anchor for it.
    http::HttpRequest req;
    req.method = "POST";
    req.url = config_.base_url + "/api/v1/proof";
    req.body = request.body;
    req.headers.emplace_back("Authorization", "Bearer " + config_.api_key);
    req.headers.emplace_back("Content-Type", "application/json");
    Exchange ex = Send(kCreate, std::move(req));
    if (ex.outcome.kind != OutcomeKind::kOk) {
      // A 409 (or any error) carrying duplicate_of is a duplicate answer too.
      json j = json::parse(ex.body, nullptr, false);
      if (ex.outcome.http_status > 0 && !j.is_discarded() && j.is_object() &&
          j.contains("duplicate_of") && j["duplicate_of"].is_string()) {
        return FromAnswer(j, digest, ex.outcome);
      }
      result.outcome = ex.outcome;
      return result;
    }
    json j = json::parse(ex.body, nullptr, false);
    if (j.is_discarded()) {
      result.outcome = wire_.Malformed(kCreate, ex.outcome, "body is not JSON");
      return result;
    }
    return FromAnswer(j, digest, ex.outcome);
  }

  LookupResult Lookup(const ProofRef& ref) override {
    LookupResult result;
    const Digest& digest = ref.digest;
    if (!ref.proof_id.empty() && !IsProofLedgerId(ref.proof_id)) {
      result.outcome.kind = OutcomeKind::kPermanent;
      result.outcome.code = "INVALID_ID";
      result.outcome.message = "proof id is not a ProofLedger id; not sent";
      return result;
    }
    http::HttpRequest req;
    req.method = "GET";
    req.url = PublicVerifyUrl(digest);
    // The verify endpoint is public: no Authorization header, so the key never travels there.
    Exchange ex = Send(kVerify, std::move(req));
    if (ex.outcome.kind != OutcomeKind::kOk) {
      result.outcome = ex.outcome;
      return result;
    }
    json j = json::parse(ex.body, nullptr, false);
    if (j.is_discarded()) {
      result.outcome = wire_.Malformed(kVerify, ex.outcome, "body is not JSON");
      return result;
    }
    auto rec = ParseVerifyAnswer(j, digest, ref.proof_id);
    if (!rec.ok()) {
      result.outcome = wire_.Malformed(kVerify, ex.outcome, rec.status().message());
      return result;
    }
    if (rec->verify_url.empty()) rec->verify_url = PublicVerifyUrl(digest);
    result.outcome = ex.outcome;
    result.record = *std::move(rec);
    return result;
  }

  bool SupportsListPending() const override { return false; }

  ListPendingResult ListPending(const std::string&, int) override {
    return internal::NoPendingList("ProofLedger has no list of pending records");
  }

  bool OffersOts() const override { return false; }

  DownloadResult DownloadProof(const ProofRef&) override {
    DownloadResult r;
    r.outcome.kind = OutcomeKind::kNotFound;
    r.outcome.code = "OTS_NOT_OFFERED";
    r.outcome.message = "ProofLedger gives no .ots file; its certificate_url is the evidence";
    return r;
  }

  int64_t LookupBudgetRemaining() const override {
    if (config_.verify_limit <= 0) return -1;
    absl::MutexLock lock(&budget_mu_);
    const absl::Time now = deps_.clock->Now();
    if (deps_.verify_limiter != nullptr && deps_.verify_limiter->blocked_until() > now) return 0;
    PruneLocked(now);
    int64_t left = config_.verify_limit - static_cast<int64_t>(verify_sent_.size());
    // The budget is per IP: other processes on this host spend it too, so the server's own count
    // (when it sends one) wins while it is current.
    if (server_remaining_ >= 0 && now < server_remaining_until_) {
      left = std::min(left, server_remaining_);
    }
    return std::max<int64_t>(left, 0);
  }

  void Stop() override {
    if (deps_.create_limiter != nullptr) deps_.create_limiter->Stop();
    if (deps_.verify_limiter != nullptr) deps_.verify_limiter->Stop();
  }

 private:
  struct Exchange {
    CallOutcome outcome;
    std::string body;  // 2xx body, or the error body
  };

  // Forgets verify requests that left the window.
  void PruneLocked(absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(budget_mu_) {
    while (!verify_sent_.empty() && verify_sent_.front() <= now - config_.verify_window) {
      verify_sent_.pop_front();
    }
  }

  std::string PublicVerifyUrl(const Digest& digest) const {
    return absl::StrCat(config_.base_url, "/api/v1/verify?hash=", digest.hex());
  }

  CreateResult FromAnswer(const json& j, const Digest& digest, const CallOutcome& base) {
    CreateResult result;
    auto rec = ParseCreateAnswer(j, digest);
    if (!rec.ok()) {
      result.outcome = wire_.Malformed(kCreate, base, rec.status().message());
      return result;
    }
    if (rec->verify_url.empty()) rec->verify_url = PublicVerifyUrl(digest);
    result.outcome = base;
    if (!rec->duplicate_of.empty()) {
      result.outcome.kind = OutcomeKind::kDuplicate;
      result.outcome.code = "DUPLICATE";
      result.outcome.message = absl::StrCat("hash already anchored as ", rec->duplicate_of);
      ANCHORD_LOG(Info) << config_.name << " create: HTTP " << base.http_status << " duplicate_of "
                        << rec->duplicate_of;
    } else {
      result.outcome.kind = OutcomeKind::kOk;
      result.outcome.code.clear();
      result.outcome.message.clear();
    }
    result.record = *std::move(rec);
    return result;
  }

  // Remembers the server's X-RateLimit-Remaining for the verify budget, when it sends one.
  void NoteVerifyHeaders(const http::HttpResponse& resp, absl::Time now) {
    int64_t remaining = -1;
    if (!absl::SimpleAtoi(resp.Header("x-ratelimit-remaining"), &remaining) || remaining < 0) {
      return;
    }
    const absl::Time until = internal::RateLimitReset(resp.Header("x-ratelimit-reset"), now)
                                 .value_or(now + config_.verify_window);
    absl::MutexLock lock(&budget_mu_);
    server_remaining_ = remaining;
    server_remaining_until_ = until;
  }

  Exchange Send(const char* endpoint, http::HttpRequest req) {
    const bool verify = endpoint == kVerify;
    ratelimit::RateLimiter* limiter = verify ? deps_.verify_limiter : deps_.create_limiter;
    // One request in flight per gate: a 429 closes the gate before the next request through it
    // leaves, so no request of this process is sent past a Retry-After it was given. Creates and
    // verifies have separate budgets and gates, so a long wait for the hourly verify budget does
    // not hold creates up.
    absl::MutexLock in_flight(verify ? &verify_mu_ : &create_mu_);
    Exchange ex;
    CallOutcome& o = ex.outcome;
    if (!wire_.Pace(limiter, endpoint)) {
      o = Wire::Cancelled();
      return ex;
    }
    req.timeout = config_.request_timeout;
    req.headers.emplace_back("Accept", "application/json");
    const absl::Time sent_at = deps_.clock->Now();
    if (verify && config_.verify_limit > 0) {
      absl::MutexLock lock(&budget_mu_);
      verify_sent_.push_back(sent_at);
      PruneLocked(sent_at);
    }
    std::optional<http::HttpResponse> resp = wire_.Do(endpoint, req, &o);
    if (!resp) return ex;
    if (verify) NoteVerifyHeaders(*resp, sent_at);
    if (resp->status >= 200 && resp->status < 300) {
      o.kind = OutcomeKind::kOk;
      ex.body = std::move(resp->body);
      return ex;
    }
    ErrorInfo err = ParseErrorBody(resp->body);
    o.kind = Classify(resp->status, verify);
    o.code = err.code.empty() ? absl::StrCat("HTTP_", resp->status) : err.code;
    o.message =
        wire_.Redact(err.message.empty() ? absl::StrCat("HTTP ", resp->status) : err.message);
    ex.body = std::move(resp->body);
    if (o.kind == OutcomeKind::kRateLimited) {
      o.retry_after = wire_.CloseGate(*resp, config_.default_retry_after, {limiter});
      if (verify) {
        absl::MutexLock lock(&budget_mu_);
        server_remaining_ = 0;
        server_remaining_until_ = sent_at + o.retry_after;
      }
    } else if (o.kind == OutcomeKind::kRetry) {
      o.retry_after = wire_.RetryHint(*resp);
    }
    if (o.kind == OutcomeKind::kNotFound) {
      ANCHORD_LOG(Info) << config_.name << " " << endpoint << ": HTTP " << o.http_status
                        << " (not anchored)";
    } else if (!(resp->status == 409 && ex.body.find("duplicate_of") != std::string::npos)) {
      ANCHORD_LOG(Warning) << config_.name << " " << endpoint << ": HTTP " << o.http_status << " "
                           << o.code << " (" << OutcomeKindName(o.kind) << "): " << o.message
                           << " request_id=" << o.request_id << " account "
                           << SecretFingerprint(config_.api_key);
    }
    return ex;
  }

  ProofLedgerConfig config_;
  ProofLedgerDeps deps_;
  Wire wire_;
  // Each held for a whole exchange through its gate (see Send); they guard no data.
  absl::Mutex create_mu_;
  absl::Mutex verify_mu_;
  mutable absl::Mutex budget_mu_;
  // Verify requests within the window.
  mutable std::deque<absl::Time> verify_sent_ ABSL_GUARDED_BY(budget_mu_);
  int64_t server_remaining_ ABSL_GUARDED_BY(budget_mu_) = -1;
  absl::Time server_remaining_until_ ABSL_GUARDED_BY(budget_mu_) = absl::InfinitePast();
};

}  // namespace

std::unique_ptr<Provider> MakeProofLedgerProvider(const ProofLedgerConfig& config,
                                                  const ProofLedgerDeps& deps) {
  return std::make_unique<ProofLedgerProvider>(config, deps);
}

}  // namespace anchord::providers
