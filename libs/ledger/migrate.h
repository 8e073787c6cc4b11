// Versioned schema migrations for the PostgreSQL stores.
//
// Every component (submitter, poller, ratelimit) lists its migrations in order, versions 1, 2, ...
// Migrate() applies the ones the database has not seen, all in ONE transaction that first takes
// a transaction-scoped advisory lock on the component: replicas that start together queue on the
// lock, the first applies the migrations, the others find them applied and do nothing. The table
// schema_version keeps one row per (component, version) applied, with the time.
//
// A database whose schema is newer than the code (a newer release migrated it) is refused with
// FAILED_PRECONDITION saying so: an old replica must not write rows a newer schema reads
// differently.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "libs/ledger/pg_db.h"

namespace anchord::ledger {

struct Migration {
  int version;       // 1, 2, ... without gaps
  const char* what;  // one line, logged when applied
  const char* sql;   // one or more statements, run inside the migration transaction
};

// Applies the missing migrations of `component`; returns how many this call applied (0 when
// another replica already did).
absl::StatusOr<int> Migrate(PgDb& db, absl::string_view component,
                            const std::vector<Migration>& migrations);

// The schema version of `component` in the database (0 when none), for tests and status.
absl::StatusOr<int> SchemaVersion(PgDb& db, absl::string_view component);

}  // namespace anchord::ledger
