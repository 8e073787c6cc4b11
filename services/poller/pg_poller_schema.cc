#include "services/poller/pg_poller_schema.h"

#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libs/common/status_macros.h"
#include "services/poller/pg_poller_store.h"
#include "libs/digest/stored_digest.h"
#include "services/poller/store_rows.h"

namespace anchord::poller {
namespace {

// String columns are BYTEA (bytes from outside, exact round trip); string parameters are bound
// with AddBytes.
const std::vector<ledger::Migration> kMigrations = {
    {1, "proofs, files", R"sql(
CREATE TABLE proofs (
  seq BIGSERIAL PRIMARY KEY,
  digest BYTEA NOT NULL,
  provider BYTEA NOT NULL,
  proof_id BYTEA NOT NULL DEFAULT '',
  state INTEGER NOT NULL,
  certificate_url BYTEA NOT NULL DEFAULT '',
  verify_url BYTEA NOT NULL DEFAULT '',
  block_height BIGINT NOT NULL DEFAULT 0,
  bitcoin_tx BYTEA NOT NULL DEFAULT '',
  submitted_at BIGINT NOT NULL DEFAULT 0,
  confirmed_at BIGINT NOT NULL DEFAULT 0,
  ots BYTEA,
  ots_size BIGINT NOT NULL DEFAULT 0,
  failure_code INTEGER NOT NULL DEFAULT 0,
  failure_message BYTEA NOT NULL DEFAULT '',
  failure_reason BYTEA NOT NULL DEFAULT '',
  provider_request_id BYTEA NOT NULL DEFAULT '',
  stalled INTEGER NOT NULL DEFAULT 0,
  tracked_at BIGINT NOT NULL DEFAULT 0,
  pending_since BIGINT NOT NULL DEFAULT 0,
  last_checked_at BIGINT NOT NULL DEFAULT 0,
  updated_at BIGINT NOT NULL DEFAULT 0,
  merkle_root BYTEA NOT NULL DEFAULT '',
  merkle_path BYTEA NOT NULL DEFAULT '',
  leaf_count BIGINT NOT NULL DEFAULT 0,
  fallback_provider BYTEA NOT NULL DEFAULT '',
  fallback_sent INTEGER NOT NULL DEFAULT 0,
  check_owner BYTEA NOT NULL DEFAULT '',
  check_until BIGINT NOT NULL DEFAULT 0,
  UNIQUE (digest, provider)
);
CREATE INDEX proofs_by_provider_state ON proofs (provider, state, last_checked_at, seq);
CREATE INDEX proofs_by_root ON proofs (merkle_root, provider) WHERE length(merkle_root) > 0;
CREATE TABLE files (
  id BIGSERIAL PRIMARY KEY,
  digest BYTEA NOT NULL,
  job BYTEA NOT NULL,
  source_path BYTEA NOT NULL,
  filename BYTEA NOT NULL,
  size_bytes BIGINT NOT NULL,
  mime_type BYTEA NOT NULL,
  UNIQUE (digest, job, source_path)
);
CREATE INDEX files_by_job ON files (job, digest);
CREATE INDEX files_by_digest ON files (digest, id);
)sql"},
    // The batch form of Merkle leaves (as on SQLite, poller_store_schema.cc): each root's tree
    // once, keyed by the root digest (a tree belongs to the root whatever its providers, and
    // is checked to lead to it when written and read); a leaf keeps its position in it and the
    // length of the path derived from it, so the .ots size propagation stays in SQL.
    {2, "merkle_trees, proofs.leaf_index, proofs.path_size", R"sql(
CREATE TABLE merkle_trees (
  root BYTEA PRIMARY KEY,
  leaves BYTEA NOT NULL
);
ALTER TABLE proofs ADD COLUMN leaf_index BIGINT NOT NULL DEFAULT -1,
  ADD COLUMN path_size BIGINT NOT NULL DEFAULT 0;
)sql"},
    // A polling round's work bounded by what it reads, not by the backlog (issue 11 goal 5;
    // bench/RESULTS.md, "Large backlogs"), as on SQLite (poller_store_schema.cc says why each
    // index holds what it holds):
    // - partial indexes that hold no Merkle leaf for the queries that never read leaves (the
    //   check order, the walk by seq, the stall check and the oldest pending proof), and two
    //   that hold only what a round looks for (confirmed proofs without their .ots, proofs
    //   waiting for their fallback); proofs_by_provider_state held every proof, so each of
    //   those queries skipped over every pending leaf (or every confirmed proof);
    // - proofs_open_leaves: leaves of their own path that may still change, for the bounded walk
    //   of SettleStrandedLeaves; leaves_behind (set by a trigger in the transaction that moves a
    //   root, cleared by its propagation) for roots whose batch-form leaves may lag;
    // - proof_counts: the backlog gauges without a GROUP BY over every proof. Statement triggers
    //   append each statement's net change per (provider, state, stalled) to
    //   proof_count_changes, an append-only log (no row two writers both update, so replicas'
    //   transactions never wait on a counter), which PgPollerStore::Stats folds into
    //   proof_counts. Triggers rather than the store's own code, so that no writer (an older
    //   release's replica still running during an upgrade, an operator's UPDATE) is missed; the
    //   count of the rows already there is taken in this transaction, after CREATE TRIGGER took
    //   its lock that waits for every writer in flight, so no row is missed or counted twice.
    {3, "bounded polling rounds: partial indexes, leaves_behind, proof_counts", R"sql(
DROP INDEX proofs_by_provider_state;
CREATE INDEX proofs_check_order ON proofs (provider, state, last_checked_at, seq)
  WHERE length(merkle_root) = 0;
CREATE INDEX proofs_roots_by_seq ON proofs (provider, state, seq) WHERE length(merkle_root) = 0;
CREATE INDEX proofs_stall_roots ON proofs (provider, state, stalled, pending_since)
  WHERE length(merkle_root) = 0;
CREATE INDEX proofs_ots_due ON proofs (provider, last_checked_at, seq)
  WHERE state = 5 AND ots_size = 0 AND length(merkle_root) = 0;
CREATE INDEX proofs_fallback_due ON proofs (provider, seq)
  WHERE state = 4 AND stalled = 1 AND fallback_sent = 0 AND fallback_provider <> ''::bytea;
CREATE INDEX proofs_open_leaves ON proofs (provider, merkle_root, state)
  WHERE length(merkle_root) > 0 AND leaf_index < 0 AND (state = 4 OR (state = 5 AND ots_size = 0));

ALTER TABLE proofs ADD COLUMN leaves_behind INTEGER NOT NULL DEFAULT 0;
CREATE FUNCTION proofs_mark_leaves_behind() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.leaves_behind := 1;
  RETURN NEW;
END $$;
CREATE TRIGGER proofs_mark_leaves_behind BEFORE UPDATE OF state, ots_size, stalled ON proofs
  FOR EACH ROW WHEN (NEW.leaf_count > 0 AND (OLD.state IS DISTINCT FROM NEW.state
    OR OLD.ots_size IS DISTINCT FROM NEW.ots_size OR OLD.stalled IS DISTINCT FROM NEW.stalled))
  EXECUTE FUNCTION proofs_mark_leaves_behind();
CREATE INDEX proofs_leaves_behind ON proofs (provider, seq) WHERE leaves_behind = 1;
-- Roots a propagation cut off before this release may have left behind: looked at once.
UPDATE proofs SET leaves_behind = 1 WHERE leaf_count > 0 AND (state <> 4 OR stalled = 1);

CREATE TABLE proof_counts (
  provider BYTEA NOT NULL,
  state INTEGER NOT NULL,
  stalled INTEGER NOT NULL,
  n BIGINT NOT NULL,
  PRIMARY KEY (provider, state, stalled)
);
CREATE TABLE proof_count_changes (
  id BIGSERIAL PRIMARY KEY,
  provider BYTEA NOT NULL,
  state INTEGER NOT NULL,
  stalled INTEGER NOT NULL,
  n BIGINT NOT NULL
);
CREATE FUNCTION proofs_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO proof_count_changes (provider, state, stalled, n)
    SELECT provider, state, stalled, COUNT(*) FROM new_rows GROUP BY provider, state, stalled;
  RETURN NULL;
END $$;
CREATE FUNCTION proofs_count_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- The same rows before and after: their net change per key (none for most updates).
  INSERT INTO proof_count_changes (provider, state, stalled, n)
    SELECT provider, state, stalled, SUM(n) FROM (
      SELECT provider, state, stalled, -1 AS n FROM old_rows
      UNION ALL SELECT provider, state, stalled, 1 FROM new_rows) c
    GROUP BY provider, state, stalled HAVING SUM(n) <> 0;
  RETURN NULL;
END $$;
CREATE FUNCTION proofs_count_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO proof_count_changes (provider, state, stalled, n)
    SELECT provider, state, stalled, -COUNT(*) FROM old_rows GROUP BY provider, state, stalled;
  RETURN NULL;
END $$;
CREATE TRIGGER proofs_count_insert AFTER INSERT ON proofs REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION proofs_count_inserted();
CREATE TRIGGER proofs_count_update AFTER UPDATE ON proofs
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION proofs_count_updated();
CREATE TRIGGER proofs_count_delete AFTER DELETE ON proofs REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION proofs_count_deleted();
INSERT INTO proof_counts (provider, state, stalled, n)
  SELECT provider, state, stalled, COUNT(*) FROM proofs GROUP BY provider, state, stalled;
)sql"},
};

}  // namespace

const std::vector<ledger::Migration>& PollerMigrations() { return kMigrations; }

using ledger::PgConn;
using ledger::PgParams;
using ledger::PgResult;

absl::StatusOr<ProofRow> ReadProof(const PgResult& s, int i) {
  ProofRow r;
  r.seq = s.Int(i, 0);
  ANCHORD_ASSIGN_OR_RETURN(r.digest, DigestFromColumn(s.Bytes(i, 1), "proofs.digest"));
  r.provider = s.Bytes(i, 2);
  r.proof_id = s.Bytes(i, 3);
  r.state = DigestStateFromDb(s.Int(i, 4));
  r.certificate_url = s.Bytes(i, 5);
  r.verify_url = s.Bytes(i, 6);
  r.block_height = s.Int(i, 7);
  r.bitcoin_tx = s.Bytes(i, 8);
  r.submitted_at = FromDb(s.Int(i, 9));
  r.confirmed_at = FromDb(s.Int(i, 10));
  r.ots_size = s.Int(i, 11);
  r.failure_code = static_cast<int32_t>(s.Int(i, 12));
  r.failure_message = s.Bytes(i, 13);
  r.failure_reason = s.Bytes(i, 14);
  r.provider_request_id = s.Bytes(i, 15);
  r.stalled = s.Int(i, 16) != 0;
  r.tracked_at = FromDb(s.Int(i, 17));
  r.last_checked_at = FromDb(s.Int(i, 18));
  r.updated_at = FromDb(s.Int(i, 19));
  r.merkle_root = s.Bytes(i, 20);
  r.merkle_path = s.Bytes(i, 21);
  r.leaf_count = s.Int(i, 22);
  r.fallback_provider = s.Bytes(i, 23);
  r.fallback_sent = s.Int(i, 24) != 0;
  r.leaf_index = s.Int(i, 25);
  return r;
}

absl::StatusOr<std::vector<ProofRow>> ReadProofs(PgConn& c, const std::string& sql,
                                                 const PgParams& params, bool with_files) {
  auto r = c.Exec(sql, params);
  if (!r.ok()) return r.status();
  std::vector<ProofRow> out;
  out.reserve(r->rows());
  for (int i = 0; i < r->rows(); ++i) {
    ANCHORD_ASSIGN_OR_RETURN(ProofRow row, ReadProof(*r, i));
    out.push_back(std::move(row));
  }
  if (!with_files || out.empty()) return out;
  // Every row's files in one query (one array parameter: a batch's rows outnumber the 65,535
  // parameters a statement may have).
  std::vector<std::string> digests;
  std::set<Digest> seen;
  for (const ProofRow& row : out) {
    if (seen.insert(row.digest).second) digests.emplace_back(row.digest.raw());
  }
  auto f = c.Exec(
      "SELECT digest, job, source_path, filename, size_bytes, mime_type FROM files WHERE digest = "
      "ANY($1::bytea[]) ORDER BY id",
      PgParams().AddBytesArray(digests));
  if (!f.ok()) return f.status();
  std::map<std::string, std::vector<FileRow>> files;
  for (int i = 0; i < f->rows(); ++i) {
    files[f->Bytes(i, 0)].push_back(
        FileRow{f->Bytes(i, 1), f->Bytes(i, 2), f->Bytes(i, 3), f->Int(i, 4), f->Bytes(i, 5)});
  }
  for (ProofRow& row : out) {
    auto it = files.find(row.digest.raw());
    if (it != files.end()) row.files = it->second;
  }
  return out;
}

absl::StatusOr<std::optional<ProofRow>> FindProof(PgConn& c, const Digest& digest,
                                                  const std::string& provider) {
  std::string sql = absl::StrCat("SELECT ", kProofColumns, " FROM proofs WHERE digest = $1");
  PgParams p;
  p.AddBytes(digest.bytes());
  if (!provider.empty()) {
    sql += " AND provider = $2";
    p.AddBytes(provider);
  }
  sql += " ORDER BY seq LIMIT 1";
  auto rows = ReadProofs(c, sql, p);
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return std::optional<ProofRow>();
  return std::optional<ProofRow>(std::move(rows->front()));
}

}  // namespace anchord::poller
