#include "services/anchorctl/format.h"

#include <algorithm>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "libs/common/hex.h"

namespace anchord::anchorctl {

using anchord::v1::DigestState;

std::string StateName(int state) {
  if (state <= 0 || !anchord::v1::DigestState_IsValid(state)) return "UNKNOWN";
  std::string name = anchord::v1::DigestState_Name(static_cast<DigestState>(state));
  absl::string_view v(name);
  absl::ConsumePrefix(&v, "DIGEST_STATE_");
  return std::string(v);
}

absl::StatusOr<int> ParseWaitTarget(absl::string_view wait) {
  std::string w = absl::AsciiStrToLower(wait);
  if (w == "none") return 0;
  if (w == "queued") return static_cast<int>(anchord::v1::DIGEST_STATE_QUEUED);
  if (w == "submitted") return static_cast<int>(anchord::v1::DIGEST_STATE_PENDING);
  if (w == "confirmed") return static_cast<int>(anchord::v1::DIGEST_STATE_CONFIRMED);
  return absl::InvalidArgumentError(
      absl::StrCat("--wait: \"", wait, "\" is not one of none, queued, submitted, confirmed"));
}

absl::StatusOr<Digest> ParseDigestArg(absl::string_view hex, absl::string_view arg) {
  if (!IsSha256Hex(hex)) {
    return absl::InvalidArgumentError(absl::StrCat(
        arg, ": expected a SHA-256 digest as 64 hex characters, got ", hex.size(), " characters"));
  }
  return Digest::FromHex(hex, arg);
}

absl::StatusOr<std::string> RelativeToRoot(absl::string_view dir, absl::string_view root) {
  namespace fs = std::filesystem;
  fs::path d = fs::path(std::string(dir)).lexically_normal();
  fs::path r = fs::path(std::string(root)).lexically_normal();
  if (!d.is_absolute() || !r.is_absolute()) {
    return absl::InvalidArgumentError("DIR: directory and hasher root must be absolute paths");
  }
  // Drop a trailing separator so "/a/b/" and "/a/b" compare equal.
  if (!r.has_filename() && r != r.root_path()) r = r.parent_path();
  if (!d.has_filename() && d != d.root_path()) d = d.parent_path();
  fs::path rel = d.lexically_relative(r);
  if (rel.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("DIR: ", d.string(), " is not under the hasher's root ", r.string()));
  }
  if (rel == ".") return std::string(".");
  auto first = rel.begin();
  if (first != rel.end() && *first == "..") {
    return absl::InvalidArgumentError(
        absl::StrCat("DIR: ", d.string(), " is not under the hasher's root ", r.string()));
  }
  return rel.string();
}

std::map<int, int64_t> MergeStateCounts(const std::vector<std::map<int, int64_t>>& per_service) {
  constexpr int kMax = anchord::v1::DIGEST_STATE_FAILED;
  std::vector<int64_t> at_least(kMax + 2, 0);
  for (int s = kMax; s >= 1; --s) {
    int64_t best = 0;
    for (const auto& counts : per_service) {
      int64_t n = 0;
      for (const auto& [state, count] : counts) {
        if (state >= s && state <= kMax && count > 0) n += count;
      }
      best = std::max(best, n);
    }
    at_least[s] = std::max(best, at_least[s + 1]);
  }
  std::map<int, int64_t> out;
  for (int s = 1; s <= kMax; ++s) {
    int64_t n = at_least[s] - at_least[s + 1];
    if (n > 0) out[s] = n;
  }
  return out;
}

std::map<int, int64_t> CountsFromSummary(const google::protobuf::Map<std::string, int64_t>& m) {
  std::map<int, int64_t> out;
  for (const auto& [key, value] : m) {
    DigestState state;
    if (anchord::v1::DigestState_Parse(key, &state) &&
        state != anchord::v1::DIGEST_STATE_UNSPECIFIED) {
      out[static_cast<int>(state)] += value;
    }
  }
  return out;
}

std::string CsvField(absl::string_view s) {
  bool quote = s.find_first_of(",\"\r\n") != absl::string_view::npos ||
               (!s.empty() && (s.front() == ' ' || s.back() == ' '));
  if (!quote) return std::string(s);
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

namespace {
const char* const kColumns[] = {"path",
                                "digest",
                                "size_bytes",
                                "provider",
                                "proof_id",
                                "status",
                                "certificate_url",
                                "verify_url",
                                "bitcoin_block_height",
                                "duplicate_of",
                                "reason",
                                "error",
                                "merkle_root",
                                "stalled",
                                "verification"};

std::vector<std::string> RowFields(const ReportRow& r) {
  return {r.path,
          r.digest_hex,
          absl::StrCat(r.size_bytes),
          r.provider,
          r.proof_id,
          r.status,
          r.certificate_url,
          r.verify_url,
          r.bitcoin_block_height > 0 ? absl::StrCat(r.bitcoin_block_height) : "",
          r.duplicate_of,
          r.reason,
          r.error,
          r.merkle_root,
          r.stalled ? "true" : "",
          r.verification};
}
}  // namespace

std::string ReportWriter::Start() {
  if (started_) return "";
  started_ = true;
  if (format_ == Format::kJson) return "";  // "[" comes with the first row, or "[]" at the end
  std::string out;
  bool first = true;
  for (const char* c : kColumns) {
    if (!first) out += ',';
    out += c;
    first = false;
  }
  out += '\n';
  return out;
}

std::string ReportWriter::Rows(const std::vector<ReportRow>& rows) {
  std::string out = Start();
  for (const auto& r : rows) {
    if (format_ == Format::kCsv) {
      auto fields = RowFields(r);
      for (size_t i = 0; i < fields.size(); ++i) {
        if (i > 0) out += ',';
        out += CsvField(fields[i]);
      }
      out += '\n';
      continue;
    }
    nlohmann::json j;
    j["path"] = r.path;
    j["digest"] = r.digest_hex;
    j["size_bytes"] = r.size_bytes;
    j["provider"] = r.provider;
    j["proof_id"] = r.proof_id;
    j["status"] = r.status;
    j["certificate_url"] = r.certificate_url;
    j["verify_url"] = r.verify_url;
    j["bitcoin_block_height"] = r.bitcoin_block_height;
    j["duplicate_of"] = r.duplicate_of;
    j["reason"] = r.reason;
    j["error"] = r.error;
    j["merkle_root"] = r.merkle_root;
    j["stalled"] = r.stalled;
    j["verification"] = r.verification;
    // As an element of an array dumped with an indent of 2: each line of the object two spaces
    // further in (a JSON string holds no raw newline, so the lines are the object's own).
    out += any_row_ ? ",\n" : "[\n";
    any_row_ = true;
    const std::string obj = j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
    size_t at = 0;
    while (at < obj.size()) {
      size_t nl = obj.find('\n', at);
      if (nl == std::string::npos) nl = obj.size();
      out.append("  ").append(obj, at, nl - at);
      if (nl < obj.size()) out += '\n';
      at = nl + 1;
    }
  }
  return out;
}

std::string ReportWriter::End() {
  std::string out = Start();
  if (format_ == Format::kJson) out += any_row_ ? "\n]\n" : "[]\n";
  return out;
}

std::string ReportToCsv(const std::vector<ReportRow>& rows) {
  ReportWriter w(ReportWriter::Format::kCsv);
  std::string out = w.Rows(rows);  // before End(): the operands of + have no set order
  return out + w.End();
}

std::string ReportToJson(const std::vector<ReportRow>& rows) {
  ReportWriter w(ReportWriter::Format::kJson);
  std::string out = w.Rows(rows);  // before End(): the operands of + have no set order
  return out + w.End();
}

namespace {
std::string FormatEta(double seconds) {
  if (!(seconds >= 0) || seconds > 99 * 3600) return "--:--";
  int64_t s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return absl::StrFormat("%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60);
  return absl::StrFormat("%d:%02d", s / 60, s % 60);
}
}  // namespace

std::string ProgressLine(const ProgressCounts& c, absl::Duration elapsed) {
  const double secs = absl::ToDoubleSeconds(elapsed);
  std::string head;
  double rate = 0;
  double remaining = -1;
  if (!c.waiting) {
    int64_t total = std::max(c.files_total, c.files_seen);
    head = absl::StrFormat("hashing %d/%d%s", c.files_seen, total, c.walk_complete ? "" : "+");
    rate = secs > 0 ? static_cast<double>(c.files_seen) / secs : 0;
    if (c.walk_complete && rate > 0) remaining = static_cast<double>(total - c.files_seen) / rate;
  } else {
    head = absl::StrFormat("waiting %d/%d", c.wait_done, c.distinct);
    rate = secs > 0 ? static_cast<double>(c.wait_done) / secs : 0;
    if (rate > 0) remaining = static_cast<double>(c.distinct - c.wait_done) / rate;
  }
  std::string line =
      absl::StrFormat("%s | hashed %d queued %d pending %d confirmed %d failed %d dup %d", head,
                      c.hashed, c.queued, c.pending, c.confirmed, c.failed, c.duplicates);
  if (c.problems > 0) absl::StrAppend(&line, " problems ", c.problems);
  absl::StrAppend(&line, absl::StrFormat(" | %.1f %s/s ETA %s", rate,
                                         c.waiting ? "digests" : "files", FormatEta(remaining)));
  if (!c.paused.empty()) absl::StrAppend(&line, " | PAUSED: ", c.paused);
  return line;
}

}  // namespace anchord::anchorctl
