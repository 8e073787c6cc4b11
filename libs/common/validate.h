// Validation of the fields that cross the gRPC API. Every error is InvalidArgument and starts with
// the name of the offending field, so a caller knows at once what to fix.
#pragma once

#include <cstdint>
#include "absl/strings/string_view.h"

#include <string>

#include "absl/status/status.h"

namespace anchord {

inline constexpr size_t kDigestBytes = 32;
inline constexpr size_t kMaxFilenameBytes = 255;
inline constexpr size_t kMaxSourcePathBytes = 4096;
inline constexpr size_t kMaxJobBytes = 128;
inline constexpr size_t kMaxRequestIdBytes = 128;
inline constexpr size_t kMaxMimeTypeBytes = 255;

// A raw SHA-256 digest: exactly 32 bytes.
absl::Status ValidateDigest(absl::string_view digest, absl::string_view field = "digest");
// A display filename: 1..255 bytes, no '/', no NUL, not "." or "..".
absl::Status ValidateFilename(absl::string_view name, absl::string_view field = "filename");
// A positive size in bytes.
absl::Status ValidateSize(int64_t size, absl::string_view field = "size_bytes");
// A job name: empty (means "default") or 1..128 bytes of [A-Za-z0-9._-].
absl::Status ValidateJob(absl::string_view job, absl::string_view field = "job");
// A caller-chosen id: 1..128 bytes, no NUL.
absl::Status ValidateRequestId(absl::string_view id, absl::string_view field = "request_id");
// Optional MIME type: empty or type/subtype of printable ASCII, at most 255 bytes.
absl::Status ValidateMimeType(absl::string_view mime, absl::string_view field = "mime_type");
// Optional source path: at most 4096 bytes, no NUL.
absl::Status ValidateSourcePath(absl::string_view path, absl::string_view field = "source_path");

// The job name to store: "default" for an empty one.
// How much of a caller's id (request_id, file_id, ...) an answer or a message may quote.
inline constexpr size_t kMaxQuotedIdBytes = 64;
// The id to echo in a per-item answer: whole when it is a valid id (at most kMaxRequestIdBytes,
// which the caller needs to match the answer), else only its first kMaxQuotedIdBytes: a
// multi-megabyte id echoed whole could exceed the caller's receive limit and cost it the answers
// to every good item after it.
std::string EchoId(absl::string_view id);
// A caller-supplied string for an error message: at most kMaxQuotedIdBytes of it, escaped
// (absl::CHexEscape), followed by "... (N bytes)" when cut.
std::string QuoteCallerText(absl::string_view text);

inline absl::string_view JobOrDefault(absl::string_view job) {
  return job.empty() ? "default" : job;
}

}  // namespace anchord
