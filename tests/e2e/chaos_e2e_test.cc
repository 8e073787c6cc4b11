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
// 60 s, proofs confirmed 1 s after creation, a kill every 1-2 s until kMaxKills (then the archives
// finish undisturbed), and the report's proofs verified once every file is CONFIRMED. Every loop
// is bounded in time and count; everything listens on 127.0.0.1.
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
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

class ChaosTest : public testing::Test {
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

  nlohmann::json SandboxGet(const std::string& path) {
    for (int attempt = 0; attempt < 20; ++attempt) {  // the sandbox drops connections too
      httplib::Client cli("127.0.0.1", cluster_->sandbox_port());
      cli.set_connection_timeout(5);
      cli.set_read_timeout(30);
      auto res = cli.Get(path);
      if (res && res->status == 200) {
        auto j = nlohmann::json::parse(res->body, nullptr, false);
        if (!j.is_discarded()) return j;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return nlohmann::json();
  }

  bool SetFaults(const std::string& body) {
    for (int attempt = 0; attempt < 20; ++attempt) {
      httplib::Client cli("127.0.0.1", cluster_->sandbox_port());
      cli.set_connection_timeout(5);
      cli.set_read_timeout(5);
      auto res = cli.Post("/_sandbox/faults", body, "application/json");
      if (res && res->status == 200) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return false;
  }

  static int64_t StatInt(const nlohmann::json& stats, const char* key) {
    if (!stats.is_object() || !stats.contains(key) || !stats[key].is_number_integer()) return -1;
    return stats[key].get<int64_t>();
  }

  // `report --format json --headers sandbox:URL` rows for `job`. A report that verifies downloads
  // every file's proof, so it runs once all rows are CONFIRMED (cheap `--no-verify` reports, at
  // most `tries`, 2 s apart), then at most 3 times until every row is verified too: a root's .ots
  // may be stored a poll round after its files turned CONFIRMED.
  nlohmann::json VerifiedReport(const std::string& job, int tries) {
    const std::string file = (tmp_ / absl::StrCat("report-", job, ".json")).string();
    nlohmann::json rows;
    for (int attempt = 0; attempt < tries; ++attempt) {
      auto ctl = SpawnCtl({"report", "--job", job, "--format", "json", "-o", file, "--no-verify"},
                          (tmp_ / absl::StrCat("status-", job, "-", attempt, ".out")).string());
      if (ctl == nullptr) return nlohmann::json();
      if (!ctl->WaitExit(absl::Seconds(120))) {
        ADD_FAILURE() << "report --no-verify --job " << job << " did not finish within 120 s";
        return nlohmann::json();
      }
      rows = nlohmann::json::parse(TailOfFile(file, 64 << 20), nullptr, false);
      int confirmed = 0;
      if (rows.is_array()) {
        for (const auto& row : rows) confirmed += row.value("status", "") == "CONFIRMED";
      }
      std::cerr << "report --no-verify --job " << job << " attempt " << attempt << ": " << confirmed
                << " of " << (rows.is_array() ? rows.size() : 0) << " CONFIRMED\n";
      if (rows.is_array() && !rows.empty() && confirmed == static_cast<int>(rows.size())) break;
      std::this_thread::sleep_for(std::chrono::seconds(2));
    }
    for (int attempt = 0; attempt < 3; ++attempt) {
      auto ctl = SpawnCtl({"report", "--job", job, "--format", "json", "-o", file, "--headers",
                           "sandbox:" + cluster_->sandbox_url()},
                          (tmp_ / absl::StrCat("report-", job, "-", attempt, ".out")).string());
      if (ctl == nullptr) return nlohmann::json();
      if (!ctl->WaitExit(absl::Seconds(300))) {
        ADD_FAILURE() << "report --job " << job << " did not finish within 300 s";
        return nlohmann::json();
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
                << ExitCode(ctl.get()) << ", " << (rows.is_array() ? rows.size() : 0) << " rows, "
                << (done ? "all verified" : "not yet all verified") << "\n";
      if (done) break;
      std::this_thread::sleep_for(std::chrono::seconds(2));
    }
    return rows;
  }

  fs::path tmp_;
  fs::path root_;
  fs::path pg_dir_;
  int pg_port_ = 0;
  std::unique_ptr<Cluster> cluster_;
  std::vector<std::unique_ptr<ChildProcess>> archives_;
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
  o.extra_args["submitter"] = {"--merkle-max-leaves", "5000", "--merkle-window-seconds", "2"};
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

  // The chaos: a random replica SIGKILLed (and restarted on its port) every 1-2 s, the database
  // restarted once on the way, kMaxKills times or until both archives are done (whichever is
  // first, but at least kMinKills). Bounded by count and time.
  std::mt19937 rng(seed);
  int kills = 0;
  bool pg_restarted = false;
  std::map<std::string, int> killed;
  const absl::Time chaos_end = absl::Now() + absl::Minutes(4);
  for (int round = 0; round < kMaxKills && absl::Now() < chaos_end; ++round) {
    const bool running = archives_[0]->Running() || archives_[1]->Running();
    if (!running && kills >= kMinKills) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1000 + rng() % 1000));
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
  nlohmann::json per_file = VerifiedReport("perfile", 10);
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

  nlohmann::json merkle = VerifiedReport("merkle", 10);
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
