#include "libs/tsa/path_form.h"

#include "absl/strings/str_cat.h"
#include "libs/merkle/merkle.h"
#include "libs/tsa/tsa.h"

namespace anchord::tsa {

bool IsPathForm(absl::string_view bytes) {
  return bytes.size() >= kPathFormMagicSize &&
         bytes.substr(0, kPathFormMagicSize) ==
             absl::string_view(kPathFormMagic, kPathFormMagicSize);
}

absl::StatusOr<std::string> EncodePathForm(const Digest& digest, absl::string_view path,
                                           absl::string_view tsr) {
  if (auto root = merkle::PathRoot(digest, path); !root.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("tsrm: path: ", root.status().message()));
  }
  if (path.size() > 0xffff) return absl::InvalidArgumentError("tsrm: path too long");
  if (tsr.empty() || tsr.size() > kMaxTsrBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("tsrm: tsr must be 1..", kMaxTsrBytes, " bytes"));
  }
  std::string out(kPathFormMagic, kPathFormMagicSize);
  out.append(digest.bytes().data(), digest.bytes().size());
  out.push_back(static_cast<char>(path.size() >> 8));
  out.push_back(static_cast<char>(path.size() & 0xff));
  out.append(path.data(), path.size());
  const uint32_t n = static_cast<uint32_t>(tsr.size());
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((n >> shift) & 0xff));
  out.append(tsr.data(), tsr.size());
  return out;
}

absl::StatusOr<PathForm> DecodePathForm(absl::string_view bytes) {
  if (bytes.size() > kMaxPathFormBytes) {
    return absl::InvalidArgumentError(absl::StrCat("tsrm: ", bytes.size(), " bytes, more than the ",
                                                   kMaxPathFormBytes, " accepted"));
  }
  if (!IsPathForm(bytes)) {
    return absl::InvalidArgumentError("tsrm: offset 0: not the ANCHORD-TSRM v1 magic");
  }
  size_t pos = kPathFormMagicSize;
  auto need = [&](size_t n) { return bytes.size() - pos >= n; };
  if (!need(32 + 2))
    return absl::InvalidArgumentError(absl::StrCat("tsrm: offset ", pos, ": truncated"));
  PathForm f;
  f.digest = *Digest::FromBytes(bytes.substr(pos, 32));  // need() checked the 32 bytes
  pos += 32;
  const size_t plen =
      (static_cast<unsigned char>(bytes[pos]) << 8) | static_cast<unsigned char>(bytes[pos + 1]);
  pos += 2;
  if (!need(plen + 4)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tsrm: offset ", pos, ": path of ", plen, " bytes truncated"));
  }
  f.path = std::string(bytes.substr(pos, plen));
  auto root = merkle::PathRoot(f.digest, f.path);
  if (!root.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tsrm: offset ", pos, ": path: ", root.status().message()));
  }
  f.root = *std::move(root);
  pos += plen;
  uint32_t tlen = 0;
  for (int i = 0; i < 4; ++i) tlen = (tlen << 8) | static_cast<unsigned char>(bytes[pos + i]);
  pos += 4;
  if (tlen == 0 || bytes.size() - pos != tlen) {
    return absl::InvalidArgumentError(absl::StrCat("tsrm: offset ", pos, ": tsr length ", tlen,
                                                   " but ", bytes.size() - pos, " bytes follow"));
  }
  f.tsr = std::string(bytes.substr(pos));
  return f;
}

}  // namespace anchord::tsa
