#include "services/anchorctl/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

extern char** environ;

namespace anchord::anchorctl {

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Spawn(const ChildSpec& spec) {
  if (access(spec.binary.c_str(), X_OK) != 0) {
    return absl::NotFoundError(
        absl::StrCat(spec.name, ": binary ", spec.binary, " is missing or not executable"));
  }
  // Everything the child needs is built before fork(): after fork only async-signal-safe calls
  // are allowed, because gRPC threads may hold locks (malloc's among them) in the parent.
  std::vector<std::string> argv_s;
  argv_s.push_back(spec.binary);
  argv_s.insert(argv_s.end(), spec.args.begin(), spec.args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::vector<std::string> env_s;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    absl::string_view kv(*e);
    size_t eq = kv.find('=');
    std::string key(kv.substr(0, eq));
    if (spec.env.count(key) == 0) env_s.emplace_back(kv);
  }
  for (const auto& [k, v] : spec.env) env_s.push_back(absl::StrCat(k, "=", v));
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);

  int log_fd = -1;
  if (!spec.log_file.empty()) {
    log_fd = open(spec.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log_fd < 0) {
      return absl::InternalError(
          absl::StrCat(spec.name, ": cannot open log file ", spec.log_file, ": ", strerror(errno)));
    }
  }
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    if (log_fd >= 0) close(log_fd);
    return absl::InternalError(absl::StrCat(spec.name, ": fork failed: ", strerror(err)));
  }
  if (pid == 0) {
    // Own process group: a Ctrl-C on the terminal reaches anchorctl only, which then stops the
    // services in order instead of all of them dying at once.
    setpgid(0, 0);
    // If anchorctl (or the test) dies without stopping us, do not linger as an orphan.
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);
    // The parent blocks SIGINT/SIGTERM for sigwait; the mask survives exec, so clear it.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    if (log_fd >= 0) {
      dup2(log_fd, 1);
      dup2(log_fd, 2);
    }
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  if (log_fd >= 0) close(log_fd);
  auto child = std::unique_ptr<ChildProcess>(new ChildProcess(spec));
  child->pid_ = pid;
  return child;
}

ChildProcess::~ChildProcess() { Stop(absl::Seconds(5)); }

bool ChildProcess::Running() {
  if (reaped_ || pid_ <= 0) return false;
  int st = 0;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_ || (r < 0 && errno == ECHILD)) {
    reaped_ = true;
    wait_status_ = (r == pid_) ? st : 0;
    return false;
  }
  return true;
}

void ChildProcess::Signal(int sig) {
  if (Running()) kill(pid_, sig);
}

bool ChildProcess::WaitExit(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (Running()) {
    if (absl::Now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

void ChildProcess::Stop(absl::Duration grace) {
  if (!Running()) return;
  kill(pid_, SIGTERM);
  if (WaitExit(grace)) return;
  kill(pid_, SIGKILL);
  int st = 0;
  if (waitpid(pid_, &st, 0) == pid_) wait_status_ = st;
  reaped_ = true;
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::string out;
  out.resize(max_bytes);
  in.read(out.data(), static_cast<std::streamsize>(max_bytes));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
}

std::string TailOfFile(const std::string& path, size_t max_bytes) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return "";
  std::streamoff size = in.tellg();
  std::streamoff start = size > static_cast<std::streamoff>(max_bytes)
                             ? size - static_cast<std::streamoff>(max_bytes)
                             : 0;
  in.seekg(start);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool ProcessAlive(pid_t pid) { return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM); }

absl::StatusOr<int> WaitForPortFile(const std::string& port_file, ChildProcess* child,
                                    absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    auto content = ReadSmallFile(port_file, 64);
    if (content.ok()) {
      int port = 0;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(*content), &port) && port > 0 &&
          port < 65536) {
        return port;
      }
    }
    if (child != nullptr && !child->Running()) {
      return absl::UnavailableError(absl::StrCat(
          child->name(), " exited before listening (wait status ", child->raw_wait_status(),
          "); end of its log ", child->spec().log_file, ":\n", TailOfFile(child->spec().log_file)));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          child != nullptr ? child->name() : std::string("service"),
          " did not write its port file ", port_file, " within ", absl::FormatDuration(timeout)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
}

}  // namespace anchord::anchorctl
