// Drives a running hasher's HashTree (dry run, so no submitter is involved) over a directory and
// prints files, bytes and wall seconds as one JSON line. Used by bench/hash_throughput.sh; not a
// test.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "anchord/v1/hasher.grpc.pb.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: hasher_bench HOST:PORT RELATIVE_DIR\n");
    return 2;
  }
  auto channel = grpc::CreateChannel(argv[1], grpc::InsecureChannelCredentials());
  auto stub = anchord::v1::HasherService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::hours(2));
  anchord::v1::HashTreeRequest req;
  req.set_path(argv[2]);
  req.set_dry_run(true);
  req.set_job("bench");
  auto start = std::chrono::steady_clock::now();
  auto reader = stub->HashTree(&ctx, req);
  anchord::v1::HashTreeResponse resp;
  long long files = 0, bytes = 0, errors = 0;
  while (reader->Read(&resp)) {
    if (resp.status().code() != 0) {
      ++errors;
      continue;
    }
    ++files;
    bytes += resp.size_bytes();
  }
  grpc::Status st = reader->Finish();
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!st.ok()) {
    std::fprintf(stderr, "HashTree failed: %s\n", st.error_message().c_str());
    return 1;
  }
  std::printf("{\"files\":%lld,\"bytes\":%lld,\"errors\":%lld,\"seconds\":%.3f}\n", files, bytes,
              errors, secs);
  return 0;
}
