// Watches a PostgreSQL database for a service's health status: a round trip on a dedicated
// connection every `interval` (never waiting for the pool, which may be busy retrying work while
// the server is down). on_change(serving) is called once at start and on every change, so the
// service reports NOT_SERVING while its database is unreachable and SERVING once it is back.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "libs/ledger/pg_db.h"

namespace anchord::ledger {

class PgHealthWatch {
 public:
  PgHealthWatch(std::shared_ptr<PgDb> db, std::function<void(bool serving)> on_change,
                absl::Duration interval = absl::Seconds(1));
  // Stops the watch (joins its thread).
  ~PgHealthWatch();
  bool serving() const { return serving_; }

 private:
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);
  std::shared_ptr<PgDb> db_;
  std::function<void(bool)> on_change_;
  absl::Duration interval_;
  std::atomic<bool> serving_{false};
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// Reads the database URL from --database-url or --database-url-file (a mounted Secret) and opens
// it. nullptr (and OK) when neither is set: the service keeps its SQLite file. Errors name the
// flag and the redacted URL, never the password.
absl::StatusOr<std::shared_ptr<PgDb>> OpenDatabaseFromFlags(const std::string& url,
                                                            const std::string& url_file,
                                                            PgOptions options);

}  // namespace anchord::ledger
