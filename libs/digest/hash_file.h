// Hashing one file from disk with flat memory, detecting files that change while they are read.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "libs/digest/digest.h"

namespace anchord::digest {

struct HashFileOptions {
  // Bytes read per read(2); memory use is this buffer whatever the file size.
  size_t buffer_bytes = 1 << 20;
  // Attempts before giving up with FILE_CHANGED_WHILE_HASHING.
  int max_attempts = 3;
  // When set and true, hashing stops at the next chunk with CANCELLED.
  const std::atomic<bool>* cancelled = nullptr;
  // Test hook: called after the bytes were read and before the "after" fstat, with the attempt
  // number (0-based). Lets a test change the file at exactly that point instead of racing it.
  std::function<void(int attempt)> after_read_hook;
};

struct FileDigest {
  Digest digest;
  int64_t size_bytes = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  uint64_t inode = 0;
  int attempts = 0;  // 1 when the first read was stable
};

// What a stat of a file said just before it is hashed (e.g. the directory walk's).
struct ExpectedStat {
  int64_t size_bytes = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  uint64_t inode = 0;
  uint64_t device = 0;
};

// A file to hash: `path` (absolute, resolved; named in messages), or `name` relative to the open
// directory `dir_fd` when that is >= 0 (opened and checked with openat/fstatat: one name to look
// up instead of every component of the path). With `expected`, the first read stands on it instead
// of an fstat of its own: the bytes count when the fstat after the read shows that same file
// (inode, device, size, mtime, ctime) and a regular one; anything else is read again the usual way.
struct FileRef {
  std::string path;
  int dir_fd = -1;
  std::string name;
  std::optional<ExpectedStat> expected;
};

// Hashes the regular file at `path`. The file is opened with O_NONBLOCK|O_NOFOLLOW, so a FIFO
// never blocks the caller and a symlink is never followed (callers resolve symlinks themselves and
// check confinement first). Errors carry a reason (see reason.h):
//   NOT_A_REGULAR_FILE (FAILED_PRECONDITION), FILE_UNREADABLE (PERMISSION_DENIED, NOT_FOUND or
//   UNAVAILABLE), EMPTY_FILE (FAILED_PRECONDITION; providers require a positive size),
//   FILE_CHANGED_WHILE_HASHING (ABORTED) once max_attempts reads all saw the file change.
// Bytes hashed are added to *bytes_read when it is non-null (including retried attempts).
absl::StatusOr<FileDigest> HashFile(const std::string& path, const HashFileOptions& options = {},
                                    std::atomic<int64_t>* bytes_read = nullptr);
// HashFile for a FileRef: the same rules, results and errors.
absl::StatusOr<FileDigest> HashFile(const FileRef& file, const HashFileOptions& options = {},
                                    std::atomic<int64_t>* bytes_read = nullptr);

}  // namespace anchord::digest
