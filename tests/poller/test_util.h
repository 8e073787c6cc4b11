// Shared helpers of the poller tests: a temp directory, digests, .ots bytes and a scripted,
// deterministic fake Provider.
#pragma once

#include <algorithm>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "libs/common/hex.h"
#include "libs/providers/provider.h"
#include "services/poller/poller_store.h"
#include "tests/testing/temp_dir.h"

namespace anchord::poller::testing {

using ::anchord::testing::TempDir;

// A distinct 32-byte digest for each n.
inline std::string Digest(int n) {
  std::string d(32, '\0');
  for (int i = 0; i < 32; ++i) d[i] = static_cast<char>((n * 31 + i * 7 + (n >> 8)) & 0xff);
  d[0] = static_cast<char>(n & 0xff);
  d[1] = static_cast<char>((n >> 8) & 0xff);
  return d;
}

inline std::string OtsMagic() {
  return std::string("\x00OpenTimestamps\x00\x00Proof\x00\xbf\x89\xe2\xe8\x84\xe8\x92\x94", 31);
}

inline void AppendTestVaruint(uint64_t v, std::string* out) {
  do {
    unsigned char b = v & 0x7f;
    v >>= 7;
    if (v) b |= 0x80;
    out->push_back(static_cast<char>(b));
  } while (v);
}

// A valid .ots for `digest` (it parses with libs/ots): about `tail_bytes` of append ops (each
// followed by sha256, chunks small enough for the 4096-byte message limit) ending in a Bitcoin
// attestation. Deterministic, so sizes can be compared.
inline std::string MakeOts(const std::string& digest, size_t tail_bytes = 40) {
  std::string out = OtsMagic();
  out.push_back('\x01');
  out.push_back('\x08');
  out += digest;
  size_t left = tail_bytes;
  for (size_t n = 0; left > 0; ++n) {
    const size_t k = std::min<size_t>(left, 2000);
    out.push_back('\xf0');
    AppendTestVaruint(k, &out);
    for (size_t i = 0; i < k; ++i) out.push_back(static_cast<char>((i * 131 + 7 + n) & 0xff));
    out.push_back('\x08');
    left -= k;
  }
  out.push_back('\x00');
  out += std::string("\x05\x88\x96\x0d\x73\xd7\x19\x01", 8);
  std::string payload;
  AppendTestVaruint(812345, &payload);
  AppendTestVaruint(payload.size(), &out);
  out += payload;
  return out;
}

inline TrackInput Pending(const std::string& digest, const std::string& proof_id,
                          const std::string& provider = "fake", const std::string& job = "",
                          const std::string& path = "") {
  TrackInput in;
  in.proof.digest = digest;
  in.proof.provider = provider;
  in.proof.proof_id = proof_id;
  in.proof.state = anchord::v1::DIGEST_STATE_PENDING;
  in.files.push_back(FileRow{job.empty() ? "default" : job, path.empty() ? proof_id + ".pdf" : path,
                             proof_id + ".pdf", 100, "application/pdf"});
  return in;
}

// Scripted provider: records keyed by proof id; the pending list is every record whose state is
// kPending (by id order), paged by an index cursor. Thread-safe.
class FakeProvider final : public providers::Provider {
 public:
  explicit FakeProvider(std::string name = "fake", bool list = true)
      : name_(std::move(name)), list_(list) {}

  void SetRecord(const std::string& id, const std::string& digest, providers::RecordState state,
                 int64_t height = 0) {
    std::lock_guard<std::mutex> lock(mu_);
    providers::ProviderRecord r;
    r.proof_id = id;
    r.digest_hex = HexEncode(digest);
    r.state = state;
    r.block_height = height;
    r.bitcoin_tx = state == providers::RecordState::kConfirmed ? "ab12" : "";
    r.certificate_url = "https://example.invalid/c/" + id;
    records_[id] = r;
  }
  // Makes Lookup of `id` return a record claiming `digest_hex` (a misbehaving provider).
  void SetRecordDigestHex(const std::string& id, const std::string& digest_hex) {
    std::lock_guard<std::mutex> lock(mu_);
    records_[id].digest_hex = digest_hex;
  }
  // Evidence the next lookups of `id` answer with (a calendar's upgraded .ots).
  void SetRecordEvidence(const std::string& id, const std::string& evidence) {
    std::lock_guard<std::mutex> lock(mu_);
    records_[id].evidence = evidence;
  }
  // What ParseCallback answers for a body (default: UNIMPLEMENTED, like most providers).
  void SetCallbackParser(std::function<absl::StatusOr<std::string>(const std::string&)> f) {
    std::lock_guard<std::mutex> lock(mu_);
    parse_callback_ = std::move(f);
  }
  // Proof ids in the order they were looked up, and the evidence each lookup carried.
  std::vector<std::string> lookup_order() {
    std::lock_guard<std::mutex> lock(mu_);
    return lookup_order_;
  }
  std::string last_ref_evidence(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    return last_ref_evidence_[id];
  }
  void SetOts(const std::string& id, const std::string& ots) {
    std::lock_guard<std::mutex> lock(mu_);
    ots_[id] = ots;
  }
  void FailList(bool fail) {
    std::lock_guard<std::mutex> lock(mu_);
    fail_list_ = fail;
  }
  int lookups(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    return lookups_[id];
  }
  int total_lookups() {
    std::lock_guard<std::mutex> lock(mu_);
    int n = 0;
    for (auto& [_, c] : lookups_) n += c;
    return n;
  }
  int list_calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return list_calls_;
  }
  int downloads() {
    std::lock_guard<std::mutex> lock(mu_);
    return downloads_;
  }

  // providers::Provider
  const std::string& name() const override { return name_; }
  absl::StatusOr<providers::PreparedCreate> PrepareCreate(
      const providers::CreateInput&) const override {
    return absl::UnimplementedError("fake");
  }
  providers::CreateResult Create(const providers::PreparedCreate&) override {
    providers::CreateResult r;
    r.outcome.kind = providers::OutcomeKind::kPermanent;
    return r;
  }
  providers::LookupResult Lookup(const providers::ProofRef& ref) override {
    const std::string& id = ref.proof_id;
    std::lock_guard<std::mutex> lock(mu_);
    ++lookups_[id];
    lookup_order_.push_back(id);
    last_ref_evidence_[id] = ref.evidence;
    providers::LookupResult r;
    auto it = records_.find(id);
    if (it == records_.end()) {
      r.outcome.kind = providers::OutcomeKind::kNotFound;
      return r;
    }
    r.outcome.request_id = "req-" + id;
    r.record = it->second;
    return r;
  }
  bool SupportsListPending() const override { return list_; }
  providers::ListPendingResult ListPending(const std::string& cursor, int limit) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++list_calls_;
    providers::ListPendingResult r;
    if (fail_list_) {
      r.outcome.kind = providers::OutcomeKind::kRetry;
      r.outcome.code = "HTTP_503";
      return r;
    }
    std::vector<providers::ProviderRecord> pending;
    for (auto& [_, rec] : records_) {
      if (rec.state == providers::RecordState::kPending) pending.push_back(rec);
    }
    size_t start = cursor.empty() ? 0 : std::stoul(cursor);
    for (size_t i = start; i < pending.size() && i < start + limit; ++i) {
      r.records.push_back(pending[i]);
    }
    if (start + limit < pending.size()) r.next_cursor = std::to_string(start + limit);
    return r;
  }
  providers::DownloadResult DownloadProof(const providers::ProofRef& ref) override {
    const std::string& id = ref.proof_id;
    std::lock_guard<std::mutex> lock(mu_);
    ++downloads_;
    providers::DownloadResult r;
    auto it = ots_.find(id);
    if (it == ots_.end()) {
      r.outcome.kind = providers::OutcomeKind::kNotFound;
      return r;
    }
    r.ots = it->second;
    return r;
  }
  absl::StatusOr<std::string> ParseCallback(const std::string& body) const override {
    std::function<absl::StatusOr<std::string>(const std::string&)> f;
    {
      std::lock_guard<std::mutex> lock(mu_);
      f = parse_callback_;
    }
    if (!f) return absl::UnimplementedError(name_ + " does not send callbacks");
    return f(body);
  }
  void Stop() override {}

 private:
  const std::string name_;
  const bool list_;
  mutable std::mutex mu_;
  std::function<absl::StatusOr<std::string>(const std::string&)> parse_callback_;
  std::vector<std::string> lookup_order_;
  std::map<std::string, std::string> last_ref_evidence_;
  std::map<std::string, providers::ProviderRecord> records_;
  std::map<std::string, std::string> ots_;
  std::map<std::string, int> lookups_;
  int list_calls_ = 0;
  int downloads_ = 0;
  bool fail_list_ = false;
};

}  // namespace anchord::poller::testing
