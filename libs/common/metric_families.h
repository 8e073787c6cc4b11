// Registering a metric family in one call: the name and help text every family needs, without
// prometheus-cpp's builder chain repeated for each. Header-only; includers link
// prometheus-cpp::core (libs/common itself does not).
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include <string>

namespace anchord::metrics {

// The counter family `name`, registered in `registry` with `help`.
inline prometheus::Family<prometheus::Counter>& CounterFamily(prometheus::Registry& registry,
                                                              const std::string& name,
                                                              const std::string& help) {
  return prometheus::BuildCounter().Name(name).Help(help).Register(registry);
}

// The gauge family `name`, registered in `registry` with `help`.
inline prometheus::Family<prometheus::Gauge>& GaugeFamily(prometheus::Registry& registry,
                                                          const std::string& name,
                                                          const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry);
}

}  // namespace anchord::metrics
