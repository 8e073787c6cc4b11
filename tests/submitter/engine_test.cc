#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <map>

#include "libs/common/hex.h"
#include "services/submitter/engine.h"
#include "tests/submitter/test_util.h"
#include "tests/testing/wait.h"

namespace anchord::submitter {
namespace {

using providers::OutcomeKind;
using testing::FakeProvider;
using testing::Item;

const absl::Time kStart = absl::FromUnixSeconds(1'700'000'000);

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir();
    ASSERT_FALSE(dir_.empty());
    Open();
  }
  void TearDown() override {
    engine_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Open(int claim_group = 1) {
    engine_.reset();
    store_.reset();
    auto s = OpenSqliteSubmitterStore(dir_ + "/submitter.db");
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
    provider_ = std::make_unique<FakeProvider>();
    EngineOptions o;
    o.quota_retry = absl::Hours(1);
    o.backoff = BackoffPolicy{absl::Seconds(1), absl::Seconds(10), 2.0};
    o.claim_group = claim_group;
    engine_ = std::make_unique<Engine>(
        store_.get(), std::vector<providers::Provider*>{provider_.get()}, &metrics_, &clock_, o);
    ASSERT_TRUE(engine_->Init().ok());
  }
  void Add(char c, const std::string& path = "f.txt") {
    ASSERT_TRUE(store_->InsertBatch({Item(c, path)}, clock_.Now()).ok());
  }
  Submission Row(char c) {
    auto rows = store_->GetByDigest(testing::DigestOf(c));
    EXPECT_TRUE(rows.ok() && rows->size() == 1);
    return rows.ok() && !rows->empty() ? (*rows)[0] : Submission{};
  }
  bool RunOnce() {
    auto r = engine_->RunOnce();
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && *r;
  }
  double Counter(const std::string& family_name, const std::map<std::string, std::string>& labels) {
    for (const auto& fam : registry_.Collect()) {
      if (fam.name != family_name) continue;
      for (const auto& m : fam.metric) {
        std::map<std::string, std::string> got;
        for (const auto& l : m.label) got[l.name] = l.value;
        bool match = true;
        for (const auto& [k, v] : labels) match = match && got[k] == v;
        if (match)
          return fam.type == prometheus::MetricType::Gauge ? m.gauge.value : m.counter.value;
      }
    }
    return -1;
  }

  std::string dir_;
  FakeClock clock_{kStart};
  prometheus::Registry registry_;
  SubmitterMetrics metrics_{registry_};
  std::unique_ptr<SubmitterStore> store_;
  std::unique_ptr<FakeProvider> provider_;
  std::unique_ptr<Engine> engine_;
};

TEST(GaugeRefreshDelayTest, ALongCountRefreshesTheGaugesLessOften) {
  // A count that takes little leaves the interval as it is.
  EXPECT_EQ(GaugeRefreshDelay(absl::Seconds(5), absl::Milliseconds(50), 0.02), absl::Seconds(5));
  // One of 0.5 s (a store of about a million rows) is at most 2% of the time: every 25 s.
  EXPECT_EQ(GaugeRefreshDelay(absl::Seconds(5), absl::Milliseconds(500), 0.02), absl::Seconds(25));
  // A share of 0 or at least 1 means no bound.
  EXPECT_EQ(GaugeRefreshDelay(absl::Seconds(5), absl::Seconds(3), 0), absl::Seconds(5));
  EXPECT_EQ(GaugeRefreshDelay(absl::Seconds(5), absl::Seconds(3), 1.0), absl::Seconds(5));
}

TEST_F(EngineTest, OkMarksSubmittedWithRecord) {
  Add('a');
  EXPECT_TRUE(RunOnce());
  Submission r = Row('a');
  EXPECT_EQ(r.state, SubState::kSubmitted);
  EXPECT_EQ(r.record.proof_id, "proof-61616161");
  EXPECT_EQ(r.record.certificate_url, "https://example.invalid/cert");
  EXPECT_EQ(r.request_id, "req-ok");
  EXPECT_FALSE(RunOnce());  // nothing left
  EXPECT_EQ(Counter("anchord_submitter_outcomes_total", {{"provider", "fake"}, {"outcome", "ok"}}),
            1);
}

TEST_F(EngineTest, DuplicateMarksSubmitted) {
  Add('a');
  provider_->Script(FakeProvider::Ok(OutcomeKind::kDuplicate, "req-dup"));
  EXPECT_TRUE(RunOnce());
  EXPECT_EQ(Row('a').state, SubState::kSubmitted);
  EXPECT_EQ(Row('a').request_id, "req-dup");
}

TEST_F(EngineTest, RetryBacksOffThenSucceedsWithSameRequest) {
  Add('a');
  provider_->Script(FakeProvider::Fail(OutcomeKind::kRetry, "HTTP_503", "req-503", 503));
  EXPECT_TRUE(RunOnce());
  Submission r = Row('a');
  EXPECT_EQ(r.state, SubState::kSubmitting);
  EXPECT_EQ(r.attempts, 1);
  EXPECT_EQ(r.error_request_id, "req-503");
  // Jittered first backoff: in [0.5 s, 1 s].
  EXPECT_GE(r.next_attempt_at, kStart + absl::Milliseconds(500));
  EXPECT_LE(r.next_attempt_at, kStart + absl::Seconds(1));
  EXPECT_FALSE(RunOnce());  // not ready yet
  clock_.Advance(absl::Seconds(1));
  EXPECT_TRUE(RunOnce());
  EXPECT_EQ(Row('a').state, SubState::kSubmitted);
  auto sent = provider_->sent();
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].idempotency_key, sent[1].idempotency_key);
  EXPECT_EQ(sent[0].body, sent[1].body);
  EXPECT_EQ(provider_->prepares(), 1);
  EXPECT_EQ(
      Counter("anchord_provider_retries_total", {{"provider", "fake"}, {"reason", "HTTP_503"}}), 1);
}

TEST_F(EngineTest, RateLimitedWaitsForRetryAfter) {
  Add('a');
  provider_->Script(FakeProvider::Fail(OutcomeKind::kRateLimited, "RATE_LIMITED", "req-429", 429,
                                       absl::Seconds(30)));
  EXPECT_TRUE(RunOnce());
  Submission r = Row('a');
  EXPECT_EQ(r.next_attempt_at, kStart + absl::Seconds(30));
  EXPECT_EQ(r.attempts, 0);
  clock_.Advance(absl::Seconds(29));
  EXPECT_FALSE(RunOnce());
  clock_.Advance(absl::Seconds(1));
  EXPECT_TRUE(RunOnce());
  EXPECT_EQ(Row('a').state, SubState::kSubmitted);
}

TEST_F(EngineTest, QuotaPausesWithoutFailingAndResumes) {
  Add('a');
  Add('b', "g.txt");
  provider_->Script(
      FakeProvider::Fail(OutcomeKind::kQuotaExhausted, "MONTHLY_LIMIT_REACHED", "req-q", 429));
  EXPECT_TRUE(RunOnce());
  ASSERT_TRUE(engine_->Paused("fake").has_value());
  EXPECT_EQ(Counter("anchord_submitter_queue_paused", {{"provider", "fake"}}), 1);
  EXPECT_EQ(Row('a').state, SubState::kSubmitting);
  EXPECT_EQ(Row('b').state, SubState::kQueued);
  clock_.Advance(absl::Minutes(10));
  EXPECT_FALSE(RunOnce());  // paused: nothing sent
  EXPECT_EQ(provider_->sent().size(), 1u);
  // The pause survives a restart.
  Open();
  EXPECT_TRUE(engine_->Paused("fake").has_value());
  EXPECT_FALSE(RunOnce());

  auto resumed = engine_->Resume("");
  ASSERT_TRUE(resumed.ok());
  EXPECT_EQ(*resumed, std::vector<std::string>{"fake"});
  EXPECT_EQ(Counter("anchord_submitter_queue_paused", {{"provider", "fake"}}), 0);
  EXPECT_TRUE(RunOnce());
  EXPECT_TRUE(RunOnce());
  EXPECT_EQ(Row('a').state, SubState::kSubmitted);
  EXPECT_EQ(Row('b').state, SubState::kSubmitted);
}

TEST_F(EngineTest, QuotaPauseEndsWithOneProbe) {
  Add('a');
  Add('b', "g.txt");
  provider_->Script(
      FakeProvider::Fail(OutcomeKind::kQuotaExhausted, "MONTHLY_LIMIT_REACHED", "q1", 429));
  provider_->Script(
      FakeProvider::Fail(OutcomeKind::kQuotaExhausted, "MONTHLY_LIMIT_REACHED", "q2", 429));
  EXPECT_TRUE(RunOnce());
  clock_.Advance(absl::Hours(1));
  EXPECT_TRUE(RunOnce());   // the probe, still exhausted
  EXPECT_FALSE(RunOnce());  // paused again, no second probe
  EXPECT_EQ(provider_->sent().size(), 2u);
  clock_.Advance(absl::Hours(1));
  EXPECT_TRUE(RunOnce());  // probe succeeds: queue resumes
  EXPECT_FALSE(engine_->Paused("fake").has_value());
  EXPECT_TRUE(RunOnce());
  EXPECT_EQ(Row('b').state, SubState::kSubmitted);
}

TEST_F(EngineTest, PermanentFailureKeepsRequestId) {
  Add('a');
  provider_->Script(FakeProvider::Fail(OutcomeKind::kPermanent, "INVALID_API_KEY", "req-401", 401));
  EXPECT_TRUE(RunOnce());
  Submission r = Row('a');
  EXPECT_EQ(r.state, SubState::kFailed);
  EXPECT_EQ(r.error_code, "INVALID_API_KEY");
  EXPECT_EQ(r.error_request_id, "req-401");
  EXPECT_EQ(r.error_canonical, static_cast<int>(absl::StatusCode::kUnauthenticated));
  EXPECT_FALSE(RunOnce());
}

TEST_F(EngineTest, PrepareRejectionFails) {
  Add('a', "dir/reject-me");
  EXPECT_TRUE(RunOnce());
  Submission r = Row('a');
  EXPECT_EQ(r.state, SubState::kFailed);
  EXPECT_EQ(r.error_canonical, static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(provider_->sent().empty());
}

TEST_F(EngineTest, RequestIsDurableBeforeCreate) {
  Add('a');
  bool checked = false;
  provider_->OnCreate([&](const providers::PreparedCreate& req) {
    // Read the row through a second connection: what a restarted process would see.
    auto other = OpenSqliteSubmitterStore(dir_ + "/submitter.db");
    ASSERT_TRUE(other.ok());
    auto rows = (*other)->GetByDigest(testing::DigestOf('a'));
    ASSERT_TRUE(rows.ok());
    ASSERT_EQ(rows->size(), 1u);
    EXPECT_EQ((*rows)[0].state, SubState::kSubmitting);
    EXPECT_EQ((*rows)[0].idempotency_key, req.idempotency_key);
    EXPECT_EQ((*rows)[0].body, req.body);
    checked = true;
  });
  EXPECT_TRUE(RunOnce());
  EXPECT_TRUE(checked);
}

// A claim group: every request of the group is durable before the first of them is sent, and
// each is then sent on its own.
TEST_F(EngineTest, GroupIsDurableBeforeItsFirstCreate) {
  Open(4);
  for (char c = 'a'; c < 'a' + 4; ++c) Add(c, std::string(1, c) + ".txt");
  int checked = 0;
  provider_->OnCreate([&](const providers::PreparedCreate&) {
    if (checked++ > 0) return;
    auto other = OpenSqliteSubmitterStore(dir_ + "/submitter.db");
    ASSERT_TRUE(other.ok());
    for (char c = 'a'; c < 'a' + 4; ++c) {
      auto rows = (*other)->GetByDigest(testing::DigestOf(c));
      ASSERT_TRUE(rows.ok());
      ASSERT_EQ(rows->size(), 1u);
      EXPECT_EQ((*rows)[0].state, SubState::kSubmitting) << c;
      EXPECT_FALSE((*rows)[0].idempotency_key.empty()) << c;
      EXPECT_FALSE((*rows)[0].body.empty()) << c;
    }
  });
  EXPECT_TRUE(RunOnce());
  EXPECT_EQ(checked, 4);
  auto sent = provider_->sent();
  ASSERT_EQ(sent.size(), 4u);
  for (const auto& req : sent) EXPECT_FALSE(req.maybe_sent);
  for (char c = 'a'; c < 'a' + 4; ++c) EXPECT_EQ(Row(c).state, SubState::kSubmitted) << c;
  EXPECT_FALSE(RunOnce());
}

// After a 429 the rest of the group is not sent: it stays prepared, unleased, and goes out later
// with the very request committed for it.
TEST_F(EngineTest, GroupStopsSendingAfterRateLimit) {
  Open(3);
  for (char c = 'a'; c < 'a' + 3; ++c) Add(c, std::string(1, c) + ".txt");
  provider_->Script(FakeProvider::Fail(OutcomeKind::kRateLimited, "RATE_LIMITED", "req-429", 429,
                                       absl::Seconds(30)));
  EXPECT_TRUE(RunOnce());
  auto sent = provider_->sent();
  ASSERT_EQ(sent.size(), 1u);
  std::map<std::string, std::string> keys;
  for (char c = 'a'; c < 'a' + 3; ++c) {
    Submission r = Row(c);
    EXPECT_EQ(r.state, SubState::kSubmitting) << c;
    keys[r.digest.hex()] = r.idempotency_key;
  }
  // The two unsent rows are ready now (no lease, no backoff); the limited one after Retry-After.
  EXPECT_TRUE(RunOnce());
  sent = provider_->sent();
  ASSERT_EQ(sent.size(), 3u);
  for (size_t i = 1; i < sent.size(); ++i) {
    EXPECT_NE(sent[i].digest.hex(), sent[0].digest.hex());
    EXPECT_EQ(sent[i].idempotency_key, keys[sent[i].digest.hex()]);
    EXPECT_TRUE(sent[i].maybe_sent);  // prepared by an earlier attempt
  }
  EXPECT_EQ(provider_->prepares(), 3);
  clock_.Advance(absl::Seconds(30));
  EXPECT_TRUE(RunOnce());
  for (char c = 'a'; c < 'a' + 3; ++c) EXPECT_EQ(Row(c).state, SubState::kSubmitted) << c;
  EXPECT_FALSE(RunOnce());
}

TEST_F(EngineTest, RestartResendsSameKeyAndBody) {
  Add('a');
  // First process: claims, prepares durably, then dies while the create is in flight.
  auto c = store_->Claim("fake", "dead", clock_.Now(), clock_.Now() + absl::Hours(1));
  ASSERT_TRUE(c.ok() && c->has_value());
  auto prepared = provider_->PrepareCreate(
      {*anchord::Digest::FromBytes(testing::Digest('a')), "f.txt", 10, "text/plain"});
  ASSERT_TRUE(prepared.ok());
  ASSERT_TRUE(
      store_->MarkPrepared((*c)->id, prepared->idempotency_key, prepared->body, clock_.Now()).ok());

  Open();  // the new process: new engine, same file; its Init frees the dead lease
  EXPECT_TRUE(RunOnce());
  auto sent = provider_->sent();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].idempotency_key, prepared->idempotency_key);
  EXPECT_EQ(sent[0].body, prepared->body);
  EXPECT_EQ(provider_->prepares(), 0);  // nothing re-prepared
  EXPECT_EQ(Row('a').state, SubState::kSubmitted);
}

TEST_F(EngineTest, WorkersDrainQueueAndStop) {
  for (char c = 'a'; c < 'a' + 20; ++c) Add(c, std::string(1, c) + ".txt");
  EngineOptions o;
  o.workers = 3;
  o.idle_poll = absl::Milliseconds(20);
  Engine engine(store_.get(), {provider_.get()}, &metrics_, Clock::Real(), o);
  ASSERT_TRUE(engine.Start().ok());
  EXPECT_TRUE(anchord::testing::WaitUntil(
      [&] {
        auto n = store_->CountBacklog();
        return n.ok() && *n == 0;
      },
      absl::Seconds(30)));
  engine.Stop();
  EXPECT_EQ(*store_->CountBacklog(), 0);
  EXPECT_EQ(provider_->sent().size(), 20u);  // each row sent exactly once
}

}  // namespace
}  // namespace anchord::submitter
