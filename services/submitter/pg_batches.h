// The PostgreSQL store's Merkle batch rows (batch_leaves.h): sealing a batch, reading its stored
// leaves, and a root's acceptance reaching its leaf rows. Each runs on the caller's connection,
// inside its transaction where it writes.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "libs/ledger/pg_db.h"
#include "services/submitter/batch_leaves.h"
#include "services/submitter/submitter_store.h"

namespace anchord::submitter {

// The WHERE clause finding the root row of batch $1 (through the unique (digest, provider) index).
inline constexpr char kPgBatchRootWhere[] =
    "(digest, provider) = (SELECT root, provider FROM batches WHERE id = $1) AND mode = 2 AND "
    "batch_id = $1";

// CreateMerkleBatch's writes: locks the leaves (in id order, so two batchers cannot deadlock; one
// that lost the race waits here for the winner's commit, then finds them batched: ABORTED), then
// the batch row with its leaves, the root row, each leaf's batch id.
absl::StatusOr<int64_t> SealPgBatch(ledger::PgConn& c, const NewBatch& b, int64_t now_ms);
// The batch row; NOT_FOUND when there is none.
absl::StatusOr<StoredBatch> ReadPgBatch(ledger::PgConn& c, int64_t batch_id);
// The leaves of root row `root_id` (none when it is not a root) become SUBMITTED, owed to the
// poller through their batch row (pg_owed_leaves.h).
absl::Status SubmitPgLeaves(ledger::PgConn& c, int64_t root_id, int64_t now_ms);

}  // namespace anchord::submitter
