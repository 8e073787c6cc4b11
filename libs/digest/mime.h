// A small MIME type guess from the file extension (case-insensitive). The guess is metadata for
// reports only; nothing depends on it being right.
#pragma once

#include <string>

#include "absl/strings/string_view.h"

namespace anchord::digest {

// "application/pdf" for "a/Report.PDF"; "" when the extension is unknown or missing.
std::string GuessMimeType(absl::string_view filename);

}  // namespace anchord::digest
