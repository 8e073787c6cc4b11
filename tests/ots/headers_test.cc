// Block header checks (proof of work against the header's own bits) and the header sources.
#include "libs/ots/headers.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <thread>

#include <nlohmann/json.hpp>

#include "absl/strings/str_format.h"
#include "tests/ots/ots_test_util.h"
#include "tests/testing/wait.h"

namespace anchord::ots {
namespace {

using ::testing::HasSubstr;
using namespace testing_util;

TEST(CompactTarget, KnownValues) {
  auto mainnet = CompactToTarget(0x1d00ffff);
  ASSERT_TRUE(mainnet.ok());
  EXPECT_EQ(Hex(*mainnet), "00000000ffff0000000000000000000000000000000000000000000000000000");
  auto regtest = CompactToTarget(0x207fffff);
  ASSERT_TRUE(regtest.ok());
  EXPECT_EQ(Hex(*regtest), "7fffff0000000000000000000000000000000000000000000000000000000000");
  auto small = CompactToTarget(0x03123456);
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(Hex(small->substr(29)), "123456");
  auto block358391 = CompactToTarget(0x181686f5);
  ASSERT_TRUE(block358391.ok());
  EXPECT_EQ(Hex(block358391->substr(0, 12)), "00000000000000001686f500");
}

TEST(CompactTarget, RejectsMalformedBits) {
  EXPECT_THAT(CompactToTarget(0x04923456).status().message(), HasSubstr("negative"));
  EXPECT_THAT(CompactToTarget(0x00000000).status().message(), HasSubstr("zero"));
  EXPECT_THAT(CompactToTarget(0x01003456).status().message(), HasSubstr("zero"));  // shifted out
  EXPECT_THAT(CompactToTarget(0xff123456).status().message(), HasSubstr("overflow"));
  EXPECT_THAT(CompactToTarget(0x21010000).status().message(), HasSubstr("overflow"));
  EXPECT_TRUE(CompactToTarget(0x2000ffff).ok());  // exactly fits
}

TEST(BlockHeader, RealHeaderPassesAndDecodes) {
  auto h = ParseBlockHeader(358391, Unhex(kHeader358391), Rev(Unhex(kHash358391)));
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->time, 1432827678u);
  EXPECT_EQ(h->bits, 0x181686f5u);
  EXPECT_EQ(h->DisplayHash(), kHash358391);
  EXPECT_EQ(Hex(h->merkle_root),
            "007ee445d23ad061af4a36b809501fab1ac4f2d7e7a739817dd0cbb7ec661b8a");
}

TEST(BlockHeader, FlippedByteFailsProofOfWork) {
  const std::string good = Unhex(kHeader358391);
  // Any single flipped byte (merkle root, time, nonce...) breaks the hash; it cannot meet a
  // mainnet-difficulty target except with negligible probability.
  for (size_t i : {0u, 4u, 40u, 67u, 68u, 76u, 79u}) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x01);
    auto h = ParseBlockHeader(358391, bad);
    ASSERT_FALSE(h.ok()) << "byte " << i;
    EXPECT_EQ(h.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(h.status().message(), HasSubstr("358391"));
  }
  // Changing bits to an easier target is caught too, as the expected hash no longer matches... and
  // bits with the sign bit are rejected outright.
  std::string neg = good;
  neg[74] = static_cast<char>(0x86);  // bits 0x1886...: sign bit set
  EXPECT_THAT(ParseBlockHeader(1, neg).status().message(), HasSubstr("negative"));
}

TEST(BlockHeader, WrongLengthAndWrongExpectedHash) {
  EXPECT_FALSE(ParseBlockHeader(1, Unhex(kHeader358391).substr(0, 79)).ok());
  auto h = ParseBlockHeader(358391, Unhex(kHeader358391), std::string(32, '\0'));
  ASSERT_FALSE(h.ok());
  EXPECT_THAT(h.status().message(), HasSubstr("not the expected"));
}

TEST(BlockHeader, PowLimitPolicy) {
  const std::string cheap = MineRegtestHeader(std::string(32, 'r'), 1700000000);
  ASSERT_EQ(cheap.size(), 80u);
  EXPECT_TRUE(ParseBlockHeader(5, cheap, {}, HeaderPolicy::Regtest()).ok());
  HeaderPolicy limit_only{0x1d00ffff, /*difficulty_floor=*/false};
  EXPECT_THAT(ParseBlockHeader(5, cheap, {}, limit_only).status().message(), HasSubstr("easier"));
  EXPECT_TRUE(ParseBlockHeader(358391, Unhex(kHeader358391), {}, limit_only).ok());
}

// The default is mainnet's rules: before the floor table's first height the pow limit is the
// floor, and the message says so.
TEST(BlockHeader, DefaultPolicyRefusesRegtestDifficultyAtAnyHeight) {
  const std::string cheap = MineRegtestHeader(std::string(32, 'r'), 1700000000);
  auto h = ParseBlockHeader(5, cheap);
  ASSERT_EQ(h.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(h.status().message(), HasSubstr("height 5"));
  EXPECT_THAT(h.status().message(), HasSubstr("bits 0x207fffff"));
  EXPECT_THAT(h.status().message(), HasSubstr("proof-of-work limit"));
}

// The forged header of issue 9: regtest bits at height 358391, claiming the merkle root that
// hello-world.txt.ots commits to. It meets its own target, so only the floor stops it.
TEST(BlockHeader, ForgedHeaderAtAMainnetHeightNamesTheHeightAndTheFloor) {
  const std::string root =
      Unhex("007ee445d23ad061af4a36b809501fab1ac4f2d7e7a739817dd0cbb7ec661b8a");
  const std::string forged = MineRegtestHeader(root, 1432827678);
  ASSERT_EQ(forged.size(), 80u);
  ASSERT_TRUE(ParseBlockHeader(358391, forged, {}, HeaderPolicy::Regtest()).ok());
  auto h = ParseBlockHeader(358391, forged);
  ASSERT_EQ(h.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(h.status().message(), HasSubstr("height 358391"));
  EXPECT_THAT(h.status().message(), HasSubstr("below the floor"));
  EXPECT_THAT(h.status().message(), HasSubstr("bits 0x181686f5"));  // the floor's source
  // The real header at that height clears the same floor.
  EXPECT_TRUE(ParseBlockHeader(358391, Unhex(kHeader358391)).ok());
}

TEST(DifficultyFloors, TableIsSaneAndRealBlocksClearIt) {
  const auto& floors = MainnetDifficultyFloors();
  ASSERT_GE(floors.size(), 3u);
  const std::string limit = *CompactToTarget(kMainnetPowLimitBits);
  for (size_t i = 0; i < floors.size(); ++i) {
    SCOPED_TRACE(floors[i].height);
    if (i > 0) {
      EXPECT_GT(floors[i].height, floors[i - 1].height);
    }
    EXPECT_THAT(floors[i].source, HasSubstr(absl::StrCat("block ", floors[i].height)));
    auto real = CompactToTarget(floors[i].real_bits);
    ASSERT_TRUE(real.ok());
    EXPECT_LE(*real, limit);
    // A block with the real bits of the entry, at its height and at the next entry's height - 1,
    // clears the floor; the floor is stricter than the pow limit and than regtest.
    auto [at, why] = DifficultyFloorAt(floors[i].height);
    EXPECT_LE(*real, at);
    EXPECT_THAT(why, HasSubstr(absl::StrFormat("0x%08x", floors[i].real_bits)));
    if (i + 1 < floors.size()) {
      EXPECT_LE(*real, DifficultyFloorAt(floors[i + 1].height - 1).first);
      EXPECT_LE(*CompactToTarget(floors[i + 1].real_bits),
                DifficultyFloorAt(floors[i + 1].height).first);
    }
    EXPECT_LT(at, *CompactToTarget(0x207fffff));
    EXPECT_LE(at, limit);
  }
  // Below the first entry: the pow limit itself.
  EXPECT_EQ(DifficultyFloorAt(floors[0].height - 1).first, limit);
}

TEST(Network, ParsesNamesAndRefusesOthers) {
  EXPECT_EQ(*ParseNetwork(""), Network::kMainnet);
  EXPECT_EQ(*ParseNetwork("mainnet"), Network::kMainnet);
  EXPECT_EQ(*ParseNetwork("regtest"), Network::kRegtest);
  EXPECT_THAT(ParseNetwork("testnet").status().message(), HasSubstr("testnet"));
}

TEST(MakeHeaderSource, RulesFollowTheNetworkAndTheSandboxIsRegtest) {
  TempDir dir;
  const std::string forged = MineRegtestHeader(std::string(32, 'f'), 1432827678);
  WriteAll(dir.File("h.txt"), absl::StrCat("358391 ", Hex(forged), "\n"));
  auto mainnet = MakeHeaderSource("file:" + dir.File("h.txt"));
  ASSERT_TRUE(mainnet.ok());
  EXPECT_FALSE((*mainnet)->regtest());
  EXPECT_THAT((*mainnet)->HeaderAt(358391).status().message(), HasSubstr("below the floor"));
  auto regtest = MakeHeaderSource("file:" + dir.File("h.txt"), Network::kRegtest);
  ASSERT_TRUE(regtest.ok());
  EXPECT_TRUE((*regtest)->regtest());
  EXPECT_TRUE((*regtest)->HeaderAt(358391).ok());
  auto sandbox = MakeHeaderSource("sandbox:http://127.0.0.1:1");
  ASSERT_TRUE(sandbox.ok());
  EXPECT_TRUE((*sandbox)->regtest());
}

TEST(LocalHeadersFile, ReadsTheVectorsJson) {
  auto f = LocalHeadersFile::Open(Vector("bitcoin_block_roots.json"));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ((*f)->size(), 1u);  // only 358391 carries a raw header
  auto h = (*f)->HeaderAt(358391);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->time, 1432827678u);
  EXPECT_EQ((*f)->HeaderAt(466906).status().code(), absl::StatusCode::kNotFound);
}

TEST(LocalHeadersFile, JsonBlockHashMustMatch) {
  std::string json = absl::StrCat(R"({"358391": {"header_hex": ")", kHeader358391,
                                  R"(", "block_hash": ")", std::string(64, '0'), R"("}})");
  auto f = LocalHeadersFile::FromContents(json, "test.json");
  ASSERT_TRUE(f.ok()) << f.status();
  auto h = (*f)->HeaderAt(358391);
  EXPECT_EQ(h.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(LocalHeadersFile, TextFormat) {
  std::string bad = Unhex(kHeader358391);
  bad[79] ^= 1;
  std::string text = absl::StrCat("# comment\n\n358391 ", kHeader358391, "\n  7\t", Hex(bad), "\n");
  auto f = LocalHeadersFile::FromContents(text, "h.txt");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_TRUE((*f)->HeaderAt(358391).ok());
  EXPECT_THAT((*f)->HeaderAt(7).status().message(), HasSubstr("does not meet"));

  auto malformed = LocalHeadersFile::FromContents("1 abcd\n", "h.txt");
  EXPECT_THAT(malformed.status().message(), HasSubstr("line 1"));
  auto garbage = LocalHeadersFile::FromContents(absl::StrCat("# x\nx ", kHeader358391), "h.txt");
  EXPECT_THAT(garbage.status().message(), HasSubstr("line 2"));
  EXPECT_FALSE(LocalHeadersFile::FromContents("{not json", "h.json").ok());
  EXPECT_FALSE(LocalHeadersFile::Open("/nonexistent/headers.txt").ok());
}

// A loopback stand-in for bitcoind's REST and JSON-RPC interfaces.
class FakeBitcoind {
 public:
  FakeBitcoind() {
    svr_.Get(R"(/rest/blockhashbyheight/(\d+)\.hex)",
             [this](const httplib::Request& req, httplib::Response& res) {
               if (req.matches[1] != "358391") {
                 res.status = 404;
                 return;
               }
               res.set_content(std::string(kHash358391) + "\n", "text/plain");
             });
    svr_.Get(R"(/rest/headers/1/([0-9a-f]+)\.hex)",
             [this](const httplib::Request& req, httplib::Response& res) {
               res.set_content(serve_header + "\n", "text/plain");
             });
    svr_.Post("/", [this](const httplib::Request& req, httplib::Response& res) {
      last_auth = req.get_header_value("Authorization");
      const auto j = nlohmann::json::parse(req.body, nullptr, false);
      const std::string method =
          j.is_object() && j["method"].is_string() ? j["method"].get<std::string>() : "";
      nlohmann::json out;
      out["id"] = "anchord";
      if (method == "getblockhash" && j["params"][0] == 358391) {
        out["result"] = kHash358391;
        out["error"] = nullptr;
      } else if (method == "getblockhash") {
        out["result"] = nullptr;
        out["error"] = {{"code", -8}, {"message", "Block height out of range"}};
        res.status = 500;
      } else if (method == "getblockheader") {
        out["result"] = serve_header;
        out["error"] = nullptr;
      }
      res.set_content(out.dump(), "application/json");
    });
    port_ = svr_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { svr_.listen_after_bind(); });
    EXPECT_TRUE(testing::WaitUntil([this] { return svr_.is_running(); }, absl::Seconds(10)));
  }
  ~FakeBitcoind() {
    svr_.stop();
    thread_.join();
  }
  std::string base() const { return absl::StrCat("http://127.0.0.1:", port_); }

  std::string serve_header = kHeader358391;
  std::string last_auth;

 private:
  httplib::Server svr_;
  int port_ = 0;
  std::thread thread_;
};

TEST(RemoteSources, RestFetchesAndChecksTheHeader) {
  FakeBitcoind node;
  BitcoinCoreRest rest(node.base() + "/");
  auto h = rest.HeaderAt(358391);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->time, 1432827678u);
  EXPECT_EQ(rest.HeaderAt(1).status().code(), absl::StatusCode::kNotFound);
  // A node answering a different (valid-looking) header than the hash it named is caught.
  std::string other = MineRegtestHeader(std::string(32, 'x'), 1);
  node.serve_header = Hex(other);
  // Under mainnet rules its difficulty alone refuses it; under regtest rules the hash check does.
  EXPECT_THAT(rest.HeaderAt(358391).status().message(), HasSubstr("below the floor"));
  BitcoinCoreRest regtest(node.base() + "/", nullptr, HeaderPolicy::Regtest());
  EXPECT_THAT(regtest.HeaderAt(358391).status().message(), HasSubstr("not the expected"));
}

TEST(RemoteSources, RpcWithCookieAndUserPassword) {
  FakeBitcoind node;
  TempDir dir;
  WriteAll(dir.File(".cookie"), "__cookie__:s3cretcookievalue\n");
  auto rpc = MakeHeaderSource(absl::StrCat("rpc:", node.base(), "/,cookie=", dir.File(".cookie")));
  ASSERT_TRUE(rpc.ok()) << rpc.status();
  auto h = (*rpc)->HeaderAt(358391);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(node.last_auth, "Basic " + absl::Base64Escape("__cookie__:s3cretcookievalue"));
  auto missing = (*rpc)->HeaderAt(2);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), ::testing::Not(HasSubstr("s3cret")));

  auto up = MakeHeaderSource(absl::StrCat("rpc:", node.base(), "/,user=alice,password=pw1234"));
  ASSERT_TRUE(up.ok()) << up.status();
  ASSERT_TRUE((*up)->HeaderAt(358391).ok());
  EXPECT_EQ(node.last_auth, "Basic " + absl::Base64Escape("alice:pw1234"));
  // A bad header from the node fails proof of work.
  std::string bad = Unhex(kHeader358391);
  bad[79] ^= 1;
  node.serve_header = Hex(bad);
  EXPECT_EQ((*up)->HeaderAt(358391).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(RemoteSources, SpecParsing) {
  EXPECT_FALSE(MakeHeaderSource("ftp:x").ok());
  EXPECT_FALSE(MakeHeaderSource("rpc:").ok());
  auto typo = MakeHeaderSource("rpc:http://127.0.0.1:1,pasword=hunter22");
  ASSERT_FALSE(typo.ok());
  EXPECT_THAT(typo.status().message(), ::testing::Not(HasSubstr("hunter22")));
  EXPECT_TRUE(MakeHeaderSource("sandbox:http://127.0.0.1:1").ok());
  EXPECT_TRUE(MakeHeaderSource("file:" + Vector("bitcoin_block_roots.json")).ok());
}

TEST(RemoteSources, UnreachableIsNotNotFound) {
  // Port 1 on loopback: connection refused.
  SandboxHeaders s("http://127.0.0.1:1");
  auto h = s.HeaderAt(1);
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace anchord::ots
