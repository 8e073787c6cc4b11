// The rate limiter shared by replicas over a real PostgreSQL server: several limiter instances,
// each with its own connections (as separate replicas have), spend one budget.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

#include "libs/ledger/pg_db.h"
#include "libs/ratelimit/pg_rate_limiter.h"
#include "tests/support/pg_server.h"
#include "tests/testing/wait.h"

namespace anchord::ratelimit {
namespace {

class PgRateLimiterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::PgServer* server = testing::PgServer::Shared();
    ASSERT_NE(server, nullptr) << "PostgreSQL must be installed (Debian package postgresql)";
    auto url = server->CreateDatabase();
    ASSERT_TRUE(url.ok()) << url.status();
    url_ = *url;
  }
  // A replica: its own database handle (own connections) and its own limiter object.
  std::unique_ptr<RateLimiter> Replica(const std::string& bucket, RateLimit limit) {
    auto db = ledger::PgDb::Open(url_);
    EXPECT_TRUE(db.ok()) << db.status();
    if (!db.ok()) return nullptr;
    std::shared_ptr<ledger::PgDb> shared(std::move(*db));
    EXPECT_TRUE(MigratePgRateLimiter(*shared).ok());
    return MakePgRateLimiter(shared, bucket, limit);
  }
  // Most entries of `times` (sorted) inside any half-open window of length `w`.
  static int MaxInWindow(std::vector<absl::Time> times, absl::Duration w) {
    std::sort(times.begin(), times.end());
    int best = 0;
    size_t lo = 0;
    for (size_t hi = 0; hi < times.size(); ++hi) {
      while (times[hi] - times[lo] >= w) ++lo;
      best = std::max(best, static_cast<int>(hi - lo + 1));
    }
    return best;
  }
  std::string url_;
};

TEST_F(PgRateLimiterTest, ReplicasTogetherNeverExceedTheLimit) {
  const RateLimit limit{4, absl::Seconds(1), absl::Milliseconds(200)};
  constexpr int kReplicas = 3, kEach = 4;
  std::vector<std::unique_ptr<RateLimiter>> replicas;
  for (int i = 0; i < kReplicas; ++i) {
    replicas.push_back(Replica("test:proofd.create", limit));
    ASSERT_NE(replicas.back(), nullptr);
  }
  // Another bucket is a separate budget: its sends do not count here.
  auto other = Replica("test:other", limit);
  ASSERT_NE(other, nullptr);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(other->Acquire().ok());

  std::mutex mu;
  std::vector<absl::Time> times;
  std::vector<std::thread> threads;
  const absl::Time start = absl::Now();
  for (int r = 0; r < kReplicas; ++r) {
    threads.emplace_back([&, r] {
      for (int i = 0; i < kEach; ++i) {
        auto waited = replicas[r]->Acquire();
        ASSERT_TRUE(waited.ok()) << waited.status();
        std::lock_guard<std::mutex> lock(mu);
        times.push_back(absl::Now());
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(times.size(), static_cast<size_t>(kReplicas * kEach));
  // The union of every replica's acquire times: never more than `limit` in any window, and the
  // budget was used, not a share of it (the first burst filled a window).
  EXPECT_EQ(MaxInWindow(times, limit.window), limit.limit);
  const absl::Duration took = absl::Now() - start;
  // 12 sends at 4 per 1.2 s need two full spans after the first burst; for the log only.
  std::cout << "12 acquires over 3 replicas took " << took << "\n";
}

TEST_F(PgRateLimiterTest, OneReplicasGateHoldsEveryReplica) {
  const RateLimit limit{100, absl::Seconds(1), absl::Milliseconds(50)};
  auto a = Replica("test:gate", limit);
  auto b = Replica("test:gate", limit);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(b->Acquire().ok());  // open: passes
  const absl::Time gate = absl::Now() + absl::Milliseconds(1500);
  a->BlockUntil(gate);  // a 429 with Retry-After seen by replica a
  EXPECT_GT(b->blocked_until(), absl::Now());
  auto waited = b->Acquire();
  ASSERT_TRUE(waited.ok()) << waited.status();
  // b did not pass before the gate a received (allowing for clock reading granularity).
  EXPECT_GE(absl::Now(), gate - absl::Milliseconds(5));
  EXPECT_EQ(b->blocked_until(), absl::InfinitePast());
  // An earlier gate does not shorten a later one.
  a->BlockUntil(absl::Now() + absl::Seconds(600));
  b->BlockUntil(absl::Now() + absl::Seconds(1));
  EXPECT_GT(a->blocked_until(), absl::Now() + absl::Seconds(500));
}

TEST_F(PgRateLimiterTest, StopCancelsAWaitingAcquire) {
  auto a = Replica("test:stop", RateLimit{1, absl::Seconds(1), absl::Milliseconds(50)});
  ASSERT_NE(a, nullptr);
  a->BlockUntil(absl::Now() + absl::Hours(1));
  // Stop once the Acquire is under way (behind the hour-long gate it can only end by Stop).
  std::atomic<bool> acquiring{false};
  std::thread stopper([&] {
    EXPECT_TRUE(::anchord::testing::WaitUntil([&] { return acquiring.load(); }, absl::Seconds(10)));
    a->Stop();
  });
  acquiring = true;
  auto waited = a->Acquire();  // bounded by the Stop above
  stopper.join();
  EXPECT_EQ(waited.status().code(), absl::StatusCode::kCancelled);
}

}  // namespace
}  // namespace anchord::ratelimit
