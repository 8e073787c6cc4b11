// The proofd adapter against the real sandbox (services/sandbox): the two were written from the
// same document by different people, so this is where their readings must agree. Both share one
// FakeClock, so pacing waits and confirmation delays pass instantly and exactly.
#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "libs/common/hex.h"
#include "libs/providers/proofd.h"
#include "services/sandbox/sandbox.h"

namespace anchord::providers {
namespace {

const char kKey[] = "proofd_live_conformance_0123456789";
const char kNoPlanKey[] = "proofd_live_noplan_0123456789";
constexpr absl::string_view kOtsMagic(
    "\x00OpenTimestamps\x00\x00Proof\x00\xbf\x89\xe2\xe8\x84\xe8\x92\x94", 31);

std::string Digest(int i) {
  std::string d(32, '\0');
  d[0] = static_cast<char>(i);
  d[31] = static_cast<char>(i * 7 + 1);
  return HexEncode(d);
}

class SandboxConformance : public ::testing::Test {
 protected:
  void StartSandbox(int64_t quota = 0) {
    sandbox::SandboxOptions o;
    o.api_keys = {kKey};
    o.not_entitled_keys = {kNoPlanKey};
    o.monthly_quota = quota;
    // Long enough that pacing waits (fake time jumps of up to a window) do not confirm records.
    o.confirm_after = absl::Hours(1);
    o.window = absl::Seconds(60);
    o.general_limit = 120;
    o.create_key_limit = 3;  // tighter than our 30: the adapter must follow X-RateLimit-*
    o.create_ip_limit = 60;
    o.clock = &clock_;
    auto sb = sandbox::Sandbox::Start(o);
    ASSERT_TRUE(sb.ok()) << sb.status();
    sandbox_ = *std::move(sb);
    provider_ = Make(kKey);
  }

  std::unique_ptr<Provider> Make(const std::string& key) {
    ProofdConfig config;
    config.base_url = absl::StrCat("http://127.0.0.1:", sandbox_->port());
    config.api_key = key;
    config.request_timeout = absl::Seconds(10);
    ProofdDeps deps;
    deps.http = http_.get();
    deps.create_limiter = create_.get();
    deps.general_limiter = general_.get();
    deps.clock = &clock_;
    return MakeProofdProvider(config, deps);
  }

  PreparedCreate Prepare(int i, const std::string& filename = "evidence.pdf") {
    auto p = provider_->PrepareCreate({Digest(i), filename, 1000 + i, "application/pdf"});
    EXPECT_TRUE(p.ok()) << p.status();
    return *p;
  }

  void TearDown() override {
    // Close our kept-alive connections first, or the sandbox's Stop waits out their idle timeout.
    provider_.reset();
    http_.reset();
    if (sandbox_) sandbox_->Stop();
  }

  FakeClock clock_;
  std::unique_ptr<http::HttpClient> http_ = http::MakeCurlClient();
  std::unique_ptr<ratelimit::RateLimiter> create_ =
      ratelimit::MakeLocalRateLimiter("proofd.create", {30, absl::Minutes(1)}, &clock_);
  std::unique_ptr<ratelimit::RateLimiter> general_ =
      ratelimit::MakeLocalRateLimiter("proofd.general", {120, absl::Minutes(1)}, &clock_);
  std::unique_ptr<sandbox::Sandbox> sandbox_;
  std::unique_ptr<Provider> provider_;
};

TEST_F(SandboxConformance, Lifecycle) {
  StartSandbox();
  PreparedCreate p = Prepare(1);
  CreateResult c = provider_->Create(p);
  ASSERT_EQ(c.outcome.kind, OutcomeKind::kOk) << c.outcome.code << ": " << c.outcome.message;
  ASSERT_TRUE(c.record.has_value());
  EXPECT_EQ(c.record->digest_hex, p.digest_hex);
  EXPECT_EQ(c.record->state, RecordState::kPending);
  EXPECT_FALSE(c.outcome.request_id.empty());
  const std::string id = c.record->proof_id;

  // The same prepared request again: an idempotent replay of the original answer.
  CreateResult replay = provider_->Create(p);
  ASSERT_EQ(replay.outcome.kind, OutcomeKind::kOk) << replay.outcome.message;
  EXPECT_EQ(replay.record->proof_id, id);

  // The same hash under another body: 409, resolved to the original by walking the list.
  CreateResult dup = provider_->Create(Prepare(1, "renamed.pdf"));
  ASSERT_EQ(dup.outcome.kind, OutcomeKind::kDuplicate) << dup.outcome.message;
  EXPECT_EQ(dup.record->proof_id, id);
  EXPECT_EQ(sandbox_->Stats().creates_total, 1);

  LookupResult l = provider_->Lookup({id});
  ASSERT_EQ(l.outcome.kind, OutcomeKind::kOk) << l.outcome.message;
  EXPECT_EQ(l.record->state, RecordState::kPending);
  ListPendingResult page = provider_->ListPending("", 50);
  ASSERT_EQ(page.outcome.kind, OutcomeKind::kOk) << page.outcome.message;
  ASSERT_EQ(page.records.size(), 1u);
  EXPECT_EQ(page.records[0].proof_id, id);
  EXPECT_TRUE(page.next_cursor.empty());
  EXPECT_EQ(provider_->DownloadProof({id}).outcome.kind, OutcomeKind::kNotFound);

  clock_.Advance(absl::Minutes(61));
  l = provider_->Lookup({id});
  ASSERT_EQ(l.outcome.kind, OutcomeKind::kOk) << l.outcome.message;
  EXPECT_EQ(l.record->state, RecordState::kConfirmed);
  EXPECT_GT(l.record->block_height, 0);
  DownloadResult d = provider_->DownloadProof({id});
  ASSERT_EQ(d.outcome.kind, OutcomeKind::kOk) << d.outcome.message;
  EXPECT_TRUE(absl::StartsWith(d.ots, kOtsMagic));
  page = provider_->ListPending("", 50);
  ASSERT_EQ(page.outcome.kind, OutcomeKind::kOk);
  EXPECT_TRUE(page.records.empty());

  EXPECT_EQ(provider_->Lookup({"00000000-0000-4000-8000-000000000000"}).outcome.kind,
            OutcomeKind::kNotFound);
}

TEST_F(SandboxConformance, DuplicateFoundBeyondTheFirstPage) {
  StartSandbox();
  ASSERT_EQ(provider_->Create(Prepare(100)).outcome.kind, OutcomeKind::kOk);
  // 55 newer records push the original to the second list page (pages hold 50).
  for (int i = 0; i < 55; ++i) {
    ASSERT_EQ(provider_->Create(Prepare(i)).outcome.kind, OutcomeKind::kOk) << i;
  }
  CreateResult dup = provider_->Create(Prepare(100, "again.pdf"));
  ASSERT_EQ(dup.outcome.kind, OutcomeKind::kDuplicate) << dup.outcome.message;
  EXPECT_EQ(dup.record->digest_hex, Digest(100));
  // Pacing followed the sandbox's 3 creates/minute without a single 429 or early request.
  const auto stats = sandbox_->Stats();
  EXPECT_EQ(stats.rate_limited_total, 0);
  EXPECT_EQ(stats.early_requests_total, 0);
  EXPECT_EQ(stats.creates_total, 56);
}

TEST_F(SandboxConformance, AccountErrors) {
  StartSandbox(/*quota=*/1);
  ASSERT_EQ(provider_->Create(Prepare(1)).outcome.kind, OutcomeKind::kOk);
  CreateResult quota = provider_->Create(Prepare(2));
  EXPECT_EQ(quota.outcome.kind, OutcomeKind::kQuotaExhausted);
  EXPECT_EQ(quota.outcome.code, "MONTHLY_LIMIT_REACHED");

  auto bad = Make("proofd_live_unknown_key_123");
  CreateResult c = bad->Create(Prepare(3));
  EXPECT_EQ(c.outcome.kind, OutcomeKind::kPermanent);
  EXPECT_EQ(c.outcome.code, "INVALID_API_KEY");
  EXPECT_FALSE(absl::StrContains(c.outcome.message, "proofd_live_unknown_key_123"));

  auto noplan = Make(kNoPlanKey);
  LookupResult l = noplan->Lookup({"00000000-0000-4000-8000-000000000000"});
  EXPECT_EQ(l.outcome.kind, OutcomeKind::kPermanent);
  EXPECT_EQ(l.outcome.code, "PLAN_NOT_ENTITLED");
}

TEST_F(SandboxConformance, StormAndFaults) {
  StartSandbox();
  sandbox::Faults f;
  f.storm_seconds = 10;
  sandbox_->SetFaults(f);
  const absl::Time t0 = clock_.Now();
  CreateResult r = provider_->Create(Prepare(1));
  EXPECT_EQ(r.outcome.kind, OutcomeKind::kRateLimited);
  EXPECT_GT(r.outcome.retry_after, absl::ZeroDuration());
  EXPECT_GT(general_->blocked_until(), t0);

  f.storm_seconds = 0;
  f.drop_rate = 1.0;
  sandbox_->SetFaults(f);
  PreparedCreate p = Prepare(2);
  CreateResult dropped = provider_->Create(p);
  EXPECT_EQ(dropped.outcome.kind, OutcomeKind::kRetry) << dropped.outcome.code;
  EXPECT_GE(clock_.Now(), t0 + r.outcome.retry_after);  // waited out the storm's Retry-After

  f.drop_rate = 0;
  f.error_rate = 1.0;
  sandbox_->SetFaults(f);
  EXPECT_EQ(provider_->Create(p).outcome.kind, OutcomeKind::kRetry);

  // The dropped create did happen; the retry with the same key replays it.
  f.error_rate = 0;
  sandbox_->SetFaults(f);
  CreateResult retried = provider_->Create(p);
  ASSERT_EQ(retried.outcome.kind, OutcomeKind::kOk) << retried.outcome.message;
  EXPECT_EQ(sandbox_->Stats().creates_by_digest[p.digest_hex], 1);
  EXPECT_EQ(sandbox_->Stats().early_requests_total, 0);
}

}  // namespace
}  // namespace anchord::providers
