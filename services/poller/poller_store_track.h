// Storing hand-offs in the SQLite poller store (PollerStore::Track), in the caller's transaction.
//
// Most hand-offs are new proofs (a Merkle leaf each, thousands per batch), so the insert comes
// first (insert-or-nothing on (digest, provider)) and a new proof's outcome is built from what was
// inserted instead of read back; only a hand-off of a proof already held takes the read, compare
// and update path. A leaf takes its root's state when the root is already held, as the root
// would give it when it moves: the root is read once per batch (not once per leaf), and a root
// still PENDING gives its fields to the new leaf only, as on PostgreSQL (pg_poller_track.h).
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "libs/ledger/prefix_filter.h"
#include "libs/ledger/sqlite_db.h"
#include "services/poller/poller_store.h"

namespace anchord::poller {

// PollerStore::Track's contract for `inputs`, run in `tx` (the caller commits). INVALID_ARGUMENT
// naming proof.state when an input's state is not one a hand-off may carry. `known` (optional):
// the prefixes of the digests proofs holds (kept across calls by the store, which calls its
// Committed after the commit): a digest it cannot hold is not looked up.
absl::StatusOr<std::vector<TrackOutcome>> TrackInSqlite(ledger::Transaction& tx,
                                                        const std::vector<TrackInput>& inputs,
                                                        absl::Time now,
                                                        ledger::PrefixFilter* known = nullptr);

}  // namespace anchord::poller
