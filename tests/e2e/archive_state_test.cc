// anchorctl archive's bookkeeping of digest states: events from the poller's Watch (opened before
// hashing) may come before the digest's hash result and must still count.
#include "services/anchorctl/archive_state.h"
#include "services/anchorctl/archive_wait.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

namespace anchord::anchorctl {
namespace {

namespace v1 = anchord::v1;

std::string D(char c) { return std::string(32, c); }

v1::HashTreeResponse Hashed(const std::string& path, const std::string& digest,
                            v1::DigestState state = v1::DIGEST_STATE_QUEUED) {
  v1::HashTreeResponse r;
  r.set_path(path);
  r.set_digest(digest);
  r.set_state(state);
  return r;
}

TEST(ArchiveStateTest, AnEventBeforeItsHashResultCounts) {
  ArchiveState state(v1::DIGEST_STATE_SUBMITTED);
  state.Raise(D('a'), v1::DIGEST_STATE_SUBMITTED, "ots");
  state.Raise(D('b'), v1::DIGEST_STATE_PENDING, "ots");
  // Not part of the run until the hash result comes.
  EXPECT_EQ(state.Snapshot().distinct, 0);
  EXPECT_TRUE(state.AllDone());

  state.OnHashResult(Hashed("a.txt", D('a')));
  ProgressCounts c = state.Snapshot();
  EXPECT_EQ(c.distinct, 1);
  EXPECT_EQ(c.wait_done, 1);
  EXPECT_EQ(c.queued, 1);  // SUBMITTED counts as queued on the progress line
  state.OnHashResult(Hashed("b.txt", D('b')));
  c = state.Snapshot();
  EXPECT_EQ(c.distinct, 2);
  EXPECT_EQ(c.wait_done, 2);
  EXPECT_EQ(c.pending, 1);
  EXPECT_TRUE(state.AllDone());
  EXPECT_TRUE(state.NotDone().empty());
}

TEST(ArchiveStateTest, EarlyStatesEndWithHashingAndNeverLower) {
  ArchiveState state(v1::DIGEST_STATE_CONFIRMED);
  state.Raise(D('a'), v1::DIGEST_STATE_CONFIRMED, "ots");
  state.Raise(D('a'), v1::DIGEST_STATE_SUBMITTED, "ots");  // an older event, late
  state.Raise(D('c'), v1::DIGEST_STATE_CONFIRMED, "ots");
  state.OnHashResult(Hashed("a.txt", D('a')));
  EXPECT_EQ(state.Snapshot().confirmed, 1);
  state.EndHashing();
  // After hashing ended, an unknown digest is another run's: it is neither added nor kept.
  state.Raise(D('d'), v1::DIGEST_STATE_CONFIRMED, "ots");
  EXPECT_EQ(state.Snapshot().distinct, 1);
  EXPECT_TRUE(state.AllDone());
}

TEST(ArchiveStateTest, EarlyStatesOfSeveralProvidersCountAsTheLeastAdvanced) {
  ArchiveState state(v1::DIGEST_STATE_CONFIRMED, {"ots", "tsa"});
  state.Raise(D('a'), v1::DIGEST_STATE_CONFIRMED, "ots");
  state.Raise(D('a'), v1::DIGEST_STATE_PENDING, "tsa");
  state.Raise(D('a'), v1::DIGEST_STATE_CONFIRMED, "other");  // not requested: ignored
  state.OnHashResult(Hashed("a.txt", D('a')));
  ProgressCounts c = state.Snapshot();
  EXPECT_EQ(c.pending, 1);
  EXPECT_FALSE(state.AllDone());
  state.Raise(D('a'), v1::DIGEST_STATE_CONFIRMED, "tsa");
  EXPECT_TRUE(state.AllDone());
  EXPECT_EQ(state.Snapshot().confirmed, 1);
}

// A grouped Watch event (WatchRequest.grouped) stands for one event of each of its digests; a
// trailing part shorter than a digest is none.
TEST(ArchiveStateTest, AGroupedEventRaisesEachOfItsDigests) {
  ArchiveState state(v1::DIGEST_STATE_SUBMITTED);
  for (char c : {'a', 'b', 'c'}) state.OnHashResult(Hashed(std::string(1, c) + ".txt", D(c)));
  v1::WatchResponse batch;
  v1::WatchResponse* group = batch.add_events();
  group->set_type(v1::PROOF_EVENT_TYPE_TRACKED);
  group->mutable_proof()->set_provider("ots");
  group->mutable_proof()->set_state(v1::DIGEST_STATE_PENDING);
  group->set_digests(D('a') + D('c') + std::string(31, 'b'));
  state.RaiseAll(batch);
  ProgressCounts c = state.Snapshot();
  EXPECT_EQ(c.pending, 2);
  EXPECT_EQ(c.wait_done, 2);
  EXPECT_FALSE(state.AllDone());
  ASSERT_EQ(state.NotDone().size(), 1u);

  v1::WatchResponse single;  // one proof's event, its digest in the proof
  single.set_type(v1::PROOF_EVENT_TYPE_TRACKED);
  single.mutable_proof()->set_digest(D('b'));
  single.mutable_proof()->set_provider("ots");
  single.mutable_proof()->set_state(v1::DIGEST_STATE_PENDING);
  state.RaiseAll(single);
  EXPECT_EQ(state.Snapshot().pending, 3);
  EXPECT_TRUE(state.AllDone());
}

TEST(ArchiveStateTest, DigestsKnownBeforeTheRunAreListedApart) {
  ArchiveState state(v1::DIGEST_STATE_SUBMITTED);
  state.OnHashResult(Hashed("new.txt", D('n')));
  v1::HashTreeResponse dup = Hashed("dup.txt", D('d'));
  dup.set_duplicate_of("first.txt");
  state.OnHashResult(dup);
  v1::HashTreeResponse same = Hashed("same.txt", D('u'));
  same.set_unchanged(true);
  state.OnHashResult(same);
  state.OnHashResult(Hashed("old.txt", D('o'), v1::DIGEST_STATE_PENDING));  // done already
  state.OnHashResult(Hashed("older.txt", D('p'), v1::DIGEST_STATE_SUBMITTED));
  state.OnHashResult(Hashed("half.txt", D('h'), v1::DIGEST_STATE_HASHED));

  std::vector<std::string> all = state.NotDone();
  std::sort(all.begin(), all.end());
  EXPECT_EQ(all, (std::vector<std::string>{D('d'), D('h'), D('n'), D('u')}));
  std::vector<std::string> before = state.NotDone(/*only_known_before=*/true);
  std::sort(before.begin(), before.end());
  EXPECT_EQ(before, (std::vector<std::string>{D('d'), D('u')}));
  state.Raise(D('u'), v1::DIGEST_STATE_SUBMITTED, "ots");
  EXPECT_EQ(state.NotDone(true), std::vector<std::string>{D('d')});
}

TEST(ArchiveStateTest, ProblemsAreCountedNotWaitedFor) {
  ArchiveState state(v1::DIGEST_STATE_SUBMITTED);
  v1::HashTreeResponse bad;
  bad.set_path("gone.txt");
  bad.mutable_status()->set_code(5);
  bad.mutable_status()->set_reason("FILE_UNREADABLE");
  state.OnHashResult(bad);
  EXPECT_EQ(state.Snapshot().problems, 1);
  ASSERT_EQ(state.problems().size(), 1u);
  EXPECT_EQ(state.problems()[0].reason, "FILE_UNREADABLE");
  EXPECT_TRUE(state.AllDone());
}

// A reconciliation asks the poller about every open digest: one that took long (a large job)
// waits 20 times as long before the next, a quick one (the last few hundred digests) only its
// period.
TEST(ReconcilePacingTest, TheNextPassWaitsTwentyTimesAsLongAsTheLastOneTook) {
  const absl::Time t0 = absl::FromUnixSeconds(1000000);
  EXPECT_EQ(NextReconcile(t0, t0 + absl::Milliseconds(5), absl::Seconds(2)), t0 + absl::Seconds(2));
  EXPECT_EQ(NextReconcile(t0, t0 + absl::Milliseconds(100), absl::Seconds(2)),
            t0 + absl::Milliseconds(100) + absl::Seconds(2));
  EXPECT_EQ(NextReconcile(t0, t0 + absl::Seconds(1), absl::Seconds(30)), t0 + absl::Seconds(30));
  EXPECT_EQ(NextReconcile(t0, t0 + absl::Seconds(10), absl::Seconds(30)), t0 + absl::Seconds(210));
}

}  // namespace
}  // namespace anchord::anchorctl
