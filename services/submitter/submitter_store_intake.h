// The intake's insert into the SQLite submitter store (SubmitterStore::InsertBatch): what one
// group commit of Submit items writes, and how a digest already known is found.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "libs/ledger/prefix_filter.h"
#include "libs/ledger/sqlite_db.h"
#include "services/submitter/submitter_store.h"

namespace anchord::submitter {

// Stores `items` inside the caller's open transaction (the caller commits): for each item a
// submissions row per provider the digest does not have yet and a refs row for its file unless
// that file is already stored. Results are in the order of `items`. An item whose digest is known
// resolves to the digest's first file (duplicate_of) and its state; items repeated within
// `items` behave as if sent one after the other. A Merkle leaf goes into its provider's open
// batch (sqlite_batches.h, OpenLeafBatches), of at most `leaves_per_batch` leaves. `known`
// (optional): the prefixes of the digests submissions holds, kept across calls by the store (which
// calls its Committed after the commit): a digest it cannot hold is not looked up.
absl::StatusOr<std::vector<InsertResult>> InsertIntakeItems(ledger::Transaction& tx,
                                                            const std::vector<NewItem>& items,
                                                            absl::Time now,
                                                            int64_t leaves_per_batch,
                                                            ledger::PrefixFilter* known = nullptr);

// A FileRef from the five columns job, source_path, filename, size_bytes, mime_type of a refs
// row, starting at column `base`.
FileRef ReadRef(const ledger::Statement& s, int base);

}  // namespace anchord::submitter
