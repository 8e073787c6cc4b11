// The Merkle-path form of a TSA proof (".tsrm"): what a file anchored through a Merkle batch gets
// from a TSA, whose token covers the batch root, not the file.
//
// Layout (all integers big-endian), at most kMaxPathFormBytes:
//
//   "ANCHORD-TSRM\x00\x01"     14 bytes: magic and format version 1
//   digest                      32 bytes: the file's SHA-256
//   path length                  2 bytes, then the path: the op bytes of libs/merkle (append
//                               nonce, sha256, then append/prepend sibling + sha256 per level),
//                               the same bytes a joined .ots carries
//   tsr length                   4 bytes, then the .tsr: the root's DER TimeStampResp, verbatim
//
// A verifier (1) checks the file's SHA-256 equals `digest`, (2) applies the path to `digest`
// (merkle::PathRoot) to get the root R, (3) verifies the .tsr as a token over R (tsa::Verify with
// expected_digest = R; or `openssl ts -verify -digest HEX(R) -in root.tsr -CAfile ca.pem` on the
// extracted token). Nothing else is trusted: the root is recomputed, never read from the file.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "libs/digest/digest.h"

namespace anchord::tsa {

inline constexpr char kPathFormMagic[] = "ANCHORD-TSRM\x00\x01";
inline constexpr size_t kPathFormMagicSize = 14;
inline constexpr size_t kMaxPathFormBytes = 64 * 1024;

struct PathForm {
  Digest digest;
  std::string path;  // libs/merkle path bytes
  std::string tsr;   // DER TimeStampResp over root
  Digest root;       // recomputed by DecodePathForm
};

bool IsPathForm(absl::string_view bytes);

// INVALID_ARGUMENT for a malformed path or an empty/oversized tsr.
absl::StatusOr<std::string> EncodePathForm(const Digest& digest, absl::string_view path,
                                           absl::string_view tsr);

// Parses and recomputes the root. INVALID_ARGUMENT naming the byte offset and the problem.
absl::StatusOr<PathForm> DecodePathForm(absl::string_view bytes);

}  // namespace anchord::tsa
