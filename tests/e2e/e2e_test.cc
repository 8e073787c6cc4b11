// End-to-end: the real anchord-hasher, -submitter, -poller and -sandbox binaries as child
// processes on 127.0.0.1, driven by the real anchorctl binary. Checks what a user relies on:
// every file ends CONFIRMED, duplicates and problem files are reported per file, every distinct
// digest is created exactly once at the provider (also across faults and a submitter crash), the
// rate limits are respected, and the downloaded .ots checks out with the reference library.
#include <openssl/evp.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "libs/common/hex.h"
#include "services/anchorctl/process.h"
#include "services/anchorctl/stack.h"
#include "tests/e2e/e2e_util.h"
#include "tests/testing/wait.h"

namespace anchord::anchorctl {
namespace {
namespace fs = std::filesystem;

using e2e::RunResult;
using e2e::Sha256Hex;
using e2e::WriteFile;

class E2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "anchord_e2e_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    tmp_ = tmpl;
    root_ = tmp_ / "root";
    fs::create_directories(root_ / "tree");
  }

  void TearDown() override {
    if (background_) background_->Stop(absl::Seconds(5));
    if (HasFailure() && stack_) {
      for (const char* s : {"sandbox", "poller", "submitter", "hasher"}) {
        std::cerr << "---- end of " << s << ".log ----\n"
                  << TailOfFile((tmp_ / "run" / (std::string(s) + ".log")).string(), 3000) << "\n";
      }
    }
    const absl::Time stop_start = absl::Now();
    stack_.reset();  // SIGTERM, then SIGKILL: no child outlives the test
    std::cerr << "stack stopped in " << absl::FormatDuration(absl::Now() - stop_start) << "\n";
    // ANCHORD_E2E_KEEP=1 keeps the logs, databases and anchorctl outputs for a post-mortem.
    if (std::getenv("ANCHORD_E2E_KEEP") != nullptr) {
      std::cerr << "kept " << tmp_ << "\n";
      return;
    }
    std::error_code ec;
    fs::remove_all(tmp_, ec);
  }

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
    // 30 creates per 2 s, confirmation after 2 s: the whole run takes seconds, not minutes.
    o.sandbox_window_seconds = 2;
    o.sandbox_confirm_after_seconds = confirm_after_seconds_;
    o.poll_interval_seconds = 1;
    o.extra_args = extra_args_;
    auto stack = LocalStack::Start(o);
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = std::move(*stack);
    const std::string url = stack_->info().sandbox_url;
    ASSERT_EQ(url.rfind("http://127.0.0.1:", 0), 0u) << url;
    sandbox_port_ = std::stoi(url.substr(strlen("http://127.0.0.1:")));
  }

  std::vector<std::string> CtlArgs(const std::vector<std::string>& args) {
    if (!stack_) {
      ADD_FAILURE() << "CtlArgs needs a started stack";
      return args;
    }
    std::vector<std::string> all = {
        "--hasher",   stack_->info().hasher,  "--submitter",   stack_->info().submitter,
        "--poller",   stack_->info().poller,  "--hasher-root", root_.string(),
        "--data-dir", (tmp_ / "ctl").string()};
    all.insert(all.end(), args.begin(), args.end());
    return all;
  }

  ChildSpec CtlSpec(const std::vector<std::string>& args, const std::string& out) {
    ChildSpec spec;
    spec.name = "anchorctl";
    spec.binary = ANCHORCTL_BIN;
    spec.args = CtlArgs(args);
    spec.log_file = out;
    return spec;
  }

  RunResult RunCtl(const std::vector<std::string>& args, absl::Duration timeout = absl::Seconds(60),
                   bool with_addresses = true) {
    const std::string out = (tmp_ / absl::StrCat("ctl_", ++runs_, ".out")).string();
    RunResult r;
    const absl::Time start = absl::Now();
    ChildSpec spec;
    if (with_addresses) {
      spec = CtlSpec(args, out);
    } else {
      // Only the data dir: anchorctl must find (or start) the stack itself.
      spec.name = "anchorctl";
      spec.binary = ANCHORCTL_BIN;
      spec.log_file = out;
      spec.args = {"--data-dir", (tmp_ / "ctl").string()};
      spec.args.insert(spec.args.end(), args.begin(), args.end());
    }
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
    std::cerr << "anchorctl " << (args.size() > 1 && args[0] == "--json" ? args[1] : args[0])
              << " exited " << r.exit_code << " after " << absl::FormatDuration(absl::Now() - start)
              << "\n";
    return r;
  }

  std::map<std::string, std::vector<std::string>> extra_args_;
  int confirm_after_seconds_ = 2;

  nlohmann::json SandboxStats() {
    httplib::Client cli("127.0.0.1", sandbox_port_);
    cli.set_connection_timeout(5);
    cli.set_read_timeout(5);
    auto res = cli.Get("/_sandbox/stats");
    if (!res || res->status != 200) return nlohmann::json();
    auto j = nlohmann::json::parse(res->body, nullptr, false);
    return j.is_discarded() ? nlohmann::json() : j;
  }

  // `report --format json` (with the sandbox's headers unless `verify` is false) until `done`
  // holds for its rows, for at most `timeout`; returns the last rows (an array, or null after a
  // failed run, which is also a test failure).
  nlohmann::json ReportUntil(const std::string& job,
                             const std::function<bool(const nlohmann::json&)>& done,
                             bool verify = true, absl::Duration timeout = absl::Seconds(40)) {
    const std::string file = (tmp_ / absl::StrCat("report-", job, ".json")).string();
    nlohmann::json rows;
    bool failed = false;
    testing::WaitUntil(
        [&] {
          std::vector<std::string> args = {"report", "--job", job, "--format", "json", "-o", file};
          if (verify) {
            args.insert(args.end(), {"--headers", "sandbox:" + stack_->info().sandbox_url});
          } else {
            args.push_back("--no-verify");
          }
          RunResult rep = RunCtl(args);
          if (rep.exit_code != 0) {
            ADD_FAILURE() << "report exited " << rep.exit_code << ": " << rep.output;
            failed = true;
            return true;  // stop waiting
          }
          rows = nlohmann::json::parse(TailOfFile(file, 1 << 22), nullptr, false);
          return rows.is_array() && done(rows);
        },
        timeout, absl::Milliseconds(500));
    return failed ? nlohmann::json() : rows;
  }

  static bool AllVerified(const nlohmann::json& rows) {
    for (const auto& row : rows) {
      if (row.value("verification", "").rfind("VERIFIED block ", 0) != 0) return false;
    }
    return true;
  }

  int64_t StatInt(const nlohmann::json& stats, const char* key) {
    if (!stats.is_object() || !stats.contains(key) || !stats[key].is_number_integer()) return -1;
    return stats[key].get<int64_t>();
  }

  bool SetFaults(const std::string& body) {
    httplib::Client cli("127.0.0.1", sandbox_port_);
    cli.set_connection_timeout(5);
    cli.set_read_timeout(5);
    auto res = cli.Post("/_sandbox/faults", body, "application/json");
    return res && res->status == 200;
  }

  // Waits (bounded) until the sandbox counted `want` creates; the stats lag the poller's view only
  // by the time a response takes, so this is short.
  nlohmann::json StatsWhenCreates(int64_t want) {
    nlohmann::json stats;
    testing::WaitUntil(
        [&] {
          stats = SandboxStats();
          return StatInt(stats, "creates_total") >= want;
        },
        absl::Seconds(10), absl::Milliseconds(100));
    return stats;
  }

  // Report rows by path.
  std::map<std::string, nlohmann::json> Report(const std::string& job, bool with_addresses = true) {
    const std::string out = (tmp_ / absl::StrCat("report_", job, ".json")).string();
    RunResult r = RunCtl({"report", "--job", job, "--format", "json", "--output", out},
                         absl::Seconds(60), with_addresses);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    std::map<std::string, nlohmann::json> rows;
    auto text = ReadSmallFile(out, 64 << 20);
    if (!text.ok()) return rows;
    auto j = nlohmann::json::parse(*text, nullptr, false);
    EXPECT_TRUE(j.is_array()) << *text;
    if (!j.is_array()) return rows;
    for (const auto& row : j) {
      if (row.is_object() && row.contains("path") && row["path"].is_string()) {
        rows[row["path"].get<std::string>()] = row;
      }
    }
    return rows;
  }

  // Writes `unique` distinct files under tree/orig and `dups` copies of some of them under
  // tree/copies/...; returns path (relative to the root) -> content.
  // `count` small distinct files tree/<prefix><i>.txt holding "<text> <i>"; returns path ->
  // content.
  std::map<std::string, std::string> FlatFiles(const std::string& prefix, int count,
                                               const std::string& text) {
    std::map<std::string, std::string> files;
    for (int i = 0; i < count; ++i) {
      const std::string rel = absl::StrCat("tree/", prefix, i, ".txt");
      files[rel] = absl::StrCat(text, " ", i, "\n");
      WriteFile(root_ / rel, files[rel]);
    }
    return files;
  }

  std::map<std::string, std::string> MakeTree(int unique, int dups, const std::string& tag) {
    std::map<std::string, std::string> files;
    for (int i = 0; i < unique; ++i) {
      std::string content = absl::StrCat("evidence ", tag, " #", i, "\n");
      for (int k = 0; k < i % 13; ++k)
        absl::StrAppend(&content, "padding line ", k, " of ", i, "\n");
      const std::string rel = absl::StrCat("tree/orig/d", i % 10, "/file", i, ".txt");
      WriteFile(root_ / rel, content);
      files[rel] = content;
    }
    for (int j = 0; j < dups; ++j) {
      const int of = (j * 7) % unique;
      const std::string rel = absl::StrCat("tree/copies/c", j % 5, "/copy", j, ".bin");
      const std::string content = files[absl::StrCat("tree/orig/d", of % 10, "/file", of, ".txt")];
      WriteFile(root_ / rel, content);
      files[rel] = content;
    }
    return files;
  }

  // Every file of `files` is CONFIRMED with its own digest, and every group of identical files
  // has one original that the others name as duplicate_of.
  void ExpectAllConfirmed(const std::map<std::string, nlohmann::json>& rows,
                          const std::map<std::string, std::string>& files) {
    std::map<std::string, std::vector<std::string>> by_digest;
    for (const auto& [path, content] : files) {
      auto it = rows.find(path);
      ASSERT_NE(it, rows.end()) << "no report row for " << path;
      const auto& row = it->second;
      EXPECT_EQ(row.value("status", ""), "CONFIRMED") << row.dump();
      EXPECT_EQ(row.value("digest", ""), Sha256Hex(content)) << path;
      EXPECT_EQ(row.value("size_bytes", int64_t{-1}), static_cast<int64_t>(content.size())) << path;
      EXPECT_EQ(row.value("provider", ""), "proofd") << path;
      EXPECT_FALSE(row.value("proof_id", "").empty()) << path;
      EXPECT_GT(row.value("bitcoin_block_height", int64_t{0}), 0) << path;
      by_digest[Sha256Hex(content)].push_back(path);
    }
    for (const auto& [digest, paths] : by_digest) {
      std::set<std::string> originals;
      for (const auto& p : paths) {
        if (rows.at(p).value("duplicate_of", "").empty()) originals.insert(p);
      }
      ASSERT_EQ(originals.size(), 1u) << "digest " << digest << " has " << originals.size()
                                      << " files not marked as duplicates";
      for (const auto& p : paths) {
        if (originals.count(p) == 0) {
          EXPECT_EQ(rows.at(p).value("duplicate_of", ""), *originals.begin()) << p;
        }
      }
    }
  }

  fs::path tmp_;
  fs::path root_;
  int sandbox_port_ = 0;
  int runs_ = 0;
  std::unique_ptr<LocalStack> stack_;
  std::unique_ptr<ChildProcess> background_;
};

// A dry run prints every file's digest in sha256sum's format, and `sha256sum -c` run from the
// hasher's root accepts the whole output: the line of a name holding a newline or a backslash is
// escaped (a name cannot forge a line), a file that could not be hashed says why, and every line
// is there (the command once kept the results to print them at the end, at most 1,000,000).
TEST_F(E2eTest, DryRunPrintsEachFilesDigestAndSha256sumChecksThem) {
  std::map<std::string, std::string> files;  // path under the root -> content
  for (int i = 0; i < 1500; ++i) {
    files[absl::StrCat("tree/d", i % 7, "/f", i, ".txt")] = absl::StrCat("dry run ", i, "\n");
  }
  files["tree/two\nlines.txt"] = "a name with a newline";
  files["tree/back\\slash.txt"] = "a name with a backslash";
  files["tree/forged\n" + std::string(64, '0') + "  tree/d0/f0.txt"] = "a name that forges a line";
  for (const auto& [rel, content] : files) WriteFile(root_ / rel, content);
  fs::create_directories(root_ / "tree/bad");
  ASSERT_EQ(mkfifo((root_ / "tree/bad/fifo").c_str(), 0600), 0);
  StartStack();

  RunResult r = RunCtl({"archive", (root_ / "tree").string(), "--job", "dry", "--dry-run"});
  ASSERT_EQ(r.exit_code, 4) << r.output;  // a file could not be hashed: the fifo

  // The dry run's lines, from the output that also holds the progress and the summary.
  std::string sums;
  std::map<std::string, std::string> digests;  // path as printed -> digest
  std::vector<std::string> problems;
  for (absl::string_view line : absl::StrSplit(r.output, '\n', absl::SkipEmpty())) {
    absl::string_view body = line;
    const bool escaped = absl::ConsumePrefix(&body, "\\");
    if (absl::StartsWith(body, "-  ")) {
      problems.emplace_back(line);
      continue;
    }
    if (body.size() < 66 || body.substr(64, 2) != "  " ||
        body.find_first_not_of("0123456789abcdef") != 64) {
      continue;
    }
    std::string path(body.substr(66));
    if (escaped) {
      path = absl::StrReplaceAll(path, {{"\\\\", "\x01"}, {"\\n", "\n"}});
      std::replace(path.begin(), path.end(), '\x01', '\\');
    }
    EXPECT_TRUE(digests.emplace(path, std::string(body.substr(0, 64))).second) << path;
    absl::StrAppend(&sums, line, "\n");
  }
  EXPECT_EQ(digests.size(), files.size()) << r.output.substr(0, 2000);
  for (const auto& [rel, content] : files) {
    EXPECT_EQ(digests[rel], e2e::Sha256Hex(content)) << rel;
  }
  ASSERT_EQ(problems.size(), 1u) << r.output.substr(0, 2000);
  EXPECT_TRUE(absl::StartsWith(problems[0], "-  tree/bad/fifo  ")) << problems[0];

  // GNU sha256sum reads the same lines back, escapes included.
  WriteFile(tmp_ / "dry.sha256", sums);
  const std::string check = absl::StrCat("cd '", root_.string(), "' && sha256sum --quiet -c '",
                                         (tmp_ / "dry.sha256").string(), "' > '",
                                         (tmp_ / "check.out").string(), "' 2>&1");
  EXPECT_EQ(std::system(check.c_str()), 0) << TailOfFile((tmp_ / "check.out").string(), 4096);
}

TEST_F(E2eTest, FaultFreeArchiveConfirmsEveryFileOnce) {
  // 440 distinct files + 50 copies in other directories + one file changed between two runs
  // + 4 problem entries = 495 entries (and 500 with the directory levels' own files below).
  auto files = MakeTree(440, 50, "a");
  for (int i = 0; i < 5; ++i) {
    const std::string rel = absl::StrCat("tree/more/m", i, ".dat");
    const std::string content = absl::StrCat("more evidence ", i, "\n");
    WriteFile(root_ / rel, content);
    files[rel] = content;
  }
  const std::string changed = "tree/orig/changing.log";
  const std::string first_content = "log line 1\n";
  WriteFile(root_ / changed, first_content);
  // Problem entries, each must be reported on its own: a dangling symlink, a symlink escaping
  // the root (tests run as root, so an unreadable mode would not stop the hasher), a FIFO and an
  // empty file (providers reject empty files).
  fs::create_directories(root_ / "tree/bad");
  fs::create_symlink("/nonexistent/anchord-e2e-target", root_ / "tree/bad/dangling");
  fs::create_symlink("/etc/hostname", root_ / "tree/bad/escaping");
  ASSERT_EQ(mkfifo((root_ / "tree/bad/fifo").c_str(), 0600), 0);
  WriteFile(root_ / "tree/bad/empty.txt", "");
  const std::vector<std::string> problems = {"tree/bad/dangling", "tree/bad/escaping",
                                             "tree/bad/fifo", "tree/bad/empty.txt"};
  StartStack();

  // Run 1 only queues (durable at the submitter); then the file changes; run 2 must hash it again
  // and skip what is unchanged.
  RunResult first = RunCtl({"--json", "archive", (root_ / "tree").string(), "--job", "e2e",
                            "--wait", "queued", "--timeout-seconds", "60"});
  ASSERT_EQ(first.exit_code, 4) << "problem files must give exit code 4\n" << first.output;
  {
    std::ofstream out(root_ / changed, std::ios::app);
    out << "log line 2, appended between the runs\n";
  }
  files[changed] = first_content + "log line 2, appended between the runs\n";
  RunResult second = RunCtl({"--json", "archive", (root_ / "tree").string(), "--job", "e2e",
                             "--wait", "confirmed", "--timeout-seconds", "90"},
                            absl::Seconds(100));
  ASSERT_EQ(second.exit_code, 4) << second.output;
  {
    // The JSON summary is the last object on stdout; progress lines go to stderr before it.
    auto pos = second.output.find("{\n");
    ASSERT_NE(pos, std::string::npos) << second.output;
    auto summary = nlohmann::json::parse(second.output.substr(pos), nullptr, false);
    ASSERT_TRUE(summary.is_object()) << second.output;
    EXPECT_EQ(summary.value("outcome", ""), "some files failed");
    EXPECT_GE(summary.value("unchanged", 0), 400) << "an unchanged file was hashed again";
    EXPECT_EQ(summary.value("failed", -1), 0);
    EXPECT_EQ(summary.value("confirmed", -1), summary.value("distinct_digests", -2));
  }

  std::set<std::string> distinct;
  for (const auto& [p, c] : files) distinct.insert(Sha256Hex(c));
  distinct.insert(Sha256Hex(first_content));  // anchored by run 1 before the file changed

  auto rows = Report("e2e");
  ExpectAllConfirmed(rows, files);
  for (const auto& p : problems) {
    auto it = rows.find(p);
    ASSERT_NE(it, rows.end()) << "problem file " << p << " missing from the report";
    EXPECT_EQ(it->second.value("status", ""), "FAILED") << it->second.dump();
    EXPECT_FALSE(it->second.value("reason", "").empty()) << it->second.dump();
  }

  auto stats = StatsWhenCreates(static_cast<int64_t>(distinct.size()));
  EXPECT_EQ(StatInt(stats, "rate_limited_total"), 0) << stats.dump();
  EXPECT_EQ(StatInt(stats, "max_creates_per_digest"), 1) << stats.dump();
  EXPECT_EQ(StatInt(stats, "creates_total"), static_cast<int64_t>(distinct.size())) << stats.dump();

  // One proof end to end: anchorctl get, download, and the reference OpenTimestamps check.
  const std::string hex = Sha256Hex(files["tree/orig/d3/file3.txt"]);
  RunResult get = RunCtl({"get", hex});
  EXPECT_EQ(get.exit_code, 0) << get.output;
  EXPECT_NE(get.output.find("CONFIRMED"), std::string::npos) << get.output;
  const std::string ots = (tmp_ / "proof.ots").string();
  // A proof is CONFIRMED one step before its .ots is downloaded (the same polling round, or the
  // next one when a provider's limit ended this one early): until then `download` says so.
  RunResult dl;
  testing::WaitUntil(
      [&] {
        dl = RunCtl({"download", hex, "-o", ots});
        return dl.output.find("no .ots stored yet") == std::string::npos;
      },
      absl::Seconds(30), absl::Milliseconds(200));
  ASSERT_EQ(dl.exit_code, 0) << dl.output;
  ChildSpec check;
  check.name = "check_ots";
  check.binary = "/usr/bin/python3";
  check.args = {CHECK_OTS_PY, ots, "--digest", hex};
  check.log_file = (tmp_ / "check_ots.out").string();
  auto checker = ChildProcess::Spawn(check);
  ASSERT_TRUE(checker.ok()) << checker.status();
  ASSERT_TRUE((*checker)->WaitExit(absl::Seconds(30)));
  int st = (*checker)->raw_wait_status();
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << TailOfFile(check.log_file);

  RunResult status = RunCtl({"--json", "status", "--job", "e2e"});
  EXPECT_EQ(status.exit_code, 0) << status.output;
}

// `archive --local` starts its own stack (binaries found next to anchorctl, in the build tree's
// layout) and stops it; `anchorctl local` then serves the same data, and other commands find it
// through DATA_DIR/run/stack.json alone; SIGTERM stops it and removes the record.
TEST_F(E2eTest, LocalStackFromAnchorctl) {
  std::map<std::string, std::string> files;
  for (int i = 0; i < 6; ++i) {
    const std::string rel = absl::StrCat("f", i, ".txt");
    files[rel] = absl::StrCat("local evidence ", i % 5, "\n");  // f5 duplicates f0
    WriteFile(root_ / "tree" / rel, files[rel]);
  }
  const std::vector<std::string> sandbox_flags = {
      "--sandbox", "--sandbox-window-seconds", "2", "--sandbox-confirm-after-seconds",
      "1",         "--poll-interval-seconds",  "1"};
  std::vector<std::string> args = {"--json", "archive",   (root_ / "tree").string(), "--local",
                                   "--wait", "confirmed", "--timeout-seconds",       "40"};
  args.insert(args.end(), sandbox_flags.begin(), sandbox_flags.end());
  RunResult r = RunCtl(args, absl::Seconds(60), /*with_addresses=*/false);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto pos = r.output.find("{\n");
  ASSERT_NE(pos, std::string::npos) << r.output;
  auto summary = nlohmann::json::parse(r.output.substr(pos), nullptr, false);
  ASSERT_TRUE(summary.is_object()) << r.output;
  EXPECT_EQ(summary.value("confirmed", -1), 5);
  EXPECT_EQ(summary.value("duplicates", -1), 1);
  const fs::path stack_file = tmp_ / "ctl" / "run" / "stack.json";
  EXPECT_FALSE(fs::exists(stack_file)) << "--local must not leave a stack record behind";

  std::vector<std::string> local_args = {"--data-dir", (tmp_ / "ctl").string(), "local", "--root",
                                         (root_ / "tree").string()};
  local_args.insert(local_args.end(), sandbox_flags.begin(), sandbox_flags.end());
  ChildSpec spec;
  spec.name = "anchorctl local";
  spec.binary = ANCHORCTL_BIN;
  spec.args = local_args;
  spec.log_file = (tmp_ / "local.out").string();
  auto local = ChildProcess::Spawn(spec);
  ASSERT_TRUE(local.ok()) << local.status();
  background_ = std::move(*local);
  // Waits for the stack record, or for `local` to exit early (then the record never comes).
  testing::WaitUntil([&] { return fs::exists(stack_file) || !background_->Running(); },
                     absl::Seconds(30), absl::Milliseconds(100));
  ASSERT_TRUE(fs::exists(stack_file)) << TailOfFile(spec.log_file);
  auto info = StackInfo::FromJson(*ReadSmallFile(stack_file.string()));
  ASSERT_TRUE(info.ok()) << info.status();
  // stack.json names every endpoint the stack opened: before the fix the internal ports did not
  // exist and the webhook was not recorded.
  for (const std::string* endpoint :
       {&info->hasher, &info->submitter, &info->poller, &info->submitter_internal,
        &info->poller_internal, &info->webhook}) {
    EXPECT_EQ(endpoint->rfind("127.0.0.1:", 0), 0u) << *ReadSmallFile(stack_file.string());
  }
  EXPECT_EQ(info->metrics.size(), 3u) << *ReadSmallFile(stack_file.string());
  EXPECT_EQ(info->sandbox_url.rfind("http://127.0.0.1:", 0), 0u);
  EXPECT_FALSE(info->sandbox_calendars.empty());
  // The webhook recorded is the poller's: it answers an unknown provider with 404.
  {
    httplib::Client webhook("http://" + info->webhook);
    webhook.set_connection_timeout(5);
    auto res = webhook.Post("/callbacks/nosuchprovider", "{}", "application/json");
    ASSERT_TRUE(res) << "webhook " << info->webhook << " unreachable";
    EXPECT_EQ(res->status, 404);
  }
  // Plaintext outside callers (no internal token) are refused on every internal RPC.
  e2e::ExpectInternalRpcsRefused(*info, rpc::TransportSecurity{});

  auto rows = Report("default", /*with_addresses=*/false);
  ASSERT_EQ(rows.size(), files.size());
  for (const auto& [path, content] : files) {
    ASSERT_EQ(rows.count(path), 1u) << path;
    EXPECT_EQ(rows[path].value("status", ""), "CONFIRMED") << rows[path].dump();
    EXPECT_EQ(rows[path].value("digest", ""), Sha256Hex(content));
  }
  // A second stack on the same data dir is refused: two submitters must not share one queue.
  RunResult second = RunCtl({"local", "--root", root_.string()}, absl::Seconds(30), false);
  EXPECT_EQ(second.exit_code, 2) << second.output;

  background_->Signal(SIGTERM);
  ASSERT_TRUE(background_->WaitExit(absl::Seconds(30))) << TailOfFile(spec.log_file);
  int st = background_->raw_wait_status();
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << TailOfFile(spec.log_file);
  EXPECT_FALSE(fs::exists(stack_file));
  for (const auto& [service, pid] : info->pids) {
    EXPECT_FALSE(ProcessAlive(pid)) << service << " (pid " << pid << ") outlived anchorctl local";
  }
}

TEST_F(E2eTest, FaultsAndSubmitterCrashStillCreateEachDigestOnce) {
  auto files = MakeTree(200, 20, "b");
  std::set<std::string> distinct;
  for (const auto& [p, c] : files) distinct.insert(Sha256Hex(c));
  StartStack();

  const std::string out = (tmp_ / "archive_bg.out").string();
  auto bg = ChildProcess::Spawn(CtlSpec({"archive", (root_ / "tree").string(), "--job", "crash",
                                         "--wait", "confirmed", "--timeout-seconds", "100"},
                                        out));
  ASSERT_TRUE(bg.ok()) << bg.status();
  background_ = std::move(*bg);

  // Mid-run: once some digests were created, turn faults on and kill the submitter hard.
  int64_t created = 0;
  testing::WaitUntil(
      [&] {
        created = StatInt(SandboxStats(), "creates_total");
        return created >= 40;
      },
      absl::Seconds(30), absl::Milliseconds(100));
  ASSERT_GE(created, 40) << "the run did not start creating";
  ASSERT_LT(created, static_cast<int64_t>(distinct.size())) << "the run ended before the crash";
  const int64_t limited_before = StatInt(SandboxStats(), "rate_limited_total");
  ASSERT_TRUE(SetFaults(R"({"error_rate":0.1,"drop_rate":0.05,"storm_seconds":2})"));
  // The kill waits for the storm's first 429 and then a second: a 429 whose Retry-After the
  // submitter read but had not stored when SIGKILL came (its gate is committed behind the
  // intake's group commit, which holds the writer for tens of ms) is unknown to the next process,
  // which then sends one early request. No process can store what it never finished receiving;
  // what this test checks is that a stored gate outlives the crash. Bounded: 10 s, then the kill
  // goes ahead anyway.
  testing::WaitUntil([&] { return StatInt(SandboxStats(), "rate_limited_total") > limited_before; },
                     absl::Seconds(10), absl::Milliseconds(20));
  absl::SleepFor(absl::Seconds(1));
  ASSERT_TRUE(stack_->CrashAndRestart("submitter").ok());

  ASSERT_TRUE(background_->WaitExit(absl::Seconds(110))) << TailOfFile(out);
  int st = background_->raw_wait_status();
  int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  if (code != 0) {
    // A rerun is the documented way to finish a run cut short; it must then complete.
    std::cerr << "first archive ended with " << code << "; rerunning\n" << TailOfFile(out) << "\n";
    RunResult again = RunCtl({"archive", (root_ / "tree").string(), "--job", "crash", "--wait",
                              "confirmed", "--timeout-seconds", "60"},
                             absl::Seconds(70));
    ASSERT_EQ(again.exit_code, 0) << again.output;
  }

  ExpectAllConfirmed(Report("crash"), files);
  auto stats = StatsWhenCreates(static_cast<int64_t>(distinct.size()));
  EXPECT_EQ(StatInt(stats, "max_creates_per_digest"), 1) << stats.dump();
  EXPECT_EQ(StatInt(stats, "creates_total"), static_cast<int64_t>(distinct.size())) << stats.dump();
  EXPECT_EQ(StatInt(stats, "early_requests_total"), 0) << stats.dump();
  if (stats.contains("creates_by_digest") && stats["creates_by_digest"].is_object()) {
    EXPECT_EQ(stats["creates_by_digest"].size(), distinct.size());
    for (const auto& d : distinct) {
      EXPECT_EQ(stats["creates_by_digest"].value(d, 0), 1) << d;
    }
  } else {
    ADD_FAILURE() << "no creates_by_digest in " << stats.dump();
  }
}

// Merkle batching through the real services: 60 distinct files in batches of at most 25 cost the
// provider 3 creates (one per root), and every file still gets its own proof that verifies
// against the sandbox's block headers, in anchorctl's report and with the reference library.
// A report of more files than one page (ForEachReportPage, kReportPageFiles): every file once,
// with its digest and its proof, duplicates naming their original, in CSV and in JSON, both
// written page by page into a file that appears whole; and verified, duplicates sharing a verdict.
TEST_F(E2eTest, AReportOfSeveralPagesHasEveryFileOnce) {
  auto files = MakeTree(2300, 200, "paged");
  extra_args_["submitter"] = {"--merkle-max-leaves", "1000", "--merkle-window-seconds", "1"};
  StartStack();
  ASSERT_TRUE(stack_);
  RunResult r = RunCtl({"archive", (root_ / "tree").string(), "--job", "paged", "--merkle-batch",
                        "--wait", "submitted", "--timeout-seconds", "90"},
                       absl::Seconds(120));
  ASSERT_EQ(r.exit_code, 0) << r.output;

  const std::string json_file = (tmp_ / "paged.json").string();
  const std::string csv_file = (tmp_ / "paged.csv").string();
  WriteFile(csv_file, "an older report\n");
  ASSERT_EQ(RunCtl({"report", "--job", "paged", "--no-verify", "--format", "json", "-o", json_file})
                .exit_code,
            0);
  ASSERT_EQ(RunCtl({"report", "--job", "paged", "--no-verify", "-o", csv_file}).exit_code, 0);
  std::ifstream in(json_file);
  nlohmann::json rows = nlohmann::json::parse(in, nullptr, false);
  ASSERT_TRUE(rows.is_array());
  ASSERT_EQ(rows.size(), files.size());
  std::map<std::string, nlohmann::json> by_path;
  for (const auto& row : rows) {
    const std::string path = row.value("path", "");
    ASSERT_TRUE(files.count(path)) << path;
    EXPECT_TRUE(by_path.emplace(path, row).second) << "twice: " << path;
    EXPECT_EQ(row.value("digest", ""), Sha256Hex(files[path])) << path;
    EXPECT_EQ(row.value("provider", ""), "proofd") << path;
    EXPECT_EQ(row.value("merkle_root", "").size(), 64u) << path;
  }
  // Each group of identical files: one original, which the others name.
  std::map<std::string, std::vector<std::string>> by_digest;
  for (const auto& [path, content] : files) by_digest[Sha256Hex(content)].push_back(path);
  size_t groups = 0;
  for (const auto& [digest, paths] : by_digest) {
    if (paths.size() < 2) continue;
    ++groups;
    std::set<std::string> named, originals;
    for (const std::string& p : paths) {
      const std::string of = by_path[p].value("duplicate_of", "");
      (of.empty() ? originals : named).insert(of.empty() ? p : of);
    }
    EXPECT_EQ(originals.size(), 1u) << digest;
    EXPECT_EQ(named, originals) << digest;
  }
  EXPECT_GT(groups, 100u);
  // The CSV: its header and a line per row (no field here holds a newline), the older file gone.
  std::ifstream csv(csv_file);
  std::string line;
  std::getline(csv, line);
  EXPECT_EQ(line.rfind("path,digest,size_bytes,", 0), 0u) << line;
  size_t lines = 0;
  while (std::getline(csv, line)) {
    ++lines;
    EXPECT_TRUE(files.count(line.substr(0, line.find(',')))) << line;
  }
  EXPECT_EQ(lines, files.size());
  EXPECT_FALSE(fs::exists(csv_file + ".tmp." + std::to_string(getpid())));

  // Verified: one verdict per digest, shared by its duplicates.
  RunResult verified = RunCtl({"report", "--job", "paged", "--format", "json", "--headers",
                               "sandbox:" + stack_->info().sandbox_url, "-o", json_file},
                              absl::Seconds(120));
  ASSERT_EQ(verified.exit_code, 0) << verified.output;
  std::ifstream in2(json_file);
  rows = nlohmann::json::parse(in2, nullptr, false);
  ASSERT_TRUE(rows.is_array());
  ASSERT_EQ(rows.size(), files.size());
  std::map<std::string, std::string> verdict_of_digest;
  for (const auto& row : rows) {
    const std::string v = row.value("verification", "");
    EXPECT_FALSE(v.empty()) << row.dump();
    auto [it, first] = verdict_of_digest.emplace(row.value("digest", ""), v);
    EXPECT_EQ(it->second, v) << row.dump();
  }
}

TEST_F(E2eTest, MerkleBatchingAnchorsRootsAndEveryFileProofVerifies) {
  std::map<std::string, std::string> files;
  for (int i = 0; i < 60; ++i) {
    const std::string rel = absl::StrCat("tree/b", i % 3, "/file", i, ".txt");
    files[rel] = absl::StrCat("batched evidence ", i, "\n");
    WriteFile(root_ / rel, files[rel]);
  }
  extra_args_["submitter"] = {"--merkle-max-leaves", "25", "--merkle-window-seconds", "1"};
  StartStack();
  ASSERT_TRUE(stack_);
  RunResult r = RunCtl({"archive", (root_ / "tree").string(), "--job", "batch", "--merkle-batch",
                        "--wait", "confirmed", "--timeout-seconds", "90"},
                       absl::Seconds(120));
  ASSERT_EQ(r.exit_code, 0) << r.output;

  // The provider saw roots only: 60 leaves in batches of <= 25 (the window may split them more).
  auto stats = StatsWhenCreates(3);
  const int64_t creates = StatInt(stats, "creates_total");
  EXPECT_GE(creates, 3) << stats.dump();
  EXPECT_LE(creates, 8) << stats.dump();
  EXPECT_EQ(StatInt(stats, "max_creates_per_digest"), 1) << stats.dump();
  EXPECT_EQ(StatInt(stats, "rate_limited_total"), 0) << stats.dump();

  // "confirmed" may come a moment before the roots' .ots is stored: bounded wait for it.
  nlohmann::json rows = ReportUntil("batch", AllVerified);
  ASSERT_TRUE(rows.is_array());
  ASSERT_EQ(rows.size(), files.size()) << rows.dump(1);
  std::set<std::string> roots;
  for (const auto& row : rows) {
    const std::string path = row.value("path", "");
    ASSERT_TRUE(files.count(path)) << path;
    EXPECT_EQ(row.value("digest", ""), Sha256Hex(files[path])) << path;
    EXPECT_EQ(row.value("status", ""), "CONFIRMED") << path;
    EXPECT_EQ(row.value("merkle_root", "").size(), 64u) << path;
    EXPECT_EQ(row.value("verification", "").rfind("VERIFIED block ", 0), 0u)
        << path << ": " << row.value("verification", "");
    // The sandbox's headers are a regtest chain, and the report must not pass them for Bitcoin.
    EXPECT_NE(row.value("verification", "").find("(regtest)"), std::string::npos)
        << path << ": " << row.value("verification", "");
    roots.insert(row.value("merkle_root", ""));
  }
  EXPECT_EQ(static_cast<int64_t>(roots.size()), creates);

  // One file's proof, standalone, through the reference OpenTimestamps library.
  const std::string hex = Sha256Hex(files["tree/b1/file7.txt"]);
  const std::string ots = (tmp_ / "leaf.ots").string();
  RunResult dl = RunCtl({"download", hex, "-o", ots});
  ASSERT_EQ(dl.exit_code, 0) << dl.output;
  ChildSpec check;
  check.name = "check_ots";
  check.binary = "/usr/bin/python3";
  check.args = {CHECK_OTS_PY, ots, "--digest", hex};
  check.log_file = (tmp_ / "check_leaf.out").string();
  auto checker = ChildProcess::Spawn(check);
  ASSERT_TRUE(checker.ok()) << checker.status();
  ASSERT_TRUE((*checker)->WaitExit(absl::Seconds(30)));
  int st = (*checker)->raw_wait_status();
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << TailOfFile(check.log_file);

  // anchorctl verify of the file against its downloaded proof, offline but for the headers.
  RunResult ver = RunCtl({"verify", (root_ / "tree/b1/file7.txt").string(), ots, "--headers",
                          "sandbox:" + stack_->info().sandbox_url});
  EXPECT_EQ(ver.exit_code, 0) << ver.output;
  EXPECT_NE(ver.output.find("REGTEST"), std::string::npos) << ver.output;
  // And a proof for another file fails, saying so.
  RunResult wrong = RunCtl({"verify", (root_ / "tree/b2/file8.txt").string(), ots, "--headers",
                            "sandbox:" + stack_->info().sandbox_url});
  EXPECT_NE(wrong.exit_code, 0) << wrong.output;
}

// One job anchored with all four providers at once through the real services and the sandbox
// (which speaks every API): every file ends with four CONFIRMED proofs; proofd's, SimpleProof's
// and the calendars' .ots verify against the sandbox's block headers; ProofLedger's record carries
// its certificate URL; SimpleProof's callbacks reach the poller's webhook; nothing is created twice
// and no limit is exceeded.
TEST_F(E2eTest, EveryProviderAnchorsTheSameJob) {
  auto files = FlatFiles("p", 8, "redundantly anchored");
  StartStack();
  ASSERT_TRUE(stack_);
  RunResult r = RunCtl(
      {"archive", (root_ / "tree").string(), "--job", "multi", "--provider",
       "proofd,proofledger,simpleproof,ots", "--wait", "confirmed", "--timeout-seconds", "60"},
      absl::Seconds(90));
  ASSERT_EQ(r.exit_code, 0) << r.output;

  const std::vector<std::string> providers = {"proofd", "proofledger", "simpleproof", "ots"};
  const std::string report_file = (tmp_ / "multi.json").string();
  nlohmann::json rows;
  bool all_confirmed = false;
  bool verified_everywhere = false;
  int attempts = 0;
  std::string report_error;
  testing::WaitUntil(
      [&] {
        if (!all_confirmed) ++attempts;
        verified_everywhere = true;
        RunResult rep = RunCtl({"report", "--job", "multi", "--format", "json", "-o", report_file,
                                "--headers", "sandbox:" + stack_->info().sandbox_url});
        if (rep.exit_code != 0) {
          report_error = absl::StrCat("report exited ", rep.exit_code, ": ", rep.output);
          return true;  // stop waiting: the assertion below reports it
        }
        rows = nlohmann::json::parse(TailOfFile(report_file, 1 << 22), nullptr, false);
        if (!rows.is_array()) {
          report_error = "report wrote no JSON array";
          return true;
        }
        all_confirmed = rows.size() == files.size() * providers.size();
        for (const auto& row : rows) {
          if (row.value("status", "") != "CONFIRMED") all_confirmed = false;
          if (row.value("provider", "") != "proofledger" &&
              row.value("verification", "").rfind("VERIFIED", 0) != 0) {
            verified_everywhere = false;
          }
        }
        return all_confirmed && verified_everywhere;
      },
      absl::Seconds(60), absl::Milliseconds(500));
  ASSERT_EQ(report_error, "");
  ASSERT_TRUE(all_confirmed) << rows.dump(1);
  // "--wait confirmed" with several providers waits for every one of them.
  EXPECT_EQ(attempts, 1) << "archive returned before every provider confirmed";
  std::map<std::string, int> per_provider;
  for (const auto& row : rows) {
    const std::string provider = row.value("provider", "");
    const std::string path = row.value("path", "");
    ++per_provider[provider];
    EXPECT_EQ(row.value("digest", ""), Sha256Hex(files.at(path))) << path;
    const std::string verification = row.value("verification", "");
    if (provider == "proofledger") {
      EXPECT_EQ(verification.rfind("NO_OTS", 0), 0u) << path << ": " << verification;
      EXPECT_FALSE(row.value("certificate_url", "").empty()) << path;
    } else {
      EXPECT_EQ(verification.rfind("VERIFIED block ", 0), 0u)
          << provider << " " << path << ": " << verification;
    }
  }
  for (const auto& p : providers) EXPECT_EQ(per_provider[p], 8) << p;

  auto stats = SandboxStats();
  for (const char* api : {"proofd", "proofledger", "simpleproof"}) {
    ASSERT_TRUE(stats.contains(api)) << stats.dump();
    EXPECT_EQ(StatInt(stats[api], "creates_total"), 8) << api << " " << stats[api].dump();
    EXPECT_EQ(StatInt(stats[api], "max_creates_per_digest"), 1) << api;
    EXPECT_EQ(StatInt(stats[api], "rate_limited_total"), 0) << api;
    EXPECT_EQ(StatInt(stats[api], "early_requests_total"), 0) << api;
  }
  // One submission per calendar (two calendars), each digest once per calendar.
  EXPECT_EQ(StatInt(stats["calendar"], "submissions_total"), 16) << stats["calendar"].dump();
  EXPECT_GT(StatInt(stats["simpleproof"], "callbacks_delivered_total"), 0)
      << stats["simpleproof"].dump();
  EXPECT_LE(StatInt(stats["proofledger"], "verify_requests_total"), 120);
}

// A proof that stays pending past the poller's stall limit is flagged (report column) and, since
// the job named a fallback provider, anchored again there: the poller asks the submitter, which
// anchors the digest with ProofLedger. The sandbox never confirms here (1 h delay).
TEST_F(E2eTest, StalledProofIsFlaggedAndAnchoredWithTheFallbackProvider) {
  auto files = FlatFiles("s", 4, "slow provider");
  confirm_after_seconds_ = 3600;
  extra_args_["poller"] = {"--stall-after-seconds", "2"};
  StartStack();
  ASSERT_TRUE(stack_);
  RunResult r = RunCtl(
      {"archive", (root_ / "tree").string(), "--job", "stall", "--provider", "proofd",
       "--fallback-provider", "proofledger", "--wait", "submitted", "--timeout-seconds", "60"},
      absl::Seconds(90));
  ASSERT_EQ(r.exit_code, 0) << r.output;

  std::map<std::string, int> stalled, fallback;
  auto count = [&](const nlohmann::json& rows) {
    stalled.clear();
    fallback.clear();
    for (const auto& row : rows) {
      const std::string path = row.value("path", "");
      if (row.value("provider", "") == "proofd" && row.value("stalled", false)) ++stalled[path];
      if (row.value("provider", "") == "proofledger") ++fallback[path];
    }
    return stalled.size() == files.size() && fallback.size() == files.size();
  };
  nlohmann::json rows = ReportUntil("stall", count, /*verify=*/false, absl::Seconds(60));
  ASSERT_TRUE(rows.is_array());
  EXPECT_EQ(stalled.size(), files.size()) << rows.dump(1);
  EXPECT_EQ(fallback.size(), files.size()) << rows.dump(1);
  auto stats = SandboxStats();
  EXPECT_EQ(StatInt(stats["proofledger"], "creates_total"), 4) << stats.dump();
  EXPECT_EQ(StatInt(stats["proofd"], "creates_total"), 4) << stats.dump();
}

// Merkle batches survive a submitter crash mid-run with faults on: every file ends CONFIRMED with
// a batch root, no root is created twice at the provider, and only roots are created.
TEST_F(E2eTest, MerkleBatchesSurviveASubmitterCrash) {
  auto files = MakeTree(300, 0, "m");
  extra_args_["submitter"] = {"--merkle-max-leaves", "10", "--merkle-window-seconds", "1"};
  StartStack();
  ASSERT_TRUE(SetFaults(R"({"latency_ms":200})"));  // ~30 roots take seconds, not milliseconds

  const std::string out = (tmp_ / "archive_batch_bg.out").string();
  auto bg = ChildProcess::Spawn(
      CtlSpec({"archive", (root_ / "tree").string(), "--job", "mcrash", "--merkle-batch", "--wait",
               "confirmed", "--timeout-seconds", "100"},
              out));
  ASSERT_TRUE(bg.ok()) << bg.status();
  background_ = std::move(*bg);
  int64_t created = 0;
  testing::WaitUntil(
      [&] {
        created = StatInt(SandboxStats(), "creates_total");
        return created >= 5;
      },
      absl::Seconds(15), absl::Milliseconds(50));
  ASSERT_GE(created, 5) << "the run did not start creating";
  ASSERT_LT(created, 30) << "the run ended before the crash";
  ASSERT_TRUE(SetFaults(R"({"latency_ms":0,"error_rate":0.1,"drop_rate":0.05})"));
  ASSERT_TRUE(stack_->CrashAndRestart("submitter").ok());

  ASSERT_TRUE(background_->WaitExit(absl::Seconds(110))) << TailOfFile(out);
  int st = background_->raw_wait_status();
  int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  if (code != 0) {
    std::cerr << "first archive ended with " << code << "; rerunning\n" << TailOfFile(out) << "\n";
    RunResult again = RunCtl({"archive", (root_ / "tree").string(), "--job", "mcrash",
                              "--merkle-batch", "--wait", "confirmed", "--timeout-seconds", "60"},
                             absl::Seconds(70));
    ASSERT_EQ(again.exit_code, 0) << again.output;
  }
  ASSERT_TRUE(SetFaults(R"({"error_rate":0,"drop_rate":0})"));

  // "confirmed" may come a round before the roots' .ots is downloaded: bounded wait for it.
  nlohmann::json rows = ReportUntil("mcrash", AllVerified);
  ASSERT_TRUE(rows.is_array());
  ASSERT_EQ(rows.size(), files.size());
  std::set<std::string> roots;
  for (const auto& row : rows) {
    EXPECT_EQ(row.value("status", ""), "CONFIRMED") << row.dump();
    EXPECT_EQ(row.value("verification", "").rfind("VERIFIED block ", 0), 0u) << row.dump();
    roots.insert(row.value("merkle_root", ""));
  }
  EXPECT_EQ(roots.count(""), 0u);
  auto stats = SandboxStats();
  EXPECT_EQ(StatInt(stats, "max_creates_per_digest"), 1) << stats.dump();
  // Every create was a root some file's proof goes through (a root sealed before the crash and
  // sent again after it is replayed, not created twice).
  EXPECT_EQ(StatInt(stats, "creates_total"), static_cast<int64_t>(roots.size())) << stats.dump();
}

// archive --wait follows the job's Watch, opened before hashing; when the poller restarts
// mid-wait, the stream is reopened (starting with a snapshot of the job's proofs) and archive
// completes on its own, every file confirmed.
TEST_F(E2eTest, ArchiveWaitFollowsThePollerAcrossARestart) {
  auto files = MakeTree(60, 5, "w");
  confirm_after_seconds_ = 8;  // the confirmations come well after the restart
  StartStack();
  ASSERT_TRUE(stack_->info().metrics.count("poller")) << "no poller /metrics address";
  auto watchers = [&]() -> int {
    httplib::Client cli("http://" + stack_->info().metrics.at("poller"));
    cli.set_connection_timeout(2);
    cli.set_read_timeout(2);
    auto res = cli.Get("/metrics");
    if (!res || res->status != 200) return -1;
    const std::string key = "\nanchord_poller_watchers ";
    const size_t at = res->body.find(key);
    return at == std::string::npos ? -1 : std::atoi(res->body.c_str() + at + key.size());
  };

  const std::string out = (tmp_ / "archive_restart.out").string();
  auto bg = ChildProcess::Spawn(CtlSpec({"archive", (root_ / "tree").string(), "--job", "restart",
                                         "--wait", "confirmed", "--timeout-seconds", "100"},
                                        out));
  ASSERT_TRUE(bg.ok()) << bg.status();
  background_ = std::move(*bg);
  // Restart the poller once the run's Watch is open and some digests were created.
  ASSERT_TRUE(testing::WaitUntil(
      [&] { return watchers() >= 1 && StatInt(SandboxStats(), "creates_total") >= 10; },
      absl::Seconds(30), absl::Milliseconds(50)))
      << TailOfFile(out);
  ASSERT_TRUE(stack_->CrashAndRestart("poller").ok());
  // The archive's follower comes back to the new poller by itself while the run still waits (the
  // confirmations are seconds away): the run ending alone (its periodic reconciliation with
  // ListProofs would finish it without any stream) does not count.
  bool reopened_while_waiting = false;
  testing::WaitUntil(
      [&] {
        if (!background_->Running()) return true;
        reopened_while_waiting = watchers() >= 1 && background_->Running();
        return reopened_while_waiting;
      },
      absl::Seconds(30), absl::Milliseconds(100));
  EXPECT_TRUE(reopened_while_waiting) << "no Watch stream reopened; " << TailOfFile(out);

  ASSERT_TRUE(background_->WaitExit(absl::Seconds(110))) << TailOfFile(out);
  const int st = background_->raw_wait_status();
  ASSERT_EQ(WIFEXITED(st) ? WEXITSTATUS(st) : -1, 0) << TailOfFile(out);
  ExpectAllConfirmed(Report("restart"), files);
}

}  // namespace
}  // namespace anchord::anchorctl
