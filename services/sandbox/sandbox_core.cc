#include "services/sandbox/sandbox_core.h"

#include <algorithm>
#include <iterator>
#include <chrono>
#include <limits>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/common/log.h"

namespace anchord::sandbox::internal {

std::string Dump(const ojson& j) { return j.dump(-1, ' ', false, ojson::error_handler_t::replace); }

std::string FormatIso(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

int64_t CeilSeconds(absl::Duration d) {
  if (d <= absl::ZeroDuration()) return 0;
  return absl::ToInt64Seconds(absl::Ceil(d, absl::Seconds(1)));
}

bool ParseSmallUint(absl::string_view s, size_t max_digits, int64_t* out) {
  if (s.empty() || s.size() > max_digits) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return absl::SimpleAtoi(s, out);
}

bool IsLoopbackHost(absl::string_view host) {
  if (absl::EqualsIgnoreCase(host, "localhost")) return true;
  if (host == "::1" || host == "[::1]") return true;
  std::vector<absl::string_view> parts = absl::StrSplit(host, '.');
  if (parts.size() != 4 || parts[0] != "127") return false;
  for (absl::string_view p : parts) {
    int64_t v = 0;
    if (!ParseSmallUint(p, 3, &v) || v > 255) return false;
  }
  return true;
}

std::string UrlHost(const std::string& bind_host) {
  if (bind_host.empty() || bind_host == "0.0.0.0") return "127.0.0.1";
  if (bind_host.find(':') != std::string::npos) return "localhost";
  return bind_host;
}

std::string BearerToken(const httplib::Request& req) {
  const std::string auth = req.get_header_value("Authorization");
  if (auth.size() > 7 && absl::EqualsIgnoreCase(absl::string_view(auth).substr(0, 7), "bearer ")) {
    return std::string(absl::StripAsciiWhitespace(absl::string_view(auth).substr(7)));
  }
  return "";
}

std::string ClientKey(absl::string_view identity, const httplib::Request& req) {
  // Header values cannot hold a newline, so the parts cannot run into each other.
  return absl::StrCat(identity, "\n", req.get_header_value("User-Agent"));
}

void Send(const Reply& reply, const std::string& rid, bool drop, httplib::Response& res) {
  res.status = reply.status;
  if (!rid.empty()) res.set_header("X-Request-Id", rid);
  for (const auto& [k, v] : reply.headers) res.set_header(k, v);
  if (!drop) {
    res.set_content(reply.body, reply.content_type);
    return;
  }
  // The provider fails after writing half the body; httplib then closes the connection.
  auto body = std::make_shared<std::string>(reply.body);
  const size_t cut = body->size() / 2;
  res.set_content_provider(body->size(), reply.content_type,
                           [body, cut](size_t offset, size_t, httplib::DataSink& sink) {
                             if (offset < cut) sink.write(body->data() + offset, cut - offset);
                             return false;
                           });
}

absl::StatusOr<std::pair<std::shared_ptr<ots::Timestamp>, std::shared_ptr<ots::Timestamp>>>
NoncedLeaf(std::string digest, const std::string& nonce) {
  auto root = std::make_shared<ots::Timestamp>(std::move(digest));
  auto appended = root->AddOp(ots::Op::Append(nonce));
  if (!appended.ok()) return appended.status();
  auto leaf = (*appended)->AddOp(ots::Op::Sha256());
  if (!leaf.ok()) return leaf.status();
  return std::make_pair(root, *leaf);
}

namespace {

std::string Sha256d(absl::string_view b) { return ots::Sha256(ots::Sha256(b)); }

void PutLe32(uint32_t v, std::string* out) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// An 80-byte Bitcoin block header whose merkle root is `root` (internal order), with regtest-easy
// bits 0x207fffff and a nonce found so that its hash meets that target (about 1 in 2 nonces do).
std::string BuildHeader(int64_t height, absl::string_view root, absl::Time time) {
  std::string prefix;
  PutLe32(0x20000000, &prefix);
  prefix += Sha256d(absl::StrCat("anchord-sandbox-block-", height - 1));  // fake previous hash
  prefix += std::string(root);
  PutLe32(static_cast<uint32_t>(absl::ToUnixSeconds(time)), &prefix);
  PutLe32(0x207fffff, &prefix);
  // Target for bits 0x207fffff: 0x7fffff << 232, i.e. big-endian 7f ff ff 00 .. 00.
  std::string target(32, '\0');
  target[0] = '\x7f';
  target[1] = target[2] = '\xff';
  for (uint32_t nonce = 0;; ++nonce) {
    std::string header = prefix;
    PutLe32(nonce, &header);
    std::string hash = Sha256d(header);
    std::reverse(hash.begin(), hash.end());  // the hash is compared as a little-endian number
    if (hash <= target || nonce == std::numeric_limits<uint32_t>::max()) return header;
  }
}

// Indexed by ApiId (the order of its declaration).
constexpr const char* kApiNames[] = {"proofd", "proofledger", "simpleproof", "calendar", "tsa"};

const char* ApiName(ApiId id) {
  const size_t i = static_cast<size_t>(id);
  return i < std::size(kApiNames) ? kApiNames[i] : "?";
}

}  // namespace

Core::Core(const SandboxOptions& o)
    : opt_(o),
      clock_(o.clock != nullptr ? o.clock : Clock::Real()),
      fault_rng_(o.seed),
      id_rng_(o.seed ^ 0x9e3779b97f4a7c15ULL) {
  SetFaults(o.faults, clock_->Now());
  next_height_ = o.first_block_height;
}

ApiStats& Core::api_stats(ApiId id) {
  switch (id) {
    case ApiId::kProofLedger:
      return stats_.proofledger;
    case ApiId::kSimpleProof:
      return stats_.simpleproof;
    case ApiId::kCalendar:
      return stats_.calendar;
    case ApiId::kTsa:
      return stats_.tsa;
    case ApiId::kProofd:
      break;
  }
  return stats_.proofd;
}

int Core::CountRequest() {
  absl::MutexLock lock(&mu_);
  ++stats_.requests_total;
  return faults_.latency_ms;
}

void Core::SleepLatency(int latency_ms) {
  if (latency_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(latency_ms));
}

void Core::Answer(ApiId api, absl::string_view label, const std::string& rid,
                  const httplib::Request& req, httplib::Response& res,
                  absl::FunctionRef<Reply(bool* drop)> answer) {
  Reply reply;
  bool drop = false;
  {
    absl::MutexLock lock(&mu_);
    reply = answer(&drop);
    if (drop) CountDrop(api);
  }
  ANCHORD_LOG(Debug) << "sandbox: " << label << req.method << " " << req.path << " -> "
                     << reply.status << (rid.empty() ? "" : " ") << rid
                     << (drop ? " (dropped)" : "");
  Send(reply, rid, drop, res);
}

double Core::Draw() { return std::uniform_real_distribution<double>(0.0, 1.0)(fault_rng_); }

std::string Core::RandomBytes(size_t n) {
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(id_rng_() & 0xff);
  return out;
}

uint64_t Core::RandomU64() { return id_rng_(); }

void Core::SetFaults(const Faults& f, absl::Time now) {
  faults_ = f;
  faults_.error_rate = std::clamp(f.error_rate, 0.0, 1.0);
  faults_.drop_rate = std::clamp(f.drop_rate, 0.0, 1.0);
  faults_.latency_ms = std::clamp(f.latency_ms, 0, 60000);
  faults_.callback_drop_rate = std::clamp(f.callback_drop_rate, 0.0, 1.0);
  // NaN compares false everywhere; clamp keeps it, so turn it into "off" explicitly.
  if (!(faults_.error_rate >= 0)) faults_.error_rate = 0;
  if (!(faults_.drop_rate >= 0)) faults_.drop_rate = 0;
  if (!(faults_.callback_drop_rate >= 0)) faults_.callback_drop_rate = 0;
  double storm = std::clamp(f.storm_seconds, 0.0, 86400.0);
  storm_until_ = storm > 0 ? now + absl::Seconds(storm) : absl::InfinitePast();
}

Faults Core::GetFaults(absl::Time now) const {
  Faults f = faults_;
  f.storm_seconds = storm_until_ > now ? absl::ToDoubleSeconds(storm_until_ - now) : 0;
  return f;
}

Admission Core::Admit(ApiId api, const std::string& client, absl::Time now, double* extra) {
  ApiStats& as = api_stats(api);
  ++as.requests_total;
  auto early = earliest_allowed_.find(client);
  if (early != earliest_allowed_.end() && now < early->second) {
    ++stats_.early_requests_total;
    ++as.early_requests_total;
    // Only the User-Agent part is logged: the identity part may be a key.
    ANCHORD_LOG(Warning) << "sandbox: early " << ApiName(api) << " request from user agent \""
                         << client.substr(client.rfind('\n') + 1) << "\", "
                         << absl::FormatDuration(early->second - now) << " before its Retry-After";
  }
  Admission a;
  a.error = faults_.error_rate > 0 && Draw() < faults_.error_rate;
  a.drop = faults_.drop_rate > 0 && Draw() < faults_.drop_rate;
  if (now < storm_until_) {
    a.storm = true;
    a.error = a.drop = false;
    ++stats_.faults_injected_total;
    ++as.faults_injected_total;
    NoteRateLimited(api, client, 1, false, now);
    return a;
  }
  if (a.error) {
    a.drop = false;
    ++stats_.faults_injected_total;
    ++as.faults_injected_total;
    if (extra != nullptr) *extra = Draw();
  }
  return a;
}

Core::LimitResult Core::CheckLimits(const std::vector<Bucket>& buckets, absl::Time now) {
  LimitResult r;
  for (const auto& b : buckets) {
    if (b.limit <= 0) continue;
    SlidingLog& log = buckets_[b.key];
    log.Prune(now, b.window);
    if (static_cast<int64_t>(log.times.size()) >= b.limit) {
      // Retry-After is the time until the oldest entry leaves the window (when a slot frees),
      // rounded up, at least 1 s.
      r.ok = false;
      r.retry_after = std::max<int64_t>(1, CeilSeconds(log.times.front() + b.window - now));
      r.limit = b.limit;
      r.remaining = 0;
      r.reset = r.retry_after;
      return r;
    }
  }
  int64_t tightest = std::numeric_limits<int64_t>::max();
  for (const auto& b : buckets) {
    if (b.limit <= 0) continue;
    SlidingLog& log = buckets_[b.key];
    log.times.push_back(now);
    const int64_t remaining = b.limit - static_cast<int64_t>(log.times.size());
    if (remaining < tightest) {
      tightest = remaining;
      r.limit = b.limit;
      r.remaining = remaining;
      r.reset = CeilSeconds(log.times.front() + b.window - now);
    }
  }
  return r;
}

void Core::NoteRateLimited(ApiId api, const std::string& client, int64_t retry_after, bool dropped,
                           absl::Time now) {
  ++stats_.rate_limited_total;
  ++api_stats(api).rate_limited_total;
  if (!dropped) earliest_allowed_[client] = now + absl::Seconds(retry_after);
}

void Core::CountDrop(ApiId api) {
  ++stats_.faults_injected_total;
  ++api_stats(api).faults_injected_total;
}

void Core::AddPending(absl::Time due, std::shared_ptr<ots::Timestamp> leaf, ChainListener* owner,
                      std::string ref) {
  pending_.emplace(due, Pending{std::move(leaf), owner, std::move(ref)});
}

void Core::ConfirmDue(absl::Time now) {
  constexpr size_t kMaxBatch = 1000;
  // Each round removes at least one leaf, so this ends; the round cap is a second guard.
  for (int round = 0; round < 1'000'000; ++round) {
    std::vector<Pending> batch;
    while (!pending_.empty() && batch.size() < kMaxBatch && pending_.begin()->first <= now) {
      batch.push_back(std::move(pending_.begin()->second));
      pending_.erase(pending_.begin());
    }
    if (batch.empty()) return;
    MakeBlock(batch, now);
  }
}

void Core::MakeBlock(std::vector<Pending>& batch, absl::Time now) {
  const int64_t height = next_height_++;
  std::vector<std::shared_ptr<ots::Timestamp>> leaves;
  leaves.reserve(batch.size());
  for (const auto& p : batch) leaves.push_back(p.leaf);
  // Records due together form one block: their proofs share an OTS merkle tree whose tip is the
  // block's merkle root.
  auto tip = ots::MakeMerkleTree(leaves);
  if (tip.ok()) {
    (*tip)->AddAttestation(ots::Attestation::Bitcoin(static_cast<uint64_t>(height)));
    blocks_[height] = Block{(*tip)->msg(), now, {}};
    ++stats_.blocks_total;
  } else {
    ANCHORD_LOG(Error) << "sandbox: building block " << height << ": " << tip.status();
  }
  const Confirmation c{height, now};
  for (auto& p : batch) {
    if (p.owner != nullptr) p.owner->OnConfirmedLocked(p.ref, c, tip.ok());
  }
}

std::string Core::HeaderAt(int64_t height) {
  auto it = blocks_.find(height);
  if (it == blocks_.end()) return "";
  if (it->second.header.empty()) {
    it->second.header = BuildHeader(height, it->second.merkle_root, it->second.time);
  }
  return it->second.header;
}

void Core::Reset() {
  pending_.clear();
  blocks_.clear();
  buckets_.clear();
  earliest_allowed_.clear();
  stats_ = SandboxStats();
}

}  // namespace anchord::sandbox::internal
