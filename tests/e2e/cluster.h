// A stack with several replicas of the submitter and the poller, as real processes on loopback,
// for the replica and chaos tests: the sandbox, P pollers, S submitters and one hasher.
//
// Every replica's gRPC port is reserved before anything starts, so each peer is given ALL
// replicas of the next service as one multi-address target ("ipv4:127.0.0.1:a,127.0.0.1:b", the
// loopback stand-in for a headless Service's dns:/// name) and reaches them with round_robin, and
// a replica that is killed comes back on the same port. The submitters and the pollers also get
// a reserved internal port (--internal-listen) and the cluster's internal token, and reach each
// other there (the submitter's --poller, the poller's --submitter), as in the Helm chart's
// dns:///<name>-peers:<internal> targets. With a database URL the replicas share
// one PostgreSQL database; without one each keeps its own SQLite files (separate --data-dir).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "libs/common/loopback_port.h"
#include "services/anchorctl/process.h"

namespace anchord::e2e {

struct ClusterOptions {
  // HASHER, SUBMITTER, POLLER, SANDBOX binaries by those lower-case names.
  std::map<std::string, std::string> binaries;
  std::string dir;   // logs, port files, key files, data dirs (one per replica)
  std::string root;  // the hasher's --root
  int submitters = 1;
  int pollers = 1;
  // A file holding the PostgreSQL URL (--database-url-file); empty: SQLite per replica.
  std::string database_url_file;
  int sandbox_window_seconds = 2;
  int sandbox_confirm_after_seconds = 2;
  int poll_interval_seconds = 1;
  // Extra arguments by service ("sandbox", "submitter", "poller", "hasher"), appended last.
  std::map<std::string, std::vector<std::string>> extra_args;
};

class Cluster {
 public:
  // Starts the sandbox, then the pollers, submitters and the hasher, each once listening.
  static absl::StatusOr<std::unique_ptr<Cluster>> Start(const ClusterOptions& options);
  ~Cluster();

  // "127.0.0.1:port" of replica `index` of `service`.
  std::string Address(const std::string& service, int index = 0) const;
  // Every replica of `service` as one target: "ipv4:127.0.0.1:a,127.0.0.1:b".
  std::string Target(const std::string& service) const;
  // The same over the replicas' internal ports (submitter, poller).
  std::string InternalTarget(const std::string& service) const;
  // The file holding the internal token every submitter and poller is given.
  std::string internal_token_file() const;
  std::string sandbox_url() const;
  int sandbox_port() const { return sandbox_port_; }
  // host:port of the replica's /metrics endpoint (empty for the sandbox).
  std::string MetricsAddress(const std::string& service, int index = 0) const;
  std::string LogFile(const std::string& service, int index = 0) const;
  int Replicas(const std::string& service) const;

  // SIGKILL, then start again on the same port with the same arguments and data.
  absl::Status CrashAndRestart(const std::string& service, int index);
  // SIGTERM every process (hasher first), SIGKILL after `grace_seconds`.
  void Stop(int grace_seconds = 10);

 private:
  struct Replica {
    std::string service;
    int index = 0;
    int port = 0;
    int internal_port = 0;  // submitter, poller
    std::string metrics;
    std::unique_ptr<anchorctl::ChildProcess> child;
  };
  Cluster() = default;
  std::vector<std::string> Args(const Replica& r) const;
  absl::Status StartReplica(Replica* r);
  Replica* Find(const std::string& service, int index);
  const Replica* Find(const std::string& service, int index) const;

  ClusterOptions options_;
  int sandbox_port_ = 0;
  std::vector<std::unique_ptr<Replica>> replicas_;  // in start order
};

// Runs `binary args...` to completion, at most `timeout_seconds`; its output goes to `log_file`.
// OK when it exited 0; otherwise an error quoting the end of the log.
absl::Status RunToCompletion(const std::string& binary, const std::vector<std::string>& args,
                             const std::string& log_file, int timeout_seconds);

// The value of a Prometheus counter or gauge summed over the series of `name` whose label set
// contains every `labels` pair (e.g. {"method", "SubmitterService/Submit"}), scraped from
// http://`address`/metrics. -1 when the endpoint does not answer.
double ScrapeSum(const std::string& address, const std::string& name,
                 const std::map<std::string, std::string>& labels = {});

}  // namespace anchord::e2e
