// The bundle ZIP reader (libs/bundle) on hostile archives, and `anchorctl verify-bundle` on the
// same: `../` and absolute names, symlinks, a 10 GB declared size, duplicate names, truncations.
// Every one gets a clear error naming the entry; nothing is written anywhere; nothing crashes.
#include "libs/bundle/zip.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "services/anchorctl/bundle.h"
#include "tests/bundle/zip_builder.h"
#include "tests/testing/temp_dir.h"

namespace anchord::bundle {
namespace {

namespace fs = std::filesystem;
using testing::BuildZip;
using testing::RawEntry;

std::set<std::string> Listing(const fs::path& dir) {
  std::set<std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    out.insert(it->path().string());
  }
  return out;
}

void WriteFile(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

TEST(ZipTest, HandBuiltArchiveIsReadBack) {
  auto entries = ReadZipMemory(BuildZip({{"a.txt", "hello"}, {"dir/b.txt", "world"}}));
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 2u);
  EXPECT_EQ((*entries)[1].name, "dir/b.txt");
  EXPECT_EQ((*entries)[1].data, "world");
}

TEST(ZipTest, WrittenArchiveIsReadBackAndListedByUnzip) {
  anchord::testing::TempDir dir("zip_rw");
  const std::string path = dir.File("x.zip");
  std::vector<ZipEntry> in = {{"MANIFEST.sha256", "abc"},
                              {"proofs/a b.txt.ots", std::string(3000, 'z')}};
  ASSERT_TRUE(WriteZipFile(path, in, absl::Now()).ok());
  auto back = ReadZipFile(path);
  ASSERT_TRUE(back.ok()) << back.status();
  ASSERT_EQ(back->size(), 2u);
  EXPECT_EQ((*back)[1].data, in[1].data);
  EXPECT_EQ(std::system(absl::StrCat("unzip -tq ", path, " >/dev/null").c_str()), 0);
  EXPECT_FALSE(WriteZipFile(dir.File("y.zip"), {{"../evil", "x"}}, absl::Now()).ok());
  EXPECT_FALSE(fs::exists(dir.File("y.zip")));
}

struct Hostile {
  const char* what;
  std::vector<RawEntry> entries;
  const char* expect;  // in the message
};

std::vector<Hostile> HostileArchives() {
  return {
      {"dotdot", {{"MANIFEST.sha256", ""}, {"proofs/../../evil.txt", "pwned"}}, "\"..\""},
      {"dotdot_first", {{"../evil.txt", "pwned"}}, "\"..\""},
      {"absolute", {{"/tmp/anchord_evil_abs.txt", "pwned"}}, "absolute path"},
      {"symlink", {{"link", "/etc/passwd", UINT64_MAX, 0120777}}, "symbolic link"},
      {"ten_gb", {{"proofs/huge.ots", "tiny", 10ull << 30}}, "declares"},
      {"duplicate", {{"MANIFEST.sha256", "a"}, {"MANIFEST.sha256", "b"}}, "appears twice"},
      // libarchive turns a Windows archiver's backslashes into slashes: refused as "..".
      {"backslash", {{"proofs\\..\\evil", "x"}}, "\"..\""},
  };
}

TEST(ZipTest, HostileArchivesAreRefusedNamingTheEntry) {
  for (const Hostile& h : HostileArchives()) {
    auto r = ReadZipMemory(BuildZip(h.entries));
    ASSERT_FALSE(r.ok()) << h.what;
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << h.what << ": " << r.status();
    EXPECT_NE(r.status().message().find(h.expect), std::string::npos)
        << h.what << ": " << r.status();
  }
}

TEST(ZipTest, LimitsOnCountAndTotalAndEntrySize) {
  std::vector<RawEntry> many;
  for (int i = 0; i < 20; ++i) many.push_back({absl::StrCat("f", i), std::string(100, 'x')});
  ZipLimits l;
  l.max_entries = 10;
  auto r = ReadZipMemory(BuildZip(many), l);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("more than 10 entries"), std::string::npos) << r.status();
  l = {};
  l.max_total_bytes = 1000;
  r = ReadZipMemory(BuildZip(many), l);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("in all"), std::string::npos) << r.status();
  l = {};
  l.max_entry_bytes = 50;
  r = ReadZipMemory(BuildZip(many), l);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("f0"), std::string::npos) << r.status();
}

TEST(ZipTest, TruncationsAndFlipsNeverCrash) {
  const std::string zip =
      BuildZip({{"MANIFEST.sha256", "abc  def\n"}, {"proofs/x.ots", std::string(200, 'q')}});
  for (size_t n = 0; n < zip.size(); ++n) (void)ReadZipMemory(zip.substr(0, n));
  for (size_t i = 0; i < zip.size(); ++i) {
    std::string f = zip;
    f[i] ^= 0xff;
    (void)ReadZipMemory(f);
  }
  EXPECT_FALSE(ReadZipMemory("").ok());
  EXPECT_FALSE(ReadZipMemory("PK\x03\x04 garbage").ok());
}

// verify-bundle on each hostile archive: exit 2 naming the entry, and no file appears anywhere
// under the directory holding the bundle (it never extracts).
TEST(VerifyBundleHostileTest, MalformedBundlesExitTwoAndWriteNothing) {
  anchord::testing::TempDir dir("vb_hostile");
  fs::create_directories(fs::path(dir.path()) / "inner");
  for (const Hostile& h : HostileArchives()) {
    const std::string zip =
        (fs::path(dir.path()) / "inner" / (std::string(h.what) + ".zip")).string();
    WriteFile(zip, BuildZip(h.entries));
    const auto before = Listing(dir.path());
    std::ostringstream out, err;
    int rc = anchorctl::RunVerifyBundle(zip, "", false, out, err);
    EXPECT_EQ(rc, anchorctl::kBundleExitMalformed) << h.what << ": " << err.str() << out.str();
    EXPECT_NE(err.str().find(h.expect), std::string::npos) << h.what << ": " << err.str();
    EXPECT_EQ(Listing(dir.path()), before) << h.what;
  }
  EXPECT_FALSE(fs::exists("/tmp/anchord_evil_abs.txt"));
  EXPECT_FALSE(fs::exists(fs::path(dir.path()) / "evil.txt"));
  // Structurally fine archives that are not bundles name what is missing or wrong.
  struct Case {
    std::vector<RawEntry> entries;
    const char* expect;
  } cases[] = {
      {{{"report.csv", "x"}}, "MANIFEST.sha256 is missing"},
      {{{"MANIFEST.sha256", "zz  a\n"}, {"bundle.json", "{}"}}, "MANIFEST.sha256 line 1"},
      {{{"MANIFEST.sha256", std::string(64, 'a') + "  ../x\n"}, {"bundle.json", "{}"}},
       "MANIFEST.sha256 line 1"},
      {{{"MANIFEST.sha256", std::string(64, 'a') + "  x\n"}, {"bundle.json", "[1]"}},
       "bundle.json"},
      {{{"MANIFEST.sha256", std::string(64, 'a') + "  x\n"},
        {"bundle.json",
         R"({"format":"anchord-bundle","version":1,"network":"regtest","proofs":[{"entry":"proofs/x.a.ots","path":"x"}]})"}},
       "proofs/x.a.ots is listed in bundle.json but missing"},
      {{{"MANIFEST.sha256", std::string(64, 'a') + "  x\n"},
        {"bundle.json",
         R"({"format":"anchord-bundle","version":1,"network":"regtest","proofs":[]})"},
        {"proofs/smuggled.ots", "x"}},
       "proofs/smuggled.ots is not listed"},
      {{{"MANIFEST.sha256", std::string(64, 'a') + "  x\n"},
        {"bundle.json",
         R"({"format":"anchord-bundle","version":1,"network":"regtest","proofs":[]})"},
        {"headers/12.hdr", "short"}},
       "headers/12.hdr"},
  };
  int i = 0;
  for (const Case& c : cases) {
    const std::string zip = dir.File(absl::StrCat("case", i++, ".zip"));
    WriteFile(zip, BuildZip(c.entries));
    std::ostringstream out, err;
    EXPECT_EQ(anchorctl::RunVerifyBundle(zip, "", false, out, err), anchorctl::kBundleExitMalformed)
        << c.expect << ": " << err.str() << out.str();
    EXPECT_NE(err.str().find(c.expect), std::string::npos) << err.str();
  }
  // A file in the manifest without any proof: pending (4).
  const std::string pending = dir.File("pending.zip");
  WriteFile(
      pending,
      BuildZip({{"MANIFEST.sha256", std::string(64, 'a') + "  x\n"},
                {"bundle.json",
                 R"({"format":"anchord-bundle","version":1,"network":"regtest","proofs":[]})"}}));
  std::ostringstream out, err;
  EXPECT_EQ(anchorctl::RunVerifyBundle(pending, "", false, out, err), anchorctl::kBundleExitPending)
      << out.str() << err.str();
  EXPECT_NE(out.str().find("x: no proof yet"), std::string::npos) << out.str();
}

}  // namespace
}  // namespace anchord::bundle
