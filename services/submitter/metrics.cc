#include "services/submitter/metrics.h"

#include "libs/common/metric_families.h"

namespace anchord::submitter {

SubmitterMetrics::SubmitterMetrics(prometheus::Registry& registry)
    : backlog(metrics::GaugeFamily(
          registry, "anchord_backlog_digests",
          "Digests per provider and state, as the service's store holds them.")),
      outcomes(metrics::CounterFamily(registry, "anchord_submitter_outcomes_total",
                                      "Outcomes of create requests sent to providers.")),
      retries(metrics::CounterFamily(registry, "anchord_provider_retries_total",
                                     "Create requests rescheduled for a later retry, by reason.")),
      queue_paused(metrics::GaugeFamily(
          registry, "anchord_submitter_queue_paused",
          "1 while the provider's queue is paused (e.g. monthly quota spent).")),
      handoffs(metrics::CounterFamily(registry, "anchord_submitter_handoffs_total",
                                      "Proofs handed to the poller and acknowledged, by result.")),
      intake(metrics::CounterFamily(registry, "anchord_submitter_intake_total",
                                    "Items received on the Submit stream, by result.")),
      merkle_batches(
          metrics::CounterFamily(registry, "anchord_submitter_merkle_batches_total",
                                 "Merkle batches sealed; each is anchored as one root.")),
      merkle_leaves(metrics::CounterFamily(registry, "anchord_submitter_merkle_leaves_total",
                                           "File digests put into sealed Merkle batches.")),
      intake_yield(metrics::CounterFamily(
          registry, "anchord_submitter_intake_yield_seconds_total",
          "Seconds the intake waited for the hand-off to the poller to catch up.")) {}

}  // namespace anchord::submitter
