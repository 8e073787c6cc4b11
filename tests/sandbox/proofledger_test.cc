// The sandbox's ProofLedger v1 API over real HTTP on 127.0.0.1, checked against
// docs/providers/proofledger.md. Time is a
// FakeClock, so limits and confirmation never depend on the machine's speed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/sandbox/api_test_util.h"

namespace anchord::sandbox {
namespace {

using namespace testing_util;
using ::testing::MatchesRegex;

constexpr char kKey[] = "sk_sandbox";
constexpr char kKey2[] = "sk_second";
constexpr char kFreeKey[] = "sk_free_plan";

class ProofLedgerTest : public ::testing::Test {
 protected:
  void Start(SandboxOptions opt) {
    opt.proofledger_api_keys = {kKey, kKey2};
    opt.proofledger_not_entitled_keys = {kFreeKey};
    opt.calendars = 0;
    auto sb = Sandbox::Start(opt);
    ASSERT_TRUE(sb.ok()) << sb.status();
    sb_ = std::move(*sb);
    cli_ = ClientFor(sb_->port());
  }
  httplib::Result Create(const std::string& body, const std::string& key = kKey) {
    httplib::Headers h;
    if (!key.empty()) h.emplace("Authorization", std::string("Bearer ") + key);
    return cli_->Post("/api/v1/proof", h, body, "application/json");
  }
  httplib::Result Create(const std::string& hash, const std::string& filename,
                         const std::string& key) {
    return Create(json{{"sha256", hash}, {"filename", filename}}.dump(), key);
  }
  httplib::Result Verify(const std::string& hash, const httplib::Headers& h = {}) {
    return cli_->Get(("/api/v1/verify?hash=" + hash).c_str(), h);
  }
  static std::string ErrorOf(const httplib::Result& res) {
    json j = Parse(res);
    if (!j.is_object() || !j.contains("error") || !j["error"].is_string()) return "<no error>";
    return j["error"];
  }

  FakeClock clock_;
  std::unique_ptr<Sandbox> sb_;
  std::unique_ptr<httplib::Client> cli_;
};

TEST_F(ProofLedgerTest, CreateReturnsTheRecord) {
  Start(QuietOptions(&clock_));
  const std::string h = HashN(1);
  auto res = Create(h, "contract.pdf", kKey);
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 201) << res->body;
  json r = Parse(res);
  const std::string id = r["id"];
  EXPECT_THAT(id, MatchesRegex("pl_[0-9a-f]{24}"));
  EXPECT_EQ(r["sha256"], h);
  EXPECT_EQ(r["filename"], "contract.pdf");
  EXPECT_EQ(r["status"], "pending");
  EXPECT_EQ(r["certificate_url"], "https://proofledger.io/certificate/" + id);
  EXPECT_THAT(r["created_at"].get<std::string>(),
              MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z"));
  EXPECT_FALSE(r.contains("duplicate_of"));
  // An upper-case digest is the same digest.
  auto upper = Create(absl::AsciiStrToUpper(HashN(2)), "b.pdf", kKey);
  ASSERT_TRUE(upper);
  EXPECT_EQ(upper->status, 201);
  EXPECT_EQ(Parse(upper)["sha256"], HashN(2));

  SandboxStats s = sb_->Stats();
  EXPECT_EQ(s.proofledger.creates_total, 2);
  EXPECT_EQ(s.proofledger.records_total, 2);
  EXPECT_EQ(s.proofledger.creates_by_digest[h], 1);
  EXPECT_EQ(s.creates_total, 0);  // proofd's counters are untouched
}

TEST_F(ProofLedgerTest, DuplicateAnswersTheOriginalWithDuplicateOf) {
  Start(QuietOptions(&clock_));
  const std::string h = HashN(3);
  auto first = Create(h, "photo-1.jpg", kKey);
  ASSERT_TRUE(first);
  ASSERT_EQ(first->status, 201);
  const json orig = Parse(first);

  for (const char* key : {kKey, kKey2}) {  // by any account
    auto dup = Create(h, "photo-1-copy.jpg", key);
    ASSERT_TRUE(dup);
    EXPECT_EQ(dup->status, 200) << dup->body;
    json d = Parse(dup);
    EXPECT_EQ(d["duplicate_of"], orig["id"]);
    EXPECT_EQ(d["id"], orig["id"]);
    EXPECT_EQ(d["filename"], "photo-1.jpg");  // the original's fields
    EXPECT_EQ(d["certificate_url"], orig["certificate_url"]);
    EXPECT_EQ(d["status"], "pending");
  }
  SandboxStats s = sb_->Stats();
  EXPECT_EQ(s.proofledger.creates_total, 1);
  EXPECT_EQ(s.proofledger.duplicates_total, 2);
  EXPECT_EQ(s.proofledger.creates_by_digest[h], 1);
  EXPECT_EQ(s.proofledger.max_creates_per_digest, 1);
  auto stats = Parse(cli_->Get("/_sandbox/stats"));
  EXPECT_EQ(stats["proofledger"]["duplicates_total"], 2);
  EXPECT_EQ(stats["proofledger"]["creates_by_digest"][h], 1);
}

TEST_F(ProofLedgerTest, AuthErrors) {
  Start(QuietOptions(&clock_));
  const std::string body = json{{"sha256", HashN(4)}, {"filename", "a"}}.dump();
  auto none = Create(body, "");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  EXPECT_NE(ErrorOf(none), "<no error>");
  auto basic =
      cli_->Post("/api/v1/proof", {{"Authorization", "Basic c2s6"}}, body, "application/json");
  ASSERT_TRUE(basic);
  EXPECT_EQ(basic->status, 401);
  auto unknown = Create(body, "sk_nope");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 401);
  EXPECT_NE(ErrorOf(unknown), "<no error>");
  auto free_plan = Create(body, kFreeKey);
  ASSERT_TRUE(free_plan);
  EXPECT_EQ(free_plan->status, 403);
  EXPECT_NE(ErrorOf(free_plan), "<no error>");
  EXPECT_EQ(sb_->Stats().proofledger.creates_total, 0);
  // The verify endpoint needs no key at all.
  auto verify = Verify(HashN(4));
  ASSERT_TRUE(verify);
  EXPECT_EQ(verify->status, 404);
  EXPECT_EQ(ErrorOf(verify), "not found");
}

TEST_F(ProofLedgerTest, BadRequestsAre400WithMessages) {
  Start(QuietOptions(&clock_));
  const std::string h = HashN(5);
  const std::vector<std::string> bodies = {
      "{not json",
      "[1,2]",
      "",
      json{{"filename", "a"}}.dump(),
      json{{"sha256", "abc"}, {"filename", "a"}}.dump(),
      json{{"sha256", std::string(64, 'g')}, {"filename", "a"}}.dump(),
      json{{"sha256", 7}, {"filename", "a"}}.dump(),
      json{{"sha256", h + "0"}, {"filename", "a"}}.dump(),
      json{{"sha256", h}}.dump(),
      json{{"sha256", h}, {"filename", ""}}.dump(),
      json{{"sha256", h}, {"filename", std::string(256, 'x')}}.dump(),
      json{{"sha256", h}, {"filename", 12}}.dump(),
  };
  for (const auto& b : bodies) {
    auto res = Create(b);
    ASSERT_TRUE(res) << b;
    EXPECT_EQ(res->status, 400) << b;
    const std::string msg = ErrorOf(res);
    EXPECT_NE(msg, "<no error>") << b;
    EXPECT_FALSE(msg.empty()) << b;
  }
  EXPECT_THAT(ErrorOf(Create(json{{"sha256", "abc"}, {"filename", "a"}}.dump())),
              ::testing::HasSubstr("sha256"));
  EXPECT_THAT(ErrorOf(Create(json{{"sha256", h}}.dump())), ::testing::HasSubstr("filename"));
  for (const std::string& q : std::vector<std::string>{"", "abc", std::string(64, 'z')}) {
    auto res = Verify(q);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 400) << q;
    EXPECT_THAT(ErrorOf(res), ::testing::HasSubstr("hash"));
  }
  auto max_name = Create(json{{"sha256", h}, {"filename", std::string(255, 'x')}}.dump());
  ASSERT_TRUE(max_name);
  EXPECT_EQ(max_name->status, 201);
  EXPECT_EQ(sb_->Stats().proofledger.creates_total, 1);
}

TEST_F(ProofLedgerTest, WrongMethodsAndPathsAre404InTheApisShape) {
  Start(QuietOptions(&clock_));
  const httplib::Headers auth = {{"Authorization", std::string("Bearer ") + kKey}};
  auto get = cli_->Get("/api/v1/proof", auth);
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 404);
  EXPECT_EQ(ErrorOf(get), "not found");
  auto sub = cli_->Get("/api/v1/proof/pl_000000000000000000000000", auth);
  ASSERT_TRUE(sub);
  EXPECT_EQ(sub->status, 404);
  auto del = cli_->Delete("/api/v1/proof", auth);
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 404);
  auto post_verify = cli_->Post("/api/v1/verify", "{}", "application/json");  // public: no auth
  ASSERT_TRUE(post_verify);
  EXPECT_EQ(post_verify->status, 404);
  EXPECT_EQ(ErrorOf(post_verify), "not found");
  auto unauth = cli_->Get("/api/v1/proof");
  ASSERT_TRUE(unauth);
  EXPECT_EQ(unauth->status, 401);
}

TEST_F(ProofLedgerTest, CreateRateLimitRetryAfterAndEarlyRequests) {
  SandboxOptions opt = QuietOptions(&clock_);
  opt.window = absl::Seconds(10);
  opt.proofledger_create_limit = 2;
  Start(opt);
  EXPECT_EQ(Create(HashN(10), "a", kKey)->status, 201);
  clock_.Advance(absl::Seconds(4));
  EXPECT_EQ(Create(HashN(11), "b", kKey)->status, 201);
  auto limited = Create(HashN(12), "c", kKey);
  ASSERT_TRUE(limited);
  EXPECT_EQ(limited->status, 429);
  EXPECT_EQ(limited->get_header_value("Retry-After"), "6");  // the first slot frees at t=10
  EXPECT_NE(ErrorOf(limited), "<no error>");
  // The limit is per key: another account still creates.
  EXPECT_EQ(Create(HashN(13), "d", kKey2)->status, 201);
  EXPECT_EQ(sb_->Stats().proofledger.early_requests_total, 0);

  clock_.Advance(absl::Seconds(3));
  auto early = Create(HashN(12), "c", kKey);  // 3 s of the 6 passed: early, still limited
  ASSERT_TRUE(early);
  EXPECT_EQ(early->status, 429);
  EXPECT_EQ(early->get_header_value("Retry-After"), "3");
  clock_.Advance(absl::Seconds(3));
  auto after = Create(HashN(12), "c", kKey);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 201);
  SandboxStats s = sb_->Stats();
  EXPECT_EQ(s.proofledger.rate_limited_total, 2);
  EXPECT_EQ(s.proofledger.early_requests_total, 1);
  EXPECT_EQ(s.rate_limited_total, 2);
  EXPECT_EQ(s.proofd.rate_limited_total, 0);
  // Duplicates go through the create bucket too (they are create requests).
  auto stats = Parse(cli_->Get("/_sandbox/stats"));
  EXPECT_EQ(stats["proofledger"]["rate_limited_total"], 2);
  EXPECT_EQ(stats["proofledger"]["early_requests_total"], 1);
}

TEST_F(ProofLedgerTest, VerifyBudgetIsPerIpAndNeedsNoKey) {
  SandboxOptions opt = QuietOptions(&clock_);
  opt.proofledger_verify_limit = 3;  // per proofledger_verify_window (1 h by default)
  Start(opt);
  const std::string h = HashN(20);
  ASSERT_EQ(Create(h, "a", kKey)->status, 201);
  EXPECT_EQ(Verify(h)->status, 200);
  EXPECT_EQ(Verify(HashN(21))->status, 404);  // unknown hashes cost a request too
  // A key does not buy a separate budget: the endpoint is public, the budget per IP.
  EXPECT_EQ(Verify(h, {{"Authorization", std::string("Bearer ") + kKey}})->status, 200);
  auto limited = Verify(h);
  ASSERT_TRUE(limited);
  EXPECT_EQ(limited->status, 429);
  int64_t retry = 0;
  ASSERT_TRUE(absl::SimpleAtoi(limited->get_header_value("Retry-After"), &retry));
  EXPECT_EQ(retry, 3600);
  // Creates are not limited by the verify budget.
  EXPECT_EQ(Create(HashN(22), "b", kKey)->status, 201);

  SandboxStats s = sb_->Stats();
  EXPECT_EQ(s.proofledger.verify_requests_total, 4);
  EXPECT_EQ(s.proofledger.verify_requests_by_ip["127.0.0.1"], 4);
  EXPECT_EQ(s.proofledger.verify_rate_limited_by_ip["127.0.0.1"], 1);
  auto stats = Parse(cli_->Get("/_sandbox/stats"));
  EXPECT_EQ(stats["proofledger"]["verify_requests_by_ip"]["127.0.0.1"], 4);
  EXPECT_EQ(stats["proofledger"]["verify_rate_limited_by_ip"]["127.0.0.1"], 1);

  clock_.Advance(absl::Hours(1));
  EXPECT_EQ(Verify(h)->status, 200);
  EXPECT_EQ(sb_->Stats().proofledger.early_requests_total, 0);
}

TEST_F(ProofLedgerTest, VerifyFollowsTheRecordIntoTheSharedChain) {
  SandboxOptions opt = QuietOptions(&clock_);
  opt.confirm_after = absl::Seconds(30);
  opt.first_block_height = 700000;
  Start(opt);
  const std::string h = HashN(30);
  auto created = Create(h, "site-photo.jpg", kKey);
  ASSERT_TRUE(created);
  ASSERT_EQ(created->status, 201);
  const std::string id = Parse(created)["id"];

  json v = Parse(Verify(h));
  EXPECT_EQ(v["sha256"], h);
  EXPECT_EQ(v["verified"], false);
  EXPECT_EQ(v["status"], "pending");
  EXPECT_EQ(v["proof_id"], id);
  EXPECT_EQ(v["certificate_url"], "https://proofledger.io/certificate/" + id);
  EXPECT_TRUE(v["bitcoin_block"].is_null());
  EXPECT_TRUE(v["bitcoin_tx"].is_null());
  EXPECT_TRUE(v["anchored_at"].is_null());

  clock_.Advance(absl::Seconds(29));
  EXPECT_EQ(Parse(Verify(h))["status"], "pending");
  clock_.Advance(absl::Seconds(1));
  v = Parse(Verify(h));
  EXPECT_EQ(v["verified"], true);
  EXPECT_EQ(v["status"], "confirmed");
  ASSERT_TRUE(v["bitcoin_block"].is_number_integer());
  const int64_t height = v["bitcoin_block"];
  EXPECT_EQ(height, 700000);
  EXPECT_TRUE(IsSha256Hex(v["bitcoin_tx"].get<std::string>()));
  EXPECT_TRUE(v["anchored_at"].is_string());
  // The duplicate answer shows the confirmed original.
  EXPECT_EQ(Parse(Create(h, "again.jpg", kKey))["status"], "confirmed");

  auto header = cli_->Get(absl::StrCat("/_sandbox/blocks/", height, "/header").c_str());
  ASSERT_TRUE(header);
  EXPECT_EQ(header->status, 200);
  EXPECT_EQ(header->body.size(), 160u);
  SandboxStats s = sb_->Stats();
  EXPECT_EQ(s.proofledger.confirmed_total, 1);
  EXPECT_EQ(s.blocks_total, 1);
}

TEST_F(ProofLedgerTest, FaultsApply) {
  Start(QuietOptions(&clock_));
  Faults f;
  f.error_rate = 1;
  sb_->SetFaults(f);
  for (int i = 0; i < 6; ++i) {
    auto res = Create(HashN(40), "a", kKey);
    ASSERT_TRUE(res);
    EXPECT_TRUE(res->status == 500 || res->status == 503) << res->status;
    EXPECT_NE(ErrorOf(res), "<no error>");
  }
  auto verify = Verify(HashN(40));
  ASSERT_TRUE(verify);
  EXPECT_GE(verify->status, 500);
  EXPECT_EQ(sb_->Stats().proofledger.creates_total, 0);
  EXPECT_EQ(sb_->Stats().proofledger.faults_injected_total, 7);

  f = Faults();
  f.storm_seconds = 2;
  sb_->SetFaults(f);
  auto storm = Create(HashN(40), "a", kKey);
  ASSERT_TRUE(storm);
  EXPECT_EQ(storm->status, 429);
  EXPECT_EQ(storm->get_header_value("Retry-After"), "1");
  EXPECT_EQ(Create(HashN(40), "a", kKey)->status, 429);  // early
  EXPECT_EQ(sb_->Stats().proofledger.early_requests_total, 1);

  f = Faults();
  f.drop_rate = 1;
  sb_->SetFaults(f);
  EXPECT_FALSE(Create(HashN(41), "a", kKey));  // created, answer cut off
  sb_->SetFaults(Faults());
  auto retry = Create(HashN(41), "a", kKey);
  ASSERT_TRUE(retry);
  EXPECT_EQ(retry->status, 200);  // the retry finds the record it made: duplicate_of
  EXPECT_TRUE(Parse(retry).contains("duplicate_of"));
  EXPECT_EQ(sb_->Stats().proofledger.creates_by_digest[HashN(41)], 1);
}

TEST_F(ProofLedgerTest, ResetClearsRecordsAndCounters) {
  Start(QuietOptions(&clock_));
  ASSERT_EQ(Create(HashN(50), "a", kKey)->status, 201);
  EXPECT_EQ(Verify(HashN(50))->status, 200);
  auto reset = cli_->Post("/_sandbox/reset", "", "application/json");
  ASSERT_TRUE(reset);
  EXPECT_EQ(reset->status, 200);
  SandboxStats s = sb_->Stats();
  EXPECT_EQ(s.proofledger.creates_total, 0);
  EXPECT_EQ(s.proofledger.verify_requests_total, 0);
  EXPECT_TRUE(s.proofledger.verify_requests_by_ip.empty());
  EXPECT_EQ(Verify(HashN(50))->status, 404);
  EXPECT_EQ(Create(HashN(50), "a", kKey)->status, 201);  // no longer a duplicate
}

}  // namespace
}  // namespace anchord::sandbox
