// Hex encoding of digests and other binary values.
#pragma once

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace anchord {

// Lowercase hex of `bytes`.
std::string HexEncode(absl::string_view bytes);
// Decodes hex (either case). InvalidArgument naming `field` on odd length or a non-hex character.
absl::StatusOr<std::string> HexDecode(absl::string_view hex, absl::string_view field = "hex");
// True for exactly 64 hex characters (either case).
bool IsSha256Hex(absl::string_view hex);

}  // namespace anchord
