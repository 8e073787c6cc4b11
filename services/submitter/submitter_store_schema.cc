#include "services/submitter/submitter_store_schema.h"

#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "libs/common/status_macros.h"

namespace anchord::submitter {
namespace {

// Schema. Design notes:
//  - submissions is keyed by (digest, provider); `id` gives the FIFO order. The key is enforced
//    by the intake (one writer: it looks the digest up in the transaction that inserts it), not
//    by a UNIQUE index: see kDigestIndex.
//  - lease_owner/lease_until make a claim a row-level lease rather than an in-memory lock, so
//    several replicas could share one database later (PostgreSQL: UPDATE ... WHERE id = (SELECT id
//    ... FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING ...); an expired lease makes the row claimable
//    again if its worker died.
//  - a digest's first file (the original) is in its rows' own columns (job .. source_path), its
//    other files in refs (kRefsColumns); rows of an older release have all of them in refs
//    (FilesKept, submitter_store_schema.h).
//  - change_seq/handed_off_seq: the hand-off sends a row while handed_off_seq < change_seq, so a
//    change made while a send is in flight is never lost by the ack of the older send.
constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS submissions (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  digest BLOB NOT NULL,
  provider TEXT NOT NULL,
  job TEXT NOT NULL,
  filename TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  mime_type TEXT NOT NULL DEFAULT '',
  source_path TEXT NOT NULL DEFAULT '',
  state INTEGER NOT NULL,
  idempotency_key TEXT NOT NULL DEFAULT '',
  body BLOB NOT NULL DEFAULT '',
  proof_id TEXT NOT NULL DEFAULT '',
  record_state INTEGER NOT NULL DEFAULT 0,
  certificate_url TEXT NOT NULL DEFAULT '',
  verify_url TEXT NOT NULL DEFAULT '',
  block_height INTEGER NOT NULL DEFAULT 0,
  bitcoin_tx TEXT NOT NULL DEFAULT '',
  provider_created_at INTEGER NOT NULL DEFAULT 0,
  confirmed_at INTEGER NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL DEFAULT 0,
  error_canonical INTEGER NOT NULL DEFAULT 0,
  error_code TEXT NOT NULL DEFAULT '',
  error_message TEXT NOT NULL DEFAULT '',
  error_request_id TEXT NOT NULL DEFAULT '',
  request_id TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  change_seq INTEGER NOT NULL DEFAULT 1,
  handed_off_seq INTEGER NOT NULL DEFAULT 0,
  lease_owner TEXT NOT NULL DEFAULT '',
  lease_until INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS submissions_handoff ON submissions (id)
  WHERE state IN (2, 3) AND handed_off_seq < change_seq;
CREATE TABLE IF NOT EXISTS gates (name TEXT PRIMARY KEY, blocked_until INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS sends (bucket TEXT NOT NULL, sent_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS sends_bucket ON sends (bucket, sent_at);
CREATE TABLE IF NOT EXISTS batches (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  provider TEXT NOT NULL,
  root BLOB NOT NULL,
  leaf_count INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pauses (
  provider TEXT PRIMARY KEY,
  reason TEXT NOT NULL,
  paused_at INTEGER NOT NULL,
  probe_at INTEGER NOT NULL
);
)sql";

// The files of each digest. A ref names its digest by `sub_id`, the lowest submissions.id of the
// digest (fixed once the digest's first row is stored: rows are never deleted), not by the digest
// itself: a new digest's ref then lands at the end of the table and of its UNIQUE index, where a
// digest key would be a B-tree insert at a random place (digests are random), the largest part
// of an intake's cost after the submissions row and its digest index. The id gives
// the order of the files (the first is the original); no row is ever deleted, so no rowid is
// reused and AUTOINCREMENT (a sqlite_sequence write per insert) is not needed.
constexpr char kRefsColumns[] = R"sql( (
  id INTEGER PRIMARY KEY,
  sub_id INTEGER NOT NULL,
  job TEXT NOT NULL,
  source_path TEXT NOT NULL,
  filename TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  mime_type TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  UNIQUE (sub_id, job, source_path)
)
)sql";

std::string RefsTable(absl::string_view name) {
  return absl::StrCat("CREATE TABLE IF NOT EXISTS ", name, kRefsColumns);
}

// Databases made before refs were keyed by sub_id have refs keyed by digest: the table is rebuilt
// in the new form in one transaction (a ref whose digest has no submissions row is unreachable
// and not carried over).
absl::Status UpgradeRefs(ledger::Session& session) {
  ANCHORD_ASSIGN_OR_RETURN(std::set<std::string> columns, session.ColumnsOf("refs"));
  if (!columns.count("digest")) return session.Exec(RefsTable("refs"));
  return session.ExecInTransaction(absl::StrCat(
      "DROP TABLE IF EXISTS refs_by_sub; ", RefsTable("refs_by_sub"),
      "; INSERT INTO refs_by_sub (id, sub_id, job, source_path, filename, size_bytes, mime_type, "
      "created_at) SELECT r.id, f.sub_id, r.job, r.source_path, r.filename, r.size_bytes, "
      "r.mime_type, r.created_at FROM refs r JOIN (SELECT digest, MIN(id) AS sub_id FROM "
      "submissions GROUP BY digest) f ON f.digest = r.digest ORDER BY r.id; DROP TABLE refs; "
      "ALTER TABLE refs_by_sub RENAME TO refs"));
}

// Databases made before the digest-prefix index have UNIQUE (digest, provider): the table is
// rebuilt without it (ledger::Session::DropTableClause: rows, ids and the AUTOINCREMENT counter
// unchanged); its indexes are created again by the caller.
absl::Status DropDigestUnique(ledger::Session& session) {
  return session.DropTableClause("submissions", "UNIQUE (digest, provider)");
}

// Columns added after the first release: created on old databases at open.
const std::vector<ledger::SqliteDb::ColumnDecl> kAddedColumns = {
    {"evidence", "BLOB NOT NULL DEFAULT ''"},
    {"mode", "INTEGER NOT NULL DEFAULT 0"},
    {"batch_id", "INTEGER NOT NULL DEFAULT 0"},
    {"nonce", "BLOB NOT NULL DEFAULT ''"},
    {"merkle_path", "BLOB NOT NULL DEFAULT ''"},
    {"merkle_root", "BLOB NOT NULL DEFAULT ''"},
    {"leaf_count", "INTEGER NOT NULL DEFAULT 0"},
    {"fallback_provider", "TEXT NOT NULL DEFAULT ''"},
    // Where the row's digest keeps its files (FilesKept, submitter_store_schema.h). The default
    // is what every row of an older release is, and what a row no intake writes (a root) reads
    // as: every file in refs.
    {"files_kept", "INTEGER NOT NULL DEFAULT 0"},
};

// The batch's verdict on its leaves (EffectiveState) and where the hand-off of its SUBMITTED
// leaves stands (handoff_next: the lowest leaf row id that may still be owed to the poller, -1
// when none is). On a database of an older release, whose leaf rows were written with their
// root's verdict, the batches already decided take their root's state once, so that their leaves
// are not counted as QUEUED through the batch (CountBacklog).
absl::Status AddLeavesState(ledger::Session& session) {
  ANCHORD_ASSIGN_OR_RETURN(std::set<std::string> columns, session.ColumnsOf("batches"));
  if (columns.count("leaves_state") > 0) return absl::OkStatus();
  return session.ExecInTransaction(
      "ALTER TABLE batches ADD COLUMN leaves_state INTEGER NOT NULL DEFAULT 0; "
      "ALTER TABLE batches ADD COLUMN handoff_next INTEGER NOT NULL DEFAULT -1; "
      "UPDATE batches SET leaves_state = r.state FROM (SELECT batch_id, state FROM submissions "
      "WHERE mode = 2 AND batch_id <> 0 AND state IN (2, 3)) AS r WHERE r.batch_id = batches.id");
}

}  // namespace

std::string EffectiveState(absl::string_view alias) {
  return absl::StrCat("(CASE WHEN ", alias, "state = 0 AND ", alias, "mode = 1 AND ", alias,
                      "batch_id <> 0 THEN COALESCE((SELECT lb.leaves_state FROM batches lb WHERE "
                      "lb.id = ",
                      alias, "batch_id), 0) ELSE ", alias, "state END)");
}

std::string DigestIs(int param, absl::string_view alias) {
  return absl::StrCat("substr(", alias, "digest, 1, 8) = substr(?", param, ", 1, 8) AND ", alias,
                      "digest = ?", param);
}

absl::Status InitSqliteSubmitterSchema(ledger::Session& session) {
  ANCHORD_RETURN_IF_ERROR(session.Exec(kSchema));
  ANCHORD_RETURN_IF_ERROR(UpgradeRefs(session));
  ANCHORD_RETURN_IF_ERROR(session.AddMissingColumns("submissions", kAddedColumns));
  ANCHORD_RETURN_IF_ERROR(DropDigestUnique(session));
  // A batch's leaves in tree order (batch_leaves.h); empty for batches sealed before it existed,
  // whose leaf rows hold their own paths.
  ANCHORD_RETURN_IF_ERROR(
      session.AddMissingColumns("batches", {{"leaves", "BLOB NOT NULL DEFAULT ''"}}));
  ANCHORD_RETURN_IF_ERROR(AddLeavesState(session));
  // Partial indexes hold only the rows a frequent query looks for, so that query costs what it
  // finds, not the table: without them a table of waiting Merkle leaves was scanned by every
  // worker's claim after every intake commit (sendable), by the backpressure check every 200 ms
  // (backlog), by the batcher's look every 200 ms (waiting: the count is read from the index
  // alone) and by the hand-off for each window of proofs (handoff).
  // The digest lookup (kDigestIndex) is by the digest's first 8 bytes: a random key either way,
  // and every intake commit rewrites the index pages its rows land on, nearly all of them for a
  // commit of thousands; an 8-byte key (and a rowid) makes the index a third of the size of
  // (digest, provider) and each commit writes a third as much (bench/RESULTS.md, session 7).
  // Every index costs each intake a B-tree insert at a random place (digests are random), so
  // only those a query needs are kept: refs are found through their UNIQUE (sub_id, job,
  // source_path) index; the indexes dropped here were made redundant by it and by the partial
  // ones below.
  return session.Exec(
      "DROP INDEX IF EXISTS submissions_ready; DROP INDEX IF EXISTS refs_digest; "
      "DROP INDEX IF EXISTS refs_job; DROP INDEX IF EXISTS submissions_unbatched; "
      "DROP INDEX IF EXISTS submissions_backlog; DROP INDEX IF EXISTS submissions_backlog_rows; "
      "CREATE INDEX IF NOT EXISTS submissions_by_digest ON submissions (substr(digest, 1, 8)); "
      // Leaves stored with batch id 0 by an older release, until they are sealed (a leaf of
      // this release is stored into an open batch: submissions_batch_leaves).
      "CREATE INDEX IF NOT EXISTS submissions_waiting ON submissions (provider, id) "
      "WHERE mode = 1 AND batch_id = 0 AND state = 0; "
      "CREATE INDEX IF NOT EXISTS submissions_sendable ON submissions (provider, id) "
      "WHERE state IN (0, 1) AND mode <> 1; "
      // The backlog of rows sent on their own (kSqliteBacklogQuery). Leaves are counted through
      // their batch (open or sealed), so a leaf enters no backlog index: submissions_backlog_rows,
      // which also held the waiting leaves, cost each leaf an index insert at intake and a delete
      // at its seal.
      "CREATE INDEX IF NOT EXISTS submissions_backlog_files ON submissions (state) "
      "WHERE state IN (0, 1) AND mode <> 1; "
      "CREATE INDEX IF NOT EXISTS submissions_handoff ON submissions (id) "
      "WHERE state IN (2, 3) AND handed_off_seq < change_seq; "
      // A batch's leaves, from their intake into an open batch on: the batcher reads an open
      // batch's leaves, and a root's acceptance or failure reaches its leaves, through this (not
      // a table scan).
      "CREATE INDEX IF NOT EXISTS submissions_batch_leaves ON submissions (batch_id) "
      "WHERE mode = 1 AND batch_id <> 0; "
      "CREATE INDEX IF NOT EXISTS batches_handoff ON batches (id) WHERE handoff_next >= 0; "
      // The open batches (sqlite_batches.h), where the intake puts each new leaf.
      "CREATE INDEX IF NOT EXISTS batches_open ON batches (provider, id) WHERE length(root) = 0");
}

}  // namespace anchord::submitter
