#include "services/poller/ots_check.h"

#include "absl/strings/str_cat.h"
#include "libs/ots/ots.h"
#include "libs/tsa/tsa.h"

namespace anchord::poller {
namespace {
constexpr char kMagic[] = "\x00OpenTimestamps\x00\x00Proof\x00\xbf\x89\xe2\xe8\x84\xe8\x92\x94";
constexpr size_t kMagicLen = sizeof(kMagic) - 1;  // 31
static_assert(kMagicLen == 31);
constexpr size_t kHeaderLen = kMagicLen + 1 + 1 + 32;  // magic, version, op, digest = 65
}  // namespace

absl::Status CheckOtsFile(absl::string_view ots, const Digest& digest) {
  if (ots.size() > kMaxOtsBytes) {
    return absl::DataLossError(absl::StrCat(".ots too large: ", ots.size(), " bytes"));
  }
  if (ots.size() <= kHeaderLen) {
    return absl::DataLossError(absl::StrCat(".ots truncated: ", ots.size(), " bytes"));
  }
  if (ots.substr(0, kMagicLen) != absl::string_view(kMagic, kMagicLen)) {
    return absl::DataLossError(".ots does not start with the OpenTimestamps magic");
  }
  if (static_cast<unsigned char>(ots[kMagicLen]) != 0x01) {
    return absl::DataLossError(absl::StrCat(".ots has unsupported major version ",
                                            static_cast<unsigned char>(ots[kMagicLen])));
  }
  if (static_cast<unsigned char>(ots[kMagicLen + 1]) != 0x08) {
    return absl::DataLossError(".ots file-hash op is not sha256 (0x08)");
  }
  if (ots.substr(kMagicLen + 2, 32) != digest.bytes()) {
    return absl::DataLossError(".ots is for a different digest");
  }
  // The whole proof must parse (every op, attestation and limit of libs/ots), so nothing stored
  // can fail a later verify for being malformed.
  absl::StatusOr<ots::DetachedFile> parsed = ots::ParseDetached(ots);
  if (!parsed.ok()) {
    return absl::DataLossError(absl::StrCat(".ots is malformed: ", parsed.status().message()));
  }
  return absl::OkStatus();
}

absl::Status CheckEvidence(absl::string_view evidence, const Digest& digest) {
  if (evidence.substr(0, kMagicLen) == absl::string_view(kMagic, kMagicLen) ||
      !tsa::LooksLikeTsr(evidence)) {
    return CheckOtsFile(evidence, digest);
  }
  absl::StatusOr<tsa::TokenInfo> info = tsa::Inspect(evidence);
  if (!info.ok())
    return absl::DataLossError(absl::StrCat(".tsr rejected: ", info.status().message()));
  if (info->hash_algorithm != "SHA256" || info->imprint != digest.bytes()) {
    return absl::DataLossError(".tsr is for a different digest");
  }
  return absl::OkStatus();
}

}  // namespace anchord::poller
