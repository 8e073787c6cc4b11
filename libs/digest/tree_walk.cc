#include "libs/digest/tree_walk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/digest/reason.h"

namespace anchord::digest {
namespace {

// closedir as a unique_ptr deleter (a function pointer type would drop its attributes).
struct DirCloser {
  void operator()(DIR* d) const { closedir(d); }
};

int64_t Ns(const struct timespec& ts) {
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

absl::StatusOr<std::string> RealPath(const std::string& path) {
  std::unique_ptr<char, decltype(&free)> p(realpath(path.c_str(), nullptr), &free);
  if (!p) return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
  return std::string(p.get());
}

std::string Join(absl::string_view a, absl::string_view b) {
  if (a.empty()) return std::string(b);
  return absl::StrCat(a, "/", b);
}

void SetStat(const struct stat& st, WalkEntry* e) {
  e->size_bytes = st.st_size;
  e->mtime_ns = Ns(st.st_mtim);
  e->ctime_ns = Ns(st.st_ctim);
  e->inode = static_cast<uint64_t>(st.st_ino);
  e->device = static_cast<uint64_t>(st.st_dev);
}

WalkEntry ErrorEntry(std::string rel, absl::Status st, absl::string_view reason) {
  WalkEntry e;
  e.rel_path = std::move(rel);
  e.status = WithReason(std::move(st), reason);
  return e;
}

}  // namespace

OpenDir::~OpenDir() {
  close(fd_);
  if (open_count_) --*open_count_;
}

absl::StatusOr<std::string> NormalizeRelativePath(absl::string_view path, absl::string_view field) {
  if (path.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": must not contain NUL"));
  }
  if (path.size() > 4096) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": must be at most 4096 bytes"));
  }
  if (!path.empty() && path[0] == '/') {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must be relative to the hasher's root, not absolute"));
  }
  std::string out;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": must not contain a \"..\" component"));
    }
    if (!out.empty()) out.push_back('/');
    out.append(part.data(), part.size());
  }
  return out;
}

absl::StatusOr<TreeWalker> TreeWalker::Create(const std::string& root) {
  absl::StatusOr<std::string> real = RealPath(root);
  if (!real.ok()) return absl::NotFoundError(absl::StrCat("root: ", real.status().message()));
  struct stat st;
  if (stat(real->c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("root: ", root, " is not a directory"));
  }
  return TreeWalker(*real);
}

bool TreeWalker::Contains(absl::string_view resolved) const {
  if (resolved == root_) return true;
  if (root_ == "/") return !resolved.empty() && resolved[0] == '/';
  return resolved.size() > root_.size() && resolved.substr(0, root_.size()) == root_ &&
         resolved[root_.size()] == '/';
}

absl::Status TreeWalker::Walk(absl::string_view rel_dir,
                              const std::function<bool(WalkEntry&&)>& visit,
                              const std::atomic<bool>* cancelled) const {
  absl::StatusOr<std::string> start = NormalizeRelativePath(rel_dir, "path");
  if (!start.ok()) return start.status();
  {
    // The start directory itself must resolve inside the root (a symlinked component could
    // point anywhere).
    absl::StatusOr<std::string> real = RealPath(Join(root_, *start));
    if (!real.ok()) {
      return absl::NotFoundError(absl::StrCat("path: \"", *start, "\" does not exist"));
    }
    if (!Contains(*real)) {
      return absl::InvalidArgumentError(
          absl::StrCat("path: \"", *start, "\" resolves outside the hasher's root"));
    }
    struct stat st;
    if (stat(real->c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return absl::InvalidArgumentError(absl::StrCat("path: \"", *start, "\" is not a directory"));
    }
  }

  // Depth-first with an explicit stack of directories still to list; memory is one directory
  // listing at a time plus the pending directory names.
  std::vector<std::string> stack{*start};
  // Directories held open for entries still in use (each OpenDir gives its count back).
  auto open_dirs = std::make_shared<std::atomic<int>>(0);
  while (!stack.empty()) {
    std::string dir_rel = std::move(stack.back());
    stack.pop_back();
    std::string dir_abs = Join(root_, dir_rel);
    if (dir_rel.empty()) dir_abs = root_;
    std::vector<std::string> names;
    // Kept open while the entries are examined: each is stat'ed relative to it (a lookup of one
    // name instead of the whole path from /, per file).
    std::unique_ptr<DIR, DirCloser> dir;
    {
      DIR* d = opendir(dir_abs.c_str());
      if (d == nullptr) {
        int err = errno;
        if (!visit(ErrorEntry(dir_rel,
                              absl::PermissionDeniedError(absl::StrCat(
                                  "cannot list directory ", dir_rel, ": ", std::strerror(err))),
                              kFileUnreadable))) {
          return absl::CancelledError("walk stopped");
        }
        continue;
      }
      while (struct dirent* de = readdir(d)) {
        absl::string_view n = de->d_name;
        if (n == "." || n == "..") continue;
        names.emplace_back(n);
      }
      dir.reset(d);
    }
    std::sort(names.begin(), names.end());
    // Shared by this directory's regular files, when the walk may hold one more open (a copy of
    // the listing's fd: the listing itself is closed when the walk moves on).
    std::shared_ptr<const OpenDir> held;
    if (open_dirs->load() < kMaxOpenDirs) {
      int fd = fcntl(dirfd(dir.get()), F_DUPFD_CLOEXEC, 0);
      if (fd >= 0) {
        ++*open_dirs;
        held = std::make_shared<const OpenDir>(fd, open_dirs);
      }
    }
    std::vector<std::string> subdirs;
    for (const std::string& name : names) {
      if (cancelled != nullptr && cancelled->load()) return absl::CancelledError("walk cancelled");
      std::string rel = Join(dir_rel, name);
      std::string abs = Join(dir_abs, name);
      struct stat lst;
      if (fstatat(dirfd(dir.get()), name.c_str(), &lst, AT_SYMLINK_NOFOLLOW) != 0) {
        int err = errno;
        // Vanished between readdir and lstat, or a component became unreadable.
        if (!visit(ErrorEntry(
                rel,
                absl::NotFoundError(absl::StrCat("cannot stat ", rel, ": ", std::strerror(err))),
                kFileUnreadable))) {
          return absl::CancelledError("walk stopped");
        }
        continue;
      }
      if (S_ISDIR(lst.st_mode)) {
        subdirs.push_back(rel);
        continue;
      }
      WalkEntry e;
      e.rel_path = rel;
      if (S_ISLNK(lst.st_mode)) {
        absl::StatusOr<std::string> target = RealPath(abs);
        struct stat st;
        if (!target.ok()) {
          e = ErrorEntry(rel, absl::NotFoundError(absl::StrCat(rel, ": dangling symbolic link")),
                         kFileUnreadable);
        } else if (!Contains(*target)) {
          e = ErrorEntry(rel,
                         absl::PermissionDeniedError(
                             absl::StrCat(rel, ": symbolic link points outside the hasher's root")),
                         kPathOutsideRoot);
        } else if (stat(target->c_str(), &st) != 0) {
          e = ErrorEntry(
              rel,
              absl::NotFoundError(absl::StrCat("cannot stat ", rel, ": ", std::strerror(errno))),
              kFileUnreadable);
        } else if (S_ISDIR(st.st_mode)) {
          e = ErrorEntry(rel,
                         absl::FailedPreconditionError(absl::StrCat(
                             rel, ": symbolic link to a directory; not descended into")),
                         kNotARegularFile);
        } else if (!S_ISREG(st.st_mode)) {
          e = ErrorEntry(rel,
                         absl::FailedPreconditionError(
                             absl::StrCat(rel, ": symbolic link to a FIFO, socket or device")),
                         kNotARegularFile);
        } else {
          e.real_path = *target;
          SetStat(st, &e);
        }
      } else if (S_ISREG(lst.st_mode)) {
        e.real_path = abs;
        SetStat(lst, &e);
        if (held) {
          e.dir = held;
          e.name = name;
        }
      } else {
        e = ErrorEntry(rel,
                       absl::FailedPreconditionError(
                           absl::StrCat(rel, ": not a regular file (FIFO, socket or device)")),
                       kNotARegularFile);
      }
      if (!visit(std::move(e))) return absl::CancelledError("walk stopped");
    }
    // Push in reverse so the smallest name is listed next: overall order is depth-first by name.
    for (auto it = subdirs.rbegin(); it != subdirs.rend(); ++it) stack.push_back(std::move(*it));
  }
  return absl::OkStatus();
}

}  // namespace anchord::digest
