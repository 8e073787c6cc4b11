// Merkle batch leaves in the poller (joined to their root's proof), evidence hand-off and
// calendar upgrades, the webhook, and the stall fallback.
#include <gtest/gtest.h>
#include <httplib.h>
#include <prometheus/registry.h>

#include <functional>
#include <map>
#include <set>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "libs/common/clock.h"
#include "libs/common/hex.h"
#include "libs/merkle/merkle.h"
#include "libs/merkle/sealed_batch.h"
#include "libs/ots/ots.h"
#include "services/poller/convert.h"
#include "services/poller/event_bus.h"
#include "services/poller/leaf_proof.h"
#include "services/poller/poll_engine.h"
#include "services/poller/webhook.h"
#include "tests/poller/test_util.h"

namespace anchord::poller {
namespace {

using providers::RecordState;
using testing::Digest;
using testing::FakeProvider;
using testing::MakeOts;
using testing::Pending;
using testing::TempDir;
namespace v1 = anchord::v1;

constexpr int64_t kHeight = 812345;
constexpr int kLeaves = 5;

// A real .ots of `root`: the digest itself carries a Bitcoin attestation.
std::string RootOts(const std::string& root, uint64_t height = kHeight) {
  ots::DetachedFile f;
  f.digest = root;
  f.timestamp = std::make_shared<ots::Timestamp>(root);
  f.timestamp->AddAttestation(ots::Attestation::Bitcoin(height));
  auto bytes = ots::SerializeDetached(f);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  return bytes.ok() ? *bytes : std::string();
}

// Depth-first search (bounded depth) for a node with message `msg` carrying a Bitcoin attestation
// at `height`.
bool HasBitcoinAt(const ots::Timestamp& t, const std::string& msg, uint64_t height, int depth = 0) {
  if (depth > 300) return false;
  if (t.msg() == msg) {
    for (const auto& a : t.attestations()) {
      if (a.kind == ots::Attestation::Kind::kBitcoin && a.height == height) return true;
    }
  }
  for (const auto& [op, child] : t.ops()) {
    if (child && HasBitcoinAt(*child, msg, height, depth + 1)) return true;
  }
  return false;
}

struct Batch {
  std::vector<std::string> digests;
  std::vector<std::string> paths;
  std::string root;
  std::shared_ptr<const merkle::SealedBatch> sealed;  // for the batch form (TrackInput::batch)
};

Batch MakeBatch(int first, int n) {
  Batch b;
  std::vector<std::string> nonces;
  for (int i = 0; i < n; ++i) {
    b.digests.push_back(testing::DigestBytes(first + i));
    nonces.push_back(merkle::RandomNonce());
  }
  std::vector<anchord::Digest> leaves;
  for (const std::string& d : b.digests) leaves.push_back(*anchord::Digest::FromBytes(d));
  auto tree = merkle::Tree::Build(leaves, nonces);
  EXPECT_TRUE(tree.ok()) << tree.status();
  if (!tree.ok()) return b;
  b.root = tree->root().raw();
  for (int i = 0; i < n; ++i) b.paths.push_back(tree->PathBytes(i));
  auto encoded = merkle::EncodeBatchLeaves(b.digests, nonces);
  EXPECT_TRUE(encoded.ok()) << encoded.status();
  if (!encoded.ok()) return b;
  auto sealed = merkle::SealedBatch::Decode(*encoded, b.root);
  EXPECT_TRUE(sealed.ok()) << sealed.status();
  if (sealed.ok()) b.sealed = *sealed;
  return b;
}

class PollerMerkleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    auto s = OpenSqlitePollerStore(dir_.File("poller.db"));
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
    sub_ = bus_.Subscribe({}, 10000, nullptr);
    batch_ = MakeBatch(1, kLeaves);
    ASSERT_EQ(batch_.root.size(), 32u);
  }

  std::unique_ptr<PollEngine> MakeEngine(FakeProvider* p, PollEngineOptions opts = {}) {
    return std::make_unique<PollEngine>(store_.get(), &bus_, &metrics_, &clock_,
                                        std::vector<providers::Provider*>{p}, opts);
  }
  TrackInput LeafInput(int i) {
    TrackInput in = Pending(batch_.digests[i], "root-id", "fake", "job", absl::StrCat("f/", i));
    in.proof.merkle_root = batch_.root;
    in.proof.merkle_path = batch_.paths[i];
    if (batch_form_) {
      in.batch = batch_.sealed;
      in.proof.leaf_index = i;
    }
    return in;
  }
  TrackInput RootInput() {
    TrackInput in = Pending(batch_.root, "root-id", "fake", "job", "merkle-batch/root");
    in.proof.leaf_count = kLeaves;
    if (batch_form_) in.batch = batch_.sealed;
    return in;
  }
  ProofRow Get(const std::string& digest) { return Get(*anchord::Digest::FromBytes(digest)); }
  ProofRow Get(const anchord::Digest& digest) {
    auto r = store_->Get(digest, "fake");
    EXPECT_TRUE(r.ok() && r->has_value());
    return r.ok() && r->has_value() ? **r : ProofRow{};
  }
  // (type, digest) of the events published so far.
  std::vector<std::pair<v1::ProofEventType, std::string>> Events() {
    std::vector<std::pair<v1::ProofEventType, std::string>> out;
    for (int i = 0; i < 100000; ++i) {
      EventPtr ev = sub_->Pop();
      if (!ev) break;
      out.emplace_back(ev->type(), ev->proof().digest());
    }
    return out;
  }
  std::set<std::string> ConfirmedWithoutOtsOf() {
    auto rows = store_->ConfirmedWithoutOts("fake", 100);
    EXPECT_TRUE(rows.ok());
    std::set<std::string> out;
    if (rows.ok()) {
      for (const ProofRow& r : *rows) out.insert(r.digest.raw());
    }
    return out;
  }
  void TrackAll(const std::vector<TrackInput>& in) {
    auto r = store_->Track(in, clock_.Now());
    ASSERT_TRUE(r.ok()) << r.status();
  }

  TempDir dir_;
  std::unique_ptr<PollerStore> store_;
  EventBus bus_;
  EventBus::SubscriptionPtr sub_;
  FakeClock clock_;
  prometheus::Registry registry_;
  PollerMetrics metrics_{registry_};
  Batch batch_;
  bool batch_form_ = false;  // leaves handed off in the batch form (no path stored)
};

// The confirmation paths, with leaves handed off with their paths or in the batch form (their
// paths derived from the root's stored tree): the same states, events, sizes and proofs.
class PollerMerkleFormTest : public PollerMerkleTest, public ::testing::WithParamInterface<bool> {
 protected:
  void SetUp() override {
    PollerMerkleTest::SetUp();
    batch_form_ = GetParam();
  }
};

TEST_F(PollerMerkleTest, LeavesAreNeverCheckedOrStalledThemselves) {
  std::vector<TrackInput> in;
  for (int i = 0; i < kLeaves; ++i) in.push_back(LeafInput(i));
  in.push_back(RootInput());
  TrackAll(in);
  EXPECT_TRUE(Get(batch_.digests[0]).is_leaf());
  EXPECT_EQ(Get(batch_.digests[0]).merkle_path, batch_.paths[0]);
  EXPECT_EQ(Get(batch_.root).leaf_count, kLeaves);

  auto to_check = store_->PendingToCheck("fake", absl::InfiniteFuture(), 100);
  ASSERT_TRUE(to_check.ok());
  ASSERT_EQ(to_check->size(), 1u);
  EXPECT_EQ((*to_check)[0].digest.raw(), batch_.root);
  auto stalled = store_->NewlyStalled("fake", clock_.Now() + absl::Hours(100), 100);
  ASSERT_TRUE(stalled.ok());
  ASSERT_EQ(stalled->size(), 1u);
  EXPECT_EQ((*stalled)[0].digest.raw(), batch_.root);

  // A provider without a list: one lookup per round, and only of the root.
  FakeProvider p("fake", /*list=*/false);
  p.SetRecord("root-id", batch_.root, RecordState::kPending);
  auto engine = MakeEngine(&p);
  clock_.Advance(absl::Seconds(1));
  engine->RunRound(&p);
  EXPECT_EQ(p.lookup_order(), std::vector<std::string>{"root-id"});
  // With a list walk the leaves (which share the root's proof id) are not looked up either.
  FakeProvider l("fake", /*list=*/true);
  auto engine2 = MakeEngine(&l);
  engine2->RunRound(&l);
  EXPECT_EQ(l.lookup_order(), std::vector<std::string>{"root-id"});
}

TEST_P(PollerMerkleFormTest, ConfirmedRootConfirmsEveryLeafWithAJoinedProof) {
  std::vector<TrackInput> in;
  for (int i = 0; i < kLeaves - 1; ++i) in.push_back(LeafInput(i));
  in.push_back(RootInput());
  TrackAll(in);
  Events();  // (the store publishes nothing; drained for clarity)

  FakeProvider p("fake", /*list=*/false);
  p.SetRecord("root-id", batch_.root, RecordState::kConfirmed, kHeight);
  const std::string root_ots = RootOts(batch_.root);
  ASSERT_FALSE(root_ots.empty());
  p.SetOts("root-id", root_ots);
  auto engine = MakeEngine(&p);
  clock_.Advance(absl::Seconds(1));
  RoundStats s = engine->RunRound(&p);
  EXPECT_EQ(s.confirmed, 1);
  EXPECT_EQ(s.ots_stored, 1);
  EXPECT_EQ(p.total_lookups(), 1);

  ProofRow root = Get(batch_.root);
  EXPECT_EQ(root.state, v1::DIGEST_STATE_CONFIRMED);
  EXPECT_EQ(root.ots_size, static_cast<int64_t>(root_ots.size()));

  std::map<std::string, std::vector<v1::ProofEventType>> per_digest;
  for (const auto& [type, digest] : Events()) per_digest[digest].push_back(type);
  for (int i = 0; i < kLeaves - 1; ++i) {
    const std::string& d = batch_.digests[i];
    ProofRow leaf = Get(d);
    EXPECT_EQ(leaf.state, v1::DIGEST_STATE_CONFIRMED) << i;
    EXPECT_EQ(leaf.block_height, kHeight);
    EXPECT_EQ(leaf.ots_size, static_cast<int64_t>(root_ots.size() + batch_.paths[i].size()));
    EXPECT_TRUE(leaf.ots_available());
    // Exactly one CONFIRMED, then one OTS_STORED, for every leaf.
    EXPECT_EQ(per_digest[d], (std::vector<v1::ProofEventType>{v1::PROOF_EVENT_TYPE_CONFIRMED,
                                                              v1::PROOF_EVENT_TYPE_OTS_STORED}))
        << i;

    // The downloadable proof of the leaf: a standalone .ots of the leaf's digest whose path
    // ends at the root with the root's Bitcoin attestation.
    auto ots_bytes = LoadProofOts(store_.get(), *anchord::Digest::FromBytes(d), "fake");
    ASSERT_TRUE(ots_bytes.ok()) << ots_bytes.status();
    ASSERT_TRUE(ots_bytes->has_value());
    EXPECT_EQ(static_cast<int64_t>((*ots_bytes)->size()), leaf.ots_size);
    auto parsed = ots::ParseDetached(**ots_bytes);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(parsed->digest, d);
    ASSERT_NE(parsed->timestamp, nullptr);
    EXPECT_TRUE(HasBitcoinAt(*parsed->timestamp, batch_.root, kHeight));
    auto any_provider = LoadProofOts(store_.get(), *anchord::Digest::FromBytes(d), "");
    ASSERT_TRUE(any_provider.ok());
    ASSERT_TRUE(any_provider->has_value());
    EXPECT_EQ(**any_provider, **ots_bytes);
  }
  EXPECT_EQ(per_digest[batch_.root],
            (std::vector<v1::ProofEventType>{v1::PROOF_EVENT_TYPE_CONFIRMED,
                                             v1::PROOF_EVENT_TYPE_OTS_STORED}));
  auto root_dl = LoadProofOts(store_.get(), *anchord::Digest::FromBytes(batch_.root), "fake");
  ASSERT_TRUE(root_dl.ok() && root_dl->has_value());
  EXPECT_EQ(**root_dl, root_ots);

  // The last leaf is handed off after its root was confirmed: confirmed at once.
  clock_.Advance(absl::Seconds(1));
  auto late = store_->Track({LeafInput(kLeaves - 1)}, clock_.Now());
  ASSERT_TRUE(late.ok()) << late.status();
  ASSERT_EQ(late->size(), 1u);
  EXPECT_TRUE((*late)[0].inserted);
  EXPECT_TRUE((*late)[0].state_changed);
  EXPECT_EQ((*late)[0].proof.state, v1::DIGEST_STATE_CONFIRMED);
  EXPECT_EQ((*late)[0].proof.block_height, kHeight);
  EXPECT_EQ((*late)[0].proof.ots_size,
            static_cast<int64_t>(root_ots.size() + batch_.paths[kLeaves - 1].size()));
  auto late_ots =
      LoadProofOts(store_.get(), *anchord::Digest::FromBytes(batch_.digests[kLeaves - 1]), "fake");
  ASSERT_TRUE(late_ots.ok() && late_ots->has_value());
  auto late_parsed = ots::ParseDetached(**late_ots);
  ASSERT_TRUE(late_parsed.ok()) << late_parsed.status();
  EXPECT_EQ(late_parsed->digest, batch_.digests[kLeaves - 1]);
  EXPECT_TRUE(HasBitcoinAt(*late_parsed->timestamp, batch_.root, kHeight));
  // Nothing left to look up or download.
  engine->RunRound(&p);
  EXPECT_EQ(p.total_lookups(), 1);
  EXPECT_EQ(p.downloads(), 1);
}

TEST_P(PollerMerkleFormTest, RootConfirmedBeforeItsOtsThenOtsLater) {
  TrackAll({LeafInput(0), LeafInput(1), RootInput()});
  FakeProvider p("fake", false);
  p.SetRecord("root-id", batch_.root, RecordState::kConfirmed, kHeight);
  auto engine = MakeEngine(&p);
  clock_.Advance(absl::Seconds(1));
  engine->RunRound(&p);
  EXPECT_EQ(Get(batch_.digests[0]).state, v1::DIGEST_STATE_CONFIRMED);
  EXPECT_EQ(Get(batch_.digests[0]).ots_size, 0);
  // The provider gives .ots files: until the root's arrives, the leaf has nothing to offer
  // (a path-only proof would be a worse proof than the one about to come).
  auto waiting = LoadProofOts(store_.get(), *anchord::Digest::FromBytes(batch_.digests[0]), "fake");
  ASSERT_TRUE(waiting.ok());
  EXPECT_FALSE(waiting->has_value());
  // For a provider that never gives one (ProofLedger), a confirmed leaf gets its path and the
  // provider's record of the root.
  auto none =
      LoadProofOts(store_.get(), *anchord::Digest::FromBytes(batch_.digests[0]), "fake", {"fake"});
  ASSERT_TRUE(none.ok());
  ASSERT_TRUE(none->has_value());
  auto path_only = ots::ParseDetached(**none);
  ASSERT_TRUE(path_only.ok()) << path_only.status();
  EXPECT_EQ(path_only->digest, batch_.digests[0]);
  auto confirmed_only = ConfirmedWithoutOtsOf();
  EXPECT_EQ(confirmed_only, std::set<std::string>{batch_.root});  // not the leaves

  std::map<std::string, std::vector<v1::ProofEventType>> first;
  for (const auto& [type, digest] : Events()) first[digest].push_back(type);
  EXPECT_EQ(first[batch_.digests[0]],
            std::vector<v1::ProofEventType>{v1::PROOF_EVENT_TYPE_CONFIRMED});

  const std::string root_ots = RootOts(batch_.root);
  p.SetOts("root-id", root_ots);
  engine->RunRound(&p);
  EXPECT_EQ(Get(batch_.digests[1]).ots_size,
            static_cast<int64_t>(root_ots.size() + batch_.paths[1].size()));
  std::map<std::string, std::vector<v1::ProofEventType>> second;
  for (const auto& [type, digest] : Events()) second[digest].push_back(type);
  // Already confirmed: only the evidence is news.
  EXPECT_EQ(second[batch_.digests[1]],
            std::vector<v1::ProofEventType>{v1::PROOF_EVENT_TYPE_OTS_STORED});
  EXPECT_EQ(second[batch_.root], std::vector<v1::ProofEventType>{v1::PROOF_EVENT_TYPE_OTS_STORED});
}

INSTANTIATE_TEST_SUITE_P(Forms, PollerMerkleFormTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "BatchForm" : "PathForm";
                         });

TEST_F(PollerMerkleTest, FailedRootFailsLeaves) {
  TrackAll({LeafInput(0), LeafInput(1), RootInput()});
  FakeProvider p("fake", false);
  p.SetRecord("root-id", batch_.root, RecordState::kFailed);
  auto engine = MakeEngine(&p);
  clock_.Advance(absl::Seconds(1));
  engine->RunRound(&p);
  EXPECT_EQ(Get(batch_.root).state, v1::DIGEST_STATE_FAILED);
  EXPECT_EQ(Get(batch_.digests[0]).state, v1::DIGEST_STATE_FAILED);
  EXPECT_EQ(Get(batch_.digests[1]).state, v1::DIGEST_STATE_FAILED);
  int failed_events = 0;
  for (const auto& [type, digest] : Events()) failed_events += type == v1::PROOF_EVENT_TYPE_FAILED;
  EXPECT_EQ(failed_events, 3);
}

// --- ValidateTrackRequest ----------------------------------------------------------------------

v1::TrackRequest LeafReq(const Batch& b, int i) {
  v1::TrackRequest r;
  r.set_request_id("r1");
  auto* p = r.mutable_proof();
  p->set_digest(b.digests[i]);
  p->set_provider("fake");
  p->set_proof_id("root-id");
  p->set_state(v1::DIGEST_STATE_SUBMITTED);
  p->set_merkle_root(b.root);
  auto* f = p->add_files();
  f->set_filename("a.pdf");
  f->set_size_bytes(10);
  f->set_source_path("docs/a.pdf");
  r.set_merkle_path(b.paths[i]);
  return r;
}

void ExpectInvalid(const v1::TrackRequest& r, const std::string& field) {
  auto in = ValidateTrackRequest(r);
  EXPECT_EQ(in.status().code(), absl::StatusCode::kInvalidArgument) << field;
  EXPECT_TRUE(absl::StartsWith(in.status().message(), field + ":"))
      << field << " / " << in.status().message();
}

TEST_F(PollerMerkleTest, ValidateTrackRequestChecksPathRootAndEvidence) {
  v1::TrackRequest ok = LeafReq(batch_, 2);
  auto in = ValidateTrackRequest(ok);
  ASSERT_TRUE(in.ok()) << in.status();
  EXPECT_EQ(in->proof.merkle_root, batch_.root);
  EXPECT_EQ(in->proof.merkle_path, batch_.paths[2]);

  v1::TrackRequest other_path = ok;
  other_path.set_merkle_path(batch_.paths[3]);  // another leaf's path
  ExpectInvalid(other_path, "merkle_path");
  v1::TrackRequest other_root = ok;
  other_root.mutable_proof()->set_merkle_root(MakeBatch(100, 3).root);
  ExpectInvalid(other_root, "merkle_path");
  v1::TrackRequest short_root = ok;
  short_root.mutable_proof()->set_merkle_root(batch_.root.substr(0, 31));
  ExpectInvalid(short_root, "proof.merkle_root");
  v1::TrackRequest no_path = ok;
  no_path.clear_merkle_path();
  ExpectInvalid(no_path, "merkle_path");
  v1::TrackRequest garbage_path = ok;
  garbage_path.set_merkle_path(std::string("\x01\x02\x03", 3));
  ExpectInvalid(garbage_path, "merkle_path");
  v1::TrackRequest truncated_path = ok;
  truncated_path.set_merkle_path(batch_.paths[2].substr(0, batch_.paths[2].size() - 1));
  ExpectInvalid(truncated_path, "merkle_path");
  v1::TrackRequest path_without_root = ok;
  path_without_root.mutable_proof()->clear_merkle_root();
  ExpectInvalid(path_without_root, "merkle_path");
  v1::TrackRequest negative = ok;
  negative.mutable_proof()->set_merkle_leaf_count(-1);
  ExpectInvalid(negative, "proof.merkle_leaf_count");

  v1::TrackRequest plain = ok;
  plain.mutable_proof()->clear_merkle_root();
  plain.clear_merkle_path();
  plain.set_evidence(MakeOts(batch_.digests[2]));
  auto with_evidence = ValidateTrackRequest(plain);
  ASSERT_TRUE(with_evidence.ok()) << with_evidence.status();
  EXPECT_EQ(with_evidence->evidence, MakeOts(batch_.digests[2]));
  v1::TrackRequest foreign = plain;
  foreign.set_evidence(MakeOts(Digest(77)));
  ExpectInvalid(foreign, "evidence");
  v1::TrackRequest malformed = plain;
  std::string bad = MakeOts(batch_.digests[2]);
  malformed.set_evidence(bad.substr(0, bad.size() - 3));
  ExpectInvalid(malformed, "evidence");
  v1::TrackRequest bad_op = plain;
  bad[65] = '\x02';  // the first op after the digest: not an op
  bad_op.set_evidence(bad);
  ExpectInvalid(bad_op, "evidence");
}

// --- Evidence -----------------------------------------------------------------------------------

TEST_F(PollerMerkleTest, EvidenceIsStoredWhilePendingAndUpgradedByLookups) {
  const anchord::Digest d = Digest(50);
  const std::string pending_ots = MakeOts(d, 40);
  TrackInput in = Pending(d, "cal-1");
  in.evidence = pending_ots;
  TrackAll({in});
  ProofRow row = Get(d);
  EXPECT_EQ(row.state, v1::DIGEST_STATE_PENDING);
  EXPECT_EQ(row.ots_size, static_cast<int64_t>(pending_ots.size()));
  auto stored = store_->GetOts(d, "fake");
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ(**stored, pending_ots);
  // Stored evidence is not mistaken for a confirmed proof's download.
  EXPECT_TRUE(ConfirmedWithoutOtsOf().empty());

  FakeProvider p("fake", false);
  p.SetRecord("cal-1", d, RecordState::kPending);
  auto engine = MakeEngine(&p);
  clock_.Advance(absl::Seconds(1));

  // An invalid upgrade (another digest's .ots) is never stored.
  p.SetRecordEvidence("cal-1", MakeOts(Digest(51), 60));
  engine->RunRound(&p);
  EXPECT_EQ(p.last_ref_evidence("cal-1"), pending_ots);  // the calendar got its pending proof
  EXPECT_EQ(**store_->GetOts(d, "fake"), pending_ots);

  // A pending upgrade replaces it (still PENDING).
  const std::string upgraded = MakeOts(d, 80);
  p.SetRecordEvidence("cal-1", upgraded);
  engine->RunRound(&p);
  EXPECT_EQ(Get(d).state, v1::DIGEST_STATE_PENDING);
  EXPECT_EQ(**store_->GetOts(d, "fake"), upgraded);
  EXPECT_EQ(Get(d).ots_size, static_cast<int64_t>(upgraded.size()));
  EXPECT_TRUE(Events().empty());

  // Confirmation with a malformed .ots: confirmed, evidence unchanged.
  std::string broken = MakeOts(d, 120);
  broken.resize(broken.size() - 2);
  p.SetRecord("cal-1", d, RecordState::kConfirmed, kHeight);
  p.SetRecordEvidence("cal-1", broken);
  engine->RunRound(&p);
  EXPECT_EQ(Get(d).state, v1::DIGEST_STATE_CONFIRMED);
  EXPECT_EQ(**store_->GetOts(d, "fake"), upgraded);
}

TEST_F(PollerMerkleTest, ConfirmationCarryingEvidenceStoresIt) {
  const anchord::Digest d = Digest(60);
  TrackInput in = Pending(d, "cal-2");
  in.evidence = MakeOts(d, 40);
  TrackAll({in});
  FakeProvider p("fake", false);
  const std::string final_ots = MakeOts(d, 150);
  p.SetRecord("cal-2", d, RecordState::kConfirmed, kHeight);
  p.SetRecordEvidence("cal-2", final_ots);
  auto engine = MakeEngine(&p);
  clock_.Advance(absl::Seconds(1));
  RoundStats s = engine->RunRound(&p);
  EXPECT_EQ(s.confirmed, 1);
  EXPECT_EQ(s.ots_stored, 1);
  ProofRow row = Get(d);
  EXPECT_EQ(row.state, v1::DIGEST_STATE_CONFIRMED);
  EXPECT_EQ(row.ots_size, static_cast<int64_t>(final_ots.size()));
  EXPECT_EQ(**store_->GetOts(d, "fake"), final_ots);
  auto events = Events();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].first, v1::PROOF_EVENT_TYPE_CONFIRMED);
  EXPECT_EQ(events[1].first, v1::PROOF_EVENT_TYPE_OTS_STORED);
}

TEST_F(PollerMerkleTest, ReplaceOtsOnlyForPendingOrConfirmed) {
  const anchord::Digest d = Digest(70);
  auto none = store_->ReplaceOts(d, "fake", MakeOts(d), clock_.Now());
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  TrackInput failed = Pending(d, "x");
  failed.proof.state = v1::DIGEST_STATE_FAILED;
  TrackAll({failed});
  auto on_failed = store_->ReplaceOts(d, "fake", MakeOts(d), clock_.Now());
  ASSERT_TRUE(on_failed.ok());
  EXPECT_FALSE(on_failed->has_value());
  EXPECT_FALSE(Get(d).ots_available());
  EXPECT_FALSE(store_->ReplaceOts(d, "fake", "", clock_.Now()).ok());
}

// --- Webhook ------------------------------------------------------------------------------------

TEST_F(PollerMerkleTest, WebhookHintsPendingProofsAndRejectsTheRest) {
  for (int n = 1; n <= 3; ++n) TrackAll({Pending(Digest(200 + n), absl::StrCat("id-", n))});
  TrackInput done = Pending(Digest(210), "id-done");
  done.proof.state = v1::DIGEST_STATE_CONFIRMED;
  TrackAll({done});
  FakeProvider p("fake", /*list=*/false);
  for (int n = 1; n <= 3; ++n) {
    p.SetRecord(absl::StrCat("id-", n), Digest(200 + n), RecordState::kPending);
  }
  p.SetCallbackParser([](const std::string& body) -> absl::StatusOr<anchord::Digest> {
    if (!absl::StartsWith(body, "hash=")) return absl::InvalidArgumentError("body: no hash");
    return anchord::Digest::FromHex(body.substr(5), "hash");
  });
  PollEngineOptions opts;
  opts.max_lookups_per_round = 1;  // one lookup per round: the order is visible
  auto engine = MakeEngine(&p, opts);
  auto hook = Webhook::Start("127.0.0.1:0", {{"fake", &p}}, engine.get(), &metrics_);
  ASSERT_TRUE(hook.ok()) << hook.status();
  ASSERT_GT((*hook)->port(), 0);

  auto snapshot = [&] {
    auto rows = store_->List({}, 0, 100);
    EXPECT_TRUE(rows.ok());
    std::vector<std::tuple<std::string, int, int64_t, int64_t>> out;
    for (const ProofRow& r : *rows) {
      out.emplace_back(r.digest.raw(), r.state, absl::ToUnixMillis(r.last_checked_at),
                       absl::ToUnixMillis(r.updated_at));
    }
    return out;
  };
  const auto before = snapshot();
  httplib::Client client("127.0.0.1", (*hook)->port());
  client.set_connection_timeout(5);
  client.set_read_timeout(5);
  auto post = [&](const std::string& path, const std::string& body) {
    auto res = client.Post(path.c_str(), body, "text/plain");
    EXPECT_TRUE(res) << path;
    return res ? res->status : -1;
  };
  EXPECT_EQ(post("/callbacks/nobody", "hash=" + Digest(203).hex()), 404);
  EXPECT_EQ(post("/callbacks/fake", "garbage"), 400);
  EXPECT_EQ(post("/callbacks/fake", "hash=" + Digest(999).hex()), 404);  // unknown digest
  EXPECT_EQ(post("/callbacks/fake", "hash=" + Digest(210).hex()), 404);  // not pending
  EXPECT_EQ(post("/callbacks/fake", "hash=zz"), 400);  // the parser names the malformed hash
  EXPECT_EQ(snapshot(), before);
  EXPECT_EQ(p.total_lookups(), 0);

  // Without a hint the round looks at the first proof; with one, the hinted proof comes first.
  clock_.Advance(absl::Seconds(1));
  engine->RunRound(&p);
  EXPECT_EQ(p.lookup_order(), std::vector<std::string>{"id-1"});
  EXPECT_EQ(post("/callbacks/fake", "hash=" + Digest(203).hex()), 200);
  engine->RunRound(&p);
  EXPECT_EQ(p.lookup_order(), (std::vector<std::string>{"id-1", "id-3"}));
  // The hint is used once.
  engine->RunRound(&p);
  EXPECT_EQ(p.lookup_order().size(), 3u);
  EXPECT_EQ(p.lookup_order()[2], "id-2");
  (*hook)->Stop();
  (*hook)->Stop();  // idempotent
}

TEST_F(PollerMerkleTest, WebhookStopsRightAfterStart) {
  FakeProvider p("fake", false);
  auto engine = MakeEngine(&p);
  for (int i = 0; i < 3; ++i) {
    auto hook = Webhook::Start("127.0.0.1:0", {{"fake", &p}}, engine.get(), nullptr);
    ASSERT_TRUE(hook.ok()) << hook.status();
    (*hook)->Stop();  // must not hang
  }
  EXPECT_FALSE(Webhook::Start("no-port", {}, engine.get(), nullptr).ok());
}

// --- Stall fallback
// ---------------------------------------------------------------------------------

TEST_F(PollerMerkleTest, FallbackIsRequestedUntilAcknowledged) {
  TrackInput in = Pending(Digest(300), "id-300");
  in.proof.fallback_provider = "other";
  TrackInput plain = Pending(Digest(301), "id-301");  // no fallback asked for
  TrackAll({in, plain});
  FakeProvider p("fake", false);
  p.SetRecord("id-300", Digest(300), RecordState::kPending);
  p.SetRecord("id-301", Digest(301), RecordState::kPending);
  std::vector<ProofRow> calls;
  std::vector<absl::Status> answers = {absl::UnavailableError("submitter down"), absl::OkStatus()};
  PollEngineOptions opts;
  opts.stall_after = absl::Hours(24);
  opts.fallback = [&](const ProofRow& row) {
    calls.push_back(row);
    return calls.size() <= answers.size() ? answers[calls.size() - 1] : absl::OkStatus();
  };
  auto engine = MakeEngine(&p, opts);
  engine->RunRound(&p);
  EXPECT_TRUE(calls.empty());  // not stalled yet

  clock_.Advance(absl::Hours(25));
  engine->RunRound(&p);
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].digest, Digest(300));
  EXPECT_EQ(calls[0].fallback_provider, "other");
  ASSERT_FALSE(calls[0].files.empty());  // what the submitter needs to anchor it again
  EXPECT_EQ(calls[0].files[0].filename, "id-300.pdf");
  EXPECT_FALSE(Get(testing::DigestBytes(300)).fallback_sent);

  engine->RunRound(&p);  // it failed: asked again
  ASSERT_EQ(calls.size(), 2u);
  EXPECT_EQ(calls[1].digest, Digest(300));
  EXPECT_TRUE(Get(testing::DigestBytes(300)).fallback_sent);

  engine->RunRound(&p);  // acknowledged: never again
  engine->RunRound(&p);
  EXPECT_EQ(calls.size(), 2u);
}

TEST_F(PollerMerkleTest, StalledRootStallsLeavesAndTheirFallbacksRun) {
  TrackInput leaf = LeafInput(0);
  leaf.proof.fallback_provider = "other";
  TrackAll({leaf, LeafInput(1), RootInput()});
  FakeProvider p("fake", false);
  p.SetRecord("root-id", batch_.root, RecordState::kPending);
  std::vector<std::string> called;
  PollEngineOptions opts;
  opts.stall_after = absl::Hours(1);
  opts.fallback = [&](const ProofRow& row) {
    called.push_back(row.digest.raw());
    return absl::OkStatus();
  };
  auto engine = MakeEngine(&p, opts);
  clock_.Advance(absl::Hours(2));
  RoundStats s = engine->RunRound(&p);
  EXPECT_EQ(s.stalled, 1);  // the root; the leaves follow it
  EXPECT_TRUE(Get(batch_.root).stalled);
  EXPECT_TRUE(Get(batch_.digests[0]).stalled);
  EXPECT_TRUE(Get(batch_.digests[1]).stalled);
  EXPECT_EQ(called, std::vector<std::string>{batch_.digests[0]});
  int stalled_events = 0;
  for (const auto& [type, digest] : Events())
    stalled_events += type == v1::PROOF_EVENT_TYPE_STALLED;
  EXPECT_EQ(stalled_events, 3);
  engine->RunRound(&p);
  EXPECT_EQ(called.size(), 1u);
}

}  // namespace
}  // namespace anchord::poller
