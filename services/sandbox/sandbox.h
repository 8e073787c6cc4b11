// A local emulator of the proofd.id v1 API (../shared/providers/001_21c66ea2e2faf6be.txt) on
// loopback, so all of anchord runs and is tested offline.
//
// It implements the documented routes, error envelope and codes, Bearer auth, Idempotency-Key
// replay, owner-scoped duplicate detection, the monthly quota, list pagination with a `before`
// cursor, pending -> confirmed after a delay, real OpenTimestamps `.ots` proofs (accepted by the
// reference python library) anchored in fake Bitcoin blocks whose 80-byte headers it also serves,
// the three documented rate limits (sliding-window logs), and injectable faults (5xx, truncated
// responses, latency, 429 storms) driven by a seeded PRNG.
//
// Routes outside the documented API (no auth, not rate limited, not subject to faults):
//   GET  /_sandbox/stats                 counters as JSON (see SandboxStats)
//   GET  /_sandbox/faults                current faults as JSON
//   POST /_sandbox/faults                set faults: {"error_rate","drop_rate","latency_ms",
//                                        "storm_seconds"} (absent fields keep their value)
//   POST /_sandbox/reset                 clears records, idempotency keys, limits and counters
//   GET  /_sandbox/blocks/{height}/header  the fake block header, 160 hex chars
//
// Thread-safe. All state is in memory.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "libs/common/clock.h"

namespace anchord::sandbox {

struct Faults {
  double error_rate = 0;  // fraction of /api requests answered 500/502 before any processing
  double drop_rate = 0;   // fraction of /api responses cut off mid-body (connection closed)
  int latency_ms = 0;     // delay added to every /api request
  // When set through SetFaults: every /api request within this many seconds from now gets 429
  // with Retry-After 1. Reading back gives the seconds that remain.
  double storm_seconds = 0;
};

struct SandboxOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0 picks a free port, see Sandbox::port()
  // Keys that authenticate; each is its own account (owner scope for records and duplicates).
  std::vector<std::string> api_keys = {"proofd_live_sandbox"};
  // Keys that are known but not on a plan with API access: 403 PLAN_NOT_ENTITLED.
  std::vector<std::string> not_entitled_keys;
  int64_t monthly_quota = 0;  // creates per account; 0 = unlimited
  absl::Duration confirm_after = absl::Seconds(5);
  // Rate limits per the doc: `general_limit` requests per window per key (every request),
  // `create_key_limit` creates per window per key, `create_ip_limit` creates per window per source
  // IP. The doc's window is one minute; benches and tests shrink it. A limit <= 0 disables it.
  absl::Duration window = absl::Seconds(60);
  int general_limit = 120;
  int create_key_limit = 30;
  int create_ip_limit = 60;
  Faults faults;
  uint64_t seed = 1;  // drives faults, ids, nonces and fake transaction hashes
  // Used for certificate_url and verify_url, as the real service returns absolute URLs.
  std::string public_base_url = "https://proofd.id";
  int64_t first_block_height = 900000;
  int threads = 32;  // HTTP worker threads (at least 32)
  // Time source for record times, confirmation and rate limits (tests may pass a FakeClock).
  // Not owned; must outlive the Sandbox.
  Clock* clock = Clock::Real();
};

struct SandboxStats {
  int64_t requests_total = 0;        // every HTTP request, /_sandbox routes included
  int64_t creates_total = 0;         // records actually created
  int64_t replays_total = 0;         // idempotent replays served
  std::map<std::string, int64_t> creates_by_digest;  // lowercase hex -> records created
  int64_t max_creates_per_digest = 0;
  int64_t rate_limited_total = 0;    // 429s served (storms included)
  int64_t early_requests_total = 0;  // requests before the Retry-After last given to that key
  int64_t faults_injected_total = 0; // 5xx, dropped responses and storm 429s
  int64_t records_total = 0;
  int64_t confirmed_total = 0;
};

class Sandbox {
 public:
  // Binds options.host:options.port and starts serving. Errors when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<Sandbox>> Start(const SandboxOptions& options);
  ~Sandbox();
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  int port() const;
  SandboxStats Stats();
  void SetFaults(const Faults& faults);
  Faults GetFaults();
  // Clears records, idempotency keys, rate-limit logs and counters (faults are kept).
  void Reset();
  // Stops serving; idempotent. In-flight requests finish first.
  void Stop();

  class Impl;

 private:
  explicit Sandbox(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace anchord::sandbox
