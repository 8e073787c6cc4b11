// Where the SQLite submitter store keeps a digest's files (FilesKept, submitter_store_schema.h):
// the first in its rows' own columns, only the later ones in refs, and a database of an older
// release (every file in refs) read and extended as before. What the readers give is the same
// either way; these tests look at the tables as well, as the layout is the point.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "services/submitter/submitter_store.h"
#include "services/submitter/submitter_store_schema.h"
#include "tests/submitter/test_util.h"
#include "tests/testing/sqlite.h"

namespace anchord::submitter {
namespace {

using testing::DigestOf;
using testing::Item;

const absl::Time kNow = absl::FromUnixSeconds(1'700'000'000);

class FilesKeptTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir();
    ASSERT_FALSE(dir_.empty());
    path_ = dir_ + "/submitter.db";
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  void Reopen() {
    store_.reset();
    auto s = OpenSqliteSubmitterStore(path_);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }

  int64_t Int(const std::string& sql) { return ::anchord::testing::SqliteScalar(path_, sql); }
  void Exec(const std::string& sql) {
    absl::Status done = ::anchord::testing::SqliteExec(path_, sql);
    ASSERT_TRUE(done.ok()) << done;
  }

  // The files the store gives for digest `c`, as job:source_path, by each reader.
  std::vector<std::string> FilesOf(char c) {
    std::vector<std::string> out;
    auto refs = store_->Refs(DigestOf(c));
    EXPECT_TRUE(refs.ok()) << refs.status();
    if (!refs.ok()) return out;
    for (const FileRef& f : *refs) out.push_back(absl::StrCat(f.job, ":", f.source_path));
    // RefsOfRows gives every row of the digest the same files.
    auto rows = store_->GetByDigest(DigestOf(c));
    EXPECT_TRUE(rows.ok()) << rows.status();
    if (!rows.ok()) return out;
    auto by_row = store_->RefsOfRows(*rows);
    EXPECT_TRUE(by_row.ok()) << by_row.status();
    if (!by_row.ok()) return out;
    for (size_t i = 0; i < by_row->size(); ++i) {
      std::vector<std::string> got;
      for (const FileRef& f : (*by_row)[i]) got.push_back(absl::StrCat(f.job, ":", f.source_path));
      EXPECT_EQ(got, out) << "row " << (*rows)[i].id;
    }
    return out;
  }

  int64_t Kept(char c, const std::string& provider) {
    return Int(
        absl::StrCat("SELECT files_kept FROM submissions WHERE digest = CAST(printf('%.32c', '",
                     std::string(1, c), "') AS BLOB) AND provider = '", provider, "'"));
  }

  std::string dir_, path_;
  std::unique_ptr<SubmitterStore> store_;
};

TEST_F(FilesKeptTest, ANewDigestsFileIsItsRowsOwnAndNoRefsRowIsWritten) {
  NewItem two = Item('b', "dir/b.txt");
  two.providers.push_back("other");
  NewItem leaf = Item('c', "dir/c.txt");
  leaf.merkle = true;
  auto r = store_->InsertBatch({Item('a', "dir/a.txt"), two, leaf}, kNow);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Int("SELECT COUNT(*) FROM refs"), 0);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM submissions"), 4);
  EXPECT_EQ(Int("SELECT COUNT(*) FROM submissions WHERE files_kept = 1"), 4);
  EXPECT_EQ(FilesOf('a'), std::vector<std::string>{"default:dir/a.txt"});
  EXPECT_EQ(FilesOf('b'), std::vector<std::string>{"default:dir/b.txt"});
  EXPECT_EQ(FilesOf('c'), std::vector<std::string>{"default:dir/c.txt"});
  auto refs = store_->Refs(DigestOf('a'));
  ASSERT_TRUE(refs.ok());
  ASSERT_EQ(refs->size(), 1u);
  EXPECT_EQ((*refs)[0].filename, "a.txt");
  EXPECT_EQ((*refs)[0].size_bytes, 10);
  EXPECT_EQ((*refs)[0].mime_type, "text/plain");
  EXPECT_TRUE(store_->Refs(DigestOf('z'))->empty());
}

TEST_F(FilesKeptTest, LaterFilesGoToRefsAndEveryRowOfTheDigestSaysSo) {
  NewItem a = Item('a', "dir/a.txt");
  a.providers.push_back("other");
  ASSERT_TRUE(store_->InsertBatch({a, Item('b', "dir/b.txt")}, kNow).ok());
  // The original again stores nothing; a second file of another job is a duplicate of it.
  auto again =
      store_->InsertBatch({Item('a', "dir/a.txt"), Item('a', "copy/a.txt", "fake", "audit")}, kNow);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE((*again)[0].known_before);
  EXPECT_EQ((*again)[0].duplicate_of, "");
  EXPECT_TRUE((*again)[1].known_before);
  EXPECT_EQ((*again)[1].duplicate_of, "dir/a.txt");
  EXPECT_EQ(Int("SELECT COUNT(*) FROM refs"), 1);
  EXPECT_EQ(Kept('a', "fake"), 2);
  EXPECT_EQ(Kept('a', "other"), 2);
  EXPECT_EQ(Kept('b', "fake"), 1);
  EXPECT_EQ(FilesOf('a'), (std::vector<std::string>{"default:dir/a.txt", "audit:copy/a.txt"}));
  // Both files again, and a third provider's row of the digest: no file stored twice, and the
  // new row knows where the files are.
  ASSERT_TRUE(
      store_
          ->InsertBatch({Item('a', "copy/a.txt", "fake", "audit"), Item('a', "dir/a.txt", "third")},
                        kNow)
          .ok());
  EXPECT_EQ(Int("SELECT COUNT(*) FROM refs"), 1);
  EXPECT_EQ(Kept('a', "third"), 2);
  EXPECT_EQ(FilesOf('a'), (std::vector<std::string>{"default:dir/a.txt", "audit:copy/a.txt"}));
  // A job counts the digests with a file in it, once each.
  auto audit = store_->SummarizeJob("audit");
  ASSERT_TRUE(audit.ok()) << audit.status();
  EXPECT_EQ(audit->at(SubState::kQueued), 1);
  auto all = store_->SummarizeJob("default");
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->at(SubState::kQueued), 2);
  auto none = store_->SummarizeJob("none");
  ASSERT_TRUE(none.ok());
  int64_t in_none = 0;
  for (const auto& [state, n] : *none) in_none += n;
  EXPECT_EQ(in_none, 0);
  // And all of it after a restart.
  Reopen();
  EXPECT_EQ(FilesOf('a'), (std::vector<std::string>{"default:dir/a.txt", "audit:copy/a.txt"}));
  EXPECT_EQ(FilesOf('b'), std::vector<std::string>{"default:dir/b.txt"});
}

// Rows an older release wrote keep every file in refs, the original included: read as they are,
// and a later file of such a digest is stored there too.
TEST_F(FilesKeptTest, AnOlderReleasesRowsKeepEveryFileInRefs) {
  ASSERT_TRUE(store_->InsertBatch({Item('a', "dir/a.txt"), Item('b', "dir/b.txt")}, kNow).ok());
  store_.reset();
  Exec(
      "UPDATE submissions SET files_kept = 0; "
      "INSERT INTO refs (sub_id, job, source_path, filename, size_bytes, mime_type, created_at) "
      "SELECT id, job, source_path, filename, size_bytes, mime_type, created_at FROM submissions");
  Reopen();
  EXPECT_EQ(FilesOf('a'), std::vector<std::string>{"default:dir/a.txt"});
  ASSERT_TRUE(store_
                  ->InsertBatch({Item('a', "dir/a.txt"), Item('a', "copy/a.txt", "fake", "audit"),
                                 Item('a', "dir/a.txt", "other")},
                                kNow)
                  .ok());
  EXPECT_EQ(Int("SELECT COUNT(*) FROM refs"), 3);
  EXPECT_EQ(Kept('a', "fake"), 0);
  EXPECT_EQ(Kept('a', "other"), 0);
  EXPECT_EQ(FilesOf('a'), (std::vector<std::string>{"default:dir/a.txt", "audit:copy/a.txt"}));
  EXPECT_EQ(FilesOf('b'), std::vector<std::string>{"default:dir/b.txt"});
  auto audit = store_->SummarizeJob("audit");
  ASSERT_TRUE(audit.ok());
  EXPECT_EQ(audit->at(SubState::kQueued), 1);
  // A digest new to this database is kept the new way beside them.
  ASSERT_TRUE(store_->InsertBatch({Item('c', "dir/c.txt")}, kNow).ok());
  EXPECT_EQ(Int("SELECT COUNT(*) FROM refs"), 3);
  EXPECT_EQ(Kept('c', "fake"), 1);
  EXPECT_EQ(FilesOf('c'), std::vector<std::string>{"default:dir/c.txt"});
}

}  // namespace
}  // namespace anchord::submitter
