// The SQLite poller store's schema: the tables as this release creates them, and the upgrades
// that bring a database written by an older release up to them.
#pragma once

#include "absl/status/status.h"
#include "libs/ledger/sqlite_db.h"

namespace anchord::poller {

// Creates what is missing (tables, added columns, indexes). Idempotent: the store runs it at
// every open.
absl::Status InitSqlitePollerSchema(ledger::Session& session);

}  // namespace anchord::poller
