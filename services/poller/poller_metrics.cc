#include "services/poller/poller_metrics.h"

#include "absl/strings/ascii.h"
#include "libs/common/metric_families.h"

namespace anchord::poller {

PollerMetrics::PollerMetrics(prometheus::Registry& registry)
    : backlog(metrics::GaugeFamily(registry, "anchord_backlog_digests",
                                   "Proofs held by the service, by provider and state.")),
      oldest_pending_age(
          metrics::GaugeFamily(registry, "anchord_oldest_pending_proof_age_seconds",
                               "Age of the oldest proof still pending confirmation.")),
      events(metrics::CounterFamily(registry, "anchord_poller_events_total",
                                    "Proof events published, by type.")),
      lookups(metrics::CounterFamily(registry, "anchord_poller_lookups_total",
                                     "Provider lookups of pending proofs, by result.")),
      downloads(metrics::CounterFamily(registry, "anchord_poller_downloads_total",
                                       ".ots download attempts, by result.")),
      ots_stored(metrics::CounterFamily(registry, "anchord_poller_ots_stored_total",
                                        ".ots evidence files validated and stored.")),
      stalled(metrics::GaugeFamily(registry, "anchord_poller_stalled_proofs",
                                   "Proofs pending longer than the stall limit.")),
      lookup_budget(
          metrics::GaugeFamily(registry, "anchord_provider_lookup_budget_remaining",
                               "Status checks left in the provider's current budget window.")),
      watchers(metrics::GaugeFamily(registry, "anchord_poller_watchers", "Open Watch streams.")
                   .Add({})) {}

void PollerMetrics::CountEvent(anchord::v1::ProofEventType type) {
  const bool cached = type >= 0 && type < anchord::v1::ProofEventType_ARRAYSIZE;
  if (cached) {
    if (prometheus::Counter* c = event_counters_[type].load(std::memory_order_acquire)) {
      c->Increment();
      return;
    }
  }
  std::string name = anchord::v1::ProofEventType_Name(type);
  constexpr absl::string_view kPrefix = "PROOF_EVENT_TYPE_";
  if (absl::string_view(name).substr(0, kPrefix.size()) == kPrefix) {
    name = name.substr(kPrefix.size());
  }
  prometheus::Counter& counter = events.Add({{"type", absl::AsciiStrToLower(name)}});
  // Two threads may both look it up: they find the same counter.
  if (cached) event_counters_[type].store(&counter, std::memory_order_release);
  counter.Increment();
}

void PollerMetrics::CountLookup(const std::string& provider, const std::string& result) {
  lookups.Add({{"provider", provider}, {"result", result}}).Increment();
}

void PollerMetrics::CountDownload(const std::string& provider, const std::string& result) {
  downloads.Add({{"provider", provider}, {"result", result}}).Increment();
}

}  // namespace anchord::poller
