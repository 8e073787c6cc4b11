#include "services/anchorctl/commands.h"

#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/strings/strip.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"
#include "libs/common/validate.h"
#include "libs/ots/headers.h"
#include "libs/ots/verify.h"
#include "libs/rpc/server.h"
#include "libs/rpc/status.h"
#include "services/anchorctl/clients.h"
#include "services/anchorctl/format.h"
#include "services/anchorctl/process.h"
#include "services/anchorctl/proof_check.h"
#include "libs/tsa/tsa.h"
#include "services/anchorctl/stack.h"

namespace anchord::anchorctl {
namespace fs = std::filesystem;
using namespace anchord::v1;

namespace {

// Long enough for any stream that has its own end (ListFiles of millions of files, a hash tree);
// every call still carries a deadline.
constexpr absl::Duration kStreamDeadline = absl::Hours(24 * 30);

std::string Dump(const nlohmann::json& j) {
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

int Fail(int code, const std::string& message) {
  std::cerr << "anchorctl: " << message << std::endl;
  return code;
}

// Exit code for a failed status: unreachable or internal trouble is 1, bad input 2.
int FailStatus(const absl::Status& s) {
  int code = kExitInternal;
  if (s.code() == absl::StatusCode::kInvalidArgument) code = kExitUsage;
  if (s.code() == absl::StatusCode::kCancelled || s.code() == absl::StatusCode::kDeadlineExceeded) {
    code = kExitIncomplete;
  }
  return Fail(code, std::string(s.message()));
}

absl::Duration UnaryDeadline(const GlobalOptions& g) {
  double s = g.deadline_seconds > 0 ? g.deadline_seconds : 10;
  return absl::Seconds(std::min(s, 86400.0));
}

Endpoints ResolveEndpoints(const GlobalOptions& g) {
  Endpoints e{g.hasher, g.submitter, g.poller, g.hasher_root, "flags/environment"};
  if (!e.hasher.empty() && !e.submitter.empty() && !e.poller.empty()) return e;
  auto stack = ReadStackFile(g.data_dir);
  if (stack.ok()) {
    const bool any_flag = !e.hasher.empty() || !e.submitter.empty() || !e.poller.empty();
    if (e.hasher.empty()) e.hasher = stack->hasher;
    if (e.submitter.empty()) e.submitter = stack->submitter;
    if (e.poller.empty()) e.poller = stack->poller;
    if (e.root.empty()) e.root = stack->root;
    e.source = absl::StrCat(any_flag ? "flags and " : "", StackFilePath(g.data_dir));
  } else {
    e.source = absl::StrCat("flags/environment; ", stack.status().message());
  }
  return e;
}

std::string DigestOf(const std::string& raw) { return HexEncode(raw); }

StackOptions MakeStackOptions(const GlobalOptions& g, const StackFlags& f,
                              const std::string& run_dir, const std::string& root) {
  StackOptions o;
  o.binaries = FindBinaries(f.bin_dir.empty() ? SelfDir() : f.bin_dir, f.sandbox);
  o.run_dir = run_dir;
  o.state_dir = (fs::path(g.data_dir) / "state").string();
  o.root = root;
  o.sandbox = f.sandbox;
  o.sandbox_window_seconds = f.sandbox_window_seconds;
  o.sandbox_confirm_after_seconds = f.sandbox_confirm_after_seconds;
  o.poll_interval_seconds = f.poll_interval_seconds;
  o.provider_args = f.provider_args;
  return o;
}

absl::StatusOr<std::string> RealDir(const std::string& dir, absl::string_view what) {
  char buf[PATH_MAX];
  if (realpath(dir.c_str(), buf) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", dir, " does not exist"));
  }
  std::error_code ec;
  if (!fs::is_directory(buf, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", dir, " is not a directory"));
  }
  return std::string(buf);
}

// Refuses to start a second stack on the same data directory: two submitters sharing one queue
// database could submit a digest twice.
absl::Status CheckNoRunningStack(const std::string& data_dir) {
  auto existing = ReadStackFile(data_dir);
  if (existing.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "a stack is already running on ", data_dir, " (anchorctl pid ", existing->owner_pid,
        ", hasher at ", existing->hasher, "); use it (drop --local) or stop it first"));
  }
  return absl::OkStatus();
}

void PrintStack(const StackInfo& info, bool json) {
  if (json) {
    std::cout << info.ToJson() << std::flush;
    return;
  }
  std::cout << "hasher     " << info.hasher << "\n"
            << "submitter  " << info.submitter << "\n"
            << "poller     " << info.poller << "\n";
  if (!info.sandbox_url.empty()) std::cout << "sandbox    " << info.sandbox_url << "\n";
  std::cout << "root       " << info.root << std::endl;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// local

int RunLocal(const GlobalOptions& g, const LocalOptions& o) {
  auto root = RealDir(o.root, "--root");
  if (!root.ok()) return FailStatus(root.status());
  if (auto s = CheckNoRunningStack(g.data_dir); !s.ok())
    return Fail(kExitUsage, std::string(s.message()));
  const std::string run_dir = (fs::path(g.data_dir) / "run").string();
  auto stack = LocalStack::Start(MakeStackOptions(g, o.stack, run_dir, *root));
  if (!stack.ok())
    return Fail(kExitInternal, absl::StrCat("starting the stack: ", stack.status().message()));
  if (auto s = WriteStackFile(g.data_dir, (*stack)->info()); !s.ok()) {
    return Fail(kExitInternal, std::string(s.message()));
  }
  PrintStack((*stack)->info(), g.json);
  std::cerr << "anchorctl: stack running (logs in " << run_dir << "); Ctrl-C to stop" << std::endl;
  int code = kExitComplete;
  while (!Interrupter::Get().SleepFor(absl::Seconds(1))) {
    bool dead = false;
    for (const char* service : {"sandbox", "poller", "submitter", "hasher"}) {
      ChildProcess* c = (*stack)->child(service);
      if (c != nullptr && !c->Running()) {
        std::cerr << "anchorctl: the " << service << " exited unexpectedly; see "
                  << c->spec().log_file << std::endl;
        dead = true;
      }
    }
    if (dead) {
      code = kExitInternal;
      break;
    }
  }
  std::cerr << "anchorctl: stopping the stack" << std::endl;
  (*stack)->Stop(absl::Seconds(10));
  std::error_code ec;
  fs::remove(StackFilePath(g.data_dir), ec);
  return code;
}

// ---------------------------------------------------------------------------------------------
// archive

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
    std::lock_guard<std::mutex> lock(mu_);
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
    std::lock_guard<std::mutex> lock(mu_);
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
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> out;
    for (const auto& [d, s] : states_) {
      if (!Done(s)) out.push_back(d);
    }
    return out;
  }
  bool AllDone() {
    std::lock_guard<std::mutex> lock(mu_);
    return counts_.wait_done == counts_.distinct;
  }
  void SetWaiting() {
    std::lock_guard<std::mutex> lock(mu_);
    counts_.waiting = true;
  }
  void SetPaused(const std::string& reason) {
    std::lock_guard<std::mutex> lock(mu_);
    counts_.paused = reason;
  }
  ProgressCounts Snapshot() {
    std::lock_guard<std::mutex> lock(mu_);
    return counts_;
  }
  std::vector<Problem> problems() {
    std::lock_guard<std::mutex> lock(mu_);
    return problems_;
  }
  int target() const { return target_; }

 private:
  bool Done(int s) const { return s >= target_ || s == DIGEST_STATE_FAILED; }
  void Count(int s, int delta) {
    if (s == DIGEST_STATE_HASHED || s == DIGEST_STATE_QUEUED || s == DIGEST_STATE_SUBMITTED)
      counts_.queued += delta;
    if (s == DIGEST_STATE_PENDING) counts_.pending += delta;
    if (s == DIGEST_STATE_CONFIRMED) counts_.confirmed += delta;
    if (s == DIGEST_STATE_FAILED) counts_.failed += delta;
    if (Done(s)) counts_.wait_done += delta;
  }
  void RaiseLocked(const std::string& digest, int state, bool add) {
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
  std::mutex mu_;
  std::unordered_map<std::string, int> states_;
  std::unordered_map<std::string, std::map<std::string, int>> per_provider_;
  ProgressCounts counts_;
  std::vector<Problem> problems_;
};

// Redraws the progress line in place on a terminal, or logs a plain line every few seconds.
class ProgressPrinter {
 public:
  ProgressPrinter(ArchiveState* state, bool quiet)
      : state_(state), tty_(isatty(2) == 1), quiet_(quiet) {
    phase_start_ = absl::Now();
    if (!quiet_) thread_ = std::thread([this] { Loop(); });
  }
  ~ProgressPrinter() { Stop(); }
  void NewPhase() {
    std::lock_guard<std::mutex> lock(mu_);
    phase_start_ = absl::Now();
  }
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
      stop_ = true;
      cv_.notify_all();
    }
    if (thread_.joinable()) thread_.join();
    if (!quiet_) Print(/*final=*/true);
  }

 private:
  void Print(bool final) {
    absl::Time start;
    {
      std::lock_guard<std::mutex> lock(mu_);
      start = phase_start_;
    }
    std::string line = ProgressLine(state_->Snapshot(), absl::Now() - start);
    if (tty_) {
      std::cerr << "\r\033[K" << line << (final ? "\n" : "") << std::flush;
    } else {
      std::cerr << "anchorctl: " << line << std::endl;
    }
  }
  void Loop() {
    const auto period = tty_ ? std::chrono::milliseconds(250) : std::chrono::milliseconds(5000);
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      cv_.wait_for(lock, period, [&] { return stop_; });
      if (stop_) break;
      lock.unlock();
      Print(false);
      lock.lock();
    }
  }
  ArchiveState* state_;
  const bool tty_;
  const bool quiet_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  absl::Time phase_start_;
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
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      if (ctx_ != nullptr) ctx_->TryCancel();
      cv_.notify_all();
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Loop() {
    for (int attempt = 0; attempt < 100000; ++attempt) {
      grpc::ClientContext ctx;
      ctx.set_deadline(absl::ToChronoTime(deadline_));
      {
        std::lock_guard<std::mutex> lock(mu_);
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
      std::unique_lock<std::mutex> lock(mu_);
      ctx_ = nullptr;
      if (stop_ || absl::Now() >= deadline_) return;
      if (!st.ok()) {
        ANCHORD_LOG(Debug) << "Watch ended: " << st.error_message();
      }
      // The periodic reconciliation keeps the counts right meanwhile; retry the stream calmly.
      cv_.wait_for(lock, std::chrono::seconds(1), [&] { return stop_; });
    }
  }
  Clients* clients_;
  ArchiveState* state_;
  std::string job_;
  absl::Time deadline_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  grpc::ClientContext* ctx_ = nullptr;
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

// ---------------------------------------------------------------------------------------------
// status

int RunStatus(const GlobalOptions& g, const std::string& job) {
  if (auto s = ValidateJob(job, "--job"); !s.ok()) return FailStatus(s);
  Clients clients(ResolveEndpoints(g), UnaryDeadline(g));
  std::vector<std::map<int, int64_t>> per_service;
  nlohmann::json services = nlohmann::json::object();
  std::vector<std::string> paused;
  int64_t files = 0;
  for (const char* service : {"hasher", "submitter", "poller"}) {
    if (auto s = clients.Check(service); !s.ok())
      return Fail(kExitInternal, std::string(s.message()));
    grpc::ClientContext ctx;
    ScopedCancel cancel(&ctx);
    clients.SetDeadline(&ctx);
    SummarizeJobRequest req;
    req.set_job(job);
    SummarizeJobResponse resp;
    grpc::Status st = clients.status(service).SummarizeJob(&ctx, req, &resp);
    if (!st.ok()) return FailStatus(clients.RpcError(service, "SummarizeJob", st));
    auto counts = CountsFromSummary(resp.digests_by_state());
    per_service.push_back(counts);
    nlohmann::json sj = nlohmann::json::object();
    for (const auto& [state, n] : counts) sj[StateName(state)] = n;
    services[service] = {{"digests_by_state", sj},
                         {"files", resp.files()},
                         {"paused", resp.paused()},
                         {"paused_reason", resp.paused_reason()}};
    if (std::string(service) == "hasher") files = resp.files();
    if (resp.paused()) paused.push_back(absl::StrCat(service, ": ", resp.paused_reason()));
  }
  auto merged = MergeStateCounts(per_service);
  if (g.json) {
    nlohmann::json mj = nlohmann::json::object();
    for (const auto& [state, n] : merged) mj[StateName(state)] = n;
    nlohmann::json j{{"job", job.empty() ? "" : job},
                     {"files", files},
                     {"digests_by_state", mj},
                     {"services", services},
                     {"paused", paused}};
    std::cout << Dump(j) << std::endl;
    return kExitComplete;
  }
  std::cout << "job " << (job.empty() ? std::string("(all)") : job) << ": " << files << " files\n";
  for (int s = DIGEST_STATE_HASHED; s <= DIGEST_STATE_FAILED; ++s) {
    auto it = merged.find(s);
    std::cout << "  " << StateName(s)
              << std::string(11 - std::min<size_t>(10, StateName(s).size()), ' ')
              << (it == merged.end() ? 0 : it->second) << "\n";
  }
  if (paused.empty()) {
    std::cout << "  no provider paused\n";
  } else {
    for (const auto& p : paused) std::cout << "  PAUSED " << p << "\n";
  }
  std::cout << std::flush;
  return kExitComplete;
}

// ---------------------------------------------------------------------------------------------
// report

std::unique_ptr<Clients> MakeClients(const GlobalOptions& g) {
  return std::make_unique<Clients>(ResolveEndpoints(g), UnaryDeadline(g));
}

// The .ots of a proof as the poller serves it (for a Merkle leaf: its joined proof).
absl::StatusOr<std::string> FetchOts(Clients& clients, const GlobalOptions& g,
                                     const std::string& digest, const std::string& provider) {
  grpc::ClientContext ctx;
  ScopedCancel cancel(&ctx);
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + std::max(UnaryDeadline(g), absl::Seconds(60))));
  DownloadProofRequest req;
  req.set_digest(digest);
  req.set_provider(provider);
  auto reader = clients.poller().DownloadProof(&ctx, req);
  DownloadProofResponse chunk;
  std::string data;
  while (reader->Read(&chunk)) {
    data += chunk.data();
    if (data.size() > ots::kMaxProofFileBytes) {
      ctx.TryCancel();
      break;
    }
  }
  grpc::Status st = reader->Finish();
  if (st.error_code() == grpc::StatusCode::FAILED_PRECONDITION)
    return absl::NotFoundError("no .ots yet");
  if (!st.ok()) return clients.RpcError("poller", "DownloadProof", st);
  return data;
}

std::string VerifyProofRow(Clients& clients, const GlobalOptions& g, const std::string& digest_hex,
                           const std::string& provider, const std::string& status,
                           ots::BlockHeaderSource* headers, const std::string& tsa_ca_pem) {
  auto digest = HexDecode(digest_hex);
  if (!digest.ok()) return "INVALID digest";
  auto data = FetchOts(clients, g, *digest, provider);
  if (absl::IsNotFound(data.status())) {
    // A confirmed proof without an .ots: the provider gives none (ProofLedger); its
    // certificate_url is the evidence.
    return status == "CONFIRMED" ? "NO_OTS see certificate_url" : "NO_PROOF_YET";
  }
  if (!data.ok()) return absl::StrCat("ERROR ", data.status().message());
  const ProofFormat format = DetectProofFormat(*data);
  if (format == ProofFormat::kTsr || format == ProofFormat::kTsrPath) {
    TsaCheck c = CheckTsaProof(*data, *digest, tsa_ca_pem);
    switch (c.exit) {
      case 0:
        return absl::StrCat("VERIFIED tsa ", c.info ? c.info->gen_time_text : "",
                            c.root_hex.empty() ? "" : " via merkle root");
      case 1:
        return "UNCHECKED no --tsa-ca-file";
      case 3:
        return absl::StrCat("MISMATCH ", c.message);
      default:
        return absl::StrCat("INVALID ", c.message);
    }
  }
  auto proof = ots::ParseDetached(*data);
  if (!proof.ok()) return absl::StrCat("INVALID ", proof.status().message());
  ots::VerifyResult v = ots::Verify(*proof, *digest, headers);
  switch (v.verdict) {
    case ots::Verdict::kVerified:
      // Under regtest rules the block is a test chain's: the column must not pass for Bitcoin.
      return absl::StrCat("VERIFIED block ", v.earliest ? v.earliest->attestation.height : 0,
                          v.regtest_headers ? " (regtest)" : "");
    case ots::Verdict::kDigestMismatch:
      return "DIGEST_MISMATCH the proof is for another file";
    case ots::Verdict::kMismatch:
      return absl::StrCat("MISMATCH ", v.message);
    case ots::Verdict::kNotVerifiable:
      break;
  }
  bool bitcoin = false, pending = false;
  for (const auto& a : v.attestations) {
    if (a.attestation.kind == ots::Attestation::Kind::kBitcoin) bitcoin = true;
    if (a.attestation.kind == ots::Attestation::Kind::kPending) pending = true;
  }
  if (bitcoin) return headers ? absl::StrCat("UNCHECKED ", v.message) : "UNCHECKED no --headers";
  if (pending) return "PENDING";
  return absl::StrCat("UNVERIFIABLE ", v.message);
}

int CollectReportRows(Clients& clients, const GlobalOptions& g, const std::string& job,
                      std::vector<ReportRow>* rows_out) {
  ReportOptions o;
  o.job = job;
  std::vector<ListFilesResponse> files;
  {
    grpc::ClientContext ctx;
    ScopedCancel cancel(&ctx);
    ctx.set_deadline(
        absl::ToChronoTime(absl::Now() + std::max(UnaryDeadline(g), absl::Minutes(30))));
    ListFilesRequest req;
    req.set_job(o.job);
    auto reader = clients.hasher().ListFiles(&ctx, req);
    ListFilesResponse f;
    while (reader->Read(&f)) files.push_back(f);
    grpc::Status st = reader->Finish();
    if (!st.ok()) return FailStatus(clients.RpcError("hasher", "ListFiles", st));
  }
  std::vector<std::string> digests;
  {
    std::unordered_set<std::string> seen;
    for (const auto& f : files) {
      if (f.digest().size() == kDigestBytes && seen.insert(f.digest()).second)
        digests.push_back(f.digest());
    }
  }
  std::unordered_map<std::string, std::vector<Proof>> proofs;
  for (size_t i = 0; i < digests.size(); i += 500) {
    ListProofsRequest req;
    for (size_t k = i; k < std::min(digests.size(), i + 500); ++k) req.add_digests(digests[k]);
    req.set_page_size(1000);
    for (int page = 0; page < 1000; ++page) {
      grpc::ClientContext ctx;
      ScopedCancel cancel(&ctx);
      clients.SetDeadline(&ctx);
      ListProofsResponse resp;
      grpc::Status st = clients.poller().ListProofs(&ctx, req, &resp);
      if (!st.ok()) return FailStatus(clients.RpcError("poller", "ListProofs", st));
      for (const auto& p : resp.proofs()) proofs[p.digest()].push_back(p);
      if (resp.next_page_token().empty()) break;
      req.set_page_token(resp.next_page_token());
    }
  }
  // Digests the poller does not have yet: ask the submitter where they are.
  std::unordered_map<std::string, LocateResponse> located;
  for (const auto& d : digests) {
    if (proofs.count(d) > 0 || Interrupter::Get().interrupted()) continue;
    grpc::ClientContext ctx;
    ScopedCancel cancel(&ctx);
    clients.SetDeadline(&ctx);
    LocateRequest req;
    req.set_digest(d);
    LocateResponse resp;
    grpc::Status st = clients.status("submitter").Locate(&ctx, req, &resp);
    if (st.ok()) {
      located[d] = resp;
    } else if (st.error_code() != grpc::StatusCode::NOT_FOUND) {
      return FailStatus(clients.RpcError("submitter", "Locate", st));
    }
  }
  if (Interrupter::Get().interrupted()) return Fail(kExitIncomplete, "interrupted");

  std::vector<ReportRow>& rows = *rows_out;
  for (const auto& f : files) {
    ReportRow base;
    base.path = f.path();
    base.digest_hex = f.digest().empty() ? "" : DigestOf(f.digest());
    base.size_bytes = f.size_bytes();
    base.duplicate_of = f.duplicate_of();
    if (f.status().code() != 0 || f.digest().size() != kDigestBytes) {
      base.status = "FAILED";
      base.reason = f.status().reason();
      base.error = f.status().message();
      rows.push_back(base);
      continue;
    }
    base.status = StateName(f.state());
    auto from_proof = [](ReportRow r, const Proof& p) {
      r.provider = p.provider();
      r.proof_id = p.proof_id();
      r.status = StateName(p.state());
      r.certificate_url = p.certificate_url();
      r.verify_url = p.verify_url();
      r.bitcoin_block_height = p.bitcoin_block_height();
      if (!p.merkle_root().empty()) r.merkle_root = DigestOf(p.merkle_root());
      r.stalled = p.stalled();
      if (p.state() == DIGEST_STATE_FAILED) {
        r.reason = p.failure().reason();
        r.error = p.failure().message();
      }
      return r;
    };
    auto pit = proofs.find(f.digest());
    if (pit != proofs.end()) {
      for (const auto& p : pit->second) rows.push_back(from_proof(base, p));
      continue;
    }
    auto lit = located.find(f.digest());
    if (lit != located.end()) {
      if (!lit->second.proofs().empty()) {
        for (const auto& p : lit->second.proofs()) rows.push_back(from_proof(base, p));
        continue;
      }
      if (lit->second.state() > f.state()) base.status = StateName(lit->second.state());
      if (lit->second.status().code() != 0) {
        base.reason = lit->second.status().reason();
        base.error = lit->second.status().message();
      }
    }
    rows.push_back(base);
  }
  return kExitComplete;
}

int RunReport(const GlobalOptions& g, const ReportOptions& o) {
  if (auto s = ValidateJob(o.job, "--job"); !s.ok()) return FailStatus(s);
  if (o.format != "csv" && o.format != "json") {
    return Fail(kExitUsage, absl::StrCat("--format: \"", o.format, "\" is not csv or json"));
  }
  Clients clients(ResolveEndpoints(g), UnaryDeadline(g));
  for (const char* service : {"hasher", "submitter", "poller"}) {
    if (auto s = clients.Check(service); !s.ok())
      return Fail(kExitInternal, std::string(s.message()));
  }
  std::vector<ReportRow> rows;
  if (int rc = CollectReportRows(clients, g, o.job, &rows); rc != kExitComplete) return rc;
  bool any_mismatch = false;
  if (!o.no_verify) {
    std::unique_ptr<ots::BlockHeaderSource> headers;
    if (!o.headers.empty()) {
      auto net = ots::ParseNetwork(o.network);
      if (!net.ok()) return Fail(kExitUsage, std::string(net.status().message()));
      auto made = ots::MakeHeaderSource(o.headers, *net);
      if (!made.ok()) return Fail(kExitUsage, absl::StrCat("--headers: ", made.status().message()));
      headers = std::move(*made);
    }
    std::string tsa_ca_pem;
    std::string tsa_ca_file = o.tsa_ca_file;
    if (tsa_ca_file.empty()) {
      // A stack started by anchorctl with the sandbox records its TSA's test CA.
      if (auto stack = ReadStackFile(g.data_dir); stack.ok()) tsa_ca_file = stack->tsa_ca_file;
    }
    if (!tsa_ca_file.empty()) {
      auto ca = ReadSmallFile(tsa_ca_file);
      if (!ca.ok() || tsa::CountPemCertificates(*ca) == 0) {
        return Fail(kExitUsage,
                    absl::StrCat("--tsa-ca-file: ", tsa_ca_file, ": no readable PEM certificate"));
      }
      tsa_ca_pem = *std::move(ca);
    }
    // One download per (digest, provider); duplicates share the verdict.
    std::map<std::pair<std::string, std::string>, std::string> verdicts;
    for (ReportRow& r : rows) {
      if (r.provider.empty() || r.digest_hex.size() != 64) continue;
      if (Interrupter::Get().interrupted()) break;
      auto key = std::make_pair(r.digest_hex, r.provider);
      auto it = verdicts.find(key);
      if (it == verdicts.end()) {
        it = verdicts
                 .emplace(key, VerifyProofRow(clients, g, r.digest_hex, r.provider, r.status,
                                              headers.get(), tsa_ca_pem))
                 .first;
      }
      r.verification = it->second;
      if (absl::StartsWith(r.verification, "MISMATCH") ||
          absl::StartsWith(r.verification, "DIGEST_MISMATCH") ||
          absl::StartsWith(r.verification, "INVALID")) {
        any_mismatch = true;
      }
    }
  }
  std::string text = o.format == "json" ? ReportToJson(rows) : ReportToCsv(rows);
  if (o.output.empty() || o.output == "-") {
    std::cout << text << std::flush;
  } else if (auto s = rpc::WriteFileAtomically(o.output, text); !s.ok()) {
    return Fail(kExitInternal, absl::StrCat("--output: ", s.message()));
  } else {
    std::cerr << "anchorctl: wrote " << rows.size() << " rows to " << o.output << std::endl;
  }
  if (any_mismatch) {
    std::cerr << "anchorctl: at least one proof does not verify (see the verification column)"
              << std::endl;
    return kExitFilesFailed;
  }
  return kExitComplete;
}

// ---------------------------------------------------------------------------------------------
// get, download, watch

namespace {
nlohmann::json ProofJson(const Proof& p) {
  nlohmann::json files = nlohmann::json::array();
  for (const auto& f : p.files()) {
    files.push_back({{"source_path", f.source_path()},
                     {"filename", f.filename()},
                     {"job", f.job()},
                     {"size_bytes", f.size_bytes()}});
  }
  nlohmann::json j{{"digest", DigestOf(p.digest())},
                   {"provider", p.provider()},
                   {"proof_id", p.proof_id()},
                   {"state", StateName(p.state())},
                   {"certificate_url", p.certificate_url()},
                   {"verify_url", p.verify_url()},
                   {"bitcoin_block_height", p.bitcoin_block_height()},
                   {"bitcoin_tx", p.bitcoin_tx()},
                   {"ots_available", p.ots_available()},
                   {"files", files}};
  if (p.state() == DIGEST_STATE_FAILED) {
    j["failure"] = {{"reason", p.failure().reason()}, {"message", p.failure().message()}};
  }
  return j;
}
}  // namespace

int RunGet(const GlobalOptions& g, const std::string& digest_hex) {
  auto digest = ParseDigestArg(digest_hex);
  if (!digest.ok()) return FailStatus(digest.status());
  Clients clients(ResolveEndpoints(g), UnaryDeadline(g));
  int furthest = 0;
  nlohmann::json per_service = nlohmann::json::object();
  std::vector<Proof> proofs;
  std::map<std::string, FileMetadata> files;
  for (const char* service : {"hasher", "submitter", "poller"}) {
    if (auto s = clients.Check(service); !s.ok())
      return Fail(kExitInternal, std::string(s.message()));
    grpc::ClientContext ctx;
    ScopedCancel cancel(&ctx);
    clients.SetDeadline(&ctx);
    LocateRequest req;
    req.set_digest(*digest);
    LocateResponse resp;
    grpc::Status st = clients.status(service).Locate(&ctx, req, &resp);
    if (st.error_code() == grpc::StatusCode::NOT_FOUND) {
      per_service[service] = "NOT_FOUND";
      continue;
    }
    if (!st.ok()) return FailStatus(clients.RpcError(service, "Locate", st));
    per_service[service] = StateName(resp.state());
    furthest = std::max<int>(furthest, resp.state());
    for (const auto& f : resp.files())
      files.emplace(f.source_path().empty() ? f.filename() : f.source_path(), f);
  }
  {
    grpc::ClientContext ctx;
    ScopedCancel cancel(&ctx);
    clients.SetDeadline(&ctx);
    GetProofRequest req;
    req.set_digest(*digest);
    GetProofResponse resp;
    grpc::Status st = clients.poller().GetProof(&ctx, req, &resp);
    if (st.ok()) {
      proofs.push_back(resp.proof());
      furthest = std::max<int>(furthest, resp.proof().state());
      for (const auto& f : resp.proof().files()) {
        files.emplace(f.source_path().empty() ? f.filename() : f.source_path(), f);
      }
    } else if (st.error_code() != grpc::StatusCode::NOT_FOUND) {
      return FailStatus(clients.RpcError("poller", "GetProof", st));
    }
  }
  if (furthest == 0) {
    return Fail(kExitUsage, absl::StrCat("DIGEST: ", digest_hex, " is not known to any service"));
  }
  if (g.json) {
    nlohmann::json pj = nlohmann::json::array();
    for (const auto& p : proofs) pj.push_back(ProofJson(p));
    nlohmann::json fj = nlohmann::json::array();
    for (const auto& [path, f] : files)
      fj.push_back({{"path", path}, {"job", f.job()}, {"size_bytes", f.size_bytes()}});
    std::cout << Dump({{"digest", HexEncode(*digest)},
                       {"state", StateName(furthest)},
                       {"services", per_service},
                       {"proofs", pj},
                       {"files", fj}})
              << std::endl;
  } else {
    std::cout << HexEncode(*digest) << ": " << StateName(furthest) << "\n";
    for (auto it = per_service.begin(); it != per_service.end(); ++it) {
      std::cout << "  " << it.key() << ": " << it.value().get<std::string>() << "\n";
    }
    for (const auto& p : proofs) {
      std::cout << "  proof " << p.provider() << " " << p.proof_id() << " " << StateName(p.state());
      if (p.bitcoin_block_height() > 0) std::cout << " block " << p.bitcoin_block_height();
      if (!p.certificate_url().empty()) std::cout << " " << p.certificate_url();
      if (p.ots_available()) std::cout << " (.ots stored)";
      if (p.state() == DIGEST_STATE_FAILED)
        std::cout << " " << p.failure().reason() << ": " << p.failure().message();
      std::cout << "\n";
    }
    for (const auto& [path, f] : files)
      std::cout << "  file " << path << " (job " << JobOrDefault(f.job()) << ")\n";
    std::cout << std::flush;
  }
  if (furthest == DIGEST_STATE_FAILED) return kExitFilesFailed;
  return furthest == DIGEST_STATE_CONFIRMED ? kExitComplete : kExitIncomplete;
}

int RunDownload(const GlobalOptions& g, const std::string& digest_hex, const std::string& output) {
  auto digest = ParseDigestArg(digest_hex);
  if (!digest.ok()) return FailStatus(digest.status());
  const std::string out = output.empty() ? absl::StrCat(HexEncode(*digest), ".ots") : output;
  Clients clients(ResolveEndpoints(g), UnaryDeadline(g));
  if (auto s = clients.Check("poller"); !s.ok())
    return Fail(kExitInternal, std::string(s.message()));
  grpc::ClientContext ctx;
  ScopedCancel cancel(&ctx);
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + std::max(UnaryDeadline(g), absl::Seconds(60))));
  DownloadProofRequest req;
  req.set_digest(*digest);
  auto reader = clients.poller().DownloadProof(&ctx, req);
  DownloadProofResponse chunk;
  std::string data;
  int64_t total = -1;
  while (reader->Read(&chunk)) {
    data += chunk.data();
    total = chunk.total_size_bytes();
    if (data.size() > ots::kMaxProofFileBytes) {
      ctx.TryCancel();
      break;
    }
  }
  grpc::Status st = reader->Finish();
  if (st.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
    return Fail(kExitIncomplete, absl::StrCat("no .ots stored yet for ", HexEncode(*digest), ": ",
                                              st.error_message()));
  }
  if (st.error_code() == grpc::StatusCode::NOT_FOUND) {
    return Fail(kExitUsage,
                absl::StrCat("DIGEST: ", HexEncode(*digest), " is not known to the poller"));
  }
  if (!st.ok()) return FailStatus(clients.RpcError("poller", "DownloadProof", st));
  if (data.empty() || (total >= 0 && static_cast<int64_t>(data.size()) != total)) {
    return Fail(kExitInternal,
                absl::StrCat("DownloadProof returned ", data.size(), " bytes, announced ", total));
  }
  if (auto s = rpc::WriteFileAtomically(out, data); !s.ok()) {
    return Fail(kExitInternal, absl::StrCat("-o: ", s.message()));
  }
  if (g.json) {
    std::cout << Dump({{"digest", HexEncode(*digest)}, {"file", out}, {"size_bytes", data.size()}})
              << std::endl;
  } else {
    std::cout << "wrote " << out << " (" << data.size() << " bytes)" << std::endl;
  }
  return kExitComplete;
}

int RunWatch(const GlobalOptions& g, const std::string& job, const std::string& digest_hex,
             bool include_current) {
  if (auto s = ValidateJob(job, "--job"); !s.ok()) return FailStatus(s);
  std::string digest;
  if (!digest_hex.empty()) {
    auto d = ParseDigestArg(digest_hex, "--digest");
    if (!d.ok()) return FailStatus(d.status());
    digest = *d;
  }
  Clients clients(ResolveEndpoints(g), UnaryDeadline(g));
  if (auto s = clients.Check("poller"); !s.ok())
    return Fail(kExitInternal, std::string(s.message()));
  grpc::ClientContext ctx;
  ScopedCancel cancel(&ctx);
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + kStreamDeadline));
  WatchRequest req;
  req.set_job(job);
  req.set_digest(digest);
  req.set_include_current(include_current);
  auto reader = clients.poller().Watch(&ctx, req);
  WatchResponse ev;
  while (reader->Read(&ev)) {
    std::string type = ProofEventType_Name(ev.type());
    absl::string_view t(type);
    absl::ConsumePrefix(&t, "PROOF_EVENT_TYPE_");
    const absl::Time when = absl::FromUnixSeconds(ev.event_time().seconds()) +
                            absl::Nanoseconds(ev.event_time().nanos());
    if (g.json) {
      nlohmann::json j{{"type", std::string(t)},
                       {"time", absl::FormatTime(absl::RFC3339_sec, when, absl::UTCTimeZone())}};
      if (ev.has_proof()) j["proof"] = ProofJson(ev.proof());
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
    } else {
      std::cout << absl::FormatTime(absl::RFC3339_sec, when, absl::UTCTimeZone()) << " " << t;
      if (ev.has_proof()) {
        const Proof& p = ev.proof();
        std::cout << " " << DigestOf(p.digest()) << " " << StateName(p.state()) << " "
                  << p.provider() << " " << p.proof_id();
        if (!p.files().empty()) std::cout << " " << p.files(0).source_path();
      }
      std::cout << std::endl;
    }
  }
  grpc::Status st = reader->Finish();
  if (Interrupter::Get().interrupted()) return kExitComplete;  // Ctrl-C is how a watch ends
  if (!st.ok()) return FailStatus(clients.RpcError("poller", "Watch", st));
  return kExitComplete;
}

}  // namespace anchord::anchorctl
