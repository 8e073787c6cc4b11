// Hashing one file from disk with flat memory, detecting files that change while they are read.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
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

// Hashes the regular file at `path`. The file is opened with O_NONBLOCK|O_NOFOLLOW, so a FIFO
// never blocks the caller and a symlink is never followed (callers resolve symlinks themselves and
// check confinement first). Errors carry a reason (see reason.h):
//   NOT_A_REGULAR_FILE (FAILED_PRECONDITION), FILE_UNREADABLE (PERMISSION_DENIED, NOT_FOUND or
//   UNAVAILABLE), EMPTY_FILE (FAILED_PRECONDITION; providers require a positive size),
//   FILE_CHANGED_WHILE_HASHING (ABORTED) once max_attempts reads all saw the file change.
// Bytes hashed are added to *bytes_read when it is non-null (including retried attempts).
absl::StatusOr<FileDigest> HashFile(const std::string& path, const HashFileOptions& options = {},
                                    std::atomic<int64_t>* bytes_read = nullptr);

}  // namespace anchord::digest
