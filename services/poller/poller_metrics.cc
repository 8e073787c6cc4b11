#include "services/poller/poller_metrics.h"

#include "absl/strings/ascii.h"

namespace anchord::poller {

PollerMetrics::PollerMetrics(prometheus::Registry& registry)
    : backlog(prometheus::BuildGauge()
                  .Name("anchord_backlog_digests")
                  .Help("Proofs held by the service, by provider and state.")
                  .Register(registry)),
      oldest_pending_age(prometheus::BuildGauge()
                             .Name("anchord_oldest_pending_proof_age_seconds")
                             .Help("Age of the oldest proof still pending confirmation.")
                             .Register(registry)),
      events(prometheus::BuildCounter()
                 .Name("anchord_poller_events_total")
                 .Help("Proof events published, by type.")
                 .Register(registry)),
      lookups(prometheus::BuildCounter()
                  .Name("anchord_poller_lookups_total")
                  .Help("Provider lookups of pending proofs, by result.")
                  .Register(registry)),
      downloads(prometheus::BuildCounter()
                    .Name("anchord_poller_downloads_total")
                    .Help(".ots download attempts, by result.")
                    .Register(registry)),
      ots_stored(prometheus::BuildCounter()
                     .Name("anchord_poller_ots_stored_total")
                     .Help(".ots evidence files validated and stored.")
                     .Register(registry)),
      stalled(prometheus::BuildGauge()
                  .Name("anchord_poller_stalled_proofs")
                  .Help("Proofs pending longer than the stall limit.")
                  .Register(registry)),
      lookup_budget(prometheus::BuildGauge()
                        .Name("anchord_provider_lookup_budget_remaining")
                        .Help("Status checks left in the provider's current budget window.")
                        .Register(registry)),
      watchers(prometheus::BuildGauge()
                   .Name("anchord_poller_watchers")
                   .Help("Open Watch streams.")
                   .Register(registry)
                   .Add({})) {}

void PollerMetrics::CountEvent(anchord::v1::ProofEventType type) {
  std::string name = anchord::v1::ProofEventType_Name(type);
  constexpr absl::string_view kPrefix = "PROOF_EVENT_TYPE_";
  if (absl::string_view(name).substr(0, kPrefix.size()) == kPrefix) {
    name = name.substr(kPrefix.size());
  }
  events.Add({{"type", absl::AsciiStrToLower(name)}}).Increment();
}

void PollerMetrics::CountLookup(const std::string& provider, const std::string& result) {
  lookups.Add({{"provider", provider}, {"result", result}}).Increment();
}

void PollerMetrics::CountDownload(const std::string& provider, const std::string& result) {
  downloads.Add({{"provider", provider}, {"result", result}}).Increment();
}

}  // namespace anchord::poller
