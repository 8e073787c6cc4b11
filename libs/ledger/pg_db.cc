#include "libs/ledger/pg_db.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_join.h"
#include "libs/common/log.h"

namespace anchord::ledger {
namespace {

// Status payload marking work that may run again: a lost connection or a serialization failure.
constexpr char kRetryPayload[] = "anchord.ledger.pg.retry";
constexpr char kConnPayload[] = "anchord.ledger.pg.connection";

// PostgreSQL type oids (pg_type.h is not part of libpq-dev's public headers).
constexpr Oid kBoolOid = 16;
constexpr Oid kInt8Oid = 20;
constexpr Oid kInt2Oid = 21;
constexpr Oid kInt4Oid = 23;
constexpr Oid kByteaOid = 17;
constexpr Oid kByteaArrayOid = 1001;

void AppendInt32(std::string& out, uint32_t v) {
  const uint32_t be = htonl(v);
  out.append(reinterpret_cast<const char*>(&be), sizeof(be));
}

std::string Scrub(absl::string_view text, const std::string& password) {
  std::string out(text);
  // Short passwords would scrub ordinary letters; they are also registered with the log
  // scrubber, which applies the same floor.
  if (password.size() >= 3) out = absl::StrReplaceAll(out, {{password, "[REDACTED]"}});
  // libpq messages span lines (a hint on a tab-indented second line): one log line each.
  for (char& ch : out) {
    if (ch == '\n' || ch == '\t' || ch == '\r') ch = ' ';
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return ScrubSecrets(out);
}

absl::Status Retryable(absl::Status st, bool connection) {
  st.SetPayload(kRetryPayload, absl::Cord("1"));
  if (connection) st.SetPayload(kConnPayload, absl::Cord("1"));
  return st;
}

bool IsRetryable(const absl::Status& st) { return st.GetPayload(kRetryPayload).has_value(); }

struct ParsedUrl {
  std::string password;
  std::string redacted;
};

absl::StatusOr<ParsedUrl> ParseUrl(absl::string_view url) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(std::string(url).c_str(), &err);
  if (opts == nullptr) {
    // libpq's message can quote the malformed part, which may be the password: not repeated.
    if (err != nullptr) PQfreemem(err);
    return absl::InvalidArgumentError(
        "database URL: not a valid postgresql:// URL or conninfo string");
  }
  ParsedUrl out;
  std::vector<std::string> parts;
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (o->val == nullptr || o->val[0] == '\0') continue;
    const std::string key = o->keyword;
    if (key == "password") {
      out.password = o->val;
    } else if (key == "host" || key == "hostaddr" || key == "port" || key == "dbname" ||
               key == "user" || key == "sslmode") {
      parts.push_back(absl::StrCat(key, "=", o->val));
    }
  }
  PQconninfoFree(opts);
  out.redacted = parts.empty() ? "(libpq defaults)" : absl::StrJoin(parts, " ");
  if (!out.password.empty()) out.redacted += " password=[REDACTED]";
  return out;
}

}  // namespace

absl::StatusOr<std::string> RedactDatabaseUrl(absl::string_view url) {
  absl::StatusOr<ParsedUrl> p = ParseUrl(url);
  if (!p.ok()) return p.status();
  return p->redacted;
}

bool IsPgConnectionError(const absl::Status& st) { return st.GetPayload(kConnPayload).has_value(); }

// --- PgParams ------------------------------------------------------------------------------------

PgParams& PgParams::Add(int64_t v) {
  values_.push_back(std::to_string(v));
  formats_.push_back(0);
  types_.push_back(0);
  null_.push_back(false);
  return *this;
}
PgParams& PgParams::Add(absl::string_view text) {
  values_.emplace_back(text);
  formats_.push_back(0);
  types_.push_back(0);
  null_.push_back(false);
  return *this;
}
PgParams& PgParams::AddBytes(absl::string_view bytes) {
  values_.emplace_back(bytes);
  formats_.push_back(1);
  types_.push_back(0);
  null_.push_back(false);
  return *this;
}
PgParams& PgParams::AddBytesArray(const std::vector<std::string>& values) {
  // The binary array format (array_recv): dimensions, a has-NULLs flag, the element type, per
  // dimension its length and lower bound, then each element as a length and its bytes. An empty
  // array has no dimensions.
  std::string out;
  size_t total = 20;
  for (const std::string& v : values) total += 4 + v.size();
  out.reserve(total);
  AppendInt32(out, values.empty() ? 0 : 1);
  AppendInt32(out, 0);
  AppendInt32(out, kByteaOid);
  if (!values.empty()) {
    AppendInt32(out, static_cast<uint32_t>(values.size()));
    AppendInt32(out, 1);
  }
  for (const std::string& v : values) {
    AppendInt32(out, static_cast<uint32_t>(v.size()));
    out.append(v);
  }
  values_.push_back(std::move(out));
  formats_.push_back(1);
  types_.push_back(kByteaArrayOid);
  null_.push_back(false);
  return *this;
}
PgParams& PgParams::AddIntArray(const std::vector<int64_t>& values) {
  return Add(absl::StrCat("{", absl::StrJoin(values, ","), "}"));
}
PgParams& PgParams::AddIntArrayPairs(const std::vector<std::pair<int64_t, int64_t>>& pairs) {
  std::vector<int64_t> firsts, seconds;
  firsts.reserve(pairs.size());
  seconds.reserve(pairs.size());
  for (const auto& [first, second] : pairs) {
    firsts.push_back(first);
    seconds.push_back(second);
  }
  return AddIntArray(firsts).AddIntArray(seconds);
}
PgParams& PgParams::AddNull() {
  values_.emplace_back();
  formats_.push_back(0);
  types_.push_back(0);
  null_.push_back(true);
  return *this;
}

// --- PgResult ------------------------------------------------------------------------------------

PgResult& PgResult::operator=(PgResult&& o) noexcept {
  if (this != &o) {
    if (r_ != nullptr) PQclear(r_);
    r_ = o.r_;
    o.r_ = nullptr;
  }
  return *this;
}
PgResult::~PgResult() {
  if (r_ != nullptr) PQclear(r_);
}
int PgResult::rows() const { return r_ ? PQntuples(r_) : 0; }
int64_t PgResult::affected() const {
  int64_t n = 0;
  if (r_ == nullptr || !absl::SimpleAtoi(PQcmdTuples(r_), &n)) return 0;
  return n;
}
bool PgResult::IsNull(int row, int col) const { return PQgetisnull(r_, row, col) != 0; }

int64_t PgResult::Int(int row, int col) const {
  if (PQgetisnull(r_, row, col)) return 0;
  const char* p = PQgetvalue(r_, row, col);
  const int len = PQgetlength(r_, row, col);
  const Oid type = PQftype(r_, col);
  if (type == kInt8Oid && len == 8) {
    uint32_t hi, lo;
    std::memcpy(&hi, p, 4);
    std::memcpy(&lo, p + 4, 4);
    return static_cast<int64_t>((static_cast<uint64_t>(ntohl(hi)) << 32) | ntohl(lo));
  }
  if (type == kInt4Oid && len == 4) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return static_cast<int32_t>(ntohl(v));
  }
  if (type == kInt2Oid && len == 2) {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return static_cast<int16_t>(ntohs(v));
  }
  if (type == kBoolOid && len == 1) return p[0] != 0;
  // Anything else is a schema or query bug (e.g. SUM over bigint gives numeric: cast it).
  ANCHORD_LOG(Error) << "postgresql: column " << col << " of type " << type
                     << " read as an integer";
  return 0;
}

std::string PgResult::Bytes(int row, int col) const {
  if (PQgetisnull(r_, row, col)) return "";
  return std::string(PQgetvalue(r_, row, col), static_cast<size_t>(PQgetlength(r_, row, col)));
}

// --- PgConn --------------------------------------------------------------------------------------

PgConn::~PgConn() {
  if (conn_ != nullptr) PQfinish(conn_);
}

bool PgConn::ok() const { return conn_ != nullptr && PQstatus(conn_) == CONNECTION_OK; }

std::string PgConn::LastError() const {
  return Scrub(conn_ ? PQerrorMessage(conn_) : "no connection", password_);
}

absl::Status PgConn::Reset() {
  PQreset(conn_);
  if (!ok()) {
    return Retryable(absl::UnavailableError(absl::StrCat("database unavailable: ", LastError())),
                     true);
  }
  return absl::OkStatus();
}

absl::Status PgConn::ErrorStatus(const PGresult* r, absl::string_view what) const {
  const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  const std::string sqlstate = state ? state : "";
  std::string msg = r ? PQresultErrorMessage(r) : "";
  if (msg.empty()) msg = conn_ ? PQerrorMessage(conn_) : "no connection";
  msg = Scrub(msg, password_);
  // Class 08 (connection exception), 57P01-3 (server shutting down / starting), or a connection
  // that broke during the call: the work may run again on a new connection.
  if (!ok() || sqlstate.rfind("08", 0) == 0 || sqlstate == "57P01" || sqlstate == "57P02" ||
      sqlstate == "57P03") {
    return Retryable(absl::UnavailableError(absl::StrCat("database unavailable: ", msg)), true);
  }
  if (sqlstate == "40001" || sqlstate == "40P01") {
    return Retryable(absl::AbortedError(absl::StrCat("postgresql: ", what, ": ", msg)), false);
  }
  if (sqlstate == "23505") {
    return absl::AlreadyExistsError(absl::StrCat("postgresql: ", what, ": ", msg));
  }
  return absl::InternalError(absl::StrCat("postgresql: ", what, ": ", msg));
}

absl::StatusOr<PgResult> PgConn::Exec(absl::string_view sql, const PgParams& params) {
  if (!ok()) {
    return Retryable(absl::UnavailableError(absl::StrCat("database unavailable: ", LastError())),
                     true);
  }
  const int n = static_cast<int>(params.values_.size());
  std::vector<const char*> values(n);
  std::vector<int> lengths(n);
  for (int i = 0; i < n; ++i) {
    values[i] = params.null_[i] ? nullptr : params.values_[i].data();
    lengths[i] = static_cast<int>(params.values_[i].size());
  }
  const std::string q(sql);
  PGresult* r = PQexecParams(conn_, q.c_str(), n, n ? params.types_.data() : nullptr,
                             n ? values.data() : nullptr, n ? lengths.data() : nullptr,
                             n ? params.formats_.data() : nullptr,
                             /*resultFormat=*/1);
  const ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK) {
    // The statement's first words name it in the error without dumping a long query.
    absl::Status st = ErrorStatus(r, q.substr(0, std::min<size_t>(q.size(), 60)));
    if (r) PQclear(r);
    return st;
  }
  return PgResult(r);
}

absl::Status PgConn::ExecScript(absl::string_view sql) {
  if (!ok()) {
    return Retryable(absl::UnavailableError(absl::StrCat("database unavailable: ", LastError())),
                     true);
  }
  const std::string q(sql);
  PGresult* r = PQexec(conn_, q.c_str());
  const ExecStatusType s = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  absl::Status st =
      (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) ? absl::OkStatus() : ErrorStatus(r, "script");
  if (r) PQclear(r);
  return st;
}

// --- PgDb ----------------------------------------------------------------------------------------

PgDb::PgDb(std::string conninfo, std::string password, std::string redacted, PgOptions options)
    : conninfo_(std::move(conninfo)),
      password_(std::move(password)),
      redacted_(std::move(redacted)),
      options_(std::move(options)) {}

PgDb::~PgDb() = default;

absl::StatusOr<std::unique_ptr<PgDb>> PgDb::Open(const std::string& url, PgOptions options) {
  absl::StatusOr<ParsedUrl> parsed = ParseUrl(url);
  if (!parsed.ok()) return parsed.status();
  RegisterSecret(parsed->password);
  RegisterSecret(url);
  if (options.pool_size < 1) options.pool_size = 1;
  std::unique_ptr<PgDb> db(new PgDb(url, parsed->password, parsed->redacted, std::move(options)));
  absl::StatusOr<std::unique_ptr<PgConn>> first = db->Connect();
  if (!first.ok()) return first.status();
  if (!(*first)->ok()) {
    return absl::UnavailableError(
        absl::StrCat("database ", db->redacted_, ": cannot connect: ", (*first)->LastError()));
  }
  absl::MutexLock lock(&db->mu_);
  db->idle_.push_back(std::move(*first));
  db->open_ = 1;
  return db;
}

absl::StatusOr<std::unique_ptr<PgConn>> PgDb::Connect() {
  // The URL is expanded as `dbname`; the keywords after it override what it says.
  const std::string timeout = std::to_string(std::max(1, options_.connect_timeout_seconds));
  const char* keys[] = {"dbname",
                        "connect_timeout",
                        "application_name",
                        "keepalives_idle",
                        "keepalives_interval",
                        "keepalives_count",
                        nullptr};
  const char* values[] = {conninfo_.c_str(),
                          timeout.c_str(),
                          options_.application_name.c_str(),
                          "10",
                          "5",
                          "3",
                          nullptr};
  PGconn* c = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (c == nullptr) return absl::ResourceExhaustedError("libpq: out of memory");
  // Server NOTICEs ("relation already exists, skipping") are not errors: keep stderr quiet.
  PQsetNoticeProcessor(
      c, [](void*, const char*) {}, nullptr);
  return std::unique_ptr<PgConn>(new PgConn(c, password_));
}

std::unique_ptr<PgConn> PgDb::Take() {
  {
    absl::MutexLock lock(&mu_);
    // Bounded by the pool: every taker gives its connection back (Do never keeps one).
    mu_.Await(absl::Condition(this, &PgDb::CanTake));
    if (!idle_.empty()) {
      std::unique_ptr<PgConn> c = std::move(idle_.back());
      idle_.pop_back();
      return c;
    }
    ++open_;
  }
  absl::StatusOr<std::unique_ptr<PgConn>> c = Connect();
  if (!c.ok()) {
    absl::MutexLock lock(&mu_);
    --open_;
    return nullptr;
  }
  return std::move(*c);  // possibly not connected: Do resets it
}

bool PgDb::CanTake() const { return !idle_.empty() || open_ < options_.pool_size; }

void PgDb::Give(std::unique_ptr<PgConn> c) {
  absl::MutexLock lock(&mu_);
  if (c) {
    idle_.push_back(std::move(c));
  } else {
    --open_;
  }
}

absl::Status PgDb::Do(const Work& work, bool tx, bool retry) {
  const absl::Time deadline = absl::Now() + options_.retry_for;
  absl::Status st;
  // Bounded by retry_for: every pass either returns or sleeps retry_pause.
  for (int attempt = 0;; ++attempt) {
    std::unique_ptr<PgConn> c = Take();
    if (c == nullptr) {
      st = Retryable(absl::ResourceExhaustedError("libpq: out of memory"), false);
    } else {
      st = c->ok() ? absl::OkStatus() : c->Reset();
      if (st.ok() && tx) st = c->ExecScript("BEGIN");
      if (st.ok()) {
        st = work(*c);
        if (tx) {
          if (st.ok()) {
            st = c->ExecScript("COMMIT");
          } else if (c->ok()) {
            (void)c->ExecScript("ROLLBACK");
          }
        }
      }
    }
    Give(std::move(c));
    if (st.ok() || !retry || !IsRetryable(st) || absl::Now() >= deadline) break;
    if (attempt == 0 || attempt % 20 == 0) {
      ANCHORD_LOG(Warning) << "database " << redacted_ << ": " << st.message() << "; retrying";
    }
    std::this_thread::sleep_for(absl::ToChronoNanoseconds(options_.retry_pause));
  }
  return st;
}

absl::Status PgDb::Tx(const Work& work) { return Do(work, true, true); }
absl::Status PgDb::Run(const Work& work) { return Do(work, false, true); }

absl::Status PgDb::Ping() {
  return Do([](PgConn& c) { return c.Exec("SELECT 1").status(); }, false, false);
}

}  // namespace anchord::ledger
