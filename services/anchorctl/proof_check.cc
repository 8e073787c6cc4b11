#include "services/anchorctl/proof_check.h"

#include "absl/strings/str_cat.h"
#include "libs/common/hex.h"
#include "libs/digest/digest.h"
#include "libs/tsa/path_form.h"

namespace anchord::anchorctl {
namespace {
constexpr char kOtsMagic[] = "\x00OpenTimestamps\x00\x00Proof\x00";
constexpr size_t kOtsMagicPrefix = 22;
}  // namespace

ProofFormat DetectProofFormat(absl::string_view bytes) {
  if (bytes.size() >= kOtsMagicPrefix &&
      bytes.substr(0, kOtsMagicPrefix) == absl::string_view(kOtsMagic, kOtsMagicPrefix)) {
    return ProofFormat::kOts;
  }
  if (tsa::IsPathForm(bytes)) return ProofFormat::kTsrPath;
  if (tsa::LooksLikeTsr(bytes)) return ProofFormat::kTsr;
  return ProofFormat::kUnknown;
}

const char* ProofFormatName(ProofFormat f) {
  switch (f) {
    case ProofFormat::kOts:
      return "ots";
    case ProofFormat::kTsr:
      return "tsr";
    case ProofFormat::kTsrPath:
      return "tsrm";
    case ProofFormat::kUnknown:
      break;
  }
  return "unknown";
}

const char* ProofExtension(ProofFormat f) {
  switch (f) {
    case ProofFormat::kOts:
      return ".ots";
    case ProofFormat::kTsr:
      return ".tsr";
    case ProofFormat::kTsrPath:
      return ".tsrm";
    case ProofFormat::kUnknown:
      break;
  }
  return ".bin";
}

TsaCheck CheckTsaProof(absl::string_view proof, const Digest& digest, const std::string& ca_pem,
                       const std::string& untrusted_pem) {
  TsaCheck r;
  std::string tsr(proof);
  Digest covered = digest;
  if (tsa::IsPathForm(proof)) {
    auto form = tsa::DecodePathForm(proof);
    if (!form.ok()) {
      r.message = std::string(form.status().message());
      return r;
    }
    if (form->digest != digest) {
      r.exit = 3;
      r.message = absl::StrCat("the proof is for another file (digest ", form->digest.hex(),
                               ", the file's is ", digest.hex(), ")");
      return r;
    }
    r.root_hex = form->root.hex();
    tsr = std::move(form->tsr);
    covered = form->root;
  }
  auto info = tsa::Inspect(tsr);
  if (!info.ok()) {
    r.exit = absl::IsFailedPrecondition(info.status()) ? 3 : 2;
    r.message = std::string(info.status().message());
    return r;
  }
  r.info = *info;
  if (info->imprint != covered.bytes()) {
    r.exit = 3;
    r.message = r.root_hex.empty() ? absl::StrCat("the token is for other data (imprint ",
                                                  HexEncode(info->imprint),
                                                  ", the file's digest is ", digest.hex(), ")")
                                   : absl::StrCat("the token is not over the Merkle root ",
                                                  r.root_hex, " the path leads to");
    return r;
  }
  if (ca_pem.empty()) {
    r.exit = 1;
    r.message =
        "the token matches the file but its signature was not checked: no trust anchors "
        "(--tsa-ca-file)";
    return r;
  }
  tsa::VerifyOptions vo;
  vo.expected_digest = covered;
  auto verified = tsa::Verify(tsr, tsa::Trust{ca_pem, untrusted_pem}, vo);
  if (!verified.ok()) {
    r.exit = absl::IsInvalidArgument(verified.status()) ? 2 : 3;
    r.message = std::string(verified.status().message());
    return r;
  }
  r.exit = 0;
  r.info = *verified;
  r.message = absl::StrCat(
      "Success! RFC 3161 token of ", verified->tsa_name, " at ",
      absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", verified->gen_time, absl::UTCTimeZone()),
      r.root_hex.empty() ? "" : absl::StrCat(" over Merkle root ", r.root_hex));
  return r;
}

}  // namespace anchord::anchorctl
