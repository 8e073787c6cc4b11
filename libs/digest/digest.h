// Digest: a SHA-256 value as a type, so a signature says what a comment used to ("raw 32 bytes" or
// "64 hex characters"). It always holds exactly 32 bytes; text enters only through FromBytes or
// FromHex, which check it and name the offending field, and leaves as bytes() or hex().
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace anchord {

class Digest {
 public:
  static constexpr size_t kSize = 32;
  using Array = std::array<uint8_t, kSize>;

  // All zero bytes: a placeholder for a member that is assigned later, never a real digest.
  Digest() : bytes_{} {}
  // Exactly 32 bytes by type (e.g. a hash function's output), so nothing to check.
  explicit Digest(const Array& bytes) : bytes_(bytes) {}

  // From raw bytes. INVALID_ARGUMENT "<field>: a SHA-256 digest must be exactly 32 bytes, got N"
  // (ValidateDigest's wording) for any other size.
  static absl::StatusOr<Digest> FromBytes(absl::string_view raw,
                                          absl::string_view field = "digest");
  // From 64 hex characters, either case. INVALID_ARGUMENT naming `field` for another length or a
  // non-hex character.
  static absl::StatusOr<Digest> FromHex(absl::string_view hex, absl::string_view field = "digest");

  // The 32 raw bytes; valid as long as this Digest is.
  absl::string_view bytes() const {
    return absl::string_view(reinterpret_cast<const char*>(bytes_.data()), kSize);
  }
  // The 32 raw bytes as a string (for protobuf fields and stores that hold bytes).
  std::string raw() const { return std::string(bytes()); }
  // Lowercase hex, 64 characters.
  std::string hex() const;
  const Array& array() const { return bytes_; }

  friend bool operator==(const Digest&, const Digest&) = default;
  friend std::strong_ordering operator<=>(const Digest&, const Digest&) = default;

  template <typename H>
  friend H AbslHashValue(H h, const Digest& d) {
    return H::combine(std::move(h), d.bytes());
  }

 private:
  Array bytes_;
};

}  // namespace anchord

template <>
struct std::hash<anchord::Digest> {
  size_t operator()(const anchord::Digest& d) const {
    return std::hash<std::string_view>()(std::string_view(d.bytes().data(), d.bytes().size()));
  }
};
