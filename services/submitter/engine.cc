#include "services/submitter/engine.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "libs/common/log.h"
#include "libs/common/status_macros.h"
#include "libs/common/thread_name.h"
#include "libs/digest/digest.h"

namespace anchord::submitter {
namespace {

using providers::OutcomeKind;

// Metric label of an outcome.
const char* KindLabel(OutcomeKind k) {
  return providers::OutcomeName(k, {.ok = "ok",
                                    .duplicate = "duplicate",
                                    .retry = "retry",
                                    .rate_limited = "rate_limited",
                                    .quota_exhausted = "quota_exhausted",
                                    .permanent = "permanent",
                                    .not_found = "not_found",
                                    .unknown = "unknown"});
}

// Canonical code stored with a permanent failure, from the provider's HTTP status.
absl::StatusCode PermanentCode(int http_status) {
  switch (http_status) {
    case 400:
    case 422:
      return absl::StatusCode::kInvalidArgument;
    case 401:
      return absl::StatusCode::kUnauthenticated;
    case 402:
    case 403:
      return absl::StatusCode::kPermissionDenied;
    default:
      return absl::StatusCode::kFailedPrecondition;
  }
}

StoredRecord ToStored(const providers::ProviderRecord& r) {
  StoredRecord s;
  s.proof_id = r.proof_id;
  s.record_state = static_cast<int>(r.state);
  s.certificate_url = r.certificate_url;
  s.verify_url = r.verify_url;
  s.block_height = r.block_height;
  s.bitcoin_tx = r.bitcoin_tx;
  s.provider_created_at = r.created_at;
  s.confirmed_at = r.confirmed_at;
  s.evidence = r.evidence;
  return s;
}

}  // namespace

Engine::Engine(SubmitterStore* store, std::vector<providers::Provider*> providers,
               SubmitterMetrics* metrics, Clock* clock, EngineOptions options)
    : store_(store),
      providers_(std::move(providers)),
      metrics_(metrics),
      clock_(clock),
      options_(std::move(options)) {}

Engine::~Engine() { Stop(); }

absl::Status Engine::Init() {
  // With SQLite the file belongs to this one process, so every lease is a dead process's; a
  // shared store frees only this replica's own (other replicas' leases are live).
  ANCHORD_RETURN_IF_ERROR(store_->ReleaseAllLeases());
  ANCHORD_ASSIGN_OR_RETURN(std::vector<PauseInfo> pauses, store_->ListPauses());
  absl::MutexLock lock(&mu_);
  pauses_.clear();
  for (auto& p : pauses) {
    ANCHORD_LOG(Warning) << "provider " << p.provider << " queue is paused (" << p.reason
                         << "); next probe at " << absl::FormatTime(p.probe_at);
    pauses_[p.provider] = p;
  }
  for (auto* p : providers_) SetPausedGauge(p->name(), pauses_.count(p->name()) > 0);
  return absl::OkStatus();
}

absl::Status Engine::Start() {
  ANCHORD_RETURN_IF_ERROR(Init());
  for (int i = 0; i < std::max(1, options_.workers); ++i) {
    threads_.push_back(StartNamedThread("engine", [this] { WorkerLoop(); }));
  }
  threads_.push_back(StartNamedThread("gauges", [this] { GaugeLoop(); }));
  return absl::OkStatus();
}

void Engine::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
  }
  stop_flag_ = true;
  for (auto* p : providers_) p->Stop();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

void Engine::Wake() {
  absl::MutexLock lock(&mu_);
  ++wake_seq_;
}

void Engine::SetPausedGauge(const std::string& provider, bool paused) {
  if (metrics_ == nullptr) return;
  metrics_->queue_paused.Add({{"provider", provider}}).Set(paused ? 1 : 0);
}

std::optional<PauseInfo> Engine::Paused(const std::string& provider) {
  absl::MutexLock lock(&mu_);
  auto it = pauses_.find(provider);
  if (it == pauses_.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<std::vector<std::string>> Engine::Resume(const std::string& provider) {
  ANCHORD_ASSIGN_OR_RETURN(std::vector<std::string> resumed, store_->Resume(provider));
  {
    absl::MutexLock lock(&mu_);
    for (const auto& name : resumed) pauses_.erase(name);
    if (provider.empty())
      pauses_.clear();
    else
      pauses_.erase(provider);
  }
  for (const auto& name : resumed) {
    ANCHORD_LOG(Info) << "provider " << name << " queue resumed";
    SetPausedGauge(name, false);
  }
  Wake();
  return resumed;
}

absl::StatusOr<bool> Engine::RunOnce(const std::string& only) {
  const size_t n = providers_.size();
  const size_t start = rotate_.fetch_add(1);
  for (size_t i = 0; i < n; ++i) {
    providers::Provider* provider = providers_[(start + i) % n];
    const std::string& name = provider->name();
    if (!only.empty() && name != only) continue;
    absl::Time now = clock_->Now();
    bool probe = false;
    std::optional<PauseInfo> pause;
    {
      absl::MutexLock lock(&mu_);
      auto it = pauses_.find(name);
      if (it != pauses_.end()) {
        if (now < it->second.probe_at) continue;
        // One probe: push the next probe time out before sending so other workers skip it.
        probe = true;
        it->second.probe_at = now + options_.quota_retry;
        pause = it->second;
      }
    }
    if (pause) ANCHORD_RETURN_IF_ERROR(store_->Pause(*pause));
    // A quota probe sends one row, not a whole batch. A provider taking one digest per request
    // gets a group of rows whose requests are prepared in one commit (see Process).
    const bool batch_provider = provider->max_batch() > 1;
    const int limit =
        probe ? 1 : (batch_provider ? provider->max_batch() : std::max(1, options_.claim_group));
    ANCHORD_ASSIGN_OR_RETURN(
        std::vector<Submission> rows,
        store_->ClaimBatch(name, options_.owner, now, now + options_.lease, limit));
    if (rows.empty()) continue;
    if (!probe && batch_provider && static_cast<int>(rows.size()) < limit &&
        rows.front().created_at > now - options_.batch_linger) {
      for (const Submission& row : rows) ANCHORD_RETURN_IF_ERROR(store_->ReleaseLease(row.id));
      continue;
    }
    ANCHORD_RETURN_IF_ERROR(Process(provider, std::move(rows), probe));
    return true;
  }
  return false;
}

absl::Status Engine::Process(providers::Provider* provider, std::vector<Submission> rows,
                             bool probe) {
  const std::string& name = provider->name();
  std::vector<Submission> ready;
  std::vector<providers::PreparedCreate> requests;
  // Rows prepared now (not by an earlier attempt): their requests are committed together below.
  std::vector<SubmitterStore::PreparedRow> fresh_rows;
  absl::Status first_error;
  for (Submission& row : rows) {
    const std::string digest_hex = row.digest.hex();
    const bool fresh = row.body.empty();
    auto prepare = [&]() -> absl::StatusOr<providers::PreparedCreate> {
      if (fresh) {
        return provider->PrepareCreate(
            {row.digest, row.file.filename, row.file.size_bytes, row.file.mime_type});
      }
      providers::PreparedCreate earlier;
      earlier.digest = row.digest;
      earlier.idempotency_key = row.idempotency_key;
      earlier.body = row.body;
      // Prepared earlier: this request may have reached the provider before a crash or error.
      earlier.maybe_sent = true;
      return earlier;
    };
    absl::StatusOr<providers::PreparedCreate> prepared = prepare();
    if (!prepared.ok()) {
      ANCHORD_LOG(Warning) << "digest " << digest_hex << " with " << name
                           << " cannot be submitted: " << prepared.status();
      if (metrics_)
        metrics_->outcomes.Add({{"provider", name}, {"outcome", "invalid_argument"}}).Increment();
      absl::Status st =
          store_->MarkFailed(row.id, static_cast<int>(prepared.status().code()), "INVALID_ARGUMENT",
                             std::string(prepared.status().message()), "", clock_->Now());
      if (!st.ok() && first_error.ok()) first_error = st;
      continue;
    }
    providers::PreparedCreate request = *std::move(prepared);
    if (fresh) fresh_rows.push_back({row.id, request.idempotency_key, request.body});
    requests.push_back(std::move(request));
    ready.push_back(std::move(row));
  }
  // Durable before the first send (see the header): one commit for the whole group.
  if (absl::Status st = store_->MarkPreparedBatch(fresh_rows, clock_->Now()); !st.ok()) {
    if (first_error.ok()) first_error = st;
    // None of them may be sent; the rows prepared earlier still can.
    std::vector<Submission> kept;
    std::vector<providers::PreparedCreate> kept_requests;
    for (size_t i = 0; i < ready.size(); ++i) {
      if (!requests[i].maybe_sent) {
        (void)store_->ReleaseLease(ready[i].id);
        continue;
      }
      kept.push_back(std::move(ready[i]));
      kept_requests.push_back(std::move(requests[i]));
    }
    ready = std::move(kept);
    requests = std::move(kept_requests);
  }
  if (ready.empty()) return first_error;

  if (provider->max_batch() > 1 && requests.size() > 1) {
    return SendBatch(provider, std::move(ready), requests, probe, first_error);
  }
  // One create per request, in claim order; each send consults the provider's limiters. After an
  // answer other than a record (429, quota, error) or on Stop the rest are not sent now: their
  // leases are released and they go out later with the same prepared request.
  bool halted = false;
  // Records received, committed together after the group (one commit for the outcomes). Until
  // then a row stays SUBMITTING with its request: after a crash it is re-sent with the same key
  // and the provider replays the record, so nothing is handed off before its outcome is durable.
  std::vector<SubmitterStore::SubmittedRow> submitted;
  for (size_t i = 0; i < ready.size(); ++i) {
    if (halted || stop_flag_) {
      if (absl::Status st = store_->ReleaseLease(ready[i].id); !st.ok() && first_error.ok()) {
        first_error = st;
      }
      continue;
    }
    const providers::CreateResult result = provider->Create(requests[i]);
    const OutcomeKind kind = result.outcome.kind;
    const bool record =
        (kind == OutcomeKind::kOk || kind == OutcomeKind::kDuplicate) && result.record.has_value();
    if (record && !probe) {
      if (metrics_)
        metrics_->outcomes.Add({{"provider", name}, {"outcome", KindLabel(kind)}}).Increment();
      ANCHORD_LOG(Debug) << "digest " << requests[i].digest.hex() << " anchored with " << name
                         << " as " << result.record->proof_id;
      submitted.push_back({ready[i].id, ToStored(*result.record), result.outcome.request_id});
      continue;
    }
    halted = !record;
    absl::Status st = Apply(provider, std::move(ready[i]), result, probe && i == 0);
    if (!st.ok() && first_error.ok()) first_error = st;
  }
  if (absl::Status st = store_->MarkSubmittedBatch(submitted, clock_->Now()); !st.ok()) {
    // Not recorded: the rows keep their requests and are re-sent (the provider replays).
    for (const auto& row : submitted) (void)store_->ReleaseLease(row.id);
    if (first_error.ok()) first_error = st;
  } else if (!submitted.empty() && options_.on_recorded) {
    options_.on_recorded();
  }
  return first_error;
}

absl::Status Engine::SendBatch(providers::Provider* provider, std::vector<Submission> ready,
                               const std::vector<providers::PreparedCreate>& requests, bool probe,
                               absl::Status first_error) {
  const std::string& name = provider->name();
  if (stop_flag_) {
    for (const Submission& row : ready) (void)store_->ReleaseLease(row.id);
    return first_error;
  }
  std::vector<providers::CreateResult> results = provider->CreateBatch(requests);
  if (results.size() != ready.size()) {
    // An adapter bug must not lose rows: keep them all for a later attempt (re-sent with
    // maybe_sent). With a wrong count no answer can be matched to its row, so none is applied: a
    // row must never take another digest's record.
    ANCHORD_LOG(Error) << name << " answered " << results.size() << " results for " << ready.size()
                       << " creates; retrying them";
    results.assign(ready.size(), providers::CreateResult{});
    for (auto& r : results) {
      r.outcome.kind = OutcomeKind::kRetry;
      r.outcome.code = "MISSING_RESULT";
      r.outcome.message = "the provider's batch answer did not match the request";
    }
  }
  for (size_t i = 0; i < ready.size(); ++i) {
    absl::Status st = Apply(provider, std::move(ready[i]), results[i], probe && i == 0);
    if (!st.ok() && first_error.ok()) first_error = st;
  }
  return first_error;
}

absl::Status Engine::Apply(providers::Provider* provider, Submission row,
                           const providers::CreateResult& result, bool probe) {
  const std::string& name = provider->name();
  const std::string digest_hex = row.digest.hex();
  const providers::CallOutcome& out = result.outcome;
  const absl::Time now = clock_->Now();
  if (stop_flag_ && out.kind == OutcomeKind::kRetry) {
    // The send was most likely cancelled by Stop(); the next process re-sends the same request.
    return store_->ReleaseLease(row.id);
  }
  if (metrics_)
    metrics_->outcomes.Add({{"provider", name}, {"outcome", KindLabel(out.kind)}}).Increment();

  if (probe && out.kind != OutcomeKind::kQuotaExhausted) {
    ANCHORD_LOG(Info) << "provider " << name << ": quota probe answered " << KindLabel(out.kind)
                      << "; resuming the queue";
    ANCHORD_RETURN_IF_ERROR(Resume(name).status());
  }

  switch (out.kind) {
    case OutcomeKind::kOk:
    case OutcomeKind::kDuplicate: {
      if (!result.record.has_value()) {
        // An adapter must return the record; treat its absence as a malformed answer.
        if (metrics_)
          metrics_->retries.Add({{"provider", name}, {"reason", "MISSING_RECORD"}}).Increment();
        return store_->Reschedule(row.id, now + BackoffDelay(options_.backoff, row.attempts), true,
                                  "MISSING_RECORD", "provider answer carried no record",
                                  out.request_id, now);
      }
      ANCHORD_LOG(Debug) << "digest " << digest_hex << " anchored with " << name << " as "
                         << result.record->proof_id;
      return store_->MarkSubmitted(row.id, ToStored(*result.record), out.request_id, now);
    }
    case OutcomeKind::kRateLimited: {
      absl::Duration wait = out.retry_after > absl::ZeroDuration()
                                ? out.retry_after
                                : BackoffDelay(options_.backoff, row.attempts);
      if (metrics_)
        metrics_->retries.Add({{"provider", name}, {"reason", "rate_limited"}}).Increment();
      ANCHORD_LOG(Info) << "digest " << digest_hex << " with " << name
                        << ": rate limited, retry in " << wait << " (request id " << out.request_id
                        << ")";
      return store_->Reschedule(row.id, now + wait, false, out.code, out.message, out.request_id,
                                now);
    }
    case OutcomeKind::kQuotaExhausted: {
      PauseInfo p;
      p.provider = name;
      p.reason = absl::StrCat(out.code.empty() ? "QUOTA_EXHAUSTED" : out.code, ": ", out.message);
      p.paused_at = now;
      p.probe_at = now + options_.quota_retry;
      {
        absl::MutexLock lock(&mu_);
        auto it = pauses_.find(name);
        if (it != pauses_.end()) p.paused_at = it->second.paused_at;
        pauses_[name] = p;
      }
      SetPausedGauge(name, true);
      ANCHORD_LOG(Warning) << "provider " << name << ": quota exhausted (" << out.code
                           << ", request id " << out.request_id << "); queue paused until "
                           << absl::FormatTime(p.probe_at) << " or ResumeQueue";
      ANCHORD_RETURN_IF_ERROR(store_->Pause(p));
      // Nothing is marked failed: the row keeps its key and body and goes out after the pause.
      return store_->Reschedule(row.id, row.next_attempt_at, false, out.code, out.message,
                                out.request_id, now);
    }
    case OutcomeKind::kPermanent: {
      ANCHORD_LOG(Error) << "digest " << digest_hex << " with " << name
                         << " failed for good: " << out.code << ": " << out.message
                         << " (request id " << out.request_id << ")";
      return store_->MarkFailed(row.id, static_cast<int>(PermanentCode(out.http_status)),
                                out.code.empty() ? "PERMANENT" : out.code, out.message,
                                out.request_id, now);
    }
    case OutcomeKind::kRetry:
    case OutcomeKind::kNotFound:
    default: {
      absl::Duration wait = std::max(BackoffDelay(options_.backoff, row.attempts), out.retry_after);
      const std::string reason = out.code.empty() ? "retry" : out.code;
      if (metrics_) metrics_->retries.Add({{"provider", name}, {"reason", reason}}).Increment();
      ANCHORD_LOG(Warning) << "digest " << digest_hex << " with " << name << ": " << reason << ": "
                           << out.message << " (request id " << out.request_id << ", attempt "
                           << row.attempts + 1 << "); retry in " << wait;
      return store_->Reschedule(row.id, now + wait, true, out.code, out.message, out.request_id,
                                now);
    }
  }
}

void Engine::WorkerLoop() {
  while (!stop_flag_) {
    uint64_t seen;
    {
      absl::MutexLock lock(&mu_);
      seen = wake_seq_;
    }
    absl::StatusOr<bool> did = RunOnce();
    if (!did.ok()) {
      ANCHORD_LOG(Error) << "submitter worker: " << did.status();
    }
    if (did.ok() && *did) continue;
    absl::MutexLock lock(&mu_);
    auto woken = [this, seen]()
                     ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || wake_seq_ != seen; };
    mu_.AwaitWithTimeout(absl::Condition(&woken), options_.idle_poll);
  }
}

void Engine::RefreshPauses() {
  // Replicas sharing a database learn each other's quota pauses (and pushed-out probe times, so
  // one probe goes out, not one per replica) and resumes.
  absl::StatusOr<std::vector<PauseInfo>> stored = store_->ListPauses();
  if (!stored.ok()) return;
  const absl::Time now = clock_->Now();
  std::map<std::string, bool> gauge;
  {
    absl::MutexLock lock(&mu_);
    std::map<std::string, PauseInfo> in_store;
    for (const PauseInfo& p : *stored) in_store[p.provider] = p;
    for (const auto& [name, p] : in_store) {
      auto it = pauses_.find(name);
      if (it == pauses_.end()) {
        pauses_[name] = p;
        gauge[name] = true;
      } else if (p.probe_at > it->second.probe_at) {
        it->second.probe_at = p.probe_at;
      }
    }
    for (auto it = pauses_.begin(); it != pauses_.end();) {
      // A pause this process made moments ago may not be stored yet; an older one that is gone
      // from the store was resumed (ResumeQueue on another replica).
      if (!in_store.count(it->first) && now - it->second.paused_at > absl::Seconds(30)) {
        gauge[it->first] = false;
        it = pauses_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (const auto& [name, paused] : gauge) {
    ANCHORD_LOG(Info) << "provider " << name << " queue "
                      << (paused ? "paused by another replica" : "resumed by another replica");
    SetPausedGauge(name, paused);
  }
}

absl::Duration GaugeRefreshDelay(absl::Duration interval, absl::Duration took, double max_duty) {
  if (!(max_duty > 0) || max_duty >= 1) return interval;
  return std::max(interval, took / max_duty);
}

void Engine::GaugeLoop() {
  absl::Time gauges_due = absl::InfinitePast();
  while (!stop_flag_) {
    RefreshPauses();
    const absl::Time start = absl::Now();
    if (start >= gauges_due) {
      RefreshGauges();
      gauges_due = start + GaugeRefreshDelay(options_.gauge_interval, absl::Now() - start,
                                             options_.gauge_max_duty);
    }
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.gauge_interval);
  }
}

void Engine::RefreshGauges() {
  if (metrics_ == nullptr) return;
  absl::StatusOr<std::vector<BacklogCount>> counts = store_->CountByProviderState();
  if (!counts.ok()) {
    ANCHORD_LOG(Warning) << "backlog gauge: " << counts.status();
    return;
  }
  // Every (provider, state) pair is set, zero included, so a drained state reads 0, not stale.
  std::map<std::pair<std::string, SubState>, int64_t> values;
  for (auto* p : providers_) {
    for (SubState s :
         {SubState::kQueued, SubState::kSubmitting, SubState::kSubmitted, SubState::kFailed}) {
      values[{p->name(), s}] = 0;
    }
  }
  for (const auto& c : *counts) values[{c.provider, c.state}] = c.count;
  for (const auto& [key, v] : values) {
    metrics_->backlog
        .Add({{"service", "submitter"},
              {"provider", key.first},
              {"state", SubStateName(key.second)}})
        .Set(static_cast<double>(v));
  }
}

}  // namespace anchord::submitter
