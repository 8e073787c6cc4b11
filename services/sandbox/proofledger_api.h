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

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
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

  // The mutex guarding this API's state: its Core's.
  absl::Mutex& mu() const ABSL_LOCK_RETURNED(core_->mu()) { return core_->mu(); }
  void ResetLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());
  void OnConfirmedLocked(const std::string& id, const Confirmation& c, bool ok) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());

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

  void Handle(const httplib::Request& req, httplib::Response& res, Route route)
      ABSL_LOCKS_EXCLUDED(core_->mu());
  // Everything after the latency fault: faults, auth, limits, the route. `*drop`: cut the answer.
  Reply AnswerLocked(const httplib::Request& req, Route route, bool public_route,
                     const std::string& token, const std::string& client, bool* drop)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());
  Reply HandleCreate(const httplib::Request& req, const std::string& account)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());
  Reply HandleVerify(const httplib::Request& req) ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());
  ojson RecordJson(const Record& r) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());
  std::string NewId() ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());

  Core* const core_;
  std::set<std::string> keys_, not_entitled_;                           // set once, before serving
  std::map<std::string, Record> records_ ABSL_GUARDED_BY(core_->mu());  // id -> record
  // lowercase hex -> id of the first record
  std::map<std::string, std::string> by_digest_ ABSL_GUARDED_BY(core_->mu());
};

}  // namespace anchord::sandbox::internal
