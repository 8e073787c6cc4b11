#include <fcntl.h>
#include <openssl/sha.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <unordered_map>

#include "absl/container/flat_hash_set.h"
#include "gtest/gtest.h"
#include "libs/common/hex.h"
#include "libs/digest/digest.h"
#include "libs/digest/hash_file.h"
#include "libs/digest/mime.h"
#include "libs/digest/reason.h"
#include "libs/digest/sha256.h"
#include "libs/digest/stored_digest.h"
#include "libs/digest/tree_walk.h"

namespace anchord::digest {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "digest_test.XXXXXX").string();
    char* p = mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  ASSERT_TRUE(out.good());
}

std::string Pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 31 + i / 7) & 0xff);
  return s;
}

std::string OneShot(const std::string& data) {
  unsigned char out[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), out);
  return std::string(reinterpret_cast<const char*>(out), sizeof(out));
}

TEST(DigestTest, FromBytesKeepsTheBytesAndRejectsOtherSizes) {
  std::string raw = OneShot("abc");
  absl::StatusOr<Digest> d = Digest::FromBytes(raw, "file_digest");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->bytes(), raw);
  EXPECT_EQ(d->raw(), raw);
  EXPECT_EQ(d->hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  for (size_t n : {0, 5, 31, 33, 64}) {
    absl::StatusOr<Digest> bad = Digest::FromBytes(std::string(n, 'x'), "file_digest");
    ASSERT_FALSE(bad.ok()) << n;
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(bad.status().message(),
              "file_digest: a SHA-256 digest must be exactly 32 bytes, got " + std::to_string(n));
  }
  // The default field name is "digest".
  EXPECT_EQ(Digest::FromBytes("12345").status().message(),
            "digest: a SHA-256 digest must be exactly 32 bytes, got 5");
}

TEST(DigestTest, DigestFromColumnIsDataLossNamingTheColumn) {
  std::string raw = OneShot("abc");
  absl::StatusOr<Digest> d = DigestFromColumn(raw, "proofs.digest");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->raw(), raw);
  absl::StatusOr<Digest> bad = DigestFromColumn(std::string(31, 'x'), "proofs.digest");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(bad.status().message(),
            "proofs.digest: a SHA-256 digest must be exactly 32 bytes, got 31");
}

TEST(DigestTest, FromHexAcceptsEitherCaseAndNamesTheField) {
  const std::string lower = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
  std::string upper = lower;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  absl::StatusOr<Digest> a = Digest::FromHex(lower, "digest_hex");
  absl::StatusOr<Digest> b = Digest::FromHex(upper, "digest_hex");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(*a, *b);
  EXPECT_EQ(a->bytes(), OneShot("abc"));
  EXPECT_EQ(b->hex(), lower);  // always written lowercase

  absl::StatusOr<Digest> short_hex = Digest::FromHex("abcd", "digest_hex");
  ASSERT_FALSE(short_hex.ok());
  EXPECT_EQ(short_hex.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(short_hex.status().message(),
            "digest_hex: a SHA-256 digest must be exactly 64 hex characters, got 4");
  std::string not_hex = lower;
  not_hex[10] = 'g';
  absl::StatusOr<Digest> bad = Digest::FromHex(not_hex, "digest_hex");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), "digest_hex: non-hex character at offset 10");
}

TEST(DigestTest, OrdersAndHashesByBytes) {
  Digest zero;
  EXPECT_EQ(zero.bytes(), std::string(32, '\0'));
  Digest abc = Sha256::Of("abc");
  Digest empty = Sha256::Of("");
  EXPECT_NE(abc, empty);
  EXPECT_EQ(abc, *Digest::FromBytes(OneShot("abc")));
  // Ordered like the raw bytes (memcmp order), so maps keyed by Digest iterate as by bytes.
  EXPECT_EQ(abc < empty, abc.bytes() < empty.bytes());
  EXPECT_EQ(zero < abc, true);
  std::map<Digest, int> ordered{{abc, 1}, {empty, 2}, {zero, 3}};
  EXPECT_EQ(ordered.begin()->first, zero);
  absl::flat_hash_set<Digest> set{abc, empty, *Digest::FromBytes(OneShot("abc"))};
  EXPECT_EQ(set.size(), 2u);
  EXPECT_TRUE(set.contains(abc));
  EXPECT_FALSE(set.contains(zero));
  std::unordered_map<Digest, int> unordered{{abc, 1}};
  EXPECT_EQ(unordered.count(abc), 1u);
  EXPECT_EQ(unordered.count(empty), 0u);
}

TEST(Sha256Test, KnownAnswers) {
  EXPECT_EQ(Sha256::Of("").hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256::Of("abc").hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256Test, StreamingMatchesOneShotOnOneMiBPattern) {
  std::string data = Pattern(1 << 20);
  Sha256 h;
  // Uneven pieces so the chunk boundaries do not line up with SHA-256 blocks.
  size_t pos = 0, step = 1;
  while (pos < data.size()) {
    size_t n = std::min(step, data.size() - pos);
    h.Update(absl::string_view(data).substr(pos, n));
    pos += n;
    step = step * 3 + 1;
  }
  EXPECT_EQ(h.Finish().bytes(), OneShot(data));
  // Finish resets: the object hashes a new message.
  h.Update("abc");
  EXPECT_EQ(h.Finish().hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(HashFileTest, FileLargerThanBuffer) {
  TempDir dir;
  std::string path = dir.path() + "/big.bin";
  std::string data = Pattern(3 * 4096 + 123);
  WriteFile(path, data);
  HashFileOptions opt;
  opt.buffer_bytes = 4096;
  std::atomic<int64_t> bytes{0};
  absl::StatusOr<FileDigest> d = HashFile(path, opt, &bytes);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->digest.bytes(), OneShot(data));
  EXPECT_EQ(d->size_bytes, static_cast<int64_t>(data.size()));
  EXPECT_EQ(d->attempts, 1);
  EXPECT_EQ(bytes.load(), static_cast<int64_t>(data.size()));
}

TEST(HashFileTest, ChangeWhileHashingIsRetriedThenReported) {
  TempDir dir;
  std::string path = dir.path() + "/changing.txt";
  WriteFile(path, "version 0");
  HashFileOptions opt;
  opt.buffer_bytes = 4;
  int calls = 0;
  // Changes the file between the read and the "after" fstat on the first attempt only.
  opt.after_read_hook = [&](int attempt) {
    ++calls;
    if (attempt == 0) {
      std::ofstream out(path, std::ios::app);
      out << " appended";
    }
  };
  absl::StatusOr<FileDigest> d = HashFile(path, opt);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->attempts, 2);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(d->digest.bytes(), OneShot("version 0 appended"));

  // Changed on every attempt: gives up after max_attempts.
  int n = 0;
  opt.after_read_hook = [&](int) {
    ++n;
    std::ofstream out(path, std::ios::app);
    out << "x";
  };
  d = HashFile(path, opt);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kAborted);
  EXPECT_EQ(ReasonOf(d.status()), kFileChangedWhileHashing);
  EXPECT_EQ(n, 3);
}

// HashFile stops after a short read that reaches the size seen before reading (no extra read for
// EOF) and reuses one buffer per thread: files smaller than, equal to and larger than the buffer,
// hashed one after another on the same thread (a smaller file after a larger one must not see
// stale bytes), and a short file appended to exactly at that point is still read again.
TEST(HashFileTest, SizesAroundTheBufferAndReusedBuffer) {
  TempDir dir;
  HashFileOptions opt;
  opt.buffer_bytes = 4096;
  for (size_t n : {size_t{4097}, size_t{1}, size_t{4096}, size_t{4095}, size_t{8192}, size_t{10}}) {
    std::string path = dir.path() + "/f" + std::to_string(n);
    std::string data = Pattern(n);
    WriteFile(path, data);
    std::atomic<int64_t> bytes{0};
    absl::StatusOr<FileDigest> d = HashFile(path, opt, &bytes);
    ASSERT_TRUE(d.ok()) << n << ": " << d.status();
    EXPECT_EQ(d->digest.bytes(), OneShot(data)) << n;
    EXPECT_EQ(d->size_bytes, static_cast<int64_t>(n));
    EXPECT_EQ(d->attempts, 1);
    EXPECT_EQ(bytes.load(), static_cast<int64_t>(n));
  }
  // A bigger buffer on the same thread, then the default one: still correct.
  opt.buffer_bytes = 1 << 16;
  std::string path = dir.path() + "/g";
  std::string data = Pattern(70000);
  WriteFile(path, data);
  absl::StatusOr<FileDigest> d = HashFile(path, opt);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->digest.bytes(), OneShot(data));

  // Short file, grown right after its only read: detected and read again with the new bytes.
  std::string small = dir.path() + "/grow.txt";
  WriteFile(small, "abc");
  int calls = 0;
  opt.after_read_hook = [&](int attempt) {
    ++calls;
    if (attempt == 0) {
      std::ofstream out(small, std::ios::app);
      out << "def";
    }
  };
  d = HashFile(small, opt);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->attempts, 2);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(d->digest.bytes(), OneShot("abcdef"));
  EXPECT_EQ(d->size_bytes, 6);
}

TEST(HashFileTest, EmptyFifoAndMissing) {
  TempDir dir;
  WriteFile(dir.path() + "/empty", "");
  auto d = HashFile(dir.path() + "/empty");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(ReasonOf(d.status()), kEmptyFile);

  std::string fifo = dir.path() + "/fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  d = HashFile(fifo);  // must not block: O_NONBLOCK
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(ReasonOf(d.status()), kNotARegularFile);

  d = HashFile(dir.path() + "/missing");
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(ReasonOf(d.status()), kFileUnreadable);
}

TEST(HashFileTest, CancelledStopsHashing) {
  TempDir dir;
  WriteFile(dir.path() + "/f", Pattern(10000));
  std::atomic<bool> cancelled{true};
  HashFileOptions opt;
  opt.cancelled = &cancelled;
  auto d = HashFile(dir.path() + "/f", opt);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), absl::StatusCode::kCancelled);
}

TEST(NormalizeRelativePathTest, RejectsAbsoluteAndDotDot) {
  auto p = NormalizeRelativePath("/etc");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p.status().message().substr(0, 5), "path:");
  p = NormalizeRelativePath("a/../../b");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().message().substr(0, 5), "path:");
  p = NormalizeRelativePath("..");
  EXPECT_FALSE(p.ok());
  EXPECT_EQ(*NormalizeRelativePath("./a//b/"), "a/b");
  EXPECT_EQ(*NormalizeRelativePath(""), "");
  EXPECT_EQ(*NormalizeRelativePath("."), "");
  // "..." is an ordinary name.
  EXPECT_EQ(*NormalizeRelativePath("a/..."), "a/...");
}

TEST(TreeWalkTest, ReportsProblemsPerEntryAndGoesOn) {
  TempDir outside;
  WriteFile(outside.path() + "/secret.txt", "secret");
  TempDir dir;
  const std::string& r = dir.path();
  fs::create_directories(r + "/sub/deeper");
  WriteFile(r + "/a.txt", "a");
  WriteFile(r + "/sub/b.pdf", "b");
  WriteFile(r + "/sub/deeper/c.csv", "c");
  ASSERT_EQ(mkfifo((r + "/sub/pipe").c_str(), 0600), 0);
  ASSERT_EQ(symlink((outside.path() + "/secret.txt").c_str(), (r + "/escape").c_str()), 0);
  ASSERT_EQ(symlink("../a.txt", (r + "/sub/inside_link").c_str()), 0);
  ASSERT_EQ(symlink("sub", (r + "/dirlink").c_str()), 0);
  ASSERT_EQ(symlink("nowhere", (r + "/dangling").c_str()), 0);
  // A unix socket: another non-regular file.
  {
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT_GE(s, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::string sp = r + "/sock";
    if (sp.size() < sizeof(addr.sun_path)) {
      std::strncpy(addr.sun_path, sp.c_str(), sizeof(addr.sun_path) - 1);
      ASSERT_EQ(bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    }
    close(s);
  }
  // An unreadable directory. As root (CI) permissions do not apply, so only the assertion on it
  // is skipped then; the dangling symlink above covers FILE_UNREADABLE in every case.
  fs::create_directories(r + "/locked");
  WriteFile(r + "/locked/x", "x");
  chmod((r + "/locked").c_str(), 0);

  auto walker = TreeWalker::Create(r);
  ASSERT_TRUE(walker.ok()) << walker.status();
  std::map<std::string, WalkEntry> seen;
  absl::Status st = walker->Walk("", [&](WalkEntry&& e) {
    std::string key = e.rel_path;
    seen.emplace(key, std::move(e));
    return true;
  });
  chmod((r + "/locked").c_str(), 0700);
  ASSERT_TRUE(st.ok()) << st;

  ASSERT_TRUE(seen.count("a.txt"));
  EXPECT_TRUE(seen["a.txt"].status.ok());
  EXPECT_EQ(seen["a.txt"].size_bytes, 1);
  EXPECT_TRUE(seen["sub/b.pdf"].status.ok());
  EXPECT_TRUE(seen["sub/deeper/c.csv"].status.ok());
  EXPECT_EQ(ReasonOf(seen["sub/pipe"].status), kNotARegularFile);
  EXPECT_EQ(ReasonOf(seen["escape"].status), kPathOutsideRoot);
  EXPECT_EQ(ReasonOf(seen["dangling"].status), kFileUnreadable);
  EXPECT_EQ(ReasonOf(seen["dirlink"].status), kNotARegularFile);
  EXPECT_NE(seen["dirlink"].status.message().find("not descended"), absl::string_view::npos);
  ASSERT_TRUE(seen["sub/inside_link"].status.ok()) << seen["sub/inside_link"].status;
  EXPECT_EQ(seen["sub/inside_link"].real_path, walker->root() + "/a.txt");
  if (seen.count("sock")) {
    EXPECT_EQ(ReasonOf(seen["sock"].status), kNotARegularFile);
  }
  // Nothing under the symlinked directory was visited.
  for (const auto& [k, v] : seen) EXPECT_NE(k.rfind("dirlink/", 0), 0u) << k;
  if (geteuid() != 0) {
    EXPECT_EQ(ReasonOf(seen["locked"].status), kFileUnreadable);
  }

  // A subdirectory only.
  std::vector<std::string> sub;
  ASSERT_TRUE(walker
                  ->Walk("sub",
                         [&](WalkEntry&& e) {
                           sub.push_back(e.rel_path);
                           return true;
                         })
                  .ok());
  EXPECT_EQ(sub, (std::vector<std::string>{"sub/b.pdf", "sub/inside_link", "sub/pipe",
                                           "sub/deeper/c.csv"}));

  // Bad requests name the field.
  st = walker->Walk("../x", [](WalkEntry&&) { return true; });
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message().substr(0, 5), "path:");
  st = walker->Walk(outside.path(), [](WalkEntry&&) { return true; });
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  st = walker->Walk("nope", [](WalkEntry&&) { return true; });
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  // The start directory must not escape through a symlink either.
  ASSERT_EQ(symlink(outside.path().c_str(), (r + "/outdir").c_str()), 0);
  st = walker->Walk("outdir", [](WalkEntry&&) { return true; });
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
}

TEST(MimeTest, ByExtension) {
  EXPECT_EQ(GuessMimeType("a/Report.PDF"), "application/pdf");
  EXPECT_EQ(GuessMimeType("x.jpg"), "image/jpeg");
  EXPECT_EQ(GuessMimeType("x.docx"),
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document");
  EXPECT_EQ(GuessMimeType("noext"), "");
  EXPECT_EQ(GuessMimeType(".bashrc"), "");
  EXPECT_EQ(GuessMimeType("dir.d/file"), "");
}

}  // namespace
}  // namespace anchord::digest
