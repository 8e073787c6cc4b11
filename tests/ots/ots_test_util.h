// Helpers shared by the verification / upgrade / info tests.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "libs/ots/headers.h"
#include "libs/ots/ots.h"
#include "tests/testing/temp_dir.h"

namespace anchord::ots::testing_util {

inline std::string VectorsDir() { return ANCHORD_OTS_VECTORS_DIR; }
inline std::string Vector(const std::string& rel) { return VectorsDir() + "/" + rel; }

inline std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void WriteAll(const std::string& path, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

inline std::string Hex(absl::string_view b) { return absl::BytesToHexString(b); }
inline std::string Unhex(absl::string_view h) { return absl::HexStringToBytes(h); }
inline std::string Rev(absl::string_view b) { return std::string(b.rbegin(), b.rend()); }

using ::anchord::testing::TempDir;

inline void PutLe32(uint32_t v, std::string* out) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// Mines an 80-byte header with regtest bits 0x207fffff (about every second nonce meets it) whose
// merkle root is `root` (internal order).
inline std::string MineRegtestHeader(absl::string_view root, uint32_t time) {
  std::string prefix;
  PutLe32(0x20000000, &prefix);
  prefix += std::string(32, '\x11');
  prefix += std::string(root);
  PutLe32(time, &prefix);
  PutLe32(0x207fffff, &prefix);
  for (uint32_t nonce = 0; nonce < 10000; ++nonce) {
    std::string h = prefix;
    PutLe32(nonce, &h);
    if (ParseBlockHeader(0, h, {}, HeaderPolicy::Regtest()).ok()) return h;
  }
  return "";
}

// A header source over mined regtest headers: stands in for a node when the vectors carry a block's
// merkle root but no raw header. Headers still go through ParseBlockHeader like any source.
class FakeChain : public BlockHeaderSource {
 public:
  void Add(int64_t height, absl::string_view root, uint32_t time) {
    headers_[height] = MineRegtestHeader(root, time);
  }
  void AddRaw(int64_t height, std::string raw) { headers_[height] = std::move(raw); }
  absl::StatusOr<BlockHeader> HeaderAt(int64_t height) override {
    ++lookups;
    auto it = headers_.find(height);
    if (it == headers_.end()) return absl::NotFoundError(absl::StrCat("no block ", height));
    return ParseBlockHeader(height, it->second, {}, HeaderPolicy::Regtest());
  }
  std::string Describe() const override { return "fake chain"; }
  bool regtest() const override { return true; }
  int lookups = 0;

 private:
  std::map<int64_t, std::string> headers_;
};

inline constexpr char kHeader358391[] =
    "02000000b96394585a281b7e5f438fd1c9ed492645a1fd61cb3802040000000000000000007ee445d23ad061af4a"
    "36b809501fab1ac4f2d7e7a739817dd0cbb7ec661b8a1e376755f58616186272def6";
inline constexpr char kHash358391[] =
    "000000000000000003e892881a8cdcdc117c06d444057c98b6f04a9ee75a2319";

}  // namespace anchord::ots::testing_util
