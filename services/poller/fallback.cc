#include "services/poller/fallback.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "anchord/v1/submitter.grpc.pb.h"
#include "libs/rpc/messages.h"

namespace anchord::poller {

absl::Status RequestFallback(const std::shared_ptr<grpc::Channel>& submitter, const ProofRow& row) {
  if (row.fallback_provider.empty()) return absl::FailedPreconditionError("no fallback provider");
  if (row.files.empty()) {
    return absl::FailedPreconditionError("no file is known for the digest (metadata required)");
  }
  anchord::v1::SubmitterService::Stub stub(submitter);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  anchord::v1::ReanchorRequest req;
  req.set_digest(row.digest.raw());
  rpc::SetFileMetadata(row.files.front(), req.mutable_metadata());
  req.set_provider(row.fallback_provider);
  req.set_stalled_provider(row.provider);
  anchord::v1::ReanchorResponse resp;
  grpc::Status st = stub.Reanchor(&ctx, req, &resp);
  if (!st.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(st.error_code()),
                        absl::StrCat("submitter: ", st.error_message()));
  }
  return absl::OkStatus();
}

}  // namespace anchord::poller
