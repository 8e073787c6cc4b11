// The sandbox's SimpleProof API over real HTTP on 127.0.0.1, checked against
// docs/providers/simpleproof.md. Time is a
// FakeClock; callbacks go to an httplib server the test runs on loopback.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <mutex>
#include <set>
#include <vector>

#include "libs/ots/headers.h"
#include "libs/ots/verify.h"
#include "tests/sandbox/api_test_util.h"

namespace anchord::sandbox {
namespace {

using namespace testing_util;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

constexpr char kToken[] = "sp_sandbox_token";
constexpr char kToken2[] = "sp_second_token";
constexpr char kIsoRegex[] = "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z";

std::vector<std::string> Hashes(int from, int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back(HashN(from + i));
  return out;
}

// A loopback receiver for callbacks: answers the first `failures` POSTs with 500, then 200.
class CallbackReceiver {
 public:
  explicit CallbackReceiver(int failures) : failures_(failures) {
    svr_.Post("/cb", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> lock(mu_);
      bodies_.push_back(req.body);
      content_types_.push_back(req.get_header_value("Content-Type"));
      const bool fail = static_cast<int>(bodies_.size()) <= failures_;
      res.status = fail ? 500 : 200;
      res.set_content(fail ? R"({"ok":false})" : R"({"ok":true,"msg":"received"})",
                      "application/json");
    });
    port_ = svr_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { svr_.listen_after_bind(); });
    WaitFor([this] { return svr_.is_running(); }, std::chrono::seconds(5));
  }
  ~CallbackReceiver() {
    svr_.stop();
    if (thread_.joinable()) thread_.join();
  }
  std::string url() const { return absl::StrCat("http://127.0.0.1:", port_, "/cb"); }
  std::vector<std::string> bodies() {
    std::lock_guard<std::mutex> lock(mu_);
    return bodies_;
  }
  std::vector<std::string> content_types() {
    std::lock_guard<std::mutex> lock(mu_);
    return content_types_;
  }

 private:
  const int failures_;
  httplib::Server svr_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> bodies_, content_types_;
};

class SimpleProofTest : public ::testing::Test {
 protected:
  void Start(SandboxOptions opt) {
    opt.simpleproof_tokens = {kToken, kToken2};
    opt.calendars = 0;
    auto sb = Sandbox::Start(opt);
    ASSERT_TRUE(sb.ok()) << sb.status();
    sb_ = std::move(*sb);
    cli_ = ClientFor(sb_->port());
  }
  httplib::Result PostJson(const std::string& path, const std::string& body,
                           const std::string& token = kToken) {
    httplib::Headers h;
    if (!token.empty()) h.emplace("x-access-token", token);
    return cli_->Post(path.c_str(), h, body, "application/json");
  }
  httplib::Result Submit(const std::vector<std::string>& hashes, const std::string& callback = "",
                         const std::string& token = kToken) {
    json body = {{"hashes", hashes}};
    if (!callback.empty()) body["callback_url"] = callback;
    return PostJson("/api/proof/timestamp/hashes", body.dump(), token);
  }
  httplib::Result List(const std::string& query, const std::string& token = kToken) {
    return cli_->Get(("/api/proof/document?" + query).c_str(), {{"x-access-token", token}});
  }
  httplib::Result VerifyHash(const std::string& hash, const std::string& token = kToken) {
    return PostJson("/proof/verification", json{{"hash", hash}}.dump(), token);
  }
  static std::string MsgOf(const httplib::Result& res) {
    json j = Parse(res);
    if (!j.is_object() || j.value("ok", true) != false || !j.contains("msg") ||
        !j["msg"].is_string()) {
      return "<no error shape>";
    }
    return j["msg"];
  }

  FakeClock clock_;
  std::unique_ptr<Sandbox> sb_;
  std::unique_ptr<httplib::Client> cli_;
};

TEST_F(SimpleProofTest, BatchesOfUpTo25) {
  Start(QuietOptions(&clock_));
  const auto batch = Hashes(100, 25);
  auto ok = Submit(batch);
  ASSERT_TRUE(ok);
  ASSERT_EQ(ok->status, 200) << ok->body;
  json j = Parse(ok);
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["files"], json(batch));

  auto too_many = Submit(Hashes(200, 26));
  ASSERT_TRUE(too_many);
  EXPECT_EQ(too_many->status, 400);
  EXPECT_EQ(MsgOf(too_many), "A maximum of 25 hashes per request is allowed.");

  SandboxStats s = sb_->Stats();
  EXPECT_EQ(s.simpleproof.cost_units_total, 25);
  EXPECT_EQ(s.simpleproof.creates_total, 25);
  EXPECT_EQ(s.simpleproof.records_total, 25);
  EXPECT_EQ(s.simpleproof.creates_by_digest.count(HashN(200)), 0u);  // nothing of the 26
}

TEST_F(SimpleProofTest, ResendingAHashCostsNothing) {
  Start(QuietOptions(&clock_));
  ASSERT_EQ(Submit({HashN(1), HashN(2)})->status, 200);
  auto again = Submit({HashN(1), HashN(2), HashN(3)});
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
  EXPECT_EQ(Parse(again)["files"], json({HashN(1), HashN(2), HashN(3)}));  // answered the same
  ASSERT_EQ(Submit({HashN(4), HashN(4)})->status, 200);  // twice in one batch: one unit
  // Cost is per account: another token pays for its own.
  ASSERT_EQ(Submit({HashN(1)}, "", kToken2)->status, 200);
  SandboxStats s = sb_->Stats();
  EXPECT_EQ(s.simpleproof.cost_units_total, 5);
  EXPECT_EQ(s.simpleproof.resubmitted_total, 3);
  EXPECT_EQ(s.simpleproof.creates_by_digest[HashN(1)], 2);
  EXPECT_EQ(s.simpleproof.creates_by_digest[HashN(2)], 1);
  EXPECT_EQ(s.simpleproof.creates_by_digest[HashN(4)], 1);
  EXPECT_EQ(Parse(List("status=pending_stamp&page=0&limit=100"))["data"]["totalCount"], 4);
  auto stats = Parse(cli_->Get("/_sandbox/stats"));
  EXPECT_EQ(stats["simpleproof"]["cost_units_total"], 5);
  EXPECT_EQ(stats["simpleproof"]["creates_by_digest"][HashN(1)], 2);
}

TEST_F(SimpleProofTest, AuthErrors) {
  Start(QuietOptions(&clock_));
  auto none = Submit({HashN(5)}, "", "");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  EXPECT_NE(MsgOf(none), "<no error shape>");
  auto wrong = Submit({HashN(5)}, "", "sp_nope");
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 401);
  EXPECT_NE(MsgOf(wrong), "<no error shape>");
  auto bearer = cli_->Post("/api/proof/timestamp/hashes",
                           {{"Authorization", std::string("Bearer ") + kToken}},
                           json{{"hashes", {HashN(5)}}}.dump(), "application/json");
  ASSERT_TRUE(bearer);
  EXPECT_EQ(bearer->status, 401);  // the doc's header is x-access-token
  for (const auto& path : {"/api/proof/document?status=pending&page=0&limit=1"}) {
    auto res = cli_->Get(path);
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 401);
  }
  auto verify = PostJson("/proof/verification", json{{"hash", HashN(5)}}.dump(), "");
  ASSERT_TRUE(verify);
  EXPECT_EQ(verify->status, 401);
  EXPECT_EQ(sb_->Stats().simpleproof.cost_units_total, 0);
}

TEST_F(SimpleProofTest, BadRequestsAre400WithMessages) {
  Start(QuietOptions(&clock_));
  const std::string h = HashN(6);
  const std::vector<std::string> bodies = {
      "{oops",
      "[]",
      "",
      json::object().dump(),
      json{{"hashes", h}}.dump(),
      json{{"hashes", json::array()}}.dump(),
      json{{"hashes", {h, 5}}}.dump(),
      json{{"hashes", {h.substr(1)}}}.dump(),
      json{{"hashes", {std::string(64, 'x')}}}.dump(),
      json{{"hashes", {h}}, {"callback_url", 5}}.dump(),
      json{{"hashes", {h}}, {"callback_url", "ftp://127.0.0.1/cb"}}.dump(),
      json{{"hashes", {h}}, {"callback_url", "not a url"}}.dump(),
      json{{"hashes", {h}}, {"callback_url", "http://user@127.0.0.1/cb"}}.dump(),
      json{{"hashes", {h}}, {"callback_url", "http://127.0.0.1:99999/cb"}}.dump(),
  };
  for (const auto& b : bodies) {
    auto res = PostJson("/api/proof/timestamp/hashes", b);
    ASSERT_TRUE(res) << b;
    EXPECT_EQ(res->status, 400) << b;
    EXPECT_NE(MsgOf(res), "<no error shape>") << b;
  }
  EXPECT_THAT(MsgOf(PostJson("/api/proof/timestamp/hashes", json{{"hashes", {"abc"}}}.dump())),
              HasSubstr("64 characters"));
  for (const char* q : {"", "status=pending&page=0", "status=pending&limit=5", "page=0&limit=5",
                        "status=done&page=0&limit=5", "status=pending&page=-1&limit=5",
                        "status=pending&page=x&limit=5", "status=pending&page=0&limit=0",
                        "status=pending&page=0&limit=101", "status=pending&page=0&limit=1.5"}) {
    auto res = List(q);
    ASSERT_TRUE(res) << q;
    EXPECT_EQ(res->status, 400) << q;
    EXPECT_NE(MsgOf(res), "<no error shape>") << q;
  }
  for (const std::string& b : {std::string("{}"), std::string("nope"), json{{"hash", "abc"}}.dump(),
                               json{{"hash", 1}}.dump()}) {
    auto res = PostJson("/proof/verification", b);
    ASSERT_TRUE(res) << b;
    EXPECT_EQ(res->status, 400) << b;
    EXPECT_NE(MsgOf(res), "<no error shape>") << b;
  }
  httplib::MultipartFormDataItems items = {{"files", "evidence bytes", "a.txt", "text/plain"}};
  auto file = cli_->Post("/api/proof/file", {{"x-access-token", kToken}}, items);
  ASSERT_TRUE(file);
  EXPECT_EQ(file->status, 400);
  EXPECT_NE(MsgOf(file), "<no error shape>");
  auto unknown = cli_->Get("/api/proof/nope", {{"x-access-token", kToken}});
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  EXPECT_NE(MsgOf(unknown), "<no error shape>");
  auto wrong_method = cli_->Get("/api/proof/timestamp/hashes", {{"x-access-token", kToken}});
  ASSERT_TRUE(wrong_method);
  EXPECT_EQ(wrong_method->status, 404);
  EXPECT_EQ(sb_->Stats().simpleproof.cost_units_total, 0);
}

TEST_F(SimpleProofTest, RateLimitAnswers429WithRetryAfter) {
  SandboxOptions opt = QuietOptions(&clock_);
  opt.window = absl::Seconds(5);
  opt.simpleproof_limit = 3;
  Start(opt);
  EXPECT_EQ(Submit({HashN(7)})->status, 200);
  EXPECT_EQ(List("status=pending&page=0&limit=1")->status, 200);
  EXPECT_EQ(VerifyHash(HashN(7))->status, 200);
  auto limited = Submit({HashN(8)});
  ASSERT_TRUE(limited);
  EXPECT_EQ(limited->status, 429);
  EXPECT_EQ(limited->get_header_value("Retry-After"), "5");
  EXPECT_NE(MsgOf(limited), "<no error shape>");
  EXPECT_EQ(Submit({HashN(8)}, "", kToken2)->status, 200);  // per token
  EXPECT_EQ(Submit({HashN(8)})->status, 429);               // early
  clock_.Advance(absl::Seconds(5));
  EXPECT_EQ(Submit({HashN(8)})->status, 200);
  SandboxStats s = sb_->Stats();
  EXPECT_EQ(s.simpleproof.rate_limited_total, 2);
  EXPECT_EQ(s.simpleproof.early_requests_total, 1);
  EXPECT_EQ(s.simpleproof.cost_units_total, 3);  // HashN(7); HashN(8) once per account
}

TEST_F(SimpleProofTest, ListingByStatusWithPagesFollowsTheLifecycle) {
  SandboxOptions opt = QuietOptions(&clock_);
  opt.confirm_after = absl::Seconds(10);
  opt.first_block_height = 880000;
  Start(opt);
  const auto hashes = Hashes(300, 5);
  ASSERT_EQ(Submit(hashes)->status, 200);

  auto page = [&](const std::string& status, int p, int limit) {
    return Parse(List(absl::StrCat("status=", status, "&page=", p, "&limit=", limit)));
  };
  // pending_stamp: pages of 2 in creation order.
  std::vector<std::string> seen;
  for (int p = 0; p < 3; ++p) {
    json j = page("pending_stamp", p, 2);
    ASSERT_EQ(j["ok"], true);
    EXPECT_EQ(j["data"]["totalCount"], 5);
    EXPECT_EQ(j["data"]["totalPages"], 3);
    for (const auto& d : j["data"]["documents"]) {
      seen.push_back(d["document_hash"]);
      EXPECT_EQ(d["document_status"], "PENDING_STAMP");
      EXPECT_EQ(d["blockchain"], json::object());
      EXPECT_TRUE(d["id"].is_number_integer());
      EXPECT_TRUE(d["name"].is_string());
      EXPECT_TRUE(d["extension"].is_string());
      EXPECT_TRUE(d["storage_kb"].is_string());
      EXPECT_THAT(d["creation_date"].get<std::string>(), MatchesRegex(kIsoRegex));
      EXPECT_THAT(d["prefix"].get<std::string>(), ::testing::EndsWith("/"));
    }
  }
  EXPECT_EQ(seen, hashes);
  EXPECT_TRUE(page("pending_stamp", 3, 2)["data"]["documents"].empty());
  EXPECT_EQ(page("pending", 0, 100)["data"]["totalCount"], 0);
  EXPECT_EQ(page("confirmed", 0, 100)["data"]["totalPages"], 0);
  // Another account sees none of them.
  EXPECT_EQ(Parse(List("status=pending_stamp&page=0&limit=10", kToken2))["data"]["totalCount"], 0);

  clock_.Advance(absl::Seconds(5));  // half of confirm_after: in a Bitcoin tx, unconfirmed
  EXPECT_EQ(page("pending_stamp", 0, 100)["data"]["totalCount"], 0);
  json pending = page("pending", 0, 100);
  EXPECT_EQ(pending["data"]["totalCount"], 5);
  EXPECT_EQ(pending["data"]["documents"][0]["document_status"], "PENDING");
  EXPECT_EQ(pending["data"]["documents"][0]["blockchain"], json::object());

  clock_.Advance(absl::Seconds(5));
  EXPECT_EQ(page("pending", 0, 100)["data"]["totalCount"], 0);
  json confirmed = page("confirmed", 1, 4);
  EXPECT_EQ(confirmed["data"]["totalCount"], 5);
  EXPECT_EQ(confirmed["data"]["totalPages"], 2);
  ASSERT_EQ(confirmed["data"]["documents"].size(), 1u);
  const json& d = confirmed["data"]["documents"][0];
  EXPECT_EQ(d["document_hash"], hashes[4]);
  EXPECT_EQ(d["document_status"], "COMPLETE");
  EXPECT_EQ(d["blockchain"]["block_height"], 880000);
  EXPECT_TRUE(IsSha256Hex(d["blockchain"]["tx"].get<std::string>()));
  EXPECT_EQ(sb_->Stats().simpleproof.confirmed_total, 5);
}

TEST_F(SimpleProofTest, VerificationOffersAnOtsUrlThatExpires) {
  SandboxOptions opt = QuietOptions(&clock_);
  opt.confirm_after = absl::Seconds(10);
  opt.ots_url_ttl = absl::Seconds(60);
  Start(opt);
  const std::string h = HashN(400);
  ASSERT_EQ(Submit({h})->status, 200);

  json v = Parse(VerifyHash(h));
  ASSERT_EQ(v["ok"], true);
  ASSERT_EQ(v["totalDocuments"], 1);
  json d = v["documents"][0];
  EXPECT_EQ(d["hash"], h);
  EXPECT_EQ(d["confirmed"], false);
  EXPECT_TRUE(d["confirmed_at"].is_null());
  EXPECT_EQ(d["ots_download_url"], "");
  EXPECT_EQ(d["file_download_url"], "");
  EXPECT_EQ(d["download_url_expiration_time"], 60);
  EXPECT_THAT(d["url"].get<std::string>(), HasSubstr(h));
  EXPECT_EQ(Parse(VerifyHash(HashN(401)))["totalDocuments"], 0);  // unknown hash
  EXPECT_EQ(Parse(VerifyHash(h, kToken2))["totalDocuments"], 0);  // another account's

  clock_.Advance(absl::Seconds(10));
  d = Parse(VerifyHash(absl::AsciiStrToUpper(h)))["documents"][0];
  EXPECT_EQ(d["confirmed"], true);
  EXPECT_THAT(d["confirmed_at"].get<std::string>(), MatchesRegex(kIsoRegex));
  const std::string url = d["ots_download_url"];
  const std::string origin = absl::StrCat("http://127.0.0.1:", sb_->port());
  ASSERT_THAT(url, ::testing::StartsWith(origin + "/_files/simpleproof/"));
  const std::string path = url.substr(origin.size());

  auto ots = cli_->Get(path.c_str());  // no token: the URL is the credential
  ASSERT_TRUE(ots);
  ASSERT_EQ(ots->status, 200);
  EXPECT_EQ(ots->get_header_value("Content-Type"), "application/octet-stream");
  auto proof = ots::ParseDetached(ots->body);
  ASSERT_TRUE(proof.ok()) << proof.status();
  EXPECT_EQ(HexEncode(proof->digest), h);
  auto atts = proof->timestamp->AllAttestations();
  ASSERT_EQ(atts.size(), 1u);
  EXPECT_EQ(atts[0].second.kind, ots::Attestation::Kind::kBitcoin);
  {
    ots::SandboxHeaders headers(origin);
    ots::VerifyResult r = ots::Verify(*proof, proof->digest, &headers);
    EXPECT_TRUE(r.verified) << r.message;
  }

  clock_.Advance(absl::Seconds(59));
  auto still = cli_->Get(path.c_str());
  ASSERT_TRUE(still);
  EXPECT_EQ(still->status, 200);
  EXPECT_EQ(still->body, ots->body);
  clock_.Advance(absl::Seconds(1));  // the TTL has passed
  auto expired = cli_->Get(path.c_str());
  ASSERT_TRUE(expired);
  EXPECT_EQ(expired->status, 403);
  EXPECT_THAT(expired->body, HasSubstr("expired"));
  auto forged = cli_->Get("/_files/simpleproof/00000000000000000000000000000000.ots");
  ASSERT_TRUE(forged);
  EXPECT_EQ(forged->status, 403);
  // A new verification mints a new URL.
  const std::string fresh = Parse(VerifyHash(h))["documents"][0]["ots_download_url"];
  EXPECT_NE(fresh, url);
  auto again = cli_->Get(fresh.substr(origin.size()).c_str());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);

  SandboxStats s = sb_->Stats();
  EXPECT_EQ(s.simpleproof.ots_downloads_total, 3);
  EXPECT_EQ(s.simpleproof.ots_urls_expired_total, 2);
  EXPECT_EQ(s.simpleproof.ots_urls_issued_total, 2);
}

TEST_F(SimpleProofTest, CallbacksAreRetriedUntilAcknowledged) {
  CallbackReceiver receiver(/*failures=*/2);
  SandboxOptions opt = QuietOptions(&clock_);
  opt.confirm_after = absl::Seconds(10);
  opt.first_block_height = 660000;
  opt.callback_retries = 3;
  opt.callback_retry_interval = absl::Milliseconds(20);
  Start(opt);
  const std::string h = HashN(500);
  ASSERT_EQ(Submit({h}, receiver.url())->status, 200);
  const int64_t id =
      Parse(List("status=pending_stamp&page=0&limit=1"))["data"]["documents"][0]["id"];
  // Nothing before confirmation: the fake clock has not moved, so no block is due (Stats() runs
  // the confirmer at the current time first) and a callback is only queued by a confirmation.
  EXPECT_EQ(sb_->Stats().blocks_total, 0);
  EXPECT_EQ(sb_->Stats().simpleproof.callbacks_sent_total, 0);
  EXPECT_TRUE(receiver.bodies().empty());

  clock_.Advance(absl::Seconds(10));  // the background confirmer makes the block, then calls
  ASSERT_TRUE(WaitFor([&] { return sb_->Stats().simpleproof.callbacks_delivered_total == 1; }))
      << "sent " << sb_->Stats().simpleproof.callbacks_sent_total;
  const auto bodies = receiver.bodies();
  ASSERT_EQ(bodies.size(), 3u);  // 500, 500, 200
  EXPECT_EQ(bodies[0], bodies[2]);
  EXPECT_EQ(receiver.content_types()[0], "application/json");
  json cb = json::parse(bodies[2], nullptr, false);
  EXPECT_EQ(cb["id"], id);
  EXPECT_EQ(cb["confirmed"], true);
  EXPECT_EQ(cb["hash"], h);
  EXPECT_TRUE(cb["name"].is_string());
  EXPECT_EQ(cb["blockheight"], 660000);
  EXPECT_THAT(cb["verified_at"].get<std::string>(), MatchesRegex(kIsoRegex));
  EXPECT_THAT(cb["verification_link"].get<std::string>(), HasSubstr(h));
  SandboxStats s = sb_->Stats();
  EXPECT_EQ(s.simpleproof.callbacks_sent_total, 3);
  EXPECT_EQ(s.simpleproof.callbacks_failed_total, 0);

  // Sending the confirmed hash again with a callback_url: notified at once, at no cost.
  ASSERT_EQ(Submit({h}, receiver.url())->status, 200);
  ASSERT_TRUE(WaitFor([&] { return sb_->Stats().simpleproof.callbacks_delivered_total == 2; }));
  EXPECT_EQ(sb_->Stats().simpleproof.cost_units_total, 1);
}

TEST_F(SimpleProofTest, CallbacksGiveUpAfterTheRetries) {
  CallbackReceiver receiver(/*failures=*/1000);
  SandboxOptions opt = QuietOptions(&clock_);
  opt.confirm_after = absl::Seconds(1);
  opt.callback_retries = 2;
  opt.callback_retry_interval = absl::Milliseconds(10);
  Start(opt);
  ASSERT_EQ(Submit({HashN(501)}, receiver.url())->status, 200);
  clock_.Advance(absl::Seconds(1));
  // A callback given up leaves the queue: once it counts as failed no attempt can follow, and
  // each attempt reached the receiver before it was counted.
  ASSERT_TRUE(WaitFor([&] { return sb_->Stats().simpleproof.callbacks_failed_total == 1; }));
  EXPECT_EQ(receiver.bodies().size(), 3u);  // one attempt and two retries, no more
  SandboxStats s = sb_->Stats();
  EXPECT_EQ(s.simpleproof.callbacks_sent_total, 3);
  EXPECT_EQ(s.simpleproof.callbacks_delivered_total, 0);
}

TEST_F(SimpleProofTest, CallbackDropRateLosesCallbacksAndOnlyLoopbackIsCalled) {
  CallbackReceiver receiver(/*failures=*/0);
  SandboxOptions opt = QuietOptions(&clock_);
  opt.confirm_after = absl::Seconds(1);
  opt.faults.callback_drop_rate = 1;
  Start(opt);
  ASSERT_EQ(Submit({HashN(502), HashN(503)}, receiver.url())->status, 200);
  // A valid URL off loopback is accepted, never called.
  ASSERT_EQ(Submit({HashN(504)}, "http://203.0.113.9:8080/cb")->status, 200);
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(WaitFor([&] {
    SandboxStats s = sb_->Stats();
    return s.simpleproof.callbacks_dropped_total == 2 && s.simpleproof.callbacks_skipped_total == 1;
  }));
  // Dropped and skipped callbacks are decided when the block is made and never queued; the
  // delivery of HashN(505)'s below shows nothing else was on its way.
  EXPECT_TRUE(receiver.bodies().empty());
  EXPECT_EQ(sb_->Stats().simpleproof.callbacks_sent_total, 0);

  auto faults = Parse(cli_->Get("/_sandbox/faults"));
  EXPECT_EQ(faults["callback_drop_rate"], 1.0);
  auto set = cli_->Post("/_sandbox/faults", R"({"callback_drop_rate":0})", "application/json");
  ASSERT_TRUE(set);
  EXPECT_EQ(Parse(set)["callback_drop_rate"], 0.0);
  ASSERT_EQ(Submit({HashN(505)}, receiver.url())->status, 200);
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(WaitFor([&] { return receiver.bodies().size() == 1; }));
  EXPECT_EQ(json::parse(receiver.bodies()[0], nullptr, false)["hash"], HashN(505));
  auto stats = Parse(cli_->Get("/_sandbox/stats"));
  EXPECT_EQ(stats["simpleproof"]["callbacks_dropped_total"], 2);
  EXPECT_EQ(stats["simpleproof"]["callbacks_skipped_total"], 1);
}

TEST_F(SimpleProofTest, StopWithCallbacksPendingIsClean) {
  CallbackReceiver receiver(/*failures=*/1000);
  SandboxOptions opt = QuietOptions(&clock_);
  opt.confirm_after = absl::Seconds(1);
  opt.callback_retries = 100;
  opt.callback_retry_interval = absl::Seconds(30);
  Start(opt);
  ASSERT_EQ(Submit({HashN(506)}, receiver.url())->status, 200);
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(WaitFor([&] { return sb_->Stats().simpleproof.callbacks_sent_total == 1; }));
  const auto start = std::chrono::steady_clock::now();
  cli_.reset();
  sb_.reset();  // a retry is 30 s away: destruction must not wait for it
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST_F(SimpleProofTest, FaultsAndResetApply) {
  Start(QuietOptions(&clock_));
  Faults f;
  f.error_rate = 1;
  sb_->SetFaults(f);
  auto err = Submit({HashN(600)});
  ASSERT_TRUE(err);
  EXPECT_EQ(err->status, 500);
  EXPECT_EQ(MsgOf(err), "Internal server error. Please try again later.");
  f = Faults();
  f.storm_seconds = 1;
  sb_->SetFaults(f);
  auto storm = Submit({HashN(600)});
  ASSERT_TRUE(storm);
  EXPECT_EQ(storm->status, 429);
  EXPECT_EQ(storm->get_header_value("Retry-After"), "1");
  sb_->SetFaults(Faults());
  clock_.Advance(absl::Seconds(1));
  ASSERT_EQ(Submit({HashN(600)})->status, 200);
  SandboxStats s = sb_->Stats();
  EXPECT_EQ(s.simpleproof.faults_injected_total, 2);
  EXPECT_EQ(s.simpleproof.rate_limited_total, 1);
  EXPECT_EQ(s.simpleproof.cost_units_total, 1);

  sb_->Reset();
  s = sb_->Stats();
  EXPECT_EQ(s.simpleproof.cost_units_total, 0);
  EXPECT_EQ(s.simpleproof.requests_total, 0);
  EXPECT_EQ(Parse(List("status=pending_stamp&page=0&limit=10"))["data"]["totalCount"], 0);
  ASSERT_EQ(Submit({HashN(600)})->status, 200);
  EXPECT_EQ(sb_->Stats().simpleproof.cost_units_total, 1);  // new again after the reset
}

}  // namespace
}  // namespace anchord::sandbox

namespace anchord::sandbox {
namespace {

using namespace testing_util;

// Random bytes, hostile JSON, deep nesting, huge bodies and odd methods on every route of the
// main port: each gets an answer, and the sandbox keeps serving.
TEST(SandboxApisGarbage, NeverCrash) {
  FakeClock clock;
  SandboxOptions opt = QuietOptions(&clock);
  opt.calendars = 0;
  auto sb = Sandbox::Start(opt);
  ASSERT_TRUE(sb.ok()) << sb.status();
  auto cli = ClientFor((*sb)->port());
  const httplib::Headers auth = {{"Authorization", "Bearer sk_sandbox"},
                                 {"x-access-token", "sp_sandbox_token"}};
  const std::vector<std::string> posts = {"/api/v1/proof", "/api/proof/timestamp/hashes",
                                          "/proof/verification", "/api/proof/file"};
  std::mt19937 rng(11);
  std::vector<std::string> bodies = {
      std::string(200000, '[') + std::string(200000, ']'),  // deep but valid
      std::string(300000, '{'),                             // deep and unterminated
      R"({"sha256":{"a":[1,2,{"b":null}]},"filename":[],"hashes":{"0":"x"},"hash":[null]})",
      R"({"hashes":[")" + std::string(64, 'a') + R"("],"callback_url":"http://[::1")" + "\"}",
      R"({"hashes":[")" + std::string(64, 'a') + R"("],"callback_url":"http://)" +
          std::string(3000, 'h') + "\"}",
      "\xff\xfe\x00{}",
      "null",
      "1e999999",
  };
  for (int i = 0; i < 60; ++i) {
    std::string b(rng() % 200, '\0');
    for (auto& c : b) c = static_cast<char>(rng());
    bodies.push_back(std::move(b));
  }
  for (const auto& path : posts) {
    for (const auto& b : bodies) {
      auto res = cli->Post(path.c_str(), auth, b, "application/json");
      ASSERT_TRUE(res) << path;
      EXPECT_GE(res->status, 200) << path;
      EXPECT_LT(res->status, 500) << path << " " << res->body;
    }
  }
  // Bodies over the 1 MiB cap are refused without being read into a record.
  auto huge =
      cli->Post("/api/proof/timestamp/hashes", auth, std::string(2 << 20, 'x'), "application/json");
  if (huge) {
    EXPECT_EQ(huge->status, 413);
  }
  for (const char* path :
       {"/api/v1/proof", "/api/v1/verify", "/api/proof/document", "/proof/verification",
        "/api/proof/timestamp/hashes", "/_files/simpleproof/x", "/_files/simpleproof/%00.ots"}) {
    for (const char* method : {"GET", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"}) {
      httplib::Request req;
      req.method = method;
      req.path = path;
      req.headers = auth;
      auto res = cli->send(req);
      ASSERT_TRUE(res) << method << " " << path;
      EXPECT_LT(res->status, 500) << method << " " << path;
    }
  }
  for (const char* q :
       {"?status=pending&page=999999999&limit=100", "?status=pending&page=0&limit=99999999999",
        "?status=%00&page=0&limit=1", "?hash=%zz"}) {
    auto list = cli->Get((std::string("/api/proof/document") + q).c_str(), auth);
    ASSERT_TRUE(list);
    EXPECT_LT(list->status, 500);
    auto verify = cli->Get((std::string("/api/v1/verify") + q).c_str());
    ASSERT_TRUE(verify);
    EXPECT_LT(verify->status, 500);
  }
  auto ok = cli->Post("/api/proof/timestamp/hashes", auth, json{{"hashes", {HashN(9999)}}}.dump(),
                      "application/json");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

}  // namespace
}  // namespace anchord::sandbox
