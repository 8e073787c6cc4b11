// The store's intake (SubmitterStore::InsertBatch) answers the same on SQLite and PostgreSQL:
// every test runs on both backends with the same expectations. Batches repeat digests within
// themselves, meet digests of earlier batches, carry several providers, and two stores (replicas
// on PostgreSQL) insert overlapping batches at once.
#include <gtest/gtest.h>

#include <latch>
#include <map>
#include <set>
#include <thread>

#include "libs/ledger/migrate.h"
#include "libs/ledger/pg_db.h"
#include "services/submitter/pg_submitter_store.h"
#include "services/submitter/submitter_store.h"
#include "tests/submitter/backend_store.h"
#include "tests/submitter/test_util.h"
#include "tests/support/backend.h"
#include "tests/support/pg_server.h"

namespace anchord::submitter {
namespace {

using ::anchord::testing::Backend;
using testing::DigestOf;
using testing::Item;

const absl::Time kNow = absl::FromUnixSeconds(1'700'000'000);

// Digest number `n` (any of 2^32).
Digest DigestNo(uint32_t n) {
  Digest::Array a{};
  a.fill(0x5a);
  for (int k = 0; k < 4; ++k) a[k] = static_cast<uint8_t>(n >> (8 * k));
  return Digest(a);
}

NewItem ItemOf(const Digest& d, const std::string& path, std::vector<std::string> providers) {
  NewItem it = Item('x', path);
  it.digest = d;
  it.providers = std::move(providers);
  return it;
}

class IntakeStoreTest : public testing::SubmitterBackendTest {
 protected:
  std::vector<InsertResult> Insert(const std::vector<NewItem>& items) {
    auto r = store_->InsertBatch(items, kNow);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return {};
    EXPECT_EQ(r->size(), items.size());
    return *r;
  }
  std::map<std::string, Submission> RowsByProvider(const Digest& d) {
    std::map<std::string, Submission> out;
    auto rows = store_->GetByDigest(d);
    EXPECT_TRUE(rows.ok()) << rows.status();
    if (rows.ok()) {
      for (Submission& s : *rows) out[s.provider] = std::move(s);
    }
    return out;
  }
  std::vector<std::string> RefPaths(const Digest& d) {
    std::vector<std::string> out;
    auto refs = store_->Refs(d);
    EXPECT_TRUE(refs.ok()) << refs.status();
    if (refs.ok()) {
      for (const FileRef& f : *refs) out.push_back(f.job + ":" + f.source_path);
    }
    return out;
  }
};

// Items repeating a digest of the same batch behave as if sent one after the other: the first is
// new, the others known; a different file is a duplicate of the first and bumps the digest's row
// once per new file; the same file again stores nothing.
TEST_P(IntakeStoreTest, DuplicatesWithinOneBatch) {
  NewItem other_job = Item('a', "dir/a2.txt", "fake", "other");
  auto r = Insert({Item('a', "dir/a1.txt"), Item('a', "dir/a2.txt"), Item('a', "dir/a1.txt"),
                   Item('b', "b.txt"), other_job, Item('b', "b.txt")});
  ASSERT_EQ(r.size(), 6u);
  EXPECT_FALSE(r[0].known_before);
  EXPECT_EQ(r[0].duplicate_of, "");
  EXPECT_TRUE(r[1].known_before);
  EXPECT_EQ(r[1].duplicate_of, "dir/a1.txt");
  EXPECT_TRUE(r[2].known_before);
  EXPECT_EQ(r[2].duplicate_of, "");
  EXPECT_FALSE(r[3].known_before);
  EXPECT_TRUE(r[4].known_before);
  EXPECT_EQ(r[4].duplicate_of, "dir/a1.txt");  // dir/a2.txt of another job: another file
  EXPECT_TRUE(r[5].known_before);
  EXPECT_EQ(r[5].duplicate_of, "");
  for (const InsertResult& res : r) EXPECT_EQ(res.state, SubState::kQueued);

  EXPECT_EQ(
      RefPaths(DigestOf('a')),
      (std::vector<std::string>{"default:dir/a1.txt", "default:dir/a2.txt", "other:dir/a2.txt"}));
  EXPECT_EQ(RefPaths(DigestOf('b')), (std::vector<std::string>{"default:b.txt"}));
  auto a = RowsByProvider(DigestOf('a'));
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a["fake"].file.source_path, "dir/a1.txt");
  EXPECT_EQ(a["fake"].change_seq, 3);  // created, then two new files
  auto b = RowsByProvider(DigestOf('b'));
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b["fake"].change_seq, 1);
  auto backlog = store_->CountBacklog();
  ASSERT_TRUE(backlog.ok());
  EXPECT_EQ(*backlog, 2);
}

// A digest stored by an earlier batch: its state as it stands (until this batch adds a row of
// its own, which is QUEUED), its original file, and a bump of its existing rows per new file.
TEST_P(IntakeStoreTest, DigestsKnownFromEarlierBatches) {
  Insert({Item('a', "a1.txt"), Item('c', "c.txt")});
  auto claimed = store_->Claim("fake", "w", kNow, kNow + absl::Minutes(1));
  ASSERT_TRUE(claimed.ok() && claimed->has_value());
  ASSERT_EQ((*claimed)->digest, DigestOf('a'));
  StoredRecord rec;
  rec.proof_id = "proof-a";
  ASSERT_TRUE(store_->MarkSubmitted((*claimed)->id, rec, "req-a", kNow).ok());
  const int64_t seq_before = RowsByProvider(DigestOf('a'))["fake"].change_seq;

  auto r = Insert({Item('a', "a1.txt"), Item('a', "a2.txt"), Item('a', "a3.txt", "other"),
                   Item('a', "a1.txt"), Item('c', "c2.txt"), Item('d', "d.txt")});
  ASSERT_EQ(r.size(), 6u);
  EXPECT_TRUE(r[0].known_before);
  EXPECT_EQ(r[0].duplicate_of, "");
  EXPECT_EQ(r[0].state, SubState::kSubmitted);
  EXPECT_TRUE(r[1].known_before);
  EXPECT_EQ(r[1].duplicate_of, "a1.txt");
  EXPECT_EQ(r[1].state, SubState::kSubmitted);
  // A new provider's row: QUEUED, for this item and every later one of the digest.
  EXPECT_TRUE(r[2].known_before);
  EXPECT_EQ(r[2].duplicate_of, "a1.txt");
  EXPECT_EQ(r[2].state, SubState::kQueued);
  EXPECT_EQ(r[3].state, SubState::kQueued);
  EXPECT_EQ(r[3].duplicate_of, "");
  EXPECT_TRUE(r[4].known_before);
  EXPECT_EQ(r[4].duplicate_of, "c.txt");
  EXPECT_EQ(r[4].state, SubState::kQueued);
  EXPECT_FALSE(r[5].known_before);

  auto a = RowsByProvider(DigestOf('a'));
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a["fake"].state, SubState::kSubmitted);
  EXPECT_EQ(a["fake"].change_seq, seq_before + 2);  // a2 and a3 are new files
  EXPECT_EQ(a["other"].state, SubState::kQueued);
  EXPECT_EQ(a["other"].file.source_path, "a1.txt");  // the original's file, not a3's
  EXPECT_EQ(a["other"].change_seq, 2);               // created with a3, which bumps it
  EXPECT_EQ(RowsByProvider(DigestOf('c'))["fake"].change_seq, 2);
  EXPECT_EQ(RefPaths(DigestOf('a')).size(), 3u);

  // The same batch again changes nothing and answers from what is stored.
  auto again = Insert({Item('a', "a2.txt"), Item('d', "d.txt")});
  ASSERT_EQ(again.size(), 2u);
  EXPECT_EQ(again[0].duplicate_of, "a1.txt");
  EXPECT_EQ(again[0].state, SubState::kQueued);
  EXPECT_TRUE(again[1].known_before);
  EXPECT_EQ(RowsByProvider(DigestOf('a'))["fake"].change_seq, seq_before + 2);
}

// Several providers per item: a row each, the original's file on all of them; an item naming a
// provider an earlier item of the batch already queued adds only the missing ones.
TEST_P(IntakeStoreTest, SeveralProvidersPerItem) {
  auto r = Insert({ItemOf(DigestOf('a'), "a.txt", {"fake", "other"}),
                   ItemOf(DigestOf('a'), "a-copy.txt", {"other", "third"}),
                   ItemOf(DigestOf('b'), "b.txt", {"third", "fake"})});
  ASSERT_EQ(r.size(), 3u);
  EXPECT_FALSE(r[0].known_before);
  EXPECT_TRUE(r[1].known_before);
  EXPECT_EQ(r[1].duplicate_of, "a.txt");
  EXPECT_FALSE(r[2].known_before);
  auto a = RowsByProvider(DigestOf('a'));
  ASSERT_EQ(a.size(), 3u);
  for (auto& [provider, row] : a) {
    EXPECT_EQ(row.file.source_path, "a.txt") << provider;
    // Bumped by a-copy.txt, a new file (third's row is created by that same item, then bumped).
    EXPECT_EQ(row.change_seq, 2) << provider;
  }
  EXPECT_EQ(RowsByProvider(DigestOf('b')).size(), 2u);
  auto counts = store_->CountByProviderState();
  ASSERT_TRUE(counts.ok());
  std::map<std::string, int64_t> per_provider;
  for (const BacklogCount& c : *counts) per_provider[c.provider] += c.count;
  EXPECT_EQ(per_provider,
            (std::map<std::string, int64_t>{{"fake", 2}, {"other", 1}, {"third", 2}}));

  // Later: a known digest with one provider more.
  auto more = Insert({ItemOf(DigestOf('b'), "b.txt", {"fake", "other"})});
  ASSERT_EQ(more.size(), 1u);
  EXPECT_TRUE(more[0].known_before);
  EXPECT_EQ(more[0].duplicate_of, "");
  EXPECT_EQ(more[0].state, SubState::kQueued);
  auto b = RowsByProvider(DigestOf('b'));
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b["other"].change_seq, 1);  // no new file: nothing to bump
  EXPECT_EQ(b["fake"].change_seq, 1);
}

// A batch of many new digests (SQLite writes them several rows to a statement): rows in the
// order of the items (ids ascending), every digest's rows and files where a batch of a few puts
// them, repeats within the batch answered as known, and the next batch's rows after all of them.
TEST_P(IntakeStoreTest, ManyNewDigestsInOneBatch) {
  std::vector<NewItem> items;
  for (uint32_t i = 0; i < 50; ++i) {
    std::vector<std::string> providers = {"fake"};
    if (i % 7 == 0) providers.push_back("other");
    items.push_back(ItemOf(DigestNo(i), "f" + std::to_string(i), providers));
  }
  items.insert(items.begin() + 20, ItemOf(DigestNo(3), "f3-copy", {"fake"}));
  items.insert(items.begin() + 40, ItemOf(DigestNo(25), "f25", {"fake"}));
  auto r = Insert(items);
  ASSERT_EQ(r.size(), 52u);
  for (size_t k = 0; k < r.size(); ++k) {
    SCOPED_TRACE(k);
    EXPECT_EQ(r[k].known_before, k == 20 || k == 40);
    EXPECT_EQ(r[k].duplicate_of, k == 20 ? "f3" : "");
    EXPECT_EQ(r[k].state, SubState::kQueued);
  }
  int64_t last_id = 0;
  int64_t rows = 0;
  for (uint32_t i = 0; i < 50; ++i) {
    SCOPED_TRACE(i);
    auto by_provider = RowsByProvider(DigestNo(i));
    ASSERT_EQ(by_provider.size(), i % 7 == 0 ? 2u : 1u);
    const Submission& fake = by_provider["fake"];
    EXPECT_GT(fake.id, last_id);
    last_id = fake.id;
    EXPECT_EQ(fake.file.source_path, "f" + std::to_string(i));
    EXPECT_EQ(fake.change_seq, i == 3 ? 2 : 1);  // f3-copy is a new file of digest 3
    if (i % 7 == 0) {
      EXPECT_EQ(by_provider["other"].id, fake.id + 1);
      last_id = by_provider["other"].id;
    }
    rows += static_cast<int64_t>(by_provider.size());
    std::vector<std::string> want = {"default:f" + std::to_string(i)};
    if (i == 3) want.push_back("default:f3-copy");
    EXPECT_EQ(RefPaths(DigestNo(i)), want);
  }
  auto backlog = store_->CountBacklog();
  ASSERT_TRUE(backlog.ok());
  EXPECT_EQ(*backlog, rows);
  Insert({ItemOf(DigestNo(1000), "later", {"fake"})});
  EXPECT_GT(RowsByProvider(DigestNo(1000))["fake"].id, last_id);
}

// Digests an earlier batch stored are known wherever they fall in a batch of many (the SQLite
// intake reads their ids 16 digests to a statement before it writes: the first, a middle and the
// last, partly filled, statement here), and a digest new to the store stays new.
TEST_P(IntakeStoreTest, DigestsOfEarlierBatchesAreKnownAnywhereInALargeBatch) {
  const std::set<uint32_t> before = {0, 15, 16, 31, 40};
  std::vector<NewItem> first;
  for (uint32_t n : before)
    first.push_back(ItemOf(DigestNo(n), "first" + std::to_string(n), {"fake"}));
  ASSERT_EQ(Insert(first).size(), before.size());
  std::vector<NewItem> items;
  for (uint32_t n = 0; n < 45; ++n)
    items.push_back(ItemOf(DigestNo(n), "p" + std::to_string(n), {"fake"}));
  auto r = Insert(items);
  ASSERT_EQ(r.size(), 45u);
  for (uint32_t n = 0; n < 45; ++n) {
    SCOPED_TRACE(n);
    const bool known = before.count(n) > 0;
    EXPECT_EQ(r[n].known_before, known);
    EXPECT_EQ(r[n].duplicate_of, known ? "first" + std::to_string(n) : "");
    ASSERT_EQ(RowsByProvider(DigestNo(n)).size(), 1u);
    std::vector<std::string> want;
    if (known) want.push_back("default:first" + std::to_string(n));
    want.push_back("default:p" + std::to_string(n));
    EXPECT_EQ(RefPaths(DigestNo(n)), want);
  }
}

// The hand-off's RefsOfRows gives each row its digest's files in their order (the original
// first), whether the row is the digest's first (its files hang off it) or a later provider's.
TEST_P(IntakeStoreTest, RefsOfRowsFollowEachRowsDigest) {
  // Later files sort before the original by path, so an answer in index order would be wrong.
  Insert({ItemOf(DigestOf('a'), "z.txt", {"fake", "other"}),
          ItemOf(DigestOf('b'), "b.txt", {"fake"})});
  Insert({ItemOf(DigestOf('a'), "m.txt", {"fake"}), ItemOf(DigestOf('c'), "c.txt", {"third"})});
  Insert({ItemOf(DigestOf('a'), "c.txt", {"other"})});
  std::vector<Submission> rows;
  for (char c : {'c', 'a', 'b'}) {
    auto got = store_->GetByDigest(DigestOf(c));
    ASSERT_TRUE(got.ok()) << got.status();
    for (Submission& s : *got) rows.push_back(std::move(s));
  }
  ASSERT_EQ(rows.size(), 4u);
  auto refs = store_->RefsOfRows(rows);
  ASSERT_TRUE(refs.ok()) << refs.status();
  ASSERT_EQ(refs->size(), rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    std::vector<std::string> paths;
    for (const FileRef& f : (*refs)[i]) paths.push_back(f.job + ":" + f.source_path);
    EXPECT_EQ(paths, RefPaths(rows[i].digest)) << rows[i].provider;
  }
  std::vector<std::string> a_paths;
  for (const FileRef& f : (*refs)[1]) a_paths.push_back(f.source_path);
  EXPECT_EQ(a_paths, (std::vector<std::string>{"z.txt", "m.txt", "c.txt"}));
  EXPECT_EQ((*refs)[2].size(), 3u);  // digest a's second row (other) finds the same files
}

// Two stores (replicas sharing the database on PostgreSQL) insert overlapping batches at the
// same moment, round after round. Each shared digest is stored once: exactly one of the two
// answers says new, the other says known with the winner's file as the original, and every row
// of the digest carries the winner's file.
TEST_P(IntakeStoreTest, OverlappingBatchesFromTwoStoresAtOnce) {
  auto other = Open();
  ASSERT_TRUE(other.ok()) << other.status();
  SubmitterStore* stores[2] = {store_.get(), other->get()};
  constexpr int kRounds = 6, kPerBatch = 300, kOverlap = 150;
  for (int round = 0; round < kRounds; ++round) {
    // Store 0 takes digests [0, 300), store 1 [150, 450) of the round, in the opposite order,
    // store 1 with a second provider.
    std::vector<NewItem> batch[2];
    for (int k = 0; k < kPerBatch; ++k) {
      const uint32_t base = static_cast<uint32_t>(round * 1000);
      batch[0].push_back(ItemOf(DigestNo(base + k), "r0/" + std::to_string(k), {"fake"}));
      const int j = kPerBatch - 1 - k + (kPerBatch - kOverlap);
      batch[1].push_back(ItemOf(DigestNo(base + j), "r1/" + std::to_string(j), {"fake", "other"}));
    }
    std::vector<InsertResult> results[2];
    absl::Status status[2];
    {
      std::latch start(2);
      std::vector<std::thread> threads;
      for (int s = 0; s < 2; ++s) {
        threads.emplace_back([&, s] {
          start.arrive_and_wait();  // both insert at the same moment
          auto r = stores[s]->InsertBatch(batch[s], kNow);
          status[s] = r.status();
          if (r.ok()) results[s] = std::move(*r);
        });
      }
      for (auto& t : threads) t.join();
    }
    ASSERT_TRUE(status[0].ok()) << status[0];
    ASSERT_TRUE(status[1].ok()) << status[1];
    ASSERT_EQ(results[0].size(), static_cast<size_t>(kPerBatch));
    ASSERT_EQ(results[1].size(), static_cast<size_t>(kPerBatch));
    for (int k = 0; k < kPerBatch + kPerBatch - kOverlap; ++k) {
      const Digest d = DigestNo(static_cast<uint32_t>(round * 1000 + k));
      const bool in0 = k < kPerBatch, in1 = k >= kPerBatch - kOverlap;
      const InsertResult* r0 = in0 ? &results[0][k] : nullptr;
      const InsertResult* r1 =
          in1 ? &results[1][kPerBatch - 1 - (k - (kPerBatch - kOverlap))] : nullptr;
      std::string winner;
      if (in0 && in1) {
        ASSERT_NE(r0->known_before, r1->known_before) << "round " << round << " digest " << k;
        winner = r0->known_before ? "r1/" : "r0/";
        const InsertResult* loser = r0->known_before ? r0 : r1;
        EXPECT_EQ(loser->duplicate_of, winner + std::to_string(k));
      } else {
        const InsertResult* only = in0 ? r0 : r1;
        EXPECT_FALSE(only->known_before) << k;
        winner = in0 ? "r0/" : "r1/";
      }
      const std::string original = winner + std::to_string(k);
      auto refs = RefPaths(d);
      ASSERT_EQ(refs.size(), in0 && in1 ? 2u : 1u) << k;
      EXPECT_EQ(refs[0], "default:" + original) << k;
      auto rows = RowsByProvider(d);
      ASSERT_EQ(rows.size(), in1 ? 2u : 1u) << k;
      for (auto& [provider, row] : rows) {
        EXPECT_EQ(row.file.source_path, original) << k << " " << provider;
        // A shared digest's second file bumps every row there is when it comes, including a row
        // its own item creates.
        EXPECT_EQ(row.change_seq, in0 && in1 ? 2 : 1) << k << " " << provider;
      }
    }
  }
}

// Stored Merkle leaves wait for a batch: they are never ready to send, so a worker neither claims
// them nor wakes for them (NextAttemptAt), however many there are.
TEST_P(IntakeStoreTest, LeavesAreNeverReadyToSend) {
  NewItem leaf = Item('l', "leaf.txt");
  leaf.merkle = true;
  Insert({leaf});
  auto next = store_->NextAttemptAt("fake");
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_FALSE(next->has_value());
  auto claimed = store_->ClaimBatch("fake", "w", kNow, kNow + absl::Minutes(1), 10);
  ASSERT_TRUE(claimed.ok());
  EXPECT_TRUE(claimed->empty());
  Insert({Item('f', "file.txt")});
  next = store_->NextAttemptAt("fake");
  ASSERT_TRUE(next.ok() && next->has_value());
  EXPECT_EQ(**next, kNow);
  auto waiting = store_->UnbatchedWaiting("fake");
  ASSERT_TRUE(waiting.ok());
  EXPECT_EQ(waiting->count, 1);
}

INSTANTIATE_TEST_SUITE_P(Backends, IntakeStoreTest, ANCHORD_ALL_BACKENDS);

// A PostgreSQL database from before refs had a first ref (schema version 3) is upgraded at open:
// each digest's lowest ref becomes its original, so a file sent afterwards answers as before.
TEST(PgIntakeUpgradeTest, OldRefsKeepTheirOriginal) {
  auto url = ::anchord::testing::CreateSharedDatabase();
  ASSERT_TRUE(url.ok()) << url.status();
  auto db = ledger::PgDb::Open(*url);
  ASSERT_TRUE(db.ok()) << db.status();
  std::shared_ptr<ledger::PgDb> shared(std::move(*db));
  const std::vector<ledger::Migration>& all = SubmitterMigrations();
  ASSERT_GE(all.size(), 4u);
  ASSERT_TRUE(ledger::Migrate(*shared, "submitter",
                              std::vector<ledger::Migration>(all.begin(), all.begin() + 3))
                  .ok());
  // Rows as the version-3 intake wrote them: 'a' with two files, 'b' with one.
  ASSERT_TRUE(shared
                  ->Run([](ledger::PgConn& c) {
                    return c.ExecScript(
                        "INSERT INTO submissions (digest, provider, job, filename, size_bytes, "
                        "source_path, state, created_at, updated_at) VALUES "
                        "(decode(repeat('61', 32), 'hex'), 'fake', 'default', 'a1.txt', 10, "
                        "'dir/a1.txt', 2, 1, 1), "
                        "(decode(repeat('62', 32), 'hex'), 'fake', 'default', 'b.txt', 10, "
                        "'b.txt', 0, 1, 1); "
                        "INSERT INTO refs (digest, job, source_path, filename, size_bytes, "
                        "created_at) VALUES "
                        "(decode(repeat('61', 32), 'hex'), 'default', 'dir/a1.txt', 'a1.txt', 10, "
                        "1), "
                        "(decode(repeat('62', 32), 'hex'), 'default', 'b.txt', 'b.txt', 10, 1), "
                        "(decode(repeat('61', 32), 'hex'), 'default', 'dir/a0.txt', 'a0.txt', 10, "
                        "2)");
                  })
                  .ok());
  PgSubmitterOptions o;
  o.lease_term = absl::ZeroDuration();
  auto store = OpenPgSubmitterStore(shared, o);
  ASSERT_TRUE(store.ok()) << store.status();
  auto version = ledger::SchemaVersion(*shared, "submitter");
  ASSERT_TRUE(version.ok());
  EXPECT_EQ(*version, static_cast<int>(all.size()));
  auto r = (*store)->InsertBatch(
      {Item('a', "dir/a0.txt"), Item('a', "dir/a9.txt"), Item('b', "b.txt"), Item('c', "c.txt")},
      kNow);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 4u);
  EXPECT_TRUE((*r)[0].known_before);
  EXPECT_EQ((*r)[0].duplicate_of, "dir/a1.txt");
  EXPECT_EQ((*r)[0].state, SubState::kSubmitted);
  EXPECT_EQ((*r)[1].duplicate_of, "dir/a1.txt");
  EXPECT_TRUE((*r)[2].known_before);
  EXPECT_EQ((*r)[2].duplicate_of, "");
  EXPECT_FALSE((*r)[3].known_before);
  auto refs = (*store)->Refs(DigestOf('a'));
  ASSERT_TRUE(refs.ok());
  ASSERT_EQ(refs->size(), 3u);
  EXPECT_EQ((*refs)[0].source_path, "dir/a1.txt");
  EXPECT_EQ((*refs)[2].source_path, "dir/a9.txt");
}

}  // namespace
}  // namespace anchord::submitter
