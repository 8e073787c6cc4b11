// Chaos: 3 submitter and 2 poller replicas on one real PostgreSQL (started and stopped here), the
// sandbox failing 20% of requests with a 5xx and dropping 10% of connections, a 2,000-file
// per-file archive and a 20,000-file Merkle archive running at once, 20+ SIGKILLs of random
// replicas (each restarted on its port) and one PostgreSQL restart during the run.
//
// What must hold, from the sandbox's own counters: every digest was created exactly once (each
// per-file digest, each Merkle root), no request was answered 429, and none was sent inside a
// Retry-After. From anchorctl's report: every file CONFIRMED with a proof that verifies against
// the sandbox's block headers.
//
// Time is compressed so the run takes about 5 minutes on 2 cores: rate windows of 1 s instead of
// 60 s, proofs confirmed 1 s after creation, a kill as soon as the replicas made progress since the
// previous one (a digest created or kMinRequestsPerKill provider requests; no progress within
// kMaxStall while an archive runs fails the test) until kMaxKills (then the archives finish
// undisturbed), and the report's proofs verified once every file is CONFIRMED. Every loop is
// bounded in time and count; everything listens on 127.0.0.1.
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "services/anchorctl/process.h"
#include "tests/e2e/cluster.h"
#include "tests/e2e/e2e_util.h"
#include "tests/testing/wait.h"

namespace anchord::e2e {
namespace {
namespace fs = std::filesystem;
using anchorctl::ChildProcess;
using anchorctl::ChildSpec;
using anchorctl::TailOfFile;
using anchorctl::e2e::Sha256Hex;
using anchorctl::e2e::WriteFile;

constexpr int kPerFileFiles = 2000;
constexpr int kMerkleFiles = 20000;
constexpr int kMinKills = 20;
constexpr int kMaxKills = 24;
// Progress that lets the next kill go: one more digest created, or this many more requests from the
// replicas (polls, proof downloads) when every create is done.
constexpr int64_t kMinRequestsPerKill = 10;
// The longest the replicas may do nothing after a kill while an archive still runs.
constexpr absl::Duration kMaxStall = absl::Seconds(60);

class ChaosTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "anchord_chaos_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    tmp_ = tmpl;
    root_ = tmp_ / "root";
    // PostgreSQL runs as the postgres user, which must own its directory: not under tmp_ (0700).
    std::string pg = (fs::temp_directory_path() / "anchord_chaos_pg_XXXXXX").string();
    ASSERT_NE(mkdtemp(pg.data()), nullptr);
    pg_dir_ = pg;
    pg_port_ = ReserveLoopbackPort();
    ASSERT_GT(pg_port_, 0);
  }

  void TearDown() override {
    if (HasFailure() && cluster_) {
      for (const char* s : {"submitter", "poller", "hasher", "sandbox"}) {
        for (int i = 0; i < cluster_->Replicas(s); ++i) {
          std::cerr << "---- end of " << s << "-" << i << ".log ----\n"
                    << TailOfFile(cluster_->LogFile(s, i), 1500) << "\n";
        }
      }
    }
    for (auto& bg : archives_) bg.reset();
    cluster_.reset();
    Pg("stop").IgnoreError();
    if (std::getenv("ANCHORD_E2E_KEEP") != nullptr) {
      std::cerr << "kept " << tmp_ << " and " << pg_dir_ << "\n";
      return;
    }
    std::error_code ec;
    fs::remove_all(tmp_, ec);
    fs::remove_all(pg_dir_, ec);
  }

  absl::Status Pg(const std::string& command) {
    std::vector<std::string> args = {PG_CTL_SH, command, pg_dir_.string()};
    if (command != "stop") args.push_back(absl::StrCat(pg_port_));
    return RunToCompletion("/bin/bash", args, (tmp_ / "pg_ctl.log").string(), 90);
  }

  std::vector<std::string> CtlAddresses() {
    return {
        "--hasher",   cluster_->Address("hasher"), "--submitter",   cluster_->Target("submitter"),
        "--poller",   cluster_->Target("poller"),  "--hasher-root", root_.string(),
        "--data-dir", (tmp_ / "ctl").string()};
  }

  std::unique_ptr<ChildProcess> SpawnCtl(const std::vector<std::string>& args,
                                         const std::string& out) {
    ChildSpec spec;
    spec.name = "anchorctl";
    spec.binary = ANCHORCTL_BIN;
    spec.args = CtlAddresses();
    spec.args.insert(spec.args.end(), args.begin(), args.end());
    spec.log_file = out;
    auto child = ChildProcess::Spawn(spec);
    EXPECT_TRUE(child.ok()) << child.status();
    return child.ok() ? std::move(*child) : nullptr;
  }

  static int ExitCode(ChildProcess* c) {
    const int st = c->raw_wait_status();
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }

  // One GET of a sandbox admin route as JSON; null when it failed.
  nlohmann::json SandboxGetOnce(const std::string& path) {
    httplib::Client cli("127.0.0.1", cluster_->sandbox_port());
    cli.set_connection_timeout(5);
    cli.set_read_timeout(30);
    ++own_requests_;
    auto res = cli.Get(path);
    if (!res || res->status != 200) return nlohmann::json();
    auto j = nlohmann::json::parse(res->body, nullptr, false);
    return j.is_discarded() ? nlohmann::json() : j;
  }

  // The sandbox drops connections too: retried until it answers, at most a minute.
  nlohmann::json SandboxGet(const std::string& path) {
    nlohmann::json j;
    testing::WaitUntil(
        [&] {
          j = SandboxGetOnce(path);
          return !j.is_null();
        },
        absl::Seconds(60), absl::Milliseconds(200));
    return j;
  }

  bool SetFaults(const std::string& body) {
    return testing::WaitUntil(
        [&] {
          httplib::Client cli("127.0.0.1", cluster_->sandbox_port());
          cli.set_connection_timeout(5);
          cli.set_read_timeout(5);
          auto res = cli.Post("/_sandbox/faults", body, "application/json");
          return res && res->status == 200;
        },
        absl::Seconds(30), absl::Milliseconds(200));
  }

  // What the replicas have done so far, from the sandbox's counters: digests created, and
  // requests to the provider APIs (creates, polls, downloads) without the test's own reads.
  struct Progress {
    int64_t creates = 0;
    int64_t requests = 0;
    bool MovedSince(const Progress& before) const {
      return creates > before.creates || requests - before.requests >= kMinRequestsPerKill;
    }
  };
  // Unchanged from `last` when the sandbox did not answer.
  Progress ReadProgress(const Progress& last) {
    const nlohmann::json stats = SandboxGetOnce("/_sandbox/stats");
    const int64_t creates = StatInt(stats, "creates_total");
    const int64_t requests = StatInt(stats, "requests_total");
    if (creates < 0 || requests < 0) return last;
    // own_requests_ counts every read, answered or not: the replicas' share is never overstated.
    return Progress{creates, requests - own_requests_};
  }

  static int64_t StatInt(const nlohmann::json& stats, const char* key) {
    if (!stats.is_object() || !stats.contains(key) || !stats[key].is_number_integer()) return -1;
    return stats[key].get<int64_t>();
  }

  // `report --format json --headers sandbox:URL` rows for `job`. A report that verifies downloads
  // every file's proof, so it runs once all rows are CONFIRMED (cheap `--no-verify` reports, 2 s
  // apart, for at most `confirm_within`), then at most 3 times until every row is verified too: a
  // root's .ots may be stored a poll round after its files turned CONFIRMED.
  nlohmann::json VerifiedReport(const std::string& job, absl::Duration confirm_within) {
    const std::string file = (tmp_ / absl::StrCat("report-", job, ".json")).string();
    nlohmann::json rows;
    bool failed = false;
    int attempt = 0;
    testing::WaitUntil(
        [&] {
          auto ctl =
              SpawnCtl({"report", "--job", job, "--format", "json", "-o", file, "--no-verify"},
                       (tmp_ / absl::StrCat("status-", job, "-", attempt, ".out")).string());
          if (ctl == nullptr) return failed = true;
          if (!ctl->WaitExit(absl::Seconds(120))) {
            ADD_FAILURE() << "report --no-verify --job " << job << " did not finish within 120 s";
            return failed = true;
          }
          rows = nlohmann::json::parse(TailOfFile(file, 64 << 20), nullptr, false);
          int confirmed = 0;
          if (rows.is_array()) {
            for (const auto& row : rows) confirmed += row.value("status", "") == "CONFIRMED";
          }
          std::cerr << "report --no-verify --job " << job << " attempt " << attempt++ << ": "
                    << confirmed << " of " << (rows.is_array() ? rows.size() : 0) << " CONFIRMED\n";
          return rows.is_array() && !rows.empty() && confirmed == static_cast<int>(rows.size());
        },
        confirm_within, absl::Seconds(2));
    if (failed) return nlohmann::json();
    attempt = 0;
    testing::WaitUntil(
        [&] {
          auto ctl = SpawnCtl({"report", "--job", job, "--format", "json", "-o", file, "--headers",
                               "sandbox:" + cluster_->sandbox_url()},
                              (tmp_ / absl::StrCat("report-", job, "-", attempt, ".out")).string());
          if (ctl == nullptr) return failed = true;
          if (!ctl->WaitExit(absl::Seconds(300))) {
            ADD_FAILURE() << "report --job " << job << " did not finish within 300 s";
            return failed = true;
          }
          rows = nlohmann::json::parse(TailOfFile(file, 64 << 20), nullptr, false);
          bool done = rows.is_array() && !rows.empty();
          if (done) {
            for (const auto& row : rows) {
              if (row.value("status", "") != "CONFIRMED" ||
                  row.value("verification", "").rfind("VERIFIED block ", 0) != 0) {
                done = false;
                break;
              }
            }
          }
          std::cerr << "report --job " << job << " attempt " << attempt << ": exit "
                    << ExitCode(ctl.get()) << ", " << (rows.is_array() ? rows.size() : 0)
                    << " rows, " << (done ? "all verified" : "not yet all verified") << "\n";
          return done || ++attempt >= 3;  // at most 3 verifying reports
        },
        absl::Minutes(16), absl::Seconds(2));
    return failed ? nlohmann::json() : rows;
  }

  fs::path tmp_;
  fs::path root_;
  fs::path pg_dir_;
  int pg_port_ = 0;
  std::unique_ptr<Cluster> cluster_;
  std::vector<std::unique_ptr<ChildProcess>> archives_;
  int64_t own_requests_ = 0;  // reads of the sandbox's admin routes by this test
};

TEST_F(ChaosTest, ReplicasSurviveKillsFaultsAndADatabaseRestart) {
  std::set<std::string> per_file_digests;
  for (int i = 0; i < kPerFileFiles; ++i) {
    const std::string content = absl::StrCat("chaos per-file evidence ", i, "\n");
    WriteFile(root_ / "perfile" / absl::StrCat("d", i % 20) / absl::StrCat("f", i, ".txt"),
              content);
    per_file_digests.insert(Sha256Hex(content));
  }
  for (int i = 0; i < kMerkleFiles; ++i) {
    WriteFile(root_ / "merkle" / absl::StrCat("d", i % 100) / absl::StrCat("m", i, ".txt"),
              absl::StrCat("chaos merkle evidence ", i, "\n"));
  }
  ASSERT_EQ(per_file_digests.size(), static_cast<size_t>(kPerFileFiles));

  ASSERT_TRUE(Pg("start").ok()) << TailOfFile((tmp_ / "pg_ctl.log").string());
  const std::string url_file = (tmp_ / "database.url").string();
  {
    std::ofstream out(url_file, std::ios::trunc);
    out << "postgresql://postgres@127.0.0.1:" << pg_port_ << "/postgres\n";
  }

  ClusterOptions o;
  o.binaries = {{"hasher", HASHER_BIN},
                {"submitter", SUBMITTER_BIN},
                {"poller", POLLER_BIN},
                {"sandbox", SANDBOX_BIN}};
  o.dir = (tmp_ / "run").string();
  o.root = root_.string();
  o.submitters = 3;
  o.pollers = 2;
  o.database_url_file = url_file;
  o.sandbox_window_seconds = 1;
  o.sandbox_confirm_after_seconds = 1;
  o.poll_interval_seconds = 1;
  const unsigned seed = static_cast<unsigned>(std::random_device{}());
  std::cerr << "chaos seed " << seed << "\n";
  o.extra_args["sandbox"] = {"--error-rate", "0.2",    "--drop-rate",
                             "0.1",          "--seed", absl::StrCat(seed % 100000)};
  // Batches of at most 5,000 leaves, sealed after 2 s: several roots in flight during the kills.
  // Retries at most 15 s apart: with 28% of requests failing, one of 2,000 digests failing eight
  // times in a row is likely enough (~8% of runs) that the default cap (10 minutes, the wait
  // doubling from 1 s) let a run take 560 s instead of 190 and could outlast the archive's
  // timeout.
  o.extra_args["submitter"] = {"--merkle-max-leaves", "5000", "--merkle-window-seconds", "2",
                               "--retry-max-seconds", "15"};
  auto cluster = Cluster::Start(o);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  cluster_ = std::move(*cluster);

  const std::string per_file_out = (tmp_ / "archive-perfile.out").string();
  const std::string merkle_out = (tmp_ / "archive-merkle.out").string();
  archives_.push_back(SpawnCtl({"archive", (root_ / "perfile").string(), "--job", "perfile",
                                "--wait", "confirmed", "--timeout-seconds", "600"},
                               per_file_out));
  archives_.push_back(
      SpawnCtl({"archive", (root_ / "merkle").string(), "--job", "merkle", "--merkle-batch",
                "--wait", "confirmed", "--timeout-seconds", "600"},
               merkle_out));
  ASSERT_TRUE(archives_[0] && archives_[1]);

  // The chaos: a random replica SIGKILLed (and restarted on its port) each time the replicas made
  // progress since the previous kill, the database restarted once on the way, kMaxKills times or
  // until both archives are done (whichever is first, but at least kMinKills). A kill after which
  // nothing moves for kMaxStall while an archive runs is a failure. Bounded by count and time.
  std::mt19937 rng(seed);
  int kills = 0;
  bool pg_restarted = false;
  std::map<std::string, int> killed;
  const absl::Time chaos_end = absl::Now() + absl::Minutes(4);
  Progress last;  // before the first kill: wait for the first work
  for (int round = 0; round < kMaxKills && absl::Now() < chaos_end; ++round) {
    const bool running = archives_[0]->Running() || archives_[1]->Running();
    if (!running && kills >= kMinKills) break;
    if (running) {
      Progress now = last;
      const bool moved = testing::WaitUntil(
          [&] {
            now = ReadProgress(now);
            return now.MovedSince(last) || !(archives_[0]->Running() || archives_[1]->Running());
          },
          std::min(kMaxStall, std::max(absl::ZeroDuration(), chaos_end - absl::Now())),
          absl::Milliseconds(250));
      if (!moved && absl::Now() < chaos_end) {
        ADD_FAILURE() << "no digest created and fewer than " << kMinRequestsPerKill
                      << " provider requests within " << kMaxStall << " after " << kills
                      << " kills (creates " << now.creates << ", requests " << now.requests << ")";
      }
      last = now;
    }
    const int pick = static_cast<int>(rng() % 5);
    const std::string service = pick < 3 ? "submitter" : "poller";
    const int index = pick < 3 ? pick : pick - 3;
    ASSERT_TRUE(cluster_->CrashAndRestart(service, index).ok())
        << service << "-" << index << " did not come back";
    ++kills;
    ++killed[absl::StrCat(service, "-", index)];
    if (kills == kMinKills / 2 && !pg_restarted) {
      std::cerr << "restarting PostgreSQL\n";
      ASSERT_TRUE(Pg("restart").ok()) << TailOfFile((tmp_ / "pg_ctl.log").string());
      pg_restarted = true;
    }
  }
  std::cerr << kills << " SIGKILLs:";
  for (const auto& [who, n] : killed) std::cerr << " " << who << "x" << n;
  std::cerr << "\n";
  EXPECT_GE(kills, kMinKills);
  EXPECT_TRUE(pg_restarted);

  // The archives finish on their own; one that was cut short by a kill is rerun, the documented
  // way to finish a run (what is durable is skipped).
  for (size_t a = 0; a < archives_.size(); ++a) {
    const bool merkle = a == 1;
    const std::string& out = merkle ? merkle_out : per_file_out;
    ASSERT_TRUE(archives_[a]->WaitExit(absl::Seconds(600))) << TailOfFile(out);
    const int code = ExitCode(archives_[a].get());
    std::cerr << (merkle ? "merkle" : "per-file") << " archive exited " << code << "\n";
    if (code != 0) {
      std::cerr << TailOfFile(out) << "\nrerunning\n";
      std::vector<std::string> args = {"archive",
                                       (root_ / (merkle ? "merkle" : "perfile")).string(),
                                       "--job",
                                       merkle ? "merkle" : "perfile",
                                       "--wait",
                                       "confirmed",
                                       "--timeout-seconds",
                                       "300"};
      if (merkle) args.push_back("--merkle-batch");
      const std::string again_out = out + ".again";
      auto again = SpawnCtl(args, again_out);
      ASSERT_TRUE(again);
      ASSERT_TRUE(again->WaitExit(absl::Seconds(320))) << TailOfFile(again_out);
      ASSERT_EQ(ExitCode(again.get()), 0) << TailOfFile(again_out);
    }
  }

  // The sandbox's counters over the whole run (faults included).
  const nlohmann::json stats = SandboxGet("/_sandbox/stats");
  ASSERT_TRUE(stats.is_object()) << "no stats from the sandbox";
  const nlohmann::json& by_digest = stats["creates_by_digest"];
  ASSERT_TRUE(by_digest.is_object()) << stats.dump().substr(0, 2000);
  int64_t sum = 0;
  int64_t more_than_once = 0;
  for (const auto& [digest, n] : by_digest.items()) {
    sum += n.get<int64_t>();
    if (n.get<int64_t>() != 1) ++more_than_once;
  }
  for (const auto& d : per_file_digests) {
    EXPECT_EQ(by_digest.value(d, 0), 1) << "per-file digest " << d;
  }
  const int64_t roots = static_cast<int64_t>(by_digest.size()) - kPerFileFiles;
  std::cerr << "sandbox: creates_total " << StatInt(stats, "creates_total") << ", digests "
            << by_digest.size() << " (" << roots << " Merkle roots), created more than once "
            << more_than_once << ", max_creates_per_digest "
            << StatInt(stats, "max_creates_per_digest") << ", rate_limited_total (429) "
            << StatInt(stats, "rate_limited_total") << ", early_requests_total "
            << StatInt(stats, "early_requests_total") << ", requests_total "
            << StatInt(stats, "requests_total") << ", faults_injected_total "
            << StatInt(stats, "faults_injected_total") << ", replays_total "
            << StatInt(stats, "replays_total") << "\n";
  EXPECT_EQ(more_than_once, 0);
  EXPECT_EQ(StatInt(stats, "max_creates_per_digest"), 1);
  EXPECT_EQ(StatInt(stats, "creates_total"), sum);
  EXPECT_GE(roots, kMerkleFiles / 5000) << "the Merkle archive created fewer roots than batches";
  EXPECT_EQ(StatInt(stats, "rate_limited_total"), 0) << "429s were served";
  EXPECT_EQ(StatInt(stats, "early_requests_total"), 0) << "requests inside a Retry-After";

  // The report (faults off: the verification fetches block headers from the sandbox too).
  ASSERT_TRUE(SetFaults(R"({"error_rate":0,"drop_rate":0})"));
  nlohmann::json per_file = VerifiedReport("perfile", absl::Minutes(3));
  ASSERT_TRUE(per_file.is_array());
  EXPECT_EQ(per_file.size(), static_cast<size_t>(kPerFileFiles));
  std::set<std::string> reported;
  int not_verified = 0;
  for (const auto& row : per_file) {
    reported.insert(row.value("digest", ""));
    if (row.value("status", "") != "CONFIRMED" ||
        row.value("verification", "").rfind("VERIFIED block ", 0) != 0) {
      if (++not_verified <= 5) ADD_FAILURE() << "not confirmed and verified: " << row.dump();
    }
  }
  EXPECT_EQ(not_verified, 0);
  EXPECT_EQ(reported, per_file_digests);

  nlohmann::json merkle = VerifiedReport("merkle", absl::Minutes(3));
  ASSERT_TRUE(merkle.is_array());
  EXPECT_EQ(merkle.size(), static_cast<size_t>(kMerkleFiles));
  std::set<std::string> merkle_roots;
  not_verified = 0;
  for (const auto& row : merkle) {
    merkle_roots.insert(row.value("merkle_root", ""));
    if (row.value("status", "") != "CONFIRMED" ||
        row.value("verification", "").rfind("VERIFIED block ", 0) != 0) {
      if (++not_verified <= 5) ADD_FAILURE() << "not confirmed and verified: " << row.dump();
    }
  }
  EXPECT_EQ(not_verified, 0);
  EXPECT_EQ(merkle_roots.count(""), 0u) << "a Merkle file without a root";
  // Every root a file goes through was created once, and nothing else was created.
  EXPECT_EQ(static_cast<int64_t>(merkle_roots.size()), roots);
  for (const auto& r : merkle_roots) EXPECT_EQ(by_digest.value(r, 0), 1) << "root " << r;
}

}  // namespace
}  // namespace anchord::e2e
