#include "libs/ots/upgrade.h"

#include <fnmatch.h>

#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "libs/common/hex.h"
#include "libs/http/http_client.h"

namespace anchord::ots {
namespace {

void CollectPending(const Timestamp& t, std::vector<PendingPoint>* out,
                    std::set<std::pair<std::string, std::string>>* seen) {
  if (!t.attestations().empty()) {
    for (const auto& a : t.attestations()) {
      if (a.kind == Attestation::Kind::kPending && seen->emplace(a.uri, t.msg()).second) {
        out->push_back(PendingPoint{a.uri, t.msg()});
      }
    }
    return;  // the reference stops at the first attested node on each path
  }
  for (const auto& [op, child] : t.ops()) CollectPending(*child, out, seen);
}

// Timestamp.merge: union of attestations, ops merged recursively by op identity.
absl::Status MergeInto(Timestamp* dst, const Timestamp& src) {
  for (const auto& a : src.attestations()) dst->AddAttestation(a);
  for (const auto& [op, child] : src.ops()) {
    auto mine = dst->AddOp(op);
    if (!mine.ok()) return mine.status();
    if (auto st = MergeInto(mine->get(), *child); !st.ok()) return st;
  }
  return absl::OkStatus();
}

void FindByMsg(const std::shared_ptr<Timestamp>& t, absl::string_view msg,
               std::vector<Timestamp*>* out) {
  if (t->msg() == msg) out->push_back(t.get());
  for (const auto& [op, child] : t->ops()) FindByMsg(child, msg, out);
}

struct ParsedUrl {
  std::string scheme, netloc, path;
  bool extra = false;  // params, query or fragment present
};

ParsedUrl ParseUrl(absl::string_view url) {
  ParsedUrl p;
  size_t colon = url.find("://");
  if (colon == absl::string_view::npos) {
    p.extra = true;
    return p;
  }
  p.scheme = std::string(url.substr(0, colon));
  absl::string_view rest = url.substr(colon + 3);
  size_t slash = rest.find('/');
  p.netloc = std::string(rest.substr(0, slash));
  p.path = slash == absl::string_view::npos ? "" : std::string(rest.substr(slash));
  p.extra = url.find_first_of("?#;") != absl::string_view::npos;
  return p;
}

std::string TrimSlash(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

}  // namespace

std::vector<PendingPoint> PendingAttestations(const DetachedFile& proof) {
  std::vector<PendingPoint> out;
  std::set<std::pair<std::string, std::string>> seen;
  if (proof.timestamp) CollectPending(*proof.timestamp, &out, &seen);
  return out;
}

std::shared_ptr<Timestamp> CloneTimestamp(const Timestamp& t) {
  auto copy = std::make_shared<Timestamp>(t.msg());
  for (const auto& a : t.attestations()) copy->AddAttestation(a);
  for (const auto& [op, child] : t.ops()) {
    // SetOp re-checks op(msg) == child msg, which holds for any tree built through this API.
    (void)copy->SetOp(op, CloneTimestamp(*child));
  }
  return copy;
}

absl::StatusOr<DetachedFile> CloneDetached(const DetachedFile& f) {
  if (f.timestamp == nullptr) return absl::InvalidArgumentError("proof has no timestamp");
  return DetachedFile{f.file_hash_op, f.digest, CloneTimestamp(*f.timestamp)};
}

bool IsComplete(const DetachedFile& proof) {
  if (!proof.timestamp) return false;
  for (const auto& [msg, a] : proof.timestamp->AllAttestations()) {
    if (a.kind == Attestation::Kind::kBitcoin) return true;
  }
  return false;
}

absl::Status MergeCalendarAnswer(DetachedFile* proof, absl::string_view commitment,
                                 absl::string_view answer) {
  if (proof == nullptr || proof->timestamp == nullptr) {
    return absl::InvalidArgumentError("no proof to merge into");
  }
  size_t pos = 0;
  auto sub = Timestamp::Parse(answer, &pos, std::string(commitment));
  if (!sub.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("calendar answer for ", HexEncode(commitment),
                                                   " is not a timestamp on that "
                                                   "commitment: ",
                                                   sub.status().message()));
  }
  if (pos != answer.size()) {
    return absl::InvalidArgumentError(absl::StrCat("calendar answer: ", answer.size() - pos,
                                                   " trailing bytes at byte offset ", pos));
  }
  auto copy = CloneDetached(*proof);
  if (!copy.ok()) return copy.status();
  std::vector<Timestamp*> targets;
  FindByMsg(copy->timestamp, commitment, &targets);
  if (targets.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no node of the proof has the commitment ", HexEncode(commitment)));
  }
  for (Timestamp* t : targets) {
    if (auto st = MergeInto(t, **sub); !st.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("merging calendar answer: ", st.message()));
    }
  }
  // Valid at every step: the merged proof must serialize and parse back within the limits
  // (depth 256 in particular: a deep pending node plus a deep answer can exceed it).
  auto bytes = SerializeDetached(*copy);
  if (!bytes.ok()) return absl::InvalidArgumentError(bytes.status().message());
  auto reparsed = ParseDetached(*bytes);
  if (!reparsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("merged proof would be invalid: ", reparsed.status().message()));
  }
  *proof = *std::move(reparsed);
  return absl::OkStatus();
}

std::vector<std::string> DefaultCalendarWhitelist() {
  return {"https://*.calendar.opentimestamps.org", "https://*.calendar.eternitywall.com",
          "https://*.calendar.catallaxy.com"};
}

bool CalendarWhitelisted(absl::string_view url, const std::vector<std::string>& patterns) {
  ParsedUrl u = ParseUrl(url);
  if (u.extra || u.netloc.empty()) return false;
  for (const std::string& raw : patterns) {
    std::vector<std::string> expanded;
    if (absl::StartsWith(raw, "http://") || absl::StartsWith(raw, "https://")) {
      expanded.push_back(raw);
    } else {  // no scheme: either (as the reference's UrlWhitelist.add)
      expanded.push_back("https://" + raw);
      expanded.push_back("http://" + raw);
    }
    for (const std::string& pat : expanded) {
      ParsedUrl p = ParseUrl(pat);
      if (p.extra) continue;
      if (p.scheme == u.scheme && p.path == u.path &&
          fnmatch(p.netloc.c_str(), u.netloc.c_str(), 0) == 0) {
        return true;
      }
    }
  }
  return false;
}

UpgradeReport Upgrade(DetachedFile* proof, const CalendarFetch& fetch,
                      const UpgradeOptions& options) {
  UpgradeReport rep;
  std::string before;
  if (proof != nullptr) {
    auto b = SerializeDetached(*proof);
    if (b.ok()) before = *std::move(b);
  }
  if (proof == nullptr || proof->timestamp == nullptr || before.empty()) {
    rep.errors = 1;
    rep.messages.push_back("error: not a valid proof");
    return rep;
  }
  const std::vector<std::string> whitelist =
      options.whitelist.empty() ? DefaultCalendarWhitelist() : options.whitelist;
  const std::vector<PendingPoint> points = PendingAttestations(*proof);
  rep.pending_total = static_cast<int>(points.size());
  std::set<std::pair<std::string, std::string>> asked;  // (calendar, commitment)
  for (const PendingPoint& p : points) {
    std::vector<std::string> calendars = options.calendars;
    if (calendars.empty()) {
      if (!CalendarWhitelisted(p.uri, whitelist)) {
        ++rep.skipped;
        rep.messages.push_back(absl::StrCat("skipping calendar ", p.uri, ": not whitelisted"));
        continue;
      }
      calendars.push_back(p.uri);
    }
    for (const std::string& cal : calendars) {
      if (!asked.emplace(cal, p.commitment).second) continue;
      auto answer = fetch(cal, p.commitment);
      if (!answer.ok()) {
        ++rep.errors;
        rep.messages.push_back(absl::StrCat("calendar ", cal, ": ", answer.status().message()));
        continue;
      }
      if (!answer->has_value()) {
        ++rep.still_pending;
        rep.messages.push_back(absl::StrCat("calendar ", cal, ": pending confirmation"));
        continue;
      }
      if ((*answer)->size() > kMaxCalendarAnswer) {
        ++rep.errors;
        rep.messages.push_back(
            absl::StrCat("calendar ", cal, ": answer larger than ", kMaxCalendarAnswer, " bytes"));
        continue;
      }
      if (auto st = MergeCalendarAnswer(proof, p.commitment, **answer); !st.ok()) {
        ++rep.errors;
        rep.messages.push_back(absl::StrCat("calendar ", cal, ": ", st.message()));
        continue;
      }
      ++rep.upgraded;
      rep.messages.push_back(
          absl::StrCat("calendar ", cal, ": merged answer for ", HexEncode(p.commitment)));
    }
  }
  auto after = SerializeDetached(*proof);
  rep.changed = after.ok() && *after != before;
  rep.complete = IsComplete(*proof);
  return rep;
}

CalendarFetch MakeHttpCalendarFetch(std::shared_ptr<http::HttpClient> client) {
  if (!client) {
    http::CurlOptions o;
    // Like the reference client: at most 10000 bytes (+1 so "too large" is detectable).
    o.max_response_bytes = kMaxCalendarAnswer + 1;
    o.connect_timeout = absl::Seconds(10);
    client = std::shared_ptr<http::HttpClient>(http::MakeCurlClient(o));
  }
  return [client](const std::string& uri,
                  const std::string& commitment) -> absl::StatusOr<std::optional<std::string>> {
    http::HttpRequest req;
    req.url = absl::StrCat(TrimSlash(uri), "/timestamp/", HexEncode(commitment));
    req.timeout = absl::Seconds(15);
    req.headers.emplace_back("Accept", "application/vnd.opentimestamps.v1");
    auto resp = client->Do(req);
    if (!resp.ok()) return resp.status();
    if (resp->status == 404) return std::optional<std::string>();
    if (resp->status != 200) {
      return absl::UnavailableError(absl::StrCat("HTTP ", resp->status));
    }
    return std::optional<std::string>(std::move(resp->body));
  };
}

}  // namespace anchord::ots
