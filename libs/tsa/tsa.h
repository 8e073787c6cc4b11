// RFC 3161 time-stamp protocol on top of OpenSSL's TS_* API: the request anchord sends, and the
// checks a response passes before anything stores or reports it.
//
// A stored TSA proof ("a .tsr") is the DER TimeStampResp exactly as the authority sent it (status
// granted, the token inside), which is what `openssl ts -verify -in FILE.tsr` reads. Every parser
// here bounds its input (kMaxTsrBytes) before OpenSSL sees it, and nothing here throws.
//
// Verification (Verify) checks, in order, and names the first failure:
//   1. the bytes parse as a TimeStampResp of at most kMaxTsrBytes, status granted, with a token;
//   2. the message imprint is SHA-256 of the expected digest (a mismatch: another file);
//   3. the nonce, when the caller expects one (a fresh answer to our request);
//   4. the signer certificate (carried in the token, certReq) has the critical timeStamping
//      extended key usage and chains to one of the trust anchors, valid at the token's genTime;
//   5. the CMS signature and the ESS signing-certificate binding (TS_RESP_verify_response);
//   6. with `now` set: genTime is not later than now + max_skew nor older than now - max_age.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "libs/digest/digest.h"

namespace anchord::tsa {

// The largest .tsr any parser here accepts (a token with a chain of a few certificates is 2-8 KB;
// the poller's evidence limit is 64 KiB).
inline constexpr size_t kMaxTsrBytes = 60 * 1024;
// The nonce anchord draws per request (64 random bits, as `openssl ts -query` does).
inline constexpr size_t kNonceBytes = 8;

struct TsaRequest {
  std::string der;        // DER TimeStampReq
  std::string nonce_hex;  // the nonce as hex of its big-endian magnitude (leading zeros dropped)
};

// A TimeStampReq for `digest`: version 1, SHA-256 imprint, a fresh random nonce (OpenSSL
// RAND_bytes), certReq true, no policy. INTERNAL when the CSPRNG or OpenSSL fails.
absl::StatusOr<TsaRequest> BuildRequest(const Digest& digest);

// Parses a DER TimeStampReq (the sandbox's side). Returns the imprint (raw), its algorithm must be
// SHA-256. INVALID_ARGUMENT naming the problem otherwise.
struct ParsedRequest {
  std::string imprint;
  std::string nonce_hex;  // empty when the request has none
  bool cert_req = false;
};
absl::StatusOr<ParsedRequest> ParseRequest(absl::string_view der);

// What a token says (no trust implied: see Verify).
struct TokenInfo {
  std::string tsa_name;        // the TSTInfo tsa field, else the signer certificate's subject
  std::string signer_subject;  // one-line subject of the signer certificate ("" when absent)
  absl::Time gen_time = absl::InfinitePast();
  std::string gen_time_text;   // as encoded (GeneralizedTime, e.g. 20261203142501Z)
  std::string policy_oid;      // dotted
  std::string serial_hex;      // lowercase hex, no leading zeros ("0" for zero)
  std::string imprint;         // raw bytes of the message imprint
  std::string hash_algorithm;  // "sha256" etc.
  std::string nonce_hex;       // "" when absent
};

// Parses a .tsr (DER TimeStampResp): INVALID_ARGUMENT naming the problem for bytes that are not
// one (empty, larger than kMaxTsrBytes, bad DER, trailing bytes, no token); FAILED_PRECONDITION
// when the status is not granted (the message carries the status text and failure info).
absl::StatusOr<TokenInfo> Inspect(absl::string_view tsr);

// True when `bytes` start like a DER SEQUENCE (what a .tsr is); a cheap format sniff.
bool LooksLikeTsr(absl::string_view bytes);

// Trust anchors and intermediate certificates for Verify.
struct Trust {
  std::string ca_pem;         // one or more PEM certificates: the trust anchors (required)
  std::string untrusted_pem;  // optional intermediates (PEM), besides those in the token
};

struct VerifyOptions {
  // What the imprint must equal. Required (INVALID_ARGUMENT without it): an unset digest must
  // never mean "any".
  std::optional<Digest> expected_digest;
  std::string expected_nonce_hex;  // checked when not empty
  // When not InfinitePast: the time sanity check of step 6 (fresh answers). Archived tokens are
  // verified without it.
  absl::Time now = absl::InfinitePast();
  absl::Duration max_skew = absl::Minutes(5);
  absl::Duration max_age = absl::Hours(1);
};

// Verifies a .tsr (steps 1-6 above). INVALID_ARGUMENT for bytes that are not a .tsr or an unusable
// trust store (no certificate in ca_pem); FAILED_PRECONDITION naming the check that failed
// (status not granted, imprint, nonce, EKU, chain, signature, time). On success the token's info.
absl::StatusOr<TokenInfo> Verify(absl::string_view tsr, const Trust& trust,
                                 const VerifyOptions& options);

// The certificates the token carries (signer first), as PEM, for bundling. INVALID_ARGUMENT when
// `tsr` is not a .tsr.
absl::StatusOr<std::string> TokenCertificatesPem(absl::string_view tsr);

// A readable description (several lines), like `openssl ts -reply -text` but short.
std::string RenderInfo(const TokenInfo& info);

// Number of certificates in a PEM text (0 when none parse); for validating --tsa-ca-file.
int CountPemCertificates(absl::string_view pem);

}  // namespace anchord::tsa
