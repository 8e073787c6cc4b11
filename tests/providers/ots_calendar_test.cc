// The OpenTimestamps calendar adapter against three canned calendars on loopback: the quorum,
// validation of every answer, the merged pending proof, upgrades by commitment with Cache-Control
// honoured, the whitelist, per-calendar pacing and gates.
#include "libs/providers/ots_calendar.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <map>
#include <memory>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "libs/common/hex.h"
#include "libs/ots/ots.h"
#include "libs/ots/upgrade.h"
#include "tests/providers/fake_server.h"
#include "tests/testing/wait.h"
#include "tests/providers/sleep_watch_clock.h"
#include "tests/providers/ots_fixtures.h"

namespace anchord::providers {
namespace {

using anchord::testing::Canned;
using anchord::testing::FakeServer;
using anchord::testing::Seen;

std::string Digest(int i) {
  std::string d(32, '\0');
  d[0] = static_cast<char>(i);
  d[31] = static_cast<char>(i * 7 + 1);
  return d;
}
// Digest(i) as the type the interface takes.
anchord::Digest D(int i) { return *anchord::Digest::FromBytes(Digest(i)); }

Canned Ots(int status, std::string body, std::vector<std::pair<std::string, std::string>> h = {}) {
  Canned c;
  c.status = status;
  c.body = std::move(body);
  c.headers = std::move(h);
  c.content_type = status == 200 ? "application/octet-stream" : "text/plain";
  return c;
}

// One calendar: answers POST /digest like docs/providers/ots.md (pending on its own URL) and GET
// /timestamp from a table the test fills.
struct Calendar {
  FakeServer server;
  std::mutex mu;
  std::map<std::string, std::string> commitments;  // digest -> commitment
  std::map<std::string, Canned> upgrades;          // commitment -> answer (default 404 pending)
  std::string pending_uri;                         // "" = its own URL

  Calendar() {
    server.SetHandler([this](const Seen& s) {
      std::lock_guard<std::mutex> lock(mu);
      if (s.method == "POST" && s.path == "/digest") {
        std::string commitment;
        std::string answer = anchord::testing::CalendarCreateAnswer(
            s.body, pending_uri.empty() ? server.url() : pending_uri, &commitment);
        commitments[s.body] = commitment;
        return Ots(200, answer);
      }
      if (s.method == "GET" && absl::StartsWith(s.path, "/timestamp/")) {
        auto c = HexDecode(s.path.substr(11));
        if (c.ok()) {
          auto it = upgrades.find(*c);
          if (it != upgrades.end()) return it->second;
        }
        return Ots(404, "Pending confirmation in Bitcoin blockchain",
                   {{"Cache-Control", "max-age=60"}});
      }
      return Ots(404, "not found");
    });
  }
  std::string Commitment(const std::string& digest) {
    std::lock_guard<std::mutex> lock(mu);
    return commitments[digest];
  }
  void Upgrade(const std::string& commitment, Canned answer) {
    std::lock_guard<std::mutex> lock(mu);
    upgrades[commitment] = std::move(answer);
  }
};

class OtsCalendarTest : public ::testing::Test {
 protected:
  OtsCalendarTest() : http_(http::MakeCurlClient()), metrics_(registry_) {
    provider_ =
        Make({cals_[0]->server.url(), cals_[1]->server.url() + "/", cals_[2]->server.url()}, 2);
  }

  std::unique_ptr<Provider> Make(std::vector<std::string> calendars, int min,
                                 absl::Duration timeout = absl::Seconds(5),
                                 ratelimit::RateLimit limit = {60, absl::Minutes(1)},
                                 http::HttpClient* http = nullptr) {
    OtsCalendarConfig config;
    config.calendars = std::move(calendars);
    config.min_calendars = min;
    config.timeout = timeout;
    config.lookup_timeout = absl::Seconds(5);
    config.calendar_limit = limit;
    OtsCalendarDeps deps;
    deps.http = http != nullptr ? http : http_.get();
    deps.metrics = &metrics_;
    deps.clock = &clock_;
    deps.limiters = [this](const std::string& name, ratelimit::RateLimit l) {
      auto lim = ratelimit::MakeLocalRateLimiter(name, l, &clock_);
      std::lock_guard<std::mutex> lock(limiters_mu_);
      limiters_[name] = lim.get();
      return lim;
    };
    return MakeOtsCalendarProvider(config, deps);
  }

  PreparedCreate Prepared(int i) {
    auto p = provider_->PrepareCreate({D(i), "f.pdf", 10, ""});
    EXPECT_TRUE(p.ok()) << p.status();
    return *p;
  }

  ratelimit::RateLimiter* LimiterOf(const Calendar& c) {
    std::lock_guard<std::mutex> lock(limiters_mu_);
    auto it = limiters_.find("ots." + c.server.url());
    return it == limiters_.end() ? nullptr : it->second;
  }

  size_t Requests(Calendar& c, const std::string& method) {
    size_t n = 0;
    for (const Seen& s : c.server.seen()) n += s.method == method;
    return n;
  }

  FakeClock clock_;
  // The servers outlive the client: closing its kept-alive connections first lets them stop at
  // once instead of waiting out their keep-alive timeout.
  std::unique_ptr<Calendar> cals_[3] = {std::make_unique<Calendar>(), std::make_unique<Calendar>(),
                                        std::make_unique<Calendar>()};
  Calendar stranger_;  // a loopback calendar the adapter under test is not configured with
  FakeServer slow_;
  std::unique_ptr<http::HttpClient> http_;
  prometheus::Registry registry_;
  ProviderMetrics metrics_;
  std::mutex limiters_mu_;
  std::map<std::string, ratelimit::RateLimiter*> limiters_;
  std::unique_ptr<Provider> provider_;
};

TEST_F(OtsCalendarTest, DefaultsAndPrepare) {
  EXPECT_EQ(DefaultOtsCalendars(),
            (std::vector<std::string>{
                "https://a.pool.opentimestamps.org", "https://b.pool.opentimestamps.org",
                "https://a.pool.eternitywall.com", "https://ots.btc.catallaxy.com"}));
  OtsCalendarConfig defaults;
  EXPECT_EQ(defaults.name, "ots");
  EXPECT_EQ(defaults.min_calendars, 2);
  EXPECT_EQ(provider_->name(), "ots");
  auto p = provider_->PrepareCreate({D(1), "", 0, ""});
  ASSERT_TRUE(p.ok()) << p.status();  // nothing but the digest is needed
  EXPECT_EQ(p->digest, D(1));
  EXPECT_EQ(p->body, HexEncode(Digest(1)));
  EXPECT_TRUE(p->idempotency_key.empty());
  EXPECT_FALSE(provider_->SupportsListPending());
  EXPECT_TRUE(provider_->OffersOts());
  EXPECT_EQ(provider_->max_batch(), 1);
}

TEST_F(OtsCalendarTest, CreateMergesEveryAnswerIntoOnePendingProof) {
  CreateResult r = provider_->Create(Prepared(1));
  ASSERT_EQ(r.outcome.kind, OutcomeKind::kOk) << r.outcome.code << " " << r.outcome.message;
  ASSERT_TRUE(r.record.has_value());
  EXPECT_EQ(r.record->proof_id, HexEncode(Digest(1)));
  EXPECT_EQ(r.record->digest, D(1));
  EXPECT_EQ(r.record->state, RecordState::kPending);
  auto file = ots::ParseDetached(r.record->evidence);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->digest, Digest(1));
  EXPECT_EQ(file->file_hash_op.tag, ots::kOpSha256);
  std::set<std::string> uris;
  for (const auto& p : ots::PendingAttestations(*file)) uris.insert(p.uri);
  EXPECT_EQ(uris, (std::set<std::string>{cals_[0]->server.url(), cals_[1]->server.url(),
                                         cals_[2]->server.url()}));
  for (auto& c : cals_) {
    auto seen = c->server.seen();
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].method, "POST");
    EXPECT_EQ(seen[0].path, "/digest");  // a trailing slash in the configured URL is dropped
    EXPECT_EQ(seen[0].body, Digest(1));  // the raw 32 bytes
    EXPECT_EQ(seen[0].Header("Accept"), "application/vnd.opentimestamps.v1");
    EXPECT_EQ(seen[0].Header("Authorization"), "");
  }
  EXPECT_EQ(
      metrics_.requests.Add({{"provider", "ots"}, {"endpoint", "digest"}, {"code", "200"}}).Value(),
      3);

  // maybe_sent needs no check: a re-send is just another pending proof.
  PreparedCreate again = Prepared(1);
  again.maybe_sent = true;
  EXPECT_EQ(provider_->Create(again).outcome.kind, OutcomeKind::kOk);
  EXPECT_EQ(Requests(*cals_[0], "POST"), 2u);
}

TEST_F(OtsCalendarTest, QuorumOfValidAnswers) {
  // One calendar fails: 2 of 3 still make the quorum.
  cals_[2]->server.Push(Ots(500, "boom"));
  CreateResult r = provider_->Create(Prepared(1));
  ASSERT_EQ(r.outcome.kind, OutcomeKind::kOk) << r.outcome.message;
  auto file = ots::ParseDetached(r.record->evidence);
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(ots::PendingAttestations(*file).size(), 2u);

  // Invalid answers do not count: too large, trailing bytes, garbage, no pending attestation,
  // pending on a calendar outside the whitelist.
  std::string commitment;
  const std::string valid =
      anchord::testing::CalendarCreateAnswer(Digest(2), cals_[0]->server.url(), &commitment);
  const std::vector<std::string> invalid = {
      valid + std::string(ots::kMaxCalendarAnswer, 'x'),
      valid + "x",
      "garbage",
      anchord::testing::CalendarUpgradeAnswer(Digest(2), 100),  // Bitcoin only, no pending
      anchord::testing::CalendarCreateAnswer(Digest(2), "https://evil.example.com", nullptr),
  };
  for (const std::string& bad : invalid) {
    SCOPED_TRACE(bad.size());
    cals_[1]->server.Push(Ots(200, bad));
    cals_[2]->server.Push(Ots(200, bad));
    CreateResult q = provider_->Create(Prepared(2));
    EXPECT_EQ(q.outcome.kind, OutcomeKind::kRetry);
    EXPECT_EQ(q.outcome.code, "CALENDAR_QUORUM");
    EXPECT_TRUE(absl::StrContains(q.outcome.message, "1 of 3")) << q.outcome.message;
    EXPECT_FALSE(q.record.has_value());
  }

  // Nobody reachable.
  auto down = Make({"http://127.0.0.1:1", "http://127.0.0.1:2"}, 1);
  CreateResult d = down->Create(Prepared(3));
  EXPECT_EQ(d.outcome.kind, OutcomeKind::kRetry);
  EXPECT_EQ(d.outcome.code, "CALENDAR_QUORUM");
}

TEST_F(OtsCalendarTest, ACalendarSlowerThanTheTimeoutDoesNotCount) {
  // A valid answer that comes too late: without the timeout it would make the quorum.
  FakeServer& slow = slow_;
  // Answers are held until both creates have returned (bounded, should the test fail first).
  auto answered = std::make_shared<absl::Notification>();
  slow.SetHandler([&slow, answered](const Seen& s) {
    answered->WaitForNotificationWithTimeout(absl::Seconds(10));
    return Ots(200, anchord::testing::CalendarCreateAnswer(s.body, slow.url(), nullptr));
  });
  auto p = Make({cals_[0]->server.url(), slow.url(), cals_[1]->server.url()}, 2,
                absl::Milliseconds(200));
  CreateResult r = p->Create(Prepared(1));
  ASSERT_EQ(r.outcome.kind, OutcomeKind::kOk) << r.outcome.message;
  auto file = ots::ParseDetached(r.record->evidence);
  ASSERT_TRUE(file.ok());
  for (const auto& pending : ots::PendingAttestations(*file)) EXPECT_NE(pending.uri, slow.url());
  auto p2 = Make({cals_[0]->server.url(), slow.url()}, 2, absl::Milliseconds(200));
  CreateResult q = p2->Create(Prepared(2));
  EXPECT_EQ(q.outcome.code, "CALENDAR_QUORUM");
  EXPECT_TRUE(absl::StrContains(q.outcome.message, "1 of 2")) << q.outcome.message;
  answered->Notify();
}

TEST_F(OtsCalendarTest, LookupAsksForTheCommitmentAndHonoursCacheControl) {
  auto p = Make({cals_[0]->server.url()}, 1);
  CreateResult c = p->Create(Prepared(1));
  ASSERT_EQ(c.outcome.kind, OutcomeKind::kOk) << c.outcome.message;
  const ProofRef ref{c.record->proof_id, c.record->digest, c.record->evidence};
  const std::string commitment = cals_[0]->Commitment(Digest(1));
  ASSERT_EQ(commitment.size(), 44u);

  LookupResult l = p->Lookup(ref);
  ASSERT_EQ(l.outcome.kind, OutcomeKind::kOk) << l.outcome.message;
  EXPECT_EQ(l.record->state, RecordState::kPending);
  EXPECT_TRUE(l.record->evidence.empty());  // nothing merged
  auto seen = cals_[0]->server.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].method, "GET");
  // The commitment at the pending node, not the submitted digest.
  EXPECT_EQ(seen[1].path, "/timestamp/" + HexEncode(commitment));

  // max-age=60: not asked again before a minute has passed.
  for (int i = 0; i < 3; ++i) {
    clock_.Advance(absl::Seconds(15));
    EXPECT_EQ(p->Lookup(ref).outcome.kind, OutcomeKind::kOk);
  }
  EXPECT_EQ(Requests(*cals_[0], "GET"), 1u);

  cals_[0]->Upgrade(commitment,
                    Ots(200, anchord::testing::CalendarUpgradeAnswer(commitment, 900123),
                        {{"Cache-Control", "max-age=31536000"}}));
  clock_.Advance(absl::Seconds(16));
  l = p->Lookup(ref);
  ASSERT_EQ(l.outcome.kind, OutcomeKind::kOk) << l.outcome.message;
  EXPECT_EQ(Requests(*cals_[0], "GET"), 2u);
  EXPECT_EQ(l.record->state, RecordState::kConfirmed);
  EXPECT_EQ(l.record->block_height, 900123);
  auto merged = ots::ParseDetached(l.record->evidence);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_EQ(merged->digest, Digest(1));
  EXPECT_TRUE(ots::IsComplete(*merged));

  // A complete proof needs no calendar; download returns it as is.
  const ProofRef done{ref.proof_id, ref.digest, l.record->evidence};
  LookupResult again = p->Lookup(done);
  EXPECT_EQ(again.record->state, RecordState::kConfirmed);
  EXPECT_EQ(Requests(*cals_[0], "GET"), 2u);
  DownloadResult d = p->DownloadProof(done);
  ASSERT_EQ(d.outcome.kind, OutcomeKind::kOk);
  EXPECT_EQ(d.ots, l.record->evidence);
  EXPECT_EQ(p->DownloadProof(ref).outcome.kind, OutcomeKind::kNotFound);  // still pending
}

TEST_F(OtsCalendarTest, LowestBitcoinAttestationIsTheBlockHeight) {
  CreateResult c = provider_->Create(Prepared(1));
  ASSERT_EQ(c.outcome.kind, OutcomeKind::kOk);
  auto file = ots::ParseDetached(c.record->evidence);
  ASSERT_TRUE(file.ok());
  const std::string c0 = cals_[0]->Commitment(Digest(1));
  const std::string c1 = cals_[1]->Commitment(Digest(1));
  ASSERT_TRUE(
      ots::MergeCalendarAnswer(&*file, c0, anchord::testing::CalendarUpgradeAnswer(c0, 800)).ok());
  ASSERT_TRUE(
      ots::MergeCalendarAnswer(&*file, c1, anchord::testing::CalendarUpgradeAnswer(c1, 700)).ok());
  LookupResult l = provider_->Lookup({HexEncode(Digest(1)), D(1), *ots::SerializeDetached(*file)});
  ASSERT_EQ(l.outcome.kind, OutcomeKind::kOk);
  EXPECT_EQ(l.record->block_height, 700);
}

TEST_F(OtsCalendarTest, OnlyWhitelistedCalendarsAreEverContacted) {
  // A loopback calendar that is not configured: its pending attestation must be skipped.
  Calendar& stranger = stranger_;
  auto p = Make({cals_[0]->server.url(), stranger.server.url()}, 1);
  auto only_ours = Make({cals_[0]->server.url()}, 1);
  CreateResult c = p->Create(Prepared(1));
  ASSERT_EQ(c.outcome.kind, OutcomeKind::kOk);
  const size_t stranger_before = stranger.server.seen().size();
  LookupResult l = only_ours->Lookup({c.record->proof_id, c.record->digest, c.record->evidence});
  EXPECT_EQ(l.outcome.kind, OutcomeKind::kOk);
  EXPECT_EQ(stranger.server.seen().size(), stranger_before);
  EXPECT_EQ(Requests(*cals_[0], "GET"), 1u);

  // A proof naming no whitelisted calendar at all cannot be upgraded: nothing is contacted.
  auto strangers_only = Make({stranger.server.url()}, 1);
  CreateResult s = strangers_only->Create(Prepared(2));
  ASSERT_EQ(s.outcome.kind, OutcomeKind::kOk);
  const size_t before = stranger.server.seen().size();
  LookupResult none = only_ours->Lookup({s.record->proof_id, s.record->digest, s.record->evidence});
  EXPECT_EQ(none.outcome.kind, OutcomeKind::kNotFound);  // this proof's problem only
  EXPECT_EQ(none.outcome.code, "NO_WHITELISTED_CALENDAR");
  EXPECT_EQ(stranger.server.seen().size(), before);
}

TEST_F(OtsCalendarTest, LookupRejectsBadEvidenceAndBadAnswers) {
  const std::string hex = HexEncode(Digest(1));
  const anchord::Digest d1 = D(1);
  EXPECT_EQ(provider_->Lookup({hex, d1, ""}).outcome.code, "MISSING_EVIDENCE");
  EXPECT_EQ(provider_->Lookup({hex, d1, "garbage"}).outcome.code, "INVALID_EVIDENCE");
  const std::string other = anchord::testing::CompleteOts(Digest(2), 5);
  EXPECT_EQ(provider_->Lookup({hex, d1, other}).outcome.code, "INVALID_EVIDENCE");
  EXPECT_EQ(provider_->Lookup({hex, d1, other}).outcome.kind, OutcomeKind::kNotFound);
  EXPECT_EQ(provider_->DownloadProof({hex, d1, other}).outcome.code, "INVALID_EVIDENCE");

  // Its own client, closed before the calendar shuts down below (no keep-alive wait).
  auto client = http::MakeCurlClient();
  auto p =
      Make({cals_[0]->server.url()}, 1, absl::Seconds(5), {60, absl::Minutes(1)}, client.get());
  CreateResult c = p->Create(Prepared(1));
  ASSERT_EQ(c.outcome.kind, OutcomeKind::kOk);
  const ProofRef ref{c.record->proof_id, c.record->digest, c.record->evidence};
  const std::string commitment = cals_[0]->Commitment(Digest(1));
  // A 200 that is not a timestamp on the commitment is never merged.
  cals_[0]->Upgrade(commitment, Ots(200, "\xff\xff garbage"));
  LookupResult l = p->Lookup(ref);
  EXPECT_EQ(l.outcome.kind, OutcomeKind::kRetry);
  EXPECT_EQ(l.outcome.code, "MALFORMED_RESPONSE");
  EXPECT_FALSE(l.record.has_value());
  cals_[0]->Upgrade(commitment, Ots(200, anchord::testing::CalendarUpgradeAnswer(commitment, 1) +
                                             std::string(ots::kMaxCalendarAnswer, '\0')));
  EXPECT_EQ(p->Lookup(ref).outcome.code, "MALFORMED_RESPONSE");
  cals_[0]->Upgrade(commitment, Ots(503, "busy"));
  EXPECT_EQ(p->Lookup(ref).outcome.kind, OutcomeKind::kRetry);
  p.reset();
  client.reset();
  cals_[0]->server.Shutdown();
  auto q = Make({cals_[0]->server.url()}, 1);
  EXPECT_EQ(q->Lookup(ref).outcome.code, "NETWORK_ERROR");
}

TEST_F(OtsCalendarTest, EachCalendarHasItsOwnLimiterAndGate) {
  auto p = Make({cals_[0]->server.url(), cals_[1]->server.url()}, 1, absl::Seconds(5),
                {1, absl::Minutes(1)});
  const absl::Time t0 = clock_.Now();
  ASSERT_EQ(p->Create(Prepared(1)).outcome.kind, OutcomeKind::kOk);
  ASSERT_EQ(p->Create(Prepared(2)).outcome.kind, OutcomeKind::kOk);
  EXPECT_GE(clock_.Now(), t0 + absl::Minutes(1));  // one request per minute per calendar
  ASSERT_NE(LimiterOf(*cals_[0]), nullptr);
  ASSERT_NE(LimiterOf(*cals_[1]), nullptr);
  EXPECT_NE(LimiterOf(*cals_[0]), LimiterOf(*cals_[1]));

  // A 429 closes that calendar's gate only.
  auto q = Make({cals_[0]->server.url(), cals_[1]->server.url()}, 1);
  cals_[0]->server.Push(Ots(429, "slow down", {{"Retry-After", "30"}}));
  const absl::Time t1 = clock_.Now();
  ASSERT_EQ(q->Create(Prepared(3)).outcome.kind, OutcomeKind::kOk);  // the other one answered
  EXPECT_EQ(LimiterOf(*cals_[0])->blocked_until(), t1 + absl::Seconds(30));
  EXPECT_EQ(LimiterOf(*cals_[1])->blocked_until(), absl::InfinitePast());
  EXPECT_EQ(metrics_.rate_limited.Add({{"provider", "ots"}}).Value(), 1);
  // Both rate limited: the create is kRateLimited, carrying the wait.
  cals_[0]->server.Push(Ots(429, "slow down", {{"Retry-After", "40"}}));
  cals_[1]->server.Push(Ots(429, "slow down", {{"Retry-After", "20"}}));
  CreateResult r = q->Create(Prepared(4));
  EXPECT_EQ(r.outcome.kind, OutcomeKind::kRateLimited);
  EXPECT_GE(r.outcome.retry_after, absl::Seconds(20));
}

TEST_F(OtsCalendarTest, StopCancelsAPacingWait) {
  ratelimit::RateLimiter* gate = nullptr;
  OtsCalendarConfig config;
  config.calendars = {cals_[0]->server.url()};
  config.min_calendars = 1;
  OtsCalendarDeps deps;
  deps.http = http_.get();
  anchord::testing::SleepWatchClock clock;
  deps.limiters = [&gate, &clock](const std::string& name, ratelimit::RateLimit l) {
    auto lim = ratelimit::MakeLocalRateLimiter(name, l, &clock);  // real time
    lim->BlockUntil(absl::Now() + absl::Hours(1));
    gate = lim.get();
    return lim;
  };
  auto p = MakeOtsCalendarProvider(config, deps);
  CreateResult r;
  PreparedCreate prepared = Prepared(1);
  std::thread t([&] { r = p->Create(prepared); });
  EXPECT_TRUE(anchord::testing::WaitUntil([&] { return clock.sleeps() > 0; }, absl::Seconds(10)));
  p->Stop();
  t.join();
  EXPECT_NE(gate, nullptr);
  EXPECT_EQ(r.outcome.kind, OutcomeKind::kRetry);
  EXPECT_TRUE(absl::StrContains(r.outcome.message, "CANCELLED")) << r.outcome.message;
  EXPECT_TRUE(cals_[0]->server.seen().empty());
}

}  // namespace
}  // namespace anchord::providers
