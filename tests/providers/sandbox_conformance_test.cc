// Every adapter against the real sandbox (services/sandbox): the two sides were written from the
// same documents by different people, so this is where their readings must agree. ONE suite of
// behaviours (create, duplicate, pacing, rate limit, each error class, crash and replay,
// confirmation, proof download, batches), parameterized over proofd, ProofLedger, SimpleProof and
// the OpenTimestamps calendars. The sandbox and the adapters share one FakeClock, so pacing waits
// and confirmation delays pass instantly and exactly; everything is on loopback, and every loop is
// bounded in count (and real time where a background thread is waited for).
#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "libs/common/hex.h"
#include "libs/ots/headers.h"
#include "libs/ots/ots.h"
#include "libs/ots/upgrade.h"
#include "libs/ots/verify.h"
#include "libs/providers/ots_calendar.h"
#include "libs/providers/proofd.h"
#include "libs/providers/proofledger.h"
#include "libs/providers/simpleproof.h"
#include "services/sandbox/sandbox.h"
#include "tests/providers/fake_server.h"
#include "tests/testing/wait.h"

namespace anchord::providers {
namespace {

const char kProofdKey[] = "proofd_live_conformance_0123456789";
const char kProofdNoPlan[] = "proofd_live_noplan_0123456789";
const char kLedgerKey[] = "sk_conformance_0123456789abcdef";
const char kLedgerNoPlan[] = "sk_noplan_0123456789abcdef";
const char kSimpleToken[] = "sp_conformance_token_0123456789";

std::string Digest(int i) {
  std::string d(32, '\0');
  d[0] = static_cast<char>(i);
  d[1] = static_cast<char>(i >> 8);
  d[31] = static_cast<char>(i * 7 + 1);
  return HexEncode(d);
}
// Digest(i) as the type the interface takes.
anchord::Digest D(int i) { return *anchord::Digest::FromHex(Digest(i)); }

class Conformance;

// What differs between the adapters, as far as the behaviours below are concerned.
struct Target {
  std::string key, bad_key, noplan_key;  // empty: the API has no such key (calendars: no key)
  // How a digest sent again under another body is answered: the original as a duplicate (proofd
  // 409, ProofLedger duplicate_of), or simply accepted again (SimpleProof answers the same files,
  // calendars give a new pending proof of the same digest).
  OutcomeKind duplicate_kind = OutcomeKind::kDuplicate;
  // The provider keeps one record per digest (calendars keep one commitment per send: free).
  bool one_record_per_digest = true;
  bool has_quota = false;  // the sandbox emulates a monthly quota for it (proofd)
  // A proof id of the provider's shape that names nothing (digest-keyed providers: the digest).
  std::string unknown_id;
  std::function<std::unique_ptr<Provider>(Conformance&, const std::string& key)> make;
  std::function<sandbox::ApiStats(const sandbox::SandboxStats&)> stats;
};

class Conformance : public ::testing::TestWithParam<std::string> {
 public:
  ratelimit::RateLimiter* Limiter(const std::string& name, ratelimit::RateLimit limit) {
    limiters_.push_back(ratelimit::MakeLocalRateLimiter(name, limit, &clock_));
    return limiters_.back().get();
  }
  std::string MainUrl() const { return absl::StrCat("http://127.0.0.1:", sandbox_->port()); }
  std::string CallbackUrl() const { return hooks_.url() + "/hooks/simpleproof"; }
  http::HttpClient* http() { return http_.get(); }
  FakeClock* clock() { return &clock_; }
  std::vector<std::string> Calendars() const { return sandbox_->calendar_urls(); }

 protected:
  static const Target& TargetFor(const std::string& name);

  void SetUp() override {
    target_ = &TargetFor(GetParam());
    hooks_.SetHandler([](const anchord::testing::Seen&) {
      anchord::testing::Canned c;
      c.body = R"({"ok":true,"msg":"Notification received and processed successfully."})";
      return c;
    });
  }

  void StartSandbox(int64_t quota = 0) {
    sandbox::SandboxOptions o;
    o.api_keys = {kProofdKey};
    o.not_entitled_keys = {kProofdNoPlan};
    o.monthly_quota = quota;
    // Long enough that pacing waits (fake time jumps of up to a window) confirm nothing.
    o.confirm_after = absl::Hours(1);
    o.window = absl::Seconds(60);
    o.general_limit = 120;
    o.create_key_limit = 3;  // tighter than our 30: proofd must follow X-RateLimit-*
    o.create_ip_limit = 60;
    o.proofledger_api_keys = {kLedgerKey};
    o.proofledger_not_entitled_keys = {kLedgerNoPlan};
    o.simpleproof_tokens = {kSimpleToken};
    o.callback_retry_interval = absl::Milliseconds(100);
    o.calendars = 2;
    o.pending_max_age = absl::Seconds(1);
    o.clock = &clock_;
    auto sb = sandbox::Sandbox::Start(o);
    ASSERT_TRUE(sb.ok()) << sb.status();
    sandbox_ = *std::move(sb);
    provider_ = Make(target_->key);
  }

  void TearDown() override {
    // Close our kept-alive connections first, or the sandbox's Stop waits out their idle timeout.
    provider_.reset();
    http_.reset();
    if (sandbox_) sandbox_->Stop();
  }

  std::unique_ptr<Provider> Make(const std::string& key) { return target_->make(*this, key); }

  PreparedCreate Prepare(int i, const std::string& filename = "evidence.pdf") {
    auto p = provider_->PrepareCreate({D(i), filename, 1000 + i, "application/pdf"});
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? *p : PreparedCreate{};
  }

  static ProofRef Ref(const ProviderRecord& r) { return {r.proof_id, r.digest, r.evidence}; }

  sandbox::ApiStats Api() { return target_->stats(sandbox_->Stats()); }
  // Records the provider created for a digest.
  static int64_t Records(const sandbox::ApiStats& api, const std::string& hex) {
    auto it = api.creates_by_digest.find(hex);
    return it == api.creates_by_digest.end() ? 0 : it->second;
  }

  void SetFaults(double error_rate, double drop_rate, double storm_seconds = 0) {
    sandbox::Faults f;
    f.error_rate = error_rate;
    f.drop_rate = drop_rate;
    f.storm_seconds = storm_seconds;
    sandbox_->SetFaults(f);
  }

  // The proof ids on the provider's pending list (bounded walk).
  std::set<std::string> PendingIds() {
    std::set<std::string> ids;
    std::string cursor;
    for (int page = 0; page < 20; ++page) {
      ListPendingResult r = provider_->ListPending(cursor, 50);
      EXPECT_EQ(r.outcome.kind, OutcomeKind::kOk) << r.outcome.code << " " << r.outcome.message;
      for (const auto& rec : r.records) ids.insert(rec.proof_id);
      if (r.next_cursor.empty() || r.next_cursor == cursor) break;
      cursor = r.next_cursor;
    }
    return ids;
  }

  // Looks a proof up until it is confirmed (bounded), keeping any evidence the adapter returns as
  // the caller must (calendars: the upgraded proof).
  LookupResult LookupUntilConfirmed(ProofRef* ref) {
    LookupResult r;
    for (int attempt = 0; attempt < 5; ++attempt) {
      r = provider_->Lookup(*ref);
      if (r.record && !r.record->evidence.empty()) ref->evidence = r.record->evidence;
      if (r.outcome.kind == OutcomeKind::kOk && r.record &&
          r.record->state == RecordState::kConfirmed) {
        break;
      }
      clock_.Advance(absl::Seconds(2));  // past the calendars' Cache-Control max-age
    }
    return r;
  }

  FakeClock clock_;
  const Target* target_ = nullptr;
  anchord::testing::FakeServer hooks_;  // receives SimpleProof callbacks
  std::unique_ptr<sandbox::Sandbox> sandbox_;
  std::vector<std::unique_ptr<ratelimit::RateLimiter>> limiters_;
  std::unique_ptr<http::HttpClient> http_ = http::MakeCurlClient();
  std::unique_ptr<Provider> provider_;
};

const Target& Conformance::TargetFor(const std::string& name) {
  static const auto* targets = new std::map<std::string, Target>{
      {"proofd",
       Target{kProofdKey, "proofd_live_unknown_key_123", kProofdNoPlan, OutcomeKind::kDuplicate,
              true, true, "00000000-0000-4000-8000-000000000000",
              [](Conformance& c, const std::string& key) {
                ProofdConfig config;
                config.base_url = c.MainUrl();
                config.api_key = key;
                config.request_timeout = absl::Seconds(10);
                ProofdDeps deps;
                deps.http = c.http();
                deps.create_limiter = c.Limiter("proofd.create", {30, absl::Minutes(1)});
                deps.general_limiter = c.Limiter("proofd.general", {120, absl::Minutes(1)});
                deps.clock = c.clock();
                return MakeProofdProvider(config, deps);
              },
              [](const sandbox::SandboxStats& s) { return s.proofd; }}},
      {"proofledger",
       Target{kLedgerKey, "sk_unknown_key_0123456789", kLedgerNoPlan, OutcomeKind::kDuplicate, true,
              false, "pl_000000000000000000000000",
              [](Conformance& c, const std::string& key) {
                ProofLedgerConfig config;
                config.base_url = c.MainUrl();
                config.api_key = key;
                config.request_timeout = absl::Seconds(10);
                ProofLedgerDeps deps;
                deps.http = c.http();
                deps.create_limiter = c.Limiter("proofledger.create", {30, absl::Minutes(1)});
                deps.verify_limiter = c.Limiter("proofledger.verify", {120, absl::Hours(1)});
                deps.clock = c.clock();
                return MakeProofLedgerProvider(config, deps);
              },
              [](const sandbox::SandboxStats& s) { return sandbox::ApiStats(s.proofledger); }}},
      {"simpleproof",
       Target{kSimpleToken, "sp_unknown_token_0123456789", "", OutcomeKind::kOk, true, false,
              Digest(999),
              [](Conformance& c, const std::string& key) {
                SimpleProofConfig config;
                config.base_url = c.MainUrl();
                config.api_key = key;
                config.callback_url = c.CallbackUrl();
                config.request_timeout = absl::Seconds(10);
                SimpleProofDeps deps;
                deps.http = c.http();
                deps.limiter = c.Limiter("simpleproof.general", {60, absl::Minutes(1)});
                deps.clock = c.clock();
                return MakeSimpleProofProvider(config, deps);
              },
              [](const sandbox::SandboxStats& s) { return sandbox::ApiStats(s.simpleproof); }}},
      {"ots", Target{"", "", "", OutcomeKind::kOk, false, false, Digest(999),
                     [](Conformance& c, const std::string&) {
                       OtsCalendarConfig config;
                       config.calendars = c.Calendars();
                       config.min_calendars = 2;
                       config.timeout = absl::Seconds(10);
                       OtsCalendarDeps deps;
                       deps.http = c.http();
                       deps.limiters = [&c](const std::string& name, ratelimit::RateLimit l) {
                         return ratelimit::MakeLocalRateLimiter(name, l, c.clock());
                       };
                       deps.clock = c.clock();
                       return MakeOtsCalendarProvider(config, deps);
                     },
                     [](const sandbox::SandboxStats& s) { return sandbox::ApiStats(s.calendar); }}},
  };
  return targets->at(name);
}

TEST_P(Conformance, CreateThenLookupPending) {
  StartSandbox();
  PreparedCreate p = Prepare(1);
  CreateResult c = provider_->Create(p);
  ASSERT_EQ(c.outcome.kind, OutcomeKind::kOk) << c.outcome.code << ": " << c.outcome.message;
  ASSERT_TRUE(c.record.has_value());
  EXPECT_EQ(c.record->digest, p.digest);
  EXPECT_EQ(c.record->state, RecordState::kPending);
  EXPECT_FALSE(c.record->proof_id.empty());
  if (!c.record->evidence.empty()) {  // calendars: the pending proof, to be stored at once
    auto f = ots::ParseDetached(c.record->evidence);
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_EQ(HexEncode(f->digest), p.digest.hex());
    EXPECT_FALSE(ots::IsComplete(*f));
    EXPECT_GE(ots::PendingAttestations(*f).size(), 2u);
  }
  if (target_->one_record_per_digest) {
    EXPECT_EQ(Records(Api(), p.digest.hex()), 1);
  }

  LookupResult l = provider_->Lookup(Ref(*c.record));
  ASSERT_EQ(l.outcome.kind, OutcomeKind::kOk) << l.outcome.code << ": " << l.outcome.message;
  ASSERT_TRUE(l.record.has_value());
  EXPECT_EQ(l.record->state, RecordState::kPending);
  EXPECT_EQ(l.record->proof_id, c.record->proof_id);
  EXPECT_EQ(l.record->digest, p.digest);
  if (provider_->LookupBudgetRemaining() >= 0) {
    EXPECT_EQ(provider_->LookupBudgetRemaining(), 119);  // ProofLedger: one verify spent
  }
}

// A proof the provider never made is not found (calendars: without its pending .ots there is
// nothing to ask), and not found is not an error that stops anything.
TEST_P(Conformance, UnknownProofIsNotFound) {
  StartSandbox();
  ASSERT_EQ(provider_->Create(Prepare(1)).outcome.kind, OutcomeKind::kOk);
  LookupResult l = provider_->Lookup({target_->unknown_id, D(999), ""});
  EXPECT_EQ(l.outcome.kind, OutcomeKind::kNotFound) << l.outcome.code << " " << l.outcome.message;
  EXPECT_FALSE(l.record.has_value());
  DownloadResult d = provider_->DownloadProof({target_->unknown_id, D(999), ""});
  EXPECT_EQ(d.outcome.kind, OutcomeKind::kNotFound) << d.outcome.code;
  EXPECT_TRUE(d.ots.empty());
}

// The original is found even when 55 newer records push it off the first page of a list, and
// the documented limits are followed without a single 429 or a request sent too early.
TEST_P(Conformance, DuplicateResolvesToTheOriginalWithinTheLimits) {
  StartSandbox();
  CreateResult original = provider_->Create(Prepare(100));
  ASSERT_EQ(original.outcome.kind, OutcomeKind::kOk) << original.outcome.message;
  for (int i = 0; i < 55; ++i) {
    CreateResult r = provider_->Create(Prepare(i));
    ASSERT_EQ(r.outcome.kind, OutcomeKind::kOk) << i << " " << r.outcome.message;
  }
  CreateResult dup = provider_->Create(Prepare(100, "renamed.pdf"));
  ASSERT_EQ(dup.outcome.kind, target_->duplicate_kind)
      << OutcomeKindName(dup.outcome.kind) << " " << dup.outcome.message;
  ASSERT_TRUE(dup.record.has_value());
  EXPECT_EQ(dup.record->digest, D(100));
  EXPECT_EQ(dup.record->proof_id, original.record->proof_id);
  if (dup.outcome.kind == OutcomeKind::kDuplicate && GetParam() == "proofledger") {
    EXPECT_EQ(dup.record->duplicate_of, original.record->proof_id);
  }
  const sandbox::ApiStats api = Api();
  if (target_->one_record_per_digest) {
    EXPECT_EQ(Records(api, Digest(100)), 1);  // never a second anchor
  }
  EXPECT_EQ(api.rate_limited_total, 0);
  EXPECT_EQ(api.early_requests_total, 0);
}

// A 429 closes the adapter's gate until Retry-After: no request leaves before it, and the
// create goes through once the storm is over.
TEST_P(Conformance, RateLimitIsHonoured) {
  StartSandbox();
  CreateResult first = provider_->Create(Prepare(1));
  ASSERT_EQ(first.outcome.kind, OutcomeKind::kOk) << first.outcome.message;
  SetFaults(0, 0, /*storm_seconds=*/10);
  const absl::Time t0 = clock_.Now();
  PreparedCreate p = Prepare(2);
  CreateResult r = provider_->Create(p);
  EXPECT_EQ(r.outcome.kind, OutcomeKind::kRateLimited) << r.outcome.code;
  EXPECT_GT(r.outcome.retry_after, absl::ZeroDuration());
  EXPECT_FALSE(r.record.has_value());
  int attempts = 1;
  while (r.outcome.kind != OutcomeKind::kOk && attempts < 40) {
    ASSERT_EQ(r.outcome.kind, OutcomeKind::kRateLimited) << r.outcome.code;
    r = provider_->Create(p);  // waits for the gate first
    ++attempts;
  }
  ASSERT_EQ(r.outcome.kind, OutcomeKind::kOk) << attempts << " attempts";
  EXPECT_GE(clock_.Now(), t0 + absl::Seconds(10));

  SetFaults(0, 0, /*storm_seconds=*/5);
  LookupResult l = provider_->Lookup(Ref(*first.record));
  EXPECT_EQ(l.outcome.kind, OutcomeKind::kRateLimited) << l.outcome.code;
  EXPECT_FALSE(l.record.has_value());
  SetFaults(0, 0, 0);
  const sandbox::ApiStats api = Api();
  EXPECT_GE(api.rate_limited_total, 2);
  EXPECT_EQ(api.early_requests_total, 0);
}

TEST_P(Conformance, ServerErrorsAndLostAnswersAreRetried) {
  StartSandbox();
  CreateResult first = provider_->Create(Prepare(1));
  ASSERT_EQ(first.outcome.kind, OutcomeKind::kOk) << first.outcome.message;
  SetFaults(/*error_rate=*/1.0, 0);
  CreateResult c = provider_->Create(Prepare(2));
  EXPECT_EQ(c.outcome.kind, OutcomeKind::kRetry) << c.outcome.code;
  EXPECT_FALSE(c.record.has_value());
  LookupResult l = provider_->Lookup(Ref(*first.record));
  EXPECT_EQ(l.outcome.kind, OutcomeKind::kRetry) << l.outcome.code;
  SetFaults(0, /*drop_rate=*/1.0);
  c = provider_->Create(Prepare(3));
  EXPECT_EQ(c.outcome.kind, OutcomeKind::kRetry) << c.outcome.code;
  EXPECT_FALSE(c.record.has_value());
  l = provider_->Lookup(Ref(*first.record));
  EXPECT_EQ(l.outcome.kind, OutcomeKind::kRetry) << l.outcome.code;
  SetFaults(0, 0);
}

// Behaviours only some APIs have are separate suites instantiated for those APIs alone, so no
// case is registered (and skipped) where it cannot apply.
class KeyedConformance : public Conformance {};  // APIs with an account key (not calendars)
class PlanConformance : public Conformance {};   // APIs with plan tiers (403)
class QuotaConformance : public Conformance {};  // APIs whose quota the sandbox emulates

TEST_P(KeyedConformance, UnknownKeyIsPermanentAndNeverEchoed) {
  ASSERT_FALSE(target_->bad_key.empty()) << GetParam() << " takes no key";
  StartSandbox();
  auto bad = Make(target_->bad_key);
  CreateResult c = bad->Create(Prepare(1));
  EXPECT_EQ(c.outcome.kind, OutcomeKind::kPermanent) << c.outcome.code;
  EXPECT_FALSE(absl::StrContains(c.outcome.message, target_->bad_key)) << c.outcome.message;
  EXPECT_FALSE(c.record.has_value());
}

TEST_P(PlanConformance, KeyWithoutPlanIsPermanent) {
  ASSERT_FALSE(target_->noplan_key.empty()) << GetParam() << " has no plan tiers";
  StartSandbox();
  auto noplan = Make(target_->noplan_key);
  CreateResult c = noplan->Create(Prepare(1));
  EXPECT_EQ(c.outcome.kind, OutcomeKind::kPermanent) << c.outcome.code;
  EXPECT_EQ(c.outcome.http_status, 403);
}

TEST_P(QuotaConformance, SpentQuotaPauses) {
  ASSERT_TRUE(target_->has_quota) << "the sandbox emulates no quota for " << GetParam();
  StartSandbox(/*quota=*/1);
  ASSERT_EQ(provider_->Create(Prepare(1)).outcome.kind, OutcomeKind::kOk);
  CreateResult quota = provider_->Create(Prepare(2));
  EXPECT_EQ(quota.outcome.kind, OutcomeKind::kQuotaExhausted) << quota.outcome.code;
}

// The request arrived but its answer was lost (a crash, a cut connection): the caller replays
// the same prepared request marked maybe_sent, and the provider ends up with one record and
// spends one quota unit.
TEST_P(Conformance, CrashAndReplaySpendsNothingTwice) {
  StartSandbox();
  PreparedCreate p = Prepare(7);
  SetFaults(0, /*drop_rate=*/1.0);
  CreateResult lost = provider_->Create(p);
  ASSERT_EQ(lost.outcome.kind, OutcomeKind::kRetry) << lost.outcome.code;
  SetFaults(0, 0);
  p.maybe_sent = true;
  CreateResult replay = provider_->Create(p);
  ASSERT_TRUE(replay.outcome.ok()) << replay.outcome.code << " " << replay.outcome.message;
  ASSERT_TRUE(replay.record.has_value());
  EXPECT_EQ(replay.record->digest, p.digest);
  const sandbox::SandboxStats stats = sandbox_->Stats();
  const sandbox::ApiStats api = target_->stats(stats);
  if (target_->one_record_per_digest) {
    EXPECT_EQ(Records(api, p.digest.hex()), 1);
    EXPECT_EQ(api.max_creates_per_digest, 1);
  }
  // SimpleProof charges per hash sent: the replay asked first and did not send it again.
  EXPECT_EQ(stats.simpleproof.resubmitted_total, 0);
  EXPECT_LE(stats.simpleproof.cost_units_total, 1);
}

TEST_P(Conformance, ConfirmationAndProofDownload) {
  StartSandbox();
  PreparedCreate p = Prepare(3);
  CreateResult c = provider_->Create(p);
  ASSERT_EQ(c.outcome.kind, OutcomeKind::kOk) << c.outcome.message;
  ProofRef ref = Ref(*c.record);
  if (provider_->SupportsListPending()) {
    EXPECT_EQ(PendingIds().count(ref.proof_id), 1u);
  }
  EXPECT_EQ(provider_->DownloadProof(ref).outcome.kind, OutcomeKind::kNotFound);

  clock_.Advance(absl::Minutes(61));
  LookupResult l = LookupUntilConfirmed(&ref);
  ASSERT_EQ(l.outcome.kind, OutcomeKind::kOk) << l.outcome.code << " " << l.outcome.message;
  ASSERT_TRUE(l.record.has_value());
  EXPECT_EQ(l.record->state, RecordState::kConfirmed);
  EXPECT_GT(l.record->block_height, 0);
  EXPECT_EQ(l.record->digest, p.digest);
  if (provider_->SupportsListPending()) {
    EXPECT_EQ(PendingIds().count(ref.proof_id), 0u);
  }

  DownloadResult d = provider_->DownloadProof(ref);
  if (!provider_->OffersOts()) {
    EXPECT_EQ(d.outcome.kind, OutcomeKind::kNotFound);
    EXPECT_TRUE(l.record->evidence.empty());
    return;
  }
  ASSERT_EQ(d.outcome.kind, OutcomeKind::kOk) << d.outcome.code << " " << d.outcome.message;
  // The proof is real: it verifies against the sandbox's chain, at the height reported.
  auto file = ots::ParseDetached(d.ots);
  ASSERT_TRUE(file.ok()) << file.status();
  auto digest = HexDecode(p.digest.hex());
  ASSERT_TRUE(digest.ok());
  auto headers = ots::MakeHeaderSource("sandbox:" + MainUrl());
  ASSERT_TRUE(headers.ok()) << headers.status();
  ots::VerifyResult v = ots::Verify(*file, *digest, headers->get());
  EXPECT_TRUE(v.verified) << v.message;
  bool at_height = false;
  for (const auto& a : v.attestations) {
    at_height |= a.attestation.kind == ots::Attestation::Kind::kBitcoin &&
                 static_cast<int64_t>(a.attestation.height) == l.record->block_height;
  }
  EXPECT_TRUE(at_height);
  // Adapters that hand evidence over with the lookup (SimpleProof's expiring URL, calendars)
  // return the same proof there.
  if (!l.record->evidence.empty()) {
    auto from_lookup = ots::ParseDetached(l.record->evidence);
    ASSERT_TRUE(from_lookup.ok());
    EXPECT_TRUE(ots::IsComplete(*from_lookup));
  }

  // Providers that call back: the notification names the digest (bounded real-time wait for the
  // sandbox's delivery thread).
  if (provider_->ParseCallback("{}").status().code() != absl::StatusCode::kUnimplemented) {
    std::string body;
    anchord::testing::WaitUntil(
        [&] {
          for (const auto& s : hooks_.seen()) {
            if (s.method == "POST") body = s.body;
          }
          return !body.empty();
        },
        absl::Seconds(5));
    ASSERT_FALSE(body.empty()) << "no callback within 5 s";
    auto hash = provider_->ParseCallback(body);
    ASSERT_TRUE(hash.ok()) << hash.status();
    EXPECT_EQ(*hash, p.digest);
  }
}

// max_batch()+1 digests split by the caller: every digest gets its own valid result, and a
// batching provider sees one request per batch.
TEST_P(Conformance, BatchesSplitByTheCaller) {
  StartSandbox();
  const int n = provider_->max_batch() + 1;
  std::vector<PreparedCreate> all;
  for (int i = 0; i < n; ++i) all.push_back(Prepare(200 + i));
  const int64_t requests_before = Api().requests_total;
  std::vector<CreateResult> results;
  int batches = 0;
  for (size_t start = 0; start < all.size(); start += provider_->max_batch()) {
    const size_t end = std::min(all.size(), start + provider_->max_batch());
    std::vector<CreateResult> r =
        provider_->CreateBatch(std::vector<PreparedCreate>(all.begin() + start, all.begin() + end));
    ASSERT_EQ(r.size(), end - start);
    results.insert(results.end(), r.begin(), r.end());
    ++batches;
  }
  ASSERT_EQ(results.size(), all.size());
  std::set<std::string> ids;
  for (size_t i = 0; i < results.size(); ++i) {
    ASSERT_EQ(results[i].outcome.kind, OutcomeKind::kOk) << i << " " << results[i].outcome.message;
    EXPECT_EQ(results[i].record->digest, all[i].digest);
    ids.insert(results[i].record->proof_id);
  }
  EXPECT_EQ(ids.size(), all.size());
  if (provider_->max_batch() > 1) {
    EXPECT_EQ(batches, 2);
    EXPECT_EQ(Api().requests_total - requests_before, 2);
  }
}

std::string ParamName(const ::testing::TestParamInfo<std::string>& info) { return info.param; }

INSTANTIATE_TEST_SUITE_P(Adapters, Conformance,
                         ::testing::Values("proofd", "proofledger", "simpleproof", "ots"),
                         ParamName);
INSTANTIATE_TEST_SUITE_P(Adapters, KeyedConformance,
                         ::testing::Values("proofd", "proofledger", "simpleproof"), ParamName);
INSTANTIATE_TEST_SUITE_P(Adapters, PlanConformance, ::testing::Values("proofd", "proofledger"),
                         ParamName);
INSTANTIATE_TEST_SUITE_P(Adapters, QuotaConformance, ::testing::Values("proofd"), ParamName);

}  // namespace
}  // namespace anchord::providers
