// The SQLite poller store's schema: the tables as this release creates them, and the upgrades
// that bring a database written by an older release up to them.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "libs/ledger/sqlite_db.h"

namespace anchord::poller {

// Creates what is missing (tables, added columns, indexes). Idempotent: the store runs it at
// every open.
absl::Status InitSqlitePollerSchema(ledger::Session& session);

// A digest's proofs are found through proofs_by_digest, an index of the digest's first 8 bytes
// (the schema says why): a query names the index (the planner, without statistics, could pick
// another, and a missing index then fails the query instead of scanning the table) and states its
// expression. kProofsByDigest goes after FROM or UPDATE; DigestIs(n) is the condition for the
// digest bound as ?n, on `alias` (e.g. "p.") when given.
inline constexpr char kProofsByDigest[] = "proofs INDEXED BY proofs_by_digest";
std::string DigestIs(int param, absl::string_view alias = "");

}  // namespace anchord::poller
