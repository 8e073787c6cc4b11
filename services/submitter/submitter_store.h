// The submitter's durable state: one row per (digest, provider) submission, the files (refs) that
// carry each digest, persisted rate-limit gates and recent sends, and paused provider queues.
//
// SubmitterStore is an interface so that a PostgreSQL implementation (shared by replicas) can
// follow the SQLite one without touching the engine, the hand-off or the RPC layer. Every method is
// thread-safe and returns only after its change is durable (committed).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "libs/digest/digest.h"

namespace anchord::merkle {
class SealedBatch;
}  // namespace anchord::merkle

namespace anchord::submitter {

// The life of one submission row. Numeric values are stored in the database: do not renumber.
enum class SubState { kQueued = 0, kSubmitting = 1, kSubmitted = 2, kFailed = 3 };
const char* SubStateName(SubState s);

// One file carrying a digest. The first ref of a digest is the original; later ones are duplicates.
struct FileRef {
  std::string job;  // never empty ("default")
  std::string source_path;
  std::string filename;
  int64_t size_bytes = 0;
  std::string mime_type;
};

// How a row is anchored. Numeric values are stored: do not renumber.
//  kPerFile: the row's digest goes to the provider itself.
//  kLeaf:    a file digest of a Merkle batch: never sent; it waits (QUEUED) until the batcher puts
//            it in a batch, and takes the root's record when the root is accepted.
//  kRoot:    a batch's Merkle root: sent like a kPerFile row.
enum class RowMode { kPerFile = 0, kLeaf = 1, kRoot = 2 };

// The provider's record as stored after a successful create.
struct StoredRecord {
  std::string proof_id;
  int record_state = 0;  // providers::RecordState as int
  std::string certificate_url;
  std::string verify_url;
  int64_t block_height = 0;
  std::string bitcoin_tx;
  absl::Time provider_created_at = absl::InfinitePast();
  absl::Time confirmed_at = absl::InfinitePast();
  std::string evidence;  // the .ots the provider answered the create with (calendars)
};

// Row ids, e.g. a hand-off's rows in flight (tens of thousands, mostly consecutive): a B-tree
// holds many to a node, where std::set allocated a node per id for every one sent, looked up and
// taken back (about a sixth of the hand-off's CPU, bench/RESULTS.md session 25).
using RowIds = absl::btree_set<int64_t>;

struct Submission {
  int64_t id = 0;
  Digest digest;
  std::string provider;
  FileRef file;  // the original file
  SubState state = SubState::kQueued;
  std::string idempotency_key;  // empty until the create was prepared
  std::string body;             // the exact PreparedCreate body; empty until prepared
  StoredRecord record;
  int attempts = 0;
  absl::Time next_attempt_at = absl::InfinitePast();
  // Canonical absl code of the failure (FAILED only), the provider's error code, message and
  // X-Request-Id of the last failed attempt.
  int error_canonical = 0;
  std::string error_code;
  std::string error_message;
  std::string error_request_id;
  std::string request_id;  // provider request id of the accepted create
  absl::Time created_at = absl::InfinitePast();
  absl::Time updated_at = absl::InfinitePast();
  // Hand-off bookkeeping: change_seq grows whenever something the poller must know changes (state,
  // a new ref); the row is handed off when handed_off_seq == change_seq.
  int64_t change_seq = 0;
  int64_t handed_off_seq = 0;
  bool handed_off() const { return handed_off_seq >= change_seq; }
  // Merkle batching: the row's mode, its batch (0 while unbatched), and for a leaf its nonce, its
  // path to the root (libs/merkle PathBytes) and the root; for a root, how many leaves it anchors.
  // A leaf's nonce, path, root and (once SUBMITTED) record are stored once in its batch and filled
  // in by GetByDigest and PendingHandoff (batch_leaves.h); other reads leave them empty.
  RowMode mode = RowMode::kPerFile;
  int64_t batch_id = 0;
  std::string nonce;
  std::string merkle_path;
  std::string merkle_root;
  int64_t leaf_count = 0;
  std::string fallback_provider;  // anchor here too if the proof stalls (poller's decision)
  // Read by PendingHandoffForBatchForm without what the batch form does not send (see there).
  bool thin = false;
  // SQLite: where the row's digest keeps its files (FilesKept, submitter_store_schema.h); other
  // stores leave it 0.
  int64_t files_kept = 0;
};

// A leaf waiting for a batch, as UnbatchedLeaves reads it: only what sealing needs. (A whole
// Submission is near a kilobyte; the batcher reads up to max_leaves of these several times a
// second.)
struct WaitingLeaf {
  int64_t id = 0;
  Digest digest;
  std::string job;
};

// One digest to store.
struct NewItem {
  Digest digest;
  FileRef file;
  std::vector<std::string> providers;  // non-empty, known names
  bool merkle = false;                 // queue as a Merkle batch leaf (kLeaf)
  std::string fallback_provider;
};

// A sealed Merkle batch, computed by the caller over leaves it read with UnbatchedLeaves. The
// leaves are in the tree's order; each leaf's path is derived from that order and the nonces when
// a leaf row is read (batch_leaves.h), not stored per leaf.
struct NewBatch {
  std::string provider;
  std::string root;   // raw 32 bytes
  FileRef root_file;  // what the provider is told about the root (name, size)
  std::vector<int64_t> leaf_ids;
  std::vector<std::string> nonces;  // per leaf
  // Optional, per leaf: the digest read with its id (a row's digest never changes), which spares
  // a store reading it back while it marks the leaf; empty to have the store read them.
  std::vector<Digest> leaf_digests;
  // Optional: the batch as the batcher built it from leaf_digests and nonces (root == its root).
  // A store keeps it for the hand-off once the batch is committed, which then does not rebuild
  // the tree from the stored leaves (a tenth of the hand-off's CPU, bench/RESULTS.md session 25).
  std::shared_ptr<const merkle::SealedBatch> sealed;
};

struct InsertResult {
  // Least advanced state of the digest's submissions (QUEUED for a new digest).
  SubState state = SubState::kQueued;
  bool known_before = false;
  // source_path of the original file when this file is a duplicate of it; empty otherwise.
  std::string duplicate_of;
};

struct PauseInfo {
  std::string provider;
  std::string reason;
  absl::Time paused_at = absl::InfinitePast();
  absl::Time probe_at = absl::InfinitePast();  // when one probe request may be sent
};

struct BacklogCount {
  std::string provider;
  SubState state;
  int64_t count = 0;
};

// What the hand-off needs to send a sealed batch's leaves in the batch form
// (PollerService.TrackBatch): the batch's stored leaves and its root row.
struct HandoffBatch {
  // The stored leaves, decoded and checked against the batch's root; null for a batch sealed by
  // an older release (its leaf rows carry their own paths).
  std::shared_ptr<const merkle::SealedBatch> leaves;
  // The root row as PendingHandoff reads it (with its evidence); nullopt when there is none.
  std::optional<Submission> root;
};

class SubmitterStore {
 public:
  virtual ~SubmitterStore() = default;

  // --- Intake -----------------------------------------------------------------------------------
  // Stores every item in ONE transaction (idempotent on the digest: a known digest only gets a new
  // ref, and a submission row for a provider it did not have yet). Results are in item order.
  virtual absl::StatusOr<std::vector<InsertResult>> InsertBatch(const std::vector<NewItem>& items,
                                                                absl::Time now) = 0;
  // Number of rows still to be sent (QUEUED + SUBMITTING), for backpressure.
  virtual absl::StatusOr<int64_t> CountBacklog() = 0;
  virtual absl::StatusOr<std::vector<BacklogCount>> CountByProviderState() = 0;

  // --- Workers ----------------------------------------------------------------------------------
  // Claims the oldest ready rows (QUEUED or SUBMITTING, next_attempt_at <= now, lease free, not a
  // Merkle leaf) of `provider` for `owner` until `lease_until`, at most `limit` (batch providers
  // send several in one request). Empty when nothing is ready.
  virtual absl::StatusOr<std::vector<Submission>> ClaimBatch(const std::string& provider,
                                                             const std::string& owner,
                                                             absl::Time now, absl::Time lease_until,
                                                             int limit) = 0;
  absl::StatusOr<std::optional<Submission>> Claim(const std::string& provider,
                                                  const std::string& owner, absl::Time now,
                                                  absl::Time lease_until) {
    auto rows = ClaimBatch(provider, owner, now, lease_until, 1);
    if (!rows.ok()) return rows.status();
    if (rows->empty()) return std::optional<Submission>();
    return std::optional<Submission>(std::move(rows->front()));
  }
  // Frees every lease (at start: a single-process store's old leases belong to a dead process).
  virtual absl::Status ReleaseAllLeases() = 0;
  // Earliest next_attempt_at among ready-to-be rows of `provider` (never a Merkle leaf: leaves are
  // not sent); nullopt when none.
  virtual absl::StatusOr<std::optional<absl::Time>> NextAttemptAt(const std::string& provider) = 0;
  // QUEUED -> SUBMITTING with the prepared key and body. Must commit before the create is sent.
  virtual absl::Status MarkPrepared(int64_t id, const std::string& idempotency_key,
                                    const std::string& body, absl::Time now) = 0;
  struct PreparedRow {
    int64_t id = 0;
    std::string idempotency_key;
    std::string body;
  };
  // MarkPrepared for many rows in ONE transaction (one commit, one fsync, for a group of creates):
  // all or none. The default runs MarkPrepared per row; stores override it.
  virtual absl::Status MarkPreparedBatch(const std::vector<PreparedRow>& rows, absl::Time now) {
    for (const PreparedRow& r : rows) {
      absl::Status st = MarkPrepared(r.id, r.idempotency_key, r.body, now);
      if (!st.ok()) return st;
    }
    return absl::OkStatus();
  }
  virtual absl::Status MarkSubmitted(int64_t id, const StoredRecord& record,
                                     const std::string& request_id, absl::Time now) = 0;
  struct SubmittedRow {
    int64_t id = 0;
    StoredRecord record;
    std::string request_id;
  };
  // MarkSubmitted for many rows in ONE transaction (one commit for a group of outcomes): all or
  // none. The default runs MarkSubmitted per row; stores override it.
  virtual absl::Status MarkSubmittedBatch(const std::vector<SubmittedRow>& rows, absl::Time now) {
    for (const SubmittedRow& r : rows) {
      absl::Status st = MarkSubmitted(r.id, r.record, r.request_id, now);
      if (!st.ok()) return st;
    }
    return absl::OkStatus();
  }
  // Keeps the row to be sent again at `next_attempt_at` (key and body unchanged), releases the
  // lease, records the last error; `count_attempt` adds one to attempts.
  virtual absl::Status Reschedule(int64_t id, absl::Time next_attempt_at, bool count_attempt,
                                  const std::string& code, const std::string& message,
                                  const std::string& request_id, absl::Time now) = 0;
  virtual absl::Status MarkFailed(int64_t id, int canonical_code, const std::string& code,
                                  const std::string& message, const std::string& request_id,
                                  absl::Time now) = 0;
  virtual absl::Status ReleaseLease(int64_t id) = 0;

  // --- Merkle batches --------------------------------------------------------------------------
  // How many leaves of `provider` wait for a batch, and when the oldest was queued (InfinitePast
  // when none): lets the batcher decide without reading the rows.
  struct Waiting {
    int64_t count = 0;
    absl::Time oldest = absl::InfinitePast();
  };
  virtual absl::StatusOr<Waiting> UnbatchedWaiting(const std::string& provider) = 0;
  // The most leaves a batch takes (the batcher's max_leaves; the Batcher sets it). The stores
  // gather leaves into open batches as they store them (sqlite_batches.h, pg_batches.h) and fill
  // each batch up to it.
  static constexpr int64_t kDefaultLeavesPerBatch = 10000;
  virtual void SetLeavesPerBatch(int64_t n) { (void)n; }
  // Leaves of `provider` not yet in a batch, oldest first, at most `limit` (read a row with
  // GetByDigest for all of it).
  virtual absl::StatusOr<std::vector<WaitingLeaf>> UnbatchedLeaves(const std::string& provider,
                                                                   int limit) = 0;
  // In ONE transaction: the batch row (its leaves in tree order with their nonces), the root row
  // (QUEUED, kRoot) and every leaf's batch id.
  // ABORTED (and no change) when a leaf was batched or changed meanwhile (another batcher won).
  // Returns the batch id. Later, MarkSubmitted/MarkFailed of the root carry its record or failure
  // to every leaf of the batch in the same transaction, so no leaf is ever left behind its root.
  virtual absl::StatusOr<int64_t> CreateMerkleBatch(const NewBatch& batch, absl::Time now) = 0;

  // --- Pauses (quota) ---------------------------------------------------------------------------
  virtual absl::Status Pause(const PauseInfo& info) = 0;
  // Removes the pause of `provider` (all when empty); returns the providers that were paused.
  virtual absl::StatusOr<std::vector<std::string>> Resume(const std::string& provider) = 0;
  virtual absl::StatusOr<std::vector<PauseInfo>> ListPauses() = 0;

  // --- Hand-off ---------------------------------------------------------------------------------
  // SUBMITTED and FAILED rows whose latest change was not acknowledged by the poller, oldest first.
  virtual absl::StatusOr<std::vector<Submission>> PendingHandoff(int limit) = 0;
  // PendingHandoff(limit + skip.size()) without the rows in `skip` (a hand-off's rows in
  // flight), at most `limit`. A store whose PendingHandoff claims what it returns overrides it:
  // rows read beyond `limit` would stay claimed, unsent, until their claim ran out.
  virtual absl::StatusOr<std::vector<Submission>> PendingHandoffExcept(int limit,
                                                                       const RowIds& skip);
  // Takes the rows in `skip` out of `rows`, keeping the order of the others.
  static void DropSkipped(std::vector<Submission>* rows, const RowIds& skip);
  // PendingHandoffExcept for the batch-form hand-off (handoff_window.h), which sends of a sealed
  // batch's SUBMITTED leaf only its digest's place in the tree and its files: a store may return
  // such a leaf `thin`, with only id, digest, provider, state, mode, batch_id, change_seq and
  // handed_off_seq, sparing the read of its other columns and the derivation of its path and
  // record (most of the hand-off's CPU per leaf). A thin row that must go the per-row way after
  // all is read again whole (GetByDigest). The default returns whole rows.
  virtual absl::StatusOr<std::vector<Submission>> PendingHandoffForBatchForm(int limit,
                                                                             const RowIds& skip) {
    return PendingHandoffExcept(limit, skip);
  }
  // Records that the poller acknowledged the row as of `seq` (a later change stays pending).
  virtual absl::Status MarkHandedOff(int64_t id, int64_t seq) = 0;
  // MarkHandedOff for many rows ({id, seq}) in ONE transaction (one commit for a whole window of
  // acknowledgements). The default runs MarkHandedOff per row; stores override it.
  virtual absl::Status MarkHandedOffBatch(const std::vector<std::pair<int64_t, int64_t>>& rows) {
    for (const auto& [id, seq] : rows) {
      absl::Status st = MarkHandedOff(id, seq);
      if (!st.ok()) return st;
    }
    return absl::OkStatus();
  }

  // The batch of leaf rows PendingHandoff returned (NOT_FOUND when there is no such batch). The
  // default is UNIMPLEMENTED: the hand-off then sends each leaf with its own path.
  virtual absl::StatusOr<HandoffBatch> BatchForHandoff(int64_t batch_id) {
    (void)batch_id;
    return absl::UnimplementedError("BatchForHandoff: not supported by this store");
  }

  // --- Reads ------------------------------------------------------------------------------------
  virtual absl::StatusOr<std::vector<Submission>> GetByDigest(const Digest& digest) = 0;
  virtual absl::StatusOr<std::vector<FileRef>> Refs(const Digest& digest) = 0;
  // Refs of each digest, in order (a hand-off window). The default runs Refs per digest; a store
  // may read them all in one session.
  virtual absl::StatusOr<std::vector<std::vector<FileRef>>> RefsOfEach(
      const std::vector<Digest>& digests) {
    std::vector<std::vector<FileRef>> out;
    out.reserve(digests.size());
    for (const Digest& d : digests) {
      absl::StatusOr<std::vector<FileRef>> refs = Refs(d);
      if (!refs.ok()) return refs.status();
      out.push_back(*std::move(refs));
    }
    return out;
  }
  // Refs of each row's digest, in order (a hand-off window of PendingHandoff rows). The default
  // asks RefsOfEach; a store may find them through the row (its id) instead of its digest.
  virtual absl::StatusOr<std::vector<std::vector<FileRef>>> RefsOfRows(
      const std::vector<Submission>& rows) {
    std::vector<Digest> digests;
    digests.reserve(rows.size());
    for (const Submission& row : rows) digests.push_back(row.digest);
    return RefsOfEach(digests);
  }
  // Per distinct digest (with a file in `job`, or all when empty), its least advanced state.
  virtual absl::StatusOr<std::map<SubState, int64_t>> SummarizeJob(const std::string& job) = 0;

  // --- Rate-limit persistence -------------------------------------------------------------------
  virtual absl::Status SaveGate(const std::string& name, absl::Time blocked_until) = 0;
  virtual absl::StatusOr<absl::Time> LoadGate(const std::string& name) = 0;  // InfinitePast if none
  // Records a send in `bucket` and forgets sends older than `forget_before`.
  virtual absl::Status RecordSend(const std::string& bucket, absl::Time when,
                                  absl::Time forget_before) = 0;
  virtual absl::StatusOr<std::vector<absl::Time>> RecentSends(const std::string& bucket,
                                                              absl::Time since) = 0;
};

// Opens (creating) the SQLite store at `path` (WAL, synchronous=FULL).
absl::StatusOr<std::unique_ptr<SubmitterStore>> OpenSqliteSubmitterStore(const std::string& path);

}  // namespace anchord::submitter
