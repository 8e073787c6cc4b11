// The submitter's store on PostgreSQL, shared by any number of submitter replicas.
//
// Same contract as the SQLite store (submitter_store.h), plus what sharing needs:
//  - Claims are `FOR UPDATE SKIP LOCKED` under a lease: the row's lease_owner names this replica
//    (the engine's owner + "@" + a random instance id) and lease_until is kept at most
//    `lease_term` ahead by a heartbeat while the replica holds the row. A replica that dies stops
//    renewing, so its rows are free again within lease_term and another replica re-sends them with
//    the stored body and Idempotency-Key (MarkPrepared commits before the send).
//  - ReleaseAllLeases frees only this replica's own leases: other replicas' leases are live.
//  - ReleaseLease frees a row only while this replica still holds it.
//  - PendingHandoff claims the rows it returns for handoff_lease (SKIP LOCKED), so replicas hand
//    different rows to the pollers; an unacknowledged row is offered again after the lease.
//  - Everything else is conditional or idempotent, so a transaction re-run after a lost
//    connection (ledger::PgDb) has the effect of one run.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "libs/common/clock.h"
#include "libs/ledger/migrate.h"
#include "libs/ledger/pg_db.h"
#include "services/submitter/submitter_store.h"

namespace anchord::submitter {

struct PgSubmitterOptions {
  // Longest time a claimed row stays leased without a heartbeat; 0 keeps the caller's lease_until
  // and runs no heartbeat (the single-process behaviour; tests with fake clocks).
  absl::Duration lease_term = absl::Seconds(60);
  absl::Duration heartbeat = absl::Seconds(5);
  // PendingHandoff gives its rows to this replica for this long, so replicas hand different rows
  // off; 0 returns every pending row (single process).
  absl::Duration handoff_lease = absl::Seconds(30);
  Clock* clock = Clock::Real();  // heartbeat times; must outlive the store
};

// The submitter's schema migrations (component "submitter").
const std::vector<ledger::Migration>& SubmitterMigrations();

// Migrates the schema (under the advisory lock) and opens the store over `db`.
absl::StatusOr<std::unique_ptr<SubmitterStore>> OpenPgSubmitterStore(
    std::shared_ptr<ledger::PgDb> db, PgSubmitterOptions options = PgSubmitterOptions());

}  // namespace anchord::submitter
