#include <gtest/gtest.h>

#include "services/submitter/persistent_limiter.h"
#include "services/submitter/submitter_store.h"
#include "tests/submitter/test_util.h"

namespace anchord::submitter {
namespace {

using testing::Item;
using testing::MakeTempDir;

const absl::Time kNow = absl::FromUnixSeconds(1'700'000'000);

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    ASSERT_FALSE(dir_.empty());
    path_ = dir_ + "/submitter.db";
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Reopen() {
    store_.reset();
    auto s = OpenSqliteSubmitterStore(path_);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }
  std::string dir_, path_;
  std::unique_ptr<SubmitterStore> store_;
};

TEST_F(StoreTest, InsertIsIdempotentAndTracksDuplicates) {
  auto r1 = store_->InsertBatch({Item('a', "dir/a.txt")}, kNow);
  ASSERT_TRUE(r1.ok()) << r1.status();
  EXPECT_FALSE((*r1)[0].known_before);
  EXPECT_EQ((*r1)[0].state, SubState::kQueued);
  EXPECT_EQ((*r1)[0].duplicate_of, "");

  // Same digest, another file: a duplicate of the first, one submission row only.
  auto r2 = store_->InsertBatch({Item('a', "other/b.txt"), Item('a', "dir/a.txt")}, kNow);
  ASSERT_TRUE(r2.ok()) << r2.status();
  EXPECT_TRUE((*r2)[0].known_before);
  EXPECT_EQ((*r2)[0].duplicate_of, "dir/a.txt");
  // The original sent again is not its own duplicate.
  EXPECT_EQ((*r2)[1].duplicate_of, "");

  auto rows = store_->GetByDigest(testing::Digest('a'));
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].file.source_path, "dir/a.txt");
  auto refs = store_->Refs(testing::Digest('a'));
  ASSERT_TRUE(refs.ok());
  ASSERT_EQ(refs->size(), 2u);
  EXPECT_EQ((*refs)[0].source_path, "dir/a.txt");
  EXPECT_EQ((*refs)[1].source_path, "other/b.txt");
  auto backlog = store_->CountBacklog();
  ASSERT_TRUE(backlog.ok());
  EXPECT_EQ(*backlog, 1);

  // A second provider for a known digest adds a row for it.
  auto r3 = store_->InsertBatch({Item('a', "dir/a.txt", "other")}, kNow);
  ASSERT_TRUE(r3.ok());
  EXPECT_EQ(store_->GetByDigest(testing::Digest('a'))->size(), 2u);
}

TEST_F(StoreTest, ClaimTakesOldestReadyRowUnderLease) {
  ASSERT_TRUE(store_->InsertBatch({Item('a', "a"), Item('b', "b")}, kNow).ok());
  auto c1 = store_->Claim("fake", "w1", kNow, kNow + absl::Minutes(1));
  ASSERT_TRUE(c1.ok() && c1->has_value());
  EXPECT_EQ((*c1)->digest, testing::Digest('a'));
  auto c2 = store_->Claim("fake", "w2", kNow, kNow + absl::Minutes(1));
  ASSERT_TRUE(c2.ok() && c2->has_value());
  EXPECT_EQ((*c2)->digest, testing::Digest('b'));
  auto c3 = store_->Claim("fake", "w3", kNow, kNow + absl::Minutes(1));
  ASSERT_TRUE(c3.ok());
  EXPECT_FALSE(c3->has_value());
  // Another provider's queue is separate.
  EXPECT_FALSE(store_->Claim("other", "w3", kNow, kNow + absl::Minutes(1))->has_value());

  // Rescheduled into the future: not ready now, ready later.
  ASSERT_TRUE(store_->Reschedule((*c1)->id, kNow + absl::Seconds(30), true, "NETWORK_ERROR", "x",
                                 "rid", kNow).ok());
  EXPECT_FALSE(store_->Claim("fake", "w3", kNow, kNow + absl::Minutes(1))->has_value());
  auto c4 = store_->Claim("fake", "w3", kNow + absl::Seconds(30), kNow + absl::Minutes(2));
  ASSERT_TRUE(c4.ok() && c4->has_value());
  EXPECT_EQ((*c4)->attempts, 1);
  EXPECT_EQ((*c4)->error_request_id, "rid");

  // An expired lease (dead worker) makes the row claimable again.
  auto c5 = store_->Claim("fake", "w4", kNow + absl::Minutes(5), kNow + absl::Minutes(6));
  ASSERT_TRUE(c5.ok() && c5->has_value());
}

TEST_F(StoreTest, RestartRestoresStateGatesAndSends) {
  ASSERT_TRUE(store_->InsertBatch({Item('a', "a")}, kNow).ok());
  auto c = store_->Claim("fake", "w", kNow, kNow + absl::Minutes(1));
  ASSERT_TRUE(c.ok() && c->has_value());
  ASSERT_TRUE(store_->MarkPrepared((*c)->id, "key-1", "body-1", kNow).ok());
  PauseInfo p{"fake", "MONTHLY_LIMIT_REACHED: spent", kNow, kNow + absl::Hours(1)};
  ASSERT_TRUE(store_->Pause(p).ok());
  ASSERT_TRUE(store_->SaveGate("fake.create", kNow + absl::Seconds(40)).ok());
  // An earlier gate does not shorten a later one.
  ASSERT_TRUE(store_->SaveGate("fake.create", kNow + absl::Seconds(10)).ok());
  ASSERT_TRUE(store_->RecordSend("fake.create", kNow - absl::Minutes(5), kNow - absl::Minutes(10)).ok());
  ASSERT_TRUE(store_->RecordSend("fake.create", kNow, kNow - absl::Minutes(2)).ok());

  Reopen();
  auto rows = store_->GetByDigest(testing::Digest('a'));
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].state, SubState::kSubmitting);
  EXPECT_EQ((*rows)[0].idempotency_key, "key-1");
  EXPECT_EQ((*rows)[0].body, "body-1");
  auto pauses = store_->ListPauses();
  ASSERT_TRUE(pauses.ok());
  ASSERT_EQ(pauses->size(), 1u);
  EXPECT_EQ((*pauses)[0].probe_at, kNow + absl::Hours(1));
  auto gate = store_->LoadGate("fake.create");
  ASSERT_TRUE(gate.ok());
  EXPECT_EQ(*gate, kNow + absl::Seconds(40));
  auto sends = store_->RecentSends("fake.create", kNow - absl::Minutes(1));
  ASSERT_TRUE(sends.ok());
  ASSERT_EQ(sends->size(), 1u);  // the old one was forgotten
  auto resumed = store_->Resume("");
  ASSERT_TRUE(resumed.ok());
  EXPECT_EQ(*resumed, std::vector<std::string>{"fake"});
  EXPECT_TRUE(store_->ListPauses()->empty());
}

// Records what the persistent wrapper restores into the real limiter.
class RecordingLimiter final : public ratelimit::RateLimiter {
 public:
  explicit RecordingLimiter(std::string name) : name_(std::move(name)) {}
  absl::StatusOr<absl::Duration> Acquire() override { return absl::ZeroDuration(); }
  void BlockUntil(absl::Time until) override { gate = std::max(gate, until); }
  absl::Time blocked_until() override { return gate; }
  void Record(absl::Time when) override { recorded.push_back(when); }
  void Stop() override {}
  const std::string& name() const override { return name_; }
  absl::Time gate = absl::InfinitePast();
  std::vector<absl::Time> recorded;

 private:
  std::string name_;
};

TEST_F(StoreTest, PersistentLimiterSurvivesRestart) {
  FakeClock clock(kNow);
  ratelimit::RateLimit limit{30, absl::Minutes(1), absl::Milliseconds(100)};
  {
    auto lim = MakePersistentLimiter(std::make_unique<RecordingLimiter>("p.create"), limit,
                                     store_.get(), &clock);
    ASSERT_TRUE(lim->Acquire().ok());
    clock.Advance(absl::Seconds(1));
    ASSERT_TRUE(lim->Acquire().ok());
    lim->BlockUntil(kNow + absl::Seconds(90));  // a 429 with Retry-After: 90
  }
  Reopen();
  clock.Advance(absl::Seconds(5));
  auto inner = std::make_unique<RecordingLimiter>("p.create");
  RecordingLimiter* raw = inner.get();
  auto lim = MakePersistentLimiter(std::move(inner), limit, store_.get(), &clock);
  EXPECT_EQ(raw->gate, kNow + absl::Seconds(90));
  ASSERT_EQ(raw->recorded.size(), 2u);
  EXPECT_EQ(raw->recorded[0], kNow);
}

}  // namespace
}  // namespace anchord::submitter
