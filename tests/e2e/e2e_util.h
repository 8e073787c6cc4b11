// Small helpers shared by the end-to-end tests.
#pragma once

#include <openssl/evp.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "anchord/v1/poller.grpc.pb.h"
#include "anchord/v1/submitter.grpc.pb.h"
#include "libs/common/hex.h"
#include "libs/rpc/security.h"
#include "services/anchorctl/stack.h"

namespace anchord::anchorctl::e2e {

inline std::string Sha256Hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return HexEncode(absl::string_view(reinterpret_cast<const char*>(md), len));
}

inline void WriteFile(const std::filesystem::path& p, const std::string& content) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << content;
}

// What a run of the anchorctl binary ended with.
struct RunResult {
  int exit_code = -1;
  std::string output;
};

// What an outside caller (transport settings `outside`: whatever it may legitimately hold, e.g. a
// client certificate for the public API, but not the internal token) gets from every internal RPC
// of a running stack: PERMISSION_DENIED on the public ports, UNAUTHENTICATED on the internal
// ports. One status per call, named "<port> <method>".
inline std::map<std::string, grpc::Status> CallInternalRpcsFromOutside(
    const StackInfo& info, const rpc::TransportSecurity& outside) {
  std::map<std::string, grpc::Status> out;
  auto deadline = [](grpc::ClientContext* ctx) {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  };
  std::string digest(32, '\x42');
  for (const auto& [port, target] : {std::pair<std::string, std::string>{"public", info.poller},
                                     {"internal", info.poller_internal}}) {
    auto ch = rpc::MakeSecureChannel(target, outside);
    if (!ch.ok()) continue;
    auto stub = anchord::v1::PollerService::NewStub(*ch);
    grpc::ClientContext ctx;
    deadline(&ctx);
    auto stream = stub->Track(&ctx);
    anchord::v1::TrackRequest req;
    req.set_request_id("outside");
    auto* p = req.mutable_proof();
    p->set_digest(digest);
    p->set_provider("proofd");
    p->set_proof_id("forged");
    p->set_state(anchord::v1::DIGEST_STATE_CONFIRMED);
    stream->Write(req);
    stream->WritesDone();
    anchord::v1::TrackResponse resp;
    while (stream->Read(&resp)) {
    }
    out[port + " PollerService.Track"] = stream->Finish();
  }
  for (const auto& [port, target] : {std::pair<std::string, std::string>{"public", info.submitter},
                                     {"internal", info.submitter_internal}}) {
    auto ch = rpc::MakeSecureChannel(target, outside);
    if (!ch.ok()) continue;
    auto stub = anchord::v1::SubmitterService::NewStub(*ch);
    grpc::ClientContext ctx;
    deadline(&ctx);
    anchord::v1::ReanchorRequest req;
    req.set_digest(digest);
    req.mutable_metadata()->set_filename("x.pdf");
    req.mutable_metadata()->set_size_bytes(1);
    req.set_provider("proofd");
    anchord::v1::ReanchorResponse resp;
    out[port + " SubmitterService.Reanchor"] = stub->Reanchor(&ctx, req, &resp);
  }
  return out;
}

inline void ExpectInternalRpcsRefused(const StackInfo& info,
                                      const rpc::TransportSecurity& outside) {
  auto calls = CallInternalRpcsFromOutside(info, outside);
  ASSERT_EQ(calls.size(), 4u);
  for (const auto& [name, st] : calls) {
    const grpc::StatusCode want = absl::StartsWith(name, "public")
                                      ? grpc::StatusCode::PERMISSION_DENIED
                                      : grpc::StatusCode::UNAUTHENTICATED;
    EXPECT_EQ(st.error_code(), want) << name << ": " << st.error_message();
  }
}

}  // namespace anchord::anchorctl::e2e
