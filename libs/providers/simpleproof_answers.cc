#include "libs/providers/simpleproof_answers.h"

#include <utility>

#include <nlohmann/json.hpp>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "libs/providers/adapter_common.h"

namespace anchord::providers::simpleproof {
namespace {

using json = nlohmann::json;

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
absl::StatusOr<Verification> ParseVerificationDoc(const json& d, const Digest& digest) {
  Verification v;
  ProviderRecord& r = v.record;
  r.proof_id = digest.hex();
  r.digest = digest;
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

}  // namespace

absl::StatusOr<std::optional<Verification>> ParseVerification(const std::string& body,
                                                              const Digest& digest) {
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
    if (internal::NormalizeDigestHex(hash) != digest.hex()) continue;
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

absl::StatusOr<DocumentPage> ParseDocumentPage(const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded()) return absl::InvalidArgumentError("body is not JSON");
  if (auto st = CheckOk(j); !st.ok()) return st;
  auto data = j.find("data");
  if (data == j.end() || !data->is_object()) return absl::InvalidArgumentError("data: missing");
  DocumentPage page;
  auto docs = data->find("documents");
  absl::Status st;
  if (docs == data->end() || !docs->is_array()) {
    st = absl::InvalidArgumentError("data.documents: missing");
  }
  auto tp = data->find("totalPages");
  if (tp != data->end() && !tp->is_null()) {
    if (!tp->is_number_integer() || tp->get<int64_t>() < 0) {
      st = absl::InvalidArgumentError("data.totalPages: not a count");
    } else {
      page.total_pages = tp->get<int64_t>();
    }
  }
  if (!st.ok()) return st;
  page.documents = docs->size();
  for (const json& d : *docs) {
    std::string hash;
    std::string doc_status;
    absl::Time created = absl::InfinitePast();
    absl::Status ds = d.is_object() ? OptString(d, "document_hash", &hash)
                                    : absl::InvalidArgumentError("not an object");
    if (ds.ok()) ds = OptString(d, "document_status", &doc_status);
    if (ds.ok()) ds = OptTime(d, "creation_date", &created);
    absl::StatusOr<Digest> digest = Digest::FromHex(hash, "document_hash");
    if (ds.ok() && !digest.ok()) ds = digest.status();
    if (!ds.ok()) {
      page.invalid.emplace_back(ds.message());
      continue;
    }
    // A document that completed while the walk ran is not pending any more.
    if (absl::EqualsIgnoreCase(doc_status, "COMPLETE")) continue;
    ProviderRecord r;
    r.proof_id = digest->hex();
    r.digest = *digest;
    r.state = RecordState::kPending;
    r.created_at = created;
    page.pending.push_back(std::move(r));
  }
  return page;
}

absl::StatusOr<Digest> ParseCallback(const std::string& body) {
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
  absl::StatusOr<Digest> digest = Digest::FromHex(hash->get<std::string>(), "callback: hash");
  if (!digest.ok()) return absl::InvalidArgumentError("callback: hash is not 64 hex characters");
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
  return *digest;
}

}  // namespace anchord::providers::simpleproof
