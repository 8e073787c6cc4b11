// The SQLite store's Merkle batch rows (batch_leaves.h): sealing a batch, reading its stored
// leaves, and a root's verdict reaching its leaves. Each runs in the caller's session or
// transaction.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "libs/ledger/sqlite_db.h"
#include "services/submitter/batch_leaves.h"
#include "services/submitter/open_batches.h"
#include "services/submitter/submitter_store.h"

namespace anchord::submitter {

// The WHERE clause finding the root row of batch ?1 in kDigestIndex (submitter_store_schema.h).
inline constexpr char kSqliteBatchRootWhere[] =
    "substr(digest, 1, 8) = substr((SELECT root FROM batches WHERE id = ?1), 1, 8) AND digest = "
    "(SELECT root FROM batches WHERE id = ?1) AND provider = (SELECT provider FROM batches WHERE "
    "id = ?1) AND mode = 2 AND batch_id = ?1";

// Open batches. A Merkle leaf is stored into its provider's open batch: a batches row whose root
// is still empty (X''), which counts its leaves (leaf_count) from when it was opened (created_at).
// Sealing the batch then writes the batch row and the root row only. A leaf stored waiting with
// batch id 0 (batch_id = 0, the submissions_waiting index) and marked with its batch at the seal
// cost each leaf a second write of its whole row, the largest part of sealing
// (bench/RESULTS.md, "Issue 11, session 19"); such leaves, from databases of older releases, are
// still sealed that way, before any open batch of their provider.
//
// The intake's side, for the duration of one transaction: the open batch a new leaf goes into
// (open_batches.h).
class OpenLeafBatches final : public OpenBatchTally {
 public:
  OpenLeafBatches(ledger::Transaction& tx, int64_t max_leaves, int64_t now_ms)
      : OpenBatchTally(max_leaves), tx_(tx), now_ms_(now_ms) {}
  // Writes the leaf count of every batch taken from. Call before the commit.
  absl::Status Finish();

 private:
  absl::StatusOr<Open> FindOpen(const std::string& provider) override;
  absl::StatusOr<int64_t> OpenNew(const std::string& provider) override;

  ledger::Transaction& tx_;
  const int64_t now_ms_;
  std::optional<ledger::Statement> find_, open_;
};

// The predicate on a batches row `alias` (e.g. "b.") of an open batch.
std::string SqliteOpenBatch(absl::string_view alias);

// The batcher's reads (SubmitterStore::UnbatchedWaiting, UnbatchedLeaves): the leaves of the
// oldest waiting batch of `provider` (those of an older release's batch id 0 first, then its
// oldest open batch that holds any).
absl::StatusOr<SubmitterStore::Waiting> SqliteUnbatchedWaiting(ledger::Session& session,
                                                               const std::string& provider);
absl::StatusOr<std::vector<WaitingLeaf>> SqliteUnbatchedLeaves(ledger::Session& session,
                                                               const std::string& provider,
                                                               int limit);

// CreateMerkleBatch's writes: the batch row with its leaves, the root row, and (unless the leaves
// are those of one open batch) each leaf's batch id. ABORTED when a leaf is no longer waiting
// (the caller's transaction must then roll back).
absl::StatusOr<int64_t> SealSqliteBatch(ledger::Transaction& tx, const NewBatch& b, int64_t now_ms);
// The batch row; NOT_FOUND when there is none.
absl::StatusOr<StoredBatch> ReadSqliteBatch(ledger::Session& session, int64_t batch_id);
// The leaves of root row `root_id` (none when it is not a root) take `verdict` (SUBMITTED or
// FAILED) through their batch row; a leaf row stored QUEUED reads as it (EffectiveState).
absl::Status DecideSqliteLeaves(ledger::Transaction& tx, int64_t root_id, SubState verdict);

// The batches whose root was decided (SUBMITTED or FAILED), by id: what a leaf row stored
// QUEUED in one of them reads as (EffectiveState), for a reader that counts leaf rows by batch
// instead of asking for each row.
absl::StatusOr<absl::flat_hash_map<int64_t, SubState>> SqliteBatchVerdicts(
    ledger::Session& session);
// For a query counting rows by state: an SQL expression over the row (`alias` e.g. "s."), the
// batch whose verdict the row's state is (a leaf row stored QUEUED), else 0. Counting by
// (state, this) and reading the batches through SqliteBatchVerdicts costs a full count what it
// cost before: EffectiveState per row is a batch lookup per leaf.
std::string SqliteCountedBatch(absl::string_view alias);
// The state of rows counted with `stored_state` and SqliteCountedBatch `batch`.
SubState SqliteCountedState(const absl::flat_hash_map<int64_t, SubState>& verdicts,
                            int64_t stored_state, int64_t batch);

// A SUBMITTED batch some of whose leaves may still be owed to the poller: those from leaf row id
// `next_leaf_id` on (a leaf is not written when it is handed off: its batch row is).
struct OwedBatch {
  int64_t batch_id = 0;
  int64_t next_leaf_id = 0;
};
absl::StatusOr<std::vector<OwedBatch>> SqliteBatchesOwed(ledger::Session& session);
// FROM, WHERE and ORDER BY of the leaves of OwedBatch {?1, ?2} still owed, oldest first (a leaf
// row written SUBMITTED on its own is owed through the hand-off index instead).
inline constexpr char kSqliteOwedLeaves[] =
    "FROM submissions INDEXED BY submissions_batch_leaves WHERE batch_id = ?1 AND mode = 1 AND "
    "batch_id <> 0 AND id >= ?2 AND state = 0 ORDER BY id";
// After acknowledgements: moves each owed batch's next_leaf_id past its leaves in `acked` (taken
// out of it) to its first leaf not acknowledged, and ends the batch's hand-off when there is none.
absl::Status AdvanceSqliteLeafHandoffs(ledger::Transaction& tx, absl::btree_set<int64_t>* acked);

}  // namespace anchord::submitter
