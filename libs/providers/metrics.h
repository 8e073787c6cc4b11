// Metrics every provider adapter records, declared once and shared by all adapters of a process.
#pragma once

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/registry.h>

#include <string>

namespace anchord::providers {

struct ProviderMetrics {
  explicit ProviderMetrics(prometheus::Registry& registry);

  // anchord_provider_requests_total{provider,endpoint,code}: code is the HTTP status, or "error"
  // when no answer arrived.
  prometheus::Family<prometheus::Counter>& requests;
  // anchord_rate_limit_waits_total{provider,bucket}: requests that had to wait for pacing.
  prometheus::Family<prometheus::Counter>& rate_limit_waits;
  // anchord_rate_limit_wait_seconds_total{provider,bucket}: time spent waiting for pacing.
  prometheus::Family<prometheus::Counter>& rate_limit_wait_seconds;
  // anchord_provider_rate_limited_total{provider}: 429 answers received.
  prometheus::Family<prometheus::Counter>& rate_limited;

  void CountRequest(const std::string& provider, const std::string& endpoint, int http_status);
  void CountWait(const std::string& provider, const std::string& bucket, double seconds);
};

}  // namespace anchord::providers
