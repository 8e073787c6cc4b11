#include "libs/ots/headers.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"
#include "libs/common/secret.h"
#include "libs/http/http_client.h"
#include "libs/ots/ots.h"

namespace anchord::ots {
namespace {

uint32_t Le32(absl::string_view b, size_t at) {
  return static_cast<uint32_t>(static_cast<uint8_t>(b[at])) |
         static_cast<uint32_t>(static_cast<uint8_t>(b[at + 1])) << 8 |
         static_cast<uint32_t>(static_cast<uint8_t>(b[at + 2])) << 16 |
         static_cast<uint32_t>(static_cast<uint8_t>(b[at + 3])) << 24;
}

std::string Reversed(absl::string_view b) { return std::string(b.rbegin(), b.rend()); }

// Hash given in display order (as bitcoind prints it) -> internal order.
absl::StatusOr<std::string> DisplayHashToInternal(absl::string_view hex, absl::string_view what) {
  hex = absl::StripAsciiWhitespace(hex);
  if (hex.size() != 64) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": expected a 64-hex-char block hash"));
  }
  auto bytes = HexDecode(hex, what);
  if (!bytes.ok()) return bytes.status();
  return Reversed(*bytes);
}

absl::StatusOr<std::string> DecodeHeaderHex(absl::string_view hex, absl::string_view what) {
  hex = absl::StripAsciiWhitespace(hex);
  if (hex.size() != 2 * kBlockHeaderSize) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": expected ", 2 * kBlockHeaderSize, " hex chars, got ", hex.size()));
  }
  return HexDecode(hex, what);
}

std::string TrimSlash(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

std::shared_ptr<http::HttpClient> OrDefault(std::shared_ptr<http::HttpClient> c) {
  if (c) return c;
  http::CurlOptions o;
  o.max_response_bytes = 1 << 20;  // a header or a JSON-RPC answer is tiny
  return std::shared_ptr<http::HttpClient>(http::MakeCurlClient(o));
}

absl::StatusOr<std::string> Get(http::HttpClient& client, const std::string& url,
                                absl::string_view what) {
  http::HttpRequest req;
  req.url = url;
  req.timeout = absl::Seconds(15);
  auto resp = client.Do(req);
  if (!resp.ok()) return resp.status();
  if (resp->status == 404) return absl::NotFoundError(absl::StrCat(what, ": not found (HTTP 404)"));
  if (resp->status != 200) {
    return absl::UnavailableError(absl::StrCat(what, ": HTTP ", resp->status));
  }
  return resp->body;
}

// 4 * target, saturating (the floors are far below 2^254, so it never saturates in practice).
std::string TimesFour(const std::string& target) {
  std::string out(32, '\0');
  unsigned carry = 0;
  for (int i = 31; i >= 0; --i) {
    const unsigned v = (static_cast<uint8_t>(target[i]) << 2) | carry;
    out[i] = static_cast<char>(v & 0xff);
    carry = v >> 8;
  }
  if (carry != 0) return std::string(32, '\xff');
  return out;
}

}  // namespace

const std::vector<DifficultyFloor>& MainnetDifficultyFloors() {
  // Each value is the nBits field of that block in Bitcoin mainnet, a public fact anyone can
  // check with `bitcoin-cli getblockheader $(bitcoin-cli getblockhash N)` or any block explorer;
  // the note says where else it is printed. The floor is a quarter of that block's difficulty.
  // Difficulty never dropped by 4x after any of these heights (the largest falls, late 2011,
  // late 2018 and mid-2021, were under 2x), so real blocks always clear it.
  static const auto* const kFloors = new std::vector<DifficultyFloor>{
      {68543, 0x1c05a3f4,
       "bits of block 68543 in Bitcoin mainnet (also in Bitcoin Core's src/test/pow_tests.cpp, "
       "get_next_work_lower_limit_actual)"},
      {100000, 0x1b04864c, "bits of block 100000 in Bitcoin mainnet (difficulty 14,484.16)"},
      {200000, 0x1a05db8b, "bits of block 200000 in Bitcoin mainnet (difficulty 2,864,140.5)"},
      {300000, 0x1900896c, "bits of block 300000 in Bitcoin mainnet (difficulty 8.00e9)"},
      {358391, 0x181686f5,
       "bits of block 358391 in Bitcoin mainnet (its header, hash 000000000000000003e89288..., "
       "is in tests/data/ots/bitcoin_block_roots.json)"},
      {500000, 0x18009645, "bits of block 500000 in Bitcoin mainnet (difficulty 1.873e12)"},
      {840000, 0x17034219,
       "bits of block 840000 in Bitcoin mainnet (the April 2024 halving, difficulty 8.64e13)"},
  };
  return *kFloors;
}

std::pair<std::string, std::string> DifficultyFloorAt(int64_t height) {
  const std::string limit = *CompactToTarget(kMainnetPowLimitBits);
  const DifficultyFloor* floor = nullptr;
  for (const DifficultyFloor& f : MainnetDifficultyFloors()) {
    if (f.height <= height) floor = &f;
  }
  if (floor == nullptr) return {limit, "mainnet's proof-of-work limit (bits 0x1d00ffff)"};
  std::string t = TimesFour(*CompactToTarget(floor->real_bits));
  if (t > limit) t = limit;
  return {t, absl::StrFormat("a quarter of the difficulty of bits 0x%08x, the %s", floor->real_bits,
                             floor->source)};
}

absl::StatusOr<Network> ParseNetwork(absl::string_view name) {
  if (name.empty() || name == "mainnet" || name == "bitcoin") return Network::kMainnet;
  if (name == "regtest") return Network::kRegtest;
  return absl::InvalidArgumentError(
      absl::StrCat("--network: \"", name.substr(0, 32), "\" is not mainnet or regtest"));
}

std::string BlockHeader::DisplayHash() const { return HexEncode(Reversed(hash)); }

absl::StatusOr<std::string> CompactToTarget(uint32_t bits) {
  const int exponent = static_cast<int>(bits >> 24);
  const uint32_t mantissa = bits & 0x007fffff;
  if (mantissa != 0 && (bits & 0x00800000) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat("bits 0x%08x: negative target", bits));
  }
  // Place the 3 mantissa bytes at byte position (exponent - 3) counted from the least
  // significant end, as Bitcoin Core's arith_uint256::SetCompact does.
  std::string target(32, '\0');
  for (int i = 0; i < 3; ++i) {
    const uint8_t b = static_cast<uint8_t>((mantissa >> (8 * i)) & 0xff);
    const int pos = exponent - 3 + i;  // byte index from the least significant end
    if (pos < 0) continue;             // shifted out (exponent < 3)
    if (pos >= 32) {
      if (b != 0) {
        return absl::InvalidArgumentError(absl::StrFormat("bits 0x%08x: target overflows", bits));
      }
      continue;
    }
    target[31 - pos] = static_cast<char>(b);
  }
  if (target == std::string(32, '\0')) {
    return absl::InvalidArgumentError(absl::StrFormat("bits 0x%08x: zero target", bits));
  }
  return target;
}

absl::StatusOr<BlockHeader> ParseBlockHeader(int64_t height, absl::string_view raw,
                                             absl::string_view expected_hash_internal,
                                             const HeaderPolicy& policy) {
  auto fail = [&](absl::string_view why) {
    return absl::FailedPreconditionError(
        absl::StrCat("block header for height ", height, " rejected: ", why));
  };
  if (raw.size() != kBlockHeaderSize) {
    return fail(absl::StrCat("expected 80 bytes, got ", raw.size()));
  }
  BlockHeader h;
  h.height = height;
  h.raw = std::string(raw);
  h.merkle_root = h.raw.substr(36, 32);
  h.time = Le32(raw, 68);
  h.bits = Le32(raw, 72);
  h.hash = Sha256(Sha256(raw));
  auto target = CompactToTarget(h.bits);
  if (!target.ok()) return fail(target.status().message());
  // The hash is a little-endian 256-bit number; compare it big-endian with the target.
  if (Reversed(h.hash) > *target) {
    return fail(absl::StrFormat("hash %s does not meet its own target (bits 0x%08x)",
                                h.DisplayHash(), h.bits));
  }
  // The floor first: it is at least as strict as the pow limit and its message names the height.
  if (policy.difficulty_floor) {
    auto [floor, why] = DifficultyFloorAt(height);
    if (*target > floor) {
      return fail(absl::StrFormat(
          "its difficulty (bits 0x%08x) is below the floor for height %d: %s. A header this "
          "cheap is not evidence of a Bitcoin block; for a test chain use --network regtest",
          h.bits, height, why));
    }
  }
  if (policy.pow_limit_bits) {
    auto limit = CompactToTarget(*policy.pow_limit_bits);
    if (!limit.ok()) return fail(absl::StrCat("pow limit: ", limit.status().message()));
    if (*target > *limit) {
      return fail(absl::StrFormat("difficulty bits 0x%08x is easier than the limit 0x%08x", h.bits,
                                  *policy.pow_limit_bits));
    }
  }
  if (!expected_hash_internal.empty() && expected_hash_internal != h.hash) {
    return fail(absl::StrCat("hash ", h.DisplayHash(), " is not the expected ",
                             HexEncode(Reversed(expected_hash_internal))));
  }
  return h;
}

// ---- LocalHeadersFile ----

absl::StatusOr<std::unique_ptr<LocalHeadersFile>> LocalHeadersFile::Open(
    const std::string& path, const HeaderPolicy& policy) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("headers file ", path, ": cannot open"));
  // A headers file of the whole chain is ~140 MB of hex; refuse anything absurd before reading.
  constexpr std::streamoff kMax = 256 << 20;
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0 || size > kMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("headers file ", path, ": unreadable or larger than 256 MiB"));
  }
  in.seekg(0, std::ios::beg);
  std::string contents(static_cast<size_t>(size), '\0');
  in.read(contents.data(), size);
  if (in.gcount() != size) {
    return absl::DataLossError(absl::StrCat("headers file ", path, ": short read"));
  }
  return FromContents(contents, path, policy);
}

absl::StatusOr<std::unique_ptr<LocalHeadersFile>> LocalHeadersFile::FromContents(
    absl::string_view contents, const std::string& name, const HeaderPolicy& policy) {
  std::unique_ptr<LocalHeadersFile> f(new LocalHeadersFile(name, policy));
  absl::string_view trimmed = absl::StripLeadingAsciiWhitespace(contents);
  if (absl::StartsWith(trimmed, "{")) {
    const nlohmann::json j = nlohmann::json::parse(contents, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat("headers file ", name, ": invalid JSON"));
    }
    for (auto it = j.begin(); it != j.end(); ++it) {
      const std::string& key = it.key();
      if (absl::StartsWith(key, "_")) continue;  // comments
      int64_t height = 0;
      if (!absl::SimpleAtoi(key, &height) || height < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("headers file ", name, ": key \"", key, "\" is not a block height"));
      }
      if (!it->is_object()) continue;
      auto hh = it->find("header_hex");
      if (hh == it->end() || !hh->is_string()) continue;  // bare roots cannot be checked
      auto raw = DecodeHeaderHex(hh->get<std::string>(), absl::StrCat(name, " height ", key));
      if (!raw.ok()) return raw.status();
      Entry e{*raw, {}};
      auto bh = it->find("block_hash");
      if (bh != it->end() && bh->is_string()) {
        auto h = DisplayHashToInternal(bh->get<std::string>(), absl::StrCat(name, " height ", key));
        if (!h.ok()) return h.status();
        e.expected_hash = *h;
      }
      f->entries_[height] = std::move(e);
    }
    return f;
  }
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> parts =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    int64_t height = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &height) || height < 0) {
      return absl::InvalidArgumentError(absl::StrCat("headers file ", name, " line ", line_no,
                                                     ": expected \"HEIGHT HEADER_HEX\""));
    }
    auto raw = DecodeHeaderHex(parts[1], absl::StrCat(name, " line ", line_no));
    if (!raw.ok()) return raw.status();
    f->entries_[height] = Entry{*raw, {}};
  }
  return f;
}

absl::StatusOr<BlockHeader> LocalHeadersFile::HeaderAt(int64_t height) {
  auto it = entries_.find(height);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat("no header for block ", height, " in ", name_));
  }
  return ParseBlockHeader(height, it->second.raw, it->second.expected_hash, policy_);
}

// ---- BitcoinCoreRest ----

BitcoinCoreRest::BitcoinCoreRest(std::string base_url, std::shared_ptr<http::HttpClient> client,
                                 HeaderPolicy policy)
    : base_(TrimSlash(std::move(base_url))),
      client_(OrDefault(std::move(client))),
      policy_(policy) {}

absl::StatusOr<BlockHeader> BitcoinCoreRest::HeaderAt(int64_t height) {
  auto hash_hex = Get(*client_, absl::StrCat(base_, "/rest/blockhashbyheight/", height, ".hex"),
                      absl::StrCat("block ", height, " hash"));
  if (!hash_hex.ok()) return hash_hex.status();
  auto hash = DisplayHashToInternal(*hash_hex, absl::StrCat("block ", height, " hash"));
  if (!hash.ok()) return hash.status();
  const std::string display = HexEncode(Reversed(*hash));
  auto header_hex = Get(*client_, absl::StrCat(base_, "/rest/headers/1/", display, ".hex"),
                        absl::StrCat("block ", height, " header"));
  if (!header_hex.ok()) return header_hex.status();
  auto raw = DecodeHeaderHex(*header_hex, absl::StrCat("block ", height, " header"));
  if (!raw.ok()) return raw.status();
  return ParseBlockHeader(height, *raw, *hash, policy_);
}

// ---- BitcoinCoreRpc ----

absl::StatusOr<std::unique_ptr<BitcoinCoreRpc>> BitcoinCoreRpc::Create(
    std::string url, absl::string_view user, absl::string_view password,
    absl::string_view cookie_file, std::shared_ptr<http::HttpClient> client, HeaderPolicy policy) {
  std::unique_ptr<BitcoinCoreRpc> rpc(new BitcoinCoreRpc());
  rpc->url_ = std::move(url);
  rpc->client_ = OrDefault(std::move(client));
  rpc->policy_ = policy;
  std::string creds;
  if (!cookie_file.empty()) {
    auto c = LoadSecret("bitcoind RPC cookie", "", cookie_file);
    if (!c.ok()) return c.status();
    creds = *c;
    if (creds.find(':') == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("bitcoind RPC cookie file ", cookie_file, ": expected USER:PASSWORD"));
    }
  } else if (!user.empty() || !password.empty()) {
    auto p = LoadSecret("bitcoind RPC password", password, "");
    if (!p.ok()) return p.status();
    creds = absl::StrCat(user, ":", *p);
  }
  if (!creds.empty()) {
    rpc->auth_header_ = absl::StrCat("Basic ", absl::Base64Escape(creds));
    RegisterSecret(rpc->auth_header_);
  }
  return rpc;
}

absl::StatusOr<std::string> BitcoinCoreRpc::Call(absl::string_view method,
                                                 const std::string& params_json) {
  http::HttpRequest req;
  req.method = "POST";
  req.url = url_;
  req.timeout = absl::Seconds(15);
  req.headers.emplace_back("Content-Type", "application/json");
  if (!auth_header_.empty()) req.headers.emplace_back("Authorization", auth_header_);
  req.body = absl::StrCat(R"({"jsonrpc":"1.0","id":"anchord","method":")", method, R"(","params":)",
                          params_json, "}");
  auto resp = client_->Do(req);
  if (!resp.ok()) return resp.status();
  if (resp->status == 401 || resp->status == 403) {
    return absl::PermissionDeniedError(
        absl::StrCat("bitcoind RPC ", method, ": HTTP ", resp->status, " (check credentials)"));
  }
  // bitcoind answers errors with HTTP 404/500 and a JSON body; read the body first.
  const nlohmann::json j = nlohmann::json::parse(resp->body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::UnavailableError(
        absl::StrCat("bitcoind RPC ", method, ": HTTP ", resp->status, ", not a JSON-RPC answer"));
  }
  auto err = j.find("error");
  if (err != j.end() && !err->is_null()) {
    int code = 0;
    std::string message;
    if (err->is_object()) {
      auto c = err->find("code");
      if (c != err->end() && c->is_number_integer()) code = c->get<int>();
      auto m = err->find("message");
      if (m != err->end() && m->is_string()) message = m->get<std::string>();
    }
    // -8: "Block height out of range"; -5: "Block not found".
    if (code == -8 || code == -5) {
      return absl::NotFoundError(absl::StrCat("bitcoind RPC ", method, ": ", message));
    }
    return absl::UnavailableError(
        absl::StrCat("bitcoind RPC ", method, ": error ", code, ": ", message));
  }
  auto result = j.find("result");
  if (result == j.end() || !result->is_string()) {
    return absl::UnavailableError(absl::StrCat("bitcoind RPC ", method, ": no string result"));
  }
  return result->get<std::string>();
}

absl::StatusOr<BlockHeader> BitcoinCoreRpc::HeaderAt(int64_t height) {
  auto hash_hex = Call("getblockhash", absl::StrCat("[", height, "]"));
  if (!hash_hex.ok()) return hash_hex.status();
  auto hash = DisplayHashToInternal(*hash_hex, absl::StrCat("block ", height, " hash"));
  if (!hash.ok()) return hash.status();
  auto header_hex =
      Call("getblockheader", absl::StrCat("[\"", HexEncode(Reversed(*hash)), "\",false]"));
  if (!header_hex.ok()) return header_hex.status();
  auto raw = DecodeHeaderHex(*header_hex, absl::StrCat("block ", height, " header"));
  if (!raw.ok()) return raw.status();
  return ParseBlockHeader(height, *raw, *hash, policy_);
}

// ---- SandboxHeaders ----

SandboxHeaders::SandboxHeaders(std::string base_url, std::shared_ptr<http::HttpClient> client,
                               HeaderPolicy policy)
    : base_(TrimSlash(std::move(base_url))),
      client_(OrDefault(std::move(client))),
      policy_(policy) {}

absl::StatusOr<BlockHeader> SandboxHeaders::HeaderAt(int64_t height) {
  auto hex = Get(*client_, absl::StrCat(base_, "/_sandbox/blocks/", height, "/header"),
                 absl::StrCat("sandbox block ", height));
  if (!hex.ok()) return hex.status();
  auto raw = DecodeHeaderHex(*hex, absl::StrCat("sandbox block ", height, " header"));
  if (!raw.ok()) return raw.status();
  return ParseBlockHeader(height, *raw, {}, policy_);
}

// ---- MakeHeaderSource ----

absl::StatusOr<std::unique_ptr<BlockHeaderSource>> MakeHeaderSource(absl::string_view spec,
                                                                    Network network) {
  const HeaderPolicy policy = PolicyFor(network);
  if (absl::ConsumePrefix(&spec, "file:")) {
    auto f = LocalHeadersFile::Open(std::string(spec), policy);
    if (!f.ok()) return f.status();
    return std::unique_ptr<BlockHeaderSource>(std::move(*f));
  }
  if (absl::ConsumePrefix(&spec, "rest:")) {
    return std::unique_ptr<BlockHeaderSource>(
        new BitcoinCoreRest(std::string(spec), nullptr, policy));
  }
  if (absl::ConsumePrefix(&spec, "sandbox:")) {
    // The sandbox serves only its regtest-difficulty fake chain; naming it is the explicit choice.
    return std::unique_ptr<BlockHeaderSource>(
        new SandboxHeaders(std::string(spec), nullptr, HeaderPolicy::Regtest()));
  }
  if (absl::ConsumePrefix(&spec, "rpc:")) {
    std::vector<std::string> parts = absl::StrSplit(spec, ',');
    std::string url = parts.empty() ? "" : parts[0];
    std::string user, password, cookie;
    for (size_t i = 1; i < parts.size(); ++i) {
      absl::string_view p = parts[i];
      if (absl::ConsumePrefix(&p, "cookie=")) {
        cookie = std::string(p);
      } else if (absl::ConsumePrefix(&p, "user=")) {
        user = std::string(p);
      } else if (absl::ConsumePrefix(&p, "password=")) {
        password = std::string(p);
      } else {
        // Do not echo the part: it may hold a password with a typo in its key.
        return absl::InvalidArgumentError(
            absl::StrCat("header source rpc: option ", i, " is not cookie=, user= or password="));
      }
    }
    if (url.empty()) return absl::InvalidArgumentError("header source rpc: missing URL");
    auto rpc = BitcoinCoreRpc::Create(url, user, password, cookie, nullptr, policy);
    if (!rpc.ok()) return rpc.status();
    return std::unique_ptr<BlockHeaderSource>(std::move(*rpc));
  }
  return absl::InvalidArgumentError(
      "header source must be file:PATH, rest:URL, rpc:URL[,cookie=PATH|,user=U,password=P] or "
      "sandbox:URL");
}

}  // namespace anchord::ots
