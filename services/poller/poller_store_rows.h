// Reading proof rows of the SQLite poller store, and copying a Merkle root's state to its leaves:
// shared by the store's queries (poller_store.cc) and its hand-off path (poller_store_track.cc).
// Every function runs in the caller's Session or Transaction.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "libs/digest/digest.h"
#include "libs/ledger/sqlite_db.h"
#include "services/poller/poller_store.h"

namespace anchord::poller {

// The columns ReadProofRow decodes, in its order.
inline constexpr char kSqliteProofColumns[] =
    "seq, digest, provider, proof_id, state, certificate_url, verify_url, block_height, "
    "bitcoin_tx, submitted_at, confirmed_at, ots_size, failure_code, failure_message, "
    "failure_reason, provider_request_id, stalled, tracked_at, last_checked_at, updated_at, "
    "merkle_root, merkle_path, leaf_count, fallback_provider, fallback_sent, leaf_index";

// The current row of `s` (selected with kSqliteProofColumns), without its files. DATA_LOSS when
// the stored digest is not 32 bytes.
absl::StatusOr<ProofRow> ReadProofRow(const ledger::Statement& s);

// Where a digest's files are, in its first proof's row (files_kept; the other rows of the digest
// hold 0 and no file). A files row costs a row and a UNIQUE index entry at each hand-off of a new
// digest, nearly every one with a single file (bench/RESULTS.md, "Issue 11, session 23").
enum class FilesKept : int64_t {
  kAllInFiles = 0,   // every file in files (an older release's rows; a proof with no file)
  kOwnOnly = 1,      // the row's file columns hold the digest's only file
  kOwnAndFiles = 2,  // the row's file is the first; the others are in files, none equal to it
};

// The files of `digest`, oldest first.
absl::StatusOr<std::vector<FileRow>> FilesOf(ledger::Session& session, const Digest& digest);

// The seq the files of `digest` are stored under (files.proof_seq): the lowest seq of its proofs;
// 0 when it has none.
absl::StatusOr<int64_t> FilesSeqOf(ledger::Session& session, const Digest& digest);

// The files of the digest whose first proof is `proof_seq` (see FilesSeqOf), oldest first.
absl::StatusOr<std::vector<FileRow>> FilesOfSeq(ledger::Session& session, int64_t proof_seq);

// The condition of the partial index proofs_open_leaves (poller_store_schema.cc): a Merkle leaf
// handed off with its own path, still PENDING, or CONFIRMED without its .ots size (it waits for
// its root's .ots). A query uses the index only when it states this condition word for word; the
// literals are DIGEST_STATE_PENDING and DIGEST_STATE_CONFIRMED (an index condition cannot take
// parameters). A leaf of the batch form (leaf_index >= 0) is not in it: its root's tree
// (merkle_trees) lists it, and its root's leaves_behind says when it may lag (see
// PropagateRootToLeaves), so thousands of leaves per hand-off write no entry here.
inline constexpr char kSqliteOpenLeaf[] =
    "length(merkle_root) > 0 AND leaf_index < 0 AND (state = 4 OR (state = 5 AND ots_size = 0))";

// The condition of the partial index proofs_leaves_behind (poller_store_schema.cc): a root whose
// state, .ots or stall changed since its batch-form leaves were last brought up to it (the
// trigger proofs_mark_leaves_behind sets it in the transaction of the change, PropagateRootToLeaves
// clears it in the one that moves the leaves). Nearly always empty: the poll engine propagates
// right after the change; it holds a root only when that was cut off (a crash in between).
inline constexpr char kSqliteLeavesBehind[] = "leaves_behind = 1";

// The condition of the partial index proofs_fallback_due (poller_store_schema.cc): a PENDING
// proof, stalled, whose job asked for a fallback provider that was not yet asked (leaves included:
// each is anchored again on its own). Stated word for word by the query that reads the index; 4 is
// DIGEST_STATE_PENDING.
inline constexpr char kSqliteFallbackDue[] =
    "state = 4 AND stalled = 1 AND fallback_sent = 0 AND fallback_provider <> ''";

// The condition of the partial index proofs_ots_due (poller_store_schema.cc): a confirmed proof
// of its own (not a leaf) whose .ots is still to fetch. Stated word for word by
// ConfirmedWithoutOts; 5 is DIGEST_STATE_CONFIRMED.
inline constexpr char kSqliteOtsDue[] = "state = 5 AND ots_size = 0 AND length(merkle_root) = 0";

// The SQL condition "the proof `p` has a file of job ?" (one parameter): the job of its digest's
// first proof's own file, or of a file under it in files. p's digest is found through
// proofs_by_digest (kProofsByDigest, poller_store_schema.h).
inline constexpr char kSqliteHasJobFile[] =
    "? IN (SELECT o.file_job FROM proofs AS o WHERE o.seq = (SELECT MIN(q.seq) FROM proofs AS q "
    "INDEXED BY proofs_by_digest WHERE substr(q.digest, 1, 8) = substr(p.digest, 1, 8) AND "
    "q.digest = p.digest) AND o.files_kept <> 0 UNION ALL SELECT f.job FROM files f WHERE "
    "f.proof_seq = (SELECT MIN(q.seq) FROM proofs AS q INDEXED BY proofs_by_digest WHERE "
    "substr(q.digest, 1, 8) = substr(p.digest, 1, 8) AND q.digest = p.digest))";

// Reads every row of `st` (prepared in `session`) and, with `with_files`, each proof's files.
absl::StatusOr<std::vector<ProofRow>> CollectProofs(ledger::Session& session, ledger::Statement& st,
                                                    bool with_files = true);

// The proof of `digest` with `provider` (with any provider, the oldest, when `provider` is empty),
// or nullopt.
absl::StatusOr<std::optional<ProofRow>> GetProofRow(ledger::Session& session, const Digest& digest,
                                                    const std::string& provider,
                                                    bool with_files = true);

// Copies the state of the root proof `root` (as stored) to its leaves with the root's provider:
// PENDING leaves take the root's state and fields, stalled flag, and an ots size equal to what
// JoinProof produces (root .ots + path bytes); leaves already in the root's CONFIRMED state
// without .ots take its size. The root's leaves_behind is cleared. Returns the leaves it changed,
// as they are now, with their files.
absl::StatusOr<std::vector<ProofRow>> PropagateRootToLeaves(ledger::Transaction& tx,
                                                            const ProofRow& root, absl::Time now);

// The .ots size a leaf with `path_bytes` of path bytes has under `root`: JoinProof's size when the
// root is CONFIRMED with its .ots, else 0 (as PropagateRootToLeaves stores it).
int64_t LeafOtsSize(const ProofRow& root, size_t path_bytes);

}  // namespace anchord::poller
