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
  EXPECT_THAT(s, HasSubstr("File sha256 hash: 03ba204e50d126e4674c005e04d82e84c21366780af1f43bd54a37816b6ab340\n"
                           "Timestamp:\nripemd160\n"));
  EXPECT_THAT(s, HasSubstr("# Bitcoin transaction id 7e9f0f7d"));
  EXPECT_THAT(s, HasSubstr("verify BitcoinBlockHeaderAttestation(358391)\n"
                           "# Bitcoin block merkle root "
                           "8a1b66ecb7cbd07d8139a7e7d7f2c41aab1f5009b8364aaf61d03ad245e47e00\n"));
  const std::string v = RenderInfo(Load("hello-world.txt.ots"), /*verbose=*/true);
  EXPECT_THAT(v, HasSubstr(" == 007ee445d23ad061af4a36b809501fab1ac4f2d7e7a739817dd0cbb7ec661b8a\n"));
}

TEST(Info, UnknownAttestationAndJson) {
  const std::string s = RenderInfo(Load("unknown-notary.txt.ots"));
  EXPECT_THAT(s, HasSubstr("verify UnknownAttestation(0102030405060708, 7878"));
  const auto j = nlohmann::json::parse(RenderInfoJson(Load("two-calendars.txt.ots")), nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["file_hash_op"], "sha256");
  EXPECT_EQ(j["digest"], "efaa174f68e59705757460f4f7d204bd2b535cfd194d9d945418732129404ddb");
  ASSERT_TRUE(j["timestamp"]["ops"].is_array());
}

TEST(Info, TxidDetectionRejectsPlainHashes) {
  EXPECT_EQ(BitcoinTxidIfTransaction(std::string(32, '\x01')), "");
  EXPECT_EQ(BitcoinTxidIfTransaction(""), "");
}

}  // namespace
}  // namespace anchord::ots
