#include "services/anchorctl/proof_check.h"

#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "libs/common/hex.h"
#include "libs/digest/digest.h"
#include "libs/digest/sha256.h"
#include "libs/tsa/path_form.h"

namespace anchord::anchorctl {
namespace {
constexpr char kOtsMagic[] = "\x00OpenTimestamps\x00\x00Proof\x00";
constexpr size_t kOtsMagicPrefix = 22;

// The token checks of this process, by what decides them. Every leaf of a Merkle batch carries
// its root's token, so `bundle`, `report` and `verify-bundle` over a batched job asked OpenSSL to
// check the same token (its CMS signature, its certificate chain: about 0.5 ms) once per file;
// remembered, it is checked once per root. Bounded: past the bound the memory starts again.
class TokenChecks {
 public:
  static TokenChecks& Get() {
    static TokenChecks* checks = new TokenChecks();
    return *checks;
  }
  // The key: the token, the digest it must cover, whether it was reached through a Merkle path
  // (the message names the root), and the trust given.
  static std::string Key(absl::string_view tsr, const Digest& covered, bool path_form,
                         absl::string_view ca_pem, absl::string_view untrusted_pem) {
    digest::Sha256 h;
    for (absl::string_view part :
         {tsr, covered.bytes(), absl::string_view(path_form ? "m" : "t"), ca_pem, untrusted_pem}) {
      const uint64_t n = part.size();
      h.Update(absl::string_view(reinterpret_cast<const char*>(&n), sizeof(n)));
      h.Update(part);
    }
    return h.Finish().raw();
  }
  std::optional<TsaCheck> Find(const std::string& key) {
    absl::MutexLock lock(&mu_);
    auto it = checks_.find(key);
    if (it == checks_.end()) return std::nullopt;
    return it->second;
  }
  void Put(std::string key, const TsaCheck& check) {
    absl::MutexLock lock(&mu_);
    if (checks_.size() >= kMax) checks_.clear();
    checks_.emplace(std::move(key), check);
  }

 private:
  static constexpr size_t kMax = 4096;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, TsaCheck> checks_ ABSL_GUARDED_BY(mu_);
};

// The checks of the token itself (everything after the Merkle path), which depend only on the key.
TsaCheck CheckToken(const std::string& tsr, const Digest& digest, const Digest& covered,
                    const std::string& root_hex, const std::string& ca_pem,
                    const std::string& untrusted_pem);

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
  const std::string key =
      TokenChecks::Key(tsr, covered, !r.root_hex.empty(), ca_pem, untrusted_pem);
  if (std::optional<TsaCheck> known = TokenChecks::Get().Find(key)) return *std::move(known);
  TsaCheck checked = CheckToken(tsr, digest, covered, r.root_hex, ca_pem, untrusted_pem);
  TokenChecks::Get().Put(key, checked);
  return checked;
}

namespace {

TsaCheck CheckToken(const std::string& tsr, const Digest& digest, const Digest& covered,
                    const std::string& root_hex, const std::string& ca_pem,
                    const std::string& untrusted_pem) {
  TsaCheck r;
  r.root_hex = root_hex;
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

}  // namespace

}  // namespace anchord::anchorctl
