// What the hasher's streaming calls share: per-file status helpers, the anchoring-choice checks of
// HashTree and HashFiles, the reactor that ends a call at once, and the reactor whose writes come
// from an rpc::Outbox. Internal to services/hasher.
#pragma once

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "anchord/v1/common.pb.h"
#include "anchord/v1/submitter.pb.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "google/protobuf/timestamp.pb.h"
#include "libs/rpc/reactor_lifetime.h"
#include "libs/rpc/status.h"

namespace anchord::hasher::internal {

// A file's ItemStatus from `st`; the reason is the one attached to `st` (digest::WithReason), else
// `fallback_reason`.
anchord::v1::ItemStatus ItemStatusOf(const absl::Status& st, absl::string_view fallback_reason);
std::string Basename(absl::string_view path);
void SetTimestampNs(google::protobuf::Timestamp* ts, int64_t ns);
int64_t TimestampNs(const google::protobuf::Timestamp& ts);
// RESOURCE_EXHAUSTED: all `limit` call slots are taken.
absl::Status TooManyCalls(int limit);
// The anchoring choices a HashTree request or a HashFiles file carries: provider names of 1 to 64
// bytes, a known anchor mode, a fallback provider of at most 64 bytes. The error names the field.
absl::Status ValidateAnchoring(const google::protobuf::RepeatedPtrField<std::string>& providers,
                               int anchor_mode, absl::string_view fallback_provider);

// Fills the submitter's answer for one file into its HashTree/HashFiles result: QUEUED (or the
// later state the submitter reports) when it holds the digest, else HASHED with the submitter's
// refusal (reason SUBMIT_REJECTED unless it gave one).
template <typename Resp>
void SetAckOutcome(const anchord::v1::SubmitResponse& ack, Resp* r) {
  if (ack.status().code() == 0) {
    r->set_state(ack.state() >= anchord::v1::DIGEST_STATE_QUEUED
                     ? ack.state()
                     : anchord::v1::DIGEST_STATE_QUEUED);
    r->set_duplicate_of(ack.duplicate_of());
    *r->mutable_status() = rpc::ToItemStatus(absl::OkStatus());
  } else {
    r->set_state(anchord::v1::DIGEST_STATE_HASHED);
    *r->mutable_status() = ack.status();
    if (r->status().reason().empty()) r->mutable_status()->set_reason("SUBMIT_REJECTED");
  }
}

// A call refused before it started: finishes with `st` at once. `Reactor` is a
// grpc::ServerWriteReactor<...> or grpc::ServerBidiReactor<...>.
template <typename Reactor>
class ErrorReactor final : public Reactor {
 public:
  explicit ErrorReactor(const absl::Status& st) { this->Finish(rpc::ToGrpcStatus(st)); }
  void OnDone() override { delete this; }
};

// A HashTree/HashFiles reactor. `Call` holds the call's state, shared with the coordinator thread
// and the hashing tasks, with an rpc::Outbox<Resp> `out` and a Cancel() that must not block.
// Results reach the caller through the outbox, one write at a time; the call ends when the
// coordinator thread, having waited until the outbox is quiet, calls Complete().
//
// References (rpc::ReactorLifetime): gRPC's, released in OnDone; the coordinator's, taken here
// and released by Complete(); derived classes take one per task they post.
template <typename Reactor, typename Call, typename Resp>
class OutboxReactor : public rpc::ReactorLifetime<Reactor> {
 public:
  explicit OutboxReactor(std::shared_ptr<Call> call) : call_(std::move(call)) {
    {
      absl::MutexLock lock(&this->mu_);
      this->RefLocked();
    }
    call_->out.start_write = [this](Resp* r, bool more) { StartWriteFromOutbox(r, more); };
  }

  // From the coordinator thread, once: finishes the call with `status` and drops the
  // coordinator's reference (the reactor may be gone when this returns).
  void Complete(grpc::Status status) {
    {
      absl::MutexLock lock(&this->mu_);
      this->FinishLocked(std::move(status));
    }
    this->Unref();
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&this->mu_);
      this->writing_ = false;
      this->SendDeferredFinishLocked();
    }
    call_->out.OnWriteDone(ok);
  }
  void OnCancel() override { call_->Cancel(); }
  void OnDone() override { this->Unref(); }

 protected:
  std::shared_ptr<Call> call_;

 private:
  // `more`: another result follows at once, so gRPC may hold this one (buffer hint) and send
  // both in one socket write; the last of a burst goes without the hint and flushes.
  void StartWriteFromOutbox(Resp* r, bool more) {
    {
      absl::MutexLock lock(&this->mu_);
      if (!this->finished_) {
        this->writing_ = true;
        this->StartWrite(r, more ? grpc::WriteOptions().set_buffer_hint() : grpc::WriteOptions());
        return;
      }
    }
    // Finished already: nothing more can be written, as if the caller had gone.
    call_->out.OnWriteDone(false);
  }
};

}  // namespace anchord::hasher::internal
