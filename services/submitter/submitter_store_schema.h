// The SQLite submitter store's schema: the tables as this release creates them, and the upgrades
// that bring a database written by an older release up to them.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "libs/ledger/sqlite_db.h"

namespace anchord::submitter {

// Creates what is missing (tables, added columns, indexes) and drops indexes older releases made
// that no query needs any more. Idempotent: the store runs it at every open.
absl::Status InitSqliteSubmitterSchema(ledger::Session& session);

// A digest's submissions rows are found through submissions_by_digest, an index of the digest's
// first 8 bytes (the schema says why): a query names the index (the planner, without statistics,
// could pick another) and states its expression. kDigestIndex goes after FROM; DigestIs(n) is
// the condition for the digest bound as ?n, on `alias` (e.g. "s.") when given.
inline constexpr char kDigestIndex[] = "submissions INDEXED BY submissions_by_digest";
std::string DigestIs(int param, absl::string_view alias = "");

// The backlog (rows QUEUED or SUBMITTING as readers see them): rows sent on their own
// (submissions_backlog_files), leaves an older release stored with batch id 0 and not yet sealed
// (submissions_waiting; a leaf is never SUBMITTING: only rows sent on their own are prepared) and
// the leaves of every batch whose root is undecided, open batches included (their leaf_count).
// Each part is counted from an index or the batch rows alone, its terms those of the index's
// WHERE (a term the index does not state would be checked in each row).
inline constexpr char kSqliteBacklogQuery[] =
    "SELECT (SELECT COUNT(*) FROM submissions WHERE state IN (0, 1) AND mode <> 1) + "
    "(SELECT COUNT(*) FROM submissions WHERE mode = 1 AND batch_id = 0 AND state = 0) + "
    "(SELECT COALESCE(SUM(leaf_count), 0) FROM batches WHERE leaves_state = 0)";

// Where a digest keeps its files, in each of its submissions rows (files_kept). Every row of a
// digest carries the digest's first file (the original) in its own columns (job, filename,
// size_bytes, mime_type, source_path), and all rows of a digest carry the same value. A file in a
// refs row costs a row and a UNIQUE index entry at intake and a read at each hand-off
// (bench/RESULTS.md, "Issue 11, session 23"); nearly every digest has one file, so only the
// files after the first are written there (under the digest's lowest id, refs.sub_id).
enum class FilesKept : int64_t {
  // Every file of the digest is in refs, the original first: rows of an older release, and rows
  // that carry no file (a batch's root: it has none).
  kAllInRefs = 0,
  // The row's own file is the digest's only one.
  kOwnOnly = 1,
  // The row's own file is the first; the others are in refs, which holds none equal to it.
  kOwnAndRefs = 2,
};

// A row's state as readers see it, as an SQL expression over the row (`alias` e.g. "s." or
// "submissions."). A Merkle leaf's row is written at intake, into its open batch
// (sqlite_batches.h), not again when the batch is sealed, when its root is accepted or when the
// poller acknowledges it: its batch row carries the verdict for
// all of them (leaves_state: SUBMITTED, or FAILED, whose leaf rows are also written, as a failure
// is rare and each leaf carries it) and how far their hand-off has come (handoff_next). That
// saves two row writes and four index writes per leaf (bench/RESULTS.md, "Issue 11, session
// 15"). So a leaf row stored QUEUED (0) in a batch reads as its batch's leaves_state. A leaf that
// must be handed off again on its own (a new file of its digest) is written SUBMITTED then.
std::string EffectiveState(absl::string_view alias);

}  // namespace anchord::submitter
