// A small RAII layer over libpq, the store backend shared by replicas (no ORM).
//
// PgDb owns a few connections to one database. Work runs as a function over a PgConn, either in
// one transaction (Tx) or as single autocommitted statements (Run). When the server restarts or is
// unreachable, the connection is re-established and the function runs again, for at most
// PgOptions::retry_for; callers only pass functions that are safe to re-run (every store method is
// idempotent or conditional), because after a lost connection nobody knows whether the COMMIT
// reached the server. Serialization failures and deadlocks are retried the same way.
//
// Parameters are sent as text, except bytes (AddBytes), which go in binary form, so any byte
// string (digests, request bodies, .ots files) round-trips exactly. Results come back in binary
// form: Int() reads int2/int4/int8/bool columns, Bytes() any column's raw bytes.
//
// Secrets: the password of the URL never appears in a Status this layer returns (libpq messages
// pass through a scrubber that knows it) and is registered with the log scrubber.
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace anchord::ledger {

// The URL or conninfo string without its password, for logs: "host=h port=5432 dbname=d
// user=u". INVALID_ARGUMENT (naming neither the URL nor the password) when it cannot be parsed.
absl::StatusOr<std::string> RedactDatabaseUrl(absl::string_view url);

// Bind parameters of one statement ($1, $2, ... in the order added).
class PgParams {
 public:
  PgParams& Add(int64_t v);
  PgParams& Add(int v) { return Add(static_cast<int64_t>(v)); }
  PgParams& Add(absl::string_view text);  // text: must be valid UTF-8 without NUL
  PgParams& Add(const std::string& text) { return Add(absl::string_view(text)); }
  PgParams& Add(const char* text) { return Add(absl::string_view(text)); }
  PgParams& AddBytes(absl::string_view bytes);  // bytea, binary-safe
  // An array literal ('{1,2,3}') sent as text: the statement casts it, `$n::bigint[]`.
  PgParams& AddIntArray(const std::vector<int64_t>& values);
  // Two such arrays: every pair's first, then every pair's second (rows of two columns for
  // `unnest($n::bigint[], $m::bigint[])`).
  PgParams& AddIntArrayPairs(const std::vector<std::pair<int64_t, int64_t>>& pairs);
  // A bytea[] (one dimension, no NULLs) in binary form, so every element round-trips exactly
  // whatever its bytes; the statement names it `$n::bytea[]`, typically in `unnest(...)` to bind
  // a whole batch of rows as one parameter.
  PgParams& AddBytesArray(const std::vector<std::string>& values);
  PgParams& AddNull();
  size_t size() const { return values_.size(); }

 private:
  friend class PgConn;
  std::vector<std::string> values_;
  std::vector<int> formats_;
  std::vector<Oid> types_;  // 0: the server infers the type from the statement
  std::vector<bool> null_;
};

// The rows of one statement. Movable, frees the PGresult.
class PgResult {
 public:
  explicit PgResult(PGresult* r) : r_(r) {}
  PgResult(PgResult&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
  PgResult& operator=(PgResult&& o) noexcept;
  PgResult(const PgResult&) = delete;
  PgResult& operator=(const PgResult&) = delete;
  ~PgResult();

  int rows() const;
  // Rows changed by an INSERT/UPDATE/DELETE.
  int64_t affected() const;
  bool IsNull(int row, int col) const;
  // int2, int4, int8 or bool columns (0 for NULL).
  int64_t Int(int row, int col) const;
  // The raw bytes of any column ("" for NULL): text as UTF-8, bytea as stored.
  std::string Bytes(int row, int col) const;

 private:
  PGresult* r_;
};

// One connection. Not thread-safe: PgDb hands a connection to one caller at a time.
class PgConn {
 public:
  ~PgConn();
  PgConn(const PgConn&) = delete;
  PgConn& operator=(const PgConn&) = delete;

  // Runs one statement with parameters; results in binary form.
  absl::StatusOr<PgResult> Exec(absl::string_view sql, const PgParams& params = PgParams());
  // Runs one or more statements without parameters (schema scripts).
  absl::Status ExecScript(absl::string_view sql);
  // True when the connection is usable; false after the server went away.
  bool ok() const;
  // Reconnects (after a failure).
  absl::Status Reset();
  PGconn* raw() { return conn_; }
  // The scrubbed text of libpq's last error.
  std::string LastError() const;

 private:
  friend class PgDb;
  PgConn(PGconn* c, std::string password) : conn_(c), password_(std::move(password)) {}
  absl::Status ErrorStatus(const PGresult* r, absl::string_view what) const;
  PGconn* conn_;
  std::string password_;
};

struct PgOptions {
  // Connections kept open; callers beyond this many wait for one.
  int pool_size = 4;
  // How long Tx/Run keep re-running work while the server is unreachable before UNAVAILABLE.
  absl::Duration retry_for = absl::Seconds(60);
  // Pause between reconnection attempts.
  absl::Duration retry_pause = absl::Milliseconds(250);
  // libpq connect_timeout (seconds) for each attempt.
  int connect_timeout_seconds = 3;
  // application_name, visible in pg_stat_activity.
  std::string application_name = "anchord";
};

// Whether `st` is a lost connection (the server restarted, went away, or refused us): such work
// may be re-run after reconnecting.
bool IsPgConnectionError(const absl::Status& st);

class PgDb {
 public:
  // Connects once (so a bad URL or an unreachable server fails at start, with a message naming
  // the redacted URL, never the password). `url` is a postgresql:// URL or a conninfo string.
  static absl::StatusOr<std::unique_ptr<PgDb>> Open(const std::string& url,
                                                    PgOptions options = PgOptions());
  ~PgDb();

  using Work = std::function<absl::Status(PgConn&)>;
  // Runs `work` inside BEGIN ... COMMIT; ROLLBACK when it returns an error. Re-runs it after a
  // lost connection or a serialization failure (see the header comment).
  absl::Status Tx(const Work& work);
  // Runs `work` without an explicit transaction (each statement commits on its own), with the
  // same re-runs.
  absl::Status Run(const Work& work);
  // One round trip ("SELECT 1") on a pooled connection, without retries: for health checks.
  absl::Status Ping();
  // A new connection outside the pool (LISTEN, advisory session locks). Caller owns it.
  absl::StatusOr<std::unique_ptr<PgConn>> Connect();

  const std::string& redacted_url() const { return redacted_; }
  const PgOptions& options() const { return options_; }

 private:
  PgDb(std::string conninfo, std::string password, std::string redacted, PgOptions options);
  absl::Status Do(const Work& work, bool tx, bool retry);
  std::unique_ptr<PgConn> Take() ABSL_LOCKS_EXCLUDED(mu_);
  void Give(std::unique_ptr<PgConn> c) ABSL_LOCKS_EXCLUDED(mu_);
  // Whether a taker can go on: an idle connection, or room to open one.
  bool CanTake() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string conninfo_;
  const std::string password_;
  const std::string redacted_;
  const PgOptions options_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<PgConn>> idle_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;  // connections handed out or idle
};

}  // namespace anchord::ledger
