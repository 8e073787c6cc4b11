// The libpq layer and the schema migrations against a real PostgreSQL server.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "absl/strings/match.h"
#include "libs/ledger/migrate.h"
#include "libs/ledger/pg_db.h"
#include "tests/support/pg_server.h"
#include "tests/testing/wait.h"

namespace anchord::ledger {
namespace {

using testing::PgServer;

class PgLedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = PgServer::Shared();
    ASSERT_NE(server_, nullptr) << "PostgreSQL must be installed (Debian package postgresql)";
    auto url = server_->CreateDatabase();
    ASSERT_TRUE(url.ok()) << url.status();
    url_ = *url;
  }
  std::unique_ptr<PgDb> Open(PgOptions opts = PgOptions()) {
    auto db = PgDb::Open(url_, opts);
    EXPECT_TRUE(db.ok()) << db.status();
    return db.ok() ? std::move(*db) : nullptr;
  }
  PgServer* server_ = nullptr;
  std::string url_;
};

TEST_F(PgLedgerTest, BytesAndIntegersRoundTripExactly) {
  auto db = Open();
  ASSERT_NE(db, nullptr);
  std::string all_bytes;
  for (int i = 0; i < 256; ++i) all_bytes.push_back(static_cast<char>(i));
  ASSERT_TRUE(db->Run([](PgConn& c) {
                  return c.ExecScript("CREATE TABLE t (b BYTEA, n BIGINT, i INTEGER, s TEXT)");
                }).ok());
  ASSERT_TRUE(db->Tx([&](PgConn& c) {
                  return c
                      .Exec("INSERT INTO t VALUES ($1, $2, $3, $4)",
                            PgParams()
                                .AddBytes(all_bytes)
                                .Add(int64_t{-9007199254740993})
                                .Add(-7)
                                .Add("caf\xc3\xa9 o'k"))
                      .status();
                }).ok());
  std::string b, s;
  int64_t n = 0, i = 0;
  bool null_seen = true;
  ASSERT_TRUE(db->Run([&](PgConn& c) -> absl::Status {
                  auto r = c.Exec("SELECT b, n, i, s, NULL::bigint FROM t WHERE b = $1",
                                  PgParams().AddBytes(all_bytes));
                  if (!r.ok()) return r.status();
                  if (r->rows() != 1) return absl::NotFoundError("row");
                  b = r->Bytes(0, 0);
                  n = r->Int(0, 1);
                  i = r->Int(0, 2);
                  s = r->Bytes(0, 3);
                  null_seen = r->IsNull(0, 4);
                  return absl::OkStatus();
                }).ok());
  EXPECT_EQ(b, all_bytes);
  EXPECT_EQ(n, -9007199254740993);
  EXPECT_EQ(i, -7);
  EXPECT_EQ(s, "caf\xc3\xa9 o'k");
  EXPECT_TRUE(null_seen);
}

// A bytea[] parameter carries any bytes per element (NUL, every byte value, empty), keeps the
// order, and binds many rows at once through unnest; an empty array is an empty array.
TEST_F(PgLedgerTest, BytesArraysRoundTripExactlyAndInOrder) {
  auto db = Open();
  ASSERT_NE(db, nullptr);
  std::string all_bytes;
  for (int i = 0; i < 256; ++i) all_bytes.push_back(static_cast<char>(i));
  const std::vector<std::string> values = {all_bytes, "", std::string("a\0b", 3), "{\"x\",}\\",
                                           std::string(70000, 'z')};
  ASSERT_TRUE(db->Run([](PgConn& c) {
                  return c.ExecScript("CREATE TABLE t (pos BIGINT, b BYTEA, n BIGINT)");
                }).ok());
  ASSERT_TRUE(db->Tx([&](PgConn& c) {
                  return c
                      .Exec(
                          "INSERT INTO t SELECT pos, b, n FROM unnest($1::bytea[], $2::bigint[]) "
                          "WITH ORDINALITY AS u(b, n, pos)",
                          PgParams().AddBytesArray(values).AddIntArray({10, 11, 12, 13, 14}))
                      .status();
                }).ok());
  std::vector<std::string> got;
  std::vector<int64_t> numbers;
  int64_t empty_length = -1;
  ASSERT_TRUE(db->Run([&](PgConn& c) -> absl::Status {
                  auto r = c.Exec("SELECT b, n FROM t ORDER BY pos");
                  if (!r.ok()) return r.status();
                  for (int i = 0; i < r->rows(); ++i) {
                    got.push_back(r->Bytes(i, 0));
                    numbers.push_back(r->Int(i, 1));
                  }
                  auto e = c.Exec("SELECT cardinality($1::bytea[])::bigint",
                                  PgParams().AddBytesArray({}));
                  if (!e.ok()) return e.status();
                  empty_length = e->Int(0, 0);
                  return absl::OkStatus();
                }).ok());
  EXPECT_EQ(got, values);
  EXPECT_EQ(numbers, (std::vector<int64_t>{10, 11, 12, 13, 14}));
  EXPECT_EQ(empty_length, 0);
}

TEST_F(PgLedgerTest, FailedWorkRollsBack) {
  auto db = Open();
  ASSERT_NE(db, nullptr);
  ASSERT_TRUE(db->Run([](PgConn& c) { return c.ExecScript("CREATE TABLE t (n BIGINT)"); }).ok());
  absl::Status st = db->Tx([](PgConn& c) -> absl::Status {
    auto r = c.Exec("INSERT INTO t VALUES (1)");
    if (!r.ok()) return r.status();
    return absl::AbortedError("changed my mind");
  });
  EXPECT_EQ(st.code(), absl::StatusCode::kAborted);
  int64_t count = -1;
  ASSERT_TRUE(db->Run([&](PgConn& c) -> absl::Status {
                  auto r = c.Exec("SELECT COUNT(*) FROM t");
                  if (!r.ok()) return r.status();
                  count = r->Int(0, 0);
                  return absl::OkStatus();
                }).ok());
  EXPECT_EQ(count, 0);
  // A statement error names the statement, and is not retried.
  st = db->Run([](PgConn& c) { return c.Exec("SELECT * FROM no_such_table").status(); });
  EXPECT_EQ(st.code(), absl::StatusCode::kInternal);
  EXPECT_TRUE(absl::StrContains(st.message(), "no_such_table")) << st;
}

TEST_F(PgLedgerTest, PasswordNeverInErrorsOrRedactedUrl) {
  const std::string secret = "s3cr3t-Pa55word";
  const std::string url = "postgresql://postgres:" + secret +
                          "@127.0.0.1:" + std::to_string(server_->port()) +
                          "/no_such_database_here";
  auto redacted = RedactDatabaseUrl(url);
  ASSERT_TRUE(redacted.ok()) << redacted.status();
  EXPECT_FALSE(absl::StrContains(*redacted, secret)) << *redacted;
  EXPECT_TRUE(absl::StrContains(*redacted, "dbname=no_such_database_here")) << *redacted;
  EXPECT_TRUE(absl::StrContains(*redacted, "password=[REDACTED]")) << *redacted;

  auto db = PgDb::Open(url);
  ASSERT_FALSE(db.ok());
  EXPECT_EQ(db.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(absl::StrContains(db.status().ToString(), secret)) << db.status();
  EXPECT_TRUE(absl::StrContains(db.status().message(), "no_such_database_here")) << db.status();

  // A malformed conninfo: libpq would quote the broken part; the error names neither.
  const std::string bad = "host=127.0.0.1 password='" + secret;
  auto parsed = PgDb::Open(bad);
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(absl::StrContains(parsed.status().ToString(), secret)) << parsed.status();
}

const std::vector<Migration> kTwo = {
    // Deliberately not idempotent: a second run of version 1 would fail.
    {1, "table a", "CREATE TABLE a (n BIGINT); INSERT INTO a VALUES (1)"},
    {2, "table b", "CREATE TABLE b (n BIGINT)"},
};

TEST_F(PgLedgerTest, ConcurrentStartsMigrateExactlyOnce) {
  constexpr int kReplicas = 6;
  std::atomic<int> applied{0}, failed{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kReplicas; ++i) {
    threads.emplace_back([&] {
      auto db = PgDb::Open(url_);
      if (!db.ok()) {
        ++failed;
        return;
      }
      auto n = Migrate(**db, "test", kTwo);
      if (!n.ok()) {
        ADD_FAILURE() << n.status();
        ++failed;
        return;
      }
      applied += *n;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(applied.load(), 2);  // every migration once, whichever replica ran it
  auto db = Open();
  ASSERT_NE(db, nullptr);
  auto v = SchemaVersion(*db, "test");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, 2);
  int64_t rows = 0, versions = 0;
  ASSERT_TRUE(db->Run([&](PgConn& c) -> absl::Status {
                  auto r = c.Exec("SELECT COUNT(*) FROM a");
                  if (!r.ok()) return r.status();
                  rows = r->Int(0, 0);
                  r = c.Exec("SELECT COUNT(*) FROM schema_version WHERE component = 'test'");
                  if (!r.ok()) return r.status();
                  versions = r->Int(0, 0);
                  return absl::OkStatus();
                }).ok());
  EXPECT_EQ(rows, 1);
  EXPECT_EQ(versions, 2);
  // A later start with one more migration applies only that one.
  std::vector<Migration> three = kTwo;
  three.push_back({3, "table c", "CREATE TABLE c (n BIGINT)"});
  auto n = Migrate(*db, "test", three);
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 1);
}

TEST_F(PgLedgerTest, NewerSchemaIsRefusedWithAMessageSayingSo) {
  auto db = Open();
  ASSERT_NE(db, nullptr);
  std::vector<Migration> three = kTwo;
  three.push_back({3, "table c", "CREATE TABLE c (n BIGINT)"});
  ASSERT_TRUE(Migrate(*db, "test", three).ok());
  auto old = Migrate(*db, "test", kTwo);
  ASSERT_FALSE(old.ok());
  EXPECT_EQ(old.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(old.status().message(),
                                "version 3, newer than this release "
                                "knows (2)"))
      << old.status();
  // Other components are versioned on their own.
  auto other = Migrate(*db, "other", {{1, "x", "CREATE TABLE x (n INT)"}});
  EXPECT_TRUE(other.ok()) << other.status();
}

TEST_F(PgLedgerTest, ReconnectsAfterAServerRestart) {
  // A private server: restarting the shared one would disturb other tests of this binary.
  auto own = PgServer::Start();
  ASSERT_TRUE(own.ok()) << own.status();
  PgOptions opts;
  opts.retry_for = absl::Seconds(30);
  auto db = PgDb::Open((*own)->Url(), opts);
  ASSERT_TRUE(db.ok()) << db.status();
  ASSERT_TRUE((*db)->Run([](PgConn& c) { return c.ExecScript("CREATE TABLE t (n BIGINT)"); }).ok());
  ASSERT_TRUE((*own)->Stop().ok());
  // Down: a health ping fails at once (no retries) and says the database is unavailable.
  absl::Status ping = (*db)->Ping();
  EXPECT_EQ(ping.code(), absl::StatusCode::kUnavailable) << ping;
  EXPECT_TRUE(IsPgConnectionError(ping));
  // Work started while the server is down completes once it is back: the server starts again
  // once the work is under way.
  std::atomic<bool> calling{false}, returned{false}, returned_while_down{true};
  std::thread restarter([&] {
    EXPECT_TRUE(::anchord::testing::WaitUntil([&] { return calling.load(); }, absl::Seconds(10)));
    returned_while_down = returned.load();
    EXPECT_TRUE((*own)->StartAgain().ok());
  });
  calling = true;
  absl::Status st =
      (*db)->Tx([](PgConn& c) { return c.Exec("INSERT INTO t VALUES (7)").status(); });
  returned = true;
  restarter.join();
  EXPECT_FALSE(returned_while_down) << "work returned while the server was down: " << st;
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_TRUE((*db)->Ping().ok());
  int64_t n = 0;
  ASSERT_TRUE((*db)
                  ->Run([&](PgConn& c) -> absl::Status {
                    auto r = c.Exec("SELECT COUNT(*) FROM t");
                    if (!r.ok()) return r.status();
                    n = r->Int(0, 0);
                    return absl::OkStatus();
                  })
                  .ok());
  EXPECT_EQ(n, 1);
}

}  // namespace
}  // namespace anchord::ledger
