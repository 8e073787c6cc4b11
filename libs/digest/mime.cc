#include "libs/digest/mime.h"

#include "absl/strings/ascii.h"

namespace anchord::digest {

std::string GuessMimeType(absl::string_view filename) {
  struct Entry {
    const char* ext;
    const char* mime;
  };
  static constexpr Entry kTable[] = {
      {"pdf", "application/pdf"},
      {"jpg", "image/jpeg"},
      {"jpeg", "image/jpeg"},
      {"png", "image/png"},
      {"gif", "image/gif"},
      {"tif", "image/tiff"},
      {"tiff", "image/tiff"},
      {"txt", "text/plain"},
      {"md", "text/markdown"},
      {"html", "text/html"},
      {"xml", "application/xml"},
      {"json", "application/json"},
      {"csv", "text/csv"},
      {"doc", "application/msword"},
      {"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
      {"xls", "application/vnd.ms-excel"},
      {"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
      {"pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"},
      {"odt", "application/vnd.oasis.opendocument.text"},
      {"mp3", "audio/mpeg"},
      {"wav", "audio/wav"},
      {"mp4", "video/mp4"},
      {"mov", "video/quicktime"},
      {"zip", "application/zip"},
      {"gz", "application/gzip"},
      {"tar", "application/x-tar"},
      {"eml", "message/rfc822"},
  };
  size_t slash = filename.rfind('/');
  absl::string_view base = slash == absl::string_view::npos ? filename : filename.substr(slash + 1);
  size_t dot = base.rfind('.');
  // No dot, or a leading dot only (".bashrc"): no extension.
  if (dot == absl::string_view::npos || dot == 0 || dot + 1 == base.size()) return "";
  std::string ext = absl::AsciiStrToLower(base.substr(dot + 1));
  for (const Entry& e : kTable) {
    if (ext == e.ext) return e.mime;
  }
  return "";
}

}  // namespace anchord::digest
