// ZIP reading and writing for evidence bundles, through libarchive.
//
// The reader never extracts anything to disk: it returns the regular entries' bytes in memory,
// under hard limits, and refuses (INVALID_ARGUMENT naming the entry) anything a hostile archive
// could use: more entries than max_entries, an entry declaring or delivering more than
// max_entry_bytes, more than max_total_bytes in all, names that are absolute, contain a ".."
// component, a backslash, a NUL or control character, or are empty; symbolic links, hard links
// and other non-regular entries (directories are skipped); the same name twice.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace anchord::bundle {

struct ZipLimits {
  size_t max_entries = 200000;
  size_t max_entry_bytes = 64u << 20;
  size_t max_total_bytes = 1u << 30;
  size_t max_name_bytes = 4096;
};

struct ZipEntry {
  std::string name;
  std::string data;
};

// A bundle file on disk (read through libarchive, never extracted).
absl::StatusOr<std::vector<ZipEntry>> ReadZipFile(const std::string& path,
                                                  const ZipLimits& limits = {});
// The same from bytes in memory (tests, the fuzzer).
absl::StatusOr<std::vector<ZipEntry>> ReadZipMemory(absl::string_view bytes,
                                                    const ZipLimits& limits = {});

// The entry-name rule above; INVALID_ARGUMENT naming the problem.
absl::Status CheckEntryName(absl::string_view name, size_t max_name_bytes = 4096);

// Writes a ZIP (deflate) to `path` through a temporary file renamed into place, so a reader never
// sees half a bundle. Entries are regular files, mode 0644, modification time `mtime`.
absl::Status WriteZipFile(const std::string& path, const std::vector<ZipEntry>& entries,
                          absl::Time mtime);

}  // namespace anchord::bundle
