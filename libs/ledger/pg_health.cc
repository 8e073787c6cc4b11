#include "libs/ledger/pg_health.h"

#include "absl/strings/str_cat.h"
#include "libs/common/log.h"
#include "libs/common/secret.h"

namespace anchord::ledger {

PgHealthWatch::PgHealthWatch(std::shared_ptr<PgDb> db, std::function<void(bool)> on_change,
                             absl::Duration interval)
    : db_(std::move(db)), on_change_(std::move(on_change)), interval_(interval) {
  thread_ = std::thread([this] { Loop(); });
}

PgHealthWatch::~PgHealthWatch() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void PgHealthWatch::Loop() {
  std::unique_ptr<PgConn> conn;
  bool first = true;
  // Bounded by the destructor: each pass ends in a wait of at most `interval` that stop_ ends.
  for (;;) {
    absl::Status st;
    if (conn == nullptr) {
      auto c = db_->Connect();
      if (c.ok())
        conn = std::move(*c);
      else
        st = c.status();
    }
    if (conn != nullptr) {
      st = conn->ok() ? absl::OkStatus() : conn->Reset();
      if (st.ok()) st = conn->Exec("SELECT 1").status();
    }
    const bool ok = st.ok();
    if (first || ok != serving_) {
      if (ok) {
        ANCHORD_LOG(Info) << "database " << db_->redacted_url() << " reachable: SERVING";
      } else {
        ANCHORD_LOG(Warning) << "database " << db_->redacted_url() << " unreachable ("
                             << st.message() << "): NOT_SERVING";
      }
      serving_ = ok;
      if (on_change_) on_change_(ok);
      first = false;
    }
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stop_), interval_);
    if (stop_) return;
  }
}

absl::StatusOr<std::shared_ptr<PgDb>> OpenDatabaseFromFlags(const std::string& url,
                                                            const std::string& url_file,
                                                            PgOptions options) {
  if (url.empty() && url_file.empty()) return std::shared_ptr<PgDb>();
  absl::StatusOr<std::string> loaded =
      LoadSecret(url_file.empty() ? "--database-url" : "--database-url-file", url, url_file);
  if (!loaded.ok()) return loaded.status();
  if (loaded->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(url_file.empty() ? "--database-url" : "--database-url-file", ": empty"));
  }
  absl::StatusOr<std::unique_ptr<PgDb>> db = PgDb::Open(*loaded, std::move(options));
  if (!db.ok()) {
    return absl::Status(db.status().code(),
                        absl::StrCat("--database-url: ", db.status().message()));
  }
  ANCHORD_LOG(Info) << "database: postgresql " << (*db)->redacted_url();
  return std::shared_ptr<PgDb>(std::move(*db));
}

}  // namespace anchord::ledger
