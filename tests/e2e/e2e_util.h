// Small helpers shared by the end-to-end tests.
#pragma once

#include <openssl/evp.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/string_view.h"
#include "libs/common/hex.h"

namespace anchord::anchorctl::e2e {

inline std::string Sha256Hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return HexEncode(absl::string_view(reinterpret_cast<const char*>(md), len));
}

inline void WriteFile(const std::filesystem::path& p, const std::string& content) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << content;
}

// What a run of the anchorctl binary ended with.
struct RunResult {
  int exit_code = -1;
  std::string output;
};

}  // namespace anchord::anchorctl::e2e
