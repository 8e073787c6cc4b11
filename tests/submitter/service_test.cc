#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <map>

#include "absl/synchronization/notification.h"
#include "services/submitter/service.h"
#include "tests/submitter/test_util.h"
#include "tests/testing/wait.h"

namespace anchord::submitter {
namespace {

using anchord::v1::SubmitRequest;
using anchord::v1::SubmitResponse;

SubmitRequest Req(const std::string& id, const std::string& digest, const std::string& filename,
                  const std::string& path) {
  SubmitRequest r;
  r.set_request_id(id);
  r.set_digest(digest);
  r.mutable_metadata()->set_filename(filename);
  r.mutable_metadata()->set_size_bytes(42);
  r.mutable_metadata()->set_source_path(path);
  r.mutable_metadata()->set_job("job1");
  return r;
}

class ServiceTest : public ::testing::Test {
 protected:
  void Start(int64_t high_water = 100000, std::function<void()> before_group = nullptr) {
    dir_ = testing::MakeTempDir();
    ASSERT_FALSE(dir_.empty());
    auto s = OpenSqliteSubmitterStore(dir_ + "/submitter.db");
    ASSERT_TRUE(s.ok());
    store_ = std::move(*s);
    ServiceOptions o;
    o.providers = {"fake", "other"};
    o.default_provider = "fake";
    o.high_water = high_water;
    o.backlog_refresh = absl::Milliseconds(50);
    o.before_group = std::move(before_group);
    core_ = std::make_unique<SubmitterCore>(store_.get(), nullptr, nullptr, o);
    submitter_ = std::make_unique<SubmitterServiceImpl>(core_.get());
    status_ = std::make_unique<StatusServiceImpl>(core_.get());
    grpc::ServerBuilder b;
    int port = 0;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    b.RegisterService(submitter_.get());
    b.RegisterService(status_.get());
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    auto ch = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                  grpc::InsecureChannelCredentials());
    stub_ = anchord::v1::SubmitterService::NewStub(ch);
    status_stub_ = anchord::v1::StatusService::NewStub(ch);
  }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    core_.reset();
    store_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  static void Deadline(grpc::ClientContext* ctx, int seconds = 20) {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  }

  std::string dir_;
  std::unique_ptr<SubmitterStore> store_;
  std::unique_ptr<SubmitterCore> core_;
  std::unique_ptr<SubmitterServiceImpl> submitter_;
  std::unique_ptr<StatusServiceImpl> status_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<anchord::v1::SubmitterService::Stub> stub_;
  std::unique_ptr<anchord::v1::StatusService::Stub> status_stub_;
};

// The intake runs before_group (the hand-off's backpressure) before it takes a group: while that
// waits, an item queued is neither stored nor answered; once it returns, the item is both.
TEST_F(ServiceTest, TheIntakeWaitsForBeforeGroupBeforeItStores) {
  absl::Notification release;
  std::atomic<int> calls{0};
  Start(100000, [&] {
    ++calls;
    release.WaitForNotificationWithTimeout(absl::Seconds(10));
  });
  absl::Notification answered;
  SubmitResponse got;
  SubmitterCore::IntakeItem in;
  in.item = testing::Item('a', "a.txt");
  in.request_id = "r1";
  in.done = [&](SubmitResponse r) {
    got = std::move(r);
    answered.Notify();
  };
  core_->Enqueue(std::move(in));
  ASSERT_TRUE(anchord::testing::WaitUntil([&] { return calls.load() >= 1; }, absl::Seconds(10)));
  EXPECT_FALSE(answered.HasBeenNotified());
  EXPECT_TRUE(store_->GetByDigest(testing::DigestOf('a'))->empty());
  release.Notify();
  ASSERT_TRUE(answered.WaitForNotificationWithTimeout(absl::Seconds(10)));
  EXPECT_EQ(got.status().code(), 0);
  EXPECT_EQ(store_->GetByDigest(testing::DigestOf('a'))->size(), 1u);
  core_.reset();  // before `release` and `calls` go: the intake may call before_group again
}

TEST_F(ServiceTest, ValidatesStoresDurablyAndAnswersDuplicates) {
  Start();
  grpc::ClientContext ctx;
  Deadline(&ctx);
  auto stream = stub_->Submit(&ctx);
  std::vector<SubmitRequest> reqs = {
      Req("bad-digest", "abc", "a.txt", "x/a.txt"),
      Req("ok-1", testing::Digest('a'), "a.txt", "x/a.txt"),
      Req("bad-name", testing::Digest('b'), "", "x/b.txt"),
      Req("dup", testing::Digest('a'), "copy.txt", "y/copy.txt"),
      Req("ok-2", testing::Digest('c'), "c.txt", "x/c.txt"),
  };
  reqs.push_back(Req("bad-provider", testing::Digest('d'), "d.txt", "x/d.txt"));
  reqs.back().add_providers("nope");
  for (const auto& r : reqs) ASSERT_TRUE(stream->Write(r));
  ASSERT_TRUE(stream->WritesDone());
  std::map<std::string, SubmitResponse> got;
  SubmitResponse resp;
  while (stream->Read(&resp)) {
    got[resp.request_id()] = resp;
    if (resp.status().code() == 0) {
      // Acked means durable: a fresh connection to the file finds the row.
      auto other = OpenSqliteSubmitterStore(dir_ + "/submitter.db");
      ASSERT_TRUE(other.ok());
      auto rows = (*other)->GetByDigest(*::anchord::Digest::FromBytes(resp.digest()));
      ASSERT_TRUE(rows.ok());
      EXPECT_EQ(rows->size(), 1u) << resp.request_id();
    }
  }
  ASSERT_TRUE(stream->Finish().ok());
  ASSERT_EQ(got.size(), reqs.size());
  EXPECT_EQ(got["bad-digest"].status().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(got["bad-digest"].status().message().find("digest"), std::string::npos);
  EXPECT_EQ(got["bad-name"].status().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(got["bad-name"].status().message().find("metadata.filename"), std::string::npos);
  EXPECT_NE(got["bad-provider"].status().message().find("providers[0]"), std::string::npos);
  EXPECT_EQ(got["ok-1"].status().code(), 0);
  EXPECT_EQ(got["ok-1"].state(), anchord::v1::DIGEST_STATE_QUEUED);
  EXPECT_EQ(got["ok-2"].status().code(), 0);
  EXPECT_EQ(got["dup"].status().code(), 0);
  EXPECT_EQ(got["dup"].duplicate_of(), "x/a.txt");
  // Nothing stored for invalid items.
  EXPECT_TRUE(store_->GetByDigest(testing::DigestOf('b'))->empty());
  EXPECT_TRUE(store_->GetByDigest(testing::DigestOf('d'))->empty());

  // Locate and SummarizeJob see the stored state.
  grpc::ClientContext lctx;
  Deadline(&lctx);
  anchord::v1::LocateRequest lreq;
  lreq.set_digest(testing::Digest('a'));
  anchord::v1::LocateResponse lresp;
  ASSERT_TRUE(status_stub_->Locate(&lctx, lreq, &lresp).ok());
  EXPECT_EQ(lresp.state(), anchord::v1::DIGEST_STATE_QUEUED);
  ASSERT_EQ(lresp.files_size(), 2);
  EXPECT_EQ(lresp.files(1).source_path(), "y/copy.txt");
  ASSERT_EQ(lresp.proofs_size(), 1);
  EXPECT_EQ(lresp.proofs(0).provider(), "fake");

  grpc::ClientContext nctx;
  Deadline(&nctx);
  lreq.set_digest(testing::Digest('z'));
  EXPECT_EQ(status_stub_->Locate(&nctx, lreq, &lresp).error_code(), grpc::StatusCode::NOT_FOUND);

  grpc::ClientContext sctx;
  Deadline(&sctx);
  anchord::v1::SummarizeJobRequest sreq;
  sreq.set_job("job1");
  anchord::v1::SummarizeJobResponse sresp;
  ASSERT_TRUE(status_stub_->SummarizeJob(&sctx, sreq, &sresp).ok());
  EXPECT_EQ(sresp.digests_by_state().at("DIGEST_STATE_QUEUED"), 2);
  EXPECT_FALSE(sresp.paused());
}

TEST_F(ServiceTest, ResumeQueueReportsResumedProviders) {
  Start();
  ASSERT_TRUE(
      store_->Pause({"fake", "MONTHLY_LIMIT_REACHED", absl::Now(), absl::Now() + absl::Hours(1)})
          .ok());
  grpc::ClientContext sctx;
  Deadline(&sctx);
  anchord::v1::SummarizeJobResponse sresp;
  ASSERT_TRUE(status_stub_->SummarizeJob(&sctx, {}, &sresp).ok());
  EXPECT_TRUE(sresp.paused());
  EXPECT_NE(sresp.paused_reason().find("MONTHLY_LIMIT_REACHED"), std::string::npos);

  grpc::ClientContext bad;
  Deadline(&bad);
  anchord::v1::ResumeQueueRequest req;
  anchord::v1::ResumeQueueResponse resp;
  req.set_provider("nope");
  EXPECT_EQ(stub_->ResumeQueue(&bad, req, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  grpc::ClientContext ctx;
  Deadline(&ctx);
  req.set_provider("");
  ASSERT_TRUE(stub_->ResumeQueue(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.resumed_size(), 1);
  EXPECT_EQ(resp.resumed(0), "fake");
  EXPECT_TRUE(store_->ListPauses()->empty());
}

TEST_F(ServiceTest, ReadingResumesWhenBacklogDrains) {
  Start(/*high_water=*/1);
  // Two rows already queued: above the high-water mark, so the stream's first item is not read.
  ASSERT_TRUE(
      store_->InsertBatch({testing::Item('x', "x"), testing::Item('y', "y")}, absl::Now()).ok());
  grpc::ClientContext ctx;
  Deadline(&ctx);
  auto stream = stub_->Submit(&ctx);
  ASSERT_TRUE(stream->Write(Req("held", testing::Digest('a'), "a.txt", "a.txt")));
  // Drain the queue the way workers would; the monitor then resumes reading.
  for (int i = 0; i < 2; ++i) {
    auto row = store_->Claim("fake", "t", absl::Now(), absl::Now() + absl::Minutes(1));
    ASSERT_TRUE(row.ok() && row->has_value());
    ASSERT_TRUE(store_->MarkSubmitted((*row)->id, {}, "r", absl::Now()).ok());
  }
  SubmitResponse resp;
  ASSERT_TRUE(stream->Read(&resp));
  EXPECT_EQ(resp.request_id(), "held");
  EXPECT_EQ(resp.status().code(), 0);
  ASSERT_TRUE(stream->WritesDone());
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(ServiceTest, AnchorModeAndFallbackProviderAreValidated) {
  Start();
  grpc::ClientContext ctx;
  Deadline(&ctx);
  auto stream = stub_->Submit(&ctx);
  std::vector<SubmitRequest> reqs;
  reqs.push_back(Req("bad-mode", testing::Digest('m'), "m.txt", "x/m.txt"));
  reqs.back().set_anchor_mode(static_cast<anchord::v1::AnchorMode>(42));
  reqs.push_back(Req("bad-fallback", testing::Digest('n'), "n.txt", "x/n.txt"));
  reqs.back().set_fallback_provider("nope");
  reqs.push_back(Req("same-fallback", testing::Digest('o'), "o.txt", "x/o.txt"));
  reqs.back().set_fallback_provider("fake");  // already the (default) provider
  reqs.push_back(Req("merkle", testing::Digest('p'), "p.txt", "x/p.txt"));
  reqs.back().set_anchor_mode(anchord::v1::ANCHOR_MODE_MERKLE_BATCH);
  reqs.back().set_fallback_provider("other");
  reqs.push_back(Req("per-file", testing::Digest('q'), "q.txt", "x/q.txt"));
  reqs.back().set_anchor_mode(anchord::v1::ANCHOR_MODE_PER_FILE);
  for (const auto& r : reqs) ASSERT_TRUE(stream->Write(r));
  ASSERT_TRUE(stream->WritesDone());
  std::map<std::string, SubmitResponse> got;
  SubmitResponse resp;
  for (int i = 0; i < 100 && stream->Read(&resp); ++i) got[resp.request_id()] = resp;
  ASSERT_TRUE(stream->Finish().ok());
  ASSERT_EQ(got.size(), reqs.size());
  EXPECT_EQ(got["bad-mode"].status().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(got["bad-mode"].status().message().rfind("anchor_mode", 0), 0u)
      << got["bad-mode"].status().message();
  EXPECT_EQ(got["bad-fallback"].status().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(got["bad-fallback"].status().message().rfind("fallback_provider", 0), 0u)
      << got["bad-fallback"].status().message();
  EXPECT_EQ(got["same-fallback"].status().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(got["same-fallback"].status().message().rfind("fallback_provider", 0), 0u);
  for (char c : {'m', 'n', 'o'})
    EXPECT_TRUE(store_->GetByDigest(testing::DigestOf(c))->empty()) << c;

  EXPECT_EQ(got["merkle"].status().code(), 0) << got["merkle"].status().message();
  auto leaf = store_->GetByDigest(testing::DigestOf('p'));
  ASSERT_TRUE(leaf.ok());
  ASSERT_EQ(leaf->size(), 1u);
  EXPECT_EQ((*leaf)[0].mode, RowMode::kLeaf);
  EXPECT_EQ((*leaf)[0].fallback_provider, "other");
  EXPECT_EQ(got["per-file"].status().code(), 0);
  auto per_file = store_->GetByDigest(testing::DigestOf('q'));
  ASSERT_TRUE(per_file.ok());
  ASSERT_EQ(per_file->size(), 1u);
  EXPECT_EQ((*per_file)[0].mode, RowMode::kPerFile);
}

TEST(ValidateSubmitTest, NamesTheField) {
  ServiceOptions o;
  o.providers = {"fake", "other"};
  o.default_provider = "fake";
  SubmitRequest r = Req("r1", testing::Digest('a'), "a.txt", "x/a.txt");
  NewItem item;
  ASSERT_TRUE(ValidateSubmit(r, o, &item).ok());
  EXPECT_FALSE(item.merkle);
  EXPECT_TRUE(item.fallback_provider.empty());
  for (int mode : {-1, 3, 1000}) {
    r.set_anchor_mode(static_cast<anchord::v1::AnchorMode>(mode));
    absl::Status st = ValidateSubmit(r, o, &item);
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << mode;
    EXPECT_EQ(st.message().rfind("anchor_mode:", 0), 0u) << st.message();
  }
  r.set_anchor_mode(anchord::v1::ANCHOR_MODE_MERKLE_BATCH);
  ASSERT_TRUE(ValidateSubmit(r, o, &item).ok());
  EXPECT_TRUE(item.merkle);
  r.set_fallback_provider("unknown-one");
  absl::Status st = ValidateSubmit(r, o, &item);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message().rfind("fallback_provider:", 0), 0u) << st.message();
  r.set_fallback_provider("other");
  NewItem ok_item;
  ASSERT_TRUE(ValidateSubmit(r, o, &ok_item).ok());
  EXPECT_EQ(ok_item.fallback_provider, "other");
}

// The batch form (SubmitRequest.items): one message, one response holding every item's answer in
// the items' order, sent only once each stored item is durable; an invalid item is refused alone,
// named by its index, and stores nothing; a duplicate inside the message resolves to the original.
// The single form keeps working on the same stream.
TEST_F(ServiceTest, BatchFormAnswersEveryItemAfterItsCommit) {
  Start();
  grpc::ClientContext ctx;
  Deadline(&ctx);
  auto stream = stub_->Submit(&ctx);
  SubmitRequest batch;
  batch.set_request_id("batch-1");  // optional for a batch; echoed
  *batch.add_items() = Req("ok-1", testing::Digest('a'), "a.txt", "x/a.txt");
  *batch.add_items() = Req("bad-digest", "abc", "b.txt", "x/b.txt");
  *batch.add_items() = Req("ok-2", testing::Digest('c'), "c.txt", "x/c.txt");
  *batch.add_items() = Req("dup", testing::Digest('a'), "copy.txt", "y/copy.txt");
  *batch.add_items() = Req("bad-provider", testing::Digest('d'), "d.txt", "x/d.txt");
  batch.mutable_items(4)->add_providers("nope");
  *batch.add_items() = Req("bad-name", testing::Digest('e'), "", "x/e.txt");
  ASSERT_TRUE(stream->Write(batch));
  ASSERT_TRUE(stream->Write(Req("single", testing::Digest('f'), "f.txt", "x/f.txt")));
  ASSERT_TRUE(stream->WritesDone());
  std::vector<SubmitResponse> got;
  SubmitResponse resp;
  while (stream->Read(&resp)) got.push_back(resp);
  ASSERT_TRUE(stream->Finish().ok());
  ASSERT_EQ(got.size(), 2u);
  const SubmitResponse& b = got[0].items_size() > 0 ? got[0] : got[1];
  const SubmitResponse& single = got[0].items_size() > 0 ? got[1] : got[0];
  EXPECT_EQ(single.request_id(), "single");
  EXPECT_EQ(single.status().code(), 0);
  EXPECT_EQ(b.request_id(), "batch-1");
  ASSERT_EQ(b.items_size(), 6);
  const std::vector<std::string> ids = {"ok-1", "bad-digest",   "ok-2",
                                        "dup",  "bad-provider", "bad-name"};
  for (int i = 0; i < b.items_size(); ++i) EXPECT_EQ(b.items(i).request_id(), ids[i]) << i;
  EXPECT_EQ(b.items(0).status().code(), 0);
  EXPECT_EQ(b.items(0).state(), anchord::v1::DIGEST_STATE_QUEUED);
  EXPECT_EQ(b.items(0).digest(), testing::Digest('a'));
  EXPECT_EQ(b.items(1).status().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(b.items(1).status().message().rfind("items[1].digest", 0), 0u)
      << b.items(1).status().message();
  EXPECT_EQ(b.items(2).status().code(), 0);
  EXPECT_EQ(b.items(3).status().code(), 0);
  EXPECT_EQ(b.items(3).duplicate_of(), "x/a.txt");
  EXPECT_EQ(b.items(4).status().message().rfind("items[4].providers[0]", 0), 0u)
      << b.items(4).status().message();
  EXPECT_EQ(b.items(5).status().message().rfind("items[5].metadata.filename", 0), 0u)
      << b.items(5).status().message();

  // Answered means durable: a fresh connection to the file finds every item answered OK.
  auto other = OpenSqliteSubmitterStore(dir_ + "/submitter.db");
  ASSERT_TRUE(other.ok());
  for (char c : {'a', 'c', 'f'}) {
    auto rows = (*other)->GetByDigest(testing::DigestOf(c));
    ASSERT_TRUE(rows.ok());
    EXPECT_EQ(rows->size(), 1u) << c;
  }
  auto refs = (*other)->Refs(testing::DigestOf('a'));
  ASSERT_TRUE(refs.ok());
  ASSERT_EQ(refs->size(), 2u);
  EXPECT_EQ((*refs)[0].source_path, "x/a.txt");
  EXPECT_EQ((*refs)[1].source_path, "y/copy.txt");
  // Nothing stored for the invalid items.
  EXPECT_TRUE(store_->GetByDigest(testing::DigestOf('d'))->empty());
  EXPECT_TRUE(store_->GetByDigest(testing::DigestOf('e'))->empty());
}

// A message breaking the rules of the batch form is refused whole, naming the field, and the
// stream goes on.
TEST_F(ServiceTest, BatchFormBreakingItsRulesIsRefusedWhole) {
  Start();
  grpc::ClientContext ctx;
  Deadline(&ctx);
  auto stream = stub_->Submit(&ctx);
  SubmitRequest mixed;  // both forms at once
  mixed.set_request_id("mixed");
  mixed.set_digest(testing::Digest('b'));
  *mixed.add_items() = Req("m1", testing::Digest('a'), "a.txt", "x/a.txt");
  ASSERT_TRUE(stream->Write(mixed));
  SubmitRequest too_many;
  too_many.set_request_id("too-many");
  for (int i = 0; i <= kMaxSubmitItems; ++i) {
    std::string d(32, 'q');
    d[0] = static_cast<char>(i & 0xff);
    d[1] = static_cast<char>(i >> 8);
    *too_many.add_items() = Req("t" + std::to_string(i), d, "t.txt", "x/t.txt");
  }
  ASSERT_TRUE(stream->Write(too_many));
  ASSERT_TRUE(stream->Write(Req("after", testing::Digest('z'), "z.txt", "x/z.txt")));
  ASSERT_TRUE(stream->WritesDone());
  std::vector<SubmitResponse> got;
  SubmitResponse resp;
  while (stream->Read(&resp)) got.push_back(resp);
  ASSERT_TRUE(stream->Finish().ok());
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].status().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(got[0].request_id(), "mixed");
  EXPECT_EQ(got[0].status().message().rfind("digest: must be empty", 0), 0u)
      << got[0].status().message();
  EXPECT_EQ(got[0].items_size(), 0);
  EXPECT_EQ(got[1].status().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(got[1].request_id(), "too-many");
  EXPECT_EQ(got[1].status().message().rfind("items: at most 4096", 0), 0u)
      << got[1].status().message();
  EXPECT_EQ(got[2].request_id(), "after");
  EXPECT_EQ(got[2].status().code(), 0);
  EXPECT_TRUE(store_->GetByDigest(testing::DigestOf('a'))->empty());
  std::string first(32, 'q');
  first[0] = first[1] = 0;
  EXPECT_TRUE(store_->GetByDigest(*anchord::Digest::FromBytes(first))->empty());
}

TEST(ValidateSubmitTest, BatchItemsAreNamedByTheirIndex) {
  ServiceOptions o;
  o.providers = {"fake"};
  o.default_provider = "fake";
  SubmitRequest item = Req("r1", testing::Digest('a'), "a.txt", "x/a.txt");
  NewItem out;
  ASSERT_TRUE(ValidateSubmitItem(item, 7, o, &out).ok());
  EXPECT_EQ(out.digest, testing::DigestOf('a'));
  *item.add_items() = Req("r2", testing::Digest('b'), "b.txt", "x/b.txt");
  absl::Status st = ValidateSubmitItem(item, 7, o, &out);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message().rfind("items[7].items:", 0), 0u) << st.message();
  item.clear_items();
  item.set_digest("short");
  st = ValidateSubmitItem(item, 12, o, &out);
  EXPECT_EQ(st.message().rfind("items[12].digest", 0), 0u) << st.message();

  SubmitRequest batch;
  EXPECT_TRUE(ValidateBatchForm(batch).ok());
  batch.mutable_metadata()->set_filename("x");
  st = ValidateBatchForm(batch);
  EXPECT_EQ(st.message().rfind("metadata:", 0), 0u) << st.message();
  // The batch's own id is optional but held to an item's rules.
  batch.clear_metadata();
  batch.set_request_id("b-1");
  EXPECT_TRUE(ValidateBatchForm(batch).ok());
  batch.set_request_id(std::string(129, 'r'));
  st = ValidateBatchForm(batch);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message().rfind("request_id", 0), 0u) << st.message();
}

// Shutdown: DrainStreams (what main() runs on SIGTERM before the server's own shutdown) makes an
// open Submit stream stop reading, commit and answer what it read, and end with UNAVAILABLE, so the
// caller reconnects and resends the rest instead of the server waiting out its grace period. Every
// item answered OK is in the store; a stream opened after the drain ends at once.
TEST_F(ServiceTest, DrainEndsOpenStreamsAfterTheirAcks) {
  Start();
  grpc::ClientContext ctx;
  Deadline(&ctx);
  auto stream = stub_->Submit(&ctx);
  constexpr int kSent = 300;
  auto digest_of = [](int i) {
    std::string d(32, '\x5a');
    d[0] = static_cast<char>(i & 0xff);
    d[1] = static_cast<char>(i >> 8);
    return d;
  };
  for (int i = 0; i < kSent; ++i) {
    ASSERT_TRUE(stream->Write(
        Req("r" + std::to_string(i), digest_of(i), "f.txt", "x/f" + std::to_string(i) + ".txt")));
  }
  std::map<std::string, SubmitResponse> acked;
  SubmitResponse resp;
  while (acked.size() < 10 && stream->Read(&resp)) acked[resp.request_id()] = resp;
  ASSERT_EQ(acked.size(), 10u);
  core_->DrainStreams();
  while (stream->Read(&resp)) acked[resp.request_id()] = resp;
  grpc::Status st = stream->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  EXPECT_NE(st.error_message().find("shutting down"), std::string::npos) << st.error_message();
  EXPECT_LE(acked.size(), static_cast<size_t>(kSent));
  auto other = OpenSqliteSubmitterStore(dir_ + "/submitter.db");
  ASSERT_TRUE(other.ok());
  for (const auto& [id, r] : acked) {
    ASSERT_EQ(r.status().code(), 0) << id;
    auto rows = (*other)->GetByDigest(*::anchord::Digest::FromBytes(r.digest()));
    ASSERT_TRUE(rows.ok());
    EXPECT_EQ(rows->size(), 1u) << id << " was acknowledged but is not stored";
  }

  grpc::ClientContext late_ctx;
  Deadline(&late_ctx);
  auto late = stub_->Submit(&late_ctx);
  late->Write(Req("late", digest_of(kSent + 1), "late.txt", "x/late.txt"));
  while (late->Read(&resp)) {
    EXPECT_NE(resp.request_id(), "late") << "a stream opened after the drain must read nothing";
  }
  EXPECT_EQ(late->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(store_->GetByDigest(*::anchord::Digest::FromBytes(digest_of(kSent + 1)))->empty());
}

}  // namespace
}  // namespace anchord::submitter
