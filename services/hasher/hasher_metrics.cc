#include "services/hasher/hasher_metrics.h"

namespace anchord::hasher {
namespace {

prometheus::Family<prometheus::Counter>& Files(prometheus::Registry& r) {
  return prometheus::BuildCounter()
      .Name("anchord_hasher_files_total")
      .Help("Files handled by the hasher, by result (hashed, unchanged, error).")
      .Register(r);
}

}  // namespace

HasherMetrics::HasherMetrics(prometheus::Registry& registry)
    : bytes(prometheus::BuildCounter()
                .Name("anchord_hasher_bytes_total")
                .Help("Bytes hashed by the hasher.")
                .Register(registry)
                .Add({})),
      files_hashed(Files(registry).Add({{"result", "hashed"}})),
      files_unchanged(Files(registry).Add({{"result", "unchanged"}})),
      files_error(Files(registry).Add({{"result", "error"}})),
      inflight(prometheus::BuildGauge()
                   .Name("anchord_hasher_inflight_digests")
                   .Help("Digests sent to the submitter and not yet acknowledged.")
                   .Register(registry)
                   .Add({})),
      reconnects(prometheus::BuildCounter()
                     .Name("anchord_hasher_submit_stream_reconnects_total")
                     .Help("Submit streams to the submitter reopened after a break or expiry.")
                     .Register(registry)
                     .Add({})) {}

}  // namespace anchord::hasher
