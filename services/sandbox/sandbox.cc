#include "services/sandbox/sandbox.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"
#include "libs/ots/ots.h"
#include "services/sandbox/calendar_api.h"
#include "services/sandbox/proofd_api.h"
#include "services/sandbox/proofledger_api.h"
#include "services/sandbox/tsa_api.h"
#include "services/sandbox/sandbox_core.h"
#include "services/sandbox/simpleproof_api.h"

// The process around every emulated API: the main listener and its router, the /_sandbox admin
// routes, the background confirmer. The APIs live in their own files (proofd_api.cc etc.).

namespace anchord::sandbox {
namespace {

using internal::ApiId;
using internal::Dump;
using internal::FormatIso;
using internal::ojson;
using internal::Reply;

ojson CountsJson(const std::map<std::string, int64_t>& m) {
  ojson j = ojson::object();
  for (const auto& [k, v] : m) j[k] = v;
  return j;
}

ojson ApiJson(const ApiStats& s) {
  ojson j;
  j["requests_total"] = s.requests_total;
  j["creates_total"] = s.creates_total;
  j["creates_by_digest"] = CountsJson(s.creates_by_digest);
  j["max_creates_per_digest"] = s.max_creates_per_digest;
  j["records_total"] = s.records_total;
  j["confirmed_total"] = s.confirmed_total;
  j["rate_limited_total"] = s.rate_limited_total;
  j["early_requests_total"] = s.early_requests_total;
  j["faults_injected_total"] = s.faults_injected_total;
  return j;
}

ojson StatsJson(const SandboxStats& s, const std::vector<std::string>& calendar_urls) {
  ojson j;
  j["requests_total"] = s.requests_total;
  j["creates_total"] = s.creates_total;
  j["replays_total"] = s.replays_total;
  j["creates_by_digest"] = CountsJson(s.creates_by_digest);
  j["max_creates_per_digest"] = s.max_creates_per_digest;
  j["rate_limited_total"] = s.rate_limited_total;
  j["early_requests_total"] = s.early_requests_total;
  j["faults_injected_total"] = s.faults_injected_total;
  j["records_total"] = s.records_total;
  j["confirmed_total"] = s.confirmed_total;
  j["blocks_total"] = s.blocks_total;
  j["proofd"] = ApiJson(s.proofd);
  j["proofd"]["replays_total"] = s.replays_total;

  ojson pl = ApiJson(s.proofledger);
  pl["duplicates_total"] = s.proofledger.duplicates_total;
  pl["verify_requests_total"] = s.proofledger.verify_requests_total;
  pl["verify_requests_by_ip"] = CountsJson(s.proofledger.verify_requests_by_ip);
  pl["verify_rate_limited_by_ip"] = CountsJson(s.proofledger.verify_rate_limited_by_ip);
  j["proofledger"] = std::move(pl);

  const SimpleProofStats& sp = s.simpleproof;
  ojson spj = ApiJson(sp);
  spj["cost_units_total"] = sp.cost_units_total;
  spj["resubmitted_total"] = sp.resubmitted_total;
  spj["verifications_total"] = sp.verifications_total;
  spj["ots_urls_issued_total"] = sp.ots_urls_issued_total;
  spj["ots_downloads_total"] = sp.ots_downloads_total;
  spj["ots_urls_expired_total"] = sp.ots_urls_expired_total;
  spj["callbacks_sent_total"] = sp.callbacks_sent_total;
  spj["callbacks_delivered_total"] = sp.callbacks_delivered_total;
  spj["callbacks_failed_total"] = sp.callbacks_failed_total;
  spj["callbacks_dropped_total"] = sp.callbacks_dropped_total;
  spj["callbacks_skipped_total"] = sp.callbacks_skipped_total;
  j["simpleproof"] = std::move(spj);

  ojson cal = ApiJson(s.calendar);
  cal["submissions_total"] = s.calendar.submissions_total;
  cal["submissions_by_calendar"] = CountsJson(s.calendar.submissions_by_calendar);
  cal["upgrades_served_total"] = s.calendar.upgrades_served_total;
  cal["pending_answers_total"] = s.calendar.pending_answers_total;
  cal["not_found_total"] = s.calendar.not_found_total;
  cal["calendar_urls"] = calendar_urls;
  j["calendar"] = std::move(cal);
  ojson tj = ApiJson(s.tsa);
  tj["tokens_total"] = s.tsa.tokens_total;
  j["tsa"] = std::move(tj);
  return j;
}

}  // namespace

class Sandbox::Impl {
 public:
  explicit Impl(const SandboxOptions& o)
      : core_(o),
        proofd_(std::make_unique<internal::ProofdApi>(&core_)),
        proofledger_(std::make_unique<internal::ProofLedgerApi>(&core_)),
        simpleproof_(std::make_unique<internal::SimpleProofApi>(&core_)),
        calendars_(std::make_unique<internal::CalendarApi>(&core_)) {}
  ~Impl() { Stop(); }

  absl::Status Start();
  void Stop() ABSL_LOCKS_EXCLUDED(stop_mu_, core_.mu()) {
    absl::MutexLock lock(&stop_mu_);
    if (stopped_) return;
    stopped_ = true;
    svr_.stop();
    if (listener_.joinable()) listener_.join();
    calendars_->Stop();
    simpleproof_->StopCallbacks();
    {
      absl::MutexLock core_lock(&core_.mu());
      ticker_stop_ = true;
    }
    if (ticker_.joinable()) ticker_.join();
  }
  int port() const { return port_; }
  std::vector<std::string> calendar_urls() const { return calendars_->urls(); }
  std::string tsa_url() const {
    return absl::StrCat("http://", internal::UrlHost(core_.opt().host), ":", port_, "/tsa");
  }
  std::string tsa_ca_pem() const { return tsa_ ? tsa_->ca_pem() : std::string(); }

  SandboxStats Stats() ABSL_LOCKS_EXCLUDED(core_.mu()) {
    absl::MutexLock lock(&core_.mu());
    core_.ConfirmDue(core_.clock()->Now());
    SandboxStats s = core_.stats();
    proofd_->mu().AssertHeld();  // the APIs share core_'s mutex
    s.records_total = proofd_->records_locked();
    // proofd's own counters live at the top level (source compatibility); mirror them.
    s.proofd.creates_total = s.creates_total;
    s.proofd.creates_by_digest = s.creates_by_digest;
    s.proofd.max_creates_per_digest = s.max_creates_per_digest;
    s.proofd.records_total = s.records_total;
    s.proofd.confirmed_total = s.confirmed_total;
    return s;
  }
  void SetFaults(const Faults& f) ABSL_LOCKS_EXCLUDED(core_.mu()) {
    absl::MutexLock lock(&core_.mu());
    core_.SetFaults(f, core_.clock()->Now());
  }
  Faults GetFaults() ABSL_LOCKS_EXCLUDED(core_.mu()) {
    absl::MutexLock lock(&core_.mu());
    return core_.GetFaults(core_.clock()->Now());
  }
  void Reset() ABSL_LOCKS_EXCLUDED(core_.mu()) {
    absl::MutexLock lock(&core_.mu());
    // The APIs share core_'s mutex: one reset under one lock. (AssertHeld tells the analysis that
    // each API's core_->mu() is the one held.)
    proofd_->mu().AssertHeld();
    proofledger_->mu().AssertHeld();
    simpleproof_->mu().AssertHeld();
    calendars_->mu().AssertHeld();
    proofd_->ResetLocked();
    proofledger_->ResetLocked();
    simpleproof_->ResetLocked();
    calendars_->ResetLocked();
    core_.Reset();
  }

 private:
  void HandleAdmin(const httplib::Request& req, httplib::Response& res, const std::string& what)
      ABSL_LOCKS_EXCLUDED(core_.mu());

  internal::Core core_;
  std::unique_ptr<internal::ProofdApi> proofd_;
  std::unique_ptr<internal::ProofLedgerApi> proofledger_;
  std::unique_ptr<internal::TsaApi> tsa_;
  std::unique_ptr<internal::SimpleProofApi> simpleproof_;
  std::unique_ptr<internal::CalendarApi> calendars_;
  httplib::Server svr_;
  std::thread listener_;
  int port_ = 0;
  absl::Mutex stop_mu_;
  bool stopped_ ABSL_GUARDED_BY(stop_mu_) = false;
  std::thread ticker_;
  bool ticker_stop_ ABSL_GUARDED_BY(core_.mu()) = false;
};

void Sandbox::Impl::HandleAdmin(const httplib::Request& req, httplib::Response& res,
                                const std::string& what) {
  std::string rid;
  {
    absl::MutexLock lock(&core_.mu());
    ++core_.stats().requests_total;
    proofd_->mu().AssertHeld();  // the APIs share core_'s mutex
    rid = proofd_->NewRequestIdLocked();
  }
  Reply reply;
  if (what == "stats") {
    reply.body = Dump(StatsJson(Stats(), calendar_urls()));
  } else if (what == "calendars") {
    ojson j;
    j["calendar_urls"] = calendar_urls();
    reply.body = Dump(j);
  } else if (what == "faults") {
    if (req.method == "POST") {
      const nlohmann::json body = nlohmann::json::parse(req.body, nullptr, false);
      Faults f = GetFaults();
      bool ok = body.is_object();
      auto num = [&](const char* name, double* out) {
        auto it = ok ? body.find(name) : body.end();
        if (!ok || it == body.end()) return;
        if (!it->is_number()) {
          ok = false;
          return;
        }
        *out = it->get<double>();
      };
      double latency = f.latency_ms;
      num("error_rate", &f.error_rate);
      num("drop_rate", &f.drop_rate);
      num("latency_ms", &latency);
      num("storm_seconds", &f.storm_seconds);
      num("callback_drop_rate", &f.callback_drop_rate);
      if (!ok) {
        reply = internal::ProofdError("INVALID_JSON",
                                      "Expected a JSON object of numeric fault fields.", rid);
        return internal::Send(reply, rid, false, res);
      }
      f.latency_ms = static_cast<int>(std::clamp(latency, 0.0, 60000.0));
      SetFaults(f);
    }
    Faults f = GetFaults();
    ojson j;
    j["error_rate"] = f.error_rate;
    j["drop_rate"] = f.drop_rate;
    j["latency_ms"] = f.latency_ms;
    j["storm_seconds"] = f.storm_seconds;
    j["callback_drop_rate"] = f.callback_drop_rate;
    reply.body = Dump(j);
  } else if (what == "reset") {
    Reset();
    reply.body = "{}";
  } else if (what == "header") {
    int64_t height = 0;
    std::string header;
    if (req.matches.size() > 1 && absl::SimpleAtoi(std::string(req.matches[1]), &height)) {
      absl::MutexLock lock(&core_.mu());
      header = core_.HeaderAt(height);
    }
    if (header.empty()) {
      reply = internal::ProofdError("NOT_FOUND", "No sandbox block at this height.", rid);
    } else {
      reply.body = HexEncode(header);
      reply.content_type = "text/plain";
    }
  } else {
    reply = internal::ProofdError("NOT_FOUND", "No such route.", rid);
  }
  internal::Send(reply, rid, false, res);
}

absl::Status Sandbox::Impl::Start() {
  const size_t threads = static_cast<size_t>(std::max(32, core_.opt().threads));
  svr_.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  svr_.set_payload_max_length(1 << 20);
  svr_.set_keep_alive_max_count(1000);
  // Without TCP_NODELAY every small answer waits on Nagle + delayed ACK (~40 ms a request).
  svr_.set_tcp_nodelay(true);
  svr_.set_exception_handler([](const httplib::Request&, httplib::Response& res,
                                std::exception_ptr) {
    res.status = 500;
    res.set_content(
        R"({"error":{"code":"INTERNAL_ERROR","message":"unexpected exception","request_id":""}})",
        "application/json");
  });
  auto admin = [this](std::string what) {
    return [this, what](const httplib::Request& req, httplib::Response& res) {
      HandleAdmin(req, res, what);
    };
  };
  proofd_->Register(svr_);
  proofledger_->Register(svr_);
  simpleproof_->Register(svr_);
  auto tsa = internal::TsaApi::Create(&core_);
  if (!tsa.ok()) return tsa.status();
  tsa_ = *std::move(tsa);
  tsa_->Register(svr_);
  svr_.Get("/_sandbox/stats", admin("stats"));
  svr_.Get("/_sandbox/calendars", admin("calendars"));
  svr_.Get("/_sandbox/faults", admin("faults"));
  svr_.Post("/_sandbox/faults", admin("faults"));
  svr_.Post("/_sandbox/reset", admin("reset"));
  svr_.Get("/_sandbox/blocks/([0-9]{1,18})/header", admin("header"));
  // Everything else: the error shape of the API whose path space it is in (behind auth for
  // proofd's /api/, like its documented routes), else the proofd envelope.
  auto fallback = [this](const httplib::Request& req, httplib::Response& res) {
    if (internal::ProofLedgerApi::Owns(req.path)) {
      proofledger_->HandleUnknown(req, res);
    } else if (internal::SimpleProofApi::Owns(req.path)) {
      simpleproof_->HandleUnknown(req, res);
    } else if (internal::TsaApi::Owns(req.path)) {
      tsa_->HandleUnknown(req, res);
    } else if (absl::StartsWith(req.path, "/api/")) {
      proofd_->HandleUnknown(req, res);
    } else {
      HandleAdmin(req, res, "unknown");
    }
  };
  svr_.Get(".*", fallback);
  svr_.Post(".*", fallback);
  svr_.Put(".*", fallback);
  svr_.Patch(".*", fallback);
  svr_.Delete(".*", fallback);

  const SandboxOptions& opt = core_.opt();
  if (opt.port == 0) {
    port_ = svr_.bind_to_any_port(opt.host);
  } else {
    port_ = svr_.bind_to_port(opt.host, opt.port) ? opt.port : -1;
  }
  if (port_ <= 0) {
    return absl::UnavailableError(
        absl::StrCat("sandbox: cannot listen on ", opt.host, ":", opt.port));
  }
  simpleproof_->set_files_origin(absl::StrCat("http://", internal::UrlHost(opt.host), ":", port_));
  if (auto st = calendars_->Start(); !st.ok()) return st;
  listener_ = std::thread([this] { svr_.listen_after_bind(); });
  // stop() is a no-op until the accept loop runs, so wait for it (bounded) before returning.
  for (int i = 0; i < 5000 && !svr_.is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (!svr_.is_running()) {
    return absl::InternalError("sandbox: HTTP server did not start");
  }
  simpleproof_->StartCallbacks();
  // Confirms what is due without waiting for a request, so callbacks go out on time. A tick is
  // cheap when nothing is due (one look at the earliest pending leaf).
  ticker_ = std::thread([this] {
    absl::MutexLock lock(&core_.mu());
    while (!core_.mu().AwaitWithTimeout(absl::Condition(&ticker_stop_), absl::Milliseconds(50))) {
      core_.ConfirmDue(core_.clock()->Now());
    }
  });
  return absl::OkStatus();
}

Sandbox::Sandbox(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Sandbox::~Sandbox() { Stop(); }

absl::StatusOr<std::unique_ptr<Sandbox>> Sandbox::Start(const SandboxOptions& options) {
  auto impl = std::make_unique<Impl>(options);
  if (auto st = impl->Start(); !st.ok()) return st;
  return std::unique_ptr<Sandbox>(new Sandbox(std::move(impl)));
}

int Sandbox::port() const { return impl_->port(); }
std::vector<std::string> Sandbox::calendar_urls() const { return impl_->calendar_urls(); }
std::string Sandbox::tsa_url() const { return impl_->tsa_url(); }
std::string Sandbox::tsa_ca_pem() const { return impl_->tsa_ca_pem(); }
SandboxStats Sandbox::Stats() { return impl_->Stats(); }
void Sandbox::SetFaults(const Faults& faults) { impl_->SetFaults(faults); }
Faults Sandbox::GetFaults() { return impl_->GetFaults(); }
void Sandbox::Reset() { impl_->Reset(); }
void Sandbox::Stop() {
  if (impl_) impl_->Stop();
}

}  // namespace anchord::sandbox
