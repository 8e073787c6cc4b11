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
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/string_view.h"
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
  void StartCallbacks();
  void StopCallbacks();

  // Core mutex held.
  void ResetLocked();
  void OnConfirmedLocked(const std::string& ref, const Confirmation& c, bool ok) override;

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

  void Handle(const httplib::Request& req, httplib::Response& res, Route route);
  Reply HandleHashes(const httplib::Request& req, const std::string& account, absl::Time now);
  Reply HandleList(const httplib::Request& req, const std::string& account, absl::Time now);
  Reply HandleVerify(const httplib::Request& req, const std::string& account, absl::Time now);
  void HandleDownload(const httplib::Request& req, httplib::Response& res);
  const char* StatusAt(const Doc& d, absl::Time now) const;  // "pending_stamp" | "pending" | ...
  ojson DocumentJson(const Doc& d, absl::Time now) const;
  std::string VerificationUrl(const Doc& d) const;
  void AddCallbackUrlLocked(Doc& d, const std::string& url);
  void QueueCallbackLocked(const Doc& d, const std::string& url);
  void CallbackLoop();

  Core* const core_;
  std::set<std::string> tokens_;
  std::string files_origin_;

  // Guarded by the core mutex.
  int64_t next_id_ = 5200000;
  std::map<int64_t, Doc> docs_;
  std::map<std::pair<std::string, std::string>, int64_t> by_account_hash_;
  std::map<std::string, std::vector<int64_t>> account_docs_;      // creation order
  std::map<std::string, OtsUrl> ots_urls_;                        // token -> document
  std::deque<std::pair<absl::Time, std::string>> ots_url_order_;  // (expiry, token), issue order
  std::multimap<SteadyTime, Callback> callbacks_;                 // by next attempt
  uint64_t generation_ = 0;
  bool stop_ = false;
  bool started_ = false;
  std::condition_variable cv_;

  std::thread worker_;
  std::mutex active_mu_;  // guards active_: the client of the callback in flight
  httplib::Client* active_ = nullptr;
};

}  // namespace anchord::sandbox::internal
