// Reading a Digest back from a store column. Stores keep digests as 32-byte blobs; a row whose blob
// has another size (a damaged or hand-edited database) must surface as a store error naming the
// column, never as a crash or a Digest made of the wrong bytes.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "libs/digest/digest.h"

namespace anchord {

// The digest in `blob`, read from `column` (e.g. "submissions.digest"). DATA_LOSS
// "<column>: a SHA-256 digest must be exactly 32 bytes, got N" for any other size.
inline absl::StatusOr<Digest> DigestFromColumn(absl::string_view blob, absl::string_view column) {
  absl::StatusOr<Digest> d = Digest::FromBytes(blob, column);
  if (!d.ok()) return absl::DataLossError(d.status().message());
  return d;
}

}  // namespace anchord
