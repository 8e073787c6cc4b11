// Joined Merkle proofs verify like any OpenTimestamps proof: with libs/ots Verify against a
// proof-of-work-checked header, and with the reference python library (tests/tools/check_ots.py).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>

#include "absl/strings/str_cat.h"
#include "libs/merkle/merkle.h"
#include "libs/ots/verify.h"
#include "tests/ots/ots_test_util.h"

namespace anchord::merkle {
namespace {

using ::testing::HasSubstr;
using namespace ::anchord::ots::testing_util;

constexpr int64_t kHeight = 812345;
constexpr uint32_t kBlockTime = 1700000000;

std::string RandomBytes(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

// A batch of files, its tree, and a root proof shaped like a provider's after upgrade: a pending
// attestation, and the path through a Bitcoin transaction (prepend/append tx bytes, sha256d) and
// the block's Merkle branch (sibling, sha256d per level) to a Bitcoin attestation, whose
// commitment is the merkle root of a header mined here.
class MerkleAnchored : public ::testing::Test {
 protected:
  void SetUp() override {
    std::mt19937_64 rng(77);
    std::vector<std::string> nonces;
    for (int i = 0; i < 37; ++i) {
      digests_.push_back(*Digest::FromBytes(RandomBytes(rng, kDigestSize)));
      nonces.push_back(RandomNonce());
    }
    auto tree = Tree::Build(digests_, nonces);
    ASSERT_TRUE(tree.ok()) << tree.status();
    tree_ = std::make_unique<Tree>(*std::move(tree));

    ots::DetachedFile root;
    root.digest = tree_->root().raw();
    root.timestamp = std::make_shared<ots::Timestamp>(root.digest);
    root.timestamp->AddAttestation(ots::Attestation::Pending("https://calendar.example.test"));
    auto n = *root.timestamp->AddOp(ots::Op::Prepend(RandomBytes(rng, 41)));
    n = *n->AddOp(ots::Op::Append(RandomBytes(rng, 27)));
    n = *(*n->AddOp(ots::Op::Sha256()))->AddOp(ots::Op::Sha256());  // txid
    for (int level = 0; level < 4; ++level) {
      const std::string sibling = RandomBytes(rng, 32);
      n = *n->AddOp(level % 2 ? ots::Op::Prepend(sibling) : ots::Op::Append(sibling));
      n = *(*n->AddOp(ots::Op::Sha256()))->AddOp(ots::Op::Sha256());
    }
    n->AddAttestation(ots::Attestation::Bitcoin(kHeight));
    commitment_ = n->msg();
    header_ = MineRegtestHeader(commitment_, kBlockTime);
    ASSERT_FALSE(header_.empty());
    chain_.AddRaw(kHeight, header_);
    auto bytes = ots::SerializeDetached(root);
    ASSERT_TRUE(bytes.ok());
    root_ots_ = *bytes;
  }

  ots::DetachedFile ParseOrDie(const std::string& bytes) {
    auto p = ots::ParseDetached(bytes);
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? *std::move(p) : ots::DetachedFile{};
  }

  // Runs the reference checker; returns its exit status and sets *out to its JSON.
  int Check(const std::string& proof_bytes, absl::string_view digest, std::string* out) {
    const std::string proof = dir_.File("proof.ots");
    const std::string roots = dir_.File("roots.json");
    WriteAll(proof, proof_bytes);
    WriteAll(roots, absl::StrCat("{\"", kHeight, "\": {\"header_hex\": \"", Hex(header_),
                                 "\", \"status\": \"regtest header mined by the test\"}}"));
    const std::string cmd =
        absl::StrCat("/usr/bin/python3 ", ANCHORD_OTS_CHECKER, " --strict --roots ", roots, " ",
                     proof, " --digest ", Hex(digest), " > ", dir_.File("out.json"), " 2>&1");
    const int rc = std::system(cmd.c_str());
    *out = ReadAll(dir_.File("out.json"));
    EXPECT_TRUE(WIFEXITED(rc)) << *out;
    return WEXITSTATUS(rc);
  }

  std::vector<Digest> digests_;
  std::unique_ptr<Tree> tree_;
  std::string commitment_, header_, root_ots_;
  FakeChain chain_;
  TempDir dir_;
};

TEST_F(MerkleAnchored, EveryJoinedProofVerifiesAgainstTheBlock) {
  auto joiner = Joiner::Parse(root_ots_);
  ASSERT_TRUE(joiner.ok()) << joiner.status();
  for (size_t i = 0; i < digests_.size(); ++i) {
    SCOPED_TRACE(i);
    auto joined = joiner->Join(digests_[i], tree_->PathBytes(i));
    ASSERT_TRUE(joined.ok()) << joined.status();
    const ots::DetachedFile proof = ParseOrDie(*joined);
    EXPECT_EQ(proof.digest, digests_[i].raw());
    const ots::VerifyResult r = ots::Verify(proof, digests_[i].bytes(), &chain_);
    EXPECT_TRUE(r.verified) << r.message;
    EXPECT_EQ(r.verdict, ots::Verdict::kVerified);
    ASSERT_TRUE(r.earliest.has_value());
    EXPECT_EQ(r.earliest->block_time, kBlockTime);
    EXPECT_EQ(r.earliest->commitment, commitment_);
  }
}

TEST_F(MerkleAnchored, AnotherFilesDigestOrATamperedPathFails) {
  const std::string proof0 = *JoinProof(digests_[0], tree_->PathBytes(0), root_ots_);
  // The proof checked against another file: digest mismatch.
  const ots::VerifyResult other = ots::Verify(ParseOrDie(proof0), digests_[1].bytes(), &chain_);
  EXPECT_FALSE(other.verified);
  EXPECT_EQ(other.verdict, ots::Verdict::kDigestMismatch);
  // Joining file 1's digest with file 0's path is refused.
  EXPECT_EQ(JoinProof(digests_[1], tree_->PathBytes(0), root_ots_).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // A sibling flipped inside a joined proof (bypassing Join's check) still parses, and the
  // verifier rejects it: the Bitcoin commitment no longer equals the block's merkle root.
  std::string tampered = proof0;
  tampered[65 + 19 + 2 + 5] ^= 0x01;
  const ots::VerifyResult bad = ots::Verify(ParseOrDie(tampered), digests_[0].bytes(), &chain_);
  EXPECT_FALSE(bad.verified);
  EXPECT_EQ(bad.verdict, ots::Verdict::kMismatch);
  std::string path = tree_->PathBytes(0);
  path[19 + 2 + 5] ^= 0x01;
  EXPECT_EQ(JoinProof(digests_[0], path, root_ots_).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(MerkleAnchored, ReferenceLibraryAcceptsJoinedProofs) {
  for (size_t i : {size_t{0}, size_t{17}, digests_.size() - 1}) {
    SCOPED_TRACE(i);
    auto joined = JoinProof(digests_[i], tree_->PathBytes(i), root_ots_);
    ASSERT_TRUE(joined.ok()) << joined.status();
    std::string out;
    EXPECT_EQ(Check(*joined, digests_[i].bytes(), &out), 0) << out;
    EXPECT_THAT(out, HasSubstr(absl::StrCat("\"height\": ", kHeight)));
    EXPECT_THAT(out, HasSubstr("\"root_check\": \"match\""));
    EXPECT_THAT(out, HasSubstr(absl::StrCat("\"block_time\": ", kBlockTime)));
    EXPECT_THAT(out, HasSubstr("\"reserialized_identical\": true"));
    EXPECT_THAT(out, HasSubstr("\"digest_matches\": true"));
  }
  // And it sees a tampered one as a root mismatch (exit 4 with --strict), another digest as 2.
  std::string tampered = *JoinProof(digests_[0], tree_->PathBytes(0), root_ots_);
  tampered[65 + 19 + 2 + 5] ^= 0x01;
  std::string out;
  EXPECT_EQ(Check(tampered, digests_[0].bytes(), &out), 4) << out;
  EXPECT_EQ(
      Check(*JoinProof(digests_[0], tree_->PathBytes(0), root_ots_), digests_[1].bytes(), &out), 2)
      << out;
}

TEST_F(MerkleAnchored, ReferenceLibraryReadsPathOnlyProofs) {
  const std::string record = "proofledger:proof/7f3e2c1a-aaaa-4bbb-8ccc-0123456789ab";
  auto proof = PathOnlyProof(digests_[5], tree_->PathBytes(5), record);
  ASSERT_TRUE(proof.ok()) << proof.status();
  std::string out;
  EXPECT_EQ(Check(*proof, digests_[5].bytes(), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("\"type\": \"unknown\""));
  EXPECT_THAT(out, HasSubstr("\"tag_hex\": \"616e63686f726401\""));
  EXPECT_THAT(out, HasSubstr(absl::StrCat("\"payload_hex\": \"", Hex(record), "\"")));
  EXPECT_THAT(out, HasSubstr(absl::StrCat("\"commitment_hex\": \"", tree_->root().hex(), "\"")));
  // libs/ots: parses, nothing verifiable, the record is an unsupported attestation.
  const ots::VerifyResult r = ots::Verify(ParseOrDie(*proof), digests_[5].bytes(), &chain_);
  EXPECT_FALSE(r.verified);
  EXPECT_EQ(r.verdict, ots::Verdict::kNotVerifiable);
  ASSERT_EQ(r.attestations.size(), 1u);
  EXPECT_EQ(r.attestations[0].status, ots::AttestationStatus::kUnsupported);
}

}  // namespace
}  // namespace anchord::merkle
