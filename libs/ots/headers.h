// Bitcoin block headers for verifying OpenTimestamps Bitcoin attestations.
//
// A header is never taken on trust: every BlockHeader handed out by a source has passed
// ParseBlockHeader, i.e. its double-SHA256 meets the target its own `bits` field claims (bits that
// are negative, zero or overflow 256 bits are rejected), and when the source names the hash the
// block must have (REST, RPC, the JSON vectors file) that hash must match too.
//
// What this does NOT establish: that the header is on the best chain at that height. A local file
// or a node is trusted for the height -> header mapping (an 80-byte header does not carry its
// height); proof of work makes forging a header for a mainnet height as expensive as mining one,
// but only when the caller also insists on mainnet difficulty (see HeaderPolicy).
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

// Optional stricter rules on top of "meets its own bits".
struct HeaderPolicy {
  // When set, a header whose target is easier than this compact target is rejected (e.g.
  // 0x1d00ffff, mainnet's proof-of-work limit, so a cheap regtest-difficulty header cannot stand in
  // for a mainnet block). Unset accepts any difficulty (the sandbox's regtest headers).
  std::optional<uint32_t> pow_limit_bits;
};

// Expands a compact target into 32 big-endian bytes. InvalidArgument for a negative sign bit, a
// zero target, or a target that does not fit in 256 bits.
absl::StatusOr<std::string> CompactToTarget(uint32_t bits);

// Decodes and checks an 80-byte header: length, bits well formed, sha256d(raw) <= target, the
// policy, and (when `expected_hash_internal` is not empty) the hash. FailedPrecondition with a
// message naming the height and the failed check.
absl::StatusOr<BlockHeader> ParseBlockHeader(int64_t height, absl::string_view raw,
                                             absl::string_view expected_hash_internal = {},
                                             const HeaderPolicy& policy = {});

class BlockHeaderSource {
 public:
  virtual ~BlockHeaderSource() = default;
  virtual absl::StatusOr<BlockHeader> HeaderAt(int64_t height) = 0;
  // A short description for messages ("file /x/headers.txt", "rest http://127.0.0.1:8332").
  virtual std::string Describe() const = 0;
};

// Headers from a local file, fully offline. Two formats, chosen by the first non-blank character:
//  - text: one "HEIGHT HEADER_HEX" per line (160 hex chars); blank lines and lines starting with
//    '#' are ignored;
//  - JSON ('{'): the shape of ../shared/ots/vectors/bitcoin_block_roots.json: keys are heights,
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

 private:
  BitcoinCoreRpc() = default;
  // Returns the "result" member (as a JSON text) of a call.
  absl::StatusOr<std::string> Call(absl::string_view method, const std::string& params_json);
  std::string url_;
  std::string auth_header_;  // "Basic ..."
  std::shared_ptr<http::HttpClient> client_;
  HeaderPolicy policy_;
};

// The sandbox's fake chain: GET {base}/_sandbox/blocks/<h>/header (160 hex chars).
class SandboxHeaders : public BlockHeaderSource {
 public:
  SandboxHeaders(std::string base_url, std::shared_ptr<http::HttpClient> client = nullptr,
                 HeaderPolicy policy = {});
  absl::StatusOr<BlockHeader> HeaderAt(int64_t height) override;
  std::string Describe() const override { return "sandbox " + base_; }

 private:
  std::string base_;
  std::shared_ptr<http::HttpClient> client_;
  HeaderPolicy policy_;
};

// Builds a source from a spec string: "file:PATH", "rest:URL", "sandbox:URL",
// "rpc:URL[,cookie=PATH|,user=U,password=P]". InvalidArgument on an unknown scheme.
absl::StatusOr<std::unique_ptr<BlockHeaderSource>> MakeHeaderSource(absl::string_view spec);

}  // namespace anchord::ots
