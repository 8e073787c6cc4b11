// The query commands: status (a job's counts at every service), get (where one digest is),
// download (its proof file) and watch (the poller's event stream).
#include "services/anchorctl/commands.h"

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <map>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
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
#include "libs/tsa/tsa.h"
#include "services/anchorctl/stack.h"

namespace anchord::anchorctl {
using namespace anchord::v1;

int RunStatus(const GlobalOptions& g, const std::string& job) {
  if (auto s = ValidateJob(job, "--job"); !s.ok()) return FailStatus(s);
  Clients clients(ResolveEndpoints(g), UnaryDeadline(g));
  std::vector<std::map<int, int64_t>> per_service;
  nlohmann::json services = nlohmann::json::object();
  std::vector<std::string> paused;
  int64_t files = 0;
  for (const char* service : {"hasher", "submitter", "poller"}) {
    if (auto s = clients.Check(service); !s.ok())
      return Fail(kExitInternal, std::string(s.message()));
    grpc::ClientContext ctx;
    ScopedCancel cancel(&ctx);
    clients.SetDeadline(&ctx);
    SummarizeJobRequest req;
    req.set_job(job);
    SummarizeJobResponse resp;
    grpc::Status st = clients.status(service).SummarizeJob(&ctx, req, &resp);
    if (!st.ok()) return FailStatus(clients.RpcError(service, "SummarizeJob", st));
    auto counts = CountsFromSummary(resp.digests_by_state());
    per_service.push_back(counts);
    nlohmann::json sj = nlohmann::json::object();
    for (const auto& [state, n] : counts) sj[StateName(state)] = n;
    services[service] = {{"digests_by_state", sj},
                         {"files", resp.files()},
                         {"paused", resp.paused()},
                         {"paused_reason", resp.paused_reason()}};
    if (std::string(service) == "hasher") files = resp.files();
    if (resp.paused()) paused.push_back(absl::StrCat(service, ": ", resp.paused_reason()));
  }
  auto merged = MergeStateCounts(per_service);
  if (g.json) {
    nlohmann::json mj = nlohmann::json::object();
    for (const auto& [state, n] : merged) mj[StateName(state)] = n;
    nlohmann::json j{{"job", job.empty() ? "" : job},
                     {"files", files},
                     {"digests_by_state", mj},
                     {"services", services},
                     {"paused", paused}};
    std::cout << Dump(j) << std::endl;
    return kExitComplete;
  }
  std::cout << "job " << (job.empty() ? std::string("(all)") : job) << ": " << files << " files\n";
  for (int s = DIGEST_STATE_HASHED; s <= DIGEST_STATE_FAILED; ++s) {
    auto it = merged.find(s);
    std::cout << "  " << StateName(s)
              << std::string(11 - std::min<size_t>(10, StateName(s).size()), ' ')
              << (it == merged.end() ? 0 : it->second) << "\n";
  }
  if (paused.empty()) {
    std::cout << "  no provider paused\n";
  } else {
    for (const auto& p : paused) std::cout << "  PAUSED " << p << "\n";
  }
  std::cout << std::flush;
  return kExitComplete;
}

namespace {
nlohmann::json ProofJson(const Proof& p) {
  nlohmann::json files = nlohmann::json::array();
  for (const auto& f : p.files()) {
    files.push_back({{"source_path", f.source_path()},
                     {"filename", f.filename()},
                     {"job", f.job()},
                     {"size_bytes", f.size_bytes()}});
  }
  nlohmann::json j{{"digest", DigestOf(p.digest())},
                   {"provider", p.provider()},
                   {"proof_id", p.proof_id()},
                   {"state", StateName(p.state())},
                   {"certificate_url", p.certificate_url()},
                   {"verify_url", p.verify_url()},
                   {"bitcoin_block_height", p.bitcoin_block_height()},
                   {"bitcoin_tx", p.bitcoin_tx()},
                   {"ots_available", p.ots_available()},
                   {"files", files}};
  if (p.state() == DIGEST_STATE_FAILED) {
    j["failure"] = {{"reason", p.failure().reason()}, {"message", p.failure().message()}};
  }
  return j;
}
}  // namespace

int RunGet(const GlobalOptions& g, const std::string& digest_hex) {
  auto digest = ParseDigestArg(digest_hex);
  if (!digest.ok()) return FailStatus(digest.status());
  Clients clients(ResolveEndpoints(g), UnaryDeadline(g));
  int furthest = 0;
  nlohmann::json per_service = nlohmann::json::object();
  std::vector<Proof> proofs;
  std::map<std::string, FileMetadata> files;
  for (const char* service : {"hasher", "submitter", "poller"}) {
    if (auto s = clients.Check(service); !s.ok())
      return Fail(kExitInternal, std::string(s.message()));
    grpc::ClientContext ctx;
    ScopedCancel cancel(&ctx);
    clients.SetDeadline(&ctx);
    LocateRequest req;
    req.set_digest(digest->raw());
    LocateResponse resp;
    grpc::Status st = clients.status(service).Locate(&ctx, req, &resp);
    if (st.error_code() == grpc::StatusCode::NOT_FOUND) {
      per_service[service] = "NOT_FOUND";
      continue;
    }
    if (!st.ok()) return FailStatus(clients.RpcError(service, "Locate", st));
    per_service[service] = StateName(resp.state());
    furthest = std::max<int>(furthest, resp.state());
    for (const auto& f : resp.files())
      files.emplace(f.source_path().empty() ? f.filename() : f.source_path(), f);
  }
  {
    grpc::ClientContext ctx;
    ScopedCancel cancel(&ctx);
    clients.SetDeadline(&ctx);
    GetProofRequest req;
    req.set_digest(digest->raw());
    GetProofResponse resp;
    grpc::Status st = clients.poller().GetProof(&ctx, req, &resp);
    if (st.ok()) {
      proofs.push_back(resp.proof());
      furthest = std::max<int>(furthest, resp.proof().state());
      for (const auto& f : resp.proof().files()) {
        files.emplace(f.source_path().empty() ? f.filename() : f.source_path(), f);
      }
    } else if (st.error_code() != grpc::StatusCode::NOT_FOUND) {
      return FailStatus(clients.RpcError("poller", "GetProof", st));
    }
  }
  if (furthest == 0) {
    return Fail(kExitUsage, absl::StrCat("DIGEST: ", digest_hex, " is not known to any service"));
  }
  if (g.json) {
    nlohmann::json pj = nlohmann::json::array();
    for (const auto& p : proofs) pj.push_back(ProofJson(p));
    nlohmann::json fj = nlohmann::json::array();
    for (const auto& [path, f] : files)
      fj.push_back({{"path", path}, {"job", f.job()}, {"size_bytes", f.size_bytes()}});
    std::cout << Dump({{"digest", digest->hex()},
                       {"state", StateName(furthest)},
                       {"services", per_service},
                       {"proofs", pj},
                       {"files", fj}})
              << std::endl;
  } else {
    std::cout << digest->hex() << ": " << StateName(furthest) << "\n";
    for (auto it = per_service.begin(); it != per_service.end(); ++it) {
      std::cout << "  " << it.key() << ": " << it.value().get<std::string>() << "\n";
    }
    for (const auto& p : proofs) {
      std::cout << "  proof " << p.provider() << " " << p.proof_id() << " " << StateName(p.state());
      if (p.bitcoin_block_height() > 0) std::cout << " block " << p.bitcoin_block_height();
      if (!p.certificate_url().empty()) std::cout << " " << p.certificate_url();
      if (p.ots_available()) std::cout << " (.ots stored)";
      if (p.state() == DIGEST_STATE_FAILED)
        std::cout << " " << p.failure().reason() << ": " << p.failure().message();
      std::cout << "\n";
    }
    for (const auto& [path, f] : files)
      std::cout << "  file " << path << " (job " << JobOrDefault(f.job()) << ")\n";
    std::cout << std::flush;
  }
  if (furthest == DIGEST_STATE_FAILED) return kExitFilesFailed;
  return furthest == DIGEST_STATE_CONFIRMED ? kExitComplete : kExitIncomplete;
}

int RunDownload(const GlobalOptions& g, const std::string& digest_hex, const std::string& output) {
  auto digest = ParseDigestArg(digest_hex);
  if (!digest.ok()) return FailStatus(digest.status());
  const std::string out = output.empty() ? absl::StrCat(digest->hex(), ".ots") : output;
  Clients clients(ResolveEndpoints(g), UnaryDeadline(g));
  if (auto s = clients.Check("poller"); !s.ok())
    return Fail(kExitInternal, std::string(s.message()));
  grpc::ClientContext ctx;
  ScopedCancel cancel(&ctx);
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + std::max(UnaryDeadline(g), absl::Seconds(60))));
  DownloadProofRequest req;
  req.set_digest(digest->raw());
  auto reader = clients.poller().DownloadProof(&ctx, req);
  DownloadProofResponse chunk;
  std::string data;
  int64_t total = -1;
  while (reader->Read(&chunk)) {
    data += chunk.data();
    total = chunk.total_size_bytes();
    if (data.size() > ots::kMaxProofFileBytes) {
      ctx.TryCancel();
      break;
    }
  }
  grpc::Status st = reader->Finish();
  if (st.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
    return Fail(kExitIncomplete,
                absl::StrCat("no .ots stored yet for ", digest->hex(), ": ", st.error_message()));
  }
  if (st.error_code() == grpc::StatusCode::NOT_FOUND) {
    return Fail(kExitUsage, absl::StrCat("DIGEST: ", digest->hex(), " is not known to the poller"));
  }
  if (!st.ok()) return FailStatus(clients.RpcError("poller", "DownloadProof", st));
  if (data.empty() || (total >= 0 && static_cast<int64_t>(data.size()) != total)) {
    return Fail(kExitInternal,
                absl::StrCat("DownloadProof returned ", data.size(), " bytes, announced ", total));
  }
  if (auto s = WriteFileAtomically(out, data); !s.ok()) {
    return Fail(kExitInternal, absl::StrCat("-o: ", s.message()));
  }
  if (g.json) {
    std::cout << Dump({{"digest", digest->hex()}, {"file", out}, {"size_bytes", data.size()}})
              << std::endl;
  } else {
    std::cout << "wrote " << out << " (" << data.size() << " bytes)" << std::endl;
  }
  return kExitComplete;
}

int RunWatch(const GlobalOptions& g, const std::string& job, const std::string& digest_hex,
             bool include_current) {
  if (auto s = ValidateJob(job, "--job"); !s.ok()) return FailStatus(s);
  std::string digest;
  if (!digest_hex.empty()) {
    auto d = ParseDigestArg(digest_hex, "--digest");
    if (!d.ok()) return FailStatus(d.status());
    digest = d->raw();
  }
  Clients clients(ResolveEndpoints(g), UnaryDeadline(g));
  if (auto s = clients.Check("poller"); !s.ok())
    return Fail(kExitInternal, std::string(s.message()));
  grpc::ClientContext ctx;
  ScopedCancel cancel(&ctx);
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + kStreamDeadline));
  WatchRequest req;
  req.set_job(job);
  req.set_digest(digest);
  req.set_include_current(include_current);
  auto reader = clients.poller().Watch(&ctx, req);
  WatchResponse ev;
  while (reader->Read(&ev)) {
    std::string type = ProofEventType_Name(ev.type());
    absl::string_view t(type);
    absl::ConsumePrefix(&t, "PROOF_EVENT_TYPE_");
    const absl::Time when = absl::FromUnixSeconds(ev.event_time().seconds()) +
                            absl::Nanoseconds(ev.event_time().nanos());
    if (g.json) {
      nlohmann::json j{{"type", std::string(t)},
                       {"time", absl::FormatTime(absl::RFC3339_sec, when, absl::UTCTimeZone())}};
      if (ev.has_proof()) j["proof"] = ProofJson(ev.proof());
      std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
    } else {
      std::cout << absl::FormatTime(absl::RFC3339_sec, when, absl::UTCTimeZone()) << " " << t;
      if (ev.has_proof()) {
        const Proof& p = ev.proof();
        std::cout << " " << DigestOf(p.digest()) << " " << StateName(p.state()) << " "
                  << p.provider() << " " << p.proof_id();
        if (!p.files().empty()) std::cout << " " << p.files(0).source_path();
      }
      std::cout << std::endl;
    }
  }
  grpc::Status st = reader->Finish();
  if (Interrupter::Get().interrupted()) return kExitComplete;  // Ctrl-C is how a watch ends
  if (!st.ok()) return FailStatus(clients.RpcError("poller", "Watch", st));
  return kExitComplete;
}

}  // namespace anchord::anchorctl
