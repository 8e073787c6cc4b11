// Unit tests of anchorctl's pure parts, its child-process handling and the exit codes of the
// binary for bad input and an unreachable stack (no services needed).
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "services/anchorctl/command_common.h"
#include "services/anchorctl/dry_run_lines.h"
#include "services/anchorctl/format.h"
#include "services/anchorctl/process.h"
#include "services/anchorctl/stack.h"

namespace anchord::anchorctl {
namespace {
namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "anchorctl_test_XXXXXX").string();
    char* p = mkdtemp(tmpl.data());
    if (p != nullptr) path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

anchord::v1::HashTreeResponse Hashed(const std::string& path, char byte) {
  anchord::v1::HashTreeResponse r;
  r.set_path(path);
  r.set_digest(std::string(32, byte));
  return r;
}

anchord::v1::HashTreeResponse Unreadable(const std::string& path, const std::string& message) {
  anchord::v1::HashTreeResponse r;
  r.set_path(path);
  r.mutable_status()->set_code(7);
  r.mutable_status()->set_reason("FILE_UNREADABLE");
  r.mutable_status()->set_message(message);
  return r;
}

std::string LineOf(const anchord::v1::HashTreeResponse& r) {
  std::string out;
  AppendDryRunLine(r, &out);
  return out;
}

TEST(DryRunLinesTest, AHashedFileIsASha256sumLine) {
  EXPECT_EQ(LineOf(Hashed("tree/a b.txt", '\x01')),
            "0101010101010101010101010101010101010101010101010101010101010101  tree/a b.txt\n");
}

TEST(DryRunLinesTest, AFileThatWasNotHashedSaysWhy) {
  EXPECT_EQ(LineOf(Unreadable("tree/locked.txt", "tree/locked.txt: Permission denied")),
            "-  tree/locked.txt  FILE_UNREADABLE: tree/locked.txt: Permission denied\n");
}

// A name chosen by whoever can write to the tree must not put a line of its own in the output: as
// GNU sha256sum does, such a line starts with a backslash and the name is escaped.
TEST(DryRunLinesTest, NewlinesBackslashesAndCarriageReturnsAreEscaped) {
  const std::string forged =
      "x\n0000000000000000000000000000000000000000000000000000000000000000  tree/forged.txt";
  const std::string line = LineOf(Hashed(forged, '\xff'));
  EXPECT_EQ(std::count(line.begin(), line.end(), '\n'), 1) << line;
  EXPECT_EQ(line, "\\" + std::string(64, 'f') +
                      "  x\\n0000000000000000000000000000000000000000000000000000000000000000  "
                      "tree/forged.txt\n");
  EXPECT_EQ(LineOf(Hashed("a\\b\rc", '\0')), "\\" + std::string(64, '0') + "  a\\\\b\\rc\n");
  EXPECT_EQ(LineOf(Unreadable("tree/plain.txt", "first\nsecond")),
            "\\-  tree/plain.txt  FILE_UNREADABLE: first\\nsecond\n");
}

TEST(FormatTest, StateNames) {
  EXPECT_EQ(StateName(anchord::v1::DIGEST_STATE_CONFIRMED), "CONFIRMED");
  EXPECT_EQ(StateName(anchord::v1::DIGEST_STATE_QUEUED), "QUEUED");
  EXPECT_EQ(StateName(0), "UNKNOWN");
  EXPECT_EQ(StateName(99), "UNKNOWN");
  EXPECT_EQ(StateName(-3), "UNKNOWN");
}

TEST(FormatTest, WaitTargets) {
  EXPECT_EQ(*ParseWaitTarget("none"), 0);
  EXPECT_EQ(*ParseWaitTarget("queued"), anchord::v1::DIGEST_STATE_QUEUED);
  EXPECT_EQ(*ParseWaitTarget("submitted"), anchord::v1::DIGEST_STATE_PENDING);
  EXPECT_EQ(*ParseWaitTarget("CONFIRMED"), anchord::v1::DIGEST_STATE_CONFIRMED);
  auto bad = ParseWaitTarget("forever");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("--wait"), absl::string_view::npos);
}

TEST(FormatTest, DigestArgument) {
  const std::string hex(64, 'a');
  auto ok = ParseDigestArg(hex);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->hex(), hex);
  EXPECT_EQ(ok->array()[0], 0xaa);
  for (const std::string& bad : {std::string(63, 'a'), std::string(65, 'a'), std::string(64, 'g'),
                                 std::string(""), std::string(62, 'a') + "\n1"}) {
    auto r = ParseDigestArg(bad, "DIGEST");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("DIGEST"), absl::string_view::npos);
  }
}

TEST(FormatTest, RelativeToRoot) {
  EXPECT_EQ(*RelativeToRoot("/data/ev", "/data/ev"), ".");
  EXPECT_EQ(*RelativeToRoot("/data/ev/", "/data/ev"), ".");
  EXPECT_EQ(*RelativeToRoot("/data/ev/a/b", "/data/ev/"), "a/b");
  EXPECT_FALSE(RelativeToRoot("/data/evil", "/data/ev").ok());
  EXPECT_FALSE(RelativeToRoot("/data", "/data/ev").ok());
  EXPECT_FALSE(RelativeToRoot("/other", "/data/ev").ok());
  EXPECT_FALSE(RelativeToRoot("rel", "/data/ev").ok());
}

TEST(FormatTest, MergeKeepsFurthestState) {
  using namespace anchord::v1;
  // 10 digests: the hasher sees all queued; the submitter has 6 submitted, 4 queued; the poller
  // has 3 pending, 2 confirmed, 1 failed (those 6 are the submitted ones).
  std::map<int, int64_t> hasher{{DIGEST_STATE_QUEUED, 10}};
  std::map<int, int64_t> submitter{{DIGEST_STATE_QUEUED, 4}, {DIGEST_STATE_SUBMITTED, 6}};
  std::map<int, int64_t> poller{
      {DIGEST_STATE_PENDING, 3}, {DIGEST_STATE_CONFIRMED, 2}, {DIGEST_STATE_FAILED, 1}};
  auto m = MergeStateCounts({hasher, submitter, poller});
  EXPECT_EQ(m[DIGEST_STATE_QUEUED], 4);
  EXPECT_EQ(m[DIGEST_STATE_SUBMITTED], 0);
  EXPECT_EQ(m[DIGEST_STATE_PENDING], 3);
  EXPECT_EQ(m[DIGEST_STATE_CONFIRMED], 2);
  EXPECT_EQ(m[DIGEST_STATE_FAILED], 1);
  int64_t total = 0;
  for (auto& [s, n] : m) total += n;
  EXPECT_EQ(total, 10);
  EXPECT_TRUE(MergeStateCounts({}).empty());
}

TEST(FormatTest, CountsFromSummarySkipsUnknownKeys) {
  google::protobuf::Map<std::string, int64_t> m;
  m["DIGEST_STATE_QUEUED"] = 3;
  m["BOGUS"] = 7;
  m["DIGEST_STATE_UNSPECIFIED"] = 1;
  auto c = CountsFromSummary(m);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[anchord::v1::DIGEST_STATE_QUEUED], 3);
}

TEST(FormatTest, CsvQuoting) {
  EXPECT_EQ(CsvField("plain"), "plain");
  EXPECT_EQ(CsvField("a,b"), "\"a,b\"");
  EXPECT_EQ(CsvField("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(CsvField("line\nbreak"), "\"line\nbreak\"");
  EXPECT_EQ(CsvField(" padded"), "\" padded\"");
  EXPECT_EQ(CsvField(""), "");
}

TEST(FormatTest, ReportCsvAndJson) {
  ReportRow r;
  r.path = "dir, with comma/file \"x\".pdf";
  r.digest_hex = std::string(64, '0');
  r.size_bytes = 42;
  r.provider = "proofd";
  r.proof_id = "id-1";
  r.status = "CONFIRMED";
  r.bitcoin_block_height = 800000;
  r.verification = "VERIFIED block 800000";
  ReportRow bad;
  bad.path = std::string("bad\xff") + "utf8";
  bad.status = "FAILED";
  bad.reason = "FILE_UNREADABLE";
  std::string csv = ReportToCsv({r, bad});
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "path,digest,size_bytes,provider,proof_id,status,certificate_url,verify_url,"
            "bitcoin_block_height,duplicate_of,reason,error,merkle_root,stalled,verification");
  EXPECT_NE(csv.find("\"dir, with comma/file \"\"x\"\".pdf\"," + std::string(64, '0') +
                     ",42,proofd,id-1,CONFIRMED,,,800000,,,,,,VERIFIED block 800000"),
            std::string::npos);
  std::string json = ReportToJson({r, bad});
  auto j = nlohmann::json::parse(json, nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["path"], r.path);
  EXPECT_EQ(j[0]["bitcoin_block_height"], 800000);
  EXPECT_EQ(j[1]["reason"], "FILE_UNREADABLE");
  EXPECT_EQ(j[0]["verification"], "VERIFIED block 800000");
  EXPECT_EQ(j[0]["stalled"], false);
}

// `report` writes a page of rows at a time: the text must be what one write of every row gives,
// and the JSON exactly what nlohmann dumps for the whole array (as the command wrote before).
TEST(FormatTest, AReportWrittenInPagesIsTheReportWrittenAtOnce) {
  std::vector<ReportRow> rows;
  for (int i = 0; i < 5; ++i) {
    ReportRow r;
    r.path = absl::StrCat("tree/f", i, i == 3 ? ", \"quoted\"\nline" : "", ".txt");
    r.digest_hex = std::string(64, static_cast<char>('a' + i));
    r.size_bytes = 100 + i;
    r.provider = i % 2 == 0 ? "proofd" : "";
    r.status = i == 4 ? "FAILED" : "PENDING";
    r.stalled = i == 2;
    r.verification = i == 1 ? std::string("bad\xff utf8") : "";
    rows.push_back(r);
  }
  // nlohmann's own dump of the whole array, as the command wrote it before it wrote in pages.
  const std::string json = ReportToJson(rows);
  const nlohmann::json parsed = nlohmann::json::parse(json, nullptr, false);
  ASSERT_TRUE(parsed.is_array());
  ASSERT_EQ(parsed.size(), rows.size());
  EXPECT_EQ(json, parsed.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  EXPECT_EQ(ReportToJson({}), "[]\n");
  EXPECT_EQ(ReportToCsv({}).find('\n'), ReportToCsv({}).size() - 1);  // the header alone

  for (auto format : {ReportWriter::Format::kCsv, ReportWriter::Format::kJson}) {
    const std::string whole =
        format == ReportWriter::Format::kCsv ? ReportToCsv(rows) : ReportToJson(rows);
    ReportWriter w(format);
    std::string paged = w.Rows({rows[0], rows[1]});
    paged += w.Rows({});
    paged += w.Rows({rows[2]});
    paged += w.Rows({rows[3], rows[4]});
    paged += w.End();
    EXPECT_EQ(paged, whole);
    ReportWriter none(format);
    std::string empty = none.Rows({});
    empty += none.End();
    EXPECT_EQ(empty, format == ReportWriter::Format::kCsv ? ReportToCsv({}) : ReportToJson({}));
  }
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A report written page by page must not leave half a file where a whole one was: the text goes
// to a temporary file that only Commit renames into place.
TEST(OutputFileTest, AFileAppearsWholeOrNotAtAll) {
  TempDir dir;
  const std::string path = dir.path() + "/report.csv";
  { std::ofstream(path) << "the older report\n"; }
  {
    auto out = OutputFile::Open(path);
    ASSERT_TRUE(out.ok()) << out.status();
    ASSERT_TRUE((*out)->Write("half of a new ").ok());
    EXPECT_EQ(ReadAll(path), "the older report\n");
  }  // never committed: a failed or interrupted command
  EXPECT_EQ(ReadAll(path), "the older report\n");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 1);

  auto out = OutputFile::Open(path);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_FALSE((*out)->is_stdout());
  ASSERT_TRUE((*out)->Write("the new ").ok());
  ASSERT_TRUE((*out)->Write("report\n").ok());
  ASSERT_TRUE((*out)->Commit().ok());
  EXPECT_EQ(ReadAll(path), "the new report\n");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 1);

  auto bad = OutputFile::Open(dir.path() + "/no/such/dir/report.csv");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("no/such/dir/report.csv"), std::string::npos)
      << bad.status();
  auto std_out = OutputFile::Open("-");
  ASSERT_TRUE(std_out.ok());
  EXPECT_TRUE((*std_out)->is_stdout());
}

TEST(FormatTest, ProgressLineShowsCountsRateAndEta) {
  ProgressCounts c;
  c.files_seen = 50;
  c.files_total = 100;
  c.walk_complete = true;
  c.hashed = 48;
  c.duplicates = 5;
  c.queued = 40;
  c.problems = 2;
  std::string line = ProgressLine(c, absl::Seconds(10));
  EXPECT_NE(line.find("hashing 50/100"), std::string::npos) << line;
  EXPECT_NE(line.find("dup 5"), std::string::npos) << line;
  EXPECT_NE(line.find("problems 2"), std::string::npos) << line;
  EXPECT_NE(line.find("5.0 files/s"), std::string::npos) << line;
  EXPECT_NE(line.find("ETA 0:10"), std::string::npos) << line;
  c.waiting = true;
  c.distinct = 40;
  c.wait_done = 0;
  c.paused = "MONTHLY_LIMIT_REACHED";
  line = ProgressLine(c, absl::ZeroDuration());
  EXPECT_NE(line.find("waiting 0/40"), std::string::npos) << line;
  EXPECT_NE(line.find("ETA --:--"), std::string::npos) << line;
  EXPECT_NE(line.find("PAUSED: MONTHLY_LIMIT_REACHED"), std::string::npos) << line;
}

TEST(StackTest, StackInfoRoundTrip) {
  StackInfo info;
  info.hasher = "127.0.0.1:1";
  info.submitter = "127.0.0.1:2";
  info.poller = "127.0.0.1:3";
  info.sandbox_url = "http://127.0.0.1:4";
  info.root = "/data";
  info.pids["hasher"] = 11;
  info.owner_pid = getpid();
  auto back = StackInfo::FromJson(info.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->hasher, info.hasher);
  EXPECT_EQ(back->poller, info.poller);
  EXPECT_EQ(back->sandbox_url, info.sandbox_url);
  EXPECT_EQ(back->pids["hasher"], 11);
  EXPECT_TRUE(back->Alive());
  for (const char* bad : {"", "[]", "{\"hasher\": 5}", "{}", "not json", "{\"pids\": 3}"}) {
    EXPECT_FALSE(StackInfo::FromJson(bad).ok()) << bad;
  }
}

TEST(StackTest, StaleStackFileIsRejected) {
  TempDir dir;
  StackInfo info;
  info.hasher = "127.0.0.1:1";
  // A pid that cannot be alive: a child we started and reaped.
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  waitpid(pid, nullptr, 0);
  info.owner_pid = pid;
  ASSERT_TRUE(WriteStackFile(dir.path(), info).ok());
  auto r = ReadStackFile(dir.path());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  info.owner_pid = getpid();
  ASSERT_TRUE(WriteStackFile(dir.path(), info).ok());
  ASSERT_TRUE(ReadStackFile(dir.path()).ok());
  TempDir empty;
  EXPECT_EQ(ReadStackFile(empty.path()).status().code(), absl::StatusCode::kNotFound);
}

TEST(StackTest, FindBinariesPrefersFlatThenBuildTree) {
  TempDir dir;
  fs::create_directories(fs::path(dir.path()) / "bin");
  fs::create_directories(fs::path(dir.path()) / "poller");
  auto touch_exec = [](const fs::path& p) {
    std::ofstream(p) << "#!/bin/sh\n";
    chmod(p.c_str(), 0755);
  };
  touch_exec(fs::path(dir.path()) / "bin" / "anchord-hasher");
  touch_exec(fs::path(dir.path()) / "poller" / "anchord-poller");
  auto b = FindBinaries((fs::path(dir.path()) / "bin").string(), /*with_sandbox=*/false);
  EXPECT_EQ(b.count("sandbox"), 0u);
  EXPECT_EQ(b["hasher"], (fs::path(dir.path()) / "bin" / "anchord-hasher").string());
  EXPECT_EQ(b["poller"], (fs::path(dir.path()) / "poller" / "anchord-poller").string());
  EXPECT_EQ(b["submitter"], (fs::path(dir.path()) / "bin" / "anchord-submitter").string());
}

TEST(ProcessTest, SpawnWaitPortAndStop) {
  TempDir dir;
  const std::string port_file = dir.path() + "/x.port";
  ChildSpec spec;
  spec.name = "fake";
  spec.binary = "/bin/sh";
  // Writes its "port" like a service, then runs until SIGTERM (sleep in a loop so the shell
  // handles the signal promptly).
  spec.args = {"-c", "echo started; echo $FAKE_PORT > " + port_file + ".tmp && mv " + port_file +
                         ".tmp " + port_file + "; while true; do sleep 0.1; done"};
  spec.env["FAKE_PORT"] = "4242";
  spec.log_file = dir.path() + "/x.log";
  auto child = ChildProcess::Spawn(spec);
  ASSERT_TRUE(child.ok()) << child.status();
  auto port = WaitForPortFile(port_file, child->get(), absl::Seconds(10));
  ASSERT_TRUE(port.ok()) << port.status();
  EXPECT_EQ(*port, 4242);
  EXPECT_TRUE((*child)->Running());
  (*child)->Stop(absl::Seconds(5));
  EXPECT_FALSE((*child)->Running());
  EXPECT_NE(TailOfFile(spec.log_file).find("started"), std::string::npos);
}

TEST(ProcessTest, ChildThatDiesIsReportedWithItsLog) {
  TempDir dir;
  ChildSpec spec;
  spec.name = "dying";
  spec.binary = "/bin/sh";
  spec.args = {"-c", "echo 'fatal: bad flag' >&2; exit 3"};
  spec.log_file = dir.path() + "/d.log";
  auto child = ChildProcess::Spawn(spec);
  ASSERT_TRUE(child.ok());
  auto port = WaitForPortFile(dir.path() + "/never.port", child->get(), absl::Seconds(10));
  ASSERT_FALSE(port.ok());
  EXPECT_NE(port.status().message().find("fatal: bad flag"), absl::string_view::npos)
      << port.status();
  EXPECT_NE(port.status().message().find("dying"), absl::string_view::npos);
}

TEST(ProcessTest, MissingBinaryIsAnError) {
  ChildSpec spec;
  spec.name = "ghost";
  spec.binary = "/nonexistent/anchord-ghost";
  auto child = ChildProcess::Spawn(spec);
  ASSERT_FALSE(child.ok());
  EXPECT_NE(child.status().message().find("/nonexistent/anchord-ghost"), absl::string_view::npos);
}

// Runs the anchorctl binary; returns its exit code and combined output.
struct RunResult {
  int exit_code = -1;
  std::string output;
};
RunResult RunAnchorctl(const std::vector<std::string>& args, const std::string& home) {
  ChildSpec spec;
  spec.name = "anchorctl";
  spec.binary = ANCHORCTL_BIN;
  spec.args = args;
  spec.env["ANCHORD_HOME"] = home;
  spec.env["ANCHORD_HASHER_ADDR"] = "";
  spec.env["ANCHORD_SUBMITTER_ADDR"] = "";
  spec.env["ANCHORD_POLLER_ADDR"] = "";
  spec.log_file = home + "/anchorctl.out";
  std::error_code ec;
  fs::remove(spec.log_file, ec);
  RunResult r;
  auto child = ChildProcess::Spawn(spec);
  if (!child.ok()) return r;
  if (!(*child)->WaitExit(absl::Seconds(30))) return r;
  int st = (*child)->raw_wait_status();
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.output = TailOfFile(spec.log_file, 10000);
  return r;
}

TEST(AnchorctlBinaryTest, BadDigestIsUsageErrorNamingTheArgument) {
  TempDir home;
  auto r = RunAnchorctl({"get", "xyz"}, home.path());
  EXPECT_EQ(r.exit_code, kExitUsage) << r.output;
  EXPECT_NE(r.output.find("DIGEST"), std::string::npos) << r.output;
  r = RunAnchorctl({"download", std::string(63, 'a')}, home.path());
  EXPECT_EQ(r.exit_code, kExitUsage) << r.output;
}

TEST(AnchorctlBinaryTest, UnknownFlagsAndValuesAreUsageErrors) {
  TempDir home;
  EXPECT_EQ(RunAnchorctl({"archive"}, home.path()).exit_code, kExitUsage);
  EXPECT_EQ(RunAnchorctl({"nonsense"}, home.path()).exit_code, kExitUsage);
  auto r = RunAnchorctl({"archive", home.path(), "--wait", "later"}, home.path());
  EXPECT_EQ(r.exit_code, kExitUsage) << r.output;
  EXPECT_NE(r.output.find("--wait"), std::string::npos) << r.output;
  r = RunAnchorctl({"report", "--format", "xml"}, home.path());
  EXPECT_EQ(r.exit_code, kExitUsage) << r.output;
  r = RunAnchorctl({"status", "--job", "bad job!"}, home.path());
  EXPECT_EQ(r.exit_code, kExitUsage) << r.output;
  EXPECT_EQ(RunAnchorctl({"--help"}, home.path()).exit_code, 0);
}

TEST(AnchorctlBinaryTest, UnreachableStackNamesServiceAndAddress) {
  TempDir home;
  // Port 1 on loopback: nothing listens there.
  auto r = RunAnchorctl({"--deadline-seconds", "1", "--hasher", "127.0.0.1:1", "--submitter",
                         "127.0.0.1:1", "--poller", "127.0.0.1:1", "status"},
                        home.path());
  EXPECT_EQ(r.exit_code, kExitInternal) << r.output;
  EXPECT_NE(r.output.find("hasher at 127.0.0.1:1"), std::string::npos) << r.output;
  // No flags and no stack file: the message says how to get a stack.
  r = RunAnchorctl({"--deadline-seconds", "1", "report"}, home.path());
  EXPECT_EQ(r.exit_code, kExitInternal) << r.output;
  EXPECT_NE(r.output.find("anchorctl local"), std::string::npos) << r.output;
}

TEST(AnchorctlBinaryTest, ArchiveOutsideKnownRootIsUsageError) {
  TempDir home;
  TempDir root;
  TempDir other;
  auto r = RunAnchorctl(
      {"--deadline-seconds", "1", "--hasher", "127.0.0.1:1", "--submitter", "127.0.0.1:1",
       "--poller", "127.0.0.1:1", "--hasher-root", root.path(), "archive", other.path()},
      home.path());
  EXPECT_EQ(r.exit_code, kExitUsage) << r.output;
  EXPECT_NE(r.output.find("not under the hasher's root"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace anchord::anchorctl
