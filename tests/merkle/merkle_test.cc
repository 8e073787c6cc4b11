// libs/merkle against an independent implementation (ots::MakeMerkleTree over ots::Timestamp
// nodes), against the real 3-file batch of the OpenTimestamps client (vectors merkle1/2/3 and
// tests/data/MANIFEST.md), and against malformed input.
#include "libs/merkle/merkle.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "libs/ots/ots.h"

namespace anchord::merkle {
namespace {

using ::testing::HasSubstr;

std::string Hex(absl::string_view b) { return absl::BytesToHexString(b); }
std::string Unhex(absl::string_view h) { return absl::HexStringToBytes(h); }

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
std::string Vector(const std::string& rel) {
  return std::string(ANCHORD_OTS_VECTORS_DIR) + "/" + rel;
}

std::string RandomBytes(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

struct Batch {
  std::vector<std::string> digests, nonces;
};
Batch RandomBatch(std::mt19937_64& rng, size_t n) {
  Batch b;
  for (size_t i = 0; i < n; ++i) {
    b.digests.push_back(RandomBytes(rng, kDigestSize));
    b.nonces.push_back(RandomBytes(rng, kNonceSize));
  }
  return b;
}

// The library's digest type from raw test bytes (always 32 here).
Digest D(absl::string_view raw) {
  absl::StatusOr<Digest> d = Digest::FromBytes(raw);
  EXPECT_TRUE(d.ok()) << d.status();
  return d.ok() ? *d : Digest();
}
std::vector<Digest> Ds(const std::vector<std::string>& raw) {
  std::vector<Digest> out;
  for (const auto& r : raw) out.push_back(D(r));
  return out;
}

Tree MustBuild(const Batch& b) {
  auto t = Tree::Build(Ds(b.digests), b.nonces);
  EXPECT_TRUE(t.ok()) << t.status();
  return *std::move(t);
}

// The reference construction: one Timestamp per digest with append(nonce), sha256, then
// ots::MakeMerkleTree over the leaves, exactly as the OTS client's stamp command does.
struct Reference {
  std::vector<std::shared_ptr<ots::Timestamp>> roots;  // message = digest i
  std::shared_ptr<ots::Timestamp> tip;
};
Reference MakeReference(const Batch& b) {
  Reference r;
  std::vector<std::shared_ptr<ots::Timestamp>> leaves;
  for (size_t i = 0; i < b.digests.size(); ++i) {
    r.roots.push_back(std::make_shared<ots::Timestamp>(b.digests[i]));
    auto appended = r.roots.back()->AddOp(ots::Op::Append(b.nonces[i]));
    EXPECT_TRUE(appended.ok());
    auto leaf = (*appended)->AddOp(ots::Op::Sha256());
    EXPECT_TRUE(leaf.ok());
    leaves.push_back(*leaf);
  }
  auto tip = ots::MakeMerkleTree(leaves);
  EXPECT_TRUE(tip.ok()) << tip.status();
  r.tip = *tip;
  return r;
}

std::string SerializeTree(const ots::Timestamp& t) {
  std::string out;
  EXPECT_TRUE(t.Serialize(&out).ok());
  return out;
}

// A root proof: the root, `depth` sha256 ops, then a Bitcoin attestation.
std::string RootOts(absl::string_view root, int depth = 1, uint64_t height = 1) {
  ots::DetachedFile f;
  f.digest = std::string(root);
  f.timestamp = std::make_shared<ots::Timestamp>(f.digest);
  auto node = f.timestamp;
  for (int i = 0; i < depth; ++i) node = *node->AddOp(ots::Op::Sha256());
  node->AddAttestation(ots::Attestation::Bitcoin(height));
  auto bytes = ots::SerializeDetached(f);
  EXPECT_TRUE(bytes.ok());
  return *bytes;
}

TEST(MerkleTree, RootAndPathsMatchOtsMakeMerkleTree) {
  std::mt19937_64 rng(20240601);
  std::vector<size_t> sizes;
  for (size_t n = 1; n <= 40; ++n) sizes.push_back(n);
  for (int k = 0; k < 6; ++k) sizes.push_back(41 + rng() % 1200);
  sizes.push_back(1024);
  sizes.push_back(1025);
  for (size_t n : sizes) {
    SCOPED_TRACE(absl::StrCat("n=", n));
    const Batch b = RandomBatch(rng, n);
    const Tree t = MustBuild(b);
    Reference ref = MakeReference(b);
    ASSERT_EQ(t.size(), n);
    EXPECT_EQ(Hex(t.root().raw()), Hex(ref.tip->msg()));
    // With an attestation on the tip, the reference chain from digest i serializes as the path's
    // op bytes followed by that attestation: PathBytes is byte-for-byte the OTS encoding.
    ref.tip->AddAttestation(ots::Attestation::Bitcoin(7));
    ots::Timestamp lone(ref.tip->msg());
    lone.AddAttestation(ots::Attestation::Bitcoin(7));
    const std::string suffix = SerializeTree(lone);
    for (size_t i = 0; i < n; ++i) {
      const std::string path = t.PathBytes(i);
      EXPECT_EQ(Hex(SerializeTree(*ref.roots[i])), Hex(path + suffix)) << "leaf " << i;
      auto root = PathRoot(D(b.digests[i]), path);
      ASSERT_TRUE(root.ok()) << root.status();
      EXPECT_EQ(root->raw(), t.root().raw()) << "leaf " << i;
      EXPECT_EQ(t.leaf(i), ots::Sha256(b.digests[i] + b.nonces[i]));
      EXPECT_EQ(t.nonce(i), b.nonces[i]);
    }
  }
}

TEST(MerkleTree, BuildFlatEqualsBuild) {
  std::mt19937_64 rng(5);
  const Batch b = RandomBatch(rng, 333);
  std::string flat_d, flat_n;
  for (size_t i = 0; i < b.digests.size(); ++i) {
    flat_d += b.digests[i];
    flat_n += b.nonces[i];
  }
  auto flat = Tree::BuildFlat(flat_d, flat_n);
  ASSERT_TRUE(flat.ok()) << flat.status();
  const Tree t = MustBuild(b);
  EXPECT_EQ(flat->root().raw(), t.root().raw());
  for (size_t i = 0; i < b.digests.size(); ++i) EXPECT_EQ(flat->PathBytes(i), t.PathBytes(i));
}

TEST(MerkleTree, PathSizeIsCompact) {
  std::mt19937_64 rng(9);
  const Tree t = MustBuild(RandomBatch(rng, 4096));
  EXPECT_EQ(t.height(), 12u);
  for (size_t i : {size_t{0}, size_t{1}, size_t{2047}, size_t{4095}}) {
    EXPECT_EQ(t.PathBytes(i).size(), 19u + 35u * 12u);  // 439 bytes
  }
  // An odd last leaf is carried up without ops: its path is shorter.
  const Tree odd = MustBuild(RandomBatch(rng, 5));
  EXPECT_EQ(odd.PathBytes(4).size(), 19u + 35u * 1u);
  EXPECT_EQ(odd.PathBytes(0).size(), 19u + 35u * 3u);
}

// PathSize is the size of the path PathBytes builds, for every leaf of trees with odd levels.
TEST(MerkleTree, PathSizeIsThePathsSizeWithoutBuildingIt) {
  std::mt19937_64 rng(10);
  for (size_t n : {size_t{1}, size_t{2}, size_t{5}, size_t{13}, size_t{100}, size_t{1025}}) {
    const Tree t = MustBuild(RandomBatch(rng, n));
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(t.PathSize(i), t.PathBytes(i).size()) << n << " " << i;
    EXPECT_EQ(t.PathSize(n), 0u);
  }
}

TEST(MerkleTree, RejectsBadInputNamingTheIndex) {
  std::mt19937_64 rng(11);
  Batch b = RandomBatch(rng, 10);
  EXPECT_EQ(Tree::Build({}, {}).status().code(), absl::StatusCode::kInvalidArgument);
  // (A digest of the wrong size cannot reach Build: Digest::FromBytes refuses it.)
  Batch long_nonce = b;
  long_nonce.nonces[3] += "x";
  auto st = Tree::Build(Ds(long_nonce.digests), long_nonce.nonces).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(st.message(), HasSubstr("nonce 3"));
  Batch missing = b;
  missing.nonces.pop_back();
  EXPECT_EQ(Tree::Build(Ds(missing.digests), missing.nonces).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A failed CSPRNG gives an empty nonce, which must not slip into a tree.
  Batch empty_nonce = b;
  empty_nonce.nonces[0].clear();
  EXPECT_EQ(Tree::Build(Ds(empty_nonce.digests), empty_nonce.nonces).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Tree::BuildFlat("", "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Tree::BuildFlat(std::string(33, 'a'), std::string(16, 'n')).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Tree::BuildFlat(std::string(64, 'a'), std::string(16, 'n')).status().code(),
            absl::StatusCode::kInvalidArgument);
  const Tree t = MustBuild(b);
  EXPECT_EQ(t.PathBytes(10), "");
  EXPECT_EQ(t.leaf(10), "");
  EXPECT_EQ(t.nonce(10), "");
}

TEST(MerkleNonce, RandomAndRightSize) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    const std::string n = RandomNonce();
    ASSERT_EQ(n.size(), kNonceSize);
    seen.insert(n);
  }
  EXPECT_EQ(seen.size(), 100u);
  const std::string many = RandomNonces(1000);
  ASSERT_EQ(many.size(), 1000 * kNonceSize);
  std::set<std::string> distinct;
  for (size_t i = 0; i < 1000; ++i) distinct.insert(many.substr(i * kNonceSize, kNonceSize));
  EXPECT_EQ(distinct.size(), 1000u);
}

// ---- The OTS client's real batch: merkle1/2/3.txt stamped in one run (MANIFEST.md section 3).

class MerkleClientBatch : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 1; i <= 3; ++i) {
      const std::string content = ReadAll(Vector(absl::StrCat("merkle", i, ".txt")));
      ASSERT_FALSE(content.empty());
      b_.digests.push_back(ots::Sha256(content));
      proofs_.push_back(ReadAll(Vector(absl::StrCat("merkle", i, ".txt.ots"))));
    }
    // Nonces as printed in MANIFEST.md section 3.
    b_.nonces = {Unhex("0201a36ac0c73692d1cedcabff0609eb"),
                 Unhex("b63d8f213d047298b8ab4595acd8e5d0"),
                 Unhex("0e9b49ab0134508035ce2697f1ad0985")};
  }
  Batch b_;
  std::vector<std::string> proofs_;
};

TEST_F(MerkleClientBatch, RootAndLeavesAreTheManifestValues) {
  const Tree t = MustBuild(b_);
  EXPECT_EQ(Hex(t.leaf(0)), "ae59d2c0d2f5efa97df8f3cca7e85845880c102237f1a6a1b0b4c6a5ab77f494");
  EXPECT_EQ(Hex(t.leaf(1)), "9f42984ccdb96addb79884e714cc6b6b059c68f2ac3a2e07c5198c22d904de14");
  EXPECT_EQ(Hex(t.leaf(2)), "026356e7972f023930ec84c213adedc4050460973935bbd2f4df3d7bd5dec55f");
  EXPECT_EQ(Hex(t.root().raw()),
            "c8f78972680bec45199bf6f19472fe1db32ceeed4509c79f345086bf4888d3fa");
}

TEST_F(MerkleClientBatch, PathsAreTheClientsBytesAndJoiningReproducesItsProofs) {
  const Tree t = MustBuild(b_);
  // Each client proof is magic, version, sha256, digest (65 bytes), then the path ops.
  constexpr size_t kHeader = 31 + 1 + 1 + 32;
  for (size_t i = 0; i < 3; ++i) {
    const std::string path = t.PathBytes(i);
    ASSERT_GT(proofs_[i].size(), kHeader + path.size());
    EXPECT_EQ(Hex(proofs_[i].substr(kHeader, path.size())), Hex(path)) << "merkle" << i + 1;
  }
  // The calendars' part of merkle1.txt.ots (the subtree at the tip) as a detached proof of the
  // root, as a provider would hand it back; joined with each path it must give the client's files.
  auto file = ots::ParseDetached(proofs_[0]);
  ASSERT_TRUE(file.ok()) << file.status();
  std::shared_ptr<ots::Timestamp> node = file->timestamp;
  while (node->msg() != t.root().raw()) {
    ASSERT_EQ(node->ops().size(), 1u);
    node = node->ops().begin()->second;
  }
  auto root_ots = ots::SerializeDetached({ots::Op::Sha256(), t.root().raw(), node});
  ASSERT_TRUE(root_ots.ok());
  auto joiner = Joiner::Parse(*root_ots);
  ASSERT_TRUE(joiner.ok()) << joiner.status();
  for (size_t i = 0; i < 3; ++i) {
    auto joined = JoinProof(D(b_.digests[i]), t.PathBytes(i), *root_ots);
    ASSERT_TRUE(joined.ok()) << joined.status();
    EXPECT_EQ(Hex(*joined), Hex(proofs_[i])) << "merkle" << i + 1;
    auto again = joiner->Join(D(b_.digests[i]), t.PathBytes(i));
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, *joined);
  }
}

// ---- Joining.

TEST(MerkleJoin, ParsesCanonicallyAndEqualsMergingWithTheOtsLibrary) {
  std::mt19937_64 rng(3);
  const Batch b = RandomBatch(rng, 21);
  const Tree t = MustBuild(b);
  // A root proof with a fork at the root: a pending attestation and a path to Bitcoin.
  ots::DetachedFile root;
  root.digest = t.root().raw();
  root.timestamp = std::make_shared<ots::Timestamp>(root.digest);
  root.timestamp->AddAttestation(ots::Attestation::Pending("https://example.calendar.test"));
  auto n1 = *root.timestamp->AddOp(ots::Op::Prepend(Unhex("57d982df")));
  auto n2 = *(*n1->AddOp(ots::Op::Append(RandomBytes(rng, 8))))->AddOp(ots::Op::Sha256());
  n2->AddAttestation(ots::Attestation::Bitcoin(812345));
  const std::string root_ots = *ots::SerializeDetached(root);
  auto joiner = Joiner::Parse(root_ots);
  ASSERT_TRUE(joiner.ok()) << joiner.status();
  EXPECT_EQ(joiner->root().raw(), t.root().raw());

  for (size_t i = 0; i < b.digests.size(); ++i) {
    SCOPED_TRACE(i);
    auto joined = joiner->Join(D(b.digests[i]), t.PathBytes(i));
    ASSERT_TRUE(joined.ok()) << joined.status();
    auto parsed = ots::ParseDetached(*joined);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(parsed->digest, b.digests[i]);
    EXPECT_EQ(parsed->file_hash_op.tag, ots::kOpSha256);
    EXPECT_EQ(*ots::SerializeDetached(*parsed), *joined);  // canonical
    // The same proof built node by node: the path as Timestamps, the root proof merged at the tip.
    std::shared_ptr<ots::Timestamp> tip;
    auto chain = ApplyPath(D(b.digests[i]), t.PathBytes(i), &tip);
    ASSERT_TRUE(chain.ok()) << chain.status();
    ASSERT_EQ(tip->msg(), t.root().raw());
    for (const auto& a : root.timestamp->attestations()) tip->AddAttestation(a);
    for (const auto& [op, child] : root.timestamp->ops()) ASSERT_TRUE(tip->SetOp(op, child).ok());
    auto built = ots::SerializeDetached({ots::Op::Sha256(), b.digests[i], *chain});
    ASSERT_TRUE(built.ok());
    EXPECT_EQ(Hex(*built), Hex(*joined));
    auto atts = parsed->timestamp->AllAttestations();
    ASSERT_EQ(atts.size(), 2u);
  }
}

TEST(MerkleJoin, RefusesWhatDoesNotLeadToTheRoot) {
  std::mt19937_64 rng(4);
  const Batch b = RandomBatch(rng, 9);
  const Tree t = MustBuild(b);
  const std::string root_ots = RootOts(t.root().raw());
  // Another file's digest with this path.
  auto st = JoinProof(D(b.digests[1]), t.PathBytes(0), root_ots).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(st.message(), HasSubstr(Hex(t.root().raw())));
  // A tampered sibling / nonce.
  for (size_t at : {size_t{5}, size_t{19 + 2 + 7}, size_t{19 + 35 + 2 + 31}}) {
    std::string path = t.PathBytes(0);
    path[at] ^= 0x01;
    EXPECT_EQ(JoinProof(D(b.digests[0]), path, root_ots).status().code(),
              absl::StatusCode::kFailedPrecondition)
        << at;
  }
  // append <-> prepend swapped.
  std::string swapped = t.PathBytes(0);
  swapped[19] = static_cast<char>(ots::kOpPrepend);
  EXPECT_EQ(JoinProof(D(b.digests[0]), swapped, root_ots).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // A root proof about another digest.
  std::string other_root = t.root().raw();
  other_root[0] ^= 0x80;
  st = JoinProof(D(b.digests[0]), t.PathBytes(0), RootOts(other_root)).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kFailedPrecondition);
  // Malformed inputs.
  EXPECT_EQ(JoinProof(D(b.digests[0]), t.PathBytes(0), "not an ots").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(JoinProof(D(b.digests[0]), t.PathBytes(0).substr(0, 30), root_ots).status().code(),
            absl::StatusCode::kInvalidArgument);
  // A root proof whose digest is not 32 bytes (sha1 file-hash op) cannot be a root.
  ots::DetachedFile sha1;
  sha1.file_hash_op = ots::Op::Sha1();
  sha1.digest = std::string(20, 'x');
  sha1.timestamp = std::make_shared<ots::Timestamp>(sha1.digest);
  sha1.timestamp->AddAttestation(ots::Attestation::Bitcoin(1));
  EXPECT_EQ(Joiner::FromDetached(sha1).status().code(), absl::StatusCode::kFailedPrecondition);
  std::string out = "keep";
  auto joiner = Joiner::Parse(root_ots);
  ASSERT_TRUE(joiner.ok());
  EXPECT_FALSE(joiner->AppendJoined(D(b.digests[1]), t.PathBytes(0), &out).ok());
  EXPECT_EQ(out, "keep");
}

TEST(MerkleJoin, StaysWithinTheReadersRecursionLimit) {
  std::mt19937_64 rng(8);
  const Batch b = RandomBatch(rng, 1);
  const Tree t = MustBuild(b);
  const std::string path = t.PathBytes(0);  // 2 ops
  // 2 + 253 = 255 ops on the branch: the most an OTS reader accepts.
  auto ok = JoinProof(D(b.digests[0]), path, RootOts(t.root().raw(), 253));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(ots::ParseDetached(*ok).ok());
  // 2 + 254 = 256: the reader would refuse it, so joining does too.
  const std::string deep = RootOts(t.root().raw(), 254);
  auto refused = JoinProof(D(b.digests[0]), path, deep);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("255"));
  // ...and the reader indeed refuses the concatenation.
  std::string manual = deep.substr(0, 65);
  manual[32] = static_cast<char>(ots::kOpSha256);
  manual.replace(33, 32, b.digests[0]);
  manual += path + deep.substr(65);
  auto parsed = ots::ParseDetached(manual);
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(parsed.status().message(), HasSubstr(ots::kReasonRecursionLimit));
}

// ---- Path-only proofs (a provider with no .ots of the root).

TEST(MerklePathOnly, ParsesWithTheRecordAtTheRoot) {
  std::mt19937_64 rng(6);
  const Batch b = RandomBatch(rng, 12);
  const Tree t = MustBuild(b);
  const std::string record = "https://proofledger.example/proof/0f3a-77";
  for (size_t i = 0; i < b.digests.size(); ++i) {
    auto proof = PathOnlyProof(D(b.digests[i]), t.PathBytes(i), record);
    ASSERT_TRUE(proof.ok()) << proof.status();
    auto parsed = ots::ParseDetached(*proof);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(parsed->digest, b.digests[i]);
    EXPECT_EQ(*ots::SerializeDetached(*parsed), *proof);
    auto atts = parsed->timestamp->AllAttestations();
    ASSERT_EQ(atts.size(), 1u);
    EXPECT_EQ(atts[0].first, t.root().raw());
    EXPECT_EQ(atts[0].second.kind, ots::Attestation::Kind::kUnknown);
    EXPECT_EQ(Hex(atts[0].second.tag), "616e63686f726401");
    EXPECT_EQ(atts[0].second.payload, record);
    std::shared_ptr<ots::Timestamp> tip;
    ASSERT_TRUE(ApplyPath(D(b.digests[i]), t.PathBytes(i), &tip).ok());
    tip->AddAttestation(atts[0].second);
    auto found = FindPathRecord(*tip);
    ASSERT_TRUE(found.ok());
    EXPECT_EQ(*found, record);
  }
  ots::Timestamp bare(t.root().raw());
  EXPECT_EQ(FindPathRecord(bare).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(
      PathOnlyProof(D(b.digests[0]), t.PathBytes(0), std::string(kMaxRecordSize, 'r')).ok());
  EXPECT_EQ(PathOnlyProof(D(b.digests[0]), t.PathBytes(0), std::string(kMaxRecordSize + 1, 'r'))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PathOnlyProof(D(b.digests[0]), t.PathBytes(0), "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PathOnlyProof(D(b.digests[0]), t.PathBytes(0) + "\x08", record).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ---- Malformed path bytes.

absl::Status ApplyStatus(absl::string_view digest, absl::string_view path) {
  std::shared_ptr<ots::Timestamp> tip;
  return ApplyPath(D(digest), path, &tip).status();
}

TEST(MerklePath, TruncationsFailExceptAtLevelBoundaries) {
  std::mt19937_64 rng(12);
  const Batch b = RandomBatch(rng, 32);
  const Tree t = MustBuild(b);
  const std::string path = t.PathBytes(13);
  ASSERT_EQ(path.size(), 19u + 5 * 35u);
  for (size_t len = 0; len < path.size(); ++len) {
    SCOPED_TRACE(len);
    const std::string cut = path.substr(0, len);
    const bool boundary = len >= 19 && (len - 19) % 35 == 0;
    const absl::Status st = ApplyStatus(b.digests[13], cut);
    auto root = PathRoot(D(b.digests[13]), cut);
    if (boundary) {
      // A shorter path is well formed; it just ends below the root.
      EXPECT_TRUE(st.ok()) << st;
      ASSERT_TRUE(root.ok());
      EXPECT_NE(root->raw(), t.root().raw());
    } else {
      EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(st.message(), HasSubstr("byte offset"));
      EXPECT_EQ(root.status(), st);
    }
  }
}

TEST(MerklePath, RejectsUnknownMisplacedAndOversizedOps) {
  std::mt19937_64 rng(13);
  const Batch b = RandomBatch(rng, 8);
  const Tree t = MustBuild(b);
  const std::string d = b.digests[2];
  const std::string path = t.PathBytes(2);
  auto expect_invalid_at = [&](const std::string& p, size_t offset) {
    const absl::Status st = ApplyStatus(d, p);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << Hex(p);
    EXPECT_THAT(st.message(), HasSubstr(absl::StrCat("byte offset ", offset, ":"))) << st;
    EXPECT_EQ(PathRoot(D(d), p).status(), st);
    EXPECT_EQ(ValidatePath(p).status(), st);
  };
  std::string p = path;
  p[19] = '\x42';  // unknown op where a sibling op belongs
  expect_invalid_at(p, 19);
  p = path;
  p[19] = '\x02';  // a real OTS op (sha1), but not part of a Merkle path
  expect_invalid_at(p, 19);
  p = path;
  p[0] = '\x08';  // sha256 first: a digest that skips its nonce
  expect_invalid_at(p, 0);
  p = path;
  p[1] = '\x11';  // nonce length 17
  expect_invalid_at(p, 1);
  p = path;
  p[18] = '\xf0';  // no sha256 after the nonce
  expect_invalid_at(p, 18);
  p = path;
  p[20] = '\x21';  // sibling of 33 bytes
  expect_invalid_at(p, 20);
  p = path;
  p[20] = '\xa0';  // non-minimal varuint for 32 (a0 00) is not what PathBytes writes
  expect_invalid_at(p, 20);
  p = path;
  p[19 + 34] = '\xf0';  // no sha256 after the sibling
  expect_invalid_at(p, 19 + 34);
  expect_invalid_at(path + "\x08", path.size());  // trailing byte
  expect_invalid_at("", 0);
  // 64 levels are allowed, 65 are not.
  std::string level = "\xf0\x20" + std::string(32, 's') + "\x08";
  std::string longest = path.substr(0, 19);
  for (int i = 0; i < 64; ++i) longest += level;
  EXPECT_TRUE(ApplyStatus(d, longest).ok());
  auto ops = ValidatePath(longest);
  ASSERT_TRUE(ops.ok());
  EXPECT_EQ(*ops, kMaxPathOps);
  expect_invalid_at(longest + level, longest.size());
}

// Bounded random robustness run (no libFuzzer needed): random bytes, and mutations of valid paths.
// Every input either parses (and then every reader agrees and the chain is a valid OTS tree) or is
// INVALID_ARGUMENT; nothing crashes (run under ANCHORD_SANITIZE to also catch memory errors).
TEST(MerklePath, RandomInputIsRejectedOrConsistent) {
  std::mt19937_64 rng(0x6d65726b6c65);
  const Batch b = RandomBatch(rng, 50);
  const Tree t = MustBuild(b);
  const std::string d = b.digests[0];
  int parsed = 0, rejected = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::string p;
    switch (iter % 4) {
      case 0:
        p = RandomBytes(rng, rng() % 400);
        break;
      case 1: {  // random bytes behind a valid leaf step, biased to path-like bytes
        p = t.PathBytes(0).substr(0, 19);
        const size_t n = rng() % 300;
        static constexpr char kAlphabet[] = "\xf0\xf1\x08\x20\x10\x00\xff";
        for (size_t i = 0; i < n; ++i) {
          p.push_back(rng() % 2 ? kAlphabet[rng() % 7] : static_cast<char>(rng() & 0xff));
        }
        break;
      }
      default: {  // a valid path with a few mutations
        p = t.PathBytes(rng() % t.size());
        const int edits = 1 + rng() % 3;
        for (int e = 0; e < edits; ++e) {
          const size_t at = p.empty() ? 0 : rng() % p.size();
          switch (rng() % 4) {
            case 0:
              if (!p.empty()) p[at] = static_cast<char>(rng() & 0xff);
              break;
            case 1:
              if (!p.empty()) p[at] ^= static_cast<char>(1 << (rng() % 8));
              break;
            case 2:
              p.insert(at, 1, static_cast<char>(rng() & 0xff));
              break;
            default:
              if (!p.empty()) p.erase(at, 1 + rng() % 40);
              break;
          }
        }
      }
    }
    std::shared_ptr<ots::Timestamp> tip;
    auto chain = ApplyPath(D(d), p, &tip);
    auto root = PathRoot(D(d), p);
    auto ops = ValidatePath(p);
    if (!chain.ok()) {
      ++rejected;
      ASSERT_EQ(chain.status().code(), absl::StatusCode::kInvalidArgument);
      ASSERT_EQ(root.status(), chain.status());
      ASSERT_EQ(ops.status(), chain.status());
      continue;
    }
    ++parsed;
    ASSERT_TRUE(root.ok());
    ASSERT_TRUE(ops.ok());
    ASSERT_EQ(tip->msg(), root->raw());
    ASSERT_LE(*ops, kMaxPathOps);
    // With an attestation at the tip, the chain serializes to the input bytes + the attestation,
    // and the OTS parser reads that back.
    tip->AddAttestation(ots::Attestation::Bitcoin(1));
    const std::string bytes = SerializeTree(**chain);
    ASSERT_EQ(bytes.substr(0, p.size()), p);
    size_t pos = 0;
    auto back = ots::Timestamp::Parse(bytes, &pos, d);
    ASSERT_TRUE(back.ok()) << back.status();
    ASSERT_EQ(pos, bytes.size());
  }
  // Both outcomes were exercised.
  EXPECT_GT(parsed, 100);
  EXPECT_GT(rejected, 10000);
}

}  // namespace
}  // namespace anchord::merkle
