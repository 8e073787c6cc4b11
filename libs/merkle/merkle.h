// Merkle batching for the submitter: many file digests are anchored through one provider
// submission of a single Merkle root, and every file still gets a standalone OpenTimestamps proof.
//
// The tree is OpenTimestamps' own client batching (docs/ots-format.md, "Merkle
// batching"): leaf = sha256(digest || nonce) with a fresh random nonce per file, pairs combined as
// sha256(left || right), an odd last item carried up unchanged (never duplicated, unlike Bitcoin).
// So a file's path is a plain chain of .ots ops and a joined proof verifies with any OTS verifier.
//
// Path bytes (what PathBytes writes and everything else here reads) are exactly the op bytes of
// the chain, as in docs/ots-format.md, and nothing else:
//
//   f0 10 <nonce: 16 bytes>  08                       append(nonce), sha256    -> the leaf
//   ( f0 20 <sibling: 32 bytes> 08                    append(right sibling), sha256
//   | f1 20 <sibling: 32 bytes> 08 ) x 0..64          prepend(left sibling), sha256
//
// i.e. 19 + 35 * levels bytes (439 bytes for 4,096 leaves, 719 for 1,000,000). Followed by
// `00 <attestation>` they are a valid serialized OTS timestamp rooted at the digest. The grammar is
// deliberately this strict rather than "any OTS ops": leaves hash 48 bytes and inner nodes 64, so
// no inner node or leaf hash can be presented as a file digest with a valid path, and a stored
// path is byte-identical to what a canonical OTS writer produces (joined proofs re-serialize
// unchanged). Readers reject anything else with INVALID_ARGUMENT naming the byte offset.
//
// Nothing here throws. Tree and Joiner are immutable after construction and safe to share between
// threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "libs/digest/digest.h"
#include "libs/ots/ots.h"

namespace anchord::merkle {

constexpr size_t kNonceSize = 16;
constexpr size_t kDigestSize = Digest::kSize;  // also the size of every leaf and inner node
// Levels above the leaves a path may have: 2^64 leaves, far more than any batch.
constexpr size_t kMaxLevels = 64;
// Ops in a path: append(nonce) + sha256, then sibling + sha256 per level. Well below the 255 ops an
// OTS reader accepts on one root-to-attestation path, leaving room for the provider's root proof.
constexpr size_t kMaxPathOps = 2 + 2 * kMaxLevels;
// Largest `record` PathOnlyProof accepts (an OTS unknown-attestation payload may be 8192).
constexpr size_t kMaxRecordSize = 4096;

// The 8-byte tag of the unknown attestation PathOnlyProof writes: ASCII "anchord" + 0x01
// (hex 616e63686f726401). Its payload is the provider's record verbatim. OTS readers keep unknown
// attestations as opaque data, so such a proof parses everywhere but verifies nowhere by itself:
// it says "this file is under root R, which the provider recorded as <record>".
inline constexpr char kPathRecordTag[] = "anchord\x01";
absl::string_view PathRecordTag();  // the 8 bytes above

// 16 random bytes from OpenSSL RAND_bytes (per-file nonce: a file's proof reveals nothing about its
// neighbours). Empty when the CSPRNG fails, which Tree::Build then rejects, so a batch is never
// built on predictable nonces.
std::string RandomNonce();
// `count` nonces concatenated (count * kNonceSize bytes) from one RAND_bytes call per MiB; same
// quality per nonce, far fewer calls for large batches. Empty when the CSPRNG fails.
std::string RandomNonces(size_t count);

// A Merkle tree over leaves sha256(digest || nonce), paired exactly like OpenTimestamps'
// make_merkle_tree, held as flat arrays of 32-byte hashes (one per level) rather than
// ots::Timestamp nodes: 1,000,000 leaves take about 80 MB (64 MB of hashes, 16 MB of nonces).
class Tree {
 public:
  // nonces: raw kNonceSize-byte values, one per digest. INVALID_ARGUMENT naming the index for a
  // nonce of the wrong size, on a count mismatch or empty input.
  static absl::StatusOr<Tree> Build(const std::vector<Digest>& digests,
                                    const std::vector<std::string>& nonces);
  // Same from concatenated inputs (n * 32 and n * 16 bytes), e.g. RandomNonces(n); avoids a
  // std::string per item for very large batches.
  static absl::StatusOr<Tree> BuildFlat(absl::string_view digests, absl::string_view nonces);

  size_t size() const { return size_; }
  const Digest& root() const { return root_; }
  // Levels above the leaves (0 for a single leaf); every path has at most this many siblings.
  size_t height() const { return levels_.size() - 1; }
  absl::string_view nonce(size_t i) const;  // empty when i >= size()
  absl::string_view leaf(size_t i) const;   // sha256(digest_i || nonce_i); empty when i >= size()
  // Bytes held by the tree's arrays (for metrics and the benchmark's memory figures).
  size_t MemoryBytes() const;

  // The path of leaf i in the encoding described at the top of this file: applied to digest i it
  // ends at root(). Empty when i >= size().
  std::string PathBytes(size_t i) const;
  // Same, appended to *out (lets a caller reuse one buffer for a million paths).
  void AppendPathBytes(size_t i, std::string* out) const;
  // PathBytes(i).size() without building the path (0 when i >= size()): a store that keeps a
  // leaf's place in the tree instead of its path records the size per leaf.
  size_t PathSize(size_t i) const;

 private:
  Tree() = default;
  size_t size_ = 0;
  std::string nonces_;               // size_ * kNonceSize
  std::vector<std::string> levels_;  // levels_[0] = leaves ... levels_.back() = root, 32 B each
  Digest root_;
};

// Parses path bytes (as PathBytes writes them) applied to `digest` into a chain of
// ots::Timestamp nodes; returns the chain's root (message = digest) and sets *tip (when not null)
// to the node whose message is the Merkle root. The tip has no attestation or op yet: add one
// before serializing. INVALID_ARGUMENT with the byte offset on malformed bytes (truncated, unknown
// or misplaced op, wrong argument length, more than kMaxLevels levels, trailing bytes).
absl::StatusOr<std::shared_ptr<ots::Timestamp>> ApplyPath(const Digest& digest,
                                                          absl::string_view path_bytes,
                                                          std::shared_ptr<ots::Timestamp>* tip);

// The root a path leads to from `digest` (for validation: a stored path must lead to the batch's
// root). Same errors as ApplyPath; much cheaper (no Timestamp nodes).
absl::StatusOr<Digest> PathRoot(const Digest& digest, absl::string_view path_bytes);

// Checks the path's grammar without hashing; returns the number of ops in it.
absl::StatusOr<size_t> ValidatePath(absl::string_view path_bytes);

// Joins per-file paths with the provider's proof of the root, the root proof parsed once.
class Joiner {
 public:
  // `root_ots`: a detached .ots whose digest is a batch root (its file-hash op is irrelevant: the
  // digest must be 32 bytes). INVALID_ARGUMENT when it does not parse.
  static absl::StatusOr<Joiner> Parse(absl::string_view root_ots);
  // Same from a parsed file. FAILED_PRECONDITION when its tree cannot be serialized (empty node)
  // or its digest is not 32 bytes.
  static absl::StatusOr<Joiner> FromDetached(const ots::DetachedFile& root);

  const Digest& root() const { return root_; }

  // A standalone detached .ots for one file: file-hash op sha256, `digest`, the path up to the
  // root, and at the root the root proof's ops and attestations. Checks that the path leads from
  // `digest` to root(): FAILED_PRECONDITION otherwise (a path of another batch, another file's
  // digest, a tampered path); INVALID_ARGUMENT for malformed path bytes; FAILED_PRECONDITION when
  // path + root proof would exceed the 255 ops OTS readers accept on one branch. The result is
  // canonical (ots::SerializeDetached reproduces it).
  absl::StatusOr<std::string> Join(const Digest& digest, absl::string_view path_bytes) const;
  // Same, appended to *out (unchanged on error).
  absl::Status AppendJoined(const Digest& digest, absl::string_view path_bytes,
                            std::string* out) const;

 private:
  Joiner() = default;
  Digest root_;
  std::string root_tree_;  // canonical serialization of the root proof's timestamp tree
  size_t root_depth_ = 0;  // most ops on any branch of that tree
};

// One-off form of Joiner::Parse(root_ots)->Join(digest, path_bytes). FAILED_PRECONDITION when
// root_ots is about another digest than the path's root.
absl::StatusOr<std::string> JoinProof(const Digest& digest, absl::string_view path_bytes,
                                      absl::string_view root_ots);

// For a provider that gives no .ots of the root (ProofLedger): a detached .ots of the path alone,
// ending at the root with an unknown attestation tagged kPathRecordTag whose payload is `record`
// (e.g. the provider's proof id or certificate URL; 1..kMaxRecordSize bytes). The file then still
// carries its path and where the provider recorded the root. INVALID_ARGUMENT for malformed path
// bytes or an empty or oversized record.
absl::StatusOr<std::string> PathOnlyProof(const Digest& digest, absl::string_view path_bytes,
                                          absl::string_view record);

// The record of a PathOnlyProof-style attestation at `tip`, if any (for readers of such proofs).
// NOT_FOUND when the node carries no kPathRecordTag attestation.
absl::StatusOr<std::string> FindPathRecord(const ots::Timestamp& tip);

}  // namespace anchord::merkle
