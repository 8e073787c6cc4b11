// anchord-hasher: hashes evidence files under a root directory and hands the digests to the
// submitter. Every flag can also be set from the environment variable named in its help.
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <string>

#include "libs/common/build_info.h"
#include "libs/common/log.h"
#include "libs/common/mutex_mode.h"
#include "libs/rpc/server.h"
#include "services/hasher/hasher_metrics.h"
#include "services/hasher/hasher_service.h"
#include "services/hasher/hasher_store.h"

int main(int argc, char** argv) {
  anchord::DisableMutexDeadlockDetection();  // before any thread starts
  anchord::rpc::BlockTerminationSignals();

  CLI::App app{"anchord-hasher: SHA-256 of evidence files, forwarded to the submitter"};
  app.set_version_flag("--version", anchord::BuildInfo());
  std::string listen = "127.0.0.1:0", port_file, metrics_listen, metrics_port_file;
  std::string data_dir = ".", log_level = "info", root, submitter;
  // The window matches the submitter's per-stream window (ServiceOptions::max_outstanding_per_
  // stream): the submitter's group commit then holds up to that many digests, and each page of
  // its (digest, provider) index (random keys) rewritten by a commit is shared by more of them: a
  // commit of a few thousand rows dirties nearly every page of that index, so its cost per file
  // falls with the commit's size. 1,024 -> 4,096: the submitter wrote 5.1 -> 2.8 KiB per file of
  // a 100,000-file Merkle run; 4,096 -> 16,384: 2.65 -> 1.41 KiB (bench/RESULTS.md). 256 had
  // measured 25% slower end to end than 1,024.
  int workers = 2, max_inflight = 16384, submit_deadline_s = 3600;
  app.add_option("--listen", listen, "gRPC host:port (port 0 picks one)")
      ->envname("ANCHORD_LISTEN");
  app.add_option("--port-file", port_file, "write the bound gRPC port here")
      ->envname("ANCHORD_PORT_FILE");
  app.add_option("--metrics-listen", metrics_listen, "host:port for /metrics; empty disables")
      ->envname("ANCHORD_METRICS_LISTEN");
  app.add_option("--metrics-port-file", metrics_port_file, "write the bound metrics port here")
      ->envname("ANCHORD_METRICS_PORT_FILE");
  app.add_option("--data-dir", data_dir, "directory of hasher.db")->envname("ANCHORD_DATA_DIR");
  app.add_option("--log-level", log_level, "debug, info, warning or error")
      ->envname("ANCHORD_LOG_LEVEL");
  app.add_option("--root", root, "directory HashTree paths are relative to")
      ->envname("ANCHORD_HASHER_ROOT")
      ->required();
  app.add_option("--submitter", submitter, "submitter host:port; empty allows dry runs only")
      ->envname("ANCHORD_SUBMITTER_ADDR");
  app.add_option("--workers", workers, "hashing threads")
      ->envname("ANCHORD_HASHER_WORKERS")
      ->check(CLI::Range(1, 64));
  app.add_option("--max-inflight", max_inflight,
                 "per call: files admitted and digests unacknowledged by the submitter, at most")
      ->envname("ANCHORD_HASHER_MAX_INFLIGHT")
      ->check(CLI::Range(1, 100000));
  app.add_option("--submit-deadline-seconds", submit_deadline_s,
                 "deadline of each Submit stream; reopened when it expires")
      ->envname("ANCHORD_HASHER_SUBMIT_DEADLINE_SECONDS")
      ->check(CLI::Range(1, 86400 * 7));
  // One TransportSecurity for the gRPC port and the submitter channel: with mTLS the hasher
  // presents the same certificate as client that it serves with.
  anchord::rpc::ServerOptions server_options;
  anchord::rpc::AddTransportFlags(app, &server_options.security);
  anchord::rpc::AddConnectionFlags(app, &server_options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  anchord::InitLogging("hasher", anchord::ParseLogLevel(log_level));

  struct stat st;
  if (stat(root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    ANCHORD_LOG(Error) << "--root: " << root << " is not an existing directory";
    return 2;
  }
  if (stat(data_dir.c_str(), &st) != 0) {
    if (mkdir(data_dir.c_str(), 0700) != 0) {
      ANCHORD_LOG(Error) << "--data-dir: cannot create " << data_dir;
      return 2;
    }
  }
  auto store = anchord::hasher::HasherStore::Open(data_dir + "/hasher.db");
  if (!store.ok()) {
    ANCHORD_LOG(Error) << store.status();
    return 1;
  }
  auto registry = std::make_shared<prometheus::Registry>();
  anchord::hasher::HasherMetrics metrics(*registry);

  anchord::hasher::HasherOptions options;
  options.root = root;
  if (!submitter.empty()) {
    auto channel = anchord::rpc::MakeSecureChannel(submitter, server_options.security);
    if (!channel.ok()) {
      ANCHORD_LOG(Error) << "--submitter channel: " << channel.status();
      return 2;
    }
    options.submitter = *channel;
  }
  options.workers = workers;
  options.max_inflight = max_inflight;
  options.submit.stream_deadline = absl::Seconds(submit_deadline_s);
  auto hasher = anchord::hasher::HasherServiceImpl::Create(options, store->get(), &metrics);
  if (!hasher.ok()) {
    ANCHORD_LOG(Error) << hasher.status();
    return 2;
  }
  anchord::hasher::HasherStatusServiceImpl status_service((*hasher)->shared());

  server_options.service_name = "hasher";
  server_options.listen_address = listen;
  server_options.port_file = port_file;
  server_options.metrics_address = metrics_listen;
  server_options.metrics_port_file = metrics_port_file;
  server_options.health_service_names = {"anchord.v1.HasherService", "anchord.v1.StatusService"};
  auto runner =
      anchord::rpc::ServerRunner::Start(server_options, {hasher->get(), &status_service}, registry);
  if (!runner.ok()) {
    ANCHORD_LOG(Error) << runner.status();
    return 1;
  }
  if (submitter.empty()) {
    ANCHORD_LOG(Warning) << "no --submitter: only dry runs are possible";
  }
  int sig = anchord::rpc::WaitForTerminationSignal();
  ANCHORD_LOG(Info) << "signal " << sig << ": draining";
  (*runner)->Shutdown();
  runner->reset();
  hasher->reset();  // waits for the calls' threads
  return 0;
}
