#include "services/sandbox/proofledger_api.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"

namespace anchord::sandbox::internal {
namespace {

constexpr char kCreatePath[] = "/api/v1/proof";
constexpr char kVerifyPath[] = "/api/v1/verify";

Reply Error(int status, absl::string_view message) {
  Reply r;
  r.status = status;
  r.body = Dump(ojson{{"error", message}});
  return r;
}

}  // namespace

ProofLedgerApi::ProofLedgerApi(Core* core) : core_(core) {
  for (const auto& k : core->opt().proofledger_api_keys) keys_.insert(k);
  for (const auto& k : core->opt().proofledger_not_entitled_keys) not_entitled_.insert(k);
}

void ProofLedgerApi::Register(httplib::Server& svr) {
  svr.Post(kCreatePath, [this](const httplib::Request& req, httplib::Response& res) {
    Handle(req, res, Route::kCreate);
  });
  svr.Get(kVerifyPath, [this](const httplib::Request& req, httplib::Response& res) {
    Handle(req, res, Route::kVerify);
  });
}

bool ProofLedgerApi::Owns(absl::string_view path) {
  for (absl::string_view p : {absl::string_view(kCreatePath), absl::string_view(kVerifyPath)}) {
    if (path == p || absl::StartsWith(path, absl::StrCat(p, "/"))) return true;
  }
  return false;
}

void ProofLedgerApi::HandleUnknown(const httplib::Request& req, httplib::Response& res) {
  Handle(req, res, Route::kUnknown);
}

void ProofLedgerApi::ResetLocked() {
  records_.clear();
  by_digest_.clear();
}

std::string ProofLedgerApi::NewId() {
  // "pl_" + 24 lowercase hex (the sandbox's id shape; the doc shows none). 96 random bits: the
  // attempt cap only bounds the loop.
  for (int attempt = 0;; ++attempt) {
    std::string id = absl::StrCat("pl_", HexEncode(core_->RandomBytes(12)));
    if (!records_.count(id) || attempt >= 64) return id;
  }
}

ojson ProofLedgerApi::RecordJson(const Record& r) const {
  ojson j;
  j["id"] = r.id;
  j["sha256"] = r.sha256_hex;
  j["filename"] = r.filename;
  j["status"] = r.status;
  j["certificate_url"] =
      absl::StrCat(core_->opt().proofledger_public_base_url, "/certificate/", r.id);
  j["created_at"] = FormatIso(r.created_at);
  return j;
}

void ProofLedgerApi::Handle(const httplib::Request& req, httplib::Response& res, Route route) {
  int latency_ms = 0;
  // The verify endpoint is public: its budget and its clients are per source IP, whatever
  // Authorization is sent. So is any unknown path under it.
  const bool public_route = route == Route::kVerify ||
                            (route == Route::kUnknown && absl::StartsWith(req.path, kVerifyPath));
  {
    absl::MutexLock lock(&core_->mu());
    ++core_->stats().requests_total;
    latency_ms = core_->latency_ms();
    if (route == Route::kVerify) {
      ProofLedgerStats& s = core_->stats().proofledger;
      ++s.verify_requests_total;
      ++s.verify_requests_by_ip[req.remote_addr];
    }
  }
  Core::SleepLatency(latency_ms);

  const std::string token = BearerToken(req);
  const std::string client =
      ClientKey(public_route || token.empty() ? "proofledger ip:" + req.remote_addr
                                              : "proofledger key:" + token,
                req);
  core_->Answer(ApiId::kProofLedger, "proofledger ", "", req, res,
                [&](bool* drop) ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu()) {
                  Reply r = AnswerLocked(req, route, public_route, token, client, drop);
                  if (r.status == 429 && route == Route::kVerify) {
                    ++core_->stats().proofledger.verify_rate_limited_by_ip[req.remote_addr];
                  }
                  return r;
                });
}

Reply ProofLedgerApi::AnswerLocked(const httplib::Request& req, Route route, bool public_route,
                                   const std::string& token, const std::string& client,
                                   bool* drop) {
  const absl::Time now = core_->clock()->Now();
  core_->ConfirmDue(now);
  double which_error = 1;
  const Admission adm = core_->Admit(ApiId::kProofLedger, client, now, &which_error);
  *drop = adm.drop;

  if (adm.storm) {
    Reply r = Error(429, "Too many requests (sandbox 429 storm).");
    r.headers.emplace_back("Retry-After", "1");
    return r;
  }
  if (adm.error) {
    return which_error < 0.5 ? Error(500, "Internal server error (injected).")
                             : Error(503, "Service temporarily unavailable (injected).");
  }

  const SandboxOptions& opt = core_->opt();
  Core::Bucket bucket;
  if (public_route) {
    if (route == Route::kUnknown) return Error(404, "not found");
    bucket = {"proofledger verify:" + req.remote_addr, opt.proofledger_verify_limit,
              opt.proofledger_verify_window};
  } else {
    // The doc: 401 or 403 "means your key is wrong or on the wrong plan tier".
    if (token.empty()) return Error(401, "Missing API key: send Authorization: Bearer <key>.");
    if (not_entitled_.count(token)) {
      return Error(403, "This API key's plan does not include API access.");
    }
    if (!keys_.count(token)) return Error(401, "Invalid API key.");
    if (route == Route::kUnknown) return Error(404, "not found");
    bucket = {"proofledger create:" + token, opt.proofledger_create_limit, opt.window};
  }
  const Core::LimitResult limit = core_->CheckLimits({bucket}, now);
  if (!limit.ok) {
    core_->NoteRateLimited(ApiId::kProofLedger, client, limit.retry_after, *drop, now);
    Reply r = Error(429, route == Route::kVerify
                             ? "Rate limit exceeded: verification is limited per IP address."
                             : "Rate limit exceeded.");
    r.headers.emplace_back("Retry-After", std::to_string(limit.retry_after));
    return r;
  }
  return route == Route::kVerify ? HandleVerify(req) : HandleCreate(req, token);
}

Reply ProofLedgerApi::HandleCreate(const httplib::Request& req, const std::string& account) {
  // The body decides, whatever the Content-Type: the doc's client always sends JSON, and a
  // lenient server cannot make a correct client fail.
  const nlohmann::json body = nlohmann::json::parse(req.body, nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    return Error(400, "The request body must be a JSON object.");
  }
  auto hash = body.find("sha256");
  if (hash == body.end() || !hash->is_string() || !IsSha256Hex(hash->get<std::string>())) {
    return Error(400, "sha256 must be a SHA-256 digest: 64 hexadecimal characters.");
  }
  const std::string hex = absl::AsciiStrToLower(hash->get<std::string>());
  auto filename = body.find("filename");
  // 1..255 bytes is the sandbox's rule (the doc always sends a name and gives no limit).
  if (filename == body.end() || !filename->is_string() || filename->get<std::string>().empty() ||
      filename->get<std::string>().size() > 255) {
    return Error(400, "filename must be a string of 1 to 255 bytes.");
  }

  // A digest anchored before, by any account: the original is canonical. 200 (not 201: nothing
  // was created), the original's fields, and duplicate_of; no record, no quota unit.
  auto dup = by_digest_.find(hex);
  if (dup != by_digest_.end()) {
    auto orig = records_.find(dup->second);
    if (orig != records_.end()) {
      ++core_->stats().proofledger.duplicates_total;
      ojson j = RecordJson(orig->second);
      j["duplicate_of"] = orig->second.id;
      Reply r;
      r.status = 200;
      r.body = Dump(j);
      return r;
    }
  }

  const absl::Time now = core_->clock()->Now();
  Record rec;
  rec.id = NewId();
  rec.account = account;
  rec.sha256_hex = hex;
  rec.filename = filename->get<std::string>();
  rec.created_at = now;
  auto leaf = NoncedLeaf(*HexDecode(hex), core_->RandomBytes(16));
  if (!leaf.ok()) return Error(500, "Internal server error.");  // cannot happen for 32 bytes
  // ProofLedger gives no .ots: only the leaf is kept (by the chain) until its block is made.
  core_->AddPending(now + core_->opt().confirm_after, leaf->second, this, rec.id);

  ProofLedgerStats& s = core_->stats().proofledger;
  ++s.creates_total;
  ++s.records_total;
  const int64_t n = ++s.creates_by_digest[hex];
  s.max_creates_per_digest = std::max(s.max_creates_per_digest, n);
  by_digest_[hex] = rec.id;
  Reply r;
  r.status = 201;
  r.body = Dump(RecordJson(rec));
  records_.emplace(rec.id, std::move(rec));
  return r;
}

Reply ProofLedgerApi::HandleVerify(const httplib::Request& req) {
  const std::string hash = req.has_param("hash") ? req.get_param_value("hash") : "";
  if (!IsSha256Hex(hash)) {
    return Error(400, "hash must be a SHA-256 digest: 64 hexadecimal characters.");
  }
  auto id = by_digest_.find(absl::AsciiStrToLower(hash));
  auto rec = id == by_digest_.end() ? records_.end() : records_.find(id->second);
  if (rec == records_.end()) return Error(404, "not found");
  const Record& r = rec->second;
  const bool confirmed = r.status == "confirmed";
  ojson j;
  j["sha256"] = r.sha256_hex;
  j["verified"] = confirmed;
  j["status"] = r.status;
  j["proof_id"] = r.id;
  j["certificate_url"] =
      absl::StrCat(core_->opt().proofledger_public_base_url, "/certificate/", r.id);
  j["bitcoin_block"] = confirmed ? ojson(r.bitcoin_block) : ojson(nullptr);
  j["bitcoin_tx"] = confirmed ? ojson(r.bitcoin_tx) : ojson(nullptr);
  j["anchored_at"] = confirmed ? ojson(FormatIso(r.confirmed_at)) : ojson(nullptr);
  Reply reply;
  reply.body = Dump(j);
  return reply;
}

void ProofLedgerApi::OnConfirmedLocked(const std::string& id, const Confirmation& c, bool ok) {
  auto it = records_.find(id);
  if (it == records_.end()) return;
  Record& r = it->second;
  if (!ok) {
    r.status = "failed";
    return;
  }
  r.status = "confirmed";
  r.bitcoin_block = c.height;
  r.bitcoin_tx = HexEncode(core_->RandomBytes(32));
  r.confirmed_at = c.time;
  ++core_->stats().proofledger.confirmed_total;
}

}  // namespace anchord::sandbox::internal
