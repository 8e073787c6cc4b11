#include "services/anchorctl/bundle.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <memory>
#include <set>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/container/flat_hash_map.h"
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
#include "services/anchorctl/proof_fetch.h"
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

// A temporary file for an entry too large to hold in memory (the manifest, the index, the
// reports), made beside the bundle and unlinked at once: whatever happens to the process,
// nothing is left behind, and a bundle of a million files costs disk, not memory.
class Spool {
 public:
  static absl::StatusOr<std::unique_ptr<Spool>> Create(const std::string& near) {
    const std::filesystem::path dir = std::filesystem::path(near).parent_path();
    std::string tmpl =
        ((dir.empty() ? std::filesystem::path(".") : dir) / ".anchorctl-spool-XXXXXX").string();
    const int fd = ::mkstemp(tmpl.data());
    if (fd < 0) {
      return absl::InternalError(
          absl::StrCat(tmpl, ": cannot create a temporary file: ", std::strerror(errno)));
    }
    ::unlink(tmpl.c_str());
    return std::unique_ptr<Spool>(new Spool(fd));
  }
  ~Spool() { ::close(fd_); }
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  void Append(absl::string_view s) {
    buffer_.append(s.data(), s.size());
    if (buffer_.size() >= (1u << 18)) Flush();
  }
  // Everything appended is in the file (a write error is kept and reported by AddTo).
  void Flush() {
    size_t done = 0;
    while (done < buffer_.size() && error_.ok()) {
      const ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0)
        error_ = absl::InternalError(absl::StrCat("temporary file: ", std::strerror(errno)));
      if (n > 0) done += static_cast<size_t>(n);
    }
    size_ += done;
    buffer_.clear();
  }
  // Appends the whole of `other`.
  void AppendSpool(Spool& other) {
    other.Flush();
    char buf[64 * 1024];
    for (uint64_t off = 0; off < other.size_ && error_.ok();) {
      const ssize_t n = ::pread(other.fd_, buf, sizeof(buf), static_cast<off_t>(off));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        error_ = absl::InternalError("temporary file: short read");
        break;
      }
      Append(absl::string_view(buf, static_cast<size_t>(n)));
      off += static_cast<uint64_t>(n);
    }
    if (!other.error_.ok()) error_ = other.error_;
  }
  // Flushes, then adds the file's bytes to the bundle as `name`.
  absl::Status AddTo(bundle::ZipWriter& zip, const std::string& name) {
    Flush();
    if (!error_.ok()) return error_;
    return zip.AddFromFd(name, fd_, size_);
  }

 private:
  explicit Spool(int fd) : fd_(fd) {}
  const int fd_;
  std::string buffer_;
  uint64_t size_ = 0;
  absl::Status error_;
};

// What report.html says above its table, counted as the pages go by.
struct HtmlSummary {
  std::map<std::string, int64_t> by_state, by_provider;
  int64_t files = 0;
  int64_t proofs = 0;
  std::set<int64_t> blocks;
  std::set<std::string> tsas;
  absl::Time first = absl::InfinitePast(), last = absl::InfinitePast();
};

std::string HtmlRows(const std::vector<ReportRow>& rows) {
  std::string h;
  for (const ReportRow& r : rows) {
    absl::StrAppend(&h, "<tr><td>", HtmlEscape(r.path), "</td><td><code>", r.digest_hex,
                    "</code></td><td>", HtmlEscape(r.provider), "</td><td>", HtmlEscape(r.status),
                    "</td><td>",
                    r.bitcoin_block_height > 0 ? absl::StrCat(r.bitcoin_block_height) : "",
                    "</td><td>", HtmlEscape(r.verification), "</td></tr>\n");
  }
  return h;
}

std::string HtmlHead(const std::string& job, const HtmlSummary& sum, const std::string& network) {
  std::string h = absl::StrCat(
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Evidence bundle: ",
      HtmlEscape(job),
      "</title><style>body{font-family:sans-serif;font-size:11pt}table{border-collapse:collapse}"
      "td,th{border:1px solid #999;padding:2px 6px;text-align:left}"
      "@media print{tr{page-break-inside:avoid}}</style></head><body>\n",
      "<h1>Evidence bundle: job ", HtmlEscape(job), "</h1>\n<p>Generated ", TimeText(absl::Now()),
      " by anchord. ", sum.files, " files, ", sum.proofs,
      " proofs. Header policy: ", HtmlEscape(network), ".</p>\n<h2>Summary</h2>\n<table>\n");
  absl::StrAppend(&h, "<tr><th>First anchoring time</th><td>", TimeText(sum.first), "</td></tr>\n");
  absl::StrAppend(&h, "<tr><th>Last anchoring time</th><td>", TimeText(sum.last), "</td></tr>\n");
  for (const auto& [state, n] : sum.by_state) {
    absl::StrAppend(&h, "<tr><th>State ", HtmlEscape(state), "</th><td>", n, "</td></tr>\n");
  }
  for (const auto& [p, n] : sum.by_provider) {
    absl::StrAppend(&h, "<tr><th>Provider ", HtmlEscape(p), "</th><td>", n, "</td></tr>\n");
  }
  absl::StrAppend(&h, "<tr><th>Bitcoin blocks</th><td>", absl::StrJoin(sum.blocks, ", "),
                  "</td></tr>\n<tr><th>Time-stamping authorities</th><td>");
  std::vector<std::string> tsa_list;
  for (const std::string& t : sum.tsas) tsa_list.push_back(HtmlEscape(t));
  absl::StrAppend(&h, absl::StrJoin(tsa_list, "<br>"), "</td></tr>\n</table>\n<h2>Files</h2>\n",
                  "<table>\n<tr><th>Path</th><th>SHA-256</th><th>Provider</th><th>State</th>"
                  "<th>Block</th><th>Verification</th></tr>\n");
  return h;
}

constexpr char kHtmlTail[] =
    "</table>\n<p>How to check everything offline: see VERIFY.md in this bundle.</p>\n"
    "</body></html>\n";

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
  const std::string job = o.job.empty() ? "default" : o.job;

  // The bundle is written as the job's pages arrive: each proof goes into the ZIP as it is
  // fetched, and what must come whole (the manifest, bundle.json's index, the reports) goes to
  // temporary files first. Memory stays at one page of files, whatever the size of the job.
  const absl::Time now = absl::Now();
  auto zip = bundle::ZipWriter::Create(o.output, now);
  if (!zip.ok()) return Fail(kExitInternal, absl::StrCat("--output: ", zip.status().message()));
  std::unique_ptr<Spool> manifest, index, csv, json, html_rows;
  for (std::unique_ptr<Spool>* spool : {&manifest, &index, &csv, &json, &html_rows}) {
    auto made = Spool::Create(o.output);
    if (!made.ok()) return Fail(kExitInternal, absl::StrCat("--output: ", made.status().message()));
    *spool = *std::move(made);
  }
  ReportWriter csv_writer(ReportWriter::Format::kCsv), json_writer(ReportWriter::Format::kJson);
  HtmlSummary summary;
  bundle::NameSet in_manifest;  // paths already in the manifest
  int64_t manifest_files = 0;
  std::map<int64_t, std::string> header_bytes;
  std::set<std::string> chain_pems;
  std::map<std::string, std::string> root_tokens;  // root hex -> tsr
  auto note_time = [&](absl::Time t) {
    if (t == absl::InfinitePast()) return;
    if (summary.first == absl::InfinitePast() || t < summary.first) summary.first = t;
    if (summary.last == absl::InfinitePast() || t > summary.last) summary.last = t;
  };
  int skipped = 0;
  std::string last_path;
  // One verification per (digest, provider); nearby duplicates share the verdict. Each proof is
  // downloaded anyway (its bytes go into the bundle) and a Merkle root's token is checked once per
  // process (CheckTsaProof), so a small bound costs little: 100,000 verdicts were a third of the
  // memory of a 100,000-file bundle.
  std::map<std::pair<std::string, std::string>, std::string> verdicts;
  constexpr size_t kMaxVerdicts = 4096;
  absl::Status zip_error;
  auto add_proof = [&](const ReportRow& r, const std::string& digest, std::string bytes) {
    const ProofFormat format = DetectProofFormat(bytes);
    const std::string entry =
        absl::StrCat("proofs/", r.path, ".", r.provider, ProofExtension(format));
    if (auto st = bundle::CheckEntryName(entry); !st.ok()) {
      std::cerr << "anchorctl: bundle: skipping a proof of \"" << r.path << "\": " << st.message()
                << std::endl;
      ++skipped;
      return;
    }
    if (format == ProofFormat::kOts) {
      auto parsed = ots::ParseDetached(bytes);
      if (parsed.ok()) {
        ots::VerifyResult v = ots::Verify(*parsed, digest, headers.get());
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
    } else if (format == ProofFormat::kTsr || format == ProofFormat::kTsrPath) {
      std::string tsr = bytes;
      // A Merkle root's token read already for another of its leaves (the same bytes: a root
      // anchored twice keeps its first token under tsa/roots/, but every token's certificates and
      // time are read).
      bool seen = false;
      if (format == ProofFormat::kTsrPath) {
        auto form = tsa::DecodePathForm(bytes);
        if (form.ok()) {
          auto [it, inserted] = root_tokens.emplace(form->root.hex(), form->tsr);
          seen = !inserted && it->second == form->tsr;
          tsr = form->tsr;
        }
      }
      if (!seen) {
        if (auto certs = tsa::TokenCertificatesPem(tsr); certs.ok()) {
          for (absl::string_view c :
               absl::StrSplit(*certs, "-----END CERTIFICATE-----\n", absl::SkipWhitespace())) {
            chain_pems.insert(absl::StrCat(c, "-----END CERTIFICATE-----\n"));
          }
        }
        if (auto info = tsa::Inspect(tsr); info.ok()) {
          summary.tsas.insert(info->tsa_name);
          note_time(info->gen_time);
        }
      }
    }
    if (auto st = (*zip)->Add(entry, bytes); !st.ok()) {
      zip_error = st;
      return;
    }
    index->Append(
        absl::StrCat(summary.proofs == 0 ? "\n    " : ",\n    ",
                     nlohmann::json{{"entry", entry},
                                    {"path", r.path},
                                    {"digest", r.digest_hex},
                                    {"provider", r.provider},
                                    {"format", ProofFormatName(format)}}
                         .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
    ++summary.proofs;
  };
  // The page's proofs are downloaded ahead of the rows that write them (one call for the page),
  // in row order: digests[i] is set exactly for the rows that have a proof to download.
  ProofFetcher fetcher(*clients, g);
  int rc = ForEachReportPage(*clients, job, kReportPageFiles, [&](std::vector<ReportRow>& rows) {
    std::vector<std::optional<Digest>> digests(rows.size());
    std::vector<ProofFetcher::ProofRef> refs;
    for (size_t i = 0; i < rows.size(); ++i) {
      const ReportRow& q = rows[i];
      if (q.digest_hex.size() != 64 || q.status == "FAILED" || !SafeRelativePath(q.path) ||
          q.provider.empty()) {
        continue;
      }
      absl::StatusOr<Digest> d = Digest::FromHex(q.digest_hex);
      if (!d.ok()) continue;
      refs.push_back({std::string(d->raw()), q.provider});
      digests[i] = *d;
    }
    size_t queued = fetcher.Push(refs);
    for (size_t i = 0; i < rows.size(); ++i) {
      ReportRow& r = rows[i];
      if (queued < refs.size()) queued += fetcher.Push(refs, queued);
      if (Interrupter::Get().interrupted()) return Fail(kExitIncomplete, "interrupted");
      ++summary.by_state[r.status];
      if (!r.provider.empty()) ++summary.by_provider[r.provider];
      if (r.path != last_path) ++summary.files;
      last_path = r.path;
      if (r.digest_hex.size() != 64 || r.status == "FAILED") continue;
      if (!SafeRelativePath(r.path)) {
        std::cerr << "anchorctl: bundle: skipping \"" << r.path
                  << "\": its path cannot be a manifest line" << std::endl;
        ++skipped;
        continue;
      }
      if (in_manifest.Insert(r.path)) {
        manifest->Append(absl::StrCat(r.digest_hex, "  ", r.path, "\n"));
        ++manifest_files;
      }
      if (!digests[i].has_value()) continue;
      const Digest& digest = *digests[i];
      // One download serves the verification column and the bundle's copy of the proof.
      auto bytes = fetcher.Take();
      auto key = std::make_pair(r.digest_hex, r.provider);
      auto it = verdicts.find(key);
      if (it == verdicts.end()) {
        if (verdicts.size() >= kMaxVerdicts) verdicts.clear();
        it = verdicts.emplace(key, VerifyProofData(bytes, digest, r.status, headers.get(), ca_pem))
                 .first;
      }
      r.verification = it->second;
      if (!bytes.ok()) continue;  // nothing yet (pending), or the provider gives none
      add_proof(r, digest.raw(), *std::move(bytes));
      if (!zip_error.ok())
        return Fail(kExitInternal, absl::StrCat("--output: ", zip_error.message()));
    }
    csv->Append(csv_writer.Rows(rows));
    json->Append(json_writer.Rows(rows));
    html_rows->Append(HtmlRows(rows));
    return kExitComplete;
  });
  if (rc != kExitComplete) return rc;
  csv->Append(csv_writer.End());
  json->Append(json_writer.End());

  std::string headers_txt = "# HEIGHT HEADER_HEX (raw 80-byte Bitcoin block headers)\n";
  std::vector<std::pair<std::string, std::string>> small;  // entries written whole
  for (const auto& [h, raw] : header_bytes) {
    summary.blocks.insert(h);
    small.emplace_back(absl::StrCat("headers/", h, ".hdr"), raw);
    absl::StrAppend(&headers_txt, h, " ", HexEncode(raw), "\n");
  }
  small.emplace_back("headers/headers.txt", headers_txt);
  if (!ca_pem.empty()) small.emplace_back("tsa/ca.pem", ca_pem);
  if (!chain_pems.empty()) small.emplace_back("tsa/chain.pem", absl::StrJoin(chain_pems, ""));
  for (const auto& [root, tsr] : root_tokens) {
    small.emplace_back(absl::StrCat("tsa/roots/", root, ".tsr"), tsr);
  }
  auto html = Spool::Create(o.output);
  auto meta_spool = Spool::Create(o.output);
  if (!html.ok()) return Fail(kExitInternal, absl::StrCat("--output: ", html.status().message()));
  if (!meta_spool.ok()) {
    return Fail(kExitInternal, absl::StrCat("--output: ", meta_spool.status().message()));
  }
  (*html)->Append(HtmlHead(job, summary, network));
  (*html)->AppendSpool(*html_rows);
  (*html)->Append(kHtmlTail);
  // bundle.json: the small fields, then the index spooled proof by proof (one line each).
  nlohmann::json meta{
      {"format", kFormat},
      {"version", kVersion},
      {"job", job},
      {"created_at", TimeText(now)},
      {"network", network},
      {"header_source", header_spec.empty() ? "" : headers->Describe()},
      {"header_policy", network == "mainnet" ? "pow_limit_bits 0x1d00ffff + difficulty floor"
                                             : "any difficulty (regtest)"},
      {"files", manifest_files}};
  std::string head = Dump(meta);
  head.resize(head.size() - 2);  // the closing "\n}"
  (*meta_spool)->Append(absl::StrCat(head, ",\n  \"proofs\": ["));
  (*meta_spool)->AppendSpool(*index);
  (*meta_spool)->Append(summary.proofs == 0 ? "]\n}\n" : "\n  ]\n}\n");
  absl::Status st;
  for (const auto& [name, data] : small) {
    if (st.ok()) st = (*zip)->Add(name, data);
  }
  if (st.ok()) st = manifest->AddTo(**zip, "MANIFEST.sha256");
  if (st.ok()) st = csv->AddTo(**zip, "report.csv");
  if (st.ok()) st = json->AddTo(**zip, "report.json");
  if (st.ok()) st = (*html)->AddTo(**zip, "report.html");
  if (st.ok()) st = (*meta_spool)->AddTo(**zip, "bundle.json");
  if (st.ok()) st = (*zip)->Add("VERIFY.md", VerifyMd(job, network));
  if (st.ok()) st = (*zip)->Commit();
  if (!st.ok()) return Fail(kExitInternal, absl::StrCat("--output: ", st.message()));
  std::cerr << "anchorctl: wrote " << o.output << ": " << manifest_files << " files, "
            << summary.proofs << " proofs, " << header_bytes.size() << " block headers, "
            << summary.tsas.size() << " TSA(s)"
            << (skipped ? absl::StrCat(", ", skipped, " skipped") : "") << std::endl;
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

// What verify-bundle reads of a bundle: anchord writes at most a few entries beside one per proof,
// so ten million entries is a job of millions of files. MANIFEST.sha256 and bundle.json grow with
// the files (about 110 and 200 bytes each), hence the entry bound; the bytes read in all are
// bounded by the bundle's own size (a deflated .ots or report shrinks 2-10 times, a hostile
// entry made of zeros a thousand times).
bundle::ZipLimits VerifyLimits(const std::string& path) {
  bundle::ZipLimits l;
  l.max_entries = 10'000'000;
  l.max_entry_bytes = size_t{1} << 30;
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(path, ec);
  l.max_total_bytes = std::max<size_t>(size_t{1} << 30, ec ? 0 : static_cast<size_t>(size) * 64);
  return l;
}

// One proof bundle.json lists, in its order.
struct IndexedProof {
  std::string entry;
  std::string path;
  bool seen = false;
};

// bundle.json parsed with each proof of its index taken out as it is read (the parsed document
// never holds the index: a million proofs are a million small objects, not one tree of them).
// Returns the document without its proofs, or a message naming what is wrong.
// A proof is listed only with its entry, so an index longer than the archive has entries is
// malformed: it is refused at that point, and a hostile bundle.json of millions of tiny objects
// costs no more memory than the archive's own entries would.
absl::StatusOr<nlohmann::json> ParseIndex(const std::string& text, size_t max_proofs,
                                          std::vector<IndexedProof>* proofs) {
  std::string top_key;
  std::string bad;
  nlohmann::json::parser_callback_t cb = [&](int depth, nlohmann::json::parse_event_t event,
                                             nlohmann::json& parsed) {
    using E = nlohmann::json::parse_event_t;
    if (depth == 1 && event == E::key)
      top_key = parsed.is_string() ? parsed.get<std::string>() : "";
    if (depth != 2 || top_key != "proofs") return true;
    if (event == E::object_end) {
      if (!parsed.is_object() || !parsed.contains("entry") || !parsed["entry"].is_string() ||
          !parsed.contains("path") || !parsed["path"].is_string()) {
        if (bad.empty()) bad = "a proof without entry/path";
      } else if (proofs->size() >= max_proofs) {
        if (bad.empty())
          bad = absl::StrCat("lists more proofs than the bundle's ", max_proofs, " entries");
      } else {
        proofs->push_back({parsed["entry"].get<std::string>(), parsed["path"].get<std::string>()});
      }
      return false;
    }
    if (event == E::value || event == E::array_end) {
      if (bad.empty()) bad = "a proof without entry/path";
      return false;
    }
    return true;
  };
  nlohmann::json meta = nlohmann::json::parse(text, cb, false);
  if (meta.is_discarded() || !meta.is_object() || meta.value("format", "") != kFormat ||
      !meta.contains("proofs") || !meta["proofs"].is_array()) {
    return absl::InvalidArgumentError("entry bundle.json: not an anchord-bundle index");
  }
  if (!bad.empty()) return absl::InvalidArgumentError(absl::StrCat("entry bundle.json: ", bad));
  return meta;
}

}  // namespace

int RunVerifyBundle(const std::string& bundle_path, const std::string& files_dir, bool json,
                    std::ostream& out, std::ostream& err) {
  auto malformed = [&](const std::string& what) {
    err << "error: malformed bundle: " << what << "\n";
    return kBundleExitMalformed;
  };
  // Two walks over the archive, one entry in memory at a time: the first reads what the proofs
  // are checked against (the manifest, the index, the headers, the TSA certificates) and checks
  // every entry's name and type; the second checks each proof as it is read.
  const bundle::ZipLimits limits = VerifyLimits(bundle_path);
  std::map<std::string, std::string> small;  // bundle.json, tsa/*.pem, headers/*.hdr
  std::map<std::string, Digest> manifest;
  std::string manifest_error;
  bool has_manifest = false;
  size_t entries = 0;  // regular entries: the most proofs the index may list
  auto parse_manifest = [&](const std::string& text) {
    int line_no = 0;
    for (absl::string_view line : absl::StrSplit(text, '\n')) {
      ++line_no;
      if (line.empty()) continue;
      if (line.size() < 67 || line.substr(64, 2) != "  ") {
        return absl::StrCat("MANIFEST.sha256 line ", line_no, ": not \"DIGEST  PATH\"");
      }
      absl::StatusOr<Digest> digest = Digest::FromHex(line.substr(0, 64));
      const std::string path(line.substr(66));
      if (!digest.ok()) {
        return absl::StrCat("MANIFEST.sha256 line ", line_no, ": the digest is not 64 hex");
      }
      if (!SafeRelativePath(path)) {
        return absl::StrCat("MANIFEST.sha256 line ", line_no,
                            ": path is absolute, empty or has a \"..\" component");
      }
      if (!manifest.emplace(path, *digest).second) {
        return absl::StrCat("MANIFEST.sha256 line ", line_no, ": \"", path, "\" listed twice");
      }
    }
    return std::string();
  };
  absl::Status walked = bundle::ForEachZipEntry(
      bundle_path, limits,
      [&](const std::string& name) {
        ++entries;
        return name == "MANIFEST.sha256" || name == "bundle.json" || name == "tsa/ca.pem" ||
               name == "tsa/chain.pem" ||
               (absl::StartsWith(name, "headers/") && absl::EndsWith(name, ".hdr"));
      },
      [&](const std::string& name, std::string data) {
        if (name == "MANIFEST.sha256") {
          has_manifest = true;
          manifest_error = parse_manifest(data);
        } else {
          small[name] = std::move(data);
        }
        return absl::OkStatus();
      });
  if (!walked.ok()) return malformed(std::string(walked.message()));
  auto get = [&](const std::string& name) -> const std::string* {
    auto it = small.find(name);
    return it == small.end() ? nullptr : &it->second;
  };
  if (!has_manifest) return malformed("entry MANIFEST.sha256 is missing");
  const std::string* meta_text = get("bundle.json");
  if (meta_text == nullptr) return malformed("entry bundle.json is missing");
  if (!manifest_error.empty()) return malformed(manifest_error);
  std::vector<IndexedProof> proofs;
  auto parsed_meta = ParseIndex(*meta_text, entries, &proofs);
  if (!parsed_meta.ok()) return malformed(std::string(parsed_meta.status().message()));
  const nlohmann::json& meta = *parsed_meta;
  if (!meta.contains("version") || !meta["version"].is_number_integer() ||
      meta["version"] != kVersion) {
    return malformed("entry bundle.json: unsupported version");
  }
  const std::string network = meta.value("network", "mainnet");
  if (network != "mainnet" && network != "regtest") {
    return malformed(absl::StrCat("entry bundle.json: unknown network \"", network, "\""));
  }
  small.erase("bundle.json");
  // Headers: only the raw .hdr entries are trusted input (each is checked by libs/ots on use).
  // HeaderPolicy{} is mainnet's (pow limit and difficulty floor); regtest accepts any difficulty.
  const ots::HeaderPolicy policy =
      network == "mainnet" ? ots::HeaderPolicy::Mainnet() : ots::HeaderPolicy::Regtest();
  std::string headers_text;
  for (const auto& [name, data] : small) {
    if (!absl::StartsWith(name, "headers/") || !absl::EndsWith(name, ".hdr")) continue;
    absl::string_view h = absl::string_view(name).substr(8, name.size() - 12);
    int64_t height = 0;
    if (!absl::SimpleAtoi(h, &height) || height < 0 || data.size() != ots::kBlockHeaderSize) {
      return malformed(
          absl::StrCat("entry ", name, ": not a raw 80-byte header named <height>.hdr"));
    }
    absl::StrAppend(&headers_text, height, " ", HexEncode(data), "\n");
  }
  std::unique_ptr<ots::LocalHeadersFile> headers;
  if (!headers_text.empty()) {
    auto h = ots::LocalHeadersFile::FromContents(headers_text, "bundle headers/", policy);
    if (!h.ok()) return malformed(absl::StrCat("headers/: ", h.status().message()));
    headers = *std::move(h);
  }
  const std::string* ca = get("tsa/ca.pem");
  const std::string* chain = get("tsa/chain.pem");
  absl::flat_hash_map<std::string, size_t> by_entry;
  by_entry.reserve(proofs.size());
  for (size_t i = 0; i < proofs.size(); ++i) {
    const IndexedProof& p = proofs[i];
    if (!by_entry.emplace(p.entry, i).second) {
      return malformed(absl::StrCat("entry ", p.entry, " is listed twice"));
    }
    if (!manifest.count(p.path)) {
      return malformed(
          absl::StrCat("entry ", p.entry, ": its file \"", p.path, "\" is not in MANIFEST.sha256"));
    }
  }

  Findings f;
  bundle::NameSet proven, judged;  // paths with a verified proof; with a finding
  std::string unlisted;
  walked = bundle::ForEachZipEntry(
      bundle_path, limits,
      [](const std::string& name) { return absl::StartsWith(name, "proofs/"); },
      [&](const std::string& entry, std::string bytes) {
        auto at = by_entry.find(entry);
        if (at == by_entry.end()) {
          unlisted = entry;
          return absl::CancelledError("unlisted");
        }
        IndexedProof& p = proofs[at->second];
        p.seen = true;
        const std::string& path = p.path;
        const Digest& digest = manifest.at(path);
        const ProofFormat format = DetectProofFormat(bytes);
        auto mismatch = [&](absl::string_view why) {
          f.mismatches.push_back(absl::StrCat(path, ": ", entry, ": ", why));
          judged.Insert(path);
        };
        if (format == ProofFormat::kOts) {
          auto parsed = ots::ParseDetached(bytes);
          if (!parsed.ok()) {
            mismatch(parsed.status().message());
            return absl::OkStatus();
          }
          ots::VerifyResult v = ots::Verify(*parsed, digest.bytes(), headers.get());
          if (v.verdict == ots::Verdict::kVerified) {
            ++f.verified;
            proven.Insert(path);
            return absl::OkStatus();
          }
          if (v.verdict != ots::Verdict::kNotVerifiable) {
            mismatch(v.message);
            return absl::OkStatus();
          }
          bool bitcoin = false;
          for (const auto& a : v.attestations) {
            if (a.attestation.kind == ots::Attestation::Kind::kBitcoin) bitcoin = true;
          }
          if (bitcoin) {
            // A complete proof whose header the bundle lacks or that fails the header policy.
            mismatch(v.message);
          } else {
            f.pending.push_back(
                absl::StrCat(path, ": ", entry, ": pending (no Bitcoin attestation yet)"));
            judged.Insert(path);
          }
        } else if (format == ProofFormat::kTsr || format == ProofFormat::kTsrPath) {
          if (ca == nullptr) return absl::FailedPreconditionError(entry);
          TsaCheck c = CheckTsaProof(bytes, digest, *ca, chain != nullptr ? *chain : "");
          if (c.exit == 0) {
            ++f.verified;
            proven.Insert(path);
          } else {
            mismatch(c.message);
          }
        } else {
          mismatch("not a proof anchord writes");
        }
        return absl::OkStatus();
      });
  if (!unlisted.empty())
    return malformed(absl::StrCat("entry ", unlisted, " is not listed in bundle.json"));
  if (absl::IsFailedPrecondition(walked)) {
    return malformed(
        absl::StrCat("entry tsa/ca.pem is missing (needed by ", walked.message(), ")"));
  }
  if (!walked.ok()) return malformed(std::string(walked.message()));
  for (const IndexedProof& p : proofs) {
    if (!p.seen)
      return malformed(absl::StrCat("entry ", p.entry, " is listed in bundle.json but missing"));
  }
  for (const auto& [path, digest] : manifest) {
    if (!proven.Contains(path) && !judged.Contains(path)) {
      f.pending.push_back(absl::StrCat(path, ": no proof yet"));
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
