// End-to-end over mutual TLS: the real anchord-sandbox, -poller, -submitter and -hasher binaries
// as child processes on 127.0.0.1, each serving and calling its peer with the same certificate
// (issued by a CA made for this run with the openssl CLI), driven by the real anchorctl binary
// with a client certificate. Also checks that anchorctl without a client certificate, or in
// plaintext, cannot use the stack.
#include <openssl/evp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "libs/common/hex.h"
#include "services/anchorctl/process.h"
#include "services/anchorctl/stack.h"
#include "tests/e2e/e2e_util.h"

namespace anchord::anchorctl {
namespace {
namespace fs = std::filesystem;

using e2e::RunResult;
using e2e::Sha256Hex;
using e2e::WriteFile;

class TlsE2eTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "anchord_tls_e2e_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    tmp_ = tmpl;
    root_ = tmp_ / "root";
    certs_ = tmp_ / "certs";
    fs::create_directories(root_ / "tree");
    fs::create_directories(certs_);
    const std::string d = certs_.string();
    // CA; a server certificate for 127.0.0.1/localhost (also the services' client certificate:
    // no extendedKeyUsage, so it is valid for both); a client certificate for anchorctl.
    const std::string script =
        absl::StrCat("set -e; cd ", d, ";",
                     "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
                     "-subj /CN=anchord-e2e-ca 2>/dev/null;",
                     "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost' > san.ext;",
                     "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
                     "-subj /CN=localhost 2>/dev/null;",
                     "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
                     "-out server.pem -days 2 -extfile san.ext 2>/dev/null;",
                     "openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr "
                     "-subj /CN=anchorctl-e2e 2>/dev/null;",
                     "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
                     "-out client.pem -days 2 2>/dev/null");
    ASSERT_EQ(std::system(script.c_str()), 0) << "openssl CLI failed";
  }

  void TearDown() override {
    if (HasFailure() && stack_) {
      for (const char* s : {"sandbox", "poller", "submitter", "hasher"}) {
        std::cerr << "---- end of " << s << ".log ----\n"
                  << TailOfFile((tmp_ / "run" / (std::string(s) + ".log")).string(), 3000) << "\n";
      }
    }
    stack_.reset();  // SIGTERM, then SIGKILL: no child outlives the test
    if (std::getenv("ANCHORD_E2E_KEEP") != nullptr) {
      std::cerr << "kept " << tmp_ << "\n";
      return;
    }
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }

  std::string Cert(const char* name) { return (certs_ / name).string(); }

  void StartStack() {
    StackOptions o;
    o.binaries = {{"hasher", HASHER_BIN},
                  {"submitter", SUBMITTER_BIN},
                  {"poller", POLLER_BIN},
                  {"sandbox", SANDBOX_BIN}};
    o.run_dir = (tmp_ / "run").string();
    o.state_dir = (tmp_ / "state").string();
    o.root = root_.string();
    o.sandbox = true;
    o.sandbox_window_seconds = 2;
    o.sandbox_confirm_after_seconds = 1;
    o.poll_interval_seconds = 1;
    // Mutual TLS on every gRPC port and every peer channel (the sandbox is HTTP, untouched).
    const std::vector<std::string> tls = {"--tls-cert",       Cert("server.pem"), "--tls-key",
                                          Cert("server.key"), "--tls-ca",         Cert("ca.pem")};
    for (const char* s : {"hasher", "submitter", "poller"}) o.extra_args[s] = tls;
    auto stack = LocalStack::Start(o);
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = std::move(*stack);
  }

  RunResult RunCtl(const std::vector<std::string>& tls_args, const std::vector<std::string>& args,
                   absl::Duration timeout = absl::Seconds(40)) {
    const std::string out = (tmp_ / absl::StrCat("ctl_", ++runs_, ".out")).string();
    RunResult r;
    ChildSpec spec;
    spec.name = "anchorctl";
    spec.binary = ANCHORCTL_BIN;
    spec.log_file = out;
    spec.args = {
        "--hasher",   stack_->info().hasher,   "--submitter",        stack_->info().submitter,
        "--poller",   stack_->info().poller,   "--hasher-root",      root_.string(),
        "--data-dir", (tmp_ / "ctl").string(), "--deadline-seconds", "5"};
    spec.args.insert(spec.args.end(), tls_args.begin(), tls_args.end());
    spec.args.insert(spec.args.end(), args.begin(), args.end());
    // Keep the caller's environment from adding TLS settings the test does not expect.
    for (const char* e : {"ANCHORD_TLS_CERT", "ANCHORD_TLS_KEY", "ANCHORD_TLS_CA",
                          "ANCHORD_AUTH_TOKEN_FILE", "ANCHORD_TLS_SERVER_NAME"}) {
      spec.env[e] = "";
    }
    auto child = ChildProcess::Spawn(spec);
    if (!child.ok()) {
      r.output = std::string(child.status().message());
      return r;
    }
    if ((*child)->WaitExit(timeout)) {
      int st = (*child)->raw_wait_status();
      r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    } else {
      (*child)->Signal(SIGKILL);
      (*child)->WaitExit(absl::Seconds(5));
    }
    r.output = TailOfFile(out, 1 << 20);
    return r;
  }

  std::vector<std::string> MutualTls() {
    return {"--tls-ca",         Cert("ca.pem"), "--tls-cert",
            Cert("client.pem"), "--tls-key",    Cert("client.key")};
  }

  fs::path tmp_, root_, certs_;
  int runs_ = 0;
  std::unique_ptr<LocalStack> stack_;
};

TEST_F(TlsE2eTest, MutualTlsArchiveConfirmsAndRefusesCallersWithoutCertificate) {
  std::map<std::string, std::string> files;
  for (int i = 0; i < 20; ++i) {
    const std::string rel = absl::StrCat("tree/d", i % 4, "/file", i, ".txt");
    files[rel] = absl::StrCat("tls evidence #", i, "\n");
    WriteFile(root_ / rel, files[rel]);
  }
  StartStack();

  RunResult archive = RunCtl(MutualTls(), {"archive", (root_ / "tree").string(), "--job", "tls",
                                           "--wait", "confirmed", "--timeout-seconds", "30"});
  ASSERT_EQ(archive.exit_code, 0) << archive.output;

  const std::string report_file = (tmp_ / "report.json").string();
  RunResult report =
      RunCtl(MutualTls(), {"report", "--job", "tls", "--format", "json", "--output", report_file});
  ASSERT_EQ(report.exit_code, 0) << report.output;
  auto text = ReadSmallFile(report_file, 16 << 20);
  ASSERT_TRUE(text.ok()) << text.status();
  auto rows = nlohmann::json::parse(*text, nullptr, false);
  ASSERT_TRUE(rows.is_array()) << *text;
  std::map<std::string, nlohmann::json> by_path;
  for (const auto& row : rows) {
    if (row.is_object() && row.contains("path") && row["path"].is_string()) {
      by_path[row["path"].get<std::string>()] = row;
    }
  }
  for (const auto& [path, content] : files) {
    auto it = by_path.find(path);
    ASSERT_NE(it, by_path.end()) << "no report row for " << path << "\n" << *text;
    EXPECT_EQ(it->second.value("status", ""), "CONFIRMED") << it->second.dump();
    EXPECT_EQ(it->second.value("digest", ""), Sha256Hex(content)) << path;
  }

  // Only the CA (server verified, no client certificate): the hasher requires one.
  RunResult no_cert = RunCtl({"--tls-ca", Cert("ca.pem")},
                             {"archive", (root_ / "tree").string(), "--job", "nocert", "--wait",
                              "queued", "--timeout-seconds", "10"},
                             absl::Seconds(30));
  EXPECT_NE(no_cert.exit_code, 0) << no_cert.output;
  EXPECT_NE(no_cert.exit_code, -1) << "anchorctl hung\n" << no_cert.output;
  EXPECT_NE(no_cert.output.find("hasher"), std::string::npos) << no_cert.output;
  // The message points at TLS as the likely cause, not only at a stopped stack.
  EXPECT_NE(no_cert.output.find("TLS"), std::string::npos) << no_cert.output;

  // Plaintext against a TLS port.
  RunResult plain = RunCtl({},
                           {"archive", (root_ / "tree").string(), "--job", "plain", "--wait",
                            "queued", "--timeout-seconds", "10"},
                           absl::Seconds(30));
  EXPECT_NE(plain.exit_code, 0) << plain.output;
  EXPECT_NE(plain.exit_code, -1) << "anchorctl hung\n" << plain.output;
  EXPECT_NE(plain.output.find("hasher"), std::string::npos) << plain.output;
  EXPECT_NE(plain.output.find("--tls-ca"), std::string::npos) << plain.output;
  EXPECT_EQ(report.output.find("cannot reach"), std::string::npos) << report.output;
}

// The internal RPCs of a stack under mutual TLS: a caller holding a valid client certificate
// (anchorctl's, enough for the public API) but not the internal token is refused on every one of
// them, and the forged CONFIRMED it tried to hand off is nowhere. Before the fix, Track was served
// on the poller's public port to any certificate holder.
TEST_F(TlsE2eTest, InternalRpcsRefuseOutsideCallersUnderTls) {
  StartStack();
  rpc::TransportSecurity outside;
  outside.ca_file = Cert("ca.pem");
  outside.cert_file = Cert("client.pem");
  outside.key_file = Cert("client.key");
  e2e::ExpectInternalRpcsRefused(stack_->info(), outside);
  // The forged CONFIRMED hand-off (digest 0x42...) was stored nowhere.
  RunResult get = RunCtl(MutualTls(), {"get", HexEncode(std::string(32, '\x42'))});
  EXPECT_EQ(get.output.find("CONFIRMED"), std::string::npos) << get.output;
  EXPECT_EQ(get.output.find("PENDING"), std::string::npos) << get.output;
  // Without any certificate the internal port does not even complete the handshake.
  rpc::TransportSecurity anonymous;
  anonymous.ca_file = Cert("ca.pem");
  auto calls = e2e::CallInternalRpcsFromOutside(stack_->info(), anonymous);
  for (const auto& [name, st] : calls) EXPECT_FALSE(st.ok()) << name;
}

// A peer channel that cannot be built (unreadable key) stops the service at start with exit 2
// and a message naming the flag, instead of silently falling back to plaintext.
TEST_F(TlsE2eTest, UnreadableKeyFileStopsSubmitterWithExit2) {
  const std::string log = (tmp_ / "submitter_badkey.log").string();
  ChildSpec spec;
  spec.name = "submitter";
  spec.binary = SUBMITTER_BIN;
  spec.log_file = log;
  spec.args = {"--listen",   "127.0.0.1:0",
               "--data-dir", (tmp_ / "badkey").string(),
               "--poller",   "127.0.0.1:1",
               "--tls-cert", Cert("server.pem"),
               "--tls-key",  (certs_ / "missing.key").string(),
               "--tls-ca",   Cert("ca.pem")};
  auto child = ChildProcess::Spawn(spec);
  ASSERT_TRUE(child.ok()) << child.status();
  ASSERT_TRUE((*child)->WaitExit(absl::Seconds(20))) << TailOfFile(log);
  const int st = (*child)->raw_wait_status();
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 2) << st << "\n" << TailOfFile(log);
  EXPECT_NE(TailOfFile(log).find("--tls-key"), std::string::npos) << TailOfFile(log);
}

}  // namespace
}  // namespace anchord::anchorctl
