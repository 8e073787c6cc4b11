// A RateLimiter shared by every replica that uses the same PostgreSQL database: one budget per
// provider account, however many processes spend it.
//
// Each bucket is the log of its sends (table rl_sends) and a gate row (rl_gates). Acquire runs
// one short transaction that takes a transaction-scoped advisory lock on the bucket, so the
// acquires of all replicas are serialized per bucket: it reads the gate and the newest `limit`
// sends inside the window, and either records a send (the slot is taken) or learns when the next
// slot frees and sleeps until then, outside the transaction. Together the replicas therefore
// never exceed `limit` in any sliding window, and a waiting replica wakes when a slot frees, so
// the account is paced at its limit, not at a share of it.
//
// Times in the tables are the database server's clock (clock_timestamp()), so replicas with
// skewed clocks still agree on the window. BlockUntil (a 429's Retry-After, or
// X-RateLimit-Remaining: 0 until the reset) stores the gate as server time; every replica's next
// Acquire waits for it.
//
// While the database is unreachable Acquire keeps waiting (the budget cannot be checked, so
// nothing is sent) until the database is back or Stop() is called.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "libs/common/clock.h"
#include "libs/ledger/migrate.h"
#include "libs/ledger/pg_db.h"
#include "libs/ratelimit/rate_limiter.h"

namespace anchord::ratelimit {

// Creates the limiter tables (component "ratelimit"); call once at start, before
// MakePgRateLimiter.
absl::Status MigratePgRateLimiter(ledger::PgDb& db);

// A limiter for bucket `name` (e.g. "submitter:proofd.create": the replicas of one service with
// the same name share the budget). `db` is shared; `clock` (the caller's clock, for BlockUntil and
// blocked_until, which speak the caller's time) must outlive the limiter.
std::unique_ptr<RateLimiter> MakePgRateLimiter(std::shared_ptr<ledger::PgDb> db, std::string name,
                                               RateLimit limit, Clock* clock = Clock::Real());

}  // namespace anchord::ratelimit
