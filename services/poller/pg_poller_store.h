// The poller's store on PostgreSQL, shared by any number of poller replicas.
//
// Same contract as the SQLite store (poller_store.h). Replicas split the lookups of a round with
// ClaimChecks (FOR UPDATE SKIP LOCKED on the candidate rows, then a check lease: check_owner and
// check_until), and PendingToCheck skips proofs another replica has claimed and not yet
// released, so each replica's budget goes to different proofs. Every state change is
// conditional ("only from PENDING"), so two replicas applying the same answer change a proof once.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "libs/common/clock.h"
#include "libs/ledger/migrate.h"
#include "libs/ledger/pg_db.h"
#include "services/poller/poller_store.h"

namespace anchord::poller {

// The poller's schema migrations (component "poller").
const std::vector<ledger::Migration>& PollerMigrations();

// Migrates the schema (under the advisory lock) and opens the store over `db`. `clock` (for
// check leases) must outlive the store.
absl::StatusOr<std::unique_ptr<PollerStore>> OpenPgPollerStore(std::shared_ptr<ledger::PgDb> db,
                                                               Clock* clock = Clock::Real());

}  // namespace anchord::poller
