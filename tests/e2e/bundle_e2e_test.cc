// Evidence bundles end to end: `anchorctl local --sandbox` runs the real services and the sandbox
// (OpenTimestamps calendars and its RFC 3161 TSA); a directory is archived with --provider ots,tsa
// per file and in Merkle mode; `anchorctl bundle` writes the ZIP; then only tools nobody here
// wrote judge it: `unzip` and `bsdtar` open it, `sha256sum -c` checks the files against the
// manifest, the reference OpenTimestamps library (python3-opentimestamps) checks every .ots
// against the bundled headers, `openssl ts -verify` checks every token. `verify-bundle` agrees,
// and one flipped byte in one proof makes it exit 3 naming that file.
#include <sys/wait.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "services/anchorctl/process.h"
#include "tests/e2e/e2e_util.h"

namespace anchord::anchorctl {
namespace {

namespace fs = std::filesystem;
using e2e::RunResult;
using e2e::Sha256Hex;
using e2e::WriteFile;

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class BundleE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "anchord_bundle_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    tmp_ = tmpl;
    root_ = tmp_ / "root";
    fs::create_directories(root_);
  }
  void TearDown() override {
    if (local_) {
      if (HasFailure()) std::cerr << TailOfFile((tmp_ / "local.out").string(), 4000) << "\n";
      local_->Stop(absl::Seconds(10));
    }
    if (std::getenv("ANCHORD_E2E_KEEP") == nullptr) {
      std::error_code ec;
      fs::remove_all(tmp_, ec);
    } else {
      std::cerr << "kept " << tmp_ << "\n";
    }
  }

  // Runs a program (bounded in time); its output lands in a log file returned in the result.
  RunResult Run(const std::string& binary, const std::vector<std::string>& args,
                absl::Duration timeout = absl::Seconds(60)) {
    const std::string out = (tmp_ / absl::StrCat("run_", ++runs_, ".out")).string();
    ChildSpec spec;
    spec.name = fs::path(binary).filename().string();
    spec.binary = binary;
    spec.args = args;
    spec.log_file = out;
    RunResult r;
    auto child = ChildProcess::Spawn(spec);
    if (!child.ok()) {
      r.output = std::string(child.status().message());
      return r;
    }
    if ((*child)->WaitExit(timeout)) {
      int st = (*child)->raw_wait_status();
      r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    r.output = TailOfFile(out, 1 << 20);
    return r;
  }
  RunResult Ctl(std::vector<std::string> args, absl::Duration timeout = absl::Seconds(60)) {
    args.insert(args.begin(), {"--data-dir", (tmp_ / "ctl").string()});
    return Run(ANCHORCTL_BIN, args, timeout);
  }
  RunResult Sh(const std::string& script) { return Run("/bin/sh", {"-c", script}); }

  void StartLocal() {
    ChildSpec spec;
    spec.name = "anchorctl local";
    spec.binary = ANCHORCTL_BIN;
    spec.args = {"--data-dir",
                 (tmp_ / "ctl").string(),
                 "local",
                 "--root",
                 root_.string(),
                 "--sandbox",
                 "--sandbox-window-seconds",
                 "2",
                 "--sandbox-confirm-after-seconds",
                 "1",
                 "--poll-interval-seconds",
                 "1"};
    spec.log_file = (tmp_ / "local.out").string();
    auto child = ChildProcess::Spawn(spec);
    ASSERT_TRUE(child.ok()) << child.status();
    local_ = *std::move(child);
    const fs::path stack = tmp_ / "ctl" / "run" / "stack.json";
    for (int i = 0; i < 600 && !fs::exists(stack); ++i) absl::SleepFor(absl::Milliseconds(100));
    ASSERT_TRUE(fs::exists(stack)) << TailOfFile(spec.log_file);
  }

  // Archives `dir` (under the root) and builds the bundle until every proof is complete
  // (the calendars' .ots become complete a few seconds after the TSA's tokens).
  void ArchiveAndBundle(const std::string& dir, const std::string& job, bool merkle,
                        const fs::path& zip) {
    std::vector<std::string> args = {
        "archive",   (root_ / dir).string(), "--job", job, "--provider", "ots,tsa", "--wait",
        "confirmed", "--timeout-seconds",    "90"};
    if (merkle) args.push_back("--merkle-batch");
    RunResult a = Ctl(args, absl::Seconds(120));
    ASSERT_EQ(a.exit_code, 0) << a.output;
    RunResult v;
    for (int attempt = 0; attempt < 60; ++attempt) {
      RunResult b = Ctl({"bundle", "--job", job, "-o", zip.string()}, absl::Seconds(60));
      ASSERT_EQ(b.exit_code, 0) << b.output;
      v = Ctl({"verify-bundle", zip.string(), "--files", root_.string()});
      if (v.exit_code != 4) break;
      absl::SleepFor(absl::Seconds(1));
    }
    ASSERT_EQ(v.exit_code, 0) << v.output;
    EXPECT_NE(v.output.find("Success! Every proof verified."), std::string::npos) << v.output;
  }

  // The bundle opened by both reference unzippers, the files checked by sha256sum, every proof by
  // the reference OpenTimestamps library and OpenSSL. Returns the bsdtar extraction.
  fs::path CheckWithReferenceTools(const fs::path& zip,
                                   const std::map<std::string, std::string>& files, bool merkle) {
    const fs::path by_unzip = tmp_ / (zip.stem().string() + "_unzip");
    const fs::path by_bsdtar = tmp_ / (zip.stem().string() + "_bsdtar");
    fs::create_directories(by_unzip);
    fs::create_directories(by_bsdtar);
    RunResult u = Run("/usr/bin/unzip", {"-q", zip.string(), "-d", by_unzip.string()});
    EXPECT_EQ(u.exit_code, 0) << u.output;
    RunResult t = Run("/usr/bin/bsdtar", {"-xf", zip.string(), "-C", by_bsdtar.string()});
    EXPECT_EQ(t.exit_code, 0) << t.output;
    const std::string manifest = ReadAll(by_bsdtar / "MANIFEST.sha256");
    EXPECT_EQ(manifest, ReadAll(by_unzip / "MANIFEST.sha256"));
    for (const auto& [rel, content] : files) {
      EXPECT_NE(manifest.find(absl::StrCat(Sha256Hex(content), "  ", rel, "\n")), std::string::npos)
          << rel << "\n"
          << manifest;
    }
    for (const char* name : {"report.csv", "report.json", "report.html", "VERIFY.md", "tsa/ca.pem",
                             "tsa/chain.pem", "headers/headers.txt", "bundle.json"}) {
      EXPECT_TRUE(fs::exists(by_bsdtar / name)) << name;
    }
    RunResult sum = Sh(absl::StrCat("cd '", root_.string(), "' && sha256sum -c '",
                                    (by_bsdtar / "MANIFEST.sha256").string(), "'"));
    EXPECT_EQ(sum.exit_code, 0) << sum.output;

    int ots_checked = 0, tsr_checked = 0;
    for (const auto& [rel, content] : files) {
      const fs::path ots = by_bsdtar / "proofs" / (rel + ".ots.ots");
      RunResult py =
          Run("/usr/bin/python3", {CHECK_OTS_HEADERS_PY, ots.string(), Sha256Hex(content),
                                   (by_bsdtar / "headers").string()});
      EXPECT_EQ(py.exit_code, 0) << rel << ": " << py.output;
      EXPECT_NE(py.output.find("\"verified_heights\": ["), std::string::npos) << py.output;
      ++ots_checked;
      if (!merkle) {
        RunResult ssl =
            Run("/usr/bin/openssl", {"ts", "-verify", "-data", (root_ / rel).string(), "-in",
                                     (by_bsdtar / "proofs" / (rel + ".tsa.tsr")).string(),
                                     "-CAfile", (by_bsdtar / "tsa/ca.pem").string(), "-untrusted",
                                     (by_bsdtar / "tsa/chain.pem").string()});
        EXPECT_EQ(ssl.exit_code, 0) << rel << ": " << ssl.output;
        EXPECT_NE(ssl.output.find("Verification: OK"), std::string::npos) << ssl.output;
        ++tsr_checked;
      } else {
        EXPECT_TRUE(fs::exists(by_bsdtar / "proofs" / (rel + ".tsa.tsrm"))) << rel;
      }
    }
    if (merkle) {
      // Each batch root's token, checked by OpenSSL against the root digest its name carries.
      for (const auto& e : fs::directory_iterator(by_bsdtar / "tsa/roots")) {
        RunResult ssl = Run("/usr/bin/openssl",
                            {"ts", "-verify", "-digest", e.path().stem().string(), "-in",
                             e.path().string(), "-CAfile", (by_bsdtar / "tsa/ca.pem").string(),
                             "-untrusted", (by_bsdtar / "tsa/chain.pem").string()});
        EXPECT_EQ(ssl.exit_code, 0) << e.path() << ": " << ssl.output;
        ++tsr_checked;
      }
    }
    EXPECT_EQ(ots_checked, static_cast<int>(files.size()));
    EXPECT_GT(tsr_checked, 0);
    return by_bsdtar;
  }

  // Flips one byte of `entry` in an extracted bundle, zips it again with bsdtar, and expects
  // verify-bundle to exit 3 naming `rel`.
  void TamperAndExpectMismatch(const fs::path& extracted, const std::string& entry, size_t offset,
                               const std::string& rel) {
    std::string bytes = ReadAll(extracted / entry);
    ASSERT_LT(offset, bytes.size());
    bytes[offset] ^= 0x01;
    WriteFile(extracted / entry, bytes);
    const fs::path zip = tmp_ / "tampered.zip";
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(extracted))
      names.push_back(e.path().filename().string());
    std::vector<std::string> args = {"-a", "-cf", zip.string(), "-C", extracted.string()};
    args.insert(args.end(), names.begin(), names.end());
    RunResult z = Run("/usr/bin/bsdtar", args);
    ASSERT_EQ(z.exit_code, 0) << z.output;
    RunResult v = Ctl({"verify-bundle", zip.string()});
    EXPECT_EQ(v.exit_code, 3) << v.output;
    EXPECT_NE(v.output.find(absl::StrCat("MISMATCH ", rel, ": ")), std::string::npos) << v.output;
  }

  std::map<std::string, std::string> MakeFiles(const std::string& dir, int n) {
    std::map<std::string, std::string> files;
    for (int i = 0; i < n; ++i) {
      const std::string rel = absl::StrCat(dir, "/d", i % 2, "/file ", i, ".txt");
      files[rel] = absl::StrCat("bundled evidence ", dir, " ", i, "\n");
      WriteFile(root_ / rel, files[rel]);
    }
    return files;
  }

  fs::path tmp_, root_;
  std::unique_ptr<ChildProcess> local_;
  int runs_ = 0;
};

TEST_F(BundleE2eTest, PerFileOtsAndTsaBundleVerifiesEverywhereAndTamperingIsNamed) {
  auto files = MakeFiles("perfile", 6);
  StartLocal();
  ASSERT_TRUE(local_);
  const fs::path zip = tmp_ / "perfile.zip";
  ArchiveAndBundle("perfile", "pf", /*merkle=*/false, zip);
  if (HasFatalFailure()) return;
  const fs::path extracted = CheckWithReferenceTools(zip, files, /*merkle=*/false);
  // The report inside shows every token VERIFIED.
  const std::string csv = ReadAll(extracted / "report.csv");
  EXPECT_NE(csv.find("VERIFIED tsa "), std::string::npos) << csv;
  // A flipped byte in one token's signature: OpenSSL and verify-bundle both refuse it.
  const std::string rel = files.begin()->first;
  const std::string entry = absl::StrCat("proofs/", rel, ".tsa.tsr");
  const size_t size = ReadAll(extracted / entry).size();
  TamperAndExpectMismatch(extracted, entry, size - 3, rel);
  RunResult ssl = Run("/usr/bin/openssl", {"ts", "-verify", "-data", (root_ / rel).string(), "-in",
                                           (extracted / entry).string(), "-CAfile",
                                           (extracted / "tsa/ca.pem").string()});
  EXPECT_NE(ssl.exit_code, 0) << ssl.output;
  // anchorctl verify on the good token names the TSA, time, policy and serial.
  RunResult ver =
      Ctl({"verify", (root_ / std::next(files.begin())->first).string(),
           (extracted / "proofs" / (std::next(files.begin())->first + ".tsa.tsr")).string(),
           "--tsa-ca-file", (extracted / "tsa/ca.pem").string()});
  EXPECT_EQ(ver.exit_code, 0) << ver.output;
  for (const char* what : {"TSA:", "anchord sandbox TSA", "Policy OID:     1.2.3.4.1", "Serial:"}) {
    EXPECT_NE(ver.output.find(what), std::string::npos) << what << "\n" << ver.output;
  }
  // Against another file: mismatch (3); without trust anchors: not verifiable (1).
  RunResult other =
      Ctl({"verify", (root_ / rel).string(),
           (extracted / "proofs" / (std::next(files.begin())->first + ".tsa.tsr")).string(),
           "--tsa-ca-file", (extracted / "tsa/ca.pem").string()});
  EXPECT_EQ(other.exit_code, 3) << other.output;
  RunResult no_ca =
      Ctl({"verify", (root_ / std::next(files.begin())->first).string(),
           (extracted / "proofs" / (std::next(files.begin())->first + ".tsa.tsr")).string()});
  EXPECT_EQ(no_ca.exit_code, 1) << no_ca.output;
}

TEST_F(BundleE2eTest, MerkleOtsAndTsaBundleVerifiesEverywhereAndTamperingIsNamed) {
  auto files = MakeFiles("batched", 8);
  StartLocal();
  ASSERT_TRUE(local_);
  const fs::path zip = tmp_ / "merkle.zip";
  ArchiveAndBundle("batched", "mk", /*merkle=*/true, zip);
  if (HasFatalFailure()) return;
  const fs::path extracted = CheckWithReferenceTools(zip, files, /*merkle=*/true);
  const std::string rel = std::next(files.begin(), 2)->first;
  // anchorctl verify takes the Merkle-path form and names the root.
  RunResult ver =
      Ctl({"verify", (root_ / rel).string(), (extracted / "proofs" / (rel + ".tsa.tsrm")).string(),
           "--tsa-ca-file", (extracted / "tsa/ca.pem").string()});
  EXPECT_EQ(ver.exit_code, 0) << ver.output;
  EXPECT_NE(ver.output.find("Merkle root:"), std::string::npos) << ver.output;
  // `info` names the root; the bundle carries that root's token for OpenSSL.
  RunResult info = Ctl({"info", (extracted / "proofs" / (rel + ".tsa.tsrm")).string()});
  ASSERT_EQ(info.exit_code, 0) << info.output;
  const size_t at = info.output.find("Merkle root:    ");
  ASSERT_NE(at, std::string::npos) << info.output;
  const std::string root = info.output.substr(at + 16, 64);
  EXPECT_TRUE(fs::exists(extracted / "tsa/roots" / (root + ".tsr"))) << root;
  // A flipped byte inside the .ots's file digest (bytes 33..64): exit 3 naming the file.
  TamperAndExpectMismatch(extracted, absl::StrCat("proofs/", rel, ".ots.ots"), 40, rel);
}

// A job of several report pages (2,500 files, 1,000 a page) bundled while its pages stream by:
// every file once in the manifest, the index, each report, and as a proof that verifies. It
// catches a page dropped or written twice by the streaming writer.
TEST_F(BundleE2eTest, ABundleOfSeveralPagesHoldsEveryFileOnce) {
  constexpr int kFiles = 2500;
  std::map<std::string, std::string> files;
  for (int i = 0; i < kFiles; ++i) {
    const std::string rel = absl::StrCat("pages/d", i % 7, "/f", i);
    files[rel] = absl::StrCat("paged evidence ", i, "\n");
    WriteFile(root_ / rel, files[rel]);
  }
  StartLocal();
  ASSERT_TRUE(local_);
  RunResult a = Ctl({"archive", (root_ / "pages").string(), "--job", "pg", "--provider", "tsa",
                     "--merkle-batch", "--wait", "confirmed", "--timeout-seconds", "120"},
                    absl::Seconds(150));
  ASSERT_EQ(a.exit_code, 0) << a.output;
  const fs::path zip = tmp_ / "pages.zip";
  RunResult b = Ctl({"bundle", "--job", "pg", "-o", zip.string()}, absl::Seconds(120));
  ASSERT_EQ(b.exit_code, 0) << b.output;
  EXPECT_NE(b.output.find(absl::StrCat(kFiles, " files, ", kFiles, " proofs")), std::string::npos)
      << b.output;
  // Nothing of the spools is left beside the bundle.
  std::vector<std::string> beside;
  for (const auto& e : fs::directory_iterator(tmp_)) beside.push_back(e.path().filename());
  EXPECT_EQ(std::count_if(beside.begin(), beside.end(),
                          [](const std::string& n) {
                            return absl::StrContains(n, "spool") || absl::StrContains(n, ".tmp");
                          }),
            0);
  RunResult v =
      Ctl({"--json", "verify-bundle", zip.string(), "--files", root_.string()}, absl::Seconds(120));
  ASSERT_EQ(v.exit_code, 0) << v.output;
  const nlohmann::json j = nlohmann::json::parse(v.output, nullptr, false);
  ASSERT_TRUE(j.is_object()) << v.output;
  EXPECT_EQ(j["files"], kFiles);
  EXPECT_EQ(j["verified_proofs"], kFiles);
  EXPECT_EQ(j["files_checked"], kFiles);

  const fs::path x = tmp_ / "pages_x";
  fs::create_directories(x);
  RunResult t = Run("/usr/bin/bsdtar", {"-xf", zip.string(), "-C", x.string()});
  ASSERT_EQ(t.exit_code, 0) << t.output;
  std::set<std::string> manifest;
  for (absl::string_view line :
       absl::StrSplit(ReadAll(x / "MANIFEST.sha256"), '\n', absl::SkipEmpty())) {
    ASSERT_GT(line.size(), 66u) << line;
    const std::string rel(line.substr(66));
    ASSERT_TRUE(files.count(rel)) << line;
    EXPECT_EQ(line.substr(0, 64), Sha256Hex(files[rel])) << rel;
    EXPECT_TRUE(manifest.insert(rel).second) << rel << " twice";
  }
  EXPECT_EQ(manifest.size(), files.size());
  const nlohmann::json meta = nlohmann::json::parse(ReadAll(x / "bundle.json"), nullptr, false);
  ASSERT_TRUE(meta.is_object());
  EXPECT_EQ(meta["files"], kFiles);
  std::set<std::string> indexed;
  for (const auto& p : meta["proofs"]) {
    EXPECT_TRUE(indexed.insert(p["path"].get<std::string>()).second) << p;
    EXPECT_EQ(p["format"], "tsrm") << p;
    EXPECT_TRUE(fs::exists(x / p["entry"].get<std::string>())) << p;
  }
  EXPECT_EQ(indexed, manifest);
  const nlohmann::json report = nlohmann::json::parse(ReadAll(x / "report.json"), nullptr, false);
  ASSERT_TRUE(report.is_array());
  std::set<std::string> reported;
  for (const auto& r : report) reported.insert(r["path"].get<std::string>());
  EXPECT_EQ(report.size(), files.size());
  EXPECT_EQ(reported.size(), files.size());
  const std::string csv = ReadAll(x / "report.csv");
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), kFiles + 1);
  const std::string html = ReadAll(x / "report.html");
  size_t rows = 0;
  for (size_t at = html.find("<tr><td>"); at != std::string::npos;
       at = html.find("<tr><td>", at + 1)) {
    ++rows;
  }
  EXPECT_EQ(rows, files.size());
  EXPECT_NE(html.find(absl::StrCat(kFiles, " files, ", kFiles, " proofs.")), std::string::npos);
  EXPECT_TRUE(absl::EndsWith(html, "</body></html>\n"));
}

}  // namespace
}  // namespace anchord::anchorctl
