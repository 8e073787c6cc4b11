// The SQLite submitter store's schema: the tables as this release creates them, and the upgrades
// that bring a database written by an older release up to them.
#pragma once

#include "absl/status/status.h"
#include "libs/ledger/sqlite_db.h"

namespace anchord::submitter {

// Creates what is missing (tables, added columns, indexes) and drops indexes older releases made
// that no query needs any more. Idempotent: the store runs it at every open.
absl::Status InitSqliteSubmitterSchema(ledger::Session& session);

}  // namespace anchord::submitter
