#include "libs/ratelimit/pg_rate_limiter.h"

#include <algorithm>
#include <atomic>
#include <random>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "libs/common/log.h"

namespace anchord::ratelimit {
namespace {

using ledger::PgConn;
using ledger::PgParams;

// Longest single sleep: Stop() is noticed within this much time.
constexpr absl::Duration kSleepSlice = absl::Milliseconds(200);

const std::vector<ledger::Migration> kMigrations = {
    {1, "rl_sends, rl_gates", R"sql(
CREATE TABLE rl_sends (bucket TEXT NOT NULL, sent_at BIGINT NOT NULL);
CREATE INDEX rl_sends_bucket ON rl_sends (bucket, sent_at);
CREATE TABLE rl_gates (bucket TEXT PRIMARY KEY, blocked_until BIGINT NOT NULL);
)sql"},
};

// Server time in microseconds since the epoch.
constexpr char kDbNow[] = "(extract(epoch from clock_timestamp()) * 1000000)::bigint";

// Advisory lock key of a bucket (FNV-1a), in a range apart from the migration lock.
int64_t BucketKey(const std::string& name) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : "anchord.ratelimit." + name) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return static_cast<int64_t>(h & 0x3fffffffffffffffull);
}

class PgRateLimiter final : public RateLimiter {
 public:
  PgRateLimiter(std::shared_ptr<ledger::PgDb> db, std::string name, RateLimit limit, Clock* clock)
      : db_(std::move(db)),
        name_(std::move(name)),
        limit_(limit),
        span_us_(absl::ToInt64Microseconds(limit.window + limit.margin)),
        clock_(clock),
        key_(BucketKey(name_)) {}

  absl::StatusOr<absl::Duration> Acquire() override {
    const absl::Time start = clock_->Now();
    std::mt19937 jitter(std::random_device{}());
    // Bounded: every pass either returns or sleeps (at most a slice); Stop() ends it.
    for (int pass = 0;; ++pass) {
      if (stopped_) return absl::CancelledError(absl::StrCat("rate limiter ", name_, " stopped"));
      int64_t wait_us = 0;
      absl::Status st = db_->Tx([&](PgConn& c) -> absl::Status {
        wait_us = 0;
        auto lock = c.Exec("SELECT pg_advisory_xact_lock($1)", PgParams().Add(key_));
        if (!lock.ok()) return lock.status();
        auto now_r = c.Exec(absl::StrCat("SELECT ", kDbNow,
                                         ", COALESCE((SELECT blocked_until "
                                         "FROM rl_gates WHERE bucket = $1), 0)"),
                            PgParams().Add(name_));
        if (!now_r.ok()) return now_r.status();
        const int64_t now = now_r->Int(0, 0);
        int64_t ready = std::max(now, now_r->Int(0, 1));
        if (limit_.limit > 0) {
          // The newest `limit` sends inside the window: when there are `limit` of them, the
          // oldest must leave the window before one more fits.
          auto sends = c.Exec(
              "SELECT sent_at FROM rl_sends WHERE bucket = $1 AND sent_at > $2 "
              "ORDER BY sent_at DESC LIMIT $3",
              PgParams().Add(name_).Add(now - span_us_).Add(static_cast<int64_t>(limit_.limit)));
          if (!sends.ok()) return sends.status();
          if (sends->rows() >= limit_.limit) {
            ready = std::max(ready, sends->Int(sends->rows() - 1, 0) + span_us_);
          }
        }
        if (ready > now) {
          wait_us = ready - now;
          return absl::OkStatus();
        }
        if (limit_.limit > 0) {
          auto ins = c.Exec("INSERT INTO rl_sends (bucket, sent_at) VALUES ($1, $2)",
                            PgParams().Add(name_).Add(now));
          if (!ins.ok()) return ins.status();
          auto del = c.Exec("DELETE FROM rl_sends WHERE bucket = $1 AND sent_at <= $2",
                            PgParams().Add(name_).Add(now - span_us_));
          if (!del.ok()) return del.status();
        }
        return absl::OkStatus();
      });
      if (!st.ok()) {
        // The database is unreachable (PgDb already retried): no send without the shared budget.
        if (pass == 0 || pass % 50 == 0) {
          ANCHORD_LOG(Warning) << "rate limiter " << name_ << ": " << st << "; waiting";
        }
        wait_us = absl::ToInt64Microseconds(kSleepSlice);
      } else if (wait_us == 0) {
        return clock_->Now() - start;
      }
      // A little jitter so that replicas woken by the same freed slot do not all query at once.
      const absl::Duration wait =
          std::min(absl::Microseconds(wait_us), kSleepSlice) + absl::Microseconds(jitter() % 2000);
      std::this_thread::sleep_for(absl::ToChronoNanoseconds(wait));
    }
  }

  void BlockUntil(absl::Time until) override {
    const absl::Duration ahead = until - clock_->Now();
    if (ahead <= absl::ZeroDuration()) return;
    const int64_t ahead_us = absl::ToInt64Microseconds(ahead);
    absl::Status st = db_->Run([&](PgConn& c) {
      return c
          .Exec(absl::StrCat("INSERT INTO rl_gates (bucket, blocked_until) VALUES ($1, ", kDbNow,
                             " + $2) ON CONFLICT (bucket) DO UPDATE SET blocked_until = "
                             "GREATEST(rl_gates.blocked_until, EXCLUDED.blocked_until)"),
                PgParams().Add(name_).Add(ahead_us))
          .status();
    });
    if (!st.ok()) {
      ANCHORD_LOG(Warning) << "rate limiter " << name_ << ": gate: " << st;
    }
    absl::MutexLock lock(&mu_);
    local_gate_ = std::max(local_gate_, until);
  }

  absl::Time blocked_until() override {
    int64_t left_us = 0;
    absl::Status st = db_->Run([&](PgConn& c) -> absl::Status {
      auto r = c.Exec(absl::StrCat("SELECT COALESCE((SELECT blocked_until FROM rl_gates WHERE "
                                   "bucket = $1), 0) - ",
                                   kDbNow),
                      PgParams().Add(name_));
      if (!r.ok()) return r.status();
      left_us = r->Int(0, 0);
      return absl::OkStatus();
    });
    const absl::Time now = clock_->Now();
    if (!st.ok()) {
      // Unreachable database: the last gate this process knows of.
      absl::MutexLock lock(&mu_);
      return local_gate_ > now ? local_gate_ : absl::InfinitePast();
    }
    return left_us > 0 ? now + absl::Microseconds(left_us) : absl::InfinitePast();
  }

  void Record(absl::Time when) override {
    if (limit_.limit <= 0) return;
    const int64_t ago_us = absl::ToInt64Microseconds(clock_->Now() - when);
    absl::Status st = db_->Run([&](PgConn& c) {
      return c
          .Exec(
              absl::StrCat("INSERT INTO rl_sends (bucket, sent_at) VALUES ($1, ", kDbNow, " - $2)"),
              PgParams().Add(name_).Add(ago_us))
          .status();
    });
    if (!st.ok()) {
      ANCHORD_LOG(Warning) << "rate limiter " << name_ << ": record: " << st;
    }
  }

  void Stop() override { stopped_ = true; }
  const std::string& name() const override { return name_; }

 private:
  std::shared_ptr<ledger::PgDb> db_;
  const std::string name_;
  const RateLimit limit_;
  const int64_t span_us_;
  Clock* const clock_;
  const int64_t key_;
  std::atomic<bool> stopped_{false};
  absl::Mutex mu_;
  absl::Time local_gate_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace

absl::Status MigratePgRateLimiter(ledger::PgDb& db) {
  return ledger::Migrate(db, "ratelimit", kMigrations).status();
}

std::unique_ptr<RateLimiter> MakePgRateLimiter(std::shared_ptr<ledger::PgDb> db, std::string name,
                                               RateLimit limit, Clock* clock) {
  if (clock == nullptr) clock = Clock::Real();
  return std::make_unique<PgRateLimiter>(std::move(db), std::move(name), limit, clock);
}

}  // namespace anchord::ratelimit
