// The sandbox in-process on 127.0.0.1:0, spoken to with cpp-httplib's client, checked against the
// proofd.id v1 document (docs/providers/proofd.md). Rate-limit and storm tests
// use a FakeClock, so no assertion depends on how fast the machine is.
#include "services/sandbox/sandbox.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "libs/common/hex.h"
#include "libs/ots/ots.h"
#include "tests/testing/wait.h"

namespace anchord::sandbox {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

constexpr char kKey[] = "proofd_live_sandbox";
constexpr char kKey2[] = "proofd_live_second";
constexpr char kPoorKey[] = "proofd_live_free_plan";

std::string HashN(int n) { return HexEncode(ots::Sha256(absl::StrCat("file-", n))); }

std::string Body(const std::string& hash, const std::string& filename = "msa-v3.pdf",
                 int64_t size = 248331) {
  return json{{"sha256_hash", hash},
              {"filename", filename},
              {"file_size_bytes", size},
              {"file_type", "application/pdf"}}
      .dump();
}

json Parse(const httplib::Result& res) {
  if (!res) return json();
  return json::parse(res->body, nullptr, false);
}

std::string Code(const httplib::Result& res) {
  json j = Parse(res);
  if (!j.is_object() || !j.contains("error") || !j["error"].is_object()) return "<no envelope>";
  return j["error"].value("code", "<no code>");
}

class SandboxTest : public ::testing::Test {
 protected:
  void Start(SandboxOptions opt) {
    opt.host = "127.0.0.1";
    opt.port = 0;
    if (opt.api_keys.size() == 1) opt.api_keys.push_back(kKey2);
    opt.not_entitled_keys = {kPoorKey};
    auto sb = Sandbox::Start(opt);
    ASSERT_TRUE(sb.ok()) << sb.status();
    sb_ = std::move(*sb);
    cli_ = std::make_unique<httplib::Client>("127.0.0.1", sb_->port());
    cli_->set_read_timeout(10, 0);
    cli_->set_connection_timeout(5, 0);
  }
  SandboxOptions FastOptions() {
    SandboxOptions opt;
    opt.clock = &clock_;
    opt.general_limit = 100000;
    opt.create_key_limit = 100000;
    opt.create_ip_limit = 100000;
    return opt;
  }
  httplib::Headers Auth(const std::string& key = kKey) {
    return {{"Authorization", "Bearer " + key}};
  }
  httplib::Result Create(const std::string& body, const std::string& idem = "",
                         const std::string& key = kKey) {
    httplib::Headers h = Auth(key);
    if (!idem.empty()) h.emplace("Idempotency-Key", idem);
    return cli_->Post("/api/v1/timestamps", h, body, "application/json");
  }
  httplib::Result Get(const std::string& path, const std::string& key = kKey) {
    return cli_->Get(path.c_str(), Auth(key));
  }

  FakeClock clock_;
  std::unique_ptr<Sandbox> sb_;
  std::unique_ptr<httplib::Client> cli_;
};

TEST_F(SandboxTest, AuthErrorsAndRequestIds) {
  Start(FastOptions());
  auto none = cli_->Get("/api/v1/timestamps");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(Code(none), "AUTHENTICATION_REQUIRED");
  const std::string rid = none->get_header_value("X-Request-Id");
  EXPECT_THAT(rid, ::testing::StartsWith("req_"));
  EXPECT_EQ(Parse(none)["error"]["request_id"], rid);
  EXPECT_TRUE(Parse(none)["error"]["message"].is_string());

  auto basic = cli_->Get("/api/v1/timestamps", {{"Authorization", "Basic abc"}});
  ASSERT_TRUE(basic);
  EXPECT_EQ(Code(basic), "AUTHENTICATION_REQUIRED");

  auto unknown = Get("/api/v1/timestamps", "proofd_live_nope");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 401);
  EXPECT_EQ(Code(unknown), "INVALID_API_KEY");
  EXPECT_NE(unknown->get_header_value("X-Request-Id"), rid);

  auto poor = Get("/api/v1/timestamps", kPoorKey);
  ASSERT_TRUE(poor);
  EXPECT_EQ(poor->status, 403);
  EXPECT_EQ(Code(poor), "PLAN_NOT_ENTITLED");

  auto ok = Get("/api/v1/timestamps");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  EXPECT_TRUE(ok->has_header("X-Request-Id"));
  EXPECT_TRUE(ok->has_header("X-RateLimit-Limit"));

  auto stats = cli_->Get("/_sandbox/stats");  // no auth needed
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->status, 200);
  EXPECT_TRUE(stats->has_header("X-Request-Id"));
}

TEST_F(SandboxTest, EveryValidationCode) {
  Start(FastOptions());
  const std::string h = HashN(1);
  struct Case {
    std::string body;
    std::string code;
  };
  const std::vector<Case> cases = {
      {"{not json", "INVALID_JSON"},
      {"[1,2]", "INVALID_JSON"},
      {json{{"sha256_hash", "abc"}, {"filename", "a"}, {"file_size_bytes", 1}}.dump(),
       "INVALID_SHA256_HASH"},
      {json{{"sha256_hash", std::string(64, 'g')}, {"filename", "a"}, {"file_size_bytes", 1}}
           .dump(),
       "INVALID_SHA256_HASH"},
      {json{{"sha256_hash", 5}, {"filename", "a"}, {"file_size_bytes", 1}}.dump(),
       "INVALID_SHA256_HASH"},
      {json{{"sha256_hash", h}, {"file_size_bytes", 1}}.dump(), "INVALID_FILENAME"},
      {json{{"sha256_hash", h}, {"filename", ""}, {"file_size_bytes", 1}}.dump(),
       "INVALID_FILENAME"},
      {json{{"sha256_hash", h}, {"filename", 7}, {"file_size_bytes", 1}}.dump(),
       "INVALID_FILENAME"},
      {json{{"sha256_hash", h}, {"filename", "a"}}.dump(), "INVALID_FILE_SIZE"},
      {json{{"sha256_hash", h}, {"filename", "a"}, {"file_size_bytes", 0}}.dump(),
       "INVALID_FILE_SIZE"},
      {json{{"sha256_hash", h}, {"filename", "a"}, {"file_size_bytes", -3}}.dump(),
       "INVALID_FILE_SIZE"},
      {json{{"sha256_hash", h}, {"filename", "a"}, {"file_size_bytes", 1.5}}.dump(),
       "INVALID_FILE_SIZE"},
      {json{{"sha256_hash", h}, {"filename", "a"}, {"file_size_bytes", "9"}}.dump(),
       "INVALID_FILE_SIZE"},
      {json{{"sha256_hash", h}, {"filename", "a"}, {"file_size_bytes", 9}, {"file_type", 3}}.dump(),
       "INVALID_FILE_TYPE"},
  };
  for (const auto& c : cases) {
    auto res = Create(c.body);
    ASSERT_TRUE(res) << c.body;
    EXPECT_EQ(res->status, 400) << c.body;
    EXPECT_EQ(Code(res), c.code) << c.body;
  }
  auto wrong_type = cli_->Post("/api/v1/timestamps", Auth(), Body(h), "text/plain");
  ASSERT_TRUE(wrong_type);
  EXPECT_EQ(Code(wrong_type), "INVALID_JSON");

  // An empty Idempotency-Key cannot be tested: cpp-httplib's server drops header lines with an
  // empty value, so the sandbox sees no key at all (and treats the create as un-keyed).
  auto long_key = Create(Body(h), std::string(201, 'k'));
  ASSERT_TRUE(long_key);
  EXPECT_EQ(Code(long_key), "INVALID_IDEMPOTENCY_KEY");
  auto max_key = Create(Body(HashN(1000)), std::string(200, 'k'));
  ASSERT_TRUE(max_key);
  EXPECT_EQ(max_key->status, 201);

  for (const auto& [path, code] : std::vector<std::pair<std::string, std::string>>{
           {"/api/v1/timestamps?status=done", "INVALID_STATUS"},
           {"/api/v1/timestamps?limit=0", "INVALID_LIMIT"},
           {"/api/v1/timestamps?limit=-1", "INVALID_LIMIT"},
           {"/api/v1/timestamps?limit=ten", "INVALID_LIMIT"},
           {"/api/v1/timestamps?before=yesterday", "INVALID_CURSOR"},
           {"/api/v1/timestamps/not-a-uuid", "INVALID_ID"},
           {"/api/v1/timestamps/not-a-uuid/ots", "INVALID_ID"},
           {"/api/v1/timestamps/7b4d95f8-91cb-4e1c-b7d6-1eb9f0de4e8d", "TIMESTAMP_NOT_FOUND"},
           {"/api/v1/nope", "NOT_FOUND"}}) {
    auto res = Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(Code(res), code) << path;
    EXPECT_EQ(res->status, code == "INVALID_STATUS" || code == "INVALID_LIMIT" ||
                                   code == "INVALID_CURSOR" || code == "INVALID_ID"
                               ? 400
                               : 404)
        << path;
  }
  EXPECT_EQ(sb_->Stats().creates_total, 1);
}

TEST_F(SandboxTest, CreateReturnsTheDocumentedResourceOwnerScoped) {
  Start(FastOptions());
  const std::string h = HashN(2);
  auto res = Create(Body(absl::AsciiStrToUpper(h)));
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 201) << res->body;
  json r = Parse(res);
  const std::string id = r["id"];
  EXPECT_THAT(id, ::testing::MatchesRegex(
                      "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"));
  EXPECT_THAT(r["certificate_id"].get<std::string>(), ::testing::MatchesRegex("TS-[0-9A-Z]{6}"));
  EXPECT_EQ(r["sha256_hash"], h);
  EXPECT_EQ(r["filename"], "msa-v3.pdf");
  EXPECT_EQ(r["file_size_bytes"], 248331);
  EXPECT_EQ(r["file_type"], "application/pdf");
  EXPECT_EQ(r["status"], "pending");
  EXPECT_TRUE(r["blockchain_tx"].is_null());
  EXPECT_TRUE(r["bitcoin_block"].is_null());
  EXPECT_TRUE(r["confirmed_at"].is_null());
  EXPECT_TRUE(r["thumbnail_url"].is_null());
  EXPECT_TRUE(r["branding_snapshot"].is_null());
  EXPECT_THAT(
      r["created_at"].get<std::string>(),
      ::testing::MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z"));
  EXPECT_EQ(r["certificate_url"],
            "https://proofd.id/cert/" + r["certificate_id"].get<std::string>());
  EXPECT_EQ(r["verify_url"], "https://proofd.id/verify/" + h);
  EXPECT_EQ(r["ots_url"], "/api/v1/timestamps/" + id + "/ots");

  auto got = Get("/api/v1/timestamps/" + id);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(Parse(got), r);
  auto other = Get("/api/v1/timestamps/" + id, kKey2);
  ASSERT_TRUE(other);
  EXPECT_EQ(Code(other), "TIMESTAMP_NOT_FOUND");
  auto ots = Get("/api/v1/timestamps/" + id + "/ots");
  ASSERT_TRUE(ots);
  EXPECT_EQ(ots->status, 404);
  EXPECT_EQ(Code(ots), "OTS_NOT_FOUND");
  auto list2 = Get("/api/v1/timestamps", kKey2);
  ASSERT_TRUE(list2);
  EXPECT_EQ(Parse(list2)["total_count"], 0);
}

TEST_F(SandboxTest, IdempotentReplayMismatchAndDuplicate) {
  Start(FastOptions());
  const std::string h = HashN(3);
  auto first = Create(Body(h), "job-1");
  ASSERT_TRUE(first);
  ASSERT_EQ(first->status, 201);
  auto replay = Create(Body(h), "job-1");
  ASSERT_TRUE(replay);
  EXPECT_EQ(replay->status, 201);
  EXPECT_EQ(replay->body, first->body);
  EXPECT_NE(replay->get_header_value("X-Request-Id"), first->get_header_value("X-Request-Id"));

  auto mismatch = Create(Body(h, "other-name.pdf"), "job-1");
  ASSERT_TRUE(mismatch);
  EXPECT_EQ(mismatch->status, 409);
  EXPECT_EQ(Code(mismatch), "IDEMPOTENCY_MISMATCH");

  auto dup = Create(Body(h), "job-2");
  ASSERT_TRUE(dup);
  EXPECT_EQ(dup->status, 409);
  EXPECT_EQ(Code(dup), "DUPLICATE_TIMESTAMP");
  EXPECT_FALSE(Parse(dup).contains("id"));
  auto dup_no_key = Create(Body(h));
  ASSERT_TRUE(dup_no_key);
  EXPECT_EQ(Code(dup_no_key), "DUPLICATE_TIMESTAMP");

  // Another account may stamp the same hash; the same key there is a different key space.
  auto other = Create(Body(h), "job-1", kKey2);
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 201);
  EXPECT_NE(Parse(other)["id"], Parse(first)["id"]);

  SandboxStats s = sb_->Stats();
  EXPECT_EQ(s.creates_total, 2);
  EXPECT_EQ(s.replays_total, 1);
  EXPECT_EQ(s.creates_by_digest[h], 2);
  EXPECT_EQ(s.max_creates_per_digest, 2);
  EXPECT_EQ(s.records_total, 2);

  auto stats = Parse(cli_->Get("/_sandbox/stats"));
  EXPECT_EQ(stats["creates_by_digest"][h], 2);
  EXPECT_EQ(stats["replays_total"], 1);
}

TEST_F(SandboxTest, ConcurrentRetryWithTheSameKeyNeverCreatesTwice) {
  SandboxOptions opt = FastOptions();
  opt.faults.latency_ms = 800;  // a create holds its reserved key this long
  Start(opt);
  std::optional<httplib::Result> first;
  std::thread t([&] {
    httplib::Client c("127.0.0.1", sb_->port());
    c.set_read_timeout(10, 0);
    httplib::Headers h = Auth();
    h.emplace("Idempotency-Key", "same");
    first = c.Post("/api/v1/timestamps", h, Body(HashN(9)), "application/json");
  });
  // The first create holds its key once proofd has admitted it: admission and the key's
  // reservation happen under the sandbox's lock, which Stats() takes too and which the create
  // releases only for its latency (or to answer).
  EXPECT_TRUE(anchord::testing::WaitUntil([&] { return sb_->Stats().proofd.requests_total >= 1; },
                                          absl::Seconds(10)));
  auto second = Create(Body(HashN(9)), "same");
  t.join();
  ASSERT_TRUE(first.has_value() && *first);
  ASSERT_TRUE(second);
  const httplib::Response& r1 = **first;
  EXPECT_EQ(r1.status, 201);
  // Normally the retry lands while the first holds the key (409 IDEMPOTENCY_IN_PROGRESS); on a
  // very slow machine it may land after, and must then be a replay. Never a second record.
  if (second->status == 409) {
    EXPECT_EQ(Code(second), "IDEMPOTENCY_IN_PROGRESS");
  } else {
    EXPECT_EQ(second->status, 201);
    EXPECT_EQ(second->body, r1.body);
  }
  EXPECT_EQ(sb_->Stats().creates_total, 1);
}

TEST_F(SandboxTest, MonthlyQuota) {
  SandboxOptions opt = FastOptions();
  opt.monthly_quota = 2;
  Start(opt);
  EXPECT_EQ(Create(Body(HashN(10)))->status, 201);
  EXPECT_EQ(Create(Body(HashN(11)))->status, 201);
  auto third = Create(Body(HashN(12)), "q-3");
  ASSERT_TRUE(third);
  EXPECT_EQ(third->status, 402);
  EXPECT_EQ(Code(third), "MONTHLY_LIMIT_REACHED");
  // The key was released: the same request is evaluated again, not replayed as an error.
  EXPECT_EQ(Code(Create(Body(HashN(12)), "q-3")), "MONTHLY_LIMIT_REACHED");
  EXPECT_EQ(Create(Body(HashN(12)), "", kKey2)->status, 201);  // quota is per account
}

TEST_F(SandboxTest, CreateRateLimitRetryAfterAndEarlyRequests) {
  SandboxOptions opt = FastOptions();
  opt.window = absl::Seconds(2);
  opt.create_key_limit = 3;
  Start(opt);
  for (int i = 0; i < 3; ++i) {
    auto res = Create(Body(HashN(20 + i)));
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 201);
    EXPECT_EQ(res->get_header_value("X-RateLimit-Limit"), "3");
    EXPECT_EQ(res->get_header_value("X-RateLimit-Remaining"), std::to_string(2 - i));
    EXPECT_EQ(res->get_header_value("X-RateLimit-Reset"), "2");
  }
  auto limited = Create(Body(HashN(23)));
  ASSERT_TRUE(limited);
  EXPECT_EQ(limited->status, 429);
  EXPECT_EQ(Code(limited), "RATE_LIMITED");
  EXPECT_EQ(limited->get_header_value("Retry-After"), "2");
  EXPECT_EQ(limited->get_header_value("X-RateLimit-Remaining"), "0");
  EXPECT_EQ(sb_->Stats().rate_limited_total, 1);
  EXPECT_EQ(sb_->Stats().early_requests_total, 0);

  // Retrying before Retry-After passed is early (and still limited: 429s consume no slot).
  clock_.Advance(absl::Milliseconds(1500));
  auto early = Create(Body(HashN(23)));
  ASSERT_TRUE(early);
  EXPECT_EQ(early->status, 429);
  EXPECT_EQ(early->get_header_value("Retry-After"), "1");  // ceil(0.5 s)
  EXPECT_EQ(sb_->Stats().early_requests_total, 1);
  EXPECT_EQ(sb_->Stats().rate_limited_total, 2);

  // Honouring the last Retry-After: not early, and the window has slid past the first creates.
  clock_.Advance(absl::Seconds(1));
  auto after = Create(Body(HashN(23)));
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 201);
  EXPECT_EQ(sb_->Stats().early_requests_total, 1);
  EXPECT_EQ(sb_->Stats().creates_total, 4);
}

TEST_F(SandboxTest, GeneralAndPerIpLimits) {
  SandboxOptions opt = FastOptions();
  opt.window = absl::Seconds(1);
  opt.general_limit = 4;
  opt.create_ip_limit = 2;
  Start(opt);
  EXPECT_EQ(Create(Body(HashN(30)), "", kKey)->status, 201);
  EXPECT_EQ(Create(Body(HashN(31)), "", kKey2)->status, 201);
  auto ip_limited = Create(Body(HashN(32)), "", kKey2);  // second key, same source IP
  ASSERT_TRUE(ip_limited);
  EXPECT_EQ(ip_limited->status, 429);
  EXPECT_EQ(ip_limited->get_header_value("X-RateLimit-Limit"), "2");
  // General bucket: kKey has used 1 of 4; three more reads pass, the fifth request is limited.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(Get("/api/v1/timestamps")->status, 200);
  auto general = Get("/api/v1/timestamps");
  ASSERT_TRUE(general);
  EXPECT_EQ(general->status, 429);
  EXPECT_EQ(general->get_header_value("X-RateLimit-Limit"), "4");
  EXPECT_EQ(general->get_header_value("Retry-After"), "1");
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(Get("/api/v1/timestamps")->status, 200);
  EXPECT_EQ(sb_->Stats().rate_limited_total, 2);
}

TEST_F(SandboxTest, CursorPaginationOverManyRecords) {
  Start(FastOptions());  // the fake clock stands still: every created_at is bumped by 1 ms
  std::set<std::string> created;
  for (int i = 0; i < 120; ++i) {
    auto res = Create(Body(HashN(100 + i)));
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 201);
    created.insert(Parse(res)["id"].get<std::string>());
  }
  std::set<std::string> seen;
  std::vector<int> page_sizes;
  std::string cursor;
  std::string prev_created = "9999";
  for (int page = 0; page < 10; ++page) {  // bounded: 3 pages expected
    std::string path = "/api/v1/timestamps?status=all&limit=50";
    if (!cursor.empty()) path += "&before=" + cursor;
    auto res = Get(path);
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 200) << res->body;
    json j = Parse(res);
    EXPECT_EQ(j["total_count"], 120);
    page_sizes.push_back(static_cast<int>(j["data"].size()));
    for (const auto& r : j["data"]) {
      EXPECT_TRUE(seen.insert(r["id"].get<std::string>()).second) << "duplicate " << r["id"];
      EXPECT_LT(r["created_at"].get<std::string>(), prev_created);  // newest first, strictly
      prev_created = r["created_at"];
    }
    if (j["next_cursor"].is_null()) break;
    cursor = j["next_cursor"];
    EXPECT_EQ(cursor, j["data"].back()["created_at"]);
  }
  EXPECT_EQ(page_sizes, (std::vector<int>{50, 50, 20}));
  EXPECT_EQ(seen, created);

  auto capped = Parse(Get("/api/v1/timestamps?limit=500"));
  EXPECT_EQ(capped["data"].size(), 50u);
  auto pending = Parse(Get("/api/v1/timestamps?status=pending&limit=5"));
  EXPECT_EQ(pending["total_count"], 120);
  EXPECT_EQ(pending["data"].size(), 5u);
  auto confirmed = Parse(Get("/api/v1/timestamps?status=confirmed"));
  EXPECT_EQ(confirmed["total_count"], 0);
  EXPECT_TRUE(confirmed["next_cursor"].is_null());
}

TEST_F(SandboxTest, PendingBecomesConfirmedAfterTheDelay) {
  SandboxOptions opt;  // real clock
  opt.confirm_after = absl::Milliseconds(300);
  opt.first_block_height = 777000;
  Start(opt);
  auto res = Create(Body(HashN(40)));
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 201);
  const std::string id = Parse(res)["id"];
  json r;
  // The background confirmer makes the block on the real clock, without a request asking.
  EXPECT_TRUE(anchord::testing::WaitUntil(
      [&] {
        r = Parse(Get("/api/v1/timestamps/" + id));
        return r.value("status", "") == "confirmed";
      },
      absl::Seconds(10), absl::Milliseconds(50)));
  ASSERT_EQ(r.value("status", ""), "confirmed");
  EXPECT_GE(r["bitcoin_block"].get<int64_t>(), 777000);
  EXPECT_TRUE(IsSha256Hex(r["blockchain_tx"].get<std::string>()));
  EXPECT_TRUE(r["confirmed_at"].is_string());
  EXPECT_EQ(sb_->Stats().confirmed_total, 1);
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs a command through the shell; returns its exit status and stdout.
int RunCommand(const std::string& cmd, std::string* out) {
  const std::string out_file = ::testing::TempDir() + "/cmd_out_" + std::to_string(::getpid());
  int rc = std::system((cmd + " > " + out_file + " 2>&1").c_str());
  *out = ReadAll(out_file);
  std::filesystem::remove(out_file);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

TEST_F(SandboxTest, OtsProofsAreAcceptedByTheReferenceLibrary) {
  std::string probe;
  ASSERT_EQ(RunCommand("/usr/bin/python3 -c 'import opentimestamps, bitcoin.core'", &probe), 0)
      << "/usr/bin/python3 cannot import opentimestamps (and python-bitcoinlib): install "
         "python3-opentimestamps; this test must not be skipped. Output: "
      << probe;

  SandboxOptions opt = FastOptions();
  opt.confirm_after = absl::Seconds(5);
  opt.first_block_height = 800000;
  Start(opt);
  // Three records confirmed together: their proofs share a merkle tree (odd leaf carried up).
  std::vector<std::pair<std::string, std::string>> recs;  // id, hash
  for (int i = 0; i < 3; ++i) {
    const std::string h = HashN(50 + i);
    auto res = Create(Body(h, i == 0 ? "msa \"v3\"/x.pdf" : absl::StrCat("doc", i, ".pdf")));
    ASSERT_TRUE(res);
    ASSERT_EQ(res->status, 201);
    recs.emplace_back(Parse(res)["id"], h);
  }
  clock_.Advance(absl::Seconds(5));

  const std::string dir = ::testing::TempDir() + "/sandbox_ots_" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  int64_t height = -1;
  std::string commitment;
  for (size_t i = 0; i < recs.size(); ++i) {
    const auto& [id, h] = recs[i];
    json r = Parse(Get("/api/v1/timestamps/" + id));
    ASSERT_EQ(r["status"], "confirmed");
    if (height < 0) height = r["bitcoin_block"];
    EXPECT_EQ(r["bitcoin_block"], height);  // one batch, one block

    auto ots1 = Get("/api/v1/timestamps/" + id + "/ots");
    ASSERT_TRUE(ots1);
    ASSERT_EQ(ots1->status, 200) << ots1->body;
    EXPECT_EQ(ots1->get_header_value("Content-Type"), "application/octet-stream");
    if (i == 0) {
      EXPECT_EQ(ots1->get_header_value("Content-Disposition"),
                "attachment; filename=\"msa__v3__x.pdf.ots\"");
    }
    auto ots2 = Get("/api/v1/timestamps/" + id + "/ots");
    ASSERT_TRUE(ots2);
    EXPECT_EQ(ots1->body, ots2->body);  // kept per record: identical downloads

    // Our own parser: canonical, the digest, a Bitcoin attestation at the record's height.
    auto file = ots::ParseDetached(ots1->body);
    ASSERT_TRUE(file.ok()) << file.status();
    EXPECT_EQ(HexEncode(file->digest), h);
    EXPECT_EQ(*ots::SerializeDetached(*file), ots1->body);
    auto atts = file->timestamp->AllAttestations();
    ASSERT_EQ(atts.size(), 1u);
    EXPECT_EQ(atts[0].second.kind, ots::Attestation::Kind::kBitcoin);
    EXPECT_EQ(static_cast<int64_t>(atts[0].second.height), height);
    if (commitment.empty()) commitment = atts[0].first;
    EXPECT_EQ(atts[0].first, commitment);  // the same merkle root for the whole batch

    const std::string path = absl::StrCat(dir, "/rec", i, ".ots");
    std::ofstream(path, std::ios::binary) << ots1->body;
    std::string out;
    int rc = RunCommand(absl::StrCat("/usr/bin/python3 ", ANCHORD_CHECK_OTS, " ", path,
                                     " --digest ", h, " --roots /nonexistent"),
                        &out);
    EXPECT_EQ(rc, 0) << out;
    std::string wrong;
    EXPECT_EQ(RunCommand(absl::StrCat("/usr/bin/python3 ", ANCHORD_CHECK_OTS, " ", path,
                                      " --digest ", HashN(999), " --roots /nonexistent"),
                         &wrong),
              2)
        << wrong;
  }

  // The fake block header carries the commitment as its merkle root and meets its own target;
  // the reference verify_against_blockheader() accepts it.
  auto header = cli_->Get(absl::StrCat("/_sandbox/blocks/", height, "/header").c_str());
  ASSERT_TRUE(header);
  ASSERT_EQ(header->status, 200);
  ASSERT_EQ(header->body.size(), 160u);
  auto raw = HexDecode(header->body);
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(raw->substr(36, 32), commitment);
  EXPECT_EQ(HexEncode(raw->substr(72, 4)), "ffff7f20");  // bits 0x207fffff, little-endian
  std::string hash = ots::Sha256(ots::Sha256(*raw));
  EXPECT_LE(static_cast<unsigned char>(hash[31]), 0x7f);  // most significant byte of the LE hash
  const std::string roots = dir + "/roots.json";
  std::ofstream(roots) << json{{std::to_string(height),
                                {{"header_hex", header->body}, {"status", "sandbox"}}}}
                              .dump();
  std::string out;
  EXPECT_EQ(
      RunCommand(absl::StrCat("/usr/bin/python3 ", ANCHORD_CHECK_OTS, " ", dir,
                              "/rec1.ots --strict --digest ", recs[1].second, " --roots ", roots),
                 &out),
      0)
      << out;
  EXPECT_THAT(out, HasSubstr("\"root_check\": \"match\""));
  auto missing = cli_->Get("/_sandbox/blocks/1/header");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  std::filesystem::remove_all(dir);
}

TEST_F(SandboxTest, ErrorFaultsAnswer5xxBeforeDoingAnything) {
  SandboxOptions opt = FastOptions();
  opt.faults.error_rate = 1.0;
  Start(opt);
  std::set<std::string> codes;
  for (int i = 0; i < 20; ++i) {
    auto res = Create(Body(HashN(60)));
    ASSERT_TRUE(res);
    EXPECT_TRUE(res->status == 500 || res->status == 502) << res->status;
    codes.insert(Code(res));
  }
  EXPECT_EQ(codes, (std::set<std::string>{"INTERNAL_ERROR", "OTS_PROVIDER_ERROR"}));
  auto unauth = cli_->Get("/api/v1/timestamps");  // before auth, too
  ASSERT_TRUE(unauth);
  EXPECT_EQ(unauth->status, 500);
  SandboxStats s = sb_->Stats();
  EXPECT_EQ(s.creates_total, 0);
  EXPECT_EQ(s.faults_injected_total, 21);

  auto set = cli_->Post("/_sandbox/faults", R"({"error_rate":0})", "application/json");
  ASSERT_TRUE(set);
  EXPECT_EQ(set->status, 200);
  EXPECT_EQ(Parse(set)["error_rate"], 0.0);
  EXPECT_EQ(Create(Body(HashN(60)))->status, 201);
  auto bad = cli_->Post("/_sandbox/faults", R"({"error_rate":"x"})", "application/json");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 400);
}

TEST_F(SandboxTest, DroppedCreateIsRecoveredByIdempotentRetry) {
  Start(FastOptions());
  Faults f;
  f.drop_rate = 1.0;
  sb_->SetFaults(f);
  auto dropped = Create(Body(HashN(70)), "drop-1");
  EXPECT_FALSE(dropped) << "expected a truncated response, got " << dropped->status << " "
                        << dropped->body;
  auto dropped_get = Get("/api/v1/timestamps");
  EXPECT_FALSE(dropped_get);
  sb_->SetFaults(Faults());
  SandboxStats s = sb_->Stats();
  EXPECT_EQ(s.creates_total, 1);  // created before the drop
  EXPECT_EQ(s.faults_injected_total, 2);
  auto retry = Create(Body(HashN(70)), "drop-1");
  ASSERT_TRUE(retry);
  EXPECT_EQ(retry->status, 201);
  EXPECT_EQ(sb_->Stats().replays_total, 1);
  EXPECT_EQ(sb_->Stats().creates_total, 1);
  EXPECT_EQ(sb_->Stats().max_creates_per_digest, 1);
}

TEST_F(SandboxTest, StormAnswers429AndCountsEarlyRetries) {
  Start(FastOptions());
  auto set = cli_->Post("/_sandbox/faults", R"({"storm_seconds":3})", "application/json");
  ASSERT_TRUE(set);
  EXPECT_EQ(Parse(set)["storm_seconds"], 3.0);
  auto a = Get("/api/v1/timestamps");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->status, 429);
  EXPECT_EQ(Code(a), "RATE_LIMITED");
  EXPECT_EQ(a->get_header_value("Retry-After"), "1");
  auto b = Get("/api/v1/timestamps");  // immediately: early
  ASSERT_TRUE(b);
  EXPECT_EQ(b->status, 429);
  clock_.Advance(absl::Seconds(1));
  auto c = Get("/api/v1/timestamps");  // honoured Retry-After: not early, storm still on
  ASSERT_TRUE(c);
  EXPECT_EQ(c->status, 429);
  clock_.Advance(absl::Seconds(3));
  auto d = Get("/api/v1/timestamps");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->status, 200);
  SandboxStats s = sb_->Stats();
  EXPECT_EQ(s.rate_limited_total, 3);
  EXPECT_EQ(s.early_requests_total, 1);
  EXPECT_EQ(s.faults_injected_total, 3);
}

TEST_F(SandboxTest, ADropped429SetsNoWait) {
  SandboxOptions opt = FastOptions();
  opt.window = absl::Seconds(10);
  opt.general_limit = 1;
  Start(opt);
  ASSERT_TRUE(Get("/api/v1/timestamps"));  // takes the only slot
  Faults f;
  f.drop_rate = 1.0;
  sb_->SetFaults(f);
  EXPECT_FALSE(Get("/api/v1/timestamps"));  // a 429, but its answer is cut off
  EXPECT_FALSE(Get("/api/v1/timestamps"));  // the client never saw a Retry-After: not early
  SandboxStats s = sb_->Stats();
  EXPECT_EQ(s.rate_limited_total, 2);
  EXPECT_EQ(s.early_requests_total, 0);
  sb_->SetFaults(Faults());
  auto seen = Get("/api/v1/timestamps");  // a 429 that arrives sets the wait
  ASSERT_TRUE(seen);
  EXPECT_EQ(seen->status, 429);
  ASSERT_TRUE(Get("/api/v1/timestamps"));
  EXPECT_EQ(sb_->Stats().early_requests_total, 1);
}

TEST_F(SandboxTest, EarlyRequestsAreJudgedPerClient) {
  SandboxOptions opt = FastOptions();
  opt.window = absl::Seconds(10);
  opt.general_limit = 1;
  Start(opt);
  auto as = [&](const std::string& agent) {
    httplib::Headers h = Auth();
    h.emplace("User-Agent", agent);
    return cli_->Get("/api/v1/timestamps", h);
  };
  ASSERT_TRUE(as("anchord-submitter/0.1"));
  auto told = as("anchord-submitter/0.1");
  ASSERT_TRUE(told);
  EXPECT_EQ(told->status, 429);
  // Another program with the same key was told nothing: limited, but not early.
  auto other = as("anchord-poller/0.1");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 429);
  EXPECT_EQ(sb_->Stats().early_requests_total, 0);
  // The program that was told to wait and did not: early.
  ASSERT_TRUE(as("anchord-submitter/0.1"));
  EXPECT_EQ(sb_->Stats().early_requests_total, 1);
}

TEST_F(SandboxTest, ResetClearsRecordsAndCounters) {
  Start(FastOptions());
  EXPECT_EQ(Create(Body(HashN(80)))->status, 201);
  auto reset = cli_->Post("/_sandbox/reset", "", "application/json");
  ASSERT_TRUE(reset);
  EXPECT_EQ(reset->status, 200);
  SandboxStats s = sb_->Stats();
  EXPECT_EQ(s.records_total, 0);
  EXPECT_EQ(s.creates_total, 0);
  EXPECT_EQ(Create(Body(HashN(80)))->status, 201);  // no longer a duplicate
}

TEST_F(SandboxTest, GarbageRequestsNeverCrash) {
  Start(FastOptions());
  std::mt19937 rng(7);
  for (int i = 0; i < 200; ++i) {
    std::string body(rng() % 64, '\0');
    for (auto& c : body) c = static_cast<char>(rng());
    if (i % 3 == 0) body = R"({"sha256_hash":")" + body + R"(","filename":")" + body + "\"}";
    auto res = Create(body, i % 2 ? std::string(1 + rng() % 5, 'k') : "");
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 400) << res->body;
    EXPECT_TRUE(Parse(res).is_object());
  }
  // Invalid UTF-8 in a filename is stored and echoed without breaking the JSON output.
  std::string name = "bad\xff\xfe.pdf";
  std::string body =
      R"({"sha256_hash":")" + HashN(90) + R"(","filename":")" + name + R"(","file_size_bytes":1})";
  auto res = Create(body);
  ASSERT_TRUE(res);
  EXPECT_TRUE(res->status == 201 || res->status == 400) << res->status;
}

}  // namespace
}  // namespace anchord::sandbox
