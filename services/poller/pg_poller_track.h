// The poller's two multi-statement writes on PostgreSQL, each run inside the caller's
// transaction: storing one hand-off (Track), and copying a Merkle root's state to its leaves.
// Both are safe to re-run after a lost connection (ledger::PgDb re-runs the transaction): the
// insert is insert-or-nothing and every update is conditional on the row's state.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "libs/ledger/pg_db.h"
#include "services/poller/poller_store.h"

namespace anchord::poller {

// Stores one hand-off (PollerStore::Track's contract for one input) on `c`. INVALID_ARGUMENT
// naming the field when the state is not one a hand-off may carry or the batch does not match
// (BatchFormOf). `trees_stored` holds the raw roots whose tree this transaction already stored,
// so the leaves of one root write it once.
absl::StatusOr<TrackOutcome> TrackIn(ledger::PgConn& c, const TrackInput& in, absl::Time now,
                                     std::set<std::string>* trees_stored);

// Copies the state of the root proof `root` at `provider` to its PENDING leaves and returns the
// leaves it changed (with their files, in seq order). `leaf` empty: for the root after its state
// changed, every pending leaf; otherwise only that leaf (its raw digest), while it is being stored.
absl::StatusOr<std::vector<ProofRow>> PropagateToLeavesIn(ledger::PgConn& c, const Digest& root,
                                                          const std::string& provider,
                                                          absl::Time now,
                                                          const std::string& leaf = "");

}  // namespace anchord::poller
