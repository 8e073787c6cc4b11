// The ProofLedger v1 API as docs/providers/proofledger.md describes it (internal to
// services/sandbox). The document is a worker script, not a contract; where it is silent the
// shapes are anchord's choices, listed in the same page:
//
//   POST /api/v1/proof   Bearer key, {"sha256","filename"} -> 201 the record; a digest anchored
//                        before (by any account) -> 200 the original's fields + "duplicate_of"
//   GET  /api/v1/verify?hash=<hex>   public, no auth, `proofledger_verify_limit` per
//                        `proofledger_verify_window` per source IP (the doc's 120 per hour)
//
// Errors are {"error": "<message>"} with 400 / 401 / 403 / 404 / 429 (Retry-After) / 5xx.
// ProofLedger hands out no .ots; its records still confirm in the shared fake chain.
#pragma once

#include <httplib.h>

#include <map>
#include <set>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "services/sandbox/sandbox_core.h"

namespace anchord::sandbox::internal {

class ProofLedgerApi : public ChainListener {
 public:
  explicit ProofLedgerApi(Core* core);

  void Register(httplib::Server& svr);
  // True for the paths of this API's routes (unmatched methods and sub-paths land in
  // HandleUnknown and get this API's error shape).
  static bool Owns(absl::string_view path);
  void HandleUnknown(const httplib::Request& req, httplib::Response& res);

  // Core mutex held.
  void ResetLocked();
  void OnConfirmedLocked(const std::string& id, const Confirmation& c, bool ok) override;

 private:
  enum class Route { kCreate, kVerify, kUnknown };
  struct Record {
    std::string id;
    std::string account;
    std::string sha256_hex;
    std::string filename;
    absl::Time created_at;
    std::string status = "pending";
    int64_t bitcoin_block = 0;
    std::string bitcoin_tx;
    absl::Time confirmed_at;
  };

  void Handle(const httplib::Request& req, httplib::Response& res, Route route);
  Reply HandleCreate(const httplib::Request& req, const std::string& account);
  Reply HandleVerify(const httplib::Request& req);
  ojson RecordJson(const Record& r) const;
  std::string NewId();

  Core* const core_;
  std::set<std::string> keys_, not_entitled_;
  // Guarded by the core mutex.
  std::map<std::string, Record> records_;         // id -> record
  std::map<std::string, std::string> by_digest_;  // lowercase hex -> id of the first record
};

}  // namespace anchord::sandbox::internal
