// The poller's tables on PostgreSQL: the schema (PollerMigrations, declared in
// pg_poller_store.h) and the reading of proof rows with their files, so every statement that
// returns proofs selects the same columns and decodes them one way.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/ledger/pg_db.h"
#include "services/poller/poller_store.h"

namespace anchord::poller {

// The proofs columns ReadProof expects, in order: "SELECT <this> FROM proofs" or
// "RETURNING <this>".
inline constexpr char kProofColumns[] =
    "seq, digest, provider, proof_id, state, certificate_url, verify_url, block_height, "
    "bitcoin_tx, submitted_at, confirmed_at, ots_size, failure_code, failure_message, "
    "failure_reason, provider_request_id, stalled, tracked_at, last_checked_at, updated_at, "
    "merkle_root, merkle_path, leaf_count, fallback_provider, fallback_sent, leaf_index";

// The conditions of partial indexes of migration 3 (pg_poller_schema.cc), stated word for word
// by the queries that read them: PostgreSQL uses a partial index only for a query whose WHERE
// implies its condition, and proves that from clauses written the same way (a bound parameter
// in place of a literal does not do). 4 is DIGEST_STATE_PENDING, 5 CONFIRMED.
//
// proofs_open_leaves: a leaf of its own path that may still change.
inline constexpr char kPgOpenLeaf[] =
    "length(merkle_root) > 0 AND leaf_index < 0 AND (state = 4 OR (state = 5 AND ots_size = 0))";
// proofs_ots_due: a confirmed proof (not a leaf) whose .ots is still to fetch.
inline constexpr char kPgOtsDue[] = "state = 5 AND ots_size = 0 AND length(merkle_root) = 0";
// proofs_fallback_due: a pending proof, stalled, whose fallback provider was not asked yet.
inline constexpr char kPgFallbackDue[] =
    "state = 4 AND stalled = 1 AND fallback_sent = 0 AND fallback_provider <> ''::bytea";

// Row `i` of a result selected with kProofColumns (without its files). DATA_LOSS when its digest
// is not 32 bytes.
absl::StatusOr<ProofRow> ReadProof(const ledger::PgResult& r, int i);

// Runs `sql` (selecting kProofColumns) on `c` and decodes its rows, in result order; with
// `with_files` each row also gets its files (one more query for all of them).
absl::StatusOr<std::vector<ProofRow>> ReadProofs(ledger::PgConn& c, const std::string& sql,
                                                 const ledger::PgParams& params,
                                                 bool with_files = true);

// The proof of `digest` at `provider` (the first one of the digest when `provider` is empty),
// with its files; nullopt when there is none.
absl::StatusOr<std::optional<ProofRow>> FindProof(ledger::PgConn& c, const Digest& digest,
                                                  const std::string& provider);

}  // namespace anchord::poller
