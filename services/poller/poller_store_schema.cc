#include "services/poller/poller_store_schema.h"

#include <vector>

#include "anchord/v1/common.pb.h"
#include "libs/common/status_macros.h"

namespace anchord::poller {
namespace {

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS proofs (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  digest BLOB NOT NULL,
  provider TEXT NOT NULL,
  proof_id TEXT NOT NULL DEFAULT '',
  state INTEGER NOT NULL,
  certificate_url TEXT NOT NULL DEFAULT '',
  verify_url TEXT NOT NULL DEFAULT '',
  block_height INTEGER NOT NULL DEFAULT 0,
  bitcoin_tx TEXT NOT NULL DEFAULT '',
  submitted_at INTEGER NOT NULL DEFAULT 0,
  confirmed_at INTEGER NOT NULL DEFAULT 0,
  ots BLOB,
  ots_size INTEGER NOT NULL DEFAULT 0,
  failure_code INTEGER NOT NULL DEFAULT 0,
  failure_message TEXT NOT NULL DEFAULT '',
  failure_reason TEXT NOT NULL DEFAULT '',
  provider_request_id TEXT NOT NULL DEFAULT '',
  stalled INTEGER NOT NULL DEFAULT 0,
  tracked_at INTEGER NOT NULL DEFAULT 0,
  pending_since INTEGER NOT NULL DEFAULT 0,
  last_checked_at INTEGER NOT NULL DEFAULT 0,
  updated_at INTEGER NOT NULL DEFAULT 0,
  UNIQUE (digest, provider)
);
CREATE TABLE IF NOT EXISTS files (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  digest BLOB NOT NULL,
  job TEXT NOT NULL,
  source_path TEXT NOT NULL,
  filename TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  mime_type TEXT NOT NULL,
  UNIQUE (digest, job, source_path)
);
)sql";

// Columns added after the first release: created on old databases at open.
const std::vector<ledger::SqliteDb::ColumnDecl> kAddedColumns = {
    {"merkle_root", "BLOB NOT NULL DEFAULT ''"},
    {"merkle_path", "BLOB NOT NULL DEFAULT ''"},
    {"leaf_count", "INTEGER NOT NULL DEFAULT 0"},
    {"fallback_provider", "TEXT NOT NULL DEFAULT ''"},
    {"fallback_sent", "INTEGER NOT NULL DEFAULT 0"},
    {"check_owner", "TEXT NOT NULL DEFAULT ''"},
    {"check_until", "INTEGER NOT NULL DEFAULT 0"},
};

}  // namespace

absl::Status InitSqlitePollerSchema(ledger::Session& session) {
  ANCHORD_RETURN_IF_ERROR(session.Exec(kSchema));
  ANCHORD_RETURN_IF_ERROR(session.AddMissingColumns("proofs", kAddedColumns));
  // Indexes that keep a polling round's reads independent of the backlog (bench/RESULTS.md,
  // "Large backlogs"): the walk's scan of non-leaf proofs by seq, the stall check by age (and
  // the gauges' counts from the index alone), and the pending leaves' roots (the literal 4 is
  // DIGEST_STATE_PENDING: a partial index condition cannot take a bound parameter).
  //
  // Every index entry is written by every hand-off, and a batch hands off thousands of leaves
  // (bench/RESULTS.md, "the poller's Track path"), so an index holds leaves only where a query
  // that reads leaves needs it. The check order (PendingToCheck, ConfirmedWithoutOts: never
  // leaves) is partial; it replaces proofs_by_provider_state, which held every proof. The files'
  // job lookups (`f.digest = ? AND f.job = ?`) are served by their UNIQUE (digest, job, ...)
  // index as well as by the former files_by_job (job, digest), one random-key entry per file
  // less. Databases of an older release lose the two indexes at their first open here.
  static_assert(anchord::v1::DIGEST_STATE_PENDING == 4);
  return session.Exec(
      "DROP INDEX IF EXISTS proofs_by_provider_state;"
      "DROP INDEX IF EXISTS files_by_job;"
      "CREATE INDEX IF NOT EXISTS proofs_check_order ON proofs "
      "(provider, state, last_checked_at, seq) WHERE length(merkle_root) = 0;"
      "CREATE INDEX IF NOT EXISTS proofs_by_root ON proofs (merkle_root, provider) "
      "WHERE length(merkle_root) > 0;"
      "CREATE INDEX IF NOT EXISTS proofs_roots_by_seq ON proofs (provider, state, seq) "
      "WHERE length(merkle_root) = 0;"
      "CREATE INDEX IF NOT EXISTS proofs_stall_order ON proofs "
      "(provider, state, stalled, pending_since);"
      "CREATE INDEX IF NOT EXISTS proofs_pending_leaves ON proofs (provider, merkle_root) "
      "WHERE state = 4 AND length(merkle_root) > 0;");
}

}  // namespace anchord::poller
