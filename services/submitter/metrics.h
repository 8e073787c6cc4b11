// The submitter's own metrics, declared once from an injected registry.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

namespace anchord::submitter {

struct SubmitterMetrics {
  explicit SubmitterMetrics(prometheus::Registry& registry);

  // anchord_backlog_digests{service="submitter",provider,state}: rows per state, refreshed from the
  // store every few seconds.
  prometheus::Family<prometheus::Gauge>& backlog;
  // anchord_submitter_outcomes_total{provider,outcome}: create outcomes (OutcomeKindName, or
  // "invalid_argument" when the provider refused to prepare the request).
  prometheus::Family<prometheus::Counter>& outcomes;
  // anchord_provider_retries_total{provider,reason}: creates rescheduled (reason = provider code,
  // "rate_limited", ...).
  prometheus::Family<prometheus::Counter>& retries;
  // anchord_submitter_queue_paused{provider}: 1 while the provider's queue is paused (quota).
  prometheus::Family<prometheus::Gauge>& queue_paused;
  // anchord_submitter_handoffs_total{result}: proofs acknowledged by the poller ("ok", "rejected").
  prometheus::Family<prometheus::Counter>& handoffs;
  // anchord_submitter_intake_total{result}: Submit items ("stored", "duplicate", "invalid",
  // "error").
  prometheus::Family<prometheus::Counter>& intake;
  // anchord_submitter_merkle_batches_total{provider}: Merkle batches sealed (one root each).
  prometheus::Family<prometheus::Counter>& merkle_batches;
  // anchord_submitter_merkle_leaves_total{provider}: file digests put into sealed batches.
  prometheus::Family<prometheus::Counter>& merkle_leaves;
  // anchord_submitter_intake_yield_seconds_total: time the intake waited for the hand-off to
  // catch up before a group commit (HandoffOptions::behind_rows).
  prometheus::Family<prometheus::Counter>& intake_yield;
};

}  // namespace anchord::submitter
