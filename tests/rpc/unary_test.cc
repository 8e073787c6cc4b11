// RunUnary over a real server on loopback: the function's answer, its error and a full pool each
// reach the caller as the status the header promises.
#include "libs/rpc/unary.h"

#include <atomic>
#include <condition_variable>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "anchord/v1/common.grpc.pb.h"
#include "gtest/gtest.h"
#include "libs/rpc/server.h"
#include "prometheus/registry.h"

namespace anchord::rpc {
namespace {

// Locate answers with the digest's length; SummarizeJob fails with the job in the message.
class FakeStatus final : public v1::StatusService::CallbackService {
 public:
  explicit FakeStatus(WorkerPool* pool) : pool_(pool) {}
  grpc::ServerUnaryReactor* Locate(grpc::CallbackServerContext* ctx, const v1::LocateRequest* req,
                                   v1::LocateResponse* resp) override {
    return RunUnary(ctx, pool_, "fake", resp, [req]() -> absl::StatusOr<v1::LocateResponse> {
      v1::LocateResponse r;
      r.set_service(absl::StrCat("fake:", req->digest().size()));
      return r;
    });
  }
  grpc::ServerUnaryReactor* SummarizeJob(grpc::CallbackServerContext* ctx,
                                         const v1::SummarizeJobRequest* req,
                                         v1::SummarizeJobResponse* resp) override {
    return RunUnary(ctx, pool_, "fake", resp, [req]() -> absl::StatusOr<v1::SummarizeJobResponse> {
      return StoreUnavailable("fake", absl::InternalError(req->job()));
    });
  }

 private:
  WorkerPool* pool_;
};

class UnaryTest : public ::testing::Test {
 protected:
  void Start(WorkerPool* pool) {
    service_ = std::make_unique<FakeStatus>(pool);
    ServerOptions opts;
    opts.service_name = "unary-test";
    auto runner =
        ServerRunner::Start(opts, {service_.get()}, std::make_shared<prometheus::Registry>());
    ASSERT_TRUE(runner.ok()) << runner.status();
    runner_ = std::move(*runner);
    stub_ = v1::StatusService::NewStub(MakeChannel(absl::StrCat("127.0.0.1:", runner_->port())));
  }
  void TearDown() override {
    if (runner_) runner_->Shutdown();
  }
  static void Deadline(grpc::ClientContext* ctx) {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  }
  std::unique_ptr<FakeStatus> service_;
  std::unique_ptr<ServerRunner> runner_;
  std::unique_ptr<v1::StatusService::Stub> stub_;
};

TEST_F(UnaryTest, TheFunctionsAnswerIsTheResponse) {
  WorkerPool pool(2);
  Start(&pool);
  grpc::ClientContext ctx;
  Deadline(&ctx);
  v1::LocateRequest req;
  req.set_digest(std::string(32, 'x'));
  v1::LocateResponse resp;
  grpc::Status st = stub_->Locate(&ctx, req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  EXPECT_EQ(resp.service(), "fake:32");
}

TEST_F(UnaryTest, AStoreErrorReachesTheCallerWithoutItsDetail) {
  WorkerPool pool(1);
  Start(&pool);
  grpc::ClientContext ctx;
  Deadline(&ctx);
  v1::SummarizeJobRequest req;
  req.set_job("secret-path-/var/lib/x.db");
  v1::SummarizeJobResponse resp;
  grpc::Status st = stub_->SummarizeJob(&ctx, req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(st.error_message(), "fake store unavailable; retry later");
}

TEST_F(UnaryTest, AFullPoolAnswersOverloaded) {
  // One thread held by a task that waits for the test, and a queue of one that is then filled.
  WorkerPool pool(1, 1);
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  std::atomic<bool> running{false};
  ASSERT_TRUE(pool.Post([&] {
    running = true;
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, std::chrono::seconds(20), [&] { return release; });
  }));
  for (int i = 0; i < 2000 && !running; ++i) std::this_thread::yield();
  ASSERT_TRUE(pool.Post([] {}));  // the one queue slot
  Start(&pool);
  grpc::ClientContext ctx;
  Deadline(&ctx);
  v1::LocateRequest req;
  v1::LocateResponse resp;
  grpc::Status st = stub_->Locate(&ctx, req, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(st.error_message(), "fake overloaded; retry later");
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
}

}  // namespace
}  // namespace anchord::rpc
