// Column encodings the submitter's two stores (SQLite and PostgreSQL) share, so a row written by
// one build reads back the same in the other and both decode it with one set of rules.
#pragma once

#include <cstdint>

#include "absl/time/time.h"
#include "services/submitter/submitter_store.h"

namespace anchord::submitter {

// Times are stored as Unix milliseconds; 0 means unset (InfinitePast) and INT64_MAX means
// InfiniteFuture, so both round-trip.
int64_t ToMs(absl::Time t);
absl::Time FromMs(int64_t ms);

// A stored state; a value no version wrote (a damaged row) reads as kFailed, so it is reported
// rather than retried forever.
SubState StateFromInt(int64_t v);

// A stored row mode (0 per-file, 1 Merkle leaf, 2 Merkle root); anything else reads as per-file.
RowMode RowModeFromInt(int64_t v);

}  // namespace anchord::submitter
