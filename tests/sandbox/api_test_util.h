// Helpers shared by the sandbox API tests (ProofLedger, SimpleProof, calendars): a sandbox on
// 127.0.0.1:0 with a FakeClock, JSON parsing of answers, polling with a bound, running the
// reference checker.
#pragma once

#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "libs/common/clock.h"
#include "libs/common/hex.h"
#include "libs/ots/ots.h"
#include "services/sandbox/sandbox.h"
#include "tests/testing/wait.h"

namespace anchord::sandbox::testing_util {

using json = nlohmann::json;

inline std::string HashN(int n) { return HexEncode(ots::Sha256(absl::StrCat("api-file-", n))); }

inline json Parse(const httplib::Result& res) {
  if (!res) return json();
  return json::parse(res->body, nullptr, false);
}

// Options with every limit out of the way and the given fake clock.
inline SandboxOptions QuietOptions(FakeClock* clock) {
  SandboxOptions opt;
  opt.host = "127.0.0.1";
  opt.port = 0;
  opt.clock = clock;
  opt.general_limit = opt.create_key_limit = opt.create_ip_limit = 100000;
  opt.proofledger_create_limit = 100000;
  opt.proofledger_verify_limit = 100000;
  opt.simpleproof_limit = 100000;
  opt.threads = 32;
  return opt;
}

inline std::unique_ptr<httplib::Client> ClientFor(int port) {
  auto cli = std::make_unique<httplib::Client>("127.0.0.1", port);
  cli->set_connection_timeout(5, 0);
  cli->set_read_timeout(10, 0);
  return cli;
}

// testing::WaitUntil with the bound these tests use: `done` checked every 10 ms for at most
// `limit`; true when it held.
inline bool WaitFor(const std::function<bool()>& done,
                    std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  return anchord::testing::WaitUntil(done, absl::FromChrono(limit));
}

inline std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs a shell command; returns its exit status, stdout and stderr in *out.
inline int RunCommand(const std::string& cmd, const std::string& out_file, std::string* out) {
  const int rc = std::system((cmd + " > " + out_file + " 2>&1").c_str());
  *out = ReadAll(out_file);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

}  // namespace anchord::sandbox::testing_util
