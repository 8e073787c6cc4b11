// The poller's unary methods as plain functions (lookups.h), on a real SQLite store and without
// gRPC: validation names the field, and the answers carry what the store holds.
#include "services/poller/lookups.h"

#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "libs/common/hex.h"
#include "tests/poller/test_util.h"

namespace anchord::poller {
namespace {

using testing::Digest;
using testing::Pending;
using testing::TempDir;
namespace v1 = anchord::v1;

class PollerLookupsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    auto s = OpenSqlitePollerStore(dir_.File("poller.db"));
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }

  void Track(std::vector<TrackInput> inputs) {
    auto outcomes = store_->Track(inputs, now_);
    ASSERT_TRUE(outcomes.ok()) << outcomes.status();
  }

  TempDir dir_;
  std::unique_ptr<PollerStore> store_;
  absl::Time now_ = absl::FromUnixSeconds(1'700'000'000);
};

TEST_F(PollerLookupsTest, GetProofValidatesFindsAndReportsUnknownDigests) {
  Track({Pending(Digest(1), "id-1", "fake", "j")});

  v1::GetProofRequest req;
  req.set_digest("tooshort");
  auto bad = GetProof(*store_, req);
  ASSERT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(bad.status().message(), "digest:")) << bad.status();

  req.set_digest(testing::DigestBytes(1));
  auto found = GetProof(*store_, req);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->proof().digest(), testing::DigestBytes(1));
  EXPECT_EQ(found->proof().proof_id(), "id-1");
  EXPECT_EQ(found->proof().state(), v1::DIGEST_STATE_PENDING);
  ASSERT_EQ(found->proof().files_size(), 1);
  EXPECT_EQ(found->proof().files(0).job(), "j");

  req.set_digest(testing::DigestBytes(2));
  req.set_provider("other");
  auto missing = GetProof(*store_, req);
  ASSERT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(missing.status().message(), Digest(2).hex())) << missing.status();
  EXPECT_TRUE(absl::StrContains(missing.status().message(), "with provider")) << missing.status();
}

TEST_F(PollerLookupsTest, ListProofsNamesTheBadFieldAndPagesWithoutGaps) {
  std::vector<TrackInput> inputs;
  for (int i = 1; i <= 5; ++i) inputs.push_back(Pending(Digest(i), "id-" + std::to_string(i)));
  Track(inputs);

  auto field_of = [&](const v1::ListProofsRequest& req) {
    auto r = ListProofs(*store_, req);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
    return std::string(r.status().message());
  };
  v1::ListProofsRequest req;
  req.set_page_size(1001);
  EXPECT_TRUE(absl::StartsWith(field_of(req), "page_size:"));
  req.set_page_size(-1);
  EXPECT_TRUE(absl::StartsWith(field_of(req), "page_size:"));
  req.Clear();
  req.add_digests(testing::DigestBytes(1));
  req.add_digests("x");
  EXPECT_TRUE(absl::StartsWith(field_of(req), "digests[1]:"));
  req.Clear();
  req.set_job("no spaces");
  EXPECT_TRUE(absl::StartsWith(field_of(req), "job:"));
  req.Clear();
  req.set_state(static_cast<v1::DigestState>(99));
  EXPECT_TRUE(absl::StartsWith(field_of(req), "state:"));
  req.Clear();
  req.set_page_token("not a token");
  EXPECT_TRUE(absl::StartsWith(field_of(req), "page_token:"));

  std::set<std::string> seen;
  req.Clear();
  req.set_page_size(2);
  int pages = 0;
  for (; pages < 10; ++pages) {
    auto page = ListProofs(*store_, req);
    ASSERT_TRUE(page.ok()) << page.status();
    EXPECT_LE(page->proofs_size(), 2);
    for (const auto& p : page->proofs()) EXPECT_TRUE(seen.insert(p.digest()).second);
    if (page->next_page_token().empty()) break;
    req.set_page_token(page->next_page_token());
  }
  EXPECT_EQ(pages, 2);  // pages of 2, 2 and 1
  EXPECT_EQ(seen.size(), 5u);
}

TEST_F(PollerLookupsTest, LocateReportsEveryProofAndTheFailure) {
  Track({Pending(Digest(1), "id-a", "alpha"), Pending(Digest(1), "id-b", "beta")});
  auto failed = store_->MarkFailed(Digest(1), "beta", 9, "rejected by beta", "REJECTED", "rq-1",
                                   now_ + absl::Minutes(1));
  ASSERT_TRUE(failed.ok() && failed->has_value());

  v1::LocateRequest req;
  req.set_digest(testing::DigestBytes(1));
  auto located = Locate(*store_, req);
  ASSERT_TRUE(located.ok()) << located.status();
  EXPECT_EQ(located->service(), "poller");
  EXPECT_EQ(located->proofs_size(), 2);
  EXPECT_EQ(located->state(), v1::DIGEST_STATE_FAILED);
  EXPECT_EQ(located->status().message(), "rejected by beta");
  EXPECT_EQ(located->status().code(), 9);
  // The digest's files (one per proof here, as each hand-off named another file).
  EXPECT_EQ(located->files_size(), 2);

  req.set_digest(testing::DigestBytes(7));
  auto unknown = Locate(*store_, req);
  ASSERT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(unknown.status().message(), "digest: the poller knows nothing of " + Digest(7).hex());

  req.set_digest("");
  EXPECT_EQ(Locate(*store_, req).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(PollerLookupsTest, SummarizeJobCountsByStateAndValidatesTheJob) {
  Track({Pending(Digest(1), "id-1", "fake", "j"), Pending(Digest(2), "id-2", "fake", "j"),
         Pending(Digest(3), "id-3", "fake", "other")});
  ASSERT_TRUE(store_->MarkConfirmed(Digest(2), "fake", {}, now_).ok());

  v1::SummarizeJobRequest req;
  req.set_job("j");
  auto summary = SummarizeJob(*store_, req);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->service(), "poller");
  EXPECT_EQ(summary->files(), 2);
  EXPECT_EQ(summary->digests_by_state().at("DIGEST_STATE_PENDING"), 1);
  EXPECT_EQ(summary->digests_by_state().at("DIGEST_STATE_CONFIRMED"), 1);

  req.set_paused_only(true);  // the poller never pauses: nothing is counted
  summary = SummarizeJob(*store_, req);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->service(), "poller");
  EXPECT_EQ(summary->files(), 0);
  EXPECT_TRUE(summary->digests_by_state().empty());
  EXPECT_FALSE(summary->paused());

  req.set_job("j/..");
  auto bad = SummarizeJob(*store_, req);
  ASSERT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StartsWith(bad.status().message(), "job:")) << bad.status();
}

}  // namespace
}  // namespace anchord::poller
