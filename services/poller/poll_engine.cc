#include "services/poller/poll_engine.h"

#include <algorithm>
#include <set>
#include <unordered_set>

#include "absl/strings/ascii.h"
#include "libs/common/log.h"
#include "libs/common/thread_name.h"
#include "services/poller/convert.h"
#include "services/poller/ots_check.h"

namespace anchord::poller {

using providers::OutcomeKind;
using providers::Provider;

namespace {

// Metric label of an outcome.
const char* ResultName(OutcomeKind kind) {
  return providers::OutcomeName(kind, {.ok = "ok",
                                       .duplicate = "ok",
                                       .retry = "error",
                                       .rate_limited = "rate_limited",
                                       .quota_exhausted = "quota_exhausted",
                                       .permanent = "permanent_error",
                                       .not_found = "not_found",
                                       .unknown = "error"});
}

// Whether a round should stop after this outcome: the provider will not answer better for the
// next proof either, and more requests only burn the shared per-key budget.

bool StopsRound(OutcomeKind kind) {
  return kind == OutcomeKind::kRateLimited || kind == OutcomeKind::kQuotaExhausted ||
         kind == OutcomeKind::kPermanent;
}

}  // namespace

void PublishEvent(EventBus& bus, PollerMetrics* metrics, anchord::v1::ProofEventType type,
                  const ProofRow& row, absl::Time now) {
  if (metrics) metrics->CountEvent(type);
  bus.Publish(type, row, now);  // builds nothing for nobody
}

void PublishEvent(EventBus& bus, PollerMetrics* metrics, anchord::v1::ProofEventType type,
                  ProofRow&& row, absl::Time now) {
  if (metrics) metrics->CountEvent(type);
  bus.Publish(type, std::move(row), now);
}

void PublishEvents(EventBus& bus, PollerMetrics* metrics, const std::vector<RowEvent>& events,
                   absl::Time now) {
  if (metrics) {
    for (const RowEvent& e : events) metrics->CountEvent(e.type);
  }
  bus.PublishAll(events, now);
}

void AppendLeafEvents(const std::vector<ProofRow>& leaves, bool were_confirmed,
                      std::vector<RowEvent>* out) {
  for (const ProofRow& leaf : leaves) {
    anchord::v1::ProofEventType type =
        leaf.state == anchord::v1::DIGEST_STATE_CONFIRMED
            ? (leaf.ots_size > 0 ? anchord::v1::PROOF_EVENT_TYPE_OTS_STORED
                                 : anchord::v1::PROOF_EVENT_TYPE_CONFIRMED)
        : leaf.state == anchord::v1::DIGEST_STATE_FAILED ? anchord::v1::PROOF_EVENT_TYPE_FAILED
        : leaf.stalled                                   ? anchord::v1::PROOF_EVENT_TYPE_STALLED
                       : anchord::v1::PROOF_EVENT_TYPE_UNSPECIFIED;
    if (type == anchord::v1::PROOF_EVENT_TYPE_UNSPECIFIED) continue;
    // A leaf confirmed with its proof already available gets both events, in order.
    if (type == anchord::v1::PROOF_EVENT_TYPE_OTS_STORED && !were_confirmed) {
      out->push_back({anchord::v1::PROOF_EVENT_TYPE_CONFIRMED, &leaf});
    }
    out->push_back({type, &leaf});
  }
}

void PublishLeafEvents(EventBus& bus, PollerMetrics* metrics, const std::vector<ProofRow>& leaves,
                       absl::Time now, bool were_confirmed) {
  std::vector<RowEvent> events;
  AppendLeafEvents(leaves, were_confirmed, &events);
  PublishEvents(bus, metrics, events, now);
}

providers::ProofRef PollEngine::RefOf(const ProofRow& row) {
  providers::ProofRef ref{row.proof_id, row.digest, ""};
  if (row.ots_size > 0) {
    // Calendars need the pending proof to find their commitments.
    auto ots = store_->GetOts(row.digest, row.provider);
    if (ots.ok() && ots->has_value()) ref.evidence = **ots;
  }
  return ref;
}

void PollEngine::Propagate(const ProofRow& root, absl::Time now, bool ots_only) {
  if (root.leaf_count <= 0) return;
  auto leaves = store_->PropagateToLeaves(root.digest, root.provider, now);
  if (!leaves.ok()) {
    ANCHORD_LOG(Error) << "poller store: " << leaves.status();
    return;
  }
  PublishLeafEvents(*bus_, metrics_, *leaves, now, ots_only);
}

bool PollEngine::Hint(const std::string& provider, const Digest& digest) {
  auto row = store_->Get(digest, provider);
  if (!row.ok() || !row->has_value() || (*row)->state != anchord::v1::DIGEST_STATE_PENDING ||
      (*row)->is_leaf()) {
    return false;
  }
  absl::MutexLock lock(&mu_);
  auto& set = hints_[provider];
  if (set.size() < 100000) set.insert(digest);
  ++hint_seq_;
  cv_.SignalAll();
  return true;
}

PollEngine::PollEngine(PollerStore* store, EventBus* bus, PollerMetrics* metrics, Clock* clock,
                       std::vector<Provider*> providers, PollEngineOptions options)
    : store_(store),
      bus_(bus),
      metrics_(metrics),
      clock_(clock),
      providers_(std::move(providers)),
      options_(options) {
  options_.max_lookups_per_round = std::max(1, options_.max_lookups_per_round);
  options_.list_page_limit = std::clamp(options_.list_page_limit, 1, 1000);
  options_.max_list_pages = std::max(1, options_.max_list_pages);
  options_.max_scan_rows = std::max(1, options_.max_scan_rows);
}

PollEngine::~PollEngine() { Stop(); }

void PollEngine::Start() {
  for (Provider* p : providers_) {
    threads_.push_back(StartNamedThread("poll", [this, p] { Loop(p); }));
  }
}

void PollEngine::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    cv_.SignalAll();
  }
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

void PollEngine::Loop(Provider* p) {
  while (true) {
    uint64_t seen;
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      seen = hint_seq_;
    }
    RunRound(p);
    absl::MutexLock lock(&mu_);
    // Real time here (not clock_): the interval paces real requests to a real provider. A
    // callback hint for this provider starts the next round at once.
    const absl::Time deadline = absl::Now() + options_.poll_interval;
    while (!stop_ && (hint_seq_ == seen || hints_[p->name()].empty())) {
      if (cv_.WaitWithDeadline(&mu_, deadline)) break;  // the interval is over
    }
    if (stop_) return;
  }
}

bool PollEngine::WalkPending(Provider* p, std::vector<std::string>* ids) {
  std::string cursor;
  for (int page = 0; page < options_.max_list_pages; ++page) {
    providers::ListPendingResult r = p->ListPending(cursor, options_.list_page_limit);
    if (!r.outcome.ok()) {
      ANCHORD_LOG(Warning) << "provider " << p->name() << ": listing pending proofs failed ("
                           << r.outcome.code << " " << r.outcome.message << ", request id "
                           << r.outcome.request_id << "); falling back to lookups";
      if (metrics_)
        metrics_->CountLookup(p->name(), std::string("list_") + ResultName(r.outcome.kind));
      return false;
    }
    if (metrics_) metrics_->CountLookup(p->name(), "list_ok");
    for (const auto& rec : r.records) ids->push_back(rec.proof_id);
    if (r.next_cursor.empty()) return true;
    if (r.next_cursor == cursor) {
      ANCHORD_LOG(Error) << "provider " << p->name() << ": pending list returned the same cursor "
                         << "twice; ignoring this walk";
      return false;
    }
    cursor = r.next_cursor;
  }
  ANCHORD_LOG(Warning) << "provider " << p->name() << ": pending list longer than "
                       << options_.max_list_pages << " pages; falling back to lookups";
  return false;
}

RoundStats PollEngine::RunRound(Provider* p) {
  RoundStats stats;
  const std::string& name = p->name();
  const absl::Time walk_start = clock_->Now();
  const int budget = options_.max_lookups_per_round;

  // 0: proofs a callback named: checked first, through the API (a callback is only a hint).
  std::set<Digest> hinted;
  {
    absl::MutexLock lock(&mu_);
    hinted.swap(hints_[name]);
  }
  std::vector<ProofRow> to_check;
  std::set<Digest> queued;
  for (const Digest& digest : hinted) {
    if (static_cast<int>(to_check.size()) >= budget) break;
    auto row = store_->Get(digest, name);
    if (row.ok() && row->has_value() && (*row)->state == anchord::v1::DIGEST_STATE_PENDING) {
      queued.insert(digest);
      to_check.push_back(std::move(**row));
    }
  }

  // Leaves left behind their root (PENDING under a final root, or a root's change whose
  // propagation was cut off: see SettleStrandedLeaves): settled before anything else, without a
  // provider request.
  if (auto stranded = store_->SettleStrandedLeaves(name, walk_start, 100); !stranded.ok()) {
    ANCHORD_LOG(Error) << "poller store: " << stranded.status();
  } else if (!stranded->empty()) {
    ANCHORD_LOG(Warning) << stranded->size() << " leaves of " << name
                         << " were behind their root (a propagation was cut off); settled";
    PublishLeafEvents(*bus_, metrics_, *stranded, walk_start);
  }

  // 1 + 2: choose the proofs to look up.
  bool walked = false;
  // Nothing of ours pending: no walk (it would spend a request of the shared budget per round).
  bool any_pending = true;
  if (auto probe = store_->PendingToCheck(name, absl::InfiniteFuture(), 1); probe.ok()) {
    any_pending = !probe->empty();
  }
  if (p->SupportsListPending() && any_pending) {
    std::vector<std::string> ids;
    walked = WalkPending(p, &ids);
    if (walked) {
      std::unordered_set<std::string> still_pending(ids.begin(), ids.end());
      ListFilter filter;
      filter.provider = name;
      filter.state = anchord::v1::DIGEST_STATE_PENDING;
      filter.with_files = false;   // ids are enough
      filter.with_leaves = false;  // leaves follow their root
      int64_t after;
      {
        absl::MutexLock lock(&mu_);
        after = scan_after_[name];
      }
      // Bounded by max_scan_rows: with a large backlog still pending at the provider, a scan to
      // the end of the table every round would read the whole backlog each time.
      constexpr int kPage = 500;
      const int64_t start_after = after;
      bool wrapped = false, done = false;
      for (int scanned = 0; !done && scanned < options_.max_scan_rows &&
                            static_cast<int>(to_check.size()) < budget;) {
        auto rows = store_->List(filter, after, std::min(kPage, options_.max_scan_rows - scanned));
        if (!rows.ok()) {
          ANCHORD_LOG(Error) << "poller store: " << rows.status();
          break;
        }
        if (rows->empty()) {
          // The end of the table: start again from the oldest, once per round.
          if (after == 0 || wrapped) break;
          wrapped = true;
          after = 0;
          continue;
        }
        for (ProofRow& row : *rows) {
          if (wrapped && row.seq > start_after) {  // back where this round started
            done = true;
            break;
          }
          ++scanned;
          after = row.seq;
          // A proof handed off after the walk started may simply not be listed yet.
          if (row.tracked_at >= walk_start) continue;
          if (queued.count(row.digest) || still_pending.count(row.proof_id)) continue;
          to_check.push_back(std::move(row));
          if (static_cast<int>(to_check.size()) >= budget) break;
        }
      }
      absl::MutexLock lock(&mu_);
      scan_after_[name] = after;
    }
  }
  stats.walked = walked;
  if (!walked && any_pending) {
    auto rows = store_->PendingToCheck(name, absl::InfiniteFuture(), budget);
    if (!rows.ok()) {
      ANCHORD_LOG(Error) << "poller store: " << rows.status();
    } else {
      for (ProofRow& row : *rows) {
        if (static_cast<int>(to_check.size()) >= budget) break;
        if (!queued.count(row.digest)) to_check.push_back(std::move(row));
      }
    }
  }

  // Replicas sharing the store split the round: only the proofs this engine claimed are asked
  // about (with one process, it claims them all).
  if (!to_check.empty()) {
    const absl::Time claim_at = clock_->Now();
    auto claimed =
        store_->ClaimChecks(name, std::move(to_check), options_.owner, claim_at,
                            claim_at + std::max(options_.poll_interval, absl::Seconds(1)));
    if (!claimed.ok()) {
      ANCHORD_LOG(Error) << "poller store: " << claimed.status();
      to_check.clear();
    } else {
      to_check = std::move(*claimed);
    }
  }

  bool go_on = true;
  {
    CheckMarks marks(store_);
    for (const ProofRow& row : to_check) {
      if (!(go_on = LookupOne(p, row, &stats, &marks))) break;
    }
  }

  // 3: evidence of confirmed proofs (including the ones confirmed just now).
  if (go_on && p->OffersOts()) {
    auto rows = store_->ConfirmedWithoutOts(name, budget);
    if (rows.ok() && !rows->empty()) {
      // Replicas split the downloads the same way as the lookups.
      const absl::Time claim_at = clock_->Now();
      rows = store_->ClaimChecks(name, std::move(*rows), options_.owner, claim_at,
                                 claim_at + std::max(options_.poll_interval, absl::Seconds(1)));
    }
    if (!rows.ok()) {
      ANCHORD_LOG(Error) << "poller store: " << rows.status();
    } else {
      CheckMarks marks(store_);
      for (const ProofRow& row : *rows) {
        if (!DownloadOne(p, row, &stats, &marks)) break;
      }
    }
  }

  // 4: stall detection.
  absl::Time now = clock_->Now();
  for (int pages = 0; pages < 1000; ++pages) {
    auto rows = store_->NewlyStalled(name, now - options_.stall_after, 500);
    if (!rows.ok()) {
      ANCHORD_LOG(Error) << "poller store: " << rows.status();
      break;
    }
    if (rows->empty()) break;
    for (const ProofRow& row : *rows) {
      auto marked = store_->MarkStalled(row.digest, row.provider, now);
      if (!marked.ok()) {
        ANCHORD_LOG(Error) << "poller store: " << marked.status();
        continue;
      }
      if (!marked->has_value()) continue;
      ++stats.stalled;
      ANCHORD_LOG(Warning) << "proof " << row.proof_id << " (" << row.digest.hex() << ") with "
                           << name << " pending for longer than " << options_.stall_after;
      PublishEvent(*bus_, metrics_, anchord::v1::PROOF_EVENT_TYPE_STALLED, **marked, now);
      Propagate(**marked, now);
    }
  }

  // 5: fallback anchoring of stalled proofs whose job asked for it (leaves included).
  if (options_.fallback) {
    auto due = store_->FallbacksDue(name, 500);
    if (!due.ok()) {
      ANCHORD_LOG(Error) << "poller store: " << due.status();
    } else {
      for (const ProofRow& row : *due) {
        absl::Status sent = options_.fallback(row);
        if (!sent.ok()) {
          ANCHORD_LOG(Warning) << "fallback of " << row.digest.hex() << " to "
                               << row.fallback_provider << " failed: " << sent
                               << "; retrying next round";
          break;
        }
        ANCHORD_LOG(Info) << "stalled proof of " << row.digest.hex() << " with " << name
                          << ": anchoring with fallback provider " << row.fallback_provider;
        if (metrics_) metrics_->CountLookup(name, "fallback");
        absl::Status st = store_->MarkFallbackSent(row.digest, row.provider);
        if (!st.ok()) {
          ANCHORD_LOG(Error) << "poller store: " << st;
        }
      }
    }
  }

  RefreshGauges();
  return stats;
}

void CheckMarks::Add(const ProofRow& row, absl::Time at) {
  held_.push_back({row.digest, row.provider, at});
  if (held_.size() >= kGroup || at - held_.front().at >= kHold) Flush();
}

void CheckMarks::Flush() {
  if (held_.empty()) return;
  absl::Status st = store_->MarkCheckedAll(held_);
  if (!st.ok()) {
    ANCHORD_LOG(Error) << "poller store: " << st;
  }
  held_.clear();
}

bool PollEngine::LookupOne(Provider* p, const ProofRow& row, RoundStats* stats, CheckMarks* marks) {
  const std::string& name = p->name();
  ++stats->lookups;
  providers::LookupResult r = p->Lookup(RefOf(row));
  absl::Time now = clock_->Now();
  auto checked = [&] { marks->Add(row, now); };
  if (!r.outcome.ok()) {
    if (metrics_) metrics_->CountLookup(name, ResultName(r.outcome.kind));
    if (r.outcome.kind == OutcomeKind::kNotFound) {
      ANCHORD_LOG(Warning) << name << " does not know proof " << row.proof_id << " (request id "
                           << r.outcome.request_id << "); still pending";
    } else {
      ANCHORD_LOG(Warning) << name << " lookup of " << row.proof_id << " failed: " << r.outcome.code
                           << " " << r.outcome.message << " (request id " << r.outcome.request_id
                           << ")";
    }
    checked();
    return !StopsRound(r.outcome.kind);
  }
  if (!r.record.has_value()) {
    if (metrics_) metrics_->CountLookup(name, "invalid");
    ANCHORD_LOG(Error) << name << " lookup of " << row.proof_id << " returned no record";
    checked();
    return true;
  }
  const providers::ProviderRecord& rec = *r.record;
  // Never trust a record for another digest or another id: keep the proof pending.
  if (rec.digest != row.digest || (!rec.proof_id.empty() && rec.proof_id != row.proof_id)) {
    if (metrics_) metrics_->CountLookup(name, "invalid");
    ANCHORD_LOG(Error) << name << " answered the lookup of " << row.proof_id << " ("
                       << row.digest.hex() << ") with record " << rec.proof_id << " for "
                       << rec.digest.hex() << " (request id " << r.outcome.request_id
                       << "); ignoring it";
    checked();
    return true;
  }
  // Evidence that came with the answer (calendar upgrades, SimpleProof's expiring download) is
  // validated before anything is stored.
  std::string evidence;
  if (!rec.evidence.empty()) {
    absl::Status valid = CheckEvidence(rec.evidence, row.digest);
    if (valid.ok()) {
      evidence = rec.evidence;
    } else {
      if (metrics_) metrics_->CountDownload(name, "invalid");
      ANCHORD_LOG(Error) << name << " .ots with the lookup of " << row.proof_id << " ("
                         << row.digest.hex() << ") rejected: " << valid.message();
    }
  }
  switch (rec.state) {
    case providers::RecordState::kPending:
      if (metrics_) metrics_->CountLookup(name, "pending");
      if (!evidence.empty()) {
        auto st = store_->ReplaceOts(row.digest, row.provider, evidence, now);
        if (!st.ok()) {
          ANCHORD_LOG(Error) << "poller store: " << st.status();
        }
      }
      checked();
      return true;
    case providers::RecordState::kConfirmed: {
      if (metrics_) metrics_->CountLookup(name, "confirmed");
      ConfirmInput in;
      in.certificate_url = rec.certificate_url;
      in.verify_url = rec.verify_url;
      in.block_height = std::max<int64_t>(0, rec.block_height);
      in.bitcoin_tx = rec.bitcoin_tx;
      in.confirmed_at = rec.confirmed_at;
      in.ots = evidence;
      auto updated = store_->MarkConfirmed(row.digest, row.provider, in, now);
      if (!updated.ok()) {
        ANCHORD_LOG(Error) << "poller store: " << updated.status();
      } else if (updated->has_value()) {
        ++stats->confirmed;
        ANCHORD_LOG(Info) << "proof " << row.proof_id << " (" << row.digest.hex()
                          << ") confirmed in block " << in.block_height;
        PublishEvent(*bus_, metrics_, anchord::v1::PROOF_EVENT_TYPE_CONFIRMED, **updated, now);
        if (!evidence.empty()) {
          ++stats->ots_stored;
          if (metrics_) metrics_->ots_stored.Add({{"provider", name}}).Increment();
          PublishEvent(*bus_, metrics_, anchord::v1::PROOF_EVENT_TYPE_OTS_STORED, **updated, now);
        }
        Propagate(**updated, now);
      }
      return true;
    }
    case providers::RecordState::kFailed: {
      if (metrics_) metrics_->CountLookup(name, "failed");
      auto updated = store_->MarkFailed(row.digest, row.provider,
                                        static_cast<int32_t>(absl::StatusCode::kFailedPrecondition),
                                        "the provider reports the timestamp as failed",
                                        "PROVIDER_REPORTED_FAILED", r.outcome.request_id, now);
      if (!updated.ok()) {
        ANCHORD_LOG(Error) << "poller store: " << updated.status();
      } else if (updated->has_value()) {
        ++stats->failed;
        ANCHORD_LOG(Warning) << "proof " << row.proof_id << " failed at " << name << " (request id "
                             << r.outcome.request_id << ")";
        PublishEvent(*bus_, metrics_, anchord::v1::PROOF_EVENT_TYPE_FAILED, **updated, now);
        Propagate(**updated, now);
      }
      return true;
    }
  }
  return true;
}

bool PollEngine::DownloadOne(Provider* p, const ProofRow& row, RoundStats* stats,
                             CheckMarks* marks) {
  const std::string& name = p->name();
  if (row.proof_id.empty()) return true;
  ++stats->downloads;
  providers::DownloadResult r = p->DownloadProof(RefOf(row));
  absl::Time now = clock_->Now();
  auto checked = [&] { marks->Add(row, now); };
  if (!r.outcome.ok()) {
    if (metrics_) metrics_->CountDownload(name, ResultName(r.outcome.kind));
    if (r.outcome.kind != OutcomeKind::kNotFound) {
      ANCHORD_LOG(Warning) << name << " .ots download of " << row.proof_id
                           << " failed: " << r.outcome.code << " " << r.outcome.message
                           << " (request id " << r.outcome.request_id << ")";
    }
    checked();  // kNotFound: not ready yet, next round asks again
    return !StopsRound(r.outcome.kind);
  }
  absl::Status valid = CheckEvidence(r.ots, row.digest);
  if (!valid.ok()) {
    if (metrics_) metrics_->CountDownload(name, "invalid");
    ANCHORD_LOG(Error) << name << " .ots of " << row.proof_id << " (" << row.digest.hex()
                       << ") rejected: " << valid.message() << " (request id "
                       << r.outcome.request_id << "); will retry";
    checked();
    return true;
  }
  auto updated = store_->StoreOts(row.digest, row.provider, r.ots, now);
  if (!updated.ok()) {
    ANCHORD_LOG(Error) << "poller store: " << updated.status();
    return true;
  }
  if (metrics_) metrics_->CountDownload(name, "ok");
  if (updated->has_value()) {
    ++stats->ots_stored;
    if (metrics_) metrics_->ots_stored.Add({{"provider", name}}).Increment();
    PublishEvent(*bus_, metrics_, anchord::v1::PROOF_EVENT_TYPE_OTS_STORED, **updated, now);
    // The root was confirmed before its .ots came: its leaves were too (CONFIRMED was published
    // then); only the evidence is news.
    Propagate(**updated, now, /*ots_only=*/true);
  }
  return true;
}

void PollEngine::RefreshGauges() {
  if (!metrics_) return;
  auto stats = store_->Stats();
  if (!stats.ok()) {
    ANCHORD_LOG(Error) << "poller store: " << stats.status();
    return;
  }
  absl::Time now = clock_->Now();
  std::vector<std::string> names;
  for (Provider* p : providers_) names.push_back(p->name());
  for (const auto& [name, _] : *stats) names.push_back(name);
  for (const std::string& name : names) {
    auto it = stats->find(name);
    PollerStore::ProviderStats ps = it == stats->end() ? PollerStore::ProviderStats{} : it->second;
    for (DigestState s : {anchord::v1::DIGEST_STATE_PENDING, anchord::v1::DIGEST_STATE_CONFIRMED,
                          anchord::v1::DIGEST_STATE_FAILED}) {
      std::string state = absl::AsciiStrToLower(
          absl::string_view(anchord::v1::DigestState_Name(s)).substr(strlen("DIGEST_STATE_")));
      auto found = ps.proofs_by_state.find(s);
      metrics_->backlog.Add({{"service", "poller"}, {"provider", name}, {"state", state}})
          .Set(found == ps.proofs_by_state.end() ? 0.0 : static_cast<double>(found->second));
    }
    double age = ps.oldest_pending == absl::InfiniteFuture()
                     ? 0.0
                     : std::max(0.0, absl::ToDoubleSeconds(now - ps.oldest_pending));
    metrics_->oldest_pending_age.Add({{"provider", name}}).Set(age);
    metrics_->stalled.Add({{"provider", name}}).Set(static_cast<double>(ps.stalled));
  }
  for (Provider* p : providers_) {
    const int64_t left = p->LookupBudgetRemaining();
    if (left >= 0) {
      metrics_->lookup_budget.Add({{"provider", p->name()}}).Set(static_cast<double>(left));
    }
  }
}

}  // namespace anchord::poller
