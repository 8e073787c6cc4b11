// The PostgreSQL store's Merkle batch rows (batch_leaves.h): sealing a batch, reading its stored
// leaves, and a root's acceptance reaching its leaf rows. Each runs on the caller's connection,
// inside its transaction where it writes.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "libs/ledger/pg_db.h"
#include "services/submitter/batch_leaves.h"
#include "services/submitter/open_batches.h"
#include "services/submitter/submitter_store.h"

namespace anchord::submitter {

// The WHERE clause finding the root row of batch $1 (through the unique (digest, provider) index).
inline constexpr char kPgBatchRootWhere[] =
    "(digest, provider) = (SELECT root, provider FROM batches WHERE id = $1) AND mode = 2 AND "
    "batch_id = $1";

// Open batches, as in the SQLite store (sqlite_batches.h): a Merkle leaf is stored into an open
// batch of its provider, a batches row whose root is still empty, which counts its leaves
// (leaf_count) from when it was opened (created_at). Sealing it writes the batch row and the root
// row only: the UPDATE of every leaf row's batch id at the seal was one of the server's largest
// costs in a Merkle run (2.4-2.9 of its 10-11 CPU s for 100,000 files, issue 11 session 32).
// Each replica fills batches of its own (batches.opener), so replicas' intakes never wait for
// each other's batch row; any replica's batcher seals the oldest open batch of a provider, a dead
// replica's too. Leaves stored with batch id 0 (by an older release) are sealed as before.
//
// The intake's side, for the duration of one transaction: the open batch a new leaf goes into
// (open_batches.h). The first Take of a provider locks its open batch row until the commit (a
// seal of it waits, then finds the leaves the intake added).
class PgOpenBatches final : public OpenBatchTally {
 public:
  PgOpenBatches(ledger::PgConn& c, std::string opener, int64_t max_leaves, int64_t now_ms)
      : OpenBatchTally(max_leaves), c_(c), opener_(std::move(opener)), now_ms_(now_ms) {}
  // Writes the leaf count of every batch taken from. Call before the commit.
  absl::Status Finish();

 private:
  absl::StatusOr<Open> FindOpen(const std::string& provider) override;
  absl::StatusOr<int64_t> OpenNew(const std::string& provider) override;

  ledger::PgConn& c_;
  const std::string opener_;
  const int64_t now_ms_;
};

// The batcher's reads (SubmitterStore::UnbatchedWaiting, UnbatchedLeaves): the leaves of the
// oldest waiting batch of `provider` (those of an older release's batch id 0 first, then its
// oldest open batch that holds any).
absl::StatusOr<SubmitterStore::Waiting> PgUnbatchedWaiting(ledger::PgConn& c,
                                                           const std::string& provider);
absl::StatusOr<std::vector<WaitingLeaf>> PgUnbatchedLeaves(ledger::PgConn& c,
                                                           const std::string& provider, int limit);

// CreateMerkleBatch's writes: locks the leaves (in id order, so two batchers cannot deadlock; one
// that lost the race waits here for the winner's commit, then finds them batched: ABORTED), then
// the batch row with its leaves, the root row, each leaf's batch id. A batch of exactly the
// leaves of an open batch (the batcher's usual batch) seals that batch row instead, without
// writing a leaf row.
absl::StatusOr<int64_t> SealPgBatch(ledger::PgConn& c, const NewBatch& b, int64_t now_ms);
// The batch row; NOT_FOUND when there is none.
absl::StatusOr<StoredBatch> ReadPgBatch(ledger::PgConn& c, int64_t batch_id);
// The leaves of root row `root_id` (none when it is not a root) become SUBMITTED, owed to the
// poller through their batch row (pg_owed_leaves.h).
absl::Status SubmitPgLeaves(ledger::PgConn& c, int64_t root_id, int64_t now_ms);

}  // namespace anchord::submitter
