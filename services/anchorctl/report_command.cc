// anchorctl report: one row per file and proof of a job, each proof verified (digest, commitment
// path, and the Bitcoin attestations or the RFC 3161 token when given what to check them with).
#include "services/anchorctl/commands.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/strings/strip.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"
#include "libs/common/validate.h"
#include "libs/ots/headers.h"
#include "libs/ots/verify.h"
#include "libs/rpc/server.h"
#include "libs/rpc/status.h"
#include "services/anchorctl/clients.h"
#include "services/anchorctl/command_common.h"
#include "services/anchorctl/format.h"
#include "services/anchorctl/process.h"
#include "services/anchorctl/proof_check.h"
#include "services/anchorctl/proof_fetch.h"
#include "libs/tsa/tsa.h"
#include "services/anchorctl/stack.h"

namespace anchord::anchorctl {
using namespace anchord::v1;

std::unique_ptr<Clients> MakeClients(const GlobalOptions& g) {
  return std::make_unique<Clients>(ResolveEndpoints(g), UnaryDeadline(g));
}

// The .ots of a proof as the poller serves it (for a Merkle leaf: its joined proof).
absl::StatusOr<std::string> FetchOts(Clients& clients, const GlobalOptions& g,
                                     const std::string& digest, const std::string& provider) {
  grpc::ClientContext ctx;
  ScopedCancel cancel(&ctx);
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + std::max(UnaryDeadline(g), absl::Seconds(60))));
  DownloadProofRequest req;
  req.set_digest(digest);
  req.set_provider(provider);
  auto reader = clients.poller().DownloadProof(&ctx, req);
  DownloadProofResponse chunk;
  std::string data;
  while (reader->Read(&chunk)) {
    data += chunk.data();
    if (data.size() > ots::kMaxProofFileBytes) {
      ctx.TryCancel();
      break;
    }
  }
  grpc::Status st = reader->Finish();
  if (st.error_code() == grpc::StatusCode::FAILED_PRECONDITION)
    return absl::NotFoundError("no .ots yet");
  if (!st.ok()) return clients.RpcError("poller", "DownloadProof", st);
  return data;
}

std::string VerifyProofRow(Clients& clients, const GlobalOptions& g, const std::string& digest_hex,
                           const std::string& provider, const std::string& status,
                           ots::BlockHeaderSource* headers, const std::string& tsa_ca_pem) {
  absl::StatusOr<Digest> digest = Digest::FromHex(digest_hex);
  if (!digest.ok()) return "INVALID digest";
  return VerifyProofData(FetchOts(clients, g, digest->raw(), provider), *digest, status, headers,
                         tsa_ca_pem);
}

std::string VerifyProofData(const absl::StatusOr<std::string>& data, const Digest& digest,
                            const std::string& status, ots::BlockHeaderSource* headers,
                            const std::string& tsa_ca_pem) {
  if (absl::IsNotFound(data.status())) {
    // A confirmed proof without an .ots: the provider gives none (ProofLedger); its
    // certificate_url is the evidence.
    return status == "CONFIRMED" ? "NO_OTS see certificate_url" : "NO_PROOF_YET";
  }
  if (!data.ok()) return absl::StrCat("ERROR ", data.status().message());
  const ProofFormat format = DetectProofFormat(*data);
  if (format == ProofFormat::kTsr || format == ProofFormat::kTsrPath) {
    TsaCheck c = CheckTsaProof(*data, digest, tsa_ca_pem);
    switch (c.exit) {
      case 0:
        return absl::StrCat("VERIFIED tsa ", c.info ? c.info->gen_time_text : "",
                            c.root_hex.empty() ? "" : " via merkle root");
      case 1:
        return "UNCHECKED no --tsa-ca-file";
      case 3:
        return absl::StrCat("MISMATCH ", c.message);
      default:
        return absl::StrCat("INVALID ", c.message);
    }
  }
  auto proof = ots::ParseDetached(*data);
  if (!proof.ok()) return absl::StrCat("INVALID ", proof.status().message());
  ots::VerifyResult v = ots::Verify(*proof, digest.bytes(), headers);
  switch (v.verdict) {
    case ots::Verdict::kVerified:
      // Under regtest rules the block is a test chain's: the column must not pass for Bitcoin.
      return absl::StrCat("VERIFIED block ", v.earliest ? v.earliest->attestation.height : 0,
                          v.regtest_headers ? " (regtest)" : "");
    case ots::Verdict::kDigestMismatch:
      return "DIGEST_MISMATCH the proof is for another file";
    case ots::Verdict::kMismatch:
      return absl::StrCat("MISMATCH ", v.message);
    case ots::Verdict::kNotVerifiable:
      break;
  }
  bool bitcoin = false, pending = false;
  for (const auto& a : v.attestations) {
    if (a.attestation.kind == ots::Attestation::Kind::kBitcoin) bitcoin = true;
    if (a.attestation.kind == ots::Attestation::Kind::kPending) pending = true;
  }
  if (bitcoin) return headers ? absl::StrCat("UNCHECKED ", v.message) : "UNCHECKED no --headers";
  if (pending) return "PENDING";
  return absl::StrCat("UNVERIFIABLE ", v.message);
}

namespace {

// The report rows of `files` (a page of the job's files, in ListFiles order): each file with each
// of its digest's proofs at the poller, or where the submitter has it when the poller has none.
int RowsOfFiles(Clients& clients, const std::vector<ListFilesResponse>& files,
                std::vector<ReportRow>* rows_out) {
  std::vector<std::string> digests;
  {
    std::unordered_set<std::string> seen;
    for (const auto& f : files) {
      if (f.digest().size() == kDigestBytes && seen.insert(f.digest()).second)
        digests.push_back(f.digest());
    }
  }
  std::unordered_map<std::string, std::vector<Proof>> proofs;
  if (absl::Status s = ForEachProof(clients, digests, OnInterrupt::kFail,
                                    [&](const Proof& p) { proofs[p.digest()].push_back(p); });
      !s.ok()) {
    return FailStatus(s);
  }
  // Digests the poller does not have yet: ask the submitter where they are.
  std::unordered_map<std::string, LocateResponse> located;
  for (const auto& d : digests) {
    if (proofs.count(d) > 0 || Interrupter::Get().interrupted()) continue;
    grpc::ClientContext ctx;
    ScopedCancel cancel(&ctx);
    clients.SetDeadline(&ctx);
    LocateRequest req;
    req.set_digest(d);
    LocateResponse resp;
    grpc::Status st = clients.status("submitter").Locate(&ctx, req, &resp);
    if (st.ok()) {
      located[d] = resp;
    } else if (st.error_code() != grpc::StatusCode::NOT_FOUND) {
      return FailStatus(clients.RpcError("submitter", "Locate", st));
    }
  }
  if (Interrupter::Get().interrupted()) return Fail(kExitIncomplete, "interrupted");

  std::vector<ReportRow>& rows = *rows_out;
  for (const auto& f : files) {
    ReportRow base;
    base.path = f.path();
    base.digest_hex = f.digest().empty() ? "" : DigestOf(f.digest());
    base.size_bytes = f.size_bytes();
    base.duplicate_of = f.duplicate_of();
    if (f.status().code() != 0 || f.digest().size() != kDigestBytes) {
      base.status = "FAILED";
      base.reason = f.status().reason();
      base.error = f.status().message();
      rows.push_back(base);
      continue;
    }
    base.status = StateName(f.state());
    auto from_proof = [](ReportRow r, const Proof& p) {
      r.provider = p.provider();
      r.proof_id = p.proof_id();
      r.status = StateName(p.state());
      r.certificate_url = p.certificate_url();
      r.verify_url = p.verify_url();
      r.bitcoin_block_height = p.bitcoin_block_height();
      if (!p.merkle_root().empty()) r.merkle_root = DigestOf(p.merkle_root());
      r.stalled = p.stalled();
      if (p.state() == DIGEST_STATE_FAILED) {
        r.reason = p.failure().reason();
        r.error = p.failure().message();
      }
      return r;
    };
    auto pit = proofs.find(f.digest());
    if (pit != proofs.end()) {
      for (const auto& p : pit->second) rows.push_back(from_proof(base, p));
      continue;
    }
    auto lit = located.find(f.digest());
    if (lit != located.end()) {
      if (!lit->second.proofs().empty()) {
        for (const auto& p : lit->second.proofs()) rows.push_back(from_proof(base, p));
        continue;
      }
      if (lit->second.state() > f.state()) base.status = StateName(lit->second.state());
      if (lit->second.status().code() != 0) {
        base.reason = lit->second.status().reason();
        base.error = lit->second.status().message();
      }
    }
    rows.push_back(base);
  }
  return kExitComplete;
}

}  // namespace

int ForEachReportPage(Clients& clients, const std::string& job, size_t page_files,
                      const std::function<int(std::vector<ReportRow>& rows)>& on_page) {
  grpc::ClientContext ctx;
  ScopedCancel cancel(&ctx);
  // The stream stays open while each page is looked up and handed on (a report that verifies
  // every proof of a large job takes a while); the hasher reads its rows a page at a time, so an
  // open stream holds nothing of its database.
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + kStreamDeadline));
  ListFilesRequest req;
  req.set_job(job);
  auto reader = clients.hasher().ListFiles(&ctx, req);
  std::vector<ListFilesResponse> files;
  files.reserve(page_files);
  auto flush = [&]() -> int {
    std::vector<ReportRow> rows;
    int rc = RowsOfFiles(clients, files, &rows);
    files.clear();
    if (rc == kExitComplete) rc = on_page(rows);
    return rc;
  };
  ListFilesResponse f;
  while (reader->Read(&f)) {
    files.push_back(std::move(f));
    if (files.size() < std::max<size_t>(page_files, 1)) continue;
    if (int rc = flush(); rc != kExitComplete) {
      ctx.TryCancel();
      (void)reader->Finish();
      return rc;
    }
  }
  grpc::Status st = reader->Finish();
  if (!st.ok()) return FailStatus(clients.RpcError("hasher", "ListFiles", st));
  return files.empty() ? kExitComplete : flush();
}

int CollectReportRows(Clients& clients, const std::string& job, std::vector<ReportRow>* rows_out) {
  return ForEachReportPage(clients, job, kReportPageFiles, [&](std::vector<ReportRow>& rows) {
    for (ReportRow& r : rows) rows_out->push_back(std::move(r));
    return kExitComplete;
  });
}

int RunReport(const GlobalOptions& g, const ReportOptions& o) {
  if (auto s = ValidateJob(o.job, "--job"); !s.ok()) return FailStatus(s);
  if (o.format != "csv" && o.format != "json") {
    return Fail(kExitUsage, absl::StrCat("--format: \"", o.format, "\" is not csv or json"));
  }
  Clients clients(ResolveEndpoints(g), UnaryDeadline(g));
  for (const char* service : {"hasher", "submitter", "poller"}) {
    if (auto s = clients.Check(service); !s.ok())
      return Fail(kExitInternal, std::string(s.message()));
  }
  std::unique_ptr<ots::BlockHeaderSource> headers;
  std::string tsa_ca_pem;
  if (!o.no_verify) {
    if (!o.headers.empty()) {
      auto net = ots::ParseNetwork(o.network);
      if (!net.ok()) return Fail(kExitUsage, std::string(net.status().message()));
      auto made = ots::MakeHeaderSource(o.headers, *net);
      if (!made.ok()) return Fail(kExitUsage, absl::StrCat("--headers: ", made.status().message()));
      headers = std::move(*made);
    }
    std::string tsa_ca_file = o.tsa_ca_file;
    if (tsa_ca_file.empty()) {
      // A stack started by anchorctl with the sandbox records its TSA's test CA.
      if (auto stack = ReadStackFile(g.data_dir); stack.ok()) tsa_ca_file = stack->tsa_ca_file;
    }
    if (!tsa_ca_file.empty()) {
      auto ca = ReadSmallFile(tsa_ca_file);
      if (!ca.ok() || tsa::CountPemCertificates(*ca) == 0) {
        return Fail(kExitUsage,
                    absl::StrCat("--tsa-ca-file: ", tsa_ca_file, ": no readable PEM certificate"));
      }
      tsa_ca_pem = *std::move(ca);
    }
  }
  auto out = OutputFile::Open(o.output);
  if (!out.ok()) return Fail(kExitInternal, absl::StrCat("--output: ", out.status().message()));
  // Rows are written a page of files at a time (the command once held the whole job, its rows
  // and the whole text: 287 MiB for 100,000 files as CSV, 463 MiB as JSON).
  ReportWriter writer(o.format == "json" ? ReportWriter::Format::kJson
                                         : ReportWriter::Format::kCsv);
  bool any_mismatch = false;
  int64_t written = 0;
  // One download per (digest, provider); duplicates share the verdict. Bounded: past the bound a
  // duplicate far from its first file is verified again.
  std::map<std::pair<std::string, std::string>, std::string> verdicts;
  constexpr size_t kMaxVerdicts = 100000;
  // Proofs are downloaded ahead of the rows that check them (one call for the page): a row's
  // proof is queued when its page is read and its (digest, provider) has no verdict yet and is
  // not queued already; a row whose verdict was dropped from the bounded map meanwhile downloads
  // its proof itself.
  ProofFetcher fetcher(clients, g);
  int rc = ForEachReportPage(clients, o.job, kReportPageFiles, [&](std::vector<ReportRow>& rows) {
    auto verifiable = [&](const ReportRow& r) {
      return !o.no_verify && !r.provider.empty() && r.digest_hex.size() == 64;
    };
    std::vector<bool> prefetched(rows.size(), false);
    std::vector<ProofFetcher::ProofRef> refs;
    std::set<std::pair<std::string, std::string>> queued_keys;
    for (size_t i = 0; i < rows.size(); ++i) {
      const ReportRow& q = rows[i];
      if (!verifiable(q)) continue;
      auto key = std::make_pair(q.digest_hex, q.provider);
      if (verdicts.count(key) || queued_keys.count(key)) continue;
      absl::StatusOr<Digest> d = Digest::FromHex(q.digest_hex);
      if (!d.ok()) continue;  // VerifyProofRow's "INVALID digest", without a download
      refs.push_back({std::string(d->raw()), q.provider});
      queued_keys.insert(std::move(key));
      prefetched[i] = true;
    }
    size_t queued = fetcher.Push(refs);
    for (size_t i = 0; i < rows.size(); ++i) {
      ReportRow& r = rows[i];
      if (queued < refs.size()) queued += fetcher.Push(refs, queued);
      if (!verifiable(r)) continue;
      if (Interrupter::Get().interrupted()) return Fail(kExitIncomplete, "interrupted");
      auto key = std::make_pair(r.digest_hex, r.provider);
      std::optional<absl::StatusOr<std::string>> data;
      if (prefetched[i]) data = fetcher.Take();
      auto it = verdicts.find(key);
      if (it == verdicts.end()) {
        if (verdicts.size() >= kMaxVerdicts) verdicts.clear();
        std::string verdict = data.has_value()
                                  ? VerifyProofData(*data, *Digest::FromHex(r.digest_hex), r.status,
                                                    headers.get(), tsa_ca_pem)
                                  : VerifyProofRow(clients, g, r.digest_hex, r.provider, r.status,
                                                   headers.get(), tsa_ca_pem);
        it = verdicts.emplace(key, std::move(verdict)).first;
      }
      r.verification = it->second;
      if (absl::StartsWith(r.verification, "MISMATCH") ||
          absl::StartsWith(r.verification, "DIGEST_MISMATCH") ||
          absl::StartsWith(r.verification, "INVALID")) {
        any_mismatch = true;
      }
    }
    if (absl::Status s = (*out)->Write(writer.Rows(rows)); !s.ok()) {
      return Fail(kExitInternal, absl::StrCat("--output: ", s.message()));
    }
    written += static_cast<int64_t>(rows.size());
    return kExitComplete;
  });
  if (rc != kExitComplete) return rc;  // a file output is left as it was
  if (absl::Status s = (*out)->Write(writer.End()); !s.ok()) {
    return Fail(kExitInternal, absl::StrCat("--output: ", s.message()));
  }
  if (absl::Status s = (*out)->Commit(); !s.ok()) {
    return Fail(kExitInternal, absl::StrCat("--output: ", s.message()));
  }
  if (!(*out)->is_stdout()) {
    std::cerr << "anchorctl: wrote " << written << " rows to " << o.output << std::endl;
  }
  if (any_mismatch) {
    std::cerr << "anchorctl: at least one proof does not verify (see the verification column)"
              << std::endl;
    return kExitFilesFailed;
  }
  return kExitComplete;
}

}  // namespace anchord::anchorctl
