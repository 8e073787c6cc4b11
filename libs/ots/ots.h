// A small OpenTimestamps library: operations, the timestamp tree, attestations, and the detached
// `.ots` file format, byte-for-byte per docs/ots-format.md (the reference implementation
// python-opentimestamps is the authority).
//
//  - Parsing enforces the reference limits: recursion depth 256 (ops, not forks), message and op
//    result at most 4096 bytes, append/prepend argument 1..4096 bytes, attestation payload at most
//    8192 bytes, pending URI at most 1000 bytes of [A-Za-z0-9-._/:], known attestation payloads
//    consumed exactly, nothing after the tree. Op results are computed while parsing, so an invalid
//    path fails the parse. Beyond the reference: at most kMaxTreeNodes nodes and
//    kMaxTreeMessageBytes of messages in one tree (bounded memory).
//  - Every parse error is InvalidArgument with a message "ots: <Reason> at byte offset <N>:
//  <detail>"
//    where <Reason> is one of the stable words below (kReason*), so callers and tests can tell them
//    apart without parsing prose.
//  - Writing is canonical (the order the reference writes): attestations sorted by (8-byte tag,
//    height | URI | payload), then ops sorted by (tag byte, argument bytes). Parsing accepts any
//    order and de-duplicates, so a foreign non-canonical file re-serializes differently.
//  - keccak256 (tag 0x67) is implemented (original Keccak padding, not SHA3) because real vectors
//    use it; it is accepted as an op and as a file-hash op, like the reference.
//
// Nothing here throws. Timestamp trees are not thread-safe for concurrent mutation.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace anchord::ots {

// Limits from the reference implementation.
inline constexpr size_t kMaxMsgLength = 4096;
inline constexpr size_t kMaxResultLength = 4096;
inline constexpr size_t kMaxPayloadLength = 8192;
inline constexpr size_t kMaxUriLength = 1000;
inline constexpr int kRecursionLimit = 256;
// Our own bounds on a parsed tree, so parsing memory is bounded whatever the input: every node
// keeps its message (up to 4096 bytes, derived from as little as one byte of input), so without
// them a 64 KB file could make gigabytes. Real proofs have at most a few hundred nodes and well
// under a megabyte of messages. An attestation counts as a node holding its node's message (what
// verification copies). Exceeding either fails the parse with reason ResourceLimit.
inline constexpr size_t kMaxTreeNodes = 100000;
inline constexpr size_t kMaxTreeMessageBytes = 32u << 20;
// The largest .ots file anchord reads (anchorctl verify/info/upgrade/report, the poller's
// downloads): real proofs are a few kilobytes, a Merkle-batched file's proof well under one.
inline constexpr size_t kMaxProofFileBytes = 4u << 20;

// Stable reason words used in parse errors.
inline constexpr char kReasonBadMagic[] = "BadMagic";
inline constexpr char kReasonUnsupportedMajorVersion[] = "UnsupportedMajorVersion";
inline constexpr char kReasonTruncation[] = "Truncation";
inline constexpr char kReasonTrailingGarbage[] = "TrailingGarbage";
inline constexpr char kReasonRecursionLimit[] = "RecursionLimit";
inline constexpr char kReasonUnknownOp[] = "UnknownOp";
inline constexpr char kReasonMsgValue[] = "MsgValue";  // op not applicable to the message
inline constexpr char kReasonVarbytesLength[] = "VarbytesLength";
inline constexpr char kReasonVaruintOverflow[] = "VaruintOverflow";
inline constexpr char kReasonInvalidUri[] = "InvalidUri";
inline constexpr char kReasonResourceLimit[] = "ResourceLimit";

// The 31-byte file magic.
absl::string_view DetachedMagic();

enum OpTag : uint8_t {
  kOpSha1 = 0x02,
  kOpRipemd160 = 0x03,
  kOpSha256 = 0x08,
  kOpKeccak256 = 0x67,
  kOpAppend = 0xf0,
  kOpPrepend = 0xf1,
  kOpReverse = 0xf2,
  kOpHexlify = 0xf3,
};

// One edge of the tree. `arg` is used by append/prepend only.
struct Op {
  uint8_t tag = kOpSha256;
  std::string arg;

  static Op Append(std::string a) { return Op{kOpAppend, std::move(a)}; }
  static Op Prepend(std::string a) { return Op{kOpPrepend, std::move(a)}; }
  static Op Sha256() { return Op{kOpSha256, {}}; }
  static Op Sha1() { return Op{kOpSha1, {}}; }
  static Op Ripemd160() { return Op{kOpRipemd160, {}}; }
  static Op Keccak256() { return Op{kOpKeccak256, {}}; }
  static Op Reverse() { return Op{kOpReverse, {}}; }
  static Op Hexlify() { return Op{kOpHexlify, {}}; }

  bool is_binary() const { return tag == kOpAppend || tag == kOpPrepend; }
  // The digest length for crypto ops (sha1, ripemd160, sha256, keccak256); 0 otherwise.
  size_t digest_length() const;
  const char* name() const;

  // Applies the op with the reference limits; InvalidArgument (reason MsgValue) when the message
  // is too long, empty where that is not allowed, or the result exceeds 4096 bytes.
  absl::StatusOr<std::string> Apply(absl::string_view msg) const;

  // Canonical order: tag, then argument bytes.
  bool operator<(const Op& o) const { return tag != o.tag ? tag < o.tag : arg < o.arg; }
  bool operator==(const Op& o) const { return tag == o.tag && arg == o.arg; }
};

struct Attestation {
  enum class Kind { kBitcoin, kLitecoin, kEthereum, kPending, kUnknown };
  Kind kind = Kind::kUnknown;
  std::string tag;      // 8 bytes
  uint64_t height = 0;  // Bitcoin / Litecoin / Ethereum
  std::string uri;      // Pending
  std::string payload;  // Unknown: the opaque payload, kept verbatim

  static Attestation Bitcoin(uint64_t height);
  static Attestation Pending(std::string uri);
  static Attestation Unknown(std::string tag, std::string payload);

  // The payload bytes as written inside the attestation's varbytes.
  std::string SerializePayload() const;

  // Canonical order: tag bytes, then height, URI, payload.
  bool operator<(const Attestation& o) const;
  bool operator==(const Attestation& o) const {
    return tag == o.tag && height == o.height && uri == o.uri && payload == o.payload;
  }
};

// A node of the proof tree: a message, the attestations on it, and op -> child. Children are
// shared because OTS merkle aggregation makes the left leaf's append child and the right leaf's
// prepend child the same node (both compute left || right).
class Timestamp {
 public:
  explicit Timestamp(std::string msg) : msg_(std::move(msg)) {}
  Timestamp(const Timestamp&) = delete;
  Timestamp& operator=(const Timestamp&) = delete;

  const std::string& msg() const { return msg_; }
  const std::set<Attestation>& attestations() const { return attestations_; }
  const std::map<Op, std::shared_ptr<Timestamp>>& ops() const { return ops_; }

  void AddAttestation(Attestation a) { attestations_.insert(std::move(a)); }
  // Returns the child for `op` (created with the op's result when absent). Fails when the op is
  // not applicable to msg().
  absl::StatusOr<std::shared_ptr<Timestamp>> AddOp(const Op& op);
  // Sets the child for `op` to `child`; FailedPrecondition unless child->msg() is op(msg()).
  absl::Status SetOp(const Op& op, std::shared_ptr<Timestamp> child);

  // Every (commitment, attestation) pair reachable from this node, depth first, canonical order.
  std::vector<std::pair<std::string, Attestation>> AllAttestations() const;

  // Appends the canonical serialization. FailedPrecondition on an empty node (no branch) anywhere.
  absl::Status Serialize(std::string* out) const;
  // Parses a tree whose root message is `msg` from data[*pos...]; advances *pos.
  static absl::StatusOr<std::shared_ptr<Timestamp>> Parse(absl::string_view data, size_t* pos,
                                                          std::string msg);

 private:
  std::string msg_;
  std::set<Attestation> attestations_;
  std::map<Op, std::shared_ptr<Timestamp>> ops_;
};

// A detached `.ots` file: the file-hash op, the file digest, and the tree rooted at the digest.
struct DetachedFile {
  Op file_hash_op = Op::Sha256();
  std::string digest;
  std::shared_ptr<Timestamp> timestamp;
};

absl::StatusOr<DetachedFile> ParseDetached(absl::string_view bytes);
absl::StatusOr<std::string> SerializeDetached(const DetachedFile& file);

// OTS's own merkle aggregation (python make_merkle_tree): pairs left to right with
// append(right)/prepend(left) then sha256, an odd last item carried up unchanged. Returns the tip
// (the single leaf itself when there is one). InvalidArgument when `leaves` is empty.
absl::StatusOr<std::shared_ptr<Timestamp>> MakeMerkleTree(
    const std::vector<std::shared_ptr<Timestamp>>& leaves);

// Encoding helpers (exposed for tests and for callers that build headers).
void AppendVaruint(uint64_t v, std::string* out);
void AppendVarbytes(absl::string_view b, std::string* out);
std::string Sha256(absl::string_view data);
// Hashes a whole file with a crypto op (sha1, ripemd160, sha256, keccak256) without the 4096-byte
// message limit that applies inside the tree. InvalidArgument for a non-crypto op.
absl::StatusOr<std::string> FileDigest(const Op& op, absl::string_view data);
std::string Keccak256(absl::string_view data);

}  // namespace anchord::ots
