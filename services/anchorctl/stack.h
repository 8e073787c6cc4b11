// A local anchord stack: the three services (and optionally the proofd sandbox) as child processes
// on loopback, plus DATA_DIR/run/stack.json, the record other anchorctl commands read to find it.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/anchorctl/process.h"

namespace anchord::anchorctl {

inline constexpr char kSandboxApiKey[] = "proofd_live_sandbox";
// The sandbox's default ProofLedger key and SimpleProof token (services/sandbox/sandbox.h).
inline constexpr char kSandboxProofLedgerKey[] = "sk_sandbox";
inline constexpr char kSandboxSimpleProofToken[] = "sp_sandbox_token";

// Where a stack listens. Written to and read from stack.json.
struct StackInfo {
  std::string hasher;     // host:port
  std::string submitter;  // host:port
  std::string poller;     // host:port
  // The internal ports (peer services only; libs/rpc/internal.h): the submitter hands off to the
  // poller's, the poller asks the submitter's to re-anchor. Callers need the internal token.
  std::string submitter_internal;  // host:port
  std::string poller_internal;     // host:port
  std::string webhook;             // the poller's callback endpoint host:port, when opened
  std::string sandbox_url;         // http://127.0.0.1:port when a sandbox runs, else empty
  std::string tsa_ca_file;  // the sandbox TSA's CA certificate (PEM file) when a sandbox runs
  std::vector<std::string> sandbox_calendars;  // the sandbox's OpenTimestamps calendar URLs
  std::string root;                            // the hasher's --root (absolute)
  std::map<std::string, std::string> metrics;  // service -> host:port of /metrics, when known
  std::map<std::string, pid_t> pids;           // service -> pid
  pid_t owner_pid = 0;                         // the anchorctl that started the stack

  std::string ToJson() const;
  static absl::StatusOr<StackInfo> FromJson(const std::string& text);
  // True when the owner (or, without one, every service) is still alive.
  bool Alive() const;
};

// The executables of the stack, by service name: "hasher", "submitter", "poller", "sandbox".
using BinaryPaths = std::map<std::string, std::string>;

// Finds the binaries in `bin_dir`, else in the build tree's layout (bin_dir/../<service>/),
// which is where they sit when anchorctl runs from a build directory.
BinaryPaths FindBinaries(const std::string& bin_dir, bool with_sandbox);
// Directory holding the running executable (/proc/self/exe).
std::string SelfDir();

struct StackOptions {
  BinaryPaths binaries;
  std::string run_dir;    // port files, logs, key file
  std::string state_dir;  // the services' --data-dir (their SQLite files)
  std::string root;       // the hasher's --root
  bool sandbox = false;
  // Sandbox tuning (also applied to the providers' rate windows so both sides agree).
  int sandbox_window_seconds = 0;         // 0 = sandbox default
  int sandbox_confirm_after_seconds = 0;  // 0 = sandbox default
  int poll_interval_seconds = 0;          // poller; 0 = its default
  std::string log_level = "info";
  absl::Duration start_timeout = absl::Seconds(20);
  // Provider flags the user gave anchorctl ("--proofd-url", "https://..." pairs), passed to the
  // submitter and the poller as given. The stack's own defaults (limits, the sandbox's URLs and
  // keys) apply only to flags the user set neither here nor in the environment (ANCHORD_*, which
  // the services inherit).
  std::vector<std::string> provider_args;
  // Extra arguments per service, appended last (tests).
  std::map<std::string, std::vector<std::string>> extra_args;
};

class LocalStack {
 public:
  // Starts sandbox (if asked), poller, submitter, hasher in that order, each after the one it
  // talks to is listening. On failure everything started so far is stopped.
  static absl::StatusOr<std::unique_ptr<LocalStack>> Start(const StackOptions& options);
  ~LocalStack();

  const StackInfo& info() const { return info_; }
  ChildProcess* child(const std::string& service);
  // SIGKILLs a service and starts it again on the same port with the same data (crash test).
  absl::Status CrashAndRestart(const std::string& service);
  // Stops the services in reverse order (hasher first), SIGTERM then SIGKILL after `grace`.
  void Stop(absl::Duration grace = absl::Seconds(10));

 private:
  LocalStack() = default;
  absl::StatusOr<int> StartService(const std::string& service, int port, int internal_port = 0);
  std::vector<std::string> ServiceArgs(const std::string& service, int port, int internal_port);
  std::vector<std::string> ProviderArgs(const std::string& service) const;
  StackOptions options_;
  StackInfo info_;
  std::map<std::string, int> ports_;
  std::map<std::string, int> internal_ports_;
  std::string internal_token_file_;         // 0600, shared by the submitter and the poller
  std::vector<std::string> calendar_urls_;  // the sandbox's OpenTimestamps calendars
  int webhook_port_ = 0;                    // the poller's callback endpoint
  std::vector<std::pair<std::string, std::unique_ptr<ChildProcess>>> children_;
};

// The names of every provider flag the services take ("--provider", "--proofd-url", ...), so that
// anchorctl can accept them and pass them on.
std::vector<std::string> ProviderFlagNames();

// stack.json helpers.
std::string StackFilePath(const std::string& data_dir);
absl::Status WriteStackFile(const std::string& data_dir, const StackInfo& info);
// NotFound when there is no stack file; FailedPrecondition when it names a stack that is gone.
absl::StatusOr<StackInfo> ReadStackFile(const std::string& data_dir);

}  // namespace anchord::anchorctl
