#include "services/poller/lookups.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "libs/common/hex.h"
#include "libs/common/validate.h"
#include "libs/rpc/unary.h"
#include "services/poller/convert.h"

namespace anchord::poller {

namespace v1 = anchord::v1;
using anchord::v1::DigestState;

namespace {

constexpr int kMaxPageSize = 1000;
constexpr int kDefaultPageSize = 100;
constexpr int kMaxDigestFilter = 1000;

absl::Status StoreUnavailable(const absl::Status& st) {
  return rpc::StoreUnavailable("poller", st);
}

}  // namespace

absl::StatusOr<v1::GetProofResponse> GetProof(PollerStore& store,
                                              const v1::GetProofRequest& request) {
  absl::StatusOr<Digest> digest = Digest::FromBytes(request.digest(), "digest");
  if (!digest.ok()) return digest.status();
  auto row = store.Get(*digest, request.provider());
  if (!row.ok()) return StoreUnavailable(row.status());
  if (!row->has_value()) {
    return absl::NotFoundError(absl::StrCat("digest: no proof of ", digest->hex(),
                                            request.provider().empty() ? "" : " with provider ",
                                            QuoteCallerText(request.provider())));
  }
  v1::GetProofResponse response;
  *response.mutable_proof() = ToProto(**row);
  return response;
}

absl::StatusOr<v1::ListProofsResponse> ListProofs(PollerStore& store,
                                                  const v1::ListProofsRequest& request) {
  if (request.page_size() < 0 || request.page_size() > kMaxPageSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size: must be 0 to ", kMaxPageSize, ", got ", request.page_size()));
  }
  if (request.digests_size() > kMaxDigestFilter) {
    return absl::InvalidArgumentError(
        absl::StrCat("digests: at most ", kMaxDigestFilter, ", got ", request.digests_size()));
  }
  if (absl::Status st = ValidateJob(request.job(), "job"); !st.ok()) {
    return absl::InvalidArgumentError(st.message());
  }
  ListFilter filter;
  filter.job = request.job();
  int state = request.state();
  if (state != v1::DIGEST_STATE_UNSPECIFIED && !v1::DigestState_IsValid(state)) {
    return absl::InvalidArgumentError(absl::StrCat("state: unknown value ", state));
  }
  filter.state = static_cast<DigestState>(state);
  for (int i = 0; i < request.digests_size(); ++i) {
    absl::StatusOr<Digest> d =
        Digest::FromBytes(request.digests(i), absl::StrCat("digests[", i, "]"));
    if (!d.ok()) return absl::InvalidArgumentError(d.status().message());
    filter.digests.push_back(*d);
  }
  int64_t after = 0;
  if (!request.page_token().empty()) {
    auto decoded = DecodePageToken(request.page_token());
    if (!decoded.ok()) return absl::InvalidArgumentError(decoded.status().message());
    after = *decoded;
  }
  int page_size = request.page_size() == 0 ? kDefaultPageSize : request.page_size();
  // One extra row tells whether another page exists.
  auto rows = store.List(filter, after, page_size + 1);
  if (!rows.ok()) return StoreUnavailable(rows.status());
  bool more = static_cast<int>(rows->size()) > page_size;
  if (more) rows->resize(page_size);
  v1::ListProofsResponse response;
  for (const ProofRow& r : *rows) *response.add_proofs() = ToProto(r);
  if (more) response.set_next_page_token(EncodePageToken(rows->back().seq));
  return response;
}

absl::StatusOr<v1::LocateResponse> Locate(PollerStore& store, const v1::LocateRequest& request) {
  absl::StatusOr<Digest> digest = Digest::FromBytes(request.digest(), "digest");
  if (!digest.ok()) return digest.status();
  auto rows = store.GetAll(*digest);
  if (!rows.ok()) return StoreUnavailable(rows.status());
  if (rows->empty()) {
    return absl::NotFoundError(absl::StrCat("digest: the poller knows nothing of ", digest->hex()));
  }
  v1::LocateResponse response;
  response.set_service("poller");
  int best = 0;
  for (const ProofRow& r : *rows) {
    *response.add_proofs() = ToProto(r);
    best = std::max(best, static_cast<int>(r.state));
  }
  response.set_state(static_cast<DigestState>(best));
  for (const auto& f : response.proofs(0).files()) *response.add_files() = f;
  if (best == v1::DIGEST_STATE_FAILED) {
    for (const auto& p : response.proofs()) {
      if (p.state() == v1::DIGEST_STATE_FAILED) {
        *response.mutable_status() = p.failure();
        break;
      }
    }
  }
  return response;
}

absl::StatusOr<v1::SummarizeJobResponse> SummarizeJob(PollerStore& store,
                                                      const v1::SummarizeJobRequest& request) {
  if (absl::Status st = ValidateJob(request.job(), "job"); !st.ok()) return st;
  v1::SummarizeJobResponse response;
  response.set_service("poller");
  if (request.paused_only()) return response;  // the poller never pauses
  auto summary = store.Summarize(request.job());
  if (!summary.ok()) return StoreUnavailable(summary.status());
  for (const auto& [state, n] : summary->digests_by_state) {
    (*response.mutable_digests_by_state())[v1::DigestState_Name(state)] = n;
  }
  response.set_files(summary->digests);
  return response;
}

}  // namespace anchord::poller
