// HashFile on a FileRef (a name relative to an open directory, and the walk's stat standing in for
// the fstat before the first read) and the walk that hands out those directories, over real files.
#include <dirent.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "libs/digest/hash_file.h"
#include "libs/digest/reason.h"
#include "libs/digest/tree_walk.h"
#include "tests/testing/temp_dir.h"

namespace anchord::digest {
namespace {

namespace fs = std::filesystem;

using testing::TempDir;

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
  ASSERT_EQ(fs::file_size(path), content.size()) << path;
}

std::string Sha(const std::string& data) {
  unsigned char out[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), out);
  return std::string(reinterpret_cast<const char*>(out), sizeof(out));
}

int64_t Ns(const struct timespec& ts) {
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

ExpectedStat StatOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(lstat(path.c_str(), &st), 0) << path;
  return ExpectedStat{st.st_size, Ns(st.st_mtim), Ns(st.st_ctim), static_cast<uint64_t>(st.st_ino),
                      static_cast<uint64_t>(st.st_dev)};
}

int OpenFds() {
  int n = 0;
  for (const auto& e : fs::directory_iterator("/proc/self/fd")) {
    (void)e;
    ++n;
  }
  return n;
}

// The file `name` in `dir` (open as `dir_fd`), with its stat taken now.
FileRef RefNow(const std::string& dir, int dir_fd, const std::string& name) {
  FileRef f;
  f.path = dir + "/" + name;
  f.dir_fd = dir_fd;
  f.name = name;
  f.expected = StatOf(f.path);
  return f;
}

class HashFileAtTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fd_ = open(dir_.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(fd_, 0);
    opt_.buffer_bytes = 4096;
    opt_.after_read_hook = [this](int) { ++reads_; };
  }
  void TearDown() override { close(fd_); }
  std::string P(const std::string& name) { return dir_.path() + "/" + name; }

  TempDir dir_{"hash_at_test"};
  int fd_ = -1;
  HashFileOptions opt_;
  int reads_ = 0;  // reads that reached the "after" fstat
};

// A stat that still holds: one read, relative to the directory, the same digest as by path.
TEST_F(HashFileAtTest, AFreshStatIsReadOnceAndMatchesHashingByPath) {
  for (size_t n : {size_t{1}, size_t{4095}, size_t{4096}, size_t{4097}, size_t{20000}}) {
    std::string data(n, 'q');
    data[0] = static_cast<char>(n & 0xff);
    WriteFile(P("f"), data);
    reads_ = 0;
    auto d = HashFile(RefNow(dir_.path(), fd_, "f"), opt_);
    ASSERT_TRUE(d.ok()) << n << ": " << d.status();
    EXPECT_EQ(d->digest.bytes(), Sha(data)) << n;
    EXPECT_EQ(d->size_bytes, static_cast<int64_t>(n));
    EXPECT_EQ(d->attempts, 1);
    EXPECT_EQ(reads_, 1) << n;
    // The path-only form (no directory, no stat) agrees.
    FileRef by_path;
    by_path.path = P("f");
    auto p = HashFile(by_path, opt_);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->digest, d->digest);
  }
}

// A stat that no longer holds never yields the bytes it would describe: the file rewritten (same
// size, other bytes), grown past the buffer, shrunk, or replaced by rename is read again the usual
// way and the digest is the file's as it is now; the rejected read does not count as an attempt.
TEST_F(HashFileAtTest, AStaleStatMeansTheFileIsReadAgain) {
  struct Case {
    const char* what;
    std::string now;
    bool by_rename;
  };
  const std::vector<Case> cases = {{"same size, other bytes", "BBBBBBBB", false},
                                   {"grown past the buffer", std::string(9000, 'g'), false},
                                   {"shrunk", "s", false},
                                   {"replaced by rename", "renamed in", true}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    WriteFile(P("f"), "AAAAAAAA");
    FileRef f = RefNow(dir_.path(), fd_, "f");
    // Let the change show in the timestamps even on a coarse clock: an explicit, later mtime.
    if (c.by_rename) {
      WriteFile(P("new"), c.now);
      ASSERT_EQ(rename(P("new").c_str(), P("f").c_str()), 0);
    } else {
      WriteFile(P("f"), c.now);
      struct timespec times[2] = {{0, UTIME_OMIT}, {f.expected->mtime_ns / 1000000000 + 5, 0}};
      ASSERT_EQ(utimensat(fd_, "f", times, 0), 0);
    }
    reads_ = 0;
    auto d = HashFile(f, opt_);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->digest.bytes(), Sha(c.now));
    EXPECT_EQ(d->size_bytes, static_cast<int64_t>(c.now.size()));
    EXPECT_EQ(d->attempts, 1);
    // More bytes than the stat said: the first read stops there, before the "after" fstat.
    // Otherwise that fstat showed the change. Either way one usual read followed.
    EXPECT_EQ(reads_, c.now.size() > 8 ? 1 : 2);
  }
}

// Something other than a regular file where the stat saw one: reported as before, never blocking
// and never reading without end; a file gone since the stat is unreadable; a symlink put in its
// place is not followed.
TEST_F(HashFileAtTest, WhatReplacedTheFileIsReportedAsItIs) {
  WriteFile(P("f"), "regular");
  FileRef f = RefNow(dir_.path(), fd_, "f");
  ASSERT_EQ(unlink(P("f").c_str()), 0);
  ASSERT_EQ(mkfifo(P("f").c_str(), 0600), 0);
  auto d = HashFile(f, opt_);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(ReasonOf(d.status()), kNotARegularFile) << d.status();

  ASSERT_EQ(unlink(P("f").c_str()), 0);
  ASSERT_EQ(mkdir(P("f").c_str(), 0700), 0);
  d = HashFile(f, opt_);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(ReasonOf(d.status()), kNotARegularFile) << d.status();

  ASSERT_EQ(rmdir(P("f").c_str()), 0);
  d = HashFile(f, opt_);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(ReasonOf(d.status()), kFileUnreadable) << d.status();
  EXPECT_EQ(d.status().code(), absl::StatusCode::kNotFound);

  WriteFile(P("target"), "target");
  ASSERT_EQ(symlink("target", P("f").c_str()), 0);
  d = HashFile(f, opt_);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(ReasonOf(d.status()), kNotARegularFile) << d.status();

  // A character device where a 4-byte file was: the read stops past those 4 bytes.
  if (access("/dev/zero", R_OK) == 0) {
    WriteFile(P("tiny"), "tiny");
    FileRef tiny = RefNow(dir_.path(), fd_, "tiny");
    tiny.dir_fd = -1;
    tiny.path = "/dev/zero";
    d = HashFile(tiny, opt_);
    ASSERT_FALSE(d.ok());
    EXPECT_EQ(ReasonOf(d.status()), kNotARegularFile) << d.status();
  }
}

// A file changed during the first read is read again; one that keeps changing is reported after
// max_attempts usual reads (the first read, on the caller's stat, is not one of them).
TEST_F(HashFileAtTest, AChangeDuringTheReadIsRetriedThenReported) {
  WriteFile(P("f"), "version 0");
  FileRef f = RefNow(dir_.path(), fd_, "f");
  int calls = 0;
  opt_.after_read_hook = [&](int) {
    if (calls++ == 0) {
      std::ofstream out(P("f"), std::ios::app);
      out << " appended";
    }
  };
  auto d = HashFile(f, opt_);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->digest.bytes(), Sha("version 0 appended"));
  EXPECT_EQ(calls, 2);

  f = RefNow(dir_.path(), fd_, "f");
  calls = 0;
  opt_.after_read_hook = [&](int) {
    ++calls;
    std::ofstream out(P("f"), std::ios::app);
    out << "x";
  };
  d = HashFile(f, opt_);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(ReasonOf(d.status()), kFileChangedWhileHashing);
  EXPECT_EQ(calls, opt_.max_attempts + 1);
}

// The walk hands each regular file the directory it still holds open (symlinks and other entries
// get none), with the whole lstat; it holds at most kMaxOpenDirs directories for entries still in
// use (later ones go by path) and every one is closed once its entries are gone.
TEST(TreeWalkOpenDirTest, RegularFilesComeWithTheirDirectoryWithinALimit) {
  TempDir dir("hash_at_walk");
  const std::string& r = dir.path();
  const int dirs = TreeWalker::kMaxOpenDirs + 10;
  std::map<std::string, std::string> content;
  for (int i = 0; i < dirs; ++i) {
    char name[16];
    std::snprintf(name, sizeof(name), "d%03d", i);
    fs::create_directories(r + "/" + name);
    std::string rel = std::string(name) + "/f.txt";
    content[rel] = "file " + rel;
    WriteFile(r + "/" + rel, content[rel]);
  }
  ASSERT_EQ(symlink("d000/f.txt", (r + "/link").c_str()), 0);
  auto walker = TreeWalker::Create(r);
  ASSERT_TRUE(walker.ok()) << walker.status();
  const int fds_before = OpenFds();

  // Every entry kept: the first kMaxOpenDirs directories are held, the rest go by path.
  std::vector<WalkEntry> kept;
  ASSERT_TRUE(walker
                  ->Walk("",
                         [&](WalkEntry&& e) {
                           kept.push_back(std::move(e));
                           return true;
                         })
                  .ok());
  ASSERT_EQ(kept.size(), static_cast<size_t>(dirs + 1));
  int with_dir = 0;
  for (const WalkEntry& e : kept) {
    SCOPED_TRACE(e.rel_path);
    ASSERT_TRUE(e.status.ok()) << e.status;
    if (e.rel_path == "link") {
      EXPECT_EQ(e.dir, nullptr);
      continue;
    }
    const ExpectedStat st = StatOf(r + "/" + e.rel_path);
    EXPECT_EQ(e.inode, st.inode);
    EXPECT_EQ(e.device, st.device);
    EXPECT_EQ(e.ctime_ns, st.ctime_ns);
    EXPECT_EQ(e.mtime_ns, st.mtime_ns);
    FileRef f;
    f.path = e.real_path;
    if (e.dir) {
      ++with_dir;
      EXPECT_EQ(e.name, "f.txt");
      f.dir_fd = e.dir->fd();
      f.name = e.name;
    }
    f.expected = ExpectedStat{e.size_bytes, e.mtime_ns, e.ctime_ns, e.inode, e.device};
    auto d = HashFile(f);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->digest.bytes(), Sha(content[e.rel_path]));
  }
  EXPECT_EQ(with_dir, TreeWalker::kMaxOpenDirs);
  EXPECT_EQ(OpenFds(), fds_before + TreeWalker::kMaxOpenDirs);
  kept.clear();
  EXPECT_EQ(OpenFds(), fds_before);

  // Entries dropped as they come: each directory is given back before the next, so every regular
  // file gets its directory.
  with_dir = 0;
  ASSERT_TRUE(walker
                  ->Walk("",
                         [&](WalkEntry&& e) {
                           if (e.dir) ++with_dir;
                           return true;
                         })
                  .ok());
  EXPECT_EQ(with_dir, dirs);
  EXPECT_EQ(OpenFds(), fds_before);
}

}  // namespace
}  // namespace anchord::digest
