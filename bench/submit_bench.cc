// Submit ingest rate: streams precomputed digests to SubmitterService.Submit and measures how many
// per second the submitter(s) acknowledge as durable. Not a test; used by bench/scale_bench.sh.
//
//   submit_bench TARGET COUNT [STREAMS] [WINDOW] [JOB] [SEED]
//
// TARGET may name several replicas ("ipv4:127.0.0.1:a,127.0.0.1:b"): the channel uses round_robin
// (rpc::MakeChannel), so STREAMS concurrent streams spread over them. Each stream keeps at most
// WINDOW digests unacknowledged, like the hasher. Digests are SHA-256 of "SEED/<i>", distinct per
// seed. Prints one JSON line: {"digests":N,"acked":N,"errors":N,"seconds":S,"per_second":R}.
#include <openssl/sha.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "anchord/v1/submitter.grpc.pb.h"
#include "libs/rpc/server.h"

namespace {

std::string DigestOf(const std::string& text) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), md);
  return std::string(reinterpret_cast<const char*>(md), sizeof(md));
}

struct Totals {
  std::atomic<long long> acked{0};
  std::atomic<long long> errors{0};
};

// One stream sending digests [begin, end) with at most `window` in flight.
bool RunStream(anchord::v1::SubmitterService::Stub* stub, long long begin, long long end,
               int window, const std::string& job, const std::string& seed, Totals* totals) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::hours(1));
  auto stream = stub->Submit(&ctx);
  std::mutex mu;
  std::condition_variable cv;
  long long in_flight = 0;
  bool broken = false;
  std::thread reader([&] {
    anchord::v1::SubmitResponse resp;
    while (stream->Read(&resp)) {
      if (resp.status().code() == 0) {
        ++totals->acked;
      } else {
        ++totals->errors;
      }
      std::lock_guard<std::mutex> lock(mu);
      --in_flight;
      cv.notify_all();
    }
    std::lock_guard<std::mutex> lock(mu);
    broken = true;
    cv.notify_all();
  });
  for (long long i = begin; i < end; ++i) {
    {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return in_flight < window || broken; });
      if (broken) break;
      ++in_flight;
    }
    anchord::v1::SubmitRequest req;
    const std::string name = seed + "/" + std::to_string(i);
    req.set_request_id(std::to_string(i));
    req.set_digest(DigestOf(name));
    auto* m = req.mutable_metadata();
    m->set_filename("f" + std::to_string(i) + ".bin");
    m->set_size_bytes(1024);
    m->set_source_path("bench/" + name);
    m->set_job(job);
    if (!stream->Write(req)) break;
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, std::chrono::minutes(10), [&] { return in_flight == 0 || broken; });
  }
  stream->WritesDone();
  reader.join();
  grpc::Status st = stream->Finish();
  if (!st.ok()) std::fprintf(stderr, "Submit stream: %s\n", st.error_message().c_str());
  return st.ok();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: submit_bench TARGET COUNT [STREAMS] [WINDOW] [JOB] [SEED]\n");
    return 2;
  }
  const std::string target = argv[1];
  const long long count = std::atoll(argv[2]);
  const int streams = argc > 3 ? std::atoi(argv[3]) : 1;
  const int window = argc > 4 ? std::atoi(argv[4]) : 256;
  const std::string job = argc > 5 ? argv[5] : "bench";
  const std::string seed = argc > 6 ? argv[6] : "submit-bench";
  if (count <= 0 || streams <= 0 || window <= 0) {
    std::fprintf(stderr, "COUNT, STREAMS and WINDOW must be positive\n");
    return 2;
  }
  auto channel = anchord::rpc::MakeChannel(target);
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(20))) {
    std::fprintf(stderr, "cannot reach %s\n", target.c_str());
    return 1;
  }
  auto stub = anchord::v1::SubmitterService::NewStub(channel);
  Totals totals;
  std::atomic<int> failed{0};
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int s = 0; s < streams; ++s) {
    const long long begin = count * s / streams;
    const long long end = count * (s + 1) / streams;
    threads.emplace_back([&, begin, end] {
      if (!RunStream(stub.get(), begin, end, window, job, seed, &totals)) ++failed;
    });
  }
  for (auto& t : threads) t.join();
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "{\"digests\":%lld,\"acked\":%lld,\"errors\":%lld,\"seconds\":%.3f,\"per_second\":%.1f}\n",
      count, totals.acked.load(), totals.errors.load(), secs, totals.acked.load() / secs);
  return failed.load() == 0 && totals.acked.load() == count ? 0 : 1;
}
