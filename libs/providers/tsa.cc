#include "libs/providers/tsa.h"

#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"
#include "libs/digest/digest.h"
#include "libs/providers/adapter_common.h"
#include "libs/tsa/tsa.h"

namespace anchord::providers {
namespace {

using internal::PacedHost;
using internal::Wire;

constexpr char kEndpoint[] = "timestamp";

std::string HostOf(const std::string& url) {
  size_t start = url.find("://");
  start = start == std::string::npos ? 0 : start + 3;
  size_t end = url.find_first_of("/?#", start);
  return url.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

class TsaProvider final : public Provider {
 public:
  TsaProvider(const TsaConfig& config, const TsaDeps& deps)
      : config_(config),
        deps_(deps),
        wire_(config.name, config.authorization, deps.http, deps.metrics,
              deps.clock != nullptr ? deps.clock : Clock::Real()) {
    if (deps_.clock == nullptr) deps_.clock = Clock::Real();
    for (const std::string& url : config_.urls) {
      hosts_[url] = std::make_unique<PacedHost>(ratelimit::MakeLimiter(
          deps_.limiters, absl::StrCat(config_.name, ".", url), config_.limit, deps_.clock));
    }
  }

  const std::string& name() const override { return config_.name; }

  // The request itself carries a fresh nonce per send, so only the digest is frozen.
  absl::StatusOr<PreparedCreate> PrepareCreate(const CreateInput& input) const override {
    return internal::PrepareDigestOnly(input);
  }

  CreateResult Create(const PreparedCreate& request) override {
    CreateResult result;
    std::optional<internal::DigestOnly> checked =
        internal::CheckDigestOnly(request, &result.outcome);
    if (!checked) return result;
    const Digest& digest = request.digest;
    if (config_.urls.empty()) {
      result.outcome.kind = OutcomeKind::kPermanent;
      result.outcome.code = "NO_TSA";
      result.outcome.message = "no --tsa-url configured";
      return result;
    }
    std::vector<std::string> failures;
    bool all_rate_limited = true;
    absl::Duration retry_after = absl::ZeroDuration();
    bool permanent = false;
    CallOutcome last;
    for (const std::string& url : config_.urls) {
      CallOutcome o;
      std::optional<std::string> tsr = Ask(url, digest, &o);
      if (tsr) {
        auto info = tsa::Inspect(*tsr);
        ProviderRecord rec;
        rec.proof_id = absl::StrCat(info.ok() ? info->serial_hex : "0", "@", HostOf(url));
        rec.digest = digest;
        rec.state = RecordState::kConfirmed;
        rec.created_at = deps_.clock->Now();
        rec.confirmed_at = info.ok() ? info->gen_time : rec.created_at;
        rec.evidence = *std::move(tsr);
        result.outcome = o;
        result.outcome.kind = OutcomeKind::kOk;
        result.record = std::move(rec);
        if (!failures.empty()) {
          ANCHORD_LOG(Info) << config_.name << " create: answered by " << wire_.Redact(url)
                            << " after " << absl::StrJoin(failures, "; ");
        }
        return result;
      }
      if (o.kind != OutcomeKind::kRateLimited) all_rate_limited = false;
      if (o.kind == OutcomeKind::kPermanent) permanent = true;
      retry_after = std::max(retry_after, o.retry_after);
      failures.push_back(absl::StrCat(wire_.Redact(url), ": ", o.code, " ", o.message));
      last = o;
    }
    result.outcome = last;
    // One TSA refusing the request for good (bad credentials, bad request) is only permanent
    // when it is the only one; otherwise the next round may find another TSA healthy.
    result.outcome.kind = all_rate_limited                          ? OutcomeKind::kRateLimited
                          : (permanent && config_.urls.size() == 1) ? OutcomeKind::kPermanent
                                                                    : OutcomeKind::kRetry;
    result.outcome.retry_after = retry_after;
    result.outcome.message = wire_.Redact(absl::StrJoin(failures, "; "));
    ANCHORD_LOG(Warning) << config_.name
                         << " create: no TSA gave a valid token: " << result.outcome.message;
    return result;
  }

  LookupResult Lookup(const ProofRef& ref) override {
    LookupResult result;
    if (!CheckRef(ref, &result.outcome)) return result;
    ProviderRecord rec;
    rec.proof_id = ref.proof_id;
    rec.digest = ref.digest;
    rec.state = RecordState::kConfirmed;
    auto info = tsa::Inspect(ref.evidence);
    if (info.ok()) rec.confirmed_at = info->gen_time;
    result.outcome.kind = OutcomeKind::kOk;
    result.record = std::move(rec);
    return result;
  }

  bool SupportsListPending() const override { return false; }

  ListPendingResult ListPending(const std::string&, int) override {
    return internal::NoPendingList("a TSA keeps no list: its tokens are final when issued");
  }

  DownloadResult DownloadProof(const ProofRef& ref) override {
    DownloadResult result;
    if (!CheckRef(ref, &result.outcome)) return result;
    result.outcome.kind = OutcomeKind::kOk;
    result.ots = ref.evidence;
    return result;
  }

  void Stop() override {
    for (auto& [url, host] : hosts_) host->Stop();
  }

 private:
  // The stored token must be a granted .tsr for this digest; kNotFound otherwise (the token is
  // this proof's evidence: without it there is nothing to serve, and no TSA can resend it).
  bool CheckRef(const ProofRef& ref, CallOutcome* o) const {
    if (ref.evidence.empty()) {
      o->kind = OutcomeKind::kNotFound;
      o->code = "MISSING_EVIDENCE";
      o->message = "no token stored for this proof";
      return false;
    }
    auto info = tsa::Inspect(ref.evidence);
    if (!info.ok() || info->imprint != ref.digest.bytes()) {
      o->kind = OutcomeKind::kNotFound;
      o->code = "INVALID_EVIDENCE";
      o->message = info.ok() ? "the stored token is for another digest"
                             : std::string(info.status().message());
      return false;
    }
    return true;
  }

  // One request to one TSA; the verified .tsr, or nullopt with *o saying why.
  std::optional<std::string> Ask(const std::string& url, const Digest& digest, CallOutcome* o) {
    auto req = tsa::BuildRequest(digest);
    if (!req.ok()) {
      o->kind = OutcomeKind::kRetry;
      o->code = "INTERNAL";
      o->message = std::string(req.status().message());
      return std::nullopt;
    }
    http::HttpRequest http_req;
    http_req.method = "POST";
    http_req.url = url;
    http_req.body = req->der;
    http_req.timeout = config_.timeout;
    http_req.headers.emplace_back("Content-Type", "application/timestamp-query");
    http_req.headers.emplace_back("Accept", "application/timestamp-reply");
    if (!config_.authorization.empty()) {
      http_req.headers.emplace_back("Authorization", config_.authorization);
    }
    std::optional<http::HttpResponse> resp =
        hosts_.at(url)->Send(wire_, "tsa", kEndpoint, http_req, config_.default_retry_after, o);
    if (!resp) return std::nullopt;
    if (resp->status == 429) {
      o->message = "answered 429";
      return std::nullopt;
    }
    if (resp->status != 200) {
      const bool transient = resp->status >= 500 || resp->status == 408;
      o->kind = transient ? OutcomeKind::kRetry : OutcomeKind::kPermanent;
      o->code = absl::StrCat("HTTP_", resp->status);
      o->message = wire_.Redact(internal::Printable(resp->body, 160));
      if (transient) o->retry_after = wire_.RetryHint(*resp);
      return std::nullopt;
    }
    const std::string ctype = absl::AsciiStrToLower(resp->Header("content-type"));
    if (!absl::StartsWith(ctype, "application/timestamp-reply")) {
      *o = wire_.Malformed(kEndpoint, *o,
                           absl::StrCat("Content-Type \"", internal::Printable(ctype, 80),
                                        "\" is not application/timestamp-reply"));
      return std::nullopt;
    }
    tsa::VerifyOptions vo;
    vo.expected_digest = digest;
    vo.expected_nonce_hex = req->nonce_hex;
    vo.now = deps_.clock->Now();
    vo.max_skew = config_.max_skew;
    vo.max_age = config_.max_age;
    auto info = tsa::Verify(resp->body, tsa::Trust{config_.ca_pem, ""}, vo);
    if (!info.ok()) {
      if (absl::StartsWith(info.status().message(), "tsr: not granted")) {
        // A rejection is the TSA's considered answer: badAlg/badRequest/badDataFormat cannot
        // change on a retry; anything else (timeNotAvailable, systemFailure) may.
        const std::string m(info.status().message());
        const bool bad = absl::StrContains(m, "[badAlg]") || absl::StrContains(m, "[badRequest]") ||
                         absl::StrContains(m, "[badDataFormat]");
        o->kind = bad ? OutcomeKind::kPermanent : OutcomeKind::kRetry;
        o->code = "TSA_REJECTED";
        o->message = wire_.Redact(m);
        ANCHORD_LOG(Warning) << config_.name << " " << wire_.Redact(url) << ": " << o->message;
        return std::nullopt;
      }
      *o = wire_.Malformed(kEndpoint, *o, absl::StrCat(url, ": ", info.status().message()));
      return std::nullopt;
    }
    o->kind = OutcomeKind::kOk;
    return std::move(resp->body);
  }

  TsaConfig config_;
  TsaDeps deps_;
  Wire wire_;
  std::map<std::string, std::unique_ptr<PacedHost>> hosts_;  // by URL; fixed after construction
};

}  // namespace

absl::StatusOr<std::string> TsaAuthorization(const std::string& file_text) {
  absl::string_view t = absl::StripAsciiWhitespace(file_text);
  if (absl::StartsWithIgnoreCase(t, "basic ")) {
    absl::string_view creds = absl::StripAsciiWhitespace(t.substr(6));
    if (creds.find(':') == absl::string_view::npos) {
      return absl::InvalidArgumentError("--tsa-auth-file: Basic needs USER:PASSWORD");
    }
    return absl::StrCat("Basic ", absl::Base64Escape(creds));
  }
  if (absl::StartsWithIgnoreCase(t, "bearer ")) {
    absl::string_view token = absl::StripAsciiWhitespace(t.substr(7));
    if (token.empty()) return absl::InvalidArgumentError("--tsa-auth-file: Bearer needs a token");
    return absl::StrCat("Bearer ", token);
  }
  return absl::InvalidArgumentError(
      "--tsa-auth-file: must hold \"Basic USER:PASSWORD\" or \"Bearer TOKEN\"");
}

std::unique_ptr<Provider> MakeTsaProvider(const TsaConfig& config, const TsaDeps& deps) {
  return std::make_unique<TsaProvider>(config, deps);
}

}  // namespace anchord::providers
