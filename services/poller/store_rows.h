// Column encodings the poller's two stores (SQLite and PostgreSQL) share, so both decode a row
// with one set of rules.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "anchord/v1/common.pb.h"
#include "services/poller/poller_store.h"

namespace anchord::poller {

// The stored states, as the integers in the state column.
constexpr int kPending = anchord::v1::DIGEST_STATE_PENDING;
constexpr int kConfirmed = anchord::v1::DIGEST_STATE_CONFIRMED;
constexpr int kFailed = anchord::v1::DIGEST_STATE_FAILED;

// Times are stored as Unix microseconds; 0 means unset (InfinitePast). InfiniteFuture is written
// as INT64_MAX (and reads back as a time far ahead).
int64_t ToDb(absl::Time t);
absl::Time FromDb(int64_t micros);

// A stored state; a value outside the enum (a damaged row) reads as PENDING, so the proof is
// checked again rather than reported with a state no client knows.
DigestState DigestStateFromDb(int64_t v);

// How a hand-off's Merkle fields are stored. A leaf input with TrackInput::batch and
// proof.leaf_index >= 0 (the batch form) is stored with its index, an empty merkle_path and the
// derived path's length; the batch's tree is stored once for its root (by the root's input, and
// by its leaves' inputs in case the root's was in an earlier call). Every other input is stored
// as given (leaf_index -1).
struct BatchForm {
  int64_t leaf_index = -1;
  int64_t path_size = 0;  // bytes of the path derived from the tree (0 unless batch form)
  std::string tree_root;  // raw root digest whose tree (batch->encoded()) to store; empty: none
};

// INVALID_ARGUMENT naming the field when `in.batch` does not lead to the input's root or its
// leaf_index is not the position of proof.digest: no row may point at a tree that does not
// hold it.
absl::StatusOr<BatchForm> BatchFormOf(const TrackInput& in);

// The last step of SettleStrandedLeaves on both stores: the roots its walk found and those marked
// leaves_behind, each once, in seq order, at most `max_roots` of them, propagated to their leaves
// one by one (store.PropagateToLeaves); the leaves that changed.
absl::StatusOr<std::vector<ProofRow>> SettleRoots(PollerStore& store, std::vector<ProofRow> found,
                                                  std::vector<ProofRow> behind,
                                                  const std::string& provider, absl::Time now,
                                                  int max_roots);

}  // namespace anchord::poller
