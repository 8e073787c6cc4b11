#include "libs/providers/proofd.h"

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

const char kKey[] = "proofd_live_TESTKEY_0123456789abcdef0123456789abcdef";
const char kHash[] = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const char kId[] = "7b4d95f8-91cb-4e1c-b7d6-1eb9f0de4e8d";
const char kId2[] = "0e3a1f4c-5b6d-4e7f-8a9b-0c1d2e3f4a5b";
const char kOtherHash[] = "aaaa081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00aaaa";
const Digest kDigest = *Digest::FromHex(kHash);

// proofd finds a record by its id alone.
ProofRef IdRef(const std::string& id) { return ProofRef{id, Digest(), ""}; }

std::string RecordJson(const std::string& id, const std::string& hash,
                       const std::string& status = "pending", const std::string& block = "null") {
  return absl::StrCat(R"({"id":")", id, R"(","certificate_id":"TS-0K7M6X","sha256_hash":")", hash,
                      R"(","filename":"msa-v3.pdf","file_size_bytes":248331,)",
                      R"("file_type":"application/pdf","status":")", status,
                      R"(","blockchain_tx":null,"bitcoin_block":)", block,
                      R"(,"confirmed_at":null,"created_at":"2026-04-13T18:42:11.000Z",)",
                      R"("certificate_url":"https://proofd.id/cert/TS-0K7M6X",)",
                      R"("verify_url":"https://proofd.id/verify/)", hash, R"(",)",
                      R"("ots_url":"/api/v1/timestamps/)", id, R"(/ots"})");
}

std::string ErrorJson(const std::string& code, const std::string& message = "nope",
                      const std::string& extra = "") {
  return absl::StrCat(R"({"error":{"code":")", code, R"(","message":")", message,
                      R"(","request_id":"req_body")", extra, "}}");
}

Canned Answer(int status, std::string body,
              std::vector<std::pair<std::string, std::string>> headers = {}) {
  Canned c;
  c.status = status;
  c.body = std::move(body);
  c.headers = std::move(headers);
  c.headers.emplace_back("X-Request-Id", "req_hdr");
  return c;
}

class ProofdTest : public ::testing::Test {
 protected:
  ProofdTest()
      : http_(http::MakeCurlClient()),
        create_(ratelimit::MakeLocalRateLimiter("proofd.create", {30, absl::Minutes(1)}, &clock_)),
        general_(
            ratelimit::MakeLocalRateLimiter("proofd.general", {120, absl::Minutes(1)}, &clock_)),
        metrics_(registry_) {
    ProofdConfig config;
    config.base_url = server_.url() + "/";  // trailing slash is tolerated
    config.api_key = kKey;
    config.request_timeout = absl::Seconds(10);
    ProofdDeps deps;
    deps.http = http_.get();
    deps.create_limiter = create_.get();
    deps.general_limiter = general_.get();
    deps.metrics = &metrics_;
    deps.clock = &clock_;
    provider_ = MakeProofdProvider(config, deps);
  }

  PreparedCreate Prepared(const std::string& hash = kHash) {
    auto p =
        provider_->PrepareCreate({*Digest::FromHex(hash), "msa-v3.pdf", 248331, "application/pdf"});
    EXPECT_TRUE(p.ok()) << p.status();
    return *p;
  }

  static void ExpectNoKey(const CallOutcome& o) {
    EXPECT_FALSE(absl::StrContains(o.message, kKey)) << o.message;
    EXPECT_FALSE(absl::StrContains(o.code, kKey));
    EXPECT_FALSE(absl::StrContains(o.request_id, kKey));
  }

  double Requests(const std::string& endpoint, const std::string& code) {
    return metrics_.requests.Add({{"provider", "proofd"}, {"endpoint", endpoint}, {"code", code}})
        .Value();
  }

  FakeServer server_;
  FakeClock clock_;
  std::unique_ptr<http::HttpClient> http_;
  std::unique_ptr<ratelimit::RateLimiter> create_;
  std::unique_ptr<ratelimit::RateLimiter> general_;
  prometheus::Registry registry_;
  ProviderMetrics metrics_;
  std::unique_ptr<Provider> provider_;
};

TEST(ProofdIdempotencyKey, Deterministic) {
  const std::string body = R"({"sha256_hash":"ab"})";
  const std::string k1 = ProofdIdempotencyKey("key-one", body);
  EXPECT_EQ(k1, ProofdIdempotencyKey("key-one", body));
  EXPECT_NE(k1, ProofdIdempotencyKey("key-one", body + " "));
  EXPECT_NE(k1, ProofdIdempotencyKey("key-two", body));
  ASSERT_EQ(k1.size(), 8u + 40u);
  EXPECT_TRUE(absl::StartsWith(k1, "anchord-"));
  EXPECT_EQ(k1.find_first_not_of("0123456789abcdef", 8), std::string::npos);
  EXPECT_FALSE(absl::StrContains(k1, "key-one"));
}

TEST_F(ProofdTest, PrepareCreateBuildsExactBody) {
  std::string upper = kHash;
  for (auto& c : upper) c = static_cast<char>(toupper(c));
  auto p =
      provider_->PrepareCreate({*Digest::FromHex(upper), "msa-v3.pdf", 248331, "application/pdf"});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->digest, kDigest);
  EXPECT_EQ(p->body, absl::StrCat(R"({"sha256_hash":")", kHash,
                                  R"(","filename":"msa-v3.pdf","file_size_bytes":248331,)",
                                  R"("file_type":"application/pdf"})"));
  EXPECT_EQ(p->idempotency_key, ProofdIdempotencyKey(kKey, p->body));
  auto again = provider_->PrepareCreate({kDigest, "msa-v3.pdf", 248331, "application/pdf"});
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->idempotency_key, p->idempotency_key);

  auto no_mime = provider_->PrepareCreate({kDigest, "a \"q\".txt", 1, ""});
  ASSERT_TRUE(no_mime.ok()) << no_mime.status();
  EXPECT_EQ(no_mime->body, absl::StrCat(R"({"sha256_hash":")", kHash,
                                        R"(","filename":"a \"q\".txt","file_size_bytes":1})"));
}

TEST_F(ProofdTest, PrepareCreateValidationNamesTheField) {
  // The digest is a Digest by type: malformed hex is refused where it is parsed (digest_test).
  struct Case {
    CreateInput in;
    const char* field;
  };
  const Case cases[] = {
      {{kDigest, "", 1, ""}, "filename"},
      {{kDigest, "dir/a.pdf", 1, ""}, "filename"},
      {{kDigest, "bad\xff\xfe.pdf", 1, ""}, "filename"},
      {{kDigest, "a.pdf", 0, ""}, "size_bytes"},
      {{kDigest, "a.pdf", -5, ""}, "size_bytes"},
      {{kDigest, "a.pdf", 1, "pdf"}, "mime_type"},
  };
  for (const auto& c : cases) {
    auto p = provider_->PrepareCreate(c.in);
    ASSERT_FALSE(p.ok()) << c.field;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StartsWith(p.status().message(), c.field)) << p.status();
  }
}

TEST_F(ProofdTest, CreateSendsDocumentedRequestAndParsesRecord) {
  server_.Push(Answer(201, RecordJson(kId, kHash)));
  PreparedCreate p = Prepared();
  CreateResult r = provider_->Create(p);
  ASSERT_EQ(r.outcome.kind, OutcomeKind::kOk) << r.outcome.code << " " << r.outcome.message;
  EXPECT_EQ(r.outcome.http_status, 201);
  EXPECT_EQ(r.outcome.request_id, "req_hdr");
  ASSERT_TRUE(r.record.has_value());
  EXPECT_EQ(r.record->proof_id, kId);
  EXPECT_EQ(r.record->digest.hex(), kHash);
  EXPECT_EQ(r.record->state, RecordState::kPending);
  EXPECT_EQ(r.record->certificate_url, "https://proofd.id/cert/TS-0K7M6X");
  EXPECT_EQ(r.record->created_at, absl::FromUnixSeconds(1776105731));

  auto seen = server_.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].path, "/api/v1/timestamps");
  EXPECT_EQ(seen[0].Header("Authorization"), std::string("Bearer ") + kKey);
  EXPECT_EQ(seen[0].Header("Content-Type"), "application/json");
  EXPECT_EQ(seen[0].Header("Idempotency-Key"), p.idempotency_key);
  EXPECT_EQ(seen[0].body, p.body);
  EXPECT_EQ(Requests("create", "201"), 1);
}

TEST_F(ProofdTest, ConfirmedRecordFields) {
  std::string body =
      absl::StrReplaceAll(RecordJson(kId, kHash, "confirmed", "871234"),
                          {{R"("confirmed_at":null)", R"("confirmed_at":"2026-04-13T19:42:11Z")"},
                           {R"("blockchain_tx":null)", R"("blockchain_tx":"ab12")"}});
  server_.Push(Answer(200, body));
  LookupResult r = provider_->Lookup(IdRef(kId));
  ASSERT_EQ(r.outcome.kind, OutcomeKind::kOk) << r.outcome.message;
  EXPECT_EQ(r.record->state, RecordState::kConfirmed);
  EXPECT_EQ(r.record->block_height, 871234);
  EXPECT_EQ(r.record->bitcoin_tx, "ab12");
  EXPECT_EQ(r.record->confirmed_at, absl::FromUnixSeconds(1776109331));
  EXPECT_EQ(server_.seen().at(0).path, std::string("/api/v1/timestamps/") + kId);
  EXPECT_EQ(Requests("get", "200"), 1);
}

TEST_F(ProofdTest, ErrorClassification) {
  struct Case {
    int status;
    std::string body;
    OutcomeKind kind;
    std::string code;
  };
  const std::vector<Case> cases = {
      {401, ErrorJson("INVALID_API_KEY"), OutcomeKind::kPermanent, "INVALID_API_KEY"},
      {401, ErrorJson("AUTHENTICATION_REQUIRED"), OutcomeKind::kPermanent,
       "AUTHENTICATION_REQUIRED"},
      {403, ErrorJson("PLAN_NOT_ENTITLED"), OutcomeKind::kPermanent, "PLAN_NOT_ENTITLED"},
      {400, ErrorJson("INVALID_JSON"), OutcomeKind::kPermanent, "INVALID_JSON"},
      {400, ErrorJson("INVALID_SHA256_HASH"), OutcomeKind::kPermanent, "INVALID_SHA256_HASH"},
      {400, ErrorJson("INVALID_IDEMPOTENCY_KEY"), OutcomeKind::kPermanent,
       "INVALID_IDEMPOTENCY_KEY"},
      {422, ErrorJson("IDEMPOTENCY_MISMATCH"), OutcomeKind::kPermanent, "IDEMPOTENCY_MISMATCH"},
      {404, ErrorJson("TIMESTAMP_NOT_FOUND"), OutcomeKind::kPermanent, "TIMESTAMP_NOT_FOUND"},
      {409, ErrorJson("IDEMPOTENCY_IN_PROGRESS"), OutcomeKind::kRetry, "IDEMPOTENCY_IN_PROGRESS"},
      {502, ErrorJson("OTS_PROVIDER_ERROR"), OutcomeKind::kRetry, "OTS_PROVIDER_ERROR"},
      {500, ErrorJson("INTERNAL_ERROR"), OutcomeKind::kRetry, "INTERNAL_ERROR"},
      {503, "<html>busy</html>", OutcomeKind::kRetry, "HTTP_503"},
      {402, ErrorJson("MONTHLY_LIMIT_REACHED"), OutcomeKind::kQuotaExhausted,
       "MONTHLY_LIMIT_REACHED"},
      {403, R"({"code":"MONTHLY_LIMIT_REACHED","message":"flat","request_id":"r"})",
       OutcomeKind::kQuotaExhausted, "MONTHLY_LIMIT_REACHED"},
      {418, ErrorJson("SOMETHING_NEW"), OutcomeKind::kPermanent, "SOMETHING_NEW"},
      {400, "", OutcomeKind::kPermanent, "HTTP_400"},
      {599, ErrorJson("SOMETHING_NEW"), OutcomeKind::kRetry, "SOMETHING_NEW"},
      {500, R"({"error":{"code":"bad code\n injected","message":5}})", OutcomeKind::kRetry,
       "HTTP_500"},
      {401, ErrorJson("INVALID_API_KEY", std::string("key ") + kKey + " is unknown"),
       OutcomeKind::kPermanent, "INVALID_API_KEY"},
  };
  for (const auto& c : cases) {
    server_.Push(Answer(c.status, c.body));
    CreateResult r = provider_->Create(Prepared());
    SCOPED_TRACE(c.body);
    EXPECT_EQ(r.outcome.kind, c.kind) << OutcomeKindName(r.outcome.kind);
    EXPECT_EQ(r.outcome.code, c.code);
    EXPECT_EQ(r.outcome.http_status, c.status);
    EXPECT_EQ(r.outcome.request_id, "req_hdr");
    EXPECT_FALSE(r.record.has_value());
    ExpectNoKey(r.outcome);
  }
  // None of these closed a gate.
  EXPECT_EQ(general_->blocked_until(), absl::InfinitePast());
  EXPECT_EQ(create_->blocked_until(), absl::InfinitePast());
}

TEST_F(ProofdTest, RequestIdFromEnvelopeWhenHeaderMissing) {
  Canned c;
  c.status = 500;
  c.body = ErrorJson("INTERNAL_ERROR");
  server_.Push(c);
  LookupResult r = provider_->Lookup(IdRef(kId));
  EXPECT_EQ(r.outcome.kind, OutcomeKind::kRetry);
  EXPECT_EQ(r.outcome.request_id, "req_body");
}

TEST_F(ProofdTest, ServerEchoingTheKeyNeverLeaks) {
  server_.SetHandler([](const Seen& s) {
    return Answer(400, ErrorJson("INVALID_JSON", "you sent " + s.Header("Authorization")),
                  {{"X-Request-Id", s.Header("Authorization")}});
  });
  CreateResult c = provider_->Create(Prepared());
  ExpectNoKey(c.outcome);
  EXPECT_TRUE(absl::StrContains(c.outcome.message, "[REDACTED]")) << c.outcome.message;
  ExpectNoKey(provider_->Lookup(IdRef(kId)).outcome);
  ExpectNoKey(provider_->ListPending("", 10).outcome);
  ExpectNoKey(provider_->DownloadProof(IdRef(kId)).outcome);
}

TEST_F(ProofdTest, NetworkFailureIsRetryNamingTheHost) {
  server_.Shutdown();
  CreateResult r = provider_->Create(Prepared());
  EXPECT_EQ(r.outcome.kind, OutcomeKind::kRetry);
  EXPECT_EQ(r.outcome.code, "NETWORK_ERROR");
  EXPECT_EQ(r.outcome.http_status, 0);
  EXPECT_TRUE(absl::StrContains(r.outcome.message, "127.0.0.1")) << r.outcome.message;
  ExpectNoKey(r.outcome);
  EXPECT_EQ(Requests("create", "error"), 1);
}

TEST_F(ProofdTest, RateLimitedCreateClosesBothGatesUntilRetryAfter) {
  server_.Push(Answer(429, ErrorJson("RATE_LIMITED"), {{"Retry-After", "7"}}));
  const absl::Time t0 = clock_.Now();
  CreateResult r = provider_->Create(Prepared());
  EXPECT_EQ(r.outcome.kind, OutcomeKind::kRateLimited);
  EXPECT_EQ(r.outcome.code, "RATE_LIMITED");
  EXPECT_EQ(r.outcome.retry_after, absl::Seconds(7));
  EXPECT_EQ(create_->blocked_until(), t0 + absl::Seconds(7));
  EXPECT_EQ(general_->blocked_until(), t0 + absl::Seconds(7));
  EXPECT_EQ(metrics_.rate_limited.Add({{"provider", "proofd"}}).Value(), 1);

  // The retry waits for the gate: with the fake clock the wait shows up as time passed.
  server_.Push(Answer(201, RecordJson(kId, kHash)));
  CreateResult again = provider_->Create(Prepared());
  EXPECT_EQ(again.outcome.kind, OutcomeKind::kOk);
  EXPECT_GE(clock_.Now(), t0 + absl::Seconds(7));
  EXPECT_GT(
      metrics_.rate_limit_wait_seconds.Add({{"provider", "proofd"}, {"bucket", "create"}}).Value(),
      6.9);
}

TEST_F(ProofdTest, RateLimitedGetClosesOnlyGeneralGate) {
  // HTTP 429 without a code and without Retry-After: default 60 s.
  server_.Push(Answer(429, "too many"));
  const absl::Time t0 = clock_.Now();
  LookupResult r = provider_->Lookup(IdRef(kId));
  EXPECT_EQ(r.outcome.kind, OutcomeKind::kRateLimited);
  EXPECT_EQ(r.outcome.retry_after, absl::Seconds(60));
  EXPECT_EQ(general_->blocked_until(), t0 + absl::Seconds(60));
  EXPECT_EQ(create_->blocked_until(), absl::InfinitePast());
}

TEST_F(ProofdTest, RetryAfterHttpDate) {
  const std::string date = absl::FormatTime("%a, %d %b %Y %H:%M:%S GMT",
                                            clock_.Now() + absl::Seconds(42), absl::UTCTimeZone());
  server_.Push(Answer(429, ErrorJson("RATE_LIMITED"), {{"Retry-After", date}}));
  LookupResult r = provider_->Lookup(IdRef(kId));
  EXPECT_EQ(r.outcome.retry_after, absl::Seconds(42));
}

TEST_F(ProofdTest, RateLimitHeadersCloseGateOnSuccess) {
  server_.Push(Answer(200, RecordJson(kId, kHash),
                      {{"X-RateLimit-Remaining", "0"}, {"X-RateLimit-Reset", "30"}}));
  const absl::Time t0 = clock_.Now();
  ASSERT_EQ(provider_->Lookup(IdRef(kId)).outcome.kind, OutcomeKind::kOk);
  EXPECT_EQ(general_->blocked_until(), t0 + absl::Seconds(30));

  // Epoch form.
  const int64_t epoch = absl::ToUnixSeconds(clock_.Now()) + 45;
  server_.Push(
      Answer(201, RecordJson(kId, kHash),
             {{"X-RateLimit-Remaining", "0"}, {"X-RateLimit-Reset", std::to_string(epoch)}}));
  ASSERT_EQ(provider_->Create(Prepared()).outcome.kind, OutcomeKind::kOk);
  EXPECT_EQ(create_->blocked_until(), absl::FromUnixSeconds(epoch));

  // Remaining > 0 does nothing.
  auto before = general_->blocked_until();
  server_.Push(Answer(200, RecordJson(kId, kHash),
                      {{"X-RateLimit-Remaining", "5"}, {"X-RateLimit-Reset", "3000"}}));
  ASSERT_EQ(provider_->Lookup(IdRef(kId)).outcome.kind, OutcomeKind::kOk);
  EXPECT_LE(general_->blocked_until(), before);
}

TEST_F(ProofdTest, DuplicateResolvedThroughIdInErrorBody) {
  server_.Push(Answer(409, ErrorJson("DUPLICATE_TIMESTAMP", "dup",
                                     absl::StrCat(R"(,"timestamp_id":")", kId, "\""))));
  server_.Push(Answer(200, RecordJson(kId, kHash, "confirmed", "800000")));
  CreateResult r = provider_->Create(Prepared());
  ASSERT_EQ(r.outcome.kind, OutcomeKind::kDuplicate) << r.outcome.message;
  EXPECT_TRUE(r.outcome.ok());
  EXPECT_EQ(r.outcome.code, "DUPLICATE_TIMESTAMP");
  EXPECT_EQ(r.outcome.http_status, 409);
  ASSERT_TRUE(r.record.has_value());
  EXPECT_EQ(r.record->proof_id, kId);
  EXPECT_EQ(r.record->block_height, 800000);
  auto seen = server_.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].method, "GET");
  EXPECT_EQ(seen[1].path, std::string("/api/v1/timestamps/") + kId);
}

TEST_F(ProofdTest, DuplicateResolvedByWalkingTheList) {
  const std::string cursor = "2026-04-13T18:42:11.000+00:00";
  server_.Push(Answer(409, ErrorJson("DUPLICATE_TIMESTAMP")));
  server_.Push(Answer(
      200, absl::StrCat(R"({"data":[)", RecordJson(kId2, kOtherHash),
                        R"(,{"broken":true}],"total_count":3,"next_cursor":")", cursor, "\"}")));
  std::string upper = kHash;
  for (auto& c : upper) c = static_cast<char>(toupper(c));
  server_.Push(Answer(200, absl::StrCat(R"({"data":[)", RecordJson(kId, upper),
                                        R"(],"total_count":3,"next_cursor":null})")));
  CreateResult r = provider_->Create(Prepared());
  ASSERT_EQ(r.outcome.kind, OutcomeKind::kDuplicate) << r.outcome.message;
  EXPECT_EQ(r.record->proof_id, kId);
  EXPECT_EQ(r.record->digest.hex(), kHash);
  auto seen = server_.seen();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[1].path, "/api/v1/timestamps");
  EXPECT_EQ(seen[1].Param("status"), "all");
  EXPECT_EQ(seen[1].Param("limit"), "50");
  EXPECT_EQ(seen[1].Param("before"), "");
  EXPECT_EQ(seen[2].Param("before"), cursor);  // '+' survived the query encoding
}

TEST_F(ProofdTest, DuplicateNotFoundIsRetry) {
  server_.Push(Answer(409, ErrorJson("DUPLICATE_TIMESTAMP")));
  // A server that keeps returning the same cursor must not loop forever.
  server_.SetHandler([](const Seen&) {
    return Answer(200, absl::StrCat(R"({"data":[)", RecordJson(kId2, kOtherHash),
                                    R"(],"next_cursor":"2026-01-01T00:00:00Z"})"));
  });
  CreateResult r = provider_->Create(Prepared());
  EXPECT_EQ(r.outcome.kind, OutcomeKind::kRetry);
  EXPECT_FALSE(r.record.has_value());
  EXPECT_LE(server_.seen().size(), 4u);
}

TEST_F(ProofdTest, MalformedAnswersAreRetryNotCrash) {
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  const std::vector<std::string> bodies = {
      "",
      "not json",
      R"({"id":"7b4d95f8-91cb-4e1c-b7d6-1eb)",  // truncated
      "[]",
      "null",
      "{}",
      deep,
      absl::StrReplaceAll(RecordJson(kId, kHash), {{R"("status":"pending",)", ""}}),
      absl::StrReplaceAll(RecordJson(kId, kHash),
                          {{R"("status":"pending")", R"("status":"done")"}}),
      absl::StrReplaceAll(RecordJson(kId, kHash), {{R"("status":"pending")", R"("status":7)"}}),
      RecordJson("not-a-uuid", kHash),
      RecordJson(kId, kOtherHash),  // not the hash we sent
      RecordJson(kId, "xyz"),
      RecordJson(kId, kHash, "pending", R"("12")"),
      RecordJson(kId, kHash, "pending", "1.5"),
      RecordJson(kId, kHash, "pending", "-3"),
      RecordJson(kId, kHash, "pending", "99999999999999999999"),
      absl::StrReplaceAll(RecordJson(kId, kHash), {{R"("created_at":"2026-04-13T18:42:11.000Z")",
                                                    R"("created_at":"yesterday")"}}),
      absl::StrReplaceAll(RecordJson(kId, kHash),
                          {{R"("certificate_url":"https)", R"("certificate_url":["https)"},
                           {R"(TS-0K7M6X",)", R"(TS-0K7M6X"],)"}}),
  };
  for (const auto& body : bodies) {
    SCOPED_TRACE(body.substr(0, 200));
    server_.Push(Answer(201, body));
    CreateResult r = provider_->Create(Prepared());
    EXPECT_EQ(r.outcome.kind, OutcomeKind::kRetry);
    EXPECT_EQ(r.outcome.code, "MALFORMED_RESPONSE");
    EXPECT_EQ(r.outcome.request_id, "req_hdr");
    EXPECT_FALSE(r.record.has_value());
  }
  // Lookup must also check the id it asked for.
  server_.Push(Answer(200, RecordJson(kId2, kHash)));
  EXPECT_EQ(provider_->Lookup(IdRef(kId)).outcome.code, "MALFORMED_RESPONSE");
  // A list without `data`.
  server_.Push(Answer(200, R"({"items":[]})"));
  EXPECT_EQ(provider_->ListPending("", 10).outcome.code, "MALFORMED_RESPONSE");
}

TEST_F(ProofdTest, LookupNotFoundAndInvalidId) {
  server_.Push(Answer(404, ErrorJson("TIMESTAMP_NOT_FOUND")));
  EXPECT_EQ(provider_->Lookup(IdRef(kId)).outcome.kind, OutcomeKind::kNotFound);
  LookupResult bad = provider_->Lookup(IdRef("../../admin"));
  EXPECT_EQ(bad.outcome.kind, OutcomeKind::kPermanent);
  EXPECT_EQ(bad.outcome.code, "INVALID_ID");
  EXPECT_EQ(server_.seen().size(), 1u);  // the bad id was never sent
}

TEST_F(ProofdTest, ListPendingPage) {
  server_.Push(Answer(
      200, absl::StrCat(R"({"data":[)", RecordJson(kId, kHash), ",", RecordJson("bad", kHash), ",",
                        RecordJson(kId2, kOtherHash, "confirmed", "5"),
                        R"(],"total_count":3,"next_cursor":"2026-04-13T18:42:11.000Z"})")));
  ListPendingResult r = provider_->ListPending("2026-05-01T00:00:00.000Z", 500);
  ASSERT_EQ(r.outcome.kind, OutcomeKind::kOk) << r.outcome.message;
  ASSERT_EQ(r.records.size(), 2u);  // the invalid one is skipped
  EXPECT_EQ(r.records[0].proof_id, kId);
  EXPECT_EQ(r.records[1].proof_id, kId2);
  EXPECT_EQ(r.next_cursor, "2026-04-13T18:42:11.000Z");
  auto seen = server_.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].Param("status"), "pending");
  EXPECT_EQ(seen[0].Param("limit"), "50");  // capped
  EXPECT_EQ(seen[0].Param("before"), "2026-05-01T00:00:00.000Z");
  EXPECT_TRUE(provider_->SupportsListPending());

  server_.Push(Answer(200, R"({"data":[],"total_count":0})"));
  ListPendingResult last = provider_->ListPending("", 10);
  ASSERT_EQ(last.outcome.kind, OutcomeKind::kOk);
  EXPECT_TRUE(last.records.empty());
  EXPECT_TRUE(last.next_cursor.empty());
  EXPECT_EQ(Requests("list", "200"), 2);
}

TEST_F(ProofdTest, DownloadProof) {
  const std::string ots =
      std::string("\x00OpenTimestamps\x00\x00Proof\x00\xbf\x89\xe2\xe8\x84\xe8\x92\x94", 31) +
      std::string("\x01\x08", 2) + std::string(32, '\x11') + "\x00tail";
  Canned c = Answer(200, ots);
  c.content_type = "application/octet-stream";
  server_.Push(c);
  DownloadResult r = provider_->DownloadProof(IdRef(kId));
  ASSERT_EQ(r.outcome.kind, OutcomeKind::kOk) << r.outcome.message;
  EXPECT_EQ(r.ots, ots);
  EXPECT_EQ(server_.seen().at(0).path, absl::StrCat("/api/v1/timestamps/", kId, "/ots"));

  server_.Push(Answer(404, ErrorJson("OTS_NOT_FOUND")));
  EXPECT_EQ(provider_->DownloadProof(IdRef(kId)).outcome.kind, OutcomeKind::kNotFound);
  server_.Push(Answer(404, ErrorJson("TIMESTAMP_NOT_FOUND")));
  EXPECT_EQ(provider_->DownloadProof(IdRef(kId)).outcome.kind, OutcomeKind::kNotFound);
  server_.Push(Answer(200, R"({"ok":true})"));
  EXPECT_EQ(provider_->DownloadProof(IdRef(kId)).outcome.code, "MALFORMED_RESPONSE");
  EXPECT_EQ(Requests("ots", "404"), 2);
}

TEST_F(ProofdTest, StopCancelsAPacingWait) {
  // Real-clock limiter whose gate is closed for an hour: Stop must release the waiting call.
  anchord::testing::SleepWatchClock clock;
  auto gate = ratelimit::MakeLocalRateLimiter("proofd.general", {120, absl::Minutes(1)}, &clock);
  ProofdConfig config;
  config.base_url = server_.url();
  config.api_key = kKey;
  ProofdDeps deps;
  deps.http = http_.get();
  deps.general_limiter = gate.get();
  auto provider = MakeProofdProvider(config, deps);
  gate->BlockUntil(absl::Now() + absl::Hours(1));
  LookupResult r;
  std::thread t([&] { r = provider->Lookup(IdRef(kId)); });
  EXPECT_TRUE(anchord::testing::WaitUntil([&] { return clock.sleeps() > 0; }, absl::Seconds(10)));
  provider->Stop();
  t.join();
  EXPECT_EQ(r.outcome.kind, OutcomeKind::kRetry);
  EXPECT_EQ(r.outcome.code, "CANCELLED");
  EXPECT_TRUE(server_.seen().empty());
}

}  // namespace
}  // namespace anchord::providers
