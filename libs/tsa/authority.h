// A small RFC 3161 time-stamping authority for the sandbox and the tests (never for production):
// a self-signed root CA and a TSA certificate it issues (critical extendedKeyUsage timeStamping,
// ECDSA P-256), both generated in memory at start, and responses made with OpenSSL's TS_RESP_CTX,
// which is what `openssl ts -reply` uses.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace anchord::tsa {

inline constexpr char kSandboxPolicyOid[] = "1.2.3.4.1";  // the policy OpenSSL's docs use

struct AuthorityOptions {
  std::string name = "anchord sandbox TSA";  // the TSA certificate's CN (the CA's: "... Root CA")
  absl::Time now = absl::Now();
  // Validity of the TSA certificate relative to `now` (tests make expired ones).
  absl::Duration tsa_not_before = -absl::Hours(1);
  absl::Duration tsa_not_after = absl::Hours(24 * 365 * 5);
};

class Authority {
 public:
  static absl::StatusOr<std::unique_ptr<Authority>> Generate(const AuthorityOptions& options);
  ~Authority();
  Authority(const Authority&) = delete;
  Authority& operator=(const Authority&) = delete;

  const std::string& ca_pem() const { return ca_pem_; }    // the trust anchor
  const std::string& tsa_pem() const { return tsa_pem_; }  // the signing certificate

  // The DER TimeStampResp for a DER TimeStampReq: granted, genTime `time` (whole seconds), serial
  // `serial`, policy kSandboxPolicyOid, the request's nonce, the signer certificate when certReq.
  // A request OpenSSL cannot accept gives a rejection response (still a valid TimeStampResp).
  // INTERNAL when OpenSSL fails to build or encode one.
  absl::StatusOr<std::string> Respond(absl::string_view request_der, absl::Time time,
                                      uint64_t serial) const;

  // For hostile-input tests: a certificate with the TSA's key, subject, issuer and serial but
  // extendedKeyUsage codeSigning instead of timeStamping, signed by the CA (PEM).
  absl::StatusOr<std::string> IssueTwinWithoutTimestampingEku() const;

  class Impl;

 private:
  explicit Authority(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::string ca_pem_, tsa_pem_;
};

// For hostile-input tests: `tsr` with the certificates inside its token replaced by `cert_pem`
// (the signature is untouched).
absl::StatusOr<std::string> ReplaceTokenCertificates(absl::string_view tsr,
                                                     absl::string_view cert_pem);

}  // namespace anchord::tsa
