// The SimpleProof API as docs/providers/simpleproof.md describes it (internal to
// services/sandbox); where the document is silent, anchord's choices (same page):
//
//   POST /api/proof/timestamp/hashes  {"hashes": [1..25 hex], "callback_url"?} -> {"ok","files"}
//   GET  /api/proof/document?status=&page=&limit=   the account's documents by status, pages
//   POST /proof/verification {"hash"}  -> documents with an expiring ots_download_url
//   POST /api/proof/file              (multipart upload) answered 400: files never leave anchord
//   GET  /_files/simpleproof/<token>.ots  the .ots behind an ots_download_url (emulates the
//                                      pre-signed S3 URL: no auth, 403 once expired)
//
// Auth is `x-access-token`; errors are {"ok": false, "msg": "..."}. A document goes
// pending_stamp -> pending (after half of confirm_after) -> confirmed (its fake block); on
// confirmation every callback_url given for it is POSTed from a background thread, with retries.
#pragma once

#include <httplib.h>

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/sandbox/sandbox_core.h"

namespace anchord::sandbox::internal {

class SimpleProofApi : public ChainListener {
 public:
  explicit SimpleProofApi(Core* core);
  ~SimpleProofApi() override;

  void Register(httplib::Server& svr);
  // True for the path spaces of this API (unmatched routes there get its error shape).
  static bool Owns(absl::string_view path);
  void HandleUnknown(const httplib::Request& req, httplib::Response& res);
  // "http://HOST:PORT" of the listener serving /_files (the base of ots_download_url). Set once,
  // before serving.
  void set_files_origin(std::string origin) { files_origin_ = std::move(origin); }

  // The callback delivery thread. StopCallbacks abandons queued callbacks and aborts one in
  // flight; idempotent.
  void StartCallbacks() ABSL_LOCKS_EXCLUDED(core_->mu());
  void StopCallbacks() ABSL_LOCKS_EXCLUDED(core_->mu(), active_mu_);

  // The mutex guarding this API's state: its Core's.
  absl::Mutex& mu() const ABSL_LOCK_RETURNED(core_->mu()) { return core_->mu(); }
  void ResetLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());
  void OnConfirmedLocked(const std::string& ref, const Confirmation& c, bool ok) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());

 private:
  enum class Route { kHashes, kList, kVerify, kFile, kUnknown };
  struct Doc {
    int64_t id = 0;
    std::string account;
    std::string hash;  // lowercase hex
    absl::Time created_at;
    absl::Time stamped_at;                 // pending_stamp -> pending
    std::shared_ptr<ots::Timestamp> root;  // the proof tree until confirmed
    bool confirmed = false;
    int64_t height = 0;
    std::string tx;
    absl::Time confirmed_at;
    std::string ots;
    std::vector<std::string> callback_urls;  // distinct, at most kMaxCallbackUrls
  };
  struct OtsUrl {
    int64_t doc = 0;
    absl::Time expires;
  };
  struct Callback {
    uint64_t generation = 0;  // Reset() abandons callbacks of earlier generations
    std::string url;
    std::string body;
    int attempts = 0;
  };
  using SteadyTime = std::chrono::steady_clock::time_point;

  void Handle(const httplib::Request& req, httplib::Response& res, Route route)
      ABSL_LOCKS_EXCLUDED(core_->mu());
  // Everything after the latency fault: faults, auth, limits, the route. `*drop`: cut the answer.
  Reply AnswerLocked(const httplib::Request& req, Route route, const std::string& token,
                     const std::string& client, bool* drop)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());
  Reply HandleHashes(const httplib::Request& req, const std::string& account, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());
  Reply HandleList(const httplib::Request& req, const std::string& account, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());
  Reply HandleVerify(const httplib::Request& req, const std::string& account, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());
  void HandleDownload(const httplib::Request& req, httplib::Response& res)
      ABSL_LOCKS_EXCLUDED(core_->mu());
  const char* StatusAt(const Doc& d, absl::Time now) const;  // "pending_stamp" | "pending" | ...
  ojson DocumentJson(const Doc& d, absl::Time now) const;
  std::string VerificationUrl(const Doc& d) const;
  void AddCallbackUrlLocked(Doc& d, const std::string& url)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());
  void QueueCallbackLocked(const Doc& d, const std::string& url)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());
  void CallbackLoop() ABSL_LOCKS_EXCLUDED(core_->mu(), active_mu_);

  Core* const core_;
  std::set<std::string> tokens_;
  std::string files_origin_;

  int64_t next_id_ ABSL_GUARDED_BY(core_->mu()) = 5200000;
  std::map<int64_t, Doc> docs_ ABSL_GUARDED_BY(core_->mu());
  std::map<std::pair<std::string, std::string>, int64_t> by_account_hash_
      ABSL_GUARDED_BY(core_->mu());
  std::map<std::string, std::vector<int64_t>> account_docs_
      ABSL_GUARDED_BY(core_->mu());                                      // creation order
  std::map<std::string, OtsUrl> ots_urls_ ABSL_GUARDED_BY(core_->mu());  // token -> document
  // (expiry, token), issue order
  std::deque<std::pair<absl::Time, std::string>> ots_url_order_ ABSL_GUARDED_BY(core_->mu());
  std::multimap<SteadyTime, Callback> callbacks_ ABSL_GUARDED_BY(core_->mu());  // by next attempt
  uint64_t generation_ ABSL_GUARDED_BY(core_->mu()) = 0;
  bool stop_ ABSL_GUARDED_BY(core_->mu()) = false;
  bool started_ ABSL_GUARDED_BY(core_->mu()) = false;
  absl::CondVar cv_;  // a callback queued, or stopping (waited on with core_->mu())

  std::thread worker_;
  absl::Mutex active_mu_;
  httplib::Client* active_ ABSL_GUARDED_BY(active_mu_) = nullptr;  // the callback in flight
};

}  // namespace anchord::sandbox::internal
