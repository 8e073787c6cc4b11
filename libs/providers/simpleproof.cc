#include "libs/providers/simpleproof.h"

#include <algorithm>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"
#include "libs/common/secret.h"
#include "libs/providers/adapter_common.h"

namespace anchord::providers {
namespace {

using json = nlohmann::json;
using internal::Wire;

constexpr char kCreate[] = "create";
constexpr char kVerify[] = "verify";
constexpr char kList[] = "list";
constexpr char kOts[] = "ots";

constexpr int kListLimitMax = 100;  // the sandbox's cap; the document names none
constexpr size_t kMaxCallbackBytes = 64 * 1024;
// The listing statuses that are not yet confirmed, in the order a document moves through them:
// walking pending_stamp first means a document that moves on during the walk is met again in
// `pending` rather than missed.
constexpr const char* kPendingStatuses[] = {"pending_stamp", "pending"};

// What a verification says about one hash.
struct Verification {
  ProviderRecord record;  // proof_id = digest, state, verify_url, times
  std::string ots_url;    // ots_download_url; may be empty
};

absl::Status OptString(const json& j, const char* key, std::string* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_string()) return absl::InvalidArgumentError(absl::StrCat(key, ": not a string"));
  *out = it->get<std::string>();
  return absl::OkStatus();
}

absl::Status OptTime(const json& j, const char* key, absl::Time* out) {
  std::string s;
  if (auto st = OptString(j, key, &s); !st.ok()) return st;
  if (s.empty()) return absl::OkStatus();
  auto t = internal::ParseIsoTime(s);
  if (!t.ok()) return absl::InvalidArgumentError(absl::StrCat(key, ": not an ISO-8601 time"));
  *out = *t;
  return absl::OkStatus();
}

absl::Status OptUrl(const json& j, const char* key, std::string* out) {
  if (auto st = OptString(j, key, out); !st.ok()) return st;
  if (!out->empty() && !internal::IsHttpUrl(*out)) {
    return absl::InvalidArgumentError(absl::StrCat(key, ": not an http(s) URL"));
  }
  return absl::OkStatus();
}

// {"ok": true, ...}: `ok` must not be false (absent is tolerated: the payload decides).
absl::Status CheckOk(const json& j) {
  if (!j.is_object()) return absl::InvalidArgumentError("body is not a JSON object");
  auto ok = j.find("ok");
  if (ok != j.end() && !(ok->is_boolean() && ok->get<bool>())) {
    return absl::InvalidArgumentError("ok: not true");
  }
  return absl::OkStatus();
}

// One document of a verification answer.
absl::StatusOr<Verification> ParseVerificationDoc(const json& d, const std::string& digest) {
  Verification v;
  ProviderRecord& r = v.record;
  r.proof_id = digest;
  r.digest_hex = digest;
  auto confirmed = d.find("confirmed");
  if (confirmed != d.end() && !confirmed->is_null()) {
    if (!confirmed->is_boolean()) return absl::InvalidArgumentError("confirmed: not a boolean");
    r.state = confirmed->get<bool>() ? RecordState::kConfirmed : RecordState::kPending;
  }
  if (auto s = OptTime(d, "confirmed_at", &r.confirmed_at); !s.ok()) return s;
  if (auto s = OptTime(d, "creation_date", &r.created_at); !s.ok()) return s;
  if (auto s = OptUrl(d, "url", &r.verify_url); !s.ok()) return s;
  if (auto s = OptUrl(d, "ots_download_url", &v.ots_url); !s.ok()) return s;
  return v;
}

// A verification answer for `digest`: nullopt when the account does not hold it.
absl::StatusOr<std::optional<Verification>> ParseVerification(const std::string& body,
                                                              const std::string& digest) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) return absl::InvalidArgumentError("body is not JSON");
  if (auto s = CheckOk(j); !s.ok()) return s;
  auto docs = j.find("documents");
  if (docs == j.end() || docs->is_null()) {
    // The sandbox always sends the array; an answer with totalDocuments 0 and no array is fine.
    auto total = j.find("totalDocuments");
    if (total != j.end() && total->is_number_integer() && total->get<int64_t>() == 0) {
      return std::optional<Verification>();
    }
    return absl::InvalidArgumentError("documents: missing");
  }
  if (!docs->is_array()) return absl::InvalidArgumentError("documents: not an array");
  if (docs->empty()) return std::optional<Verification>();
  std::optional<Verification> best;
  for (const json& d : *docs) {
    if (!d.is_object()) return absl::InvalidArgumentError("documents: an entry is not an object");
    std::string hash;
    if (auto s = OptString(d, "hash", &hash); !s.ok()) return s;
    if (internal::NormalizeDigestHex(hash) != digest) continue;
    auto v = ParseVerificationDoc(d, digest);
    if (!v.ok()) return v.status();
    // The same hash sent twice may be two documents: a confirmed one wins.
    if (!best || (best->record.state != RecordState::kConfirmed &&
                  v->record.state == RecordState::kConfirmed)) {
      best = *std::move(v);
    }
  }
  if (!best) return absl::InvalidArgumentError("documents: none is for the hash asked");
  return best;
}

// The hashes of a create answer's `files` (strings; objects with a hash are accepted too).
absl::StatusOr<std::set<std::string>> ParseFiles(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) return absl::InvalidArgumentError("body is not JSON");
  if (auto s = CheckOk(j); !s.ok()) return s;
  auto files = j.find("files");
  if (files == j.end() || !files->is_array()) return absl::InvalidArgumentError("files: missing");
  std::set<std::string> out;
  for (const json& f : *files) {
    std::string hash;
    if (f.is_string()) {
      hash = f.get<std::string>();
    } else if (f.is_object()) {
      for (const char* k : {"hash", "document_hash"}) {
        if (f.contains(k) && f[k].is_string()) hash = f[k].get<std::string>();
      }
    }
    std::string norm = internal::NormalizeDigestHex(hash);
    if (norm.empty()) return absl::InvalidArgumentError("files: an entry is not a 64-hex hash");
    out.insert(std::move(norm));
  }
  return out;
}

struct Cursor {
  int status = 0;  // index into kPendingStatuses
  int page = 0;
  int limit = 50;
};

std::string FormatCursor(const Cursor& c) {
  return absl::StrCat(kPendingStatuses[c.status], ":", c.page, ":", c.limit);
}

absl::StatusOr<Cursor> ParseCursor(const std::string& s) {
  std::vector<std::string> parts = absl::StrSplit(s, ':');
  Cursor c;
  if (parts.size() != 3) return absl::InvalidArgumentError("cursor: not status:page:limit");
  c.status = -1;
  for (int i = 0; i < 2; ++i) {
    if (parts[0] == kPendingStatuses[i]) c.status = i;
  }
  if (c.status < 0 || !absl::SimpleAtoi(parts[1], &c.page) || c.page < 0 ||
      !absl::SimpleAtoi(parts[2], &c.limit) || c.limit < 1 || c.limit > kListLimitMax) {
    return absl::InvalidArgumentError("cursor: not status:page:limit");
  }
  return c;
}

OutcomeKind Classify(int status, const char* endpoint) {
  if (status == 429) return OutcomeKind::kRateLimited;
  // Not documented: 402 Payment Required is the reasonable way to say the credit is spent.
  if (status == 402) return OutcomeKind::kQuotaExhausted;
  // The sandbox answers an unknown hash with totalDocuments 0; a 404 means the same.
  if (status == 404 && endpoint == kVerify) return OutcomeKind::kNotFound;
  if (status == 408 || status >= 500) return OutcomeKind::kRetry;
  return OutcomeKind::kPermanent;  // 400, 401 (documented), 403 and any other 4xx
}

class SimpleProofProvider final : public Provider {
 public:
  SimpleProofProvider(const SimpleProofConfig& config, const SimpleProofDeps& deps)
      : config_(config),
        deps_(deps),
        wire_(config.name, config.api_key, deps.http, deps.metrics,
              deps.clock != nullptr ? deps.clock : Clock::Real()) {
    config_.base_url = internal::TrimTrailingSlashes(config_.base_url);
    config_.batch_size = std::clamp(config_.batch_size, 1, kSimpleProofMaxBatch);
    if (deps_.clock == nullptr) deps_.clock = Clock::Real();
  }

  const std::string& name() const override { return config_.name; }
  int max_batch() const override { return config_.batch_size; }

  absl::StatusOr<PreparedCreate> PrepareCreate(const CreateInput& input) const override {
    if (!IsSha256Hex(input.digest_hex)) {
      return absl::InvalidArgumentError("digest_hex: must be 64 hex characters");
    }
    PreparedCreate p;
    p.digest_hex = absl::AsciiStrToLower(input.digest_hex);
    // This digest's part of the batch body: its entry in `hashes`. Name, size and type are not
    // sent (the hashes endpoint takes none).
    p.body = p.digest_hex;
    return p;
  }

  CreateResult Create(const PreparedCreate& request) override {
    return CreateBatch({request}).front();
  }

  std::vector<CreateResult> CreateBatch(const std::vector<PreparedCreate>& requests) override {
    std::vector<CreateResult> out(requests.size());
    // Digest -> the inputs naming it (a digest twice in one batch is sent once).
    std::map<std::string, std::vector<size_t>> wanted;
    std::vector<std::string> order;  // digests in input order
    std::set<std::string> check_first;
    for (size_t i = 0; i < requests.size(); ++i) {
      const std::string digest = internal::NormalizeDigestHex(requests[i].digest_hex);
      if (digest.empty() || absl::AsciiStrToLower(requests[i].body) != digest) {
        out[i].outcome.kind = OutcomeKind::kPermanent;
        out[i].outcome.code = "INVALID_REQUEST";
        out[i].outcome.message = "prepared create is incomplete (digest or body); not sent";
        continue;
      }
      auto [it, added] = wanted.try_emplace(digest);
      it->second.push_back(i);
      if (added) order.push_back(digest);
      if (requests[i].maybe_sent) check_first.insert(digest);
    }
    auto settle = [&](const std::string& digest, const CreateResult& r) {
      for (size_t i : wanted[digest]) out[i] = r;
    };
    std::optional<CallOutcome> stop;  // set once a 429 (or Stop) ends the batch early
    auto stopped = [&](const std::string& digest) {
      CreateResult r;
      r.outcome = *stop;
      settle(digest, r);
    };

    // Requests that may have arrived before: SimpleProof charges per hash and has no idempotency
    // key, so ask whether the account already holds each before spending a unit on it again.
    std::vector<std::string> to_send;
    for (const std::string& digest : order) {
      if (stop) {
        stopped(digest);
        continue;
      }
      if (!check_first.count(digest)) {
        to_send.push_back(digest);
        continue;
      }
      Exchange ex;
      auto held = Verify(digest, &ex);
      if (!held.ok()) {
        CreateResult r;
        r.outcome = ex.outcome;
        if (r.outcome.kind == OutcomeKind::kNotFound) {
          to_send.push_back(digest);  // a 404 verification: not held
          continue;
        }
        if (r.outcome.kind == OutcomeKind::kRateLimited || r.outcome.code == "CANCELLED") {
          stop = r.outcome;
        }
        settle(digest, r);
        continue;
      }
      if (!held->has_value()) {
        to_send.push_back(digest);
        continue;
      }
      CreateResult r;
      r.outcome = ex.outcome;
      r.outcome.kind = OutcomeKind::kOk;
      r.outcome.message = "the account already holds this hash (an earlier send arrived); not sent";
      r.record = (*held)->record;
      ANCHORD_LOG(Info) << config_.name << " create: " << digest
                        << " already held by the account; not sent again";
      settle(digest, r);
    }

    for (size_t start = 0; start < to_send.size(); start += config_.batch_size) {
      const size_t end = std::min(to_send.size(), start + config_.batch_size);
      std::vector<std::string> chunk(to_send.begin() + start, to_send.begin() + end);
      if (stop) {
        for (const std::string& d : chunk) stopped(d);
        continue;
      }
      SendChunk(chunk, settle, &stop);
    }
    return out;
  }

  LookupResult Lookup(const ProofRef& ref) override {
    LookupResult result;
    const std::string digest = internal::NormalizeDigestHex(ref.digest_hex);
    if (digest.empty()) {
      result.outcome = LocalInvalid("INVALID_DIGEST", "digest is not 64 hex characters; not sent");
      return result;
    }
    Exchange ex;
    auto v = Verify(digest, &ex);
    if (!v.ok()) {
      result.outcome = ex.outcome;
      return result;
    }
    if (!v->has_value()) {
      result.outcome = ex.outcome;
      result.outcome.kind = OutcomeKind::kNotFound;
      result.outcome.code = "NOT_FOUND";
      result.outcome.message = "the account holds no document with this hash";
      return result;
    }
    Verification& ver = **v;
    if (ver.record.state == RecordState::kConfirmed) {
      // The download URL expires 1800 s after the verification: fetch the evidence now, while
      // it is valid, rather than leaving it to a later download round.
      DownloadResult d = FetchOts(ver.ots_url, digest, ex.outcome);
      if (d.outcome.kind != OutcomeKind::kOk) {
        result.outcome = d.outcome;
        return result;
      }
      auto file = internal::ParseEvidence(d.ots, digest);  // validated in FetchOts already
      if (file.ok()) ver.record.block_height = internal::LowestBitcoinHeight(*file);
      ver.record.evidence = std::move(d.ots);
    }
    result.outcome = ex.outcome;
    result.record = std::move(ver.record);
    return result;
  }

  bool SupportsListPending() const override { return true; }

  ListPendingResult ListPending(const std::string& cursor, int limit) override {
    ListPendingResult result;
    Cursor c;
    c.limit = std::clamp(limit, 1, kListLimitMax);
    if (!cursor.empty()) {
      auto parsed = ParseCursor(cursor);
      if (!parsed.ok()) {
        result.outcome = LocalInvalid("INVALID_CURSOR", std::string(parsed.status().message()));
        return result;
      }
      c = *parsed;  // the page size stays that of the walk's first page
    }
    const std::string path = absl::StrCat("/api/proof/document?status=", kPendingStatuses[c.status],
                                          "&page=", c.page, "&limit=", c.limit);
    Exchange ex = Send(kList, "GET", path, "");
    if (ex.outcome.kind != OutcomeKind::kOk) {
      result.outcome = ex.outcome;
      return result;
    }
    json j = json::parse(ex.body, nullptr, false);
    absl::Status st =
        j.is_discarded() ? absl::InvalidArgumentError("body is not JSON") : CheckOk(j);
    const json* docs = nullptr;
    int64_t total_pages = -1;
    if (st.ok()) {
      auto data = j.find("data");
      if (data == j.end() || !data->is_object()) {
        st = absl::InvalidArgumentError("data: missing");
      } else {
        auto d = data->find("documents");
        if (d == data->end() || !d->is_array()) {
          st = absl::InvalidArgumentError("data.documents: missing");
        } else {
          docs = &*d;
        }
        auto tp = data->find("totalPages");
        if (tp != data->end() && !tp->is_null()) {
          if (!tp->is_number_integer() || tp->get<int64_t>() < 0) {
            st = absl::InvalidArgumentError("data.totalPages: not a count");
          } else {
            total_pages = tp->get<int64_t>();
          }
        }
      }
    }
    if (!st.ok()) {
      result.outcome = wire_.Malformed(kList, ex.outcome, st.message());
      return result;
    }
    for (const json& d : *docs) {
      std::string hash;
      std::string doc_status;
      absl::Time created = absl::InfinitePast();
      absl::Status ds = d.is_object() ? OptString(d, "document_hash", &hash)
                                      : absl::InvalidArgumentError("not an object");
      if (ds.ok()) ds = OptString(d, "document_status", &doc_status);
      if (ds.ok()) ds = OptTime(d, "creation_date", &created);
      const std::string norm = internal::NormalizeDigestHex(hash);
      if (ds.ok() && norm.empty()) ds = absl::InvalidArgumentError("document_hash: not 64 hex");
      if (!ds.ok()) {
        ANCHORD_LOG(Warning) << config_.name << " list: skipping invalid document ("
                             << wire_.Redact(ds.message()) << ")";
        continue;
      }
      // A document that completed while the walk ran is not pending any more.
      if (absl::EqualsIgnoreCase(doc_status, "COMPLETE")) continue;
      ProviderRecord r;
      r.proof_id = norm;
      r.digest_hex = norm;
      r.state = RecordState::kPending;
      r.created_at = created;
      result.records.push_back(std::move(r));
    }
    // The next page of this status while there is one; then the next status; then the end.
    // An empty page ends a status whatever totalPages says, so a lying count cannot loop.
    const bool more_here =
        !docs->empty() && c.page + 1 < config_.max_list_pages &&
        (total_pages >= 0 ? c.page + 1 < total_pages : static_cast<int>(docs->size()) >= c.limit);
    if (more_here) {
      Cursor next = c;
      ++next.page;
      result.next_cursor = FormatCursor(next);
    } else if (c.status + 1 < 2) {
      Cursor next = c;
      ++next.status;
      next.page = 0;
      result.next_cursor = FormatCursor(next);
    }
    result.outcome = ex.outcome;
    return result;
  }

  DownloadResult DownloadProof(const ProofRef& ref) override {
    DownloadResult result;
    const std::string digest = internal::NormalizeDigestHex(ref.digest_hex);
    if (digest.empty()) {
      result.outcome = LocalInvalid("INVALID_DIGEST", "digest is not 64 hex characters; not sent");
      return result;
    }
    // A download URL lives 1800 s: every download starts from a fresh verification.
    Exchange ex;
    auto v = Verify(digest, &ex);
    if (!v.ok()) {
      result.outcome = ex.outcome;
      return result;
    }
    if (!v->has_value() || (*v)->record.state != RecordState::kConfirmed) {
      result.outcome = ex.outcome;
      result.outcome.kind = OutcomeKind::kNotFound;
      result.outcome.code = v->has_value() ? "OTS_NOT_READY" : "NOT_FOUND";
      result.outcome.message = v->has_value() ? "not confirmed yet: no .ots"
                                              : "the account holds no document with this hash";
      return result;
    }
    return FetchOts((*v)->ots_url, digest, ex.outcome);
  }

  absl::StatusOr<std::string> ParseCallback(const std::string& body) const override {
    if (body.size() > kMaxCallbackBytes) {
      return absl::InvalidArgumentError("callback: body too large");
    }
    json j = json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) {
      return absl::InvalidArgumentError("callback: body is not a JSON object");
    }
    auto hash = j.find("hash");
    if (hash == j.end() || !hash->is_string()) {
      return absl::InvalidArgumentError("callback: hash missing");
    }
    std::string norm = internal::NormalizeDigestHex(hash->get<std::string>());
    if (norm.empty()) return absl::InvalidArgumentError("callback: hash is not 64 hex characters");
    // The other documented fields, when present, must have their documented types: a body that
    // gets them wrong is not SimpleProof's callback.
    auto type_ok = [&](const char* key, bool (json::*is)() const noexcept) {
      auto it = j.find(key);
      return it == j.end() || it->is_null() || ((*it).*is)();
    };
    if (!type_ok("id", &json::is_number_integer)) {
      return absl::InvalidArgumentError("callback: id is not an integer");
    }
    if (!type_ok("confirmed", &json::is_boolean)) {
      return absl::InvalidArgumentError("callback: confirmed is not a boolean");
    }
    if (!type_ok("blockheight", &json::is_number_integer)) {
      return absl::InvalidArgumentError("callback: blockheight is not an integer");
    }
    for (const char* key : {"name", "verified_at", "verification_link"}) {
      if (!type_ok(key, &json::is_string)) {
        return absl::InvalidArgumentError(absl::StrCat("callback: ", key, " is not a string"));
      }
    }
    std::string verified_at;
    if (!OptString(j, "verified_at", &verified_at).ok() ||
        (!verified_at.empty() && !internal::ParseIsoTime(verified_at).ok())) {
      return absl::InvalidArgumentError("callback: verified_at is not an ISO-8601 time");
    }
    return norm;
  }

  void Stop() override {
    if (deps_.limiter != nullptr) deps_.limiter->Stop();
  }

 private:
  struct Exchange {
    CallOutcome outcome;
    std::string body;  // 2xx body
  };

  static CallOutcome LocalInvalid(const char* code, std::string message) {
    CallOutcome o;
    o.kind = OutcomeKind::kPermanent;
    o.code = code;
    o.message = std::move(message);
    return o;
  }

  // POST /proof/verification for one digest: nullopt when the account does not hold it. Errors
  // leave their outcome in *ex (a malformed answer is logged and kRetry).
  absl::StatusOr<std::optional<Verification>> Verify(const std::string& digest, Exchange* ex) {
    nlohmann::ordered_json body;
    body["hash"] = digest;
    *ex = Send(kVerify, "POST", "/proof/verification", body.dump());
    if (ex->outcome.kind != OutcomeKind::kOk) {
      return absl::UnavailableError(ex->outcome.code);
    }
    auto v = ParseVerification(ex->body, digest);
    if (!v.ok()) {
      ex->outcome = wire_.Malformed(kVerify, ex->outcome, v.status().message());
      return absl::UnavailableError("malformed");
    }
    return v;
  }

  template <typename Settle>
  void SendChunk(const std::vector<std::string>& chunk, Settle& settle,
                 std::optional<CallOutcome>* stop) {
    nlohmann::ordered_json body;
    if (!config_.callback_url.empty()) body["callback_url"] = config_.callback_url;
    body["hashes"] = chunk;
    Exchange ex = Send(kCreate, "POST", "/api/proof/timestamp/hashes", body.dump());
    if (ex.outcome.kind != OutcomeKind::kOk) {
      if (ex.outcome.kind == OutcomeKind::kRateLimited || ex.outcome.code == "CANCELLED") {
        *stop = ex.outcome;
      }
      CreateResult r;
      r.outcome = ex.outcome;
      for (const std::string& d : chunk) settle(d, r);
      return;
    }
    auto files = ParseFiles(ex.body);
    if (!files.ok()) {
      CreateResult r;
      r.outcome = wire_.Malformed(kCreate, ex.outcome, files.status().message());
      for (const std::string& d : chunk) settle(d, r);
      return;
    }
    std::set<std::string> sent(chunk.begin(), chunk.end());
    for (const std::string& f : *files) {
      if (!sent.count(f)) {
        ANCHORD_LOG(Error) << config_.name << " create: answer lists a hash that was not sent ("
                           << f << "); ignored";
      }
    }
    for (const std::string& d : chunk) {
      CreateResult r;
      r.outcome = ex.outcome;
      if (files->count(d)) {
        // The answer carries no document id: the digest is the proof id (verification, listing
        // and callbacks all name documents by hash).
        ProviderRecord rec;
        rec.proof_id = d;
        rec.digest_hex = d;
        rec.state = RecordState::kPending;
        r.record = std::move(rec);
      } else {
        r.outcome.kind = OutcomeKind::kRetry;
        r.outcome.code = "MISSING_FROM_ANSWER";
        r.outcome.message = "the answer's files do not list this hash";
        ANCHORD_LOG(Warning) << config_.name << " create: " << d
                             << " missing from the answer's files; will retry";
      }
      settle(d, r);
    }
  }

  // Downloads and validates the .ots behind a verification's download URL. The URL is a
  // pre-signed storage URL on another host: the access token is not sent there.
  DownloadResult FetchOts(const std::string& url, const std::string& digest,
                          const CallOutcome& base) {
    DownloadResult result;
    if (url.empty()) {
      result.outcome = wire_.Malformed(kVerify, base, "confirmed without an ots_download_url");
      return result;
    }
    http::HttpRequest req;
    req.method = "GET";
    req.url = url;
    req.timeout = config_.request_timeout;
    req.headers.emplace_back("Accept", "application/octet-stream");
    CallOutcome o;
    std::optional<http::HttpResponse> resp = wire_.Do(kOts, req, &o);
    if (!resp) {
      result.outcome = o;
      return result;
    }
    if (resp->status != 200) {
      // An expired or revoked URL (the sandbox answers 403 like S3; a 404 means the same): a
      // fresh verification gives a new one.
      o.kind = OutcomeKind::kRetry;
      o.code = absl::StrCat("OTS_DOWNLOAD_HTTP_", resp->status);
      o.message = "the .ots download URL did not answer 200 (expired?); retry with a new one";
      ANCHORD_LOG(Warning) << config_.name << " ots: HTTP " << resp->status << "; will retry";
      result.outcome = o;
      return result;
    }
    if (resp->body.size() > config_.max_ots_bytes) {
      result.outcome = wire_.Malformed(kOts, o, "the .ots is larger than the bound");
      return result;
    }
    auto file = internal::ParseEvidence(resp->body, digest);
    if (!file.ok()) {
      result.outcome = wire_.Malformed(kOts, o, file.status().message());
      return result;
    }
    o.kind = OutcomeKind::kOk;
    result.outcome = o;
    result.ots = std::move(resp->body);
    return result;
  }

  Exchange Send(const char* endpoint, const char* method, const std::string& path,
                std::string body) {
    // One request in flight per adapter: a 429 closes the gate before the next request leaves.
    std::lock_guard<std::mutex> in_flight(send_mu_);
    Exchange ex;
    CallOutcome& o = ex.outcome;
    if (!wire_.Pace(deps_.limiter, "general")) {
      o = Wire::Cancelled();
      return ex;
    }
    http::HttpRequest req;
    req.method = method;
    req.url = config_.base_url + path;
    req.timeout = config_.request_timeout;
    req.headers.emplace_back("x-access-token", config_.api_key);
    req.headers.emplace_back("Accept", "application/json");
    if (std::string(method) == "POST") req.headers.emplace_back("Content-Type", "application/json");
    req.body = std::move(body);
    std::optional<http::HttpResponse> resp = wire_.Do(endpoint, req, &o);
    if (!resp) return ex;
    if (resp->status >= 200 && resp->status < 300) {
      o.kind = OutcomeKind::kOk;
      ex.body = std::move(resp->body);
      return ex;
    }
    std::string msg;
    json j = json::parse(resp->body, nullptr, false);
    if (!j.is_discarded() && j.is_object()) {
      for (const char* k : {"msg", "message", "error"}) {
        if (msg.empty() && j.contains(k) && j[k].is_string()) msg = j[k].get<std::string>();
      }
    }
    o.kind = Classify(resp->status, endpoint);
    o.code = absl::StrCat("HTTP_", resp->status);
    o.message = wire_.Redact(msg.empty() ? absl::StrCat("HTTP ", resp->status) : msg);
    if (o.kind == OutcomeKind::kRateLimited) {
      // The document names no Retry-After; the sandbox sends delta seconds, an HTTP-date is read
      // too, and without either the configured default applies.
      o.code = "RATE_LIMITED";
      o.retry_after = wire_.CloseGate(*resp, config_.default_retry_after, {deps_.limiter});
    } else if (o.kind == OutcomeKind::kRetry) {
      o.retry_after = wire_.RetryHint(*resp);
    }
    ANCHORD_LOG(Warning) << config_.name << " " << endpoint << ": HTTP " << o.http_status << " "
                         << o.code << " (" << OutcomeKindName(o.kind) << "): " << o.message
                         << " request_id=" << o.request_id << " account "
                         << SecretFingerprint(config_.api_key);
    return ex;
  }

  SimpleProofConfig config_;
  SimpleProofDeps deps_;
  Wire wire_;
  std::mutex send_mu_;
};

}  // namespace

std::unique_ptr<Provider> MakeSimpleProofProvider(const SimpleProofConfig& config,
                                                  const SimpleProofDeps& deps) {
  return std::make_unique<SimpleProofProvider>(config, deps);
}

}  // namespace anchord::providers
