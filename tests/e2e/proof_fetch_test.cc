// anchorctl's ProofFetcher: downloads run several at a time, yet each answer comes back in the
// order it was asked for, and no more calls are outstanding than the window allows. The poller
// is a stand-in on loopback whose DownloadProof answers later proofs sooner (each call waits
// longer the earlier it was asked for), so an answer taken in completion order would be wrong.
#include "services/anchorctl/proof_fetch.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "anchord/v1/poller.grpc.pb.h"

namespace anchord::anchorctl {
namespace {

namespace v1 = anchord::v1;

class OutOfOrderPoller final : public v1::PollerService::Service {
 public:
  grpc::Status DownloadProof(grpc::ServerContext*, const v1::DownloadProofRequest* req,
                             grpc::ServerWriter<v1::DownloadProofResponse>* writer) override {
    {
      absl::MutexLock lock(&mu_);
      ++calls_;
      most_at_once_ = std::max(most_at_once_, ++at_once_);
    }
    // The digest's first byte is its position: the first asked waits longest (at most 40 ms).
    const int position = static_cast<unsigned char>(req->digest()[0]);
    absl::SleepFor(absl::Milliseconds(std::max(0, 40 - 2 * (position % 20))));
    grpc::Status status = grpc::Status::OK;
    if (req->provider() == "none") {
      status = grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "no proof yet");
    } else {
      // More than one chunk, so the fetcher must join them.
      v1::DownloadProofResponse chunk;
      chunk.set_data(absl::StrCat("proof ", position, " of ", req->provider(), ":"));
      writer->Write(chunk);
      chunk.set_data(req->digest());
      writer->Write(chunk);
    }
    absl::MutexLock lock(&mu_);
    --at_once_;
    return status;
  }
  int most_at_once() {
    absl::MutexLock lock(&mu_);
    return most_at_once_;
  }
  int calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

 private:
  absl::Mutex mu_;
  int at_once_ ABSL_GUARDED_BY(mu_) = 0;
  int most_at_once_ ABSL_GUARDED_BY(mu_) = 0;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
};

class ProofFetchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&poller_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port, 0);
    Endpoints e;
    e.poller = absl::StrCat("127.0.0.1:", port);
    clients_ = std::make_unique<Clients>(e, absl::Seconds(10));
  }
  void TearDown() override {
    clients_.reset();
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
  }

  static std::string DigestAt(int position) {
    return std::string(1, static_cast<char>(position)) + std::string(31, 'd');
  }

  OutOfOrderPoller poller_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<Clients> clients_;
  GlobalOptions g_;
};

TEST_F(ProofFetchTest, AnswersComeInTheOrderAskedWithSeveralCallsInFlight) {
  constexpr int kProofs = 60;
  constexpr size_t kWindow = 8;
  ProofFetcher fetcher(*clients_, g_, /*workers=*/4, kWindow);
  int pushed = 0;
  int taken = 0;
  // Each provider "none" has no proof: its NOT_FOUND must land on its own position too.
  auto provider_of = [](int i) { return i % 7 == 3 ? std::string("none") : std::string("tsa"); };
  while (taken < kProofs) {
    while (pushed < kProofs && fetcher.Push(DigestAt(pushed), provider_of(pushed))) ++pushed;
    ASSERT_LE(fetcher.outstanding(), kWindow);
    absl::StatusOr<std::string> got = fetcher.Take();
    if (provider_of(taken) == "none") {
      EXPECT_TRUE(absl::IsNotFound(got.status())) << taken << ": " << got.status();
    } else {
      ASSERT_TRUE(got.ok()) << taken << ": " << got.status();
      EXPECT_EQ(*got, absl::StrCat("proof ", taken, " of tsa:", DigestAt(taken))) << taken;
    }
    ++taken;
  }
  EXPECT_EQ(fetcher.outstanding(), 0u);
  EXPECT_EQ(poller_.calls(), kProofs);
  // Several calls overlapped (one at a time would leave anchorctl waiting on each) and never more
  // than the workers.
  EXPECT_GE(poller_.most_at_once(), 2);
  EXPECT_LE(poller_.most_at_once(), 4);
}

TEST_F(ProofFetchTest, AFullWindowRefusesMoreUntilAnAnswerIsTaken) {
  ProofFetcher fetcher(*clients_, g_, /*workers=*/2, /*window=*/3);
  EXPECT_TRUE(fetcher.Push(DigestAt(0), "tsa"));
  EXPECT_TRUE(fetcher.Push(DigestAt(1), "tsa"));
  EXPECT_TRUE(fetcher.Push(DigestAt(2), "tsa"));
  EXPECT_FALSE(fetcher.Push(DigestAt(3), "tsa"));
  EXPECT_EQ(fetcher.outstanding(), 3u);
  auto first = fetcher.Take();
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(*first, absl::StrCat("proof 0 of tsa:", DigestAt(0)));
  EXPECT_TRUE(fetcher.Push(DigestAt(3), "tsa"));
  // A fetcher dropped with calls queued and in flight ends them and returns.
}

TEST_F(ProofFetchTest, TakeWithNothingQueuedIsAnErrorNotAWait) {
  ProofFetcher fetcher(*clients_, g_);
  EXPECT_EQ(fetcher.Take().status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace anchord::anchorctl
