// A file that appears whole (libs/common): written under a temporary name beside its path and
// renamed into place. Used for port and stack files, report outputs and evidence bundles.
#pragma once

#include <cstdio>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace anchord {

// A file that appears whole: written under a temporary name beside `path` and renamed into place
// by Commit, so readers never see half of it, and a writer that stops part of the way (an error,
// an interrupt) leaves whatever was at `path` as it was.
class AtomicFileWriter {
 public:
  static absl::StatusOr<std::unique_ptr<AtomicFileWriter>> Open(const std::string& path);
  ~AtomicFileWriter();  // removes the temporary file unless committed
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  absl::Status Write(absl::string_view text);
  // Closes and renames into place; with `sync`, the data reaches the disk before the rename.
  absl::Status Commit(bool sync);

 private:
  AtomicFileWriter(std::string path, std::string tmp, FILE* file)
      : path_(std::move(path)), tmp_(std::move(tmp)), file_(file) {}
  const std::string path_;
  const std::string tmp_;
  FILE* file_;  // null once closed
};

// Writes `content` to `path` with an AtomicFileWriter (not synced).
absl::Status WriteFileAtomically(const std::string& path, const std::string& content);

}  // namespace anchord
