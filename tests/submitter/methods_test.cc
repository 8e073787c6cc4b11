// The submitter's unary methods as plain functions (services/submitter/methods.h), called
// directly on a real SQLite store: no server, no gRPC.
#include "services/submitter/methods.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>

#include "libs/common/hex.h"
#include "tests/submitter/test_util.h"

namespace anchord::submitter {
namespace {

class MethodsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir();
    ASSERT_FALSE(dir_.empty());
    auto s = OpenSqliteSubmitterStore(dir_ + "/submitter.db");
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  const absl::Time now_ = absl::FromUnixSeconds(1'800'000'000);
  std::string dir_;
  std::unique_ptr<SubmitterStore> store_;
};

anchord::v1::LocateRequest LocateReq(const std::string& digest) {
  anchord::v1::LocateRequest r;
  r.set_digest(digest);
  return r;
}

TEST_F(MethodsTest, LocateNamesABadDigestAndAnUnknownOne) {
  auto bad = LocateDigest(*store_, LocateReq("abc"), now_);
  ASSERT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("digest"), std::string::npos) << bad.status();

  auto unknown = LocateDigest(*store_, LocateReq(testing::Digest('q')), now_);
  ASSERT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(unknown.status().message().find(HexEncode(testing::Digest('q'))), std::string::npos)
      << unknown.status();
}

TEST_F(MethodsTest, LocateReportsRowsFilesAndAPausedQueue) {
  NewItem both = testing::Item('a', "x/a.txt");
  both.providers = {"fake", "other"};
  ASSERT_TRUE(store_->InsertBatch({both, testing::Item('a', "y/copy.txt")}, now_).ok());

  auto found = LocateDigest(*store_, LocateReq(testing::Digest('a')), now_);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->service(), "submitter");
  EXPECT_EQ(found->state(), anchord::v1::DIGEST_STATE_QUEUED);
  ASSERT_EQ(found->proofs_size(), 2);
  for (const auto& p : found->proofs()) EXPECT_EQ(p.state(), anchord::v1::DIGEST_STATE_QUEUED);
  ASSERT_EQ(found->files_size(), 2);
  EXPECT_EQ(found->files(0).source_path(), "x/a.txt");
  EXPECT_EQ(found->files(1).source_path(), "y/copy.txt");
  EXPECT_EQ(found->status().code(), 0);

  // A paused queue explains the wait, with the time left until its probe as the retry delay.
  ASSERT_TRUE(
      store_->Pause({"other", "MONTHLY_LIMIT_REACHED: quota", now_, now_ + absl::Minutes(5)}).ok());
  auto paused = LocateDigest(*store_, LocateReq(testing::Digest('a')), now_);
  ASSERT_TRUE(paused.ok()) << paused.status();
  EXPECT_EQ(paused->status().code(), static_cast<int>(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(paused->status().reason(), "QUEUE_PAUSED");
  EXPECT_NE(paused->status().message().find("queue of provider other is paused"), std::string::npos)
      << paused->status().message();
  EXPECT_EQ(paused->status().retry_delay().seconds(), 300);
}

TEST_F(MethodsTest, SummarizeJobCountsByStateAndNamesPauses) {
  anchord::v1::SummarizeJobRequest req;
  req.set_job("no spaces");
  auto bad = SummarizeJob(*store_, req);
  ASSERT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("job"), std::string::npos) << bad.status();

  ASSERT_TRUE(store_
                  ->InsertBatch({testing::Item('a', "a.txt", "fake", "j1"),
                                 testing::Item('b', "b.txt", "fake", "j1"),
                                 testing::Item('c', "c.txt", "other", "j2")},
                                now_)
                  .ok());
  auto row = store_->Claim("fake", "t", now_, now_ + absl::Minutes(1));
  ASSERT_TRUE(row.ok() && row->has_value());
  ASSERT_TRUE(store_->MarkSubmitted((*row)->id, {}, "r", now_).ok());  // a or b: both are j1's
  ASSERT_TRUE(store_->Pause({"fake", "QUOTA: spent", now_, now_ + absl::Hours(1)}).ok());

  req.set_job("j1");
  auto sum = SummarizeJob(*store_, req);
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(sum->service(), "submitter");
  EXPECT_EQ(sum->files(), 2);
  EXPECT_EQ(sum->digests_by_state().size(), 2u);
  EXPECT_EQ(sum->digests_by_state().at("DIGEST_STATE_QUEUED"), 1);
  EXPECT_EQ(sum->digests_by_state().at("DIGEST_STATE_SUBMITTED"), 1);
  EXPECT_TRUE(sum->paused());
  EXPECT_EQ(sum->paused_reason(), "fake: QUOTA: spent");

  // paused_only: the pause without the counts (archive --wait asks it every 2 s).
  req.set_paused_only(true);
  auto pause = SummarizeJob(*store_, req);
  ASSERT_TRUE(pause.ok()) << pause.status();
  EXPECT_EQ(pause->service(), "submitter");
  EXPECT_EQ(pause->files(), 0);
  EXPECT_TRUE(pause->digests_by_state().empty());
  EXPECT_TRUE(pause->paused());
  EXPECT_EQ(pause->paused_reason(), "fake: QUOTA: spent");
  ASSERT_TRUE(store_->Resume("fake").ok());
  pause = SummarizeJob(*store_, req);
  ASSERT_TRUE(pause.ok()) << pause.status();
  EXPECT_FALSE(pause->paused());
  EXPECT_EQ(pause->paused_reason(), "");
  req.set_job("no spaces");
  EXPECT_EQ(SummarizeJob(*store_, req).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(MethodsTest, ResumeQueueRefusesAnUnknownProviderAndResumesTheStore) {
  ASSERT_TRUE(store_->Pause({"fake", "QUOTA: spent", now_, now_ + absl::Hours(1)}).ok());
  anchord::v1::ResumeQueueRequest req;
  req.set_provider("nope");
  auto bad = ResumeQueue(*store_, nullptr, {"fake", "other"}, req);
  ASSERT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), "provider: unknown provider; configured: fake, other");
  EXPECT_EQ(store_->ListPauses()->size(), 1u);

  req.set_provider("fake");
  auto resumed = ResumeQueue(*store_, nullptr, {"fake", "other"}, req);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  ASSERT_EQ(resumed->resumed_size(), 1);
  EXPECT_EQ(resumed->resumed(0), "fake");
  EXPECT_TRUE(store_->ListPauses()->empty());
}

// Reanchor goes through the core's intake (the thread that group-commits Submit items), so this
// one needs a core; still no server.
TEST_F(MethodsTest, ReanchorValidatesAndQueuesTheDigestWithTheNewProvider) {
  ServiceOptions o;
  o.providers = {"fake", "other"};
  o.default_provider = "fake";
  SubmitterCore core(store_.get(), nullptr, nullptr, o);

  anchord::v1::ReanchorRequest req;
  req.set_digest(testing::Digest('r'));
  req.mutable_metadata()->set_filename("r.txt");
  req.mutable_metadata()->set_source_path("x/r.txt");
  req.mutable_metadata()->set_size_bytes(5);
  req.set_stalled_provider("fake");
  auto missing = Reanchor(core, req);
  ASSERT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(missing.status().message(), "provider: required");

  req.set_provider("nope");
  auto unknown = Reanchor(core, req);
  ASSERT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("providers[0]"), std::string::npos) << unknown.status();
  EXPECT_TRUE(store_->GetByDigest(testing::DigestOf('r'))->empty());

  req.set_provider("other");
  auto queued = Reanchor(core, req);
  ASSERT_TRUE(queued.ok()) << queued.status();
  EXPECT_EQ(queued->state(), anchord::v1::DIGEST_STATE_QUEUED);
  auto rows = store_->GetByDigest(testing::DigestOf('r'));
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].provider, "other");
  core.Stop();
}

}  // namespace
}  // namespace anchord::submitter
