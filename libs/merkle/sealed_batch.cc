#include "libs/merkle/sealed_batch.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace anchord::merkle {
namespace {

absl::string_view Bytes(const std::string& raw) { return raw; }
absl::string_view Bytes(const Digest& d) { return d.bytes(); }

}  // namespace

template <typename D>
absl::StatusOr<std::string> EncodeBatchLeaves(const std::vector<D>& digests,
                                              const std::vector<std::string>& nonces) {
  if (digests.empty() || digests.size() != nonces.size()) {
    return absl::InvalidArgumentError("merkle batch: one nonce per leaf digest is needed");
  }
  std::string out;
  out.reserve(digests.size() * (kDigestSize + kNonceSize));
  for (size_t i = 0; i < digests.size(); ++i) {
    const absl::string_view digest = Bytes(digests[i]);
    if (digest.size() != kDigestSize) {
      return absl::InvalidArgumentError(absl::StrCat("merkle batch: leaf ", i, " digest size"));
    }
    out.append(digest.data(), digest.size());
  }
  for (size_t i = 0; i < nonces.size(); ++i) {
    if (nonces[i].size() != kNonceSize) {
      return absl::InvalidArgumentError(absl::StrCat("merkle batch: leaf ", i, " nonce size"));
    }
    out += nonces[i];
  }
  return out;
}

absl::StatusOr<std::shared_ptr<const SealedBatch>> SealedBatch::Decode(const std::string& leaves,
                                                                       const std::string& root) {
  constexpr size_t kPerLeaf = kDigestSize + kNonceSize;
  if (leaves.empty() || leaves.size() % kPerLeaf != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("merkle batch: stored leaves of ", leaves.size(), " bytes are malformed"));
  }
  const size_t n = leaves.size() / kPerLeaf;
  const absl::string_view all(leaves);
  absl::StatusOr<Tree> tree =
      Tree::BuildFlat(all.substr(0, n * kDigestSize), all.substr(n * kDigestSize));
  if (!tree.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("merkle batch: stored leaves: ", tree.status().message()));
  }
  if (tree->root().raw() != root) {
    return absl::FailedPreconditionError("merkle batch: stored leaves do not lead to its root");
  }
  return std::shared_ptr<const SealedBatch>(new SealedBatch(*std::move(tree), leaves));
}

template absl::StatusOr<std::string> EncodeBatchLeaves(const std::vector<std::string>&,
                                                       const std::vector<std::string>&);
template absl::StatusOr<std::string> EncodeBatchLeaves(const std::vector<Digest>&,
                                                       const std::vector<std::string>&);

template <typename D>
absl::StatusOr<std::shared_ptr<const SealedBatch>> SealedBatch::Build(
    const std::vector<D>& digests, const std::vector<std::string>& nonces) {
  absl::StatusOr<std::string> leaves = EncodeBatchLeaves(digests, nonces);
  if (!leaves.ok()) return leaves.status();
  const absl::string_view all(*leaves);
  const size_t n = digests.size();
  absl::StatusOr<Tree> tree =
      Tree::BuildFlat(all.substr(0, n * kDigestSize), all.substr(n * kDigestSize));
  if (!tree.ok()) return tree.status();
  return std::shared_ptr<const SealedBatch>(new SealedBatch(*std::move(tree), *std::move(leaves)));
}

template absl::StatusOr<std::shared_ptr<const SealedBatch>> SealedBatch::Build(
    const std::vector<std::string>&, const std::vector<std::string>&);
template absl::StatusOr<std::shared_ptr<const SealedBatch>> SealedBatch::Build(
    const std::vector<Digest>&, const std::vector<std::string>&);

std::optional<size_t> SealedBatch::IndexOf(absl::string_view digest) const {
  absl::call_once(index_once_, [this] {
    const size_t n = size();
    index_.reserve(n);
    for (size_t i = 0; i < n; ++i) index_.emplace(this->digest(i), i);
  });
  auto it = index_.find(digest);
  if (it == index_.end()) return std::nullopt;
  return it->second;
}

absl::string_view SealedBatch::digest(size_t i) const {
  if (i >= size()) return {};
  return absl::string_view(encoded_).substr(i * kDigestSize, kDigestSize);
}

}  // namespace anchord::merkle
