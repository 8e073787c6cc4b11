// The hasher's Prometheus series, built once from an injected registry.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

namespace anchord::hasher {

struct HasherMetrics {
  explicit HasherMetrics(prometheus::Registry& registry);

  // anchord_hasher_bytes_total: bytes read from disk or received by HashFiles and hashed
  // (re-reads of a file that changed while hashed count again).
  prometheus::Counter& bytes;
  // anchord_hasher_files_total{result="hashed|unchanged|error"}
  prometheus::Counter& files_hashed;
  prometheus::Counter& files_unchanged;
  prometheus::Counter& files_error;
  // anchord_hasher_inflight_digests: sent to the submitter and not yet acknowledged.
  prometheus::Gauge& inflight;
  // anchord_hasher_submit_stream_reconnects_total: Submit streams reopened after a break or expiry.
  prometheus::Counter& reconnects;
};

}  // namespace anchord::hasher
