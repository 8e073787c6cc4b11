// The proofd.id v1 API as docs/providers/proofd.md describes it (internal to services/sandbox):
//
//   POST /api/v1/timestamps             Bearer key, Idempotency-Key, {"sha256_hash","filename",
//                                       "file_size_bytes","file_type"} -> 201 the record
//   GET  /api/v1/timestamps             the account's records, newest first (status, limit,
//                                       before cursor)
//   GET  /api/v1/timestamps/{id}        one record
//   GET  /api/v1/timestamps/{id}/ots    its detached .ots once confirmed
//
// Errors are {"error": {"code","message","request_id"}}; every answer carries X-Request-Id and
// the X-RateLimit-* headers of its tightest bucket (general per key; creates also per key and per
// source IP). Any other path under /api/ is answered here too (behind auth, NOT_FOUND).
#pragma once

#include <httplib.h>

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/sandbox/sandbox_core.h"

namespace anchord::sandbox::internal {

// proofd's error envelope with the HTTP status the sandbox gives `code` (the admin routes answer
// in the same shape).
Reply ProofdError(absl::string_view code, absl::string_view message, const std::string& rid);

class ProofdApi : public ChainListener {
 public:
  explicit ProofdApi(Core* core);

  void Register(httplib::Server& svr);
  // Any path under /api/ no other API owns: authenticated and counted like a documented route,
  // then NOT_FOUND.
  void HandleUnknown(const httplib::Request& req, httplib::Response& res);

  // The mutex guarding this API's state: its Core's.
  absl::Mutex& mu() const ABSL_LOCK_RETURNED(core_->mu()) { return core_->mu(); }
  // "req_" + 16 hex: X-Request-Id of this API's and the admin routes' answers.
  std::string NewRequestIdLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());
  int64_t records_locked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu()) {
    return static_cast<int64_t>(records_.size());
  }
  void ResetLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());
  void OnConfirmedLocked(const std::string& id, const Confirmation& c, bool ok) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());

 private:
  enum class Route { kCreate, kList, kGet, kOts, kUnknown };
  struct Record {
    std::string id;
    std::string certificate_id;
    std::string account;
    std::string sha256_hex;  // lowercase
    std::string filename;
    int64_t file_size_bytes = 0;
    std::optional<std::string> file_type;
    std::string status = "pending";
    absl::Time created_at;
    absl::Time due;  // when it confirms
    std::string nonce;
    std::shared_ptr<ots::Timestamp> root;  // the proof tree until confirmed
    std::string blockchain_tx;
    int64_t bitcoin_block = 0;
    absl::Time confirmed_at;
    std::string ots;  // the detached proof once confirmed; kept so every download is identical
  };
  struct IdemEntry {
    std::string body;
    bool done = false;
    int status = 0;
    std::string response;
  };

  void Handle(const httplib::Request& req, httplib::Response& res, Route route)
      ABSL_LOCKS_EXCLUDED(core_->mu());
  // Everything after the latency fault: faults, auth, limits, the route. `*drop`: cut the answer.
  Reply AnswerLocked(const httplib::Request& req, Route route, const std::string& token,
                     const std::string& client, const std::string& rid, int latency_ms, bool* drop)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());
  // Releases the mutex while it sleeps `latency_ms`, with its Idempotency-Key reserved.
  Reply HandleCreate(const httplib::Request& req, const std::string& account,
                     const std::string& rid, int latency_ms)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());
  Reply HandleList(const httplib::Request& req, const std::string& account, const std::string& rid)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());
  Reply HandleGet(const std::string& id, const std::string& account, const std::string& rid,
                  bool ots) ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());
  ojson RecordJson(const Record& r) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());
  std::string NewUuid() ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());
  std::string NewCertificateId() ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());

  Core* const core_;
  std::set<std::string> api_keys_, not_entitled_;  // set once, before serving
  uint32_t request_counter_ ABSL_GUARDED_BY(core_->mu()) = 0;
  std::map<std::string, Record> records_ ABSL_GUARDED_BY(core_->mu());  // id -> record
  // in created_at order
  std::map<std::string, std::vector<std::string>> account_ids_ ABSL_GUARDED_BY(core_->mu());
  std::map<std::string, std::set<std::string>> account_digests_ ABSL_GUARDED_BY(core_->mu());
  std::map<std::string, int64_t> account_creates_ ABSL_GUARDED_BY(core_->mu());
  std::map<std::string, int64_t> last_created_ms_ ABSL_GUARDED_BY(core_->mu());
  std::set<std::string> cert_ids_ ABSL_GUARDED_BY(core_->mu());
  std::map<std::pair<std::string, std::string>, IdemEntry> idem_ ABSL_GUARDED_BY(core_->mu());
};

}  // namespace anchord::sandbox::internal
