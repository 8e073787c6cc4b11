#include "libs/ratelimit/rate_limiter.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "libs/common/clock.h"
#include "tests/testing/wait.h"
#include "tests/providers/sleep_watch_clock.h"

namespace anchord::ratelimit {
namespace {

TEST(LocalRateLimiter, NeverMoreThanLimitInAnyWindow) {
  FakeClock clock;
  RateLimit rl{5, absl::Seconds(10), absl::Milliseconds(100)};
  auto limiter = MakeLocalRateLimiter("t", rl, &clock);
  std::vector<absl::Time> sent;
  for (int i = 0; i < 23; ++i) {
    auto waited = limiter->Acquire();
    ASSERT_TRUE(waited.ok()) << waited.status();
    sent.push_back(clock.Now());
    // Bursts of `limit` go at once; the first of each following burst waits for the window.
    if (i % 5 == 0 && i > 0) {
      EXPECT_GT(*waited, absl::ZeroDuration()) << i;
    } else {
      EXPECT_EQ(*waited, absl::ZeroDuration()) << i;
    }
  }
  // Any limit+1 consecutive sends span more than window+margin.
  for (size_t i = 0; i + 5 < sent.size(); ++i) {
    EXPECT_GE(sent[i + 5] - sent[i], rl.window + rl.margin) << i;
  }
  // And the limiter does not over-throttle: the 6th goes exactly when the 1st leaves.
  EXPECT_EQ(sent[5] - sent[0], rl.window + rl.margin);
}

TEST(LocalRateLimiter, GateHonoured) {
  FakeClock clock;
  auto limiter = MakeLocalRateLimiter("t", RateLimit{100, absl::Minutes(1)}, &clock);
  EXPECT_EQ(limiter->blocked_until(), absl::InfinitePast());
  const absl::Time until = clock.Now() + absl::Seconds(30);
  limiter->BlockUntil(until);
  limiter->BlockUntil(clock.Now() + absl::Seconds(5));  // shorter: no effect
  EXPECT_EQ(limiter->blocked_until(), until);
  auto waited = limiter->Acquire();
  ASSERT_TRUE(waited.ok());
  EXPECT_GE(clock.Now(), until);
  EXPECT_GE(*waited, absl::Seconds(30));
  EXPECT_EQ(limiter->blocked_until(), absl::InfinitePast());
}

TEST(LocalRateLimiter, RecordSeedsTheWindow) {
  FakeClock clock;
  auto limiter =
      MakeLocalRateLimiter("t", RateLimit{2, absl::Seconds(10), absl::ZeroDuration()}, &clock);
  const absl::Time t0 = clock.Now();
  limiter->Record(t0 - absl::Seconds(4));
  limiter->Record(t0 - absl::Seconds(8));  // out of order
  ASSERT_TRUE(limiter->Acquire().ok());
  EXPECT_EQ(clock.Now(), t0 + absl::Seconds(2));  // oldest seeded entry leaves at t0+2
}

TEST(LocalRateLimiter, ZeroLimitDisablesPacingButNotGate) {
  FakeClock clock;
  auto limiter = MakeLocalRateLimiter("t", RateLimit{0, absl::Seconds(10)}, &clock);
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(limiter->Acquire().ok());
  EXPECT_EQ(clock.slept(), absl::ZeroDuration());
  limiter->BlockUntil(clock.Now() + absl::Seconds(3));
  ASSERT_TRUE(limiter->Acquire().ok());
  EXPECT_EQ(clock.slept(), absl::Seconds(3));
}

TEST(LocalRateLimiter, StopCancelsWaiters) {
  // Real clock: the waiter must notice Stop() although its wait is an hour long.
  anchord::testing::SleepWatchClock clock;
  auto limiter = MakeLocalRateLimiter("t", RateLimit{1, absl::Hours(1)}, &clock);
  ASSERT_TRUE(limiter->Acquire().ok());
  absl::StatusOr<absl::Duration> second = absl::UnknownError("not run");
  std::thread waiter([&] { second = limiter->Acquire(); });
  EXPECT_TRUE(anchord::testing::WaitUntil([&] { return clock.sleeps() > 0; }, absl::Seconds(10)));
  limiter->Stop();
  waiter.join();
  EXPECT_EQ(second.status().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(limiter->Acquire().status().code(), absl::StatusCode::kCancelled);
}

TEST(ParseRetryAfter, DeltaSeconds) {
  const absl::Time now = absl::FromUnixSeconds(1'700'000'000);
  EXPECT_EQ(*ParseRetryAfter("3", now), now + absl::Seconds(3));
  EXPECT_EQ(*ParseRetryAfter(" 120 ", now), now + absl::Seconds(120));
  EXPECT_EQ(*ParseRetryAfter("0", now), now);
}

TEST(ParseRetryAfter, HttpDates) {
  const absl::Time now = absl::FromUnixSeconds(700'000'000);
  const absl::Time expected = absl::FromUnixSeconds(784111777);  // Sun, 06 Nov 1994 08:49:37 GMT
  EXPECT_EQ(*ParseRetryAfter("Sun, 06 Nov 1994 08:49:37 GMT", now), expected);
  EXPECT_EQ(*ParseRetryAfter("Sunday, 06-Nov-94 08:49:37 GMT", now), expected);
  EXPECT_EQ(*ParseRetryAfter("Sun Nov  6 08:49:37 1994", now), expected);
}

TEST(ParseRetryAfter, Malformed) {
  const absl::Time now = absl::FromUnixSeconds(1'700'000'000);
  for (const char* bad :
       {"", "  ", "-1", "1.5", "abc", "99999999999999999999", "Sun, 06 Nov 1994", "3 seconds"}) {
    EXPECT_FALSE(ParseRetryAfter(bad, now).ok()) << bad;
  }
}

}  // namespace
}  // namespace anchord::ratelimit
