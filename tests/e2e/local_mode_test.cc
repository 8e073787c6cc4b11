// `anchorctl archive DIR --local` for every kind of user, against a sandbox the test starts itself
// (so the stack runs without --sandbox, as a user's would, and only its provider settings point at
// loopback): no account at all (the OpenTimestamps calendars, the documented default), settings
// from the environment, a ProofLedger-only and a SimpleProof-only user. Before the fix every case
// failed with "proofd API key missing": the stack put --provider proofd on every command line.
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "services/anchorctl/process.h"
#include "services/anchorctl/stack.h"
#include "tests/e2e/e2e_util.h"

namespace anchord::anchorctl {
namespace {
namespace fs = std::filesystem;

using e2e::RunResult;
using e2e::WriteFile;

// Every provider variable anchorctl's environment could carry, cleared for each run so that only
// what a case sets reaches the stack.
const char* const kProviderEnv[] = {"ANCHORD_PROVIDER",
                                    "ANCHORD_PROVIDERS",
                                    "ANCHORD_PROOFD_URL",
                                    "ANCHORD_PROOFD_API_KEY",
                                    "ANCHORD_PROOFD_API_KEY_FILE",
                                    "ANCHORD_PROOFD_CREATE_LIMIT",
                                    "ANCHORD_PROOFD_GENERAL_LIMIT",
                                    "ANCHORD_PROOFD_WINDOW_SECONDS",
                                    "ANCHORD_PROOFLEDGER_URL",
                                    "ANCHORD_PROOFLEDGER_API_KEY",
                                    "ANCHORD_PROOFLEDGER_API_KEY_FILE",
                                    "ANCHORD_SIMPLEPROOF_URL",
                                    "ANCHORD_SIMPLEPROOF_API_KEY",
                                    "ANCHORD_SIMPLEPROOF_API_KEY_FILE",
                                    "ANCHORD_OTS_CALENDARS",
                                    "ANCHORD_OTS_MIN_CALENDARS",
                                    "ANCHORD_SIMPLEPROOF_CALLBACK_URL",
                                    "ANCHORD_HASHER_ADDR",
                                    "ANCHORD_SUBMITTER_ADDR",
                                    "ANCHORD_POLLER_ADDR",
                                    "ANCHORD_TLS_CERT",
                                    "ANCHORD_TLS_KEY",
                                    "ANCHORD_TLS_CA",
                                    "ANCHORD_AUTH_TOKEN_FILE"};

class LocalModeTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "anchord_local_mode_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    tmp_ = tmpl;
    for (int i = 0; i < 4; ++i) {
      WriteFile(tmp_ / "tree" / absl::StrCat("doc", i, ".txt"), absl::StrCat("local mode ", i));
    }
    ChildSpec spec;
    spec.name = "sandbox";
    spec.binary = SANDBOX_BIN;
    spec.args = {"--listen",
                 "127.0.0.1:0",
                 "--port-file",
                 (tmp_ / "sandbox.port").string(),
                 "--calendar-urls-file",
                 (tmp_ / "sandbox.calendars").string(),
                 "--confirm-after-seconds",
                 "1"};
    spec.log_file = (tmp_ / "sandbox.log").string();
    auto child = ChildProcess::Spawn(spec);
    ASSERT_TRUE(child.ok()) << child.status();
    sandbox_ = std::move(*child);
    auto port =
        WaitForPortFile((tmp_ / "sandbox.port").string(), sandbox_.get(), absl::Seconds(20));
    ASSERT_TRUE(port.ok()) << port.status();
    url_ = absl::StrCat("http://127.0.0.1:", *port);
    auto cal = ReadSmallFile((tmp_ / "sandbox.calendars").string());
    ASSERT_TRUE(cal.ok());
    std::vector<std::string> urls;
    for (absl::string_view line : absl::StrSplit(*cal, '\n', absl::SkipWhitespace())) {
      urls.emplace_back(absl::StripAsciiWhitespace(line));
    }
    ASSERT_FALSE(urls.empty());
    calendars_ = absl::StrJoin(urls, ",");
  }

  void TearDown() override {
    if (sandbox_) sandbox_->Stop(absl::Seconds(5));
    std::error_code ec;
    if (!HasFailure()) fs::remove_all(tmp_, ec);
  }

  // Runs anchorctl with a data dir of its own and only `env` among the provider variables.
  RunResult RunCtl(const std::string& name, const std::vector<std::string>& args,
                   const std::map<std::string, std::string>& env) {
    data_dir_ = tmp_ / ("ctl-" + name);
    const std::string out = (tmp_ / (name + ".out")).string();
    ChildSpec spec;
    spec.name = "anchorctl";
    spec.binary = ANCHORCTL_BIN;
    spec.log_file = out;
    spec.args = {"--data-dir", data_dir_.string()};
    spec.args.insert(spec.args.end(), args.begin(), args.end());
    for (const char* e : kProviderEnv) spec.env[e] = "";
    for (const auto& [k, v] : env) spec.env[k] = v;
    RunResult r;
    auto child = ChildProcess::Spawn(spec);
    if (!child.ok()) {
      r.output = std::string(child.status().message());
      return r;
    }
    if ((*child)->WaitExit(absl::Seconds(90))) {
      const int st = (*child)->raw_wait_status();
      r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    } else {
      (*child)->Signal(SIGKILL);
      (*child)->WaitExit(absl::Seconds(5));
    }
    r.output = TailOfFile(out, 1 << 16);
    return r;
  }

  // The log of a service of the last `archive --local` run (DATA_DIR/run/archive-PID/).
  std::string ServiceLog(const std::string& service) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(data_dir_ / "run", ec)) {
      if (entry.path().filename().string().rfind("archive-", 0) == 0) {
        return TailOfFile((entry.path() / (service + ".log")).string(), 1 << 16);
      }
    }
    return "";
  }

  std::vector<std::string> Archive(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"archive",   (tmp_ / "tree").string(), "--local", "--wait",
                                     "submitted", "--timeout-seconds",      "60"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  fs::path tmp_, data_dir_;
  std::string url_, calendars_;
  std::unique_ptr<ChildProcess> sandbox_;
};

// No account anywhere: the stack anchors with the OpenTimestamps calendars (here the sandbox's,
// named by ANCHORD_OTS_CALENDARS, which reaches the services through the environment).
TEST_F(LocalModeTest, NoAccountAnchorsWithTheCalendars) {
  RunResult dry = RunCtl("dry", {"archive", (tmp_ / "tree").string(), "--local", "--dry-run"},
                         {{"ANCHORD_OTS_CALENDARS", calendars_}});
  EXPECT_EQ(dry.exit_code, 0) << dry.output;
  EXPECT_EQ(dry.output.find("API key missing"), std::string::npos) << dry.output;

  RunResult r = RunCtl("nokey", Archive(), {{"ANCHORD_OTS_CALENDARS", calendars_}});
  ASSERT_EQ(r.exit_code, 0) << r.output << "\n" << ServiceLog("submitter");
  const std::string log = ServiceLog("submitter");
  EXPECT_NE(log.find("provider ots: calendars " + calendars_.substr(0, calendars_.find(','))),
            std::string::npos)
      << log;
  EXPECT_EQ(log.find("provider proofd"), std::string::npos) << log;
}

// Provider settings from the environment reach the services and are not overridden by the
// stack's defaults (before the fix the stack put --proofd-create-limit 30 on the command line).
TEST_F(LocalModeTest, EnvironmentSettingsReachTheServices) {
  RunResult r = RunCtl("env", Archive(),
                       {{"ANCHORD_PROVIDER", "proofd"},
                        {"ANCHORD_PROOFD_URL", url_},
                        {"ANCHORD_PROOFD_API_KEY", kSandboxApiKey},
                        {"ANCHORD_PROOFD_CREATE_LIMIT", "7"},
                        {"ANCHORD_PROOFD_GENERAL_LIMIT", "11"},
                        {"ANCHORD_OTS_CALENDARS", calendars_}});
  ASSERT_EQ(r.exit_code, 0) << r.output << "\n" << ServiceLog("submitter");
  EXPECT_NE(ServiceLog("submitter").find("limits create 7/general 11 "), std::string::npos)
      << ServiceLog("submitter");
  EXPECT_NE(ServiceLog("poller").find("limits create 7/general 11 "), std::string::npos)
      << ServiceLog("poller");
}

// A ProofLedger-only user, with the settings given as anchorctl flags (passed to the services).
TEST_F(LocalModeTest, ProofLedgerOnlyUser) {
  const std::string key_file = (tmp_ / "pl.key").string();
  WriteFile(key_file, kSandboxProofLedgerKey);
  RunResult r =
      RunCtl("proofledger",
             Archive({"--provider", "proofledger", "--proofledger-url", url_,
                      "--proofledger-api-key-file", key_file, "--ots-calendars", calendars_}),
             {});
  ASSERT_EQ(r.exit_code, 0) << r.output << "\n" << ServiceLog("submitter");
  EXPECT_NE(ServiceLog("submitter").find("provider proofledger at " + url_), std::string::npos)
      << ServiceLog("submitter");
}

// A SimpleProof-only user, with the settings in the environment.
TEST_F(LocalModeTest, SimpleProofOnlyUser) {
  RunResult r = RunCtl("simpleproof", Archive({"--provider", "simpleproof"}),
                       {{"ANCHORD_SIMPLEPROOF_URL", url_},
                        {"ANCHORD_SIMPLEPROOF_API_KEY", kSandboxSimpleProofToken},
                        {"ANCHORD_OTS_CALENDARS", calendars_}});
  ASSERT_EQ(r.exit_code, 0) << r.output << "\n" << ServiceLog("submitter");
  EXPECT_NE(ServiceLog("submitter").find("provider simpleproof at " + url_), std::string::npos)
      << ServiceLog("submitter");
}

// Provider flags without --local have nothing to apply to: a usage error naming the flag.
TEST_F(LocalModeTest, ProviderFlagsWithoutLocalAreAUsageError) {
  RunResult r = RunCtl("nolocal", {"archive", (tmp_ / "tree").string(), "--proofd-url", url_}, {});
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--proofd-url"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace anchord::anchorctl
