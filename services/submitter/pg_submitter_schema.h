// The submitter's tables on PostgreSQL: the schema (SubmitterMigrations, declared in
// pg_submitter_store.h) and the decoding of its rows, so every statement that returns
// submissions selects the same columns and reads them one way.
#pragma once

#include <vector>

#include "libs/ledger/pg_db.h"
#include "services/submitter/submitter_store.h"

namespace anchord::submitter {

// The columns ReadSubmission expects, in order: "SELECT <this> FROM submissions" or
// "RETURNING <this>".
inline constexpr char kSubmissionColumns[] =

    "id, digest, provider, job, filename, size_bytes, mime_type, source_path, state, "
    "idempotency_key, body, proof_id, record_state, certificate_url, verify_url, block_height, "
    "bitcoin_tx, provider_created_at, confirmed_at, attempts, next_attempt_at, error_canonical, "
    "error_code, error_message, error_request_id, request_id, created_at, updated_at, change_seq, "
    "handed_off_seq, evidence, mode, batch_id, nonce, merkle_path, merkle_root, leaf_count, "
    "fallback_provider";

// Row `i` of a result selected with kSubmissionColumns. DATA_LOSS when its digest is not 32 bytes.
absl::StatusOr<Submission> ReadSubmission(const ledger::PgResult& r, int i);
// Every row of such a result, in result order (the first row's error when one cannot be read).
absl::StatusOr<std::vector<Submission>> ReadSubmissions(const ledger::PgResult& r);

// The columns ReadFileRef expects, in order (table refs).
inline constexpr char kFileRefColumns[] = "job, source_path, filename, size_bytes, mime_type";
// Row `i` of a result selected with kFileRefColumns.
FileRef ReadFileRef(const ledger::PgResult& r, int i);

}  // namespace anchord::submitter
