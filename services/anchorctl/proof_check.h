// Checking one proof of any kind anchord hands out, from its bytes: an OpenTimestamps .ots, an
// RFC 3161 .tsr, or the Merkle-path form of a .tsr (libs/tsa/path_form.h). Shared by `verify`,
// `report` and `verify-bundle` so that all three say the same thing about the same bytes.
#pragma once

#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "libs/digest/digest.h"
#include "libs/tsa/tsa.h"

namespace anchord::anchorctl {

enum class ProofFormat { kOts, kTsr, kTsrPath, kUnknown };

// By the first bytes: the OTS magic, the ANCHORD-TSRM magic, a DER SEQUENCE; kUnknown otherwise.
ProofFormat DetectProofFormat(absl::string_view bytes);
const char* ProofFormatName(ProofFormat f);  // "ots", "tsr", "tsrm", "unknown"
// The file extension anchord uses for the format (".ots", ".tsr", ".tsrm").
const char* ProofExtension(ProofFormat f);

struct TsaCheck {
  // Same codes as `verify`: 0 verified, 1 not verifiable (no trust anchors given), 2 malformed
  // proof, 3 mismatch (another file, tampered token, untrusted or wrong signer).
  int exit = 2;
  std::string message;
  std::optional<tsa::TokenInfo> info;  // when the token parsed
  std::string root_hex;                // Merkle-path form: the recomputed root
};

// Checks a .tsr or .tsrm against the file's SHA-256 `digest`, trusting `ca_pem`
// (empty: the token is parsed and matched but its signature cannot be checked: exit 1).
TsaCheck CheckTsaProof(absl::string_view proof, const Digest& digest, const std::string& ca_pem,
                       const std::string& untrusted_pem = "");

}  // namespace anchord::anchorctl
