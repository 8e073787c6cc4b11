#include "libs/common/validate.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace anchord {

std::string EchoId(absl::string_view id) {
  if (id.size() <= kMaxRequestIdBytes) return std::string(id);
  return std::string(id.substr(0, kMaxQuotedIdBytes));
}

std::string QuoteCallerText(absl::string_view text) {
  std::string out = absl::CHexEscape(text.substr(0, std::min(text.size(), kMaxQuotedIdBytes)));
  if (text.size() > kMaxQuotedIdBytes) absl::StrAppend(&out, "... (", text.size(), " bytes)");
  return out;
}

absl::Status ValidateDigest(absl::string_view digest, absl::string_view field) {
  if (digest.size() != kDigestBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": a SHA-256 digest must be exactly 32 bytes, got ", digest.size()));
  }
  return absl::OkStatus();
}

absl::Status ValidateFilename(absl::string_view name, absl::string_view field) {
  if (name.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": must not be empty"));
  if (name.size() > kMaxFilenameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must be at most ", kMaxFilenameBytes, " bytes, got ", name.size()));
  }
  if (name == "." || name == "..") {
    return absl::InvalidArgumentError(absl::StrCat(field, ": \"", name, "\" is not a file name"));
  }
  for (char c : name) {
    if (c == '/' || c == '\0') {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": must not contain '/' or NUL characters"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateSize(int64_t size, absl::string_view field) {
  if (size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": must be positive, got ", size));
  }
  return absl::OkStatus();
}

absl::Status ValidateJob(absl::string_view job, absl::string_view field) {
  if (job.size() > kMaxJobBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must be at most ", kMaxJobBytes, " bytes, got ", job.size()));
  }
  for (char c : job) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": may contain only letters, digits, '.', '_' and '-'"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateRequestId(absl::string_view id, absl::string_view field) {
  if (id.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": must not be empty"));
  if (id.size() > kMaxRequestIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must be at most ", kMaxRequestIdBytes, " bytes, got ", id.size()));
  }
  if (id.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": must not contain NUL"));
  }
  return absl::OkStatus();
}

absl::Status ValidateMimeType(absl::string_view mime, absl::string_view field) {
  if (mime.empty()) return absl::OkStatus();
  if (mime.size() > kMaxMimeTypeBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must be at most ", kMaxMimeTypeBytes, " bytes"));
  }
  bool slash = false;
  for (char c : mime) {
    if (c == '/') slash = true;
    if (c <= ' ' || c > '~') {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": must be printable ASCII without spaces"));
    }
  }
  if (!slash) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": must look like type/subtype"));
  }
  return absl::OkStatus();
}

absl::Status ValidateSourcePath(absl::string_view path, absl::string_view field) {
  if (path.size() > kMaxSourcePathBytes) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": must be at most ", kMaxSourcePathBytes,
                                                   " bytes, got ", path.size()));
  }
  if (path.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": must not contain NUL"));
  }
  return absl::OkStatus();
}

}  // namespace anchord
