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

bool SameAsExpected(const ExpectedStat& e, const struct stat& st) {
  return st.st_size == e.size_bytes && Ns(st.st_mtim) == e.mtime_ns &&
         Ns(st.st_ctim) == e.ctime_ns && static_cast<uint64_t>(st.st_ino) == e.inode &&
         static_cast<uint64_t>(st.st_dev) == e.device;
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
  FileRef file;
  file.path = path;
  return HashFile(file, options, bytes_read);
}

absl::StatusOr<FileDigest> HashFile(const FileRef& file, const HashFileOptions& options,
                                    std::atomic<int64_t>* bytes_read) {
  const std::string& path = file.path;
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
  // O_NONBLOCK: opening a FIFO that slipped past the caller's lstat must not block.
  constexpr int kFlags = O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC;
  const bool at = file.dir_fd >= 0;
  auto open_file = [&] {
    return at ? openat(file.dir_fd, file.name.c_str(), kFlags) : open(path.c_str(), kFlags);
  };
  auto stat_path = [&](struct stat* st) {
    return at ? fstatat(file.dir_fd, file.name.c_str(), st, 0) : stat(path.c_str(), st);
  };
  int attempts = options.max_attempts < 1 ? 1 : options.max_attempts;
  // The first read may stand on the caller's stat instead of an fstat before it (one system call
  // less per file). When what it read turns out not to be that file, unchanged and regular, it
  // does not count as an attempt: the usual reads follow, each with its own fstat before.
  bool trust_expected = file.expected.has_value();
  Sha256 sha;
  for (int attempt = 0; attempt < attempts;) {
    const bool fast = trust_expected;
    trust_expected = false;
    // Opened afresh on every attempt: a file replaced by rename is picked up by the retry.
    int fd = open_file();
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
    int64_t expect_size;
    if (fast) {
      expect_size = file.expected->size_bytes;
    } else {
      if (fstat(fd, &before) != 0) return Unreadable(path, errno);
      if (!S_ISREG(before.st_mode)) {
        return WithReason(
            absl::FailedPreconditionError(absl::StrCat(path, " is not a regular file")),
            kNotARegularFile);
      }
      expect_size = before.st_size;
    }
    // O_NONBLOCK is left set: it has no effect on reads of regular files (and clearing it cost
    // two syscalls per file). The read-ahead hint only pays off for files larger than a buffer.
    if (static_cast<size_t>(expect_size) > buf_size) {
      posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    }

    sha.Reset();
    int64_t total = 0;
    bool misread = false;  // fast: not the file the caller's stat saw (or not a regular one)
    for (;;) {
      if (options.cancelled != nullptr && options.cancelled->load()) {
        return absl::CancelledError(absl::StrCat("hashing of ", path, " cancelled"));
      }
      ssize_t n = read(fd, buf, buf_size);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (fast) {
          misread = true;  // e.g. a directory or FIFO swapped in: the usual read says which
          break;
        }
        return Unreadable(path, errno);
      }
      if (n == 0) break;
      sha.Update(buf, static_cast<size_t>(n));
      total += n;
      if (bytes_read != nullptr) bytes_read->fetch_add(n);
      // More than the caller's stat said: another file (a device never ends); stop reading.
      if (fast && total > expect_size) {
        misread = true;
        break;
      }
      // A short read that reaches the size seen before reading is the end: skip the read that
      // would return 0 (one syscall per small file). A file that grew meanwhile is caught by the
      // size check against the "after" fstat below, and read again.
      if (static_cast<size_t>(n) < buf_size && total == expect_size) break;
    }
    if (misread) continue;
    if (options.after_read_hook) options.after_read_hook(attempt);
    struct stat after;
    if (fstat(fd, &after) != 0) {
      if (fast) continue;
      return Unreadable(path, errno);
    }
    if (fast && !S_ISREG(after.st_mode)) continue;
    // The path may now name another file (replaced by rename while we read the old one).
    struct stat by_path;
    bool path_same = stat_path(&by_path) == 0 && by_path.st_ino == after.st_ino &&
                     by_path.st_dev == after.st_dev;
    bool same = fast ? SameAsExpected(*file.expected, after) : SameFile(before, after);
    if (!same || !path_same || total != after.st_size) {
      if (!fast) ++attempt;
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
