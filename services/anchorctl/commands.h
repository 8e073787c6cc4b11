// The anchorctl commands. Each returns the process exit code (see format.h) and prints its result
// to stdout and its messages to stderr; none throws.
#pragma once

#include <memory>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/digest/digest.h"

namespace anchord::ots {
class BlockHeaderSource;
}

namespace anchord::anchorctl {

struct GlobalOptions {
  std::string hasher;       // --hasher / ANCHORD_HASHER_ADDR
  std::string submitter;    // --submitter / ANCHORD_SUBMITTER_ADDR
  std::string poller;       // --poller / ANCHORD_POLLER_ADDR
  std::string hasher_root;  // --hasher-root / ANCHORD_HASHER_ROOT
  bool json = false;
  std::string data_dir;
  double deadline_seconds = 10;
};

struct StackFlags {
  bool sandbox = false;
  std::string bin_dir;  // empty = next to anchorctl
  int sandbox_window_seconds = 0;
  int sandbox_confirm_after_seconds = 0;
  int poll_interval_seconds = 0;
  // Provider flags given on the command line ("--flag", "value" pairs), for the stack's submitter
  // and poller (the environment reaches them anyway: they inherit it).
  std::vector<std::string> provider_args;
};

struct LocalOptions {
  StackFlags stack;
  std::string root = ".";
};

struct ArchiveOptions {
  std::string dir;
  std::string job;
  bool local = false;
  StackFlags stack;
  std::string wait = "submitted";
  double timeout_seconds = 0;  // 0 = no limit
  bool dry_run = false;
  std::vector<std::string> providers;  // empty: the submitter's default
  bool merkle = false;                 // ANCHOR_MODE_MERKLE_BATCH
  std::string fallback_provider;
};

struct ReportOptions {
  std::string job;
  std::string format = "csv";
  std::string output;  // empty = stdout
  // Verification of every proof: always the digest and the commitment path; the Bitcoin
  // attestations too when a header source is given (libs/ots MakeHeaderSource spec).
  std::string headers;
  // PEM trust anchors for RFC 3161 tokens; empty: the stack file's (a sandbox stack), else tokens
  // are matched but reported UNCHECKED.
  std::string tsa_ca_file;
  // Header rules: "mainnet" (default: pow limit and difficulty floor) or "regtest" (test chains;
  // the verification column then says "(regtest)"). The sandbox: source is always regtest.
  std::string network;
  bool no_verify = false;
};

class Clients;
struct ReportRow;

// What `report` lists (one row per file and proof), without verification, a page of the job's
// files at a time (ListFiles order): on_page gets each page's rows and returns kExitComplete to go
// on. Returns kExitComplete (0) or the exit code of an error already printed (or on_page's).
inline constexpr size_t kReportPageFiles = 1000;
int ForEachReportPage(Clients& clients, const std::string& job, size_t page_files,
                      const std::function<int(std::vector<ReportRow>& rows)>& on_page);
// Every row of ForEachReportPage at once (the evidence bundle's report).
int CollectReportRows(Clients& clients, const std::string& job, std::vector<ReportRow>* rows);
// The proof bytes the poller serves for (raw digest, provider): .ots, .tsr or .tsrm. NOT_FOUND
// while there is none.
absl::StatusOr<std::string> FetchOts(Clients& clients, const GlobalOptions& g,
                                     const std::string& digest, const std::string& provider);
// The report's verification column for one proof.
std::string VerifyProofRow(Clients& clients, const GlobalOptions& g, const std::string& digest_hex,
                           const std::string& provider, const std::string& status,
                           ots::BlockHeaderSource* headers, const std::string& tsa_ca_pem);
// The same for proof bytes already fetched (FetchOts's answer): one download serves both the
// column and a caller that keeps the bytes (the evidence bundle).
std::string VerifyProofData(const absl::StatusOr<std::string>& data, const Digest& digest,
                            const std::string& status, ots::BlockHeaderSource* headers,
                            const std::string& tsa_ca_pem);
// Clients for the stack the global options (or the stack file) name.
std::unique_ptr<Clients> MakeClients(const GlobalOptions& g);

int RunLocal(const GlobalOptions& g, const LocalOptions& o);
int RunArchive(const GlobalOptions& g, const ArchiveOptions& o);
int RunStatus(const GlobalOptions& g, const std::string& job);
int RunReport(const GlobalOptions& g, const ReportOptions& o);
int RunGet(const GlobalOptions& g, const std::string& digest_hex);
int RunDownload(const GlobalOptions& g, const std::string& digest_hex, const std::string& output);
int RunWatch(const GlobalOptions& g, const std::string& job, const std::string& digest_hex,
             bool include_current);

}  // namespace anchord::anchorctl
