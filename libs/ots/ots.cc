#include "libs/ots/ots.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace anchord::ots {
namespace {

constexpr char kMagic[] = "\x00OpenTimestamps\x00\x00Proof\x00\xbf\x89\xe2\xe8\x84\xe8\x92\x94";
constexpr size_t kMagicLength = 31;
constexpr uint8_t kMajorVersion = 1;

// 8-byte attestation tags.
const std::string& BitcoinTag() {
  static const std::string* t = new std::string("\x05\x88\x96\x0d\x73\xd7\x19\x01", 8);
  return *t;
}
const std::string& LitecoinTag() {
  static const std::string* t = new std::string("\x06\x86\x9a\x0d\x73\xd7\x1b\x45", 8);
  return *t;
}
const std::string& EthereumTag() {
  static const std::string* t = new std::string("\x30\xfe\x80\x87\xb5\xc7\xea\xd7", 8);
  return *t;
}
const std::string& PendingTag() {
  static const std::string* t = new std::string("\x83\xdf\xe3\x0d\x2e\xf9\x0c\x8e", 8);
  return *t;
}

std::string EvpDigest(const EVP_MD* md, absl::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (md == nullptr || EVP_Digest(data.data(), data.size(), out, &len, md, nullptr) != 1) {
    return std::string();  // caller turns an empty digest into an error
  }
  return std::string(reinterpret_cast<char*>(out), len);
}

// Keccak-f[1600] (the original Keccak submission; Ethereum's keccak256 uses padding 0x01).
void KeccakF(std::array<uint64_t, 25>& s) {
  static constexpr uint64_t kRc[24] = {
      0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808aULL, 0x8000000080008000ULL,
      0x000000000000808bULL, 0x0000000080000001ULL, 0x8000000080008081ULL, 0x8000000000008009ULL,
      0x000000000000008aULL, 0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000aULL,
      0x000000008000808bULL, 0x800000000000008bULL, 0x8000000000008089ULL, 0x8000000000008003ULL,
      0x8000000000008002ULL, 0x8000000000000080ULL, 0x000000000000800aULL, 0x800000008000000aULL,
      0x8000000080008081ULL, 0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL};
  static constexpr int kRot[25] = {0,  1,  62, 28, 27, 36, 44, 6,  55, 20, 3,  10, 43,
                                   25, 39, 41, 45, 15, 21, 8,  18, 2,  61, 56, 14};
  auto rotl = [](uint64_t v, int n) { return n == 0 ? v : (v << n) | (v >> (64 - n)); };
  for (int round = 0; round < 24; ++round) {
    uint64_t c[5], d[5];
    for (int x = 0; x < 5; ++x) c[x] = s[x] ^ s[x + 5] ^ s[x + 10] ^ s[x + 15] ^ s[x + 20];
    for (int x = 0; x < 5; ++x) d[x] = c[(x + 4) % 5] ^ rotl(c[(x + 1) % 5], 1);
    for (int i = 0; i < 25; ++i) s[i] ^= d[i % 5];
    uint64_t b[25];
    for (int x = 0; x < 5; ++x) {
      for (int y = 0; y < 5; ++y) {
        // pi: (x, y) -> (y, 2x + 3y)
        b[y + 5 * ((2 * x + 3 * y) % 5)] = rotl(s[x + 5 * y], kRot[x + 5 * y]);
      }
    }
    for (int x = 0; x < 5; ++x) {
      for (int y = 0; y < 5; ++y) {
        s[x + 5 * y] = b[x + 5 * y] ^ (~b[(x + 1) % 5 + 5 * y] & b[(x + 2) % 5 + 5 * y]);
      }
    }
    s[0] ^= kRc[round];
  }
}

// Reads the binary format with the position of every failure in the error.
class Reader {
 public:
  // `base` is added to every reported offset (for readers over a slice of the file).
  Reader(absl::string_view data, size_t pos, size_t base = 0)
      : data_(data), pos_(pos), base_(base) {}
  size_t pos() const { return pos_; }
  bool eof() const { return pos_ >= data_.size(); }

  absl::Status Error(absl::string_view reason, absl::string_view detail) const {
    return Error(reason, base_ + pos_, detail);
  }
  absl::Status ErrorAt(absl::string_view reason, size_t rel, absl::string_view detail) const {
    return Error(reason, base_ + rel, detail);
  }
  static absl::Status Error(absl::string_view reason, size_t at, absl::string_view detail) {
    return absl::InvalidArgumentError(
        absl::StrCat("ots: ", reason, " at byte offset ", at, ": ", detail));
  }

  absl::Status ReadByte(uint8_t* b) {
    if (eof()) return Error(kReasonTruncation, "expected 1 more byte");
    *b = static_cast<uint8_t>(data_[pos_++]);
    return absl::OkStatus();
  }
  absl::Status ReadBytes(size_t n, std::string* out) {
    if (data_.size() - pos_ < n) {
      return Error(kReasonTruncation,
                   absl::StrCat("expected ", n, " bytes, ", data_.size() - pos_, " left"));
    }
    out->assign(data_.data() + pos_, n);
    pos_ += n;
    return absl::OkStatus();
  }
  // LEB128; the reference has no cap, we reject more than 10 bytes or values above 2^64-1.
  absl::Status ReadVaruint(uint64_t* v) {
    size_t start = pos_;
    uint64_t value = 0;
    for (int i = 0;; ++i) {
      uint8_t b = 0;
      if (auto st = ReadByte(&b); !st.ok()) return st;
      uint64_t group = b & 0x7f;
      if (i == 9 && group > 1)
        return ErrorAt(kReasonVaruintOverflow, start, "varuint exceeds 2^64-1");
      if (i < 10) value |= group << (7 * i);
      if (!(b & 0x80)) break;
      if (i == 9) return ErrorAt(kReasonVaruintOverflow, start, "varuint longer than 10 bytes");
    }
    *v = value;
    return absl::OkStatus();
  }
  absl::Status ReadVarbytes(size_t max_len, size_t min_len, std::string* out) {
    size_t start = pos_;
    uint64_t len = 0;
    if (auto st = ReadVaruint(&len); !st.ok()) return st;
    if (len > max_len) {
      return ErrorAt(kReasonVarbytesLength, start,
                     absl::StrCat("varbytes max length exceeded; ", len, " > ", max_len));
    }
    if (len < min_len) {
      return ErrorAt(kReasonVarbytesLength, start,
                     absl::StrCat("varbytes min length not met; ", len, " < ", min_len));
    }
    return ReadBytes(static_cast<size_t>(len), out);
  }

  // Counts a node holding `msg_bytes` against the tree's budget (see kMaxTreeNodes).
  absl::Status Charge(size_t msg_bytes) {
    ++nodes_;
    message_bytes_ += msg_bytes;
    if (nodes_ > kMaxTreeNodes) {
      return Error(kReasonResourceLimit,
                   absl::StrCat("more than ", kMaxTreeNodes, " nodes in the timestamp tree"));
    }
    if (message_bytes_ > kMaxTreeMessageBytes) {
      return Error(kReasonResourceLimit,
                   absl::StrCat("the tree's messages exceed ", kMaxTreeMessageBytes, " bytes"));
    }
    return absl::OkStatus();
  }

 private:
  absl::string_view data_;
  size_t pos_;
  size_t base_;
  size_t nodes_ = 0;
  size_t message_bytes_ = 0;
};

bool IsCryptoTag(uint8_t tag) {
  return tag == kOpSha1 || tag == kOpRipemd160 || tag == kOpSha256 || tag == kOpKeccak256;
}
bool IsKnownTag(uint8_t tag) {
  return IsCryptoTag(tag) || tag == kOpAppend || tag == kOpPrepend || tag == kOpReverse ||
         tag == kOpHexlify;
}

bool IsAllowedUriChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '/' || c == ':';
}

absl::StatusOr<Attestation> ParseAttestation(Reader& r) {
  Attestation a;
  if (auto st = r.ReadBytes(8, &a.tag); !st.ok()) return st;
  std::string payload;
  if (auto st = r.ReadVarbytes(kMaxPayloadLength, 0, &payload); !st.ok()) return st;
  // The payload is parsed by a reader whose offsets are those of the file.
  Reader p(payload, 0, r.pos() - payload.size());
  if (a.tag == BitcoinTag() || a.tag == LitecoinTag() || a.tag == EthereumTag()) {
    a.kind = a.tag == BitcoinTag()    ? Attestation::Kind::kBitcoin
             : a.tag == LitecoinTag() ? Attestation::Kind::kLitecoin
                                      : Attestation::Kind::kEthereum;
    if (auto st = p.ReadVaruint(&a.height); !st.ok()) return st;
  } else if (a.tag == PendingTag()) {
    a.kind = Attestation::Kind::kPending;
    std::string uri;
    if (auto st = p.ReadVarbytes(kMaxUriLength, 0, &uri); !st.ok()) return st;
    for (size_t i = 0; i < uri.size(); ++i) {
      if (!IsAllowedUriChar(uri[i])) {
        return p.ErrorAt(kReasonInvalidUri, p.pos() - uri.size() + i,
                         absl::StrFormat("URI contains invalid character 0x%02x",
                                         static_cast<unsigned char>(uri[i])));
      }
    }
    a.uri = std::move(uri);
  } else {
    a.kind = Attestation::Kind::kUnknown;
    a.payload = std::move(payload);
    return a;
  }
  if (!p.eof()) {
    return p.Error(kReasonTrailingGarbage, "trailing bytes in attestation payload");
  }
  return a;
}

absl::StatusOr<Op> ParseOpFromTag(Reader& r, uint8_t tag, size_t tag_pos) {
  if (!IsKnownTag(tag)) {
    return Reader::Error(kReasonUnknownOp, tag_pos,
                         absl::StrFormat("Unknown operation tag 0x%02x", tag));
  }
  Op op{tag, {}};
  if (op.is_binary()) {
    if (auto st = r.ReadVarbytes(kMaxResultLength, 1, &op.arg); !st.ok()) return st;
  }
  return op;
}

}  // namespace

absl::string_view DetachedMagic() { return absl::string_view(kMagic, kMagicLength); }

size_t Op::digest_length() const {
  switch (tag) {
    case kOpSha1:
    case kOpRipemd160:
      return 20;
    case kOpSha256:
    case kOpKeccak256:
      return 32;
    default:
      return 0;
  }
}

const char* Op::name() const {
  switch (tag) {
    case kOpSha1:
      return "sha1";
    case kOpRipemd160:
      return "ripemd160";
    case kOpSha256:
      return "sha256";
    case kOpKeccak256:
      return "keccak256";
    case kOpAppend:
      return "append";
    case kOpPrepend:
      return "prepend";
    case kOpReverse:
      return "reverse";
    case kOpHexlify:
      return "hexlify";
    default:
      return "unknown";
  }
}

absl::StatusOr<std::string> Op::Apply(absl::string_view msg) const {
  auto fail = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("ots: ", kReasonMsgValue, ": ", name(), ": ", why));
  };
  if (msg.size() > kMaxMsgLength) {
    return fail(absl::StrCat("Message too long; ", msg.size(), " > ", kMaxMsgLength));
  }
  std::string result;
  switch (tag) {
    case kOpAppend:
      if (arg.empty()) return fail("empty argument");
      result = absl::StrCat(msg, arg);
      break;
    case kOpPrepend:
      if (arg.empty()) return fail("empty argument");
      result = absl::StrCat(arg, msg);
      break;
    case kOpReverse:
      if (msg.empty()) return fail("Can't reverse an empty message");
      result.assign(msg.rbegin(), msg.rend());
      break;
    case kOpHexlify: {
      if (msg.empty()) return fail("Can't hexlify an empty message");
      if (msg.size() > kMaxMsgLength / 2) {
        return fail(absl::StrCat("Message too long; ", msg.size(), " > ", kMaxMsgLength / 2));
      }
      static constexpr char kDigits[] = "0123456789abcdef";
      for (unsigned char c : msg) {
        result.push_back(kDigits[c >> 4]);
        result.push_back(kDigits[c & 0xf]);
      }
      break;
    }
    case kOpSha256:
      result = ots::Sha256(msg);
      break;
    case kOpSha1:
      result = EvpDigest(EVP_sha1(), msg);
      break;
    case kOpRipemd160:
      result = EvpDigest(EVP_ripemd160(), msg);
      break;
    case kOpKeccak256:
      result = ots::Keccak256(msg);
      break;
    default:
      return fail("unknown op");
  }
  if (result.empty()) return fail("digest computation failed");
  if (result.size() > kMaxResultLength) {
    return fail(absl::StrCat("Result too long; ", result.size(), " > ", kMaxResultLength));
  }
  return result;
}

Attestation Attestation::Bitcoin(uint64_t height) {
  Attestation a;
  a.kind = Kind::kBitcoin;
  a.tag = BitcoinTag();
  a.height = height;
  return a;
}

Attestation Attestation::Pending(std::string uri) {
  Attestation a;
  a.kind = Kind::kPending;
  a.tag = PendingTag();
  a.uri = std::move(uri);
  return a;
}

Attestation Attestation::Unknown(std::string tag, std::string payload) {
  Attestation a;
  a.kind = Kind::kUnknown;
  a.tag = std::move(tag);
  a.payload = std::move(payload);
  return a;
}

std::string Attestation::SerializePayload() const {
  std::string out;
  switch (kind) {
    case Kind::kBitcoin:
    case Kind::kLitecoin:
    case Kind::kEthereum:
      AppendVaruint(height, &out);
      break;
    case Kind::kPending:
      AppendVarbytes(uri, &out);
      break;
    case Kind::kUnknown:
      out = payload;
      break;
  }
  return out;
}

bool Attestation::operator<(const Attestation& o) const {
  if (tag != o.tag) return tag < o.tag;
  if (height != o.height) return height < o.height;
  if (uri != o.uri) return uri < o.uri;
  return payload < o.payload;
}

absl::StatusOr<std::shared_ptr<Timestamp>> Timestamp::AddOp(const Op& op) {
  auto it = ops_.find(op);
  if (it != ops_.end()) return it->second;
  auto result = op.Apply(msg_);
  if (!result.ok()) return result.status();
  auto child = std::make_shared<Timestamp>(*std::move(result));
  ops_.emplace(op, child);
  return child;
}

absl::Status Timestamp::SetOp(const Op& op, std::shared_ptr<Timestamp> child) {
  auto result = op.Apply(msg_);
  if (!result.ok()) return result.status();
  if (child == nullptr || *result != child->msg()) {
    return absl::FailedPreconditionError("ots: child message is not the op's result");
  }
  ops_[op] = std::move(child);
  return absl::OkStatus();
}

std::vector<std::pair<std::string, Attestation>> Timestamp::AllAttestations() const {
  std::vector<std::pair<std::string, Attestation>> out;
  for (const auto& a : attestations_) out.emplace_back(msg_, a);
  for (const auto& [op, child] : ops_) {
    auto sub = child->AllAttestations();
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

absl::Status Timestamp::Serialize(std::string* out) const {
  if (attestations_.empty() && ops_.empty()) {
    return absl::FailedPreconditionError("ots: an empty timestamp can't be serialized");
  }
  // Every branch but the last is preceded by the fork byte 0xff.
  size_t remaining = attestations_.size() + ops_.size();
  for (const auto& a : attestations_) {
    if (--remaining > 0) out->push_back('\xff');
    out->push_back('\x00');
    out->append(a.tag);
    AppendVarbytes(a.SerializePayload(), out);
  }
  for (const auto& [op, child] : ops_) {
    if (--remaining > 0) out->push_back('\xff');
    out->push_back(static_cast<char>(op.tag));
    if (op.is_binary()) AppendVarbytes(op.arg, out);
    if (auto st = child->Serialize(out); !st.ok()) return st;
  }
  return absl::OkStatus();
}

namespace {

absl::StatusOr<std::shared_ptr<Timestamp>> ParseNode(Reader& r, std::string msg, int budget) {
  if (budget < 1) {
    return r.Error(kReasonRecursionLimit,
                   "Reached timestamp recursion depth limit while deserializing");
  }
  if (auto st = r.Charge(msg.size()); !st.ok()) return st;
  auto node = std::make_shared<Timestamp>(std::move(msg));
  auto branch = [&](uint8_t tag, size_t tag_pos) -> absl::Status {
    if (tag == 0x00) {
      // Verification copies the attested message once per attestation: count it too.
      if (auto st = r.Charge(node->msg().size()); !st.ok()) return st;
      auto a = ParseAttestation(r);
      if (!a.ok()) return a.status();
      node->AddAttestation(*std::move(a));
      return absl::OkStatus();
    }
    auto op = ParseOpFromTag(r, tag, tag_pos);
    if (!op.ok()) return op.status();
    auto result = op->Apply(node->msg());
    if (!result.ok()) {
      return Reader::Error(kReasonMsgValue, tag_pos,
                           absl::StrCat("Invalid timestamp; message invalid for op ", op->name(),
                                        ": ", result.status().message()));
    }
    auto child = ParseNode(r, *std::move(result), budget - 1);
    if (!child.ok()) return child.status();
    // A repeated op keeps the last child, as the reference's dict assignment does.
    return node->SetOp(*op, *std::move(child));
  };
  uint8_t tag = 0;
  size_t tag_pos = r.pos();
  if (auto st = r.ReadByte(&tag); !st.ok()) return st;
  while (tag == 0xff) {
    uint8_t inner = 0;
    size_t inner_pos = r.pos();
    if (auto st = r.ReadByte(&inner); !st.ok()) return st;
    if (auto st = branch(inner, inner_pos); !st.ok()) return st;
    tag_pos = r.pos();
    if (auto st = r.ReadByte(&tag); !st.ok()) return st;
  }
  if (auto st = branch(tag, tag_pos); !st.ok()) return st;
  return node;
}

}  // namespace

absl::StatusOr<std::shared_ptr<Timestamp>> Timestamp::Parse(absl::string_view data, size_t* pos,
                                                            std::string msg) {
  if (msg.size() > kMaxMsgLength) {
    return Reader::Error(kReasonMsgValue, *pos, "initial message too long");
  }
  Reader r(data, *pos);
  auto node = ParseNode(r, std::move(msg), kRecursionLimit);
  if (node.ok()) *pos = r.pos();
  return node;
}

absl::StatusOr<DetachedFile> ParseDetached(absl::string_view bytes) {
  Reader r(bytes, 0);
  std::string magic;
  if (bytes.size() < kMagicLength || bytes.substr(0, kMagicLength) != DetachedMagic()) {
    return Reader::Error(kReasonBadMagic, 0, "not an OpenTimestamps proof (bad magic)");
  }
  (void)r.ReadBytes(kMagicLength, &magic);
  // The current reference reads the major version as one byte; for the only valid value (1) this
  // is also the varuint encoding older readers use.
  size_t version_pos = r.pos();
  uint8_t version = 0;
  if (auto st = r.ReadByte(&version); !st.ok()) return st;
  if (version != kMajorVersion) {
    return Reader::Error(
        kReasonUnsupportedMajorVersion, version_pos,
        absl::StrCat("Version ", version, " detached timestamp files are not supported"));
  }
  size_t op_pos = r.pos();
  uint8_t op_tag = 0;
  if (auto st = r.ReadByte(&op_tag); !st.ok()) return st;
  if (!IsCryptoTag(op_tag)) {
    return Reader::Error(kReasonUnknownOp, op_pos,
                         absl::StrFormat("Unknown unary op tag 0x%02x", op_tag));
  }
  DetachedFile file;
  file.file_hash_op = Op{op_tag, {}};
  if (auto st = r.ReadBytes(file.file_hash_op.digest_length(), &file.digest); !st.ok()) return st;
  size_t pos = r.pos();
  auto ts = Timestamp::Parse(bytes, &pos, file.digest);
  if (!ts.ok()) return ts.status();
  file.timestamp = *std::move(ts);
  if (pos != bytes.size()) {
    return Reader::Error(kReasonTrailingGarbage, pos,
                         absl::StrCat(bytes.size() - pos, " bytes after the timestamp"));
  }
  return file;
}

absl::StatusOr<std::string> SerializeDetached(const DetachedFile& file) {
  if (!IsCryptoTag(file.file_hash_op.tag)) {
    return absl::InvalidArgumentError("ots: file hash op must be a crypto op");
  }
  if (file.digest.size() != file.file_hash_op.digest_length()) {
    return absl::InvalidArgumentError("ots: digest length does not match the file hash op");
  }
  if (file.timestamp == nullptr || file.timestamp->msg() != file.digest) {
    return absl::InvalidArgumentError("ots: timestamp message must be the file digest");
  }
  std::string out(DetachedMagic());
  out.push_back(static_cast<char>(kMajorVersion));
  out.push_back(static_cast<char>(file.file_hash_op.tag));
  out.append(file.digest);
  if (auto st = file.timestamp->Serialize(&out); !st.ok()) return st;
  return out;
}

absl::StatusOr<std::shared_ptr<Timestamp>> MakeMerkleTree(
    const std::vector<std::shared_ptr<Timestamp>>& leaves) {
  if (leaves.empty()) return absl::InvalidArgumentError("ots: need at least one timestamp");
  std::vector<std::shared_ptr<Timestamp>> level = leaves;
  while (level.size() > 1) {
    std::vector<std::shared_ptr<Timestamp>> next;
    for (size_t i = 0; i + 1 < level.size(); i += 2) {
      const auto& left = level[i];
      const auto& right = level[i + 1];
      // Both sides compute left || right, so they share one node (as the reference does).
      auto joined = right->AddOp(Op::Prepend(left->msg()));
      if (!joined.ok()) return joined.status();
      if (auto st = left->SetOp(Op::Append(right->msg()), *joined); !st.ok()) return st;
      auto tip = (*joined)->AddOp(Op::Sha256());
      if (!tip.ok()) return tip.status();
      next.push_back(*std::move(tip));
    }
    if (level.size() % 2 == 1) next.push_back(level.back());  // odd item carried up unchanged
    level = std::move(next);
  }
  return level.front();
}

void AppendVaruint(uint64_t v, std::string* out) {
  do {
    uint8_t b = v & 0x7f;
    v >>= 7;
    if (v != 0) b |= 0x80;
    out->push_back(static_cast<char>(b));
  } while (v != 0);
}

void AppendVarbytes(absl::string_view b, std::string* out) {
  AppendVaruint(b.size(), out);
  out->append(b.data(), b.size());
}

std::string Sha256(absl::string_view data) { return EvpDigest(EVP_sha256(), data); }

absl::StatusOr<std::string> FileDigest(const Op& op, absl::string_view data) {
  std::string out;
  switch (op.tag) {
    case kOpSha256:
      out = Sha256(data);
      break;
    case kOpSha1:
      out = EvpDigest(EVP_sha1(), data);
      break;
    case kOpRipemd160:
      out = EvpDigest(EVP_ripemd160(), data);
      break;
    case kOpKeccak256:
      out = Keccak256(data);
      break;
    default:
      return absl::InvalidArgumentError("ots: file hash op must be a crypto op");
  }
  if (out.empty()) return absl::InternalError("ots: digest computation failed");
  return out;
}

std::string Keccak256(absl::string_view data) {
  constexpr size_t kRate = 136;
  std::array<uint64_t, 25> s{};
  auto absorb = [&](const unsigned char* block) {
    for (size_t i = 0; i < kRate / 8; ++i) {
      uint64_t lane = 0;
      for (int b = 0; b < 8; ++b) lane |= uint64_t{block[8 * i + b]} << (8 * b);
      s[i] ^= lane;
    }
    KeccakF(s);
  };
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  size_t n = data.size();
  while (n >= kRate) {
    absorb(p);
    p += kRate;
    n -= kRate;
  }
  unsigned char last[kRate] = {};
  std::copy(p, p + n, last);
  last[n] ^= 0x01;  // original Keccak padding (SHA3 would use 0x06)
  last[kRate - 1] ^= 0x80;
  absorb(last);
  std::string out(32, '\0');
  for (size_t i = 0; i < 32; ++i) out[i] = static_cast<char>(s[i / 8] >> (8 * (i % 8)));
  return out;
}

}  // namespace anchord::ots
