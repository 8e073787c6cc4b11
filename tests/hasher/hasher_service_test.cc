// The hasher served in-process on 127.0.0.1:0, talking to a fake SubmitterService (real gRPC over
// loopback) that can ack at once, ack late, drop its stream, or reject items.
#include <openssl/sha.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <prometheus/registry.h>

#include "anchord/v1/common.grpc.pb.h"
#include "anchord/v1/hasher.grpc.pb.h"
#include "anchord/v1/submitter.grpc.pb.h"
#include "gtest/gtest.h"
#include "libs/rpc/server.h"
#include "services/hasher/hasher_metrics.h"
#include "services/hasher/hasher_service.h"
#include "services/hasher/hasher_store.h"
#include "tests/testing/temp_dir.h"
#include "tests/testing/wait.h"

namespace anchord::hasher {
namespace {

namespace fs = std::filesystem;
namespace v1 = anchord::v1;
using std::chrono::milliseconds;

std::string Sha(const std::string& data) {
  unsigned char out[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), out);
  return std::string(reinterpret_cast<const char*>(out), sizeof(out));
}

void WriteFile(const std::string& path, const std::string& content) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  ASSERT_TRUE(out.good());
}

// A fake submitter. Sync API on purpose: it is test code and the simplest correct fake.
class FakeSubmitter final : public v1::SubmitterService::Service {
 public:
  // Behaviour, set before the run.
  milliseconds ack_delay{0};
  int drop_first_stream_after = -1;  // end the first stream with UNAVAILABLE after N requests
  std::string reject_digest;         // answer INVALID_ARGUMENT for this digest
  bool never_ack = false;
  bool reject_batches = false;  // refuse every batch-form message as a whole

  grpc::Status Submit(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<v1::SubmitResponse, v1::SubmitRequest>* stream) override {
    int stream_no;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stream_no = streams_++;
    }
    // Acks are written by a second thread after ack_delay, so reading goes on meanwhile and the
    // number of received-but-unacknowledged requests is what the hasher chose to send.
    std::mutex qmu;
    std::condition_variable qcv;
    std::deque<std::pair<std::chrono::steady_clock::time_point, v1::SubmitRequest>> queue;
    bool done = false;
    int unacked = 0;
    std::thread writer([&] {
      for (;;) {
        std::unique_lock<std::mutex> lock(qmu);
        qcv.wait(lock, [&] { return done || !queue.empty(); });
        if (queue.empty()) return;
        auto [at, req] = queue.front();
        queue.pop_front();
        lock.unlock();
        std::this_thread::sleep_until(at);
        // A batch-form message gets one response with an answer per item, in order.
        v1::SubmitResponse resp;
        resp.set_request_id(req.request_id());
        const int items = req.items_size();
        for (int i = 0; i < (items == 0 ? 1 : items); ++i) {
          const v1::SubmitRequest& one = items == 0 ? req : req.items(i);
          v1::SubmitResponse* answer = items == 0 ? &resp : resp.add_items();
          answer->set_request_id(one.request_id());
          answer->set_digest(one.digest());
          if (one.digest() == reject_digest || (reject_batches && items > 0)) {
            answer->mutable_status()->set_code(3);
            answer->mutable_status()->set_message("metadata.filename: rejected by the fake");
            answer->mutable_status()->set_reason("INVALID_FIELD");
          } else {
            answer->set_state(v1::DIGEST_STATE_QUEUED);
            std::lock_guard<std::mutex> l(mu_);
            acked_.insert(one.digest());
          }
        }
        if (reject_batches && items > 0) {
          // As the submitter refuses a message that breaks the rules of the batch form: whole.
          resp.clear_items();
          resp.mutable_status()->set_code(3);
          resp.mutable_status()->set_message("items: refused by the fake");
        }
        {
          std::lock_guard<std::mutex> l(qmu);
          unacked -= std::max(1, items);
        }
        if (!stream->Write(resp)) return;
      }
    });
    v1::SubmitRequest req;
    int n = 0;
    grpc::Status result = grpc::Status::OK;
    while (stream->Read(&req)) {
      const int items = std::max(1, req.items_size());
      const int before = n;
      n += items;
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (req.items_size() == 0) received_.push_back(req);
        for (const v1::SubmitRequest& item : req.items()) received_.push_back(item);
        ++messages_;
      }
      {
        std::lock_guard<std::mutex> lock(qmu);
        unacked += items;
        std::lock_guard<std::mutex> l(mu_);
        max_unacked_ = std::max(max_unacked_, unacked);
        if (!never_ack) queue.emplace_back(std::chrono::steady_clock::now() + ack_delay, req);
      }
      qcv.notify_all();
      if (stream_no == 0 && before < drop_first_stream_after && n >= drop_first_stream_after) {
        result = grpc::Status(grpc::StatusCode::UNAVAILABLE, "fake submitter restarting");
        break;
      }
    }
    {
      std::lock_guard<std::mutex> lock(qmu);
      done = true;
      // A dropped stream loses its unwritten acks, as a killed submitter would.
      if (!result.ok()) queue.clear();
    }
    qcv.notify_all();
    writer.join();
    return result;
  }

  std::vector<v1::SubmitRequest> received() {
    std::lock_guard<std::mutex> lock(mu_);
    return received_;
  }
  int max_unacked() {
    std::lock_guard<std::mutex> lock(mu_);
    return max_unacked_;
  }
  int streams() {
    std::lock_guard<std::mutex> lock(mu_);
    return streams_;
  }
  int messages() {
    std::lock_guard<std::mutex> lock(mu_);
    return messages_;
  }

 private:
  std::mutex mu_;
  std::vector<v1::SubmitRequest> received_;
  std::set<std::string> acked_;
  int streams_ = 0;
  int messages_ = 0;
  int max_unacked_ = 0;
};

class HasherServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "hasher_test.XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    base_ = tmpl;
    root_ = base_ + "/root";
    fs::create_directories(root_);
    fs::create_directories(base_ + "/data");
  }
  void TearDown() override {
    StopHasher();
    if (fake_server_) fake_server_->Shutdown(std::chrono::system_clock::now());
    fake_server_.reset();
    std::error_code ec;
    fs::remove_all(base_, ec);
  }

  void StartFake() {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &fake_port_);
    b.RegisterService(&fake_);
    fake_server_ = b.BuildAndStart();
    ASSERT_NE(fake_server_, nullptr);
  }

  void StartHasher(bool with_submitter, int max_inflight = 256) {
    auto store = HasherStore::Open(base_ + "/data/hasher.db");
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
    registry_ = std::make_shared<prometheus::Registry>();
    metrics_ = std::make_unique<HasherMetrics>(*registry_);
    HasherOptions opt;
    opt.root = root_;
    opt.workers = 2;
    opt.max_inflight = max_inflight;
    opt.hash_buffer_bytes = hash_buffer_bytes_;
    opt.submit.backoff = BackoffPolicy{absl::Milliseconds(20), absl::Milliseconds(200), 2.0};
    if (with_submitter) {
      opt.submitter = rpc::MakeChannel("127.0.0.1:" + std::to_string(fake_port_));
    }
    auto svc = HasherServiceImpl::Create(opt, store_.get(), metrics_.get());
    ASSERT_TRUE(svc.ok()) << svc.status();
    service_ = std::move(*svc);
    status_ = std::make_unique<HasherStatusServiceImpl>(service_->shared());
    rpc::ServerOptions so;
    so.service_name = "hasher";
    so.shutdown_grace = absl::Seconds(2);
    so.health_service_names = {"anchord.v1.HasherService", "anchord.v1.StatusService"};
    auto runner = rpc::ServerRunner::Start(so, {service_.get(), status_.get()}, registry_);
    ASSERT_TRUE(runner.ok()) << runner.status();
    runner_ = std::move(*runner);
    auto ch = grpc::CreateChannel("127.0.0.1:" + std::to_string(runner_->port()),
                                  grpc::InsecureChannelCredentials());
    stub_ = v1::HasherService::NewStub(ch);
    status_stub_ = v1::StatusService::NewStub(ch);
  }

  void StopHasher() {
    if (runner_) runner_->Shutdown();
    runner_.reset();
    service_.reset();
    status_.reset();
    store_.reset();
  }

  struct TreeRun {
    grpc::Status status;
    std::map<std::string, v1::HashTreeResponse> by_path;
    std::vector<v1::HashTreeResponse> all;  // one per result, in the order received
    size_t messages = 0;
  };

  // With req.batch_results, every message must carry its results in `results` and nothing of its
  // own but files_total and walk_complete, which are copied into each result here.
  TreeRun RunTree(const v1::HashTreeRequest& req) {
    TreeRun run;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    auto reader = stub_->HashTree(&ctx, req);
    v1::HashTreeResponse r;
    for (int i = 0; i < 100000 && reader->Read(&r); ++i) {
      ++run.messages;
      if (!req.batch_results()) {
        EXPECT_EQ(r.results_size(), 0);
        run.all.push_back(r);
        run.by_path[r.path()] = r;
        continue;
      }
      EXPECT_GT(r.results_size(), 0);
      EXPECT_TRUE(r.path().empty() && r.digest().empty() && !r.has_status()) << r.path();
      for (v1::HashTreeResponse one : r.results()) {
        EXPECT_EQ(one.files_total(), 0);
        EXPECT_EQ(one.results_size(), 0);
        one.set_files_total(r.files_total());
        one.set_walk_complete(r.walk_complete());
        run.by_path[one.path()] = one;
        run.all.push_back(std::move(one));
      }
    }
    run.status = reader->Finish();
    return run;
  }

  // Creates n files "f/NN.txt" with distinct contents; returns path -> content.
  std::map<std::string, std::string> MakeFiles(int n) {
    std::map<std::string, std::string> files;
    for (int i = 0; i < n; ++i) {
      std::string rel = "f/" + std::to_string(i / 10) + "/" + std::to_string(i) + ".txt";
      std::string content = "file number " + std::to_string(i) + std::string(i * 37, 'x');
      WriteFile(root_ + "/" + rel, content);
      files[rel] = content;
    }
    return files;
  }

  std::string base_, root_;
  size_t hash_buffer_bytes_ = 4096;
  FakeSubmitter fake_;
  int fake_port_ = 0;
  std::unique_ptr<grpc::Server> fake_server_;
  std::unique_ptr<HasherStore> store_;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<HasherMetrics> metrics_;
  std::unique_ptr<HasherServiceImpl> service_;
  std::unique_ptr<HasherStatusServiceImpl> status_;
  std::unique_ptr<rpc::ServerRunner> runner_;
  std::unique_ptr<v1::HasherService::Stub> stub_;
  std::unique_ptr<v1::StatusService::Stub> status_stub_;
};

TEST_F(HasherServiceTest, DryRunReportsEveryFileAndProblemsPerFile) {
  WriteFile(root_ + "/a.txt", "alpha");
  WriteFile(root_ + "/sub/b.pdf", std::string(10000, 'b'));  // larger than the 4 KiB buffer
  WriteFile(root_ + "/empty.txt", "");
  ASSERT_EQ(mkfifo((root_ + "/sub/pipe").c_str(), 0600), 0);
  WriteFile(base_ + "/outside.txt", "outside");
  ASSERT_EQ(symlink((base_ + "/outside.txt").c_str(), (root_ + "/escape").c_str()), 0);
  StartHasher(/*with_submitter=*/false);

  v1::HashTreeRequest req;
  req.set_dry_run(true);
  TreeRun run = RunTree(req);
  ASSERT_TRUE(run.status.ok()) << run.status.error_message();
  ASSERT_EQ(run.all.size(), 5u);
  EXPECT_EQ(run.by_path["a.txt"].digest(), Sha("alpha"));
  EXPECT_EQ(run.by_path["a.txt"].state(), v1::DIGEST_STATE_HASHED);
  EXPECT_EQ(run.by_path["a.txt"].status().code(), 0);
  EXPECT_EQ(run.by_path["sub/b.pdf"].digest(), Sha(std::string(10000, 'b')));
  EXPECT_EQ(run.by_path["sub/b.pdf"].size_bytes(), 10000);
  EXPECT_EQ(run.by_path["empty.txt"].status().reason(), "EMPTY_FILE");
  EXPECT_EQ(run.by_path["sub/pipe"].status().reason(), "NOT_A_REGULAR_FILE");
  EXPECT_EQ(run.by_path["escape"].status().reason(), "PATH_OUTSIDE_ROOT");
  EXPECT_TRUE(run.by_path["escape"].digest().empty());
  EXPECT_TRUE(run.all.back().walk_complete());
  EXPECT_EQ(run.all.back().files_total(), 5);
  // The store never learned the resolved outside path, and errors are listed too.
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto reader = stub_->ListFiles(&ctx, v1::ListFilesRequest());
  std::vector<std::string> paths;
  v1::ListFilesResponse row;
  while (reader->Read(&row)) paths.push_back(row.path());
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(paths,
            (std::vector<std::string>{"a.txt", "empty.txt", "escape", "sub/b.pdf", "sub/pipe"}));
  EXPECT_DOUBLE_EQ(metrics_->files_hashed.Value(), 2);
  EXPECT_DOUBLE_EQ(metrics_->files_error.Value(), 3);
  EXPECT_DOUBLE_EQ(metrics_->bytes.Value(), 10005);
}

// Files are opened relative to the directories the walk holds open, at most
// TreeWalker::kMaxOpenDirs of them: a chain 120 directories deep and 100 sibling directories of one
// file each (more directories than that limit in flight with a window of 256) still give every
// file its digest, in both result forms; a symlink to a file inside the root is hashed as its
// target, one to a file outside is refused, and the service holds no directory open afterwards.
TEST_F(HasherServiceTest, DeepAndWideTreesHashEveryFileWithinTheOpenDirectoryLimit) {
  std::map<std::string, std::string> files;
  std::string deep;
  for (int i = 0; i < 120; ++i) {
    deep += (i == 0 ? "" : "/") + std::string("d");
    files[deep + "/f.txt"] = "deep " + std::to_string(i);
  }
  for (int i = 0; i < 100; ++i) {
    files["wide/w" + std::to_string(i) + "/f.txt"] = "wide " + std::to_string(i);
  }
  for (const auto& [rel, content] : files) WriteFile(root_ + "/" + rel, content);
  ASSERT_EQ(symlink("../d/f.txt", (root_ + "/wide/inside").c_str()), 0);
  WriteFile(base_ + "/outside.txt", "outside");
  ASSERT_EQ(symlink((base_ + "/outside.txt").c_str(), (root_ + "/wide/outside").c_str()), 0);
  StartHasher(/*with_submitter=*/false);
  // Descriptors of this process open on something under the root (named by its resolved path).
  ASSERT_EQ(fs::canonical(root_).string(), root_);
  auto open_under_root = [this] {
    int n = 0;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/proc/self/fd", ec)) {
      std::string target = fs::read_symlink(e.path(), ec).string();
      if (!ec && target.rfind(root_, 0) == 0) ++n;
    }
    return n;
  };
  for (bool batch : {false, true}) {
    SCOPED_TRACE(batch ? "batch_results" : "one result per message");
    v1::HashTreeRequest req;
    req.set_dry_run(true);
    req.set_job(batch ? "b" : "s");
    req.set_batch_results(batch);
    TreeRun run = RunTree(req);
    ASSERT_TRUE(run.status.ok()) << run.status.error_message();
    ASSERT_EQ(run.all.size(), files.size() + 2);
    for (const auto& [rel, content] : files) {
      const auto& r = run.by_path[rel];
      EXPECT_EQ(r.status().code(), 0) << rel << ": " << r.status().message();
      EXPECT_EQ(r.digest(), Sha(content)) << rel;
    }
    EXPECT_EQ(run.by_path["wide/inside"].digest(), Sha("deep 0"));
    EXPECT_EQ(run.by_path["wide/outside"].status().reason(), "PATH_OUTSIDE_ROOT");
    EXPECT_EQ(open_under_root(), 0);
  }
}

TEST_F(HasherServiceTest, InvalidArgumentsNameTheField) {
  StartHasher(/*with_submitter=*/false);
  v1::HashTreeRequest req;
  req.set_dry_run(true);
  req.set_path("../etc");
  TreeRun run = RunTree(req);
  EXPECT_EQ(run.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(run.status.error_message().rfind("path:", 0), 0u) << run.status.error_message();
  req.set_path("/etc");
  run = RunTree(req);
  EXPECT_EQ(run.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(run.status.error_message().rfind("path:", 0), 0u) << run.status.error_message();
  req.set_path("");
  req.set_job("bad job!");
  run = RunTree(req);
  EXPECT_EQ(run.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(run.status.error_message().rfind("job:", 0), 0u) << run.status.error_message();
  req.set_job("");
  req.set_path("missing-dir");
  run = RunTree(req);
  EXPECT_EQ(run.status.error_code(), grpc::StatusCode::NOT_FOUND);
  // Not a dry run and no submitter configured.
  req.set_path("");
  req.set_dry_run(false);
  run = RunTree(req);
  EXPECT_EQ(run.status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_NE(run.status.error_message().find("no submitter configured"), std::string::npos);

  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::LocateRequest lr;
  lr.set_digest("short");
  v1::LocateResponse lresp;
  grpc::Status st = status_stub_->Locate(&ctx, lr, &lresp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(st.error_message().rfind("digest:", 0), 0u);
}

TEST_F(HasherServiceTest, ForwardsThenSecondRunIsUnchangedAndModifiedFileIsRehashed) {
  StartFake();
  auto files = MakeFiles(25);
  StartHasher(/*with_submitter=*/true);
  v1::HashTreeRequest req;
  req.set_job("case-1");
  req.add_providers("proofd");
  TreeRun run = RunTree(req);
  ASSERT_TRUE(run.status.ok()) << run.status.error_message();
  ASSERT_EQ(run.all.size(), files.size());
  std::set<std::string> sent;
  for (const auto& r : fake_.received()) {
    sent.insert(r.digest());
    EXPECT_EQ(r.metadata().job(), "case-1");
    EXPECT_EQ(r.metadata().mime_type(), "text/plain");
    EXPECT_EQ(r.providers_size(), 1);
    EXPECT_EQ(r.metadata().size_bytes(),
              static_cast<int64_t>(files[r.metadata().source_path()].size()));
  }
  for (const auto& [path, content] : files) {
    const auto& r = run.by_path[path];
    EXPECT_EQ(r.status().code(), 0) << path << ": " << r.status().message();
    EXPECT_EQ(r.state(), v1::DIGEST_STATE_QUEUED) << path;
    EXPECT_EQ(r.digest(), Sha(content));
    EXPECT_FALSE(r.unchanged());
    EXPECT_TRUE(sent.count(Sha(content))) << path;
  }
  size_t sent_first = fake_.received().size();
  EXPECT_DOUBLE_EQ(metrics_->inflight.Value(), 0);

  // Second run: nothing is read again or sent again.
  run = RunTree(req);
  ASSERT_TRUE(run.status.ok());
  ASSERT_EQ(run.all.size(), files.size());
  for (const auto& r : run.all) {
    EXPECT_TRUE(r.unchanged()) << r.path();
    EXPECT_EQ(r.state(), v1::DIGEST_STATE_QUEUED);
    EXPECT_EQ(r.digest(), Sha(files[r.path()]));
  }
  EXPECT_EQ(fake_.received().size(), sent_first);
  EXPECT_DOUBLE_EQ(metrics_->files_unchanged.Value(), 25);

  // A modified file (new size, new mtime) is hashed and sent again; the others are not.
  const std::string changed = "f/0/3.txt";
  WriteFile(root_ + "/" + changed, "new content of a different length");
  run = RunTree(req);
  ASSERT_TRUE(run.status.ok());
  for (const auto& r : run.all) {
    if (r.path() == changed) {
      EXPECT_FALSE(r.unchanged());
      EXPECT_EQ(r.digest(), Sha("new content of a different length"));
      EXPECT_EQ(r.state(), v1::DIGEST_STATE_QUEUED);
    } else {
      EXPECT_TRUE(r.unchanged()) << r.path();
    }
  }
  ASSERT_EQ(fake_.received().size(), sent_first + 1);
  EXPECT_EQ(fake_.received().back().digest(), Sha("new content of a different length"));

  // Status: Locate and SummarizeJob from the store.
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::LocateRequest lr;
    lr.set_digest(Sha(files["f/1/12.txt"]));
    v1::LocateResponse resp;
    ASSERT_TRUE(status_stub_->Locate(&ctx, lr, &resp).ok());
    EXPECT_EQ(resp.service(), "hasher");
    EXPECT_EQ(resp.state(), v1::DIGEST_STATE_QUEUED);
    ASSERT_EQ(resp.files_size(), 1);
    EXPECT_EQ(resp.files(0).source_path(), "f/1/12.txt");
    EXPECT_EQ(resp.files(0).filename(), "12.txt");
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::LocateRequest lr;
    lr.set_digest(std::string(32, '\x01'));
    v1::LocateResponse resp;
    EXPECT_EQ(status_stub_->Locate(&ctx, lr, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::SummarizeJobRequest sr;
    sr.set_job("case-1");
    v1::SummarizeJobResponse resp;
    ASSERT_TRUE(status_stub_->SummarizeJob(&ctx, sr, &resp).ok());
    EXPECT_EQ(resp.files(), 25);
    EXPECT_EQ(resp.digests_by_state().at("DIGEST_STATE_QUEUED"), 25);
  }
  // ListFiles streams the job in path order, all QUEUED.
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ListFilesRequest lreq;
  lreq.set_job("case-1");
  auto reader = stub_->ListFiles(&ctx, lreq);
  std::vector<std::string> paths;
  v1::ListFilesResponse row;
  while (reader->Read(&row)) {
    paths.push_back(row.path());
    EXPECT_EQ(row.state(), v1::DIGEST_STATE_QUEUED);
  }
  ASSERT_TRUE(reader->Finish().ok());
  std::vector<std::string> expected;
  for (const auto& [p, c] : files) expected.push_back(p);
  EXPECT_EQ(paths, expected);
}

// Many files go through the batched path (walk entries admitted and hashed in batches, one store
// transaction per batch, QUEUED marks written in batches): still exactly one result per file, the
// duplicate reported in dry run, every row QUEUED as soon as the call has finished, and the
// second run skips every file. Windows of 1 and 7 exercise batches of one and odd batch sizes
// against a full window (a batch must never wait on slots it holds itself). Each window twice: one
// result per message, and with batch_results (the same results packed, every message carrying only
// `results`; with a window of 256 far fewer messages than files).
TEST_F(HasherServiceTest, ManyFilesInBatchesOneResultEachAndMarksWrittenBeforeTheEnd) {
  StartFake();
  auto files = MakeFiles(203);
  WriteFile(root_ + "/dup/copy.txt", files["f/0/5.txt"]);
  files["dup/copy.txt"] = files["f/0/5.txt"];
  WriteFile(root_ + "/dup/empty.txt", "");
  for (int run_no = 0; run_no < 6; ++run_no) {
    const int window = std::vector<int>{1, 7, 256}[run_no % 3];
    // The same calls with one result per message and with results packed (batch_results).
    const bool batch = run_no >= 3;
    SCOPED_TRACE("max_inflight " + std::to_string(window) + (batch ? ", batch_results" : ""));
    StopHasher();
    std::error_code ec;
    fs::remove(base_ + "/data/hasher.db", ec);
    fs::remove(base_ + "/data/hasher.db-wal", ec);
    fs::remove(base_ + "/data/hasher.db-shm", ec);
    StartHasher(/*with_submitter=*/true, window);

    v1::HashTreeRequest dry;
    dry.set_job("dry");
    dry.set_dry_run(true);
    dry.set_batch_results(batch);
    TreeRun run = RunTree(dry);
    ASSERT_TRUE(run.status.ok()) << run.status.error_message();
    ASSERT_EQ(run.all.size(), files.size() + 1);  // one per file, the empty one included
    // Packed: with a window of 256, the files hashed together share messages.
    if (!batch) {
      EXPECT_EQ(run.messages, run.all.size());
    }
    if (batch && window == 256) {
      EXPECT_LT(run.messages * 4, run.all.size());
    }
    ASSERT_EQ(run.by_path.size(), files.size() + 1);
    EXPECT_TRUE(run.all.back().walk_complete());
    EXPECT_EQ(run.all.back().files_total(), static_cast<int64_t>(files.size() + 1));
    for (const auto& [path, content] : files) {
      const auto& r = run.by_path[path];
      EXPECT_EQ(r.status().code(), 0) << path;
      EXPECT_EQ(r.digest(), Sha(content)) << path;
      EXPECT_EQ(r.state(), v1::DIGEST_STATE_HASHED);
    }
    EXPECT_EQ(run.by_path["dup/empty.txt"].status().reason(), "EMPTY_FILE");
    // Whichever of the two copies was recorded second names the first.
    const auto& a = run.by_path["f/0/5.txt"];
    const auto& b = run.by_path["dup/copy.txt"];
    EXPECT_TRUE((a.duplicate_of() == "dup/copy.txt") != (b.duplicate_of() == "f/0/5.txt"))
        << a.duplicate_of() << " / " << b.duplicate_of();
    EXPECT_EQ(run.by_path["f/0/6.txt"].duplicate_of(), "");

    v1::HashTreeRequest fwd;
    fwd.set_job(batch ? "fwd-batch" : "fwd");
    fwd.set_batch_results(batch);
    run = RunTree(fwd);
    ASSERT_TRUE(run.status.ok()) << run.status.error_message();
    ASSERT_EQ(run.all.size(), files.size() + 1);
    ASSERT_EQ(run.by_path.size(), files.size() + 1);
    for (const auto& [path, content] : files) {
      EXPECT_EQ(run.by_path[path].state(), v1::DIGEST_STATE_QUEUED) << path;
    }
    // Every acknowledged row is QUEUED in the store once the call finished.
    std::string after;
    size_t queued = 0;
    for (int page = 0; page < 100; ++page) {
      auto rows = store_->ListPage(fwd.job(), after, 64);
      ASSERT_TRUE(rows.ok()) << rows.status();
      if (rows->empty()) break;
      for (const FileRow& row : *rows) {
        if (row.state == FileState::kQueued) ++queued;
      }
      after = rows->back().path;
    }
    EXPECT_EQ(queued, files.size());
    // The second run reads and sends nothing again.
    size_t sent = fake_.received().size();
    run = RunTree(fwd);
    ASSERT_TRUE(run.status.ok());
    size_t unchanged = 0;
    for (const auto& r : run.all) unchanged += r.unchanged() ? 1 : 0;
    EXPECT_EQ(unchanged, files.size());
    EXPECT_EQ(run.by_path.size(), files.size() + 1);
    if (batch && window == 256) {
      EXPECT_LT(run.messages * 4, run.all.size());
    }
    EXPECT_EQ(fake_.received().size(), sent);
    EXPECT_DOUBLE_EQ(metrics_->inflight.Value(), 0);
  }
}

// A large window: the hashing batches hand their digests to the Submit stream together, which
// writes them in corked bursts, and acknowledged files are marked QUEUED inside later hashing
// transactions. Every file still gets exactly one result, every digest reaches the submitter,
// every row is QUEUED once the call finished; and when the stream drops in the middle of a burst,
// the unacknowledged rest is sent again on the next stream and nothing is lost.
TEST_F(HasherServiceTest, BurstsOfDigestsAreAllAcknowledgedAndRecorded) {
  StartFake();
  std::map<std::string, std::string> files;
  for (int i = 0; i < 1500; ++i) {
    std::string rel = "b/" + std::to_string(i / 100) + "/" + std::to_string(i) + ".bin";
    files[rel] = "burst file " + std::to_string(i);
    WriteFile(root_ + "/" + rel, files[rel]);
  }
  for (int drop_after : {700, -1}) {  // the fake drops only its first stream
    SCOPED_TRACE("drop_first_stream_after " + std::to_string(drop_after));
    StopHasher();
    fake_.drop_first_stream_after = drop_after;
    StartHasher(/*with_submitter=*/true, /*max_inflight=*/1024);
    const size_t received_before = fake_.received().size();
    const int messages_before = fake_.messages();
    v1::HashTreeRequest req;
    req.set_job("burst" + std::to_string(drop_after));
    req.set_anchor_mode(v1::ANCHOR_MODE_MERKLE_BATCH);
    TreeRun run = RunTree(req);
    ASSERT_TRUE(run.status.ok()) << run.status.error_message();
    ASSERT_EQ(run.all.size(), files.size());
    ASSERT_EQ(run.by_path.size(), files.size());
    std::vector<v1::SubmitRequest> received = fake_.received();
    std::set<std::string> sent_digests;
    for (size_t i = received_before; i < received.size(); ++i) {
      EXPECT_EQ(received[i].anchor_mode(), v1::ANCHOR_MODE_MERKLE_BATCH);
      sent_digests.insert(received[i].digest());
    }
    if (drop_after < 0) {
      EXPECT_EQ(received.size() - received_before, files.size());
    }
    // Bursts go in the batch form: far fewer messages than digests.
    EXPECT_LT(static_cast<size_t>(fake_.messages() - messages_before) * 4,
              received.size() - received_before);
    for (const auto& [path, content] : files) {
      const v1::HashTreeResponse& r = run.by_path[path];
      EXPECT_EQ(r.state(), v1::DIGEST_STATE_QUEUED) << path;
      EXPECT_EQ(r.digest(), Sha(content)) << path;
      EXPECT_EQ(sent_digests.count(Sha(content)), 1u) << path;
    }
    std::string after;
    size_t queued = 0;
    for (int page = 0; page < 100; ++page) {
      auto rows = store_->ListPage(req.job(), after, 500);
      ASSERT_TRUE(rows.ok()) << rows.status();
      if (rows->empty()) break;
      for (const FileRow& row : *rows) queued += row.state == FileState::kQueued ? 1 : 0;
      after = rows->back().path;
    }
    EXPECT_EQ(queued, files.size());
    EXPECT_DOUBLE_EQ(metrics_->inflight.Value(), 0);
  }
  EXPECT_GE(fake_.streams(), 3);  // one stream per call, and the dropped one reopened
}

TEST_F(HasherServiceTest, SlowSubmitterNeverHasMoreThanMaxInflightUnacked) {
  StartFake();
  fake_.ack_delay = milliseconds(15);
  auto files = MakeFiles(30);
  StartHasher(/*with_submitter=*/true, /*max_inflight=*/4);
  TreeRun run = RunTree(v1::HashTreeRequest());
  ASSERT_TRUE(run.status.ok()) << run.status.error_message();
  ASSERT_EQ(run.all.size(), 30u);
  for (const auto& r : run.all) EXPECT_EQ(r.state(), v1::DIGEST_STATE_QUEUED) << r.path();
  EXPECT_LE(fake_.max_unacked(), 4);
  EXPECT_GE(fake_.max_unacked(), 1);
  EXPECT_EQ(fake_.received().size(), 30u);
  EXPECT_DOUBLE_EQ(metrics_->inflight.Value(), 0);
}

TEST_F(HasherServiceTest, ReconnectsAfterTheStreamDropsAndResendsUnacked) {
  StartFake();
  fake_.drop_first_stream_after = 5;
  fake_.ack_delay = milliseconds(5);
  auto files = MakeFiles(20);
  StartHasher(/*with_submitter=*/true, /*max_inflight=*/8);
  TreeRun run = RunTree(v1::HashTreeRequest());
  ASSERT_TRUE(run.status.ok()) << run.status.error_message();
  // Exactly one result per file.
  ASSERT_EQ(run.all.size(), files.size());
  ASSERT_EQ(run.by_path.size(), files.size());
  std::multiset<std::string> sent;
  for (const auto& r : fake_.received()) sent.insert(r.digest());
  for (const auto& [path, content] : files) {
    EXPECT_EQ(run.by_path[path].state(), v1::DIGEST_STATE_QUEUED) << path;
    EXPECT_GE(sent.count(Sha(content)), 1u) << path;
  }
  EXPECT_GE(fake_.streams(), 2);
  EXPECT_GE(metrics_->reconnects.Value(), 1);
  EXPECT_DOUBLE_EQ(metrics_->inflight.Value(), 0);
}

TEST_F(HasherServiceTest, SubmitterRejectionIsReportedInTheFileResult) {
  StartFake();
  WriteFile(root_ + "/good.txt", "good");
  WriteFile(root_ + "/bad.txt", "bad");
  fake_.reject_digest = Sha("bad");
  StartHasher(/*with_submitter=*/true);
  TreeRun run = RunTree(v1::HashTreeRequest());
  ASSERT_TRUE(run.status.ok());
  EXPECT_EQ(run.by_path["good.txt"].state(), v1::DIGEST_STATE_QUEUED);
  EXPECT_EQ(run.by_path["bad.txt"].status().code(), 3);
  EXPECT_EQ(run.by_path["bad.txt"].state(), v1::DIGEST_STATE_HASHED);
  EXPECT_EQ(run.by_path["bad.txt"].status().message().rfind("metadata.filename", 0), 0u);
}

// A batch-form message refused as a whole (no answer per item) answers each of its items with
// that refusal: every file gets its result, HASHED with the submitter's status, none is recorded
// as QUEUED, and the call ends.
TEST_F(HasherServiceTest, ARefusalOfAWholeBatchAnswersEachOfItsFiles) {
  StartFake();
  auto files = MakeFiles(300);
  fake_.reject_batches = true;
  StartHasher(/*with_submitter=*/true, /*max_inflight=*/1024);
  v1::HashTreeRequest req;
  req.set_job("refused");
  req.set_batch_results(true);
  TreeRun run = RunTree(req);
  ASSERT_TRUE(run.status.ok()) << run.status.error_message();
  ASSERT_EQ(run.by_path.size(), files.size());
  ASSERT_LT(static_cast<size_t>(fake_.messages()), files.size());  // batches were sent
  size_t refused = 0;
  for (const auto& [path, content] : files) {
    const v1::HashTreeResponse& r = run.by_path[path];
    EXPECT_EQ(r.digest(), Sha(content)) << path;
    if (r.status().code() == 0) {
      EXPECT_EQ(r.state(), v1::DIGEST_STATE_QUEUED) << path;  // sent alone, in the single form
      continue;
    }
    ++refused;
    EXPECT_EQ(r.state(), v1::DIGEST_STATE_HASHED) << path;
    EXPECT_EQ(r.status().code(), 3) << path;
    EXPECT_EQ(r.status().message(), "items: refused by the fake") << path;
    EXPECT_EQ(r.status().reason(), "SUBMIT_REJECTED") << path;
  }
  EXPECT_GT(refused, files.size() / 2);
  EXPECT_DOUBLE_EQ(metrics_->inflight.Value(), 0);
  auto row = store_->Get("refused", files.begin()->first);
  ASSERT_TRUE(row.ok()) << row.status();
  if (row->has_value()) {
    EXPECT_NE((*row)->state, FileState::kQueued);
  }
}

TEST_F(HasherServiceTest, CallerCancellationEndsTheCall) {
  StartFake();
  fake_.never_ack = true;
  MakeFiles(20);
  StartHasher(/*with_submitter=*/true, /*max_inflight=*/2);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto reader = stub_->HashTree(&ctx, v1::HashTreeRequest());
  // Wait (bounded) until the hasher has sent the window's worth, then give up as a caller would.
  ASSERT_TRUE(testing::WaitUntil([&] { return fake_.received().size() >= 2; }, absl::Seconds(5)));
  EXPECT_EQ(fake_.received().size(), 2u);  // the window is full: no more is sent
  ctx.TryCancel();
  v1::HashTreeResponse r;
  while (reader->Read(&r)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  // The service shuts down without hanging (its destructor waits for the call's threads).
  StopHasher();
  EXPECT_EQ(fake_.received().size(), 2u);
}

// A forwarded file's row is written once, when the submitter has answered for it. While it is in
// flight the store keeps what it had (here the QUEUED row of the file's previous content); if the
// hasher goes away before the answer (the call cancelled, the service stopped), the next run finds
// that older row, reads the file again and sends it again, and only then records the new digest.
TEST_F(HasherServiceTest, FileInFlightKeepsItsOldRowUntilAnsweredAndIsSentAgainAfterARestart) {
  StartFake();
  auto files = MakeFiles(12);
  StartHasher(/*with_submitter=*/true, /*max_inflight=*/4);
  v1::HashTreeRequest req;
  req.set_job("inflight");
  ASSERT_TRUE(RunTree(req).status.ok());
  const std::string changed = "f/0/7.txt";
  auto before = store_->Get("inflight", changed);
  ASSERT_TRUE(before.ok() && before->has_value()) << before.status();
  ASSERT_EQ((*before)->state, FileState::kQueued);
  ASSERT_EQ((*before)->digest->raw(), Sha(files[changed]));
  const std::string content = "changed content, another length";
  WriteFile(root_ + "/" + changed, content);
  StopHasher();

  fake_.never_ack = true;
  StartHasher(/*with_submitter=*/true, /*max_inflight=*/4);
  const size_t sent_before = fake_.received().size();
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    auto reader = stub_->HashTree(&ctx, req);
    ASSERT_TRUE(testing::WaitUntil([&] { return fake_.received().size() > sent_before; },
                                   absl::Seconds(10)));
    EXPECT_EQ(fake_.received().back().digest(), Sha(content));
    // Sent, not answered: the row still describes the previous content.
    auto in_flight = store_->Get("inflight", changed);
    ASSERT_TRUE(in_flight.ok() && in_flight->has_value()) << in_flight.status();
    EXPECT_EQ((*in_flight)->digest->raw(), Sha(files[changed]));
    EXPECT_EQ((*in_flight)->size_bytes, static_cast<int64_t>(files[changed].size()));
    ctx.TryCancel();
    v1::HashTreeResponse r;
    for (int i = 0; i < 1000 && reader->Read(&r); ++i) {
      EXPECT_NE(r.path(), changed);  // no result for a file never answered
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  StopHasher();
  ASSERT_EQ(fake_.received().size(), sent_before + 1);

  fake_.never_ack = false;
  StartHasher(/*with_submitter=*/true, /*max_inflight=*/4);
  TreeRun run = RunTree(req);
  ASSERT_TRUE(run.status.ok()) << run.status.error_message();
  ASSERT_EQ(run.all.size(), files.size());
  for (const auto& r : run.all) {
    EXPECT_EQ(r.state(), v1::DIGEST_STATE_QUEUED) << r.path();
    EXPECT_EQ(r.unchanged(), r.path() != changed) << r.path();
  }
  EXPECT_EQ(run.by_path[changed].digest(), Sha(content));
  ASSERT_EQ(fake_.received().size(), sent_before + 2);  // sent again, and nothing else
  EXPECT_EQ(fake_.received().back().digest(), Sha(content));
  auto after = store_->Get("inflight", changed);
  ASSERT_TRUE(after.ok() && after->has_value()) << after.status();
  EXPECT_EQ((*after)->state, FileState::kQueued);
  EXPECT_EQ((*after)->digest->raw(), Sha(content));
  EXPECT_EQ((*after)->size_bytes, static_cast<int64_t>(content.size()));
  EXPECT_TRUE((*after)->read_by_hasher);
}

TEST_F(HasherServiceTest, HashFilesDryRunForwardAndPerFileErrors) {
  StartFake();
  StartHasher(/*with_submitter=*/true);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto stream = stub_->HashFiles(&ctx);
  auto send = [&](const std::string& id, const std::string& name, int64_t size,
                  const std::vector<std::string>& chunks, bool dry_run) {
    for (size_t i = 0; i < chunks.size(); ++i) {
      v1::HashFilesRequest req;
      req.set_file_id(id);
      if (i == 0) {
        req.mutable_metadata()->set_filename(name);
        req.mutable_metadata()->set_size_bytes(size);
        req.mutable_metadata()->set_source_path("upload/" + name);
      }
      req.set_data(chunks[i]);
      req.set_last(i + 1 == chunks.size());
      req.set_dry_run(dry_run);
      ASSERT_TRUE(stream->Write(req));
    }
  };
  send("1", "a.txt", 6, {"ab", "cd", "ef"}, true);
  send("2", "b.txt", 5, {"hello"}, false);
  send("3", "c.txt", 99, {"short"}, true);  // size mismatch
  send("4", "bad/name", 3, {"abc"}, true);  // invalid filename
  stream->WritesDone();
  std::map<std::string, v1::HashFilesResponse> out;
  v1::HashFilesResponse r;
  for (int i = 0; i < 100 && stream->Read(&r); ++i) out[r.file_id()] = r;
  ASSERT_TRUE(stream->Finish().ok());
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out["1"].digest(), Sha("abcdef"));
  EXPECT_EQ(out["1"].state(), v1::DIGEST_STATE_HASHED);
  EXPECT_EQ(out["2"].digest(), Sha("hello"));
  EXPECT_EQ(out["2"].state(), v1::DIGEST_STATE_QUEUED);
  EXPECT_EQ(out["3"].status().code(), 3);
  EXPECT_EQ(out["3"].status().message().rfind("metadata.size_bytes", 0), 0u);
  EXPECT_EQ(out["4"].status().code(), 3);
  EXPECT_EQ(out["4"].status().message().rfind("metadata.filename", 0), 0u);
  ASSERT_EQ(fake_.received().size(), 1u);
  EXPECT_EQ(fake_.received()[0].digest(), Sha("hello"));
}

// An upload naming a real file under the root, with that file's size and mtime but other bytes,
// must not become the digest a later tree walk trusts without reading the file: before the fix
// HashTree reported the file `unchanged` with the planted digest. Both orders are covered: the
// upload before the first walk, and an upload over a row the walk itself recorded.
TEST_F(HasherServiceTest, UploadedDigestNeverStandsInForReadingAFileUnderTheRoot) {
  StartFake();
  const std::string rel = "evidence/contract.txt";
  const std::string real = "the real contract, signed";
  const std::string planted(real.size(), 'Z');
  WriteFile(root_ + "/" + rel, real);
  struct stat st;
  ASSERT_EQ(stat((root_ + "/" + rel).c_str(), &st), 0);
  StartHasher(/*with_submitter=*/true);

  auto upload = [&](const std::string& id) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    auto stream = stub_->HashFiles(&ctx);
    v1::HashFilesRequest req;
    req.set_file_id(id);
    auto* m = req.mutable_metadata();
    m->set_filename("contract.txt");
    m->set_size_bytes(static_cast<int64_t>(planted.size()));
    m->set_source_path(rel);
    m->mutable_modified_at()->set_seconds(st.st_mtim.tv_sec);
    m->mutable_modified_at()->set_nanos(static_cast<int32_t>(st.st_mtim.tv_nsec));
    req.set_data(planted);
    req.set_last(true);
    ASSERT_TRUE(stream->Write(req));
    stream->WritesDone();
    v1::HashFilesResponse r;
    ASSERT_TRUE(stream->Read(&r));
    EXPECT_EQ(r.status().code(), 0) << r.status().message();
    EXPECT_EQ(r.digest(), Sha(planted));
    EXPECT_EQ(r.state(), v1::DIGEST_STATE_QUEUED);  // recorded and acknowledged, as before
    ASSERT_TRUE(stream->Finish().ok());
  };

  v1::HashTreeRequest req;
  req.set_job("default");
  auto expect_read = [&](const char* when) {
    TreeRun run = RunTree(req);
    ASSERT_TRUE(run.status.ok()) << run.status.error_message();
    ASSERT_EQ(run.by_path.count(rel), 1u) << when;
    const auto& r = run.by_path[rel];
    EXPECT_FALSE(r.unchanged()) << when;
    EXPECT_EQ(r.digest(), Sha(real)) << when;
    EXPECT_NE(r.digest(), Sha(planted)) << when;
  };

  upload("plant-1");
  expect_read("upload before the first walk");
  // The walk's own row is trusted on the next walk...
  TreeRun again = RunTree(req);
  ASSERT_TRUE(again.status.ok());
  EXPECT_TRUE(again.by_path[rel].unchanged());
  EXPECT_EQ(again.by_path[rel].digest(), Sha(real));
  // ...until an upload overwrites it: then the file is read again.
  upload("plant-2");
  expect_read("upload over a row the walk recorded");
}

// The anchoring choices of an uploaded file (providers, Merkle batching, fallback) travel to the
// submitter with its digest; an unknown anchor mode is refused naming the field.
TEST_F(HasherServiceTest, HashFilesPassesAnchoringChoicesOn) {
  StartFake();
  StartHasher(/*with_submitter=*/true);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto stream = stub_->HashFiles(&ctx);
  v1::HashFilesRequest req;
  req.set_file_id("1");
  req.mutable_metadata()->set_filename("a.txt");
  req.mutable_metadata()->set_size_bytes(5);
  req.set_data("hello");
  req.set_last(true);
  req.add_providers("proofd");
  req.add_providers("ots");
  req.set_anchor_mode(v1::ANCHOR_MODE_MERKLE_BATCH);
  req.set_fallback_provider("proofledger");
  ASSERT_TRUE(stream->Write(req));
  v1::HashFilesRequest bad = req;
  bad.set_file_id("2");
  bad.set_data("world");
  bad.set_anchor_mode(static_cast<v1::AnchorMode>(42));
  ASSERT_TRUE(stream->Write(bad));
  stream->WritesDone();
  std::map<std::string, v1::HashFilesResponse> out;
  v1::HashFilesResponse r;
  for (int i = 0; i < 10 && stream->Read(&r); ++i) out[r.file_id()] = r;
  ASSERT_TRUE(stream->Finish().ok());
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out["1"].status().code(), 0) << out["1"].status().message();
  EXPECT_EQ(out["2"].status().code(), 3);
  EXPECT_EQ(out["2"].status().message().rfind("anchor_mode", 0), 0u) << out["2"].status().message();
  ASSERT_EQ(fake_.received().size(), 1u);
  const v1::SubmitRequest sent = fake_.received()[0];
  EXPECT_EQ(sent.digest(), Sha("hello"));
  EXPECT_EQ(sent.anchor_mode(), v1::ANCHOR_MODE_MERKLE_BATCH);
  ASSERT_EQ(sent.providers_size(), 2);
  EXPECT_EQ(sent.providers(1), "ots");
  EXPECT_EQ(sent.fallback_provider(), "proofledger");
}

TEST_F(HasherServiceTest, HashFilesPausesReadingWhenTheWindowIsFull) {
  StartFake();
  fake_.ack_delay = milliseconds(10);
  StartHasher(/*with_submitter=*/true, /*max_inflight=*/1);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto stream = stub_->HashFiles(&ctx);
  // Results are read on another thread so the writes below can be held back by the hasher.
  std::map<std::string, v1::HashFilesResponse> out;
  std::thread reader([&] {
    v1::HashFilesResponse r;
    for (int i = 0; i < 100 && stream->Read(&r); ++i) out[r.file_id()] = r;
  });
  for (int i = 0; i < 6; ++i) {
    v1::HashFilesRequest req;
    req.set_file_id("id" + std::to_string(i));
    req.mutable_metadata()->set_filename("f" + std::to_string(i) + ".bin");
    req.mutable_metadata()->set_size_bytes(3);
    req.set_data("x" + std::to_string(i) + "y");
    req.set_last(true);
    ASSERT_TRUE(stream->Write(req));
  }
  // A file left without its last chunk is reported when the stream ends.
  v1::HashFilesRequest partial;
  partial.set_file_id("partial");
  partial.mutable_metadata()->set_filename("p.bin");
  partial.mutable_metadata()->set_size_bytes(10);
  partial.set_data("abc");
  ASSERT_TRUE(stream->Write(partial));
  stream->WritesDone();
  reader.join();
  ASSERT_TRUE(stream->Finish().ok());
  ASSERT_EQ(out.size(), 7u);
  for (int i = 0; i < 6; ++i) {
    const auto& r = out["id" + std::to_string(i)];
    EXPECT_EQ(r.state(), v1::DIGEST_STATE_QUEUED);
    EXPECT_EQ(r.digest(), Sha("x" + std::to_string(i) + "y"));
  }
  EXPECT_EQ(out["partial"].status().code(), 3);
  EXPECT_EQ(out["partial"].status().message().rfind("last:", 0), 0u);
  EXPECT_LE(fake_.max_unacked(), 1);
  EXPECT_EQ(fake_.received().size(), 6u);
}

// StatusService's plain functions, straight over a real store (no server).
TEST(HasherStatusFunctionsTest, LocateAndSummarizeOverTheStore) {
  testing::TempDir dir("hasher_status");
  auto store = HasherStore::Open(dir.File("hasher.db"));
  ASSERT_TRUE(store.ok()) << store.status();
  const Digest d1 = *Digest::FromBytes(std::string(32, '\x01'));
  const Digest d2 = *Digest::FromBytes(std::string(32, '\x02'));
  ASSERT_TRUE((*store)
                  ->RecordHashedBatch("job1",
                                      {HashedRecord{"a/one.txt", 10, 1500000000123456789LL, d1},
                                       HashedRecord{"b/two.pdf", 20, 7, d2}},
                                      nullptr)
                  .ok());
  ASSERT_TRUE((*store)->MarkQueued("job1", "b/two.pdf", d2, "").ok());
  ASSERT_TRUE(
      (*store)->RecordHashedBatch("job2", {HashedRecord{"c/one.txt", 10, 9, d1}}, nullptr).ok());

  v1::LocateRequest locate;
  locate.set_digest(d1.raw());
  absl::StatusOr<v1::LocateResponse> found = LocateDigest(**store, locate);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->service(), "hasher");
  EXPECT_EQ(found->state(), v1::DIGEST_STATE_HASHED);
  ASSERT_EQ(found->files_size(), 2);
  std::set<std::string> jobs;
  for (const v1::FileMetadata& md : found->files()) jobs.insert(md.job());
  EXPECT_EQ(jobs, (std::set<std::string>{"job1", "job2"}));
  const v1::FileMetadata& first =
      found->files(0).job() == "job1" ? found->files(0) : found->files(1);
  EXPECT_EQ(first.filename(), "one.txt");
  EXPECT_EQ(first.source_path(), "a/one.txt");
  EXPECT_EQ(first.size_bytes(), 10);
  EXPECT_EQ(first.mime_type(), "text/plain");
  EXPECT_EQ(first.modified_at().seconds(), 1500000000);
  EXPECT_EQ(first.modified_at().nanos(), 123456789);

  locate.set_digest(d2.raw());
  found = LocateDigest(**store, locate);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->state(), v1::DIGEST_STATE_QUEUED);

  locate.set_digest(std::string(32, '\x03'));
  EXPECT_EQ(LocateDigest(**store, locate).status().code(), absl::StatusCode::kNotFound);
  locate.set_digest("short");
  absl::Status bad = LocateDigest(**store, locate).status();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.message().rfind("digest", 0), 0u) << bad;

  v1::SummarizeJobRequest summarize;
  summarize.set_job("job1");
  absl::StatusOr<v1::SummarizeJobResponse> sum = SummarizeHashJob(**store, summarize);
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(sum->service(), "hasher");
  EXPECT_EQ(sum->files(), 2);
  EXPECT_EQ(sum->digests_by_state().at("DIGEST_STATE_HASHED"), 1);
  EXPECT_EQ(sum->digests_by_state().at("DIGEST_STATE_QUEUED"), 1);
  summarize.set_paused_only(true);  // the hasher never pauses: nothing is counted
  sum = SummarizeHashJob(**store, summarize);
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(sum->files(), 0);
  EXPECT_TRUE(sum->digests_by_state().empty());
  EXPECT_FALSE(sum->paused());
  summarize.set_job(std::string(1000, 'j'));
  EXPECT_EQ(SummarizeHashJob(**store, summarize).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// A row whose digest blob is not 32 bytes (a damaged database) is a store error naming the column,
// never a crash; an ERROR row (digest NULL) reads as no digest.
TEST(HasherStatusFunctionsTest, ADigestBlobOfAnotherSizeIsAStoreErrorNamingTheColumn) {
  testing::TempDir dir("hasher_bad_digest");
  auto store = HasherStore::Open(dir.File("hasher.db"));
  ASSERT_TRUE(store.ok()) << store.status();
  const Digest d = *Digest::FromBytes(std::string(32, '\x07'));
  ASSERT_TRUE((*store)->RecordHashedBatch("job", {HashedRecord{"a.txt", 1, 1, d}}, nullptr).ok());
  ASSERT_TRUE((*store)->RecordError("job", "b.txt", 1, 1, 5, "FILE_UNREADABLE", "gone").ok());
  auto error_row = (*store)->Get("job", "b.txt");
  ASSERT_TRUE(error_row.ok() && error_row->has_value()) << error_row.status();
  EXPECT_FALSE((*error_row)->digest.has_value());
  {
    auto db = ledger::SqliteDb::Open(dir.File("hasher.db"));
    ASSERT_TRUE(db.ok()) << db.status();
    ledger::Session session(**db);
    auto st =
        session.Prepare("UPDATE files SET digest = substr(digest, 1, 31) WHERE path = 'a.txt'");
    ASSERT_TRUE(st.ok()) << st.status();
    ASSERT_TRUE(st->Run().ok());
  }
  auto got = (*store)->Get("job", "a.txt");
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(got.status().message(),
            "files.digest: a SHA-256 digest must be exactly 32 bytes, got 31");
}

}  // namespace
}  // namespace anchord::hasher
