// Helpers shared by the submitter tests: temp dirs, a scripted fake Provider.
#pragma once

#include <stdlib.h>

#include <algorithm>
#include <deque>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "libs/providers/provider.h"
#include "services/submitter/submitter_store.h"

namespace anchord::submitter::testing {

inline std::string MakeTempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "submitter_test_XXXXXX").string();
  char* p = mkdtemp(tmpl.data());
  return p ? std::string(p) : std::string();
}

inline std::string Digest(char c) { return std::string(32, c); }

inline NewItem Item(char c, const std::string& path, const std::string& provider = "fake",
                    const std::string& job = "default") {
  NewItem it;
  it.digest = Digest(c);
  it.file.job = job;
  it.file.source_path = path;
  it.file.filename = std::filesystem::path(path).filename().string();
  it.file.size_bytes = 10;
  it.file.mime_type = "text/plain";
  it.providers = {provider};
  return it;
}

// A deterministic provider: Create answers from a script (kOk with a record when empty) and
// records every request it was sent.
class FakeProvider final : public providers::Provider {
 public:
  explicit FakeProvider(std::string name = "fake") : name_(std::move(name)) {}
  const std::string& name() const override { return name_; }

  absl::StatusOr<providers::PreparedCreate> PrepareCreate(
      const providers::CreateInput& in) const override {
    std::lock_guard<std::mutex> lock(mu_);
    ++prepares_;
    if (in.filename == "reject-me") {
      return absl::InvalidArgumentError("filename: refused by provider rules");
    }
    providers::PreparedCreate p;
    p.digest_hex = in.digest_hex;
    p.body = "{\"hash\":\"" + in.digest_hex + "\",\"filename\":\"" + in.filename + "\"}";
    p.idempotency_key = "key-" + in.digest_hex.substr(0, 16);
    return p;
  }

  providers::CreateResult Create(const providers::PreparedCreate& req) override {
    std::function<void(const providers::PreparedCreate&)> hook;
    providers::CreateResult r;
    {
      std::lock_guard<std::mutex> lock(mu_);
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
      r.record->proof_id = "proof-" + req.digest_hex.substr(0, 8);
    }
    return r;
  }
  // Batch providers (SimpleProof: 25 per request). Every CreateBatch call is recorded with its
  // size; with SetBatchResultDelta the answer has that many results more (or fewer) than asked,
  // as a buggy adapter might.
  int max_batch() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return max_batch_;
  }
  std::vector<providers::CreateResult> CreateBatch(
      const std::vector<providers::PreparedCreate>& requests) override {
    int delta;
    {
      std::lock_guard<std::mutex> lock(mu_);
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
  void SetMaxBatch(int n) {
    std::lock_guard<std::mutex> lock(mu_);
    max_batch_ = n;
  }
  void SetBatchResultDelta(int delta) {
    std::lock_guard<std::mutex> lock(mu_);
    batch_result_delta_ = delta;
  }
  std::vector<size_t> batch_sizes() {
    std::lock_guard<std::mutex> lock(mu_);
    return batch_sizes_;
  }

  providers::LookupResult Lookup(const providers::ProofRef&) override { return {}; }
  bool SupportsListPending() const override { return false; }
  providers::ListPendingResult ListPending(const std::string&, int) override { return {}; }
  providers::DownloadResult DownloadProof(const providers::ProofRef&) override { return {}; }
  void Stop() override {}

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

  void Script(providers::CreateResult r) {
    std::lock_guard<std::mutex> lock(mu_);
    script_.push_back(std::move(r));
  }
  void OnCreate(std::function<void(const providers::PreparedCreate&)> f) {
    std::lock_guard<std::mutex> lock(mu_);
    on_create_ = std::move(f);
  }
  std::vector<providers::PreparedCreate> sent() {
    std::lock_guard<std::mutex> lock(mu_);
    return sent_;
  }
  int prepares() {
    std::lock_guard<std::mutex> lock(mu_);
    return prepares_;
  }

 private:
  std::string name_;
  mutable std::mutex mu_;
  mutable int prepares_ = 0;
  int max_batch_ = 1;
  int batch_result_delta_ = 0;
  std::vector<size_t> batch_sizes_;
  std::deque<providers::CreateResult> script_;
  std::vector<providers::PreparedCreate> sent_;
  std::function<void(const providers::PreparedCreate&)> on_create_;
};

}  // namespace anchord::submitter::testing
