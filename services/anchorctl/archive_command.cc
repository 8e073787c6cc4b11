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
#include "services/anchorctl/clients.h"
#include "services/anchorctl/command_common.h"
#include "services/anchorctl/format.h"
#include "services/anchorctl/process.h"
#include "services/anchorctl/stack.h"

namespace anchord::anchorctl {
namespace fs = std::filesystem;
using namespace anchord::v1;

namespace {

struct Problem {
  std::string path, reason, message;
};

// Shared state of one archive run: the furthest known state of each distinct digest and the
// counters shown by the progress line.
class ArchiveState {
 public:
  // With several providers (redundancy), a digest counts as far as its LEAST advanced requested
  // provider: "--wait confirmed" then means confirmed with every one of them.
  explicit ArchiveState(int target, std::vector<std::string> providers = {})
      : target_(target), providers_(std::move(providers)) {}

  void OnHashResult(const HashTreeResponse& r) {
    absl::MutexLock lock(&mu_);
    counts_.files_seen++;
    counts_.files_total = std::max(counts_.files_total, r.files_total());
    counts_.walk_complete = r.walk_complete();
    if (r.status().code() != 0 || r.digest().size() != kDigestBytes) {
      counts_.problems++;
      if (problems_.size() < 10000) {
        problems_.push_back({r.path(), r.status().reason(), r.status().message()});
      }
      return;
    }
    counts_.hashed++;
    if (r.unchanged()) counts_.unchanged++;
    if (!r.duplicate_of().empty()) counts_.duplicates++;
    RaiseLocked(r.digest(), std::max<int>(r.state(), DIGEST_STATE_HASHED), /*add=*/true);
  }

  // Raises a known digest's state (states only move forward) from one provider's proof.
  // Unknown digests are ignored.
  void Raise(const std::string& digest, int state, const std::string& provider) {
    absl::MutexLock lock(&mu_);
    if (providers_.size() <= 1) {
      RaiseLocked(digest, state, /*add=*/false);
      return;
    }
    if (std::find(providers_.begin(), providers_.end(), provider) == providers_.end()) return;
    if (states_.find(digest) == states_.end()) return;
    int& mine = per_provider_[digest][provider];
    mine = std::max(mine, state);
    const auto& seen = per_provider_[digest];
    if (seen.size() < providers_.size()) return;  // a provider has not accepted it yet
    int least = DIGEST_STATE_FAILED;
    for (const auto& [p, st] : seen) least = std::min(least, st);
    RaiseLocked(digest, least, /*add=*/false);
  }

  std::vector<std::string> NotDone() {
    absl::MutexLock lock(&mu_);
    std::vector<std::string> out;
    for (const auto& [d, s] : states_) {
      if (!Done(s)) out.push_back(d);
    }
    return out;
  }
  bool AllDone() {
    absl::MutexLock lock(&mu_);
    return counts_.wait_done == counts_.distinct;
  }
  void SetWaiting() {
    absl::MutexLock lock(&mu_);
    counts_.waiting = true;
  }
  void SetPaused(const std::string& reason) {
    absl::MutexLock lock(&mu_);
    counts_.paused = reason;
  }
  ProgressCounts Snapshot() {
    absl::MutexLock lock(&mu_);
    return counts_;
  }
  std::vector<Problem> problems() {
    absl::MutexLock lock(&mu_);
    return problems_;
  }
  int target() const { return target_; }

 private:
  bool Done(int s) const { return s >= target_ || s == DIGEST_STATE_FAILED; }
  void Count(int s, int delta) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (s == DIGEST_STATE_HASHED || s == DIGEST_STATE_QUEUED || s == DIGEST_STATE_SUBMITTED)
      counts_.queued += delta;
    if (s == DIGEST_STATE_PENDING) counts_.pending += delta;
    if (s == DIGEST_STATE_CONFIRMED) counts_.confirmed += delta;
    if (s == DIGEST_STATE_FAILED) counts_.failed += delta;
    if (Done(s)) counts_.wait_done += delta;
  }
  void RaiseLocked(const std::string& digest, int state, bool add)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = states_.find(digest);
    if (it == states_.end()) {
      if (!add) return;
      states_.emplace(digest, state);
      counts_.distinct++;
      Count(state, +1);
      return;
    }
    if (state <= it->second) return;
    Count(it->second, -1);
    it->second = state;
    Count(state, +1);
  }

  const int target_;
  const std::vector<std::string> providers_;
  absl::Mutex mu_;
  std::unordered_map<std::string, int> states_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<std::string, std::map<std::string, int>> per_provider_ ABSL_GUARDED_BY(mu_);
  ProgressCounts counts_ ABSL_GUARDED_BY(mu_);
  std::vector<Problem> problems_ ABSL_GUARDED_BY(mu_);
};

// Redraws the progress line in place on a terminal, or logs a plain line every few seconds.
class ProgressPrinter {
 public:
  ProgressPrinter(ArchiveState* state, bool quiet)
      : state_(state), tty_(isatty(2) == 1), quiet_(quiet) {
    {
      absl::MutexLock lock(&mu_);
      phase_start_ = absl::Now();
    }
    if (!quiet_) thread_ = std::thread([this] { Loop(); });
  }
  ~ProgressPrinter() { Stop(); }
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
    if (tty_) {
      std::cerr << "\r\033[K" << line << (final ? "\n" : "") << std::flush;
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
  const bool quiet_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time phase_start_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

// Follows PollerService.Watch for the job and raises digest states as events come, reopening the
// stream (with a pause) when the poller restarts, until Stop().
class WatchFollower {
 public:
  WatchFollower(Clients* clients, ArchiveState* state, std::string job, absl::Time deadline)
      : clients_(clients), state_(state), job_(std::move(job)), deadline_(deadline) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~WatchFollower() { Stop(); }
  void Stop() ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
      if (ctx_ != nullptr) ctx_->TryCancel();
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Loop() ABSL_LOCKS_EXCLUDED(mu_) {
    for (int attempt = 0; attempt < 100000; ++attempt) {
      grpc::ClientContext ctx;
      ctx.set_deadline(absl::ToChronoTime(deadline_));
      {
        absl::MutexLock lock(&mu_);
        if (stop_) return;
        ctx_ = &ctx;
      }
      WatchRequest req;
      req.set_job(job_);
      req.set_include_current(true);
      auto reader = clients_->poller().Watch(&ctx, req);
      WatchResponse ev;
      while (reader->Read(&ev)) {
        if (ev.has_proof())
          state_->Raise(ev.proof().digest(), ev.proof().state(), ev.proof().provider());
        Interrupter::Get().Wake();
      }
      grpc::Status st = reader->Finish();
      absl::MutexLock lock(&mu_);
      ctx_ = nullptr;
      if (stop_ || absl::Now() >= deadline_) return;
      if (!st.ok()) {
        ANCHORD_LOG(Debug) << "Watch ended: " << st.error_message();
      }
      // The periodic reconciliation keeps the counts right meanwhile; retry the stream calmly.
      mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Seconds(1));
    }
  }
  Clients* clients_;
  ArchiveState* state_;
  std::string job_;
  absl::Time deadline_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* ctx_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::thread thread_;
};

// Asks the poller for the digests not yet done, in batches of 500 (ListProofs' filter), so that
// digests anchored earlier in another job, which the job's Watch does not show, are seen too.
absl::Status Reconcile(Clients& clients, ArchiveState& state) {
  std::vector<std::string> open = state.NotDone();
  for (size_t i = 0; i < open.size() && !Interrupter::Get().interrupted(); i += 500) {
    ListProofsRequest req;
    for (size_t k = i; k < std::min(open.size(), i + 500); ++k) req.add_digests(open[k]);
    req.set_page_size(1000);
    for (int page = 0; page < 1000; ++page) {
      grpc::ClientContext ctx;
      ScopedCancel cancel(&ctx);
      clients.SetDeadline(&ctx);
      ListProofsResponse resp;
      grpc::Status st = clients.poller().ListProofs(&ctx, req, &resp);
      if (!st.ok()) return clients.RpcError("poller", "ListProofs", st);
      for (const auto& p : resp.proofs()) state.Raise(p.digest(), p.state(), p.provider());
      if (resp.next_page_token().empty()) break;
      req.set_page_token(resp.next_page_token());
    }
  }
  return absl::OkStatus();
}

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
    auto reader = clients.hasher().HashTree(&ctx, req);
    HashTreeResponse resp;
    std::vector<HashTreeResponse> dry;
    while (reader->Read(&resp)) {
      state.OnHashResult(resp);
      if (o.dry_run && dry.size() < 1000000) dry.push_back(resp);
    }
    grpc::Status st = reader->Finish();
    if (!st.ok()) failure = clients.RpcError("hasher", "HashTree", st);
    if (o.dry_run) {
      progress.Stop();
      for (const auto& r : dry) {
        if (r.status().code() == 0) {
          std::cout << DigestOf(r.digest()) << "  " << r.path() << "\n";
        } else {
          std::cout << "-  " << r.path() << "  " << r.status().reason() << ": "
                    << r.status().message() << "\n";
        }
      }
      std::cout << std::flush;
    }
  }

  // Phase 2: wait until every distinct digest reached the target state at the poller.
  if (failure.ok() && !o.dry_run && *target > DIGEST_STATE_QUEUED && !state.AllDone()) {
    state.SetWaiting();
    progress.NewPhase();
    WatchFollower follower(&clients, &state, o.job, deadline);
    absl::Time next_reconcile = absl::InfinitePast();
    while (!state.AllDone()) {
      if (Interrupter::Get().interrupted()) break;
      if (absl::Now() >= deadline) {
        failure =
            absl::DeadlineExceededError("--timeout-seconds reached before every digest got there");
        break;
      }
      // Reconcile at once, then every 2 s; Watch events wake the loop in between. Reconciling
      // asks the poller about every open digest, so with a large archive it is a safety net for
      // missed events that runs rarely (every 30 s above 5,000 open digests), not a poll.
      if (absl::Now() >= next_reconcile) {
        next_reconcile =
            absl::Now() + (state.Snapshot().distinct - state.Snapshot().wait_done > 5000
                               ? absl::Seconds(30)
                               : absl::Seconds(2));
        if (auto s = Reconcile(clients, state); !s.ok()) {
          ANCHORD_LOG(Warning) << s.message();
        }
        grpc::ClientContext ctx;
        ScopedCancel cancel(&ctx);
        clients.SetDeadline(&ctx);
        SummarizeJobRequest sreq;
        sreq.set_job(o.job);
        SummarizeJobResponse sresp;
        if (clients.status("submitter").SummarizeJob(&ctx, sreq, &sresp).ok()) {
          state.SetPaused(sresp.paused() ? (sresp.paused_reason().empty() ? std::string("paused")
                                                                          : sresp.paused_reason())
                                         : std::string());
        }
      }
      Interrupter::Get().SleepFor(absl::Milliseconds(250));
    }
    follower.Stop();
  }
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
