// The poller's durable state: one row per (digest, provider) proof and the files known to carry
// each digest.
//
// The store is an interface because the SQLite backend (one file, DATA_DIR/poller.db) will be
// joined by a PostgreSQL one for replicated deployments; the engine and the gRPC services only
// speak this interface.
//
// State rules, enforced inside the store so that no caller can break them:
//  - states are PENDING, CONFIRMED and FAILED (a SUBMITTED hand-off is stored as PENDING);
//  - a state never moves backwards: CONFIRMED and FAILED are final, so a late or repeated hand-off
//    (at-least-once delivery from the submitter) never undoes what the poller learnt;
//  - every mutation commits before it returns, so an acknowledgement sent afterwards is durable.
//
// Times are absl::Time; absl::InfinitePast() means "unset". All methods are thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "anchord/v1/common.pb.h"
#include "libs/digest/digest.h"
#include "libs/merkle/sealed_batch.h"

namespace anchord::poller {

using anchord::v1::DigestState;

struct FileRow {
  std::string job;  // "default" when the caller sent none
  std::string source_path;
  std::string filename;
  int64_t size_bytes = 0;
  std::string mime_type;
};

struct ProofRow {
  int64_t seq = 0;  // monotonically increasing; the paging key (oldest first)
  Digest digest;
  std::string provider;
  std::string proof_id;
  DigestState state = anchord::v1::DIGEST_STATE_PENDING;
  std::string certificate_url;
  std::string verify_url;
  int64_t block_height = 0;
  std::string bitcoin_tx;
  absl::Time submitted_at = absl::InfinitePast();
  absl::Time confirmed_at = absl::InfinitePast();
  int64_t ots_size = 0;  // 0 when no .ots is stored
  int32_t failure_code = 0;
  std::string failure_message;
  std::string failure_reason;
  std::string provider_request_id;
  bool stalled = false;
  absl::Time tracked_at = absl::InfinitePast();       // first hand-off to the poller
  absl::Time last_checked_at = absl::InfinitePast();  // last time the provider was asked
  absl::Time updated_at = absl::InfinitePast();       // last state change
  std::vector<FileRow> files;                         // oldest first (the first file first)
  // Merkle batching. A leaf (a file digest anchored through a batch root) has merkle_root and
  // merkle_path; it is never asked about itself: it follows its root's proof (same provider).
  // A root has leaf_count > 0.
  std::string merkle_root;
  std::string merkle_path;
  // A leaf handed off in the batch form (PollerService.TrackBatch): its position in the tree
  // stored once for its root, from which its path is derived (merkle_path is then empty). -1 for
  // a leaf stored with its own merkle_path, and for every proof that is not a leaf.
  int64_t leaf_index = -1;
  int64_t leaf_count = 0;
  std::string fallback_provider;  // anchor the digest there too when the proof stalls
  bool fallback_sent = false;     // the submitter acknowledged the fallback request
  bool is_leaf() const { return !merkle_root.empty(); }

  bool ots_available() const { return ots_size > 0; }
  // When the proof started pending: submitted_at when known, else tracked_at.
  absl::Time pending_since() const {
    return submitted_at != absl::InfinitePast() ? submitted_at : tracked_at;
  }
};

// One hand-off. `proof.seq`, `ots_size`, `stalled`, `tracked_at`, `last_checked_at`, `updated_at`
// and `proof.files` are ignored; `files` are added to the digest's files.
struct TrackInput {
  ProofRow proof;  // merkle_root, merkle_path, leaf_count and fallback_provider are stored
  std::vector<FileRow> files;
  std::string evidence;  // .ots from the create (calendars); validated by the caller
  // The batch form (PollerService.TrackBatch): the batch's leaves, decoded and checked against
  // the root by the caller, shared by the root's input and every leaf input of one request. On
  // the root's input (proof.leaf_count > 0) the store keeps them once per root; a leaf input
  // (proof.leaf_index >= 0, merkle_path may be empty) is stored with its index instead of a path.
  std::shared_ptr<const merkle::SealedBatch> batch;
};

struct TrackOutcome {
  ProofRow proof;              // the row after the hand-off, with its files
  bool inserted = false;       // the proof was new
  bool state_changed = false;  // an existing proof moved forward (PENDING -> CONFIRMED/FAILED)
  std::vector<ProofRow> leaves_changed;  // a batch root handed off final moved its leaves
};

struct ListFilter {
  std::string job;                                            // empty: any
  DigestState state = anchord::v1::DIGEST_STATE_UNSPECIFIED;  // UNSPECIFIED: any
  std::vector<Digest> digests;                                // empty: any
  std::string provider;                                       // empty: any
  bool with_files = true;   // false leaves ProofRow::files empty (cheaper scans)
  bool with_leaves = true;  // false: Merkle batch leaves are not listed (they follow their root)
};

struct ConfirmInput {
  std::string certificate_url;
  std::string verify_url;
  int64_t block_height = 0;
  std::string bitcoin_tx;
  absl::Time confirmed_at = absl::InfinitePast();
  std::string ots;  // when non-empty (validated by the caller), stored as the proof's evidence
};

class PollerStore {
 public:
  virtual ~PollerStore() = default;

  // Stores a batch of hand-offs in one transaction (idempotent on (digest, provider)). Inputs must
  // already be validated. The outcomes are in input order.
  virtual absl::StatusOr<std::vector<TrackOutcome>> Track(const std::vector<TrackInput>& inputs,
                                                          absl::Time now) = 0;

  // The proof of `digest` with `provider`, or with any provider (the oldest) when `provider` is
  // empty. nullopt when unknown.
  virtual absl::StatusOr<std::optional<ProofRow>> Get(const Digest& digest,
                                                      const std::string& provider) = 0;
  // Every proof of `digest`, oldest first.
  virtual absl::StatusOr<std::vector<ProofRow>> GetAll(const Digest& digest) = 0;

  // Proofs matching `filter` with seq > after_seq, by seq ascending, at most `limit`.
  virtual absl::StatusOr<std::vector<ProofRow>> List(const ListFilter& filter, int64_t after_seq,
                                                     int limit) = 0;

  // PENDING proofs of `provider` first handed off before `tracked_before`, least recently checked
  // first, at most `limit`.
  virtual absl::StatusOr<std::vector<ProofRow>> PendingToCheck(const std::string& provider,
                                                               absl::Time tracked_before,
                                                               int limit) = 0;
  // Replicas sharing one database split a round's lookups: claims those of `candidates` (proofs
  // of `provider`) that no other owner holds at `now`, for `owner` until `until`, and returns
  // them in the given order. A proof stays claimed until `until` (a replica that died releases
  // nothing), so another replica asks about it in a later round, never in the same one. A proof
  // checked since the candidate was read (its last_checked_at moved: another replica looked it
  // up, confirmed it or fetched its .ots and then released its claim) is not claimed: the
  // candidate is stale, however slowly this round ran.
  virtual absl::StatusOr<std::vector<ProofRow>> ClaimChecks(const std::string& provider,
                                                            std::vector<ProofRow> candidates,
                                                            const std::string& owner,
                                                            absl::Time now, absl::Time until) = 0;
  // CONFIRMED proofs of `provider` without a stored .ots, least recently checked first.
  virtual absl::StatusOr<std::vector<ProofRow>> ConfirmedWithoutOts(const std::string& provider,
                                                                    int limit) = 0;
  // PENDING, not yet stalled proofs of `provider` pending since before `pending_before`, longest
  // pending first.
  virtual absl::StatusOr<std::vector<ProofRow>> NewlyStalled(const std::string& provider,
                                                             absl::Time pending_before,
                                                             int limit) = 0;

  // PENDING -> CONFIRMED. nullopt (and no change) unless the proof exists and is PENDING.
  virtual absl::StatusOr<std::optional<ProofRow>> MarkConfirmed(const Digest& digest,
                                                                const std::string& provider,
                                                                const ConfirmInput& in,
                                                                absl::Time now) = 0;
  // PENDING -> FAILED with the failure status. nullopt (and no change) unless PENDING.
  virtual absl::StatusOr<std::optional<ProofRow>> MarkFailed(
      const Digest& digest, const std::string& provider, int32_t code, const std::string& message,
      const std::string& reason, const std::string& request_id, absl::Time now) = 0;
  // Stores the .ots of a CONFIRMED proof that has none yet. nullopt (no change) otherwise. The
  // caller validates the bytes first.
  virtual absl::StatusOr<std::optional<ProofRow>> StoreOts(const Digest& digest,
                                                           const std::string& provider,
                                                           const std::string& ots,
                                                           absl::Time now) = 0;
  // Sets the stalled flag of a PENDING proof; nullopt when it was already set or not pending.
  virtual absl::StatusOr<std::optional<ProofRow>> MarkStalled(const Digest& digest,
                                                              const std::string& provider,
                                                              absl::Time now) = 0;
  // Replaces the stored evidence of a PENDING or CONFIRMED proof (a calendar upgrade). nullopt
  // when the proof is unknown or FAILED. The caller validates the bytes first.
  virtual absl::StatusOr<std::optional<ProofRow>> ReplaceOts(const Digest& digest,
                                                             const std::string& provider,
                                                             const std::string& ots,
                                                             absl::Time now) = 0;
  // Carries the state of the root `root` (with `provider`) to its PENDING leaves (CONFIRMED or
  // FAILED with the root's fields, and the stalled flag), and the root's .ots size to its
  // leaves (a leaf's joined proof is exactly root .ots + path bytes long). Returns the leaves
  // whose state or ots availability changed (for events), at most `limit`.
  virtual absl::StatusOr<std::vector<ProofRow>> PropagateToLeaves(const Digest& root,
                                                                  const std::string& provider,
                                                                  absl::Time now) = 0;
  // The safety net behind PropagateToLeaves: PENDING leaves of `provider` whose root is already
  // CONFIRMED or FAILED (a leaf stored just as its root became final) get the root's state, for
  // at most `max_roots` roots; on SQLite also the leaves of a root whose propagation was cut off
  // after it changed (leaves_behind, poller_store_rows.h). Returns the leaves that changed (for
  // events).
  virtual absl::StatusOr<std::vector<ProofRow>> SettleStrandedLeaves(const std::string& provider,
                                                                     absl::Time now,
                                                                     int max_roots) = 0;
  // PENDING+stalled proofs with a fallback provider whose fallback was not yet acknowledged.
  virtual absl::StatusOr<std::vector<ProofRow>> FallbacksDue(const std::string& provider,
                                                             int limit) = 0;
  virtual absl::Status MarkFallbackSent(const Digest& digest, const std::string& provider) = 0;
  // Records that the provider was asked about each proof at its time (the round-robin order of
  // checks; a claim's test that a candidate is not stale), in one transaction: a round's marks
  // cost one commit instead of one each (they were a third of a round over a large backlog, on
  // either backend). A proof not stored is skipped.
  struct CheckedProof {
    Digest digest;
    std::string provider;
    absl::Time at;
  };
  virtual absl::Status MarkCheckedAll(const std::vector<CheckedProof>& checked) = 0;
  absl::Status MarkChecked(const Digest& digest, const std::string& provider, absl::Time now) {
    return MarkCheckedAll({CheckedProof{digest, provider, now}});
  }

  // The stored .ots bytes; nullopt when none (or the proof is unknown).
  virtual absl::StatusOr<std::optional<std::string>> GetOts(const Digest& digest,
                                                            const std::string& provider) = 0;

  // The tree stored for the Merkle root `root` by a batch-form hand-off (TrackInput::batch), from
  // which its leaves' paths are derived; nullptr when none is stored. FAILED_PRECONDITION when
  // the stored tree does not lead to `root` (it is never used then). Decoded trees of the last
  // few roots are kept in memory.
  virtual absl::StatusOr<std::shared_ptr<const merkle::SealedBatch>> TreeOf(const Digest& root) = 0;

  struct Summary {
    std::map<DigestState, int64_t> digests_by_state;  // distinct digests, furthest state each
    int64_t digests = 0;
  };
  // Counts the distinct digests with a file of `job` (all when empty).
  virtual absl::StatusOr<Summary> Summarize(const std::string& job) = 0;

  struct ProviderStats {
    std::map<DigestState, int64_t> proofs_by_state;
    absl::Time oldest_pending = absl::InfiniteFuture();  // InfiniteFuture when none pending
    int64_t stalled = 0;                                 // pending and flagged stalled
  };
  // Per provider, for the backlog gauges.
  virtual absl::StatusOr<std::map<std::string, ProviderStats>> Stats() = 0;
};

// How much of the database the SQLite store may keep in the poller's memory. With the defaults
// the file adds at most about 64 MiB mapped plus 16 MiB of page cache to the process's resident
// memory, however large the backlog (1,000,000 pending proofs: bench/RESULTS.md, "Large
// backlogs"); the rest of the file stays in the kernel's page cache, outside the process.
//
// The page cache is 16 MiB, not 64: what a hand-off writes is appended rows and a digest index
// read through the mapping, so pages beyond that were never read again, and growing the cache to
// 64 MiB cost a fresh (zeroed) page of memory per page written during a large hand-off. Track
// took 8.8 instead of 10.9 us of CPU per leaf over 100,000 leaves, 20.8 instead of 21.8 over
// 1,000,000, with the same bytes written (bench/track_bench.sh); 2 MiB gave back part of the gain.
struct SqlitePollerStoreOptions {
  int64_t mmap_bytes = int64_t{64} << 20;  // PRAGMA mmap_size; 0: read through the page cache
  int64_t cache_kib = 16384;               // PRAGMA cache_size (KiB, grown only as pages are used)
};

// Opens (creating if needed) the SQLite store at `path` (":memory:" for tests).
absl::StatusOr<std::unique_ptr<PollerStore>> OpenSqlitePollerStore(
    const std::string& path, const SqlitePollerStoreOptions& options = {});

// Opaque page tokens for ListProofs: they carry the last seq returned.
std::string EncodePageToken(int64_t after_seq);
absl::StatusOr<int64_t> DecodePageToken(const std::string& token);

}  // namespace anchord::poller
