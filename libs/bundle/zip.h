// ZIP reading and writing for evidence bundles, through libarchive.
//
// The reader never extracts anything to disk: it hands over the regular entries' bytes in memory,
// one entry at a time (ForEachZipEntry) or all at once (ReadZipFile, ReadZipMemory), under hard
// limits, and refuses (INVALID_ARGUMENT naming the entry) anything a hostile archive
// could use: more entries than max_entries, an entry declaring or delivering more than
// max_entry_bytes, more than max_total_bytes in all, names that are absolute, contain a ".."
// component, a backslash, a NUL or control character, or are empty; symbolic links, hard links
// and other non-regular entries (directories are skipped); the same name twice.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/numeric/int128.h"
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

// Walks a ZIP file on disk entry by entry, checking every entry as above. The bytes of an entry
// `want` accepts are read (under the limits) and handed to `on_entry`, one entry in memory at a
// time; the others are checked by name and declared size and skipped unread. An error from
// `on_entry` ends the walk and is returned. An archive of a million entries thus costs one entry's
// bytes plus the set of names seen. Read through the ZIP's central directory (libarchive's
// seekable reader): an archive without one is refused.
using WantEntry = std::function<bool(const std::string& name)>;
using OnEntry = std::function<absl::Status(const std::string& name, std::string data)>;
absl::Status ForEachZipEntry(const std::string& path, const ZipLimits& limits,
                             const WantEntry& want, const OnEntry& on_entry);

// A bundle file on disk (read through libarchive, never extracted), every entry in memory.
absl::StatusOr<std::vector<ZipEntry>> ReadZipFile(const std::string& path,
                                                  const ZipLimits& limits = {});
// The same from bytes in memory (tests, the fuzzer).
absl::StatusOr<std::vector<ZipEntry>> ReadZipMemory(absl::string_view bytes,
                                                    const ZipLimits& limits = {});

// A set of names (entries, paths) kept as 128-bit fingerprints (two independent 64-bit hashes)
// rather than strings: a million names cost about 16 MiB, not a hundred, and two different names
// share a fingerprint with a probability of about 2^-88 at that count. A collision can only make
// a reader refuse an archive ("appears twice"), never let a repeated name through.
class NameSet {
 public:
  // False when `name` was inserted before.
  bool Insert(absl::string_view name);
  bool Contains(absl::string_view name) const;

 private:
  static absl::uint128 Fingerprint(absl::string_view name);
  absl::flat_hash_set<absl::uint128> seen_;
};

// The entry-name rule above; INVALID_ARGUMENT naming the problem.
absl::Status CheckEntryName(absl::string_view name, size_t max_name_bytes = 4096);

// Writes a ZIP (deflate), entry by entry, through an AtomicFileWriter (libs/common/atomic_file.h):
// Commit() syncs it and renames it into place, so a reader never sees half a bundle; destroyed
// without a Commit(), the temporary file is removed. Entries are regular files, mode 0644,
// modification time `mtime`; their names must pass CheckEntryName and be unique. Only the entry
// being written is in memory: a bundle of a million proofs is written as they arrive. Past 65,535
// entries or 4 GiB libarchive writes the ZIP64 records.
class ZipWriter {
 public:
  static absl::StatusOr<std::unique_ptr<ZipWriter>> Create(const std::string& path,
                                                           absl::Time mtime);
  ~ZipWriter();
  ZipWriter(const ZipWriter&) = delete;
  ZipWriter& operator=(const ZipWriter&) = delete;

  absl::Status Add(const std::string& name, absl::string_view data);
  // An entry holding the bytes of the open file `fd` from its start (a spool), copied 64 KiB at a
  // time; `size` is its length.
  absl::Status AddFromFd(const std::string& name, int fd, uint64_t size);
  absl::Status Commit();

 private:
  struct State;
  explicit ZipWriter(absl::Time mtime);
  absl::Status Begin(const std::string& name, uint64_t size);
  absl::Status Write(const std::string& name, absl::string_view data);

  const absl::Time mtime_;
  std::unique_ptr<State> state_;
  bool committed_ = false;
};

// All of `entries` through a ZipWriter.
absl::Status WriteZipFile(const std::string& path, const std::vector<ZipEntry>& entries,
                          absl::Time mtime);

}  // namespace anchord::bundle
