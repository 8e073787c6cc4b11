#include "services/poller/poller_store_schema.h"

#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "anchord/v1/common.pb.h"
#include "libs/common/status_macros.h"
#include "services/poller/poller_store_rows.h"

namespace anchord::poller {
namespace {

// proofs is keyed by (digest, provider). The key is enforced by Track (one writer: it looks the
// pair up in the transaction that inserts it, poller_store_track.cc), not by a UNIQUE index: see
// proofs_by_digest in InitSqlitePollerSchema.
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
  updated_at INTEGER NOT NULL DEFAULT 0
);
)sql";

// The tree of each Merkle root handed off in the batch form (SealedBatch::encoded(): 48 bytes a
// leaf), written once per root; its leaves' rows carry leaf_index instead of a path (about half
// of a path-form leaf row). Keyed by the root digest rather than by the root proof's seq: the
// tree is the root's, whatever provider anchors it (a root with two providers has one tree), a
// reader holds the leaf's merkle_root and not the root row's seq, and a root names its tree's
// content (the batch's nonces make roots unique, and a tree is checked to lead to its root when
// written and when read), so a second copy is never needed. One index entry per root (thousands
// of leaves) is a negligible write.
constexpr char kTreesTable[] = R"sql(
CREATE TABLE IF NOT EXISTS merkle_trees (
  root BLOB PRIMARY KEY,
  leaves BLOB NOT NULL
);
)sql";

// The files of each digest. A file names its digest by `proof_seq`, the lowest proofs.seq of the
// digest (fixed once the digest's first proof is stored: proofs are never deleted), not by the
// digest itself: a new digest's file then lands at the end of the table and of its UNIQUE index,
// where a digest key was a B-tree insert at a random place (digests are random), one of the two
// largest parts of a hand-off's disk writes (bench/results/s6-poller.md). The id gives the order
// of the files (the first is the original); no file is ever deleted, so no id is reused and
// AUTOINCREMENT (a sqlite_sequence write per insert) is not needed.
constexpr char kFilesColumns[] = R"sql( (
  id INTEGER PRIMARY KEY,
  proof_seq INTEGER NOT NULL,
  job TEXT NOT NULL,
  source_path TEXT NOT NULL,
  filename TEXT NOT NULL,
  size_bytes INTEGER NOT NULL,
  mime_type TEXT NOT NULL,
  UNIQUE (proof_seq, job, source_path)
)
)sql";

std::string FilesTable(absl::string_view name) {
  return absl::StrCat("CREATE TABLE IF NOT EXISTS ", name, kFilesColumns);
}

// Databases made before files were keyed by proof_seq have files keyed by digest: the table is
// rebuilt in the new form in one transaction (a file whose digest has no proof is unreachable and
// not carried over; the hand-off stores a proof before its files, so there is none).
absl::Status UpgradeFiles(ledger::Session& session) {
  ANCHORD_ASSIGN_OR_RETURN(std::set<std::string> columns, session.ColumnsOf("files"));
  if (!columns.count("digest")) return session.Exec(FilesTable("files"));
  return session.ExecInTransaction(absl::StrCat(
      "DROP TABLE IF EXISTS files_by_seq; ", FilesTable("files_by_seq"),
      "; INSERT INTO files_by_seq (id, proof_seq, job, source_path, filename, size_bytes, "
      "mime_type) SELECT f.id, o.seq, f.job, f.source_path, f.filename, f.size_bytes, f.mime_type "
      "FROM files f JOIN (SELECT digest, MIN(seq) AS seq FROM proofs GROUP BY digest) o "
      "ON o.digest = f.digest ORDER BY f.id; DROP TABLE files; "
      "ALTER TABLE files_by_seq RENAME TO files"));
}

// Databases made before the digest-prefix index have UNIQUE (digest, provider): the table is
// rebuilt without it (ledger::Session::DropTableClause: rows, seqs and the AUTOINCREMENT counter
// unchanged, so a seq is never given twice). Its indexes are created again by the caller; its
// proof_counts triggers go with the old table and are re-created, with a fresh count, by
// InitProofCounts (poller_store_counts.cc), which the store runs after the schema.
absl::Status DropDigestUnique(ledger::Session& session) {
  return session.DropTableClause("proofs", "UNIQUE (digest, provider)");
}

// Columns added after the first release: created on old databases at open.
const std::vector<ledger::SqliteDb::ColumnDecl> kAddedColumns = {
    {"merkle_root", "BLOB NOT NULL DEFAULT ''"},
    {"merkle_path", "BLOB NOT NULL DEFAULT ''"},
    {"leaf_count", "INTEGER NOT NULL DEFAULT 0"},
    {"fallback_provider", "TEXT NOT NULL DEFAULT ''"},
    {"fallback_sent", "INTEGER NOT NULL DEFAULT 0"},
    {"check_owner", "TEXT NOT NULL DEFAULT ''"},
    {"check_until", "INTEGER NOT NULL DEFAULT 0"},
    // A batch-form leaf's position in its root's tree (merkle_trees), -1 otherwise, and the
    // length of the path derived from it (its merkle_path is empty): a leaf's .ots size is its
    // root's + length(merkle_path) + path_size, in SQL, without the tree.
    {"leaf_index", "INTEGER NOT NULL DEFAULT -1"},
    {"path_size", "INTEGER NOT NULL DEFAULT 0"},
    // A digest's first file, in its first proof's row (the one files.proof_seq names), and where
    // the digest's files are (FilesKept, poller_store_rows.h): a new digest's file costs no files
    // row and no entry of its UNIQUE index. The default is every file in files, as an older
    // release wrote them.
    {"files_kept", "INTEGER NOT NULL DEFAULT 0"},
    {"file_job", "TEXT NOT NULL DEFAULT ''"},
    {"file_source_path", "TEXT NOT NULL DEFAULT ''"},
    {"file_name", "TEXT NOT NULL DEFAULT ''"},
    {"file_size", "INTEGER NOT NULL DEFAULT 0"},
    {"file_mime_type", "TEXT NOT NULL DEFAULT ''"},
    // A root whose batch-form leaves may lag behind it (kSqliteLeavesBehind, poller_store_rows.h).
    {"leaves_behind", "INTEGER NOT NULL DEFAULT 0"},
};

// Sets a root's leaves_behind in the transaction that changes what its leaves take from it
// (PropagateRootToLeaves clears it): SettleStrandedLeaves then finds a root whose propagation was
// cut off without an index over its leaves. A trigger, so that no statement that moves a root
// can forget it.
constexpr char kLeavesBehindTrigger[] = R"sql(
CREATE TRIGGER IF NOT EXISTS proofs_mark_leaves_behind AFTER UPDATE OF state, ots_size, stalled
  ON proofs
  WHEN NEW.leaf_count > 0 AND (OLD.state IS NOT NEW.state OR OLD.ots_size IS NOT NEW.ots_size
    OR OLD.stalled IS NOT NEW.stalled)
BEGIN
  UPDATE proofs SET leaves_behind = 1 WHERE seq = NEW.seq;
END;
)sql";

// Databases of an older release have proofs_open_leaves over every leaf, those of the batch form
// included: it is made again without them, and every root whose leaves could have been left
// behind by a propagation cut off before (final or stalled) is marked, so that
// SettleStrandedLeaves, which no longer finds batch-form leaves through that index, looks at it
// once.
absl::Status UpgradeOpenLeaves(ledger::Session& session) {
  ANCHORD_ASSIGN_OR_RETURN(const std::string sql,
                           session.StoredSqlOf("index", "proofs_open_leaves"));
  if (absl::StrContains(sql, "leaf_index < 0")) return absl::OkStatus();
  // Without the index at all: a new database (nothing to mark) or one older than the index.
  static_assert(anchord::v1::DIGEST_STATE_PENDING == 4);
  return session.ExecInTransaction(
      "DROP INDEX IF EXISTS proofs_open_leaves; "
      "UPDATE proofs SET leaves_behind = 1 WHERE leaf_count > 0 AND (state <> 4 OR stalled = 1)");
}

}  // namespace

std::string DigestIs(int param, absl::string_view alias) {
  return absl::StrCat("substr(", alias, "digest, 1, 8) = substr(?", param, ", 1, 8) AND ", alias,
                      "digest = ?", param);
}

absl::Status InitSqlitePollerSchema(ledger::Session& session) {
  ANCHORD_RETURN_IF_ERROR(session.Exec(kSchema));
  ANCHORD_RETURN_IF_ERROR(session.Exec(kTreesTable));
  // Before DropDigestUnique: a files table keyed by digest is from a release older than the
  // prefix index, so its GROUP BY digest still reads the UNIQUE (digest, provider) index in order.
  ANCHORD_RETURN_IF_ERROR(UpgradeFiles(session));
  ANCHORD_RETURN_IF_ERROR(session.AddMissingColumns("proofs", kAddedColumns));
  ANCHORD_RETURN_IF_ERROR(DropDigestUnique(session));
  // After DropDigestUnique: a rebuilt table has lost its triggers.
  ANCHORD_RETURN_IF_ERROR(UpgradeOpenLeaves(session));
  ANCHORD_RETURN_IF_ERROR(session.Exec(kLeavesBehindTrigger));
  // Indexes that keep a polling round's reads independent of the backlog (bench/RESULTS.md,
  // "Large backlogs"): the walk's scan of non-leaf proofs by seq, the stall check by age (and
  // the gauges' counts from the index alone), and a root's leaves that may still change (its
  // literals are states: a partial index condition cannot take a bound parameter).
  //
  // Every index entry is written by every hand-off, and a batch hands off thousands of leaves
  // (bench/RESULTS.md, "the poller's Track path"), so an index holds leaves only where a query
  // that reads leaves needs it. The check order (PendingToCheck, ConfirmedWithoutOts: never
  // leaves) is partial; it replaces proofs_by_provider_state, which held every proof. The files'
  // job lookups (`f.proof_seq = ? AND f.job = ?`) are served by their UNIQUE (proof_seq, job,
  // ...) index as well as by the former files_by_job (job, digest), one random-key entry per file
  // less. Databases of an older release lose the two indexes at their first open here.
  //
  // One index serves both queries that look for a root's leaves (PropagateRootToLeaves by root,
  // SettleStrandedLeaves by provider): proofs_open_leaves holds a leaf only while it may still
  // change. It replaces proofs_by_root, which no query used (its condition was not stated by
  // them, so a root's propagation scanned the provider's proofs), and proofs_pending_leaves,
  // which could not serve the propagation of a root's late .ots to its CONFIRMED leaves.
  //
  // A digest's proofs are found by its first 8 bytes (proofs_by_digest, kProofsByDigest): a random
  // key either way, and every Track transaction of thousands of leaves rewrites nearly every leaf
  // page of such an index; 8-byte keys (and a rowid) make it about a third of the pages of
  // UNIQUE (digest, provider), which it replaces (bench/results/s7-pindex.md).
  static_assert(anchord::v1::DIGEST_STATE_PENDING == 4);
  static_assert(anchord::v1::DIGEST_STATE_CONFIRMED == 5);
  return session.Exec(absl::StrCat(
      "DROP INDEX IF EXISTS proofs_by_provider_state;"
      "CREATE INDEX IF NOT EXISTS proofs_by_digest ON proofs (substr(digest, 1, 8));"
      "DROP INDEX IF EXISTS files_by_job;"
      "CREATE INDEX IF NOT EXISTS proofs_check_order ON proofs "
      "(provider, state, last_checked_at, seq) WHERE length(merkle_root) = 0;"
      "CREATE INDEX IF NOT EXISTS proofs_roots_by_seq ON proofs (provider, state, seq) "
      "WHERE length(merkle_root) = 0;"
      // The stall check (NewlyStalled) and the oldest-pending gauge read roots and proofs of
      // single files only (a leaf stalls with its root), so no leaf enters their index: a leaf's
      // entry was 1.4 us of SQLite's CPU of the 5.4 us its row cost (bench/row_floor.sh), written
      // for each of the thousands of leaves of every hand-off. proofs_stall_order held them.
      // A stalled proof waiting for its fallback (leaves included: each is sent on its own) is
      // found through proofs_fallback_due, which holds only those: none while nothing stalls.
      "DROP INDEX IF EXISTS proofs_stall_order;"
      "CREATE INDEX IF NOT EXISTS proofs_stall_roots ON proofs "
      "(provider, state, stalled, pending_since) WHERE length(merkle_root) = 0;"
      "CREATE INDEX IF NOT EXISTS proofs_fallback_due ON proofs (provider, seq) WHERE ",
      kSqliteFallbackDue,
      ";"
      // ConfirmedWithoutOts through proofs_check_order stepped over every confirmed proof that
      // has its .ots, each round: an archive whose proofs are all confirmed is the end state.
      // This index holds only those still to fetch (none, nearly always).
      "CREATE INDEX IF NOT EXISTS proofs_ots_due ON proofs (provider, last_checked_at, seq) WHERE ",
      kSqliteOtsDue,
      ";"
      "DROP INDEX IF EXISTS proofs_by_root;"
      "DROP INDEX IF EXISTS proofs_pending_leaves;",
      "CREATE INDEX IF NOT EXISTS proofs_open_leaves ON proofs (provider, merkle_root, state) "
      "WHERE ",
      kSqliteOpenLeaf,
      ";"
      "CREATE INDEX IF NOT EXISTS proofs_leaves_behind ON proofs (provider, seq) WHERE ",
      kSqliteLeavesBehind, ";"));
}

}  // namespace anchord::poller
