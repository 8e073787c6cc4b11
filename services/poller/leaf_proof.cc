#include "services/poller/leaf_proof.h"

#include "absl/strings/str_cat.h"
#include "libs/digest/digest.h"
#include "libs/digest/stored_digest.h"
#include "libs/merkle/merkle.h"
#include "libs/tsa/path_form.h"
#include "libs/tsa/tsa.h"

namespace anchord::poller {

absl::StatusOr<std::string> LeafPath(PollerStore* store, const ProofRow& leaf) {
  if (leaf.leaf_index < 0) return leaf.merkle_path;
  absl::StatusOr<Digest> root = DigestFromColumn(leaf.merkle_root, "proofs.merkle_root");
  if (!root.ok()) return root.status();
  absl::StatusOr<std::shared_ptr<const merkle::SealedBatch>> tree = store->TreeOf(*root);
  if (!tree.ok()) return tree.status();
  if (*tree == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("merkle leaf ", leaf.digest.hex(), ": its root's tree is not stored"));
  }
  const size_t i = static_cast<size_t>(leaf.leaf_index);
  if ((*tree)->digest(i) != leaf.digest.bytes()) {
    return absl::FailedPreconditionError(absl::StrCat("merkle leaf ", leaf.digest.hex(), ": leaf ",
                                                      i, " of its root's tree is another file"));
  }
  return (*tree)->tree().PathBytes(i);
}

namespace {

absl::StatusOr<std::optional<std::string>> LoadOne(PollerStore* store, const ProofRow& leaf,
                                                   const std::set<std::string>& without_ots) {
  if (!leaf.is_leaf()) return store->GetOts(leaf.digest, leaf.provider);

  absl::StatusOr<Digest> root = DigestFromColumn(leaf.merkle_root, "proofs.merkle_root");
  if (!root.ok()) return root.status();
  absl::StatusOr<std::optional<std::string>> root_ots = store->GetOts(*root, leaf.provider);
  if (!root_ots.ok()) return root_ots.status();
  // Derived only when a proof is offered: a leaf waiting for its root needs no tree.
  const bool offered =
      root_ots->has_value() ||
      (leaf.state == anchord::v1::DIGEST_STATE_CONFIRMED && without_ots.count(leaf.provider));
  std::string path;
  if (offered) {
    absl::StatusOr<std::string> p = LeafPath(store, leaf);
    if (!p.ok()) return p.status();
    path = *std::move(p);
  }
  if (root_ots->has_value() && tsa::LooksLikeTsr(**root_ots)) {
    // An RFC 3161 token over the root: the file gets the Merkle-path form (libs/tsa/path_form.h).
    absl::StatusOr<std::string> form = tsa::EncodePathForm(leaf.digest, path, **root_ots);
    if (!form.ok()) return form.status();
    return std::optional<std::string>(*std::move(form));
  }
  if (root_ots->has_value()) {
    absl::StatusOr<std::string> joined = merkle::JoinProof(leaf.digest, path, **root_ots);
    if (!joined.ok()) return joined.status();
    return std::optional<std::string>(*std::move(joined));
  }
  if (leaf.state != anchord::v1::DIGEST_STATE_CONFIRMED || !without_ots.count(leaf.provider)) {
    return std::optional<std::string>();
  }
  const std::string& record = !leaf.certificate_url.empty() ? leaf.certificate_url : leaf.proof_id;
  if (record.empty()) return std::optional<std::string>();
  absl::StatusOr<std::string> path_only = merkle::PathOnlyProof(leaf.digest, path, record);
  if (!path_only.ok()) return path_only.status();
  return std::optional<std::string>(*std::move(path_only));
}

}  // namespace

absl::StatusOr<std::optional<std::string>> LoadProofOts(PollerStore* store, const Digest& digest,
                                                        const std::string& provider,
                                                        const std::set<std::string>& without_ots) {
  std::vector<ProofRow> rows;
  if (!provider.empty()) {
    absl::StatusOr<std::optional<ProofRow>> row = store->Get(digest, provider);
    if (!row.ok()) return row.status();
    if (row->has_value()) rows.push_back(**row);
  } else {
    // Without a provider, any provider's proof will do (the oldest may have none yet).
    absl::StatusOr<std::vector<ProofRow>> all = store->GetAll(digest);
    if (!all.ok()) return all.status();
    rows = *std::move(all);
  }
  for (const ProofRow& row : rows) {
    absl::StatusOr<std::optional<std::string>> ots = LoadOne(store, row, without_ots);
    if (!ots.ok()) return ots.status();
    if (ots->has_value() && !(*ots)->empty()) return ots;
  }
  return std::optional<std::string>();
}

}  // namespace anchord::poller
