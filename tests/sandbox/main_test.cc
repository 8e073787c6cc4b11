// The anchord-sandbox binary: the new settings arrive through their ANCHORD_SANDBOX_* variables
// and flags, and --calendar-urls-file tells a script where the calendars are.
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tests/sandbox/api_test_util.h"
#include "tests/testing/temp_dir.h"

extern char** environ;

namespace anchord::sandbox {
namespace {

using namespace testing_util;

TEST(SandboxBinary, WritesCalendarUrlsAndTakesTheNewSettings) {
  anchord::testing::TempDir dir("sandbox_main");
  const std::string port_file = dir.File("port");
  const std::string urls_file = dir.File("calendars");
  std::vector<std::string> args = {ANCHORD_SANDBOX_BIN,
                                   "--listen",
                                   "127.0.0.1:0",
                                   "--port-file",
                                   port_file,
                                   "--calendar-urls-file",
                                   urls_file,
                                   "--proofledger-api-key",
                                   "sk_from_flag",
                                   "--pending-max-age-seconds",
                                   "7",
                                   "--log-level",
                                   "warning"};
  std::vector<std::string> env_strings = {"ANCHORD_SANDBOX_CALENDARS=3",
                                          "ANCHORD_SANDBOX_SIMPLEPROOF_TOKENS=sp_env_a,sp_env_b",
                                          "ANCHORD_SANDBOX_SIMPLEPROOF_LIMIT=2"};
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::string(*e).rfind("ANCHORD_SANDBOX_", 0) != 0) env_strings.push_back(*e);
  }
  std::vector<char*> argv, envp;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), envp.data()), 0);
  struct Reaper {
    pid_t pid;
    ~Reaper() {
      ::kill(pid, SIGTERM);
      int status = 0;
      ::waitpid(pid, &status, 0);
    }
  } reaper{pid};

  ASSERT_TRUE(WaitFor([&] { return !ReadAll(urls_file).empty() && !ReadAll(port_file).empty(); },
                      std::chrono::seconds(20)))
      << "the sandbox wrote no port / calendar URLs file";
  int port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(absl::StripAsciiWhitespace(ReadAll(port_file)), &port));
  std::vector<std::string> urls = absl::StrSplit(ReadAll(urls_file), '\n', absl::SkipEmpty());
  ASSERT_EQ(urls.size(), 3u);
  auto cli = ClientFor(port);
  EXPECT_EQ(Parse(cli->Get("/_sandbox/calendars"))["calendar_urls"], json(urls));

  httplib::Client cal(urls[2]);
  cal.set_read_timeout(10, 0);
  auto stamped = cal.Post("/digest", std::string(32, 'a'), "application/octet-stream");
  ASSERT_TRUE(stamped);
  EXPECT_EQ(stamped->status, 200);
  auto pending = cal.Get(("/timestamp/" + HexEncode(std::string(44, 'q'))).c_str());
  ASSERT_TRUE(pending);
  EXPECT_EQ(pending->get_header_value("Cache-Control"), "max-age=7");

  auto pl = cli->Post("/api/v1/proof", {{"Authorization", "Bearer sk_from_flag"}},
                      json{{"sha256", HashN(1)}, {"filename", "a"}}.dump(), "application/json");
  ASSERT_TRUE(pl);
  EXPECT_EQ(pl->status, 201);
  auto pl_default =
      cli->Post("/api/v1/proof", {{"Authorization", "Bearer sk_sandbox"}},
                json{{"sha256", HashN(2)}, {"filename", "a"}}.dump(), "application/json");
  ASSERT_TRUE(pl_default);
  EXPECT_EQ(pl_default->status, 401);  // the flag replaced the default key
  for (const char* token : {"sp_env_a", "sp_env_b"}) {
    auto sp = cli->Post("/api/proof/timestamp/hashes", {{"x-access-token", token}},
                        json{{"hashes", {HashN(3)}}}.dump(), "application/json");
    ASSERT_TRUE(sp);
    EXPECT_EQ(sp->status, 200) << token;
  }
  int limited = 0;
  for (int i = 0; i < 3; ++i) {
    auto sp = cli->Post("/api/proof/timestamp/hashes", {{"x-access-token", "sp_env_a"}},
                        json{{"hashes", {HashN(4)}}}.dump(), "application/json");
    ASSERT_TRUE(sp);
    if (sp->status == 429) ++limited;
  }
  EXPECT_GE(limited, 2);  // 2 per 60 s window per token, one already used
  auto stats = Parse(cli->Get("/_sandbox/stats"));
  EXPECT_EQ(stats["calendar"]["submissions_total"], 1);
  EXPECT_EQ(stats["proofledger"]["creates_total"], 1);
  EXPECT_GE(stats["simpleproof"]["rate_limited_total"].get<int>(), 2);
}

}  // namespace
}  // namespace anchord::sandbox
