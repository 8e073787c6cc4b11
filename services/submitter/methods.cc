#include "services/submitter/methods.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"
#include "libs/common/status_macros.h"
#include "libs/common/validate.h"
#include "libs/rpc/status.h"
#include "services/submitter/handoff.h"

namespace anchord::submitter {

using anchord::v1::DigestState;

DigestState ToDigestState(SubState s) {
  switch (s) {
    case SubState::kQueued:
    case SubState::kSubmitting:
      return anchord::v1::DIGEST_STATE_QUEUED;
    case SubState::kSubmitted:
      return anchord::v1::DIGEST_STATE_SUBMITTED;
    case SubState::kFailed:
      return anchord::v1::DIGEST_STATE_FAILED;
  }
  return anchord::v1::DIGEST_STATE_UNSPECIFIED;
}

absl::StatusOr<anchord::v1::LocateResponse> LocateDigest(SubmitterStore& store,
                                                         const anchord::v1::LocateRequest& req,
                                                         absl::Time now) {
  ANCHORD_ASSIGN_OR_RETURN(const Digest digest, Digest::FromBytes(req.digest(), "digest"));
  ANCHORD_ASSIGN_OR_RETURN(std::vector<Submission> rows, store.GetByDigest(digest));
  ANCHORD_ASSIGN_OR_RETURN(std::vector<FileRef> refs, store.Refs(digest));
  ANCHORD_ASSIGN_OR_RETURN(std::vector<PauseInfo> pauses, store.ListPauses());
  if (rows.empty()) {
    return absl::NotFoundError(
        absl::StrCat("digest ", digest.hex(), " is not known to the submitter"));
  }
  anchord::v1::LocateResponse resp;
  resp.set_service("submitter");
  SubState least = SubState::kFailed;
  const Submission* failed = nullptr;
  const PauseInfo* paused = nullptr;
  for (const Submission& row : rows) {
    least = std::min(least, row.state);
    auto* p = resp.add_proofs();
    *p = BuildProof(row, refs);
    if (row.state != SubState::kSubmitted)
      p->set_state(ToDigestState(row.state));
    else if (p->state() == anchord::v1::DIGEST_STATE_PENDING)
      p->set_state(anchord::v1::DIGEST_STATE_SUBMITTED);
    if (row.state == SubState::kFailed && failed == nullptr) failed = &row;
    if (row.state == SubState::kQueued || row.state == SubState::kSubmitting) {
      for (const auto& pi : pauses) {
        if (pi.provider == row.provider) paused = &pi;
      }
    }
  }
  resp.set_state(ToDigestState(least));
  for (const auto& f : refs) {
    auto* m = resp.add_files();
    m->set_filename(f.filename);
    m->set_size_bytes(f.size_bytes);
    m->set_mime_type(f.mime_type);
    m->set_source_path(f.source_path);
    m->set_job(f.job);
  }
  if (paused != nullptr) {
    *resp.mutable_status() = rpc::ToItemStatus(
        absl::ResourceExhaustedError(
            absl::StrCat("queue of provider ", paused->provider, " is paused: ", paused->reason)),
        "QUEUE_PAUSED", paused->probe_at - now);
  } else if (failed != nullptr) {
    for (const auto& p : resp.proofs()) {
      if (p.provider() == failed->provider) *resp.mutable_status() = p.failure();
    }
  }
  return resp;
}

absl::StatusOr<anchord::v1::SummarizeJobResponse> SummarizeJob(
    SubmitterStore& store, const anchord::v1::SummarizeJobRequest& req) {
  ANCHORD_RETURN_IF_ERROR(ValidateJob(req.job(), "job"));
  anchord::v1::SummarizeJobResponse resp;
  resp.set_service("submitter");
  if (!req.paused_only()) {
    ANCHORD_ASSIGN_OR_RETURN(auto counts, store.SummarizeJob(req.job()));
    int64_t total = 0;
    auto* map = resp.mutable_digests_by_state();
    for (const auto& [state, n] : counts) {
      (*map)[anchord::v1::DigestState_Name(ToDigestState(state))] += n;
      total += n;
    }
    resp.set_files(total);
  }
  ANCHORD_ASSIGN_OR_RETURN(std::vector<PauseInfo> pauses, store.ListPauses());
  if (!pauses.empty()) {
    resp.set_paused(true);
    std::vector<std::string> reasons;
    for (const auto& p : pauses) reasons.push_back(absl::StrCat(p.provider, ": ", p.reason));
    resp.set_paused_reason(absl::StrJoin(reasons, "; "));
  }
  return resp;
}

absl::StatusOr<anchord::v1::ResumeQueueResponse> ResumeQueue(
    SubmitterStore& store, Engine* engine, const std::vector<std::string>& known,
    const anchord::v1::ResumeQueueRequest& req) {
  const std::string& provider = req.provider();
  if (!provider.empty() && std::find(known.begin(), known.end(), provider) == known.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("provider: unknown provider; configured: ", absl::StrJoin(known, ", ")));
  }
  ANCHORD_ASSIGN_OR_RETURN(std::vector<std::string> resumed,
                           engine != nullptr ? engine->Resume(provider) : store.Resume(provider));
  anchord::v1::ResumeQueueResponse resp;
  for (const auto& p : resumed) resp.add_resumed(p);
  return resp;
}

absl::StatusOr<anchord::v1::ReanchorResponse> Reanchor(SubmitterCore& core,
                                                       const anchord::v1::ReanchorRequest& req) {
  if (req.provider().empty()) return absl::InvalidArgumentError("provider: required");
  // The same validation and the same durable intake as one Submit item.
  anchord::v1::SubmitRequest as_submit;
  as_submit.set_request_id("reanchor");
  as_submit.set_digest(req.digest());
  *as_submit.mutable_metadata() = req.metadata();
  as_submit.add_providers(req.provider());
  NewItem item;
  ANCHORD_RETURN_IF_ERROR(ValidateSubmit(as_submit, core.options(), &item));
  ANCHORD_LOG(Info) << "re-anchoring " << item.digest.hex() << " with " << req.provider()
                    << " (stalled with " << QuoteCallerText(req.stalled_provider()) << ")";
  anchord::v1::SubmitResponse stored = core.SubmitAndWait(std::move(item), as_submit.request_id());
  if (stored.status().code() != 0) {
    return absl::Status(static_cast<absl::StatusCode>(stored.status().code()),
                        stored.status().message());
  }
  anchord::v1::ReanchorResponse resp;
  resp.set_state(stored.state());
  return resp;
}

}  // namespace anchord::submitter
