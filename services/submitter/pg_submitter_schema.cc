#include "services/submitter/pg_submitter_schema.h"

#include "libs/common/status_macros.h"
#include "services/submitter/pg_submitter_store.h"
#include "libs/digest/stored_digest.h"
#include "services/submitter/store_rows.h"

namespace anchord::submitter {
namespace {

// Every string column is BYTEA: file names, paths and provider messages are bytes from outside,
// not necessarily UTF-8, and must round-trip exactly (as in SQLite). Every string parameter is
// therefore bound with AddBytes.
const std::vector<ledger::Migration> kMigrations = {
    {1, "submissions, refs, batches, pauses, gates, sends", R"sql(
CREATE TABLE submissions (
  id BIGSERIAL PRIMARY KEY,
  digest BYTEA NOT NULL,
  provider BYTEA NOT NULL,
  job BYTEA NOT NULL,
  filename BYTEA NOT NULL,
  size_bytes BIGINT NOT NULL,
  mime_type BYTEA NOT NULL DEFAULT '',
  source_path BYTEA NOT NULL DEFAULT '',
  state INTEGER NOT NULL,
  idempotency_key BYTEA NOT NULL DEFAULT '',
  body BYTEA NOT NULL DEFAULT '',
  proof_id BYTEA NOT NULL DEFAULT '',
  record_state INTEGER NOT NULL DEFAULT 0,
  certificate_url BYTEA NOT NULL DEFAULT '',
  verify_url BYTEA NOT NULL DEFAULT '',
  block_height BIGINT NOT NULL DEFAULT 0,
  bitcoin_tx BYTEA NOT NULL DEFAULT '',
  provider_created_at BIGINT NOT NULL DEFAULT 0,
  confirmed_at BIGINT NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at BIGINT NOT NULL DEFAULT 0,
  error_canonical INTEGER NOT NULL DEFAULT 0,
  error_code BYTEA NOT NULL DEFAULT '',
  error_message BYTEA NOT NULL DEFAULT '',
  error_request_id BYTEA NOT NULL DEFAULT '',
  request_id BYTEA NOT NULL DEFAULT '',
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  change_seq BIGINT NOT NULL DEFAULT 1,
  handed_off_seq BIGINT NOT NULL DEFAULT 0,
  lease_owner BYTEA NOT NULL DEFAULT '',
  lease_until BIGINT NOT NULL DEFAULT 0,
  evidence BYTEA NOT NULL DEFAULT '',
  mode INTEGER NOT NULL DEFAULT 0,
  batch_id BIGINT NOT NULL DEFAULT 0,
  nonce BYTEA NOT NULL DEFAULT '',
  merkle_path BYTEA NOT NULL DEFAULT '',
  merkle_root BYTEA NOT NULL DEFAULT '',
  leaf_count BIGINT NOT NULL DEFAULT 0,
  fallback_provider BYTEA NOT NULL DEFAULT '',
  UNIQUE (digest, provider)
);
CREATE INDEX submissions_ready ON submissions (provider, state, id);
CREATE INDEX submissions_handoff ON submissions (id)
  WHERE state IN (2, 3) AND handed_off_seq < change_seq;
CREATE INDEX submissions_unbatched ON submissions (provider, mode, batch_id, id);
CREATE INDEX submissions_batch ON submissions (batch_id) WHERE batch_id <> 0;
CREATE INDEX submissions_lease ON submissions (lease_owner) WHERE lease_until <> 0;
CREATE TABLE refs (
  id BIGSERIAL PRIMARY KEY,
  digest BYTEA NOT NULL,
  job BYTEA NOT NULL,
  source_path BYTEA NOT NULL,
  filename BYTEA NOT NULL,
  size_bytes BIGINT NOT NULL,
  mime_type BYTEA NOT NULL DEFAULT '',
  created_at BIGINT NOT NULL,
  UNIQUE (digest, job, source_path)
);
CREATE INDEX refs_digest ON refs (digest, id);
CREATE INDEX refs_job ON refs (job, digest);
CREATE TABLE gates (name BYTEA PRIMARY KEY, blocked_until BIGINT NOT NULL);
CREATE TABLE sends (bucket BYTEA NOT NULL, sent_at BIGINT NOT NULL);
CREATE INDEX sends_bucket ON sends (bucket, sent_at);
CREATE TABLE batches (
  id BIGSERIAL PRIMARY KEY,
  provider BYTEA NOT NULL,
  root BYTEA NOT NULL,
  leaf_count BIGINT NOT NULL,
  created_at BIGINT NOT NULL
);
CREATE TABLE pauses (
  provider BYTEA PRIMARY KEY,
  reason BYTEA NOT NULL,
  paused_at BIGINT NOT NULL,
  probe_at BIGINT NOT NULL
);
)sql"},
    {2, "hand-off claims", R"sql(
ALTER TABLE submissions ADD COLUMN handoff_until BIGINT NOT NULL DEFAULT 0;
)sql"},
    // A batch's leaves in tree order (batch_leaves.h); empty for batches sealed before, whose
    // leaf rows hold their own paths.
    {3, "merkle batch leaves", R"sql(
ALTER TABLE batches ADD COLUMN leaves BYTEA NOT NULL DEFAULT '';
)sql"},
    // The intake inserts a batch's rows set-based (pg_intake.h): which transaction stores a
    // digest first is settled by the unique index on its one first ref. Existing digests get
    // their lowest ref marked. refs_digest goes: lookups by digest use the UNIQUE (digest, job,
    // source_path) index, and one index fewer is written per ref.
    {4, "refs: one first ref per digest", R"sql(
ALTER TABLE refs ADD COLUMN is_first BOOLEAN NOT NULL DEFAULT false;
UPDATE refs SET is_first = true WHERE id IN (SELECT MIN(id) FROM refs GROUP BY digest);
CREATE UNIQUE INDEX refs_first ON refs (digest) WHERE is_first;
DROP INDEX refs_digest;
)sql"},
    // The SQLite store's partial indexes (submitter_store_schema.cc): each holds only the rows a
    // frequent query looks for, so the query costs what it finds, not the table. Without them
    // every worker's claim (and its wake-up time) went through all waiting Merkle leaves after
    // each intake commit, competing with the intake for the server. The indexes they replace
    // go, and so does refs_job: a job's refs are found per digest through UNIQUE (digest, job,
    // source_path), and every index costs each intake a B-tree insert.
    {5, "partial indexes for claims, backlog and waiting leaves", R"sql(
CREATE INDEX submissions_sendable ON submissions (provider, id) WHERE state IN (0, 1) AND mode <> 1;
CREATE INDEX submissions_waiting ON submissions (provider, id)
  WHERE mode = 1 AND batch_id = 0 AND state = 0;
CREATE INDEX submissions_backlog ON submissions (state) WHERE state IN (0, 1);
DROP INDEX submissions_ready;
DROP INDEX submissions_unbatched;
DROP INDEX refs_job;
)sql"},
    // A SUBMITTED batch's leaves are handed off through their batch row (pg_owed_leaves.h):
    // handoff_next is the lowest leaf id the poller may still be owed (-1: none; batches of
    // older releases, whose leaves are owed as rows), handoff_owner and handoff_until the claim
    // of the replica handing them off. The leaves are read in id order per batch, which the new
    // index gives (the old one, by batch alone, left every read a sort of the batch).
    {6, "merkle leaves handed off per batch", R"sql(
ALTER TABLE batches ADD COLUMN handoff_next BIGINT NOT NULL DEFAULT -1;
ALTER TABLE batches ADD COLUMN handoff_owner BYTEA NOT NULL DEFAULT '';
ALTER TABLE batches ADD COLUMN handoff_until BIGINT NOT NULL DEFAULT 0;
CREATE INDEX batches_owed ON batches (id) WHERE handoff_next >= 0;
CREATE INDEX submissions_batch_leaves ON submissions (batch_id, id) WHERE batch_id <> 0;
DROP INDEX submissions_batch;
)sql"},
    // Open batches (pg_batches.h, PgOpenBatches): a leaf is stored into its replica's open batch
    // of its provider, found through batches_open; the batcher seals the oldest.
    {7, "open merkle batches", R"sql(
ALTER TABLE batches ADD COLUMN opener BYTEA NOT NULL DEFAULT '';
CREATE INDEX batches_open ON batches (provider, opener, id) WHERE length(root) = 0;
)sql"},
};

}  // namespace

const std::vector<ledger::Migration>& SubmitterMigrations() { return kMigrations; }

using ledger::PgResult;

absl::StatusOr<Submission> ReadSubmission(const PgResult& s, int i) {
  Submission r;
  r.id = s.Int(i, 0);
  ANCHORD_ASSIGN_OR_RETURN(r.digest, DigestFromColumn(s.Bytes(i, 1), "submissions.digest"));
  r.provider = s.Bytes(i, 2);
  r.file.job = s.Bytes(i, 3);
  r.file.filename = s.Bytes(i, 4);
  r.file.size_bytes = s.Int(i, 5);
  r.file.mime_type = s.Bytes(i, 6);
  r.file.source_path = s.Bytes(i, 7);
  r.state = StateFromInt(s.Int(i, 8));
  r.idempotency_key = s.Bytes(i, 9);
  r.body = s.Bytes(i, 10);
  r.record.proof_id = s.Bytes(i, 11);
  r.record.record_state = static_cast<int>(s.Int(i, 12));
  r.record.certificate_url = s.Bytes(i, 13);
  r.record.verify_url = s.Bytes(i, 14);
  r.record.block_height = s.Int(i, 15);
  r.record.bitcoin_tx = s.Bytes(i, 16);
  r.record.provider_created_at = FromMs(s.Int(i, 17));
  r.record.confirmed_at = FromMs(s.Int(i, 18));
  r.attempts = static_cast<int>(s.Int(i, 19));
  r.next_attempt_at = FromMs(s.Int(i, 20));
  r.error_canonical = static_cast<int>(s.Int(i, 21));
  r.error_code = s.Bytes(i, 22);
  r.error_message = s.Bytes(i, 23);
  r.error_request_id = s.Bytes(i, 24);
  r.request_id = s.Bytes(i, 25);
  r.created_at = FromMs(s.Int(i, 26));
  r.updated_at = FromMs(s.Int(i, 27));
  r.change_seq = s.Int(i, 28);
  r.handed_off_seq = s.Int(i, 29);
  r.record.evidence = s.Bytes(i, 30);
  r.mode = RowModeFromInt(s.Int(i, 31));
  r.batch_id = s.Int(i, 32);
  r.nonce = s.Bytes(i, 33);
  r.merkle_path = s.Bytes(i, 34);
  r.merkle_root = s.Bytes(i, 35);
  r.leaf_count = s.Int(i, 36);
  r.fallback_provider = s.Bytes(i, 37);
  return r;
}

absl::StatusOr<std::vector<Submission>> ReadSubmissions(const PgResult& r) {
  std::vector<Submission> out;
  out.reserve(r.rows());
  for (int i = 0; i < r.rows(); ++i) {
    ANCHORD_ASSIGN_OR_RETURN(Submission row, ReadSubmission(r, i));
    out.push_back(std::move(row));
  }
  return out;
}

FileRef ReadFileRef(const PgResult& s, int i) {
  FileRef f;
  f.job = s.Bytes(i, 0);
  f.source_path = s.Bytes(i, 1);
  f.filename = s.Bytes(i, 2);
  f.size_bytes = s.Int(i, 3);
  f.mime_type = s.Bytes(i, 4);
  return f;
}

}  // namespace anchord::submitter
