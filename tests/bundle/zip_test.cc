// The bundle ZIP reader (libs/bundle) on hostile archives, and `anchorctl verify-bundle` on the
// same: `../` and absolute names, symlinks, a 10 GB declared size, duplicate names, truncations.
// Every one gets a clear error naming the entry; nothing is written anywhere; nothing crashes.
#include "libs/bundle/zip.h"

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "libs/common/hex.h"
#include "libs/digest/sha256.h"
#include "libs/ots/ots.h"
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

// Past the old all-in-memory reader's 200,000 entries and ZIP's 65,535 (the ZIP64 records): a
// quarter of a million entries written one at a time, walked back one at a time with only the
// wanted ones read, and listed whole by unzip.
TEST(ZipTest, AQuarterMillionEntriesAreWrittenAndWalkedOneAtATime) {
  anchord::testing::TempDir dir("zip_many");
  const std::string path = dir.File("many.zip");
  constexpr int kEntries = 250000;
  {
    auto w = ZipWriter::Create(path, absl::Now());
    ASSERT_TRUE(w.ok()) << w.status();
    for (int i = 0; i < kEntries; ++i) {
      ASSERT_TRUE(
          (*w)->Add(absl::StrCat("proofs/d", i / 1000, "/f", i, ".ots"), absl::StrCat(i)).ok());
    }
    EXPECT_FALSE((*w)->Add("proofs/d0/f7.ots", "again").ok());
    ASSERT_TRUE((*w)->Commit().ok());
  }
  ZipLimits limits;
  limits.max_entries = 1000000;
  size_t walked = 0, read = 0;
  int64_t sum = 0;
  absl::Status st = ForEachZipEntry(
      path, limits,
      [&](const std::string& name) {
        ++walked;
        return absl::EndsWith(name, "7.ots");
      },
      [&](const std::string& name, std::string data) {
        ++read;
        int64_t v = 0;
        if (!absl::SimpleAtoi(data, &v)) return absl::DataLossError(name);
        if (name != absl::StrCat("proofs/d", v / 1000, "/f", v, ".ots")) {
          return absl::DataLossError(absl::StrCat(name, " holds ", data));
        }
        sum += v;
        return absl::OkStatus();
      });
  ASSERT_TRUE(st.ok()) << st;
  EXPECT_EQ(walked, static_cast<size_t>(kEntries));
  EXPECT_EQ(read, static_cast<size_t>(kEntries / 10));
  int64_t want = 0;
  for (int i = 7; i < kEntries; i += 10) want += i;
  EXPECT_EQ(sum, want);
  // The all-in-memory reader keeps its bound; the walk keeps the one it is given.
  EXPECT_FALSE(ReadZipFile(path).ok());
  limits.max_entries = kEntries - 1;
  st = ForEachZipEntry(
      path, limits, [](const std::string&) { return false; },
      [](const std::string&, std::string) { return absl::OkStatus(); });
  EXPECT_NE(st.message().find("more than 249999 entries"), std::string::npos) << st;
  // An error from the caller ends the walk and comes back as it was.
  st = ForEachZipEntry(
      path, {.max_entries = 1000000}, [](const std::string&) { return true; },
      [](const std::string& name, std::string) { return absl::AbortedError("stop at " + name); });
  EXPECT_EQ(st, absl::AbortedError("stop at proofs/d0/f0.ots"));
  EXPECT_EQ(std::system(absl::StrCat("unzip -tq ", path, " >/dev/null").c_str()), 0);
  EXPECT_EQ(
      std::system(absl::StrCat("test \"$(unzip -Z1 ", path, " | wc -l)\" = ", kEntries).c_str()),
      0);
}

// A file is read through its central directory: one without it (local headers only, what a
// streaming reader would take, inflating every entry it skips) is refused, whole or walked.
TEST(ZipTest, AFileWithoutItsCentralDirectoryIsRefused) {
  anchord::testing::TempDir dir("zip_nocd");
  const std::string whole = BuildZip({{"MANIFEST.sha256", "m"}, {"report.csv", "r"}});
  const size_t cd = whole.find("PK\x01\x02");
  ASSERT_NE(cd, std::string::npos);
  WriteFile(dir.File("whole.zip"), whole);
  WriteFile(dir.File("local_only.zip"), whole.substr(0, cd));
  ASSERT_TRUE(ReadZipFile(dir.File("whole.zip")).ok());
  EXPECT_FALSE(ReadZipFile(dir.File("local_only.zip")).ok());
  int seen = 0;
  absl::Status st = ForEachZipEntry(
      dir.File("local_only.zip"), {}, [&](const std::string&) { return ++seen, false; },
      [](const std::string&, std::string) { return absl::OkStatus(); });
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(seen, 0);
  EXPECT_NE(st.message().find("local_only.zip"), std::string::npos) << st;
}

// A writer that is never committed leaves nothing behind: no bundle, no temporary file.
TEST(ZipTest, AnUncommittedWriterLeavesNothing) {
  anchord::testing::TempDir dir("zip_abandon");
  {
    auto w = ZipWriter::Create(dir.File("x.zip"), absl::Now());
    ASSERT_TRUE(w.ok()) << w.status();
    ASSERT_TRUE((*w)->Add("a", std::string(100000, 'a')).ok());
  }
  EXPECT_TRUE(fs::is_empty(dir.path()));
  EXPECT_FALSE(ZipWriter::Create(dir.File("no/such/dir/x.zip"), absl::Now()).ok());
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
      // An index longer than the archive (two entries, three proofs listed): refused while it is
      // read, not held.
      {{{"MANIFEST.sha256", std::string(64, 'a') + "  x\n"},
        {"bundle.json",
         R"({"format":"anchord-bundle","version":1,"network":"regtest","proofs":[)"
         R"({"entry":"proofs/x.a.ots","path":"x"},{"entry":"proofs/x.b.ots","path":"x"},)"
         R"({"entry":"proofs/x.c.ots","path":"x"}]})"}},
       "lists more proofs than the bundle's 2 entries"},
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

// A bundle of 210,000 files, more entries than the all-in-memory reader allowed, nearly all of them
// pending: verify-bundle checks it entry by entry and tells every file's state apart (one proof
// for the wrong digest, one file with no proof, the rest pending). Before, it refused the bundle
// ("more than 200000 entries"), and below that bound matched each file against every finding,
// a quadratic walk over the pending list.
TEST(VerifyBundleScaleTest, ABundleOfMoreThan200000ProofsIsVerifiedEntryByEntry) {
  anchord::testing::TempDir dir("vb_scale");
  const std::string path = dir.File("big.zip");
  constexpr int kFiles = 210000;
  constexpr int kWrong = 123456, kNone = 200001;
  auto digest_of = [](int i) {
    return anchord::digest::Sha256::Of(absl::StrCat("file ", i)).raw();
  };
  {
    auto w = ZipWriter::Create(path, absl::Now());
    ASSERT_TRUE(w.ok()) << w.status();
    std::string manifest, index;
    for (int i = 0; i < kFiles; ++i) {
      const std::string file = absl::StrCat("d", i / 1000, "/f", i);
      absl::StrAppend(&manifest, HexEncode(digest_of(i)), "  ", file, "\n");
      if (i == kNone) continue;
      ots::DetachedFile ots;
      ots.digest = digest_of(i == kWrong ? i + 1 : i);
      ots.timestamp = std::make_shared<ots::Timestamp>(ots.digest);
      ots.timestamp->AddAttestation(ots::Attestation::Pending("https://calendar.example"));
      auto bytes = ots::SerializeDetached(ots);
      ASSERT_TRUE(bytes.ok()) << bytes.status();
      const std::string entry = absl::StrCat("proofs/", file, ".ots.ots");
      ASSERT_TRUE((*w)->Add(entry, *bytes).ok());
      absl::StrAppend(&index, index.empty() ? "" : ",", R"({"entry":")", entry, R"(","path":")",
                      file, R"("})");
    }
    ASSERT_TRUE((*w)->Add("MANIFEST.sha256", manifest).ok());
    ASSERT_TRUE(
        (*w)->Add("bundle.json", absl::StrCat(R"({"format":"anchord-bundle","version":1,)",
                                              R"("network":"regtest","proofs":[)", index, "]}"))
            .ok());
    ASSERT_TRUE((*w)->Commit().ok());
  }
  std::ostringstream out, err;
  EXPECT_EQ(anchorctl::RunVerifyBundle(path, "", true, out, err), anchorctl::kBundleExitMismatch)
      << err.str();
  const nlohmann::json j = nlohmann::json::parse(out.str(), nullptr, false);
  ASSERT_TRUE(j.is_object()) << out.str().substr(0, 2000) << err.str();
  EXPECT_EQ(j["files"], kFiles);
  EXPECT_EQ(j["verified_proofs"], 0);
  ASSERT_EQ(j["mismatches"].size(), 1u);
  EXPECT_TRUE(absl::StartsWith(j["mismatches"][0].get<std::string>(),
                               absl::StrCat("d", kWrong / 1000, "/f", kWrong, ": ")))
      << j["mismatches"][0];
  ASSERT_EQ(j["pending"].size(), static_cast<size_t>(kFiles - 1));
  std::set<std::string> pending;
  for (const auto& p : j["pending"]) pending.insert(p.get<std::string>());
  EXPECT_EQ(pending.size(), static_cast<size_t>(kFiles - 1));
  EXPECT_TRUE(pending.count(absl::StrCat("d", kNone / 1000, "/f", kNone, ": no proof yet")));
  EXPECT_TRUE(
      pending.count("d7/f7777: proofs/d7/f7777.ots.ots: pending (no Bitcoin attestation yet)"));
}

}  // namespace
}  // namespace anchord::bundle
