// anchorctl's OTS commands (services/anchorctl/ots_commands.h): exit codes and messages.
#include "services/anchorctl/ots_commands.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tests/ots/ots_test_util.h"

namespace anchord::anchorctl {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using namespace ots::testing_util;

std::string Headers() { return "file:" + Vector("bitcoin_block_roots.json"); }

TEST(RunVerify, ExitCodesFollowTheVerdict) {
  std::ostringstream out, err;
  EXPECT_EQ(RunVerify(Vector("hello-world.txt"), "", Headers(), false, out, err), 0) << err.str();
  EXPECT_THAT(out.str(), HasSubstr("VERIFIED  Bitcoin block 358391 (2015-05-28 15:41:18 UTC"));
  EXPECT_THAT(out.str(), HasSubstr("Success!"));

  std::ostringstream o2, e2;
  EXPECT_EQ(RunVerify(Vector("bad-stamp.txt"), "", Headers(), false, o2, e2), 3);
  EXPECT_THAT(o2.str(), HasSubstr("MISMATCH"));

  std::ostringstream o3, e3;
  EXPECT_EQ(
      RunVerify(Vector("bad-stamp.txt"), Vector("hello-world.txt.ots"), Headers(), false, o3, e3),
      3);
  EXPECT_THAT(o3.str(), HasSubstr("the proof is for another file"));

  std::ostringstream o4, e4;
  EXPECT_EQ(RunVerify(Vector("two-calendars.txt"), "", Headers(), false, o4, e4), 1);
  EXPECT_THAT(o4.str(), HasSubstr("PENDING"));

  std::ostringstream o5, e5;  // no header source: nothing checkable
  EXPECT_EQ(RunVerify(Vector("hello-world.txt"), "", "", false, o5, e5), 1);
  EXPECT_THAT(o5.str(),
              HasSubstr("8a1b66ecb7cbd07d8139a7e7d7f2c41aab1f5009b8364aaf61d03ad245e47e00"));
}

TEST(RunVerify, Json) {
  std::ostringstream out, err;
  ASSERT_EQ(RunVerify(Vector("hello-world.txt"), "", Headers(), true, out, err), 0);
  auto j = nlohmann::json::parse(out.str(), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << out.str();
  EXPECT_EQ(j["verified"], true);
  EXPECT_EQ(j["attested_height"], 358391);
  EXPECT_EQ(j["attested_time"], 1432827678);
  EXPECT_EQ(j["attestations"][0]["status"], "VERIFIED");
}

TEST(RunVerify, BadInputIsExitTwoWithTheOffset) {
  TempDir dir;
  const std::string good = ReadAll(Vector("hello-world.txt.ots"));
  WriteAll(dir.File("trunc.ots"), good.substr(0, 100));
  std::ostringstream out, err;
  EXPECT_EQ(RunVerify(Vector("hello-world.txt"), dir.File("trunc.ots"), Headers(), false, out, err),
            2);
  EXPECT_THAT(err.str(), HasSubstr("Truncation at byte offset 69: expected 200 bytes"));

  std::ostringstream o2, e2;
  EXPECT_EQ(RunVerify(Vector("hello-world.txt"), Vector("invalid/bad-major-version.ots"), "", false,
                      o2, e2),
            2);
  EXPECT_THAT(e2.str(), HasSubstr("UnsupportedMajorVersion at byte offset 31"));

  std::ostringstream o3, e3;
  EXPECT_EQ(RunVerify(dir.File("missing"), "", "", false, o3, e3), 2);
  std::ostringstream o4, e4;
  EXPECT_EQ(RunVerify(Vector("hello-world.txt"), "", "bogus:x", false, o4, e4), 2);
  EXPECT_THAT(e4.str(), HasSubstr("header source"));
}

// Issue 9: a header with regtest bits at height 358391 claiming hello-world's merkle root costs
// a couple of hash attempts. By default it is refused, naming the height and the floor; only an
// explicit --network regtest accepts it, and the output then says it is not Bitcoin.
TEST(RunVerify, ForgedHeaderIsRefusedUnlessRegtestIsAskedFor) {
  TempDir dir;
  const std::string forged = MineRegtestHeader(
      Unhex("007ee445d23ad061af4a36b809501fab1ac4f2d7e7a739817dd0cbb7ec661b8a"), 1432827678);
  ASSERT_EQ(forged.size(), 80u);
  WriteAll(dir.File("forged.txt"), absl::StrCat("358391 ", Hex(forged), "\n"));
  const std::string spec = "file:" + dir.File("forged.txt");

  std::ostringstream out, err;
  EXPECT_EQ(RunVerify(Vector("hello-world.txt"), "", spec, false, out, err), kOtsExitNotVerifiable)
      << out.str() << err.str();
  EXPECT_THAT(out.str(), Not(HasSubstr("Success!")));
  EXPECT_THAT(out.str(), HasSubstr("height 358391"));
  EXPECT_THAT(out.str(), HasSubstr("below the floor"));
  EXPECT_THAT(out.str(), HasSubstr("0x181686f5"));

  std::ostringstream oj, ej;
  EXPECT_EQ(RunVerify(Vector("hello-world.txt"), "", spec, true, oj, ej), kOtsExitNotVerifiable);
  auto j = nlohmann::json::parse(oj.str(), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << oj.str();
  EXPECT_EQ(j["verified"], false);
  EXPECT_EQ(j["network"], "mainnet");

  std::ostringstream o2, e2;
  EXPECT_EQ(RunVerify(Vector("hello-world.txt"), "", spec, false, o2, e2, "regtest"), 0)
      << o2.str() << e2.str();
  EXPECT_THAT(o2.str(), HasSubstr("Success!"));
  EXPECT_THAT(o2.str(), HasSubstr("REGTEST"));
  EXPECT_THAT(o2.str(), HasSubstr("not Bitcoin"));
  std::ostringstream o3, e3;
  EXPECT_EQ(RunVerify(Vector("hello-world.txt"), "", spec, true, o3, e3, "regtest"), 0);
  EXPECT_EQ(nlohmann::json::parse(o3.str(), nullptr, false)["network"], "regtest");

  std::ostringstream o4, e4;
  EXPECT_EQ(RunVerify(Vector("hello-world.txt"), "", spec, false, o4, e4, "testnet4"),
            kOtsExitBadInput);
  EXPECT_THAT(e4.str(), HasSubstr("--network"));

  // The real header (the vectors' JSON) still verifies under the default rules.
  std::ostringstream o5, e5;
  EXPECT_EQ(RunVerify(Vector("hello-world.txt"), "", Headers(), false, o5, e5), 0) << o5.str();
  EXPECT_THAT(o5.str(), Not(HasSubstr("REGTEST")));
}

TEST(RunInfo, TextJsonAndBadInput) {
  std::ostringstream out, err;
  EXPECT_EQ(RunInfo(Vector("hello-world.txt.ots"), false, false, out, err), 0);
  EXPECT_THAT(out.str(), HasSubstr("verify BitcoinBlockHeaderAttestation(358391)"));
  std::ostringstream o2, e2;
  EXPECT_EQ(RunInfo(Vector("hello-world.txt.ots"), true, false, o2, e2), 0);
  EXPECT_FALSE(nlohmann::json::parse(o2.str(), nullptr, false).is_discarded());
  std::ostringstream o3, e3;
  EXPECT_EQ(RunInfo(Vector("invalid/exceeds-max-msg-length.ots"), false, false, o3, e3), 2);
  EXPECT_THAT(e3.str(), HasSubstr("byte offset"));
}

TEST(RunUpgrade, InPlaceWithBackup) {
  TempDir dir;
  // two-calendars: alice answers with a (fake) Bitcoin completion, bob is still pending.
  const std::string path = dir.File("two-calendars.txt.ots");
  const std::string before = ReadAll(Vector("two-calendars.txt.ots"));
  WriteAll(path, before);
  OtsUpgradeOptions opt;
  opt.fetch = [](const std::string& uri,
                 const std::string& commitment) -> absl::StatusOr<std::optional<std::string>> {
    if (uri != "https://alice.btc.calendar.opentimestamps.org") return std::optional<std::string>();
    ots::Timestamp t(commitment);
    auto c = t.AddOp(ots::Op::Sha256());
    if (!c.ok()) return c.status();
    (*c)->AddAttestation(ots::Attestation::Bitcoin(123));
    std::string bytes;
    if (auto st = t.Serialize(&bytes); !st.ok()) return st;
    return std::optional<std::string>(bytes);
  };
  std::ostringstream out, err;
  EXPECT_EQ(RunUpgrade({path}, opt, out, err), 0) << err.str();
  EXPECT_THAT(out.str(), HasSubstr("upgraded"));
  EXPECT_EQ(ReadAll(path + ".bak"), before);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  auto upgraded = ots::ParseDetached(ReadAll(path));
  ASSERT_TRUE(upgraded.ok()) << upgraded.status();
  EXPECT_TRUE(ots::IsComplete(*upgraded));
  EXPECT_EQ(ots::PendingAttestations(*upgraded).size(), 2u);  // pendings kept

  // Nothing new on a second pass: no write, so the existing .bak is not a problem.
  std::ostringstream o2, e2;
  EXPECT_EQ(RunUpgrade({path}, opt, o2, e2), 0) << e2.str();

  // A pending-only proof with a .bak already present: refuses to overwrite it.
  const std::string p2 = dir.File("incomplete.txt.ots");
  WriteAll(p2, ReadAll(Vector("incomplete.txt.ots")));
  WriteAll(p2 + ".bak", "keep me");
  std::ostringstream o3, e3;
  EXPECT_EQ(RunUpgrade({p2}, opt, o3, e3), 2);
  EXPECT_THAT(e3.str(), HasSubstr("already exists"));
  EXPECT_EQ(ReadAll(p2 + ".bak"), "keep me");
  EXPECT_EQ(ReadAll(p2), ReadAll(Vector("incomplete.txt.ots")));

  // Still pending -> 1; malformed -> 2.
  const std::string p3 = dir.File("merkle1.txt.ots");
  WriteAll(p3, ReadAll(Vector("merkle1.txt.ots")));
  OtsUpgradeOptions none;
  none.fetch = [](const std::string&,
                  const std::string&) -> absl::StatusOr<std::optional<std::string>> {
    return std::optional<std::string>();
  };
  std::ostringstream o4, e4;
  EXPECT_EQ(RunUpgrade({p3}, none, o4, e4), 1);
  EXPECT_THAT(o4.str(), HasSubstr("not complete"));
  std::ostringstream o5, e5;
  EXPECT_EQ(RunUpgrade({Vector("invalid/invalid-file-digest-type.ots")}, none, o5, e5), 2);
}

}  // namespace
}  // namespace anchord::anchorctl
