#include "libs/common/atomic_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "libs/common/status_macros.h"

namespace anchord {

absl::StatusOr<std::unique_ptr<AtomicFileWriter>> AtomicFileWriter::Open(const std::string& path) {
  std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) {
    return absl::UnavailableError(absl::StrCat(
        "cannot write ", tmp, ": ", std::error_code(errno, std::generic_category()).message()));
  }
  return std::unique_ptr<AtomicFileWriter>(new AtomicFileWriter(path, std::move(tmp), f));
}

AtomicFileWriter::~AtomicFileWriter() {
  if (file_ == nullptr) return;
  std::fclose(file_);
  std::remove(tmp_.c_str());
}

absl::Status AtomicFileWriter::Write(absl::string_view text) {
  if (file_ == nullptr) return absl::FailedPreconditionError(absl::StrCat(tmp_, " is closed"));
  if (!text.empty() && std::fwrite(text.data(), 1, text.size(), file_) != text.size()) {
    return absl::UnavailableError(absl::StrCat(
        "cannot write ", tmp_, ": ", std::error_code(errno, std::generic_category()).message()));
  }
  return absl::OkStatus();
}

absl::Status AtomicFileWriter::Commit(bool sync) {
  if (file_ == nullptr) return absl::FailedPreconditionError(absl::StrCat(tmp_, " is closed"));
  const bool written = std::fflush(file_) == 0 && (!sync || fsync(fileno(file_)) == 0);
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  if (!written || !closed) {
    std::remove(tmp_.c_str());
    return absl::UnavailableError(absl::StrCat("cannot write ", tmp_));
  }
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) {
    std::remove(tmp_.c_str());
    return absl::UnavailableError(absl::StrCat("cannot rename ", tmp_, " to ", path_));
  }
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& content) {
  ANCHORD_ASSIGN_OR_RETURN(std::unique_ptr<AtomicFileWriter> out, AtomicFileWriter::Open(path));
  ANCHORD_RETURN_IF_ERROR(out->Write(content));
  return out->Commit(/*sync=*/false);
}

}  // namespace anchord
