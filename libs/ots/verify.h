// Verifying an OpenTimestamps proof (docs/ots-format.md, "Verification").
//
// The tree's messages were already recomputed from the digest while parsing (ots.h computes every
// op result eagerly), so the message at a node carrying an attestation IS the commitment derived
// from the proof's digest. Verification therefore is:
//   1. compare the proof's digest with the file's digest (hashed with the proof's file-hash op);
//   2. for every attestation reachable from the root, classify it; a Bitcoin attestation's
//      commitment must be exactly 32 bytes and equal the merkle root (raw header bytes 36..67,
//      internal order) of a proof-of-work-checked header at its height (headers.h; mainnet rules,
//      difficulty floor included, unless the source was explicitly made for regtest).
// At most kMaxHeaderLookups distinct heights are looked up per proof (real proofs name one or
// two); further Bitcoin attestations are HEADER_UNAVAILABLE, so a hostile proof cannot make one
// verification send thousands of requests to a node.
// Nothing is fetched from calendars here (see upgrade.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "libs/ots/headers.h"
#include "libs/ots/ots.h"

namespace anchord::ots {

enum class AttestationStatus {
  kVerified,           // Bitcoin: commitment == merkle root of a checked header
  kMismatch,           // Bitcoin: commitment != merkle root (or not 32 bytes)
  kHeaderUnavailable,  // Bitcoin: no (trustworthy) header for that height from the source
  kPending,            // calendar promise; upgrade to complete
  kUnsupported,        // Litecoin, Ethereum, unknown tags: not checked
};
const char* AttestationStatusName(AttestationStatus s);  // "VERIFIED", "MISMATCH", ...
// "bitcoin", "litecoin", "ethereum", "pending", "unknown".
const char* AttestationKindName(Attestation::Kind k);

struct AttestationResult {
  Attestation attestation;
  std::string commitment;  // the message at the attested node
  AttestationStatus status = AttestationStatus::kUnsupported;
  int64_t block_time = 0;  // nTime of the header when VERIFIED
  std::string block_hash;  // display hex, when a header was obtained
  std::string detail;      // why (mismatch / unavailable / unsupported), human readable
};

enum class Verdict {
  kVerified,        // digest matches, >= 1 Bitcoin attestation VERIFIED, none MISMATCH
  kDigestMismatch,  // the proof is for another file
  kMismatch,        // a Bitcoin commitment differs from its block's merkle root
  kNotVerifiable,   // nothing failed, nothing verified (pending only, header unavailable, ...)
};
const char* VerdictName(Verdict v);

struct VerifyResult {
  std::string file_hash_op;  // "sha256", ...
  std::string proof_digest;  // raw bytes stored in the proof
  std::string file_digest;   // raw bytes computed from / given for the file; empty if unchecked
  bool digest_checked = false;
  bool digest_matches = false;
  // In tree order (canonical: depth first, attestations before ops).
  std::vector<AttestationResult> attestations;
  Verdict verdict = Verdict::kNotVerifiable;
  bool verified = false;  // verdict == kVerified
  // The earliest VERIFIED attestation (lowest block time), when any.
  std::optional<AttestationResult> earliest;
  std::string message;  // one line saying what holds or why not
  // The header source checked headers under regtest rules (any difficulty): a VERIFIED result is
  // about a test chain, not Bitcoin, and every output must say so.
  bool regtest_headers = false;
};

inline constexpr size_t kMaxHeaderLookups = 16;

// Verifies against a known file digest (raw bytes, the length of the proof's file-hash op).
// `file_digest` empty means "not checked" (never verified then). `headers` may be null (every
// Bitcoin attestation is then HEADER_UNAVAILABLE). Never fails: problems are in the result.
VerifyResult Verify(const DetachedFile& proof, absl::string_view file_digest,
                    BlockHeaderSource* headers);

// Hashes the file at `path` with the proof's file-hash op (streamed), then Verify. Fails only when
// the file cannot be read.
absl::StatusOr<VerifyResult> VerifyFile(const DetachedFile& proof, const std::string& path,
                                        BlockHeaderSource* headers);

// Streams a file through a crypto op (sha256, sha1, ripemd160; keccak256 reads the whole file).
absl::StatusOr<std::string> HashFileWithOp(const Op& op, const std::string& path);

}  // namespace anchord::ots
