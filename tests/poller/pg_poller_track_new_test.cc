// The PostgreSQL store's set-based Track path (TrackNewIn) against its row-at-a-time path
// (TrackIn): the same calls on two databases prepared alike give the same outcomes and the same
// rows, for calls of new proofs (the set-based path) and for calls it hands back.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "libs/ledger/pg_db.h"
#include "services/poller/pg_poller_store.h"
#include "services/poller/pg_poller_track.h"
#include "services/poller/poller_store.h"
#include "tests/poller/test_util.h"
#include "tests/support/pg_server.h"
#include "tests/testing/wait.h"

namespace anchord::poller {
namespace {

using testing::Digest;
using testing::Pending;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

TrackInput Root(int n, int leaves, anchord::v1::DigestState state) {
  TrackInput in = Pending(Digest(n), "id-" + std::to_string(n));
  in.proof.leaf_count = leaves;
  in.proof.state = state;
  if (state == anchord::v1::DIGEST_STATE_CONFIRMED) {
    in.proof.block_height = 812345;
    in.proof.bitcoin_tx = "tx-" + std::to_string(n);
  }
  return in;
}

TrackInput Leaf(int root, int n) {
  TrackInput in = Pending(Digest(n), "", "fake", "job-" + std::to_string(n));
  in.proof.merkle_root = Digest(root).raw();
  in.proof.merkle_path = std::string(1, '\x01');
  return in;
}

// What a caller sees of a proof row (seq and times aside: each database numbers its own).
using Seen = std::tuple<std::string, std::string, int, bool, std::string, int64_t, std::string,
                        std::string, int64_t, size_t>;
Seen SeenOf(const ProofRow& r) {
  return {std::string(r.digest.raw()),
          r.provider,
          r.state,
          r.stalled,
          r.proof_id,
          r.block_height,
          r.bitcoin_tx,
          r.merkle_root,
          r.ots_size,
          r.files.size()};
}

struct Outcome {
  Seen proof;
  bool inserted, state_changed;
  std::vector<Seen> leaves_changed;
  bool operator==(const Outcome& o) const {
    return proof == o.proof && inserted == o.inserted && state_changed == o.state_changed &&
           leaves_changed == o.leaves_changed;
  }
};
std::vector<Outcome> Outcomes(const std::vector<TrackOutcome>& in) {
  std::vector<Outcome> out;
  for (const TrackOutcome& o : in) {
    Outcome x{SeenOf(o.proof), o.inserted, o.state_changed, {}};
    for (const ProofRow& l : o.leaves_changed) x.leaves_changed.push_back(SeenOf(l));
    out.push_back(std::move(x));
  }
  return out;
}

class PgTrackNewTest : public ::testing::Test {
 protected:
  // A database with a store over it.
  struct Db {
    std::shared_ptr<ledger::PgDb> pg;
    std::unique_ptr<PollerStore> store;
  };
  Db Open() {
    Db d;
    auto url = ::anchord::testing::CreateSharedDatabase();
    EXPECT_TRUE(url.ok()) << url.status();
    if (!url.ok()) return d;
    auto pg = ledger::PgDb::Open(*url);
    EXPECT_TRUE(pg.ok()) << pg.status();
    if (!pg.ok()) return d;
    d.pg = std::move(*pg);
    auto store = OpenPgPollerStore(d.pg);
    EXPECT_TRUE(store.ok()) << store.status();
    if (store.ok()) d.store = std::move(*store);
    return d;
  }
  // `inputs` stored one at a time with TrackIn, in one transaction, as the store did before.
  static absl::StatusOr<std::vector<TrackOutcome>> OneByOne(Db& d,
                                                            const std::vector<TrackInput>& inputs) {
    std::vector<TrackOutcome> out;
    absl::Status st = d.pg->Tx([&](ledger::PgConn& c) -> absl::Status {
      out.clear();
      std::set<std::string> trees;
      for (const TrackInput& in : inputs) {
        auto one = TrackIn(c, in, kT0 + absl::Minutes(1), &trees);
        if (!one.ok()) return one.status();
        out.push_back(std::move(*one));
      }
      return absl::OkStatus();
    });
    if (!st.ok()) return st;
    return out;
  }
  static std::vector<Seen> AllRows(Db& d) {
    ListFilter all;
    auto rows = d.store->List(all, 0, 1000);
    EXPECT_TRUE(rows.ok()) << rows.status();
    std::vector<Seen> out;
    if (rows.ok()) {
      for (const ProofRow& r : *rows) out.push_back(SeenOf(r));
    }
    std::sort(out.begin(), out.end());
    return out;
  }
  // The same setup on both databases, then `call`: by the store on `a`, one by one on `b`.
  // `first_part`: how many inputs TrackNewIn takes in its first part, 0 when it hands the call
  // back (checked on a third database prepared alike).
  void ExpectSame(const std::vector<TrackInput>& setup, const std::vector<TrackInput>& call,
                  size_t first_part) {
    Db a = Open(), b = Open(), c = Open();
    ASSERT_TRUE(a.store && b.store && c.store);
    for (Db* d : {&a, &b, &c}) {
      ASSERT_TRUE(d->store->Track(setup, kT0).ok());
      // A pending root stalled, a confirmed root whose leaf was left behind.
      ASSERT_TRUE(d->store->MarkStalled(Digest(100), "fake", kT0).ok());
      ASSERT_TRUE(d->store->PropagateToLeaves(Digest(100), "fake", kT0).ok());
      ConfirmInput ci;
      ci.block_height = 800000;
      ASSERT_TRUE(d->store->MarkConfirmed(Digest(200), "fake", ci, kT0).ok());
    }
    absl::Status taken = c.pg->Tx([&](ledger::PgConn& conn) -> absl::Status {
      std::set<std::string> trees;
      auto r = TrackNewIn(conn, call, kT0 + absl::Minutes(1), &trees);
      if (!r.ok()) return r.status();
      EXPECT_EQ(r->has_value() ? (*r)->size() : 0, first_part);
      return absl::OkStatus();
    });
    ASSERT_TRUE(taken.ok()) << taken;
    auto by_store = a.store->Track(call, kT0 + absl::Minutes(1));
    ASSERT_TRUE(by_store.ok()) << by_store.status();
    auto one_by_one = OneByOne(b, call);
    ASSERT_TRUE(one_by_one.ok()) << one_by_one.status();
    const std::vector<Outcome> got = Outcomes(*by_store), want = Outcomes(*one_by_one);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_TRUE(got[i] == want[i]) << "input " << i;
    EXPECT_EQ(AllRows(a), AllRows(b));
  }

  // Root 100 pending (two leaves), root 200 pending (one leaf), a proof of a single file.
  std::vector<TrackInput> Prepared() {
    return {Root(100, 3, anchord::v1::DIGEST_STATE_PENDING),
            Leaf(100, 101),
            Leaf(100, 102),
            Root(200, 2, anchord::v1::DIGEST_STATE_PENDING),
            Leaf(200, 201),
            Pending(Digest(1), "id-1")};
  }
};

// Every kind of new proof in one call: a root handed off final with its leaves after it, a leaf
// of a stalled pending root, a leaf of a final root, single files pending, confirmed and failed.
TEST_F(PgTrackNewTest, ACallOfNewProofsGivesWhatOneByOneGives) {
  TrackInput failed = Pending(Digest(4), "id-4");
  failed.proof.state = anchord::v1::DIGEST_STATE_FAILED;
  failed.proof.failure_code = 3;
  failed.proof.failure_message = "rejected";
  TrackInput confirmed = Pending(Digest(3), "id-3");
  confirmed.proof.state = anchord::v1::DIGEST_STATE_CONFIRMED;
  confirmed.proof.block_height = 812000;
  ExpectSame(Prepared(),
             {Root(300, 2, anchord::v1::DIGEST_STATE_CONFIRMED), Leaf(300, 301), Leaf(300, 302),
              Leaf(100, 103), Leaf(200, 202), Pending(Digest(2), "id-2"), confirmed, failed},
             /*first_part=*/8);
}

// A root handed off final after an earlier call stored some of its leaves: they are its
// leaves_changed; the leaves of this call move on their own.
TEST_F(PgTrackNewTest, AFinalRootMovesTheLeavesStoredBeforeIt) {
  std::vector<TrackInput> setup = Prepared();
  setup.push_back(Leaf(400, 401));
  setup.push_back(Leaf(400, 402));
  ExpectSame(setup, {Root(400, 3, anchord::v1::DIGEST_STATE_CONFIRMED), Leaf(400, 403)},
             /*first_part=*/2);
}

// Leaves of their own path handed off before their root, which arrives PENDING in the same
// call: they take nothing from it (it was not stored yet when they were), leaves after it do.
TEST_F(PgTrackNewTest, LeavesBeforeAPendingRootTakeNothingFromIt) {
  ExpectSame(Prepared(),
             {Leaf(600, 601), Leaf(600, 602), Root(600, 3, anchord::v1::DIGEST_STATE_PENDING),
              Leaf(600, 603)},
             /*first_part=*/4);
}

// TrackBatch repeats a batch's root in each request: the stored root leads the call, TrackIn
// stores it, the new leaves after it go set by set.
TEST_F(PgTrackNewTest, AStoredRootLeadingTheCallIsStoredFirst) {
  TrackInput root = Root(100, 3, anchord::v1::DIGEST_STATE_PENDING);
  ExpectSame(Prepared(), {root, Leaf(100, 103), Leaf(100, 104)}, /*first_part=*/3);
  // Handed off again final: it moves its stored leaves first, then the new ones follow it.
  root.proof.state = anchord::v1::DIGEST_STATE_CONFIRMED;
  ExpectSame(Prepared(), {root, Leaf(100, 103)}, /*first_part=*/2);
}

// A stored proof after a new one, or a digest a second time, starts the call's next part; a leaf
// before its final root sends the call to TrackIn. Outcomes and rows are TrackIn's either way.
TEST_F(PgTrackNewTest, CallsAreStoredPartByPartOrOneByOne) {
  TrackInput again = Pending(Digest(1), "id-1");
  again.proof.state = anchord::v1::DIGEST_STATE_CONFIRMED;
  ExpectSame(Prepared(), {Pending(Digest(5), "id-5"), again}, 1);
  ExpectSame(Prepared(), {Pending(Digest(5), "id-5"), Pending(Digest(5), "id-5")}, 1);
  ExpectSame(Prepared(), {Leaf(500, 501), Root(500, 1, anchord::v1::DIGEST_STATE_CONFIRMED)}, 0);
}

// A call of several TrackBatch requests of one batch repeats the batch's root before each
// request's leaves, stored already or new in the call: a part per request.
TEST_F(PgTrackNewTest, RequestsOfOneBatchInOneCallArePartsOfIt) {
  const TrackInput stored_root = Root(100, 5, anchord::v1::DIGEST_STATE_PENDING);
  ExpectSame(Prepared(), {stored_root, Leaf(100, 103), Leaf(100, 104), stored_root, Leaf(100, 105)},
             3);
  const TrackInput new_root = Root(700, 4, anchord::v1::DIGEST_STATE_PENDING);
  ExpectSame(Prepared(),
             {new_root, Leaf(700, 701), Leaf(700, 702), new_root, Leaf(700, 703), new_root,
              Leaf(700, 704)},
             3);
  // Handed off final: the root moves its stored leaves once, each later part's leaves follow it.
  TrackInput final_root = Root(100, 5, anchord::v1::DIGEST_STATE_CONFIRMED);
  ExpectSame(Prepared(), {final_root, Leaf(100, 103), final_root, Leaf(100, 104)}, 2);
}

// A call that alternates new and stored proofs: parts of two, then (past the bound on parts) the
// rest one by one, with the outcomes and rows of one by one.
TEST_F(PgTrackNewTest, AnAlternatingCallIsStoredAsOneByOneStoresIt) {
  std::vector<TrackInput> setup = Prepared();
  std::vector<TrackInput> call;
  for (int i = 0; i < 40; ++i) {
    setup.push_back(Pending(Digest(1000 + i), "id-s" + std::to_string(i)));
    call.push_back(Pending(Digest(2000 + i), "id-n" + std::to_string(i)));
    call.push_back(Pending(Digest(1000 + i), "id-s" + std::to_string(i)));
  }
  ExpectSame(setup, call, 1);
}

// An invalid input fails the call and stores nothing of it.
TEST_F(PgTrackNewTest, AnInvalidInputFailsTheWholeCall) {
  Db a = Open();
  ASSERT_TRUE(a.store);
  TrackInput bad = Pending(Digest(7), "id-7");
  bad.proof.state = anchord::v1::DIGEST_STATE_UNSPECIFIED;
  auto r = a.store->Track({Pending(Digest(6), "id-6"), bad}, kT0);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("proof.state"), std::string::npos) << r.status();
  EXPECT_TRUE(AllRows(a).empty());
}

// The server's counts of rows inserted into and updated in proofs ({-1, -1} when unreadable). A
// backend reports its counts after its transaction, within about a second.
std::pair<int64_t, int64_t> ProofWrites(ledger::PgDb& pg) {
  std::pair<int64_t, int64_t> out{-1, -1};
  absl::Status st = pg.Run([&](ledger::PgConn& c) -> absl::Status {
    auto r =
        c.Exec("SELECT n_tup_ins, n_tup_upd FROM pg_stat_user_tables WHERE relname = 'proofs'");
    if (!r.ok()) return r.status();
    if (r->rows() == 1) out = {r->Int(0, 0), r->Int(0, 1)};
    return absl::OkStatus();
  });
  EXPECT_TRUE(st.ok()) << st;
  return out;
}

// Leaves stored with the fields of their pending root (a batch's leaves as the hand-off sends
// them) are not written a second time to take those fields; a root that moves still moves them.
TEST_F(PgTrackNewTest, LeavesThatHaveTheirRootsFieldsAreNotWrittenAgain) {
  Db d = Open();
  ASSERT_NE(d.store, nullptr);
  auto leaf = [](int n) {
    TrackInput in = Pending(Digest(n), "id-1", "fake", "job");
    in.proof.merkle_root = Digest(1).raw();
    in.proof.merkle_path = std::string(1, '\x01');
    return in;
  };
  // The root before its leaves in one call, then more leaves in a call of their own.
  std::vector<TrackInput> first = {Root(1, 40, anchord::v1::DIGEST_STATE_PENDING)};
  for (int n = 100; n < 120; ++n) first.push_back(leaf(n));
  std::vector<TrackInput> second;
  for (int n = 120; n < 140; ++n) second.push_back(leaf(n));
  ASSERT_TRUE(d.store->Track(first, kT0).ok());
  ASSERT_TRUE(d.store->Track(second, kT0).ok());
  // Once the inserts are counted, so are the updates of the same transactions.
  ASSERT_TRUE(::anchord::testing::WaitUntil([&] { return ProofWrites(*d.pg).first >= 41; },
                                            absl::Seconds(20)));
  EXPECT_EQ(ProofWrites(*d.pg).second, 0);

  // The root confirmed: each of its 40 leaves takes the new state.
  auto confirmed = d.store->Track({Root(1, 40, anchord::v1::DIGEST_STATE_CONFIRMED)}, kT0);
  ASSERT_TRUE(confirmed.ok()) << confirmed.status();
  ASSERT_EQ(confirmed->size(), 1u);
  EXPECT_EQ((*confirmed)[0].leaves_changed.size(), 40u);
  ListFilter all;
  auto rows = d.store->List(all, 0, 100);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 41u);
  for (const ProofRow& r : *rows) EXPECT_EQ(r.state, kConfirmed);
  EXPECT_TRUE(::anchord::testing::WaitUntil([&] { return ProofWrites(*d.pg).second >= 41; },
                                            absl::Seconds(20)))
      << ProofWrites(*d.pg).second << " rows updated";
}

}  // namespace
}  // namespace anchord::poller
