// The ProofLedger adapter against canned answers over loopback: the wire it speaks, every outcome
// class, duplicates, validation of every field it returns, Retry-After gates, the verify budget.
#include "libs/providers/proofledger.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "tests/providers/fake_server.h"
#include "tests/testing/wait.h"
#include "tests/providers/sleep_watch_clock.h"

namespace anchord::providers {
namespace {

using anchord::testing::Canned;
using anchord::testing::FakeServer;
using anchord::testing::Seen;

const char kKey[] = "sk_live_TESTKEY_0123456789abcdef0123456789";
const char kHash[] = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const Digest kDigest = *Digest::FromHex(kHash);
const char kOtherHash[] = "aaaa081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00aaaa";
const char kId[] = "pl_0123456789abcdef01234567";
const char kId2[] = "pl_fedcba9876543210fedcba98";

std::string RecordJson(const std::string& id, const std::string& hash,
                       const std::string& extra = "") {
  return absl::StrCat(R"({"id":")", id, R"(","sha256":")", hash,
                      R"(","filename":"claim.pdf","status":"pending",)",
                      R"("certificate_url":"https://proofledger.io/certificate/)", id,
                      R"(","created_at":"2026-04-13T18:42:11Z")", extra, "}");
}

std::string VerifyJson(const std::string& id, const std::string& hash, const std::string& status,
                       const std::string& block = "null", const std::string& tx = "null") {
  return absl::StrCat(R"({"sha256":")", hash, R"(","verified":true,"status":")", status,
                      R"(","proof_id":")", id,
                      R"(","certificate_url":"https://proofledger.io/certificate/)", id,
                      R"(","bitcoin_block":)", block, R"(,"bitcoin_tx":)", tx, R"(,"anchored_at":)",
                      status == "confirmed" ? R"("2026-04-13T19:42:11Z")" : "null", "}");
}

Canned Answer(int status, std::string body,
              std::vector<std::pair<std::string, std::string>> headers = {}) {
  Canned c;
  c.status = status;
  c.body = std::move(body);
  c.headers = std::move(headers);
  return c;
}

std::string Err(const std::string& message) {
  return absl::StrCat(R"({"error":")", message, R"("})");
}

class ProofLedgerTest : public ::testing::Test {
 protected:
  ProofLedgerTest()
      : http_(http::MakeCurlClient()),
        create_(
            ratelimit::MakeLocalRateLimiter("proofledger.create", {30, absl::Minutes(1)}, &clock_)),
        verify_(
            ratelimit::MakeLocalRateLimiter("proofledger.verify", {120, absl::Hours(1)}, &clock_)),
        metrics_(registry_) {
    provider_ = Make(server_.url() + "/");
  }

  std::unique_ptr<Provider> Make(const std::string& url) {
    ProofLedgerConfig config;
    config.base_url = url;
    config.api_key = kKey;
    config.request_timeout = absl::Seconds(10);
    ProofLedgerDeps deps;
    deps.http = http_.get();
    deps.create_limiter = create_.get();
    deps.verify_limiter = verify_.get();
    deps.metrics = &metrics_;
    deps.clock = &clock_;
    return MakeProofLedgerProvider(config, deps);
  }

  PreparedCreate Prepared(const std::string& hash = kHash) {
    auto p =
        provider_->PrepareCreate({*Digest::FromHex(hash), "claim.pdf", 1234, "application/pdf"});
    EXPECT_TRUE(p.ok()) << p.status();
    return *p;
  }

  static void ExpectNoKey(const CallOutcome& o) {
    EXPECT_FALSE(absl::StrContains(o.message, kKey)) << o.message;
    EXPECT_FALSE(absl::StrContains(o.code, kKey));
    EXPECT_FALSE(absl::StrContains(o.request_id, kKey));
  }

  double Requests(const std::string& endpoint, const std::string& code) {
    return metrics_.requests
        .Add({{"provider", "proofledger"}, {"endpoint", endpoint}, {"code", code}})
        .Value();
  }

  FakeServer server_;
  FakeClock clock_;
  std::unique_ptr<http::HttpClient> http_;
  std::unique_ptr<ratelimit::RateLimiter> create_;
  std::unique_ptr<ratelimit::RateLimiter> verify_;
  prometheus::Registry registry_;
  ProviderMetrics metrics_;
  std::unique_ptr<Provider> provider_;
};

TEST_F(ProofLedgerTest, PrepareCreateBuildsTheDocumentedBody) {
  std::string upper = kHash;
  for (auto& c : upper) c = static_cast<char>(toupper(c));
  auto p = provider_->PrepareCreate({*Digest::FromHex(upper), "claim \"1\".pdf", 5, ""});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->digest, kDigest);
  EXPECT_EQ(p->body, absl::StrCat(R"({"sha256":")", kHash, R"(","filename":"claim \"1\".pdf"})"));
  EXPECT_TRUE(p->idempotency_key.empty());
  EXPECT_FALSE(p->maybe_sent);

  for (const auto& [in, field] : std::vector<std::pair<CreateInput, std::string>>{
           {{kDigest, "", 1, ""}, "filename"},
           {{kDigest, "a/b.pdf", 1, ""}, "filename"},
           {{kDigest, "bad\xff.pdf", 1, ""}, "filename"}}) {
    auto bad = provider_->PrepareCreate(in);
    ASSERT_FALSE(bad.ok()) << field;
    EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StartsWith(bad.status().message(), field)) << bad.status();
  }
  EXPECT_FALSE(provider_->OffersOts());
  EXPECT_FALSE(provider_->SupportsListPending());
  EXPECT_EQ(provider_->max_batch(), 1);
  EXPECT_EQ(provider_->ParseCallback("{}").status().code(), absl::StatusCode::kUnimplemented);
}

TEST_F(ProofLedgerTest, CreateSpeaksTheDocumentedWire) {
  server_.Push(Answer(201, RecordJson(kId, kHash), {{"X-Request-Id", "req_1"}}));
  PreparedCreate p = Prepared();
  CreateResult r = provider_->Create(p);
  ASSERT_EQ(r.outcome.kind, OutcomeKind::kOk) << r.outcome.code << " " << r.outcome.message;
  EXPECT_EQ(r.outcome.http_status, 201);
  EXPECT_EQ(r.outcome.request_id, "req_1");
  ASSERT_TRUE(r.record.has_value());
  EXPECT_EQ(r.record->proof_id, kId);
  EXPECT_EQ(r.record->digest.hex(), kHash);
  EXPECT_EQ(r.record->state, RecordState::kPending);
  EXPECT_EQ(r.record->certificate_url, absl::StrCat("https://proofledger.io/certificate/", kId));
  EXPECT_TRUE(r.record->duplicate_of.empty());
  EXPECT_TRUE(r.record->evidence.empty());
  EXPECT_EQ(r.record->created_at, absl::FromUnixSeconds(1776105731));

  auto seen = server_.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].path, "/api/v1/proof");
  EXPECT_EQ(seen[0].Header("Authorization"), std::string("Bearer ") + kKey);
  EXPECT_EQ(seen[0].Header("Content-Type"), "application/json");
  EXPECT_EQ(seen[0].Header("Idempotency-Key"), "");
  EXPECT_EQ(seen[0].body, p.body);
  EXPECT_EQ(Requests("create", "201"), 1);
}

TEST_F(ProofLedgerTest, DuplicateOfLinksToTheOriginal) {
  // The sandbox's shape: 200, the original's own fields, plus duplicate_of.
  server_.Push(
      Answer(200, RecordJson(kId, kHash, absl::StrCat(R"(,"duplicate_of":")", kId, "\""))));
  CreateResult r = provider_->Create(Prepared());
  ASSERT_EQ(r.outcome.kind, OutcomeKind::kDuplicate) << r.outcome.message;
  EXPECT_TRUE(r.outcome.ok());
  ASSERT_TRUE(r.record.has_value());
  EXPECT_EQ(r.record->proof_id, kId);
  EXPECT_EQ(r.record->duplicate_of, kId);
  EXPECT_EQ(r.record->certificate_url, absl::StrCat("https://proofledger.io/certificate/", kId));

  // Another reasonable shape: an id of this request, duplicate_of the original. The record is the
  // original; fields that may describe the request are not taken.
  server_.Push(
      Answer(201, RecordJson(kId2, kHash, absl::StrCat(R"(,"duplicate_of":")", kId, "\""))));
  r = provider_->Create(Prepared());
  ASSERT_EQ(r.outcome.kind, OutcomeKind::kDuplicate) << r.outcome.message;
  EXPECT_EQ(r.record->proof_id, kId);
  EXPECT_EQ(r.record->duplicate_of, kId);
  EXPECT_TRUE(r.record->certificate_url.empty());

  // And a 409 carrying duplicate_of.
  server_.Push(Answer(409, absl::StrCat(R"({"error":"duplicate","duplicate_of":")", kId, "\"}")));
  r = provider_->Create(Prepared());
  ASSERT_EQ(r.outcome.kind, OutcomeKind::kDuplicate) << r.outcome.message;
  EXPECT_EQ(r.record->proof_id, kId);
  EXPECT_EQ(r.outcome.http_status, 409);

  // Never a second anchor: each create was one request, nothing else was asked.
  EXPECT_EQ(server_.seen().size(), 3u);
}

TEST_F(ProofLedgerTest, MaybeSentIsSentAsIsAndAnsweredWithDuplicateOf) {
  PreparedCreate p = Prepared();
  p.maybe_sent = true;
  server_.Push(
      Answer(200, RecordJson(kId, kHash, absl::StrCat(R"(,"duplicate_of":")", kId, "\""))));
  CreateResult r = provider_->Create(p);
  EXPECT_EQ(r.outcome.kind, OutcomeKind::kDuplicate);
  auto seen = server_.seen();
  ASSERT_EQ(seen.size(), 1u);  // no verify first: duplicate_of already guards the quota
  EXPECT_EQ(seen[0].path, "/api/v1/proof");
}

TEST_F(ProofLedgerTest, ErrorClassification) {
  struct Case {
    int status;
    std::string body;
    OutcomeKind kind;
  };
  const std::vector<Case> cases = {
      {400, Err("invalid sha256"), OutcomeKind::kPermanent},
      {401, Err("invalid api key"), OutcomeKind::kPermanent},
      {403, Err("plan has no API access"), OutcomeKind::kPermanent},
      {404, Err("not found"), OutcomeKind::kPermanent},
      {402, Err("quota"), OutcomeKind::kQuotaExhausted},
      {500, Err("boom"), OutcomeKind::kRetry},
      {502, "<html>bad gateway</html>", OutcomeKind::kRetry},
      {503, "", OutcomeKind::kRetry},
      {408, "", OutcomeKind::kRetry},
      {401, Err(std::string("key ") + kKey + " unknown"), OutcomeKind::kPermanent},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(absl::StrCat(c.status, " ", c.body));
    server_.Push(Answer(c.status, c.body));
    CreateResult r = provider_->Create(Prepared());
    EXPECT_EQ(r.outcome.kind, c.kind) << OutcomeKindName(r.outcome.kind);
    EXPECT_EQ(r.outcome.code, absl::StrCat("HTTP_", c.status));
    EXPECT_EQ(r.outcome.http_status, c.status);
    EXPECT_FALSE(r.record.has_value());
    ExpectNoKey(r.outcome);
  }
  server_.Push(Answer(403, Err("plan has no API access")));
  EXPECT_EQ(provider_->Create(Prepared()).outcome.message, "plan has no API access");
  // A structured error code is kept.
  server_.Push(Answer(400, R"({"error":{"code":"INVALID_HASH","message":"bad"}})"));
  EXPECT_EQ(provider_->Create(Prepared()).outcome.code, "INVALID_HASH");
  EXPECT_EQ(create_->blocked_until(), absl::InfinitePast());
}

TEST_F(ProofLedgerTest, ServerEchoingTheKeyNeverLeaks) {
  server_.SetHandler([](const Seen& s) {
    return Answer(400, Err("you sent " + s.Header("Authorization")),
                  {{"X-Request-Id", s.Header("Authorization")}});
  });
  CreateResult c = provider_->Create(Prepared());
  ExpectNoKey(c.outcome);
  EXPECT_TRUE(absl::StrContains(c.outcome.message, "[REDACTED]")) << c.outcome.message;
  ExpectNoKey(provider_->Lookup({kId, kDigest, ""}).outcome);
}

TEST_F(ProofLedgerTest, NetworkFailureIsRetry) {
  server_.Shutdown();
  CreateResult r = provider_->Create(Prepared());
  EXPECT_EQ(r.outcome.kind, OutcomeKind::kRetry);
  EXPECT_EQ(r.outcome.code, "NETWORK_ERROR");
  EXPECT_EQ(r.outcome.http_status, 0);
  ExpectNoKey(r.outcome);
  EXPECT_EQ(provider_->Lookup({kId, kDigest, ""}).outcome.code, "NETWORK_ERROR");
  EXPECT_EQ(Requests("create", "error"), 1);
}

TEST_F(ProofLedgerTest, RateLimitedCreateClosesTheCreateGate) {
  server_.Push(Answer(429, Err("slow down"), {{"Retry-After", "7"}}));
  const absl::Time t0 = clock_.Now();
  CreateResult r = provider_->Create(Prepared());
  EXPECT_EQ(r.outcome.kind, OutcomeKind::kRateLimited);
  EXPECT_EQ(r.outcome.retry_after, absl::Seconds(7));
  EXPECT_EQ(create_->blocked_until(), t0 + absl::Seconds(7));
  EXPECT_EQ(verify_->blocked_until(), absl::InfinitePast());  // a separate budget
  EXPECT_EQ(metrics_.rate_limited.Add({{"provider", "proofledger"}}).Value(), 1);

  // The next create waits for the gate (with the fake clock: time moved on) before it leaves.
  server_.Push(Answer(201, RecordJson(kId, kHash)));
  EXPECT_EQ(provider_->Create(Prepared()).outcome.kind, OutcomeKind::kOk);
  EXPECT_GE(clock_.Now(), t0 + absl::Seconds(7));

  // Without Retry-After: the default wait.
  server_.Push(Answer(429, Err("slow down")));
  const absl::Time t1 = clock_.Now();
  r = provider_->Create(Prepared());
  EXPECT_EQ(r.outcome.retry_after, absl::Seconds(60));
  EXPECT_EQ(create_->blocked_until(), t1 + absl::Seconds(60));
}

TEST_F(ProofLedgerTest, MalformedAnswersAreRetryNeverARecord) {
  const std::vector<std::string> bodies = {
      "",
      "not json",
      "[]",
      "{}",
      R"({"status":"pending"})",
      RecordJson("../admin", kHash),
      RecordJson("pl_ok", kOtherHash),  // not the hash sent
      RecordJson("pl_ok", "xyz"),
      absl::StrReplaceAll(RecordJson(kId, kHash),
                          {{R"("status":"pending")", R"("status":"done")"}}),
      absl::StrReplaceAll(RecordJson(kId, kHash), {{R"("status":"pending")", R"("status":3)"}}),
      absl::StrReplaceAll(RecordJson(kId, kHash),
                          {{"https://proofledger.io/certificate/", "javascript:alert(1)//"}}),
      absl::StrReplaceAll(RecordJson(kId, kHash), {{"2026-04-13T18:42:11Z", "yesterday"}}),
      RecordJson(kId, kHash, R"(,"duplicate_of":"../x")"),
      RecordJson(kId, kHash, R"(,"duplicate_of":17)"),
  };
  for (const auto& body : bodies) {
    SCOPED_TRACE(body);
    server_.Push(Answer(201, body));
    CreateResult r = provider_->Create(Prepared());
    EXPECT_EQ(r.outcome.kind, OutcomeKind::kRetry);
    EXPECT_EQ(r.outcome.code, "MALFORMED_RESPONSE");
    EXPECT_FALSE(r.record.has_value());
  }
}

TEST_F(ProofLedgerTest, LookupUsesThePublicVerifyEndpointWithoutTheKey) {
  server_.Push(Answer(200, VerifyJson(kId, kHash, "pending")));
  LookupResult r = provider_->Lookup({kId, kDigest, ""});
  ASSERT_EQ(r.outcome.kind, OutcomeKind::kOk) << r.outcome.message;
  EXPECT_EQ(r.record->state, RecordState::kPending);
  EXPECT_EQ(r.record->proof_id, kId);
  EXPECT_EQ(r.record->certificate_url, absl::StrCat("https://proofledger.io/certificate/", kId));
  EXPECT_EQ(r.record->verify_url, absl::StrCat(server_.url(), "/api/v1/verify?hash=", kHash));
  auto seen = server_.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "GET");
  EXPECT_EQ(seen[0].path, "/api/v1/verify");
  EXPECT_EQ(seen[0].Param("hash"), kHash);
  EXPECT_EQ(seen[0].Header("Authorization"), "");
  for (const auto& [k, v] : seen[0].headers) EXPECT_FALSE(absl::StrContains(v, kKey)) << k;

  const std::string tx(64, 'b');
  server_.Push(Answer(200, VerifyJson(kId, kHash, "confirmed", "871234", "\"" + tx + "\"")));
  r = provider_->Lookup({kId, kDigest, ""});
  ASSERT_EQ(r.outcome.kind, OutcomeKind::kOk) << r.outcome.message;
  EXPECT_EQ(r.record->state, RecordState::kConfirmed);
  EXPECT_EQ(r.record->block_height, 871234);
  EXPECT_EQ(r.record->bitcoin_tx, tx);
  EXPECT_EQ(r.record->confirmed_at, absl::FromUnixSeconds(1776109331));
  EXPECT_TRUE(r.record->evidence.empty());

  server_.Push(Answer(404, Err("not found")));
  EXPECT_EQ(provider_->Lookup({kId, kDigest, ""}).outcome.kind, OutcomeKind::kNotFound);
  server_.Push(Answer(500, Err("boom")));
  EXPECT_EQ(provider_->Lookup({kId, kDigest, ""}).outcome.kind, OutcomeKind::kRetry);
  EXPECT_EQ(Requests("verify", "200"), 2);

  // Validation: another proof for our hash, another hash, a bad block, a bad tx.
  for (const std::string& body :
       {VerifyJson(kId2, kHash, "pending"), VerifyJson(kId, kOtherHash, "pending"),
        VerifyJson(kId, kHash, "confirmed", "-1"),
        VerifyJson(kId, kHash, "confirmed", "1", "\"zz\""), VerifyJson(kId, kHash, "weird"),
        std::string("{\"verified\":\"yes\"}")}) {
    SCOPED_TRACE(body);
    server_.Push(Answer(200, body));
    LookupResult bad = provider_->Lookup({kId, kDigest, ""});
    EXPECT_EQ(bad.outcome.code, "MALFORMED_RESPONSE");
    EXPECT_FALSE(bad.record.has_value());
  }
  // A bad id is never sent (a bad digest cannot be a Digest).
  const size_t before = server_.seen().size();
  EXPECT_EQ(provider_->Lookup({"../x", kDigest, ""}).outcome.kind, OutcomeKind::kPermanent);
  EXPECT_EQ(server_.seen().size(), before);
}

TEST_F(ProofLedgerTest, VerifyBudgetIsCountedAndA429ClosesOnlyItsGate) {
  EXPECT_EQ(provider_->LookupBudgetRemaining(), 120);
  server_.SetHandler([](const Seen&) { return Answer(200, VerifyJson(kId, kHash, "pending")); });
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(provider_->Lookup({kId, kDigest, ""}).outcome.kind, OutcomeKind::kOk);
  EXPECT_EQ(provider_->LookupBudgetRemaining(), 117);

  // The server's own count wins while it is current (the budget is per IP, shared).
  server_.Push(Answer(200, VerifyJson(kId, kHash, "pending"),
                      {{"X-RateLimit-Remaining", "5"}, {"X-RateLimit-Reset", "600"}}));
  ASSERT_EQ(provider_->Lookup({kId, kDigest, ""}).outcome.kind, OutcomeKind::kOk);
  EXPECT_EQ(provider_->LookupBudgetRemaining(), 5);

  server_.Push(Answer(429, Err("too many"), {{"Retry-After", "900"}}));
  const absl::Time t0 = clock_.Now();
  LookupResult r = provider_->Lookup({kId, kDigest, ""});
  EXPECT_EQ(r.outcome.kind, OutcomeKind::kRateLimited);
  EXPECT_EQ(r.outcome.retry_after, absl::Seconds(900));
  EXPECT_EQ(verify_->blocked_until(), t0 + absl::Seconds(900));
  EXPECT_EQ(create_->blocked_until(), absl::InfinitePast());
  EXPECT_EQ(provider_->LookupBudgetRemaining(), 0);

  // An hour later the window has emptied.
  clock_.Advance(absl::Hours(1) + absl::Seconds(1));
  EXPECT_EQ(provider_->LookupBudgetRemaining(), 120);
}

TEST_F(ProofLedgerTest, VerifyLimiterPacesLookups) {
  auto tight = ratelimit::MakeLocalRateLimiter("proofledger.verify", {2, absl::Hours(1)}, &clock_);
  ProofLedgerConfig config;
  config.base_url = server_.url();
  config.api_key = kKey;
  config.verify_limit = 2;
  ProofLedgerDeps deps;
  deps.http = http_.get();
  deps.verify_limiter = tight.get();
  deps.clock = &clock_;
  auto p = MakeProofLedgerProvider(config, deps);
  server_.SetHandler([](const Seen&) { return Answer(200, VerifyJson(kId, kHash, "pending")); });
  const absl::Time t0 = clock_.Now();
  for (int i = 0; i < 3; ++i)
    ASSERT_EQ(p->Lookup({kId, kDigest, ""}).outcome.kind, OutcomeKind::kOk);
  EXPECT_GE(clock_.Now(), t0 + absl::Hours(1));  // the third waited out the window
}

TEST_F(ProofLedgerTest, AWaitForTheVerifyBudgetDoesNotHoldCreatesUp) {
  anchord::testing::SleepWatchClock clock;
  auto verify_gate =
      ratelimit::MakeLocalRateLimiter("proofledger.verify", {120, absl::Hours(1)}, &clock);
  ProofLedgerConfig config;
  config.base_url = server_.url();
  config.api_key = kKey;
  ProofLedgerDeps deps;
  deps.http = http_.get();
  deps.verify_limiter = verify_gate.get();
  auto provider = MakeProofLedgerProvider(config, deps);
  verify_gate->BlockUntil(absl::Now() + absl::Hours(1));
  LookupResult waiting;
  std::thread t([&] { waiting = provider->Lookup({kId, kDigest, ""}); });
  EXPECT_TRUE(anchord::testing::WaitUntil([&] { return clock.sleeps() > 0; }, absl::Seconds(10)));
  server_.Push(Answer(201, RecordJson(kId, kHash)));
  CreateResult c = provider->Create(Prepared());  // must not queue behind the lookup
  EXPECT_EQ(c.outcome.kind, OutcomeKind::kOk) << c.outcome.message;
  provider->Stop();
  t.join();
  EXPECT_EQ(waiting.outcome.code, "CANCELLED");
  EXPECT_EQ(server_.seen().size(), 1u);
}

TEST_F(ProofLedgerTest, NoOtsNoList) {
  DownloadResult d = provider_->DownloadProof({kId, kDigest, ""});
  EXPECT_EQ(d.outcome.kind, OutcomeKind::kNotFound);
  EXPECT_TRUE(d.ots.empty());
  EXPECT_EQ(provider_->ListPending("", 10).outcome.kind, OutcomeKind::kPermanent);
  EXPECT_TRUE(server_.seen().empty());
}

TEST_F(ProofLedgerTest, StopCancelsAPacingWait) {
  anchord::testing::SleepWatchClock clock;
  auto gate = ratelimit::MakeLocalRateLimiter("proofledger.create", {30, absl::Minutes(1)}, &clock);
  ProofLedgerConfig config;
  config.base_url = server_.url();
  config.api_key = kKey;
  ProofLedgerDeps deps;
  deps.http = http_.get();
  deps.create_limiter = gate.get();
  auto provider = MakeProofLedgerProvider(config, deps);
  gate->BlockUntil(absl::Now() + absl::Hours(1));
  CreateResult r;
  PreparedCreate p = Prepared();
  std::thread t([&] { r = provider->Create(p); });
  EXPECT_TRUE(anchord::testing::WaitUntil([&] { return clock.sleeps() > 0; }, absl::Seconds(10)));
  provider->Stop();
  t.join();
  EXPECT_EQ(r.outcome.kind, OutcomeKind::kRetry);
  EXPECT_EQ(r.outcome.code, "CANCELLED");
  EXPECT_TRUE(server_.seen().empty());
}

}  // namespace
}  // namespace anchord::providers
