// Child processes for `anchorctl local` and the end-to-end test: fork/exec of a service binary
// with its output sent to a log file, waiting for its port file, and an orderly stop
// (SIGTERM, then SIGKILL after a grace period).
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace anchord::anchorctl {

struct ChildSpec {
  std::string name;                        // for messages: "hasher"
  std::string binary;                      // absolute path of the executable
  std::vector<std::string> args;           // without argv[0]
  std::map<std::string, std::string> env;  // added to (or replacing in) the inherited environment
  std::string log_file;                    // stdout and stderr are appended here; empty = inherit
};

// A started child. Not copyable; the destructor stops a child that is still running, so no test or
// command can leave a process behind by returning early.
class ChildProcess {
 public:
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Spawn(const ChildSpec& spec);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& name() const { return spec_.name; }
  const ChildSpec& spec() const { return spec_; }

  // True while the child has not exited (reaps it when it has).
  bool Running();
  // Exit status as from waitpid once it exited; -1 while running.
  int raw_wait_status() const { return wait_status_; }
  // Sends `sig` to the child (no-op once it exited).
  void Signal(int sig);
  // SIGTERM, wait up to `grace`, then SIGKILL and reap. Idempotent.
  void Stop(absl::Duration grace = absl::Seconds(10));
  // Waits up to `timeout` for the child to exit on its own. True when it exited.
  bool WaitExit(absl::Duration timeout);

 private:
  explicit ChildProcess(ChildSpec spec) : spec_(std::move(spec)) {}
  ChildSpec spec_;
  pid_t pid_ = -1;
  int wait_status_ = -1;
  bool reaped_ = false;
};

// Waits until `port_file` holds a port number (services write it atomically once they listen).
// Fails early when `child` exits, quoting the end of its log; DeadlineExceeded after `timeout`.
absl::StatusOr<int> WaitForPortFile(const std::string& port_file, ChildProcess* child,
                                    absl::Duration timeout);

// Reads a whole small file. NotFound when it does not exist.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t max_bytes = 1 << 20);
// The last `max_bytes` of a file, for error messages about a child that died.
std::string TailOfFile(const std::string& path, size_t max_bytes = 2000);
// True when a process with this pid exists (kill(pid, 0)).
bool ProcessAlive(pid_t pid);

}  // namespace anchord::anchorctl
