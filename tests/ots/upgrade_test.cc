// Upgrade: pending points, merging calendar answers (valid at every step), the HTTP fetcher and
// the reference checker's acceptance of the result.
#include "libs/ots/upgrade.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "libs/ots/verify.h"
#include "tests/ots/ots_test_util.h"
#include "tests/testing/wait.h"

namespace anchord::ots {
namespace {

using ::testing::HasSubstr;
using namespace testing_util;

constexpr char kCatallaxy[] = "https://btc.calendar.catallaxy.com";

DetachedFile Load(const std::string& rel) {
  auto p = ParseDetached(ReadAll(Vector(rel)));
  EXPECT_TRUE(p.ok()) << rel << ": " << p.status();
  return p.ok() ? *std::move(p) : DetachedFile{};
}

// Copy of `t` where the node whose message is `cut` loses its ops (keeps its attestations): what
// the proof looked like before the calendar answered.
std::shared_ptr<Timestamp> CloneCut(const Timestamp& t, const std::string& cut) {
  auto copy = std::make_shared<Timestamp>(t.msg());
  for (const auto& a : t.attestations()) copy->AddAttestation(a);
  if (t.msg() == cut) return copy;
  for (const auto& [op, child] : t.ops()) EXPECT_TRUE(copy->SetOp(op, CloneCut(*child, cut)).ok());
  return copy;
}

const Timestamp* FindNode(const Timestamp& t, const std::string& msg) {
  if (t.msg() == msg) return &t;
  for (const auto& [op, child] : t.ops()) {
    if (const Timestamp* f = FindNode(*child, msg)) return f;
  }
  return nullptr;
}

// The calendar's answer: a Timestamp on the commitment holding the sub-tree below it.
std::string AnswerFor(const Timestamp& node) {
  Timestamp answer(node.msg());
  for (const auto& [op, child] : node.ops())
    EXPECT_TRUE(answer.SetOp(op, CloneTimestamp(*child)).ok());
  std::string out;
  EXPECT_TRUE(answer.Serialize(&out).ok());
  return out;
}

std::string Serialized(const DetachedFile& f) {
  auto b = SerializeDetached(f);
  EXPECT_TRUE(b.ok()) << b.status();
  return b.ok() ? *b : "";
}

TEST(PendingAttestations, ListsEveryCalendarUpToTheFirstAttestedNode) {
  auto two = PendingAttestations(Load("two-calendars.txt.ots"));
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0].uri, "https://alice.btc.calendar.opentimestamps.org");
  EXPECT_EQ(
      Hex(two[0].commitment),
      "57d46515fdd8c2334c77b1f204338bb2178d73e523988d7dcda13259d3a099f31623755deadd66b1688d5574");
  EXPECT_EQ(two[1].uri, "https://bob.btc.calendar.opentimestamps.org");
  // osdsp: the catallaxy node keeps its pending attestation AND continues to Bitcoin; it is listed.
  auto osdsp = PendingAttestations(Load("extra-js/osdsp.txt.ots"));
  EXPECT_EQ(osdsp.size(), 4u);
  // A pending attestation below an attested node is not searched (reference behaviour).
  DetachedFile f;
  f.digest = std::string(32, 'd');
  f.timestamp = std::make_shared<Timestamp>(f.digest);
  f.timestamp->AddAttestation(Attestation::Pending("https://a.example"));
  auto child = f.timestamp->AddOp(Op::Sha256());
  ASSERT_TRUE(child.ok());
  (*child)->AddAttestation(Attestation::Pending("https://b.example"));
  auto pts = PendingAttestations(f);
  ASSERT_EQ(pts.size(), 1u);
  EXPECT_EQ(pts[0].uri, "https://a.example");
}

class OsdspUpgrade : public ::testing::Test {
 protected:
  void SetUp() override {
    original_bytes_ = ReadAll(Vector("extra-js/osdsp.txt.ots"));
    original_ = Load("extra-js/osdsp.txt.ots");
    for (const auto& p : PendingAttestations(original_)) {
      if (p.uri == kCatallaxy) commitment_ = p.commitment;
    }
    ASSERT_EQ(commitment_.size(), 44u);
    const Timestamp* node = FindNode(*original_.timestamp, commitment_);
    ASSERT_NE(node, nullptr);
    answer_ = AnswerFor(*node);
    pruned_ = DetachedFile{original_.file_hash_op, original_.digest,
                           CloneCut(*original_.timestamp, commitment_)};
    ASSERT_FALSE(IsComplete(pruned_));
  }
  CalendarFetch Fetch() {
    return [this](const std::string& uri,
                  const std::string& c) -> absl::StatusOr<std::optional<std::string>> {
      ++fetches_;
      if (uri == kCatallaxy && c == commitment_) return std::optional<std::string>(answer_);
      return std::optional<std::string>();  // 404: still pending
    };
  }
  std::string original_bytes_, commitment_, answer_;
  DetachedFile original_, pruned_;
  int fetches_ = 0;
};

TEST_F(OsdspUpgrade, MergeRestoresTheUpgradedProofByteForByte) {
  UpgradeReport rep = Upgrade(&pruned_, Fetch());
  EXPECT_EQ(rep.pending_total, 4);
  EXPECT_EQ(rep.upgraded, 1);
  EXPECT_EQ(rep.still_pending, 3);
  EXPECT_EQ(rep.errors, 0);
  EXPECT_TRUE(rep.changed);
  EXPECT_TRUE(rep.complete);
  EXPECT_EQ(Serialized(pruned_), original_bytes_);
  // The pending attestation is kept, like the reference.
  EXPECT_EQ(PendingAttestations(pruned_).size(), 4u);

  FakeChain chain;
  chain.Add(523364, Unhex("39780753a0e7785eea0fabafa8fbef1ef2539d26f6cbf3beac738a1de0e74f3c"),
            1526719849);
  auto r = VerifyFile(pruned_, Vector("extra-js/osdsp.txt"), &chain);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->verified);
  EXPECT_EQ(r->earliest->block_time, 1526719849);

  // A second pass changes nothing.
  UpgradeReport again = Upgrade(&pruned_, Fetch());
  EXPECT_FALSE(again.changed);
}

TEST_F(OsdspUpgrade, ReferenceCheckerAcceptsTheMergedProof) {
  ASSERT_TRUE(Upgrade(&pruned_, Fetch()).changed);
  TempDir dir;
  const std::string path = dir.File("osdsp.txt.ots");
  WriteAll(path, Serialized(pruned_));
  const std::string cmd =
      absl::StrCat("/usr/bin/python3 ", ANCHORD_OTS_CHECKER, " --strict ", path, " --digest ",
                   "397a00836979837319bdd350aa93bcc2798e94e08ab00f32f355e5ebe7837c2b > ",
                   dir.File("out.json"), " 2>&1");
  const int rc = std::system(cmd.c_str());
  const std::string out = ReadAll(dir.File("out.json"));
  ASSERT_TRUE(WIFEXITED(rc)) << out;
  EXPECT_EQ(WEXITSTATUS(rc), 0) << out;
  EXPECT_THAT(out, HasSubstr("\"height\": 523364"));
  EXPECT_THAT(out, HasSubstr("\"root_check\": \"match\""));
}

TEST_F(OsdspUpgrade, RejectsAnAnswerForAnotherCommitment) {
  const std::string before = Serialized(pruned_);
  std::string other = commitment_;
  other[0] ^= 1;
  // The answer parsed against the wrong commitment computes different messages: nowhere to merge.
  auto st = MergeCalendarAnswer(&pruned_, other, answer_);
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(Serialized(pruned_), before);
  // Garbage and trailing bytes are rejected too, the proof untouched.
  EXPECT_FALSE(MergeCalendarAnswer(&pruned_, commitment_, "\x42garbage").ok());
  EXPECT_THAT(MergeCalendarAnswer(&pruned_, commitment_, answer_ + "x").message(),
              HasSubstr("trailing"));
  EXPECT_EQ(Serialized(pruned_), before);
  EXPECT_TRUE(MergeCalendarAnswer(&pruned_, commitment_, answer_).ok());
  EXPECT_EQ(Serialized(pruned_), original_bytes_);
}

TEST_F(OsdspUpgrade, FetchErrorsAndWhitelistAreReported) {
  int calls = 0;
  CalendarFetch failing = [&](const std::string&,
                              const std::string&) -> absl::StatusOr<std::optional<std::string>> {
    ++calls;
    return absl::UnavailableError("connection refused");
  };
  const std::string before = Serialized(pruned_);
  UpgradeReport rep = Upgrade(&pruned_, failing);
  EXPECT_EQ(rep.errors, 4);
  EXPECT_FALSE(rep.changed);
  EXPECT_EQ(Serialized(pruned_), before);
  // Only the catallaxy calendar is whitelisted by this list: the other three are skipped.
  UpgradeOptions only;
  only.whitelist = {"https://*.calendar.catallaxy.com"};
  UpgradeReport rep2 = Upgrade(&pruned_, Fetch(), only);
  EXPECT_EQ(rep2.skipped, 3);
  EXPECT_EQ(rep2.upgraded, 1);
  // Explicit calendars replace the URIs in the proof.
  UpgradeOptions explicit_cal;
  explicit_cal.calendars = {"http://127.0.0.1:9"};
  fetches_ = 0;
  UpgradeReport rep3 = Upgrade(&pruned_, Fetch(), explicit_cal);
  EXPECT_EQ(fetches_, 4);
  EXPECT_EQ(rep3.upgraded, 0);
}

TEST(MergeCalendarAnswer, RefusesAMergeThatWouldExceedTheDepthLimit) {
  // A pending node 200 ops deep and an answer 100 ops deep: 300 > 256, the merged proof would not
  // parse, so the merge is refused and the proof stays as it was.
  DetachedFile f;
  f.digest = std::string(32, 'z');
  f.timestamp = std::make_shared<Timestamp>(f.digest);
  std::shared_ptr<Timestamp> node = f.timestamp;
  for (int i = 0; i < 200; ++i) node = *node->AddOp(Op::Sha256());
  node->AddAttestation(Attestation::Pending("https://a.calendar.opentimestamps.org"));
  Timestamp answer(node->msg());
  std::shared_ptr<Timestamp> a = *answer.AddOp(Op::Sha256());
  for (int i = 0; i < 99; ++i) a = *a->AddOp(Op::Sha256());
  a->AddAttestation(Attestation::Bitcoin(1));
  std::string bytes;
  ASSERT_TRUE(answer.Serialize(&bytes).ok());
  const std::string before = Serialized(f);
  auto st = MergeCalendarAnswer(&f, node->msg(), bytes);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr("RecursionLimit"));
  EXPECT_EQ(Serialized(f), before);
}

TEST(Whitelist, MatchesLikeTheReference) {
  const auto wl = DefaultCalendarWhitelist();
  EXPECT_TRUE(CalendarWhitelisted("https://alice.btc.calendar.opentimestamps.org", wl));
  EXPECT_TRUE(CalendarWhitelisted("https://finney.calendar.eternitywall.com", wl));
  EXPECT_TRUE(CalendarWhitelisted("https://btc.calendar.catallaxy.com", wl));
  EXPECT_FALSE(CalendarWhitelisted("http://alice.btc.calendar.opentimestamps.org", wl));
  EXPECT_FALSE(CalendarWhitelisted("https://eth.ots.eternitywall.com", wl));
  EXPECT_FALSE(CalendarWhitelisted("https://alice.btc.calendar.opentimestamps.org/x", wl));
  EXPECT_FALSE(CalendarWhitelisted("https://evil.com/.calendar.opentimestamps.org", wl));
  EXPECT_FALSE(CalendarWhitelisted("https://a.calendar.opentimestamps.org?x=1", wl));
  EXPECT_TRUE(CalendarWhitelisted("http://127.0.0.1:8080", {"127.0.0.1:*"}));
}

TEST(HttpCalendarFetch, TwoHundredFourOhFourAndErrors) {
  httplib::Server svr;
  std::string seen_path, seen_accept;
  svr.Get(R"(/timestamp/([0-9a-f]+))", [&](const httplib::Request& req, httplib::Response& res) {
    seen_path = req.path;
    seen_accept = req.get_header_value("Accept");
    const std::string hex = req.matches[1];
    if (hex == "aa") {
      res.set_content(std::string("\x08\x00", 2), "application/octet-stream");
    } else if (hex == "bb") {
      res.status = 404;
      res.set_content("Pending confirmation in Bitcoin blockchain", "text/plain");
    } else if (hex == "cc") {
      res.set_content(std::string(kMaxCalendarAnswer + 100, 'x'), "application/octet-stream");
    } else {
      res.status = 500;
    }
  });
  const int port = svr.bind_to_any_port("127.0.0.1");
  std::thread t([&] { svr.listen_after_bind(); });
  // Stops the server even when an ASSERT returns early (a joinable thread must not be destroyed).
  struct Stopper {
    httplib::Server& s;
    std::thread& t;
    ~Stopper() {
      s.stop();
      if (t.joinable()) t.join();
    }
  } stopper{svr, t};
  ASSERT_TRUE(testing::WaitUntil([&] { return svr.is_running(); }, absl::Seconds(10)));
  // The fetcher (and its keep-alive curl connection) is destroyed before svr.stop(), which would
  // otherwise wait for the server's keep-alive timeout.
  {
    CalendarFetch fetch = MakeHttpCalendarFetch();
    const std::string base = absl::StrCat("http://127.0.0.1:", port, "/");
    auto ok = fetch(base, "\xaa");
    ASSERT_TRUE(ok.ok()) << ok.status();
    ASSERT_TRUE(ok->has_value());
    EXPECT_EQ(**ok, std::string("\x08\x00", 2));
    EXPECT_EQ(seen_path, "/timestamp/aa");
    EXPECT_EQ(seen_accept, "application/vnd.opentimestamps.v1");
    auto pending = fetch(base, "\xbb");
    ASSERT_TRUE(pending.ok());
    EXPECT_FALSE(pending->has_value());
    EXPECT_FALSE(fetch(base, "\xcc").ok());  // larger than the reference's 10000 bytes
    EXPECT_FALSE(fetch(base, "\xdd").ok());
  }
}

}  // namespace
}  // namespace anchord::ots
