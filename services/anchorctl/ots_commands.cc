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

namespace anchord::anchorctl {
namespace {

// A proof is small (kilobytes); refuse to slurp anything that cannot be one.
constexpr std::uintmax_t kMaxProofBytes = ots::kMaxProofFileBytes;

absl::StatusOr<std::string> ReadProofBytes(const std::string& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return absl::NotFoundError(absl::StrCat(path, ": ", ec.message()));
  if (size > kMaxProofBytes) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", size, " bytes is too large for a proof"));
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
    case ots::Verdict::kVerified: return kOtsExitVerified;
    case ots::Verdict::kDigestMismatch:
    case ots::Verdict::kMismatch: return kOtsExitMismatch;
    case ots::Verdict::kNotVerifiable: return kOtsExitNotVerifiable;
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

int RunVerifyWith(const std::string& file_path, const std::string& proof_path_in,
                  ots::BlockHeaderSource* headers, bool json, std::ostream& out,
                  std::ostream& err) {
  const std::string proof_path = proof_path_in.empty() ? file_path + ".ots" : proof_path_in;
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
              const std::string& network) {
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
  return RunVerifyWith(file_path, proof_path, source.get(), json, out, err);
}

int RunInfo(const std::string& proof_path, bool json, bool full, std::ostream& out,
            std::ostream& err) {
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
