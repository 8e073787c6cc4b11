// The SimpleProof adapter against canned answers over loopback: batches, per-digest results,
// maybe_sent checks, verification with immediate .ots download and its validation, the pending
// list walk, callbacks, every outcome class, Retry-After gates.
#include "libs/providers/simpleproof.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <prometheus/registry.h>

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "libs/common/hex.h"
#include "tests/providers/fake_server.h"
#include "tests/testing/wait.h"
#include "tests/providers/sleep_watch_clock.h"
#include "tests/providers/ots_fixtures.h"

namespace anchord::providers {
namespace {

using anchord::testing::Canned;
using anchord::testing::FakeServer;
using anchord::testing::Seen;
using json = nlohmann::json;

const char kToken[] = "sp_live_TESTTOKEN_0123456789abcdef";

std::string Digest(int i) {
  std::string d(32, '\0');
  d[0] = static_cast<char>(i);
  d[1] = static_cast<char>(i >> 8);
  d[31] = static_cast<char>(i * 7 + 1);
  return d;
}
std::string Hex(int i) { return HexEncode(Digest(i)); }
// Digest(i) as the type the interface takes.
anchord::Digest D(int i) { return *anchord::Digest::FromBytes(Digest(i)); }

Canned Json(int status, const json& j,
            std::vector<std::pair<std::string, std::string>> headers = {}) {
  Canned c;
  c.status = status;
  c.body = j.dump();
  c.headers = std::move(headers);
  return c;
}

Canned Bytes(int status, std::string body) {
  Canned c;
  c.status = status;
  c.body = std::move(body);
  c.content_type = "application/octet-stream";
  return c;
}

json Doc(const std::string& hex, bool confirmed, const std::string& ots_url = "") {
  return json{{"hash", hex},
              {"name", "claim.pdf"},
              {"creation_date", "2024-03-27T18:29:17.684Z"},
              {"confirmed", confirmed},
              {"confirmed_at", confirmed ? json("2024-03-28T01:00:00Z") : json(nullptr)},
              {"url", "https://verify.simpleproof.com/SP/" + hex},
              {"file_download_url", ""},
              {"ots_download_url", ots_url},
              {"download_url_expiration_time", 1800}};
}

json Verification(std::vector<json> docs) {
  return json{{"ok", true}, {"totalDocuments", docs.size()}, {"documents", docs}};
}

class SimpleProofTest : public ::testing::Test {
 protected:
  SimpleProofTest()
      : http_(http::MakeCurlClient()),
        limiter_(ratelimit::MakeLocalRateLimiter("simpleproof.general", {60, absl::Minutes(1)},
                                                 &clock_)),
        metrics_(registry_) {
    provider_ = Make(25, "https://hooks.example.com/sp");
  }

  std::unique_ptr<Provider> Make(int batch, const std::string& callback) {
    SimpleProofConfig config;
    config.base_url = server_.url();
    config.api_key = kToken;
    config.callback_url = callback;
    config.batch_size = batch;
    config.request_timeout = absl::Seconds(10);
    config.default_retry_after = absl::Seconds(45);
    SimpleProofDeps deps;
    deps.http = http_.get();
    deps.limiter = limiter_.get();
    deps.metrics = &metrics_;
    deps.clock = &clock_;
    return MakeSimpleProofProvider(config, deps);
  }

  PreparedCreate Prepared(int i, bool maybe_sent = false) {
    auto p = provider_->PrepareCreate({D(i), "f.pdf", 10, ""});
    EXPECT_TRUE(p.ok()) << p.status();
    p->maybe_sent = maybe_sent;
    return *p;
  }

  // Answers creates by echoing the hashes, verifications from `held` (hex -> document).
  void EchoServer(std::map<std::string, json> held = {}) {
    server_.SetHandler([held](const Seen& s) {
      json body = json::parse(s.body, nullptr, false);
      if (s.path == "/api/proof/timestamp/hashes") {
        return Json(200, json{{"ok", true}, {"files", body["hashes"]}});
      }
      if (s.path == "/proof/verification") {
        auto it = held.find(body["hash"].get<std::string>());
        if (it == held.end()) return Json(200, Verification({}));
        return Json(200, Verification({it->second}));
      }
      return Json(404, json{{"ok", false}, {"msg", "no route"}});
    });
  }

  static void ExpectNoKey(const CallOutcome& o) {
    EXPECT_FALSE(absl::StrContains(o.message, kToken)) << o.message;
    EXPECT_FALSE(absl::StrContains(o.code, kToken));
    EXPECT_FALSE(absl::StrContains(o.request_id, kToken));
  }

  FakeServer server_;
  FakeClock clock_;
  std::unique_ptr<http::HttpClient> http_;
  std::unique_ptr<ratelimit::RateLimiter> limiter_;
  prometheus::Registry registry_;
  ProviderMetrics metrics_;
  std::unique_ptr<Provider> provider_;
};

TEST_F(SimpleProofTest, PrepareAndBatchSize) {
  auto p = provider_->PrepareCreate({D(1), "f.pdf", 10, ""});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->digest, D(1));
  EXPECT_EQ(p->body, Hex(1));
  EXPECT_TRUE(p->idempotency_key.empty());
  EXPECT_EQ(provider_->max_batch(), 25);
  EXPECT_EQ(Make(10, "")->max_batch(), 10);
  EXPECT_EQ(Make(99, "")->max_batch(), 25);
  EXPECT_TRUE(provider_->SupportsListPending());
  EXPECT_TRUE(provider_->OffersOts());
  EXPECT_EQ(provider_->LookupBudgetRemaining(), -1);
}

TEST_F(SimpleProofTest, A25BatchIsOneRequestAnd26AreSplitByTheCaller) {
  EchoServer();
  std::vector<PreparedCreate> batch;
  for (int i = 0; i < 26; ++i) batch.push_back(Prepared(i));
  // The caller splits at max_batch().
  const size_t n = static_cast<size_t>(provider_->max_batch());
  std::vector<PreparedCreate> first(batch.begin(), batch.begin() + n);
  std::vector<PreparedCreate> rest(batch.begin() + n, batch.end());
  std::vector<CreateResult> r1 = provider_->CreateBatch(first);
  std::vector<CreateResult> r2 = provider_->CreateBatch(rest);
  ASSERT_EQ(r1.size(), 25u);
  ASSERT_EQ(r2.size(), 1u);
  for (size_t i = 0; i < 25; ++i) {
    ASSERT_EQ(r1[i].outcome.kind, OutcomeKind::kOk) << i << " " << r1[i].outcome.message;
    EXPECT_EQ(r1[i].record->proof_id, Hex(static_cast<int>(i)));  // the digest is the id
    EXPECT_EQ(r1[i].record->digest.hex(), Hex(static_cast<int>(i)));
    EXPECT_EQ(r1[i].record->state, RecordState::kPending);
  }
  EXPECT_EQ(r2[0].record->proof_id, Hex(25));

  auto seen = server_.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].path, "/api/proof/timestamp/hashes");
  EXPECT_EQ(seen[0].Header("x-access-token"), kToken);
  EXPECT_EQ(seen[0].Header("Authorization"), "");
  EXPECT_EQ(seen[0].Header("Content-Type"), "application/json");
  json body = json::parse(seen[0].body);
  EXPECT_EQ(body["callback_url"], "https://hooks.example.com/sp");
  ASSERT_EQ(body["hashes"].size(), 25u);
  EXPECT_EQ(body["hashes"][24], Hex(24));
  EXPECT_EQ(json::parse(seen[1].body)["hashes"].size(), 1u);
  EXPECT_EQ(
      metrics_.requests.Add({{"provider", "simpleproof"}, {"endpoint", "create"}, {"code", "200"}})
          .Value(),
      2);

  // Handed 26 at once anyway, the adapter still never sends more than 25 in one request.
  std::vector<CreateResult> all = provider_->CreateBatch(batch);
  ASSERT_EQ(all.size(), 26u);
  for (const auto& r : all) EXPECT_EQ(r.outcome.kind, OutcomeKind::kOk);
  seen = server_.seen();
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(json::parse(seen[2].body)["hashes"].size(), 25u);
  EXPECT_EQ(json::parse(seen[3].body)["hashes"].size(), 1u);

  // Without a callback URL none is sent; a configured smaller batch is honoured.
  auto small = Make(10, "");
  EXPECT_EQ(
      small->CreateBatch(std::vector<PreparedCreate>(batch.begin(), batch.begin() + 12)).size(),
      12u);
  seen = server_.seen();
  ASSERT_EQ(seen.size(), 6u);
  EXPECT_FALSE(json::parse(seen[4].body).contains("callback_url"));
  EXPECT_EQ(json::parse(seen[4].body)["hashes"].size(), 10u);
}

TEST_F(SimpleProofTest, ADigestMissingFromFilesIsRetryForThatDigestOnly) {
  server_.Push(Json(200, json{{"ok", true}, {"files", {Hex(1), absl::AsciiStrToUpper(Hex(3))}}}));
  std::vector<CreateResult> r = provider_->CreateBatch({Prepared(1), Prepared(2), Prepared(3)});
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].outcome.kind, OutcomeKind::kOk);
  EXPECT_EQ(r[1].outcome.kind, OutcomeKind::kRetry);
  EXPECT_EQ(r[1].outcome.code, "MISSING_FROM_ANSWER");
  EXPECT_FALSE(r[1].record.has_value());
  EXPECT_EQ(r[2].outcome.kind, OutcomeKind::kOk);  // case of the answer does not matter
  EXPECT_EQ(r[2].record->digest.hex(), Hex(3));
}

TEST_F(SimpleProofTest, TheSameDigestTwiceInABatchIsSentOnce) {
  EchoServer();
  std::vector<CreateResult> r = provider_->CreateBatch({Prepared(1), Prepared(1), Prepared(2)});
  ASSERT_EQ(r.size(), 3u);
  for (const auto& x : r) EXPECT_EQ(x.outcome.kind, OutcomeKind::kOk);
  EXPECT_EQ(json::parse(server_.seen().at(0).body)["hashes"].size(), 2u);
  // An incomplete prepared request is refused locally, the rest still goes.
  PreparedCreate broken = Prepared(3);
  broken.body = "something else";
  r = provider_->CreateBatch({broken, Prepared(4)});
  EXPECT_EQ(r[0].outcome.kind, OutcomeKind::kPermanent);
  EXPECT_EQ(r[1].outcome.kind, OutcomeKind::kOk);
  EXPECT_EQ(json::parse(server_.seen().back().body)["hashes"], json::array({Hex(4)}));
}

TEST_F(SimpleProofTest, MaybeSentDigestsHeldByTheAccountAreNotSentAgain) {
  EchoServer({{Hex(1), Doc(Hex(1), false)}});
  // 1: maybe sent and held; 2: maybe sent, not held; 3: fresh.
  std::vector<CreateResult> r =
      provider_->CreateBatch({Prepared(1, true), Prepared(2, true), Prepared(3)});
  ASSERT_EQ(r.size(), 3u);
  for (const auto& x : r) {
    ASSERT_EQ(x.outcome.kind, OutcomeKind::kOk) << x.outcome.message;
    ASSERT_TRUE(x.record.has_value());
  }
  EXPECT_EQ(r[0].record->proof_id, Hex(1));
  EXPECT_EQ(r[0].record->verify_url, "https://verify.simpleproof.com/SP/" + Hex(1));
  auto seen = server_.seen();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].path, "/proof/verification");
  EXPECT_EQ(json::parse(seen[0].body), json({{"hash", Hex(1)}}));
  EXPECT_EQ(seen[0].Header("x-access-token"), kToken);
  EXPECT_EQ(seen[1].path, "/proof/verification");
  EXPECT_EQ(json::parse(seen[1].body)["hash"], Hex(2));
  EXPECT_EQ(seen[2].path, "/api/proof/timestamp/hashes");
  // The held digest is not in the request: no quota unit spent on it twice.
  EXPECT_EQ(json::parse(seen[2].body)["hashes"], json::array({Hex(2), Hex(3)}));
}

TEST_F(SimpleProofTest, A429ClosesTheGateAndEndsTheBatch) {
  server_.Push(
      Json(429, json{{"ok", false}, {"msg", "Too many requests"}}, {{"Retry-After", "9"}}));
  const absl::Time t0 = clock_.Now();
  std::vector<CreateResult> r =
      provider_->CreateBatch({Prepared(1, true), Prepared(2, true), Prepared(3)});
  ASSERT_EQ(r.size(), 3u);
  for (const auto& x : r) {
    EXPECT_EQ(x.outcome.kind, OutcomeKind::kRateLimited);
    EXPECT_EQ(x.outcome.retry_after, absl::Seconds(9));
  }
  EXPECT_EQ(server_.seen().size(), 1u);  // nothing left after the 429
  EXPECT_EQ(limiter_->blocked_until(), t0 + absl::Seconds(9));
  EXPECT_EQ(metrics_.rate_limited.Add({{"provider", "simpleproof"}}).Value(), 1);

  // The next request waits for the gate before it leaves.
  EchoServer();
  EXPECT_EQ(provider_->Create(Prepared(4)).outcome.kind, OutcomeKind::kOk);
  EXPECT_GE(clock_.Now(), t0 + absl::Seconds(9));

  // A 429 without Retry-After waits the configured default.
  server_.Push(Json(429, json{{"ok", false}, {"msg", "Too many requests"}}));
  const absl::Time t1 = clock_.Now();
  CreateResult c = provider_->Create(Prepared(5));
  EXPECT_EQ(c.outcome.kind, OutcomeKind::kRateLimited);
  EXPECT_EQ(c.outcome.retry_after, absl::Seconds(45));
  EXPECT_EQ(limiter_->blocked_until(), t1 + absl::Seconds(45));
}

TEST_F(SimpleProofTest, ErrorClassification) {
  struct Case {
    int status;
    OutcomeKind kind;
  };
  for (const Case& c : std::vector<Case>{{400, OutcomeKind::kPermanent},
                                         {401, OutcomeKind::kPermanent},
                                         {403, OutcomeKind::kPermanent},
                                         {402, OutcomeKind::kQuotaExhausted},
                                         {500, OutcomeKind::kRetry},
                                         {503, OutcomeKind::kRetry}}) {
    SCOPED_TRACE(c.status);
    server_.Push(Json(c.status, json{{"ok", false}, {"msg", "A maximum of 25 hashes"}}));
    std::vector<CreateResult> r = provider_->CreateBatch({Prepared(1), Prepared(2)});
    for (const auto& x : r) {
      EXPECT_EQ(x.outcome.kind, c.kind);
      EXPECT_EQ(x.outcome.http_status, c.status);
      EXPECT_EQ(x.outcome.code, absl::StrCat("HTTP_", c.status));
      EXPECT_EQ(x.outcome.message, "A maximum of 25 hashes");
      EXPECT_FALSE(x.record.has_value());
    }
  }
  server_.Push(Json(401, json{{"ok", false}, {"msg", std::string("bad token ") + kToken}}));
  CreateResult r = provider_->Create(Prepared(1));
  ExpectNoKey(r.outcome);
  EXPECT_TRUE(absl::StrContains(r.outcome.message, "[REDACTED]"));

  server_.Shutdown();
  r = provider_->Create(Prepared(1));
  EXPECT_EQ(r.outcome.kind, OutcomeKind::kRetry);
  EXPECT_EQ(r.outcome.code, "NETWORK_ERROR");
  EXPECT_EQ(provider_->Lookup({Hex(1), D(1), ""}).outcome.code, "NETWORK_ERROR");
}

TEST_F(SimpleProofTest, MalformedCreateAnswersAreRetry) {
  for (const std::string& body :
       {std::string(""), std::string("nope"), std::string(R"({"ok":true})"),
        std::string(R"({"ok":false,"files":[]})"), std::string(R"({"ok":true,"files":"x"})"),
        std::string(R"({"ok":true,"files":["abc"]})"), std::string(R"({"ok":true,"files":[7]})")}) {
    SCOPED_TRACE(body);
    Canned c;
    c.body = body;
    server_.Push(c);
    std::vector<CreateResult> r = provider_->CreateBatch({Prepared(1), Prepared(2)});
    for (const auto& x : r) {
      EXPECT_EQ(x.outcome.kind, OutcomeKind::kRetry);
      EXPECT_EQ(x.outcome.code, "MALFORMED_RESPONSE");
      EXPECT_FALSE(x.record.has_value());
    }
  }
}

TEST_F(SimpleProofTest, LookupPendingAndNotFound) {
  server_.Push(Json(200, Verification({Doc(Hex(1), false)})));
  LookupResult r = provider_->Lookup({Hex(1), D(1), ""});
  ASSERT_EQ(r.outcome.kind, OutcomeKind::kOk) << r.outcome.message;
  EXPECT_EQ(r.record->state, RecordState::kPending);
  EXPECT_EQ(r.record->proof_id, Hex(1));
  EXPECT_EQ(r.record->verify_url, "https://verify.simpleproof.com/SP/" + Hex(1));
  EXPECT_TRUE(r.record->evidence.empty());
  EXPECT_EQ(server_.seen().size(), 1u);  // pending: nothing downloaded

  server_.Push(Json(200, Verification({})));
  EXPECT_EQ(provider_->Lookup({Hex(2), D(2), ""}).outcome.kind, OutcomeKind::kNotFound);
  server_.Push(Json(200, json{{"ok", true}, {"totalDocuments", 0}}));
  EXPECT_EQ(provider_->Lookup({Hex(2), D(2), ""}).outcome.kind, OutcomeKind::kNotFound);

  // Validation of the verification answer.
  for (const json& bad : {Verification({Doc(Hex(9), false)}),  // another hash only
                          json{{"ok", true}, {"documents", "x"}},
                          Verification({json{{"hash", Hex(1)}, {"confirmed", "yes"}}}),
                          Verification({json{{"hash", Hex(1)}, {"url", "ftp://x"}}}),
                          Verification({json{{"hash", Hex(1)}, {"creation_date", "today"}}})}) {
    SCOPED_TRACE(bad.dump());
    server_.Push(Json(200, bad));
    LookupResult x = provider_->Lookup({Hex(1), D(1), ""});
    EXPECT_EQ(x.outcome.code, "MALFORMED_RESPONSE");
    EXPECT_FALSE(x.record.has_value());
  }
}

TEST_F(SimpleProofTest, ConfirmedLookupDownloadsTheOtsAtOnceWithoutTheToken) {
  const std::string ots = anchord::testing::CompleteOts(Digest(1), 889906);
  const std::string url = server_.url() + "/bucket/abc.ots?X-Amz-Signature=s";
  server_.Push(Json(200, Verification({Doc(Hex(1), false), Doc(Hex(1), true, url)})));
  server_.Push(Bytes(200, ots));
  LookupResult r = provider_->Lookup({Hex(1), D(1), ""});
  ASSERT_EQ(r.outcome.kind, OutcomeKind::kOk) << r.outcome.code << " " << r.outcome.message;
  EXPECT_EQ(r.record->state, RecordState::kConfirmed);
  EXPECT_EQ(r.record->evidence, ots);
  EXPECT_EQ(r.record->block_height, 889906);
  EXPECT_EQ(r.record->confirmed_at, absl::FromUnixSeconds(1711587600));
  auto seen = server_.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].method, "GET");
  EXPECT_EQ(seen[1].path, "/bucket/abc.ots");
  EXPECT_EQ(seen[1].Param("X-Amz-Signature"), "s");
  EXPECT_EQ(seen[1].Header("x-access-token"), "");  // never sent to the storage host
  for (const auto& [k, v] : seen[1].headers) EXPECT_FALSE(absl::StrContains(v, kToken)) << k;
}

TEST_F(SimpleProofTest, InvalidOrUnavailableOtsIsRetry) {
  const std::string url = server_.url() + "/bucket/abc.ots";
  struct Case {
    Canned download;
    std::string code;
  };
  const std::vector<Case> cases = {
      {Bytes(200, anchord::testing::CompleteOts(Digest(2), 5)), "MALFORMED_RESPONSE"},  // not ours
      {Bytes(200, "not an ots at all"), "MALFORMED_RESPONSE"},
      {Bytes(403, "<Error>Request has expired</Error>"), "OTS_DOWNLOAD_HTTP_403"},
      {Bytes(404, ""), "OTS_DOWNLOAD_HTTP_404"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.code);
    server_.Push(Json(200, Verification({Doc(Hex(1), true, url)})));
    server_.Push(c.download);
    LookupResult r = provider_->Lookup({Hex(1), D(1), ""});
    EXPECT_EQ(r.outcome.kind, OutcomeKind::kRetry);
    EXPECT_EQ(r.outcome.code, c.code);
    EXPECT_FALSE(r.record.has_value());
  }
  // Confirmed without a download URL.
  server_.Push(Json(200, Verification({Doc(Hex(1), true, "")})));
  EXPECT_EQ(provider_->Lookup({Hex(1), D(1), ""}).outcome.code, "MALFORMED_RESPONSE");
}

TEST_F(SimpleProofTest, DownloadProofIsAFreshVerificationAndDownload) {
  const std::string ots = anchord::testing::CompleteOts(Digest(1), 42);
  server_.Push(Json(200, Verification({Doc(Hex(1), true, server_.url() + "/f/1.ots")})));
  server_.Push(Bytes(200, ots));
  DownloadResult d = provider_->DownloadProof({Hex(1), D(1), ""});
  ASSERT_EQ(d.outcome.kind, OutcomeKind::kOk) << d.outcome.message;
  EXPECT_EQ(d.ots, ots);
  EXPECT_EQ(server_.seen().at(0).path, "/proof/verification");

  server_.Push(Json(200, Verification({Doc(Hex(1), false)})));
  EXPECT_EQ(provider_->DownloadProof({Hex(1), D(1), ""}).outcome.kind, OutcomeKind::kNotFound);
  server_.Push(Json(200, Verification({})));
  EXPECT_EQ(provider_->DownloadProof({Hex(1), D(1), ""}).outcome.kind, OutcomeKind::kNotFound);
}

TEST_F(SimpleProofTest, ListPendingWalksBothStatusesPageByPage) {
  auto page = [](std::vector<json> docs, int total_pages) {
    return json{{"ok", true},
                {"data", {{"totalPages", total_pages}, {"totalCount", 99}, {"documents", docs}}}};
  };
  auto doc = [](const std::string& hex, const std::string& status) {
    return json{{"id", 5198978},
                {"name", "f.png"},
                {"creation_date", "2024-03-27T18:29:17.684Z"},
                {"document_hash", hex},
                {"blockchain", json::object()},
                {"document_status", status}};
  };
  server_.Push(Json(200, page({doc(Hex(1), "PENDING_STAMP"), doc("nothex", "PENDING_STAMP")}, 2)));
  server_.Push(Json(200, page({doc(Hex(2), "PENDING_STAMP"), doc(Hex(3), "COMPLETE")}, 2)));
  server_.Push(Json(200, page({doc(absl::AsciiStrToUpper(Hex(4)), "PENDING")}, 1)));

  std::vector<std::string> ids;
  std::vector<std::string> cursors;
  std::string cursor;
  for (int i = 0; i < 10; ++i) {
    ListPendingResult r = provider_->ListPending(cursor, 2);
    ASSERT_EQ(r.outcome.kind, OutcomeKind::kOk) << r.outcome.message;
    for (const auto& rec : r.records) {
      EXPECT_EQ(rec.state, RecordState::kPending);
      ids.push_back(rec.proof_id);
    }
    cursors.push_back(r.next_cursor);
    if (r.next_cursor.empty()) break;
    cursor = r.next_cursor;
  }
  EXPECT_EQ(ids, (std::vector<std::string>{Hex(1), Hex(2), Hex(4)}));
  EXPECT_EQ(cursors, (std::vector<std::string>{"pending_stamp:1:2", "pending:0:2", ""}));
  auto seen = server_.seen();
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].path, "/api/proof/document");
  EXPECT_EQ(seen[0].Param("status"), "pending_stamp");
  EXPECT_EQ(seen[0].Param("page"), "0");
  EXPECT_EQ(seen[0].Param("limit"), "2");
  EXPECT_EQ(seen[1].Param("page"), "1");
  EXPECT_EQ(seen[2].Param("status"), "pending");
  EXPECT_EQ(seen[2].Param("page"), "0");

  // A server claiming endless pages of nothing cannot keep the walk going.
  server_.SetHandler([&](const Seen&) { return Json(200, page({}, 1000000)); });
  cursor.clear();
  int requests = 0;
  for (; requests < 100; ++requests) {
    ListPendingResult r = provider_->ListPending(cursor, 50);
    ASSERT_EQ(r.outcome.kind, OutcomeKind::kOk);
    if (r.next_cursor.empty()) break;
    cursor = r.next_cursor;
  }
  EXPECT_EQ(requests, 1);  // one empty page per status

  EXPECT_EQ(provider_->ListPending("garbage", 10).outcome.code, "INVALID_CURSOR");
  EXPECT_EQ(provider_->ListPending("pending:0:1000", 10).outcome.code, "INVALID_CURSOR");
  server_.SetHandler({});
  server_.Push(Json(200, json{{"ok", true}, {"data", {{"documents", "x"}}}}));
  EXPECT_EQ(provider_->ListPending("", 10).outcome.code, "MALFORMED_RESPONSE");
}

TEST_F(SimpleProofTest, ParseCallback) {
  const std::string good = json{{"id", 5598842},
                                {"confirmed", true},
                                {"hash", absl::AsciiStrToUpper(Hex(7))},
                                {"name", "source-simpleproof.png"},
                                {"blockheight", 889906},
                                {"verified_at", "2025-03-29T01:42:39.000Z"},
                                {"verification_link", "https://verify.simpleproof.com/SP/x"}}
                               .dump();
  auto h = provider_->ParseCallback(good);
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(*h, D(7));
  EXPECT_TRUE(provider_->ParseCallback(json{{"hash", Hex(7)}}.dump()).ok());

  for (const std::string& bad :
       {std::string(""), std::string("not json"), std::string("[]"), std::string("{}"),
        json{{"hash", "abc"}}.dump(), json{{"hash", 5}}.dump(),
        json{{"hash", Hex(7)}, {"confirmed", "true"}}.dump(),
        json{{"hash", Hex(7)}, {"blockheight", "889906"}}.dump(),
        json{{"hash", Hex(7)}, {"id", "x"}}.dump(),
        json{{"hash", Hex(7)}, {"verified_at", "yesterday"}}.dump(),
        json{{"hash", Hex(7)}, {"name", 3}}.dump(), std::string(70000, ' ')}) {
    SCOPED_TRACE(bad.substr(0, 80));
    auto r = provider_->ParseCallback(bad);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_TRUE(server_.seen().empty());  // parsing never calls out
}

TEST_F(SimpleProofTest, StopCancelsAPacingWait) {
  anchord::testing::SleepWatchClock clock;
  auto gate =
      ratelimit::MakeLocalRateLimiter("simpleproof.general", {30, absl::Minutes(1)}, &clock);
  SimpleProofConfig config;
  config.base_url = server_.url();
  config.api_key = kToken;
  SimpleProofDeps deps;
  deps.http = http_.get();
  deps.limiter = gate.get();
  auto provider = MakeSimpleProofProvider(config, deps);
  gate->BlockUntil(absl::Now() + absl::Hours(1));
  std::vector<CreateResult> r;
  std::vector<PreparedCreate> batch = {Prepared(1, true), Prepared(2)};
  std::thread t([&] { r = provider->CreateBatch(batch); });
  EXPECT_TRUE(anchord::testing::WaitUntil([&] { return clock.sleeps() > 0; }, absl::Seconds(10)));
  provider->Stop();
  t.join();
  ASSERT_EQ(r.size(), 2u);
  for (const auto& x : r) EXPECT_EQ(x.outcome.code, "CANCELLED");
  EXPECT_TRUE(server_.seen().empty());
}

}  // namespace
}  // namespace anchord::providers
