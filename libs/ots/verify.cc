#include "libs/ots/verify.h"

#include <openssl/evp.h>

#include <fstream>
#include <map>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "libs/common/hex.h"

namespace anchord::ots {
namespace {

std::string Reversed(absl::string_view b) { return std::string(b.rbegin(), b.rend()); }

std::string FormatTime(int64_t t) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::FromUnixSeconds(t), absl::UTCTimeZone());
}

}  // namespace

const char* AttestationStatusName(AttestationStatus s) {
  switch (s) {
    case AttestationStatus::kVerified:
      return "VERIFIED";
    case AttestationStatus::kMismatch:
      return "MISMATCH";
    case AttestationStatus::kHeaderUnavailable:
      return "HEADER_UNAVAILABLE";
    case AttestationStatus::kPending:
      return "PENDING";
    case AttestationStatus::kUnsupported:
      return "UNSUPPORTED";
  }
  return "UNSUPPORTED";
}

const char* AttestationKindName(Attestation::Kind k) {
  switch (k) {
    case Attestation::Kind::kBitcoin:
      return "bitcoin";
    case Attestation::Kind::kLitecoin:
      return "litecoin";
    case Attestation::Kind::kEthereum:
      return "ethereum";
    case Attestation::Kind::kPending:
      return "pending";
    case Attestation::Kind::kUnknown:
      return "unknown";
  }
  return "unknown";
}

const char* VerdictName(Verdict v) {
  switch (v) {
    case Verdict::kVerified:
      return "VERIFIED";
    case Verdict::kDigestMismatch:
      return "DIGEST_MISMATCH";
    case Verdict::kMismatch:
      return "MISMATCH";
    case Verdict::kNotVerifiable:
      return "NOT_VERIFIABLE";
  }
  return "NOT_VERIFIABLE";
}

VerifyResult Verify(const DetachedFile& proof, absl::string_view file_digest,
                    BlockHeaderSource* headers) {
  VerifyResult res;
  res.file_hash_op = proof.file_hash_op.name();
  res.proof_digest = proof.digest;
  res.file_digest = std::string(file_digest);
  res.digest_checked = !file_digest.empty();
  res.digest_matches = res.digest_checked && file_digest == proof.digest;
  res.regtest_headers = headers != nullptr && headers->regtest();
  if (proof.timestamp == nullptr) {
    res.message = "proof has no timestamp";
    return res;
  }

  // One header lookup per height, however many attestations name it.
  std::map<uint64_t, absl::StatusOr<BlockHeader>> cache;
  for (auto& [commitment, att] : proof.timestamp->AllAttestations()) {
    AttestationResult r;
    r.attestation = att;
    r.commitment = commitment;
    switch (att.kind) {
      case Attestation::Kind::kPending:
        r.status = AttestationStatus::kPending;
        r.detail = absl::StrCat("pending at calendar ", att.uri, "; run upgrade");
        break;
      case Attestation::Kind::kLitecoin:
      case Attestation::Kind::kEthereum:
      case Attestation::Kind::kUnknown:
        r.status = AttestationStatus::kUnsupported;
        r.detail = absl::StrCat(AttestationKindName(att.kind), " attestations are not checked");
        break;
      case Attestation::Kind::kBitcoin: {
        if (commitment.size() != 32) {
          r.status = AttestationStatus::kMismatch;
          r.detail = absl::StrCat("Bitcoin commitment must be 32 bytes, got ", commitment.size());
          break;
        }
        if (att.height > static_cast<uint64_t>(INT64_MAX)) {
          r.status = AttestationStatus::kHeaderUnavailable;
          r.detail = absl::StrCat("block height ", att.height, " out of range");
          break;
        }
        if (headers == nullptr) {
          r.status = AttestationStatus::kHeaderUnavailable;
          r.detail = absl::StrCat("no header source; check that Bitcoin block ", att.height,
                                  " has merkle root ", HexEncode(Reversed(commitment)));
          break;
        }
        auto it = cache.find(att.height);
        if (it == cache.end() && cache.size() >= kMaxHeaderLookups) {
          r.status = AttestationStatus::kHeaderUnavailable;
          r.detail = absl::StrCat("not looked up: the proof names more than ", kMaxHeaderLookups,
                                  " block heights");
          break;
        }
        if (it == cache.end()) {
          it = cache.emplace(att.height, headers->HeaderAt(static_cast<int64_t>(att.height))).first;
        }
        const absl::StatusOr<BlockHeader>& h = it->second;
        if (!h.ok()) {
          r.status = AttestationStatus::kHeaderUnavailable;
          r.detail = absl::StrCat("header for block ", att.height, " unavailable from ",
                                  headers->Describe(), ": ", h.status().message(),
                                  "; check by hand that Bitcoin block ", att.height,
                                  " has merkle root ", HexEncode(Reversed(commitment)));
          break;
        }
        r.block_hash = h->DisplayHash();
        if (h->merkle_root != commitment) {
          r.status = AttestationStatus::kMismatch;
          r.detail =
              absl::StrCat("commitment ", HexEncode(Reversed(commitment)),
                           " does not match the merkle root ", HexEncode(Reversed(h->merkle_root)),
                           " of Bitcoin block ", att.height, " (display order)");
          break;
        }
        r.status = AttestationStatus::kVerified;
        r.block_time = h->time;
        r.detail = absl::StrCat("Bitcoin block ", att.height, " attests existence as of ",
                                FormatTime(h->time));
        break;
      }
    }
    res.attestations.push_back(std::move(r));
  }

  bool any_mismatch = false;
  for (const auto& r : res.attestations) {
    if (r.status == AttestationStatus::kMismatch) any_mismatch = true;
    if (r.status == AttestationStatus::kVerified &&
        (!res.earliest || r.block_time < res.earliest->block_time)) {
      res.earliest = r;
    }
  }

  if (res.digest_checked && !res.digest_matches) {
    res.verdict = Verdict::kDigestMismatch;
    res.message =
        absl::StrCat("the proof is for another file: the file's ", res.file_hash_op, " is ",
                     HexEncode(file_digest), " but the proof timestamps ", HexEncode(proof.digest));
  } else if (any_mismatch) {
    // A proof with a wrong Bitcoin attestation is broken even if another one holds.
    res.verdict = Verdict::kMismatch;
    for (const auto& r : res.attestations) {
      if (r.status == AttestationStatus::kMismatch) {
        res.message = absl::StrCat("Bitcoin attestation at block ", r.attestation.height,
                                   " does not hold: ", r.detail);
        break;
      }
    }
  } else if (!res.digest_checked) {
    res.verdict = Verdict::kNotVerifiable;
    res.message = "the file digest was not checked (no file or digest given)";
  } else if (res.earliest) {
    res.verdict = Verdict::kVerified;
    res.verified = true;
    res.message = absl::StrCat("Success! ", res.earliest->detail,
                               res.regtest_headers ? " [REGTEST: headers from a test chain, "
                                                     "checked without a minimum difficulty; "
                                                     "not evidence of a Bitcoin block]"
                                                   : "");
  } else {
    bool pending = false;
    const AttestationResult* unavailable = nullptr;
    for (const auto& r : res.attestations) {
      pending |= r.status == AttestationStatus::kPending;
      if (unavailable == nullptr && r.status == AttestationStatus::kHeaderUnavailable) {
        unavailable = &r;
      }
    }
    res.verdict = Verdict::kNotVerifiable;
    res.message = unavailable != nullptr ? absl::StrCat("no Bitcoin attestation could be checked: ",
                                                        unavailable->detail)
                  : pending ? "timestamp not complete: pending confirmation; run upgrade"
                            : "no Bitcoin attestation in the proof";
  }
  return res;
}

absl::StatusOr<std::string> HashFileWithOp(const Op& op, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  const EVP_MD* md = nullptr;
  switch (op.tag) {
    case kOpSha256:
      md = EVP_sha256();
      break;
    case kOpSha1:
      md = EVP_sha1();
      break;
    case kOpRipemd160:
      md = EVP_ripemd160();
      break;
    case kOpKeccak256: {
      // No streaming keccak in ots.h; evidence hashed this way is rare (the reference never
      // writes it). Whole-file read.
      std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
      return Keccak256(data);
    }
    default:
      return absl::InvalidArgumentError("file hash op must be a crypto op");
  }
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || md == nullptr || EVP_DigestInit_ex(ctx.get(), md, nullptr) != 1) {
    return absl::InternalError(absl::StrCat(op.name(), " unavailable in OpenSSL"));
  }
  std::string buf(1 << 16, '\0');
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const std::streamsize n = in.gcount();
    if (n > 0 && EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(n)) != 1) {
      return absl::InternalError("digest update failed");
    }
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), out, &len) != 1) return absl::InternalError("digest failed");
  return std::string(reinterpret_cast<char*>(out), len);
}

absl::StatusOr<VerifyResult> VerifyFile(const DetachedFile& proof, const std::string& path,
                                        BlockHeaderSource* headers) {
  auto digest = HashFileWithOp(proof.file_hash_op, path);
  if (!digest.ok()) return digest.status();
  return Verify(proof, *digest, headers);
}

}  // namespace anchord::ots
