// anchorctl archive: hashes a tree through the hasher, then follows the poller until every distinct
// digest reached the --wait state, drawing a progress line, and prints the summary.
#include "services/anchorctl/commands.h"

#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <thread>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"
#include "libs/common/validate.h"
#include "libs/rpc/server.h"
#include "libs/rpc/status.h"
#include "services/anchorctl/archive_state.h"
#include "services/anchorctl/archive_wait.h"
#include "services/anchorctl/clients.h"
#include "services/anchorctl/command_common.h"
#include "services/anchorctl/dry_run_lines.h"
#include "services/anchorctl/format.h"
#include "services/anchorctl/process.h"
#include "services/anchorctl/stack.h"

namespace anchord::anchorctl {
namespace fs = std::filesystem;
using namespace anchord::v1;

namespace {

// Redraws the progress line in place on a terminal, or logs a plain line every few seconds. Text
// for stdout (a dry run's lines) goes through WriteOut, so that the two never cut into each other.
class ProgressPrinter {
 public:
  ProgressPrinter(ArchiveState* state, bool quiet)
      : state_(state), tty_(isatty(2) == 1), same_terminal_(tty_ && isatty(1) == 1), quiet_(quiet) {
    {
      absl::MutexLock lock(&mu_);
      phase_start_ = absl::Now();
    }
    if (!quiet_) thread_ = std::thread([this] { Loop(); });
  }
  ~ProgressPrinter() { Stop(); }
  // Writes `text` (whole lines) to stdout. On a terminal that also shows the progress line, the
  // line is cleared first (the next redraw puts it back under the text); elsewhere the progress
  // lines and the text are written one after the other, each whole, even into one file (2>&1).
  void WriteOut(absl::string_view text) ABSL_LOCKS_EXCLUDED(out_mu_) {
    absl::MutexLock lock(&out_mu_);
    if (same_terminal_ && drawn_) {
      std::cerr << "\r\033[K" << std::flush;
      drawn_ = false;
    }
    std::cout.write(text.data(), static_cast<std::streamsize>(text.size()));
    std::cout.flush();
  }
  void NewPhase() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    phase_start_ = absl::Now();
  }
  void Stop() ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      stop_ = true;
    }
    if (thread_.joinable()) thread_.join();
    if (!quiet_) Print(/*final=*/true);
  }

 private:
  void Print(bool final) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::Time start;
    {
      absl::MutexLock lock(&mu_);
      start = phase_start_;
    }
    std::string line = ProgressLine(state_->Snapshot(), absl::Now() - start);
    absl::MutexLock lock(&out_mu_);
    if (tty_) {
      std::cerr << "\r\033[K" << line << (final ? "\n" : "") << std::flush;
      drawn_ = !final;
    } else {
      std::cerr << "anchorctl: " << line << std::endl;
    }
  }
  void Loop() ABSL_LOCKS_EXCLUDED(mu_) {
    const absl::Duration period = tty_ ? absl::Milliseconds(250) : absl::Milliseconds(5000);
    for (;;) {
      {
        absl::MutexLock lock(&mu_);
        // Returns early only when stopped: the wait is the period between two redraws.
        if (mu_.AwaitWithTimeout(absl::Condition(&stop_), period)) return;
      }
      Print(false);
    }
  }
  ArchiveState* state_;
  const bool tty_;
  const bool same_terminal_;  // stdout is a terminal as well as stderr
  const bool quiet_;
  // Held while either stream is written.
  absl::Mutex out_mu_;
  bool drawn_ ABSL_GUARDED_BY(out_mu_) = false;  // the progress line is on the terminal now
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time phase_start_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace

int RunArchive(const GlobalOptions& g, const ArchiveOptions& o) {
  auto target = ParseWaitTarget(o.wait);
  if (!target.ok()) return FailStatus(target.status());
  if (auto s = ValidateJob(o.job, "--job"); !s.ok()) return FailStatus(s);
  if (o.timeout_seconds < 0) return Fail(kExitUsage, "--timeout-seconds: must not be negative");
  const absl::Time start = absl::Now();
  const absl::Time deadline =
      o.timeout_seconds > 0 ? start + absl::Seconds(std::min(o.timeout_seconds, 86400.0 * 365))
                            : start + kStreamDeadline;

  Endpoints endpoints;
  std::unique_ptr<LocalStack> stack;
  std::string tree_path;
  if (o.local) {
    auto dir = RealDir(o.dir, "DIR");
    if (!dir.ok()) return FailStatus(dir.status());
    if (auto s = CheckNoRunningStack(g.data_dir); !s.ok())
      return Fail(kExitUsage, std::string(s.message()));
    const std::string run_dir =
        (fs::path(g.data_dir) / "run" / absl::StrCat("archive-", getpid())).string();
    StackOptions stack_options = MakeStackOptions(g, o.stack, run_dir, *dir);
    if (!o.providers.empty()) {
      // The providers this archive asks for are enabled in its stack (and the first is the
      // services' default), so a user with only a ProofLedger or SimpleProof account can run it.
      std::vector<std::string>& args = stack_options.provider_args;
      auto given = [&](const char* flag) {
        for (size_t i = 0; i + 1 < args.size(); i += 2) {
          if (args[i] == flag) return i + 1;
        }
        return size_t{0};
      };
      const std::string listed = absl::StrJoin(o.providers, ",");
      if (size_t at = given("--providers"); at != 0) {
        args[at] = absl::StrCat(args[at], ",", listed);
      } else {
        args.insert(args.end(), {"--providers", listed});
      }
      args.insert(args.end(), {"--provider", o.providers.front()});
    }
    auto started = LocalStack::Start(stack_options);
    if (!started.ok()) {
      return Fail(kExitInternal, absl::StrCat("starting the stack: ", started.status().message()));
    }
    stack = std::move(*started);
    endpoints = {stack->info().hasher, stack->info().submitter, stack->info().poller, *dir,
                 "the stack started by --local"};
    tree_path = ".";
  } else {
    endpoints = ResolveEndpoints(g);
    std::error_code exists_ec;
    const bool relative_to_root =
        fs::path(o.dir).is_relative() && (endpoints.root.empty() || !fs::exists(o.dir, exists_ec));
    if (relative_to_root) {
      // A relative DIR that is not a local directory (or any relative DIR while the root is
      // unknown, e.g. a remote hasher) names a directory relative to the hasher's root.
      tree_path = o.dir;
      const fs::path rel(tree_path);
      if (std::any_of(rel.begin(), rel.end(), [](const fs::path& c) { return c == ".."; })) {
        return Fail(kExitUsage,
                    "DIR: a path relative to the hasher's root must not contain \"..\"");
      }
    } else {
      if (endpoints.root.empty()) {
        return Fail(kExitUsage, absl::StrCat("DIR: ", o.dir,
                                             " is absolute but the hasher's root is unknown; pass "
                                             "--hasher-root or a path relative to the root"));
      }
      auto dir = RealDir(o.dir, "DIR");
      if (!dir.ok()) return FailStatus(dir.status());
      char buf[PATH_MAX];
      std::string root =
          realpath(endpoints.root.c_str(), buf) != nullptr ? std::string(buf) : endpoints.root;
      auto rel = RelativeToRoot(*dir, root);
      if (!rel.ok()) return FailStatus(rel.status());
      tree_path = *rel;
    }
  }

  Clients clients(endpoints, UnaryDeadline(g));
  for (const char* service : {"hasher", "poller"}) {
    if (auto s = clients.Check(service); !s.ok())
      return Fail(kExitInternal, std::string(s.message()));
  }

  ArchiveState state(o.dry_run ? 0 : *target, o.providers);
  ProgressPrinter progress(&state, /*quiet=*/false);
  // With --wait past QUEUED, the job's Watch is opened before anything is submitted: it then sees
  // every event of the run's new digests as it happens, with no snapshot to read afterwards.
  const bool wait = !o.dry_run && *target > DIGEST_STATE_QUEUED;
  std::unique_ptr<WatchFollower> follower;
  if (wait) {
    follower = std::make_unique<WatchFollower>(&clients, &state, o.job, deadline);
    if (!follower->WaitOpen(absl::Seconds(5))) {
      ANCHORD_LOG(Debug) << "the poller's Watch did not open in 5 s; it will start with a snapshot";
    }
  }

  // Phase 1: hash the tree. Results come once the submitter holds each digest durably.
  absl::Status failure;
  {
    grpc::ClientContext ctx;
    ScopedCancel cancel(&ctx);
    ctx.set_deadline(absl::ToChronoTime(deadline));
    HashTreeRequest req;
    req.set_job(o.job);
    req.set_path(tree_path);
    req.set_dry_run(o.dry_run);
    for (const auto& p : o.providers) req.add_providers(p);
    if (o.merkle) req.set_anchor_mode(anchord::v1::ANCHOR_MODE_MERKLE_BATCH);
    req.set_fallback_provider(o.fallback_provider);
    req.set_batch_results(true);  // many results per message: far fewer messages per small file
    auto reader = clients.hasher().HashTree(&ctx, req);
    HashTreeResponse resp;
    // A dry run's lines are written as each message arrives (dry_run_lines.h): the command's
    // memory stays flat whatever the number of files (it once kept every result until the end, and
    // printed none past the first 1,000,000), and a reader of the output sees it as it comes.
    std::string lines;
    while (reader->Read(&resp)) {
      // A hasher from before batch_results answers one result per message.
      if (resp.results_size() == 0) {
        state.OnHashResult(resp);
        if (o.dry_run) AppendDryRunLine(resp, &lines);
      } else {
        state.OnHashResults(resp);
        if (o.dry_run) {
          for (const HashTreeResponse& r : resp.results()) AppendDryRunLine(r, &lines);
        }
      }
      if (!lines.empty()) {
        progress.WriteOut(lines);
        lines.clear();
      }
    }
    grpc::Status st = reader->Finish();
    if (!st.ok()) failure = clients.RpcError("hasher", "HashTree", st);
    state.EndHashing();
    if (o.dry_run) progress.Stop();
  }

  // Phase 2: wait until every distinct digest reached the target state at the poller.
  if (failure.ok() && wait && !state.AllDone()) {
    state.SetWaiting();
    progress.NewPhase();
    absl::Time next_check = absl::InfinitePast();
    absl::Time next_full = absl::Now() + absl::Seconds(30);
    while (!state.AllDone()) {
      if (Interrupter::Get().interrupted()) break;
      if (absl::Now() >= deadline) {
        failure =
            absl::DeadlineExceededError("--timeout-seconds reached before every digest got there");
        break;
      }
      // The Watch shows the job's own proofs. Reconciling asks ListProofs, at once and every 2 s,
      // about the digests the submitter knew before this run (another job's proofs, which the
      // job's Watch may not show), and about every open digest (a safety net for the Watch) every
      // 30 s, or every 2 s once they fit in one call; never sooner than 20 times as long as the
      // last pass took (NextReconcile).
      if (absl::Now() >= next_check) {
        const absl::Time began = absl::Now();
        const ProgressCounts c = state.Snapshot();
        const bool full = began >= next_full || c.distinct - c.wait_done <= 500;
        if (auto s = Reconcile(clients, state, /*only_known_before=*/!full); !s.ok()) {
          ANCHORD_LOG(Warning) << s.message();
        }
        const absl::Time ended = absl::Now();
        next_check = NextReconcile(began, ended, absl::Seconds(2));
        if (full) next_full = NextReconcile(began, ended, absl::Seconds(30));
        grpc::ClientContext ctx;
        ScopedCancel cancel(&ctx);
        clients.SetDeadline(&ctx);
        SummarizeJobRequest sreq;
        sreq.set_job(o.job);
        sreq.set_paused_only(true);  // the counts come from the Watch and the reconciliation
        SummarizeJobResponse sresp;
        if (clients.status("submitter").SummarizeJob(&ctx, sreq, &sresp).ok()) {
          state.SetPaused(sresp.paused() ? (sresp.paused_reason().empty() ? std::string("paused")
                                                                          : sresp.paused_reason())
                                         : std::string());
        }
      }
      Interrupter::Get().SleepFor(absl::Milliseconds(250));
    }
  }
  follower.reset();
  if (Interrupter::Get().interrupted()) failure = absl::CancelledError("interrupted");
  progress.Stop();
  stack.reset();  // --local: stop the services before the summary is printed

  const ProgressCounts c = state.Snapshot();
  const auto problems = state.problems();
  int code = kExitComplete;
  std::string outcome = "complete";
  if (!failure.ok()) {
    code = (failure.code() == absl::StatusCode::kCancelled ||
            failure.code() == absl::StatusCode::kDeadlineExceeded)
               ? kExitIncomplete
               : kExitInternal;
    outcome = code == kExitIncomplete ? "incomplete" : "error";
  } else if (c.problems > 0 || c.failed > 0) {
    code = kExitFilesFailed;
    outcome = "some files failed";
  }
  if (g.json) {
    nlohmann::json j;
    j["job"] = std::string(JobOrDefault(o.job));
    j["outcome"] = outcome;
    j["exit_code"] = code;
    if (!failure.ok()) j["error"] = std::string(failure.message());
    j["files"] = c.files_seen;
    j["hashed"] = c.hashed;
    j["unchanged"] = c.unchanged;
    j["duplicates"] = c.duplicates;
    j["distinct_digests"] = c.distinct;
    j["queued"] = c.queued;
    j["pending"] = c.pending;
    j["confirmed"] = c.confirmed;
    j["failed"] = c.failed;
    j["seconds"] = absl::ToDoubleSeconds(absl::Now() - start);
    nlohmann::json pj = nlohmann::json::array();
    for (const auto& p : problems)
      pj.push_back({{"path", p.path}, {"reason", p.reason}, {"message", p.message}});
    j["problems"] = pj;
    std::cout << Dump(j) << std::endl;
  } else {
    std::cout << "job " << JobOrDefault(o.job) << ": " << outcome << " in "
              << absl::FormatDuration(absl::Trunc(absl::Now() - start, absl::Milliseconds(100)))
              << "\n"
              << "  files " << c.files_seen << " (hashed " << c.hashed << ", unchanged "
              << c.unchanged << ", duplicates " << c.duplicates << ", problems " << c.problems
              << ")\n"
              << "  distinct digests " << c.distinct << ": queued " << c.queued << ", pending "
              << c.pending << ", confirmed " << c.confirmed << ", failed " << c.failed << "\n";
    for (size_t i = 0; i < problems.size() && i < 50; ++i) {
      std::cout << "  problem: " << problems[i].path << ": " << problems[i].reason << ": "
                << problems[i].message << "\n";
    }
    if (problems.size() > 50)
      std::cout << "  ... and " << problems.size() - 50 << " more (see `anchorctl report`)\n";
    std::cout << std::flush;
    if (!failure.ok()) std::cerr << "anchorctl: " << failure.message() << std::endl;
  }
  return code;
}

}  // namespace anchord::anchorctl
