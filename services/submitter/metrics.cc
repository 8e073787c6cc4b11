#include "services/submitter/metrics.h"

namespace anchord::submitter {

SubmitterMetrics::SubmitterMetrics(prometheus::Registry& registry)
    : backlog(prometheus::BuildGauge()
                  .Name("anchord_backlog_digests")
                  .Help("Digests per provider and state, as the service's store holds them.")
                  .Register(registry)),
      outcomes(prometheus::BuildCounter()
                   .Name("anchord_submitter_outcomes_total")
                   .Help("Outcomes of create requests sent to providers.")
                   .Register(registry)),
      retries(prometheus::BuildCounter()
                  .Name("anchord_provider_retries_total")
                  .Help("Create requests rescheduled for a later retry, by reason.")
                  .Register(registry)),
      queue_paused(prometheus::BuildGauge()
                       .Name("anchord_submitter_queue_paused")
                       .Help("1 while the provider's queue is paused (e.g. monthly quota spent).")
                       .Register(registry)),
      handoffs(prometheus::BuildCounter()
                   .Name("anchord_submitter_handoffs_total")
                   .Help("Proofs handed to the poller and acknowledged, by result.")
                   .Register(registry)),
      intake(prometheus::BuildCounter()
                 .Name("anchord_submitter_intake_total")
                 .Help("Items received on the Submit stream, by result.")
                 .Register(registry)),
      merkle_batches(prometheus::BuildCounter()
                         .Name("anchord_submitter_merkle_batches_total")
                         .Help("Merkle batches sealed; each is anchored as one root.")
                         .Register(registry)),
      merkle_leaves(prometheus::BuildCounter()
                        .Name("anchord_submitter_merkle_leaves_total")
                        .Help("File digests put into sealed Merkle batches.")
                        .Register(registry)) {}

}  // namespace anchord::submitter
