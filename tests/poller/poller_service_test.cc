#include "services/poller/poller_service.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "libs/rpc/internal.h"
#include "services/poller/convert.h"
#include "services/poller/poll_engine.h"
#include "services/poller/poller_metrics.h"
#include "tests/poller/test_util.h"
#include "tests/testing/wait.h"

namespace anchord::poller {
namespace {

using testing::Digest;
using testing::MakeOts;
using testing::Pending;
using testing::TempDir;
namespace v1 = anchord::v1;

class PollerServiceTest : public ::testing::Test {
 protected:
  void SetUp() override { Start({}); }
  void TearDown() override { Stop(); }

  void Start(PollerServiceOptions opts) {
    ASSERT_FALSE(dir_.path().empty());
    auto s = OpenSqlitePollerStore(dir_.File("poller.db"));
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = std::move(*s);
    pool_ = std::make_unique<WorkerPool>(2, 10000);
    service_ = std::make_unique<PollerServiceImpl>(store_.get(), &bus_, &metrics_, &clock_,
                                                   pool_.get(), opts);
    status_ = std::make_unique<StatusServiceImpl>(store_.get(), pool_.get());
    // The same service on an internal port, as main() does: Track only, with the token.
    PollerServiceOptions internal_opts = opts;
    internal_opts.gate = rpc::RpcGate::Internal(kToken);
    internal_ = std::make_unique<PollerServiceImpl>(store_.get(), &bus_, &metrics_, &clock_,
                                                    pool_.get(), internal_opts);
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(service_.get());
    b.RegisterService(status_.get());
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_NE(port_, 0);
    grpc::ServerBuilder ib;
    ib.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &internal_port_);
    ib.RegisterService(internal_.get());
    internal_server_ = ib.BuildAndStart();
    ASSERT_NE(internal_server_, nullptr);
    auto ch =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_), grpc::InsecureChannelCredentials());
    stub_ = v1::PollerService::NewStub(ch);
    status_stub_ = v1::StatusService::NewStub(ch);
    internal_stub_ = v1::PollerService::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", internal_port_), grpc::InsecureChannelCredentials()));
  }
  void Stop() {
    if (!server_) return;
    service_->EndWatches();
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    server_->Wait();
    server_.reset();
    internal_server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    internal_server_->Wait();
    internal_server_.reset();
    pool_->Stop();
  }

  static void SetDeadline(grpc::ClientContext* ctx, int seconds = 20) {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  }

  static v1::TrackRequest TrackReq(const std::string& rid, const anchord::Digest& digest,
                                   const std::string& proof_id, const std::string& job = "") {
    return TrackReq(rid, digest.raw(), proof_id, job);
  }
  static v1::TrackRequest TrackReq(const std::string& rid, const std::string& digest,
                                   const std::string& proof_id, const std::string& job = "") {
    v1::TrackRequest r;
    r.set_request_id(rid);
    auto* p = r.mutable_proof();
    p->set_digest(digest);
    p->set_provider("fake");
    p->set_proof_id(proof_id);
    p->set_state(v1::DIGEST_STATE_SUBMITTED);
    auto* f = p->add_files();
    f->set_filename(proof_id + ".pdf");
    f->set_size_bytes(10);
    f->set_job(job);
    f->set_source_path("docs/" + proof_id + ".pdf");
    return r;
  }

  // Sends `reqs` on one Track stream and returns the responses by request id.
  std::map<std::string, v1::TrackResponse> TrackAll(const std::vector<v1::TrackRequest>& reqs) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    ctx.AddMetadata(rpc::kInternalTokenHeader, kToken);
    auto stream = internal_stub_->Track(&ctx);
    for (const auto& r : reqs) EXPECT_TRUE(stream->Write(r));
    stream->WritesDone();
    std::map<std::string, v1::TrackResponse> out;
    v1::TrackResponse resp;
    for (size_t i = 0; i < reqs.size() + 1 && stream->Read(&resp); ++i)
      out[resp.request_id()] = resp;
    grpc::Status st = stream->Finish();
    EXPECT_TRUE(st.ok()) << st.error_message();
    return out;
  }

  TempDir dir_;
  FakeClock clock_;
  EventBus bus_;
  prometheus::Registry registry_;
  PollerMetrics metrics_{registry_};
  std::unique_ptr<PollerStore> store_;
  std::unique_ptr<WorkerPool> pool_;
  std::unique_ptr<PollerServiceImpl> service_;
  std::unique_ptr<StatusServiceImpl> status_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::unique_ptr<PollerServiceImpl> internal_;
  std::unique_ptr<grpc::Server> internal_server_;
  int internal_port_ = 0;
  std::unique_ptr<v1::PollerService::Stub> internal_stub_;
  static constexpr char kToken[] = "internal-token-for-tests";
  std::unique_ptr<v1::PollerService::Stub> stub_;
  std::unique_ptr<v1::StatusService::Stub> status_stub_;
};

TEST_F(PollerServiceTest, TrackAcksAfterDurableStoreAndNamesInvalidFields) {
  std::vector<v1::TrackRequest> reqs;
  for (int i = 0; i < 20; ++i)
    reqs.push_back(TrackReq(absl::StrCat("r", i), Digest(i), absl::StrCat("id-", i)));
  v1::TrackRequest bad_digest = TrackReq("bad-digest", "short", "id-x");
  v1::TrackRequest no_id = TrackReq("no-id", Digest(100), "");
  v1::TrackRequest bad_state = TrackReq("bad-state", Digest(101), "id-101");
  bad_state.mutable_proof()->set_state(v1::DIGEST_STATE_QUEUED);
  v1::TrackRequest no_provider = TrackReq("no-provider", Digest(102), "id-102");
  no_provider.mutable_proof()->clear_provider();
  v1::TrackRequest bad_file = TrackReq("bad-file", Digest(103), "id-103");
  bad_file.mutable_proof()->mutable_files(0)->set_filename("a/b");
  for (auto* r : {&bad_digest, &no_id, &bad_state, &no_provider, &bad_file}) reqs.push_back(*r);
  v1::TrackRequest failed = TrackReq("failed", Digest(104), "");
  failed.mutable_proof()->set_state(v1::DIGEST_STATE_FAILED);
  failed.mutable_proof()->mutable_failure()->set_code(9);
  failed.mutable_proof()->mutable_failure()->set_reason("PLAN_LIMIT");
  reqs.push_back(failed);

  auto out = TrackAll(reqs);
  ASSERT_EQ(out.size(), reqs.size());
  // A second connection to the same file sees every acknowledged proof: the ack came after commit.
  auto other = OpenSqlitePollerStore(dir_.File("poller.db"));
  ASSERT_TRUE(other.ok());
  for (int i = 0; i < 20; ++i) {
    const auto& r = out[absl::StrCat("r", i)];
    EXPECT_EQ(r.status().code(), 0) << r.status().message();
    EXPECT_EQ(r.digest(), testing::DigestBytes(i));
    auto row = (*other)->Get(Digest(i), "fake");
    ASSERT_TRUE(row.ok() && row->has_value()) << i;
    EXPECT_EQ((*row)->state, v1::DIGEST_STATE_PENDING);
    ASSERT_EQ((*row)->files.size(), 1u);
    EXPECT_EQ((*row)->files[0].job, "default");
  }
  auto expect_invalid = [&](const std::string& rid, const std::string& field) {
    const auto& r = out[rid];
    EXPECT_EQ(r.status().code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT)) << rid;
    EXPECT_TRUE(absl::StartsWith(r.status().message(), field + ":"))
        << rid << ": " << r.status().message();
    EXPECT_FALSE(r.status().reason().empty());
  };
  expect_invalid("bad-digest", "proof.digest");
  expect_invalid("no-id", "proof.proof_id");
  expect_invalid("bad-state", "proof.state");
  expect_invalid("no-provider", "proof.provider");
  expect_invalid("bad-file", "proof.files[0].filename");
  for (int d : {100, 101, 102, 103}) {
    auto row = (*other)->Get(Digest(d), "");
    ASSERT_TRUE(row.ok());
    EXPECT_FALSE(row->has_value()) << d;  // nothing stored for an invalid item
  }
  EXPECT_EQ(out["failed"].status().code(), 0);
  auto f = (*other)->Get(Digest(104), "fake");
  ASSERT_TRUE(f.ok() && f->has_value());
  EXPECT_EQ((*f)->state, v1::DIGEST_STATE_FAILED);
  EXPECT_EQ((*f)->failure_reason, "PLAN_LIMIT");

  // Idempotent: the same hand-offs again change nothing and are acknowledged again.
  auto again = TrackAll({reqs[0], reqs[1]});
  EXPECT_EQ(again["r0"].status().code(), 0);
  auto all = (*other)->List({}, 0, 1000);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 21u);
}

// Shutdown: EndWatches drains Track streams (on the internal instance, the only one serving
// Track). Every request read before the drain is stored and answered, then the stream ends with
// UNAVAILABLE (the submitter reconnects and resends what was not answered); a stream opened later
// ends at once. Nothing answered OK is missing from the store.
TEST_F(PollerServiceTest, TrackStreamsDrainOnShutdownAfterTheirAcks) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  ctx.AddMetadata(rpc::kInternalTokenHeader, kToken);
  auto stream = internal_stub_->Track(&ctx);
  constexpr int kSent = 300;
  for (int i = 0; i < kSent; ++i) {
    ASSERT_TRUE(stream->Write(TrackReq(absl::StrCat("r", i), Digest(i), absl::StrCat("id-", i))));
  }
  std::map<std::string, v1::TrackResponse> acked;
  v1::TrackResponse resp;
  // Some answers first, so the drain finds requests both answered and still in flight.
  while (acked.size() < 10 && stream->Read(&resp)) acked[resp.request_id()] = resp;
  ASSERT_EQ(acked.size(), 10u);
  internal_->EndWatches();
  while (stream->Read(&resp)) acked[resp.request_id()] = resp;
  grpc::Status st = stream->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE) << st.error_message();
  EXPECT_TRUE(absl::StrContains(st.error_message(), "shutting down")) << st.error_message();
  EXPECT_LE(acked.size(), static_cast<size_t>(kSent));
  for (const auto& [id, r] : acked) {
    ASSERT_EQ(r.status().code(), 0) << id;
    auto row = store_->Get(*::anchord::Digest::FromBytes(r.digest()), "fake");
    ASSERT_TRUE(row.ok()) << row.status();
    EXPECT_TRUE(row->has_value()) << id << " was answered but is not stored";
  }

  grpc::ClientContext late_ctx;
  SetDeadline(&late_ctx);
  late_ctx.AddMetadata(rpc::kInternalTokenHeader, kToken);
  auto late = internal_stub_->Track(&late_ctx);
  late->Write(TrackReq("late", Digest(kSent + 1), "id-late"));
  while (late->Read(&resp)) {
    EXPECT_NE(resp.request_id(), "late") << "a stream opened after the drain must read nothing";
  }
  grpc::Status late_st = late->Finish();
  EXPECT_EQ(late_st.error_code(), grpc::StatusCode::UNAVAILABLE) << late_st.error_message();
  auto late_row = store_->Get(Digest(kSent + 1), "fake");
  ASSERT_TRUE(late_row.ok());
  EXPECT_FALSE(late_row->has_value());
}

TEST_F(PollerServiceTest, WatchSendsSnapshotThenLiveEventsInOrder) {
  TrackAll({TrackReq("a", Digest(1), "id-1", "jobA"), TrackReq("b", Digest(2), "id-2", "jobA"),
            TrackReq("c", Digest(3), "id-3", "jobB")});
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::WatchRequest req;
  req.set_job("jobA");
  req.set_include_current(true);
  auto reader = stub_->Watch(&ctx, req);
  v1::WatchResponse ev;
  ASSERT_TRUE(reader->Read(&ev));
  EXPECT_EQ(ev.type(), v1::PROOF_EVENT_TYPE_SNAPSHOT);
  EXPECT_EQ(ev.proof().digest(), testing::DigestBytes(1));
  ASSERT_TRUE(reader->Read(&ev));
  EXPECT_EQ(ev.type(), v1::PROOF_EVENT_TYPE_SNAPSHOT);
  EXPECT_EQ(ev.proof().digest(), testing::DigestBytes(2));
  ASSERT_TRUE(reader->Read(&ev));
  EXPECT_EQ(ev.type(), v1::PROOF_EVENT_TYPE_SNAPSHOT_DONE);
  EXPECT_FALSE(ev.has_proof());

  // Live: a new proof of jobA (TRACKED), one of jobB (filtered out), then a confirmation.
  TrackAll({TrackReq("d", Digest(4), "id-4", "jobB"), TrackReq("e", Digest(5), "id-5", "jobA")});
  auto confirmed = store_->MarkConfirmed(Digest(1), "fake", {}, clock_.Now());
  ASSERT_TRUE(confirmed.ok() && confirmed->has_value());
  PublishEvent(bus_, &metrics_, v1::PROOF_EVENT_TYPE_CONFIRMED, **confirmed, clock_.Now());

  ASSERT_TRUE(reader->Read(&ev));
  EXPECT_EQ(ev.type(), v1::PROOF_EVENT_TYPE_TRACKED);
  EXPECT_EQ(ev.proof().digest(), testing::DigestBytes(5));
  EXPECT_EQ(ev.proof().state(), v1::DIGEST_STATE_PENDING);
  ASSERT_TRUE(reader->Read(&ev));
  EXPECT_EQ(ev.type(), v1::PROOF_EVENT_TYPE_CONFIRMED);
  EXPECT_EQ(ev.proof().digest(), testing::DigestBytes(1));
  EXPECT_EQ(ev.proof().state(), v1::DIGEST_STATE_CONFIRMED);

  ctx.TryCancel();
  grpc::Status st = reader->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(PollerServiceTest, WatchByDigestAndInvalidDigest) {
  TrackAll({TrackReq("a", Digest(1), "id-1"), TrackReq("b", Digest(2), "id-2")});
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::WatchRequest req;
    req.set_digest(testing::DigestBytes(2));
    req.set_include_current(true);
    auto reader = stub_->Watch(&ctx, req);
    v1::WatchResponse ev;
    ASSERT_TRUE(reader->Read(&ev));
    EXPECT_EQ(ev.proof().digest(), testing::DigestBytes(2));
    ASSERT_TRUE(reader->Read(&ev));
    EXPECT_EQ(ev.type(), v1::PROOF_EVENT_TYPE_SNAPSHOT_DONE);
    ctx.TryCancel();
    reader->Finish();
  }
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::WatchRequest req;
  req.set_digest("abc");
  auto reader = stub_->Watch(&ctx, req);
  v1::WatchResponse ev;
  EXPECT_FALSE(reader->Read(&ev));
  grpc::Status st = reader->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StartsWith(st.error_message(), "digest:")) << st.error_message();
}

TEST_F(PollerServiceTest, SnapshotSpansPagesAndCancelledStreamsAreReleased) {
  std::vector<TrackInput> batch;
  for (int i = 0; i < 450; ++i) batch.push_back(Pending(Digest(i), absl::StrCat("id-", i)));
  ASSERT_TRUE(store_->Track(batch, clock_.Now()).ok());
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::WatchRequest req;
    req.set_include_current(true);
    auto reader = stub_->Watch(&ctx, req);
    v1::WatchResponse ev;
    int snapshots = 0;
    bool done = false;
    for (int i = 0; i < 1000 && reader->Read(&ev); ++i) {
      if (ev.type() == v1::PROOF_EVENT_TYPE_SNAPSHOT_DONE) {
        done = true;
        break;
      }
      ASSERT_EQ(ev.type(), v1::PROOF_EVENT_TYPE_SNAPSHOT);
      EXPECT_EQ(ev.proof().digest(),
                testing::DigestBytes(snapshots));  // oldest first, across pages
      ++snapshots;
    }
    EXPECT_TRUE(done);
    EXPECT_EQ(snapshots, 450);
    ctx.TryCancel();
    reader->Finish();
  }
  // Cancel watches in the middle of their snapshot and a Track stream with items in flight.
  for (int k = 0; k < 5; ++k) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::WatchRequest req;
    req.set_include_current(true);
    auto reader = stub_->Watch(&ctx, req);
    v1::WatchResponse ev;
    for (int i = 0; i < k * 3 && reader->Read(&ev); ++i) {
    }
    ctx.TryCancel();
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    ctx.AddMetadata(rpc::kInternalTokenHeader, kToken);
    auto stream = internal_stub_->Track(&ctx);
    for (int i = 0; i < 50; ++i) {
      stream->Write(TrackReq(absl::StrCat("x", i), Digest(1000 + i), absl::StrCat("id-x", i)));
    }
    ctx.TryCancel();
    EXPECT_FALSE(stream->Finish().ok());
  }
  EXPECT_TRUE(anchord::testing::WaitUntil([&] { return bus_.watchers() == 0; }, absl::Seconds(5)))
      << bus_.watchers() << " watchers left";
}

// Track carries state between services: an outside caller on the public port is refused, and on
// the internal port a caller without the internal token (or with another one) is refused. The
// public read RPCs are not served on the internal port. Before the fix, Track was served to any
// caller of the public port.
TEST_F(PollerServiceTest, TrackIsServedOnlyOnTheInternalPortWithTheToken) {
  auto try_track = [&](v1::PollerService::Stub* stub, const char* token) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    if (token != nullptr) ctx.AddMetadata(rpc::kInternalTokenHeader, token);
    auto stream = stub->Track(&ctx);
    stream->Write(TrackReq("outside", Digest(7), "id-7"));
    stream->WritesDone();
    v1::TrackResponse resp;
    while (stream->Read(&resp)) {
    }
    return stream->Finish();
  };
  grpc::Status st = try_track(stub_.get(), nullptr);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
  EXPECT_NE(st.error_message().find("internal"), std::string::npos) << st.error_message();
  st = try_track(stub_.get(), kToken);  // the token does not open the public port
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
  st = try_track(internal_stub_.get(), nullptr);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << st.error_message();
  st = try_track(internal_stub_.get(), "not-the-token");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAUTHENTICATED) << st.error_message();
  auto row = store_->Get(Digest(7), "fake");
  ASSERT_TRUE(row.ok());
  EXPECT_FALSE(row->has_value()) << "a refused hand-off stored nothing";

  // The read RPCs stay on the public port.
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  ctx.AddMetadata(rpc::kInternalTokenHeader, kToken);
  v1::GetProofRequest req;
  req.set_digest(testing::DigestBytes(7));
  v1::GetProofResponse resp;
  st = internal_stub_->GetProof(&ctx, req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED) << st.error_message();
}

// Even a legitimate peer's hand-off is a report, not a verdict: CONFIRMED for a digest no provider
// confirmed to the poller is stored as PENDING (before the fix GetProof answered CONFIRMED), and
// FAILED never downgrades a proof the poller holds (before the fix a pending proof became FAILED).
// FAILED for a digest the poller has no proof of is still recorded: that is how the submitter
// reports a digest it could not anchor.
TEST_F(PollerServiceTest, HandOffCannotConfirmOrDowngradeOnItsOwn) {
  v1::TrackRequest forged = TrackReq("forged", Digest(300), "id-300");
  forged.mutable_proof()->set_state(v1::DIGEST_STATE_CONFIRMED);
  forged.mutable_proof()->set_bitcoin_block_height(800000);
  forged.mutable_proof()->set_bitcoin_tx(std::string(64, 'a'));
  auto out = TrackAll({forged, TrackReq("real", Digest(301), "id-301")});
  EXPECT_EQ(out["forged"].status().code(), 0);
  EXPECT_EQ(out["real"].status().code(), 0);

  auto get = [&](int d) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::GetProofRequest req;
    req.set_digest(testing::DigestBytes(d));
    v1::GetProofResponse resp;
    grpc::Status st = stub_->GetProof(&ctx, req, &resp);
    EXPECT_TRUE(st.ok()) << st.error_message();
    return resp.proof();
  };
  v1::Proof p = get(300);
  EXPECT_EQ(p.state(), v1::DIGEST_STATE_PENDING);
  EXPECT_EQ(p.bitcoin_block_height(), 0);
  EXPECT_TRUE(p.bitcoin_tx().empty());

  v1::TrackRequest downgrade = TrackReq("downgrade", Digest(301), "id-301");
  downgrade.mutable_proof()->set_state(v1::DIGEST_STATE_FAILED);
  downgrade.mutable_proof()->mutable_failure()->set_code(9);
  v1::TrackRequest confirm_again = forged;
  confirm_again.set_request_id("confirm-again");
  out = TrackAll({downgrade, confirm_again});
  EXPECT_EQ(out["downgrade"].status().code(), 0);  // acknowledged, so the sender stops resending
  EXPECT_EQ(get(301).state(), v1::DIGEST_STATE_PENDING);
  EXPECT_EQ(get(300).state(), v1::DIGEST_STATE_PENDING);

  // A proof confirmed by the poller's own lookup stays confirmed whatever a hand-off says.
  ConfirmInput confirmed;
  confirmed.block_height = 812345;
  ASSERT_TRUE(store_->MarkConfirmed(Digest(301), "fake", confirmed, clock_.Now()).ok());
  v1::TrackRequest late_failed = downgrade;
  late_failed.set_request_id("late-failed");
  TrackAll({late_failed});
  EXPECT_EQ(get(301).state(), v1::DIGEST_STATE_CONFIRMED);

  v1::TrackRequest never_anchored = TrackReq("never", Digest(302), "");
  never_anchored.mutable_proof()->set_state(v1::DIGEST_STATE_FAILED);
  never_anchored.mutable_proof()->mutable_failure()->set_code(9);
  TrackAll({never_anchored});
  EXPECT_EQ(get(302).state(), v1::DIGEST_STATE_FAILED);
}

TEST_F(PollerServiceTest, SlowWatcherIsEndedNotBuffered) {
  Stop();
  PollerServiceOptions opts;
  opts.watch_queue_capacity = 8;
  Start(opts);
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  auto reader = stub_->Watch(&ctx, v1::WatchRequest());
  reader->WaitForInitialMetadata();  // the server subscribed before it sent headers
  ASSERT_EQ(bus_.watchers(), 1u);

  // Publish far more than the transport and the queue can hold while the client reads nothing.
  ProofRow row;
  row.digest = Digest(1);
  row.provider = "fake";
  row.proof_id = "id-1";
  row.certificate_url = std::string(2000, 'u');  // make each event big enough to fill windows
  const int kEvents = 3000;
  for (int i = 0; i < kEvents; ++i) {
    PublishEvent(bus_, &metrics_, v1::PROOF_EVENT_TYPE_TRACKED, row, clock_.Now());
  }
  int received = 0;
  v1::WatchResponse ev;
  for (int i = 0; i < kEvents + 1 && reader->Read(&ev); ++i) ++received;
  grpc::Status st = reader->Finish();
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(st.error_message(), "watcher fell behind; reconnect with include_current");
  EXPECT_LT(received, kEvents);
  // The stream is gone and unsubscribed (bounded wait for the server's OnDone).
  EXPECT_TRUE(anchord::testing::WaitUntil([&] { return bus_.watchers() == 0; }, absl::Seconds(5)))
      << bus_.watchers() << " watchers left";
}

// With batch set, one Watch response carries several events: the snapshot page by page, then
// live events as they queue up, all in order, none lost; a batched response has no event fields
// of its own.
TEST_F(PollerServiceTest, BatchedWatchCarriesSeveralEventsPerResponse) {
  std::vector<TrackInput> batch;
  for (int i = 0; i < 450; ++i) batch.push_back(Pending(Digest(i), absl::StrCat("id-", i)));
  ASSERT_TRUE(store_->Track(batch, clock_.Now()).ok());
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::WatchRequest req;
  req.set_include_current(true);
  req.set_batch(true);
  auto reader = stub_->Watch(&ctx, req);
  std::vector<v1::WatchResponse> events;
  int responses = 0;
  int most = 0;
  auto read_until = [&](size_t n) {
    v1::WatchResponse resp;
    while (events.size() < n && responses < 5000 && reader->Read(&resp)) {
      ++responses;
      if (resp.events_size() == 0) {
        events.push_back(resp);
        most = std::max(most, 1);
        continue;
      }
      EXPECT_FALSE(resp.has_proof());
      EXPECT_EQ(resp.type(), v1::PROOF_EVENT_TYPE_UNSPECIFIED);
      most = std::max(most, resp.events_size());
      for (const auto& e : resp.events()) {
        EXPECT_EQ(e.events_size(), 0);
        events.push_back(e);
      }
    }
  };
  read_until(451);
  ASSERT_EQ(events.size(), 451u);
  for (int i = 0; i < 450; ++i) {
    ASSERT_EQ(events[i].type(), v1::PROOF_EVENT_TYPE_SNAPSHOT) << i;
    EXPECT_EQ(events[i].proof().digest(), testing::DigestBytes(i)) << i;
  }
  EXPECT_EQ(events[450].type(), v1::PROOF_EVENT_TYPE_SNAPSHOT_DONE);
  EXPECT_GT(most, 1);
  EXPECT_LT(responses, 451);

  ProofRow row;
  row.provider = "fake";
  row.proof_id = "live";
  for (int i = 0; i < 600; ++i) {
    row.digest = Digest(1000 + i);
    PublishEvent(bus_, &metrics_, v1::PROOF_EVENT_TYPE_TRACKED, row, clock_.Now());
  }
  read_until(1051);
  ASSERT_EQ(events.size(), 1051u);
  for (int i = 0; i < 600; ++i) {
    EXPECT_EQ(events[451 + i].type(), v1::PROOF_EVENT_TYPE_TRACKED);
    EXPECT_EQ(events[451 + i].proof().digest(), testing::DigestBytes(1000 + i)) << i;
  }
  ctx.TryCancel();
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

// A brief watcher gets each event's type and time and, of its proof, digest, provider, state and
// stalled only, in the snapshot and live, one by one and batched, while a full watcher of the
// same events still gets them whole (the events are shared on the bus).
TEST_F(PollerServiceTest, BriefWatchCarriesOnlyWhichProofMovedWhere) {
  TrackAll({TrackReq("a", Digest(1), "id-1", "jobA")});
  auto open = [&](grpc::ClientContext* ctx, bool brief, bool batch) {
    SetDeadline(ctx);
    v1::WatchRequest req;
    req.set_job("jobA");
    req.set_include_current(true);
    req.set_brief(brief);
    req.set_batch(batch);
    return stub_->Watch(ctx, req);
  };
  grpc::ClientContext brief_ctx, batch_ctx, full_ctx;
  auto brief = open(&brief_ctx, true, false);
  auto brief_batch = open(&batch_ctx, true, true);
  auto full = open(&full_ctx, false, false);
  // Reads events (unpacking batches) until `n`, bounded.
  auto read = [](auto& reader, size_t n) {
    std::vector<v1::WatchResponse> out;
    v1::WatchResponse resp;
    for (int i = 0; i < 100 && out.size() < n && reader->Read(&resp); ++i) {
      if (resp.events_size() == 0) {
        out.push_back(resp);
      } else {
        for (const auto& e : resp.events()) out.push_back(e);
      }
    }
    return out;
  };
  auto expect_brief = [](const v1::WatchResponse& ev, int digest, v1::ProofEventType type) {
    EXPECT_EQ(ev.type(), type);
    EXPECT_TRUE(ev.has_event_time());
    EXPECT_EQ(ev.proof().digest(), testing::DigestBytes(digest));
    EXPECT_EQ(ev.proof().provider(), "fake");
    EXPECT_EQ(ev.proof().state(), v1::DIGEST_STATE_PENDING);
    EXPECT_TRUE(ev.proof().proof_id().empty());
    EXPECT_EQ(ev.proof().files_size(), 0);
    EXPECT_FALSE(ev.proof().has_updated_at());
  };
  for (auto* reader : {&brief, &brief_batch}) {
    auto snap = read(*reader, 2);
    ASSERT_EQ(snap.size(), 2u);
    expect_brief(snap[0], 1, v1::PROOF_EVENT_TYPE_SNAPSHOT);
    EXPECT_EQ(snap[1].type(), v1::PROOF_EVENT_TYPE_SNAPSHOT_DONE);
  }
  ASSERT_EQ(read(full, 2).size(), 2u);
  TrackAll({TrackReq("b", Digest(2), "id-2", "jobA"), TrackReq("c", Digest(3), "id-3", "jobA")});
  for (auto* reader : {&brief, &brief_batch}) {
    auto live = read(*reader, 2);
    ASSERT_EQ(live.size(), 2u);
    expect_brief(live[0], 2, v1::PROOF_EVENT_TYPE_TRACKED);
    expect_brief(live[1], 3, v1::PROOF_EVENT_TYPE_TRACKED);
  }
  auto live = read(full, 2);
  ASSERT_EQ(live.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(live[i].proof().proof_id(), absl::StrCat("id-", i + 2));
    EXPECT_TRUE(live[i].proof().has_updated_at());
    ASSERT_EQ(live[i].proof().files_size(), 1) << i;
    EXPECT_EQ(live[i].proof().files(0).job(), "jobA");
  }
  for (auto* ctx : {&brief_ctx, &batch_ctx, &full_ctx}) ctx->TryCancel();
  EXPECT_EQ(brief->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(brief_batch->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(full->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

// The defaults go together: a commit holds a whole Merkle batch (10,000 leaves and its root, so
// the batch is stored in one transaction), a stream reads a second commit's worth while one is
// stored, and a Watch queue holds two commits' worth of events, so a watcher that keeps up is not
// ended by one store's burst.
TEST(PollerServiceOptionsTest, DefaultWindowHoldsABatchAndWatchQueueTwoWindows) {
  PollerServiceOptions o;
  EXPECT_GE(o.track_max_per_commit, 10001);
  EXPECT_GE(o.track_max_in_flight, 2 * o.track_max_per_commit);
  EXPECT_GE(o.watch_queue_capacity, 2 * static_cast<size_t>(o.track_max_per_commit));
}

TEST(SubscriptionTest, PopSomeTakesOldestFirstWithinItsBounds) {
  EventBus bus;
  auto sub = bus.Subscribe(WatchFilter{}, 100, nullptr);
  for (int i = 0; i < 5; ++i) {
    v1::WatchResponse ev;
    ev.set_type(v1::PROOF_EVENT_TYPE_TRACKED);
    ev.mutable_proof()->set_digest(testing::DigestBytes(i));
    bus.Publish(ev);
  }
  std::vector<EventPtr> out;
  EXPECT_TRUE(sub->PopSome(2, 1 << 20, &out));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_TRUE(sub->PopSome(10, 1, &out));  // a byte bound below one event still takes one
  ASSERT_EQ(out.size(), 3u);
  EXPECT_FALSE(sub->PopSome(10, 1 << 20, &out));
  ASSERT_EQ(out.size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(out[i]->proof().digest(), testing::DigestBytes(i)) << i;
  EXPECT_FALSE(sub->PopSome(10, 1 << 20, &out));
  EXPECT_EQ(out.size(), 5u);
}

// A batched watcher takes an event's contents only when no other watcher still holds it: the
// first of two watchers gets a copy and leaves the other's intact, the last one takes it.
TEST(SubscriptionTest, TakeEventCopiesWhileSharedAndTakesFromTheLastHolder) {
  EventBus bus;
  auto a = bus.Subscribe(WatchFilter{}, 10, nullptr);
  auto b = bus.Subscribe(WatchFilter{}, 10, nullptr);
  v1::WatchResponse sent;
  sent.set_type(v1::PROOF_EVENT_TYPE_TRACKED);
  sent.mutable_proof()->set_digest(testing::DigestBytes(3));
  sent.mutable_proof()->set_certificate_url("https://cert.example/a-long-enough-url");
  sent.mutable_proof()->add_files()->set_filename("f.pdf");
  bus.Publish(sent);
  EventPtr first = a->Pop();
  ASSERT_NE(first, nullptr);
  const v1::WatchResponse* shared = first.get();
  v1::WatchResponse got_a;
  TakeEvent(std::move(first), &got_a);
  EXPECT_EQ(got_a.SerializeAsString(), sent.SerializeAsString());
  EventPtr second = b->Pop();
  ASSERT_EQ(second.get(), shared);
  EXPECT_EQ(second->SerializeAsString(), sent.SerializeAsString());  // untouched by a's take
  v1::WatchResponse got_b;
  TakeEvent(std::move(second), &got_b);
  EXPECT_EQ(got_b.SerializeAsString(), sent.SerializeAsString());
}

// An event of a row is built in the forms its subscribers read: a brief subscriber gets only the
// proof's digest, provider, state and stalled; a whole one the proof as MakeEvent makes it (files,
// provider record) from the same Publish; the job filter is matched on the row's files.
TEST(EventBusTest, RowEventsReachEachSubscriberInItsForm) {
  EventBus bus;
  auto brief = bus.Subscribe(WatchFilter{"jobA", std::nullopt}, 10, nullptr, EventForm::kBrief);
  auto whole = bus.Subscribe(WatchFilter{"jobA", std::nullopt}, 10, nullptr, EventForm::kWhole);
  auto other = bus.Subscribe(WatchFilter{"jobB", std::nullopt}, 10, nullptr, EventForm::kBrief);
  ProofRow row;
  row.digest = Digest(9);
  row.provider = "ots";
  row.proof_id = "a-proof-id-longer-than-sso";
  row.state = v1::DIGEST_STATE_PENDING;
  row.stalled = true;
  row.certificate_url = "https://cert.example/a-long-enough-url";
  FileRow f;
  f.job = "jobA";
  f.filename = "f.pdf";
  f.source_path = "dir/f.pdf";
  row.files.push_back(f);
  const v1::WatchResponse expected_whole =
      MakeEvent(v1::PROOF_EVENT_TYPE_TRACKED, row, absl::UnixEpoch());
  bus.Publish(v1::PROOF_EVENT_TYPE_TRACKED, std::move(row), absl::UnixEpoch());

  EventPtr b = brief->Pop();
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->type(), v1::PROOF_EVENT_TYPE_TRACKED);
  EXPECT_TRUE(b->has_event_time());
  EXPECT_EQ(b->proof().digest(), std::string(Digest(9).bytes()));
  EXPECT_EQ(b->proof().provider(), "ots");
  EXPECT_EQ(b->proof().state(), v1::DIGEST_STATE_PENDING);
  EXPECT_TRUE(b->proof().stalled());
  EXPECT_EQ(b->proof().files_size(), 0);
  EXPECT_TRUE(b->proof().proof_id().empty());
  EXPECT_TRUE(b->proof().certificate_url().empty());

  EventPtr w = whole->Pop();
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(w->SerializeAsString(), expected_whole.SerializeAsString());
  EXPECT_EQ(w->proof().files_size(), 1);
  EXPECT_EQ(w->proof().proof_id(), "a-proof-id-longer-than-sso");

  EXPECT_EQ(other->Pop(), nullptr);  // another job's watcher
  EXPECT_EQ(brief->Pop(), nullptr);
  EXPECT_EQ(whole->Pop(), nullptr);
}

// A row of `job` for PublishAll tests.
ProofRow GroupRow(int digest, const std::string& job,
                  v1::DigestState state = v1::DIGEST_STATE_PENDING) {
  ProofRow row;
  row.digest = Digest(digest);
  row.provider = "ots";
  row.proof_id = absl::StrCat("id-", digest);
  row.state = state;
  FileRow f;
  f.job = job;
  f.filename = "f.pdf";
  f.source_path = absl::StrCat("dir/", digest, ".pdf");
  row.files.push_back(f);
  return row;
}

// Every queued event of `sub`, oldest first (bounded).
std::vector<EventPtr> PopAll(const EventBus::SubscriptionPtr& sub) {
  std::vector<EventPtr> out;
  for (int i = 0; i < 100000; ++i) {
    EventPtr ev = sub->Pop();
    if (ev == nullptr) break;
    out.push_back(std::move(ev));
  }
  return out;
}

std::string Digests(std::initializer_list<int> ids) {
  std::string out;
  for (int id : ids) out += std::string(Digest(id).bytes());
  return out;
}

// One transaction's events: a grouped subscriber gets those of one kind (type, provider, state,
// stalled) as one event with their digests, in order and only of its job; a brief and a whole
// subscriber get them one by one, as Publish gives them.
TEST(EventBusTest, PublishAllGroupsAKindsEventsForAGroupedSubscriber) {
  EventBus bus;
  auto grouped = bus.Subscribe(WatchFilter{"jobA", std::nullopt}, 10, nullptr, EventForm::kGrouped);
  auto brief = bus.Subscribe(WatchFilter{"jobA", std::nullopt}, 10, nullptr, EventForm::kBrief);
  auto whole = bus.Subscribe(WatchFilter{"jobA", std::nullopt}, 10, nullptr, EventForm::kWhole);
  std::vector<ProofRow> rows = {GroupRow(1, "jobA"), GroupRow(2, "jobA"), GroupRow(3, "jobB"),
                                GroupRow(4, "jobA"), GroupRow(5, "jobA")};
  rows[4].stalled = true;  // another kind
  std::vector<RowEvent> events;
  for (const ProofRow& r : rows) events.push_back({v1::PROOF_EVENT_TYPE_TRACKED, &r});
  bus.PublishAll(events, absl::FromUnixSeconds(1700000000));

  auto got = PopAll(grouped);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0]->type(), v1::PROOF_EVENT_TYPE_TRACKED);
  EXPECT_EQ(got[0]->event_time().seconds(), 1700000000);
  EXPECT_EQ(got[0]->digests(), Digests({1, 2, 4}));
  EXPECT_TRUE(got[0]->proof().digest().empty());
  EXPECT_EQ(got[0]->proof().provider(), "ots");
  EXPECT_EQ(got[0]->proof().state(), v1::DIGEST_STATE_PENDING);
  EXPECT_FALSE(got[0]->proof().stalled());
  EXPECT_TRUE(got[0]->proof().proof_id().empty());
  EXPECT_EQ(got[0]->proof().files_size(), 0);
  // A kind of one proof: its brief event, the digest in the proof.
  EXPECT_TRUE(got[1]->digests().empty());
  EXPECT_EQ(got[1]->proof().digest(), std::string(Digest(5).bytes()));
  EXPECT_TRUE(got[1]->proof().stalled());

  for (const auto& sub : {brief, whole}) {
    auto one_by_one = PopAll(sub);
    ASSERT_EQ(one_by_one.size(), 4u);
    int i = 0;
    for (int id : {1, 2, 4, 5}) {
      EXPECT_EQ(one_by_one[i]->proof().digest(), std::string(Digest(id).bytes()));
      EXPECT_TRUE(one_by_one[i++]->digests().empty());
    }
  }
  EXPECT_EQ(PopAll(whole).size(), 0u);
}

// A proof's events keep their order across groups: a leaf confirmed with its proof available
// gets CONFIRMED, then OTS_STORED, and an OTS_STORED of another proof before them does not pull
// its OTS_STORED ahead of its CONFIRMED.
TEST(EventBusTest, PublishAllKeepsEachProofsEventsInOrder) {
  EventBus bus;
  auto grouped = bus.Subscribe(WatchFilter{}, 10, nullptr, EventForm::kGrouped);
  std::vector<ProofRow> rows = {GroupRow(10, "j", v1::DIGEST_STATE_CONFIRMED),
                                GroupRow(11, "j", v1::DIGEST_STATE_CONFIRMED),
                                GroupRow(12, "j", v1::DIGEST_STATE_CONFIRMED)};
  const auto kConfirmed = v1::PROOF_EVENT_TYPE_CONFIRMED;
  const auto kOts = v1::PROOF_EVENT_TYPE_OTS_STORED;
  bus.PublishAll({{kOts, &rows[0]},
                  {kConfirmed, &rows[1]},
                  {kOts, &rows[1]},
                  {kConfirmed, &rows[2]},
                  {kOts, &rows[2]}},
                 absl::UnixEpoch());
  auto got = PopAll(grouped);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0]->type(), kOts);
  EXPECT_EQ(got[0]->proof().digest(), std::string(Digest(10).bytes()));
  EXPECT_EQ(got[1]->type(), kConfirmed);
  EXPECT_EQ(got[1]->digests(), Digests({11, 12}));
  EXPECT_EQ(got[2]->type(), kOts);
  EXPECT_EQ(got[2]->digests(), Digests({11, 12}));
}

// A group larger than kMaxGroupDigests is split, in order, so a Watch response stays bounded.
TEST(EventBusTest, PublishAllSplitsALargeGroup) {
  EventBus bus;
  auto grouped = bus.Subscribe(WatchFilter{}, 10, nullptr, EventForm::kGrouped);
  const int n = static_cast<int>(EventBus::kMaxGroupDigests) + 2;
  std::vector<ProofRow> rows;
  rows.reserve(n);
  std::string all;
  for (int i = 0; i < n; ++i) {
    rows.push_back(GroupRow(100 + i, "j"));
    all += std::string(rows.back().digest.bytes());
  }
  std::vector<RowEvent> events;
  for (const ProofRow& r : rows) events.push_back({v1::PROOF_EVENT_TYPE_TRACKED, &r});
  bus.PublishAll(events, absl::UnixEpoch());
  auto got = PopAll(grouped);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0]->digests().size(), EventBus::kMaxGroupDigests * Digest::kSize);
  EXPECT_EQ(got[0]->digests() + got[1]->digests(), all);
}

// With the replicas' relay every subscriber gets the whole event the relay carries.
TEST(EventBusTest, RowEventsGoWholeThroughTheRelay) {
  EventBus bus;
  std::vector<v1::WatchResponse> relayed;
  bus.SetRelay([&](const v1::WatchResponse& ev) { relayed.push_back(ev); });
  auto brief = bus.Subscribe(WatchFilter{}, 10, nullptr, EventForm::kBrief);
  ProofRow row;
  row.digest = Digest(4);
  row.provider = "ots";
  row.proof_id = "p";
  row.state = v1::DIGEST_STATE_PENDING;
  bus.Publish(v1::PROOF_EVENT_TYPE_TRACKED, row, absl::UnixEpoch());
  ASSERT_EQ(relayed.size(), 1u);
  EXPECT_EQ(relayed[0].proof().proof_id(), "p");
  EventPtr got = brief->Pop();
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(got->SerializeAsString(), relayed[0].SerializeAsString());
}

// Events are counted by type, the same counter each time (looked up once, then kept), and two
// metrics objects on two registries keep their counts apart.
TEST(PollerMetricsTest, EventsAreCountedByType) {
  prometheus::Registry registry;
  prometheus::Registry other_registry;
  PollerMetrics metrics(registry);
  PollerMetrics other(other_registry);
  for (int i = 0; i < 3; ++i) metrics.CountEvent(v1::PROOF_EVENT_TYPE_TRACKED);
  metrics.CountEvent(v1::PROOF_EVENT_TYPE_OTS_STORED);
  other.CountEvent(v1::PROOF_EVENT_TYPE_TRACKED);
  auto value = [](prometheus::Registry& r, const std::string& type) {
    for (const auto& fam : r.Collect()) {
      if (fam.name != "anchord_poller_events_total") continue;
      for (const auto& m : fam.metric) {
        for (const auto& l : m.label) {
          if (l.name == "type" && l.value == type) return m.counter.value;
        }
      }
    }
    return -1.0;
  };
  EXPECT_EQ(value(registry, "tracked"), 3);
  EXPECT_EQ(value(registry, "ots_stored"), 1);
  EXPECT_EQ(value(registry, "confirmed"), -1);  // never counted, never created
  EXPECT_EQ(value(other_registry, "tracked"), 1);
}

// An event built from a row given up (a store outcome) is the one built from a copy of it, with
// every field and file set.
TEST(MakeEventTest, MovedRowGivesTheSameEvent) {
  ProofRow row;
  row.seq = 7;
  row.digest = Digest(5);
  row.provider = "a-provider-name-longer-than-sso";
  row.proof_id = "proof-id-longer-than-the-small-string";
  row.state = v1::DIGEST_STATE_FAILED;
  row.certificate_url = "https://cert.example/certificates/12345";
  row.verify_url = "https://verify.example/verify/abcdef";
  row.block_height = 812345;
  row.bitcoin_tx = "a-bitcoin-transaction-id-longer-than-sso";
  row.submitted_at = absl::FromUnixSeconds(1'700'000'000);
  row.confirmed_at = absl::FromUnixSeconds(1'700'000'100);
  row.ots_size = 321;
  row.failure_code = 9;
  row.failure_message = "a failure message longer than sso";
  row.failure_reason = "A_REASON_LONGER_THAN_SSO";
  row.provider_request_id = "request-id-longer-than-the-sso";
  row.stalled = true;
  row.updated_at = absl::FromUnixSeconds(1'700'000'200);
  row.merkle_root = std::string(32, 'r');
  row.leaf_count = 3;
  row.files.push_back(FileRow{"job-a", "dir/one/long/source/path", "one-long-name.pdf", 10, "x/y"});
  row.files.push_back(FileRow{"job-b", "dir/two/long/source/path", "two-long-name.pdf", 20, "a/b"});
  const absl::Time now = absl::FromUnixSeconds(1'700'000'300);
  const v1::WatchResponse copied = MakeEvent(v1::PROOF_EVENT_TYPE_FAILED, row, now);
  ProofRow given = row;
  const v1::WatchResponse moved = MakeEvent(v1::PROOF_EVENT_TYPE_FAILED, std::move(given), now);
  EXPECT_EQ(moved.SerializeAsString(), copied.SerializeAsString());
  EXPECT_EQ(copied.proof().files_size(), 2);
  EXPECT_EQ(copied.proof().failure().reason(), row.failure_reason);
  EXPECT_EQ(copied.proof().provider_request_id(), row.provider_request_id);
}

TEST_F(PollerServiceTest, ListProofsPagesWithoutGapsOrDuplicates) {
  std::vector<TrackInput> batch;
  for (int i = 0; i < 250; ++i) batch.push_back(Pending(Digest(i), absl::StrCat("id-", i)));
  ASSERT_TRUE(store_->Track(batch, clock_.Now()).ok());

  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  for (; pages < 10; ++pages) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::ListProofsRequest req;
    req.set_page_size(100);
    req.set_page_token(token);
    v1::ListProofsResponse resp;
    grpc::Status st = stub_->ListProofs(&ctx, req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_LE(resp.proofs_size(), 100);
    for (const auto& p : resp.proofs()) seen.push_back(p.digest());
    token = resp.next_page_token();
    if (token.empty()) break;
  }
  EXPECT_EQ(pages, 2);  // 100 + 100 + 50
  ASSERT_EQ(seen.size(), 250u);
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), 250u);
  for (int i = 0; i < 250; ++i) EXPECT_EQ(seen[i], testing::DigestBytes(i));

  auto call = [&](const v1::ListProofsRequest& req, v1::ListProofsResponse* resp) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    return stub_->ListProofs(&ctx, req, resp);
  };
  v1::ListProofsResponse resp;
  v1::ListProofsRequest req;
  req.set_page_size(1001);
  grpc::Status st = call(req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StartsWith(st.error_message(), "page_size:")) << st.error_message();
  req.set_page_size(0);
  req.set_page_token("garbage");
  st = call(req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StartsWith(st.error_message(), "page_token:")) << st.error_message();
  req.clear_page_token();
  req.add_digests(testing::DigestBytes(7));
  req.add_digests("xx");
  st = call(req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StartsWith(st.error_message(), "digests[1]:")) << st.error_message();
  req.clear_digests();
  req.add_digests(testing::DigestBytes(7));
  req.add_digests(testing::DigestBytes(9));
  resp.Clear();
  st = call(req, &resp);
  ASSERT_TRUE(st.ok());
  ASSERT_EQ(resp.proofs_size(), 2);  // default page size 100
  EXPECT_EQ(resp.proofs(0).digest(), testing::DigestBytes(7));
  EXPECT_TRUE(resp.next_page_token().empty());
}

// Digest 1 confirmed with a .ots of four 64 KiB chunks (*ots), digest 2 pending without one.
void ConfirmOneWithALargeOtsAndLeaveOnePending(PollerStore* store, Clock* clock, std::string* ots) {
  ASSERT_TRUE(
      store->Track({Pending(Digest(1), "id-1"), Pending(Digest(2), "id-2")}, clock->Now()).ok());
  ASSERT_TRUE(store->MarkConfirmed(Digest(1), "fake", {}, clock->Now()).ok());
  *ots = MakeOts(Digest(1), 200 * 1024 + 17);
  auto stored = store->StoreOts(Digest(1), "fake", *ots, clock->Now());
  ASSERT_TRUE(stored.ok() && stored->has_value());
}

TEST_F(PollerServiceTest, DownloadProofChunksReassembleByteIdentical) {
  std::string ots;
  ASSERT_NO_FATAL_FAILURE(ConfirmOneWithALargeOtsAndLeaveOnePending(store_.get(), &clock_, &ots));

  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  v1::DownloadProofRequest req;
  req.set_digest(testing::DigestBytes(1));
  auto reader = stub_->DownloadProof(&ctx, req);
  std::string got;
  int chunks = 0;
  v1::DownloadProofResponse chunk;
  for (int i = 0; i < 100 && reader->Read(&chunk); ++i) {
    ++chunks;
    EXPECT_LE(chunk.data().size(), 64u * 1024);
    EXPECT_EQ(chunk.total_size_bytes(), static_cast<int64_t>(ots.size()));
    got += chunk.data();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(chunks, 4);
  EXPECT_TRUE(got == ots);

  auto status_of = [&](const std::string& digest) {
    grpc::ClientContext c;
    SetDeadline(&c);
    v1::DownloadProofRequest r;
    r.set_digest(digest);
    auto rd = stub_->DownloadProof(&c, r);
    v1::DownloadProofResponse m;
    while (rd->Read(&m)) {
    }
    return rd->Finish();
  };
  grpc::Status st = status_of(testing::DigestBytes(2));
  EXPECT_EQ(st.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(st.error_message(), "no .ots stored yet");
  EXPECT_EQ(status_of(testing::DigestBytes(3)).error_code(), grpc::StatusCode::NOT_FOUND);
  st = status_of("x");
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StartsWith(st.error_message(), "digest:"));
}

TEST_F(PollerServiceTest, DownloadProofsAnswersEachProofInOrderAsDownloadProofWould) {
  std::string ots;
  ASSERT_NO_FATAL_FAILURE(ConfirmOneWithALargeOtsAndLeaveOnePending(store_.get(), &clock_, &ots));

  // Proof 1 (four chunks), 2 (no .ots yet), 3 (unknown), a malformed digest, proof 1 again.
  v1::DownloadProofsRequest req;
  for (const std::string& d :
       {testing::DigestBytes(1), testing::DigestBytes(2), testing::DigestBytes(3), std::string("x"),
        testing::DigestBytes(1)}) {
    req.add_proofs()->set_digest(d);
  }
  grpc::ClientContext ctx;
  SetDeadline(&ctx);
  auto reader = stub_->DownloadProofs(&ctx, req);
  std::vector<std::string> files(5);
  std::vector<v1::ItemStatus> statuses(5);
  std::vector<int> chunks(5, 0);
  int last_index = 0;
  v1::DownloadProofsResponse m;
  for (int i = 0; i < 100 && reader->Read(&m); ++i) {
    ASSERT_GE(m.index(), last_index);
    ASSERT_LT(m.index(), 5);
    last_index = m.index();
    ++chunks[m.index()];
    if (m.status().code() != 0) {
      statuses[m.index()] = m.status();
      continue;
    }
    EXPECT_LE(m.data().size(), 64u * 1024);
    EXPECT_EQ(m.total_size_bytes(), static_cast<int64_t>(ots.size()));
    files[m.index()] += m.data();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(chunks[0], 4);
  EXPECT_TRUE(files[0] == ots);
  EXPECT_TRUE(files[4] == ots);
  EXPECT_EQ(statuses[1].code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(statuses[1].message(), "no .ots stored yet");
  EXPECT_EQ(statuses[2].code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(statuses[3].code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StartsWith(statuses[3].message(), "proofs[3].digest:"))
      << statuses[3].message();
  for (int i : {1, 2, 3}) EXPECT_EQ(chunks[i], 1) << i;

  // None, or more than 1,000, is refused naming `proofs`.
  auto refused = [&](int n) {
    v1::DownloadProofsRequest r;
    for (int i = 0; i < n; ++i) r.add_proofs()->set_digest(testing::DigestBytes(1));
    grpc::ClientContext c;
    SetDeadline(&c);
    auto rd = stub_->DownloadProofs(&c, r);
    v1::DownloadProofsResponse ignored;
    int read = 0;
    while (read < 10 && rd->Read(&ignored)) ++read;
    EXPECT_EQ(read, 0) << n;
    return rd->Finish();
  };
  for (int n : {0, 1001}) {
    grpc::Status st = refused(n);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << n;
    EXPECT_TRUE(absl::StartsWith(st.error_message(), "proofs:")) << st.error_message();
  }
}

TEST_F(PollerServiceTest, GetProofLocateAndSummarize) {
  TrackAll({TrackReq("a", Digest(1), "id-1", "j"), TrackReq("b", Digest(2), "id-2", "j")});
  ASSERT_TRUE(store_->MarkConfirmed(Digest(2), "fake", {}, clock_.Now()).ok());
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::GetProofRequest req;
    req.set_digest(testing::DigestBytes(2));
    v1::GetProofResponse resp;
    ASSERT_TRUE(stub_->GetProof(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.proof().proof_id(), "id-2");
    EXPECT_EQ(resp.proof().state(), v1::DIGEST_STATE_CONFIRMED);
    ASSERT_EQ(resp.proof().files_size(), 1);
    EXPECT_EQ(resp.proof().files(0).job(), "j");
  }
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::GetProofRequest req;
    req.set_digest(testing::DigestBytes(9));
    v1::GetProofResponse resp;
    EXPECT_EQ(stub_->GetProof(&ctx, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::GetProofRequest req;
    req.set_digest("tooshort");
    v1::GetProofResponse resp;
    grpc::Status st = stub_->GetProof(&ctx, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_TRUE(absl::StartsWith(st.error_message(), "digest:"));
  }
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::LocateRequest req;
    req.set_digest(testing::DigestBytes(1));
    v1::LocateResponse resp;
    ASSERT_TRUE(status_stub_->Locate(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.service(), "poller");
    EXPECT_EQ(resp.state(), v1::DIGEST_STATE_PENDING);
    EXPECT_EQ(resp.proofs_size(), 1);
    EXPECT_EQ(resp.files_size(), 1);
  }
  {
    grpc::ClientContext ctx;
    SetDeadline(&ctx);
    v1::SummarizeJobRequest req;
    req.set_job("j");
    v1::SummarizeJobResponse resp;
    ASSERT_TRUE(status_stub_->SummarizeJob(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.digests_by_state().at("DIGEST_STATE_PENDING"), 1);
    EXPECT_EQ(resp.digests_by_state().at("DIGEST_STATE_CONFIRMED"), 1);
    EXPECT_EQ(resp.files(), 2);
  }
}

}  // namespace
}  // namespace anchord::poller
