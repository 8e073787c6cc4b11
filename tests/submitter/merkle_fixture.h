// What the Merkle tests share (merkle_test.cc: store and Batcher; batch_engine_test.cc: the
// engine's batched creates): distinct digests, leaf and per-file items, and a fixture over a
// SQLite or PostgreSQL store.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "libs/ledger/pg_db.h"
#include "libs/ledger/sqlite_db.h"
#include "libs/merkle/merkle.h"
#include "services/submitter/pg_submitter_store.h"
#include "services/submitter/submitter_store.h"
#include "tests/submitter/test_util.h"
#include "tests/support/backend.h"
#include "libs/digest/digest.h"
#include "tests/support/pg_server.h"
#include "tests/testing/sqlite.h"

namespace anchord::submitter {

inline const absl::Time kNow = absl::FromUnixSeconds(1'700'000'000);

// A distinct digest per n (Digest(char) only has 256 and collides with the tests' letters).
inline std::string D(int n) {
  std::string d(32, '\x5a');
  d[0] = static_cast<char>(n & 0xff);
  d[1] = static_cast<char>((n >> 8) & 0xff);
  d[2] = '\x01';
  return d;
}

// The merkle library's digest type for a stored (raw, 32-byte) digest.
inline ::anchord::Digest AsDigest(absl::string_view raw) {
  absl::StatusOr<::anchord::Digest> d = ::anchord::Digest::FromBytes(raw);
  EXPECT_TRUE(d.ok()) << d.status();
  return d.ok() ? *d : ::anchord::Digest();
}
inline ::anchord::Digest AsDigest(const ::anchord::Digest& d) { return d; }

inline NewItem Leaf(int n, const std::string& provider = "fake") {
  NewItem it = testing::Item('x', "leaves/" + std::to_string(n) + ".bin", provider);
  it.digest = AsDigest(D(n));
  it.merkle = true;
  return it;
}

inline NewItem PerFile(int n, const std::string& provider = "fake") {
  NewItem it = testing::Item('x', "files/" + std::to_string(n) + ".bin", provider);
  it.digest = AsDigest(D(n));
  return it;
}

// A batch as the Batcher makes it, with each leaf's path as the tree gives it: the store keeps
// only the batch's leaf order, and what it reads back for a leaf must equal these paths.
struct TestBatch : NewBatch {
  std::vector<std::string> paths;  // per leaf
};

// The store under test: SQLite unless a parameterised suite below asks for PostgreSQL.
class MerkleFixture : public ::testing::Test {
 protected:
  virtual ::anchord::testing::Backend backend() const {
    return ::anchord::testing::Backend::kSqlite;
  }
  void SetUp() override {
    dir_ = testing::MakeTempDir();
    ASSERT_FALSE(dir_.empty());
    path_ = dir_ + "/submitter.db";
    if (backend() == ::anchord::testing::Backend::kPostgres) {
      auto url = ::anchord::testing::CreateSharedDatabase();
      ASSERT_TRUE(url.ok()) << url.status();
      auto db = ledger::PgDb::Open(*url);
      ASSERT_TRUE(db.ok()) << db.status();
      pg_ = std::shared_ptr<ledger::PgDb>(std::move(*db));
    }
    auto s = OpenStore();
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }
  // A store over the same data (a restart).
  absl::StatusOr<std::unique_ptr<SubmitterStore>> OpenStore() {
    if (backend() == ::anchord::testing::Backend::kSqlite) return OpenSqliteSubmitterStore(path_);
    PgSubmitterOptions o;
    o.lease_term = absl::ZeroDuration();  // fixed instants: the caller's leases as given
    return OpenPgSubmitterStore(pg_, o);
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  Submission Row(int n, const std::string& provider = "fake") {
    auto rows = store_->GetByDigest(AsDigest(D(n)));
    EXPECT_TRUE(rows.ok()) << rows.status();
    if (rows.ok()) {
      for (const Submission& r : *rows) {
        if (r.provider == provider) return r;
      }
    }
    ADD_FAILURE() << "no row for " << n;
    return Submission{};
  }
  Submission RowOf(const std::string& digest) {
    auto rows = store_->GetByDigest(AsDigest(digest));
    EXPECT_TRUE(rows.ok() && rows->size() == 1);
    return rows.ok() && !rows->empty() ? (*rows)[0] : Submission{};
  }
  // A scalar from a separate connection (what another process would read).
  // Whether a leaf row is in a sealed batch. SQLite stores a leaf in its provider's open batch
  // (a batch row whose root is still empty) until the seal; PostgreSQL with batch id 0.
  bool Sealed(const Submission& r) {
    return r.batch_id != 0 &&
           Scalar(absl::StrCat("SELECT COUNT(*) FROM batches WHERE id = ", r.batch_id,
                               " AND length(root) > 0")) == 1;
  }
  int64_t Scalar(const std::string& sql) {
    if (backend() == ::anchord::testing::Backend::kPostgres) {
      int64_t v = -1;
      absl::Status st = pg_->Run([&](ledger::PgConn& c) -> absl::Status {
        auto r = c.Exec(sql);
        if (!r.ok()) return r.status();
        if (r->rows() != 1) return absl::NotFoundError("no row");
        v = r->Int(0, 0);
        return absl::OkStatus();
      });
      EXPECT_TRUE(st.ok()) << st;
      return v;
    }
    return ::anchord::testing::SqliteScalar(path_, sql);
  }
  // The first column of every row of `sql`, as bytes, from a separate connection.
  std::vector<std::string> Column(const std::string& sql) {
    std::vector<std::string> out;
    if (backend() == ::anchord::testing::Backend::kPostgres) {
      absl::Status st = pg_->Run([&](ledger::PgConn& c) -> absl::Status {
        auto r = c.Exec(sql);
        if (!r.ok()) return r.status();
        out.clear();
        for (int i = 0; i < r->rows(); ++i) out.push_back(r->Bytes(i, 0));
        return absl::OkStatus();
      });
      EXPECT_TRUE(st.ok()) << st;
      return out;
    }
    return ::anchord::testing::SqliteColumn(path_, sql);
  }
  // Runs one statement from a separate connection (what an older release or a damaged disk left).
  void ExecSql(const std::string& sql) {
    if (backend() == ::anchord::testing::Backend::kPostgres) {
      absl::Status st =
          pg_->Run([&](ledger::PgConn& c) -> absl::Status { return c.Exec(sql).status(); });
      EXPECT_TRUE(st.ok()) << st;
      return;
    }
    absl::Status st = ::anchord::testing::SqliteExec(path_, sql);
    EXPECT_TRUE(st.ok()) << st;
  }
  // A batch over `leaves` computed like the Batcher does.
  TestBatch MakeBatch(const std::vector<WaitingLeaf>& leaves, merkle::Tree* tree_out = nullptr) {
    TestBatch b;
    b.provider = "fake";
    std::vector<::anchord::Digest> digests;
    for (const WaitingLeaf& l : leaves) {
      digests.push_back(AsDigest(l.digest));
      b.leaf_ids.push_back(l.id);
      b.nonces.push_back(merkle::RandomNonce());
    }
    auto tree = merkle::Tree::Build(digests, b.nonces);
    EXPECT_TRUE(tree.ok()) << tree.status();
    if (!tree.ok()) return b;
    b.root = tree->root().raw();
    for (size_t i = 0; i < digests.size(); ++i) b.paths.push_back(tree->PathBytes(i));
    b.root_file.job = "default";
    b.root_file.filename = "root.bin";
    b.root_file.source_path = "merkle-batch/x";
    b.root_file.size_bytes = static_cast<int64_t>(digests.size()) * 32;
    if (tree_out != nullptr) *tree_out = *std::move(tree);
    return b;
  }
  std::vector<WaitingLeaf> Unbatched(int limit = 1000) {
    auto l = store_->UnbatchedLeaves("fake", limit);
    EXPECT_TRUE(l.ok()) << l.status();
    return l.ok() ? *l : std::vector<WaitingLeaf>{};
  }
  // Two sealed batches, both QUEUED: leaves 1 and 2, then leaf 3.
  std::pair<TestBatch, TestBatch> TwoBatches() {
    EXPECT_TRUE(store_->InsertBatch({Leaf(1), Leaf(2)}, kNow).ok());
    TestBatch b1 = MakeBatch(Unbatched());
    EXPECT_TRUE(store_->CreateMerkleBatch(b1, kNow).ok());
    EXPECT_TRUE(store_->InsertBatch({Leaf(3)}, kNow).ok());
    TestBatch b2 = MakeBatch(Unbatched());
    EXPECT_TRUE(store_->CreateMerkleBatch(b2, kNow).ok());
    return {b1, b2};
  }

  std::string dir_, path_;
  std::shared_ptr<ledger::PgDb> pg_;
  std::unique_ptr<SubmitterStore> store_;
};

}  // namespace anchord::submitter
