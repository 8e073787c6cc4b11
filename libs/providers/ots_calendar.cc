#include "libs/providers/ots_calendar.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <optional>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"
#include "libs/ots/ots.h"
#include "libs/ots/upgrade.h"
#include "libs/providers/adapter_common.h"

namespace anchord::providers {
namespace {

using internal::PacedHost;
using internal::Wire;

constexpr char kDigest[] = "digest";
constexpr char kTimestamp[] = "timestamp";
constexpr char kAccept[] = "application/vnd.opentimestamps.v1";
// More distinct calendars than this share one limiter (the whitelist's globs admit any host under
// the calendar domains, and proofs come from outside).
constexpr size_t kMaxCalendarStates = 64;
constexpr size_t kMaxNotBeforeEntries = 100000;

// One calendar's answer to a create.
struct Answer {
  std::string calendar;
  CallOutcome outcome;
  std::shared_ptr<ots::Timestamp> timestamp;  // set when valid
  std::string bytes;
};

class OtsCalendarProvider final : public Provider {
 public:
  OtsCalendarProvider(const OtsCalendarConfig& config, const OtsCalendarDeps& deps)
      : config_(config),
        deps_(deps),
        wire_(config.name, "", deps.http, deps.metrics,
              deps.clock != nullptr ? deps.clock : Clock::Real()) {
    if (deps_.clock == nullptr) deps_.clock = Clock::Real();
    for (std::string& c : config_.calendars) c = internal::TrimTrailingSlashes(c);
    whitelist_ = ots::DefaultCalendarWhitelist();
    for (const std::string& c : config_.calendars) whitelist_.push_back(c);
  }

  const std::string& name() const override { return config_.name; }

  // The wire body is the digest's raw 32 bytes; the stored body is its hex, so the row stays
  // printable. Nothing but the digest is sent.
  absl::StatusOr<PreparedCreate> PrepareCreate(const CreateInput& input) const override {
    return internal::PrepareDigestOnly(input);
  }

  CreateResult Create(const PreparedCreate& request) override {
    CreateResult result;
    std::optional<internal::DigestOnly> checked =
        internal::CheckDigestOnly(request, &result.outcome);
    if (!checked) return result;
    const std::string& digest = checked->raw;
    // Every calendar at once, each in its own thread like `ots stamp`, so the quorum is reached
    // within one timeout rather than one per calendar.
    std::vector<Answer> answers(config_.calendars.size());
    std::vector<std::thread> threads;
    threads.reserve(answers.size());
    for (size_t i = 0; i < answers.size(); ++i) {
      answers[i].calendar = config_.calendars[i];
      threads.emplace_back([this, &answers, i, &digest] { Submit(digest, &answers[i]); });
    }
    for (std::thread& t : threads) t.join();

    ots::DetachedFile file;
    file.file_hash_op = ots::Op::Sha256();
    file.digest = digest;
    int valid = 0;
    int rate_limited = 0;
    absl::Duration retry_after = absl::ZeroDuration();
    std::vector<std::string> failures;
    for (Answer& a : answers) {
      if (a.timestamp == nullptr) {
        if (a.outcome.kind == OutcomeKind::kRateLimited) {
          ++rate_limited;
          retry_after = std::max(retry_after, a.outcome.retry_after);
        }
        failures.push_back(absl::StrCat(a.calendar, ": ", a.outcome.code, " ", a.outcome.message));
        continue;
      }
      if (file.timestamp == nullptr) {
        // An empty root cannot be serialized, so the first answer becomes the tree.
        file.timestamp = a.timestamp;
        ++valid;
        continue;
      }
      if (auto st = ots::MergeCalendarAnswer(&file, digest, a.bytes); !st.ok()) {
        failures.push_back(absl::StrCat(a.calendar, ": MALFORMED_RESPONSE ", st.message()));
        ANCHORD_LOG(Error) << config_.name << " digest: answer of " << a.calendar
                           << " does not merge: " << st.message();
        continue;
      }
      ++valid;
    }
    const int needed = std::max(
        1, std::min<int>(config_.min_calendars, static_cast<int>(config_.calendars.size())));
    if (valid < needed) {
      // The answers that did arrive are dropped: the calendars will anchor the digest anyway
      // (free), and the retry gets fresh ones.
      result.outcome.kind = (valid + rate_limited >= needed && rate_limited > 0)
                                ? OutcomeKind::kRateLimited
                                : OutcomeKind::kRetry;
      result.outcome.code = "CALENDAR_QUORUM";
      result.outcome.retry_after = retry_after;
      result.outcome.message = wire_.Redact(
          absl::StrCat(valid, " of ", config_.calendars.size(), " calendars answered validly, ",
                       needed, " needed: ", absl::StrJoin(failures, "; ")));
      ANCHORD_LOG(Warning) << config_.name << " create: " << result.outcome.message;
      return result;
    }
    auto bytes = ots::SerializeDetached(file);
    if (!bytes.ok()) {
      result.outcome = wire_.Malformed(kDigest, {}, bytes.status().message());
      return result;
    }
    auto check = internal::ParseEvidence(*bytes, request.digest);
    if (!check.ok()) {
      result.outcome = wire_.Malformed(kDigest, {}, check.status().message());
      return result;
    }
    if (!failures.empty()) {
      ANCHORD_LOG(Info) << config_.name << " create: quorum reached (" << valid << "/"
                        << config_.calendars.size() << "); " << absl::StrJoin(failures, "; ");
    }
    result.outcome.kind = OutcomeKind::kOk;
    result.outcome.http_status = 200;
    ProviderRecord rec;
    rec.proof_id = checked->hex;
    rec.digest = request.digest;
    rec.state = RecordState::kPending;
    rec.created_at = deps_.clock->Now();
    rec.evidence = *std::move(bytes);
    result.record = std::move(rec);
    return result;
  }

  LookupResult Lookup(const ProofRef& ref) override {
    LookupResult result;
    auto parsed = ParseRef(ref, &result.outcome);
    if (!parsed) return result;
    ots::DetachedFile& file = *parsed;
    if (ots::IsComplete(file)) {
      result.outcome.kind = OutcomeKind::kOk;
      result.record = Record(ref.digest, file, ref.evidence);
      return result;
    }
    const std::vector<ots::PendingPoint> points = ots::PendingAttestations(file);
    int whitelisted = 0, asked = 0, answered = 0, merged = 0;
    CallOutcome last_error;
    for (const ots::PendingPoint& p : points) {
      if (!ots::CalendarWhitelisted(p.uri, whitelist_)) {
        ANCHORD_LOG(Debug) << config_.name << " lookup: calendar " << wire_.Redact(p.uri)
                           << " is not whitelisted; not contacted";
        continue;
      }
      ++whitelisted;
      const std::string key = absl::StrCat(p.uri, "\n", p.commitment);
      if (deps_.clock->Now() < NotBefore(key)) continue;  // Cache-Control: not yet
      ++asked;
      CallOutcome o;
      std::optional<std::string> answer = Fetch(p, key, &o);
      if (o.kind != OutcomeKind::kOk) {
        last_error = o;
        continue;
      }
      ++answered;
      if (!answer) continue;  // still pending
      if (auto st = ots::MergeCalendarAnswer(&file, p.commitment, *answer); !st.ok()) {
        last_error = wire_.Malformed(kTimestamp, o, st.message());
        --answered;
        continue;
      }
      ++merged;
      if (ots::IsComplete(file)) break;  // one Bitcoin attestation suffices; spare the rest
    }
    if (whitelisted == 0) {
      // Never upgradable here; kNotFound for the same reason as in ParseRef.
      result.outcome.kind = OutcomeKind::kNotFound;
      result.outcome.code = "NO_WHITELISTED_CALENDAR";
      result.outcome.message =
          "the proof's pending attestations name no whitelisted calendar; it cannot be upgraded";
      return result;
    }
    if (merged == 0 && asked > 0 && answered == 0) {
      result.outcome = last_error;  // every calendar asked failed: retry later
      return result;
    }
    std::string evidence = ref.evidence;
    if (merged > 0) {
      auto bytes = ots::SerializeDetached(file);
      if (!bytes.ok() || !internal::ParseEvidence(*bytes, ref.digest).ok()) {
        result.outcome = wire_.Malformed(kTimestamp, {}, "the merged proof does not serialize");
        return result;
      }
      evidence = *std::move(bytes);
    }
    result.outcome.kind = OutcomeKind::kOk;
    result.record = Record(ref.digest, file, merged > 0 ? evidence : std::string());
    return result;
  }

  bool SupportsListPending() const override { return false; }

  ListPendingResult ListPending(const std::string&, int) override {
    return internal::NoPendingList("calendars have no list of pending proofs");
  }

  DownloadResult DownloadProof(const ProofRef& ref) override {
    DownloadResult result;
    auto parsed = ParseRef(ref, &result.outcome);
    if (!parsed) return result;
    if (!ots::IsComplete(*parsed)) {
      result.outcome.kind = OutcomeKind::kNotFound;
      result.outcome.code = "OTS_NOT_COMPLETE";
      result.outcome.message = "no Bitcoin attestation yet: the proof is still pending";
      return result;
    }
    result.outcome.kind = OutcomeKind::kOk;
    result.ots = ref.evidence;
    return result;
  }

  void Stop() override {
    absl::MutexLock lock(&cal_mu_);
    stopped_ = true;
    for (auto& [name, host] : cals_) host->Stop();
  }

 private:
  // The proof the caller holds, validated; nullopt with *o set when there is none to work with.
  std::optional<ots::DetachedFile> ParseRef(const ProofRef& ref, CallOutcome* o) const {
    // A proof without usable evidence is this proof's problem, not the account's: kNotFound
    // (its evidence does not exist) keeps it pending until it is reported stalled, where
    // kPermanent would make the poller end its round for every other proof too.
    if (ref.evidence.empty()) {
      // Calendars identify a proof only by the commitments inside it.
      o->kind = OutcomeKind::kNotFound;
      o->code = "MISSING_EVIDENCE";
      o->message = "no pending .ots stored for this proof: the calendars cannot be asked";
      return std::nullopt;
    }
    auto file = internal::ParseEvidence(ref.evidence, ref.digest);
    if (!file.ok()) {
      o->kind = OutcomeKind::kNotFound;
      o->code = "INVALID_EVIDENCE";
      o->message = std::string(file.status().message());
      return std::nullopt;
    }
    return *std::move(file);
  }

  ProviderRecord Record(const Digest& digest, const ots::DetachedFile& file,
                        std::string evidence) const {
    ProviderRecord rec;
    rec.proof_id = digest.hex();
    rec.digest = digest;
    rec.block_height = internal::LowestBitcoinHeight(file);
    rec.state = ots::IsComplete(file) ? RecordState::kConfirmed : RecordState::kPending;
    rec.evidence = std::move(evidence);
    return rec;
  }

  PacedHost* HostFor(const std::string& origin) ABSL_LOCKS_EXCLUDED(cal_mu_) {
    absl::MutexLock lock(&cal_mu_);
    std::string key = origin;
    if (!cals_.count(key) && cals_.size() >= kMaxCalendarStates) key = "(other)";
    auto& host = cals_[key];
    if (host == nullptr) {
      host = std::make_unique<PacedHost>(
          ratelimit::MakeLimiter(deps_.limiters, absl::StrCat(config_.name, ".", key),
                                 config_.calendar_limit, deps_.clock));
      if (stopped_) host->Stop();
    }
    return host.get();
  }

  absl::Time NotBefore(const std::string& key) ABSL_LOCKS_EXCLUDED(nb_mu_) {
    absl::MutexLock lock(&nb_mu_);
    auto it = not_before_.find(key);
    return it == not_before_.end() ? absl::InfinitePast() : it->second;
  }

  // The reference server sends max-age=60 with a pending 404 (the sandbox: its configured
  // pending_max_age); a missing or malformed header leaves the pace to the caller's rounds.
  void SetNotBefore(const std::string& key, const http::HttpResponse& resp)
      ABSL_LOCKS_EXCLUDED(nb_mu_) {
    auto age = internal::CacheMaxAge(resp.Header("cache-control"));
    if (!age || *age <= absl::ZeroDuration()) return;
    const absl::Time now = deps_.clock->Now();
    absl::MutexLock lock(&nb_mu_);
    if (not_before_.size() >= kMaxNotBeforeEntries) {
      for (auto it = not_before_.begin(); it != not_before_.end();) {
        it = it->second <= now ? not_before_.erase(it) : std::next(it);
      }
      if (not_before_.size() >= kMaxNotBeforeEntries) not_before_.clear();  // costs requests only
    }
    not_before_[key] = now + std::min(*age, config_.max_not_before);
  }

  // Sends one request to `origin` under its limiter, one at a time per calendar.
  std::optional<http::HttpResponse> Send(const std::string& origin, const char* endpoint,
                                         http::HttpRequest req, CallOutcome* o) {
    req.headers.emplace_back("Accept", kAccept);
    std::optional<http::HttpResponse> resp =
        HostFor(origin)->Send(wire_, "calendar", endpoint, req, config_.default_retry_after, o);
    if (resp && resp->status == 429) {
      o->message = absl::StrCat("calendar ", wire_.Redact(origin), " answered 429");
      ANCHORD_LOG(Warning) << config_.name << " " << endpoint << ": " << o->message << "; waiting "
                           << absl::FormatDuration(o->retry_after);
    }
    return resp;
  }

  // POST /digest to one calendar; a valid answer lands in a->timestamp.
  void Submit(const std::string& digest, Answer* a) {
    http::HttpRequest req;
    req.method = "POST";
    req.url = a->calendar + "/digest";
    req.body = digest;
    req.timeout = config_.timeout;
    req.headers.emplace_back("Content-Type", "application/octet-stream");
    std::optional<http::HttpResponse> resp =
        Send(a->calendar, kDigest, std::move(req), &a->outcome);
    if (!resp || a->outcome.kind == OutcomeKind::kRateLimited) return;
    if (resp->status != 200) {
      a->outcome.kind = (resp->status >= 500 || resp->status == 408) ? OutcomeKind::kRetry
                                                                     : OutcomeKind::kPermanent;
      a->outcome.code = absl::StrCat("HTTP_", resp->status);
      a->outcome.message = wire_.Redact(internal::Printable(resp->body, 160));
      ANCHORD_LOG(Warning) << config_.name << " digest: calendar " << a->calendar << " HTTP "
                           << resp->status << ": " << a->outcome.message;
      return;
    }
    auto ts = ValidateCreateAnswer(resp->body, digest);
    if (!ts.ok()) {
      a->outcome = wire_.Malformed(kDigest, a->outcome,
                                   absl::StrCat(a->calendar, ": ", ts.status().message()));
      return;
    }
    a->outcome.kind = OutcomeKind::kOk;
    a->timestamp = *std::move(ts);
    a->bytes = std::move(resp->body);
  }

  // A create answer: bounded, a Timestamp rooted at the digest with nothing after it, carrying a
  // pending attestation this adapter may later ask (a whitelisted calendar).
  absl::StatusOr<std::shared_ptr<ots::Timestamp>> ValidateCreateAnswer(
      const std::string& body, const std::string& digest) const {
    if (body.size() > ots::kMaxCalendarAnswer) {
      return absl::InvalidArgumentError(
          absl::StrCat("answer larger than ", ots::kMaxCalendarAnswer, " bytes"));
    }
    size_t pos = 0;
    auto ts = ots::Timestamp::Parse(body, &pos, digest);
    if (!ts.ok()) return ts.status();
    if (pos != body.size()) return absl::InvalidArgumentError("trailing bytes after the timestamp");
    ots::DetachedFile f{ots::Op::Sha256(), digest, *ts};
    bool usable = false;
    for (const ots::PendingPoint& p : ots::PendingAttestations(f)) {
      if (ots::CalendarWhitelisted(p.uri, whitelist_)) usable = true;
    }
    if (!usable) {
      return absl::InvalidArgumentError("no pending attestation of a whitelisted calendar");
    }
    return *ts;
  }

  // GET /timestamp/<commitment> from the pending point's calendar: the answer bytes, nullopt
  // while pending (404); o->kind is kOk for both, an error kind otherwise.
  std::optional<std::string> Fetch(const ots::PendingPoint& p, const std::string& key,
                                   CallOutcome* o) {
    const std::string origin = internal::TrimTrailingSlashes(p.uri);
    http::HttpRequest req;
    req.method = "GET";
    // The commitment at the pending node, not the submitted digest (docs/providers/ots.md).
    req.url = absl::StrCat(origin, "/timestamp/", HexEncode(p.commitment));
    req.timeout = config_.lookup_timeout;
    std::optional<http::HttpResponse> resp = Send(origin, kTimestamp, std::move(req), o);
    if (!resp) return std::nullopt;
    SetNotBefore(key, *resp);
    if (o->kind == OutcomeKind::kRateLimited) return std::nullopt;
    if (resp->status == 404) {
      o->kind = OutcomeKind::kOk;
      return std::nullopt;
    }
    if (resp->status != 200) {
      o->kind = OutcomeKind::kRetry;
      o->code = absl::StrCat("HTTP_", resp->status);
      o->message = wire_.Redact(internal::Printable(resp->body, 160));
      ANCHORD_LOG(Warning) << config_.name << " timestamp: calendar " << wire_.Redact(origin)
                           << " HTTP " << resp->status << ": " << o->message;
      return std::nullopt;
    }
    if (resp->body.size() > ots::kMaxCalendarAnswer) {
      *o = wire_.Malformed(kTimestamp, *o, "answer larger than 10000 bytes");
      return std::nullopt;
    }
    o->kind = OutcomeKind::kOk;
    return std::move(resp->body);
  }

  OtsCalendarConfig config_;
  OtsCalendarDeps deps_;
  Wire wire_;
  std::vector<std::string> whitelist_;
  absl::Mutex cal_mu_;
  bool stopped_ ABSL_GUARDED_BY(cal_mu_) = false;
  // By origin; entries are never removed, so a PacedHost* stays valid for the adapter's life.
  std::map<std::string, std::unique_ptr<PacedHost>> cals_ ABSL_GUARDED_BY(cal_mu_);
  absl::Mutex nb_mu_;
  // (calendar, commitment) -> not before
  std::map<std::string, absl::Time> not_before_ ABSL_GUARDED_BY(nb_mu_);
};

}  // namespace

std::vector<std::string> DefaultOtsCalendars() {
  return {"https://a.pool.opentimestamps.org", "https://b.pool.opentimestamps.org",
          "https://a.pool.eternitywall.com", "https://ots.btc.catallaxy.com"};
}

std::unique_ptr<Provider> MakeOtsCalendarProvider(const OtsCalendarConfig& config,
                                                  const OtsCalendarDeps& deps) {
  return std::make_unique<OtsCalendarProvider>(config, deps);
}

}  // namespace anchord::providers
