#include "libs/digest/digest.h"

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "libs/common/hex.h"
#include "libs/common/validate.h"

namespace anchord {

absl::StatusOr<Digest> Digest::FromBytes(absl::string_view raw, absl::string_view field) {
  if (absl::Status s = ValidateDigest(raw, field); !s.ok()) return s;
  Array bytes;
  std::memcpy(bytes.data(), raw.data(), kSize);
  return Digest(bytes);
}

absl::StatusOr<Digest> Digest::FromHex(absl::string_view hex, absl::string_view field) {
  if (hex.size() != 2 * kSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": a SHA-256 digest must be exactly 64 hex characters, got ", hex.size()));
  }
  absl::StatusOr<std::string> raw = HexDecode(hex, field);
  if (!raw.ok()) return raw.status();
  return FromBytes(*raw, field);
}

std::string Digest::hex() const { return HexEncode(bytes()); }

}  // namespace anchord
