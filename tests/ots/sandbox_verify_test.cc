// End to end against the sandbox: create a timestamp over HTTP, wait for it to confirm, download
// its .ots and verify it against the sandbox's block headers (SandboxHeaders), then check the
// reference library reads it too.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <thread>

#include "libs/ots/headers.h"
#include "libs/ots/verify.h"
#include "services/anchorctl/ots_commands.h"
#include "services/sandbox/sandbox.h"
#include "tests/ots/ots_test_util.h"
#include "tests/testing/wait.h"

namespace anchord::ots {
namespace {

using ::testing::HasSubstr;
using namespace testing_util;

TEST(SandboxProof, DownloadedOtsVerifiesAgainstSandboxHeaders) {
  sandbox::SandboxOptions opt;
  opt.confirm_after = absl::Milliseconds(200);
  opt.threads = 32;
  auto sb = sandbox::Sandbox::Start(opt);
  ASSERT_TRUE(sb.ok()) << sb.status();
  const int port = (*sb)->port();
  httplib::Client cli("127.0.0.1", port);
  cli.set_connection_timeout(5);
  cli.set_read_timeout(5);
  const httplib::Headers auth = {{"Authorization", "Bearer proofd_live_sandbox"}};

  TempDir dir;
  const std::string file = dir.File("evidence.txt");
  WriteAll(file, "evidence for the sandbox proof test\n");
  const std::string digest = Sha256(ReadAll(file));
  nlohmann::json body = {
      {"sha256_hash", Hex(digest)}, {"filename", "evidence.txt"}, {"file_size_bytes", 36}};
  auto created = cli.Post("/api/v1/timestamps", auth, body.dump(), "application/json");
  ASSERT_TRUE(created);
  ASSERT_EQ(created->status, 201) << created->body;
  const auto rec = nlohmann::json::parse(created->body, nullptr, false);
  ASSERT_TRUE(rec.is_object() && rec["id"].is_string()) << created->body;
  const std::string id = rec["id"].get<std::string>();

  std::string ots_bytes;
  testing::WaitUntil(
      [&] {
        auto r = cli.Get(("/api/v1/timestamps/" + id + "/ots").c_str(), auth);
        if (r && r->status == 200) ots_bytes = r->body;
        return !ots_bytes.empty();
      },
      absl::Seconds(10), absl::Milliseconds(100));
  ASSERT_FALSE(ots_bytes.empty()) << "the sandbox never confirmed the timestamp";
  WriteAll(file + ".ots", ots_bytes);

  auto proof = ParseDetached(ots_bytes);
  ASSERT_TRUE(proof.ok()) << proof.status();
  // Scoped: its keep-alive connection must be closed before the sandbox stops (or Stop waits for
  // the server's keep-alive timeout).
  {
    SandboxHeaders headers(absl::StrCat("http://127.0.0.1:", port));
    auto result = VerifyFile(*proof, file, &headers);
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_TRUE(result->digest_matches);
    EXPECT_TRUE(result->verified) << result->message;
    ASSERT_TRUE(result->earliest.has_value());
    EXPECT_GE(result->earliest->attestation.height, 900000u);  // sandbox's first fake block

    // The same through the CLI function and a "sandbox:" spec.
    std::ostringstream out, err;
    EXPECT_EQ(anchorctl::RunVerify(file, "", absl::StrCat("sandbox:http://127.0.0.1:", port), false,
                                   out, err),
              0)
        << out.str() << err.str();

    // A block the sandbox never made: header unavailable, not verified.
    EXPECT_EQ(headers.HeaderAt(1).status().code(), absl::StatusCode::kNotFound);
  }

  // The reference library parses it and agrees on the digest.
  const std::string cmd = absl::StrCat("/usr/bin/python3 ", ANCHORD_OTS_CHECKER, " ", file,
                                       ".ots > ", dir.File("check.json"), " 2>&1");
  const int rc = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(rc));
  EXPECT_EQ(WEXITSTATUS(rc), 0) << ReadAll(dir.File("check.json"));
  (*sb)->Stop();
}

}  // namespace
}  // namespace anchord::ots
