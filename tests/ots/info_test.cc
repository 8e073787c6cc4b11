// The `ots info`-style rendering, checked against the upstream authors' own renderings.
#include "libs/ots/info.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "tests/ots/ots_test_util.h"

namespace anchord::ots {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using namespace testing_util;

DetachedFile Load(const std::string& rel) {
  auto p = ParseDetached(ReadAll(Vector(rel)));
  EXPECT_TRUE(p.ok()) << rel << ": " << p.status();
  return p.ok() ? *std::move(p) : DetachedFile{};
}

TEST(Info, MatchesUpstreamRenderingsExactly) {
  for (const char* name : {"incomplete.txt.ots", "merkle2.txt.ots"}) {
    SCOPED_TRACE(name);
    EXPECT_EQ(RenderInfo(Load(name)), ReadAll(Vector(absl::StrCat("extra-js/", name, ".info"))));
  }
}

TEST(Info, DifferentBlockchainsLikeTheJavaRendering) {
  const std::string mine = RenderInfo(Load("different-blockchains.txt.ots"));
  const std::string theirs = ReadAll(Vector("extra-java/different-blockchains.txt.ots.info"));
  // Same lines (the Java client orders forks its own way, so compare as multisets of lines).
  auto lines = [](const std::string& s) {
    std::vector<std::string> v = absl::StrSplit(s, '\n', absl::SkipEmpty());
    for (auto& l : v) l = std::string(absl::StripAsciiWhitespace(l));
    std::sort(v.begin(), v.end());
    return v;
  };
  EXPECT_EQ(lines(mine), lines(theirs));
}

TEST(Info, HelloWorldShowsTxidAttestationAndRoot) {
  const std::string s = RenderInfo(Load("hello-world.txt.ots"));
  EXPECT_THAT(
      s, HasSubstr(
             "File sha256 hash: 03ba204e50d126e4674c005e04d82e84c21366780af1f43bd54a37816b6ab340\n"
             "Timestamp:\nripemd160\n"));
  EXPECT_THAT(s, HasSubstr("# Bitcoin transaction id 7e9f0f7d"));
  EXPECT_THAT(s, HasSubstr("verify BitcoinBlockHeaderAttestation(358391)\n"
                           "# Bitcoin block merkle root "
                           "8a1b66ecb7cbd07d8139a7e7d7f2c41aab1f5009b8364aaf61d03ad245e47e00\n"));
  const std::string v = RenderInfo(Load("hello-world.txt.ots"), /*verbose=*/true);
  EXPECT_THAT(v,
              HasSubstr(" == 007ee445d23ad061af4a36b809501fab1ac4f2d7e7a739817dd0cbb7ec661b8a\n"));
}

TEST(Info, UnknownAttestationAndJson) {
  const std::string s = RenderInfo(Load("unknown-notary.txt.ots"));
  EXPECT_THAT(s, HasSubstr("verify UnknownAttestation(0102030405060708, 7878"));
  const auto j =
      nlohmann::json::parse(RenderInfoJson(Load("two-calendars.txt.ots")), nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["file_hash_op"], "sha256");
  EXPECT_EQ(j["digest"], "efaa174f68e59705757460f4f7d204bd2b535cfd194d9d945418732129404ddb");
  ASSERT_TRUE(j["timestamp"]["ops"].is_array());
}

// A proof built to amplify: a 4000-byte message derived from a small root, 64 branches that each
// run 30 one-byte `reverse` ops over a 4001-byte message, and a chain of 200 forks. Each byte of
// the file derives up to 4 KB of message; the old renderer printed every message (twice in JSON)
// and indented forks without bound, i.e. thousands of bytes of output per byte of proof.
DetachedFile AmplifyingProof(int branches, int chain) {
  DetachedFile f;
  f.digest = std::string(32, '\x42');
  f.timestamp = std::make_shared<Timestamp>(f.digest);
  auto big = *f.timestamp->AddOp(Op::Append(std::string(4000 - 32, 'a')));
  for (int b = 0; b < branches; ++b) {
    auto node = *big->AddOp(Op::Append(std::string(1, static_cast<char>(b))));
    for (int i = 0; i < chain; ++i) node = *node->AddOp(Op::Reverse());
    node->AddAttestation(Attestation::Pending("https://a.example"));
  }
  auto deep = *f.timestamp->AddOp(Op::Sha256());
  for (int i = 0; i < 200; ++i) {
    (*deep->AddOp(Op::Append(std::string(1, 'x'))))
        ->AddAttestation(Attestation::Pending("https://b.example"));
    deep = *deep->AddOp(Op::Sha256());
  }
  deep->AddAttestation(Attestation::Bitcoin(358391));
  return f;
}

TEST(Info, OutputIsLinearInTheProofSize) {
  auto bytes = SerializeDetached(AmplifyingProof(64, 30));
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  auto proof = ParseDetached(*bytes);
  ASSERT_TRUE(proof.ok()) << proof.status();
  const size_t in = bytes->size();
  // Each node's output is bounded by a constant plus its op argument, and each node costs at
  // least one byte of the file. The old renderer gave ~1000x here (JSON), and its indentation grew
  // with the depth of forks.
  const size_t bound = 64 * in + 4096;
  const std::string text = RenderInfo(*proof);
  const std::string verbose = RenderInfo(*proof, /*verbose=*/true);
  const std::string json = RenderInfoJson(*proof);
  EXPECT_LE(text.size(), bound) << "proof " << in << " bytes";
  EXPECT_LE(verbose.size(), 2 * bound) << "proof " << in << " bytes";  // + each result, shortened
  EXPECT_LE(json.size(), bound) << "proof " << in << " bytes";
  EXPECT_FALSE(nlohmann::json::parse(json, nullptr, false).is_discarded());
  // Long messages are shortened with their length; --full prints them whole.
  EXPECT_THAT(verbose, HasSubstr("... (4001 bytes)"));
  EXPECT_THAT(json, HasSubstr("... (4001 bytes)"));  // an attested (commitment) message
  const std::string full = RenderInfo(*proof, true, /*full=*/true);
  EXPECT_THAT(full, Not(HasSubstr(" bytes)")));
  EXPECT_GT(full.size(), 64u * 30 * 8002);  // every 4001-byte result in hex
  // Deep forks keep a bounded indent and say their level.
  EXPECT_THAT(text, HasSubstr("[level 17] "));
  // (the deepest indent, plus the leading space of " -> ")
  EXPECT_THAT(text, Not(HasSubstr(std::string(4 * kInfoMaxIndentLevels + 2, ' '))));
}

TEST(Info, ASubtreeReachableTwiceIsPrintedOnce) {
  DetachedFile f;
  f.digest = std::string(32, '\x01');
  f.timestamp = std::make_shared<Timestamp>(f.digest);
  auto shared = std::make_shared<Timestamp>(Sha256(f.digest));
  shared->AddAttestation(Attestation::Pending("https://c.example"));
  ASSERT_TRUE(f.timestamp->SetOp(Op::Sha256(), shared).ok());
  auto rev = *f.timestamp->AddOp(Op::Reverse());
  auto back = *rev->AddOp(Op::Reverse());  // msg == digest again
  ASSERT_TRUE(back->SetOp(Op::Sha256(), shared).ok());
  const std::string text = RenderInfo(f);
  EXPECT_THAT(text, HasSubstr("# the same subtree as printed above"));
  EXPECT_EQ(text.find("c.example"), text.rfind("c.example"));
  EXPECT_THAT(RenderInfoJson(f), HasSubstr("\"same_as_above\":true"));
}

// Parsing memory is bounded: a file deriving more than kMaxTreeMessageBytes of messages is
// refused with ResourceLimit and the byte offset, not parsed into gigabytes.
TEST(Info, ParseRefusesTreesBeyondTheMessageBudget) {
  auto bytes = SerializeDetached(AmplifyingProof(256, 40));
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  ASSERT_LT(bytes->size(), 64u << 10);
  auto proof = ParseDetached(*bytes);
  ASSERT_FALSE(proof.ok());
  EXPECT_THAT(proof.status().message(), HasSubstr("ResourceLimit at byte offset"));
}

TEST(Info, TxidDetectionRejectsPlainHashes) {
  EXPECT_EQ(BitcoinTxidIfTransaction(std::string(32, '\x01')), "");
  EXPECT_EQ(BitcoinTxidIfTransaction(""), "");
}

}  // namespace
}  // namespace anchord::ots
