// anchorctl's OpenTimestamps commands: verify, info, upgrade. Each returns the process exit code
// and writes results to `out`, messages to `err`; none throws.
//
// Exit codes (verify): 0 verified; 1 not verifiable (pending only, header unavailable, no
// Bitcoin attestation); 2 bad input (unreadable file or proof, malformed proof: the message names
// the byte offset and the reason; bad header source spec); 3 mismatch (the proof is for another
// file, or a Bitcoin commitment differs from its block's merkle root).
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "libs/ots/upgrade.h"
#include "libs/ots/verify.h"

namespace anchord::anchorctl {

inline constexpr int kOtsExitVerified = 0;
inline constexpr int kOtsExitNotVerifiable = 1;
inline constexpr int kOtsExitBadInput = 2;
inline constexpr int kOtsExitMismatch = 3;

// `proof_path` empty = file_path + ".ots". `header_source` is a spec for ots::MakeHeaderSource
// ("file:PATH", "rest:URL", "rpc:URL[,cookie=PATH|,user=U,password=P]", "sandbox:URL"); empty =
// no source (Bitcoin attestations are listed with the merkle root to check by hand). `network`
// ("mainnet" or empty, "regtest") picks the header rules (ots::HeaderPolicy); a bad value is
// exit 2. Output under regtest rules says so (text: a NOTE line; JSON: "network").
//
// An RFC 3161 proof (a .tsr, or its Merkle-path form .tsrm; recognised by its bytes) is checked
// against `tsa_ca_file` (PEM trust anchors): the file's SHA-256 (through the Merkle path to the
// root for .tsrm) must be the token's imprint, the signer must carry the timeStamping EKU and chain
// to the anchors, the signature must verify. The TSA's name, time, policy OID and serial are
// printed. Exit 1 when no --tsa-ca-file is given (the signature cannot be checked).
int RunVerify(const std::string& file_path, const std::string& proof_path,
              const std::string& header_source, bool json, std::ostream& out, std::ostream& err,
              const std::string& network = "", const std::string& tsa_ca_file = "");

// The same with an already built source (tests, and `report` which reuses one source).
int RunVerifyWith(const std::string& file_path, const std::string& proof_path,
                  ots::BlockHeaderSource* headers, bool json, std::ostream& out, std::ostream& err,
                  const std::string& tsa_ca_file = "");

// `full` prints long derived messages whole (libs/ots/info.h); the output stays linear in the
// proof's size either way.
int RunInfo(const std::string& proof_path, bool json, bool full, std::ostream& out,
            std::ostream& err);

struct OtsUpgradeOptions {
  std::vector<std::string> whitelist;  // extra calendar URL globs; empty = reference default
  std::vector<std::string> calendars;  // ask these instead of the URIs in the proof
  // Fetcher; empty = real HTTP (ots::MakeHttpCalendarFetch).
  ots::CalendarFetch fetch;
};

// Upgrades each proof in place: writes PROOF.tmp, hard-links the old file to PROOF.bak (refuses
// when PROOF.bak exists, like the reference), then renames PROOF.tmp over PROOF. Exit 0 when every
// proof is complete (has a Bitcoin attestation), 1 when some is still pending, 2 on bad input or a
// write failure.
int RunUpgrade(const std::vector<std::string>& proof_paths, const OtsUpgradeOptions& options,
               std::ostream& out, std::ostream& err);

// Helpers for `report` and scripts.
int VerifyExitCode(const ots::VerifyResult& r);
std::string VerifyResultJson(const ots::VerifyResult& r);  // one JSON object

}  // namespace anchord::anchorctl
