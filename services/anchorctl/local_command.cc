// anchorctl local: starts the stack (with --sandbox, the emulator too) and keeps it running until
// Ctrl-C or until one of its services dies.
#include <filesystem>
#include <iostream>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "services/anchorctl/command_common.h"
#include "services/anchorctl/commands.h"
#include "services/anchorctl/format.h"
#include "services/anchorctl/process.h"
#include "services/anchorctl/stack.h"

namespace anchord::anchorctl {
namespace fs = std::filesystem;

namespace {

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

}  // namespace anchord::anchorctl
