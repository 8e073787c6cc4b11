// The store backends every store test runs against (one parameterised suite, not two copies).
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "libs/ledger/pg_db.h"
#include "tests/support/pg_server.h"
#include "tests/testing/temp_dir.h"

namespace anchord::testing {

enum class Backend { kSqlite, kPostgres };

inline std::string BackendName(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::kSqlite ? "Sqlite" : "Postgres";
}

#define ANCHORD_ALL_BACKENDS                                                                       \
  ::testing::Values(::anchord::testing::Backend::kSqlite, ::anchord::testing::Backend::kPostgres), \
      ::anchord::testing::BackendName

// A store test parameterised by backend: the data live in a temporary directory (the SQLite
// file) or, on PostgreSQL, in a new database of the shared server. A subclass says how to open its
// `Store` over them (Open, also used for a restart or another replica); store_ is the one opened
// at SetUp.
template <typename Store>
class BackendStoreTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    if (GetParam() == Backend::kPostgres) {
      absl::StatusOr<std::string> url = CreateSharedDatabase();
      ASSERT_TRUE(url.ok()) << url.status();
      url_ = *url;
    }
    absl::StatusOr<std::unique_ptr<Store>> store = Open();
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }
  virtual absl::StatusOr<std::unique_ptr<Store>> Open() = 0;
  // A handle of its own (its own connections) on the test's PostgreSQL database.
  absl::StatusOr<std::shared_ptr<ledger::PgDb>> OpenPg() const {
    absl::StatusOr<std::unique_ptr<ledger::PgDb>> db = ledger::PgDb::Open(url_);
    if (!db.ok()) return db.status();
    return std::shared_ptr<ledger::PgDb>(std::move(*db));
  }

  TempDir dir_;
  std::string url_;  // PostgreSQL only
  std::unique_ptr<Store> store_;
};

}  // namespace anchord::testing
