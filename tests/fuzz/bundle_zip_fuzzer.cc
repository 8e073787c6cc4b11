// libFuzzer target for the bundle ZIP reader (libs/bundle, libarchive underneath). Properties
// besides "no crash, no sanitizer report, bounded memory": every entry returned has a safe name
// (CheckEntryName), names are unique, and the limits hold.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>

#include "absl/strings/string_view.h"
#include "libs/bundle/zip.h"

namespace {

[[noreturn]] void Fail(const char* what) {
  fprintf(stderr, "bundle_zip_fuzzer: property violated: %s\n", what);
  abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace anchord::bundle;
  ZipLimits limits;
  limits.max_entries = 64;
  limits.max_entry_bytes = 1 << 20;
  limits.max_total_bytes = 4 << 20;
  auto entries =
      ReadZipMemory(absl::string_view(reinterpret_cast<const char*>(data), size), limits);
  if (!entries.ok()) {
    if (entries.status().message().empty()) Fail("error without a message");
    return 0;
  }
  std::set<std::string> names;
  size_t total = 0;
  if (entries->size() > limits.max_entries) Fail("entry limit");
  for (const ZipEntry& e : *entries) {
    if (!CheckEntryName(e.name).ok()) Fail("unsafe name returned");
    if (!names.insert(e.name).second) Fail("duplicate name returned");
    if (e.data.size() > limits.max_entry_bytes) Fail("entry size limit");
    total += e.data.size();
  }
  if (total > limits.max_total_bytes) Fail("total size limit");
  return 0;
}
