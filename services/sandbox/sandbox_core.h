// What the emulated provider APIs of one Sandbox share (internal to services/sandbox): one mutex,
// the options, the clock, the seeded PRNGs, the faults, the rate-limit sliding windows, the
// per-client Retry-After bookkeeping behind "early request" counting, the counters, and the fake
// Bitcoin chain into which every API's confirmations go.
//
// One mutex for everything: the sandbox serves tests and local stacks, not production load, and a
// single lock makes cross-API invariants (one chain, one PRNG sequence per seed) trivially hold.
#pragma once

#include <httplib.h>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libs/common/clock.h"
#include "libs/ots/ots.h"
#include "services/sandbox/sandbox.h"

namespace anchord::sandbox::internal {

using ojson = nlohmann::ordered_json;

// Client-supplied strings (filenames) may hold invalid UTF-8; never let dump() throw on them.
std::string Dump(const ojson& j);
// ISO-8601 UTC with milliseconds: 2024-03-27T18:29:17.684Z.
std::string FormatIso(absl::Time t);
int64_t CeilSeconds(absl::Duration d);
// Only ASCII decimal digits, 1..max_digits of them, into *out.
bool ParseSmallUint(absl::string_view s, size_t max_digits, int64_t* out);
// "127.0.0.0/8", "localhost" and "::1" (with or without brackets). No name resolution.
bool IsLoopbackHost(absl::string_view host);
// The host to put in URLs the sandbox hands out for a listener bound to `bind_host`: a wildcard
// bind is reached through 127.0.0.1, and an IPv6 literal through "localhost" because brackets are
// not allowed in an OpenTimestamps pending URI.
std::string UrlHost(const std::string& bind_host);

// The client a Retry-After is addressed to: `identity` (API-prefixed key, token or source IP)
// together with the request's User-Agent. See Core::Admit.
std::string ClientKey(absl::string_view identity, const httplib::Request& req);

// The key of "Authorization: Bearer <key>", trimmed; empty for any other form.
std::string BearerToken(const httplib::Request& req);

struct Reply {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
};

// Fills `res`; `rid` empty sends no X-Request-Id. With `drop` the headers announce the full
// length, half the body is written and the connection is closed (a truncated response).
void Send(const Reply& reply, const std::string& rid, bool drop, httplib::Response& res);

enum class ApiId { kProofd, kProofLedger, kSimpleProof, kCalendar, kTsa };

// (root, leaf): root = `digest`, leaf = sha256(digest || nonce), the leaf a digest gets in a fake
// block. The per-record nonce keeps the digest private from the block's other leaves (what
// `ots stamp` does per file). The root is the tree of the record's detached proof.
absl::StatusOr<std::pair<std::shared_ptr<ots::Timestamp>, std::shared_ptr<ots::Timestamp>>>
NoncedLeaf(std::string digest, const std::string& nonce);

struct Confirmation {
  int64_t height = 0;
  absl::Time time;
};

// An API that registered leaves with Core::AddPending.
class ChainListener {
 public:
  virtual ~ChainListener() = default;
  // Called with Core::mu() held, once per registered leaf, when its block is made (implementations
  // annotate it ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu()): the interface cannot name the mutex of
  // the Core they share). By then the
  // leaf carries its merkle path up to a Bitcoin attestation at c.height. `ok` false: no proof
  // could be built (cannot happen for 32-byte leaves; the API reports the record as failed).
  virtual void OnConfirmedLocked(const std::string& ref, const Confirmation& c, bool ok) = 0;
};

// What the fault dice decided for one API request.
struct Admission {
  bool storm = false;  // answer 429 with Retry-After 1 (already counted and noted)
  bool error = false;  // answer a 5xx before any processing (already counted)
  bool drop = false;   // cut the answer off (counted when sent, see Core::CountDrop)
};

class Core {
 public:
  explicit Core(const SandboxOptions& o);
  Core(const Core&) = delete;
  Core& operator=(const Core&) = delete;

  const SandboxOptions& opt() const { return opt_; }
  Clock* clock() const { return clock_; }
  // The one lock of the sandbox: the APIs' own state is guarded by it too (ABSL_GUARDED_BY(
  // core_->mu())), so that an API request sees its state, the chain and the counters at once.
  absl::Mutex& mu() ABSL_LOCK_RETURNED(mu_) { return mu_; }

  // Counts one request (any API, any route) and returns the latency fault to apply, in ms.
  int CountRequest() ABSL_LOCKS_EXCLUDED(mu_);
  // Sleeps the latency fault; never with the mutex held.
  static void SleepLatency(int latency_ms);
  // The rest of an API request: `answer` runs with the mutex held (it makes the time's blocks,
  // calls Admit and tells through its argument whether the answer is cut off, a drop that is then
  // counted against `api`); the answer is logged as "sandbox: <label><method> <path> -> <status>
  // [rid]" and sent with `rid` (none when empty) after the mutex is released.
  void Answer(ApiId api, absl::string_view label, const std::string& rid,
              const httplib::Request& req, httplib::Response& res,
              absl::FunctionRef<Reply(bool* drop)> answer) ABSL_LOCKS_EXCLUDED(mu_);

  // ---- everything below: mu() held ----
  SandboxStats& stats() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stats_; }
  ApiStats& api_stats(ApiId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  double Draw() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);  // fault PRNG, uniform [0, 1)
  // id PRNG (ids, nonces, tokens, fake transactions)
  std::string RandomBytes(size_t n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t RandomU64() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetFaults(const Faults& f, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Faults GetFaults(absl::Time now) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int latency_ms() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return faults_.latency_ms; }
  double callback_drop_rate() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return faults_.callback_drop_rate;
  }

  // The start of every API request after the latency fault: counts it against `api`, counts an
  // early request when `client` was told to wait and the time has not passed, and draws the
  // faults in a fixed order (so a seed reproduces a run). A storm wins over the other faults; an
  // error wins over a drop. `error_draws` extra fault draws are made when `error` is set and given
  // back in `*extra` (e.g. which 5xx to answer), keeping the draw order per request fixed.
  //
  // A Retry-After is an answer to one client: a request counts as early when the client that was
  // told to wait sends again before the time passed. Each API names its clients (key or token, or
  // source IP for public routes, together with the User-Agent), so two programs sharing a key
  // (anchord's submitter and poller) are judged on the answers each received.
  Admission Admit(ApiId api, const std::string& client, absl::Time now, double* extra = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  struct Bucket {
    std::string key;  // unique across APIs (prefix it)
    int limit;        // <= 0 disables the bucket
    absl::Duration window;
  };
  struct LimitResult {
    bool ok = true;
    int64_t retry_after = 0;  // when !ok: seconds until a slot frees (>= 1)
    // The bucket that refused (when !ok) or has the fewest slots left (when ok); limit 0 = none.
    int64_t limit = 0;
    int64_t remaining = 0;
    int64_t reset = 0;  // seconds until that bucket's oldest entry leaves the window
  };
  // Sliding-window logs: at most `limit` requests in any window (the strictest reading of "N per
  // minute"). When every bucket has room a slot is taken in each; a refused request takes none.
  LimitResult CheckLimits(const std::vector<Bucket>& buckets, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A 429 was answered to `client` with `retry_after` seconds: counted; the client must wait
  // unless the answer is cut off (a 429 that never arrives told the client nothing).
  void NoteRateLimited(ApiId api, const std::string& client, int64_t retry_after, bool dropped,
                       absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CountDrop(ApiId api) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // ---- the fake chain ----
  // `leaf` (a 32-byte message) goes into the first block made at or after `due`. The leaf node is
  // shared with the API's own tree, which therefore gains the merkle path and attestation.
  void AddPending(absl::Time due, std::shared_ptr<ots::Timestamp> leaf, ChainListener* owner,
                  std::string ref) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Makes blocks of everything due (at most 1000 leaves a block, so paths stay short). Done on
  // every API request and by a background ticker, so nothing waits for a client to ask.
  void ConfirmDue(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The 80-byte header of a fake block (computed on first request), empty when there is none.
  std::string HeaderAt(int64_t height) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops pending leaves, blocks, rate-limit logs, waits and counters. Heights keep counting.
  void Reset() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

 private:
  struct Block {
    std::string merkle_root;  // internal byte order: what the proofs' attestations commit to
    absl::Time time;
    std::string header;
  };
  struct SlidingLog {
    std::deque<absl::Time> times;
    void Prune(absl::Time now, absl::Duration window) {
      while (!times.empty() && times.front() + window <= now) times.pop_front();
    }
  };
  struct Pending {
    std::shared_ptr<ots::Timestamp> leaf;
    ChainListener* owner;
    std::string ref;
  };
  void MakeBlock(std::vector<Pending>& batch, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const SandboxOptions opt_;
  Clock* const clock_;
  absl::Mutex mu_;
  std::mt19937_64 fault_rng_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 id_rng_ ABSL_GUARDED_BY(mu_);
  Faults faults_ ABSL_GUARDED_BY(mu_);
  absl::Time storm_until_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::map<std::string, SlidingLog> buckets_ ABSL_GUARDED_BY(mu_);
  // client -> end of its last Retry-After
  std::map<std::string, absl::Time> earliest_allowed_ ABSL_GUARDED_BY(mu_);
  std::multimap<absl::Time, Pending> pending_ ABSL_GUARDED_BY(mu_);  // by due time
  std::map<int64_t, Block> blocks_ ABSL_GUARDED_BY(mu_);
  int64_t next_height_ ABSL_GUARDED_BY(mu_) = 0;
  SandboxStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace anchord::sandbox::internal
