#include "libs/providers/metrics.h"

namespace anchord::providers {

ProviderMetrics::ProviderMetrics(prometheus::Registry& registry)
    : requests(prometheus::BuildCounter()
                   .Name("anchord_provider_requests_total")
                   .Help("HTTP requests sent to providers, by endpoint and HTTP status code.")
                   .Register(registry)),
      rate_limit_waits(prometheus::BuildCounter()
                           .Name("anchord_rate_limit_waits_total")
                           .Help("Requests that waited for client-side pacing or Retry-After.")
                           .Register(registry)),
      rate_limit_wait_seconds(prometheus::BuildCounter()
                                  .Name("anchord_rate_limit_wait_seconds_total")
                                  .Help("Seconds spent waiting for pacing or Retry-After.")
                                  .Register(registry)),
      rate_limited(prometheus::BuildCounter()
                       .Name("anchord_provider_rate_limited_total")
                       .Help("429 Too Many Requests answers received from providers.")
                       .Register(registry)) {}

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
