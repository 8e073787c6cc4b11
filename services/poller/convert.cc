#include "services/poller/convert.h"

#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "libs/common/validate.h"
#include "libs/digest/digest.h"
#include "libs/merkle/merkle.h"
#include "libs/rpc/messages.h"
#include "services/poller/ots_check.h"

namespace anchord::poller {

namespace {

// `x`, a member of a row passed as `Row&&`: to copy from when the row is an lvalue, to move from
// when it is an rvalue.
template <typename Row, typename T>
decltype(auto) Take(T& x) {
  if constexpr (std::is_lvalue_reference_v<Row>) {
    return static_cast<const T&>(x);
  } else {
    return std::move(x);
  }
}

// ToProto's fields from `r`: copied from a row given as an lvalue, moved out of one given as an
// rvalue (an event built from a store outcome nobody reads afterwards).
template <typename Row>
void FillProto(Row&& r, anchord::v1::Proof* p) {
  p->set_digest(r.digest.raw());
  p->set_provider(Take<Row>(r.provider));
  p->set_proof_id(Take<Row>(r.proof_id));
  p->set_state(r.state);
  p->set_certificate_url(Take<Row>(r.certificate_url));
  p->set_verify_url(Take<Row>(r.verify_url));
  p->set_bitcoin_block_height(r.block_height);
  p->set_bitcoin_tx(Take<Row>(r.bitcoin_tx));
  if (r.submitted_at != absl::InfinitePast())
    rpc::SetTimestamp(r.submitted_at, p->mutable_submitted_at());
  if (r.confirmed_at != absl::InfinitePast())
    rpc::SetTimestamp(r.confirmed_at, p->mutable_confirmed_at());
  p->set_ots_available(r.ots_size > 0);
  p->set_ots_size_bytes(r.ots_size);
  if (r.failure_code != 0) {
    p->mutable_failure()->set_code(r.failure_code);
    p->mutable_failure()->set_message(Take<Row>(r.failure_message));
    p->mutable_failure()->set_reason(Take<Row>(r.failure_reason));
  }
  p->mutable_files()->Reserve(static_cast<int>(r.files.size()));
  for (auto& f : r.files) {
    anchord::v1::FileMetadata* out = p->add_files();
    out->set_filename(Take<Row>(f.filename));
    out->set_size_bytes(f.size_bytes);
    out->set_mime_type(Take<Row>(f.mime_type));
    out->set_source_path(Take<Row>(f.source_path));
    out->set_job(Take<Row>(f.job));
  }
  p->set_provider_request_id(Take<Row>(r.provider_request_id));
  if (r.updated_at != absl::InfinitePast()) {
    rpc::SetTimestamp(r.updated_at, p->mutable_updated_at());
  }
  p->set_merkle_root(Take<Row>(r.merkle_root));
  p->set_merkle_leaf_count(r.leaf_count);
  p->set_stalled(r.stalled);
}

template <typename Row>
anchord::v1::WatchResponse EventOf(anchord::v1::ProofEventType type, Row&& row, absl::Time now) {
  anchord::v1::WatchResponse ev;
  ev.set_type(type);
  FillProto(std::forward<Row>(row), ev.mutable_proof());
  rpc::SetTimestamp(now, ev.mutable_event_time());
  return ev;
}

}  // namespace

anchord::v1::Proof ToProto(const ProofRow& r) {
  anchord::v1::Proof p;
  FillProto(r, &p);
  return p;
}

namespace {
absl::Status CheckText(const std::string& value, size_t max, absl::string_view field) {
  if (value.size() > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": must be at most ", max, " bytes, got ", value.size()));
  }
  if (value.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": must not contain NUL"));
  }
  return absl::OkStatus();
}

// Checks `value` with `validate`, naming the field `prefix` + `name` in its error. The full name
// is built only for an error (a Merkle batch validates thousands of files per request).
template <typename Value>
absl::Status CheckFileField(absl::Status (*validate)(Value, absl::string_view), Value value,
                            absl::string_view name, absl::FunctionRef<std::string()> prefix) {
  if (validate(value, name).ok()) return absl::OkStatus();
  return validate(value, absl::StrCat(prefix(), name));
}

// Validates the files of a hand-off (`field` names the list, `field_prefix` goes before it in an
// error) and appends them to *out.
absl::Status ConvertFiles(
    const google::protobuf::RepeatedPtrField<anchord::v1::FileMetadata>& files,
    absl::FunctionRef<std::string()> field, std::vector<FileRow>* out) {
  if (files.size() > 1000) {
    return absl::InvalidArgumentError(absl::StrCat(field(), ": at most 1000 files per hand-off"));
  }
  out->reserve(out->size() + files.size());
  for (int i = 0; i < files.size(); ++i) {
    const auto& f = files[i];
    auto prefix = [&] { return absl::StrCat(field(), "[", i, "]."); };
    absl::Status st;
    if (st = CheckFileField(ValidateFilename, absl::string_view(f.filename()), "filename", prefix);
        !st.ok())
      return st;
    if (st = CheckFileField(ValidateSize, f.size_bytes(), "size_bytes", prefix); !st.ok())
      return st;
    if (st =
            CheckFileField(ValidateMimeType, absl::string_view(f.mime_type()), "mime_type", prefix);
        !st.ok())
      return st;
    if (st = CheckFileField(ValidateSourcePath, absl::string_view(f.source_path()), "source_path",
                            prefix);
        !st.ok())
      return st;
    if (st = CheckFileField(ValidateJob, absl::string_view(f.job()), "job", prefix); !st.ok())
      return st;
    out->push_back(FileRow{std::string(JobOrDefault(f.job())), f.source_path(), f.filename(),
                           f.size_bytes(), f.mime_type()});
  }
  return absl::OkStatus();
}

// The root of a TrackBatchRequest carrying a tree or leaves: a batch root, not a leaf.
absl::Status CheckBatchRoot(const anchord::v1::Proof& p) {
  if (p.merkle_leaf_count() <= 0) {
    return absl::InvalidArgumentError(
        "track.proof.merkle_leaf_count: must be > 0 with merkle_tree or leaves (a batch root)");
  }
  if (p.merkle_leaf_count() > kMaxBatchLeaves) {
    return absl::InvalidArgumentError(
        absl::StrCat("track.proof.merkle_leaf_count: at most ", kMaxBatchLeaves,
                     " with merkle_tree (larger batches are handed off over Track), got ",
                     p.merkle_leaf_count()));
  }
  if (!p.merkle_root().empty()) {
    return absl::InvalidArgumentError(
        "track.proof.merkle_root: must be empty with merkle_tree or leaves (a batch root)");
  }
  return absl::OkStatus();
}
}  // namespace

absl::StatusOr<TrackInput> ValidateTrackRequest(const anchord::v1::TrackRequest& req) {
  absl::Status st = ValidateRequestId(req.request_id(), "request_id");
  if (!st.ok()) return st;
  if (!req.has_proof()) return absl::InvalidArgumentError("proof: required");
  const anchord::v1::Proof& p = req.proof();
  absl::StatusOr<Digest> digest = Digest::FromBytes(p.digest(), "proof.digest");
  if (!digest.ok()) return digest.status();
  if (p.provider().empty()) return absl::InvalidArgumentError("proof.provider: required");
  if (st = CheckText(p.provider(), 64, "proof.provider"); !st.ok()) return st;
  switch (p.state()) {
    case anchord::v1::DIGEST_STATE_SUBMITTED:
    case anchord::v1::DIGEST_STATE_PENDING:
    case anchord::v1::DIGEST_STATE_CONFIRMED:
    case anchord::v1::DIGEST_STATE_FAILED:
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("proof.state: must be SUBMITTED, PENDING, CONFIRMED or FAILED, got ",
                       anchord::v1::DigestState_Name(p.state()).empty()
                           ? std::to_string(static_cast<int>(p.state()))
                           : anchord::v1::DigestState_Name(p.state())));
  }
  if (p.state() != anchord::v1::DIGEST_STATE_FAILED && p.proof_id().empty()) {
    return absl::InvalidArgumentError("proof.proof_id: required unless the state is FAILED");
  }
  if (st = CheckText(p.proof_id(), 256, "proof.proof_id"); !st.ok()) return st;
  if (st = CheckText(p.certificate_url(), 2048, "proof.certificate_url"); !st.ok()) return st;
  if (st = CheckText(p.verify_url(), 2048, "proof.verify_url"); !st.ok()) return st;
  if (st = CheckText(p.bitcoin_tx(), 128, "proof.bitcoin_tx"); !st.ok()) return st;
  if (st = CheckText(p.provider_request_id(), 256, "proof.provider_request_id"); !st.ok())
    return st;
  if (st = CheckText(p.failure().message(), 4096, "proof.failure.message"); !st.ok()) return st;
  if (st = CheckText(p.failure().reason(), 63, "proof.failure.reason"); !st.ok()) return st;
  if (p.bitcoin_block_height() < 0) {
    return absl::InvalidArgumentError("proof.bitcoin_block_height: must not be negative");
  }
  if (p.files_size() > 1000) {
    return absl::InvalidArgumentError("proof.files: at most 1000 files per hand-off");
  }
  if (p.merkle_leaf_count() < 0) {
    return absl::InvalidArgumentError("proof.merkle_leaf_count: must not be negative");
  }
  if (st = CheckText(req.fallback_provider(), 64, "fallback_provider"); !st.ok()) return st;
  if (!p.merkle_root().empty()) {
    if (p.merkle_root().size() != 32) {
      return absl::InvalidArgumentError(
          absl::StrCat("proof.merkle_root: must be 32 bytes, got ", p.merkle_root().size()));
    }
    if (req.merkle_path().empty() || req.merkle_path().size() > 4096) {
      return absl::InvalidArgumentError(
          "merkle_path: required with proof.merkle_root, 1 to 4096 bytes");
    }
    absl::StatusOr<Digest> root = merkle::PathRoot(*digest, req.merkle_path());
    if (!root.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("merkle_path: ", root.status().message()));
    }
    if (root->bytes() != p.merkle_root()) {
      return absl::InvalidArgumentError(
          "merkle_path: does not lead from proof.digest to proof.merkle_root");
    }
  } else if (!req.merkle_path().empty()) {
    return absl::InvalidArgumentError("merkle_path: only allowed with proof.merkle_root");
  }
  if (!req.evidence().empty()) {
    if (req.evidence().size() > 65536) {
      return absl::InvalidArgumentError("evidence: at most 65536 bytes");
    }
    if (st = CheckEvidence(req.evidence(), *digest); !st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("evidence: ", st.message()));
    }
  }

  TrackInput in;
  ProofRow& r = in.proof;
  r.digest = *digest;
  r.provider = p.provider();
  r.proof_id = p.proof_id();
  r.state = p.state();
  r.certificate_url = p.certificate_url();
  r.verify_url = p.verify_url();
  r.block_height = p.bitcoin_block_height();
  r.bitcoin_tx = p.bitcoin_tx();
  if (p.has_submitted_at()) r.submitted_at = rpc::FromTimestamp(p.submitted_at());
  if (p.has_confirmed_at()) r.confirmed_at = rpc::FromTimestamp(p.confirmed_at());
  if (p.state() == anchord::v1::DIGEST_STATE_FAILED) {
    // A FAILED hand-off always carries a failure: default it when the sender left it empty.
    r.failure_code = p.failure().code() != 0 ? p.failure().code()
                                             : static_cast<int32_t>(absl::StatusCode::kUnknown);
    r.failure_message = p.failure().message();
    r.failure_reason = p.failure().reason();
  }
  r.provider_request_id = p.provider_request_id();
  r.merkle_root = p.merkle_root();
  r.merkle_path = req.merkle_path();
  r.leaf_count = p.merkle_leaf_count();
  r.fallback_provider = req.fallback_provider();
  in.evidence = req.evidence();
  if (st = ConvertFiles(
          p.files(), [] { return std::string("proof.files"); }, &in.files);
      !st.ok())
    return st;
  return in;
}

absl::StatusOr<std::shared_ptr<const merkle::SealedBatch>> BatchTreeCache::Decode(
    const std::string& encoded, const std::string& root) {
  {
    absl::MutexLock lock(&mu_);
    for (const auto& b : recent_) {
      if (b->tree().root().raw() == root && b->encoded() == encoded) return b;
    }
  }
  // Decoded outside the lock, so other streams' requests do not wait for this tree (two streams
  // may then both decode one tree: same result).
  auto batch = merkle::SealedBatch::Decode(encoded, root);
  if (!batch.ok()) return batch.status();
  absl::MutexLock lock(&mu_);
  recent_.push_front(*batch);
  while (recent_.size() > capacity_) recent_.pop_back();
  return *batch;
}

absl::Status AppendTrackBatchInputs(const anchord::v1::TrackBatchRequest& req,
                                    BatchTreeCache* trees, std::vector<TrackInput>* out) {
  absl::StatusOr<TrackInput> root = ValidateTrackRequest(req.track());
  if (!root.ok()) {
    return absl::Status(root.status().code(), absl::StrCat("track.", root.status().message()));
  }
  if (req.leaves().empty() && req.merkle_tree().empty()) {
    out->push_back(*std::move(root));
    return absl::OkStatus();
  }
  const anchord::v1::Proof& p = req.track().proof();
  if (absl::Status st = CheckBatchRoot(p); !st.ok()) return st;
  const size_t n = static_cast<size_t>(p.merkle_leaf_count());
  constexpr size_t kPerLeaf = merkle::kDigestSize + merkle::kNonceSize;
  if (req.merkle_tree().size() != kPerLeaf * n) {
    return absl::InvalidArgumentError(absl::StrCat(
        "merkle_tree: must be ", kPerLeaf, " bytes per leaf (track.proof.merkle_leaf_count ", n,
        ": ", kPerLeaf * n, " bytes), got ", req.merkle_tree().size()));
  }
  if (req.leaves_size() > kMaxBatchLeaves) {
    return absl::InvalidArgumentError(
        absl::StrCat("leaves: at most ", kMaxBatchLeaves, " per request, got ", req.leaves_size()));
  }
  // Everything but the tree first: rebuilding it is the costly check.
  std::vector<std::vector<FileRow>> files(req.leaves_size());
  std::vector<int> first_at(n, -1);
  for (int i = 0; i < req.leaves_size(); ++i) {
    const anchord::v1::MerkleLeaf& leaf = req.leaves(i);
    if (leaf.index() >= n) {
      return absl::InvalidArgumentError(absl::StrCat("leaves[", i, "].index: ", leaf.index(),
                                                     " is not below track.proof.merkle_leaf_count ",
                                                     n));
    }
    if (first_at[leaf.index()] >= 0) {
      return absl::InvalidArgumentError(absl::StrCat("leaves[", i, "].index: ", leaf.index(),
                                                     " is listed twice (also leaves[",
                                                     first_at[leaf.index()], "])"));
    }
    first_at[leaf.index()] = i;
    absl::Status st = ConvertFiles(
        leaf.files(), [i] { return absl::StrCat("leaves[", i, "].files"); }, &files[i]);
    if (!st.ok()) return st;
  }
  auto batch = trees->Decode(req.merkle_tree(), p.digest());
  if (!batch.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "merkle_tree: does not lead to track.proof.digest (", batch.status().message(), ")"));
  }

  root->batch = *batch;
  // Everything is checked: from here on nothing fails, so nothing appended has to be taken back.
  out->reserve(out->size() + 1 + static_cast<size_t>(req.leaves_size()));
  const size_t root_at = out->size();
  out->push_back(*std::move(root));
  for (int i = 0; i < req.leaves_size(); ++i) {
    const uint32_t index = req.leaves(i).index();
    const ProofRow& r = (*out)[root_at].proof;  // the reserve above keeps it in place
    TrackInput& in = out->emplace_back();
    // The root's provider record (proof id, state, URLs, block, times, failure, fallback), as a
    // Track request of the leaf carries it.
    in.proof = r;
    in.proof.digest = *Digest::FromBytes((*batch)->digest(index));
    in.proof.merkle_root = r.digest.raw();
    in.proof.leaf_count = 0;
    in.proof.leaf_index = index;
    // No merkle_path: the store keeps the tree once for the root and derives the path from it.
    in.files = std::move(files[i]);
    in.batch = *batch;
  }
  return absl::OkStatus();
}

anchord::v1::WatchResponse MakeEvent(anchord::v1::ProofEventType type, const ProofRow& row,
                                     absl::Time now) {
  return EventOf(type, row, now);
}

anchord::v1::WatchResponse MakeEvent(anchord::v1::ProofEventType type, ProofRow&& row,
                                     absl::Time now) {
  return EventOf(type, std::move(row), now);
}

anchord::v1::WatchResponse BriefEvent(anchord::v1::ProofEventType type, const ProofRow& row,
                                      absl::Time now) {
  anchord::v1::WatchResponse ev;
  ev.set_type(type);
  anchord::v1::Proof* p = ev.mutable_proof();
  p->set_digest(row.digest.raw());
  p->set_provider(row.provider);
  p->set_state(row.state);
  p->set_stalled(row.stalled);
  rpc::SetTimestamp(now, ev.mutable_event_time());
  return ev;
}

anchord::v1::WatchResponse GroupEvent(anchord::v1::ProofEventType type, const ProofRow& shared,
                                      std::string digests, absl::Time now) {
  anchord::v1::WatchResponse ev;
  ev.set_type(type);
  anchord::v1::Proof* p = ev.mutable_proof();
  p->set_provider(shared.provider);
  p->set_state(shared.state);
  p->set_stalled(shared.stalled);
  ev.set_digests(std::move(digests));
  rpc::SetTimestamp(now, ev.mutable_event_time());
  return ev;
}

}  // namespace anchord::poller
