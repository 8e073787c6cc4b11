#include "libs/common/build_info.h"

#include <cstddef>

#include "absl/strings/str_cat.h"

// Defined only when jemalloc is linked in (CMake option ANCHORD_JEMALLOC); weak, so a binary
// without it still links and the pointer is null.
extern "C" int mallctl(const char* name, void* oldp, size_t* oldlenp, void* newp, size_t newlen)
    __attribute__((weak));

namespace anchord {

std::string BuildInfo() {
  std::string allocator = "system malloc";
  if (mallctl != nullptr) {
    const char* version = nullptr;
    size_t len = sizeof(version);
    if (mallctl("version", &version, &len, nullptr, 0) == 0 && version != nullptr) {
      allocator = absl::StrCat("jemalloc ", version);
      // The options of jemalloc_conf.cc, as the allocator took them.
      size_t oversize = 0;
      len = sizeof(oversize);
      if (mallctl("opt.oversize_threshold", &oversize, &len, nullptr, 0) == 0) {
        absl::StrAppend(&allocator, ", oversize_threshold ", oversize);
      }
      const char* thp = nullptr;
      len = sizeof(thp);
      if (mallctl("opt.thp", &thp, &len, nullptr, 0) == 0 && thp != nullptr) {
        absl::StrAppend(&allocator, ", thp ", thp);
      }
      unsigned arenas = 0;
      len = sizeof(arenas);
      if (mallctl("opt.narenas", &arenas, &len, nullptr, 0) == 0) {
        absl::StrAppend(&allocator, ", narenas ", arenas);
      }
    }
  }
  return absl::StrCat("anchord ", ANCHORD_VERSION, " (allocator: ", allocator, ")");
}

}  // namespace anchord
