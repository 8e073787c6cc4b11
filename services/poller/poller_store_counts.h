// The SQLite poller store's backlog gauges without reading the backlog.
//
// A metrics scrape used to count proofs with a GROUP BY over the whole `proofs` table: O(N) rows
// read, and at 1,000,000 pending proofs most of the database file paged into the poller's memory
// (bench/RESULTS.md, "Large backlogs"). Instead, a small table `proof_counts` holds one row per
// (provider, state, stalled) with the number of proofs in it, kept inside the transaction that
// inserts, moves or deletes a proof (triggers on `proofs` for moves and deletes; the inserts'
// counts added by TrackInSqlite, their only writer, once per call), so it can never disagree with
// the table after a commit, a rollback or a crash. Reading the gauges is then O(providers x states)
// rows plus one index seek per provider for the oldest pending proof.
#pragma once

#include <map>
#include <string>
#include <tuple>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "libs/ledger/sqlite_db.h"
#include "services/poller/poller_store.h"

namespace anchord::poller {

// Creates `proof_counts` and its triggers when they are missing, and then (a database written by
// an older release) fills it from one count of `proofs`, in the same transaction as the triggers,
// so no proof stored meanwhile is missed or counted twice. Drops the insert trigger of the
// release before this one (keeping its counts). Idempotent; runs at every open.
absl::Status InitProofCounts(ledger::Transaction& tx);

// Proofs inserted, by (provider, state, stalled) as they were inserted.
using InsertedCounts = std::map<std::tuple<std::string, int64_t, int64_t>, int64_t>;

// Adds `inserted` to `proof_counts`, in the inserting transaction `tx`. Later moves of those rows
// in the same transaction are the triggers' (a count may dip below zero until this runs; only
// the committed sum is read).
absl::Status AddInsertedCounts(ledger::Transaction& tx, const InsertedCounts& inserted);

// PollerStore::Stats from `proof_counts`: per provider, proofs by state, pending+stalled proofs,
// and the oldest pending proof's pending_since (a seek on proofs_stall_roots per provider).
absl::StatusOr<std::map<std::string, PollerStore::ProviderStats>> ReadProviderStats(
    ledger::Session& session);

// PollerStore::Summarize: the digests with a file of `job` (all when empty), each counted once at
// its furthest state over its providers, read in `snapshot` (one read transaction).
absl::StatusOr<PollerStore::Summary> SummarizeSqlite(ledger::Snapshot& snapshot,
                                                     const std::string& job);

// The oldest pending proof of (?1 provider, ?2 state, ?3 stalled): one seek on
// proofs_stall_roots, never a scan (tests check its EXPLAIN QUERY PLAN). Merkle leaves are not
// read: a leaf is pending since its root's submission and is stalled with its root (the root's
// state and stall reach its leaves, PropagateRootToLeaves), so the oldest pending root is as old
// as the oldest of its leaves, and the index holds no leaf (poller_store_schema.cc says why).
inline constexpr char kOldestPendingQuery[] =
    "SELECT pending_since FROM proofs INDEXED BY proofs_stall_roots "
    "WHERE provider = ?1 AND state = ?2 AND stalled = ?3 AND length(merkle_root) = 0 "
    "ORDER BY pending_since LIMIT 1";

// The SQLite connection settings that bound the memory the database adds to the poller.
// Rejects negative sizes with an error naming the option.
absl::Status ApplySqlitePollerTuning(ledger::Session& session,
                                     const SqlitePollerStoreOptions& options);

}  // namespace anchord::poller
