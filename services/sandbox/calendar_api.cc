#include "services/sandbox/calendar_api.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"

namespace anchord::sandbox::internal {
namespace {

constexpr size_t kMaxDigestLength = 64;  // the reference's MAX_DIGEST_LENGTH
constexpr int kMaxCalendars = 16;
// The reference server's Cache-Control for answers that never change (complete proofs, 400s).
constexpr char kForever[] = "max-age=31536000";

Reply Text(int status, absl::string_view body, std::string cache_control = "") {
  Reply r;
  r.status = status;
  r.content_type = "text/plain";
  r.body = std::string(body);
  if (!cache_control.empty()) r.headers.emplace_back("Cache-Control", std::move(cache_control));
  return r;
}

std::string BigEndian32(uint32_t v) {
  std::string out(4, '\0');
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((v >> (8 * (3 - i))) & 0xff);
  return out;
}

}  // namespace

CalendarApi::CalendarApi(Core* core) : core_(core) {}

CalendarApi::~CalendarApi() { Stop(); }

absl::Status CalendarApi::Start() {
  const SandboxOptions& opt = core_->opt();
  const int n = std::clamp(opt.calendars, 0, kMaxCalendars);
  for (int i = 0; i < n; ++i) {
    auto cal = std::make_unique<Calendar>();
    cal->index = i;
    // From the seed (a run is reproducible), without drawing from the shared PRNG so the other
    // APIs' ids for a seed do not depend on how many calendars run.
    cal->secret = ots::Sha256(absl::StrCat("anchord-sandbox-calendar-", opt.seed, "-", i));
    Calendar* c = cal.get();
    c->svr.new_task_queue = [] { return new httplib::ThreadPool(8); };
    // A digest is at most 64 bytes; larger bodies up to this get the reference's 400 "digest too
    // long", beyond it httplib answers 413 without reading them.
    c->svr.set_payload_max_length(1 << 16);
    c->svr.set_tcp_nodelay(true);
    c->svr.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
          res.status = 500;
          res.set_content("internal error", "text/plain");
        });
    auto route = [this, c](Route r) {
      return [this, c, r](const httplib::Request& req, httplib::Response& res) {
        Handle(*c, req, res, r);
      };
    };
    c->svr.Post("/digest", route(Route::kDigest));
    c->svr.Get("/timestamp/(.*)", route(Route::kTimestamp));
    c->svr.Get("/", route(Route::kRoot));
    c->svr.Get(".*", route(Route::kUnknown));
    c->svr.Post(".*", route(Route::kUnknown));
    c->svr.Put(".*", route(Route::kUnknown));
    c->svr.Patch(".*", route(Route::kUnknown));
    c->svr.Delete(".*", route(Route::kUnknown));

    const int wanted = i < static_cast<int>(opt.calendar_ports.size()) ? opt.calendar_ports[i] : 0;
    int port = wanted > 0 ? (c->svr.bind_to_port(opt.host, wanted) ? wanted : -1)
                          : c->svr.bind_to_any_port(opt.host);
    if (port <= 0) {
      return absl::UnavailableError(
          absl::StrCat("sandbox: cannot listen on ", opt.host, ":", wanted, " for calendar ", i));
    }
    // A bare origin: python clients join relative paths (a path would lose its last segment).
    c->url = absl::StrCat("http://", UrlHost(opt.host), ":", port);
    c->thread = std::thread([c] { c->svr.listen_after_bind(); });
    for (int t = 0; t < 5000 && !c->svr.is_running(); ++t) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    urls_.push_back(c->url);
    cals_.push_back(std::move(cal));
    if (!cals_.back()->svr.is_running()) {
      return absl::InternalError(absl::StrCat("sandbox: calendar ", i, " did not start"));
    }
  }
  return absl::OkStatus();
}

void CalendarApi::Stop() {
  if (stopped_) return;
  stopped_ = true;
  for (auto& c : cals_) {
    c->svr.stop();
    if (c->thread.joinable()) c->thread.join();
  }
}

void CalendarApi::ResetLocked() { journal_.clear(); }

void CalendarApi::Handle(Calendar& cal, const httplib::Request& req, httplib::Response& res,
                         Route route) {
  Core::SleepLatency(core_->CountRequest());

  // No keys: a client is its source IP and User-Agent, per calendar.
  const std::string client =
      ClientKey(absl::StrCat("calendar", cal.index, " ip:", req.remote_addr), req);
  core_->Answer(ApiId::kCalendar, absl::StrCat("calendar ", cal.index, " "), "", req, res,
                [&](bool* drop) ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu()) {
                  return AnswerLocked(cal, req, route, client, drop);
                });
}

Reply CalendarApi::AnswerLocked(Calendar& cal, const httplib::Request& req, Route route,
                                const std::string& client, bool* drop) {
  const absl::Time now = core_->clock()->Now();
  core_->ConfirmDue(now);
  const Admission adm = core_->Admit(ApiId::kCalendar, client, now);
  *drop = adm.drop;
  // otsd itself never answers 429 or 5xx on purpose; the reverse proxy in front of a public
  // calendar does, in plain text.
  if (adm.storm) {
    Reply r = Text(429, "Too Many Requests");
    r.headers.emplace_back("Retry-After", "1");
    return r;
  }
  if (adm.error) return Text(502, "Bad Gateway (injected)");

  switch (route) {
    case Route::kDigest: {
      const SandboxOptions& opt = core_->opt();
      const Core::LimitResult limit =
          core_->CheckLimits({{absl::StrCat("calendar", cal.index, " ip:", req.remote_addr),
                               opt.calendar_limit, opt.window}},
                             now);
      if (!limit.ok) {
        core_->NoteRateLimited(ApiId::kCalendar, client, limit.retry_after, *drop, now);
        Reply r = Text(429, "Too Many Requests");
        r.headers.emplace_back("Retry-After", std::to_string(limit.retry_after));
        return r;
      }
      return HandleDigest(cal, req, now);
    }
    case Route::kTimestamp:
      return HandleTimestamp(cal, req);
    case Route::kRoot:
      return Text(200, absl::StrCat("anchord sandbox OpenTimestamps calendar ", cal.url, "\n"));
    case Route::kUnknown:
      break;
  }
  return Text(404, "not found", "max-age=3600");
}

Reply CalendarApi::HandleDigest(Calendar& cal, const httplib::Request& req, absl::Time now) {
  int64_t length = 0;
  if (!req.has_header("Content-Length") ||
      !ParseSmallUint(req.get_header_value("Content-Length"), 18, &length)) {
    return Text(400, "invalid Content-Length");
  }
  if (req.body.size() > kMaxDigestLength) return Text(400, "digest too long");
  // No minimum, like the reference: an empty digest is timestamped too.
  const std::string& digest = req.body;

  // The reference's path (docs/providers/ots.md): append(16-byte nonce), sha256, then this
  // second's aggregation tree, prepend(4-byte big-endian time), append(8-byte HMAC), pending.
  // The sandbox answers at once instead of at the next 1-second tick, so every request is alone
  // in its aggregation round and has no merkle path there (the reference's case of a single
  // request in a round).
  auto root = std::make_shared<ots::Timestamp>(digest);
  auto nonced = root->AddOp(ots::Op::Append(core_->RandomBytes(16)));
  if (!nonced.ok()) return Text(500, "internal error");
  auto hashed = (*nonced)->AddOp(ots::Op::Sha256());
  if (!hashed.ok()) return Text(500, "internal error");
  const std::string time4 = BigEndian32(static_cast<uint32_t>(absl::ToUnixSeconds(now)));
  auto timed = (*hashed)->AddOp(ots::Op::Prepend(time4));
  if (!timed.ok()) return Text(500, "internal error");
  // HMAC: first 8 bytes of sha256(commitment_before_mac || key(secret, time)).
  const std::string key = ots::Sha256(absl::StrCat(cal.secret, time4));
  const std::string mac = ots::Sha256(absl::StrCat((*timed)->msg(), key)).substr(0, 8);
  auto pending = (*timed)->AddOp(ots::Op::Append(mac));
  if (!pending.ok()) return Text(500, "internal error");
  (*pending)->AddAttestation(ots::Attestation::Pending(cal.url));
  const std::string commitment = (*pending)->msg();  // 4 + 32 + 8 = 44 bytes

  std::string body;
  if (auto st = root->Serialize(&body); !st.ok()) return Text(500, "internal error");

  // The calendar's own tree, rooted at the commitment: sha256 makes it a 32-byte leaf of the
  // shared fake chain; the block's merkle path and attestation grow from there.
  auto node = std::make_shared<ots::Timestamp>(commitment);
  auto leaf = node->AddOp(ots::Op::Sha256());
  if (!leaf.ok()) return Text(500, "internal error");
  std::string ref = absl::StrCat(std::string(1, static_cast<char>(cal.index)), commitment);
  core_->AddPending(now + core_->opt().confirm_after, *leaf, this, ref);
  journal_[ref] = Entry{node, ""};

  CalendarStats& s = core_->stats().calendar;
  ++s.submissions_total;
  ++s.submissions_by_calendar[cal.url];
  ++s.creates_total;
  ++s.records_total;
  const int64_t n = ++s.creates_by_digest[HexEncode(digest)];
  s.max_creates_per_digest = std::max(s.max_creates_per_digest, n);

  Reply r;
  r.content_type = "application/octet-stream";
  r.body = std::move(body);
  return r;
}

Reply CalendarApi::HandleTimestamp(Calendar& cal, const httplib::Request& req) {
  const std::string hex = req.matches.size() > 1 ? std::string(req.matches[1]) : "";
  auto commitment = HexDecode(hex, "commitment");
  if (!commitment.ok()) return Text(400, "commitment must be hex-encoded bytes", kForever);
  CalendarStats& s = core_->stats().calendar;
  const std::string pending_cache =
      absl::StrCat("max-age=", CeilSeconds(core_->opt().pending_max_age));
  auto it = journal_.find(absl::StrCat(std::string(1, static_cast<char>(cal.index)), *commitment));
  if (it == journal_.end()) {
    ++s.not_found_total;
    return Text(404, "Not found", pending_cache);
  }
  if (it->second.answer.empty()) {
    ++s.pending_answers_total;
    return Text(404, "Pending confirmation in Bitcoin blockchain", pending_cache);
  }
  ++s.upgrades_served_total;
  Reply r;
  r.content_type = "application/octet-stream";
  r.body = it->second.answer;
  r.headers.emplace_back("Cache-Control", kForever);
  return r;
}

void CalendarApi::OnConfirmedLocked(const std::string& ref, const Confirmation&, bool ok) {
  auto it = journal_.find(ref);
  if (it == journal_.end() || it->second.node == nullptr) return;
  std::shared_ptr<ots::Timestamp> node = std::move(it->second.node);
  std::string answer;
  absl::Status st = ok ? node->Serialize(&answer) : absl::InternalError("no block was built");
  if (!st.ok() || answer.empty()) {
    // Cannot happen for a 32-byte leaf; the commitment then stays pending.
    ANCHORD_LOG(Error) << "sandbox: calendar answer: " << st;
    return;
  }
  it->second.answer = std::move(answer);
  ++core_->stats().calendar.confirmed_total;
}

}  // namespace anchord::sandbox::internal
