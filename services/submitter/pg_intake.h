// The intake's insert into the PostgreSQL submitter store (SubmitterStore::InsertBatch): what one
// group commit of Submit items writes, in a constant number of statements whatever its size.
//
// It answers exactly as the SQLite intake (submitter_store_intake.h) for every batch: items are
// taken as if sent one after the other (an item repeating an earlier digest of the same batch is a
// known digest), and each item's InsertResult (known_before, duplicate_of, state) and each row's
// change_seq come out the same.
//
// Replicas share the tables. Who stores a digest first is decided by the partial unique index
// refs_first (one "first" ref per digest): the insert of a first ref waits for another
// transaction's uncommitted first ref of the same digest and then does nothing, so of two
// replicas inserting a new digest together, exactly one stores it (known_before false) and the
// other sees the first one's file as the original. Every digest's items are thereby applied as if
// the transactions had run one after the other. Rows are inserted in key order, so two intakes
// waiting on each other's rows cannot deadlock (a deadlock elsewhere is retried by PgDb::Tx).
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "libs/ledger/pg_db.h"
#include "services/submitter/pg_batches.h"
#include "services/submitter/submitter_store.h"

namespace anchord::submitter {

// Stores `items` inside the caller's open transaction on `c` (the caller commits); results in the
// order of `items`. At most four statements: first refs, the other refs with the originals of the
// digests already known, submissions rows, then (only when a known digest is involved) the
// change_seq bump and the states of known digests; with Merkle leaves, one or two more per
// provider (its open batch found or opened) and one for the batches' counts.
// A Merkle leaf's row goes into an open batch of `open` (pg_batches.h; its Finish is called
// here); null: stored with batch id 0, waiting, as an older release stored it.
absl::StatusOr<std::vector<InsertResult>> InsertPgIntakeItems(ledger::PgConn& c,
                                                              const std::vector<NewItem>& items,
                                                              absl::Time now,
                                                              PgOpenBatches* open = nullptr);

}  // namespace anchord::submitter
