// OpenTimestamps calendars as docs/providers/ots.md describes the reference server (internal
// to services/sandbox). Each calendar listens on its own loopback origin (clients build URLs
// relative to a bare origin), serves
//
//   POST /digest                  raw digest bytes (<= 64) -> 200 a serialized Timestamp (no magic)
//                                 rooted at the digest, ending in PendingAttestation(<its URL>)
//   GET  /timestamp/<hex commitment>  404 pending / 404 unknown / 400 non-hex / 200 the Timestamp
//                                 rooted at the commitment, down to a Bitcoin attestation
//
// and puts every commitment into the shared fake chain, so the completed proofs verify against
// /_sandbox/blocks/{h}/header on the main port. No auth (like otsd); faults apply to every route.
#pragma once

#include <httplib.h>

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "services/sandbox/sandbox_core.h"

namespace anchord::sandbox::internal {

class CalendarApi : public ChainListener {
 public:
  explicit CalendarApi(Core* core);
  ~CalendarApi() override;

  // Binds opt().calendars listeners on opt().host and serves them.
  absl::Status Start();
  // Stops every listener; idempotent.
  void Stop();
  std::vector<std::string> urls() const { return urls_; }

  // The mutex guarding this API's state: its Core's.
  absl::Mutex& mu() const ABSL_LOCK_RETURNED(core_->mu()) { return core_->mu(); }
  void ResetLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());
  void OnConfirmedLocked(const std::string& ref, const Confirmation& c, bool ok) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());

 private:
  struct Calendar {
    int index = 0;
    std::string url;
    std::string secret;  // keys the commitments' HMAC
    httplib::Server svr;
    std::thread thread;
  };
  struct Entry {
    std::shared_ptr<ots::Timestamp> node;  // rooted at the commitment, until confirmed
    std::string answer;                    // the serialized Timestamp once confirmed
  };
  enum class Route { kDigest, kTimestamp, kRoot, kUnknown };

  void Handle(Calendar& cal, const httplib::Request& req, httplib::Response& res, Route route)
      ABSL_LOCKS_EXCLUDED(core_->mu());
  // Everything after the latency fault: faults, limits, the route. `*drop`: cut the answer.
  Reply AnswerLocked(Calendar& cal, const httplib::Request& req, Route route,
                     const std::string& client, bool* drop)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());
  Reply HandleDigest(Calendar& cal, const httplib::Request& req, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());
  Reply HandleTimestamp(Calendar& cal, const httplib::Request& req)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu());

  Core* const core_;
  std::vector<std::unique_ptr<Calendar>> cals_;
  std::vector<std::string> urls_;  // fixed once Start returns
  bool stopped_ = false;
  // Key: one byte of calendar index, then the commitment.
  std::map<std::string, Entry> journal_ ABSL_GUARDED_BY(core_->mu());
};

}  // namespace anchord::sandbox::internal
