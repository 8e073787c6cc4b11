#include "libs/providers/metrics.h"

#include "libs/common/metric_families.h"

namespace anchord::providers {

ProviderMetrics::ProviderMetrics(prometheus::Registry& registry)
    : requests(metrics::CounterFamily(
          registry, "anchord_provider_requests_total",
          "HTTP requests sent to providers, by endpoint and HTTP status code.")),
      rate_limit_waits(
          metrics::CounterFamily(registry, "anchord_rate_limit_waits_total",
                                 "Requests that waited for client-side pacing or Retry-After.")),
      rate_limit_wait_seconds(
          metrics::CounterFamily(registry, "anchord_rate_limit_wait_seconds_total",
                                 "Seconds spent waiting for pacing or Retry-After.")),
      rate_limited(
          metrics::CounterFamily(registry, "anchord_provider_rate_limited_total",
                                 "429 Too Many Requests answers received from providers.")) {}

void ProviderMetrics::CountRequest(const std::string& provider, const std::string& endpoint,
                                   int http_status) {
  requests
      .Add({{"provider", provider},
            {"endpoint", endpoint},
            {"code", http_status > 0 ? std::to_string(http_status) : "error"}})
      .Increment();
  if (http_status == 429) rate_limited.Add({{"provider", provider}}).Increment();
}

void ProviderMetrics::CountWait(const std::string& provider, const std::string& bucket,
                                double seconds) {
  if (seconds <= 0) return;
  rate_limit_waits.Add({{"provider", provider}, {"bucket", bucket}}).Increment();
  rate_limit_wait_seconds.Add({{"provider", provider}, {"bucket", bucket}}).Increment(seconds);
}

}  // namespace anchord::providers
