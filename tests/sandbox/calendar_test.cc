// The sandbox's OpenTimestamps calendars over real HTTP on 127.0.0.1, checked against
// docs/providers/ots.md: POST /digest gives a pending Timestamp, GET /timestamp/<commitment>
// answers 404 until the commitment is in a fake block, then a Timestamp that, merged into the
// pending proof, verifies with libs/ots against the sandbox's headers and with the reference
// library (check_ots.py). Also: every API's confirmations share one fake chain.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include "absl/strings/str_join.h"
#include "libs/ots/headers.h"
#include "libs/ots/upgrade.h"
#include "libs/ots/verify.h"
#include "tests/sandbox/api_test_util.h"
#include "tests/testing/temp_dir.h"

namespace anchord::sandbox {
namespace {

using namespace testing_util;
using ::testing::HasSubstr;

class CalendarTest : public ::testing::Test {
 protected:
  void Start(SandboxOptions opt) {
    auto sb = Sandbox::Start(opt);
    ASSERT_TRUE(sb.ok()) << sb.status();
    sb_ = std::move(*sb);
    cli_ = ClientFor(sb_->port());
  }
  SandboxOptions Options() {
    SandboxOptions opt = QuietOptions(&clock_);
    opt.calendars = 2;
    opt.confirm_after = absl::Seconds(10);
    opt.pending_max_age = absl::Seconds(1);
    opt.first_block_height = 910000;
    return opt;
  }
  std::unique_ptr<httplib::Client> Calendar(size_t i) {
    const std::string url = sb_->calendar_urls().at(i);
    auto cli = std::make_unique<httplib::Client>(url);
    cli->set_connection_timeout(5, 0);
    cli->set_read_timeout(10, 0);
    return cli;
  }
  // POSTs `digest` to calendar i and parses the answer as a Timestamp rooted at the digest.
  std::shared_ptr<ots::Timestamp> Stamp(size_t i, const std::string& digest) {
    auto res = Calendar(i)->Post("/digest", digest, "application/x-www-form-urlencoded");
    EXPECT_TRUE(res);
    if (!res) return nullptr;
    EXPECT_EQ(res->status, 200) << res->body;
    EXPECT_EQ(res->get_header_value("Content-Type"), "application/octet-stream");
    size_t pos = 0;
    auto t = ots::Timestamp::Parse(res->body, &pos, digest);
    EXPECT_TRUE(t.ok()) << t.status();
    if (!t.ok()) return nullptr;
    EXPECT_EQ(pos, res->body.size());
    return *t;
  }

  FakeClock clock_;
  std::unique_ptr<Sandbox> sb_;
  std::unique_ptr<httplib::Client> cli_;
};

TEST_F(CalendarTest, EachCalendarHasItsOwnBareOrigin) {
  Start(Options());
  const auto urls = sb_->calendar_urls();
  ASSERT_EQ(urls.size(), 2u);
  EXPECT_NE(urls[0], urls[1]);
  for (const auto& u : urls) {
    EXPECT_THAT(u, ::testing::MatchesRegex("http://127\\.0\\.0\\.1:[0-9]+"));
  }
  auto listed = Parse(cli_->Get("/_sandbox/calendars"));
  EXPECT_EQ(listed["calendar_urls"], json(urls));
  EXPECT_EQ(Parse(cli_->Get("/_sandbox/stats"))["calendar"]["calendar_urls"], json(urls));
}

TEST_F(CalendarTest, DigestGivesAPendingTimestampLikeTheReference) {
  Start(Options());
  const std::string digest = ots::Sha256("hello");
  auto t = Stamp(0, digest);
  ASSERT_NE(t, nullptr);
  // append(16-byte nonce), sha256, prepend(4-byte time), append(8-byte mac), pending.
  ASSERT_EQ(t->ops().size(), 1u);
  const auto& [op1, n1] = *t->ops().begin();
  EXPECT_EQ(op1.tag, ots::kOpAppend);
  EXPECT_EQ(op1.arg.size(), 16u);
  ASSERT_EQ(n1->ops().size(), 1u);
  EXPECT_EQ(n1->ops().begin()->first.tag, ots::kOpSha256);
  const auto& n2 = n1->ops().begin()->second;
  ASSERT_EQ(n2->ops().size(), 1u);
  const auto& [op3, n3] = *n2->ops().begin();
  EXPECT_EQ(op3.tag, ots::kOpPrepend);
  const uint32_t now = static_cast<uint32_t>(absl::ToUnixSeconds(clock_.Now()));
  EXPECT_EQ(op3.arg, std::string({static_cast<char>(now >> 24), static_cast<char>(now >> 16),
                                  static_cast<char>(now >> 8), static_cast<char>(now)}));
  ASSERT_EQ(n3->ops().size(), 1u);
  EXPECT_EQ(n3->ops().begin()->first.tag, ots::kOpAppend);
  EXPECT_EQ(n3->ops().begin()->first.arg.size(), 8u);

  auto atts = t->AllAttestations();
  ASSERT_EQ(atts.size(), 1u);
  EXPECT_EQ(atts[0].second.kind, ots::Attestation::Kind::kPending);
  EXPECT_EQ(atts[0].second.uri, sb_->calendar_urls()[0]);
  EXPECT_EQ(atts[0].first.size(), 44u);  // the commitment: 4 + 32 + 8

  // The same digest again: a fresh nonce, a different commitment.
  auto again = Stamp(0, digest);
  ASSERT_NE(again, nullptr);
  EXPECT_NE(again->AllAttestations()[0].first, atts[0].first);

  // An empty digest is timestamped too (no minimum); 65 bytes are too long.
  EXPECT_NE(Stamp(1, ""), nullptr);
  auto too_long = Calendar(0)->Post("/digest", std::string(65, 'x'), "application/octet-stream");
  ASSERT_TRUE(too_long);
  EXPECT_EQ(too_long->status, 400);
  EXPECT_EQ(too_long->body, "digest too long");
  auto max = Calendar(0)->Post("/digest", std::string(64, 'x'), "application/octet-stream");
  ASSERT_TRUE(max);
  EXPECT_EQ(max->status, 200);

  SandboxStats s = sb_->Stats();
  EXPECT_EQ(s.calendar.submissions_total, 4);
  EXPECT_EQ(s.calendar.creates_by_digest[HexEncode(digest)], 2);
  EXPECT_EQ(s.calendar.max_creates_per_digest, 2);
  EXPECT_EQ(s.calendar.submissions_by_calendar[sb_->calendar_urls()[0]], 3);
  EXPECT_EQ(s.calendar.submissions_by_calendar[sb_->calendar_urls()[1]], 1);
}

TEST_F(CalendarTest, TimestampIsPendingThenCompleteAndVerifies) {
  Start(Options());
  testing::TempDir dir("sandbox_calendar");
  const std::string file_bytes = "inspection photo bytes\n";
  const std::string digest = ots::Sha256(file_bytes);
  auto t = Stamp(0, digest);
  ASSERT_NE(t, nullptr);
  const auto atts = t->AllAttestations();
  ASSERT_EQ(atts.size(), 1u);
  const std::string commitment = atts[0].first;
  const std::string path = "/timestamp/" + HexEncode(commitment);

  auto pending = Calendar(0)->Get(path.c_str());
  ASSERT_TRUE(pending);
  EXPECT_EQ(pending->status, 404);
  EXPECT_EQ(pending->body, "Pending confirmation in Bitcoin blockchain");
  EXPECT_EQ(pending->get_header_value("Cache-Control"), "max-age=1");
  // Another calendar never saw this commitment.
  auto elsewhere = Calendar(1)->Get(path.c_str());
  ASSERT_TRUE(elsewhere);
  EXPECT_EQ(elsewhere->status, 404);
  EXPECT_EQ(elsewhere->body, "Not found");
  auto unknown = Calendar(0)->Get(("/timestamp/" + HexEncode(std::string(44, 'z'))).c_str());
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
  EXPECT_EQ(unknown->body, "Not found");
  for (const char* bad : {"/timestamp/zz", "/timestamp/abc"}) {
    auto res = Calendar(0)->Get(bad);
    ASSERT_TRUE(res) << bad;
    EXPECT_EQ(res->status, 400) << bad;
    EXPECT_EQ(res->body, "commitment must be hex-encoded bytes");
  }

  clock_.Advance(absl::Seconds(9));
  EXPECT_EQ(Calendar(0)->Get(path.c_str())->status, 404);
  clock_.Advance(absl::Seconds(1));
  auto done = Calendar(0)->Get(path.c_str());
  ASSERT_TRUE(done);
  ASSERT_EQ(done->status, 200) << done->body;
  EXPECT_EQ(done->get_header_value("Content-Type"), "application/octet-stream");
  EXPECT_EQ(done->get_header_value("Cache-Control"), "max-age=31536000");
  EXPECT_LE(done->body.size(), ots::kMaxCalendarAnswer);
  // Upper-case hex names the same commitment.
  auto upper =
      Calendar(0)->Get(("/timestamp/" + absl::AsciiStrToUpper(HexEncode(commitment))).c_str());
  ASSERT_TRUE(upper);
  EXPECT_EQ(upper->body, done->body);

  // The client's side: the pending proof, the answer merged in, verified.
  ots::DetachedFile proof{ots::Op::Sha256(), digest, t};
  ASSERT_EQ(ots::PendingAttestations(proof).size(), 1u);
  EXPECT_FALSE(ots::IsComplete(proof));
  ASSERT_TRUE(ots::MergeCalendarAnswer(&proof, commitment, done->body).ok());
  EXPECT_TRUE(ots::IsComplete(proof));
  const std::string origin = absl::StrCat("http://127.0.0.1:", sb_->port());
  int64_t height = -1;
  {
    ots::SandboxHeaders headers(origin);
    ots::VerifyResult r = ots::Verify(proof, digest, &headers);
    EXPECT_TRUE(r.verified) << r.message;
    ASSERT_TRUE(r.earliest.has_value());
    height = static_cast<int64_t>(r.earliest->attestation.height);
    EXPECT_EQ(height, 910000);
    // Another file's digest does not verify with this proof.
    EXPECT_FALSE(ots::Verify(proof, ots::Sha256("other"), &headers).verified);
  }

  // The reference library reads the merged proof, and accepts the fake header for the block.
  auto bytes = ots::SerializeDetached(proof);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  std::ofstream(dir.File("photo.jpg.ots"), std::ios::binary) << *bytes;
  std::ofstream(dir.File("photo.jpg"), std::ios::binary) << file_bytes;
  auto header = cli_->Get(absl::StrCat("/_sandbox/blocks/", height, "/header").c_str());
  ASSERT_TRUE(header);
  ASSERT_EQ(header->status, 200);
  std::ofstream(dir.File("roots.json"))
      << json{{std::to_string(height), {{"header_hex", header->body}, {"status", "sandbox"}}}}
             .dump();
  std::string out;
  const std::string check =
      absl::StrCat("/usr/bin/python3 ", ANCHORD_CHECK_OTS, " ", dir.File("photo.jpg.ots"),
                   " --strict --roots ", dir.File("roots.json"));
  EXPECT_EQ(RunCommand(check, dir.File("out.txt"), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("\"root_check\": \"match\""));
  EXPECT_THAT(out, HasSubstr("\"reserialized_identical\": true"));
  EXPECT_THAT(out, HasSubstr(sb_->calendar_urls()[0]));  // the pending attestation is kept
  std::ofstream(dir.File("photo.jpg"), std::ios::binary) << "tampered";
  EXPECT_EQ(RunCommand(check, dir.File("out2.txt"), &out), 2) << out;

  SandboxStats s = sb_->Stats();
  EXPECT_EQ(s.calendar.pending_answers_total, 2);
  EXPECT_EQ(s.calendar.not_found_total, 2);
  EXPECT_EQ(s.calendar.upgrades_served_total, 2);
  EXPECT_EQ(s.calendar.confirmed_total, 1);
}

TEST_F(CalendarTest, ProofStampedOnBothCalendarsUpgradesThroughLibsOts) {
  Start(Options());
  // What `ots stamp` does with two calendars: the same digest to each, both answers merged.
  const std::string digest = ots::Sha256("two calendars");
  auto root = std::make_shared<ots::Timestamp>(digest);
  for (size_t i = 0; i < 2; ++i) {
    auto t = Stamp(i, digest);
    ASSERT_NE(t, nullptr);
    for (const auto& [op, child] : t->ops()) ASSERT_TRUE(root->SetOp(op, child).ok());
  }
  ots::DetachedFile proof{ots::Op::Sha256(), digest, root};
  ASSERT_EQ(ots::PendingAttestations(proof).size(), 2u);

  ots::UpgradeOptions options;
  options.whitelist = sb_->calendar_urls();
  auto fetch = ots::MakeHttpCalendarFetch();
  ots::UpgradeReport early = ots::Upgrade(&proof, fetch, options);
  EXPECT_EQ(early.still_pending, 2);
  EXPECT_FALSE(early.complete);

  clock_.Advance(absl::Seconds(10));
  ots::UpgradeReport rep = ots::Upgrade(&proof, fetch, options);
  EXPECT_EQ(rep.upgraded, 2) << absl::StrJoin(rep.messages, "\n");
  EXPECT_EQ(rep.errors, 0) << absl::StrJoin(rep.messages, "\n");
  EXPECT_TRUE(rep.complete);
  ots::SandboxHeaders headers(absl::StrCat("http://127.0.0.1:", sb_->port()));
  ots::VerifyResult r = ots::Verify(proof, digest, &headers);
  EXPECT_TRUE(r.verified) << r.message;
  int bitcoin = 0;
  for (const auto& a : r.attestations) {
    if (a.attestation.kind == ots::Attestation::Kind::kBitcoin) {
      ++bitcoin;
      EXPECT_EQ(a.status, ots::AttestationStatus::kVerified) << a.detail;
    }
  }
  EXPECT_GE(bitcoin, 1);
}

TEST_F(CalendarTest, RoutesMethodsLimitsAndFaults) {
  SandboxOptions opt = Options();
  opt.calendar_limit = 2;
  opt.window = absl::Seconds(10);
  Start(opt);
  auto cal = Calendar(0);
  auto get_digest = cal->Get("/digest");
  ASSERT_TRUE(get_digest);
  EXPECT_EQ(get_digest->status, 404);
  auto other = cal->Post("/other", "x", "application/octet-stream");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 404);
  EXPECT_EQ(other->body, "not found");
  EXPECT_EQ(other->get_header_value("Cache-Control"), "max-age=3600");
  auto root = cal->Get("/");
  ASSERT_TRUE(root);
  EXPECT_EQ(root->status, 200);

  EXPECT_NE(Stamp(0, "a"), nullptr);
  EXPECT_NE(Stamp(0, "b"), nullptr);
  auto limited = cal->Post("/digest", "c", "application/octet-stream");
  ASSERT_TRUE(limited);
  EXPECT_EQ(limited->status, 429);
  EXPECT_EQ(limited->get_header_value("Retry-After"), "10");
  EXPECT_NE(Stamp(1, "c"), nullptr);  // each calendar has its own budget
  EXPECT_EQ(cal->Post("/digest", "c", "application/octet-stream")->status, 429);  // early
  clock_.Advance(absl::Seconds(10));
  EXPECT_NE(Stamp(0, "c"), nullptr);
  // Fetching answers is not limited.
  for (int i = 0; i < 5; ++i) EXPECT_EQ(cal->Get("/timestamp/00")->status, 404);

  Faults f;
  f.error_rate = 1;
  sb_->SetFaults(f);
  auto err = cal->Post("/digest", "d", "application/octet-stream");
  ASSERT_TRUE(err);
  EXPECT_EQ(err->status, 502);
  f = Faults();
  f.storm_seconds = 5;
  sb_->SetFaults(f);
  auto storm = cal->Get("/timestamp/00");
  ASSERT_TRUE(storm);
  EXPECT_EQ(storm->status, 429);
  EXPECT_EQ(storm->get_header_value("Retry-After"), "1");
  clock_.Advance(absl::Seconds(1));  // honour it: the next request is not early
  f = Faults();
  f.drop_rate = 1;
  sb_->SetFaults(f);
  EXPECT_FALSE(cal->Post("/digest", "e", "application/octet-stream"));
  sb_->SetFaults(Faults());

  SandboxStats s = sb_->Stats();
  EXPECT_EQ(s.calendar.rate_limited_total, 3);
  EXPECT_EQ(s.calendar.early_requests_total, 1);
  EXPECT_EQ(s.calendar.faults_injected_total, 3);
  EXPECT_EQ(s.calendar.submissions_total, 5);  // a, b, c (cal 1), c, e (answer dropped)
  sb_->Reset();
  EXPECT_EQ(sb_->Stats().calendar.submissions_total, 0);
}

TEST_F(CalendarTest, GarbageNeverCrashesACalendar) {
  Start(Options());
  auto cal = Calendar(0);
  std::mt19937 rng(3);
  for (int i = 0; i < 50; ++i) {
    std::string junk(rng() % 80, '\0');
    for (auto& c : junk) c = static_cast<char>(rng());
    auto res = cal->Post("/digest", junk, "application/octet-stream");
    ASSERT_TRUE(res);
    EXPECT_TRUE(res->status == 200 || res->status == 400) << res->status;
    std::string hex = HexEncode(junk);
    auto t = cal->Get(("/timestamp/" + hex).c_str());
    ASSERT_TRUE(t);
    EXPECT_EQ(t->status, 404);
  }
  auto streamed = cal->Post(
      "/digest", 3,
      [](size_t, size_t, httplib::DataSink& sink) {
        sink.write("abc", 3);
        return true;
      },
      "application/octet-stream");
  ASSERT_TRUE(streamed);
  EXPECT_EQ(streamed->status, 200);
  // Chunked: no Content-Length, which the reference refuses.
  auto chunked = cal->Post(
      "/digest",
      [](size_t offset, httplib::DataSink& sink) {
        if (offset == 0) sink.write("abc", 3);
        sink.done();
        return true;
      },
      "application/octet-stream");
  ASSERT_TRUE(chunked);
  EXPECT_EQ(chunked->status, 400);
  EXPECT_EQ(chunked->body, "invalid Content-Length");
  auto huge = cal->Post("/digest", std::string(1 << 17, 'x'), "application/octet-stream");
  if (huge) {  // 413 from httplib, or the connection is closed
    EXPECT_NE(huge->status, 200);
  }
  EXPECT_EQ(cal->Get("/")->status, 200);  // still serving
}

TEST_F(CalendarTest, EveryApiConfirmsIntoTheSameFakeChain) {
  SandboxOptions opt = Options();
  Start(opt);
  const std::string h = HashN(700);
  // proofd
  auto pd =
      cli_->Post("/api/v1/timestamps", {{"Authorization", "Bearer proofd_live_sandbox"}},
                 json{{"sha256_hash", h}, {"filename", "a.pdf"}, {"file_size_bytes", 10}}.dump(),
                 "application/json");
  ASSERT_TRUE(pd);
  ASSERT_EQ(pd->status, 201) << pd->body;
  // ProofLedger
  auto pl = cli_->Post("/api/v1/proof", {{"Authorization", "Bearer sk_sandbox"}},
                       json{{"sha256", h}, {"filename", "a.pdf"}}.dump(), "application/json");
  ASSERT_TRUE(pl);
  ASSERT_EQ(pl->status, 201) << pl->body;
  // SimpleProof
  auto sp = cli_->Post("/api/proof/timestamp/hashes", {{"x-access-token", "sp_sandbox_token"}},
                       json{{"hashes", {h}}}.dump(), "application/json");
  ASSERT_TRUE(sp);
  ASSERT_EQ(sp->status, 200) << sp->body;
  // A calendar
  auto t = Stamp(1, *HexDecode(h));
  ASSERT_NE(t, nullptr);
  const std::string commitment = t->AllAttestations()[0].first;

  clock_.Advance(absl::Seconds(10));
  const std::string id = Parse(pd)["id"];
  auto pd_rec = Parse(cli_->Get(("/api/v1/timestamps/" + id).c_str(),
                                {{"Authorization", "Bearer proofd_live_sandbox"}}));
  auto pl_rec = Parse(cli_->Get(("/api/v1/verify?hash=" + h).c_str()));
  auto sp_list = Parse(cli_->Get("/api/proof/document?status=confirmed&page=0&limit=1",
                                 {{"x-access-token", "sp_sandbox_token"}}));
  auto cal = Calendar(1)->Get(("/timestamp/" + HexEncode(commitment)).c_str());
  ASSERT_TRUE(cal);
  ASSERT_EQ(cal->status, 200);
  ots::DetachedFile proof{ots::Op::Sha256(), *HexDecode(h), t};
  ASSERT_TRUE(ots::MergeCalendarAnswer(&proof, commitment, cal->body).ok());
  int64_t cal_height = -1;
  for (const auto& [msg, att] : proof.timestamp->AllAttestations()) {
    if (att.kind == ots::Attestation::Kind::kBitcoin) cal_height = static_cast<int64_t>(att.height);
  }
  EXPECT_EQ(pd_rec["bitcoin_block"], 910000);
  EXPECT_EQ(pl_rec["bitcoin_block"], 910000);
  EXPECT_EQ(sp_list["data"]["documents"][0]["blockchain"]["block_height"], 910000);
  EXPECT_EQ(cal_height, 910000);
  SandboxStats s = sb_->Stats();
  EXPECT_EQ(s.blocks_total, 1);
  EXPECT_EQ(s.confirmed_total, 1);
  EXPECT_EQ(s.proofledger.confirmed_total, 1);
  EXPECT_EQ(s.simpleproof.confirmed_total, 1);
  EXPECT_EQ(s.calendar.confirmed_total, 1);
  // proofd's proof of the same block verifies against the same header.
  auto ots_bytes = cli_->Get(("/api/v1/timestamps/" + id + "/ots").c_str(),
                             {{"Authorization", "Bearer proofd_live_sandbox"}});
  ASSERT_TRUE(ots_bytes);
  auto pd_proof = ots::ParseDetached(ots_bytes->body);
  ASSERT_TRUE(pd_proof.ok()) << pd_proof.status();
  ots::SandboxHeaders headers(absl::StrCat("http://127.0.0.1:", sb_->port()));
  EXPECT_TRUE(ots::Verify(*pd_proof, *HexDecode(h), &headers).verified);
  EXPECT_TRUE(ots::Verify(proof, *HexDecode(h), &headers).verified);
}

TEST_F(CalendarTest, NoCalendarsWhenAskedForNone) {
  SandboxOptions opt = Options();
  opt.calendars = 0;
  Start(opt);
  EXPECT_TRUE(sb_->calendar_urls().empty());
}

}  // namespace
}  // namespace anchord::sandbox
