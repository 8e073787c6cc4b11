// A cheap structural check of a downloaded .ots file before it is stored: the poller never keeps
// evidence that cannot be about our digest (see docs/ots-format.md, "File layout").
#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace anchord::poller {

inline constexpr size_t kMaxOtsBytes = 4 * 1024 * 1024;

// OK when `ots` starts with the OpenTimestamps detached-file magic, major version 1, the sha256
// file-hash op (0x08) and `digest` (32 raw bytes) at bytes 33..64, followed by a non-empty
// timestamp tree, and is at most kMaxOtsBytes. Otherwise DATA_LOSS saying what is wrong.
absl::Status CheckOtsFile(absl::string_view ots, absl::string_view digest);

}  // namespace anchord::poller
