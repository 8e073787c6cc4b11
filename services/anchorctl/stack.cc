#include "services/anchorctl/stack.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include <CLI/CLI.hpp>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "libs/common/atomic_file.h"
#include "libs/common/hex.h"
#include "libs/common/loopback_port.h"
#include "libs/providers/factory.h"
#include "libs/rpc/server.h"

namespace anchord::anchorctl {
namespace fs = std::filesystem;

namespace {
const char* const kServices[] = {"sandbox", "poller", "submitter", "hasher"};

std::string BinaryName(const std::string& service) {
  return service == "anchorctl" ? "anchorctl" : absl::StrCat("anchord-", service);
}
}  // namespace

std::string StackInfo::ToJson() const {
  nlohmann::json j;
  j["hasher"] = hasher;
  j["submitter"] = submitter;
  j["poller"] = poller;
  j["submitter_internal"] = submitter_internal;
  j["poller_internal"] = poller_internal;
  j["webhook"] = webhook;
  j["sandbox_url"] = sandbox_url;
  j["tsa_ca_file"] = tsa_ca_file;
  j["sandbox_calendars"] = sandbox_calendars;
  j["root"] = root;
  j["metrics"] = metrics;
  nlohmann::json p = nlohmann::json::object();
  for (const auto& [k, v] : pids) p[k] = v;
  j["pids"] = p;
  j["owner_pid"] = owner_pid;
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

absl::StatusOr<StackInfo> StackInfo::FromJson(const std::string& text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return absl::InvalidArgumentError("stack file is not a JSON object");
  StackInfo info;
  auto str = [&](const char* key, std::string* out) -> absl::Status {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return absl::OkStatus();
    if (!it->is_string())
      return absl::InvalidArgumentError(absl::StrCat("stack file: ", key, " is not a string"));
    *out = it->get<std::string>();
    return absl::OkStatus();
  };
  for (auto [key, out] : {std::pair{"hasher", &info.hasher},
                          {"submitter", &info.submitter},
                          {"poller", &info.poller},
                          {"sandbox_url", &info.sandbox_url},
                          {"tsa_ca_file", &info.tsa_ca_file},
                          {"submitter_internal", &info.submitter_internal},
                          {"poller_internal", &info.poller_internal},
                          {"webhook", &info.webhook},
                          {"root", &info.root}}) {
    if (auto s = str(key, out); !s.ok()) return s;
  }
  if (auto it = j.find("metrics"); it != j.end() && it->is_object()) {
    for (auto m = it->begin(); m != it->end(); ++m) {
      if (m.value().is_string()) info.metrics[m.key()] = m.value().get<std::string>();
    }
  }
  if (auto it = j.find("sandbox_calendars"); it != j.end() && it->is_array()) {
    for (const auto& c : *it) {
      if (c.is_string()) info.sandbox_calendars.push_back(c.get<std::string>());
    }
  }
  if (auto it = j.find("pids"); it != j.end() && it->is_object()) {
    for (auto m = it->begin(); m != it->end(); ++m) {
      if (m.value().is_number_integer()) info.pids[m.key()] = m.value().get<pid_t>();
    }
  }
  if (auto it = j.find("owner_pid"); it != j.end() && it->is_number_integer()) {
    info.owner_pid = it->get<pid_t>();
  }
  if (info.hasher.empty() && info.submitter.empty() && info.poller.empty()) {
    return absl::InvalidArgumentError("stack file names no service address");
  }
  return info;
}

bool StackInfo::Alive() const {
  if (owner_pid > 0) return ProcessAlive(owner_pid);
  if (pids.empty()) return true;  // written by hand: trust it
  for (const auto& [name, pid] : pids) {
    if (!ProcessAlive(pid)) return false;
  }
  return true;
}

std::string SelfDir() {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return ".";
  return self.parent_path().string();
}

BinaryPaths FindBinaries(const std::string& bin_dir, bool with_sandbox) {
  BinaryPaths out;
  for (const char* service : kServices) {
    std::string s(service);
    if (s == "sandbox" && !with_sandbox) continue;
    const std::string name = BinaryName(s);
    fs::path flat = fs::path(bin_dir) / name;
    fs::path tree = fs::path(bin_dir) / ".." / s / name;
    if (access(flat.c_str(), X_OK) == 0) {
      out[s] = flat.lexically_normal().string();
    } else if (access(tree.c_str(), X_OK) == 0) {
      out[s] = tree.lexically_normal().string();
    } else {
      out[s] = flat.lexically_normal().string();  // Spawn reports it missing, naming this path
    }
  }
  return out;
}

std::string StackFilePath(const std::string& data_dir) {
  return (fs::path(data_dir) / "run" / "stack.json").string();
}

absl::Status WriteStackFile(const std::string& data_dir, const StackInfo& info) {
  std::error_code ec;
  fs::create_directories(fs::path(data_dir) / "run", ec);
  return WriteFileAtomically(StackFilePath(data_dir), info.ToJson());
}

absl::StatusOr<StackInfo> ReadStackFile(const std::string& data_dir) {
  const std::string path = StackFilePath(data_dir);
  auto text = ReadSmallFile(path);
  if (!text.ok()) return absl::NotFoundError(absl::StrCat("no stack file at ", path));
  auto info = StackInfo::FromJson(*text);
  if (!info.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(path, ": ", info.status().message()));
  }
  if (!info->Alive()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the stack recorded in ", path, " is no longer running"));
  }
  return info;
}

std::vector<std::string> ProviderFlagNames() {
  CLI::App app;
  providers::ProviderSettings settings;
  providers::AddProviderFlags(app, &settings);
  std::vector<std::string> names;
  for (const CLI::Option* opt : app.get_options()) {
    for (const std::string& name : opt->get_lnames()) {
      if (name != "help") names.push_back("--" + name);
    }
  }
  return names;
}

namespace {

// "--proofd-create-limit" -> "ANCHORD_PROOFD_CREATE_LIMIT" (how AddProviderFlags names them).
std::string EnvOf(const std::string& flag) {
  std::string env = "ANCHORD_";
  for (char c : absl::string_view(flag).substr(2)) env += c == '-' ? '_' : absl::ascii_toupper(c);
  return env;
}

bool EnvSet(const std::string& flag) {
  const char* v = std::getenv(EnvOf(flag).c_str());
  return v != nullptr && *v != '\0';
}

// A random token for the stack's internal ports, written 0600 before any service starts.
absl::StatusOr<std::string> WriteInternalToken(const fs::path& path) {
  std::random_device rd;
  std::string raw(32, '\0');
  for (char& c : raw) c = static_cast<char>(rd() & 0xff);
  const std::string token = HexEncode(raw);
  std::error_code ec;
  fs::remove(path, ec);
  {
    std::ofstream out(path, std::ios::trunc);
    if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", path.string()));
    fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write, ec);
    out << token;
    if (!out) return absl::UnavailableError(absl::StrCat("cannot write ", path.string()));
  }
  return path.string();
}

}  // namespace

// The provider flags of the submitter or the poller, in three layers: what the user gave
// anchorctl (passed as given), then the sandbox's URLs and keys (with --sandbox), then the stack's
// defaults (rate shares) for whatever the user set neither on the command line nor in the
// environment. No --provider of its own: with no account the services choose the free
// OpenTimestamps calendars by their documented rule, with a proofd key proofd.
std::vector<std::string> LocalStack::ProviderArgs(const std::string& service) const {
  const fs::path run(options_.run_dir);
  std::set<std::string> given;
  for (size_t i = 0; i + 1 < options_.provider_args.size(); i += 2) {
    given.insert(options_.provider_args[i]);
  }
  std::vector<std::string> args = options_.provider_args;
  // Sandbox settings beat the environment (a real key or URL must not meet the sandbox), but not
  // an explicit flag.
  auto forced = [&](const std::string& flag, const std::string& value) {
    if (given.count(flag) == 0) args.insert(args.end(), {flag, value});
  };
  // Defaults yield to the environment too.
  auto fallback = [&](const std::string& flag, const std::string& value) {
    if (given.count(flag) == 0 && !EnvSet(flag)) args.insert(args.end(), {flag, value});
  };
  if (options_.sandbox) {
    forced("--proofd-url", info_.sandbox_url);
    forced("--proofd-api-key-file", (run / "sandbox.key").string());
    forced("--proofledger-url", info_.sandbox_url);
    forced("--proofledger-api-key-file", (run / "sandbox.proofledger.key").string());
    forced("--simpleproof-url", info_.sandbox_url);
    forced("--simpleproof-api-key-file", (run / "sandbox.simpleproof.key").string());
    // Every provider the sandbox speaks is enabled against it; proofd stays the default (its key
    // is configured).
    if (!calendar_urls_.empty()) {
      forced("--providers", "proofd,proofledger,simpleproof,ots,tsa");
      forced("--ots-calendars", absl::StrJoin(calendar_urls_, ","));
    } else {
      forced("--providers", "proofd,proofledger,simpleproof,tsa");
    }
    // The sandbox's RFC 3161 TSA, trusted through the test CA it wrote at start.
    forced("--tsa-url", absl::StrCat(info_.sandbox_url, "/tsa"));
    forced("--tsa-ca-file", info_.tsa_ca_file);
    if (options_.sandbox_window_seconds > 0) {
      const std::string w = absl::StrCat(options_.sandbox_window_seconds);
      forced("--proofd-window-seconds", w);
      forced("--proofledger-window-seconds", w);
      forced("--simpleproof-window-seconds", w);
    }
  }
  if (service == "submitter") {
    // One proofd key allows 120 general and 30 create requests per minute; the submitter gets 40
    // general, the poller the other 80.
    fallback("--proofd-create-limit", "30");
    fallback("--proofd-general-limit", "40");
    if (options_.sandbox) {
      // The sandbox's SimpleProof budget (60 per window per token) split like proofd's: the
      // submitter 20, the poller 40. ProofLedger creates (60 per window in the sandbox) are the
      // submitter's alone; its verify budget (120/hour/IP) the poller's alone.
      fallback("--simpleproof-limit", "20");
      fallback("--proofledger-create-limit", "60");
    }
    if (webhook_port_ > 0) {
      fallback("--simpleproof-callback-url",
               absl::StrCat("http://127.0.0.1:", webhook_port_, "/callbacks/simpleproof"));
    }
  } else {
    fallback("--proofd-general-limit", "80");
    if (options_.sandbox) fallback("--simpleproof-limit", "40");
  }
  return args;
}

std::vector<std::string> LocalStack::ServiceArgs(const std::string& service, int port,
                                                 int internal_port) {
  const fs::path run(options_.run_dir);
  std::vector<std::string> args;
  if (service == "sandbox") {
    args = {"--listen",
            absl::StrCat("127.0.0.1:", port),
            "--port-file",
            (run / "sandbox.port").string(),
            "--calendar-urls-file",
            (run / "sandbox.calendars").string(),
            "--tsa-ca-out",
            (run / "sandbox.tsa-ca.pem").string()};
    if (options_.sandbox_window_seconds > 0) {
      args.insert(args.end(), {"--window-seconds", absl::StrCat(options_.sandbox_window_seconds)});
    }
    if (options_.sandbox_confirm_after_seconds > 0) {
      args.insert(args.end(),
                  {"--confirm-after-seconds", absl::StrCat(options_.sandbox_confirm_after_seconds),
                   // The calendars' "ask again" hint shrinks with the delay (the
                   // reference server's is 60 s), or upgrades would lag far behind.
                   "--pending-max-age-seconds",
                   absl::StrCat(std::min(60, options_.sandbox_confirm_after_seconds))});
    }
  } else {
    args = {"--listen",
            absl::StrCat("127.0.0.1:", port),
            "--port-file",
            (run / (service + ".port")).string(),
            "--metrics-listen",
            "127.0.0.1:0",
            "--metrics-port-file",
            (run / (service + ".metrics.port")).string(),
            "--data-dir",
            options_.state_dir,
            "--log-level",
            options_.log_level};
    if (service == "hasher") {
      args.insert(args.end(), {"--root", options_.root, "--submitter", info_.submitter});
    }
    if (service == "submitter" || service == "poller") {
      args.insert(args.end(),
                  {"--internal-listen", absl::StrCat("127.0.0.1:", internal_port),
                   "--internal-port-file", (run / (service + ".internal.port")).string(),
                   "--internal-token-file", internal_token_file_});
      std::vector<std::string> provider = ProviderArgs(service);
      args.insert(args.end(), provider.begin(), provider.end());
    }
    if (service == "submitter") {
      args.insert(args.end(), {"--poller", info_.poller_internal});
    }
    if (service == "poller") {
      if (!info_.submitter_internal.empty()) {
        args.insert(args.end(), {"--submitter", info_.submitter_internal});
      }
      if (options_.poll_interval_seconds > 0) {
        args.insert(args.end(),
                    {"--poll-interval-seconds", absl::StrCat(options_.poll_interval_seconds)});
      }
      if (options_.sandbox) {
        // The sandbox's fake SimpleProof posts its callbacks here.
        args.insert(args.end(), {"--webhook-listen", "127.0.0.1:0", "--webhook-port-file",
                                 (run / "webhook.port").string()});
      }
    }
  }
  auto extra = options_.extra_args.find(service);
  if (extra != options_.extra_args.end()) {
    args.insert(args.end(), extra->second.begin(), extra->second.end());
  }
  return args;
}

absl::StatusOr<int> LocalStack::StartService(const std::string& service, int port,
                                             int internal_port) {
  const fs::path run(options_.run_dir);
  const std::string port_file = (run / (service + ".port")).string();
  std::error_code ec;
  fs::remove(port_file, ec);
  fs::remove(run / (service + ".metrics.port"), ec);
  fs::remove(run / (service + ".internal.port"), ec);
  auto bin = options_.binaries.find(service);
  if (bin == options_.binaries.end()) {
    return absl::NotFoundError(absl::StrCat("no binary given for ", service));
  }
  ChildSpec spec;
  spec.name = service;
  spec.binary = bin->second;
  spec.args = ServiceArgs(service, port, internal_port);
  spec.log_file = (run / (service + ".log")).string();
  if (options_.sandbox && (service == "submitter" || service == "poller")) {
    // A real key in the caller's environment must not be sent to the sandbox (nor the reverse),
    // and must not enable a real provider next to the sandbox.
    for (const char* var : {"ANCHORD_PROOFD_API_KEY", "ANCHORD_PROOFLEDGER_API_KEY",
                            "ANCHORD_PROOFLEDGER_API_KEY_FILE", "ANCHORD_SIMPLEPROOF_API_KEY",
                            "ANCHORD_SIMPLEPROOF_API_KEY_FILE", "ANCHORD_TSA_AUTH_FILE"}) {
      spec.env[var] = "";
    }
  }
  auto child = ChildProcess::Spawn(spec);
  if (!child.ok()) return child.status();
  auto bound = WaitForPortFile(port_file, child->get(), options_.start_timeout);
  info_.pids[service] = (*child)->pid();
  children_.emplace_back(service, std::move(*child));
  if (!bound.ok()) return bound.status();
  ports_[service] = *bound;
  if (service == "submitter" || service == "poller") {
    // Written before the public port file, so it is there now.
    auto iport = ReadSmallFile((run / (service + ".internal.port")).string(), 64);
    int value = 0;
    if (!iport.ok() || !absl::SimpleAtoi(absl::StripAsciiWhitespace(*iport), &value)) {
      return absl::InternalError(absl::StrCat(service, " wrote no internal port file"));
    }
    internal_ports_[service] = value;
    (service == "poller" ? info_.poller_internal : info_.submitter_internal) =
        absl::StrCat("127.0.0.1:", value);
  }
  if (service != "sandbox") {
    auto mport = ReadSmallFile((run / (service + ".metrics.port")).string(), 64);
    if (mport.ok() && !mport->empty()) {
      std::string p(*mport);
      while (!p.empty() && (p.back() == '\n' || p.back() == ' ')) p.pop_back();
      info_.metrics[service] = absl::StrCat("127.0.0.1:", p);
    }
  }
  return *bound;
}

absl::StatusOr<std::unique_ptr<LocalStack>> LocalStack::Start(const StackOptions& options) {
  auto stack = std::unique_ptr<LocalStack>(new LocalStack());
  stack->options_ = options;
  stack->info_.root = options.root;
  stack->info_.owner_pid = getpid();
  std::error_code ec;
  fs::create_directories(options.run_dir, ec);
  if (ec)
    return absl::InternalError(absl::StrCat("cannot create ", options.run_dir, ": ", ec.message()));
  fs::create_directories(options.state_dir, ec);
  if (ec)
    return absl::InternalError(
        absl::StrCat("cannot create ", options.state_dir, ": ", ec.message()));
  if (options.sandbox) {
    auto port = stack->StartService("sandbox", 0);
    if (!port.ok()) return port.status();
    stack->info_.sandbox_url = absl::StrCat("http://127.0.0.1:", *port);
    const fs::path run(options.run_dir);
    for (const auto& [file, key] : std::vector<std::pair<std::string, std::string>>{
             {"sandbox.key", kSandboxApiKey},
             {"sandbox.proofledger.key", kSandboxProofLedgerKey},
             {"sandbox.simpleproof.key", kSandboxSimpleProofToken}}) {
      const std::string key_file = (run / file).string();
      if (auto s = WriteFileAtomically(key_file, key); !s.ok()) return s;
      chmod(key_file.c_str(), 0600);
    }
    stack->info_.tsa_ca_file = (run / "sandbox.tsa-ca.pem").string();
    // Written before the port file, so it is there now.
    if (auto text = ReadSmallFile((run / "sandbox.calendars").string()); text.ok()) {
      for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipWhitespace())) {
        stack->calendar_urls_.push_back(std::string(absl::StripAsciiWhitespace(line)));
      }
    }
  }
  auto token = WriteInternalToken(fs::path(options.run_dir) / "internal.token");
  if (!token.ok()) return token.status();
  stack->internal_token_file_ = *token;
  stack->info_.sandbox_calendars = stack->calendar_urls_;
  // The poller asks the submitter's internal port to re-anchor stalled proofs (fallback
  // provider), but starts before it: that port is reserved first and given to both.
  const int submitter_internal_port = anchord::ReserveLoopbackPort();
  if (submitter_internal_port > 0) {
    stack->info_.submitter_internal = absl::StrCat("127.0.0.1:", submitter_internal_port);
  }
  for (const char* service : {"poller", "submitter", "hasher"}) {
    const bool is_submitter = std::string(service) == "submitter";
    auto port =
        stack->StartService(service, 0, is_submitter ? std::max(0, submitter_internal_port) : 0);
    if (!port.ok()) return port.status();  // the destructor stops what started
    std::string addr = absl::StrCat("127.0.0.1:", *port);
    if (std::string(service) == "poller") {
      stack->info_.poller = addr;
      if (options.sandbox) {
        auto webhook = ReadSmallFile((fs::path(options.run_dir) / "webhook.port").string());
        int wport = 0;
        if (webhook.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*webhook), &wport)) {
          stack->webhook_port_ = wport;
          stack->info_.webhook = absl::StrCat("127.0.0.1:", wport);
        }
      }
    }
    if (std::string(service) == "submitter") stack->info_.submitter = addr;
    if (std::string(service) == "hasher") stack->info_.hasher = addr;
  }
  return stack;
}

ChildProcess* LocalStack::child(const std::string& service) {
  for (auto& [name, c] : children_) {
    if (name == service) return c.get();
  }
  return nullptr;
}

absl::Status LocalStack::CrashAndRestart(const std::string& service) {
  auto port = ports_.find(service);
  if (port == ports_.end()) return absl::NotFoundError(absl::StrCat(service, " is not running"));
  size_t index = children_.size();
  for (size_t i = 0; i < children_.size(); ++i) {
    if (children_[i].first == service) {
      children_[i].second->Signal(SIGKILL);
      children_[i].second->WaitExit(absl::Seconds(10));
      children_.erase(children_.begin() + static_cast<std::ptrdiff_t>(i));
      index = i;
      break;
    }
  }
  const int same_port = port->second;
  auto internal = internal_ports_.find(service);
  auto bound =
      StartService(service, same_port, internal == internal_ports_.end() ? 0 : internal->second);
  // Keep the start order, which Stop() reverses.
  if (!children_.empty() && index < children_.size() - 1) {
    auto restarted = std::move(children_.back());
    children_.pop_back();
    children_.insert(children_.begin() + static_cast<std::ptrdiff_t>(index), std::move(restarted));
  }
  return bound.status();
}

void LocalStack::Stop(absl::Duration grace) {
  // SIGTERM front first (the hasher stops sending before the submitter goes, and so on), then
  // wait for all together: every hand-off is durable and idempotent, so the drains may overlap,
  // and a stop then takes the slowest drain instead of the sum of them.
  for (auto it = children_.rbegin(); it != children_.rend(); ++it) it->second->Signal(SIGTERM);
  const absl::Time deadline = absl::Now() + grace;
  for (auto it = children_.rbegin(); it != children_.rend(); ++it) {
    it->second->Stop(std::max(absl::ZeroDuration(), deadline - absl::Now()));
  }
  children_.clear();
}

LocalStack::~LocalStack() { Stop(absl::Seconds(10)); }

}  // namespace anchord::anchorctl
