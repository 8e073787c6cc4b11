// Helpers shared by the submitter tests: temp dirs, a scripted fake Provider.
#pragma once

#include <stdlib.h>

#include <algorithm>
#include <deque>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "libs/providers/provider.h"
#include "services/submitter/submitter_store.h"
#include "tests/testing/fake_provider.h"

namespace anchord::submitter::testing {

inline std::string MakeTempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "submitter_test_XXXXXX").string();
  char* p = mkdtemp(tmpl.data());
  return p ? std::string(p) : std::string();
}

inline std::string Digest(char c) { return std::string(32, c); }
// Digest(c) as the type the store takes.
inline ::anchord::Digest DigestOf(char c) {
  ::anchord::Digest::Array a;
  a.fill(static_cast<uint8_t>(c));
  return ::anchord::Digest(a);
}

inline NewItem Item(char c, const std::string& path, const std::string& provider = "fake",
                    const std::string& job = "default") {
  NewItem it;
  it.digest = DigestOf(c);
  it.file.job = job;
  it.file.source_path = path;
  it.file.filename = std::filesystem::path(path).filename().string();
  it.file.size_bytes = 10;
  it.file.mime_type = "text/plain";
  it.providers = {provider};
  return it;
}

// A deterministic provider: Create answers from a script (kOk with a record when empty) and
// records every request it was sent.
using ::anchord::testing::FakeProvider;

}  // namespace anchord::submitter::testing
