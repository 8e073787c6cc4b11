// A cheap structural check of a downloaded .ots file before it is stored: the poller never keeps
// evidence that cannot be about our digest (see docs/ots-format.md, "File layout").
#pragma once

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "libs/digest/digest.h"

namespace anchord::poller {

inline constexpr size_t kMaxOtsBytes = 4 * 1024 * 1024;

// OK when `ots` starts with the OpenTimestamps detached-file magic, major version 1, the sha256
// file-hash op (0x08) and `digest` at bytes 33..64, followed by a non-empty
// timestamp tree, and is at most kMaxOtsBytes. Otherwise DATA_LOSS saying what is wrong.
absl::Status CheckOtsFile(absl::string_view ots, const Digest& digest);

// Evidence of any provider: an .ots (CheckOtsFile), or, when it does not start with the OTS magic
// but like DER, an RFC 3161 .tsr (the tsa provider's token): a granted TimeStampResp of at most
// tsa::kMaxTsrBytes whose SHA-256 message imprint is `digest`. The token's signature was checked
// against the configured CA by the adapter before it was handed over. DATA_LOSS otherwise.
absl::Status CheckEvidence(absl::string_view evidence, const Digest& digest);

}  // namespace anchord::poller
