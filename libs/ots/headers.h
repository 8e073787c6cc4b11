// Bitcoin block headers for verifying OpenTimestamps Bitcoin attestations.
//
// A header is never taken on trust: every BlockHeader handed out by a source has passed
// ParseBlockHeader, i.e. its double-SHA256 meets the target its own `bits` field claims (bits that
// are negative, zero or overflow 256 bits are rejected), and when the source names the hash the
// block must have (REST, RPC, the JSON vectors file) that hash must match too.
//
// What this does NOT establish: that the header is on the best chain at that height. A local file
// or a node is trusted for the height -> header mapping (an 80-byte header does not carry its
// height); the default HeaderPolicy bounds that trust: a header must have at least mainnet's
// minimum difficulty and the difficulty floor for its height, so forging one costs a good part of
// mining a real block of that era.
//
// Errors from HeaderAt: NotFound when the source has no block at that height; FailedPrecondition
// when the source answered with a header that fails the checks above; Unavailable / other codes
// for transport or format problems. Messages never contain credentials.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace anchord::http {
class HttpClient;
}

namespace anchord::ots {

inline constexpr size_t kBlockHeaderSize = 80;

struct BlockHeader {
  int64_t height = 0;
  std::string raw;          // the 80 header bytes
  std::string merkle_root;  // raw bytes 36..67 (internal order, what an OTS commitment equals)
  uint32_t time = 0;        // nTime, seconds since the epoch
  uint32_t bits = 0;        // nBits, compact target
  std::string hash;         // sha256d(raw), internal order (reverse for the display form)

  // The hash as bitcoind and explorers print it (byte-reversed hex).
  std::string DisplayHash() const;
};

// Bitcoin mainnet's proof-of-work limit (the easiest target a mainnet block may have).
inline constexpr uint32_t kMainnetPowLimitBits = 0x1d00ffff;

// A conservative minimum difficulty from `height` on: the floor target is 4x the target of
// `real_bits` (a quarter of that block's real difficulty), never easier than the pow limit.
struct DifficultyFloor {
  int64_t height;      // applies to this height and every later one, until the next entry
  uint32_t real_bits;  // the bits of block `height` in Bitcoin mainnet
  const char* source;  // where that value is public
};

// The compiled-in table, ascending by height (headers.cc, each entry with its source). Bitcoin's
// difficulty never fell to a quarter of an earlier epoch's after any of these heights, so a real
// block always clears the floor, while a header below it (regtest's 0x207fffff, or anything
// cheap) is refused: forging one costs at least a quarter of mining a real block of that era.
const std::vector<DifficultyFloor>& MainnetDifficultyFloors();

// The rules a header must meet on top of "meets its own bits". The default is mainnet's: target
// at most the pow limit AND at most the difficulty floor for its height. Regtest() accepts any
// well-formed difficulty: only for test chains (the sandbox's fake chain), and callers say so.
struct HeaderPolicy {
  std::optional<uint32_t> pow_limit_bits = kMainnetPowLimitBits;
  bool difficulty_floor = true;  // apply MainnetDifficultyFloors()

  static HeaderPolicy Mainnet() { return {}; }
  static HeaderPolicy Regtest() { return {std::nullopt, false}; }
  bool regtest() const { return !pow_limit_bits && !difficulty_floor; }
};

enum class Network { kMainnet, kRegtest };
// "mainnet" (also "" and "bitcoin") or "regtest"; InvalidArgument naming the value otherwise.
absl::StatusOr<Network> ParseNetwork(absl::string_view name);
inline HeaderPolicy PolicyFor(Network n) {
  return n == Network::kRegtest ? HeaderPolicy::Regtest() : HeaderPolicy::Mainnet();
}

// The floor target (32 big-endian bytes) for `height` under mainnet rules, and a description of
// where it comes from ("a quarter of the difficulty of bits 0x181686f5 of block 358391"); the
// pow limit and "the proof-of-work limit" below the table's first height.
std::pair<std::string, std::string> DifficultyFloorAt(int64_t height);

// Expands a compact target into 32 big-endian bytes. InvalidArgument for a negative sign bit, a
// zero target, or a target that does not fit in 256 bits.
absl::StatusOr<std::string> CompactToTarget(uint32_t bits);

// Decodes and checks an 80-byte header: length, bits well formed, sha256d(raw) <= target, the
// policy (pow limit, difficulty floor for `height`), and (when `expected_hash_internal` is not
// empty) the hash. FailedPrecondition with a message naming the height and the failed check (for
// the floor: the height, the header's bits and the floor's source).
absl::StatusOr<BlockHeader> ParseBlockHeader(int64_t height, absl::string_view raw,
                                             absl::string_view expected_hash_internal = {},
                                             const HeaderPolicy& policy = {});

class BlockHeaderSource {
 public:
  virtual ~BlockHeaderSource() = default;
  virtual absl::StatusOr<BlockHeader> HeaderAt(int64_t height) = 0;
  // A short description for messages ("file /x/headers.txt", "rest http://127.0.0.1:8332").
  virtual std::string Describe() const = 0;
  // True when headers are accepted at any difficulty (HeaderPolicy::Regtest): results from such a
  // source must say they are about a test chain, not Bitcoin.
  virtual bool regtest() const { return false; }
};

// Headers from a local file, fully offline. Two formats, chosen by the first non-blank character:
//  - text: one "HEIGHT HEADER_HEX" per line (160 hex chars); blank lines and lines starting with
//    '#' are ignored;
//  - JSON ('{'): the shape of tests/data/ots/bitcoin_block_roots.json: keys are heights,
//    entries with "header_hex" are used (and "block_hash", display order, must match when given);
//    entries without a raw header are ignored, since a bare merkle root cannot be checked.
// Open fails (InvalidArgument naming the line / key) on a malformed file; headers are checked on
// lookup, so one bad header makes only its own height fail.
class LocalHeadersFile : public BlockHeaderSource {
 public:
  static absl::StatusOr<std::unique_ptr<LocalHeadersFile>> Open(const std::string& path,
                                                                const HeaderPolicy& policy = {});
  // Same, from the file's contents (`name` is used in messages).
  static absl::StatusOr<std::unique_ptr<LocalHeadersFile>> FromContents(
      absl::string_view contents, const std::string& name, const HeaderPolicy& policy = {});

  absl::StatusOr<BlockHeader> HeaderAt(int64_t height) override;
  std::string Describe() const override { return "file " + name_; }
  bool regtest() const override { return policy_.regtest(); }
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::string raw;
    std::string expected_hash;  // internal order; empty when unknown
  };
  LocalHeadersFile(std::string name, HeaderPolicy policy)
      : name_(std::move(name)), policy_(policy) {}
  std::string name_;
  HeaderPolicy policy_;
  std::map<int64_t, Entry> entries_;
};

// Bitcoin Core's REST interface (bitcoind -rest): GET {base}/rest/blockhashbyheight/<h>.hex, then
// GET {base}/rest/headers/1/<hash>.hex. The header must hash to the hash the node named.
class BitcoinCoreRest : public BlockHeaderSource {
 public:
  // `client` may be null (a curl client is made). Not owned when passed.
  BitcoinCoreRest(std::string base_url, std::shared_ptr<http::HttpClient> client = nullptr,
                  HeaderPolicy policy = {});
  absl::StatusOr<BlockHeader> HeaderAt(int64_t height) override;
  std::string Describe() const override { return "rest " + base_; }
  bool regtest() const override { return policy_.regtest(); }

 private:
  std::string base_;
  std::shared_ptr<http::HttpClient> client_;
  HeaderPolicy policy_;
};

// Bitcoin Core JSON-RPC: getblockhash(h), then getblockheader(hash, false). Credentials are
// "user:password" or the contents of a cookie file (Core's .cookie holds "__cookie__:<pw>"); they
// are registered with the log scrubber and never appear in messages.
class BitcoinCoreRpc : public BlockHeaderSource {
 public:
  static absl::StatusOr<std::unique_ptr<BitcoinCoreRpc>> Create(
      std::string url, absl::string_view user, absl::string_view password,
      absl::string_view cookie_file, std::shared_ptr<http::HttpClient> client = nullptr,
      HeaderPolicy policy = {});
  absl::StatusOr<BlockHeader> HeaderAt(int64_t height) override;
  std::string Describe() const override { return "rpc " + url_; }
  bool regtest() const override { return policy_.regtest(); }

 private:
  BitcoinCoreRpc() = default;
  // Returns the "result" member (as a JSON text) of a call.
  absl::StatusOr<std::string> Call(absl::string_view method, const std::string& params_json);
  std::string url_;
  std::string auth_header_;  // "Basic ..."
  std::shared_ptr<http::HttpClient> client_;
  HeaderPolicy policy_;
};

// The sandbox's fake chain: GET {base}/_sandbox/blocks/<h>/header (160 hex chars). Regtest rules
// by default: its headers are mined at 0x207fffff.
class SandboxHeaders : public BlockHeaderSource {
 public:
  SandboxHeaders(std::string base_url, std::shared_ptr<http::HttpClient> client = nullptr,
                 HeaderPolicy policy = HeaderPolicy::Regtest());
  absl::StatusOr<BlockHeader> HeaderAt(int64_t height) override;
  std::string Describe() const override { return "sandbox " + base_; }
  bool regtest() const override { return policy_.regtest(); }

 private:
  std::string base_;
  std::shared_ptr<http::HttpClient> client_;
  HeaderPolicy policy_;
};

// Builds a source from a spec string: "file:PATH", "rest:URL", "sandbox:URL",
// "rpc:URL[,cookie=PATH|,user=U,password=P]". InvalidArgument on an unknown scheme. file/rest/rpc
// sources check headers under `network`'s rules (mainnet unless the caller explicitly asked for
// regtest); the sandbox source is always regtest (it serves nothing else).
absl::StatusOr<std::unique_ptr<BlockHeaderSource>> MakeHeaderSource(
    absl::string_view spec, Network network = Network::kMainnet);

}  // namespace anchord::ots
