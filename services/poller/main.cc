// anchord-poller: follows every proof handed over by the submitter until it is confirmed in
// Bitcoin, stores the .ots evidence and streams proof events. Every flag can also be set from the
// environment variable named in its help.
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include "libs/common/build_info.h"
#include "libs/common/clock.h"
#include "libs/common/log.h"
#include "libs/common/mutex_mode.h"
#include "libs/ledger/pg_health.h"
#include "libs/ratelimit/pg_rate_limiter.h"
#include "libs/providers/factory.h"
#include "libs/providers/metrics.h"
#include "libs/rpc/server.h"
#include "services/poller/event_bus.h"
#include "services/poller/poll_engine.h"
#include "services/poller/poller_metrics.h"
#include "services/poller/poller_service.h"
#include "services/poller/poller_store.h"
#include "services/poller/pg_event_relay.h"
#include "services/poller/pg_poller_store.h"
#include "services/poller/fallback.h"
#include "services/poller/webhook.h"
#include "libs/rpc/security.h"
#include "libs/common/worker_pool.h"

int main(int argc, char** argv) {
  anchord::DisableMutexDeadlockDetection();  // before any thread starts
  anchord::rpc::BlockTerminationSignals();

  CLI::App app{"anchord-poller: follows proofs until confirmed and keeps their .ots evidence"};
  app.set_version_flag("--version", anchord::BuildInfo());
  std::string listen = "127.0.0.1:0", port_file, metrics_listen, metrics_port_file;
  std::string data_dir = ".", log_level = "info";
  double poll_interval_s = 30, stall_after_s = 86400;
  int max_lookups = 100, workers = 2, watch_queue = 32768;
  anchord::providers::ProviderSettings provider_settings;
  std::string webhook_listen, webhook_port_file, submitter_addr;
  std::string database_url, database_url_file;
  const anchord::poller::SqlitePollerStoreOptions sqlite_defaults;
  int64_t sqlite_mmap_mib = sqlite_defaults.mmap_bytes >> 20;
  int64_t sqlite_cache_mib = sqlite_defaults.cache_kib >> 10;
  // The poller's share of the per-key general budget (120/min for proofd): the submitter keeps
  // 40 (its 30 creates plus lookups that resolve duplicates), the poller takes 80. The two
  // defaults add up to the documented limit, so a default deployment never exceeds it.
  provider_settings.client_name = "poller";
  provider_settings.proofd_general_limit = 80;
  // The TLS flags secure both ports and the channel to the submitter's internal port.
  anchord::rpc::ServerOptions server_options;
  server_options.internal.listen_address = "127.0.0.1:0";
  try {
    app.add_option("--listen", listen, "gRPC host:port (port 0 picks one)")
        ->envname("ANCHORD_LISTEN");
    app.add_option("--port-file", port_file, "write the bound gRPC port here")
        ->envname("ANCHORD_PORT_FILE");
    app.add_option("--metrics-listen", metrics_listen, "host:port for /metrics; empty disables")
        ->envname("ANCHORD_METRICS_LISTEN");
    app.add_option("--metrics-port-file", metrics_port_file, "write the bound metrics port here")
        ->envname("ANCHORD_METRICS_PORT_FILE");
    app.add_option("--data-dir", data_dir, "directory of poller.db")->envname("ANCHORD_DATA_DIR");
    app.add_option("--log-level", log_level, "debug, info, warning or error")
        ->envname("ANCHORD_LOG_LEVEL");
    app.add_option("--poll-interval-seconds", poll_interval_s,
                   "time between two polling rounds per provider")
        ->envname("ANCHORD_POLL_INTERVAL_SECONDS")
        ->check(CLI::Range(0.05, 86400.0))
        ->capture_default_str();
    app.add_option("--stall-after-seconds", stall_after_s,
                   "a proof pending longer than this is reported STALLED ")
        ->envname("ANCHORD_STALL_AFTER_SECONDS")
        ->check(CLI::Range(1.0, 86400.0 * 365))
        ->capture_default_str();
    app.add_option("--max-lookups-per-round", max_lookups,
                   "provider lookups (and .ots downloads) per round and provider ")
        ->envname("ANCHORD_MAX_LOOKUPS_PER_ROUND")
        ->check(CLI::Range(1, 100000))
        ->capture_default_str();
    app.add_option("--workers", workers, "threads for database work")
        ->envname("ANCHORD_POLLER_WORKERS")
        ->check(CLI::Range(1, 64))
        ->capture_default_str();
    app.add_option("--watch-queue", watch_queue,
                   "events a Watch stream may lag behind before it is ended ")
        ->envname("ANCHORD_POLLER_WATCH_QUEUE")
        ->check(CLI::Range(1, 1000000))
        ->capture_default_str();
    app.add_option("--webhook-listen", webhook_listen,
                   "host:port of the provider callback endpoint (POST /callbacks/<provider>); "
                   "empty disables")
        ->envname("ANCHORD_WEBHOOK_LISTEN");
    app.add_option("--webhook-port-file", webhook_port_file, "write the bound webhook port here")
        ->envname("ANCHORD_WEBHOOK_PORT_FILE");
    app.add_option("--submitter", submitter_addr,
                   "the submitter's INTERNAL host:port (its --internal-listen), asked to re-anchor "
                   "stalled proofs with their fallback provider; empty: stalls are only flagged")
        ->envname("ANCHORD_SUBMITTER_ADDR");
    app.add_option("--sqlite-mmap-mib", sqlite_mmap_mib,
                   "MiB of poller.db SQLite may map into memory (bounds the poller's resident "
                   "memory with a large backlog; 0 reads through SQLite's page cache only)")
        ->envname("ANCHORD_SQLITE_MMAP_MIB")
        ->check(CLI::Range(0, 1 << 20))
        ->capture_default_str();
    app.add_option("--sqlite-cache-mib", sqlite_cache_mib,
                   "MiB of SQLite page cache for poller.db (pages beyond it are read through the "
                   "mapping or the kernel's page cache)")
        ->envname("ANCHORD_SQLITE_CACHE_MIB")
        ->check(CLI::Range(1, 1 << 16))
        ->capture_default_str();
    app.add_option("--database-url", database_url,
                   "PostgreSQL URL shared by poller replicas; empty keeps poller.db (SQLite)")
        ->envname("ANCHORD_DATABASE_URL");
    app.add_option("--database-url-file", database_url_file,
                   "file holding the PostgreSQL URL (a mounted Secret)")
        ->envname("ANCHORD_DATABASE_URL_FILE");
    anchord::providers::AddProviderFlags(app, &provider_settings);
    anchord::rpc::AddTransportFlags(app, &server_options.security);
    anchord::rpc::AddConnectionFlags(app, &server_options);
    anchord::rpc::AddInternalFlags(app, &server_options.internal);
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    ANCHORD_LOG(Error) << "flags: " << e.what();
    return 2;
  }
  anchord::InitLogging("poller", anchord::ParseLogLevel(log_level));

  // With a database URL the proofs (and the lookup budgets) live in PostgreSQL, shared by every
  // replica; without one, in DATA_DIR/poller.db as before.
  anchord::ledger::PgOptions pg_options;
  pg_options.pool_size = workers + 4;  // RPC workers, one engine thread per provider, relay
  pg_options.application_name = "anchord-poller";
  auto db_or = anchord::ledger::OpenDatabaseFromFlags(database_url, database_url_file, pg_options);
  if (!db_or.ok()) {
    ANCHORD_LOG(Error) << db_or.status();
    return db_or.status().code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
  }
  std::shared_ptr<anchord::ledger::PgDb> db = std::move(*db_or);
  absl::StatusOr<std::unique_ptr<anchord::poller::PollerStore>> store;
  if (db != nullptr) {
    store = anchord::poller::OpenPgPollerStore(db);
    if (store.ok()) {
      if (absl::Status mst = anchord::ratelimit::MigratePgRateLimiter(*db); !mst.ok()) store = mst;
    }
  } else {
    struct stat st;
    if (stat(data_dir.c_str(), &st) != 0 && mkdir(data_dir.c_str(), 0700) != 0) {
      ANCHORD_LOG(Error) << "--data-dir: cannot create " << data_dir;
      return 2;
    }
    anchord::poller::SqlitePollerStoreOptions sqlite_options;
    sqlite_options.mmap_bytes = sqlite_mmap_mib << 20;
    sqlite_options.cache_kib = sqlite_cache_mib << 10;
    store = anchord::poller::OpenSqlitePollerStore(data_dir + "/poller.db", sqlite_options);
  }
  if (!store.ok()) {
    ANCHORD_LOG(Error) << "poller store: " << store.status();
    return 1;
  }

  auto registry = std::make_shared<prometheus::Registry>();
  anchord::poller::PollerMetrics metrics(*registry);
  anchord::providers::ProviderMetrics provider_metrics(*registry);
  anchord::providers::LimiterFactory limiters;
  if (db != nullptr) {
    // The lookup budgets are shared by all poller replicas (one bucket each in the database).
    limiters = [db](const std::string& name, anchord::ratelimit::RateLimit limit) {
      return anchord::ratelimit::MakePgRateLimiter(db, "poller:" + name, limit);
    };
  }
  auto providers =
      anchord::providers::ProviderSet::Create(provider_settings, &provider_metrics, limiters);
  if (!providers.ok()) {
    ANCHORD_LOG(Error) << providers.status();
    return 2;
  }
  // Pre-create the 429 counter per configured provider at 0: the family is then visible to the
  // dashboard and alerts (and rate() has a baseline) before the first 429 arrives.
  for (anchord::providers::Provider* p : (*providers)->All()) {
    provider_metrics.rate_limited.Add({{"provider", p->name()}});
  }

  anchord::Clock* clock = anchord::Clock::Real();
  anchord::poller::EventBus bus;
  // Replicas: every event published here reaches the other replicas' Watch streams, and theirs
  // reach ours (pg_event_relay.h).
  std::unique_ptr<anchord::poller::PgEventRelay> relay;
  if (db != nullptr) {
    relay = std::make_unique<anchord::poller::PgEventRelay>(db, &bus, store->get(), clock);
    relay->Start();
  }
  anchord::WorkerPool pool(workers, 100000, "store-pool");
  anchord::poller::PollerServiceOptions service_options;
  service_options.watch_queue_capacity = static_cast<size_t>(watch_queue);
  for (auto* p : (*providers)->All()) {
    if (!p->OffersOts()) service_options.providers_without_ots.insert(p->name());
  }
  anchord::poller::PollerServiceImpl poller_service(store->get(), &bus, &metrics, clock, &pool,
                                                    service_options);
  // The same service on the internal port, where only Track and TrackBatch are served (to peers
  // with the token).
  auto internal_gate = anchord::rpc::RpcGate::InternalFromFile(server_options.internal.token_file);
  if (!internal_gate.ok()) {
    ANCHORD_LOG(Error) << internal_gate.status();
    return 2;
  }
  anchord::poller::PollerServiceOptions internal_options = service_options;
  internal_options.gate = *internal_gate;
  anchord::poller::PollerServiceImpl internal_service(store->get(), &bus, &metrics, clock, &pool,
                                                      internal_options);
  anchord::poller::StatusServiceImpl status_service(store->get(), &pool);

  anchord::poller::PollEngineOptions engine_options;
  engine_options.poll_interval = absl::Seconds(poll_interval_s);
  engine_options.stall_after = absl::Seconds(stall_after_s);
  engine_options.max_lookups_per_round = max_lookups;
  std::shared_ptr<grpc::Channel> submitter_channel;
  if (!submitter_addr.empty()) {
    auto channel = anchord::rpc::MakeInternalChannel(submitter_addr, server_options.security,
                                                     server_options.internal.token_file);
    if (!channel.ok()) {
      ANCHORD_LOG(Error) << "--submitter channel: " << channel.status();
      return 2;
    }
    submitter_channel = *channel;
    engine_options.fallback = [submitter_channel](const anchord::poller::ProofRow& row) {
      return anchord::poller::RequestFallback(submitter_channel, row);
    };
  }
  anchord::poller::PollEngine engine(store->get(), &bus, &metrics, clock, (*providers)->All(),
                                     engine_options);

  // Before the gRPC port file appears, so whoever waits for it finds the webhook port too.
  std::unique_ptr<anchord::poller::Webhook> webhook;
  if (!webhook_listen.empty()) {
    std::map<std::string, anchord::providers::Provider*> by_name;
    for (auto* p : (*providers)->All()) by_name[p->name()] = p;
    auto started = anchord::poller::Webhook::Start(webhook_listen, by_name, &engine, &metrics);
    if (!started.ok()) {
      ANCHORD_LOG(Error) << started.status();
      return 2;
    }
    webhook = std::move(*started);
    if (!webhook_port_file.empty()) {
      std::ofstream(webhook_port_file) << webhook->port() << "\n";
    }
    ANCHORD_LOG(Info) << "webhook listening on port " << webhook->port();
  }
  server_options.service_name = "poller";
  server_options.listen_address = listen;
  server_options.port_file = port_file;
  server_options.metrics_address = metrics_listen;
  server_options.metrics_port_file = metrics_port_file;
  server_options.health_service_names = {"anchord.v1.PollerService", "anchord.v1.StatusService"};
  auto runner = anchord::rpc::ServerRunner::Start(
      server_options, {&poller_service, &status_service}, registry, {&internal_service});
  if (!runner.ok()) {
    ANCHORD_LOG(Error) << runner.status();
    return 1;
  }
  engine.RefreshGauges();
  engine.Start();
  // NOT_SERVING while the database is unreachable (work waits and resumes when it is back).
  std::unique_ptr<anchord::ledger::PgHealthWatch> db_health;
  if (db != nullptr) {
    anchord::rpc::ServerRunner* runner_ptr = runner->get();
    db_health = std::make_unique<anchord::ledger::PgHealthWatch>(
        db, [runner_ptr](bool serving) { runner_ptr->SetServing(serving); });
  }

  int sig = anchord::rpc::WaitForTerminationSignal();
  ANCHORD_LOG(Info) << "signal " << sig << ": draining";
  // Watch streams never end by themselves: end them first so the drain does not wait out the
  // grace period. Then stop the RPCs, wake pacing waits, stop the engine and the workers.
  db_health.reset();
  if (webhook) webhook->Stop();
  poller_service.EndWatches();
  internal_service.EndWatches();
  (*runner)->Shutdown();
  (*providers)->Stop();
  engine.Stop();
  pool.Stop();
  relay.reset();
  ANCHORD_LOG(Info) << "stopped";
  return 0;
}
