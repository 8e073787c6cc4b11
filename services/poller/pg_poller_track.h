// The poller's two multi-statement writes on PostgreSQL, each run inside the caller's
// transaction: storing one hand-off (Track), and copying a Merkle root's state to its leaves.
// Both are safe to re-run after a lost connection (ledger::PgDb re-runs the transaction): the
// insert is insert-or-nothing and every update is conditional on the row's state.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "libs/ledger/pg_db.h"
#include "services/poller/poller_store.h"
#include "services/poller/store_rows.h"

namespace anchord::poller {

// The stored state of a hand-off (SUBMITTED is stored PENDING); INVALID_ARGUMENT naming the
// field for a state a hand-off may not carry.
absl::StatusOr<int> StoredStateOf(const TrackInput& in);

// The values of a new proof row that are not the input's fields as they are (both Track paths
// insert the same row).
struct NewRow {
  int64_t state = 0;
  int64_t submitted_at = 0;
  int64_t confirmed_at = 0;
  int64_t pending_since = 0;
  int64_t failure_code = 0;
  std::string failure_message, failure_reason;
  std::string merkle_path;  // empty for a batch-form leaf
};
NewRow NewRowOf(const TrackInput& in, const BatchForm& form, int state, absl::Time now);

// Stores the tree of `in`'s batch (form.tree_root) unless this transaction did (`trees_stored`,
// the raw roots it stored) or there is none; insert-or-nothing.
absl::Status StoreTreeOnce(ledger::PgConn& c, const TrackInput& in, const BatchForm& form,
                           std::set<std::string>* trees_stored);

// Stores one hand-off (PollerStore::Track's contract for one input) on `c`. INVALID_ARGUMENT
// naming the field when the state is not one a hand-off may carry or the batch does not match
// (BatchFormOf). `trees_stored` holds the raw roots whose tree this transaction already stored,
// so the leaves of one root write it once.
absl::StatusOr<TrackOutcome> TrackIn(ledger::PgConn& c, const TrackInput& in, absl::Time now,
                                     std::set<std::string>* trees_stored);

// Copies the state of the root proof `root` at `provider` to its PENDING leaves and returns the
// leaves it changed (with their files, in seq order). `leaves` empty: for the root after its
// state changed, every pending leaf; otherwise (leaves being stored, their raw digests) only those
// while the root is PENDING, and every pending leaf once it is final.
absl::StatusOr<std::vector<ProofRow>> PropagateToLeavesIn(
    ledger::PgConn& c, const Digest& root, const std::string& provider, absl::Time now,
    const std::vector<std::string>& leaves = {});

// Stores the first part of a Track call in a few set-based statements (one INSERT of every new
// row, one of every file, one propagation per root, one read of the rows), with the outcomes
// TrackIn would give its inputs one by one, and returns them: one per input of the part, at least
// one. The part is the inputs stored already that lead the call (TrackIn stores them first), then
// new ones up to the first input that is stored after a new one or repeats a digest of the part;
// the caller passes the rest of the call again. nullopt, with no proof written, when the part is
// not of that kind (a leaf before its final root, a proof stored meanwhile by another replica): the
// caller stores the rest with TrackIn. Every input of `inputs` is checked first (INVALID_ARGUMENT
// as TrackIn's).
absl::StatusOr<std::optional<std::vector<TrackOutcome>>> TrackNewIn(
    ledger::PgConn& c, absl::Span<const TrackInput> inputs, absl::Time now,
    std::set<std::string>* trees_stored);

}  // namespace anchord::poller
