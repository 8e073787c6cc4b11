#include "services/sandbox/simpleproof_api.h"

#include <algorithm>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"

namespace anchord::sandbox::internal {
namespace {

constexpr size_t kMaxHashesPerRequest = 25;  // the doc's limit
constexpr int kMaxListLimit = 100;           // the sandbox's cap on `limit` (the doc gives none)
constexpr size_t kMaxCallbackUrls = 4;       // per document; later distinct URLs replace the oldest
constexpr size_t kMaxQueuedCallbacks = 10000;
constexpr size_t kMaxOtsUrls = 100000;  // live download URLs kept; the oldest go first
constexpr size_t kMaxUrlLength = 2048;

Reply Fail(int status, absl::string_view msg) {
  Reply r;
  r.status = status;
  r.body = Dump(ojson{{"ok", false}, {"msg", msg}});
  return r;
}

struct ParsedUrl {
  std::string scheme;  // "http" | "https"
  std::string host;    // brackets removed from IPv6 literals
  std::string origin;  // scheme://host[:port] as httplib::Client takes it
  std::string path;    // path and query, at least "/"
};

// Accepts absolute http(s) URLs with a host of [A-Za-z0-9.-] or a bracketed IPv6 literal, an
// optional port, any printable path; no userinfo, no whitespace or control bytes.
std::optional<ParsedUrl> ParseUrl(absl::string_view url) {
  if (url.empty() || url.size() > kMaxUrlLength) return std::nullopt;
  for (unsigned char c : url) {
    if (c <= 0x20 || c >= 0x7f) return std::nullopt;
  }
  ParsedUrl u;
  size_t pos = url.find("://");
  if (pos == absl::string_view::npos) return std::nullopt;
  u.scheme = absl::AsciiStrToLower(url.substr(0, pos));
  if (u.scheme != "http" && u.scheme != "https") return std::nullopt;
  absl::string_view rest = url.substr(pos + 3);
  const size_t end = rest.find_first_of("/?#");
  absl::string_view authority = rest.substr(0, end);
  absl::string_view tail = end == absl::string_view::npos ? "" : rest.substr(end);
  if (authority.empty() || absl::StrContains(authority, '@')) return std::nullopt;
  absl::string_view host = authority, port;
  if (authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == absl::string_view::npos || close < 3) return std::nullopt;
    host = authority.substr(1, close - 1);
    for (char c : host) {
      if (!absl::ascii_isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') {
        return std::nullopt;
      }
    }
    absl::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return std::nullopt;
      port = after.substr(1);
    }
  } else {
    const size_t colon = authority.find(':');
    if (colon != absl::string_view::npos) {
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
    }
    if (host.empty()) return std::nullopt;
    for (char c : host) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-') {
        return std::nullopt;
      }
    }
  }
  if (!port.empty()) {
    int64_t p = 0;
    if (!ParseSmallUint(port, 5, &p) || p < 1 || p > 65535) return std::nullopt;
  }
  u.host = std::string(host);
  u.origin = absl::StrCat(u.scheme, "://", authority);
  tail = tail.substr(0, tail.find('#'));
  u.path = tail.empty() || tail.front() != '/' ? absl::StrCat("/", tail) : std::string(tail);
  return u;
}

}  // namespace

SimpleProofApi::SimpleProofApi(Core* core) : core_(core) {
  for (const auto& t : core->opt().simpleproof_tokens) tokens_.insert(t);
}

SimpleProofApi::~SimpleProofApi() { StopCallbacks(); }

void SimpleProofApi::Register(httplib::Server& svr) {
  auto route = [this](Route r) {
    return [this, r](const httplib::Request& req, httplib::Response& res) { Handle(req, res, r); };
  };
  svr.Post("/api/proof/timestamp/hashes", route(Route::kHashes));
  svr.Get("/api/proof/document", route(Route::kList));
  svr.Post("/proof/verification", route(Route::kVerify));
  svr.Post("/api/proof/file", route(Route::kFile));
  svr.Get(
      "/_files/simpleproof/([^/]*)",
      [this](const httplib::Request& req, httplib::Response& res) { HandleDownload(req, res); });
}

bool SimpleProofApi::Owns(absl::string_view path) {
  return path == "/api/proof" || absl::StartsWith(path, "/api/proof/") || path == "/proof" ||
         absl::StartsWith(path, "/proof/");
}

void SimpleProofApi::HandleUnknown(const httplib::Request& req, httplib::Response& res) {
  Handle(req, res, Route::kUnknown);
}

void SimpleProofApi::ResetLocked() {
  docs_.clear();
  by_account_hash_.clear();
  account_docs_.clear();
  ots_urls_.clear();
  ots_url_order_.clear();
  callbacks_.clear();
  ++generation_;
}

const char* SimpleProofApi::StatusAt(const Doc& d, absl::Time now) const {
  if (d.confirmed) return "confirmed";
  return now >= d.stamped_at ? "pending" : "pending_stamp";
}

std::string SimpleProofApi::VerificationUrl(const Doc& d) const {
  return absl::StrCat(core_->opt().simpleproof_public_base_url, "/SP/", d.hash);
}

ojson SimpleProofApi::DocumentJson(const Doc& d, absl::Time now) const {
  const std::string status = StatusAt(d, now);
  ojson j;
  j["id"] = d.id;
  // A hash submission has no file: the sandbox names the document by its hash, with no
  // extension and no stored bytes.
  j["name"] = d.hash;
  j["extension"] = "";
  j["storage_kb"] = "0.0";
  j["creation_date"] = FormatIso(d.created_at);
  j["document_hash"] = d.hash;
  // The account's folder; a fingerprint, never the token itself.
  j["prefix"] =
      absl::StrCat("sandbox/simpleproof-", HexEncode(ots::Sha256(d.account)).substr(0, 13), "/");
  j["blockchain"] = d.confirmed ? ojson{{"block_height", d.height}, {"tx", d.tx}} : ojson::object();
  j["document_status"] = status == "confirmed" ? "COMPLETE"
                         : status == "pending" ? "PENDING"
                                               : "PENDING_STAMP";
  return j;
}

void SimpleProofApi::Handle(const httplib::Request& req, httplib::Response& res, Route route) {
  Core::SleepLatency(core_->CountRequest());
  const std::string token = req.get_header_value("x-access-token");
  const std::string client = ClientKey(
      token.empty() ? "simpleproof ip:" + req.remote_addr : "simpleproof token:" + token, req);
  core_->Answer(ApiId::kSimpleProof, "simpleproof ", "", req, res,
                [&](bool* drop) ABSL_EXCLUSIVE_LOCKS_REQUIRED(core_->mu()) {
                  return AnswerLocked(req, route, token, client, drop);
                });
}

Reply SimpleProofApi::AnswerLocked(const httplib::Request& req, Route route,
                                   const std::string& token, const std::string& client,
                                   bool* drop) {
  const absl::Time now = core_->clock()->Now();
  core_->ConfirmDue(now);
  const Admission adm = core_->Admit(ApiId::kSimpleProof, client, now);
  *drop = adm.drop;
  // The doc lists 429 without a body or header; the sandbox answers in the error shape and adds
  // Retry-After (seconds), which a client may use or ignore.
  if (adm.storm) {
    Reply r = Fail(429, "Too many requests, please try again later.");
    r.headers.emplace_back("Retry-After", "1");
    return r;
  }
  if (adm.error) return Fail(500, "Internal server error. Please try again later.");

  if (token.empty()) return Fail(401, "Unauthorized: the x-access-token header is required.");
  if (!tokens_.count(token)) return Fail(401, "Unauthorized: invalid access token.");
  if (route == Route::kUnknown) return Fail(404, "Not found.");

  const SandboxOptions& opt = core_->opt();
  const Core::LimitResult limit =
      core_->CheckLimits({{"simpleproof:" + token, opt.simpleproof_limit, opt.window}}, now);
  if (!limit.ok) {
    core_->NoteRateLimited(ApiId::kSimpleProof, client, limit.retry_after, *drop, now);
    Reply r = Fail(429, "Too many requests, please try again later.");
    r.headers.emplace_back("Retry-After", std::to_string(limit.retry_after));
    return r;
  }
  switch (route) {
    case Route::kHashes:
      return HandleHashes(req, token, now);
    case Route::kList:
      return HandleList(req, token, now);
    case Route::kVerify:
      return HandleVerify(req, token, now);
    case Route::kFile:
      // anchord never sends files (only digests leave the machine); the sandbox does not
      // emulate the multipart upload.
      return Fail(400,
                  "File uploads are not supported by the sandbox: send hashes to "
                  "/api/proof/timestamp/hashes.");
    case Route::kUnknown:
      break;
  }
  return Fail(404, "Not found.");
}

Reply SimpleProofApi::HandleHashes(const httplib::Request& req, const std::string& account,
                                   absl::Time now) {
  // The body decides, whatever the Content-Type (lenient: a correct client cannot fail).
  const nlohmann::json body = nlohmann::json::parse(req.body, nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    return Fail(400, "The request body must be a JSON object.");
  }
  auto hashes = body.find("hashes");
  if (hashes == body.end() || !hashes->is_array() || hashes->empty()) {
    return Fail(400, "hashes must be a non-empty array of SHA256 hexadecimal hashes.");
  }
  if (hashes->size() > kMaxHashesPerRequest) {
    return Fail(400, "A maximum of 25 hashes per request is allowed.");
  }
  std::vector<std::string> hex;
  for (const auto& h : *hashes) {
    if (!h.is_string() || !IsSha256Hex(h.get<std::string>())) {
      return Fail(400,
                  "Each hash must be exactly 64 characters long and in SHA256 hexadecimal format.");
    }
    hex.push_back(absl::AsciiStrToLower(h.get<std::string>()));
  }
  std::string callback_url;
  auto cb = body.find("callback_url");
  if (cb != body.end() && !cb->is_null()) {
    if (!cb->is_string() || !ParseUrl(cb->get<std::string>())) {
      return Fail(400, "callback_url must be a valid http(s) URL.");
    }
    callback_url = cb->get<std::string>();
  }

  SimpleProofStats& s = core_->stats().simpleproof;
  for (const std::string& h : hex) {
    auto known = by_account_hash_.find({account, h});
    if (known != by_account_hash_.end()) {
      // Cost is per hash the account has not timestamped yet: a re-send (a retry after a lost
      // answer, or the same hash twice in one batch) is answered the same and costs nothing.
      ++s.resubmitted_total;
      auto doc = docs_.find(known->second);
      if (doc != docs_.end() && !callback_url.empty())
        AddCallbackUrlLocked(doc->second, callback_url);
      continue;
    }
    Doc d;
    d.id = next_id_++;
    d.account = account;
    d.hash = h;
    d.created_at = now;
    d.stamped_at = now + core_->opt().confirm_after / 2;
    auto leaf = NoncedLeaf(*HexDecode(h), core_->RandomBytes(16));
    if (!leaf.ok()) return Fail(500, "Internal server error. Please try again later.");
    d.root = leaf->first;
    if (!callback_url.empty()) d.callback_urls.push_back(callback_url);
    core_->AddPending(now + core_->opt().confirm_after, leaf->second, this, std::to_string(d.id));
    by_account_hash_[{account, h}] = d.id;
    account_docs_[account].push_back(d.id);
    ++s.cost_units_total;
    ++s.creates_total;
    ++s.records_total;
    const int64_t n = ++s.creates_by_digest[h];
    s.max_creates_per_digest = std::max(s.max_creates_per_digest, n);
    docs_.emplace(d.id, std::move(d));
  }
  Reply r;
  r.body = Dump(ojson{{"ok", true}, {"files", hex}});
  return r;
}

Reply SimpleProofApi::HandleList(const httplib::Request& req, const std::string& account,
                                 absl::Time now) {
  // All three parameters are required by the doc.
  const std::string status = req.get_param_value("status");
  if (status != "confirmed" && status != "pending" && status != "pending_stamp") {
    return Fail(400, "status is required: confirmed, pending or pending_stamp.");
  }
  int64_t page = 0, limit = 0;
  if (!ParseSmallUint(req.get_param_value("page"), 9, &page)) {
    return Fail(400, "page is required: an integer from 0.");
  }
  if (!ParseSmallUint(req.get_param_value("limit"), 9, &limit) || limit < 1 ||
      limit > kMaxListLimit) {
    return Fail(400, "limit is required: an integer from 1 to 100.");
  }
  ojson documents = ojson::array();
  int64_t total = 0;
  const int64_t first = page * limit;
  auto ids = account_docs_.find(account);
  if (ids != account_docs_.end()) {
    for (int64_t id : ids->second) {  // creation order
      auto d = docs_.find(id);
      if (d == docs_.end() || status != StatusAt(d->second, now)) continue;
      if (total >= first && total < first + limit)
        documents.push_back(DocumentJson(d->second, now));
      ++total;
    }
  }
  ojson data;
  data["totalPages"] = (total + limit - 1) / limit;
  data["totalCount"] = total;
  data["documents"] = std::move(documents);
  Reply r;
  r.body = Dump(ojson{{"ok", true}, {"data", std::move(data)}});
  return r;
}

Reply SimpleProofApi::HandleVerify(const httplib::Request& req, const std::string& account,
                                   absl::Time now) {
  const nlohmann::json body = nlohmann::json::parse(req.body, nullptr, false);
  auto hash = body.is_object() ? body.find("hash") : body.end();
  if (!body.is_object() || hash == body.end() || !hash->is_string() ||
      !IsSha256Hex(hash->get<std::string>())) {
    return Fail(400, "hash is required: a SHA256 hexadecimal hash.");
  }
  const int64_t ttl = CeilSeconds(core_->opt().ots_url_ttl);
  SimpleProofStats& s = core_->stats().simpleproof;
  ++s.verifications_total;
  ojson documents = ojson::array();
  // The account's own documents: the endpoint is authenticated, and the sandbox does not let one
  // account read another's.
  auto id = by_account_hash_.find({account, absl::AsciiStrToLower(hash->get<std::string>())});
  auto doc = id == by_account_hash_.end() ? docs_.end() : docs_.find(id->second);
  if (doc != docs_.end()) {
    const Doc& d = doc->second;
    std::string ots_url;
    if (d.confirmed && !d.ots.empty()) {
      // Each answer mints a fresh URL valid for ots_url_ttl, like a pre-signed S3 URL. Expired
      // and surplus URLs are forgotten oldest first (they answer 403 either way).
      while (!ots_url_order_.empty() &&
             (ots_url_order_.front().first <= now || ots_url_order_.size() >= kMaxOtsUrls)) {
        ots_urls_.erase(ots_url_order_.front().second);
        ots_url_order_.pop_front();
      }
      const std::string token = HexEncode(core_->RandomBytes(16));
      const absl::Time expires = now + core_->opt().ots_url_ttl;
      ots_urls_[token] = OtsUrl{d.id, expires};
      ots_url_order_.emplace_back(expires, token);
      ++s.ots_urls_issued_total;
      ots_url = absl::StrCat(files_origin_, "/_files/simpleproof/", token, ".ots");
    }
    ojson j;
    j["hash"] = d.hash;
    j["name"] = d.hash;
    j["creation_date"] = FormatIso(d.created_at);
    j["confirmed"] = d.confirmed;
    j["confirmed_at"] = d.confirmed ? ojson(FormatIso(d.confirmed_at)) : ojson(nullptr);
    j["url"] = VerificationUrl(d);
    j["file_download_url"] = "";
    j["ots_download_url"] = ots_url;
    j["download_url_expiration_time"] = ttl;
    documents.push_back(std::move(j));
  }
  ojson out;
  out["ok"] = true;
  out["totalDocuments"] = documents.size();
  out["documents"] = std::move(documents);
  Reply r;
  r.body = Dump(out);
  return r;
}

void SimpleProofApi::HandleDownload(const httplib::Request& req, httplib::Response& res) {
  std::string name = req.matches.size() > 1 ? std::string(req.matches[1]) : "";
  std::string ots, hash;
  bool expired = false;
  {
    absl::MutexLock lock(&core_->mu());
    ++core_->stats().requests_total;
    SimpleProofStats& s = core_->stats().simpleproof;
    const absl::Time now = core_->clock()->Now();
    auto it = absl::EndsWith(name, ".ots") ? ots_urls_.find(name.substr(0, name.size() - 4))
                                           : ots_urls_.end();
    // Valid while now < expires: "valid for 1800 seconds".
    if (it != ots_urls_.end() && now < it->second.expires) {
      auto d = docs_.find(it->second.doc);
      if (d != docs_.end()) {
        ots = d->second.ots;
        hash = d->second.hash;
        ++s.ots_downloads_total;
      }
    } else {
      expired = it != ots_urls_.end();
      ++s.ots_urls_expired_total;
    }
  }
  if (ots.empty()) {
    // What S3 answers for an expired or forged pre-signed URL.
    Reply r;
    r.status = 403;
    r.content_type = "application/xml";
    r.body = absl::StrCat(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code><Message>",
        expired ? "Request has expired" : "Access Denied", "</Message></Error>");
    return Send(r, "", false, res);
  }
  Reply r;
  r.content_type = "application/octet-stream";
  r.body = std::move(ots);
  r.headers.emplace_back("Content-Disposition",
                         absl::StrCat("attachment; filename=\"", hash, ".ots\""));
  Send(r, "", false, res);
}

void SimpleProofApi::AddCallbackUrlLocked(Doc& d, const std::string& url) {
  if (d.confirmed) {
    // Confirmed already: the notification the caller asks for is sent now.
    QueueCallbackLocked(d, url);
    return;
  }
  if (std::find(d.callback_urls.begin(), d.callback_urls.end(), url) != d.callback_urls.end()) {
    return;
  }
  if (d.callback_urls.size() >= kMaxCallbackUrls) d.callback_urls.erase(d.callback_urls.begin());
  d.callback_urls.push_back(url);
}

void SimpleProofApi::OnConfirmedLocked(const std::string& ref, const Confirmation& c, bool ok) {
  int64_t id = 0;
  if (!absl::SimpleAtoi(ref, &id)) return;
  auto it = docs_.find(id);
  if (it == docs_.end()) return;
  Doc& d = it->second;
  std::shared_ptr<ots::Timestamp> root = std::move(d.root);
  absl::StatusOr<std::string> bytes = absl::InternalError("no block was built");
  if (ok && root != nullptr) bytes = ots::SerializeDetached({ots::Op::Sha256(), root->msg(), root});
  if (!bytes.ok()) {
    // Cannot happen for 32-byte digests; the document then stays pending.
    ANCHORD_LOG(Error) << "sandbox: simpleproof proof for document " << id << ": "
                       << bytes.status();
    return;
  }
  d.ots = *std::move(bytes);
  d.confirmed = true;
  d.height = c.height;
  d.tx = HexEncode(core_->RandomBytes(32));
  d.confirmed_at = c.time;
  ++core_->stats().simpleproof.confirmed_total;
  for (const std::string& url : d.callback_urls) QueueCallbackLocked(d, url);
}

void SimpleProofApi::QueueCallbackLocked(const Doc& d, const std::string& url) {
  SimpleProofStats& s = core_->stats().simpleproof;
  auto parsed = ParseUrl(url);
  // The sandbox calls nothing but loopback: it must not be a way to reach other hosts.
  if (!parsed || !IsLoopbackHost(parsed->host)) {
    ++s.callbacks_skipped_total;
    ANCHORD_LOG(Info) << "sandbox: simpleproof callback to a non-loopback URL skipped";
    return;
  }
  if (core_->callback_drop_rate() > 0 && core_->Draw() < core_->callback_drop_rate()) {
    ++s.callbacks_dropped_total;
    return;
  }
  if (!started_ || stop_ || callbacks_.size() >= kMaxQueuedCallbacks) {
    ++s.callbacks_failed_total;
    return;
  }
  ojson body;
  body["id"] = d.id;
  body["confirmed"] = true;
  body["hash"] = d.hash;
  body["name"] = d.hash;
  body["blockheight"] = d.height;
  body["verified_at"] = FormatIso(d.confirmed_at);
  body["verification_link"] = VerificationUrl(d);
  callbacks_.emplace(std::chrono::steady_clock::now(), Callback{generation_, url, Dump(body), 0});
  cv_.Signal();
}

void SimpleProofApi::StartCallbacks() {
  absl::MutexLock lock(&core_->mu());
  if (started_ || stop_) return;
  started_ = true;
  worker_ = std::thread([this] { CallbackLoop(); });
}

void SimpleProofApi::StopCallbacks() {
  {
    absl::MutexLock lock(&core_->mu());
    stop_ = true;
    callbacks_.clear();
  }
  cv_.SignalAll();
  {
    absl::MutexLock lock(&active_mu_);
    if (active_ != nullptr) active_->stop();  // aborts the POST in flight
  }
  if (worker_.joinable()) worker_.join();
}

void SimpleProofApi::CallbackLoop() {
  const SandboxOptions& opt = core_->opt();
  // Real time, not the sandbox Clock: a FakeClock never moves by itself, and delivery is I/O.
  const auto interval = std::chrono::milliseconds(
      std::max<int64_t>(0, absl::ToInt64Milliseconds(opt.callback_retry_interval)));
  const int64_t timeout_ms =
      std::clamp<int64_t>(absl::ToInt64Milliseconds(opt.callback_timeout), 1, 600000);
  const int max_attempts = 1 + std::clamp(opt.callback_retries, 0, 100);
  core_->mu().Lock();
  while (!stop_) {
    if (callbacks_.empty()) {
      cv_.WaitWithTimeout(&core_->mu(), absl::Seconds(1));
      continue;
    }
    const SteadyTime next = callbacks_.begin()->first;
    const SteadyTime now = std::chrono::steady_clock::now();
    if (now < next) {
      cv_.WaitWithTimeout(&core_->mu(), absl::FromChrono(next - now));
      continue;
    }
    Callback cb = std::move(callbacks_.begin()->second);
    callbacks_.erase(callbacks_.begin());
    core_->mu().Unlock();

    int status = -1;
    if (auto url = ParseUrl(cb.url)) {
      httplib::Client cli(url->origin);
      cli.set_connection_timeout(timeout_ms / 1000, (timeout_ms % 1000) * 1000);
      cli.set_read_timeout(timeout_ms / 1000, (timeout_ms % 1000) * 1000);
      cli.set_write_timeout(timeout_ms / 1000, (timeout_ms % 1000) * 1000);
      if (url->scheme == "https") cli.enable_server_certificate_verification(false);
      {
        absl::MutexLock active(&active_mu_);
        active_ = &cli;
      }
      bool stopping = false;
      {
        absl::MutexLock relock(&core_->mu());
        stopping = stop_;
      }
      if (!stopping) {
        httplib::Headers headers = {{"User-Agent", "anchord-sandbox-simpleproof/1"}};
        auto res = cli.Post(url->path.c_str(), headers, cb.body, "application/json");
        if (res) status = res->status;
      }
      absl::MutexLock active(&active_mu_);
      active_ = nullptr;
    }

    core_->mu().Lock();
    if (cb.generation != generation_ || stop_) continue;  // reset or stopping meanwhile
    SimpleProofStats& s = core_->stats().simpleproof;
    ++s.callbacks_sent_total;
    ++cb.attempts;
    if (status >= 200 && status < 300) {
      ++s.callbacks_delivered_total;
    } else if (cb.attempts < max_attempts && callbacks_.size() < kMaxQueuedCallbacks) {
      callbacks_.emplace(std::chrono::steady_clock::now() + interval, std::move(cb));
    } else {
      ++s.callbacks_failed_total;
      ANCHORD_LOG(Info) << "sandbox: simpleproof callback given up after " << cb.attempts
                        << " attempt(s), last status " << status;
    }
  }
  core_->mu().Unlock();
}

}  // namespace anchord::sandbox::internal
