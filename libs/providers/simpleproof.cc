#include "libs/providers/simpleproof.h"

#include <algorithm>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/str_split.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"
#include "libs/common/secret.h"
#include "libs/providers/adapter_common.h"
#include "libs/providers/simpleproof_answers.h"

namespace anchord::providers {
namespace {

using json = nlohmann::json;
using internal::Wire;
using simpleproof::Cursor;
using simpleproof::FormatCursor;
using simpleproof::kListLimitMax;
using simpleproof::kPendingStatuses;
using simpleproof::ParseCursor;
using simpleproof::ParseFiles;
using simpleproof::ParseVerification;
using simpleproof::Verification;

constexpr char kCreate[] = "create";
constexpr char kVerify[] = "verify";
constexpr char kList[] = "list";
constexpr char kOts[] = "ots";

OutcomeKind Classify(int status, const char* endpoint) {
  if (status == 429) return OutcomeKind::kRateLimited;
  // Not documented: 402 Payment Required is the reasonable way to say the credit is spent.
  if (status == 402) return OutcomeKind::kQuotaExhausted;
  // The sandbox answers an unknown hash with totalDocuments 0; a 404 means the same.
  if (status == 404 && endpoint == kVerify) return OutcomeKind::kNotFound;
  if (status == 408 || status >= 500) return OutcomeKind::kRetry;
  return OutcomeKind::kPermanent;  // 400, 401 (documented), 403 and any other 4xx
}

class SimpleProofProvider final : public Provider {
 public:
  SimpleProofProvider(const SimpleProofConfig& config, const SimpleProofDeps& deps)
      : config_(config),
        deps_(deps),
        wire_(config.name, config.api_key, deps.http, deps.metrics,
              deps.clock != nullptr ? deps.clock : Clock::Real()) {
    config_.base_url = internal::TrimTrailingSlashes(config_.base_url);
    config_.batch_size = std::clamp(config_.batch_size, 1, kSimpleProofMaxBatch);
    if (deps_.clock == nullptr) deps_.clock = Clock::Real();
  }

  const std::string& name() const override { return config_.name; }
  int max_batch() const override { return config_.batch_size; }

  // The body is this digest's part of the batch body: its entry in `hashes`. Name, size and type
  // are not sent (the hashes endpoint takes none).
  absl::StatusOr<PreparedCreate> PrepareCreate(const CreateInput& input) const override {
    return internal::PrepareDigestOnly(input);
  }

  CreateResult Create(const PreparedCreate& request) override {
    return CreateBatch({request}).front();
  }

  std::vector<CreateResult> CreateBatch(const std::vector<PreparedCreate>& requests) override {
    std::vector<CreateResult> out(requests.size());
    // Digest -> the inputs naming it (a digest twice in one batch is sent once).
    std::map<Digest, std::vector<size_t>> wanted;
    std::vector<Digest> order;  // digests in input order
    std::set<Digest> check_first;
    for (size_t i = 0; i < requests.size(); ++i) {
      std::optional<internal::DigestOnly> checked =
          internal::CheckDigestOnly(requests[i], &out[i].outcome);
      if (!checked) continue;
      const Digest& digest = requests[i].digest;
      auto [it, added] = wanted.try_emplace(digest);
      it->second.push_back(i);
      if (added) order.push_back(digest);
      if (requests[i].maybe_sent) check_first.insert(digest);
    }
    auto settle = [&](const Digest& digest, const CreateResult& r) {
      for (size_t i : wanted[digest]) out[i] = r;
    };
    std::optional<CallOutcome> stop;  // set once a 429 (or Stop) ends the batch early
    auto stopped = [&](const Digest& digest) {
      CreateResult r;
      r.outcome = *stop;
      settle(digest, r);
    };

    // Requests that may have arrived before: SimpleProof charges per hash and has no idempotency
    // key, so ask whether the account already holds each before spending a unit on it again.
    std::vector<Digest> to_send;
    for (const Digest& digest : order) {
      if (stop) {
        stopped(digest);
        continue;
      }
      if (!check_first.count(digest)) {
        to_send.push_back(digest);
        continue;
      }
      Exchange ex;
      auto held = Verify(digest, &ex);
      if (!held.ok()) {
        CreateResult r;
        r.outcome = ex.outcome;
        if (r.outcome.kind == OutcomeKind::kNotFound) {
          to_send.push_back(digest);  // a 404 verification: not held
          continue;
        }
        if (r.outcome.kind == OutcomeKind::kRateLimited || r.outcome.code == "CANCELLED") {
          stop = r.outcome;
        }
        settle(digest, r);
        continue;
      }
      if (!held->has_value()) {
        to_send.push_back(digest);
        continue;
      }
      CreateResult r;
      r.outcome = ex.outcome;
      r.outcome.kind = OutcomeKind::kOk;
      r.outcome.message = "the account already holds this hash (an earlier send arrived); not sent";
      r.record = (*held)->record;
      ANCHORD_LOG(Info) << config_.name << " create: " << digest.hex()
                        << " already held by the account; not sent again";
      settle(digest, r);
    }

    for (size_t start = 0; start < to_send.size(); start += config_.batch_size) {
      const size_t end = std::min(to_send.size(), start + config_.batch_size);
      std::vector<Digest> chunk(to_send.begin() + start, to_send.begin() + end);
      if (stop) {
        for (const Digest& d : chunk) stopped(d);
        continue;
      }
      SendChunk(chunk, settle, &stop);
    }
    return out;
  }

  LookupResult Lookup(const ProofRef& ref) override {
    LookupResult result;
    const Digest& digest = ref.digest;
    Exchange ex;
    auto v = Verify(digest, &ex);
    if (!v.ok()) {
      result.outcome = ex.outcome;
      return result;
    }
    if (!v->has_value()) {
      result.outcome = ex.outcome;
      result.outcome.kind = OutcomeKind::kNotFound;
      result.outcome.code = "NOT_FOUND";
      result.outcome.message = "the account holds no document with this hash";
      return result;
    }
    Verification& ver = **v;
    if (ver.record.state == RecordState::kConfirmed) {
      // The download URL expires 1800 s after the verification: fetch the evidence now, while
      // it is valid, rather than leaving it to a later download round.
      DownloadResult d = FetchOts(ver.ots_url, digest, ex.outcome);
      if (d.outcome.kind != OutcomeKind::kOk) {
        result.outcome = d.outcome;
        return result;
      }
      auto file = internal::ParseEvidence(d.ots, digest);  // validated in FetchOts already
      if (file.ok()) ver.record.block_height = internal::LowestBitcoinHeight(*file);
      ver.record.evidence = std::move(d.ots);
    }
    result.outcome = ex.outcome;
    result.record = std::move(ver.record);
    return result;
  }

  bool SupportsListPending() const override { return true; }

  ListPendingResult ListPending(const std::string& cursor, int limit) override {
    ListPendingResult result;
    Cursor c;
    c.limit = std::clamp(limit, 1, kListLimitMax);
    if (!cursor.empty()) {
      auto parsed = ParseCursor(cursor);
      if (!parsed.ok()) {
        result.outcome = LocalInvalid("INVALID_CURSOR", std::string(parsed.status().message()));
        return result;
      }
      c = *parsed;  // the page size stays that of the walk's first page
    }
    const std::string path = absl::StrCat("/api/proof/document?status=", kPendingStatuses[c.status],
                                          "&page=", c.page, "&limit=", c.limit);
    Exchange ex = Send(kList, "GET", path, "");
    if (ex.outcome.kind != OutcomeKind::kOk) {
      result.outcome = ex.outcome;
      return result;
    }
    auto page = simpleproof::ParseDocumentPage(ex.body);
    if (!page.ok()) {
      result.outcome = wire_.Malformed(kList, ex.outcome, page.status().message());
      return result;
    }
    for (const std::string& why : page->invalid) {
      ANCHORD_LOG(Warning) << config_.name << " list: skipping invalid document ("
                           << wire_.Redact(why) << ")";
    }
    result.records = std::move(page->pending);
    // The next page of this status while there is one; then the next status; then the end.
    // An empty page ends a status whatever totalPages says, so a lying count cannot loop.
    const bool more_here = page->documents > 0 && c.page + 1 < config_.max_list_pages &&
                           (page->total_pages >= 0 ? c.page + 1 < page->total_pages
                                                   : static_cast<int>(page->documents) >= c.limit);
    if (more_here) {
      Cursor next = c;
      ++next.page;
      result.next_cursor = FormatCursor(next);
    } else if (c.status + 1 < 2) {
      Cursor next = c;
      ++next.status;
      next.page = 0;
      result.next_cursor = FormatCursor(next);
    }
    result.outcome = ex.outcome;
    return result;
  }

  DownloadResult DownloadProof(const ProofRef& ref) override {
    DownloadResult result;
    const Digest& digest = ref.digest;
    // A download URL lives 1800 s: every download starts from a fresh verification.
    Exchange ex;
    auto v = Verify(digest, &ex);
    if (!v.ok()) {
      result.outcome = ex.outcome;
      return result;
    }
    if (!v->has_value() || (*v)->record.state != RecordState::kConfirmed) {
      result.outcome = ex.outcome;
      result.outcome.kind = OutcomeKind::kNotFound;
      result.outcome.code = v->has_value() ? "OTS_NOT_READY" : "NOT_FOUND";
      result.outcome.message = v->has_value() ? "not confirmed yet: no .ots"
                                              : "the account holds no document with this hash";
      return result;
    }
    return FetchOts((*v)->ots_url, digest, ex.outcome);
  }

  absl::StatusOr<Digest> ParseCallback(const std::string& body) const override {
    return simpleproof::ParseCallback(body);
  }

  void Stop() override {
    if (deps_.limiter != nullptr) deps_.limiter->Stop();
  }

 private:
  struct Exchange {
    CallOutcome outcome;
    std::string body;  // 2xx body
  };

  static CallOutcome LocalInvalid(const char* code, std::string message) {
    CallOutcome o;
    o.kind = OutcomeKind::kPermanent;
    o.code = code;
    o.message = std::move(message);
    return o;
  }

  // POST /proof/verification for one digest: nullopt when the account does not hold it. Errors
  // leave their outcome in *ex (a malformed answer is logged and kRetry).
  absl::StatusOr<std::optional<Verification>> Verify(const Digest& digest, Exchange* ex) {
    nlohmann::ordered_json body;
    body["hash"] = digest.hex();
    *ex = Send(kVerify, "POST", "/proof/verification", body.dump());
    if (ex->outcome.kind != OutcomeKind::kOk) {
      return absl::UnavailableError(ex->outcome.code);
    }
    auto v = ParseVerification(ex->body, digest);
    if (!v.ok()) {
      ex->outcome = wire_.Malformed(kVerify, ex->outcome, v.status().message());
      return absl::UnavailableError("malformed");
    }
    return v;
  }

  template <typename Settle>
  void SendChunk(const std::vector<Digest>& chunk, Settle& settle,
                 std::optional<CallOutcome>* stop) {
    std::vector<std::string> hashes;
    hashes.reserve(chunk.size());
    for (const Digest& d : chunk) hashes.push_back(d.hex());
    nlohmann::ordered_json body;
    if (!config_.callback_url.empty()) body["callback_url"] = config_.callback_url;
    body["hashes"] = hashes;
    Exchange ex = Send(kCreate, "POST", "/api/proof/timestamp/hashes", body.dump());
    if (ex.outcome.kind != OutcomeKind::kOk) {
      if (ex.outcome.kind == OutcomeKind::kRateLimited || ex.outcome.code == "CANCELLED") {
        *stop = ex.outcome;
      }
      CreateResult r;
      r.outcome = ex.outcome;
      for (const Digest& d : chunk) settle(d, r);
      return;
    }
    auto files = ParseFiles(ex.body);
    if (!files.ok()) {
      CreateResult r;
      r.outcome = wire_.Malformed(kCreate, ex.outcome, files.status().message());
      for (const Digest& d : chunk) settle(d, r);
      return;
    }
    std::set<std::string> sent(hashes.begin(), hashes.end());
    for (const std::string& f : *files) {
      if (!sent.count(f)) {
        ANCHORD_LOG(Error) << config_.name << " create: answer lists a hash that was not sent ("
                           << f << "); ignored";
      }
    }
    for (const Digest& d : chunk) {
      CreateResult r;
      r.outcome = ex.outcome;
      if (files->count(d.hex())) {
        // The answer carries no document id: the digest is the proof id (verification, listing
        // and callbacks all name documents by hash).
        ProviderRecord rec;
        rec.proof_id = d.hex();
        rec.digest = d;
        rec.state = RecordState::kPending;
        r.record = std::move(rec);
      } else {
        r.outcome.kind = OutcomeKind::kRetry;
        r.outcome.code = "MISSING_FROM_ANSWER";
        r.outcome.message = "the answer's files do not list this hash";
        ANCHORD_LOG(Warning) << config_.name << " create: " << d.hex()
                             << " missing from the answer's files; will retry";
      }
      settle(d, r);
    }
  }

  // Downloads and validates the .ots behind a verification's download URL. The URL is a
  // pre-signed storage URL on another host: the access token is not sent there.
  DownloadResult FetchOts(const std::string& url, const Digest& digest, const CallOutcome& base) {
    DownloadResult result;
    if (url.empty()) {
      result.outcome = wire_.Malformed(kVerify, base, "confirmed without an ots_download_url");
      return result;
    }
    http::HttpRequest req;
    req.method = "GET";
    req.url = url;
    req.timeout = config_.request_timeout;
    req.headers.emplace_back("Accept", "application/octet-stream");
    CallOutcome o;
    std::optional<http::HttpResponse> resp = wire_.Do(kOts, req, &o);
    if (!resp) {
      result.outcome = o;
      return result;
    }
    if (resp->status != 200) {
      // An expired or revoked URL (the sandbox answers 403 like S3; a 404 means the same): a
      // fresh verification gives a new one.
      o.kind = OutcomeKind::kRetry;
      o.code = absl::StrCat("OTS_DOWNLOAD_HTTP_", resp->status);
      o.message = "the .ots download URL did not answer 200 (expired?); retry with a new one";
      ANCHORD_LOG(Warning) << config_.name << " ots: HTTP " << resp->status << "; will retry";
      result.outcome = o;
      return result;
    }
    if (resp->body.size() > config_.max_ots_bytes) {
      result.outcome = wire_.Malformed(kOts, o, "the .ots is larger than the bound");
      return result;
    }
    auto file = internal::ParseEvidence(resp->body, digest);
    if (!file.ok()) {
      result.outcome = wire_.Malformed(kOts, o, file.status().message());
      return result;
    }
    o.kind = OutcomeKind::kOk;
    result.outcome = o;
    result.ots = std::move(resp->body);
    return result;
  }

  Exchange Send(const char* endpoint, const char* method, const std::string& path,
                std::string body) {
    // One request in flight per adapter: a 429 closes the gate before the next request leaves.
    absl::MutexLock in_flight(&send_mu_);
    Exchange ex;
    CallOutcome& o = ex.outcome;
    if (!wire_.Pace(deps_.limiter, "general")) {
      o = Wire::Cancelled();
      return ex;
    }
    http::HttpRequest req;
    req.method = method;
    req.url = config_.base_url + path;
    req.timeout = config_.request_timeout;
    req.headers.emplace_back("x-access-token", config_.api_key);
    req.headers.emplace_back("Accept", "application/json");
    if (std::string(method) == "POST") req.headers.emplace_back("Content-Type", "application/json");
    req.body = std::move(body);
    std::optional<http::HttpResponse> resp = wire_.Do(endpoint, req, &o);
    if (!resp) return ex;
    if (resp->status >= 200 && resp->status < 300) {
      o.kind = OutcomeKind::kOk;
      ex.body = std::move(resp->body);
      return ex;
    }
    std::string msg;
    json j = json::parse(resp->body, nullptr, false);
    if (!j.is_discarded() && j.is_object()) {
      for (const char* k : {"msg", "message", "error"}) {
        if (msg.empty() && j.contains(k) && j[k].is_string()) msg = j[k].get<std::string>();
      }
    }
    o.kind = Classify(resp->status, endpoint);
    o.code = absl::StrCat("HTTP_", resp->status);
    o.message = wire_.Redact(msg.empty() ? absl::StrCat("HTTP ", resp->status) : msg);
    if (o.kind == OutcomeKind::kRateLimited) {
      // The document names no Retry-After; the sandbox sends delta seconds, an HTTP-date is read
      // too, and without either the configured default applies.
      o.code = "RATE_LIMITED";
      o.retry_after = wire_.CloseGate(*resp, config_.default_retry_after, {deps_.limiter});
    } else if (o.kind == OutcomeKind::kRetry) {
      o.retry_after = wire_.RetryHint(*resp);
    }
    ANCHORD_LOG(Warning) << config_.name << " " << endpoint << ": HTTP " << o.http_status << " "
                         << o.code << " (" << OutcomeKindName(o.kind) << "): " << o.message
                         << " request_id=" << o.request_id << " account "
                         << SecretFingerprint(config_.api_key);
    return ex;
  }

  SimpleProofConfig config_;
  SimpleProofDeps deps_;
  Wire wire_;
  // Held for a whole exchange (see Send); guards no data, only the order of requests.
  absl::Mutex send_mu_;
};

}  // namespace

std::unique_ptr<Provider> MakeSimpleProofProvider(const SimpleProofConfig& config,
                                                  const SimpleProofDeps& deps) {
  return std::make_unique<SimpleProofProvider>(config, deps);
}

}  // namespace anchord::providers
