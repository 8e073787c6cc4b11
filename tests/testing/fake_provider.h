// The scripted, deterministic Provider of the submitter and poller tests. Thread-safe.
//
//  - Create side (the submitter): PrepareCreate builds a body and key from the input ("reject-me"
//    as filename is refused); Create answers from a script (kOk with a record when it is empty)
//    and records every request it was sent; CreateBatch sends each request through Create, with
//    an optional wrong result count (SetBatchResultDelta), as a buggy adapter might.
//  - Poll side (the poller): records keyed by proof id; Lookup answers them (kNotFound when
//    absent); the pending list is every kPending record by id order, paged by an index cursor;
//    DownloadProof serves SetOts bytes; ParseCallback runs SetCallbackParser.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "libs/common/hex.h"
#include "libs/providers/provider.h"

namespace anchord::testing {

class FakeProvider final : public providers::Provider {
 public:
  // `list`: whether the provider offers ListPending.
  explicit FakeProvider(std::string name = "fake", bool list = true)
      : name_(std::move(name)), list_(list) {}

  // ---- Create side ----

  static providers::CreateResult Ok(providers::OutcomeKind kind = providers::OutcomeKind::kOk,
                                    const std::string& request_id = "req-ok") {
    providers::CreateResult r;
    r.outcome.kind = kind;
    r.outcome.http_status = 201;
    r.outcome.request_id = request_id;
    r.record = providers::ProviderRecord{};
    r.record->certificate_url = "https://example.invalid/cert";
    return r;
  }
  static providers::CreateResult Fail(providers::OutcomeKind kind, const std::string& code,
                                      const std::string& request_id, int http_status,
                                      absl::Duration retry_after = absl::ZeroDuration()) {
    providers::CreateResult r;
    r.outcome.kind = kind;
    r.outcome.code = code;
    r.outcome.message = "scripted " + code;
    r.outcome.request_id = request_id;
    r.outcome.http_status = http_status;
    r.outcome.retry_after = retry_after;
    return r;
  }

  // The next Create answers `r` (in the order scripted).
  void Script(providers::CreateResult r) {
    absl::MutexLock lock(&mu_);
    script_.push_back(std::move(r));
  }
  // Runs `f` with every request Create is sent (outside the fake's lock).
  void OnCreate(std::function<void(const providers::PreparedCreate&)> f) {
    absl::MutexLock lock(&mu_);
    on_create_ = std::move(f);
  }
  std::vector<providers::PreparedCreate> sent() {
    absl::MutexLock lock(&mu_);
    return sent_;
  }
  int prepares() {
    absl::MutexLock lock(&mu_);
    return prepares_;
  }
  void SetMaxBatch(int n) {
    absl::MutexLock lock(&mu_);
    max_batch_ = n;
  }
  // The next CreateBatch answers `delta` results more (or fewer) than it was asked for.
  void SetBatchResultDelta(int delta) {
    absl::MutexLock lock(&mu_);
    batch_result_delta_ = delta;
  }
  // The size of every CreateBatch call, in order.
  std::vector<size_t> batch_sizes() {
    absl::MutexLock lock(&mu_);
    return batch_sizes_;
  }

  // ---- Poll side ----

  // `digest` is the raw 32 bytes a poller row holds; any other size is a test's mistake.
  void SetRecord(const std::string& id, const std::string& digest, providers::RecordState state,
                 int64_t height = 0) {
    absl::StatusOr<Digest> parsed = Digest::FromBytes(digest);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    absl::MutexLock lock(&mu_);
    providers::ProviderRecord r;
    r.proof_id = id;
    r.digest = *parsed;
    r.state = state;
    r.block_height = height;
    r.bitcoin_tx = state == providers::RecordState::kConfirmed ? "ab12" : "";
    r.certificate_url = "https://example.invalid/c/" + id;
    records_[id] = r;
  }
  void SetRecord(const std::string& id, const Digest& digest, providers::RecordState state,
                 int64_t height = 0) {
    SetRecord(id, digest.raw(), state, height);
  }
  // Makes Lookup of `id` return a record claiming `digest` (a misbehaving provider).
  void SetRecordDigest(const std::string& id, const Digest& digest) {
    absl::MutexLock lock(&mu_);
    records_[id].digest = digest;
  }
  // Evidence the next lookups of `id` answer with (a calendar's upgraded .ots).
  void SetRecordEvidence(const std::string& id, const std::string& evidence) {
    absl::MutexLock lock(&mu_);
    records_[id].evidence = evidence;
  }
  // What ParseCallback answers for a body (default: UNIMPLEMENTED, like most providers).
  void SetCallbackParser(std::function<absl::StatusOr<Digest>(const std::string&)> f) {
    absl::MutexLock lock(&mu_);
    parse_callback_ = std::move(f);
  }
  // Proof ids in the order they were looked up, and the evidence each lookup carried.
  std::vector<std::string> lookup_order() {
    absl::MutexLock lock(&mu_);
    return lookup_order_;
  }
  std::string last_ref_evidence(const std::string& id) {
    absl::MutexLock lock(&mu_);
    return last_ref_evidence_[id];
  }
  void SetOts(const std::string& id, const std::string& ots) {
    absl::MutexLock lock(&mu_);
    ots_[id] = ots;
  }
  // While set, ListPending answers kRetry HTTP_503.
  void FailList(bool fail) {
    absl::MutexLock lock(&mu_);
    fail_list_ = fail;
  }
  int lookups(const std::string& id) {
    absl::MutexLock lock(&mu_);
    return lookups_[id];
  }
  int total_lookups() {
    absl::MutexLock lock(&mu_);
    int n = 0;
    for (auto& [_, c] : lookups_) n += c;
    return n;
  }
  int list_calls() {
    absl::MutexLock lock(&mu_);
    return list_calls_;
  }
  int downloads() {
    absl::MutexLock lock(&mu_);
    return downloads_;
  }

  // ---- providers::Provider ----

  const std::string& name() const override { return name_; }

  absl::StatusOr<providers::PreparedCreate> PrepareCreate(
      const providers::CreateInput& in) const override {
    absl::MutexLock lock(&mu_);
    ++prepares_;
    if (in.filename == "reject-me") {
      return absl::InvalidArgumentError("filename: refused by provider rules");
    }
    providers::PreparedCreate p;
    const std::string hex = in.digest.hex();
    p.digest = in.digest;
    p.body = "{\"hash\":\"" + hex + "\",\"filename\":\"" + in.filename + "\"}";
    p.idempotency_key = "key-" + hex.substr(0, 16);
    return p;
  }

  providers::CreateResult Create(const providers::PreparedCreate& req) override {
    std::function<void(const providers::PreparedCreate&)> hook;
    providers::CreateResult r;
    {
      absl::MutexLock lock(&mu_);
      sent_.push_back(req);
      hook = on_create_;
      if (!script_.empty()) {
        r = script_.front();
        script_.pop_front();
      } else {
        r = Ok();
      }
    }
    if (hook) hook(req);
    if (r.outcome.ok() && r.record.has_value() && r.record->proof_id.empty()) {
      r.record->proof_id = "proof-" + req.digest.hex().substr(0, 8);
    }
    return r;
  }

  int max_batch() const override {
    absl::MutexLock lock(&mu_);
    return max_batch_;
  }

  std::vector<providers::CreateResult> CreateBatch(
      const std::vector<providers::PreparedCreate>& requests) override {
    int delta;
    {
      absl::MutexLock lock(&mu_);
      batch_sizes_.push_back(requests.size());
      delta = batch_result_delta_;
      batch_result_delta_ = 0;  // one bad answer only
    }
    std::vector<providers::CreateResult> out;
    for (const auto& r : requests) out.push_back(Create(r));
    if (delta < 0) out.resize(out.size() - std::min<size_t>(out.size(), -delta));
    for (int i = 0; i < delta; ++i) out.push_back(Ok());
    return out;
  }

  providers::LookupResult Lookup(const providers::ProofRef& ref) override {
    const std::string& id = ref.proof_id;
    absl::MutexLock lock(&mu_);
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
    absl::MutexLock lock(&mu_);
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
    absl::MutexLock lock(&mu_);
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

  absl::StatusOr<Digest> ParseCallback(const std::string& body) const override {
    std::function<absl::StatusOr<Digest>(const std::string&)> f;
    {
      absl::MutexLock lock(&mu_);
      f = parse_callback_;
    }
    if (!f) return absl::UnimplementedError(name_ + " does not send callbacks");
    return f(body);
  }

  void Stop() override {}

 private:
  const std::string name_;
  const bool list_;
  mutable absl::Mutex mu_;
  // Create side.
  mutable int prepares_ ABSL_GUARDED_BY(mu_) = 0;
  int max_batch_ ABSL_GUARDED_BY(mu_) = 1;
  int batch_result_delta_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<size_t> batch_sizes_ ABSL_GUARDED_BY(mu_);
  std::deque<providers::CreateResult> script_ ABSL_GUARDED_BY(mu_);
  std::vector<providers::PreparedCreate> sent_ ABSL_GUARDED_BY(mu_);
  std::function<void(const providers::PreparedCreate&)> on_create_ ABSL_GUARDED_BY(mu_);
  // Poll side.
  std::function<absl::StatusOr<Digest>(const std::string&)> parse_callback_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> lookup_order_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> last_ref_evidence_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, providers::ProviderRecord> records_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> ots_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> lookups_ ABSL_GUARDED_BY(mu_);
  int list_calls_ ABSL_GUARDED_BY(mu_) = 0;
  int downloads_ ABSL_GUARDED_BY(mu_) = 0;
  bool fail_list_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace anchord::testing
