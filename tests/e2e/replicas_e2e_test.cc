// Long-lived streams spread over replicas: the hasher, the submitters and anchorctl are given every
// replica of the next service as one multi-address target (the loopback stand-in for a headless
// Service's dns:/// name) and reach them with round_robin, so successive Submit streams land on
// different submitters instead of all sticking to the first address (pick_first). Real processes
// on loopback; each submitter keeps its own SQLite files here, so what each one received is
// visible in its own counts.
#include <sys/wait.h>

#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "anchord/v1/common.grpc.pb.h"
#include "libs/rpc/server.h"
#include "services/anchorctl/process.h"
#include "tests/e2e/cluster.h"
#include "tests/e2e/e2e_util.h"

namespace anchord::e2e {
namespace {
namespace fs = std::filesystem;
using anchorctl::ChildProcess;
using anchorctl::ChildSpec;
using anchorctl::TailOfFile;
using anchorctl::e2e::RunResult;
using anchorctl::e2e::WriteFile;

class ReplicasTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "anchord_replicas_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    tmp_ = tmpl;
    root_ = tmp_ / "root";
    fs::create_directories(root_);
  }

  void TearDown() override {
    if (HasFailure() && cluster_) {
      for (const char* s : {"submitter", "poller", "hasher"}) {
        for (int i = 0; i < cluster_->Replicas(s); ++i) {
          std::cerr << "---- end of " << s << "-" << i << ".log ----\n"
                    << TailOfFile(cluster_->LogFile(s, i), 2000) << "\n";
        }
      }
    }
    cluster_.reset();
    if (std::getenv("ANCHORD_E2E_KEEP") == nullptr) {
      std::error_code ec;
      fs::remove_all(tmp_, ec);
    }
  }

  RunResult Ctl(const std::vector<std::string>& args, absl::Duration timeout) {
    const std::string out = (tmp_ / absl::StrCat("ctl_", ++runs_, ".out")).string();
    ChildSpec spec;
    spec.name = "anchorctl";
    spec.binary = ANCHORCTL_BIN;
    spec.args = {
        "--hasher",   cluster_->Target("hasher"), "--submitter",   cluster_->Target("submitter"),
        "--poller",   cluster_->Target("poller"), "--hasher-root", root_.string(),
        "--data-dir", (tmp_ / "ctl").string()};
    spec.args.insert(spec.args.end(), args.begin(), args.end());
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
    r.output = TailOfFile(out, 1 << 16);
    return r;
  }

  // Distinct digests the submitter replica holds (its own SQLite store), -1 when unreachable.
  int64_t DigestsHeldBy(int index) {
    auto stub = anchord::v1::StatusService::NewStub(
        rpc::MakeChannel(cluster_->Address("submitter", index)));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    anchord::v1::SummarizeJobRequest req;
    anchord::v1::SummarizeJobResponse resp;
    if (!stub->SummarizeJob(&ctx, req, &resp).ok()) return -1;
    int64_t n = 0;
    for (const auto& [state, count] : resp.digests_by_state()) n += count;
    return n;
  }

  fs::path tmp_;
  fs::path root_;
  int runs_ = 0;
  std::unique_ptr<Cluster> cluster_;
};

TEST_F(ReplicasTest, SubmitStreamsSpreadOverSubmitterReplicas) {
  constexpr int kJobs = 6;      // archives run at least
  constexpr int kMaxJobs = 18;  // and at most, until each replica has had a Submit stream
  constexpr int kFilesPerJob = 10;
  for (int j = 0; j < kMaxJobs; ++j) {
    for (int i = 0; i < kFilesPerJob; ++i) {
      WriteFile(root_ / absl::StrCat("job", j) / absl::StrCat("f", i, ".txt"),
                absl::StrCat("replica evidence ", j, "/", i, "\n"));
    }
  }
  ClusterOptions o;
  o.binaries = {{"hasher", HASHER_BIN},
                {"submitter", SUBMITTER_BIN},
                {"poller", POLLER_BIN},
                {"sandbox", SANDBOX_BIN}};
  o.dir = (tmp_ / "run").string();
  o.root = root_.string();
  o.submitters = 2;
  o.pollers = 1;
  // Two SQLite submitters do not share a budget: each takes half of the key's.
  // A short connection age: connections are recycled (GOAWAY) under the streams in progress,
  // which must lose nothing.
  o.extra_args["submitter"] = {"--proofd-create-limit",        "15", "--proofd-general-limit", "20",
                               "--max-connection-age-seconds", "1"};
  auto cluster = Cluster::Start(o);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  cluster_ = std::move(*cluster);

  // One archive call = one HashTree call = one Submit stream from the hasher. With pick_first
  // every stream would reach the first address; round_robin hands them out in turn over the
  // replicas it holds a ready connection to. Connections are recycled every second here, and on a
  // loaded machine one may take seconds to come back (a CI run sent all six streams to one
  // replica), so when a replica has had no stream after kJobs archives a few more are run, at
  // most kMaxJobs: a client that never spreads its streams still fails.
  auto streams_of = [&](int s) {
    return ScrapeSum(cluster_->MetricsAddress("submitter", s), "anchord_rpc_duration_seconds_count",
                     {{"method", "SubmitterService/Submit"}});
  };
  int jobs = 0;
  while (jobs < kMaxJobs) {
    RunResult r = Ctl({"archive", (root_ / absl::StrCat("job", jobs)).string(), "--job",
                       absl::StrCat("job", jobs), "--wait", "confirmed", "--timeout-seconds", "60"},
                      absl::Seconds(90));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    ++jobs;
    if (jobs >= kJobs && streams_of(0) >= 1 && streams_of(1) >= 1) break;
  }
  std::cerr << jobs << " archives\n";

  int64_t total = 0;
  for (int s = 0; s < 2; ++s) {
    const double streams = streams_of(s);
    EXPECT_GE(streams, 1) << "submitter-" << s << " received no Submit stream";
    const int64_t held = DigestsHeldBy(s);
    EXPECT_GT(held, 0) << "submitter-" << s << " holds no digest";
    total += held;
    std::cerr << "submitter-" << s << ": " << streams << " Submit streams, " << held
              << " digests\n";
  }
  // Every digest went to exactly one of them (jobs have distinct contents).
  EXPECT_EQ(total, jobs * kFilesPerJob);

  // And every file is CONFIRMED through the one poller both submitters hand off to.
  for (int j = 0; j < jobs; ++j) {
    const std::string file = (tmp_ / absl::StrCat("report", j, ".json")).string();
    RunResult rep = Ctl(
        {"report", "--job", absl::StrCat("job", j), "--format", "json", "-o", file, "--no-verify"},
        absl::Seconds(60));
    ASSERT_EQ(rep.exit_code, 0) << rep.output;
    auto rows = nlohmann::json::parse(TailOfFile(file, 1 << 20), nullptr, false);
    ASSERT_TRUE(rows.is_array());
    EXPECT_EQ(rows.size(), static_cast<size_t>(kFilesPerJob));
    for (const auto& row : rows) EXPECT_EQ(row.value("status", ""), "CONFIRMED") << row.dump();
  }
}

}  // namespace
}  // namespace anchord::e2e
