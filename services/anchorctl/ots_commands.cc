#include "services/anchorctl/ots_commands.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <system_error>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "libs/common/hex.h"
#include "libs/ots/headers.h"
#include "libs/ots/info.h"
#include "libs/digest/sha256.h"
#include "services/anchorctl/proof_check.h"
#include "libs/tsa/path_form.h"

namespace anchord::anchorctl {
namespace {

// A proof is small (kilobytes); refuse to slurp anything that cannot be one.
constexpr std::uintmax_t kMaxProofBytes = ots::kMaxProofFileBytes;

absl::StatusOr<std::string> ReadProofBytes(const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return absl::NotFoundError(absl::StrCat(path, ": ", ec.message()));
  if (size > kMaxProofBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", size, " bytes is too large for a proof"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::string data(static_cast<size_t>(size), '\0');
  in.read(data.data(), static_cast<std::streamsize>(size));
  if (static_cast<std::uintmax_t>(in.gcount()) != size) {
    return absl::DataLossError(absl::StrCat(path, ": short read"));
  }
  return data;
}

absl::StatusOr<ots::DetachedFile> LoadProof(const std::string& path) {
  auto bytes = ReadProofBytes(path);
  if (!bytes.ok()) return bytes.status();
  auto proof = ots::ParseDetached(*bytes);
  if (!proof.ok()) {
    // The parser's message already is "ots: <Reason> at byte offset <N>: <detail>".
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", proof.status().message()));
  }
  return proof;
}

std::string Reversed(absl::string_view b) { return std::string(b.rbegin(), b.rend()); }

std::string FormatTime(int64_t t) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::FromUnixSeconds(t), absl::UTCTimeZone());
}

void PrintText(const std::string& file_path, const std::string& proof_path,
               const ots::VerifyResult& r, std::ostream& out) {
  out << "Proof " << proof_path << " for " << file_path << "\n";
  out << "File " << r.file_hash_op << " hash: " << HexEncode(r.file_digest)
      << (r.digest_matches ? " (matches the proof)" : "") << "\n";
  if (r.digest_checked && !r.digest_matches) {
    out << "Proof " << r.file_hash_op << " hash: " << HexEncode(r.proof_digest) << "\n";
  }
  for (const auto& a : r.attestations) {
    out << "  " << ots::AttestationStatusName(a.status) << "  ";
    switch (a.attestation.kind) {
      case ots::Attestation::Kind::kBitcoin:
        out << "Bitcoin block " << a.attestation.height;
        if (a.status == ots::AttestationStatus::kVerified) {
          out << " (" << FormatTime(a.block_time) << ", block " << a.block_hash << ")";
        } else {
          out << ": " << a.detail;
        }
        break;
      case ots::Attestation::Kind::kPending:
        out << "calendar " << a.attestation.uri << " (commitment "
            << ots::ShowMessage(a.commitment, false, 64) << ")";
        break;
      default:
        out << a.detail;
        if (a.attestation.kind != ots::Attestation::Kind::kUnknown) {
          out << " (height " << a.attestation.height << ")";
        }
        break;
    }
    out << "\n";
  }
  out << (r.verified ? "" : "Failed! ") << r.message << "\n";
  if (r.regtest_headers) {
    out << "NOTE: block headers were checked under regtest rules (no minimum difficulty): this "
           "is a test chain such as the sandbox's, not Bitcoin\n";
  }
}

std::string StatusText(const absl::Status& s) { return std::string(s.message()); }

}  // namespace

int VerifyExitCode(const ots::VerifyResult& r) {
  switch (r.verdict) {
    case ots::Verdict::kVerified:
      return kOtsExitVerified;
    case ots::Verdict::kDigestMismatch:
    case ots::Verdict::kMismatch:
      return kOtsExitMismatch;
    case ots::Verdict::kNotVerifiable:
      return kOtsExitNotVerifiable;
  }
  return kOtsExitNotVerifiable;
}

std::string VerifyResultJson(const ots::VerifyResult& r) {
  nlohmann::json j;
  j["verified"] = r.verified;
  // Which rules the headers met: "mainnet" (pow limit and difficulty floor) or "regtest" (any
  // difficulty: a test chain, not evidence of a Bitcoin block).
  j["network"] = r.regtest_headers ? "regtest" : "mainnet";
  j["verdict"] = ots::VerdictName(r.verdict);
  j["message"] = r.message;
  j["file_hash_op"] = r.file_hash_op;
  j["proof_digest"] = HexEncode(r.proof_digest);
  j["file_digest"] = r.digest_checked ? nlohmann::json(HexEncode(r.file_digest)) : nlohmann::json();
  j["digest_matches"] = r.digest_matches;
  nlohmann::json atts = nlohmann::json::array();
  for (const auto& a : r.attestations) {
    nlohmann::json aj;
    aj["kind"] = ots::AttestationKindName(a.attestation.kind);
    aj["status"] = ots::AttestationStatusName(a.status);
    aj["commitment"] = ots::ShowMessage(a.commitment, false, 64);
    switch (a.attestation.kind) {
      case ots::Attestation::Kind::kBitcoin:
        aj["merkle_root_display"] = ots::ShowMessage(Reversed(a.commitment), false, 64);
        [[fallthrough]];
      case ots::Attestation::Kind::kLitecoin:
      case ots::Attestation::Kind::kEthereum:
        aj["height"] = a.attestation.height;
        break;
      case ots::Attestation::Kind::kPending:
        aj["uri"] = a.attestation.uri;
        break;
      case ots::Attestation::Kind::kUnknown:
        aj["tag"] = HexEncode(a.attestation.tag);
        break;
    }
    if (a.status == ots::AttestationStatus::kVerified) {
      aj["block_time"] = a.block_time;
      aj["block_time_utc"] = FormatTime(a.block_time);
    }
    if (!a.block_hash.empty()) aj["block_hash"] = a.block_hash;
    aj["detail"] = a.detail;
    atts.push_back(std::move(aj));
  }
  j["attestations"] = std::move(atts);
  if (r.earliest) {
    j["attested_height"] = r.earliest->attestation.height;
    j["attested_time"] = r.earliest->block_time;
  }
  return j.dump();
}

namespace {

absl::StatusOr<Digest> FileSha256(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  digest::Sha256 h;
  std::string buf(1 << 16, '\0');
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) h.Update(absl::string_view(buf.data(), static_cast<size_t>(in.gcount())));
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return h.Finish();
}

int RunVerifyTsa(const std::string& file_path, const std::string& proof_path,
                 const std::string& bytes, const std::string& tsa_ca_file, bool json,
                 std::ostream& out, std::ostream& err) {
  std::string ca_pem;
  if (!tsa_ca_file.empty()) {
    auto ca = ReadProofBytes(tsa_ca_file);
    if (!ca.ok() || tsa::CountPemCertificates(*ca) == 0) {
      err << "error: --tsa-ca-file: "
          << (ca.ok() ? tsa_ca_file + ": no PEM certificate" : StatusText(ca.status())) << "\n";
      return kOtsExitBadInput;
    }
    ca_pem = *std::move(ca);
  }
  auto digest = FileSha256(file_path);
  if (!digest.ok()) {
    err << "error: " << StatusText(digest.status()) << "\n";
    return kOtsExitBadInput;
  }
  TsaCheck c = CheckTsaProof(bytes, *digest, ca_pem);
  if (c.exit == kOtsExitBadInput) {
    err << "error: " << proof_path << ": " << c.message << "\n";
    return c.exit;
  }
  if (json) {
    nlohmann::json j;
    j["verified"] = c.exit == 0;
    j["format"] = ProofFormatName(DetectProofFormat(bytes));
    j["message"] = c.message;
    j["file_digest"] = digest->hex();
    if (!c.root_hex.empty()) j["merkle_root"] = c.root_hex;
    if (c.info) {
      j["tsa"] = c.info->tsa_name;
      j["time"] = absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", c.info->gen_time, absl::UTCTimeZone());
      j["policy_oid"] = c.info->policy_oid;
      j["serial"] = c.info->serial_hex;
    }
    out << j.dump() << "\n";
  } else {
    out << "Proof " << proof_path << " (RFC 3161"
        << (c.root_hex.empty() ? "" : ", Merkle-path form") << ") for " << file_path << "\n";
    out << "File sha256 hash: " << digest->hex() << "\n";
    if (!c.root_hex.empty()) out << "Merkle root:      " << c.root_hex << "\n";
    if (c.info) out << tsa::RenderInfo(*c.info);
    out << (c.exit == 0 ? "" : "Failed! ") << c.message << "\n";
  }
  return c.exit;
}

}  // namespace

int RunVerifyWith(const std::string& file_path, const std::string& proof_path_in,
                  ots::BlockHeaderSource* headers, bool json, std::ostream& out, std::ostream& err,
                  const std::string& tsa_ca_file) {
  const std::string proof_path = proof_path_in.empty() ? file_path + ".ots" : proof_path_in;
  {
    auto bytes = ReadProofBytes(proof_path);
    if (!bytes.ok()) {
      err << "error: " << StatusText(bytes.status()) << "\n";
      return kOtsExitBadInput;
    }
    const ProofFormat format = DetectProofFormat(*bytes);
    if (format == ProofFormat::kTsr || format == ProofFormat::kTsrPath) {
      return RunVerifyTsa(file_path, proof_path, *bytes, tsa_ca_file, json, out, err);
    }
  }
  auto proof = LoadProof(proof_path);
  if (!proof.ok()) {
    err << "error: " << StatusText(proof.status()) << "\n";
    return kOtsExitBadInput;
  }
  auto result = ots::VerifyFile(*proof, file_path, headers);
  if (!result.ok()) {
    err << "error: " << StatusText(result.status()) << "\n";
    return kOtsExitBadInput;
  }
  if (json) {
    out << VerifyResultJson(*result) << "\n";
  } else {
    PrintText(file_path, proof_path, *result, out);
  }
  return VerifyExitCode(*result);
}

int RunVerify(const std::string& file_path, const std::string& proof_path,
              const std::string& header_source, bool json, std::ostream& out, std::ostream& err,
              const std::string& network, const std::string& tsa_ca_file) {
  auto net = ots::ParseNetwork(network);
  if (!net.ok()) {
    err << "error: " << StatusText(net.status()) << "\n";
    return kOtsExitBadInput;
  }
  std::unique_ptr<ots::BlockHeaderSource> source;
  if (!header_source.empty()) {
    auto s = ots::MakeHeaderSource(header_source, *net);
    if (!s.ok()) {
      err << "error: header source: " << StatusText(s.status()) << "\n";
      return kOtsExitBadInput;
    }
    source = *std::move(s);
  }
  return RunVerifyWith(file_path, proof_path, source.get(), json, out, err, tsa_ca_file);
}

int RunInfo(const std::string& proof_path, bool json, bool full, std::ostream& out,
            std::ostream& err) {
  if (auto bytes = ReadProofBytes(proof_path); bytes.ok()) {
    const ProofFormat format = DetectProofFormat(*bytes);
    if (format == ProofFormat::kTsr || format == ProofFormat::kTsrPath) {
      std::string tsr = *bytes;
      std::string header;
      if (format == ProofFormat::kTsrPath) {
        auto form = tsa::DecodePathForm(*bytes);
        if (!form.ok()) {
          err << "error: " << proof_path << ": " << StatusText(form.status()) << "\n";
          return kOtsExitBadInput;
        }
        header = absl::StrCat("Merkle-path form: file sha256 ", form->digest.hex(),
                              "\nMerkle root:    ", form->root.hex(), "\n");
        tsr = form->tsr;
      }
      auto info = tsa::Inspect(tsr);
      if (!info.ok()) {
        err << "error: " << proof_path << ": " << StatusText(info.status()) << "\n";
        return kOtsExitBadInput;
      }
      if (json) {
        nlohmann::json j{{"format", ProofFormatName(format)},
                         {"tsa", info->tsa_name},
                         {"gen_time", info->gen_time_text},
                         {"policy_oid", info->policy_oid},
                         {"serial", info->serial_hex},
                         {"imprint", HexEncode(info->imprint)},
                         {"hash_algorithm", info->hash_algorithm}};
        out << j.dump() << "\n";
      } else {
        out << header << tsa::RenderInfo(*info);
      }
      return 0;
    }
  }
  auto proof = LoadProof(proof_path);
  if (!proof.ok()) {
    err << "error: " << StatusText(proof.status()) << "\n";
    return kOtsExitBadInput;
  }
  out << (json ? ots::RenderInfoJson(*proof, full) + "\n"
               : ots::RenderInfo(*proof, /*verbose=*/false, full));
  return 0;
}

int RunUpgrade(const std::vector<std::string>& proof_paths, const OtsUpgradeOptions& options,
               std::ostream& out, std::ostream& err) {
  const ots::CalendarFetch fetch = options.fetch ? options.fetch : ots::MakeHttpCalendarFetch();
  ots::UpgradeOptions uo;
  uo.calendars = options.calendars;
  if (!options.whitelist.empty()) {
    uo.whitelist = ots::DefaultCalendarWhitelist();
    uo.whitelist.insert(uo.whitelist.end(), options.whitelist.begin(), options.whitelist.end());
  }
  int rc = 0;
  auto worsen = [&rc](int code) { rc = std::max(rc, code); };
  for (const std::string& path : proof_paths) {
    auto proof = LoadProof(path);
    if (!proof.ok()) {
      err << "error: " << StatusText(proof.status()) << "\n";
      worsen(kOtsExitBadInput);
      continue;
    }
    ots::UpgradeReport rep = ots::Upgrade(&*proof, fetch, uo);
    for (const auto& m : rep.messages) err << path << ": " << m << "\n";
    if (rep.changed) {
      auto bytes = ots::SerializeDetached(*proof);
      if (!bytes.ok()) {
        err << "error: " << path << ": " << StatusText(bytes.status()) << "\n";
        worsen(kOtsExitBadInput);
        continue;
      }
      const std::string tmp = path + ".tmp";
      const std::string bak = path + ".bak";
      std::error_code ec;
      if (std::filesystem::exists(bak, ec)) {
        err << "error: " << path << ": " << bak << " already exists; not overwriting it\n";
        worsen(kOtsExitBadInput);
        continue;
      }
      {
        std::ofstream o(tmp, std::ios::binary | std::ios::trunc);
        o.write(bytes->data(), static_cast<std::streamsize>(bytes->size()));
        o.flush();
        if (!o) {
          err << "error: " << path << ": cannot write " << tmp << "\n";
          std::filesystem::remove(tmp, ec);
          worsen(kOtsExitBadInput);
          continue;
        }
      }
      // The old proof stays reachable as .bak before the new one replaces it; rename is atomic,
      // so a crash leaves either the old or the new proof under the original name.
      std::filesystem::create_hard_link(path, bak, ec);
      if (ec) {
        err << "error: " << path << ": cannot create " << bak << ": " << ec.message() << "\n";
        std::filesystem::remove(tmp, ec);
        worsen(kOtsExitBadInput);
        continue;
      }
      std::filesystem::rename(tmp, path, ec);
      if (ec) {
        err << "error: " << path << ": cannot replace: " << ec.message() << "\n";
        std::filesystem::remove(tmp, ec);
        worsen(kOtsExitBadInput);
        continue;
      }
      out << path << ": upgraded (" << rep.upgraded << " calendar answer(s) merged; old proof in "
          << bak << ")\n";
    }
    if (rep.complete) {
      out << path << ": complete (has a Bitcoin attestation)\n";
    } else {
      out << path << ": Failed! Timestamp not complete (" << rep.still_pending << " pending, "
          << rep.skipped << " skipped, " << rep.errors << " error(s))\n";
      worsen(kOtsExitNotVerifiable);
    }
  }
  return rc;
}

}  // namespace anchord::anchorctl
