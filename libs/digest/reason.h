// Machine-readable per-file reasons ("FILE_UNREADABLE", ...) carried inside an absl::Status as a
// payload, so functions can keep returning absl::Status/StatusOr and the service can still fill
// ItemStatus.reason.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/string_view.h"

namespace anchord::digest {

inline constexpr absl::string_view kReasonPayloadUrl = "type.anchord.dev/reason";

inline constexpr absl::string_view kFileUnreadable = "FILE_UNREADABLE";
inline constexpr absl::string_view kNotARegularFile = "NOT_A_REGULAR_FILE";
inline constexpr absl::string_view kPathOutsideRoot = "PATH_OUTSIDE_ROOT";
inline constexpr absl::string_view kFileChangedWhileHashing = "FILE_CHANGED_WHILE_HASHING";
inline constexpr absl::string_view kEmptyFile = "EMPTY_FILE";

inline absl::Status WithReason(absl::Status status, absl::string_view reason) {
  status.SetPayload(kReasonPayloadUrl, absl::Cord(reason));
  return status;
}

// The reason attached with WithReason, or "" when there is none.
inline std::string ReasonOf(const absl::Status& status) {
  auto p = status.GetPayload(kReasonPayloadUrl);
  return p.has_value() ? std::string(*p) : std::string();
}

}  // namespace anchord::digest
