// rpc::Outbox without a server: a fake writer records what the outbox starts writing, and the test
// completes the writes itself, so admission, hold-back and cancellation are checked step by step.
#include "libs/rpc/outbox.h"

#include <atomic>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/testing/wait.h"

namespace anchord::rpc {
namespace {

struct Msg {
  int id = 0;
  int stamped = -1;
  bool more = false;  // as start_write was told
};

// Records every write the outbox starts, in order, and stamps each with a counter's value.
class Writer {
 public:
  explicit Writer(Outbox<Msg>* out) {
    out->stamp = [this](Msg* m) { m->stamped = stamp_value.load(); };
    out->start_write = [this](Msg* m, bool more) {
      absl::MutexLock lock(&mu_);
      written_.push_back(*m);
      written_.back().more = more;
    };
    out->on_room = [this] { ++rooms; };
  }
  std::vector<Msg> written() {
    absl::MutexLock lock(&mu_);
    return written_;
  }
  std::vector<int> ids() {
    std::vector<int> ids;
    for (const Msg& m : written()) ids.push_back(m.id);
    return ids;
  }
  std::atomic<int> stamp_value{0};
  std::atomic<int> rooms{0};

 private:
  absl::Mutex mu_;
  std::vector<Msg> written_ ABSL_GUARDED_BY(mu_);
};

constexpr absl::Duration kWait = absl::Seconds(10);

// Admit() on another thread, bounded: false when it did not return in time (the outbox is then
// cancelled to release the thread) or refused.
bool AdmitsWithin(Outbox<Msg>& out) {
  std::atomic<int> admitted{-1};
  std::thread t([&] { admitted = out.Admit() ? 1 : 0; });
  bool returned = testing::WaitUntil([&] { return admitted.load() >= 0; }, kWait);
  if (!returned) out.Cancel();
  t.join();
  return returned && admitted.load() == 1;
}

TEST(OutboxTest, AdmitsUpToTheWindowAndAWrittenResultFreesASlot) {
  Outbox<Msg> out(2, /*hold_back_last=*/false);
  Writer w(&out);
  ASSERT_TRUE(out.Admit());
  ASSERT_TRUE(out.Admit());
  EXPECT_FALSE(out.HasRoom());
  EXPECT_EQ(out.outstanding(), 2);

  std::atomic<bool> third{false};
  std::thread t([&] { third = out.Admit(); });
  out.Push(Msg{1});
  out.Push(Msg{2});
  // One write at a time: the second result waits for the first write to complete.
  EXPECT_EQ(w.ids(), std::vector<int>({1}));
  EXPECT_FALSE(third.load());  // a queued result still holds its slot
  EXPECT_EQ(out.outstanding(), 2);

  out.OnWriteDone(true);
  ASSERT_TRUE(testing::WaitUntil([&] { return third.load(); }, kWait));
  t.join();
  EXPECT_EQ(w.ids(), std::vector<int>({1, 2}));
  EXPECT_EQ(w.rooms.load(), 1);
  EXPECT_EQ(out.outstanding(), 2);  // result 2 (being written) and the third admission
}

// A result answering several items holds all their slots until it was written, then frees them
// together; a cancellation or a broken write frees the slots of every discarded result.
TEST(OutboxTest, AResultForSeveralItemsFreesAllTheirSlotsOnceWritten) {
  Outbox<Msg> out(4, /*hold_back_last=*/false);
  Writer w(&out);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(out.Admit());
  out.Push(Msg{1}, 3);
  EXPECT_EQ(w.ids(), std::vector<int>({1}));
  EXPECT_EQ(out.outstanding(), 4);
  EXPECT_FALSE(out.HasRoom());
  out.OnWriteDone(true);
  EXPECT_EQ(out.outstanding(), 1);
  EXPECT_TRUE(out.HasRoom());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(out.Admit());
  out.Push(Msg{2}, 2);  // written at once
  out.Push(Msg{3}, 2);  // queued behind it
  EXPECT_EQ(out.outstanding(), 4);
  out.OnWriteDone(false);  // the caller is gone: 2 is done, 3 is discarded
  EXPECT_EQ(out.outstanding(), 0);
  EXPECT_FALSE(out.WaitFinished());

  Outbox<Msg> cancelled(8, /*hold_back_last=*/true);
  Writer cw(&cancelled);
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(cancelled.Admit());
  cancelled.Push(Msg{1}, 2);
  // Held back, and a held result does not count against the window, whatever it answers.
  EXPECT_EQ(cancelled.outstanding(), 6);
  EXPECT_TRUE(AdmitsWithin(cancelled));
  EXPECT_TRUE(AdmitsWithin(cancelled));
  cancelled.Push(Msg{2}, 3);  // 1 is written, 2 held
  ASSERT_EQ(cw.ids(), std::vector<int>({1}));
  cancelled.Cancel();  // discards the held 2, keeps 1 (being written)
  EXPECT_EQ(cancelled.outstanding(), 5);
  cancelled.Push(Msg{3}, 3);  // after the cancellation: discarded, its slots freed
  EXPECT_EQ(cancelled.outstanding(), 2);
  cancelled.OnWriteDone(true);
  EXPECT_EQ(cancelled.outstanding(), 0);
  EXPECT_EQ(cw.ids(), std::vector<int>({1}));
}

TEST(OutboxTest, WindowBelowOneIsOne) {
  Outbox<Msg> out(0, false);
  Writer w(&out);
  ASSERT_TRUE(out.Admit());
  EXPECT_FALSE(out.HasRoom());
}

TEST(OutboxTest, HoldsBackTheNewestResultUntilAnotherFollowsOrItIsReleased) {
  Outbox<Msg> out(1, /*hold_back_last=*/true);
  Writer w(&out);
  ASSERT_TRUE(out.Admit());
  out.Push(Msg{1});
  EXPECT_TRUE(w.ids().empty());  // held back
  // The held result does not count against the window: a window of 1 admits the next item.
  ASSERT_TRUE(AdmitsWithin(out));
  w.stamp_value = 7;
  out.Push(Msg{2});
  ASSERT_EQ(w.ids(), std::vector<int>({1}));
  EXPECT_EQ(w.written()[0].stamped, 7);
  out.OnWriteDone(true);
  EXPECT_EQ(w.ids(), std::vector<int>({1}));  // 2 is now the held one

  w.stamp_value = 9;  // stamped when it is written, after the release
  out.ReleaseHeld();
  ASSERT_EQ(w.ids(), std::vector<int>({1, 2}));
  EXPECT_EQ(w.written()[1].stamped, 9);
  out.OnWriteDone(true);
  EXPECT_EQ(out.outstanding(), 0);
  EXPECT_TRUE(out.WaitFinished());
}

// A burst of queued results is written corked (`more`) except its last, so gRPC may hold them and
// send them together, and the last write always flushes; a result with nothing queued behind it
// is never corked. With hold-back, the held result does not count as "following".
TEST(OutboxTest, CorksEveryWriteOfABurstButTheLast) {
  Outbox<Msg> out(8, false);
  Writer w(&out);
  for (int i = 1; i <= 4; ++i) ASSERT_TRUE(out.Admit());
  out.Push(Msg{1});  // alone: written at once, not corked
  out.Push(Msg{2});
  out.Push(Msg{3});
  out.Push(Msg{4});
  for (int i = 0; i < 4; ++i) out.OnWriteDone(true);
  std::vector<Msg> written = w.written();
  ASSERT_EQ(w.ids(), std::vector<int>({1, 2, 3, 4}));
  EXPECT_FALSE(written[0].more);
  EXPECT_TRUE(written[1].more);
  EXPECT_TRUE(written[2].more);
  EXPECT_FALSE(written[3].more);  // the last of the burst flushes
  EXPECT_TRUE(out.WaitFinished());

  Outbox<Msg> held(8, /*hold_back_last=*/true);
  Writer hw(&held);
  for (int i = 1; i <= 4; ++i) ASSERT_TRUE(held.Admit());
  // 1 is written when 2 arrives; 2 is then the held one, so 1 is not corked.
  for (int i = 1; i <= 4; ++i) held.Push(Msg{i});
  held.OnWriteDone(true);
  held.OnWriteDone(true);
  ASSERT_EQ(hw.ids(), std::vector<int>({1, 2, 3}));
  EXPECT_FALSE(hw.written()[0].more);
  EXPECT_TRUE(hw.written()[1].more);   // 3 follows at once; 4 is held
  EXPECT_FALSE(hw.written()[2].more);  // only the held 4 behind it: flush
  held.OnWriteDone(true);
  held.ReleaseHeld();
  ASSERT_EQ(hw.ids(), std::vector<int>({1, 2, 3, 4}));
  EXPECT_FALSE(hw.written()[3].more);
  held.OnWriteDone(true);
  EXPECT_TRUE(held.WaitFinished());
}

TEST(OutboxTest, WaitFinishedWaitsForEveryWriteAndTask) {
  Outbox<Msg> out(4, false);
  Writer w(&out);
  ASSERT_TRUE(out.Admit());
  out.TaskStarted();
  std::atomic<bool> finished{false};
  std::atomic<bool> result{false};
  std::thread t([&] {
    result = out.WaitFinished();
    finished = true;
  });
  out.Push(Msg{1});
  EXPECT_FALSE(finished.load());
  out.OnWriteDone(true);
  EXPECT_FALSE(finished.load());  // the task still runs
  out.TaskDone();
  ASSERT_TRUE(testing::WaitUntil([&] { return finished.load(); }, kWait));
  t.join();
  EXPECT_TRUE(result.load());
}

TEST(OutboxTest, CancelWakesAdmitAndDiscardsQueuedResultsButNotTheOneBeingWritten) {
  Outbox<Msg> out(3, false);
  Writer w(&out);
  ASSERT_TRUE(out.Admit());
  ASSERT_TRUE(out.Admit());
  ASSERT_TRUE(out.Admit());  // item 3: still being worked on when the call is cancelled
  out.Push(Msg{1});          // being written
  out.Push(Msg{2});          // queued
  std::atomic<int> admitted{-1};
  std::thread t([&] { admitted = out.Admit() ? 1 : 0; });
  out.Cancel();
  ASSERT_TRUE(testing::WaitUntil([&] { return admitted.load() >= 0; }, kWait));
  t.join();
  EXPECT_EQ(admitted.load(), 0);
  EXPECT_TRUE(out.cancelled());
  // Result 1 (its buffer in use until OnWriteDone) and item 3; result 2 was discarded.
  EXPECT_EQ(out.outstanding(), 2);

  // The result of an admitted item pushed after cancellation is discarded and its slot given back.
  out.Push(Msg{3});
  EXPECT_EQ(out.outstanding(), 1);

  std::atomic<bool> finished{false};
  std::atomic<bool> result{true};
  std::thread waiter([&] {
    result = out.WaitFinished();
    finished = true;
  });
  EXPECT_FALSE(finished.load());  // a write is still in flight
  out.OnWriteDone(true);
  ASSERT_TRUE(testing::WaitUntil([&] { return finished.load(); }, kWait));
  waiter.join();
  EXPECT_FALSE(result.load());
  EXPECT_EQ(w.ids(), std::vector<int>({1}));  // nothing written after the cancellation
  EXPECT_EQ(out.outstanding(), 0);
}

TEST(OutboxTest, AFailedWriteCancelsAndReleasesEverySlot) {
  Outbox<Msg> out(3, false);
  Writer w(&out);
  for (int i = 1; i <= 3; ++i) {
    ASSERT_TRUE(out.Admit());
    out.Push(Msg{i});
  }
  out.OnWriteDone(false);
  EXPECT_TRUE(out.cancelled());
  EXPECT_EQ(out.outstanding(), 0);
  EXPECT_EQ(w.ids(), std::vector<int>({1}));
  EXPECT_FALSE(out.Admit());
}

TEST(OutboxTest, DropGivesBackASlotWithoutAResult) {
  Outbox<Msg> out(1, false);
  Writer w(&out);
  ASSERT_TRUE(out.Admit());
  EXPECT_FALSE(out.HasRoom());
  out.Drop();
  EXPECT_TRUE(out.HasRoom());
  EXPECT_TRUE(out.WaitFinished());
  EXPECT_TRUE(w.ids().empty());
}

TEST(OutboxTest, WaitTasksWaitsForTheOutsideConditionAfterNotify) {
  Outbox<Msg> out(1, false);
  std::atomic<bool> input_done{false};
  std::atomic<bool> returned{false};
  out.TaskStarted();
  std::thread t([&] {
    out.WaitTasks([&] { return input_done.load(); });
    returned = true;
  });
  out.TaskDone();
  EXPECT_FALSE(returned.load());  // the outside condition does not hold yet
  input_done = true;
  out.Notify();
  ASSERT_TRUE(testing::WaitUntil([&] { return returned.load(); }, kWait));
  t.join();
}

// Callbacks run without the outbox's lock: a writer that completes the write at once (calling
// back into the outbox from start_write) must not deadlock, and every result is written in order.
TEST(OutboxTest, CallbacksMayReenterTheOutbox) {
  Outbox<Msg> out(8, false);
  std::vector<int> ids;
  out.start_write = [&](Msg* m, bool) {
    ids.push_back(m->id);
    EXPECT_GE(out.outstanding(), 1);
  };
  out.on_room = [&] { EXPECT_FALSE(out.cancelled()); };
  for (int i = 1; i <= 3; ++i) {
    ASSERT_TRUE(out.Admit());
    out.Push(Msg{i});
  }
  for (int i = 0; i < 3; ++i) out.OnWriteDone(true);
  EXPECT_EQ(ids, std::vector<int>({1, 2, 3}));
  EXPECT_TRUE(out.WaitFinished());
}

}  // namespace
}  // namespace anchord::rpc
