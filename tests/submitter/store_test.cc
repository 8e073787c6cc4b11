#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "libs/ledger/pg_db.h"
#include "libs/ledger/sqlite_db.h"
#include "services/submitter/persistent_limiter.h"
#include "services/submitter/pg_submitter_store.h"
#include "services/submitter/submitter_store.h"
#include "services/submitter/submitter_store_schema.h"
#include "tests/submitter/test_util.h"
#include "tests/support/backend.h"
#include "tests/support/pg_server.h"
#include "tests/testing/sqlite.h"
#include "tests/testing/wait.h"

namespace anchord::submitter {
namespace {

using testing::Item;
using testing::MakeTempDir;

const absl::Time kNow = absl::FromUnixSeconds(1'700'000'000);

using ::anchord::testing::Backend;

// Every test runs against SQLite (a file) and PostgreSQL (a real server, a database per test).
class StoreTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir();
    ASSERT_FALSE(dir_.empty());
    path_ = dir_ + "/submitter.db";
    if (GetParam() == Backend::kPostgres) {
      ::anchord::testing::PgServer* server = ::anchord::testing::PgServer::Shared();
      ASSERT_NE(server, nullptr) << "PostgreSQL must be installed (Debian package postgresql)";
      auto url = server->CreateDatabase();
      ASSERT_TRUE(url.ok()) << url.status();
      url_ = *url;
    }
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  // A new store over the same data (a restart).
  void Reopen() {
    store_.reset();
    auto s = Open();
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }
  // Another store object over the same data: another replica on PostgreSQL.
  absl::StatusOr<std::unique_ptr<SubmitterStore>> Open(PgSubmitterOptions options = NoHeartbeat()) {
    if (GetParam() == Backend::kSqlite) return OpenSqliteSubmitterStore(path_);
    auto db = ledger::PgDb::Open(url_);
    if (!db.ok()) return db.status();
    return OpenPgSubmitterStore(std::shared_ptr<ledger::PgDb>(std::move(*db)), options);
  }
  // The tests drive time with fixed instants: the caller's leases as given, no heartbeat.
  static PgSubmitterOptions NoHeartbeat() {
    PgSubmitterOptions o;
    o.lease_term = absl::ZeroDuration();
    return o;
  }
  std::string dir_, path_, url_;
  std::unique_ptr<SubmitterStore> store_;
};

TEST_P(StoreTest, InsertIsIdempotentAndTracksDuplicates) {
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

  auto rows = store_->GetByDigest(testing::DigestOf('a'));
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].file.source_path, "dir/a.txt");
  auto refs = store_->Refs(testing::DigestOf('a'));
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
  EXPECT_EQ(store_->GetByDigest(testing::DigestOf('a'))->size(), 2u);
}

TEST_P(StoreTest, ClaimTakesOldestReadyRowUnderLease) {
  ASSERT_TRUE(store_->InsertBatch({Item('a', "a"), Item('b', "b")}, kNow).ok());
  auto c1 = store_->Claim("fake", "w1", kNow, kNow + absl::Minutes(1));
  ASSERT_TRUE(c1.ok() && c1->has_value());
  EXPECT_EQ((*c1)->digest, testing::DigestOf('a'));
  auto c2 = store_->Claim("fake", "w2", kNow, kNow + absl::Minutes(1));
  ASSERT_TRUE(c2.ok() && c2->has_value());
  EXPECT_EQ((*c2)->digest, testing::DigestOf('b'));
  auto c3 = store_->Claim("fake", "w3", kNow, kNow + absl::Minutes(1));
  ASSERT_TRUE(c3.ok());
  EXPECT_FALSE(c3->has_value());
  // Another provider's queue is separate.
  EXPECT_FALSE(store_->Claim("other", "w3", kNow, kNow + absl::Minutes(1))->has_value());

  // Rescheduled into the future: not ready now, ready later.
  ASSERT_TRUE(
      store_
          ->Reschedule((*c1)->id, kNow + absl::Seconds(30), true, "NETWORK_ERROR", "x", "rid", kNow)
          .ok());
  EXPECT_FALSE(store_->Claim("fake", "w3", kNow, kNow + absl::Minutes(1))->has_value());
  auto c4 = store_->Claim("fake", "w3", kNow + absl::Seconds(30), kNow + absl::Minutes(2));
  ASSERT_TRUE(c4.ok() && c4->has_value());
  EXPECT_EQ((*c4)->attempts, 1);
  EXPECT_EQ((*c4)->error_request_id, "rid");

  // An expired lease (dead worker) makes the row claimable again.
  auto c5 = store_->Claim("fake", "w4", kNow + absl::Minutes(5), kNow + absl::Minutes(6));
  ASSERT_TRUE(c5.ok() && c5->has_value());
}

TEST_P(StoreTest, RestartRestoresStateGatesAndSends) {
  ASSERT_TRUE(store_->InsertBatch({Item('a', "a")}, kNow).ok());
  auto c = store_->Claim("fake", "w", kNow, kNow + absl::Minutes(1));
  ASSERT_TRUE(c.ok() && c->has_value());
  ASSERT_TRUE(store_->MarkPrepared((*c)->id, "key-1", "body-1", kNow).ok());
  PauseInfo p{"fake", "MONTHLY_LIMIT_REACHED: spent", kNow, kNow + absl::Hours(1)};
  ASSERT_TRUE(store_->Pause(p).ok());
  ASSERT_TRUE(store_->SaveGate("fake.create", kNow + absl::Seconds(40)).ok());
  // An earlier gate does not shorten a later one.
  ASSERT_TRUE(store_->SaveGate("fake.create", kNow + absl::Seconds(10)).ok());
  ASSERT_TRUE(
      store_->RecordSend("fake.create", kNow - absl::Minutes(5), kNow - absl::Minutes(10)).ok());
  ASSERT_TRUE(store_->RecordSend("fake.create", kNow, kNow - absl::Minutes(2)).ok());

  Reopen();
  auto rows = store_->GetByDigest(testing::DigestOf('a'));
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

TEST_P(StoreTest, PersistentLimiterSurvivesRestart) {
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

// A group of prepared requests commits together; each row gets its own key and body.
TEST_P(StoreTest, MarkPreparedBatchStoresEveryRequest) {
  ASSERT_TRUE(store_->InsertBatch({Item('a', "a"), Item('b', "b"), Item('c', "c")}, kNow).ok());
  auto rows = store_->ClaimBatch("fake", "w", kNow, kNow + absl::Minutes(5), 3);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 3u);
  std::vector<SubmitterStore::PreparedRow> prepared;
  for (const Submission& r : *rows) {
    prepared.push_back({r.id, "key-" + std::to_string(r.id), "body-" + std::to_string(r.id)});
  }
  ASSERT_TRUE(store_->MarkPreparedBatch(prepared, kNow + absl::Seconds(1)).ok());
  ASSERT_TRUE(store_->MarkPreparedBatch({}, kNow).ok());
  Reopen();
  for (char c : {'a', 'b', 'c'}) {
    auto got = store_->GetByDigest(testing::DigestOf(c));
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->size(), 1u);
    const Submission& r = (*got)[0];
    EXPECT_EQ(r.state, SubState::kSubmitting);
    EXPECT_EQ(r.idempotency_key, "key-" + std::to_string(r.id));
    EXPECT_EQ(r.body, "body-" + std::to_string(r.id));
    EXPECT_EQ(r.updated_at, kNow + absl::Seconds(1));
  }
}

// A group of outcomes commits together: each row gets its own record and becomes visible to the
// hand-off.
TEST_P(StoreTest, MarkSubmittedBatchStoresEveryRecord) {
  ASSERT_TRUE(store_->InsertBatch({Item('a', "a"), Item('b', "b")}, kNow).ok());
  auto rows = store_->ClaimBatch("fake", "w", kNow, kNow + absl::Minutes(5), 2);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 2u);
  std::vector<SubmitterStore::SubmittedRow> done;
  for (const Submission& r : *rows) {
    StoredRecord rec;
    rec.proof_id = "proof-" + std::to_string(r.id);
    rec.certificate_url = "https://example.invalid/" + std::to_string(r.id);
    done.push_back({r.id, rec, "req-" + std::to_string(r.id)});
  }
  ASSERT_TRUE(store_->MarkSubmittedBatch(done, kNow).ok());
  ASSERT_TRUE(store_->MarkSubmittedBatch({}, kNow).ok());
  Reopen();
  for (char c : {'a', 'b'}) {
    auto got = store_->GetByDigest(testing::DigestOf(c));
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->size(), 1u);
    const Submission& r = (*got)[0];
    EXPECT_EQ(r.state, SubState::kSubmitted);
    EXPECT_EQ(r.record.proof_id, "proof-" + std::to_string(r.id));
    EXPECT_EQ(r.record.certificate_url, "https://example.invalid/" + std::to_string(r.id));
    EXPECT_EQ(r.request_id, "req-" + std::to_string(r.id));
  }
  auto pending = store_->PendingHandoff(10);
  ASSERT_TRUE(pending.ok());
  EXPECT_EQ(pending->size(), 2u);
}

// With the bucket disabled nothing paces on past sends, so none is written (one commit saved per
// request); a gate closure is still kept across the restart.
TEST_P(StoreTest, PersistentLimiterWithoutLimitRecordsNoSends) {
  FakeClock clock(kNow);
  ratelimit::RateLimit off{0, absl::Minutes(1), absl::Milliseconds(100)};
  {
    auto lim = MakePersistentLimiter(std::make_unique<RecordingLimiter>("p.create"), off,
                                     store_.get(), &clock);
    ASSERT_TRUE(lim->Acquire().ok());
    ASSERT_TRUE(lim->Acquire().ok());
    lim->BlockUntil(kNow + absl::Seconds(90));
  }
  auto sends = store_->RecentSends("p.create", kNow - absl::Minutes(2));
  ASSERT_TRUE(sends.ok()) << sends.status();
  EXPECT_TRUE(sends->empty());
  Reopen();
  auto inner = std::make_unique<RecordingLimiter>("p.create");
  RecordingLimiter* raw = inner.get();
  auto lim = MakePersistentLimiter(std::move(inner), off, store_.get(), &clock);
  EXPECT_EQ(raw->gate, kNow + absl::Seconds(90));
  EXPECT_TRUE(raw->recorded.empty());
}

// Replicas (two store objects over the same data) claiming at once never take the same row.
TEST_P(StoreTest, ConcurrentClaimsNeverShareARow) {
  std::vector<NewItem> items;
  for (int i = 0; i < 60; ++i)
    items.push_back(Item(static_cast<char>(i + 1), "f" + std::to_string(i)));
  ASSERT_TRUE(store_->InsertBatch(items, kNow).ok());
  auto other = Open();
  ASSERT_TRUE(other.ok()) << other.status();
  std::vector<SubmitterStore*> replicas = {store_.get(), other->get()};
  std::mutex mu;
  std::vector<int64_t> claimed;
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      // Bounded: 60 rows, at most 3 per claim; an empty claim ends the thread.
      for (int i = 0; i < 100; ++i) {
        auto rows = replicas[t % 2]->ClaimBatch("fake", "w" + std::to_string(t), kNow,
                                                kNow + absl::Minutes(5), 3);
        if (!rows.ok()) {
          ++errors;
          return;
        }
        if (rows->empty()) return;
        std::lock_guard<std::mutex> lock(mu);
        for (const Submission& r : *rows) claimed.push_back(r.id);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  std::set<int64_t> distinct(claimed.begin(), claimed.end());
  EXPECT_EQ(claimed.size(), 60u);
  EXPECT_EQ(distinct.size(), 60u);
}

// Two batchers (replicas) sealing the same leaves: one batch wins, the other is ABORTED and
// changes nothing.
TEST_P(StoreTest, RacingMerkleBatchersSealOnce) {
  std::vector<NewItem> items;
  for (int i = 0; i < 20; ++i) {
    NewItem it = Item(static_cast<char>(i + 1), "leaf" + std::to_string(i));
    it.merkle = true;
    items.push_back(it);
  }
  ASSERT_TRUE(store_->InsertBatch(items, kNow).ok());
  auto other = Open();
  ASSERT_TRUE(other.ok()) << other.status();
  std::vector<SubmitterStore*> replicas = {store_.get(), other->get()};
  // Both batchers read the same leaves before either seals (read first, outside the threads: a
  // thread scheduled late would otherwise find nothing left to batch), then seal at once.
  std::vector<NewBatch> batches(2);
  for (int t = 0; t < 2; ++t) {
    auto leaves = replicas[t]->UnbatchedLeaves("fake", 100);
    ASSERT_TRUE(leaves.ok()) << leaves.status();
    ASSERT_EQ(leaves->size(), 20u);
    NewBatch& b = batches[t];
    b.provider = "fake";
    b.root = std::string(32, static_cast<char>(0xA0 + t));  // each batcher its own nonces
    b.root_file.job = "default";
    b.root_file.filename = "root";
    for (const WaitingLeaf& l : *leaves) {
      b.leaf_ids.push_back(l.id);
      b.nonces.push_back(std::string(16, static_cast<char>(t)));
    }
  }
  std::vector<absl::StatusOr<int64_t>> results(2, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] { results[t] = replicas[t]->CreateMerkleBatch(batches[t], kNow); });
  }
  for (auto& th : threads) th.join();
  int won = 0, aborted = 0;
  for (const auto& r : results) {
    if (r.ok())
      ++won;
    else if (r.status().code() == absl::StatusCode::kAborted)
      ++aborted;
    else
      ADD_FAILURE() << r.status();
  }
  EXPECT_EQ(won, 1);
  EXPECT_EQ(aborted, 1);
  auto waiting = store_->UnbatchedWaiting("fake");
  ASSERT_TRUE(waiting.ok());
  EXPECT_EQ(waiting->count, 0);
  // One root row, holding every leaf.
  auto roots = store_->ClaimBatch("fake", "w", kNow, kNow + absl::Minutes(1), 10);
  ASSERT_TRUE(roots.ok());
  ASSERT_EQ(roots->size(), 1u);
  EXPECT_EQ((*roots)[0].mode, RowMode::kRoot);
  EXPECT_EQ((*roots)[0].leaf_count, 20);
}

// Bytes that are not UTF-8 (file names from a foreign file system, provider messages) round-trip
// exactly.
TEST_P(StoreTest, ArbitraryBytesRoundTrip) {
  NewItem it = Item('z', "dir/\xff\xfe name'\x01.txt");
  it.file.filename = std::string("\xff\x00\x80 odd", 7);
  ASSERT_TRUE(store_->InsertBatch({it}, kNow).ok());
  auto c = store_->Claim("fake", "w", kNow, kNow + absl::Minutes(1));
  ASSERT_TRUE(c.ok() && c->has_value()) << c.status();
  EXPECT_EQ((*c)->file.filename, it.file.filename);
  EXPECT_EQ((*c)->file.source_path, it.file.source_path);
  const std::string body("{\"a\":\"\xc3\x28\"}\x00tail", 15);
  ASSERT_TRUE(store_->MarkPrepared((*c)->id, "key", body, kNow).ok());
  ASSERT_TRUE(store_->Reschedule((*c)->id, kNow, true, "E", "bad \xff\xfe message", "", kNow).ok());
  auto rows = store_->GetByDigest(testing::DigestOf('z'));
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].body, body);
  EXPECT_EQ((*rows)[0].error_message, "bad \xff\xfe message");
}

// A row whose digest blob is not 32 bytes (a damaged database) is a store error naming the column,
// never a crash or a Digest made of the wrong bytes.
TEST_P(StoreTest, ADigestBlobOfAnotherSizeIsAStoreErrorNamingTheColumn) {
  ASSERT_TRUE(store_->InsertBatch({Item('a', "x/a.txt")}, kNow).ok());
  if (GetParam() == Backend::kSqlite) {
    auto db = ledger::SqliteDb::Open(path_);
    ASSERT_TRUE(db.ok()) << db.status();
    ledger::Session session(**db);
    auto st = session.Prepare("UPDATE submissions SET digest = substr(digest, 1, 31)");
    ASSERT_TRUE(st.ok()) << st.status();
    ASSERT_TRUE(st->Run().ok());
  } else {
    auto db = ledger::PgDb::Open(url_);
    ASSERT_TRUE(db.ok()) << db.status();
    absl::Status st = (*db)->Run([](ledger::PgConn& c) {
      return c.Exec("UPDATE submissions SET digest = substring(digest from 1 for 31)").status();
    });
    ASSERT_TRUE(st.ok()) << st;
  }
  auto claimed = store_->ClaimBatch("fake", "w", kNow, kNow + absl::Minutes(1), 10);
  ASSERT_FALSE(claimed.ok());
  EXPECT_EQ(claimed.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(claimed.status().message(),
            "submissions.digest: a SHA-256 digest must be exactly 32 bytes, got 31");
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest, ANCHORD_ALL_BACKENDS);

// A database from before refs were keyed by their digest's first submissions row (refs.sub_id)
// is rebuilt at open: every file keeps its order and its digest, a duplicate sent afterwards
// still resolves to the original file, and a second open changes nothing.
TEST(SqliteStoreUpgradeTest, RefsKeyedByDigestAreCarriedOver) {
  const std::string dir = MakeTempDir();
  ASSERT_FALSE(dir.empty());
  const std::string path = dir + "/submitter.db";
  {
    auto store = OpenSqliteSubmitterStore(path);
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->InsertBatch({Item('a', "dir/a.txt"), Item('b', "dir/b.txt")}, kNow).ok());
  }
  {
    // The old table, with the old rows: two files of 'a' (the second a duplicate), one of 'b'
    // and one of a digest with no submissions row (unreachable, not carried over). The
    // submissions rows as that release wrote them: no files_kept column (its default, 0, when
    // added), every file in refs.
    auto db = ledger::SqliteDb::Open(path);
    ASSERT_TRUE(db.ok()) << db.status();
    ledger::Session session(**db);
    const std::string a(32, 'a'), b(32, 'b');
    ASSERT_TRUE(session
                    .Exec("UPDATE submissions SET files_kept = 0; "
                          "DROP TABLE refs; CREATE TABLE refs (id INTEGER PRIMARY KEY "
                          "AUTOINCREMENT, digest BLOB NOT NULL, job TEXT NOT NULL, source_path "
                          "TEXT NOT NULL, filename TEXT NOT NULL, size_bytes INTEGER NOT NULL, "
                          "mime_type TEXT NOT NULL DEFAULT '', created_at INTEGER NOT NULL, "
                          "UNIQUE (digest, job, source_path)); "
                          "INSERT INTO refs (digest, job, source_path, filename, size_bytes, "
                          "created_at) VALUES "
                          "(CAST(printf('%.32c', 'a') AS BLOB), 'default', 'dir/a.txt', 'a.txt', "
                          "10, 1), "
                          "(CAST(printf('%.32c', 'b') AS BLOB), 'default', 'dir/b.txt', 'b.txt', "
                          "10, 2), "
                          "(CAST(printf('%.32c', 'a') AS BLOB), 'other', 'dup/a2.txt', 'a2.txt', "
                          "10, 3), "
                          "(CAST(printf('%.32c', 'z') AS BLOB), 'default', 'gone.txt', 'gone.txt', "
                          "10, 4)")
                    .ok());
  }
  for (int open = 0; open < 2; ++open) {
    auto store = OpenSqliteSubmitterStore(path);
    ASSERT_TRUE(store.ok()) << store.status();
    auto refs = (*store)->Refs(testing::DigestOf('a'));
    ASSERT_TRUE(refs.ok()) << refs.status();
    ASSERT_EQ(refs->size(), 2u) << open;
    EXPECT_EQ((*refs)[0].source_path, "dir/a.txt");
    EXPECT_EQ((*refs)[1].source_path, "dup/a2.txt");
    EXPECT_EQ((*refs)[1].job, "other");
    auto b_refs = (*store)->Refs(testing::DigestOf('b'));
    ASSERT_TRUE(b_refs.ok());
    ASSERT_EQ(b_refs->size(), 1u);
    EXPECT_EQ((*b_refs)[0].filename, "b.txt");
    EXPECT_TRUE((*store)->Refs(testing::DigestOf('z'))->empty());
    auto jobs = (*store)->SummarizeJob("other");
    ASSERT_TRUE(jobs.ok());
    EXPECT_EQ(jobs->at(SubState::kQueued), 1);
  }
  auto store = OpenSqliteSubmitterStore(path);
  ASSERT_TRUE(store.ok());
  // A file sent again is not stored twice; a new file of a known digest is its duplicate.
  auto again = (*store)->InsertBatch(
      {Item('a', "dup/a2.txt", "fake", "other"), Item('a', "new/a3.txt")}, kNow);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE((*again)[0].known_before);
  EXPECT_EQ((*again)[0].duplicate_of, "dir/a.txt");
  EXPECT_EQ((*again)[1].duplicate_of, "dir/a.txt");
  EXPECT_EQ((*store)->Refs(testing::DigestOf('a'))->size(), 3u);
  EXPECT_EQ((*store)->GetByDigest(testing::DigestOf('a'))->size(), 1u);
  store->reset();
  std::filesystem::remove_all(dir);
}

// A database from before the digest-prefix index (submissions with UNIQUE (digest, provider)) is
// rebuilt at open without it: rows keep their ids and columns, the digest index serves every
// lookup, a digest sent again is still not stored twice, and a second open changes nothing.
TEST(SqliteStoreUpgradeTest, DigestUniqueIndexIsReplacedByThePrefixIndex) {
  const std::string dir = MakeTempDir();
  ASSERT_FALSE(dir.empty());
  const std::string path = dir + "/submitter.db";
  std::vector<int64_t> ids;
  {
    auto store = OpenSqliteSubmitterStore(path);
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)
                    ->InsertBatch({Item('a', "dir/a.txt"), Item('b', "dir/b.txt"),
                                   Item('a', "dir/a.txt", "other")},
                                  kNow)
                    .ok());
    for (char c : {'a', 'b'}) {
      auto rows = (*store)->GetByDigest(testing::DigestOf(c));
      ASSERT_TRUE(rows.ok()) << rows.status();
      for (const Submission& r : *rows) ids.push_back(r.id);
    }
  }
  ASSERT_EQ(ids.size(), 3u);
  auto schema_of = [&](const std::string& name) { return anchord::testing::StoredSql(path, name); };
  {
    // The table as an older release made it: the same columns with the UNIQUE constraint.
    ASSERT_EQ(schema_of("submissions").find("UNIQUE"), std::string::npos);
    ASSERT_TRUE(
        anchord::testing::AddTableClause(path, "submissions", "UNIQUE (digest, provider)").ok());
    ASSERT_NE(schema_of("submissions").find("UNIQUE (digest, provider)"), std::string::npos);
    ASSERT_TRUE(schema_of("submissions_by_digest").empty());
  }
  for (int open = 0; open < 2; ++open) {
    auto store = OpenSqliteSubmitterStore(path);
    ASSERT_TRUE(store.ok()) << store.status();
    EXPECT_EQ(schema_of("submissions").find("UNIQUE"), std::string::npos) << open;
    EXPECT_FALSE(schema_of("submissions_by_digest").empty()) << open;
    EXPECT_FALSE(schema_of("submissions_handoff").empty()) << open;
    std::vector<int64_t> after;
    for (char c : {'a', 'b'}) {
      auto rows = (*store)->GetByDigest(testing::DigestOf(c));
      ASSERT_TRUE(rows.ok()) << rows.status();
      for (const Submission& r : *rows) after.push_back(r.id);
    }
    EXPECT_EQ(after, ids) << open;
    // Sent again, with each provider: nothing new. A new provider for 'b': one new row.
    auto again = (*store)->InsertBatch(
        {Item('a', "dir/a.txt"), Item('a', "dir/a.txt", "other"), Item('b', "dir/b.txt")}, kNow);
    ASSERT_TRUE(again.ok()) << again.status();
    for (const InsertResult& r : *again) EXPECT_TRUE(r.known_before);
    EXPECT_EQ((*store)->GetByDigest(testing::DigestOf('a'))->size(), 2u);
    EXPECT_EQ((*store)->GetByDigest(testing::DigestOf('b'))->size(), 1u);
  }
  auto store = OpenSqliteSubmitterStore(path);
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE((*store)->InsertBatch({Item('b', "dir/b.txt", "other")}, kNow).ok());
  auto b_rows = (*store)->GetByDigest(testing::DigestOf('b'));
  ASSERT_TRUE(b_rows.ok());
  ASSERT_EQ(b_rows->size(), 2u);
  EXPECT_GT((*b_rows)[1].id, ids.back());
  store->reset();
  std::filesystem::remove_all(dir);
}

// The backlog (read every 200 ms for backpressure) is counted from indexes alone: the rows sent
// on their own from an index of theirs, the waiting leaves from the batcher's, the sealed ones
// through their batches. The index an older release kept for it, which every leaf entered at
// intake and left at its seal, is dropped at open.
TEST(SqliteStoreUpgradeTest, BacklogIsCountedFromIndexesAndTheOldIndexIsDropped) {
  const std::string dir = MakeTempDir();
  ASSERT_FALSE(dir.empty());
  const std::string path = dir + "/submitter.db";
  auto schema_of = [&](const std::string& name) { return anchord::testing::StoredSql(path, name); };
  {
    auto store = OpenSqliteSubmitterStore(path);
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->InsertBatch({Item('a', "dir/a.txt")}, kNow).ok());
  }
  // The index as an older release made it.
  ASSERT_TRUE(anchord::testing::SqliteExec(path,
                                           "CREATE INDEX submissions_backlog_rows ON submissions "
                                           "(state) WHERE state IN (0, 1) AND (mode <> 1 OR "
                                           "batch_id = 0)")
                  .ok());
  ASSERT_FALSE(schema_of("submissions_backlog_rows").empty());
  auto store = OpenSqliteSubmitterStore(path);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_TRUE(schema_of("submissions_backlog_rows").empty());
  EXPECT_FALSE(schema_of("submissions_backlog_files").empty());
  auto backlog = (*store)->CountBacklog();
  ASSERT_TRUE(backlog.ok()) << backlog.status();
  EXPECT_EQ(*backlog, 1);

  const std::string plan = anchord::testing::SqliteQueryPlan(path, kSqliteBacklogQuery);
  EXPECT_NE(plan.find("SEARCH submissions USING INDEX submissions_backlog_files (state=?)"),
            std::string::npos)
      << plan;
  EXPECT_NE(plan.find("SCAN submissions USING INDEX submissions_waiting"), std::string::npos)
      << plan;
  // No subquery reads the table itself.
  EXPECT_EQ(plan.find("SCAN submissions\n"), std::string::npos) << plan;
  store->reset();
  std::filesystem::remove_all(dir);
}

// Replica behaviour that only a shared database has.
class PgReplicaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::anchord::testing::PgServer* server = ::anchord::testing::PgServer::Shared();
    ASSERT_NE(server, nullptr) << "PostgreSQL must be installed (Debian package postgresql)";
    auto url = server->CreateDatabase();
    ASSERT_TRUE(url.ok()) << url.status();
    url_ = *url;
  }
  std::unique_ptr<SubmitterStore> Replica(PgSubmitterOptions options) {
    auto db = ledger::PgDb::Open(url_);
    EXPECT_TRUE(db.ok()) << db.status();
    if (!db.ok()) return nullptr;
    auto s = OpenPgSubmitterStore(std::shared_ptr<ledger::PgDb>(std::move(*db)), options);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }
  // Replicas without row leases on the engine's claims, hand-off leases of `lease`.
  static PgSubmitterOptions HandoffOnly(FakeClock* clock, absl::Duration lease) {
    PgSubmitterOptions opts;
    opts.lease_term = absl::ZeroDuration();
    opts.handoff_lease = lease;
    opts.clock = clock;
    return opts;
  }
  // `n` new digests stored by `store` and sent to the provider (SUBMITTED: owed to the poller).
  static void StoreSubmitted(SubmitterStore* store, int n, absl::Time now) {
    std::vector<NewItem> items;
    for (int i = 0; i < n; ++i) {
      items.push_back(Item(static_cast<char>(1 + i), "f" + std::to_string(i)));
    }
    ASSERT_TRUE(store->InsertBatch(items, now).ok());
    auto rows = store->ClaimBatch("fake", "submitter", now, now + absl::Minutes(5), n);
    ASSERT_TRUE(rows.ok());
    ASSERT_EQ(rows->size(), static_cast<size_t>(n));
    for (const Submission& r : *rows) {
      ASSERT_TRUE(store->MarkSubmitted(r.id, StoredRecord{}, "req", now).ok());
    }
  }
  // Row `id`'s lease end as stored (Unix ms; 0 when free, -1 when unreadable).
  int64_t LeaseUntilMs(int64_t id) {
    if (probe_ == nullptr) {
      auto db = ledger::PgDb::Open(url_);
      EXPECT_TRUE(db.ok()) << db.status();
      if (!db.ok()) return -1;
      probe_ = std::move(*db);
    }
    int64_t until = -1;
    absl::Status st = probe_->Run([&](ledger::PgConn& c) -> absl::Status {
      auto r =
          c.Exec("SELECT lease_until FROM submissions WHERE id = $1", ledger::PgParams().Add(id));
      if (!r.ok()) return r.status();
      if (r->rows() == 1) until = r->Int(0, 0);
      return absl::OkStatus();
    });
    EXPECT_TRUE(st.ok()) << st;
    return until;
  }
  std::string url_;
  std::unique_ptr<ledger::PgDb> probe_;
};

// A replica that dies after MarkPrepared (between sending the create and recording its answer)
// stops renewing its lease; once the lease runs out another replica claims the row and gets the
// stored body and Idempotency-Key to re-send. While the first replica lives, its heartbeat keeps
// the row away from others, however long its send takes.
// Time is a fake clock (the store computes lease ends from it); the heartbeat thread still beats
// every `heartbeat` of real time, so each step waits until a beat has carried the lease past the
// new time.
TEST_F(PgReplicaTest, DeadReplicasRowIsResentWithTheStoredRequest) {
  FakeClock clock;
  PgSubmitterOptions opts;
  opts.lease_term = absl::Seconds(2);
  opts.heartbeat = absl::Milliseconds(50);
  opts.clock = &clock;
  auto a = Replica(opts);
  auto b = Replica(opts);
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->InsertBatch({Item('a', "a.txt")}, clock.Now()).ok());
  auto claimed = a->Claim("fake", "submitter", clock.Now(), clock.Now() + absl::Minutes(30));
  ASSERT_TRUE(claimed.ok() && claimed->has_value());
  const int64_t id = (*claimed)->id;
  ASSERT_TRUE(a->MarkPrepared(id, "idem-key-1", "exact body", clock.Now()).ok());
  // Alive for two lease terms, in quarter terms: never claimable by b.
  for (int i = 0; i < 8; ++i) {
    clock.Advance(absl::Milliseconds(500));
    const absl::Time now = clock.Now();
    ASSERT_TRUE(::anchord::testing::WaitUntil(
        [&] { return LeaseUntilMs(id) >= absl::ToUnixMillis(now + opts.lease_term); },
        absl::Seconds(10)))
        << "no heartbeat renewed the lease after " << (i + 1) * 500 << " ms";
    auto other = b->Claim("fake", "submitter", now, now + absl::Minutes(30));
    ASSERT_TRUE(other.ok()) << other.status();
    ASSERT_FALSE(other->has_value())
        << "a live replica's row was taken after " << (i + 1) * 500 << " ms";
  }
  a.reset();  // dies: no release, no more heartbeats
  // The lease of the last beat still holds until its end, and not a moment longer.
  clock.Advance(opts.lease_term - absl::Milliseconds(1));
  auto early = b->Claim("fake", "submitter", clock.Now(), clock.Now() + absl::Minutes(30));
  ASSERT_TRUE(early.ok()) << early.status();
  ASSERT_FALSE(early->has_value()) << "the dead replica's lease ended before its term";
  clock.Advance(absl::Milliseconds(1));
  auto taken = b->Claim("fake", "submitter", clock.Now(), clock.Now() + absl::Minutes(30));
  ASSERT_TRUE(taken.ok()) << taken.status();
  ASSERT_TRUE(taken->has_value()) << "the dead replica's lease did not end with its term";
  EXPECT_EQ((*taken)->state, SubState::kSubmitting);
  EXPECT_EQ((*taken)->idempotency_key, "idem-key-1");
  EXPECT_EQ((*taken)->body, "exact body");
}

// Two replicas handing off at once offer each row once; a row not acknowledged in time is
// offered again.
TEST_F(PgReplicaTest, ReplicasSplitTheHandoff) {
  FakeClock clock;
  const PgSubmitterOptions opts = HandoffOnly(&clock, absl::Seconds(1));
  auto a = Replica(opts);
  auto b = Replica(opts);
  ASSERT_TRUE(a && b);
  StoreSubmitted(a.get(), 10, clock.Now());
  auto first = a->PendingHandoff(6);
  auto second = b->PendingHandoff(100);
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_EQ(first->size(), 6u);
  EXPECT_EQ(second->size(), 4u);
  std::set<int64_t> ids;
  for (const auto* part : {&*first, &*second}) {
    for (const Submission& r : *part) ids.insert(r.id);
  }
  EXPECT_EQ(ids.size(), 10u);
  // b acknowledges its rows; a's are not acknowledged and come back after the lease.
  for (const Submission& r : *second) ASSERT_TRUE(b->MarkHandedOff(r.id, r.change_seq).ok());
  // Until a's hand-off lease ends, nobody is offered a's rows again.
  clock.Advance(opts.handoff_lease - absl::Milliseconds(1));
  auto early = b->PendingHandoff(100);
  ASSERT_TRUE(early.ok()) << early.status();
  EXPECT_TRUE(early->empty()) << early->size() << " rows offered again while a holds them";
  clock.Advance(absl::Milliseconds(1));
  auto again = b->PendingHandoff(100);
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_EQ(again->size(), 6u);
  for (const Submission& r : *again) EXPECT_EQ(ids.count(r.id), 1u);
}

// A hand-off asking for its next window with rows in flight claims only the rows it returns:
// asking for more to make up for the rows in flight (which its lease already hides) left the
// extra rows claimed and unsent until their lease ran out, and nobody handed them off meanwhile.
TEST_F(PgReplicaTest, AHandoffWindowClaimsOnlyTheRowsItReturns) {
  FakeClock clock;
  const PgSubmitterOptions opts = HandoffOnly(&clock, absl::Seconds(30));
  auto a = Replica(opts);
  auto b = Replica(opts);
  ASSERT_TRUE(a && b);
  StoreSubmitted(a.get(), 12, clock.Now());
  auto first = a->PendingHandoffExcept(3, {});
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->size(), 3u);
  RowIds in_flight;
  for (const Submission& r : *first) in_flight.insert(r.id);
  auto next = a->PendingHandoffExcept(3, in_flight);
  ASSERT_TRUE(next.ok()) << next.status();
  ASSERT_EQ(next->size(), 3u);
  for (const Submission& r : *next) EXPECT_EQ(in_flight.count(r.id), 0u);
  // The other six are free for any replica now, not in 30 s.
  auto others = b->PendingHandoff(100);
  ASSERT_TRUE(others.ok()) << others.status();
  EXPECT_EQ(others->size(), 6u);
}

// At start a replica frees only its own leases (Engine::Init calls ReleaseAllLeases): the rows
// other live replicas hold stay theirs.
TEST_F(PgReplicaTest, ReleaseAllLeasesKeepsOtherReplicasLeases) {
  PgSubmitterOptions opts;
  opts.lease_term = absl::ZeroDuration();
  auto a = Replica(opts);
  auto b = Replica(opts);
  ASSERT_TRUE(a && b);
  const absl::Time now = absl::Now();
  ASSERT_TRUE(a->InsertBatch({Item('a', "a"), Item('b', "b")}, now).ok());
  auto held = a->Claim("fake", "submitter", now, now + absl::Minutes(5));
  ASSERT_TRUE(held.ok() && held->has_value());
  auto mine = b->Claim("fake", "submitter", now, now + absl::Minutes(5));
  ASSERT_TRUE(mine.ok() && mine->has_value());
  ASSERT_TRUE(b->ReleaseAllLeases().ok());
  // b's own row is free again; a's is not.
  auto c = Replica(opts);
  ASSERT_TRUE(c);
  auto again = c->ClaimBatch("fake", "submitter", now, now + absl::Minutes(5), 10);
  ASSERT_TRUE(again.ok());
  ASSERT_EQ(again->size(), 1u);
  EXPECT_EQ((*again)[0].id, (*mine)->id);
  // ReleaseLease of a row another replica holds changes nothing.
  ASSERT_TRUE(b->ReleaseLease((*held)->id).ok());
  auto none = b->ClaimBatch("fake", "submitter", now, now + absl::Minutes(5), 10);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

}  // namespace
}  // namespace anchord::submitter
