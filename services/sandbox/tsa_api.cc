#include "services/sandbox/tsa_api.h"

#include <chrono>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"
#include "libs/tsa/tsa.h"

namespace anchord::sandbox::internal {
namespace {

constexpr char kPath[] = "/tsa";
constexpr char kCaPath[] = "/tsa/ca.pem";

Reply Text(int status, absl::string_view message) {
  Reply r;
  r.status = status;
  r.body = absl::StrCat(message, "\n");
  r.content_type = "text/plain";
  return r;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TsaApi>> TsaApi::Create(Core* core) {
  tsa::AuthorityOptions o;
  o.now = core->clock()->Now();
  auto authority = tsa::Authority::Generate(o);
  if (!authority.ok()) return authority.status();
  return std::unique_ptr<TsaApi>(new TsaApi(core, *std::move(authority)));
}

TsaApi::TsaApi(Core* core, std::unique_ptr<tsa::Authority> authority)
    : core_(core), authority_(std::move(authority)) {}

void TsaApi::Register(httplib::Server& svr) {
  svr.Post(kPath,
           [this](const httplib::Request& req, httplib::Response& res) { Handle(req, res, true); });
  svr.Get(kCaPath, [this](const httplib::Request&, httplib::Response& res) {
    {
      absl::MutexLock lock(&core_->mu());
      ++core_->stats().requests_total;
    }
    res.status = 200;
    res.set_content(authority_->ca_pem(), "application/x-pem-file");
  });
}

bool TsaApi::Owns(absl::string_view path) {
  return path == kPath || absl::StartsWith(path, absl::StrCat(kPath, "/"));
}

void TsaApi::HandleUnknown(const httplib::Request& req, httplib::Response& res) {
  Handle(req, res, false);
}

void TsaApi::Handle(const httplib::Request& req, httplib::Response& res, bool known) {
  Core::SleepLatency(core_->CountRequest());
  const std::string client = ClientKey("tsa ip:" + req.remote_addr, req);
  core_->Answer(ApiId::kTsa, "tsa ", "", req, res,
                [&](bool* drop) ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu()) {
                  return AnswerLocked(req, known, client, drop);
                });
}

Reply TsaApi::AnswerLocked(const httplib::Request& req, bool known, const std::string& client,
                           bool* drop) {
  const absl::Time now = core_->clock()->Now();
  core_->ConfirmDue(now);
  double which_error = 1;
  const Admission adm = core_->Admit(ApiId::kTsa, client, now, &which_error);
  *drop = adm.drop;
  if (adm.storm) {
    Reply r = Text(429, "Too many requests (sandbox 429 storm).");
    r.headers.emplace_back("Retry-After", "1");
    return r;
  }
  if (adm.error) {
    return which_error < 0.5 ? Text(500, "Internal server error (injected).")
                             : Text(503, "Service temporarily unavailable (injected).");
  }
  if (!known) return Text(404, "not found");
  const Core::LimitResult limit = core_->CheckLimits(
      {{"tsa ip:" + req.remote_addr, core_->opt().tsa_limit, core_->opt().window}}, now);
  if (!limit.ok) {
    core_->NoteRateLimited(ApiId::kTsa, client, limit.retry_after, *drop, now);
    Reply r = Text(429, "Rate limit exceeded.");
    r.headers.emplace_back("Retry-After", std::to_string(limit.retry_after));
    return r;
  }
  const std::string ctype = absl::AsciiStrToLower(req.get_header_value("Content-Type"));
  if (!absl::StartsWith(ctype, "application/timestamp-query")) {
    return Text(415, "Content-Type must be application/timestamp-query.");
  }
  auto parsed = tsa::ParseRequest(req.body);
  if (!parsed.ok()) return Text(400, parsed.status().message());
  const uint64_t serial = next_serial_++;
  TsaStats& s = core_->stats().tsa;
  // Serials are drawn in order under the lock; signing (a few hundred microseconds) too: the
  // sandbox serves tests, and one lock keeps the serial order and the stats consistent.
  auto resp = authority_->Respond(req.body, now, serial);
  if (!resp.ok()) {
    ANCHORD_LOG(Error) << "sandbox: tsa: " << resp.status();
    return Text(500, "Could not sign.");
  }
  ++s.creates_total;
  ++s.records_total;
  ++s.confirmed_total;
  ++s.tokens_total;
  const int64_t n = ++s.creates_by_digest[HexEncode(parsed->imprint)];
  s.max_creates_per_digest = std::max(s.max_creates_per_digest, n);
  Reply r;
  r.status = 200;
  r.content_type = "application/timestamp-reply";
  r.body = *std::move(resp);
  return r;
}

}  // namespace anchord::sandbox::internal
