// The hasher's own state: one row per (job, path) with the last digest computed and whether the
// submitter has acknowledged it. Lives in DATA_DIR/hasher.db (SQLite, WAL, synchronous=NORMAL:
// a rebuildable cache; the submitter holds the durable queue).
//
// Thread-safe: every method takes the database's lock.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "libs/digest/digest.h"
#include "libs/ledger/sqlite_db.h"

namespace anchord::hasher {

enum class FileState { kHashed, kQueued, kError };
absl::string_view FileStateName(FileState s);  // "HASHED", "QUEUED", "ERROR"

struct FileRow {
  std::string job;
  std::string path;
  int64_t size_bytes = 0;
  int64_t mtime_ns = 0;
  std::optional<Digest> digest;  // nullopt for ERROR
  FileState state = FileState::kHashed;
  std::string duplicate_of;
  int error_code = 0;
  std::string error_reason;
  std::string error_message;
  int64_t updated_at_ms = 0;
  // True only when the digest is what the hasher computed from the file under its root (HashTree).
  // A row written from uploaded bytes (HashFiles with a source_path) is false: its digest says
  // nothing about the file at that path, so it must never let HashTree skip reading the file.
  bool read_by_hasher = false;
};

struct JobSummary {
  // Distinct digests per state ("HASHED", "QUEUED"); a digest counted once, in its highest state.
  std::map<std::string, int64_t> digests_by_state;
  int64_t files = 0;
};

// One file hashed, for RecordHashedBatch.
struct HashedRecord {
  std::string path;
  int64_t size_bytes = 0;
  int64_t mtime_ns = 0;
  Digest digest;
};

// One file the hasher read, forwarded and had answered by the submitter, for RecordForwarded.
struct ForwardedRecord {
  std::string path;
  int64_t size_bytes = 0;
  int64_t mtime_ns = 0;
  Digest digest;
  bool queued = false;       // the submitter accepted it (QUEUED), else it refused it (HASHED)
  std::string duplicate_of;  // from the submitter's acknowledgement
};

class HasherStore {
 public:
  // Opens (creating) the database at `path` and its schema.
  static absl::StatusOr<std::unique_ptr<HasherStore>> Open(const std::string& path);

  absl::StatusOr<std::optional<FileRow>> Get(absl::string_view job, absl::string_view path);
  // Upserts the row as HASHED with `digest` computed from bytes a caller uploaded (HashFiles), so
  // read_by_hasher is false. Survives a process crash when this returns OK.
  absl::Status RecordUploaded(absl::string_view job, absl::string_view path, int64_t size_bytes,
                              int64_t mtime_ns, const Digest& digest);
  // Upserts rows as HASHED with digests the hasher computed itself from the files under its root
  // (HashTree): read_by_hasher is true. Several files of `job` in one transaction (one commit
  // instead of one per file: the per-file commit dominated hashing small files). All or nothing.
  // When `duplicates` is non-null it receives, per record and in order, FirstPathWithDigest as it
  // was right after that record was written (the same answer as writing the records one by one and
  // calling FirstPathWithDigest after each).
  absl::Status RecordHashedBatch(absl::string_view job, const std::vector<HashedRecord>& records,
                                 std::vector<std::string>* duplicates);
  // Upserts the rows of files the hasher read itself (read_by_hasher true) once the submitter
  // answered for them: QUEUED with the acknowledgement's duplicate_of, or HASHED when it refused
  // the file. One transaction, all or nothing. This is the only write of a forwarded file's row
  // (it is not recorded before it is sent: a file in flight keeps whatever row it had, and a crash
  // before this commit only means the file is read and sent again next time; the submitter is
  // idempotent on the digest).
  absl::Status RecordForwarded(absl::string_view job, const std::vector<ForwardedRecord>& records);
  // True when `job` has at least one row (any state).
  absl::StatusOr<bool> JobHasRows(absl::string_view job);
  // Get for several paths of `job` under one lock and one prepared statement; one entry per path.
  absl::StatusOr<std::vector<std::optional<FileRow>>> GetMany(
      absl::string_view job, const std::vector<std::string>& paths);
  // Moves the row to QUEUED when it still carries `digest` (a newer hash of the file wins).
  absl::Status MarkQueued(absl::string_view job, absl::string_view path, const Digest& digest,
                          absl::string_view duplicate_of);
  // Upserts the row as ERROR.
  absl::Status RecordError(absl::string_view job, absl::string_view path, int64_t size_bytes,
                           int64_t mtime_ns, int code, absl::string_view reason,
                           absl::string_view message);
  // Up to `limit` rows of `job` with path > `after`, in path order (paging keeps memory flat).
  absl::StatusOr<std::vector<FileRow>> ListPage(absl::string_view job, absl::string_view after,
                                                int limit);
  // Every row (any job) carrying `digest`, oldest first; at most `limit`.
  absl::StatusOr<std::vector<FileRow>> FindByDigest(const Digest& digest, int limit = 100);
  // The first path of `job` (other than `exclude_path`) that carries `digest`; "" when none.
  absl::StatusOr<std::string> FirstPathWithDigest(absl::string_view job, const Digest& digest,
                                                  absl::string_view exclude_path);
  // Counts for one job, or for every job when `job` is empty.
  absl::StatusOr<JobSummary> Summarize(absl::string_view job);

 private:
  explicit HasherStore(std::unique_ptr<ledger::SqliteDb> db) : db_(std::move(db)) {}
  std::unique_ptr<ledger::SqliteDb> db_;
};

}  // namespace anchord::hasher
