// The SQLite poller store's hand-off path (poller_store_track.cc): a new proof's outcome is built
// from what was inserted, a leaf takes its root's state at insert, and the indexes an older
// release created are replaced at open without changing what the queries return.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "libs/ledger/sqlite_db.h"
#include "services/poller/poller_store.h"
#include "tests/poller/test_util.h"
#include "tests/testing/sqlite.h"

namespace anchord::poller {
namespace {

using testing::Digest;
using testing::Pending;
using testing::TempDir;
namespace v1 = anchord::v1;

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

// Every field of two rows, files included, so a difference names the field.
void ExpectSameRow(const ProofRow& a, const ProofRow& b, const std::string& what) {
  SCOPED_TRACE(what);
  EXPECT_EQ(a.seq, b.seq);
  EXPECT_EQ(a.digest, b.digest);
  EXPECT_EQ(a.provider, b.provider);
  EXPECT_EQ(a.proof_id, b.proof_id);
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.certificate_url, b.certificate_url);
  EXPECT_EQ(a.verify_url, b.verify_url);
  EXPECT_EQ(a.block_height, b.block_height);
  EXPECT_EQ(a.bitcoin_tx, b.bitcoin_tx);
  EXPECT_EQ(a.submitted_at, b.submitted_at);
  EXPECT_EQ(a.confirmed_at, b.confirmed_at);
  EXPECT_EQ(a.ots_size, b.ots_size);
  EXPECT_EQ(a.failure_code, b.failure_code);
  EXPECT_EQ(a.failure_message, b.failure_message);
  EXPECT_EQ(a.failure_reason, b.failure_reason);
  EXPECT_EQ(a.provider_request_id, b.provider_request_id);
  EXPECT_EQ(a.stalled, b.stalled);
  EXPECT_EQ(a.tracked_at, b.tracked_at);
  EXPECT_EQ(a.last_checked_at, b.last_checked_at);
  EXPECT_EQ(a.updated_at, b.updated_at);
  EXPECT_EQ(a.merkle_root, b.merkle_root);
  EXPECT_EQ(a.merkle_path, b.merkle_path);
  EXPECT_EQ(a.leaf_count, b.leaf_count);
  EXPECT_EQ(a.fallback_provider, b.fallback_provider);
  EXPECT_EQ(a.fallback_sent, b.fallback_sent);
  EXPECT_EQ(a.leaf_index, b.leaf_index);
  ASSERT_EQ(a.files.size(), b.files.size());
  for (size_t i = 0; i < a.files.size(); ++i) {
    EXPECT_EQ(a.files[i].job, b.files[i].job);
    EXPECT_EQ(a.files[i].source_path, b.files[i].source_path);
    EXPECT_EQ(a.files[i].filename, b.files[i].filename);
    EXPECT_EQ(a.files[i].size_bytes, b.files[i].size_bytes);
    EXPECT_EQ(a.files[i].mime_type, b.files[i].mime_type);
  }
}

TrackInput Leaf(int n, const anchord::Digest& root) {
  TrackInput in = Pending(Digest(n), "batch-1", "fake", "job-a", "d/f" + std::to_string(n));
  in.proof.merkle_root = std::string(root.bytes());
  in.proof.merkle_path = std::string(40 + n, static_cast<char>(n));  // the store keeps it as is
  return in;
}

TrackInput Root(const anchord::Digest& root, int64_t leaves) {
  TrackInput in = Pending(root, "batch-1");
  in.files.clear();
  in.proof.leaf_count = leaves;
  return in;
}

class PollerStoreTrackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = OpenSqlitePollerStore(path());
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }
  std::string path() const { return dir_.File("poller.db"); }
  ProofRow MustGet(const anchord::Digest& digest, const std::string& provider = "fake") {
    auto r = store_->Get(digest, provider);
    EXPECT_TRUE(r.ok()) << r.status();
    EXPECT_TRUE(r.ok() && r->has_value());
    return r.ok() && r->has_value() ? **r : ProofRow{};
  }
  // Tracks `inputs` and checks that every outcome's proof is the row as stored afterwards.
  std::vector<TrackOutcome> TrackAndCompare(const std::vector<TrackInput>& inputs, absl::Time now) {
    auto out = store_->Track(inputs, now);
    EXPECT_TRUE(out.ok()) << out.status();
    if (!out.ok()) return {};
    EXPECT_EQ(out->size(), inputs.size());
    for (size_t i = 0; i < out->size(); ++i) {
      const ProofRow& got = (*out)[i].proof;
      // A later input of the same batch may have changed the row since (files of the same
      // digest, a root moving its leaves): compare only the last outcome of each digest.
      bool later = false;
      for (size_t j = i + 1; j < inputs.size(); ++j) {
        later |= inputs[j].proof.digest == got.digest;
        later |= inputs[j].proof.leaf_count > 0 &&
                 std::string(inputs[j].proof.digest.bytes()) == got.merkle_root;
      }
      if (!later)
        ExpectSameRow(got, MustGet(got.digest, got.provider), "input " + std::to_string(i));
    }
    return *out;
  }
  int64_t CountRows(const std::string& sql) {
    return ::anchord::testing::SqliteScalar(path(), sql);
  }
  // The files the store holds: a digest's first, in its first proof's row when it keeps it there
  // (files_kept), and the rows of files.
  int64_t StoredFiles(const std::string& where_seq = "") {
    const std::string seq = where_seq.empty() ? "" : " AND seq = " + where_seq;
    const std::string proof_seq = where_seq.empty() ? "" : " WHERE proof_seq = " + where_seq;
    return CountRows("SELECT (SELECT COUNT(*) FROM files" + proof_seq +
                     ") + (SELECT COUNT(*) FROM proofs WHERE files_kept <> 0" + seq + ")");
  }
  // Files (in files or in a proof's row) not under their digest's first proof: none, ever.
  int64_t FilesAwayFromFirstProof() {
    return CountRows(
        "SELECT (SELECT COUNT(*) FROM files WHERE proof_seq NOT IN (SELECT MIN(seq) FROM proofs "
        "GROUP BY digest)) + (SELECT COUNT(*) FROM proofs WHERE files_kept <> 0 AND seq NOT IN "
        "(SELECT MIN(seq) FROM proofs GROUP BY digest))");
  }

  TempDir dir_;
  std::unique_ptr<PollerStore> store_;
};

// The outcome of a new proof, built from the input rather than read back, is exactly the stored
// row: every field and state a hand-off may carry, times with sub-microsecond parts, evidence,
// several files, and a digest whose files another provider's proof already brought.
TEST_F(PollerStoreTrackTest, NewProofOutcomeIsTheStoredRow) {
  const absl::Time now = kT0 + absl::Nanoseconds(123'456'789);
  TrackInput submitted = Pending(Digest(1), "id-1");
  submitted.proof.state = v1::DIGEST_STATE_SUBMITTED;
  submitted.proof.submitted_at = kT0 - absl::Nanoseconds(1'234'567);
  submitted.proof.certificate_url = "https://cert";
  submitted.proof.provider_request_id = "req-1";
  submitted.proof.fallback_provider = "other";
  submitted.evidence = testing::MakeOts(Digest(1));
  submitted.files.push_back(FileRow{"", "second/path", "b.pdf", 7, ""});  // job "default"
  TrackInput confirmed = Pending(Digest(2), "id-2");
  confirmed.proof.state = v1::DIGEST_STATE_CONFIRMED;  // no confirmed_at: now
  confirmed.proof.block_height = 800000;
  confirmed.proof.bitcoin_tx = "tx";
  confirmed.proof.failure_message = "ignored unless FAILED";
  TrackInput failed = Pending(Digest(3), "");
  failed.proof.state = v1::DIGEST_STATE_FAILED;
  failed.proof.failure_code = 9;
  failed.proof.failure_message = "refused";
  failed.proof.failure_reason = "PLAN_LIMIT";
  failed.proof.block_height = 5;  // stored as given
  TrackInput root = Root(Digest(4), 3);
  TrackInput leaf = Leaf(5, Digest(99));  // its root is not held
  TrackInput other_provider = Pending(Digest(1), "id-1b", "second", "job-b", "elsewhere");
  auto out = TrackAndCompare({submitted, confirmed, failed, root, leaf}, now);
  // The same digest with another provider: its outcome carries the first one's files too.
  auto second = TrackAndCompare({other_provider}, now + absl::Seconds(1));
  ASSERT_EQ(second.size(), 1u);
  out.push_back(second[0]);
  ASSERT_EQ(out.size(), 6u);
  for (const TrackOutcome& o : out) {
    EXPECT_TRUE(o.inserted);
    EXPECT_FALSE(o.state_changed);
    EXPECT_TRUE(o.leaves_changed.empty());
  }
  EXPECT_EQ(out[0].proof.state, v1::DIGEST_STATE_PENDING);
  EXPECT_EQ(out[0].proof.ots_size, static_cast<int64_t>(submitted.evidence.size()));
  EXPECT_EQ(out[1].proof.confirmed_at, absl::FromUnixMicros(absl::ToUnixMicros(now)));
  EXPECT_EQ(out[5].proof.files.size(), 3u);  // the first provider's two files and its own
}

// A digest's files are kept under its first proof, whichever provider's hand-off brings them and
// in whichever order: a second provider in the same batch, a repeat bringing another file, and a
// digest sharing the first one's 8-byte prefix (the index the look uses) keeps its own files.
TEST_F(PollerStoreTrackTest, FilesGoUnderTheDigestsFirstProof) {
  std::string twin_bytes(Digest(7).bytes());
  twin_bytes[31] = static_cast<char>(twin_bytes[31] ^ 0x5a);
  const anchord::Digest twin = *anchord::Digest::FromBytes(twin_bytes);
  const TrackInput first = Pending(Digest(7), "id-a", "fake", "job-a", "a/one");
  const TrackInput second = Pending(Digest(7), "id-b", "second", "job-b", "b/two");
  const TrackInput other = Pending(twin, "id-t", "second", "job-t", "t/three");
  TrackInput repeat = Pending(Digest(7), "id-a", "fake", "job-c", "c/four");
  auto out = TrackAndCompare({other, first, second, repeat}, kT0);
  ASSERT_EQ(out.size(), 4u);
  EXPECT_TRUE(out[0].inserted);
  EXPECT_TRUE(out[1].inserted);
  EXPECT_TRUE(out[2].inserted);
  EXPECT_FALSE(out[3].inserted);
  const std::vector<std::string> want = {"a/one", "b/two", "c/four"};
  for (const char* provider : {"fake", "second"}) {
    SCOPED_TRACE(provider);
    const ProofRow row = MustGet(Digest(7), provider);
    std::vector<std::string> got;
    for (const FileRow& f : row.files) got.push_back(f.source_path);
    EXPECT_EQ(got, want);
  }
  const ProofRow t = MustGet(twin, "second");
  ASSERT_EQ(t.files.size(), 1u);
  EXPECT_EQ(t.files[0].source_path, "t/three");
  EXPECT_EQ(out[0].proof.files.size(), 1u);
  // Every file sits under the lowest seq of its digest: each digest's first in that proof's row,
  // the later ones of digest 7 in files.
  EXPECT_EQ(FilesAwayFromFirstProof(), 0);
  EXPECT_EQ(StoredFiles(), 4);
  EXPECT_EQ(CountRows("SELECT COUNT(*) FROM files"), 2);
  EXPECT_EQ(CountRows("SELECT COUNT(*) FROM proofs WHERE files_kept = 2"), 1);
  EXPECT_EQ(CountRows("SELECT COUNT(*) FROM proofs WHERE files_kept = 1"), 1);
  // A third provider later: the digest's three files, none added twice.
  auto third = TrackAndCompare({Pending(Digest(7), "id-c", "third", "job-a", "a/one")}, kT0);
  ASSERT_EQ(third.size(), 1u);
  EXPECT_TRUE(third[0].inserted);
  EXPECT_EQ(third[0].proof.files.size(), 3u);
  EXPECT_EQ(StoredFiles(), 4);
}

// A hand-off repeated, in the same batch and in a later one, answers with the stored row and
// stores one proof and one file.
TEST_F(PollerStoreTrackTest, DuplicateHandOffStoresOnce) {
  const TrackInput leaf = Leaf(1, Digest(50));
  auto first = TrackAndCompare({leaf, leaf}, kT0);
  ASSERT_EQ(first.size(), 2u);
  EXPECT_TRUE(first[0].inserted);
  EXPECT_FALSE(first[1].inserted);
  EXPECT_FALSE(first[1].state_changed);
  auto again = TrackAndCompare({leaf}, kT0 + absl::Seconds(3));
  ASSERT_EQ(again.size(), 1u);
  EXPECT_FALSE(again[0].inserted);
  EXPECT_EQ(again[0].proof.seq, first[0].proof.seq);
  EXPECT_EQ(again[0].proof.tracked_at, kT0);  // the repeat changed nothing
  EXPECT_EQ(CountRows("SELECT COUNT(*) FROM proofs"), 1);
  EXPECT_EQ(StoredFiles(), 1);
  // A new digest's only file is kept in its proof's row: no files row.
  EXPECT_EQ(CountRows("SELECT COUNT(*) FROM files"), 0);
  auto stats = store_->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ((*stats)["fake"].proofs_by_state[v1::DIGEST_STATE_PENDING], 1);
}

// New proofs are written several to a statement (poller_store_track.cc): a call of more than
// one such statement's worth keeps every outcome equal to its stored row, seqs in input order,
// a digest repeated or brought by a second provider within the call stored under its first
// proof, and an input the queue does not take (evidence) written in its place between them.
TEST_F(PollerStoreTrackTest, ProofsWrittenTogetherKeepTheirOrderSeqsAndFiles) {
  const anchord::Digest root = Digest(1000);
  std::vector<TrackInput> inputs = {Root(root, 60)};
  for (int n = 1; n <= 60; ++n) inputs.push_back(Leaf(n, root));
  TrackInput repeat = Leaf(3, root);
  repeat.files[0].source_path = "d/f3-copy";
  inputs.insert(inputs.begin() + 21, repeat);
  TrackInput other = Pending(Digest(5), "id-5", "second", "job-b", "b/five");
  inputs.insert(inputs.begin() + 31, other);
  TrackInput with_ots = Pending(Digest(2000), "id-ots", "fake", "job-a", "o/ots");
  with_ots.evidence = testing::MakeOts(Digest(2000));
  inputs.insert(inputs.begin() + 41, with_ots);
  auto out = TrackAndCompare(inputs, kT0);
  ASSERT_EQ(out.size(), inputs.size());
  int64_t last_seq = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(out[i].inserted, i != 21);
    if (!out[i].inserted) continue;
    EXPECT_GT(out[i].proof.seq, last_seq);
    last_seq = out[i].proof.seq;
  }
  EXPECT_EQ(CountRows("SELECT COUNT(*) FROM proofs"), 63);
  EXPECT_EQ(CountRows("SELECT MAX(seq) FROM proofs"), last_seq);
  EXPECT_EQ(StoredFiles(), 63);
  EXPECT_EQ(FilesAwayFromFirstProof(), 0);
  std::vector<std::string> three;
  for (const FileRow& f : MustGet(Digest(3)).files) three.push_back(f.source_path);
  EXPECT_EQ(three, (std::vector<std::string>{"d/f3", "d/f3-copy"}));
  EXPECT_EQ(MustGet(Digest(5), "second").files.size(), 2u);
  EXPECT_EQ(MustGet(Digest(2000)).ots_size, static_cast<int64_t>(with_ots.evidence.size()));
  auto stats = store_->Stats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ((*stats)["fake"].proofs_by_state[v1::DIGEST_STATE_PENDING], 62);
  EXPECT_EQ((*stats)["second"].proofs_by_state[v1::DIGEST_STATE_PENDING], 1);
  // The next call's proofs follow every seq given so far.
  auto next = TrackAndCompare({Pending(Digest(3000), "id-n")}, kT0 + absl::Seconds(1));
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].proof.seq, last_seq + 1);
}

// The proofs a call's digests already have are read kLookAhead digests to a statement before the
// call writes (Tracker::Prefetch): digests stored by an earlier call, in every statement of the
// look-ahead (the last one partly filled), with the same or another provider, and one repeated in
// the call, are all found as one look per input would find them.
TEST_F(PollerStoreTrackTest, DigestsStoredBeforeTheCallAreFoundAcrossLookAheads) {
  const std::set<int> before = {2, 17, 33, 40};
  std::vector<TrackInput> first;
  for (int n : before) first.push_back(Pending(Digest(n), "old-" + std::to_string(n)));
  first.push_back(Pending(Digest(17), "old-17s", "second"));
  ASSERT_EQ(TrackAndCompare(first, kT0).size(), 5u);
  const int64_t first_seq_33 = MustGet(Digest(33)).seq;

  std::vector<TrackInput> inputs;
  for (int n = 1; n <= 41; ++n) inputs.push_back(Pending(Digest(n), "new-" + std::to_string(n)));
  inputs.push_back(Pending(Digest(33), "new-33s", "second", "", "second/33"));
  inputs.push_back(Pending(Digest(40), "new-40b", "fake", "", "again/40"));
  auto out = TrackAndCompare(inputs, kT0 + absl::Seconds(1));
  ASSERT_EQ(out.size(), inputs.size());
  for (int n = 1; n <= 41; ++n) {
    SCOPED_TRACE(n);
    EXPECT_EQ(out[n - 1].inserted, before.count(n) == 0);
    // A proof held before keeps its provider record.
    if (before.count(n)) {
      EXPECT_EQ(MustGet(Digest(n)).proof_id, "old-" + std::to_string(n));
    }
  }
  EXPECT_TRUE(out[41].inserted);  // (33, second): a new provider for a known digest
  EXPECT_FALSE(out[42].inserted);
  EXPECT_EQ(CountRows("SELECT COUNT(*) FROM proofs"), 5 + 37 + 1);
  // The new provider's files are the digest's, under its first proof.
  std::vector<std::string> paths;
  for (const FileRow& f : MustGet(Digest(33), "second").files) paths.push_back(f.source_path);
  EXPECT_EQ(paths, (std::vector<std::string>{"old-33.pdf", "new-33.pdf", "second/33"}));
  EXPECT_EQ(StoredFiles(std::to_string(first_seq_33)), 3);
  paths.clear();
  for (const FileRow& f : MustGet(Digest(40)).files) paths.push_back(f.source_path);
  EXPECT_EQ(paths, (std::vector<std::string>{"old-40.pdf", "new-40.pdf", "again/40"}));
}

// The store keeps the prefixes of the digests it holds, so that a batch's new leaves are not looked
// up (ledger/prefix_filter.h). A proof written by another connection to the same file (another
// process) after the filter was made is still found: handed off again, it is not stored twice.
TEST_F(PollerStoreTrackTest, AProofWrittenByAnotherConnectionIsFoundNotStoredTwice) {
  ASSERT_EQ(TrackAndCompare({Pending(Digest(1), "p-1")}, kT0).size(), 1u);  // the filter is made
  const std::string hex2(Digest(2).hex());
  ASSERT_TRUE(::anchord::testing::SqliteExec(
                  path(), "INSERT INTO proofs (digest, provider, proof_id, state) VALUES (X'" +
                              hex2 + "', 'fake', 'written-elsewhere', 4)")
                  .ok());
  auto out = TrackAndCompare(
      {Pending(Digest(2), "p-2"), Pending(Digest(3), "p-3"), Pending(Digest(1), "p-1-again")},
      kT0 + absl::Seconds(1));
  ASSERT_EQ(out.size(), 3u);
  EXPECT_FALSE(out[0].inserted);
  EXPECT_TRUE(out[1].inserted);
  EXPECT_FALSE(out[2].inserted);
  EXPECT_EQ(MustGet(Digest(2)).proof_id, "written-elsewhere");
  EXPECT_EQ(CountRows("SELECT COUNT(*) FROM proofs WHERE digest = X'" + hex2 + "'"), 1);
  EXPECT_EQ(CountRows("SELECT COUNT(*) FROM proofs"), 3);
}

// Leaves handed off after their root was confirmed take its state at insert, and a leaf left
// behind the root (the root moved without its propagation) is brought up with them.
TEST_F(PollerStoreTrackTest, LeafOfConfirmedRootTakesItsStateAtInsert) {
  const anchord::Digest root = Digest(100);
  ASSERT_TRUE(store_->Track({Root(root, 4), Leaf(1, root)}, kT0).ok());
  ConfirmInput ci;
  ci.block_height = 812345;
  ci.bitcoin_tx = "beef";
  ci.certificate_url = "https://cert/root";
  ci.ots = testing::MakeOts(root);
  auto confirmed = store_->MarkConfirmed(root, "fake", ci, kT0 + absl::Seconds(10));
  ASSERT_TRUE(confirmed.ok() && confirmed->has_value()) << confirmed.status();
  ASSERT_EQ(MustGet(Digest(1)).state, v1::DIGEST_STATE_PENDING);  // not propagated yet

  const absl::Time now = kT0 + absl::Seconds(20);
  auto out = TrackAndCompare({Leaf(2, root), Leaf(3, root), Leaf(4, root)}, now);
  ASSERT_EQ(out.size(), 3u);
  const int64_t root_ots = static_cast<int64_t>(ci.ots.size());
  for (int i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    const ProofRow& p = out[i].proof;
    EXPECT_TRUE(out[i].inserted);
    EXPECT_TRUE(out[i].state_changed);
    EXPECT_EQ(p.state, v1::DIGEST_STATE_CONFIRMED);
    EXPECT_EQ(p.block_height, 812345);
    EXPECT_EQ(p.bitcoin_tx, "beef");
    EXPECT_EQ(p.certificate_url, "https://cert/root");
    EXPECT_EQ(p.confirmed_at, kT0 + absl::Seconds(10));
    EXPECT_EQ(p.ots_size, root_ots + static_cast<int64_t>(p.merkle_path.size()));
    EXPECT_EQ(p.updated_at, now);
  }
  ProofRow behind = MustGet(Digest(1));
  EXPECT_EQ(behind.state, v1::DIGEST_STATE_CONFIRMED);
  EXPECT_EQ(behind.ots_size, root_ots + static_cast<int64_t>(behind.merkle_path.size()));
  auto stats = store_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ((*stats)["fake"].proofs_by_state[v1::DIGEST_STATE_CONFIRMED], 5);
  EXPECT_EQ((*stats)["fake"].proofs_by_state[v1::DIGEST_STATE_PENDING], 0);
}

// A root handed off final in the same batch as its leaves: leaves before it are moved by it
// (leaves_changed), leaves after it take its state at insert.
TEST_F(PollerStoreTrackTest, RootFinalInTheSameBatch) {
  const anchord::Digest root = Digest(200);
  TrackInput final_root = Root(root, 3);
  final_root.proof.state = v1::DIGEST_STATE_FAILED;
  final_root.proof.failure_code = 9;
  final_root.proof.failure_message = "refused";
  auto out = TrackAndCompare({Leaf(1, root), final_root, Leaf(2, root)}, kT0);
  ASSERT_EQ(out.size(), 3u);
  ASSERT_EQ(out[1].leaves_changed.size(), 1u);
  EXPECT_EQ(out[1].leaves_changed[0].digest, Digest(1));
  EXPECT_EQ(out[1].leaves_changed[0].state, v1::DIGEST_STATE_FAILED);
  EXPECT_EQ(out[2].proof.state, v1::DIGEST_STATE_FAILED);
  EXPECT_EQ(out[2].proof.failure_message, "refused");
  EXPECT_TRUE(out[2].state_changed);
  EXPECT_EQ(MustGet(Digest(1)).state, v1::DIGEST_STATE_FAILED);
}

// A leaf of a root still pending takes the root's fields (its stalled flag too); the root's other
// leaves are left as they are.
TEST_F(PollerStoreTrackTest, LeafOfPendingRootTakesItsFields) {
  const anchord::Digest root = Digest(300);
  ASSERT_TRUE(store_->Track({Root(root, 3), Leaf(1, root)}, kT0).ok());
  auto stalled = store_->MarkStalled(root, "fake", kT0 + absl::Seconds(5));
  ASSERT_TRUE(stalled.ok() && stalled->has_value());
  auto out = TrackAndCompare({Leaf(2, root)}, kT0 + absl::Seconds(9));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(out[0].inserted);
  EXPECT_FALSE(out[0].state_changed);
  EXPECT_EQ(out[0].proof.state, v1::DIGEST_STATE_PENDING);
  EXPECT_TRUE(out[0].proof.stalled);
  EXPECT_EQ(out[0].proof.ots_size, 0);
  ProofRow sibling = MustGet(Digest(1));
  EXPECT_FALSE(sibling.stalled);
  EXPECT_EQ(sibling.updated_at, kT0);
}

// Turns the files of a database of today's schema back into the form of a release that keyed them
// by digest (files of the same digest under its several proofs all carry that digest) and kept
// every file in files (a digest's first file, which today's proofs row may hold, goes first).
const std::string kFilesByDigest =
    "CREATE TABLE files_old (id INTEGER PRIMARY KEY AUTOINCREMENT, digest BLOB NOT NULL, job TEXT "
    "NOT NULL, source_path TEXT NOT NULL, filename TEXT NOT NULL, size_bytes INTEGER NOT NULL, "
    "mime_type TEXT NOT NULL, UNIQUE (digest, job, source_path));"
    "INSERT INTO files_old (digest, job, source_path, filename, size_bytes, mime_type) "
    "SELECT digest, job, source_path, filename, size_bytes, mime_type FROM ("
    "SELECT p.seq AS s, 0 AS k, p.digest, p.file_job AS job, p.file_source_path AS source_path, "
    "p.file_name AS filename, p.file_size AS size_bytes, p.file_mime_type AS mime_type FROM proofs "
    "p WHERE p.files_kept <> 0 UNION ALL SELECT f.proof_seq, f.id, p.digest, f.job, f.source_path, "
    "f.filename, f.size_bytes, f.mime_type FROM files f JOIN proofs p ON p.seq = f.proof_seq) "
    "ORDER BY s, k;"
    "UPDATE proofs SET files_kept = 0, file_job = '', file_source_path = '', file_name = '', "
    "file_size = 0, file_mime_type = '';"
    "DROP TABLE files; ALTER TABLE files_old RENAME TO files;";

// A database whose indexes an older release created: at open the two indexes that held every
// leaf are replaced (the check order, now partial) or dropped (files by job), the two indexes of
// a root's leaves become one (proofs_open_leaves), and the queries that used them return the same
// rows.
TEST_F(PollerStoreTrackTest, OlderIndexesAreReplacedAtOpen) {
  const anchord::Digest root = Digest(400);
  std::vector<TrackInput> batch = {Root(root, 2), Leaf(1, root), Leaf(2, root)};
  for (int n = 10; n < 16; ++n) {
    batch.push_back(Pending(Digest(n), "id-" + std::to_string(n), "fake", n % 2 ? "odd" : "even"));
  }
  ASSERT_TRUE(store_->Track(batch, kT0).ok());
  ASSERT_TRUE(store_->MarkChecked(Digest(12), "fake", kT0 + absl::Seconds(1)).ok());
  ConfirmInput ci;
  ci.block_height = 7;
  ASSERT_TRUE(store_->MarkConfirmed(Digest(13), "fake", ci, kT0 + absl::Seconds(2)).ok());
  struct Seen {
    std::vector<int64_t> pending, confirmed_without_ots, odd, leaves_excluded;
    int64_t odd_digests = 0;
  };
  auto seqs = [](const absl::StatusOr<std::vector<ProofRow>>& rows) {
    EXPECT_TRUE(rows.ok()) << rows.status();
    std::vector<int64_t> out;
    if (rows.ok()) {
      for (const ProofRow& r : *rows) out.push_back(r.seq);
    }
    return out;
  };
  auto look = [&](PollerStore& s) {
    Seen seen;
    seen.pending = seqs(s.PendingToCheck("fake", kT0 + absl::Seconds(1), 100));
    seen.confirmed_without_ots = seqs(s.ConfirmedWithoutOts("fake", 100));
    ListFilter odd;
    odd.job = "odd";
    seen.odd = seqs(s.List(odd, 0, 100));
    ListFilter no_leaves;
    no_leaves.state = v1::DIGEST_STATE_PENDING;
    no_leaves.provider = "fake";
    no_leaves.with_leaves = false;
    seen.leaves_excluded = seqs(s.List(no_leaves, 0, 100));
    auto summary = s.Summarize("odd");
    EXPECT_TRUE(summary.ok());
    seen.odd_digests = summary.ok() ? summary->digests : -1;
    return seen;
  };
  const Seen now_seen = look(*store_);
  EXPECT_EQ(now_seen.pending.size(), 6u);  // the root and 5 of the 6, not the leaves
  EXPECT_EQ(now_seen.confirmed_without_ots.size(), 1u);
  EXPECT_EQ(now_seen.odd.size(), 3u);
  EXPECT_EQ(now_seen.odd_digests, 3);
  store_.reset();
  // What an older release left: both indexes over every proof and file, no check order, files
  // keyed by digest.
  absl::Status older = ::anchord::testing::SqliteExec(
      path(),
      "DROP INDEX proofs_check_order;"
      "CREATE INDEX proofs_by_provider_state ON proofs (provider, state, last_checked_at, seq);"
      "DROP INDEX proofs_open_leaves;"
      "CREATE INDEX proofs_by_root ON proofs (merkle_root, provider) WHERE length(merkle_root) > 0;"
      "CREATE INDEX proofs_pending_leaves ON proofs (provider, merkle_root) "
      "WHERE state = 4 AND length(merkle_root) > 0;" +
          kFilesByDigest + "CREATE INDEX files_by_job ON files (job, digest);");
  ASSERT_TRUE(older.ok()) << older;
  const std::string indexes = "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = ";
  ASSERT_EQ(CountRows(indexes + "'proofs_by_provider_state'"), 1);
  auto reopened = OpenSqlitePollerStore(path());
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  store_ = std::move(*reopened);
  EXPECT_EQ(CountRows(indexes + "'proofs_by_provider_state'"), 0);
  EXPECT_EQ(CountRows(indexes + "'files_by_job'"), 0);
  EXPECT_EQ(CountRows(indexes + "'proofs_check_order'"), 1);
  EXPECT_EQ(CountRows(indexes + "'proofs_by_root'"), 0);
  EXPECT_EQ(CountRows(indexes + "'proofs_pending_leaves'"), 0);
  EXPECT_EQ(CountRows(indexes + "'proofs_open_leaves'"), 1);
  // The new index holds no leaf.
  EXPECT_EQ(CountRows("SELECT COUNT(*) FROM proofs INDEXED BY proofs_check_order WHERE provider "
                      "= 'fake' AND length(merkle_root) = 0"),
            7);
  const Seen after = look(*store_);
  EXPECT_EQ(after.pending, now_seen.pending);
  EXPECT_EQ(after.confirmed_without_ots, now_seen.confirmed_without_ots);
  EXPECT_EQ(after.odd, now_seen.odd);
  EXPECT_EQ(after.leaves_excluded, now_seen.leaves_excluded);
  EXPECT_EQ(after.odd_digests, now_seen.odd_digests);
}

// A database whose files are keyed by digest (an older release): at open they are rebuilt keyed
// by their digest's first proof, and every reader of files (a proof's files, lookups and counts by
// job) returns what it returned before; a file whose digest has no proof is not carried over, and
// hand-offs after the upgrade add files under the same key.
TEST_F(PollerStoreTrackTest, FilesKeyedByDigestAreUpgradedAtOpen) {
  const anchord::Digest root = Digest(500);
  TrackInput two_files = Pending(Digest(1), "id-1", "fake", "a", "one/first");
  two_files.files.push_back(FileRow{"a", "one/second", "s.pdf", 9, "text/plain"});
  std::vector<TrackInput> batch = {two_files, Pending(Digest(2), "id-2", "fake", "a"),
                                   Root(root, 2), Leaf(11, root), Leaf(12, root)};
  ASSERT_TRUE(store_->Track(batch, kT0).ok());
  // Digest 1 again with another provider and another job: the digest's files grow.
  ASSERT_TRUE(
      store_->Track({Pending(Digest(1), "id-1b", "second", "b", "two/x")}, kT0 + absl::Seconds(1))
          .ok());
  struct Seen {
    std::vector<std::vector<std::string>> files;  // per proof of List({}), its files' paths
    std::vector<int64_t> by_a, by_b, by_job_a;
    int64_t digests_a = 0, digests_b = 0;
  };
  auto look = [&](PollerStore& s) {
    Seen seen;
    auto seqs = [](const absl::StatusOr<std::vector<ProofRow>>& rows) {
      EXPECT_TRUE(rows.ok()) << rows.status();
      std::vector<int64_t> out;
      for (const ProofRow& r : rows.ok() ? *rows : std::vector<ProofRow>{}) out.push_back(r.seq);
      return out;
    };
    auto all = s.List(ListFilter{}, 0, 100);
    EXPECT_TRUE(all.ok()) << all.status();
    for (const ProofRow& r : all.ok() ? *all : std::vector<ProofRow>{}) {
      std::vector<std::string> paths;
      for (const FileRow& f : r.files) paths.push_back(f.job + ":" + f.source_path);
      seen.files.push_back(paths);
    }
    ListFilter a;
    a.job = "a";
    seen.by_a = seqs(s.List(a, 0, 100));
    ListFilter b;
    b.job = "b";
    seen.by_b = seqs(s.List(b, 0, 100));
    ListFilter job_a;
    job_a.job = "job-a";  // the leaves'
    seen.by_job_a = seqs(s.List(job_a, 0, 100));
    auto sa = s.Summarize("a");
    auto sb = s.Summarize("b");
    EXPECT_TRUE(sa.ok() && sb.ok());
    seen.digests_a = sa.ok() ? sa->digests : -1;
    seen.digests_b = sb.ok() ? sb->digests : -1;
    return seen;
  };
  const Seen before = look(*store_);
  ASSERT_EQ(before.files.size(), 6u);
  EXPECT_EQ(before.files[0], (std::vector<std::string>{"a:one/first", "a:one/second", "b:two/x"}));
  EXPECT_EQ(before.files[5], before.files[0]);  // digest 1's proof with "second"
  EXPECT_EQ(before.by_b.size(), 2u);            // both proofs of digest 1
  EXPECT_EQ(before.by_a.size(), 3u);
  EXPECT_EQ(before.by_job_a.size(), 2u);
  EXPECT_EQ(before.digests_a, 2);
  EXPECT_EQ(before.digests_b, 1);
  const int64_t files = StoredFiles();
  ASSERT_EQ(files, 6);
  store_.reset();

  absl::Status older = ::anchord::testing::SqliteExec(
      path(), kFilesByDigest +
                  "CREATE INDEX files_by_job ON files (job, digest);"
                  "INSERT INTO files (digest, job, source_path, filename, size_bytes, mime_type) "
                  "VALUES (zeroblob(32), 'b', 'orphan', 'o.pdf', 1, '');");
  ASSERT_TRUE(older.ok()) << older;
  const std::string digest_column =
      "SELECT COUNT(*) FROM pragma_table_info('files') WHERE name = 'digest'";
  ASSERT_EQ(CountRows(digest_column), 1);
  auto reopened = OpenSqlitePollerStore(path());
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  store_ = std::move(*reopened);
  EXPECT_EQ(CountRows(digest_column), 0);
  EXPECT_EQ(CountRows("SELECT COUNT(*) FROM files"), files);  // the orphan is gone
  EXPECT_EQ(CountRows("SELECT COUNT(*) FROM sqlite_master WHERE name = 'files_by_job'"), 0);
  const Seen after = look(*store_);
  EXPECT_EQ(after.files, before.files);
  EXPECT_EQ(after.by_a, before.by_a);
  EXPECT_EQ(after.by_b, before.by_b);
  EXPECT_EQ(after.by_job_a, before.by_job_a);
  EXPECT_EQ(after.digests_a, before.digests_a);
  EXPECT_EQ(after.digests_b, before.digests_b);

  // After the upgrade: a third provider's file joins digest 1's, a repeated file is stored once,
  // and a new digest's file is found by its job.
  auto more = TrackAndCompare({Pending(Digest(1), "id-1c", "third", "c", "three/y"),
                               Pending(Digest(1), "id-1", "fake", "a", "one/first"),
                               Pending(Digest(3), "id-3", "fake", "c")},
                              kT0 + absl::Seconds(2));
  ASSERT_EQ(more.size(), 3u);
  EXPECT_EQ(more[0].proof.files.size(), 4u);
  EXPECT_EQ(more[2].proof.files.size(), 1u);
  // Digest 1 (an older release's) keeps its new file in files, the new digest 3 in its row.
  EXPECT_EQ(StoredFiles(), files + 2);
  EXPECT_EQ(CountRows("SELECT COUNT(*) FROM files"), files + 1);
  ListFilter c;
  c.job = "c";
  auto by_c = store_->List(c, 0, 100);
  ASSERT_TRUE(by_c.ok()) << by_c.status();
  ASSERT_EQ(by_c->size(), 4u);  // digest 1's three proofs and digest 3's
  auto sc = store_->Summarize("c");
  ASSERT_TRUE(sc.ok());
  EXPECT_EQ(sc->digests, 2);
}

}  // namespace
}  // namespace anchord::poller
