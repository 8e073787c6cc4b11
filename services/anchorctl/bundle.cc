#include "services/anchorctl/bundle.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "libs/bundle/zip.h"
#include "libs/common/hex.h"
#include "libs/digest/sha256.h"
#include "libs/ots/headers.h"
#include "libs/ots/ots.h"
#include "libs/ots/verify.h"
#include "libs/tsa/path_form.h"
#include "libs/tsa/tsa.h"
#include "services/anchorctl/clients.h"
#include "services/anchorctl/format.h"
#include "services/anchorctl/process.h"
#include "services/anchorctl/proof_check.h"
#include "services/anchorctl/stack.h"

namespace anchord::anchorctl {
namespace {

constexpr char kFormat[] = "anchord-bundle";
constexpr int kVersion = 1;

int Fail(int code, const std::string& message) {
  std::cerr << "anchorctl: " << message << std::endl;
  return code;
}

std::string HtmlEscape(absl::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

std::string Dump(const nlohmann::json& j) {
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

// A manifest path must be usable both as a `sha256sum -c` line and inside entry names.
bool SafeRelativePath(const std::string& p) {
  if (p.empty() || p[0] == '/') return false;
  for (char c : p) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '\\') return false;
  }
  for (absl::string_view part : absl::StrSplit(p, '/')) {
    if (part.empty() || part == "." || part == "..") return false;
  }
  return true;
}

std::string TimeText(absl::Time t) {
  return t == absl::InfinitePast()
             ? ""
             : absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", t, absl::UTCTimeZone());
}

struct BundledProof {
  std::string entry;
  std::string path;
  std::string digest_hex;
  std::string provider;
  ProofFormat format = ProofFormat::kUnknown;
  std::string bytes;
};

std::string VerifyMd(const std::string& job, const std::string& network) {
  return absl::StrCat(
      "# Verifying this evidence bundle (job ", job, ")\n\n",
      "This archive holds, for every file of the job, its SHA-256 digest (MANIFEST.sha256) and "
      "every\n"
      "proof anchord obtained for it (proofs/): OpenTimestamps proofs (.ots) anchored in Bitcoin,\n"
      "RFC 3161 time-stamp tokens (.tsr), and for files anchored as part of a Merkle batch the\n"
      "Merkle-path form of a token (.tsrm). It also holds what checking them needs, so no network "
      "is\n"
      "required: the Bitcoin block headers the .ots proofs commit to (headers/), the "
      "time-stamping\n"
      "authorities' certificates (tsa/), and a readable report (report.html, report.csv, "
      "report.json).\n"
      "The files themselves are NOT in the bundle: only their digests. Header policy: ",
      network, " (",
      network == "mainnet" ? "headers must meet mainnet's proof-of-work limit and "
                             "difficulty floor"
                           : "regtest-difficulty headers accepted: a test chain, not Bitcoin",
      ").\n\n", "## 1. Everything at once, with anchorctl\n\n",
      "    anchorctl verify-bundle BUNDLE.zip --files /path/to/the/original/files\n\n",
      "Exit 0: every proof verified; 3: a mismatch (the message names the file); 4: some proofs "
      "are\n"
      "still pending; 2: the bundle is malformed (the message names the entry).\n\n",
      "## 2. The files against the manifest, with coreutils\n\n",
      "    unzip BUNDLE.zip -d bundle\n",
      "    cd /path/to/the/original/files && sha256sum -c /path/to/bundle/MANIFEST.sha256\n\n",
      "## 3. OpenTimestamps proofs, with the reference client\n\n",
      "    ots verify -f FILE bundle/proofs/FILE.<provider>.ots\n\n",
      "`ots` asks a Bitcoin node for the block header; headers/<height>.hdr holds the 80-byte "
      "header\n"
      "the proof commits to, and headers/headers.txt the same as `HEIGHT HEX` lines, which\n"
      "`anchorctl verify FILE PROOF --headers file:bundle/headers/headers.txt` reads offline.\n\n",
      "## 4. RFC 3161 tokens, with OpenSSL\n\n",
      "    openssl ts -verify -data FILE -in bundle/proofs/FILE.tsa.tsr \\\n"
      "        -CAfile bundle/tsa/ca.pem -untrusted bundle/tsa/chain.pem\n\n",
      "A .tsrm proof (Merkle batch) is the file's digest, its Merkle path (OpenTimestamps ops) and "
      "the\n"
      "token over the batch root; `anchorctl verify FILE PROOF.tsrm --tsa-ca-file "
      "bundle/tsa/ca.pem`\n"
      "recomputes the root from the file and checks the token. The root tokens are also in\n"
      "tsa/roots/ROOT.tsr for OpenSSL:\n\n",
      "    openssl ts -verify -digest ROOT -in bundle/tsa/roots/ROOT.tsr \\\n"
      "        -CAfile bundle/tsa/ca.pem -untrusted bundle/tsa/chain.pem\n\n",
      "where ROOT is printed by `anchorctl info PROOF.tsrm` (\"Merkle root\"). The layout of .tsrm "
      "is\n"
      "described in anchord's docs/tsa.md.\n");
}

std::string ReportHtml(const std::string& job, const std::vector<ReportRow>& rows,
                       const std::vector<BundledProof>& proofs, const std::set<int64_t>& blocks,
                       const std::set<std::string>& tsas, absl::Time first, absl::Time last,
                       const std::string& network) {
  std::map<std::string, int> by_state, by_provider;
  std::set<std::string> files;
  for (const ReportRow& r : rows) {
    ++by_state[r.status];
    if (!r.provider.empty()) ++by_provider[r.provider];
    files.insert(r.path);
  }
  std::string h = absl::StrCat(
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Evidence bundle: ",
      HtmlEscape(job),
      "</title><style>body{font-family:sans-serif;font-size:11pt}table{border-collapse:collapse}"
      "td,th{border:1px solid #999;padding:2px 6px;text-align:left}"
      "@media print{tr{page-break-inside:avoid}}</style></head><body>\n",
      "<h1>Evidence bundle: job ", HtmlEscape(job), "</h1>\n<p>Generated ", TimeText(absl::Now()),
      " by anchord. ", files.size(), " files, ", proofs.size(),
      " proofs. Header policy: ", HtmlEscape(network), ".</p>\n<h2>Summary</h2>\n<table>\n");
  absl::StrAppend(&h, "<tr><th>First anchoring time</th><td>", TimeText(first), "</td></tr>\n");
  absl::StrAppend(&h, "<tr><th>Last anchoring time</th><td>", TimeText(last), "</td></tr>\n");
  for (const auto& [state, n] : by_state) {
    absl::StrAppend(&h, "<tr><th>State ", HtmlEscape(state), "</th><td>", n, "</td></tr>\n");
  }
  for (const auto& [p, n] : by_provider) {
    absl::StrAppend(&h, "<tr><th>Provider ", HtmlEscape(p), "</th><td>", n, "</td></tr>\n");
  }
  std::vector<std::string> block_list;
  for (int64_t b : blocks) block_list.push_back(absl::StrCat(b));
  absl::StrAppend(&h, "<tr><th>Bitcoin blocks</th><td>", absl::StrJoin(block_list, ", "),
                  "</td></tr>\n<tr><th>Time-stamping authorities</th><td>");
  std::vector<std::string> tsa_list;
  for (const std::string& t : tsas) tsa_list.push_back(HtmlEscape(t));
  absl::StrAppend(&h, absl::StrJoin(tsa_list, "<br>"), "</td></tr>\n</table>\n<h2>Files</h2>\n",
                  "<table>\n<tr><th>Path</th><th>SHA-256</th><th>Provider</th><th>State</th>"
                  "<th>Block</th><th>Verification</th></tr>\n");
  for (const ReportRow& r : rows) {
    absl::StrAppend(&h, "<tr><td>", HtmlEscape(r.path), "</td><td><code>", r.digest_hex,
                    "</code></td><td>", HtmlEscape(r.provider), "</td><td>", HtmlEscape(r.status),
                    "</td><td>",
                    r.bitcoin_block_height > 0 ? absl::StrCat(r.bitcoin_block_height) : "",
                    "</td><td>", HtmlEscape(r.verification), "</td></tr>\n");
  }
  absl::StrAppend(
      &h,
      "</table>\n<p>How to check everything offline: see VERIFY.md in this bundle.</p>\n"
      "</body></html>\n");
  return h;
}

}  // namespace

int RunBundle(const GlobalOptions& g, const BundleOptions& o) {
  if (o.output.empty()) return Fail(kExitUsage, "-o/--output: required (the .zip to write)");
  if (!o.network.empty() && o.network != "mainnet" && o.network != "regtest") {
    return Fail(kExitUsage,
                absl::StrCat("--network: \"", o.network, "\" is not mainnet or regtest"));
  }
  auto stack = ReadStackFile(g.data_dir);
  std::string header_spec = o.headers;
  if (header_spec.empty() && stack.ok() && !stack->sandbox_url.empty()) {
    header_spec = absl::StrCat("sandbox:", stack->sandbox_url);
  }
  std::string network = o.network;
  if (network.empty()) network = absl::StartsWith(header_spec, "sandbox:") ? "regtest" : "mainnet";
  std::unique_ptr<ots::BlockHeaderSource> headers;
  if (!header_spec.empty()) {
    auto made = ots::MakeHeaderSource(
        header_spec, network == "regtest" ? ots::Network::kRegtest : ots::Network::kMainnet);
    if (!made.ok()) return Fail(kExitUsage, absl::StrCat("--headers: ", made.status().message()));
    headers = *std::move(made);
  }
  std::string tsa_ca_file = o.tsa_ca_file;
  if (tsa_ca_file.empty() && stack.ok()) tsa_ca_file = stack->tsa_ca_file;
  std::string ca_pem;
  if (!tsa_ca_file.empty()) {
    auto ca = ReadSmallFile(tsa_ca_file);
    if (!ca.ok() || tsa::CountPemCertificates(*ca) == 0) {
      return Fail(kExitUsage,
                  absl::StrCat("--tsa-ca-file: ", tsa_ca_file, ": no readable PEM certificate"));
    }
    ca_pem = *std::move(ca);
  }

  std::unique_ptr<Clients> clients = MakeClients(g);
  for (const char* service : {"hasher", "poller"}) {
    if (auto s = clients->Check(service); !s.ok())
      return Fail(kExitInternal, std::string(s.message()));
  }
  std::vector<ReportRow> rows;
  if (int rc = CollectReportRows(*clients, o.job.empty() ? "default" : o.job, &rows);
      rc != kExitComplete) {
    return rc;
  }

  std::vector<bundle::ZipEntry> entries;
  std::vector<BundledProof> proofs;
  std::map<std::string, std::string> manifest;  // path -> digest hex
  std::map<int64_t, std::string> header_bytes;
  std::set<std::string> chain_pems, tsas;
  std::map<std::string, std::string> root_tokens;  // root hex -> tsr
  absl::Time first = absl::InfinitePast(), last = absl::InfinitePast();
  auto note_time = [&](absl::Time t) {
    if (t == absl::InfinitePast()) return;
    if (first == absl::InfinitePast() || t < first) first = t;
    if (last == absl::InfinitePast() || t > last) last = t;
  };
  int skipped = 0;
  std::map<std::pair<std::string, std::string>, std::string> verdicts;
  for (ReportRow& r : rows) {
    if (r.digest_hex.size() != 64 || r.status == "FAILED") continue;
    if (!SafeRelativePath(r.path)) {
      std::cerr << "anchorctl: bundle: skipping \"" << r.path
                << "\": its path cannot be a manifest line" << std::endl;
      ++skipped;
      continue;
    }
    manifest.emplace(r.path, r.digest_hex);
    if (r.provider.empty()) continue;
    auto key = std::make_pair(r.digest_hex, r.provider);
    if (!verdicts.count(key)) {
      verdicts[key] =
          VerifyProofRow(*clients, g, r.digest_hex, r.provider, r.status, headers.get(), ca_pem);
    }
    r.verification = verdicts[key];
    auto digest = HexDecode(r.digest_hex);
    if (!digest.ok()) continue;
    auto bytes = FetchOts(*clients, g, *digest, r.provider);
    if (!bytes.ok()) continue;  // nothing yet (pending), or the provider gives none
    BundledProof p;
    p.path = r.path;
    p.digest_hex = r.digest_hex;
    p.provider = r.provider;
    p.format = DetectProofFormat(*bytes);
    p.entry = absl::StrCat("proofs/", r.path, ".", r.provider, ProofExtension(p.format));
    p.bytes = *std::move(bytes);
    if (auto st = bundle::CheckEntryName(p.entry); !st.ok()) {
      std::cerr << "anchorctl: bundle: skipping a proof of \"" << r.path << "\": " << st.message()
                << std::endl;
      ++skipped;
      continue;
    }
    if (p.format == ProofFormat::kOts) {
      auto parsed = ots::ParseDetached(p.bytes);
      if (parsed.ok()) {
        ots::VerifyResult v = ots::Verify(*parsed, *digest, headers.get());
        for (const auto& a : v.attestations) {
          if (a.attestation.kind != ots::Attestation::Kind::kBitcoin) continue;
          const int64_t h = a.attestation.height;
          if (header_bytes.count(h) || !headers) continue;
          auto header = headers->HeaderAt(h);
          if (!header.ok()) {
            std::cerr << "anchorctl: bundle: no header for block " << h << " from "
                      << headers->Describe() << ": " << header.status().message() << std::endl;
            continue;
          }
          header_bytes[h] = header->raw;
          note_time(absl::FromUnixSeconds(header->time));
        }
      }
    } else if (p.format == ProofFormat::kTsr || p.format == ProofFormat::kTsrPath) {
      std::string tsr = p.bytes;
      if (p.format == ProofFormat::kTsrPath) {
        auto form = tsa::DecodePathForm(p.bytes);
        if (form.ok()) {
          root_tokens[form->root.hex()] = form->tsr;
          tsr = form->tsr;
        }
      }
      if (auto certs = tsa::TokenCertificatesPem(tsr); certs.ok()) {
        for (absl::string_view c :
             absl::StrSplit(*certs, "-----END CERTIFICATE-----\n", absl::SkipWhitespace())) {
          chain_pems.insert(absl::StrCat(c, "-----END CERTIFICATE-----\n"));
        }
      }
      if (auto info = tsa::Inspect(tsr); info.ok()) {
        tsas.insert(info->tsa_name);
        note_time(info->gen_time);
      }
    }
    proofs.push_back(std::move(p));
  }

  std::set<int64_t> blocks;
  std::string headers_txt = "# HEIGHT HEADER_HEX (raw 80-byte Bitcoin block headers)\n";
  for (const auto& [h, raw] : header_bytes) {
    blocks.insert(h);
    entries.push_back({absl::StrCat("headers/", h, ".hdr"), raw});
    absl::StrAppend(&headers_txt, h, " ", HexEncode(raw), "\n");
  }
  entries.push_back({"headers/headers.txt", headers_txt});
  std::string manifest_text;
  for (const auto& [path, hex] : manifest) absl::StrAppend(&manifest_text, hex, "  ", path, "\n");
  entries.push_back({"MANIFEST.sha256", manifest_text});
  nlohmann::json index = nlohmann::json::array();
  for (const BundledProof& p : proofs) {
    entries.push_back({p.entry, p.bytes});
    index.push_back({{"entry", p.entry},
                     {"path", p.path},
                     {"digest", p.digest_hex},
                     {"provider", p.provider},
                     {"format", ProofFormatName(p.format)}});
  }
  if (!ca_pem.empty()) entries.push_back({"tsa/ca.pem", ca_pem});
  if (!chain_pems.empty()) {
    std::string chain;
    for (const std::string& c : chain_pems) chain += c;
    entries.push_back({"tsa/chain.pem", chain});
  }
  for (const auto& [root, tsr] : root_tokens)
    entries.push_back({absl::StrCat("tsa/roots/", root, ".tsr"), tsr});
  entries.push_back({"report.csv", ReportToCsv(rows)});
  entries.push_back({"report.json", ReportToJson(rows)});
  const std::string job = o.job.empty() ? "default" : o.job;
  entries.push_back(
      {"report.html", ReportHtml(job, rows, proofs, blocks, tsas, first, last, network)});
  nlohmann::json meta{
      {"format", kFormat},
      {"version", kVersion},
      {"job", job},
      {"created_at", TimeText(absl::Now())},
      {"network", network},
      {"header_source", header_spec.empty() ? "" : headers->Describe()},
      {"header_policy", network == "mainnet" ? "pow_limit_bits 0x1d00ffff + difficulty floor"
                                             : "any difficulty (regtest)"},
      {"files", manifest.size()},
      {"proofs", index}};
  entries.push_back({"bundle.json", Dump(meta) + "\n"});
  entries.push_back({"VERIFY.md", VerifyMd(job, network)});
  if (auto st = bundle::WriteZipFile(o.output, entries, absl::Now()); !st.ok()) {
    return Fail(kExitInternal, absl::StrCat("--output: ", st.message()));
  }
  std::cerr << "anchorctl: wrote " << o.output << ": " << manifest.size() << " files, "
            << proofs.size() << " proofs, " << header_bytes.size() << " block headers, "
            << tsas.size() << " TSA(s)" << (skipped ? absl::StrCat(", ", skipped, " skipped") : "")
            << std::endl;
  return kExitComplete;
}

// ---------------------------------------------------------------------------------------------
// verify-bundle

namespace {

struct Findings {
  std::vector<std::string> mismatches;
  std::vector<std::string> pending;
  int verified = 0;
};

absl::StatusOr<std::string> HashFile(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return absl::NotFoundError("cannot open");
  digest::Sha256 h;
  std::string buf(1 << 16, '\0');
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) h.Update(absl::string_view(buf.data(), static_cast<size_t>(in.gcount())));
  }
  if (in.bad()) return absl::DataLossError("read error");
  return h.Finish().raw();
}

}  // namespace

int RunVerifyBundle(const std::string& bundle_path, const std::string& files_dir, bool json,
                    std::ostream& out, std::ostream& err) {
  auto malformed = [&](const std::string& what) {
    err << "error: malformed bundle: " << what << "\n";
    return kBundleExitMalformed;
  };
  auto zip = bundle::ReadZipFile(bundle_path);
  if (!zip.ok()) return malformed(std::string(zip.status().message()));
  std::map<std::string, const std::string*> by_name;
  for (const auto& e : *zip) by_name[e.name] = &e.data;
  auto get = [&](const std::string& name) -> const std::string* {
    auto it = by_name.find(name);
    return it == by_name.end() ? nullptr : it->second;
  };
  const std::string* manifest_text = get("MANIFEST.sha256");
  if (manifest_text == nullptr) return malformed("entry MANIFEST.sha256 is missing");
  const std::string* meta_text = get("bundle.json");
  if (meta_text == nullptr) return malformed("entry bundle.json is missing");
  // The manifest: "<64 hex>  <path>" per line.
  std::map<std::string, Digest> manifest;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(*manifest_text, '\n')) {
    ++line_no;
    if (line.empty()) continue;
    if (line.size() < 67 || line.substr(64, 2) != "  ") {
      return malformed(absl::StrCat("MANIFEST.sha256 line ", line_no, ": not \"DIGEST  PATH\""));
    }
    absl::StatusOr<Digest> digest = Digest::FromHex(line.substr(0, 64));
    const std::string path(line.substr(66));
    if (!digest.ok()) {
      return malformed(
          absl::StrCat("MANIFEST.sha256 line ", line_no, ": the digest is not 64 hex"));
    }
    if (!SafeRelativePath(path)) {
      return malformed(absl::StrCat("MANIFEST.sha256 line ", line_no,
                                    ": path is absolute, empty or has a \"..\" component"));
    }
    if (!manifest.emplace(path, *digest).second) {
      return malformed(
          absl::StrCat("MANIFEST.sha256 line ", line_no, ": \"", path, "\" listed twice"));
    }
  }
  const nlohmann::json meta = nlohmann::json::parse(*meta_text, nullptr, false);
  if (meta.is_discarded() || !meta.is_object() || meta.value("format", "") != kFormat ||
      !meta.contains("proofs") || !meta["proofs"].is_array()) {
    return malformed("entry bundle.json: not an anchord-bundle index");
  }
  if (!meta.contains("version") || !meta["version"].is_number_integer() ||
      meta["version"] != kVersion) {
    return malformed("entry bundle.json: unsupported version");
  }
  const std::string network = meta.value("network", "mainnet");
  if (network != "mainnet" && network != "regtest") {
    return malformed(absl::StrCat("entry bundle.json: unknown network \"", network, "\""));
  }
  // Headers: only the raw .hdr entries are trusted input (each is checked by libs/ots on use).
  // HeaderPolicy{} is mainnet's (pow limit and difficulty floor); regtest accepts any difficulty.
  const ots::HeaderPolicy policy =
      network == "mainnet" ? ots::HeaderPolicy::Mainnet() : ots::HeaderPolicy::Regtest();
  std::string headers_text;
  for (const auto& [name, data] : by_name) {
    if (!absl::StartsWith(name, "headers/") || !absl::EndsWith(name, ".hdr")) continue;
    absl::string_view h = absl::string_view(name).substr(8, name.size() - 12);
    int64_t height = 0;
    if (!absl::SimpleAtoi(h, &height) || height < 0 || data->size() != ots::kBlockHeaderSize) {
      return malformed(
          absl::StrCat("entry ", name, ": not a raw 80-byte header named <height>.hdr"));
    }
    absl::StrAppend(&headers_text, height, " ", HexEncode(*data), "\n");
  }
  std::unique_ptr<ots::LocalHeadersFile> headers;
  if (!headers_text.empty()) {
    auto h = ots::LocalHeadersFile::FromContents(headers_text, "bundle headers/", policy);
    if (!h.ok()) return malformed(absl::StrCat("headers/: ", h.status().message()));
    headers = *std::move(h);
  }
  const std::string* ca = get("tsa/ca.pem");
  const std::string* chain = get("tsa/chain.pem");

  Findings f;
  std::set<std::string> indexed, proven;
  for (const auto& p : meta["proofs"]) {
    if (!p.is_object() || !p.contains("entry") || !p["entry"].is_string() || !p.contains("path") ||
        !p["path"].is_string()) {
      return malformed("entry bundle.json: a proof without entry/path");
    }
    const std::string entry = p["entry"].get<std::string>();
    const std::string path = p["path"].get<std::string>();
    const std::string* bytes = get(entry);
    if (bytes == nullptr)
      return malformed(absl::StrCat("entry ", entry, " is listed in bundle.json but missing"));
    if (!indexed.insert(entry).second)
      return malformed(absl::StrCat("entry ", entry, " is listed twice"));
    auto m = manifest.find(path);
    if (m == manifest.end()) {
      return malformed(
          absl::StrCat("entry ", entry, ": its file \"", path, "\" is not in MANIFEST.sha256"));
    }
    const Digest& digest = m->second;
    const ProofFormat format = DetectProofFormat(*bytes);
    if (format == ProofFormat::kOts) {
      auto parsed = ots::ParseDetached(*bytes);
      if (!parsed.ok()) {
        f.mismatches.push_back(absl::StrCat(path, ": ", entry, ": ", parsed.status().message()));
        continue;
      }
      ots::VerifyResult v = ots::Verify(*parsed, digest.bytes(), headers.get());
      if (v.verdict == ots::Verdict::kVerified) {
        ++f.verified;
        proven.insert(path);
        continue;
      }
      if (v.verdict != ots::Verdict::kNotVerifiable) {
        f.mismatches.push_back(absl::StrCat(path, ": ", entry, ": ", v.message));
        continue;
      }
      bool bitcoin = false;
      for (const auto& a : v.attestations) {
        if (a.attestation.kind == ots::Attestation::Kind::kBitcoin) bitcoin = true;
      }
      if (bitcoin) {
        // A complete proof whose header the bundle lacks or that fails the header policy.
        f.mismatches.push_back(absl::StrCat(path, ": ", entry, ": ", v.message));
      } else {
        f.pending.push_back(
            absl::StrCat(path, ": ", entry, ": pending (no Bitcoin attestation yet)"));
      }
    } else if (format == ProofFormat::kTsr || format == ProofFormat::kTsrPath) {
      if (ca == nullptr)
        return malformed(absl::StrCat("entry tsa/ca.pem is missing (needed by ", entry, ")"));
      TsaCheck c = CheckTsaProof(*bytes, digest, *ca, chain != nullptr ? *chain : "");
      if (c.exit == 0) {
        ++f.verified;
        proven.insert(path);
      } else {
        f.mismatches.push_back(absl::StrCat(path, ": ", entry, ": ", c.message));
      }
    } else {
      f.mismatches.push_back(absl::StrCat(path, ": ", entry, ": not a proof anchord writes"));
    }
  }
  for (const auto& [name, data] : by_name) {
    if (absl::StartsWith(name, "proofs/") && !indexed.count(name)) {
      return malformed(absl::StrCat("entry ", name, " is not listed in bundle.json"));
    }
  }
  for (const auto& [path, digest] : manifest) {
    if (!proven.count(path)) {
      bool has_pending = false;
      for (const std::string& p : f.pending) has_pending |= absl::StartsWith(p, path + ": ");
      bool has_mismatch = false;
      for (const std::string& p : f.mismatches) has_mismatch |= absl::StartsWith(p, path + ": ");
      if (!has_pending && !has_mismatch) f.pending.push_back(absl::StrCat(path, ": no proof yet"));
    }
  }
  int files_checked = 0;
  if (!files_dir.empty()) {
    std::error_code ec;
    if (!std::filesystem::is_directory(files_dir, ec)) {
      err << "error: --files: " << files_dir << " is not a directory\n";
      return kBundleExitMalformed;
    }
    for (const auto& [path, digest] : manifest) {
      auto h = HashFile(std::filesystem::path(files_dir) / path);
      ++files_checked;
      if (!h.ok()) {
        f.mismatches.push_back(
            absl::StrCat(path, ": the file under --files: ", h.status().message()));
      } else if (*h != digest.bytes()) {
        f.mismatches.push_back(absl::StrCat(path, ": the file's SHA-256 ", HexEncode(*h),
                                            " differs from the manifest's ", digest.hex()));
      }
    }
  }
  const int rc = !f.mismatches.empty() ? kBundleExitMismatch
                 : !f.pending.empty()  ? kBundleExitPending
                                       : kBundleExitVerified;
  if (json) {
    nlohmann::json j{{"exit", rc},
                     {"files", manifest.size()},
                     {"verified_proofs", f.verified},
                     {"files_checked", files_checked},
                     {"mismatches", f.mismatches},
                     {"pending", f.pending},
                     {"network", network}};
    out << j.dump() << "\n";
  } else {
    for (const std::string& m : f.mismatches) out << "MISMATCH " << m << "\n";
    for (const std::string& p : f.pending) out << "PENDING  " << p << "\n";
    out << bundle_path << ": " << manifest.size() << " files, " << f.verified
        << " proofs verified, " << f.mismatches.size() << " mismatches, " << f.pending.size()
        << " pending"
        << (files_dir.empty() ? "" : absl::StrCat(", ", files_checked, " files hashed"))
        << " (header policy: " << network << ")\n";
    out << (rc == 0                     ? "Success! Every proof verified.\n"
            : rc == kBundleExitMismatch ? "Failed! A proof or file does not match.\n"
                                        : "Incomplete: some proofs are still pending.\n");
  }
  return rc;
}

}  // namespace anchord::anchorctl
