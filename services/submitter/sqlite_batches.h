// The SQLite store's Merkle batch rows (batch_leaves.h): sealing a batch, reading its stored
// leaves, and a root's acceptance reaching its leaf rows. Each runs in the caller's session or
// transaction.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "libs/ledger/sqlite_db.h"
#include "services/submitter/batch_leaves.h"
#include "services/submitter/submitter_store.h"

namespace anchord::submitter {

// The WHERE clause finding the root row of batch ?1 in kDigestIndex (submitter_store_schema.h).
inline constexpr char kSqliteBatchRootWhere[] =
    "substr(digest, 1, 8) = substr((SELECT root FROM batches WHERE id = ?1), 1, 8) AND digest = "
    "(SELECT root FROM batches WHERE id = ?1) AND provider = (SELECT provider FROM batches WHERE "
    "id = ?1) AND mode = 2 AND batch_id = ?1";

// CreateMerkleBatch's writes: the batch row with its leaves, the root row, each leaf's batch id.
// ABORTED when a leaf is no longer waiting (the caller's transaction must then roll back).
absl::StatusOr<int64_t> SealSqliteBatch(ledger::Transaction& tx, const NewBatch& b, int64_t now_ms);
// The batch row; NOT_FOUND when there is none.
absl::StatusOr<StoredBatch> ReadSqliteBatch(ledger::Session& session, int64_t batch_id);
// The leaves of root row `root_id` (none when it is not a root) become SUBMITTED.
absl::Status SubmitSqliteLeaves(ledger::Transaction& tx, int64_t root_id, int64_t now_ms);

}  // namespace anchord::submitter
