// HasherStore's write of forwarded files (RecordForwarded) and the GroupWriter that batches those
// writes, over a real SQLite file.
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "libs/ledger/sqlite_db.h"
#include "services/hasher/group_writer.h"
#include "services/hasher/hasher_store.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/wait.h"

namespace anchord::hasher {
namespace {

Digest D(char c) { return *Digest::FromBytes(std::string(32, c)); }

// An accepted file becomes QUEUED with the acknowledgement's duplicate_of, a refused one HASHED;
// both count as read by the hasher (so a later run may skip them when unchanged), and the write
// replaces whatever the path had: an uploaded row, an ERROR row, an older digest.
TEST(HasherStoreTest, RecordForwardedWritesTheAnsweredStateOnceOverAnyEarlierRow) {
  testing::TempDir dir("hasher_store");
  auto store = HasherStore::Open(dir.File("hasher.db"));
  ASSERT_TRUE(store.ok()) << store.status();
  HasherStore& s = **store;
  ASSERT_TRUE(s.RecordUploaded("j", "up.txt", 5, 6, D('\x09')).ok());
  ASSERT_TRUE(s.RecordError("j", "err.txt", 1, 2, 5, "FILE_UNREADABLE", "gone").ok());
  ASSERT_TRUE(s.RecordForwarded("j", {ForwardedRecord{"old.txt", 3, 4, D('\x08'), true, ""}}).ok());

  ASSERT_TRUE(s.RecordForwarded("j", {ForwardedRecord{"up.txt", 50, 60, D('\x01'), true, ""},
                                      ForwardedRecord{"err.txt", 10, 20, D('\x02'), false, ""},
                                      ForwardedRecord{"old.txt", 30, 40, D('\x03'), true, "a.txt"},
                                      ForwardedRecord{"new.txt", 7, 8, D('\x04'), true, ""}})
                  .ok());

  struct Want {
    std::string path;
    int64_t size, mtime;
    Digest digest;
    FileState state;
    std::string duplicate_of;
  };
  for (const Want& w :
       std::vector<Want>{{"up.txt", 50, 60, D('\x01'), FileState::kQueued, ""},
                         {"err.txt", 10, 20, D('\x02'), FileState::kHashed, ""},
                         {"old.txt", 30, 40, D('\x03'), FileState::kQueued, "a.txt"},
                         {"new.txt", 7, 8, D('\x04'), FileState::kQueued, ""}}) {
    SCOPED_TRACE(w.path);
    auto row = s.Get("j", w.path);
    ASSERT_TRUE(row.ok() && row->has_value()) << row.status();
    const FileRow& r = **row;
    EXPECT_EQ(r.size_bytes, w.size);
    EXPECT_EQ(r.mtime_ns, w.mtime);
    ASSERT_TRUE(r.digest.has_value());
    EXPECT_EQ(*r.digest, w.digest);
    EXPECT_EQ(r.state, w.state);
    EXPECT_EQ(r.duplicate_of, w.duplicate_of);
    EXPECT_TRUE(r.read_by_hasher);
    EXPECT_EQ(r.error_code, 0);
    EXPECT_EQ(r.error_reason, "");
  }
  // The digest lookups see the new digests and no longer the replaced ones.
  auto by_digest = s.FindByDigest(D('\x03'));
  ASSERT_TRUE(by_digest.ok()) << by_digest.status();
  ASSERT_EQ(by_digest->size(), 1u);
  EXPECT_EQ((*by_digest)[0].path, "old.txt");
  by_digest = s.FindByDigest(D('\x08'));
  ASSERT_TRUE(by_digest.ok());
  EXPECT_TRUE(by_digest->empty());
  auto sum = s.Summarize("j");
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(sum->files, 4);
  EXPECT_EQ(sum->digests_by_state["DIGEST_STATE_QUEUED"], 3);
  EXPECT_EQ(sum->digests_by_state["DIGEST_STATE_HASHED"], 1);
  // Nothing to write is not an error, and writes nothing.
  EXPECT_TRUE(s.RecordForwarded("j", {}).ok());
}

// Files written again (40 of them: two statements of 16 and 8 one by one) keep the digest index
// right whether their digest is unchanged (its entry is left alone) or changed (the statement is
// written again with the digest): every path is found by its new digest, none by a replaced one,
// and the other columns take the new values either way.
TEST(HasherStoreTest, WrittenAgainWithTheSameOrAnotherDigest) {
  testing::TempDir dir("hasher_store");
  auto store = HasherStore::Open(dir.File("hasher.db"));
  ASSERT_TRUE(store.ok()) << store.status();
  HasherStore& s = **store;
  auto digest_of = [](int n, int version) {
    std::string bytes(32, static_cast<char>(n));
    bytes[31] = static_cast<char>(version);
    return *Digest::FromBytes(bytes);
  };
  std::vector<ForwardedRecord> first, again;
  for (int n = 0; n < 40; ++n) {
    const std::string path = "f" + std::to_string(n);
    first.push_back(ForwardedRecord{path, 1, 1, digest_of(n, 0), false, ""});
    // Every third file changed its bytes; the others are hashed again unchanged.
    again.push_back(ForwardedRecord{path, 2, 3, digest_of(n, n % 3 == 0 ? 1 : 0), true, ""});
  }
  ASSERT_TRUE(s.RecordForwarded("j", first).ok());
  ASSERT_TRUE(s.RecordForwarded("j", again).ok());
  for (int n = 0; n < 40; ++n) {
    SCOPED_TRACE(n);
    auto row = s.Get("j", "f" + std::to_string(n));
    ASSERT_TRUE(row.ok() && row->has_value()) << row.status();
    EXPECT_EQ((*row)->digest, digest_of(n, n % 3 == 0 ? 1 : 0));
    EXPECT_EQ((*row)->state, FileState::kQueued);
    EXPECT_EQ((*row)->size_bytes, 2);
    EXPECT_EQ((*row)->mtime_ns, 3);
    auto found = s.FindByDigest(digest_of(n, n % 3 == 0 ? 1 : 0));
    ASSERT_TRUE(found.ok()) << found.status();
    ASSERT_EQ(found->size(), 1u);
    EXPECT_EQ((*found)[0].path, "f" + std::to_string(n));
    if (n % 3 == 0) {
      auto old = s.FindByDigest(digest_of(n, 0));
      ASSERT_TRUE(old.ok()) << old.status();
      EXPECT_TRUE(old->empty());
    }
  }
}

int64_t PageSize(const std::string& path) {
  auto db = ledger::SqliteDb::Open(path, ledger::Durability::kProcessCrash);
  if (!db.ok()) return -1;
  ledger::Session session(**db);
  auto s = session.Prepare("PRAGMA page_size");
  if (!s.ok()) return -1;
  auto row = s->Step();
  return row.ok() && *row ? s->ColumnInt(0) : -1;
}

// A new hasher.db gets small pages (less written per random index entry); a database that already
// exists keeps its page size and its rows (converting it would rewrite the whole file).
TEST(HasherStoreTest, NewDatabaseGetsSmallPagesAndAnExistingOneIsKeptAsItIs) {
  testing::TempDir dir("hasher_pages");
  const std::string path = dir.File("hasher.db");
  {
    auto store = HasherStore::Open(path);
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE(
        (*store)->RecordForwarded("j", {ForwardedRecord{"a", 1, 2, D('\x05'), true, ""}}).ok());
  }
  EXPECT_EQ(PageSize(path), 1024);
  {
    // An older database: 4 KiB pages, with its rows.
    auto db = ledger::SqliteDb::Open(path, ledger::Durability::kProcessCrash);
    ASSERT_TRUE(db.ok()) << db.status();
    ledger::Session session(**db);
    ASSERT_TRUE(session
                    .Exec("PRAGMA journal_mode=DELETE; PRAGMA page_size=4096; VACUUM; "
                          "PRAGMA journal_mode=WAL;")
                    .ok());
  }
  ASSERT_EQ(PageSize(path), 4096);
  auto store = HasherStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(PageSize(path), 4096);
  auto row = (*store)->Get("j", "a");
  ASSERT_TRUE(row.ok() && row->has_value()) << row.status();
  EXPECT_EQ((*row)->state, FileState::kQueued);
  EXPECT_EQ(*(*row)->digest, D('\x05'));
  ASSERT_TRUE(
      (*store)->RecordForwarded("j", {ForwardedRecord{"b", 1, 2, D('\x06'), false, ""}}).ok());
  EXPECT_EQ(PageSize(path), 4096);
}

std::vector<std::string> Indexes(const std::string& path) {
  std::vector<std::string> out;
  auto db = ledger::SqliteDb::Open(path, ledger::Durability::kProcessCrash);
  if (!db.ok()) return out;
  ledger::Session session(**db);
  auto s = session.Prepare(
      "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='files' AND sql IS NOT NULL "
      "ORDER BY name");
  if (!s.ok()) return out;
  for (int i = 0; i < 100; ++i) {
    auto row = s->Step();
    if (!row.ok() || !*row) break;
    out.push_back(s->ColumnText(0));
  }
  return out;
}

// The digest index keys on 8 bytes of the digest: digests sharing those 8 bytes are still told
// apart (lookups and the duplicate check compare the whole digest), and a database with the
// former full-width index gets the new one in its place, its rows found as before.
TEST(HasherStoreTest, DigestLookupsCompareTheWholeDigestAndAnOldIndexIsReplaced) {
  testing::TempDir dir("hasher_prefix");
  const std::string path = dir.File("hasher.db");
  const Digest a = *Digest::FromBytes(std::string(8, '\x11') + std::string(24, '\x01'));
  const Digest b = *Digest::FromBytes(std::string(8, '\x11') + std::string(24, '\x02'));
  {
    auto store = HasherStore::Open(path);
    ASSERT_TRUE(store.ok()) << store.status();
    std::vector<std::string> dups;
    ASSERT_TRUE((*store)
                    ->RecordHashedBatch("j",
                                        {HashedRecord{"a1", 1, 1, a}, HashedRecord{"b1", 1, 1, b},
                                         HashedRecord{"a2", 1, 1, a}},
                                        &dups)
                    .ok());
    EXPECT_EQ(dups, (std::vector<std::string>{"", "", "a1"}));
    auto found = (*store)->FindByDigest(b);
    ASSERT_TRUE(found.ok()) << found.status();
    ASSERT_EQ(found->size(), 1u);
    EXPECT_EQ((*found)[0].path, "b1");
    auto first = (*store)->FirstPathWithDigest("j", b, "b1");
    ASSERT_TRUE(first.ok());
    EXPECT_EQ(*first, "");
  }
  EXPECT_EQ(Indexes(path), std::vector<std::string>{"files_by_digest_prefix"});
  {
    // As a hasher.db from before this index was.
    auto db = ledger::SqliteDb::Open(path, ledger::Durability::kProcessCrash);
    ASSERT_TRUE(db.ok()) << db.status();
    ledger::Session session(**db);
    ASSERT_TRUE(session
                    .Exec("DROP INDEX files_by_digest_prefix; "
                          "CREATE INDEX files_by_digest ON files (digest);")
                    .ok());
  }
  ASSERT_EQ(Indexes(path), std::vector<std::string>{"files_by_digest"});
  auto store = HasherStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(Indexes(path), std::vector<std::string>{"files_by_digest_prefix"});
  auto found = (*store)->FindByDigest(a);
  ASSERT_TRUE(found.ok()) << found.status();
  ASSERT_EQ(found->size(), 2u);
  EXPECT_EQ((*found)[0].path, "a1");  // oldest first
  EXPECT_EQ((*found)[1].path, "a2");
}

// RecordHashedBatch's duplicates are what FirstPathWithDigest answers right after each record is
// written, record by record: within the batch, against earlier rows, when a path is recorded again
// with the same or another digest (an upsert keeps the row's place in rowid order), and never
// across jobs.
TEST(HasherStoreTest, BatchDuplicatesMatchAskingAfterEachRecord) {
  testing::TempDir dir("hasher_dups");
  auto batched = HasherStore::Open(dir.File("batched.db"));
  auto single = HasherStore::Open(dir.File("single.db"));
  ASSERT_TRUE(batched.ok()) << batched.status();
  ASSERT_TRUE(single.ok()) << single.status();
  const std::vector<HashedRecord> earlier = {
      {"p1", 1, 1, D('a')}, {"p2", 1, 1, D('a')}, {"q1", 1, 1, D('b')}};
  ASSERT_TRUE((*batched)->RecordHashedBatch("j", earlier, nullptr).ok());
  ASSERT_TRUE((*batched)->RecordHashedBatch("other", {{"x", 1, 1, D('c')}}, nullptr).ok());
  ASSERT_TRUE((*single)->RecordHashedBatch("j", earlier, nullptr).ok());
  ASSERT_TRUE((*single)->RecordHashedBatch("other", {{"x", 1, 1, D('c')}}, nullptr).ok());
  // Forty files of their own digests first (and each twice): the batch is written several
  // records to a statement, and the cases below fall between and across those statements.
  std::vector<HashedRecord> batch;
  for (int i = 0; i < 40; ++i) {
    std::string bytes(32, 'f');
    bytes[0] = static_cast<char>(i);
    const HashedRecord filler{"f" + std::to_string(i), 1, 1, *Digest::FromBytes(bytes)};
    batch.push_back(filler);
    if (i % 10 == 9) batch.push_back(HashedRecord{filler.path + "-copy", 1, 1, filler.digest});
  }
  const std::vector<HashedRecord> cases = {
      {"p1", 2, 2, D('a')},  // again, same digest: p2 is the other one
      {"p3", 2, 2, D('a')},  // p1 kept its place, so it comes first
      {"q1", 2, 2, D('a')},  // a path moving to a digest others carry
      {"r1", 2, 2, D('b')},  // a digest whose only row just moved away
      {"r2", 2, 2, D('b')},  // ... and now has a first path again
      {"x", 2, 2, D('c')},   // another job's digest is not a duplicate
      {"r2", 3, 3, D('b')},  // the same path twice in one batch
  };
  batch.insert(batch.end(), cases.begin(), cases.end());
  std::vector<std::string> dups;
  ASSERT_TRUE((*batched)->RecordHashedBatch("j", batch, &dups).ok());
  std::vector<std::string> want;
  for (const HashedRecord& r : batch) {
    ASSERT_TRUE((*single)->RecordHashedBatch("j", {r}, nullptr).ok());
    auto first = (*single)->FirstPathWithDigest("j", r.digest, r.path);
    ASSERT_TRUE(first.ok()) << first.status();
    want.push_back(*first);
  }
  ASSERT_EQ(want.size(), 51u);
  EXPECT_EQ(std::vector<std::string>(want.begin() + 44, want.end()),
            (std::vector<std::string>{"p2", "p1", "p1", "", "r1", "", "r1"}));
  EXPECT_EQ(want[10], "f9");  // the first copy names its original
  EXPECT_EQ(dups, want);
}

// JobHasRows sees a job's rows of any kind, and only that job's.
TEST(HasherStoreTest, JobHasRowsSeesAnyRowOfThatJobOnly) {
  testing::TempDir dir("hasher_job_rows");
  auto store = HasherStore::Open(dir.File("hasher.db"));
  ASSERT_TRUE(store.ok()) << store.status();
  HasherStore& s = **store;
  auto has = [&](const char* job) {
    absl::StatusOr<bool> r = s.JobHasRows(job);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && *r;
  };
  EXPECT_FALSE(has("a"));
  ASSERT_TRUE(s.RecordError("a", "x", 1, 1, 5, "FILE_UNREADABLE", "gone").ok());
  EXPECT_TRUE(has("a"));
  EXPECT_FALSE(has("b"));
  EXPECT_FALSE(has(""));
  ASSERT_TRUE(s.RecordHashedBatch("b", {HashedRecord{"p", 1, 1, D('b')}}, nullptr).ok());
  EXPECT_TRUE(has("b"));
}

// Everything added is written exactly once and in order; what arrives while a write runs is
// written by the next one, all of it together; Finish writes what is still queued.
TEST(HasherGroupWriterTest, WritesEverythingQueuedTogetherAndDrainsOnFinish) {
  absl::Mutex mu;
  std::vector<std::vector<int>> writes;
  absl::Notification first_write_started, release_first_write;
  GroupWriter<int> writer([&](std::vector<int>& batch) {
    {
      absl::MutexLock lock(&mu);
      writes.push_back(batch);
    }
    if (!first_write_started.HasBeenNotified()) {
      first_write_started.Notify();
      // Bounded: the test releases it right after queueing the next items.
      release_first_write.WaitForNotificationWithTimeout(absl::Seconds(10));
    }
  });
  writer.Add(0);
  ASSERT_TRUE(first_write_started.WaitForNotificationWithTimeout(absl::Seconds(10)));
  for (int i = 1; i <= 300; ++i) writer.Add(i);
  release_first_write.Notify();
  ASSERT_TRUE(testing::WaitUntil(
      [&] {
        absl::MutexLock lock(&mu);
        return writes.size() == 2;
      },
      absl::Seconds(10)));
  writer.Add(301);
  writer.Add(302);
  writer.Finish();
  writer.Add(999);  // after Finish: never written
  writer.Finish();  // idempotent

  absl::MutexLock lock(&mu);
  ASSERT_GE(writes.size(), 3u);
  EXPECT_EQ(writes[0], std::vector<int>{0});
  ASSERT_EQ(writes[1].size(), 300u);  // the 300 that arrived during the first write, in one
  std::vector<int> all;
  for (const auto& w : writes) all.insert(all.end(), w.begin(), w.end());
  std::vector<int> expected;
  for (int i = 0; i <= 302; ++i) expected.push_back(i);
  EXPECT_EQ(all, expected);
  EXPECT_EQ(writer.writes(), static_cast<int>(writes.size()));
}

// The batches a GroupWriter<int> wrote, in order, for the tests of its Options.
class WriteLog {
 public:
  GroupWriter<int>::WriteFn Fn() {
    return [this](std::vector<int>& batch) {
      absl::MutexLock lock(&mu_);
      writes_.push_back(batch);
    };
  }
  // Waits (at most 10 s) for the first write.
  bool WaitForFirst() {
    return testing::WaitUntil(
        [&] {
          absl::MutexLock lock(&mu_);
          return !writes_.empty();
        },
        absl::Seconds(10));
  }
  std::vector<std::vector<int>> writes() {
    absl::MutexLock lock(&mu_);
    return writes_;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::vector<int>> writes_ ABSL_GUARDED_BY(mu_);
};

// With min_items, the writer waits for that many items before it writes (here the max_delay is
// far longer than the test), and Finish writes what is queued even when it is fewer.
TEST(HasherGroupWriterTest, WaitsForMinItemsAndFinishWritesFewer) {
  WriteLog log;
  GroupWriter<int> writer(log.Fn(), GroupWriter<int>::Options{5, absl::Hours(1)});
  // Spread out: a writer that did not wait would write the first items on their own.
  for (int i = 0; i < 5; ++i) {
    writer.Add(i);
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_TRUE(log.WaitForFirst());
  writer.Add(5);
  writer.Add(6);
  writer.Finish();
  const std::vector<std::vector<int>> writes = log.writes();
  ASSERT_EQ(writes.size(), 2u);
  EXPECT_EQ(writes[0], (std::vector<int>{0, 1, 2, 3, 4}));
  EXPECT_EQ(writes[1], (std::vector<int>{5, 6}));
}

// Fewer than min_items are written once max_delay passed, without waiting for Finish.
TEST(HasherGroupWriterTest, WritesFewerThanMinItemsAfterMaxDelay) {
  WriteLog log;
  GroupWriter<int> writer(log.Fn(), GroupWriter<int>::Options{1000, absl::Milliseconds(50)});
  writer.Add(7);
  ASSERT_TRUE(log.WaitForFirst());
  EXPECT_EQ(log.writes()[0], std::vector<int>{7});
  writer.Finish();
}

// Finish on a writer that never got anything returns (no thread left waiting).
TEST(HasherGroupWriterTest, FinishWithNothingQueuedReturns) {
  int calls = 0;
  {
    GroupWriter<std::string> writer([&](std::vector<std::string>&) { ++calls; });
    writer.Finish();
  }
  EXPECT_EQ(calls, 0);
}

}  // namespace
}  // namespace anchord::hasher
