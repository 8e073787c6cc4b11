#include "libs/digest/hash_file.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "libs/digest/reason.h"
#include "libs/digest/sha256.h"

namespace anchord::digest {
namespace {

int64_t Ns(const struct timespec& ts) {
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

absl::Status Unreadable(const std::string& path, int err) {
  std::string msg = absl::StrCat("cannot read ", path, ": ", std::strerror(err));
  absl::Status st;
  if (err == EACCES || err == EPERM) {
    st = absl::PermissionDeniedError(msg);
  } else if (err == ENOENT || err == ENOTDIR) {
    st = absl::NotFoundError(msg);
  } else {
    st = absl::UnavailableError(msg);
  }
  return WithReason(st, kFileUnreadable);
}

bool SameFile(const struct stat& a, const struct stat& b) {
  return a.st_size == b.st_size && Ns(a.st_mtim) == Ns(b.st_mtim) &&
         Ns(a.st_ctim) == Ns(b.st_ctim) && a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) close(fd);
  }
};

}  // namespace

absl::StatusOr<FileDigest> HashFile(const std::string& path, const HashFileOptions& options,
                                    std::atomic<int64_t>* bytes_read) {
  size_t buf_size = options.buffer_bytes == 0 ? (1 << 20) : options.buffer_bytes;
  // One read buffer per thread, reused across files: allocating (and page-faulting) a fresh
  // 1 MiB buffer per file dominated the cost of hashing small files. Memory stays flat: one
  // buffer per hashing thread, grown only when a caller asks for a larger one.
  thread_local std::unique_ptr<char[]> tls_buf;
  thread_local size_t tls_buf_size = 0;
  if (tls_buf_size < buf_size) {
    tls_buf.reset(new char[buf_size]);
    tls_buf_size = buf_size;
  }
  char* const buf = tls_buf.get();
  int attempts = options.max_attempts < 1 ? 1 : options.max_attempts;
  Sha256 sha;
  for (int attempt = 0; attempt < attempts; ++attempt) {
    // Opened afresh on every attempt: a file replaced by rename is picked up by the retry.
    // O_NONBLOCK: opening a FIFO that slipped past the caller's lstat must not block.
    int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ELOOP) {
        return WithReason(
            absl::FailedPreconditionError(absl::StrCat(path, " is a symbolic link; not followed")),
            kNotARegularFile);
      }
      return Unreadable(path, errno);
    }
    FdCloser closer{fd};
    struct stat before;
    if (fstat(fd, &before) != 0) return Unreadable(path, errno);
    if (!S_ISREG(before.st_mode)) {
      return WithReason(absl::FailedPreconditionError(absl::StrCat(path, " is not a regular file")),
                        kNotARegularFile);
    }
    // O_NONBLOCK is left set: it has no effect on reads of regular files (and clearing it cost
    // two syscalls per file). The read-ahead hint only pays off for files larger than a buffer.
    if (static_cast<size_t>(before.st_size) > buf_size) {
      posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    }

    sha.Reset();
    int64_t total = 0;
    for (;;) {
      if (options.cancelled != nullptr && options.cancelled->load()) {
        return absl::CancelledError(absl::StrCat("hashing of ", path, " cancelled"));
      }
      ssize_t n = read(fd, buf, buf_size);
      if (n < 0) {
        if (errno == EINTR) continue;
        return Unreadable(path, errno);
      }
      if (n == 0) break;
      sha.Update(buf, static_cast<size_t>(n));
      total += n;
      if (bytes_read != nullptr) bytes_read->fetch_add(n);
      // A short read that reaches the size seen before reading is the end: skip the read that
      // would return 0 (one syscall per small file). A file that grew meanwhile is caught by the
      // size check against the "after" fstat below, and read again.
      if (static_cast<size_t>(n) < buf_size && total == static_cast<int64_t>(before.st_size)) {
        break;
      }
    }
    if (options.after_read_hook) options.after_read_hook(attempt);
    struct stat after;
    if (fstat(fd, &after) != 0) return Unreadable(path, errno);
    // The path may now name another file (replaced by rename while we read the old one).
    struct stat by_path;
    bool path_same = stat(path.c_str(), &by_path) == 0 && by_path.st_ino == after.st_ino &&
                     by_path.st_dev == after.st_dev;
    if (!SameFile(before, after) || !path_same || total != after.st_size) {
      continue;  // changed under us: read again
    }
    if (total == 0) {
      // Providers reject a zero size (FileMetadata.size_bytes must be positive), and the digest
      // of nothing proves nothing; report it per file instead of forwarding it.
      return WithReason(absl::FailedPreconditionError(absl::StrCat(path, " is empty")), kEmptyFile);
    }
    FileDigest out;
    out.digest = sha.Finish();
    out.size_bytes = total;
    out.mtime_ns = Ns(after.st_mtim);
    out.ctime_ns = Ns(after.st_ctim);
    out.inode = static_cast<uint64_t>(after.st_ino);
    out.attempts = attempt + 1;
    return out;
  }
  return WithReason(absl::AbortedError(absl::StrCat(path, " changed while it was hashed (",
                                                    attempts, " attempts)")),
                    kFileChangedWhileHashing);
}

}  // namespace anchord::digest
