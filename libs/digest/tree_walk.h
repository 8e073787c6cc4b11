// A directory walk confined to a root directory.
//
// Rules:
//  - The requested directory is a relative path: absolute paths and any ".." component are
//    rejected with INVALID_ARGUMENT naming the field (`path`).
//  - Regular files are reported with their resolved location.
//  - Symlinks are resolved with realpath(3). A link whose target is outside the root is reported
//    per entry as PATH_OUTSIDE_ROOT; a dangling link as FILE_UNREADABLE. A link to a directory
//    inside the root is NOT descended into (that would allow cycles and visiting a subtree twice):
//    it is reported as NOT_A_REGULAR_FILE with a message that says so.
//  - FIFOs, sockets and devices are reported as NOT_A_REGULAR_FILE from lstat/stat, never opened.
//  - A subdirectory that cannot be listed, or an entry that vanishes between readdir and lstat,
//    is reported as FILE_UNREADABLE and the walk goes on.
//  - Entries of a directory are visited in byte order of their names (deterministic output).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace anchord::digest {

// Validates a root-relative directory path. Returns it normalized: no leading/trailing '/', no
// "." or empty components; "" for the root itself. INVALID_ARGUMENT naming `field` otherwise.
absl::StatusOr<std::string> NormalizeRelativePath(absl::string_view path,
                                                  absl::string_view field = "path");

// A directory the walk listed, kept open while entries of it are in use, so that its files are
// opened and checked relative to it (one name to look up, not the whole path from /, and no
// component of the path can be swapped for a symlink between the walk and the read).
class OpenDir {
 public:
  OpenDir(int fd, std::shared_ptr<std::atomic<int>> open_count)
      : fd_(fd), open_count_(std::move(open_count)) {}
  OpenDir(const OpenDir&) = delete;
  OpenDir& operator=(const OpenDir&) = delete;
  ~OpenDir();
  int fd() const { return fd_; }

 private:
  int fd_;
  std::shared_ptr<std::atomic<int>> open_count_;  // the walk's count of directories held open
};

struct WalkEntry {
  // Path relative to the root, as named in the tree (not resolved), e.g. "a/b.txt".
  std::string rel_path;
  // Resolved absolute path of the file (realpath for symlinks); set when status is OK.
  std::string real_path;
  // From stat of the resolved file; set when status is OK.
  int64_t size_bytes = 0;
  int64_t mtime_ns = 0;
  // The rest of that stat, so that the hashing can stand on it instead of a stat of its own.
  int64_t ctime_ns = 0;
  uint64_t inode = 0;
  uint64_t device = 0;
  // For a regular file (not a symlink) in a directory the walk still holds open: that directory
  // and the file's name in it. Null (then open real_path) when the walk already holds its limit
  // of open directories (kMaxOpenDirs): a deep tree of small directories never runs out of fds.
  std::shared_ptr<const OpenDir> dir;
  std::string name;
  // OK for a regular file to hash; otherwise the per-entry problem, with a reason (reason.h).
  absl::Status status;
};

class TreeWalker {
 public:
  // Directories one Walk holds open at most for the entries still in use (see WalkEntry::dir):
  // with the hasher's 16 concurrent calls at most 256 descriptors, well under a default limit of
  // 1,024, while a window of small files spans only a few directories of any size.
  static constexpr int kMaxOpenDirs = 16;

  // `root` must be an existing directory; it is resolved with realpath once.
  static absl::StatusOr<TreeWalker> Create(const std::string& root);

  const std::string& root() const { return root_; }

  // Walks `rel_dir` (validated with NormalizeRelativePath) and calls `visit` for every entry.
  // `visit` returns false to stop early. Returns INVALID_ARGUMENT (field `path`) for a bad path,
  // NOT_FOUND when the directory does not exist, CANCELLED when `cancelled` became true or
  // `visit` returned false.
  absl::Status Walk(absl::string_view rel_dir, const std::function<bool(WalkEntry&&)>& visit,
                    const std::atomic<bool>* cancelled = nullptr) const;

  // True when the absolute, resolved `path` is the root or below it.
  bool Contains(absl::string_view resolved) const;

 private:
  explicit TreeWalker(std::string root) : root_(std::move(root)) {}
  std::string root_;
};

}  // namespace anchord::digest
