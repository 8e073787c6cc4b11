// What the hand-off tests over Merkle batches share (handoff_batch_test.cc against recording
// pollers, handoff_poller_test.cc against the real poller): sealed, accepted batches and ordinary
// SUBMITTED rows in a SQLite store, and a Handoff to a poller on a loopback port.
#pragma once

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "libs/merkle/sealed_batch.h"
#include "services/submitter/handoff.h"
#include "tests/submitter/merkle_fixture.h"
#include "tests/testing/wait.h"

namespace anchord::submitter {

// A batch sealed and accepted by the provider, as the store holds it.
struct AcceptedBatch {
  TestBatch batch;
  int64_t id = 0;
  std::vector<int> leaf_numbers;  // D(n) of each leaf, in tree order
  std::string encoded;            // the stored leaves (digests then nonces)
};

class HandoffFixture : public MerkleFixture {
 protected:
  void TearDown() override {
    if (handoff_) handoff_->Stop();
    handoff_.reset();
    MerkleFixture::TearDown();
  }

  // Leaves D(first) .. D(first + count - 1), sealed in one batch whose root is then SUBMITTED.
  // `evidence` is the root's .ots from the create (the real poller checks it: none there).
  AcceptedBatch SealAndAccept(int first, int count, const std::string& evidence = "root-evidence") {
    AcceptedBatch out;
    std::vector<NewItem> items;
    for (int n = first; n < first + count; ++n) {
      items.push_back(Leaf(n));
      out.leaf_numbers.push_back(n);
    }
    EXPECT_TRUE(store_->InsertBatch(items, kNow).ok());
    std::vector<WaitingLeaf> leaves = Unbatched(count + 1);
    EXPECT_EQ(leaves.size(), static_cast<size_t>(count));
    out.batch = MakeBatch(leaves);
    absl::StatusOr<int64_t> id = store_->CreateMerkleBatch(out.batch, kNow);
    EXPECT_TRUE(id.ok()) << id.status();
    out.id = id.ok() ? *id : 0;
    std::vector<std::string> digests;
    for (const WaitingLeaf& l : leaves) digests.push_back(l.digest.raw());
    absl::StatusOr<std::string> encoded = merkle::EncodeBatchLeaves(digests, out.batch.nonces);
    EXPECT_TRUE(encoded.ok()) << encoded.status();
    if (encoded.ok()) out.encoded = *encoded;
    StoredRecord rec;
    rec.proof_id = absl::StrCat("root-proof-", out.id);
    rec.provider_created_at = kNow;
    rec.evidence = evidence;
    EXPECT_TRUE(store_->MarkSubmitted(RowOf(out.batch.root).id, rec, "req-root", kNow).ok());
    return out;
  }

  // Per-file rows D(first) .. D(first + count - 1), SUBMITTED.
  void SubmittedPerFile(int first, int count) {
    std::vector<NewItem> items;
    for (int n = first; n < first + count; ++n) items.push_back(PerFile(n));
    ASSERT_TRUE(store_->InsertBatch(items, kNow).ok());
    auto claimed = store_->ClaimBatch("fake", "t", kNow, kNow + absl::Minutes(1), count);
    ASSERT_TRUE(claimed.ok()) << claimed.status();
    ASSERT_EQ(claimed->size(), static_cast<size_t>(count));
    for (const Submission& row : *claimed) {
      StoredRecord rec;
      rec.proof_id = absl::StrCat("proof-", row.id);
      ASSERT_TRUE(store_->MarkSubmitted(row.id, rec, "req", kNow).ok());
    }
  }

  HandoffOptions FastOptions() {
    HandoffOptions o;
    o.idle_poll = absl::Milliseconds(20);
    o.reconnect = BackoffPolicy{absl::Milliseconds(10), absl::Milliseconds(100), 2.0};
    o.track_deadline = absl::Seconds(120);
    return o;
  }

  void StartHandoff(int port, HandoffOptions o) {
    handoff_ = std::make_unique<Handoff>(
        store_.get(),
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()),
        nullptr, o);
    handoff_->Start();
  }

  // Waits (bounded) until nothing is left to hand off.
  bool WaitHandedOff() {
    return ::anchord::testing::WaitUntil(
        [&] {
          auto p = store_->PendingHandoff(1);
          return p.ok() && p->empty();
        },
        absl::Seconds(120));
  }

  int64_t Pending() {
    auto p = store_->PendingHandoff(100000);
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? static_cast<int64_t>(p->size()) : -1;
  }

  std::unique_ptr<Handoff> handoff_;
};

}  // namespace anchord::submitter
