// anchorctl's ProofFetcher: the proofs queued go to the poller in one DownloadProofs call and
// come back in the order asked, each answer as DownloadProof's would be; a poller without
// DownloadProofs (an older release) is asked one proof at a time; a DownloadProofs answer that
// breaks the method's contract fails the proofs it left unanswered and nothing else. The poller
// is a stand-in on loopback (the real one: tests/poller/poller_service_test.cc and the bundle and
// report end-to-end tests).
#include "services/anchorctl/proof_fetch.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "anchord/v1/poller.grpc.pb.h"

namespace anchord::anchorctl {
namespace {

namespace v1 = anchord::v1;

std::string DigestAt(int position) {
  return std::string(1, static_cast<char>(position)) + std::string(31, 'd');
}
// What the stand-in serves for a proof: provider "none" has none yet, "gone" is unknown, "big"
// is sent in several chunks.
std::string FileOf(int position, const std::string& provider) {
  std::string f = absl::StrCat("proof ", position, " of ", provider, ":");
  if (provider == "big") f += std::string(150 * 1024, 'b');
  return f;
}

class StandInPoller final : public v1::PollerService::Service {
 public:
  enum class Mode { kBatch, kOlderRelease, kOutOfOrder, kShortChunk };
  explicit StandInPoller(Mode mode) : mode_(mode) {}

  grpc::Status DownloadProof(grpc::ServerContext*, const v1::DownloadProofRequest* req,
                             grpc::ServerWriter<v1::DownloadProofResponse>* writer) override {
    Count(&single_calls_);
    const int position = static_cast<unsigned char>(req->digest()[0]);
    if (req->provider() == "none") {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "no .ots stored yet");
    }
    if (req->provider() == "gone") return grpc::Status(grpc::StatusCode::NOT_FOUND, "no proof");
    v1::DownloadProofResponse chunk;
    chunk.set_data(FileOf(position, req->provider()));
    writer->Write(chunk);
    return grpc::Status::OK;
  }

  grpc::Status DownloadProofs(grpc::ServerContext*, const v1::DownloadProofsRequest* req,
                              grpc::ServerWriter<v1::DownloadProofsResponse>* writer) override {
    if (mode_ == Mode::kOlderRelease) {
      return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "unknown method");
    }
    Count(&batch_calls_);
    for (int i = 0; i < req->proofs_size(); ++i) {
      const v1::DownloadProofRequest& p = req->proofs(i);
      const int position = static_cast<unsigned char>(p.digest()[0]);
      v1::DownloadProofsResponse m;
      // kOutOfOrder answers the third proof in the place of the second.
      m.set_index(mode_ == Mode::kOutOfOrder && i == 1 ? 2 : i);
      if (p.provider() == "none" || p.provider() == "gone") {
        m.mutable_status()->set_code(p.provider() == "none" ? grpc::StatusCode::FAILED_PRECONDITION
                                                            : grpc::StatusCode::NOT_FOUND);
        m.mutable_status()->set_message("not here");
        writer->Write(m);
        continue;
      }
      const std::string file = FileOf(position, p.provider());
      m.set_total_size_bytes(static_cast<int64_t>(file.size()));
      for (size_t offset = 0; offset < file.size(); offset += 64 * 1024) {
        m.set_data(file.substr(offset, 64 * 1024));
        // kShortChunk claims one byte more than the third proof has.
        if (mode_ == Mode::kShortChunk && i == 2) m.set_total_size_bytes(file.size() + 1);
        writer->Write(m);
      }
    }
    return grpc::Status::OK;
  }

  int batch_calls() { return Read(&batch_calls_); }
  int single_calls() { return Read(&single_calls_); }

 private:
  void Count(int* n) {
    absl::MutexLock lock(&mu_);
    ++*n;
  }
  int Read(int* n) {
    absl::MutexLock lock(&mu_);
    return *n;
  }
  const Mode mode_;
  absl::Mutex mu_;
  int batch_calls_ = 0;
  int single_calls_ = 0;
};

class ProofFetchTest : public ::testing::Test {
 protected:
  void Start(StandInPoller::Mode mode) {
    poller_ = std::make_unique<StandInPoller>(mode);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(poller_.get());
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

  static std::string ProviderAt(int i) {
    return i % 7 == 3 ? "none" : i % 11 == 5 ? "gone" : i % 13 == 6 ? "big" : "tsa";
  }
  // Checks the answer for position i as FetchOts would give it.
  static void ExpectAnswer(int i, const absl::StatusOr<std::string>& got) {
    const std::string provider = ProviderAt(i);
    if (provider == "none") {
      EXPECT_TRUE(absl::IsNotFound(got.status())) << i << ": " << got.status();
    } else if (provider == "gone") {
      EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound) << i;
      EXPECT_FALSE(got.ok());
    } else {
      ASSERT_TRUE(got.ok()) << i << ": " << got.status();
      EXPECT_TRUE(*got == FileOf(i, provider)) << i;
    }
  }

  std::unique_ptr<StandInPoller> poller_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<Clients> clients_;
  GlobalOptions g_;
};

TEST_F(ProofFetchTest, APageOfProofsIsOneCallAnsweredInTheOrderAsked) {
  Start(StandInPoller::Mode::kBatch);
  constexpr int kProofs = 250;  // the digest's first byte is the position
  std::vector<ProofFetcher::ProofRef> refs;
  for (int i = 0; i < kProofs; ++i) refs.push_back({DigestAt(i), ProviderAt(i)});
  ProofFetcher fetcher(*clients_, g_);
  ASSERT_EQ(fetcher.Push(refs), refs.size());
  for (int i = 0; i < kProofs; ++i) ExpectAnswer(i, fetcher.Take());
  EXPECT_EQ(fetcher.outstanding(), 0u);
  EXPECT_EQ(poller_->batch_calls(), 1);
  EXPECT_EQ(poller_->single_calls(), 0);
}

TEST_F(ProofFetchTest, AnOlderPollerIsAskedOneProofAtATime) {
  Start(StandInPoller::Mode::kOlderRelease);
  std::vector<ProofFetcher::ProofRef> refs;
  for (int i = 0; i < 40; ++i) refs.push_back({DigestAt(i), ProviderAt(i)});
  ProofFetcher fetcher(*clients_, g_);
  ASSERT_EQ(fetcher.Push(refs), refs.size());
  for (int i = 0; i < 40; ++i) ExpectAnswer(i, fetcher.Take());
  EXPECT_EQ(poller_->single_calls(), 40);
  // It stays with single calls once it knows.
  ASSERT_EQ(fetcher.Push({{DigestAt(1), "tsa"}}), 1u);
  ExpectAnswer(1, fetcher.Take());
  EXPECT_EQ(poller_->single_calls(), 41);
  EXPECT_EQ(fetcher.calls(), 42);  // the refused DownloadProofs and 41 DownloadProof
}

TEST_F(ProofFetchTest, AnAnswerOutOfOrderFailsWhatItLeftUnansweredOnly) {
  Start(StandInPoller::Mode::kOutOfOrder);
  ProofFetcher fetcher(*clients_, g_);
  std::vector<ProofFetcher::ProofRef> refs = {
      {DigestAt(0), "tsa"}, {DigestAt(1), "tsa"}, {DigestAt(2), "tsa"}, {DigestAt(4), "tsa"}};
  ASSERT_EQ(fetcher.Push(refs), 4u);
  ExpectAnswer(0, fetcher.Take());
  for (int i = 1; i < 4; ++i) {
    absl::StatusOr<std::string> got = fetcher.Take();
    EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss) << i;
    EXPECT_NE(got.status().message().find("proofs[2] where proofs[1] was due"), std::string::npos)
        << got.status();
  }
}

TEST_F(ProofFetchTest, ChunksThatDoNotAddUpToTheirSizeFailThatProofAndTheRest) {
  Start(StandInPoller::Mode::kShortChunk);
  ProofFetcher fetcher(*clients_, g_);
  std::vector<ProofFetcher::ProofRef> refs = {
      {DigestAt(0), "tsa"}, {DigestAt(1), "big"}, {DigestAt(2), "big"}, {DigestAt(4), "tsa"}};
  ASSERT_EQ(fetcher.Push(refs), 4u);
  ExpectAnswer(0, fetcher.Take());
  absl::StatusOr<std::string> big = fetcher.Take();
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_TRUE(*big == FileOf(1, "big"));
  for (int i = 2; i < 4; ++i) {
    EXPECT_EQ(fetcher.Take().status().code(), absl::StatusCode::kDataLoss) << i;
  }
}

TEST_F(ProofFetchTest, AFullWindowRefusesMoreUntilAnAnswerIsTaken) {
  Start(StandInPoller::Mode::kBatch);
  ProofFetcher fetcher(*clients_, g_, /*window=*/3);
  std::vector<ProofFetcher::ProofRef> refs;
  for (int i = 0; i < 5; ++i) refs.push_back({DigestAt(i), ProviderAt(i)});
  EXPECT_EQ(fetcher.Push(refs), 3u);
  EXPECT_EQ(fetcher.Push({{DigestAt(3), ProviderAt(3)}}), 0u);
  EXPECT_EQ(fetcher.outstanding(), 3u);
  ExpectAnswer(0, fetcher.Take());
  EXPECT_EQ(fetcher.Push(refs, 3), 1u);
  for (int i = 1; i < 4; ++i) ExpectAnswer(i, fetcher.Take());
}

TEST_F(ProofFetchTest, HeldAnswersPastTheByteBoundWaitForTheCaller) {
  Start(StandInPoller::Mode::kBatch);
  // A bound smaller than one proof: each answer is read only once the one before was taken, and
  // every answer still arrives.
  ProofFetcher fetcher(*clients_, g_, ProofFetcher::kMaxPerCall, /*max_held_bytes=*/1);
  std::vector<ProofFetcher::ProofRef> refs;
  for (int i = 0; i < 20; ++i) refs.push_back({DigestAt(i), i % 2 ? "big" : "tsa"});
  ASSERT_EQ(fetcher.Push(refs), 20u);
  for (int i = 0; i < 20; ++i) {
    absl::StatusOr<std::string> got = fetcher.Take();
    ASSERT_TRUE(got.ok()) << i << ": " << got.status();
    EXPECT_TRUE(*got == FileOf(i, i % 2 ? "big" : "tsa")) << i;
  }
}

TEST_F(ProofFetchTest, TakeWithNothingQueuedIsAnErrorNotAWait) {
  Start(StandInPoller::Mode::kBatch);
  ProofFetcher fetcher(*clients_, g_);
  EXPECT_EQ(fetcher.Take().status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace anchord::anchorctl
