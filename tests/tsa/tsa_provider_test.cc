// The tsa provider against the sandbox's RFC 3161 endpoint, over loopback HTTP: a granted token is
// CONFIRMED at once and verifies; the sandbox's faults, 429s, unknown trust anchors and dead TSAs
// are classified like every provider's errors; credentials never show in an outcome.
#include "libs/providers/tsa.h"

#include <prometheus/registry.h>

#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "libs/common/hex.h"
#include "libs/http/http_client.h"
#include "libs/providers/factory.h"
#include "libs/tsa/authority.h"
#include "libs/tsa/tsa.h"
#include "services/sandbox/sandbox.h"
#include "tests/testing/temp_dir.h"

namespace anchord::providers {
namespace {

constexpr char kDigest[] = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const Digest kD = *Digest::FromHex(kDigest);

class TsaProviderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sandbox::SandboxOptions o;
    o.calendars = 0;
    o.seed = 7;
    auto sb = sandbox::Sandbox::Start(o);
    ASSERT_TRUE(sb.ok()) << sb.status();
    sandbox_ = *std::move(sb);
    http_ = http::MakeCurlClient({});
    metrics_ = std::make_unique<ProviderMetrics>(registry_);
  }

  std::unique_ptr<Provider> Make(std::vector<std::string> urls, std::string ca_pem,
                                 std::string auth = "") {
    TsaConfig c;
    c.urls = std::move(urls);
    c.ca_pem = std::move(ca_pem);
    c.authorization = std::move(auth);
    c.timeout = absl::Seconds(5);
    c.default_retry_after = absl::Seconds(1);
    TsaDeps d;
    d.http = http_.get();
    d.metrics = metrics_.get();
    return MakeTsaProvider(c, d);
  }

  CreateResult CreateOnce(Provider* p) {
    auto prepared = p->PrepareCreate({kD, "a.txt", 3, "text/plain"});
    EXPECT_TRUE(prepared.ok()) << prepared.status();
    return p->Create(*prepared);
  }

  std::unique_ptr<sandbox::Sandbox> sandbox_;
  std::unique_ptr<http::HttpClient> http_;
  prometheus::Registry registry_;
  std::unique_ptr<ProviderMetrics> metrics_;
};

TEST_F(TsaProviderTest, TokenIsConfirmedAtOnceAndVerifies) {
  auto p = Make({sandbox_->tsa_url()}, sandbox_->tsa_ca_pem());
  CreateResult r = CreateOnce(p.get());
  ASSERT_EQ(r.outcome.kind, OutcomeKind::kOk) << r.outcome.code << " " << r.outcome.message;
  ASSERT_TRUE(r.record.has_value());
  EXPECT_EQ(r.record->state, RecordState::kConfirmed);
  EXPECT_EQ(r.record->digest.hex(), kDigest);
  EXPECT_NE(r.record->proof_id.find("@127.0.0.1:"), std::string::npos) << r.record->proof_id;
  tsa::VerifyOptions vo;
  vo.expected_digest = *Digest::FromHex(kDigest);
  auto info = tsa::Verify(r.record->evidence, tsa::Trust{sandbox_->tsa_ca_pem(), ""}, vo);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(r.record->confirmed_at, info->gen_time);
  // Lookup and download serve the stored token; a token for another digest is not served.
  ProofRef ref{r.record->proof_id, kD, r.record->evidence};
  LookupResult l = p->Lookup(ref);
  ASSERT_EQ(l.outcome.kind, OutcomeKind::kOk);
  EXPECT_EQ(l.record->state, RecordState::kConfirmed);
  DownloadResult dl = p->DownloadProof(ref);
  ASSERT_EQ(dl.outcome.kind, OutcomeKind::kOk);
  EXPECT_EQ(dl.ots, r.record->evidence);
  ProofRef other{"x", *Digest::FromHex(std::string(64, 'a')), r.record->evidence};
  EXPECT_EQ(p->DownloadProof(other).outcome.kind, OutcomeKind::kNotFound);
  EXPECT_EQ(p->DownloadProof({"x", kD, ""}).outcome.kind, OutcomeKind::kNotFound);
  EXPECT_EQ(sandbox_->Stats().tsa.tokens_total, 1);
}

TEST_F(TsaProviderTest, UntrustedAuthorityIsNotStored) {
  auto other = tsa::Authority::Generate({});
  ASSERT_TRUE(other.ok());
  auto p = Make({sandbox_->tsa_url()}, (*other)->ca_pem());
  CreateResult r = CreateOnce(p.get());
  EXPECT_EQ(r.outcome.kind, OutcomeKind::kRetry);
  EXPECT_FALSE(r.record.has_value());
  EXPECT_NE(r.outcome.message.find("signature does not verify"), std::string::npos)
      << r.outcome.message;
}

TEST_F(TsaProviderTest, FaultsAreRetryableAndStormsRateLimited) {
  auto p = Make({sandbox_->tsa_url()}, sandbox_->tsa_ca_pem());
  sandbox::Faults f;
  f.error_rate = 1;
  sandbox_->SetFaults(f);
  CreateResult r = CreateOnce(p.get());
  EXPECT_EQ(r.outcome.kind, OutcomeKind::kRetry) << r.outcome.code;
  EXPECT_TRUE(r.outcome.code == "HTTP_500" || r.outcome.code == "HTTP_503") << r.outcome.code;
  f = {};
  f.drop_rate = 1;
  sandbox_->SetFaults(f);
  r = CreateOnce(p.get());
  EXPECT_EQ(r.outcome.kind, OutcomeKind::kRetry) << r.outcome.code;
  f = {};
  f.storm_seconds = 30;
  sandbox_->SetFaults(f);
  r = CreateOnce(p.get());
  EXPECT_EQ(r.outcome.kind, OutcomeKind::kRateLimited) << r.outcome.code;
  EXPECT_GE(r.outcome.retry_after, absl::Seconds(1));
  // Only the dropped answer was signed (and lost on the way): errors and storms sign nothing.
  EXPECT_EQ(sandbox_->Stats().tsa.tokens_total, 1);
}

TEST(TsaProviderLimitTest, SandboxLimitAnswers429WithRetryAfterAndTheGateHolds) {
  sandbox::SandboxOptions o;
  o.calendars = 0;
  o.tsa_limit = 1;
  auto sb = sandbox::Sandbox::Start(o);
  ASSERT_TRUE(sb.ok()) << sb.status();
  auto http = http::MakeCurlClient({});
  TsaConfig c;
  c.urls = {(*sb)->tsa_url()};
  c.ca_pem = (*sb)->tsa_ca_pem();
  TsaDeps d;
  d.http = http.get();
  auto p = MakeTsaProvider(c, d);
  auto prepared = p->PrepareCreate({kD, "a", 1, ""});
  ASSERT_TRUE(prepared.ok());
  EXPECT_EQ(p->Create(*prepared).outcome.kind, OutcomeKind::kOk);
  CreateResult second = p->Create(*prepared);
  EXPECT_EQ(second.outcome.kind, OutcomeKind::kRateLimited) << second.outcome.code;
  EXPECT_GE(second.outcome.retry_after, absl::Seconds(1));
  sandbox::SandboxStats stats = (*sb)->Stats();
  EXPECT_EQ(stats.tsa.rate_limited_total, 1);
  EXPECT_EQ(stats.tsa.early_requests_total, 0);
  EXPECT_EQ(stats.tsa.tokens_total, 1);
  p->Stop();  // a third create would wait for the gate the 429 closed
}

TEST_F(TsaProviderTest, DeadFirstTsaFailsOverToTheNext) {
  auto p = Make({"http://127.0.0.1:1/tsa", sandbox_->tsa_url()}, sandbox_->tsa_ca_pem());
  CreateResult r = CreateOnce(p.get());
  ASSERT_EQ(r.outcome.kind, OutcomeKind::kOk) << r.outcome.message;
  EXPECT_EQ(r.record->state, RecordState::kConfirmed);
}

TEST_F(TsaProviderTest, WrongEndpointIsPermanentAndCredentialsNeverShow) {
  auto auth = TsaAuthorization("Bearer s3cr3t-token-value");
  ASSERT_TRUE(auth.ok());
  auto p = Make({absl::StrCat("http://127.0.0.1:", sandbox_->port(), "/tsa/nope")},
                sandbox_->tsa_ca_pem(), *auth);
  CreateResult r = CreateOnce(p.get());
  EXPECT_EQ(r.outcome.kind, OutcomeKind::kPermanent) << r.outcome.code;
  EXPECT_EQ(r.outcome.message.find("s3cr3t"), std::string::npos) << r.outcome.message;
  EXPECT_FALSE(TsaAuthorization("Token abc").ok());
  EXPECT_FALSE(TsaAuthorization("Basic nocolon").ok());
  auto basic = TsaAuthorization("Basic user:pw");
  ASSERT_TRUE(basic.ok());
  EXPECT_EQ(*basic, "Basic dXNlcjpwdw==");
}

TEST_F(TsaProviderTest, SandboxEndpointRefusesWrongContentTypeAndGarbage) {
  http::HttpRequest req;
  req.method = "POST";
  req.url = sandbox_->tsa_url();
  req.body = "garbage";
  req.headers.emplace_back("Content-Type", "application/timestamp-query");
  auto resp = http_->Do(req);
  ASSERT_TRUE(resp.ok()) << resp.status();
  EXPECT_EQ(resp->status, 400);
  req.headers = {{"Content-Type", "application/json"}};
  resp = http_->Do(req);
  ASSERT_TRUE(resp.ok());
  EXPECT_EQ(resp->status, 415);
  http::HttpRequest get;
  get.url = sandbox_->tsa_url() + "/ca.pem";
  resp = http_->Do(get);
  ASSERT_TRUE(resp.ok());
  EXPECT_EQ(resp->status, 200);
  EXPECT_EQ(resp->body, sandbox_->tsa_ca_pem());
}

TEST_F(TsaProviderTest, FactoryNeedsUrlAndTrustAnchors) {
  ProviderSettings s;
  s.default_provider = "tsa";
  auto set = ProviderSet::Create(s, nullptr);
  ASSERT_FALSE(set.ok());
  EXPECT_NE(set.status().message().find("--tsa-url"), std::string::npos) << set.status();
  s.tsa_urls = sandbox_->tsa_url();
  set = ProviderSet::Create(s, nullptr);
  ASSERT_FALSE(set.ok());
  EXPECT_NE(set.status().message().find("--tsa-ca-file"), std::string::npos) << set.status();
  testing::TempDir dir("tsa_factory");
  {
    std::ofstream(dir.File("ca.pem")) << sandbox_->tsa_ca_pem();
    std::ofstream(dir.File("bad.pem")) << "not a certificate";
  }
  s.tsa_ca_file = dir.File("bad.pem");
  set = ProviderSet::Create(s, nullptr);
  ASSERT_FALSE(set.ok());
  EXPECT_NE(set.status().message().find("no PEM certificate"), std::string::npos) << set.status();
  s.tsa_ca_file = dir.File("ca.pem");
  set = ProviderSet::Create(s, nullptr);
  ASSERT_TRUE(set.ok()) << set.status();
  Provider* p = (*set)->Default();
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->name(), "tsa");
  auto prepared = p->PrepareCreate({kD, "a", 1, ""});
  ASSERT_TRUE(prepared.ok());
  EXPECT_EQ(p->Create(*prepared).outcome.kind, OutcomeKind::kOk);
}

}  // namespace
}  // namespace anchord::providers
