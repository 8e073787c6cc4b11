// The stored form of a sealed batch (libs/merkle/sealed_batch.h): what the submitter stores and the
// poller receives must decode to the batcher's own tree, and nothing that does not lead to the
// stated root may decode at all.
#include "libs/merkle/sealed_batch.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "libs/digest/digest.h"

namespace anchord::merkle {
namespace {

struct Leaves {
  std::vector<std::string> digests;
  std::vector<std::string> nonces;
};

// A distinct 32-byte digest per seed.
std::string DigestBytes(size_t seed) {
  std::string d(32, '\x5a');
  for (size_t b = 0; b < 8; ++b) d[b] = static_cast<char>((seed + 1) >> (8 * b));
  return d;
}

Leaves Make(size_t n) {
  Leaves l;
  for (size_t i = 0; i < n; ++i) {
    l.digests.push_back(DigestBytes(i));
    l.nonces.push_back(RandomNonce());
  }
  return l;
}

Tree Built(const Leaves& l) {
  std::vector<Digest> digests;
  for (const std::string& d : l.digests) digests.push_back(*Digest::FromBytes(d, "d"));
  return *Tree::Build(digests, l.nonces);
}

TEST(SealedBatch, DecodesToTheBatchersTreeWithEveryLeafInOrder) {
  for (size_t n : {1u, 2u, 7u, 64u}) {
    Leaves l = Make(n);
    Tree tree = Built(l);
    absl::StatusOr<std::string> encoded = EncodeBatchLeaves(l.digests, l.nonces);
    ASSERT_TRUE(encoded.ok()) << encoded.status();
    ASSERT_EQ(encoded->size(), n * 48);
    auto batch = SealedBatch::Decode(*encoded, tree.root().raw());
    ASSERT_TRUE(batch.ok()) << batch.status();
    const SealedBatch& b = **batch;
    EXPECT_EQ(b.size(), n);
    EXPECT_EQ(b.encoded(), *encoded);
    for (size_t i = 0; i < n; ++i) {
      EXPECT_EQ(b.digest(i), l.digests[i]);
      EXPECT_EQ(b.IndexOf(l.digests[i]), i);
      EXPECT_EQ(b.tree().PathBytes(i), tree.PathBytes(i)) << "leaf " << i << " of " << n;
    }
    EXPECT_TRUE(b.digest(n).empty());
    EXPECT_FALSE(b.IndexOf(DigestBytes(1000)).has_value());
  }
}

// The batcher's own batch (SealedBatch::Build) is the one its stored form decodes to, so the
// process that sealed it may hand it off without decoding.
TEST(SealedBatch, BuiltIsWhatItsStoredFormDecodesTo) {
  for (size_t n : {1u, 3u, 64u}) {
    Leaves l = Make(n);
    Tree tree = Built(l);
    auto built = SealedBatch::Build(l.digests, l.nonces);
    ASSERT_TRUE(built.ok()) << built.status();
    const SealedBatch& b = **built;
    EXPECT_EQ(b.tree().root().raw(), tree.root().raw());
    EXPECT_EQ(b.encoded(), *EncodeBatchLeaves(l.digests, l.nonces));
    std::vector<Digest> typed;  // the batcher's form of the same leaves
    for (const std::string& d : l.digests) typed.push_back(*Digest::FromBytes(d));
    auto from_typed = SealedBatch::Build(typed, l.nonces);
    ASSERT_TRUE(from_typed.ok()) << from_typed.status();
    EXPECT_EQ((*from_typed)->encoded(), b.encoded());
    EXPECT_EQ((*from_typed)->tree().root().raw(), tree.root().raw());
    auto decoded = SealedBatch::Decode(b.encoded(), tree.root().raw());
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    ASSERT_EQ(b.size(), n);
    for (size_t i = 0; i < n; ++i) {
      EXPECT_EQ(b.IndexOf(l.digests[i]), i);
      EXPECT_EQ(b.tree().PathBytes(i), (*decoded)->tree().PathBytes(i)) << "leaf " << i;
    }
  }
  Leaves bad = Make(2);
  bad.nonces[1].pop_back();
  auto st = SealedBatch::Build(bad.digests, bad.nonces).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("leaf 1"), absl::string_view::npos) << st;
  EXPECT_FALSE(SealedBatch::Build(std::vector<std::string>{}, {}).ok());
}

TEST(SealedBatch, RefusesLeavesThatDoNotLeadToTheRoot) {
  Leaves l = Make(5);
  Tree tree = Built(l);
  std::string encoded = *EncodeBatchLeaves(l.digests, l.nonces);
  // Another root, one flipped nonce byte, one flipped digest byte, a truncated or empty form.
  EXPECT_EQ(SealedBatch::Decode(encoded, DigestBytes(2000)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  std::string bad = encoded;
  bad[bad.size() - 1] ^= 1;
  EXPECT_EQ(SealedBatch::Decode(bad, tree.root().raw()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  bad = encoded;
  bad[0] ^= 1;
  EXPECT_EQ(SealedBatch::Decode(bad, tree.root().raw()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(SealedBatch::Decode(encoded.substr(0, 47), tree.root().raw()).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(SealedBatch::Decode("", tree.root().raw()).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(SealedBatch, EncodeRefusesMismatchedOrMissizedInputsNamingTheLeaf) {
  Leaves l = Make(3);
  EXPECT_FALSE(EncodeBatchLeaves(std::vector<std::string>{}, {}).ok());
  EXPECT_FALSE(EncodeBatchLeaves(l.digests, {l.nonces[0]}).ok());
  Leaves bad = l;
  bad.digests[2].pop_back();
  auto st = EncodeBatchLeaves(bad.digests, bad.nonces).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("leaf 2"), absl::string_view::npos) << st;
  bad = l;
  bad.nonces[1] += "x";
  st = EncodeBatchLeaves(bad.digests, bad.nonces).status();
  EXPECT_NE(st.message().find("leaf 1"), absl::string_view::npos) << st;
}

}  // namespace
}  // namespace anchord::merkle
