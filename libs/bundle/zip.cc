#include "libs/bundle/zip.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>

#include <cstdio>
#include <memory>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace anchord::bundle {
namespace {

struct ReadFree {
  void operator()(archive* a) const { archive_read_free(a); }
};
struct WriteFree {
  void operator()(archive* a) const { archive_write_free(a); }
};
using ReadPtr = std::unique_ptr<archive, ReadFree>;

std::string Printable(absl::string_view s) {
  std::string out;
  for (char c : s.substr(0, 200)) {
    out.push_back(static_cast<unsigned char>(c) < 0x20 || c == 0x7f ? '?' : c);
  }
  if (s.size() > 200) out += "...";
  return out;
}

absl::StatusOr<std::vector<ZipEntry>> ReadAll(archive* a, const ZipLimits& limits) {
  std::vector<ZipEntry> out;
  std::set<std::string> seen;
  size_t total = 0;
  archive_entry* e = nullptr;
  for (size_t index = 0;; ++index) {
    int r = archive_read_next_header(a, &e);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
      const char* why = archive_error_string(a);
      return absl::InvalidArgumentError(
          absl::StrCat("zip: entry #", index + 1, ": ", why != nullptr ? why : "unreadable"));
    }
    if (index >= limits.max_entries) {
      return absl::InvalidArgumentError(
          absl::StrCat("zip: more than ", limits.max_entries, " entries"));
    }
    const char* raw = archive_entry_pathname(e);
    const std::string name = raw != nullptr ? raw : "";
    const std::string shown = Printable(name);
    const mode_t type = archive_entry_filetype(e);
    if (type == AE_IFDIR) {
      if (auto st = CheckEntryName(name, limits.max_name_bytes); !st.ok()) return st;
      continue;
    }
    if (archive_entry_symlink(e) != nullptr || type == AE_IFLNK) {
      return absl::InvalidArgumentError(
          absl::StrCat("zip: entry \"", shown, "\" is a symbolic link"));
    }
    if (archive_entry_hardlink(e) != nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("zip: entry \"", shown, "\" is a hard link"));
    }
    if (type != AE_IFREG) {
      return absl::InvalidArgumentError(
          absl::StrCat("zip: entry \"", shown, "\" is not a regular file"));
    }
    if (auto st = CheckEntryName(name, limits.max_name_bytes); !st.ok()) return st;
    if (!seen.insert(name).second) {
      return absl::InvalidArgumentError(absl::StrCat("zip: entry \"", shown, "\" appears twice"));
    }
    if (archive_entry_size_is_set(e)) {
      const int64_t declared = archive_entry_size(e);
      if (declared < 0 || static_cast<uint64_t>(declared) > limits.max_entry_bytes) {
        return absl::InvalidArgumentError(absl::StrCat("zip: entry \"", shown, "\" declares ",
                                                       declared, " bytes, more than the ",
                                                       limits.max_entry_bytes, " allowed"));
      }
    }
    ZipEntry entry;
    entry.name = name;
    char buf[64 * 1024];
    while (true) {
      la_ssize_t n = archive_read_data(a, buf, sizeof(buf));
      if (n == 0) break;
      if (n < 0) {
        const char* why = archive_error_string(a);
        return absl::InvalidArgumentError(
            absl::StrCat("zip: entry \"", shown, "\": ", why != nullptr ? why : "unreadable data"));
      }
      if (entry.data.size() + static_cast<size_t>(n) > limits.max_entry_bytes) {
        return absl::InvalidArgumentError(absl::StrCat("zip: entry \"", shown,
                                                       "\" is larger than the ",
                                                       limits.max_entry_bytes, " bytes allowed"));
      }
      total += static_cast<size_t>(n);
      if (total > limits.max_total_bytes) {
        return absl::InvalidArgumentError(absl::StrCat("zip: more than ", limits.max_total_bytes,
                                                       " bytes in all (at entry \"", shown, "\")"));
      }
      entry.data.append(buf, static_cast<size_t>(n));
    }
    out.push_back(std::move(entry));
  }
  return out;
}

ReadPtr NewReader() {
  ReadPtr a(archive_read_new());
  if (a) archive_read_support_format_zip(a.get());
  return a;
}

}  // namespace

absl::Status CheckEntryName(absl::string_view name, size_t max_name_bytes) {
  const std::string shown = Printable(name);
  if (name.empty()) return absl::InvalidArgumentError("zip: an entry has an empty name");
  if (name.size() > max_name_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "zip: entry \"", shown, "\" has a name longer than ", max_name_bytes, " bytes"));
  }
  if (name[0] == '/' || (name.size() >= 2 && name[1] == ':')) {
    return absl::InvalidArgumentError(
        absl::StrCat("zip: entry \"", shown, "\" has an absolute path"));
  }
  for (char c : name) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '\\') {
      return absl::InvalidArgumentError(absl::StrCat(
          "zip: entry \"", shown, "\" has a control character or backslash in its name"));
    }
  }
  for (absl::string_view part : absl::StrSplit(name, '/')) {
    if (part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat("zip: entry \"", shown, "\" has a \"..\" path component"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ZipEntry>> ReadZipFile(const std::string& path,
                                                  const ZipLimits& limits) {
  ReadPtr a = NewReader();
  if (!a) return absl::InternalError("zip: out of memory");
  if (archive_read_open_filename(a.get(), path.c_str(), 64 * 1024) != ARCHIVE_OK) {
    const char* why = archive_error_string(a.get());
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a readable ZIP (", why != nullptr ? why : "unknown", ")"));
  }
  return ReadAll(a.get(), limits);
}

absl::StatusOr<std::vector<ZipEntry>> ReadZipMemory(absl::string_view bytes,
                                                    const ZipLimits& limits) {
  ReadPtr a = NewReader();
  if (!a) return absl::InternalError("zip: out of memory");
  if (archive_read_open_memory(a.get(), bytes.data(), bytes.size()) != ARCHIVE_OK) {
    const char* why = archive_error_string(a.get());
    return absl::InvalidArgumentError(
        absl::StrCat("zip: not a readable ZIP (", why != nullptr ? why : "unknown", ")"));
  }
  return ReadAll(a.get(), limits);
}

absl::Status WriteZipFile(const std::string& path, const std::vector<ZipEntry>& entries,
                          absl::Time mtime) {
  const std::string tmp = path + ".tmp";
  {
    std::unique_ptr<archive, WriteFree> a(archive_write_new());
    if (!a) return absl::InternalError("zip: out of memory");
    archive_write_set_format_zip(a.get());
    archive_write_set_options(a.get(), "zip:compression=deflate");
    if (archive_write_open_filename(a.get(), tmp.c_str()) != ARCHIVE_OK) {
      return absl::InternalError(absl::StrCat(tmp, ": ", archive_error_string(a.get())));
    }
    std::set<std::string> seen;
    for (const ZipEntry& z : entries) {
      if (auto st = CheckEntryName(z.name); !st.ok()) return st;
      if (!seen.insert(z.name).second) {
        return absl::InternalError(absl::StrCat("zip: entry \"", z.name, "\" written twice"));
      }
      std::unique_ptr<archive_entry, void (*)(archive_entry*)> e(archive_entry_new(),
                                                                 archive_entry_free);
      archive_entry_set_pathname(e.get(), z.name.c_str());
      archive_entry_set_filetype(e.get(), AE_IFREG);
      archive_entry_set_perm(e.get(), 0644);
      archive_entry_set_size(e.get(), static_cast<la_int64_t>(z.data.size()));
      archive_entry_set_mtime(e.get(), absl::ToTimeT(mtime), 0);
      if (archive_write_header(a.get(), e.get()) != ARCHIVE_OK ||
          (!z.data.empty() && archive_write_data(a.get(), z.data.data(), z.data.size()) !=
                                  static_cast<la_ssize_t>(z.data.size()))) {
        return absl::InternalError(
            absl::StrCat("zip: writing \"", z.name, "\": ", archive_error_string(a.get())));
      }
    }
    if (archive_write_close(a.get()) != ARCHIVE_OK) {
      return absl::InternalError(absl::StrCat(tmp, ": ", archive_error_string(a.get())));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return absl::InternalError(absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

}  // namespace anchord::bundle
