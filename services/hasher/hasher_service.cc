// The hasher service's lifecycle, ListFiles and StatusService. The HashTree and HashFiles
// pipelines are in hash_tree.cc and hash_files.cc.
#include "services/hasher/hasher_service.h"

#include <utility>
#include <vector>

#include "libs/common/validate.h"
#include "libs/digest/mime.h"
#include "libs/rpc/reactor_lifetime.h"
#include "libs/rpc/status.h"
#include "libs/rpc/unary.h"
#include "services/hasher/call_common.h"

namespace anchord::hasher {
namespace {

namespace v1 = anchord::v1;
using Shared = HasherServiceImpl::Shared;

constexpr int kListPageRows = 256;

// ---------------------------------------------------------------------------------------------
// ListFiles: pages of rows fetched on the query pool, written one at a time. Exactly one of
// {a page fetch, a write} is outstanding at any time.

v1::ListFilesResponse ToListResponse(const FileRow& row) {
  v1::ListFilesResponse r;
  r.set_path(row.path);
  if (row.digest.has_value()) r.set_digest(row.digest->raw());
  r.set_size_bytes(row.size_bytes);
  if (row.state == FileState::kQueued) {
    r.set_state(v1::DIGEST_STATE_QUEUED);
  } else if (row.state == FileState::kHashed) {
    r.set_state(v1::DIGEST_STATE_HASHED);
  }
  r.set_duplicate_of(row.duplicate_of);
  if (row.state == FileState::kError) {
    r.mutable_status()->set_code(row.error_code);
    r.mutable_status()->set_reason(row.error_reason);
    r.mutable_status()->set_message(row.error_message);
  }
  return r;
}

class ListReactor final
    : public rpc::ReactorLifetime<grpc::ServerWriteReactor<v1::ListFilesResponse>> {
 public:
  ListReactor(Shared* s, std::string job) : shared_(s), job_(std::move(job)) {
    absl::MutexLock lock(&mu_);
    FetchLocked();
  }

  // grpc::ServerWriteReactor
  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (SendDeferredFinishLocked()) return;
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "ListFiles cancelled"));
      return;
    }
    NextLocked();
  }
  void OnDone() override { Unref(); }

 private:
  // Fetches the page after last_path_ on the query pool; the task holds a reference (taken after
  // Post: the task cannot release it before mu_ is released).
  void FetchLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    bool posted = shared_->query_pool->Post([this, after = last_path_] {
      auto page = shared_->store->ListPage(job_, after, kListPageRows);
      {
        absl::MutexLock lock(&mu_);
        if (!page.ok()) {
          FinishLocked(rpc::ToGrpcStatus(rpc::StoreUnavailable("hasher", page.status())));
        } else {
          last_page_ = static_cast<int>(page->size()) < kListPageRows;
          rows_ = std::move(*page);
          pos_ = 0;
          NextLocked();
        }
      }
      Unref();
    });
    if (posted) {
      RefLocked();
    } else {
      FinishLocked(rpc::ToGrpcStatus(rpc::Overloaded("hasher")));
    }
  }
  void NextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    if (pos_ < rows_.size()) {
      last_path_ = rows_[pos_].path;
      current_ = ToListResponse(rows_[pos_++]);
      writing_ = true;
      StartWrite(&current_);
    } else if (last_page_) {
      FinishLocked(grpc::Status::OK);
    } else {
      FetchLocked();
    }
  }

  Shared* const shared_;
  const std::string job_;
  std::string last_path_ ABSL_GUARDED_BY(mu_);
  std::vector<FileRow> rows_ ABSL_GUARDED_BY(mu_);
  size_t pos_ ABSL_GUARDED_BY(mu_) = 0;
  bool last_page_ ABSL_GUARDED_BY(mu_) = false;
  v1::ListFilesResponse current_ ABSL_GUARDED_BY(mu_);  // the write in flight
};

}  // namespace

// -----------------------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<HasherServiceImpl>> HasherServiceImpl::Create(
    HasherOptions options, HasherStore* store, HasherMetrics* metrics) {
  auto walker = digest::TreeWalker::Create(options.root);
  if (!walker.ok()) return walker.status();
  if (options.max_inflight < 1) {
    return absl::InvalidArgumentError("max_inflight: must be at least 1");
  }
  auto shared = std::make_unique<Shared>(std::move(options), std::move(*walker), store, metrics);
  shared->hash_pool =
      std::make_unique<WorkerPool>(shared->options.workers, static_cast<size_t>(-1), "hash");
  shared->query_pool = std::make_unique<WorkerPool>(1, static_cast<size_t>(-1), "query");
  return std::unique_ptr<HasherServiceImpl>(new HasherServiceImpl(std::move(shared)));
}

HasherServiceImpl::~HasherServiceImpl() {
  shared_->calls.CancelAllAndWait();
  // The pools join their threads (running what is queued) before the store may go away.
  shared_->hash_pool.reset();
  shared_->query_pool.reset();
}

grpc::ServerWriteReactor<v1::ListFilesResponse>* HasherServiceImpl::ListFiles(
    grpc::CallbackServerContext* ctx, const v1::ListFilesRequest* request) {
  absl::Status st = ValidateJob(request->job(), "job");
  if (!st.ok()) {
    return new internal::ErrorReactor<grpc::ServerWriteReactor<v1::ListFilesResponse>>(st);
  }
  return new ListReactor(shared_.get(), std::string(JobOrDefault(request->job())));
}

// -----------------------------------------------------------------------------------------------
// StatusService

absl::StatusOr<v1::LocateResponse> LocateDigest(HasherStore& store,
                                                const v1::LocateRequest& request) {
  absl::StatusOr<Digest> digest = Digest::FromBytes(request.digest(), "digest");
  if (!digest.ok()) return digest.status();
  auto rows = store.FindByDigest(*digest);
  if (!rows.ok()) return rpc::StoreUnavailable("hasher", rows.status());
  if (rows->empty()) return absl::NotFoundError("digest: unknown to the hasher");
  v1::LocateResponse response;
  response.set_service("hasher");
  v1::DigestState state = v1::DIGEST_STATE_HASHED;
  for (const FileRow& row : *rows) {
    if (row.state == FileState::kQueued) state = v1::DIGEST_STATE_QUEUED;
    v1::FileMetadata* md = response.add_files();
    md->set_filename(internal::Basename(row.path));
    md->set_size_bytes(row.size_bytes);
    md->set_mime_type(digest::GuessMimeType(row.path));
    md->set_source_path(row.path);
    md->set_job(row.job);
    internal::SetTimestampNs(md->mutable_modified_at(), row.mtime_ns);
  }
  response.set_state(state);
  return response;
}

absl::StatusOr<v1::SummarizeJobResponse> SummarizeHashJob(HasherStore& store,
                                                          const v1::SummarizeJobRequest& request) {
  absl::Status st = ValidateJob(request.job(), "job");
  if (!st.ok()) return st;
  v1::SummarizeJobResponse response;
  response.set_service("hasher");
  if (request.paused_only()) return response;  // the hasher never pauses
  auto sum = store.Summarize(request.job());
  if (!sum.ok()) return rpc::StoreUnavailable("hasher", sum.status());
  for (const auto& [k, v] : sum->digests_by_state) (*response.mutable_digests_by_state())[k] = v;
  response.set_files(sum->files);
  return response;
}

grpc::ServerUnaryReactor* HasherStatusServiceImpl::Locate(grpc::CallbackServerContext* ctx,
                                                          const v1::LocateRequest* request,
                                                          v1::LocateResponse* response) {
  HasherStore* store = shared_->store;
  return rpc::RunUnary(ctx, shared_->query_pool.get(), "hasher", response,
                       [store, request] { return LocateDigest(*store, *request); });
}

grpc::ServerUnaryReactor* HasherStatusServiceImpl::SummarizeJob(
    grpc::CallbackServerContext* ctx, const v1::SummarizeJobRequest* request,
    v1::SummarizeJobResponse* response) {
  HasherStore* store = shared_->store;
  return rpc::RunUnary(ctx, shared_->query_pool.get(), "hasher", response,
                       [store, request] { return SummarizeHashJob(*store, *request); });
}

}  // namespace anchord::hasher
