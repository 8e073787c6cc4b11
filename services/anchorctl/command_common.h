// What the anchorctl commands (archive, report, the queries, local) share: how a failure becomes
// an exit code and a message, where the stack's endpoints come from, how the poller's proofs of
// many digests are listed, and how a local stack is set up. Internal to services/anchorctl.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "libs/common/atomic_file.h"
#include "libs/rpc/server.h"
#include "services/anchorctl/clients.h"
#include "services/anchorctl/commands.h"
#include "services/anchorctl/stack.h"

namespace anchord::anchorctl {

// Long enough for any stream that has its own end (ListFiles of millions of files, a hash tree);
// every call still carries a deadline.
inline constexpr absl::Duration kStreamDeadline = absl::Hours(24 * 30);

// Pretty-printed JSON; invalid UTF-8 (a file name) is replaced, never thrown on.
std::string Dump(const nlohmann::json& j);

// Where a command's text goes: stdout (path "" or "-"), or a file that appears whole
// (AtomicFileWriter, synced before it is renamed into place): a command that fails or is
// interrupted part of the way leaves whatever was at the path as it was.
class OutputFile {
 public:
  static absl::StatusOr<std::unique_ptr<OutputFile>> Open(const std::string& path);

  absl::Status Write(absl::string_view text);
  // Flushes stdout, or commits the file.
  absl::Status Commit();
  bool is_stdout() const { return file_ == nullptr; }

 private:
  explicit OutputFile(std::unique_ptr<AtomicFileWriter> file) : file_(std::move(file)) {}
  std::unique_ptr<AtomicFileWriter> file_;  // null: stdout
};

// Prints "anchorctl: <message>" to stderr and returns `code`.
int Fail(int code, const std::string& message);
// Exit code for a failed status: unreachable or internal trouble is 1, bad input 2, cancelled or
// out of time 3 (format.h); the message goes to stderr.
int FailStatus(const absl::Status& s);

// The deadline of one unary call: --deadline-seconds (default 10), at most a day.
absl::Duration UnaryDeadline(const GlobalOptions& g);
// The flags' endpoints, completed from the stack file of --data-dir for those not given.
Endpoints ResolveEndpoints(const GlobalOptions& g);

// A raw digest as the CLI shows it (lowercase hex).
std::string DigestOf(const std::string& raw);

// What a Ctrl-C does to ForEachProof: kFail returns the cancelled call's error (the caller cannot
// go on with part of the proofs); kStop ends the walk between calls with OK (the caller keeps what
// it has seen).
enum class OnInterrupt { kFail, kStop };

// Hands `on_proof` every proof the poller holds for `digests` (any number, unique or not):
// ListProofs with 500 digests a call, each call paged 1,000 proofs at a time (at most 1,000
// pages). Unary deadline per page; the first failed page's error names the poller and its address.
absl::Status ForEachProof(Clients& clients, const std::vector<std::string>& digests,
                          OnInterrupt on_interrupt,
                          absl::FunctionRef<void(const anchord::v1::Proof&)> on_proof);

// The options of a local stack run from `run_dir` over `root`, its state under --data-dir.
StackOptions MakeStackOptions(const GlobalOptions& g, const StackFlags& f,
                              const std::string& run_dir, const std::string& root);
// `dir` resolved to a real path; INVALID_ARGUMENT naming `what` when it is not a directory.
absl::StatusOr<std::string> RealDir(const std::string& dir, absl::string_view what);
// Refuses to start a second stack on the same data directory: two submitters sharing one queue
// database could submit a digest twice.
absl::Status CheckNoRunningStack(const std::string& data_dir);

}  // namespace anchord::anchorctl
