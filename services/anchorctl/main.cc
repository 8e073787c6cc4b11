// anchorctl: the command line of anchord. Parses flags (each also from the environment) with
// CLI11 and hands over to the commands; exit codes are listed in format.h.
#include <cstdlib>
#include <iostream>
#include <map>
#include <string>

#include <CLI/CLI.hpp>

#include "libs/common/build_info.h"
#include "libs/common/log.h"
#include "libs/rpc/server.h"
#include "services/anchorctl/clients.h"
#include "services/anchorctl/commands.h"
#include "services/anchorctl/ots_commands.h"
#include "services/anchorctl/bundle.h"
#include "services/anchorctl/format.h"
#include "services/anchorctl/stack.h"

namespace {

std::string DefaultDataDir() {
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr && *home != '\0' ? home : "/tmp") + "/.local/share/anchord";
}

void AddStackFlags(CLI::App* cmd, anchord::anchorctl::StackFlags* f) {
  cmd->add_flag("--sandbox", f->sandbox,
                "Also start the proofd sandbox and point the providers at it");
  cmd->add_option("--bin-dir", f->bin_dir,
                  "Directory of the service binaries (default: next to anchorctl)")
      ->envname("ANCHORD_BIN_DIR");
  cmd->add_option("--sandbox-window-seconds", f->sandbox_window_seconds,
                  "Sandbox rate-limit window (scales the providers' windows too); 0 = default")
      ->check(CLI::Range(0, 3600));
  cmd->add_option("--sandbox-confirm-after-seconds", f->sandbox_confirm_after_seconds,
                  "Sandbox confirmation delay; 0 = default")
      ->check(CLI::Range(0, 86400));
  cmd->add_option("--poll-interval-seconds", f->poll_interval_seconds,
                  "Poller interval; 0 = default")
      ->check(CLI::Range(0, 86400));
}

// Every provider flag of the services (--proofd-url, --proofledger-api-key-file, ...), accepted
// here and passed to the stack's submitter and poller exactly as given. No environment names:
// the services read ANCHORD_* themselves. `skip`: a flag the command defines itself.
void AddProviderPassThrough(CLI::App* cmd, std::map<std::string, std::string>* values,
                            const std::string& skip = "") {
  for (const std::string& flag : anchord::anchorctl::ProviderFlagNames()) {
    if (flag == skip) continue;
    cmd->add_option(flag, (*values)[flag], "Passed to the stack's submitter and poller");
  }
}

std::vector<std::string> GivenProviderArgs(CLI::App* cmd,
                                           const std::map<std::string, std::string>& values) {
  std::vector<std::string> out;
  for (const auto& [flag, value] : values) {
    if (cmd->count(flag) > 0) out.insert(out.end(), {flag, value});
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace anchord::anchorctl;
  // Ctrl-C and SIGTERM are taken by a sigwait thread that cancels the calls in flight, so every
  // command ends through its normal path (summary, child processes stopped).
  anchord::rpc::BlockTerminationSignals();

  CLI::App app{"anchorctl: anchor SHA-256 digests of evidence files with anchord"};
  app.set_version_flag("--version", anchord::BuildInfo());
  app.require_subcommand(1);
  GlobalOptions g;
  g.data_dir = DefaultDataDir();
  std::string log_level = "warning";
  app.add_option("--hasher", g.hasher, "Hasher address host:port")->envname("ANCHORD_HASHER_ADDR");
  app.add_option("--submitter", g.submitter, "Submitter address host:port")
      ->envname("ANCHORD_SUBMITTER_ADDR");
  app.add_option("--poller", g.poller, "Poller address host:port")->envname("ANCHORD_POLLER_ADDR");
  app.add_option("--hasher-root", g.hasher_root,
                 "The hasher's --root, to map DIR to a relative path")
      ->envname("ANCHORD_HASHER_ROOT");
  app.add_flag("--json", g.json, "Machine-readable output");
  app.add_option("--data-dir", g.data_dir, "anchorctl state (stack.json, local stack data)")
      ->envname("ANCHORD_HOME")
      ->capture_default_str();
  app.add_option("--deadline-seconds", g.deadline_seconds, "Deadline of each unary call")
      ->check(CLI::Range(0.1, 86400.0))
      ->capture_default_str();
  app.add_option("--log-level", log_level, "debug|info|warning|error")
      ->envname("ANCHORD_LOG_LEVEL");
  // Global --tls-cert/--tls-key/--tls-ca/--auth-token-file/--tls-server-name: how anchorctl
  // reaches a secured stack. A stack started by anchorctl itself (local, archive --local) is
  // plaintext on loopback, so the flags are not applied to it.
  anchord::rpc::TransportSecurity security;
  anchord::rpc::AddTransportFlags(app, &security);

  LocalOptions local;
  auto* local_cmd = app.add_subcommand("local", "Run the services (and sandbox) in the foreground");
  AddStackFlags(local_cmd, &local.stack);
  local_cmd->add_option("--root", local.root, "The hasher's root directory")->capture_default_str();
  std::map<std::string, std::string> local_provider_flags;
  AddProviderPassThrough(local_cmd, &local_provider_flags);

  ArchiveOptions archive;
  auto* archive_cmd = app.add_subcommand("archive", "Hash a directory and anchor its digests");
  archive_cmd->add_option("DIR", archive.dir, "Directory to archive")->required();
  archive_cmd->add_option("--job", archive.job, "Job name ([A-Za-z0-9._-], default \"default\")");
  archive_cmd->add_flag("--local", archive.local,
                        "Start a stack for this command only, rooted at DIR");
  AddStackFlags(archive_cmd, &archive.stack);
  archive_cmd->add_option("--wait", archive.wait, "none|queued|submitted|confirmed")
      ->capture_default_str();
  archive_cmd->add_option("--timeout-seconds", archive.timeout_seconds,
                          "Give up after this long (0 = never)");
  archive_cmd->add_flag("--dry-run", archive.dry_run,
                        "Only compute and print the digests (sha256sum format, as they come)");
  archive_cmd
      ->add_option("--provider", archive.providers,
                   "Provider(s) to anchor with (repeat or comma-separate for redundancy)")
      ->delimiter(',');
  archive_cmd->add_flag("--merkle-batch", archive.merkle,
                        "Anchor Merkle roots of batches of files (one quota unit per batch)");
  archive_cmd->add_option("--fallback-provider", archive.fallback_provider,
                          "Anchor with this provider too if a proof stalls");
  // --provider is the archive's own (the providers of its requests; with --local also enabled in
  // the stack, the first as its default).
  std::map<std::string, std::string> archive_provider_flags;
  AddProviderPassThrough(archive_cmd, &archive_provider_flags, "--provider");

  std::string status_job;
  auto* status_cmd = app.add_subcommand("status", "Counts by state over the three services");
  status_cmd->add_option("--job", status_job, "Job (default: all jobs)");

  ReportOptions report;
  auto* report_cmd = app.add_subcommand("report", "One row per file of a job");
  report_cmd->add_option("--job", report.job, "Job (default \"default\")");
  report_cmd->add_option("--format", report.format, "csv|json")->capture_default_str();
  report_cmd->add_option("--output,-o", report.output, "Write to FILE instead of stdout");
  report_cmd
      ->add_option("--headers", report.headers,
                   "Block header source to check Bitcoin attestations: file:PATH, rest:URL, "
                   "rpc:URL, sandbox:URL")
      ->envname("ANCHORD_HEADERS");
  report_cmd
      ->add_option("--tsa-ca-file", report.tsa_ca_file,
                   "PEM trust anchors for RFC 3161 tokens (default: the local sandbox stack's)")
      ->envname("ANCHORD_TSA_CA_FILE");
  report_cmd
      ->add_option("--network", report.network,
                   "Header rules: mainnet (default: proof-of-work limit and difficulty "
                   "floor) or regtest (test chains, reported as such)")
      ->envname("ANCHORD_NETWORK");
  report_cmd->add_flag("--no-verify", report.no_verify, "Do not download and verify the proofs");

  std::string get_digest;
  auto* get_cmd = app.add_subcommand("get", "Where a digest is, its proofs and files");
  get_cmd->add_option("DIGEST", get_digest, "SHA-256 as 64 hex characters")->required();

  std::string dl_digest, dl_output;
  auto* dl_cmd = app.add_subcommand("download", "Download the .ots evidence of a digest");
  dl_cmd->add_option("DIGEST", dl_digest, "SHA-256 as 64 hex characters")->required();
  dl_cmd->add_option("-o,--output", dl_output, "Output file (default DIGEST.ots)");

  std::string watch_job, watch_digest;
  bool watch_current = false;
  auto* watch_cmd = app.add_subcommand("watch", "Print proof events as they happen");
  watch_cmd->add_option("--job", watch_job, "Only this job");
  watch_cmd->add_option("--digest", watch_digest, "Only this digest (64 hex)");
  watch_cmd->add_flag("--current", watch_current, "First print the current state of every proof");

  // Proofs a court can check: offline verification, a readable tree, upgrade of pending proofs.
  std::string verify_file, verify_proof, verify_headers, verify_tsa_ca;
  auto* verify_cmd =
      app.add_subcommand("verify",
                         "Verify FILE against its proof: .ots (offline with a local header "
                         "source), .tsr or .tsrm (RFC 3161, with --tsa-ca-file)");
  verify_cmd->add_option("FILE", verify_file, "The original file")->required();
  verify_cmd->add_option("PROOF", verify_proof, "The proof (default FILE.ots)");
  verify_cmd
      ->add_option("--headers", verify_headers,
                   "Bitcoin header source: file:PATH | rest:URL | "
                   "rpc:URL[,cookie=PATH|,user=U,password=P] | sandbox:URL")
      ->envname("ANCHORD_OTS_HEADERS");
  std::string verify_network;
  verify_cmd
      ->add_option("--network", verify_network,
                   "Header rules: mainnet (default: proof-of-work limit and difficulty "
                   "floor) or regtest (test chains; the output says so)")
      ->envname("ANCHORD_NETWORK");
  verify_cmd
      ->add_option("--tsa-ca-file", verify_tsa_ca,
                   "PEM trust anchors for RFC 3161 tokens (.tsr/.tsrm proofs)")
      ->envname("ANCHORD_TSA_CA_FILE");
  anchord::anchorctl::BundleOptions bundle;
  auto* bundle_cmd =
      app.add_subcommand("bundle", "Write one ZIP per job that anyone can verify offline");
  bundle_cmd->add_option("--job", bundle.job, "Job (default \"default\")");
  bundle_cmd->add_option("--output,-o", bundle.output, "The .zip to write")->required();
  bundle_cmd
      ->add_option("--headers", bundle.headers,
                   "Bitcoin header source for the .ots proofs (default: the local sandbox stack's)")
      ->envname("ANCHORD_OTS_HEADERS");
  bundle_cmd->add_option("--network", bundle.network,
                         "mainnet|regtest, recorded for verify-bundle's header policy (default: "
                         "regtest for a sandbox: source, else mainnet)");
  bundle_cmd
      ->add_option("--tsa-ca-file", bundle.tsa_ca_file,
                   "PEM trust anchors of the TSAs (default: the local sandbox stack's)")
      ->envname("ANCHORD_TSA_CA_FILE");
  std::string vb_bundle, vb_files;
  auto* vb_cmd = app.add_subcommand(
      "verify-bundle",
      "Check a bundle offline (exit 0 verified, 3 mismatch, 4 pending, 2 malformed)");
  vb_cmd->add_option("BUNDLE", vb_bundle, "The .zip written by `anchorctl bundle`")->required();
  vb_cmd->add_option("--files", vb_files, "Also hash every manifest file under this directory");
  std::string info_proof;
  auto* info_cmd = app.add_subcommand("info", "Print a proof as a readable tree");
  info_cmd->add_option("PROOF", info_proof, "The .ots file")->required();
  bool info_full = false;
  info_cmd->add_flag("--full", info_full,
                     "Print long derived messages whole (default: first 32 bytes and the length)");
  std::vector<std::string> upgrade_proofs;
  anchord::anchorctl::OtsUpgradeOptions upgrade_opts;
  auto* upgrade_cmd =
      app.add_subcommand("upgrade", "Upgrade pending proofs in place from their calendars");
  upgrade_cmd->add_option("PROOF", upgrade_proofs, "The .ots files")->required();
  upgrade_cmd->add_option("-l,--whitelist", upgrade_opts.whitelist,
                          "Extra calendar URL globs to trust");
  upgrade_cmd->add_option("-c,--calendar", upgrade_opts.calendars,
                          "Ask these calendars instead of the proof's");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? kExitComplete : kExitUsage;
  }

  anchord::InitLogging("anchorctl", anchord::ParseLogLevel(log_level));
  local.stack.provider_args = GivenProviderArgs(local_cmd, local_provider_flags);
  archive.stack.provider_args = GivenProviderArgs(archive_cmd, archive_provider_flags);
  if (*archive_cmd && !archive.local && !archive.stack.provider_args.empty()) {
    std::cerr << "anchorctl: archive: provider flags (" << archive.stack.provider_args.front()
              << ") only apply with --local, to the stack it starts" << std::endl;
    return kExitUsage;
  }
  const bool own_stack = *local_cmd || (*archive_cmd && archive.local);
  if (own_stack) {
    if (security.tls_enabled() || !security.token_file.empty()) {
      std::cerr << "anchorctl: the stack it starts itself is plaintext; --tls-*/--auth-token-file "
                   "are ignored"
                << std::endl;
    }
  } else {
    SetTransportSecurity(security);
  }
  StartSignalThread();
  try {
    if (*local_cmd) return RunLocal(g, local);
    if (*archive_cmd) return RunArchive(g, archive);
    if (*status_cmd) return RunStatus(g, status_job);
    if (*report_cmd) return RunReport(g, report);
    if (*get_cmd) return RunGet(g, get_digest);
    if (*dl_cmd) return RunDownload(g, dl_digest, dl_output);
    if (*watch_cmd) return RunWatch(g, watch_job, watch_digest, watch_current);
    if (*verify_cmd) {
      return anchord::anchorctl::RunVerify(verify_file, verify_proof, verify_headers, g.json,
                                           std::cout, std::cerr, verify_network, verify_tsa_ca);
    }
    if (*bundle_cmd) return anchord::anchorctl::RunBundle(g, bundle);
    if (*vb_cmd) {
      return anchord::anchorctl::RunVerifyBundle(vb_bundle, vb_files, g.json, std::cout, std::cerr);
    }
    if (*info_cmd)
      return anchord::anchorctl::RunInfo(info_proof, g.json, info_full, std::cout, std::cerr);
    if (*upgrade_cmd) {
      return anchord::anchorctl::RunUpgrade(upgrade_proofs, upgrade_opts, std::cout, std::cerr);
    }
  } catch (const std::exception& e) {
    // Nothing should throw past the commands; this keeps a surprise from becoming an abort.
    std::cerr << "anchorctl: internal error: " << e.what() << std::endl;
    return kExitInternal;
  }
  return kExitUsage;
}
