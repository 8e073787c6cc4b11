// A local emulator of four timestamping provider APIs on loopback, so all of anchord runs and is
// tested offline:
//
//  - proofd.id v1 (docs/providers/proofd.md), in sandbox.cc: the documented
//    routes, error envelope and codes, Bearer auth, Idempotency-Key replay, owner-scoped duplicate
//    detection, the monthly quota, list pagination with a `before` cursor, the three documented
//    rate limits, real OpenTimestamps `.ots` proofs.
//  - ProofLedger v1 (docs/providers/proofledger.md), proofledger_api.cc:
//    POST /api/v1/proof with `duplicate_of`, the public GET /api/v1/verify (120/hour per IP).
//  - SimpleProof (docs/providers/simpleproof.md), simpleproof_api.cc: batches of
//    up to 25 hashes, cost per new hash, document listing by status with pages, verification with
//    expiring .ots download URLs, callbacks to loopback callback_url from a background thread.
//  - an RFC 3161 time-stamping authority, tsa_api.cc: POST /tsa, GET /tsa/ca.pem.
//  - OpenTimestamps calendars (docs/providers/ots.md), calendar_api.cc: N calendars, each on
//    its own loopback origin (calendar_urls()), POST /digest and GET /timestamp/<commitment>.
//
// Where a document is silent the sandbox follows anchord's choices (docs/providers/); they are
// commented next to the code. Every API's confirmations land in ONE fake Bitcoin chain (real OTS
// merkle trees, 80-byte headers meeting their own regtest target) whose headers are served at
// /_sandbox/blocks/{h}/header; faults, the PRNG seed, the clock and the rate-limit windows are
// shared (sandbox_core.h).
//
// Routes outside the emulated APIs (no auth, not rate limited, not subject to faults):
//   GET  /_sandbox/stats                 counters as JSON (see SandboxStats)
//   GET  /_sandbox/faults                current faults as JSON
//   POST /_sandbox/faults                set faults: {"error_rate","drop_rate","latency_ms",
//                                        "storm_seconds","callback_drop_rate"} (absent fields
//                                        keep their value)
//   POST /_sandbox/reset                 clears records, idempotency keys, limits and counters
//   GET  /_sandbox/blocks/{height}/header  the fake block header, 160 hex chars
//   GET  /_sandbox/calendars             {"calendar_urls": [...]}
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
  double error_rate = 0;  // fraction of API requests answered 5xx before any processing
  double drop_rate = 0;   // fraction of API responses cut off mid-body (connection closed)
  int latency_ms = 0;     // delay added to every API request
  // When set through SetFaults: every API request within this many seconds from now gets 429
  // with Retry-After 1. Reading back gives the seconds that remain.
  double storm_seconds = 0;
  // Fraction of SimpleProof callbacks lost entirely (never sent, no retry).
  double callback_drop_rate = 0;
};

struct SandboxOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0 picks a free port, see Sandbox::port()
  // Keys that authenticate; each is its own account (owner scope for records and duplicates).
  std::vector<std::string> api_keys = {"proofd_live_sandbox"};
  // Keys that are known but not on a plan with API access: 403 PLAN_NOT_ENTITLED.
  std::vector<std::string> not_entitled_keys;
  int64_t monthly_quota = 0;  // creates per account; 0 = unlimited
  // Delay from accepting a digest (any API) to its fake block.
  absl::Duration confirm_after = absl::Seconds(5);
  // Rate limits per the doc: `general_limit` requests per window per key (every request),
  // `create_key_limit` creates per window per key, `create_ip_limit` creates per window per source
  // IP. The doc's window is one minute; benches and tests shrink it. A limit <= 0 disables it.
  // `window` is also the window of the ProofLedger create, SimpleProof and calendar limits.
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

  // ---- ProofLedger v1 ----
  std::vector<std::string> proofledger_api_keys = {"sk_sandbox"};
  std::vector<std::string> proofledger_not_entitled_keys;  // answered 403
  int proofledger_create_limit = 60;  // creates per `window` per key (undocumented)
  // The public verify endpoint: the doc's 120 requests per hour per IP.
  int proofledger_verify_limit = 120;
  absl::Duration proofledger_verify_window = absl::Hours(1);
  std::string proofledger_public_base_url = "https://proofledger.io";  // certificate_url

  // ---- SimpleProof ----
  std::vector<std::string> simpleproof_tokens = {"sp_sandbox_token"};
  int simpleproof_limit = 60;  // requests per `window` per token (undocumented)
  std::string simpleproof_public_base_url =
      "https://verify.simpleproof.com";  // url, verification_link
  // A callback answered with anything but 2xx (or not answered) is retried this many times,
  // `callback_retry_interval` apart; each attempt waits at most `callback_timeout`.
  int callback_retries = 3;
  absl::Duration callback_retry_interval = absl::Seconds(1);
  absl::Duration callback_timeout = absl::Seconds(5);
  // Lifetime of an ots_download_url handed out by /proof/verification (the doc's 1800 s).
  absl::Duration ots_url_ttl = absl::Seconds(1800);

  // ---- OpenTimestamps calendars ----
  int calendars = 2;                // listeners, one origin each (0 = none, at most 16)
  std::vector<int> calendar_ports;  // ports for the first calendars; missing or 0 = a free port
  // Cache-Control max-age of a "pending" 404 (the reference server's 60 s).
  absl::Duration pending_max_age = absl::Seconds(60);
  int calendar_limit = 0;  // POST /digest per `window` per client IP; 0 = unlimited (like otsd)

  // ---- RFC 3161 TSA (POST /tsa) ----
  int tsa_limit = 0;  // requests per `window` per client IP; 0 = unlimited
};

// Counters of one emulated API.
struct ApiStats {
  int64_t requests_total = 0;  // requests routed to this API
  int64_t creates_total = 0;   // records actually created (calendar: commitments)
  std::map<std::string, int64_t> creates_by_digest;  // lowercase hex -> records created
  int64_t max_creates_per_digest = 0;
  int64_t records_total = 0;
  int64_t confirmed_total = 0;
  int64_t rate_limited_total = 0;    // 429s served (storms included)
  int64_t early_requests_total = 0;  // requests before the Retry-After last given to that client
  int64_t faults_injected_total = 0;
};

struct ProofLedgerStats : ApiStats {
  int64_t duplicates_total = 0;  // creates answered with duplicate_of (no record, no quota)
  int64_t verify_requests_total = 0;
  std::map<std::string, int64_t> verify_requests_by_ip;      // every GET /api/v1/verify
  std::map<std::string, int64_t> verify_rate_limited_by_ip;  // of those, answered 429
};

struct SimpleProofStats : ApiStats {
  int64_t cost_units_total = 0;     // one per hash new to its account (the doc's per-hash cost)
  int64_t resubmitted_total = 0;    // hashes sent again: answered the same, cost nothing
  int64_t verifications_total = 0;  // POST /proof/verification answered 200
  int64_t ots_urls_issued_total = 0;
  int64_t ots_downloads_total = 0;        // .ots served through a valid URL
  int64_t ots_urls_expired_total = 0;     // downloads refused (expired or unknown URL)
  int64_t callbacks_sent_total = 0;       // callback POSTs made (every attempt)
  int64_t callbacks_delivered_total = 0;  // callbacks answered 2xx
  int64_t callbacks_failed_total = 0;     // callbacks given up after every retry
  int64_t callbacks_dropped_total = 0;    // lost to Faults::callback_drop_rate
  int64_t callbacks_skipped_total = 0;    // callback_url not on loopback: never called
};

struct CalendarStats : ApiStats {
  int64_t submissions_total = 0;  // POST /digest answered 200 (== creates_total)
  std::map<std::string, int64_t> submissions_by_calendar;  // calendar URL -> submissions
  int64_t upgrades_served_total = 0;                       // GET /timestamp answered 200 (complete)
  int64_t pending_answers_total = 0;                       // GET /timestamp answered 404 pending
  int64_t not_found_total = 0;  // GET /timestamp for an unknown commitment
};

struct TsaStats : ApiStats {
  int64_t tokens_total = 0;  // granted responses signed
};

struct SandboxStats {
  // Every HTTP request, /_sandbox routes and every API included.
  int64_t requests_total = 0;
  // proofd.id (kept here for source compatibility; also in `proofd`).
  int64_t creates_total = 0;                         // records actually created
  int64_t replays_total = 0;                         // idempotent replays served
  std::map<std::string, int64_t> creates_by_digest;  // lowercase hex -> records created
  int64_t max_creates_per_digest = 0;
  // Totals over every API (per API in the structs below).
  int64_t rate_limited_total = 0;     // 429s served (storms included)
  int64_t early_requests_total = 0;   // requests before the Retry-After last given to that client
  int64_t faults_injected_total = 0;  // 5xx, dropped responses and storm 429s
  // proofd.id again.
  int64_t records_total = 0;
  int64_t confirmed_total = 0;

  int64_t blocks_total = 0;  // fake blocks made (all APIs share the chain)
  ApiStats proofd;
  ProofLedgerStats proofledger;
  SimpleProofStats simpleproof;
  CalendarStats calendar;
  TsaStats tsa;
};

class Sandbox {
 public:
  // Binds options.host:options.port (proofd, ProofLedger, SimpleProof, /_sandbox) and one port per
  // calendar on options.host, and starts serving. Errors when an address cannot be bound.
  static absl::StatusOr<std::unique_ptr<Sandbox>> Start(const SandboxOptions& options);
  ~Sandbox();
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  int port() const;
  // The calendars' origins ("http://127.0.0.1:PORT", no trailing slash), in order.
  std::vector<std::string> calendar_urls() const;
  // The URL of the RFC 3161 endpoint ("http://127.0.0.1:PORT/tsa") and the PEM of the test CA its
  // tokens chain to (generated at start; what clients pass as --tsa-ca-file).
  std::string tsa_url() const;
  std::string tsa_ca_pem() const;
  SandboxStats Stats();
  void SetFaults(const Faults& faults);
  Faults GetFaults();
  // Clears records of every API, idempotency keys, rate-limit logs, pending callbacks and
  // counters (faults are kept; block heights keep counting up).
  void Reset();
  // Stops serving and the background threads (confirmation, callbacks); idempotent. In-flight
  // requests finish first.
  void Stop();

  class Impl;

 private:
  explicit Sandbox(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace anchord::sandbox
