// Column encodings the poller's two stores (SQLite and PostgreSQL) share, so both decode a row
// with one set of rules.
#pragma once

#include <cstdint>

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

}  // namespace anchord::poller
