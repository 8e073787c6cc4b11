// Hand-built ZIP archives for hostile-input tests: any entry name, Unix mode (symlinks) and
// declared size (zip64 when it does not fit 32 bits), entries stored (uncompressed). Product code
// writes ZIPs with libarchive; only a test needs archives libarchive would never write.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace anchord::bundle::testing {

struct RawEntry {
  std::string name;
  std::string data;
  uint64_t declared_size = UINT64_MAX;  // UINT64_MAX: data.size()
  uint32_t unix_mode = 0100644;         // 0120777 for a symlink (data = its target)
};

inline uint32_t Crc32(const std::string& s) {
  uint32_t c = 0xffffffffu;
  for (unsigned char b : s) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return ~c;
}

inline void Le(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

inline std::string BuildZip(const std::vector<RawEntry>& entries) {
  std::string out, central;
  for (const RawEntry& e : entries) {
    const uint64_t size = e.declared_size == UINT64_MAX ? e.data.size() : e.declared_size;
    const bool zip64 = size >= 0xffffffffu;
    std::string extra;
    if (zip64) {
      Le(&extra, 0x0001, 2);
      Le(&extra, 16, 2);
      Le(&extra, size, 8);  // uncompressed
      Le(&extra, size, 8);  // compressed
    }
    const uint64_t offset = out.size();
    const uint32_t crc = Crc32(e.data);
    Le(&out, 0x04034b50, 4);
    Le(&out, zip64 ? 45 : 20, 2);
    Le(&out, 0, 2);  // flags
    Le(&out, 0, 2);  // stored
    Le(&out, 0, 4);  // time, date
    Le(&out, crc, 4);
    Le(&out, zip64 ? 0xffffffffu : size, 4);
    Le(&out, zip64 ? 0xffffffffu : size, 4);
    Le(&out, e.name.size(), 2);
    Le(&out, extra.size(), 2);
    out += e.name;
    out += extra;
    out += e.data;
    Le(&central, 0x02014b50, 4);
    Le(&central, (3 << 8) | 45, 2);  // made by Unix
    Le(&central, zip64 ? 45 : 20, 2);
    Le(&central, 0, 2);
    Le(&central, 0, 2);
    Le(&central, 0, 4);
    Le(&central, crc, 4);
    Le(&central, zip64 ? 0xffffffffu : size, 4);
    Le(&central, zip64 ? 0xffffffffu : size, 4);
    Le(&central, e.name.size(), 2);
    Le(&central, extra.size(), 2);
    Le(&central, 0, 2);  // comment
    Le(&central, 0, 2);  // disk
    Le(&central, 0, 2);  // internal attributes
    Le(&central, static_cast<uint64_t>(e.unix_mode) << 16, 4);
    Le(&central, offset, 4);
    central += e.name;
    central += extra;
  }
  const uint64_t cd_offset = out.size();
  out += central;
  Le(&out, 0x06054b50, 4);
  Le(&out, 0, 4);
  Le(&out, entries.size(), 2);
  Le(&out, entries.size(), 2);
  Le(&out, central.size(), 4);
  Le(&out, cd_offset, 4);
  Le(&out, 0, 2);
  return out;
}

}  // namespace anchord::bundle::testing
