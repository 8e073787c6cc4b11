#include "services/poller/poll_engine.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include "absl/strings/ascii.h"
#include "libs/common/clock.h"
#include "services/poller/counting_store.h"
#include "services/poller/event_bus.h"
#include "tests/poller/test_util.h"
#include "tests/testing/wait.h"

namespace anchord::poller {
namespace {

using providers::RecordState;
using testing::Digest;
using testing::FakeProvider;
using testing::MakeOts;
using testing::Pending;
using testing::TempDir;
namespace v1 = anchord::v1;

class PollEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    auto s = OpenSqlitePollerStore(dir_.File("poller.db"));
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
    sub_ = bus_.Subscribe({}, 10000, nullptr);
  }

  std::unique_ptr<PollEngine> MakeEngine(FakeProvider* p, PollEngineOptions opts = {}) {
    return std::make_unique<PollEngine>(store_.get(), &bus_, &metrics_, &clock_,
                                        std::vector<providers::Provider*>{p}, opts);
  }

  void Track(int n, const std::string& provider = "fake") {
    auto r = store_->Track({Pending(Digest(n), Id(n), provider)}, clock_.Now());
    ASSERT_TRUE(r.ok()) << r.status();
  }
  static std::string Id(int n) { return "id-" + std::to_string(n); }

  ProofRow Get(int n) {
    auto r = store_->Get(Digest(n), "fake");
    EXPECT_TRUE(r.ok() && r->has_value());
    return r.ok() && r->has_value() ? **r : ProofRow{};
  }

  // Drains the events published so far as (type, digest) pairs.
  std::vector<std::pair<v1::ProofEventType, std::string>> Events() {
    std::vector<std::pair<v1::ProofEventType, std::string>> out;
    for (int i = 0; i < 100000; ++i) {
      EventPtr ev = sub_->Pop();
      if (!ev) break;
      out.emplace_back(ev->type(), ev->proof().digest());
    }
    return out;
  }

  double Counter(const std::string& name, const std::map<std::string, std::string>& labels) {
    for (const auto& fam : registry_.Collect()) {
      if (fam.name != name) continue;
      for (const auto& m : fam.metric) {
        size_t matched = 0;
        for (const auto& l : m.label) {
          auto it = labels.find(l.name);
          if (it != labels.end() && it->second == l.value) ++matched;
        }
        if (matched == labels.size()) return m.counter.value + m.gauge.value;
      }
    }
    return -1;
  }

  TempDir dir_;
  std::unique_ptr<PollerStore> store_;
  EventBus bus_;
  EventBus::SubscriptionPtr sub_;
  FakeClock clock_;
  prometheus::Registry registry_;
  PollerMetrics metrics_{registry_};
};

TEST_F(PollEngineTest, ListWalkLooksUpOnlyProofsThatLeftTheList) {
  FakeProvider p("fake", /*list=*/true);
  for (int n = 1; n <= 5; ++n) {
    Track(n);
    p.SetRecord(Id(n), Digest(n), RecordState::kPending);
  }
  // 2 and 4 were confirmed at the provider: they leave its pending list.
  p.SetRecord(Id(2), Digest(2), RecordState::kConfirmed, 812345);
  p.SetRecord(Id(4), Digest(4), RecordState::kConfirmed, 812346);
  p.SetOts(Id(2), MakeOts(Digest(2)));
  p.SetOts(Id(4), MakeOts(Digest(4)));
  clock_.Advance(absl::Seconds(1));

  PollEngineOptions opts;
  opts.list_page_limit = 2;  // three pending records -> two pages, exercising the cursor
  auto engine = MakeEngine(&p, opts);
  RoundStats stats = engine->RunRound(&p);
  EXPECT_TRUE(stats.walked);
  EXPECT_EQ(p.list_calls(), 2);
  EXPECT_EQ(p.total_lookups(), 2);
  EXPECT_EQ(p.lookups(Id(2)), 1);
  EXPECT_EQ(p.lookups(Id(4)), 1);
  EXPECT_EQ(stats.confirmed, 2);
  EXPECT_EQ(stats.ots_stored, 2);

  ProofRow two = Get(2);
  EXPECT_EQ(two.state, v1::DIGEST_STATE_CONFIRMED);
  EXPECT_EQ(two.block_height, 812345);
  EXPECT_EQ(two.bitcoin_tx, "ab12");
  EXPECT_EQ(two.ots_size, static_cast<int64_t>(MakeOts(Digest(2)).size()));
  EXPECT_EQ(Get(1).state, v1::DIGEST_STATE_PENDING);

  auto events = Events();
  ASSERT_EQ(events.size(), 4u);
  // CONFIRMED precedes OTS_STORED for each proof.
  EXPECT_EQ(events[0].first, v1::PROOF_EVENT_TYPE_CONFIRMED);
  EXPECT_EQ(events[1].first, v1::PROOF_EVENT_TYPE_CONFIRMED);
  EXPECT_EQ(events[2].first, v1::PROOF_EVENT_TYPE_OTS_STORED);
  EXPECT_EQ(events[3].first, v1::PROOF_EVENT_TYPE_OTS_STORED);
  EXPECT_EQ(
      Counter("anchord_poller_lookups_total", {{"provider", "fake"}, {"result", "confirmed"}}), 2);
  EXPECT_EQ(Counter("anchord_poller_ots_stored_total", {{"provider", "fake"}}), 2);
  EXPECT_EQ(Counter("anchord_backlog_digests",
                    {{"service", "poller"}, {"provider", "fake"}, {"state", "pending"}}),
            3);

  // Next round: nothing left the list, so no lookups and no downloads.
  stats = engine->RunRound(&p);
  EXPECT_EQ(p.total_lookups(), 2);
  EXPECT_EQ(stats.downloads, 0);
}

TEST_F(PollEngineTest, ProofsTrackedAfterTheWalkStartedAreNotLookedUp) {
  FakeProvider p("fake", true);
  Track(1);  // tracked "now": the walk starts at the same instant and cannot judge it yet
  auto engine = MakeEngine(&p);
  engine->RunRound(&p);
  EXPECT_EQ(p.total_lookups(), 0);
  clock_.Advance(absl::Seconds(1));
  engine->RunRound(&p);            // now it is older than the walk and absent from the list
  EXPECT_EQ(p.lookups(Id(1)), 1);  // unknown to the provider: kNotFound, stays pending
  EXPECT_EQ(Get(1).state, v1::DIGEST_STATE_PENDING);
}

// With a large backlog still pending at the provider, a walk round compares at most
// max_scan_rows stored proofs with the list (never the whole table), and the next round goes on
// from there, so a proof deep in the backlog that left the list is still found.
TEST_F(PollEngineTest, WalkRoundReadsABoundedSliceOfTheBacklog) {
  constexpr int kProofs = 3000;
  constexpr int kScan = 600;
  FakeProvider p("fake", /*list=*/true);
  std::vector<TrackInput> batch;
  for (int n = 1; n <= kProofs; ++n) {
    batch.push_back(Pending(Digest(n), Id(n), "fake"));
    p.SetRecord(Id(n), Digest(n), RecordState::kPending);
  }
  ASSERT_TRUE(store_->Track(batch, clock_.Now()).ok());
  // Near the end of the table, it was confirmed at the provider: it leaves the pending list.
  p.SetRecord(Id(2900), Digest(2900), RecordState::kConfirmed, 812345);
  clock_.Advance(absl::Seconds(1));

  CountingStore counting(store_.get());
  PollEngineOptions opts;
  opts.list_page_limit = 1000;
  opts.max_scan_rows = kScan;
  PollEngine engine(&counting, &bus_, &metrics_, &clock_, {&p}, opts);
  int rounds = 0;
  // kProofs / kScan rounds reach every stored proof once; one more for slack.
  while (rounds < kProofs / kScan + 1 && p.lookups(Id(2900)) == 0) {
    counting.ResetCounts();
    RoundStats stats = engine.RunRound(&p);
    ++rounds;
    ASSERT_TRUE(stats.walked);
    auto counts = counting.Snapshot();
    EXPECT_LE(counts["List"].rows, kScan) << "round " << rounds;
    EXPECT_LE(counts["List"].calls, kScan / 500 + 2) << "round " << rounds;
  }
  EXPECT_EQ(p.lookups(Id(2900)), 1);
  EXPECT_EQ(p.total_lookups(), 1);  // every other proof is still on the list
  EXPECT_GE(rounds, 2);             // it was not within the first round's slice
  EXPECT_EQ(Get(2900).state, v1::DIGEST_STATE_CONFIRMED);
}

// A round's marks of the proofs it asked about go to the store a group at a time: 300 lookups
// are three calls (128, 128, 44), and every proof carries the time of its lookup.
TEST_F(PollEngineTest, ARoundMarksItsChecksAGroupAtATime) {
  FakeProvider p("fake", /*list=*/false);
  std::vector<TrackInput> batch;
  for (int n = 3000; n < 3300; ++n) {
    batch.push_back(Pending(Digest(n), Id(n)));
    p.SetRecord(Id(n), Digest(n), RecordState::kPending);
  }
  ASSERT_TRUE(store_->Track(batch, clock_.Now()).ok());
  clock_.Advance(absl::Seconds(1));
  CountingStore counting(store_.get());
  PollEngineOptions opts;
  opts.max_lookups_per_round = 300;
  PollEngine engine(&counting, &bus_, &metrics_, &clock_, {&p}, opts);
  RoundStats stats = engine.RunRound(&p);
  EXPECT_EQ(stats.lookups, 300);
  EXPECT_EQ(p.total_lookups(), 300);
  EXPECT_EQ(counting.Snapshot()["MarkChecked"].calls, 3);
  for (int n = 3000; n < 3300; n += 37) {
    EXPECT_EQ(Get(n).last_checked_at, clock_.Now()) << n;
  }
  // The next round asks about the least recently checked first: none was left unmarked.
  auto next = store_->PendingToCheck("fake", absl::InfiniteFuture(), 1);
  ASSERT_TRUE(next.ok());
  ASSERT_EQ(next->size(), 1u);
  EXPECT_EQ((*next)[0].last_checked_at, clock_.Now());
}

// Marks are held until kGroup of them, until the oldest is kHold older than the newest, or until
// the group ends; none is lost.
TEST_F(PollEngineTest, CheckMarksFlushOnSizeAgeAndEnd) {
  for (int n = 4000; n < 4200; ++n) Track(n);
  CountingStore counting(store_.get());
  const absl::Time t0 = clock_.Now() + absl::Seconds(1);
  {
    CheckMarks marks(&counting);
    for (int n = 4000; n < 4000 + static_cast<int>(CheckMarks::kGroup) - 1; ++n) {
      marks.Add(Get(n), t0);
    }
    EXPECT_EQ(counting.Snapshot()["MarkChecked"].calls, 0);
    marks.Add(Get(4127), t0);  // the kGroup-th
    EXPECT_EQ(counting.Snapshot()["MarkChecked"].calls, 1);
    EXPECT_EQ(Get(4127).last_checked_at, t0);
    marks.Add(Get(4128), t0 + absl::Milliseconds(10));
    marks.Add(Get(4129), t0 + CheckMarks::kHold);  // not yet kHold after the oldest
    EXPECT_EQ(counting.Snapshot()["MarkChecked"].calls, 1);
    marks.Add(Get(4130), t0 + absl::Milliseconds(10) + CheckMarks::kHold);
    EXPECT_EQ(counting.Snapshot()["MarkChecked"].calls, 2);
    EXPECT_EQ(Get(4129).last_checked_at, t0 + CheckMarks::kHold);
    marks.Add(Get(4131), t0 + absl::Seconds(2));
    EXPECT_EQ(counting.Snapshot()["MarkChecked"].calls, 2);
  }
  EXPECT_EQ(counting.Snapshot()["MarkChecked"].calls, 3);
  EXPECT_EQ(Get(4131).last_checked_at, t0 + absl::Seconds(2));
  EXPECT_EQ(Get(4132).last_checked_at, absl::InfinitePast());
}

TEST_F(PollEngineTest, NoPendingProofsMeansNoListRequests) {
  FakeProvider p("fake", true);
  auto engine = MakeEngine(&p);
  engine->RunRound(&p);
  EXPECT_EQ(p.list_calls(), 0);
  Track(1);
  clock_.Advance(absl::Seconds(1));
  engine->RunRound(&p);
  EXPECT_EQ(p.list_calls(), 1);
}

TEST_F(PollEngineTest, OtsNotYetAvailableIsRetriedNextRound) {
  FakeProvider p("fake", true);
  Track(1);
  p.SetRecord(Id(1), Digest(1), RecordState::kConfirmed, 900000);
  clock_.Advance(absl::Seconds(1));
  auto engine = MakeEngine(&p);
  RoundStats s1 = engine->RunRound(&p);
  EXPECT_EQ(s1.confirmed, 1);
  EXPECT_EQ(s1.ots_stored, 0);
  EXPECT_EQ(Get(1).state, v1::DIGEST_STATE_CONFIRMED);
  EXPECT_FALSE(Get(1).ots_available());

  p.SetOts(Id(1), MakeOts(Digest(1)));
  RoundStats s2 = engine->RunRound(&p);
  EXPECT_EQ(s2.confirmed, 0);
  EXPECT_EQ(s2.ots_stored, 1);
  EXPECT_TRUE(Get(1).ots_available());
  auto ots = store_->GetOts(Digest(1), "fake");
  ASSERT_TRUE(ots.ok() && ots->has_value());
  EXPECT_EQ(**ots, MakeOts(Digest(1)));
  auto events = Events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].first, v1::PROOF_EVENT_TYPE_CONFIRMED);
  EXPECT_EQ(events[1].first, v1::PROOF_EVENT_TYPE_OTS_STORED);
  // Stored once: later rounds download nothing.
  int downloads = p.downloads();
  engine->RunRound(&p);
  EXPECT_EQ(p.downloads(), downloads);
}

TEST_F(PollEngineTest, CorruptOtsIsNeverStored) {
  FakeProvider p("fake", true);
  Track(1);
  p.SetRecord(Id(1), Digest(1), RecordState::kConfirmed, 1);
  clock_.Advance(absl::Seconds(1));
  auto engine = MakeEngine(&p);

  std::string bad_magic = MakeOts(Digest(1));
  bad_magic[1] = 'X';
  std::string other_digest = MakeOts(Digest(2));
  std::string bad_version = MakeOts(Digest(1));
  bad_version[31] = '\x02';
  std::string bad_op = MakeOts(Digest(1));
  bad_op[32] = '\x02';
  std::string truncated = MakeOts(Digest(1)).substr(0, 50);
  for (const std::string& bad :
       {bad_magic, other_digest, bad_version, bad_op, truncated, std::string()}) {
    p.SetOts(Id(1), bad);
    engine->RunRound(&p);
    EXPECT_FALSE(Get(1).ots_available());
    auto ots = store_->GetOts(Digest(1), "fake");
    ASSERT_TRUE(ots.ok());
    EXPECT_FALSE(ots->has_value());
  }
  EXPECT_GT(
      Counter("anchord_poller_downloads_total", {{"provider", "fake"}, {"result", "invalid"}}), 0);
  p.SetOts(Id(1), MakeOts(Digest(1)));
  engine->RunRound(&p);
  EXPECT_TRUE(Get(1).ots_available());
}

TEST_F(PollEngineTest, RecordForAnotherDigestIsRejected) {
  FakeProvider p("fake", /*list=*/false);
  Track(1);
  p.SetRecord(Id(1), Digest(1), RecordState::kConfirmed, 5);
  p.SetRecordDigest(Id(1), Digest(2));
  auto engine = MakeEngine(&p);
  RoundStats s = engine->RunRound(&p);
  EXPECT_EQ(s.lookups, 1);
  EXPECT_EQ(s.confirmed, 0);
  EXPECT_EQ(Get(1).state, v1::DIGEST_STATE_PENDING);
  EXPECT_TRUE(Events().empty());
  EXPECT_EQ(Counter("anchord_poller_lookups_total", {{"provider", "fake"}, {"result", "invalid"}}),
            1);
  // Once the provider answers correctly, the proof moves on.
  p.SetRecordDigest(Id(1), Digest(1));
  engine->RunRound(&p);
  EXPECT_EQ(Get(1).state, v1::DIGEST_STATE_CONFIRMED);
}

TEST_F(PollEngineTest, FailedAtProviderBecomesFailed) {
  FakeProvider p("fake", false);
  Track(1);
  p.SetRecord(Id(1), Digest(1), RecordState::kFailed);
  // Engine events carry the proof's files, so watchers filtering by job see them.
  auto job_sub = bus_.Subscribe(WatchFilter{"default", std::nullopt}, 10, nullptr);
  auto other_job_sub = bus_.Subscribe(WatchFilter{"other", std::nullopt}, 10, nullptr);
  auto engine = MakeEngine(&p);
  RoundStats s = engine->RunRound(&p);
  EventPtr job_ev = job_sub->Pop();
  ASSERT_NE(job_ev, nullptr);
  EXPECT_EQ(job_ev->type(), v1::PROOF_EVENT_TYPE_FAILED);
  EXPECT_EQ(other_job_sub->Pop(), nullptr);
  EXPECT_EQ(s.failed, 1);
  ProofRow row = Get(1);
  EXPECT_EQ(row.state, v1::DIGEST_STATE_FAILED);
  EXPECT_EQ(row.failure_reason, "PROVIDER_REPORTED_FAILED");
  EXPECT_EQ(row.provider_request_id, "req-" + Id(1));
  auto events = Events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].first, v1::PROOF_EVENT_TYPE_FAILED);
}

TEST_F(PollEngineTest, WithoutListSupportLookupsAreBudgetedAndRotate) {
  FakeProvider p("fake", false);
  for (int n = 1; n <= 5; ++n) {
    Track(n);
    p.SetRecord(Id(n), Digest(n), RecordState::kPending);
    clock_.Advance(absl::Milliseconds(10));
  }
  PollEngineOptions opts;
  opts.max_lookups_per_round = 2;
  auto engine = MakeEngine(&p, opts);
  engine->RunRound(&p);
  EXPECT_EQ(p.total_lookups(), 2);
  EXPECT_EQ(p.lookups(Id(1)), 1);  // oldest first
  EXPECT_EQ(p.lookups(Id(2)), 1);
  clock_.Advance(absl::Seconds(1));
  engine->RunRound(&p);
  clock_.Advance(absl::Seconds(1));
  engine->RunRound(&p);
  EXPECT_EQ(p.total_lookups(), 6);
  for (int n = 1; n <= 5; ++n) EXPECT_GE(p.lookups(Id(n)), 1) << n;  // everyone had a turn
}

TEST_F(PollEngineTest, ListFailureFallsBackToLookups) {
  FakeProvider p("fake", true);
  Track(1);
  p.SetRecord(Id(1), Digest(1), RecordState::kPending);
  p.FailList(true);
  clock_.Advance(absl::Seconds(1));
  auto engine = MakeEngine(&p);
  RoundStats s = engine->RunRound(&p);
  EXPECT_FALSE(s.walked);
  EXPECT_EQ(p.lookups(Id(1)), 1);
}

TEST_F(PollEngineTest, StallIsReportedOnce) {
  FakeProvider p("fake", false);
  Track(1);
  Track(2);
  p.SetRecord(Id(1), Digest(1), RecordState::kPending);
  p.SetRecord(Id(2), Digest(2), RecordState::kPending);
  PollEngineOptions opts;
  opts.stall_after = absl::Hours(24);
  auto engine = MakeEngine(&p, opts);
  engine->RunRound(&p);
  EXPECT_TRUE(Events().empty());
  EXPECT_FALSE(Get(1).stalled);

  clock_.Advance(absl::Hours(24) + absl::Seconds(1));
  RoundStats s = engine->RunRound(&p);
  EXPECT_EQ(s.stalled, 2);
  auto events = Events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].first, v1::PROOF_EVENT_TYPE_STALLED);
  EXPECT_TRUE(Get(1).stalled);
  EXPECT_EQ(Counter("anchord_poller_stalled_proofs", {{"provider", "fake"}}), 2);
  EXPECT_GE(Counter("anchord_oldest_pending_proof_age_seconds", {{"provider", "fake"}}), 86400);

  clock_.Advance(absl::Hours(1));
  s = engine->RunRound(&p);
  EXPECT_EQ(s.stalled, 0);
  EXPECT_TRUE(Events().empty());
}

TEST_F(PollEngineTest, StartAndStopRunRoundsOnAThread) {
  FakeProvider p("fake", false);
  Track(1);
  p.SetRecord(Id(1), Digest(1), RecordState::kConfirmed, 7);
  p.SetOts(Id(1), MakeOts(Digest(1)));
  PollEngineOptions opts;
  opts.poll_interval = absl::Milliseconds(20);
  auto engine = MakeEngine(&p, opts);
  engine->Start();
  // Bounded wait for the background round (no assertion on how long it took).
  bool stored =
      anchord::testing::WaitUntil([&] { return Get(1).ots_available(); }, absl::Seconds(5));
  engine->Stop();
  EXPECT_TRUE(stored);
  EXPECT_TRUE(Get(1).ots_available());
}

// An event is built only for a bus someone listens to: a subscriber, or the replicas' relay
// (which gets every event even while this replica has no watcher).
TEST(PublishEventTest, ReachesTheRelayWithoutSubscribersAndIsSkippedForNobody) {
  EventBus bus;
  ProofRow row;
  row.digest = Digest(7);
  row.provider = "fake";
  row.state = v1::DIGEST_STATE_PENDING;
  EXPECT_FALSE(bus.listened());
  PublishEvent(bus, nullptr, v1::PROOF_EVENT_TYPE_TRACKED, row, absl::UnixEpoch());
  std::vector<std::string> relayed;
  bus.SetRelay([&](const v1::WatchResponse& ev) { relayed.push_back(ev.proof().digest()); });
  EXPECT_TRUE(bus.listened());
  PublishEvent(bus, nullptr, v1::PROOF_EVENT_TYPE_TRACKED, row, absl::UnixEpoch());
  ASSERT_EQ(relayed.size(), 1u);
  EXPECT_EQ(relayed[0], std::string(Digest(7).bytes()));
  bus.SetRelay(nullptr);
  EXPECT_FALSE(bus.listened());
  auto sub = bus.Subscribe({}, 10, nullptr);
  EXPECT_TRUE(bus.listened());
  PublishEvent(bus, nullptr, v1::PROOF_EVENT_TYPE_TRACKED, row, absl::UnixEpoch());
  EventPtr ev = sub->Pop();
  ASSERT_NE(ev, nullptr);
  EXPECT_EQ(ev->type(), v1::PROOF_EVENT_TYPE_TRACKED);
  bus.Unsubscribe(sub);
  EXPECT_FALSE(bus.listened());
}

}  // namespace
}  // namespace anchord::poller
