#include "tests/e2e/cluster.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <httplib.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace anchord::e2e {
namespace {
namespace fs = std::filesystem;
using anchorctl::ChildProcess;
using anchorctl::ChildSpec;

std::string Name(const std::string& service, int index) {
  return absl::StrCat(service, "-", index);
}

}  // namespace

absl::Status RunToCompletion(const std::string& binary, const std::vector<std::string>& args,
                             const std::string& log_file, int timeout_seconds) {
  ChildSpec spec;
  spec.name = binary;
  spec.binary = binary;
  spec.args = args;
  spec.log_file = log_file;
  auto child = ChildProcess::Spawn(spec);
  if (!child.ok()) return child.status();
  if (!(*child)->WaitExit(absl::Seconds(timeout_seconds))) {
    return absl::DeadlineExceededError(absl::StrCat(binary, " ", absl::StrJoin(args, " "),
                                                    " did not finish within ", timeout_seconds,
                                                    " s:\n", anchorctl::TailOfFile(log_file)));
  }
  const int st = (*child)->raw_wait_status();
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    return absl::InternalError(absl::StrCat(binary, " ", absl::StrJoin(args, " "),
                                            " failed (wait status ", st, "):\n",
                                            anchorctl::TailOfFile(log_file)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Cluster>> Cluster::Start(const ClusterOptions& options) {
  std::unique_ptr<Cluster> c(new Cluster());
  c->options_ = options;
  std::error_code ec;
  fs::create_directories(options.dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", options.dir));
  const fs::path dir(options.dir);
  // The sandbox's fixed keys, in 0600 files (never in argv).
  {
    std::ofstream key(dir / "proofd.key", std::ios::trunc);
    key << "proofd_live_sandbox";
  }
  chmod((dir / "proofd.key").c_str(), 0600);
  // The internal token the submitters and pollers present to each other (any secret value will
  // do for a test; it only has to be the same file for all of them).
  {
    std::ofstream token(dir / "internal.token", std::ios::trunc);
    token << "cluster-internal-token-" << getpid();
  }
  chmod((dir / "internal.token").c_str(), 0600);

  auto add = [&](const std::string& service, int count) -> absl::Status {
    for (int i = 0; i < count; ++i) {
      auto r = std::make_unique<Replica>();
      r->service = service;
      r->index = i;
      r->port = service == "sandbox" ? 0 : ReserveLoopbackPort();
      if (r->port < 0) return absl::UnavailableError("no free loopback port");
      if (service == "submitter" || service == "poller") {
        r->internal_port = ReserveLoopbackPort();
        if (r->internal_port < 0) return absl::UnavailableError("no free loopback port");
      }
      c->replicas_.push_back(std::move(r));
    }
    return absl::OkStatus();
  };
  if (auto s = add("sandbox", 1); !s.ok()) return s;
  if (auto s = add("poller", options.pollers); !s.ok()) return s;
  if (auto s = add("submitter", options.submitters); !s.ok()) return s;
  if (auto s = add("hasher", 1); !s.ok()) return s;
  for (auto& r : c->replicas_) {
    if (auto s = c->StartReplica(r.get()); !s.ok()) return s;  // ~Cluster stops what started
    if (r->service == "sandbox") c->sandbox_port_ = r->port;
  }
  return c;
}

Cluster::~Cluster() { Stop(); }

std::vector<std::string> Cluster::Args(const Replica& r) const {
  const fs::path dir(options_.dir);
  const std::string name = Name(r.service, r.index);
  std::vector<std::string> args;
  const std::string w = absl::StrCat(options_.sandbox_window_seconds);
  if (r.service == "sandbox") {
    args = {"--listen",
            "127.0.0.1:0",
            "--port-file",
            (dir / (name + ".port")).string(),
            "--window-seconds",
            w,
            "--confirm-after-seconds",
            absl::StrCat(options_.sandbox_confirm_after_seconds)};
  } else {
    args = {"--listen",
            absl::StrCat("127.0.0.1:", r.port),
            "--port-file",
            (dir / (name + ".port")).string(),
            "--metrics-listen",
            "127.0.0.1:0",
            "--metrics-port-file",
            (dir / (name + ".metrics.port")).string(),
            "--data-dir",
            (dir / name).string()};
    if (r.service == "hasher") {
      args.insert(args.end(), {"--root", options_.root, "--submitter", Target("submitter")});
    } else {
      args.insert(args.end(),
                  {"--provider", "proofd", "--proofd-url", sandbox_url(), "--proofd-api-key-file",
                   (dir / "proofd.key").string(), "--proofd-window-seconds", w});
      if (!options_.database_url_file.empty()) {
        args.insert(args.end(), {"--database-url-file", options_.database_url_file});
      }
      args.insert(args.end(), {"--internal-listen", absl::StrCat("127.0.0.1:", r.internal_port),
                               "--internal-port-file", (dir / (name + ".internal.port")).string(),
                               "--internal-token-file", internal_token_file()});
    }
    // Track and Reanchor are served on the internal ports only.
    if (r.service == "submitter") args.insert(args.end(), {"--poller", InternalTarget("poller")});
    if (r.service == "poller") {
      args.insert(args.end(),
                  {"--submitter", InternalTarget("submitter"), "--poll-interval-seconds",
                   absl::StrCat(options_.poll_interval_seconds)});
    }
  }
  auto extra = options_.extra_args.find(r.service);
  if (extra != options_.extra_args.end()) {
    args.insert(args.end(), extra->second.begin(), extra->second.end());
  }
  return args;
}

absl::Status Cluster::StartReplica(Replica* r) {
  const fs::path dir(options_.dir);
  const std::string name = Name(r->service, r->index);
  const std::string port_file = (dir / (name + ".port")).string();
  const std::string metrics_file = (dir / (name + ".metrics.port")).string();
  std::error_code ec;
  fs::remove(port_file, ec);
  fs::remove(metrics_file, ec);
  fs::remove(dir / (name + ".internal.port"), ec);
  auto bin = options_.binaries.find(r->service);
  if (bin == options_.binaries.end()) {
    return absl::NotFoundError(absl::StrCat("no binary for ", r->service));
  }
  ChildSpec spec;
  spec.name = name;
  spec.binary = bin->second;
  spec.args = Args(*r);
  spec.log_file = (dir / (name + ".log")).string();
  // A real key in the caller's environment must never reach the sandbox.
  for (const char* var : {"ANCHORD_PROOFD_API_KEY", "ANCHORD_PROOFLEDGER_API_KEY",
                          "ANCHORD_PROOFLEDGER_API_KEY_FILE", "ANCHORD_SIMPLEPROOF_API_KEY",
                          "ANCHORD_SIMPLEPROOF_API_KEY_FILE", "ANCHORD_DATABASE_URL"}) {
    spec.env[var] = "";
  }
  auto child = ChildProcess::Spawn(spec);
  if (!child.ok()) return child.status();
  r->child = std::move(*child);
  auto bound = anchorctl::WaitForPortFile(port_file, r->child.get(), absl::Seconds(30));
  if (!bound.ok()) return bound.status();
  r->port = *bound;
  if (r->service != "sandbox") {
    auto m = anchorctl::ReadSmallFile(metrics_file, 64);
    int mport = 0;
    if (m.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*m), &mport)) {
      r->metrics = absl::StrCat("127.0.0.1:", mport);
    }
  }
  return absl::OkStatus();
}

Cluster::Replica* Cluster::Find(const std::string& service, int index) {
  for (auto& r : replicas_) {
    if (r->service == service && r->index == index) return r.get();
  }
  return nullptr;
}

const Cluster::Replica* Cluster::Find(const std::string& service, int index) const {
  for (const auto& r : replicas_) {
    if (r->service == service && r->index == index) return r.get();
  }
  return nullptr;
}

std::string Cluster::Address(const std::string& service, int index) const {
  const Replica* r = Find(service, index);
  return r == nullptr ? "" : absl::StrCat("127.0.0.1:", r->port);
}

std::string Cluster::Target(const std::string& service) const {
  std::vector<std::string> addrs;
  for (const auto& r : replicas_) {
    if (r->service == service) addrs.push_back(absl::StrCat("127.0.0.1:", r->port));
  }
  return absl::StrCat("ipv4:", absl::StrJoin(addrs, ","));
}

std::string Cluster::InternalTarget(const std::string& service) const {
  std::vector<std::string> addrs;
  for (const auto& r : replicas_) {
    if (r->service == service) addrs.push_back(absl::StrCat("127.0.0.1:", r->internal_port));
  }
  return absl::StrCat("ipv4:", absl::StrJoin(addrs, ","));
}

std::string Cluster::internal_token_file() const {
  return (fs::path(options_.dir) / "internal.token").string();
}

std::string Cluster::sandbox_url() const {
  return absl::StrCat("http://127.0.0.1:", sandbox_port_);
}

std::string Cluster::MetricsAddress(const std::string& service, int index) const {
  const Replica* r = Find(service, index);
  return r == nullptr ? "" : r->metrics;
}

std::string Cluster::LogFile(const std::string& service, int index) const {
  return (fs::path(options_.dir) / (Name(service, index) + ".log")).string();
}

int Cluster::Replicas(const std::string& service) const {
  int n = 0;
  for (const auto& r : replicas_) n += r->service == service ? 1 : 0;
  return n;
}

absl::Status Cluster::CrashAndRestart(const std::string& service, int index) {
  Replica* r = Find(service, index);
  if (r == nullptr || r->child == nullptr) {
    return absl::NotFoundError(absl::StrCat(Name(service, index), " is not running"));
  }
  r->child->Signal(SIGKILL);
  if (!r->child->WaitExit(absl::Seconds(10))) {
    return absl::InternalError(absl::StrCat(Name(service, index), " survived SIGKILL"));
  }
  r->child.reset();
  return StartReplica(r);
}

void Cluster::Stop(int grace_seconds) {
  for (auto it = replicas_.rbegin(); it != replicas_.rend(); ++it) {
    if ((*it)->child) (*it)->child->Signal(SIGTERM);
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(grace_seconds);
  for (auto it = replicas_.rbegin(); it != replicas_.rend(); ++it) {
    if ((*it)->child) (*it)->child->Stop(std::max(absl::ZeroDuration(), deadline - absl::Now()));
    (*it)->child.reset();
  }
}

double ScrapeSum(const std::string& address, const std::string& name,
                 const std::map<std::string, std::string>& labels) {
  std::vector<std::string> hp = absl::StrSplit(address, ':');
  int port = 0;
  if (hp.size() != 2 || !absl::SimpleAtoi(hp[1], &port)) return -1;
  httplib::Client cli(hp[0], port);
  cli.set_connection_timeout(5);
  cli.set_read_timeout(5);
  auto res = cli.Get("/metrics");
  if (!res || res->status != 200) return -1;
  double sum = 0;
  std::istringstream in(res->body);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    // name{a="b",c="d"} value   or   name value
    const size_t brace = line.find('{');
    const size_t space = line.rfind(' ');
    if (space == std::string::npos) continue;
    const std::string series = line.substr(0, brace == std::string::npos ? space : brace);
    if (series != name) continue;
    const std::string label_text =
        brace == std::string::npos ? "" : line.substr(brace, line.find('}') - brace + 1);
    bool match = true;
    for (const auto& [k, v] : labels) {
      if (label_text.find(absl::StrCat(k, "=\"", v, "\"")) == std::string::npos) match = false;
    }
    double value = 0;
    if (match && absl::SimpleAtod(line.substr(space + 1), &value)) sum += value;
  }
  return sum;
}

}  // namespace anchord::e2e
