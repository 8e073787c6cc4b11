// An RFC 3161 time-stamping authority (internal to services/sandbox), signing with a test CA
// generated when the sandbox starts (libs/tsa/authority.h: a root CA and a TSA certificate with
// the critical timeStamping EKU, ECDSA P-256). Never a real trust anchor: the CA exists only for
// the sandbox's lifetime.
//
//   POST /tsa         Content-Type application/timestamp-query, body a DER TimeStampReq ->
//                     200 application/timestamp-reply (a DER TimeStampResp: granted with a token,
//                     or a rejection for a request OpenSSL cannot answer); 415 for another
//                     Content-Type, 400 for a body that is not a TimeStampReq (SHA-256 only).
//   GET  /tsa/ca.pem  the CA certificate (what a client passes as --tsa-ca-file)
//
// POST /tsa is an API request like the others: it counts in the stats (`tsa`), waits for the
// latency fault and may get a 5xx, a cut-off answer or a storm 429 (Core::Admit). Requests per
// `tsa_limit` per window per client IP (0 = unlimited), 429 with Retry-After beyond.
#pragma once

#include <httplib.h>

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "libs/tsa/authority.h"
#include "services/sandbox/sandbox_core.h"

namespace anchord::sandbox::internal {

class TsaApi {
 public:
  // Generates the authority (INTERNAL when OpenSSL cannot).
  static absl::StatusOr<std::unique_ptr<TsaApi>> Create(Core* core);

  void Register(httplib::Server& svr);
  static bool Owns(absl::string_view path);
  void HandleUnknown(const httplib::Request& req, httplib::Response& res);
  const std::string& ca_pem() const { return authority_->ca_pem(); }

 private:
  TsaApi(Core* core, std::unique_ptr<tsa::Authority> authority);
  void Handle(const httplib::Request& req, httplib::Response& res, bool known)
      ABSL_LOCKS_EXCLUDED(core_->mu());
  // Everything after the latency fault: faults, limits, signing. `*drop`: cut the answer.
  Reply AnswerLocked(const httplib::Request& req, bool known, const std::string& client, bool* drop)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());

  Core* const core_;
  std::unique_ptr<tsa::Authority> authority_;
  uint64_t next_serial_ ABSL_GUARDED_BY(core_->mu()) = 1;
};

}  // namespace anchord::sandbox::internal
