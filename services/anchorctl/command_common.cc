#include "services/anchorctl/command_common.h"

#include <limits.h>
#include <stdlib.h>

#include <cerrno>
#include <cstdio>

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "libs/common/atomic_file.h"
#include "libs/common/hex.h"
#include "libs/common/status_macros.h"
#include "services/anchorctl/format.h"

namespace anchord::anchorctl {
namespace fs = std::filesystem;

std::string Dump(const nlohmann::json& j) {
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

absl::StatusOr<std::unique_ptr<OutputFile>> OutputFile::Open(const std::string& path) {
  if (path.empty() || path == "-") return std::unique_ptr<OutputFile>(new OutputFile(nullptr));
  ANCHORD_ASSIGN_OR_RETURN(std::unique_ptr<AtomicFileWriter> file, AtomicFileWriter::Open(path));
  return std::unique_ptr<OutputFile>(new OutputFile(std::move(file)));
}

absl::Status OutputFile::Write(absl::string_view text) {
  if (file_ != nullptr) return file_->Write(text);
  if (!text.empty() && std::fwrite(text.data(), 1, text.size(), stdout) != text.size()) {
    return absl::UnavailableError(absl::StrCat(
        "cannot write stdout: ", std::error_code(errno, std::generic_category()).message()));
  }
  return absl::OkStatus();
}

absl::Status OutputFile::Commit() {
  if (file_ != nullptr) return file_->Commit(/*sync=*/true);
  if (std::fflush(stdout) != 0) return absl::UnavailableError("cannot write stdout");
  return absl::OkStatus();
}

int Fail(int code, const std::string& message) {
  std::cerr << "anchorctl: " << message << std::endl;
  return code;
}

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

absl::Status ForEachProof(Clients& clients, const std::vector<std::string>& digests,
                          OnInterrupt on_interrupt,
                          absl::FunctionRef<void(const anchord::v1::Proof&)> on_proof) {
  // Within the poller's limits on one ListProofs request (digests, page size).
  constexpr size_t kDigestsPerCall = 500;
  constexpr int kPageSize = 1000;
  for (size_t i = 0; i < digests.size(); i += kDigestsPerCall) {
    if (on_interrupt == OnInterrupt::kStop && Interrupter::Get().interrupted()) break;
    anchord::v1::ListProofsRequest req;
    for (size_t k = i; k < std::min(digests.size(), i + kDigestsPerCall); ++k) {
      req.add_digests(digests[k]);
    }
    req.set_page_size(kPageSize);
    for (int page = 0; page < 1000; ++page) {
      grpc::ClientContext ctx;
      ScopedCancel cancel(&ctx);
      clients.SetDeadline(&ctx);
      anchord::v1::ListProofsResponse resp;
      grpc::Status st = clients.poller().ListProofs(&ctx, req, &resp);
      if (!st.ok()) return clients.RpcError("poller", "ListProofs", st);
      for (const auto& p : resp.proofs()) on_proof(p);
      if (resp.next_page_token().empty()) break;
      req.set_page_token(resp.next_page_token());
    }
  }
  return absl::OkStatus();
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

absl::Status CheckNoRunningStack(const std::string& data_dir) {
  auto existing = ReadStackFile(data_dir);
  if (existing.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "a stack is already running on ", data_dir, " (anchorctl pid ", existing->owner_pid,
        ", hasher at ", existing->hasher, "); use it (drop --local) or stop it first"));
  }
  return absl::OkStatus();
}

}  // namespace anchord::anchorctl
