// anchord submitter: a durable queue that anchors digests with providers and hands accepted proofs
// to the poller.
#include <CLI/CLI.hpp>

#include <filesystem>
#include <memory>

#include "absl/strings/str_cat.h"
#include "libs/common/build_info.h"
#include "libs/common/clock.h"
#include "libs/common/log.h"
#include "libs/common/mutex_mode.h"
#include "libs/ledger/pg_health.h"
#include "libs/ratelimit/pg_rate_limiter.h"
#include "libs/providers/factory.h"
#include "libs/providers/metrics.h"
#include "libs/ratelimit/rate_limiter.h"
#include "libs/rpc/server.h"
#include "services/submitter/batcher.h"
#include "services/submitter/engine.h"
#include "services/submitter/handoff.h"
#include "services/submitter/metrics.h"
#include "services/submitter/persistent_limiter.h"
#include "services/submitter/pg_submitter_store.h"
#include "services/submitter/service.h"
#include "services/submitter/submitter_store.h"

namespace {

int Run(int argc, char** argv) {
  anchord::rpc::BlockTerminationSignals();

  CLI::App app{"anchord submitter: durable queue anchoring digests with providers"};
  app.set_version_flag("--version", anchord::BuildInfo());
  anchord::rpc::ServerOptions server;
  server.service_name = "submitter";
  server.internal.listen_address = "127.0.0.1:0";
  std::string data_dir = ".";
  std::string log_level = "info";
  std::string poller;
  int workers = 4;
  int claim_group = 16;
  int64_t high_water = 100000;
  double quota_retry_seconds = 3600;
  double retry_max_seconds = 600;
  double track_deadline_seconds = 3600;
  anchord::providers::ProviderSettings provider_settings;
  // The submitter's share of the per-key general budget (120/min for proofd): its 30 creates
  // plus room for the list walks that resolve 409 duplicates. The poller takes the other 80.
  provider_settings.client_name = "submitter";
  provider_settings.proofd_general_limit = 40;

  app.add_option("--listen", server.listen_address, "gRPC listen address host:port")
      ->envname("ANCHORD_LISTEN")
      ->capture_default_str();
  app.add_option("--port-file", server.port_file, "write the bound gRPC port here")
      ->envname("ANCHORD_PORT_FILE");
  app.add_option("--metrics-listen", server.metrics_address,
                 "Prometheus /metrics address; empty disables")
      ->envname("ANCHORD_METRICS_LISTEN");
  app.add_option("--metrics-port-file", server.metrics_port_file,
                 "write the bound metrics port here")
      ->envname("ANCHORD_METRICS_PORT_FILE");
  app.add_option("--data-dir", data_dir, "directory of submitter.db")
      ->envname("ANCHORD_DATA_DIR")
      ->capture_default_str();
  app.add_option("--log-level", log_level, "debug, info, warning or error")
      ->envname("ANCHORD_LOG_LEVEL")
      ->capture_default_str();
  app.add_option("--poller", poller,
                 "the poller's INTERNAL host:port (its --internal-listen; hand-off target)")
      ->envname("ANCHORD_POLLER_ADDR");
  app.add_option("--workers", workers, "concurrent create requests")
      ->envname("ANCHORD_WORKERS")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--claim-group", claim_group,
                 "rows a worker claims and prepares in one commit (one digest per request)")
      ->envname("ANCHORD_CLAIM_GROUP")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--high-water", high_water,
                 "stop reading Submit streams above this many queued rows")
      ->envname("ANCHORD_HIGH_WATER")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--quota-retry-seconds", quota_retry_seconds,
                 "pause after a spent quota before one probe request")
      ->envname("ANCHORD_QUOTA_RETRY_SECONDS")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--retry-max-seconds", retry_max_seconds,
                 "longest wait before retrying a create that failed with a retryable error (the "
                 "wait doubles from 1 s per attempt, jittered, up to this; a provider's "
                 "Retry-After may ask for longer)")
      ->envname("ANCHORD_RETRY_MAX_SECONDS")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--track-deadline-seconds", track_deadline_seconds,
                 "deadline of one Track stream to the poller")
      ->envname("ANCHORD_TRACK_DEADLINE_SECONDS")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  bool track_batch = true;
  app.add_option("--handoff-track-batch", track_batch,
                 "hand Merkle leaves off in the batch form (PollerService.TrackBatch); an older "
                 "poller without it is handed rows one by one over Track either way")
      ->envname("ANCHORD_HANDOFF_TRACK_BATCH")
      ->capture_default_str();
  int handoff_behind_rows = 10000;
  app.add_option("--handoff-behind-rows", handoff_behind_rows,
                 "the intake waits (up to 50 ms a group commit) while at least this many rows "
                 "wait for the hand-off to the poller beyond those in flight; 0: never")
      ->envname("ANCHORD_HANDOFF_BEHIND_ROWS")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str();
  int merkle_max_leaves = 10000;
  double merkle_window_seconds = 5;
  app.add_option("--merkle-max-leaves", merkle_max_leaves,
                 "seal a Merkle batch once this many file digests wait (ANCHOR_MODE_MERKLE_BATCH)")
      ->envname("ANCHORD_MERKLE_MAX_LEAVES")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  app.add_option("--merkle-window-seconds", merkle_window_seconds,
                 "seal a Merkle batch once its oldest digest waited this long")
      ->envname("ANCHORD_MERKLE_WINDOW_SECONDS")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
  std::string database_url, database_url_file;
  app.add_option("--database-url", database_url,
                 "PostgreSQL URL shared by submitter replicas; empty keeps submitter.db (SQLite)")
      ->envname("ANCHORD_DATABASE_URL");
  app.add_option("--database-url-file", database_url_file,
                 "file holding the PostgreSQL URL (a mounted Secret)")
      ->envname("ANCHORD_DATABASE_URL_FILE");
  double lease_seconds = 60;
  app.add_option("--lease-seconds", lease_seconds,
                 "with a database: how soon another replica takes over the rows of a replica "
                 "that died (leases are renewed every twelfth of this while a replica lives)")
      ->envname("ANCHORD_LEASE_SECONDS")
      ->check(CLI::Range(2.0, 3600.0))
      ->capture_default_str();
  anchord::providers::AddProviderFlags(app, &provider_settings);
  // The same TransportSecurity serves the gRPC port and is presented to the poller (mTLS).
  anchord::rpc::AddTransportFlags(app, &server.security);
  anchord::rpc::AddConnectionFlags(app, &server);
  anchord::rpc::AddInternalFlags(app, &server.internal);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  anchord::InitLogging("submitter", anchord::ParseLogLevel(log_level));
  if (poller.empty()) {
    ANCHORD_LOG(Error) << "--poller (ANCHORD_POLLER_ADDR) is required";
    return 2;
  }
  // Built before anything is opened so a bad certificate/key file fails fast.
  auto poller_channel =
      anchord::rpc::MakeInternalChannel(poller, server.security, server.internal.token_file);
  if (!poller_channel.ok()) {
    ANCHORD_LOG(Error) << "--poller channel: " << poller_channel.status();
    return 2;
  }
  // With a database URL the store (and the rate budgets) live in PostgreSQL, shared by every
  // replica; without one, in DATA_DIR/submitter.db as before.
  anchord::ledger::PgOptions pg_options;
  pg_options.pool_size = workers + 4;  // workers, intake, hand-off, batcher, limiters
  pg_options.application_name = "anchord-submitter";
  auto db_or = anchord::ledger::OpenDatabaseFromFlags(database_url, database_url_file, pg_options);
  if (!db_or.ok()) {
    ANCHORD_LOG(Error) << db_or.status();
    return db_or.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  std::shared_ptr<anchord::ledger::PgDb> db = std::move(*db_or);
  absl::StatusOr<std::unique_ptr<anchord::submitter::SubmitterStore>> store_or;
  if (db != nullptr) {
    anchord::submitter::PgSubmitterOptions store_options;
    store_options.lease_term = absl::Seconds(lease_seconds);
    store_options.heartbeat = absl::Seconds(lease_seconds) / 12;
    store_or = anchord::submitter::OpenPgSubmitterStore(db, store_options);
    if (store_or.ok()) {
      if (absl::Status st = anchord::ratelimit::MigratePgRateLimiter(*db); !st.ok()) {
        store_or = st;
      }
    }
  } else {
    std::error_code ec;
    std::filesystem::create_directories(data_dir, ec);
    store_or = anchord::submitter::OpenSqliteSubmitterStore(
        (std::filesystem::path(data_dir) / "submitter.db").string());
  }
  if (!store_or.ok()) {
    ANCHORD_LOG(Error) << store_or.status();
    return 1;
  }
  std::unique_ptr<anchord::submitter::SubmitterStore> store = std::move(*store_or);

  auto registry = std::make_shared<prometheus::Registry>();
  std::unique_ptr<anchord::providers::ProviderMetrics> provider_metrics;
  std::unique_ptr<anchord::submitter::SubmitterMetrics> metrics;
  try {
    provider_metrics = std::make_unique<anchord::providers::ProviderMetrics>(*registry);
    metrics = std::make_unique<anchord::submitter::SubmitterMetrics>(*registry);
  } catch (const std::exception& e) {
    ANCHORD_LOG(Error) << "metrics: " << e.what();
    return 1;
  }

  // Limiters persist their Retry-After gates and recent sends in the store (see
  // persistent_limiter.h), so a restart never sends before a gate the previous run received.
  anchord::Clock* clock = anchord::Clock::Real();
  anchord::submitter::SubmitterStore* store_ptr = store.get();
  anchord::providers::LimiterFactory limiters =
      [store_ptr, clock](const std::string& name, anchord::ratelimit::RateLimit limit) {
        return anchord::submitter::MakePersistentLimiter(
            anchord::ratelimit::MakeLocalRateLimiter(name, limit, clock), limit, store_ptr, clock);
      };
  if (db != nullptr) {
    // One budget per bucket for all submitter replicas (see libs/ratelimit/pg_rate_limiter.h);
    // it is persistent by nature, so no wrapper.
    limiters = [db, clock](const std::string& name, anchord::ratelimit::RateLimit limit) {
      return anchord::ratelimit::MakePgRateLimiter(db, "submitter:" + name, limit, clock);
    };
  }
  auto set_or = anchord::providers::ProviderSet::Create(provider_settings, provider_metrics.get(),
                                                        limiters, clock);
  if (!set_or.ok()) {
    ANCHORD_LOG(Error) << set_or.status();
    return 2;
  }
  std::unique_ptr<anchord::providers::ProviderSet> provider_set = std::move(*set_or);
  if (provider_set->Default() == nullptr) {
    ANCHORD_LOG(Error) << "no default provider configured";
    return 2;
  }
  // Pre-create the provider-labelled series that only move on trouble (429s, retries) at 0, so the
  // dashboard and alerts see the families (and rate() has a baseline) before the first event.
  for (anchord::providers::Provider* p : provider_set->All()) {
    provider_metrics->rate_limited.Add({{"provider", p->name()}});
    metrics->retries.Add({{"provider", p->name()}, {"reason", "rate_limited"}});
    metrics->merkle_batches.Add({{"provider", p->name()}});
    metrics->merkle_leaves.Add({{"provider", p->name()}});
  }

  // Before the engine, which wakes it when outcomes are recorded (and so must not outlive it).
  anchord::submitter::HandoffOptions handoff_options;
  handoff_options.track_deadline = absl::Seconds(track_deadline_seconds);
  handoff_options.track_batch = track_batch;
  handoff_options.behind_rows = handoff_behind_rows;
  anchord::submitter::Handoff handoff(store.get(), *poller_channel, metrics.get(), handoff_options);

  anchord::submitter::EngineOptions engine_options;
  engine_options.on_recorded = [&handoff] { handoff.Wake(); };
  engine_options.workers = workers;
  engine_options.claim_group = claim_group;
  engine_options.quota_retry = absl::Seconds(quota_retry_seconds);
  engine_options.backoff.max = absl::Seconds(retry_max_seconds);
  anchord::submitter::Engine engine(store.get(), provider_set->All(), metrics.get(), clock,
                                    engine_options);
  if (absl::Status st = engine.Start(); !st.ok()) {
    ANCHORD_LOG(Error) << st;
    return 1;
  }

  anchord::submitter::BatcherOptions batcher_options;
  batcher_options.max_leaves = merkle_max_leaves;
  batcher_options.window = absl::Seconds(merkle_window_seconds);
  std::vector<std::string> provider_names;
  for (auto* p : provider_set->All()) provider_names.push_back(p->name());
  anchord::submitter::Batcher batcher(store.get(), provider_names, metrics.get(), clock,
                                      batcher_options, [&engine] { engine.Wake(); });
  batcher.Start();

  handoff.Start();

  anchord::submitter::ServiceOptions service_options;
  service_options.high_water = high_water;
  for (auto* p : provider_set->All()) service_options.providers.push_back(p->name());
  service_options.default_provider = provider_set->Default()->name();
  service_options.before_group = [&handoff] { handoff.WaitWhileBehind(); };
  anchord::submitter::SubmitterCore core(store.get(), &engine, metrics.get(), service_options);
  core.set_on_stored([&engine, &batcher](int64_t merkle_leaves) {
    engine.Wake();
    if (merkle_leaves > 0) batcher.NoteLeaves(merkle_leaves);
  });
  anchord::submitter::SubmitterServiceImpl submitter_service(&core);
  // The same service on the internal port, where only Reanchor is served (to the poller).
  auto internal_gate = anchord::rpc::RpcGate::InternalFromFile(server.internal.token_file);
  if (!internal_gate.ok()) {
    ANCHORD_LOG(Error) << internal_gate.status();
    batcher.Stop();
    engine.Stop();
    handoff.Stop();
    return 2;
  }
  anchord::submitter::SubmitterServiceImpl internal_service(&core, *internal_gate);
  anchord::submitter::StatusServiceImpl status_service(&core);

  server.health_service_names = {"anchord.v1.SubmitterService", "anchord.v1.StatusService"};
  auto runner_or = anchord::rpc::ServerRunner::Start(server, {&submitter_service, &status_service},
                                                     registry, {&internal_service});
  if (!runner_or.ok()) {
    ANCHORD_LOG(Error) << runner_or.status();
    batcher.Stop();
    engine.Stop();
    handoff.Stop();
    return 1;
  }
  std::unique_ptr<anchord::rpc::ServerRunner> runner = std::move(*runner_or);
  // NOT_SERVING while the database is unreachable (work waits and resumes when it is back).
  std::unique_ptr<anchord::ledger::PgHealthWatch> db_health;
  if (db != nullptr) {
    anchord::rpc::ServerRunner* runner_ptr = runner.get();
    db_health = std::make_unique<anchord::ledger::PgHealthWatch>(
        db, [runner_ptr](bool serving) { runner_ptr->SetServing(serving); });
  }

  int sig = anchord::rpc::WaitForTerminationSignal();
  ANCHORD_LOG(Info) << "signal " << sig << ": draining";
  // Order: stop intake RPCs first (the intake thread still answers what they sent), then the
  // workers (cancelling pacing waits), then the hand-off.
  // Submit streams never end by themselves: drain them first (items read are still committed
  // and answered) so the server's shutdown does not wait out its grace period.
  core.DrainStreams();
  db_health.reset();
  runner->Shutdown();
  core.Stop();
  batcher.Stop();
  engine.Stop();
  provider_set->Stop();
  handoff.Stop();
  ANCHORD_LOG(Info) << "stopped";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  anchord::DisableMutexDeadlockDetection();  // before any thread starts
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {
    ANCHORD_LOG(Error) << "fatal: " << e.what();
    return 1;
  }
}
