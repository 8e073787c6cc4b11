// The submitter's store on either backend for the store tests (tests/support/backend.h): one way
// to open it, shared by every suite that runs the same expectations on SQLite and PostgreSQL.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "services/submitter/pg_submitter_store.h"
#include "services/submitter/submitter_store.h"
#include "tests/support/backend.h"

namespace anchord::submitter::testing {

class SubmitterBackendTest : public ::anchord::testing::BackendStoreTest<SubmitterStore> {
 protected:
  // A store over the test's data; a second one is another replica on PostgreSQL.
  absl::StatusOr<std::unique_ptr<SubmitterStore>> Open() override {
    if (GetParam() == ::anchord::testing::Backend::kSqlite) {
      return OpenSqliteSubmitterStore(dir_.File("submitter.db"));
    }
    auto db = OpenPg();
    if (!db.ok()) return db.status();
    PgSubmitterOptions o;
    o.lease_term = absl::ZeroDuration();
    return OpenPgSubmitterStore(*db, o);
  }
  // A new store over the same data (a restart).
  void Reopen() {
    store_.reset();
    auto s = Open();
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }
};

}  // namespace anchord::submitter::testing
