// The PostgreSQL store's hand-off of a SUBMITTED Merkle batch's leaves, a batch at a time.
//
// A leaf's row used to be owed to the poller like any other row (state SUBMITTED, handed_off_seq
// behind change_seq): the hand-off claimed each leaf row for its lease and marked each one once
// the poller acknowledged it, two UPDATEs of every leaf row, each a new row version with its
// index entries. They were the server's two largest costs in a Merkle run (5.2 and 4.4 of the
// server's 16.5 CPU s for 100,000 files, bench/results/pipeline-s32-pg.md). Now, as in the SQLite
// store (sqlite_batches.h, OwedBatch), a root's acceptance writes its leaves as handed off as of
// that change and marks the batch row owed instead: batches.handoff_next is the lowest leaf id
// the poller may still be owed (-1: none). A replica claims an owed batch (handoff_owner and
// handoff_until, the same lease as a row's), reads its leaves from handoff_next in id order, and
// moves handoff_next past the leaves the poller acknowledged, one UPDATE of one batch row per
// window. A replica that dies leaves handoff_next where its acknowledgements got to; another
// replica claims the batch once the lease has run out and sends the rest (and perhaps some leaves
// again, which the poller takes idempotently).
//
// A leaf that changes again after its root's acceptance (a new file of its digest) is behind
// its change_seq and is handed off as a row of its own (and then not as its batch's). Leaves
// accepted by an older release are owed as rows, and their batches (handoff_next -1) not at all.
// During a rolling upgrade a replica of an older release hands off rows only: the leaves of
// roots accepted by new replicas go through the new replicas' hand-offs.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libs/ledger/pg_db.h"
#include "services/submitter/submitter_store.h"

namespace anchord::submitter {

class PgOwedLeaves {
 public:
  // `owner` names this store object (a replica) in handoff_owner; `lease` is how long a claimed
  // batch stays this replica's without another read (0: every read may take any owed batch, the
  // single-process behaviour).
  PgOwedLeaves(std::string owner, absl::Duration lease) : owner_(std::move(owner)), lease_(lease) {}

  // What one read found: leaf rows (full columns, oldest first, each with its batch id; the
  // caller may drop some from the end) and where each batch read stood.
  struct Read {
    std::vector<std::pair<int64_t, Submission>> leaves;
    std::vector<std::pair<int64_t, int64_t>> batch_next;  // {batch id, handoff_next as read}
  };

  // In `c`'s transaction: claims owed batches (renewing this replica's own claims) and reads up to
  // `want` of their leaves that are not in `skip` (the hand-off's rows in flight). Changes nothing
  // in memory (a transaction may run twice): call Returned with the result after the commit.
  absl::StatusOr<Read> ReadIn(ledger::PgConn& c, size_t want, const RowIds& skip, absl::Time now)
      ABSL_LOCKS_EXCLUDED(mu_);
  // After the commit of ReadIn's transaction.
  void Returned(const Read& read) ABSL_LOCKS_EXCLUDED(mu_);
  // Rows the per-row hand-off returned: their acknowledgements mark the rows, not a batch.
  void ReturnedAsRows(const std::vector<Submission>& rows) ABSL_LOCKS_EXCLUDED(mu_);

  // The batches whose handoff_next moves: {batch id, new handoff_next}.
  using Advances = std::vector<std::pair<int64_t, int64_t>>;
  // Takes the acknowledgements of leaves this replica returned as a batch's out of `rows` ({id,
  // seq}) and gives where their batches' handoff_next moves. An acknowledgement of an older
  // version than the one returned leaves the leaf owed.
  Advances Acknowledged(std::vector<std::pair<int64_t, int64_t>>* rows) ABSL_LOCKS_EXCLUDED(mu_);
  // Writes `advances` on `c` (idempotent: handoff_next only moves forward).
  static absl::Status WriteIn(ledger::PgConn& c, const Advances& advances);

  // A root's acceptance, in its transaction: the leaves of root row `root_id`'s batch are owed
  // from the first (none when it is not a root).
  static absl::Status OweLeavesOfRootIn(ledger::PgConn& c, int64_t root_id);

  // kSubmissionColumns (pg_submitter_schema.h) with a leaf its batch still owes the poller read
  // as not handed off (handed_off_seq behind change_seq), as the rows owed as rows read.
  static const std::string& ColumnsAsOwed();

 private:
  // This replica's view of a batch it read leaves of: handoff_next as it last read or wrote it,
  // and the leaves returned from there on, acknowledged or not. Every leaf of the batch with an
  // id from `next` up to the last one in `out` was returned (reads go in id order from `next`,
  // stepping over acknowledged leaves and rows in flight only), so `next` moves past an
  // acknowledged prefix of `out` and leaves none owed behind it; a row in flight that is not in
  // `out` went as a row of its own (ReturnedAsRows) and is marked as one.
  struct Batch {
    int64_t next = 0;
    absl::btree_map<int64_t, bool> out;  // leaf id -> acknowledged
    // Past the last leaf returned: a read starts here when every leaf returned before it is
    // acknowledged or in flight (leaf ids have gaps: root rows and other providers' rows take ids
    // among them, so stepping over the rows in flight one id at a time stops at the first gap).
    int64_t read_end = 0;
  };

  const std::string owner_;
  const absl::Duration lease_;
  absl::Mutex mu_;
  absl::flat_hash_map<int64_t, Batch> batches_ ABSL_GUARDED_BY(mu_);
  // Leaves returned as a batch's and not acknowledged since: leaf id -> {batch id, change_seq
  // as returned}.
  absl::flat_hash_map<int64_t, std::pair<int64_t, int64_t>> out_ ABSL_GUARDED_BY(mu_);
};

}  // namespace anchord::submitter
