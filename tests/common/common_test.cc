#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/common/backoff.h"
#include "libs/common/clock.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"
#include "libs/common/loopback_port.h"
#include "libs/common/secret.h"
#include "libs/common/thread_name.h"
#include "libs/common/validate.h"
#include "libs/common/worker_pool.h"

namespace anchord {
namespace {

TEST(Hex, RoundTripAndErrors) {
  std::string bytes("\x00\x01\xab\xff", 4);
  EXPECT_EQ(HexEncode(bytes), "0001abff");
  auto back = HexDecode("0001ABff");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, bytes);
  auto odd = HexDecode("abc", "digest_hex");
  ASSERT_FALSE(odd.ok());
  EXPECT_NE(odd.status().message().find("digest_hex"), absl::string_view::npos);
  auto bad = HexDecode("zz");
  EXPECT_FALSE(bad.ok());
  EXPECT_TRUE(IsSha256Hex(std::string(64, 'a')));
  EXPECT_FALSE(IsSha256Hex(std::string(63, 'a')));
  EXPECT_FALSE(IsSha256Hex(std::string(63, 'a') + "g"));
}

TEST(Validate, MessagesNameTheField) {
  auto st = ValidateDigest("short", "metadata.digest");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message().substr(0, 15), "metadata.digest");
  EXPECT_TRUE(ValidateDigest(std::string(32, 'x')).ok());

  EXPECT_FALSE(ValidateFilename("").ok());
  EXPECT_FALSE(ValidateFilename(std::string(256, 'a')).ok());
  EXPECT_FALSE(ValidateFilename("a/b").ok());
  EXPECT_FALSE(ValidateFilename("..").ok());
  EXPECT_FALSE(ValidateFilename(std::string("a\0b", 3)).ok());
  EXPECT_TRUE(ValidateFilename("report.pdf").ok());
  EXPECT_NE(ValidateFilename("", "metadata.filename").message().find("metadata.filename"),
            absl::string_view::npos);

  EXPECT_FALSE(ValidateSize(0).ok());
  EXPECT_FALSE(ValidateSize(-5).ok());
  EXPECT_TRUE(ValidateSize(1).ok());

  EXPECT_TRUE(ValidateJob("").ok());
  EXPECT_TRUE(ValidateJob("site-2026.a_b").ok());
  EXPECT_FALSE(ValidateJob("has space").ok());
  EXPECT_FALSE(ValidateJob(std::string(129, 'a')).ok());

  EXPECT_FALSE(ValidateRequestId("").ok());
  EXPECT_TRUE(ValidateMimeType("").ok());
  EXPECT_TRUE(ValidateMimeType("application/pdf").ok());
  EXPECT_FALSE(ValidateMimeType("pdf").ok());
  EXPECT_FALSE(ValidateMimeType("a b/c").ok());
  EXPECT_FALSE(ValidateSourcePath(std::string(4097, 'a')).ok());
}

TEST(Secrets, ScrubbedFromText) {
  RegisterSecret("proofd_live_topsecretvalue");
  std::string s = ScrubSecrets("Authorization: Bearer proofd_live_topsecretvalue failed");
  EXPECT_EQ(s.find("topsecret"), std::string::npos);
  EXPECT_NE(s.find("[REDACTED]"), std::string::npos);
  // Short values would scrub ordinary words; they are ignored.
  RegisterSecret("ab");
  EXPECT_EQ(ScrubSecrets("abc"), "abc");
}

TEST(Secrets, LoadFromFileTrimsAndNeverNamesTheValue) {
  std::string dir = ::testing::TempDir();
  std::string path = absl::StrCat(dir, "/key-", getpid());
  {
    std::ofstream out(path);
    out << "sk_from_file_123456\n";
  }
  auto key = LoadSecret("proofd API key", "ignored-when-file-given", path);
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(*key, "sk_from_file_123456");
  EXPECT_EQ(ScrubSecrets("x sk_from_file_123456 y"), "x [REDACTED] y");
  auto missing = LoadSecret("proofd API key", "", path + ".missing");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("proofd API key"), absl::string_view::npos);
  std::remove(path.c_str());

  EXPECT_EQ(SecretFingerprint("a").size(), 12u);
  EXPECT_NE(SecretFingerprint("a"), SecretFingerprint("b"));
  EXPECT_EQ(SecretFingerprint("a"), SecretFingerprint("a"));
}

TEST(Backoff, GrowsAndIsCapped) {
  BackoffPolicy p;
  p.initial = absl::Milliseconds(100);
  p.max = absl::Seconds(2);
  for (int attempt = 0; attempt < 40; ++attempt) {
    absl::Duration d = BackoffDelay(p, attempt);
    absl::Duration base = std::min(p.max, p.initial * (1 << std::min(attempt, 20)));
    EXPECT_GE(d, base / 2) << attempt;
    EXPECT_LE(d, base) << attempt;
  }
}

TEST(FakeClock, SleepAdvancesExactly) {
  FakeClock clock;
  absl::Time t0 = clock.Now();
  clock.SleepFor(absl::Seconds(30));
  EXPECT_EQ(clock.Now() - t0, absl::Seconds(30));
  clock.SleepUntil(t0);  // in the past: no-op
  EXPECT_EQ(clock.Now() - t0, absl::Seconds(30));
  EXPECT_EQ(clock.slept(), absl::Seconds(30));
}

// Caller-supplied text cannot forge log lines or steer a terminal, and is bounded.
TEST(LogEscapeTest, ControlCharactersAndLengthAreDefused) {
  EXPECT_EQ(EscapeLogText("plain text: ok"), "plain text: ok");
  EXPECT_EQ(EscapeLogText("a\nFAKE line\r\t\x1b[31m\\\x7f\xc3\xa9"),
            "a\\nFAKE line\\r\\t\\x1b[31m\\\\\\x7f\\xc3\\xa9");
  const std::string huge(100000, 'x');
  const std::string cut = EscapeLogText(huge);
  EXPECT_EQ(cut, std::string(kMaxLogBodyBytes, 'x') + "...[100000 bytes]");
}

// Per-item answers echo a valid id whole (the caller matches on it) but never more than 64 bytes
// of an oversized one; messages quote at most 64 escaped bytes.
TEST(EchoTest, IdsAndQuotesAreBounded) {
  EXPECT_EQ(EchoId("req-1"), "req-1");
  const std::string valid(128, 'v');
  EXPECT_EQ(EchoId(valid), valid);
  const std::string huge(5 * 1024 * 1024, 'h');
  EXPECT_EQ(EchoId(huge), std::string(64, 'h'));
  EXPECT_EQ(QuoteCallerText("short\n"), "short\\n");
  EXPECT_EQ(QuoteCallerText(huge), std::string(64, 'h') + "... (5242880 bytes)");
}

// The reserved ports lie below the kernel's ephemeral range (where outgoing connections take
// theirs) and can be bound by the process they are meant for.
TEST(LoopbackPortTest, BelowTheEphemeralRangeAndBindable) {
  std::ifstream range("/proc/sys/net/ipv4/ip_local_port_range");
  int low = 32768, high = 60999;
  range >> low >> high;
  for (int i = 0; i < 20; ++i) {
    const int port = ReserveLoopbackPort();
    ASSERT_GT(port, 0);
    if (low - 1 - 16384 >= 1024) {
      EXPECT_GE(port, 16384);
      EXPECT_LT(port, low);
    }
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << "port " << port;
    close(fd);
  }
}

}  // namespace
}  // namespace anchord

namespace anchord {
namespace {

// The calling thread's name as the kernel holds it (/proc/self/task/TID/comm, without the newline).
std::string OwnThreadName() {
  std::ifstream in(absl::StrCat("/proc/self/task/", gettid(), "/comm"));
  std::string name;
  std::getline(in, name);
  return name;
}

TEST(ThreadNameTest, NamesTheCallingThreadCutToFifteenBytes) {
  std::string short_name, long_name;
  std::thread t([&] {
    NameThisThread("handoff");
    short_name = OwnThreadName();
    NameThisThread("a-thread-name-longer-than-fifteen");
    long_name = OwnThreadName();
  });
  t.join();
  EXPECT_EQ(short_name, "handoff");
  EXPECT_EQ(long_name, "a-thread-name-l");
  EXPECT_NE(OwnThreadName(), "handoff");  // only the thread that asked
}

TEST(ThreadNameTest, StartNamedThreadRunsItsBodyUnderTheName) {
  std::string seen;
  std::string name = "batcher";
  std::thread t = StartNamedThread(name, [&seen] { seen = OwnThreadName(); });
  name = "changed";  // the thread keeps its own copy of the name
  t.join();
  EXPECT_EQ(seen, "batcher");
}

TEST(ThreadNameTest, WorkerPoolThreadsCarryThePoolsName) {
  absl::Mutex mu;
  std::vector<std::string> names;
  {
    WorkerPool pool(2, 16, "store-pool");
    for (int i = 0; i < 4; ++i) {
      ASSERT_TRUE(pool.Post([&] {
        absl::MutexLock lock(&mu);
        names.push_back(OwnThreadName());
      }));
    }
  }  // the pool runs what is queued before its threads end
  ASSERT_EQ(names.size(), 4u);
  for (const std::string& n : names) EXPECT_EQ(n, "store-pool");
}

}  // namespace
}  // namespace anchord
