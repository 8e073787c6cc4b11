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
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

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
};

struct Submission {
  int64_t id = 0;
  std::string digest;  // raw 32 bytes
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
};

// One digest to store.
struct NewItem {
  std::string digest;  // raw 32 bytes, validated by the caller
  FileRef file;
  std::vector<std::string> providers;  // non-empty, known names
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
  // Claims the oldest ready row (QUEUED or SUBMITTING, next_attempt_at <= now, lease free) of
  // `provider` for `owner` until `lease_until`. nullopt when nothing is ready.
  virtual absl::StatusOr<std::optional<Submission>> Claim(const std::string& provider,
                                                          const std::string& owner, absl::Time now,
                                                          absl::Time lease_until) = 0;
  // Frees every lease (at start: a single-process store's old leases belong to a dead process).
  virtual absl::Status ReleaseAllLeases() = 0;
  // Earliest next_attempt_at among ready-to-be rows of `provider`; nullopt when none.
  virtual absl::StatusOr<std::optional<absl::Time>> NextAttemptAt(const std::string& provider) = 0;
  // QUEUED -> SUBMITTING with the prepared key and body. Must commit before the create is sent.
  virtual absl::Status MarkPrepared(int64_t id, const std::string& idempotency_key,
                                    const std::string& body, absl::Time now) = 0;
  virtual absl::Status MarkSubmitted(int64_t id, const StoredRecord& record,
                                     const std::string& request_id, absl::Time now) = 0;
  // Keeps the row to be sent again at `next_attempt_at` (key and body unchanged), releases the
  // lease, records the last error; `count_attempt` adds one to attempts.
  virtual absl::Status Reschedule(int64_t id, absl::Time next_attempt_at, bool count_attempt,
                                  const std::string& code, const std::string& message,
                                  const std::string& request_id, absl::Time now) = 0;
  virtual absl::Status MarkFailed(int64_t id, int canonical_code, const std::string& code,
                                  const std::string& message, const std::string& request_id,
                                  absl::Time now) = 0;
  virtual absl::Status ReleaseLease(int64_t id) = 0;

  // --- Pauses (quota) ---------------------------------------------------------------------------
  virtual absl::Status Pause(const PauseInfo& info) = 0;
  // Removes the pause of `provider` (all when empty); returns the providers that were paused.
  virtual absl::StatusOr<std::vector<std::string>> Resume(const std::string& provider) = 0;
  virtual absl::StatusOr<std::vector<PauseInfo>> ListPauses() = 0;

  // --- Hand-off ---------------------------------------------------------------------------------
  // SUBMITTED and FAILED rows whose latest change was not acknowledged by the poller, oldest first.
  virtual absl::StatusOr<std::vector<Submission>> PendingHandoff(int limit) = 0;
  // Records that the poller acknowledged the row as of `seq` (a later change stays pending).
  virtual absl::Status MarkHandedOff(int64_t id, int64_t seq) = 0;

  // --- Reads ------------------------------------------------------------------------------------
  virtual absl::StatusOr<std::vector<Submission>> GetByDigest(const std::string& digest) = 0;
  virtual absl::StatusOr<std::vector<FileRef>> Refs(const std::string& digest) = 0;
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
