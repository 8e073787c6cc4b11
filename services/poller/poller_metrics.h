// The poller's metrics, declared once and registered on an injected registry.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <array>
#include <atomic>
#include <string>

#include "anchord/v1/poller.pb.h"

namespace anchord::poller {

struct PollerMetrics {
  explicit PollerMetrics(prometheus::Registry& registry);

  // anchord_backlog_digests{service="poller",provider,state}
  prometheus::Family<prometheus::Gauge>& backlog;
  // anchord_oldest_pending_proof_age_seconds{provider}
  prometheus::Family<prometheus::Gauge>& oldest_pending_age;
  // anchord_poller_events_total{type}
  prometheus::Family<prometheus::Counter>& events;
  // anchord_poller_lookups_total{provider,result}
  prometheus::Family<prometheus::Counter>& lookups;
  // anchord_poller_downloads_total{provider,result}
  prometheus::Family<prometheus::Counter>& downloads;
  // anchord_poller_ots_stored_total{provider}
  prometheus::Family<prometheus::Counter>& ots_stored;
  // anchord_poller_stalled_proofs{provider}
  prometheus::Family<prometheus::Gauge>& stalled;
  // anchord_provider_lookup_budget_remaining{provider}: status checks left in the provider's
  // current budget window (ProofLedger's public verify endpoint: 120 per hour per IP).
  prometheus::Family<prometheus::Gauge>& lookup_budget;
  // anchord_poller_watchers
  prometheus::Gauge& watchers;

  void CountEvent(anchord::v1::ProofEventType type);
  void CountLookup(const std::string& provider, const std::string& result);
  void CountDownload(const std::string& provider, const std::string& result);

 private:
  // events' counter of each type once looked up (a Track batch counts an event per leaf, and a
  // family's lookup builds and compares its label map). A family's counters stay where they are
  // until removed, and these never are.
  std::array<std::atomic<prometheus::Counter*>, anchord::v1::ProofEventType_ARRAYSIZE>
      event_counters_{};
};

}  // namespace anchord::poller
