#include "services/poller/fallback.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "anchord/v1/submitter.grpc.pb.h"
#include "libs/common/hex.h"

namespace anchord::poller {

absl::Status RequestFallback(const std::shared_ptr<grpc::Channel>& submitter, const ProofRow& row) {
  if (row.fallback_provider.empty()) return absl::FailedPreconditionError("no fallback provider");
  if (row.files.empty()) {
    return absl::FailedPreconditionError("no file is known for the digest (metadata required)");
  }
  anchord::v1::SubmitterService::Stub stub(submitter);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto stream = stub.Submit(&ctx);
  anchord::v1::SubmitRequest req;
  req.set_request_id(absl::StrCat("fallback-", HexEncode(row.digest).substr(0, 16)));
  req.set_digest(row.digest);
  const FileRow& f = row.files.front();
  auto* m = req.mutable_metadata();
  m->set_filename(f.filename);
  m->set_size_bytes(f.size_bytes);
  m->set_mime_type(f.mime_type);
  m->set_source_path(f.source_path);
  m->set_job(f.job);
  req.add_providers(row.fallback_provider);
  anchord::v1::SubmitResponse resp;
  bool wrote = stream->Write(req);
  stream->WritesDone();
  bool read = wrote && stream->Read(&resp);
  grpc::Status st = stream->Finish();
  if (!read) {
    return absl::UnavailableError(absl::StrCat("submitter: ", st.ok() ? "no answer" : st.error_message()));
  }
  if (resp.status().code() != 0) {
    return absl::Status(static_cast<absl::StatusCode>(resp.status().code()), resp.status().message());
  }
  return absl::OkStatus();
}

}  // namespace anchord::poller
