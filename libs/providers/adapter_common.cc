#include "libs/providers/adapter_common.h"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"

namespace anchord::providers::internal {

std::string Printable(absl::string_view s, size_t max) {
  std::string out;
  for (char c : s) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    out += (c >= ' ' && c <= '~') ? c : '?';
  }
  return out;
}

std::string CleanCode(absl::string_view s) {
  if (s.empty() || s.size() > 64) return "";
  for (char c : s) {
    if (!(absl::ascii_isupper(c) || absl::ascii_isdigit(c) || c == '_')) return "";
  }
  return std::string(s);
}

std::string PercentEncode(absl::string_view s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

absl::StatusOr<absl::Time> ParseIsoTime(absl::string_view s) {
  absl::Time t;
  std::string err;
  if (absl::ParseTime(absl::RFC3339_full, std::string(s), &t, &err)) return t;
  return absl::InvalidArgumentError(err);
}

bool IsHttpUrl(absl::string_view s) {
  if (s.size() > 2048) return false;
  absl::string_view rest;
  if (absl::StartsWith(s, "https://")) {
    rest = s.substr(8);
  } else if (absl::StartsWith(s, "http://")) {
    rest = s.substr(7);
  } else {
    return false;
  }
  if (rest.empty() || rest[0] == '/' || rest[0] == '?' || rest[0] == '#') return false;
  for (char c : s) {
    if (c <= ' ' || c > '~') return false;
  }
  return true;
}

std::string TrimTrailingSlashes(absl::string_view s) {
  while (!s.empty() && s.back() == '/') s.remove_suffix(1);
  return std::string(s);
}

std::optional<absl::Duration> CacheMaxAge(absl::string_view cache_control) {
  for (absl::string_view part : absl::StrSplit(cache_control, ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (!absl::StartsWithIgnoreCase(part, "max-age=")) continue;
    absl::string_view v = part.substr(8);
    if (absl::ConsumePrefix(&v, "\"")) absl::ConsumeSuffix(&v, "\"");
    int64_t seconds = 0;
    if (v.empty() || v.size() > 12 || !absl::SimpleAtoi(v, &seconds) || seconds < 0) {
      return std::nullopt;
    }
    return absl::Seconds(seconds);
  }
  return std::nullopt;
}

std::string NormalizeDigestHex(absl::string_view s) {
  if (!IsSha256Hex(s)) return "";
  return absl::AsciiStrToLower(s);
}

std::optional<absl::Time> RateLimitReset(absl::string_view value, absl::Time now) {
  double reset = 0;
  if (!absl::SimpleAtod(value, &reset) || !(reset >= 0) || reset >= 1e12) return std::nullopt;
  return reset > 1e9 ? absl::FromUnixMillis(static_cast<int64_t>(reset * 1000))
                     : now + absl::Milliseconds(static_cast<int64_t>(reset * 1000));
}

absl::StatusOr<PreparedCreate> PrepareDigestOnly(const CreateInput& input) {
  PreparedCreate p;
  p.digest = input.digest;
  p.body = p.digest.hex();
  return p;
}

std::optional<DigestOnly> CheckDigestOnly(const PreparedCreate& request, CallOutcome* o) {
  DigestOnly d;
  d.hex = request.digest.hex();
  if (absl::AsciiStrToLower(request.body) != d.hex) {
    o->kind = OutcomeKind::kPermanent;
    o->code = "INVALID_REQUEST";
    o->message = "prepared create is incomplete (digest or body); not sent";
    return std::nullopt;
  }
  d.raw = request.digest.raw();
  return d;
}

absl::StatusOr<ots::DetachedFile> ParseEvidence(absl::string_view bytes, const Digest& digest) {
  auto file = ots::ParseDetached(bytes);
  if (!file.ok())
    return absl::InvalidArgumentError(absl::StrCat(".ots: ", file.status().message()));
  if (file->file_hash_op.tag != ots::kOpSha256) {
    return absl::InvalidArgumentError(".ots: file hash op is not sha256");
  }
  if (file->digest != digest.bytes()) {
    return absl::InvalidArgumentError(".ots: digest is not the digest of this proof");
  }
  return file;
}

int64_t LowestBitcoinHeight(const ots::DetachedFile& proof) {
  if (proof.timestamp == nullptr) return 0;
  uint64_t lowest = 0;
  for (const auto& [msg, a] : proof.timestamp->AllAttestations()) {
    if (a.kind != ots::Attestation::Kind::kBitcoin) continue;
    if (lowest == 0 || a.height < lowest) lowest = a.height;
  }
  return lowest > static_cast<uint64_t>(INT64_MAX) ? 0 : static_cast<int64_t>(lowest);
}

Wire::Wire(std::string provider, std::string secret, http::HttpClient* http,
           ProviderMetrics* metrics, Clock* clock)
    : provider_(std::move(provider)),
      secret_(std::move(secret)),
      http_(http),
      metrics_(metrics),
      clock_(clock != nullptr ? clock : Clock::Real()) {}

std::string Wire::Redact(absl::string_view text) const {
  std::string out = Printable(text, 300);
  // A key shorter than 4 bytes would scrub ordinary words (the scrubber's own rule).
  if (secret_.size() >= 4) out = absl::StrReplaceAll(out, {{secret_, "[REDACTED]"}});
  return ScrubSecrets(out);
}

bool Wire::Pace(ratelimit::RateLimiter* limiter, const char* bucket) const {
  if (limiter == nullptr) return true;
  auto waited = limiter->Acquire();
  if (!waited.ok()) return false;
  if (metrics_ != nullptr) metrics_->CountWait(provider_, bucket, absl::ToDoubleSeconds(*waited));
  return true;
}

std::optional<http::HttpResponse> Wire::Do(const char* endpoint, const http::HttpRequest& req,
                                           CallOutcome* o) const {
  if (http_ == nullptr) {
    o->kind = OutcomeKind::kRetry;
    o->code = "NETWORK_ERROR";
    o->message = "no HTTP client configured";
    return std::nullopt;
  }
  absl::StatusOr<http::HttpResponse> resp = http_->Do(req);
  if (!resp.ok()) {
    if (metrics_ != nullptr) metrics_->CountRequest(provider_, endpoint, 0);
    o->kind = OutcomeKind::kRetry;
    o->http_status = 0;
    o->code = resp.status().code() == absl::StatusCode::kResourceExhausted ? "MALFORMED_RESPONSE"
                                                                           : "NETWORK_ERROR";
    o->message = Redact(resp.status().message());
    ANCHORD_LOG(Warning) << provider_ << " " << endpoint << ": " << o->code << ": " << o->message;
    return std::nullopt;
  }
  if (metrics_ != nullptr) metrics_->CountRequest(provider_, endpoint, resp->status);
  o->http_status = resp->status;
  o->request_id = Redact(Printable(resp->Header("x-request-id"), 128));
  return *std::move(resp);
}

CallOutcome Wire::Malformed(const char* endpoint, const CallOutcome& base,
                            absl::string_view why) const {
  CallOutcome o = base;
  o.kind = OutcomeKind::kRetry;
  o.code = "MALFORMED_RESPONSE";
  o.message = Redact(absl::StrCat("malformed ", endpoint, " answer: ", why));
  ANCHORD_LOG(Error) << provider_ << " " << endpoint << ": HTTP " << base.http_status
                     << " MALFORMED_RESPONSE: " << o.message << " request_id=" << o.request_id;
  return o;
}

CallOutcome Wire::Cancelled() {
  CallOutcome o;
  o.kind = OutcomeKind::kRetry;
  o.code = "CANCELLED";
  o.message = "provider is stopping";
  return o;
}

absl::Duration Wire::CloseGate(const http::HttpResponse& resp, absl::Duration fallback,
                               std::initializer_list<ratelimit::RateLimiter*> limiters) const {
  const absl::Time now = clock_->Now();
  absl::Time until = now + fallback;
  const std::string ra = resp.Header("retry-after");
  if (!ra.empty()) {
    auto parsed = ratelimit::ParseRetryAfter(ra, now);
    if (parsed.ok()) {
      until = std::max(*parsed, now);
    } else {
      ANCHORD_LOG(Warning) << provider_ << ": unparsable Retry-After \"" << Printable(ra, 64)
                           << "\"; waiting " << absl::FormatDuration(fallback);
    }
  }
  return Gate(now, until, limiters);
}

absl::Duration Wire::CloseGateUntil(absl::Time until,
                                    std::initializer_list<ratelimit::RateLimiter*> limiters) const {
  return Gate(clock_->Now(), until, limiters);
}

absl::Duration Wire::Gate(absl::Time now, absl::Time until,
                          std::initializer_list<ratelimit::RateLimiter*> limiters) const {
  if (until > now + kMaxGate) {
    ANCHORD_LOG(Warning) << provider_ << ": provider asked to wait past the "
                         << absl::FormatDuration(kMaxGate) << " cap; capping";
    until = now + kMaxGate;
  }
  for (ratelimit::RateLimiter* l : limiters) {
    if (l != nullptr) l->BlockUntil(until);
  }
  return until - now;
}

absl::Duration Wire::RetryHint(const http::HttpResponse& resp) const {
  const absl::Time now = clock_->Now();
  auto parsed = ratelimit::ParseRetryAfter(resp.Header("retry-after"), now);
  if (!parsed.ok() || *parsed <= now) return absl::ZeroDuration();
  return std::min(*parsed - now, kMaxGate);
}

PacedHost::PacedHost(std::unique_ptr<ratelimit::RateLimiter> limiter)
    : limiter_(std::move(limiter)) {}

std::optional<http::HttpResponse> PacedHost::Send(const Wire& wire, const char* bucket,
                                                  const char* endpoint,
                                                  const http::HttpRequest& req,
                                                  absl::Duration default_retry_after,
                                                  CallOutcome* o) {
  absl::MutexLock in_flight(&in_flight_);
  if (!wire.Pace(limiter_.get(), bucket)) {
    *o = Wire::Cancelled();
    return std::nullopt;
  }
  std::optional<http::HttpResponse> resp = wire.Do(endpoint, req, o);
  if (resp && resp->status == 429) {
    o->kind = OutcomeKind::kRateLimited;
    o->code = "RATE_LIMITED";
    o->retry_after = wire.CloseGate(*resp, default_retry_after, {limiter_.get()});
  }
  return resp;
}

ListPendingResult NoPendingList(const char* why) {
  ListPendingResult r;
  r.outcome.kind = OutcomeKind::kPermanent;
  r.outcome.code = "UNSUPPORTED";
  r.outcome.message = why;
  return r;
}

}  // namespace anchord::providers::internal
