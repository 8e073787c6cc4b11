#include "libs/ots/info.h"

#include <set>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "libs/common/hex.h"

namespace anchord::ots {
namespace {

std::string Reversed(absl::string_view b) { return std::string(b.rbegin(), b.rend()); }

// Minimal reader for Bitcoin's CompactSize and raw fields.
class TxReader {
 public:
  explicit TxReader(absl::string_view d) : d_(d) {}
  bool Skip(uint64_t n) {
    if (d_.size() - pos_ < n) return false;
    pos_ += static_cast<size_t>(n);
    return true;
  }
  bool CompactSize(uint64_t* v) {
    if (pos_ >= d_.size()) return false;
    const uint8_t b = static_cast<uint8_t>(d_[pos_++]);
    int n = b < 0xfd ? 0 : b == 0xfd ? 2 : b == 0xfe ? 4 : 8;
    if (n == 0) {
      *v = b;
      return true;
    }
    if (d_.size() - pos_ < static_cast<size_t>(n)) return false;
    uint64_t x = 0;
    for (int i = 0; i < n; ++i) x |= uint64_t{static_cast<uint8_t>(d_[pos_ + i])} << (8 * i);
    pos_ += n;
    *v = x;
    return true;
  }
  bool AtEnd() const { return pos_ == d_.size(); }

 private:
  absl::string_view d_;
  size_t pos_ = 0;
};

}  // namespace

// Derived messages (op results, node messages) can be 4096 bytes for a 1-byte op in the file, so
// printing them in full made the output thousands of times larger than the proof.
std::string ShowMessage(absl::string_view msg, bool full, size_t limit) {
  if (full || msg.size() <= limit) return HexEncode(msg);
  return absl::StrCat(HexEncode(msg.substr(0, limit / 2)), "... (", msg.size(), " bytes)");
}

namespace {

// Forks nest by 4 spaces per level, as the reference does, up to kInfoMaxIndentLevels; deeper
// lines keep that indent and say their level, so indentation cannot grow quadratically with a
// deep proof.
std::string Pad(int level) {
  if (level <= kInfoMaxIndentLevels) return std::string(static_cast<size_t>(4 * level), ' ');
  return absl::StrCat(std::string(4 * kInfoMaxIndentLevels, ' '), "[level ", level, "] ");
}

struct TextRenderer {
  bool verbose;
  bool full;
  std::string* out;
  std::set<const Timestamp*> seen;  // a node reachable twice is printed once

  void Node(const Timestamp& t, int level) {
    const std::string pad = Pad(level);
    if (!seen.insert(&t).second) {
      absl::StrAppend(out, pad, "# the same subtree as printed above\n");
      return;
    }
    for (const auto& a : t.attestations()) {
      absl::StrAppend(out, pad, "verify ", AttestationToString(a), "\n");
      if (a.kind == Attestation::Kind::kBitcoin) {
        absl::StrAppend(out, pad, "# Bitcoin block merkle root ",
                        ShowMessage(Reversed(t.msg()), full), "\n");
      }
    }
    if (t.ops().empty()) return;
    const std::string txid = BitcoinTxidIfTransaction(t.msg());
    const bool fork = t.ops().size() > 1;
    for (const auto& [op, child] : t.ops()) {
      if (!txid.empty()) absl::StrAppend(out, pad, "# Bitcoin transaction id ", txid, "\n");
      absl::StrAppend(out, pad, fork ? " -> " : "", OpToString(op),
                      verbose ? absl::StrCat(" == ", ShowMessage(child->msg(), full)) : "", "\n");
      // A single path continues at the same indent, a fork's branches one level deeper.
      Node(*child, fork ? level + 1 : level);
    }
  }
};

struct JsonRenderer {
  bool full;
  std::set<const Timestamp*> seen;

  // `root`: the proof's digest node. A chain node's message is printed only with `full`: it is
  // derived from the one above, and printing it made the JSON ~100x the proof's size.
  nlohmann::json Node(const Timestamp& t, bool root = false) {
    nlohmann::json j;
    if (full || root || !t.attestations().empty()) {
      j["msg"] = ShowMessage(t.msg(), full);
      if (!full && t.msg().size() > kInfoShortMessage) j["msg_length"] = t.msg().size();
    }
    if (!seen.insert(&t).second) {
      j["same_as_above"] = true;
      return j;
    }
    nlohmann::json atts = nlohmann::json::array();
    for (const auto& a : t.attestations()) {
      nlohmann::json aj;
      aj["type"] = a.kind == Attestation::Kind::kBitcoin    ? "bitcoin"
                   : a.kind == Attestation::Kind::kLitecoin ? "litecoin"
                   : a.kind == Attestation::Kind::kEthereum ? "ethereum"
                   : a.kind == Attestation::Kind::kPending  ? "pending"
                                                            : "unknown";
      switch (a.kind) {
        case Attestation::Kind::kBitcoin:
          aj["merkle_root_display"] = ShowMessage(Reversed(t.msg()), full);
          [[fallthrough]];
        case Attestation::Kind::kLitecoin:
        case Attestation::Kind::kEthereum:
          aj["height"] = a.height;
          break;
        case Attestation::Kind::kPending:
          aj["uri"] = a.uri;
          break;
        case Attestation::Kind::kUnknown:
          aj["tag"] = HexEncode(a.tag);
          aj["payload"] = HexEncode(a.payload);  // bytes of the proof itself
          break;
      }
      atts.push_back(std::move(aj));
    }
    if (!atts.empty()) j["attestations"] = std::move(atts);
    nlohmann::json ops = nlohmann::json::array();
    const std::string txid = BitcoinTxidIfTransaction(t.msg());
    if (!txid.empty()) j["bitcoin_txid"] = txid;
    for (const auto& [op, child] : t.ops()) {
      nlohmann::json oj;
      oj["op"] = op.name();
      if (op.is_binary()) oj["arg"] = HexEncode(op.arg);
      // The op's result is the child's "msg": printed once, there.
      oj["timestamp"] = Node(*child);
      ops.push_back(std::move(oj));
    }
    j["ops"] = std::move(ops);
    return j;
  }
};

}  // namespace

std::string BitcoinTxidIfTransaction(absl::string_view msg) {
  // version(4) vin* vout* locktime(4); a non-witness serialization consumed exactly. Requiring at
  // least one input and one output keeps random 32/64-byte hashes from looking like transactions.
  TxReader r(msg);
  uint64_t n = 0;
  if (!r.Skip(4) || !r.CompactSize(&n) || n == 0 || n > 10000) return "";
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t script = 0;
    if (!r.Skip(36) || !r.CompactSize(&script) || !r.Skip(script) || !r.Skip(4)) return "";
  }
  if (!r.CompactSize(&n) || n == 0 || n > 10000) return "";
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t script = 0;
    if (!r.Skip(8) || !r.CompactSize(&script) || !r.Skip(script)) return "";
  }
  if (!r.Skip(4) || !r.AtEnd()) return "";
  return HexEncode(Reversed(Sha256(Sha256(msg))));
}

std::string AttestationToString(const Attestation& a) {
  switch (a.kind) {
    case Attestation::Kind::kBitcoin:
      return absl::StrCat("BitcoinBlockHeaderAttestation(", a.height, ")");
    case Attestation::Kind::kLitecoin:
      return absl::StrCat("LitecoinBlockHeaderAttestation(", a.height, ")");
    case Attestation::Kind::kEthereum:
      return absl::StrCat("EthereumBlockHeaderAttestation(", a.height, ")");
    case Attestation::Kind::kPending:
      // URIs are restricted to [A-Za-z0-9-._/:] by the parser, so quoting is safe.
      return absl::StrCat("PendingAttestation('", a.uri, "')");
    case Attestation::Kind::kUnknown:
      return absl::StrCat("UnknownAttestation(", HexEncode(a.tag), ", ", HexEncode(a.payload), ")");
  }
  return "UnknownAttestation()";
}

std::string OpToString(const Op& op) {
  if (op.is_binary()) return absl::StrCat(op.name(), " ", HexEncode(op.arg));
  return op.name();
}

std::string RenderInfo(const DetachedFile& proof, bool verbose, bool full) {
  std::string out = absl::StrCat("File ", proof.file_hash_op.name(),
                                 " hash: ", HexEncode(proof.digest), "\nTimestamp:\n");
  if (proof.timestamp) {
    TextRenderer r{verbose, full, &out, {}};
    r.Node(*proof.timestamp, 0);
  }
  return out;
}

std::string RenderInfoJson(const DetachedFile& proof, bool full) {
  nlohmann::json j;
  j["file_hash_op"] = proof.file_hash_op.name();
  j["digest"] = HexEncode(proof.digest);
  if (proof.timestamp) {
    JsonRenderer r{full, {}};
    j["timestamp"] = r.Node(*proof.timestamp, /*root=*/true);
  }
  // Compact: an indented dump grows with the square of the tree's depth.
  return j.dump();
}

}  // namespace anchord::ots
