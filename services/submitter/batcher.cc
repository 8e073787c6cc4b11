#include "services/submitter/batcher.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"
#include "libs/common/thread_name.h"
#include "libs/digest/digest.h"
#include "libs/merkle/merkle.h"
#include "libs/merkle/sealed_batch.h"

namespace anchord::submitter {

Batcher::Batcher(SubmitterStore* store, std::vector<std::string> providers,
                 SubmitterMetrics* metrics, Clock* clock, BatcherOptions options,
                 std::function<void()> on_sealed)
    : store_(store),
      providers_(std::move(providers)),
      metrics_(metrics),
      clock_(clock),
      options_(options),
      on_sealed_(std::move(on_sealed)) {
  if (options_.max_leaves < 1) options_.max_leaves = 1;
  store_->SetLeavesPerBatch(options_.max_leaves);
}

Batcher::~Batcher() { Stop(); }

void Batcher::Start() {
  thread_ = StartNamedThread("batcher", [this] { Loop(); });
}

void Batcher::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

absl::StatusOr<int> Batcher::SealDue(const std::string& only) {
  int sealed = 0;
  for (const std::string& provider : providers_) {
    if (!only.empty() && provider != only) continue;
    // Bounded: a backlog of many full batches is sealed over a few passes, not in one.
    for (int i = 0; i < 64; ++i) {
      bool committed = false;
      absl::StatusOr<bool> one = SealOne(provider, clock_->Now(), &committed);
      if (!one.ok()) return one.status();
      if (committed) ++sealed;  // a lost race is not a batch
      if (!*one) break;
    }
  }
  return sealed;
}

absl::StatusOr<bool> Batcher::SealOne(const std::string& provider, absl::Time now,
                                      bool* committed) {
  // Decide from a count first: the loop runs every `poll`, and reading up to max_leaves rows each
  // time only to find the batch not due would be most of its work.
  absl::StatusOr<SubmitterStore::Waiting> waiting = store_->UnbatchedWaiting(provider);
  if (!waiting.ok()) return waiting.status();
  if (waiting->count == 0) return false;
  if (waiting->count < options_.max_leaves && waiting->oldest > now - options_.window) return false;
  absl::StatusOr<std::vector<WaitingLeaf>> leaves =
      store_->UnbatchedLeaves(provider, options_.max_leaves);
  if (!leaves.ok()) return leaves.status();
  if (leaves->empty()) return false;
  const bool full = static_cast<int>(leaves->size()) >= options_.max_leaves;

  NewBatch batch;
  batch.provider = provider;
  batch.leaf_ids.reserve(leaves->size());
  batch.leaf_digests.reserve(leaves->size());
  batch.nonces.reserve(leaves->size());
  // One CSPRNG call for the whole batch; Build rejects an empty (failed) draw.
  const std::string nonces = merkle::RandomNonces(leaves->size());
  for (size_t i = 0; i < leaves->size(); ++i) {
    batch.leaf_ids.push_back((*leaves)[i].id);
    batch.leaf_digests.push_back((*leaves)[i].digest);
    batch.nonces.push_back(nonces.size() == leaves->size() * merkle::kNonceSize
                               ? nonces.substr(i * merkle::kNonceSize, merkle::kNonceSize)
                               : std::string());
  }
  absl::StatusOr<std::shared_ptr<const merkle::SealedBatch>> sealed =
      merkle::SealedBatch::Build(batch.leaf_digests, batch.nonces);
  if (!sealed.ok()) return sealed.status();
  batch.root = (*sealed)->tree().root().raw();
  batch.sealed = *std::move(sealed);
  // What the provider is told about the root: a name that says what it is, and the size of the
  // leaf list it commits to. The job is the first leaf's, for logs only (roots have no file refs).
  const std::string short_root = HexEncode(batch.root).substr(0, 16);
  batch.root_file.job = leaves->front().job;
  batch.root_file.filename = absl::StrCat("anchord-merkle-root-", short_root, ".bin");
  batch.root_file.source_path = absl::StrCat("merkle-batch/", short_root);
  batch.root_file.size_bytes = static_cast<int64_t>(batch.leaf_digests.size()) * 32;
  batch.root_file.mime_type = "application/octet-stream";
  absl::StatusOr<int64_t> id = store_->CreateMerkleBatch(batch, now);
  if (absl::IsAborted(id.status())) {
    ANCHORD_LOG(Info) << "merkle batch for " << provider << " lost a race: " << id.status();
    return true;  // look again: the leaves that remain form the next batch
  }
  if (!id.ok()) return id.status();
  ANCHORD_LOG(Info) << "merkle batch " << *id << " for " << provider << ": "
                    << batch.leaf_digests.size() << " leaves, root " << HexEncode(batch.root)
                    << (full ? " (full)" : " (window)");
  if (metrics_ != nullptr) {
    metrics_->merkle_batches.Add({{"provider", provider}}).Increment();
    metrics_->merkle_leaves.Add({{"provider", provider}})
        .Increment(static_cast<double>(batch.leaf_digests.size()));
  }
  *committed = true;
  if (on_sealed_) on_sealed_();
  return true;
}

void Batcher::NoteLeaves(int64_t n) {
  absl::MutexLock lock(&mu_);
  noted_ += n;
  if (noted_ >= options_.max_leaves) full_ = true;
}

void Batcher::Loop() {
  for (;;) {
    {
      // Leaves noted from here on may not be in this pass's count: they count toward the next.
      absl::MutexLock lock(&mu_);
      noted_ = 0;
      full_ = false;
    }
    absl::StatusOr<int> sealed = SealDue();
    if (!sealed.ok()) {
      ANCHORD_LOG(Error) << "merkle batcher: " << sealed.status();
    }
    absl::MutexLock lock(&mu_);
    auto stop_or_full = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || full_; };
    mu_.AwaitWithTimeout(absl::Condition(&stop_or_full), options_.poll);
    if (stop_) return;
  }
}

}  // namespace anchord::submitter
