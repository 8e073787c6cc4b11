// Drives a running hasher's HashTree over a directory and prints files, bytes and wall seconds as
// one JSON line. Used by bench/hash_throughput.sh and bench/pipeline_bench.sh; not a test.
//
//   hasher_bench HOST:PORT RELATIVE_DIR [dry|merkle|per-file] [JOB]
//
// "dry" (the default) is a dry run: hash and record only, no submitter involved. "merkle" and
// "per-file" forward every digest to the hasher's submitter with that anchor mode; a result then
// arrives only once the submitter acknowledged the digest, so the rate is the forwarding path's.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "anchord/v1/hasher.grpc.pb.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr,
                 "usage: hasher_bench HOST:PORT RELATIVE_DIR [dry|merkle|per-file] [JOB]\n");
    return 2;
  }
  const std::string mode = argc > 3 ? argv[3] : "dry";
  if (mode != "dry" && mode != "merkle" && mode != "per-file") {
    std::fprintf(stderr, "mode must be dry, merkle or per-file\n");
    return 2;
  }
  auto channel = grpc::CreateChannel(argv[1], grpc::InsecureChannelCredentials());
  auto stub = anchord::v1::HasherService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::hours(2));
  anchord::v1::HashTreeRequest req;
  req.set_path(argv[2]);
  req.set_dry_run(mode == "dry");
  req.set_job(argc > 4 ? argv[4] : "bench");
  if (mode == "merkle") req.set_anchor_mode(anchord::v1::ANCHOR_MODE_MERKLE_BATCH);
  if (mode == "per-file") req.set_anchor_mode(anchord::v1::ANCHOR_MODE_PER_FILE);
  // As anchorctl asks: several results per message (a hasher from before the field sends one
  // result per message, which the loop below reads as well).
  req.set_batch_results(true);
  auto start = std::chrono::steady_clock::now();
  auto reader = stub->HashTree(&ctx, req);
  anchord::v1::HashTreeResponse resp;
  long long files = 0, bytes = 0, errors = 0, unchanged = 0;
  while (reader->Read(&resp)) {
    const int n = resp.results_size();
    for (int i = 0; i < (n == 0 ? 1 : n); ++i) {
      const anchord::v1::HashTreeResponse& r = n == 0 ? resp : resp.results(i);
      if (r.status().code() != 0) {
        if (errors == 0) {
          std::fprintf(stderr, "first error: %s: %s\n", r.path().c_str(),
                       r.status().message().c_str());
        }
        ++errors;
        continue;
      }
      ++files;
      if (r.unchanged()) ++unchanged;
      bytes += r.size_bytes();
    }
  }
  grpc::Status st = reader->Finish();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!st.ok()) {
    std::fprintf(stderr, "HashTree failed: %s\n", st.error_message().c_str());
    return 1;
  }
  std::printf(
      "{\"files\":%lld,\"bytes\":%lld,\"errors\":%lld,\"unchanged\":%lld,\"seconds\":%.3f}\n",
      files, bytes, errors, unchanged, secs);
  return 0;
}
