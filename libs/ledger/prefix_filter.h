// An in-memory set of the 8-byte prefixes of every digest a SQLite table holds, so that a writer
// can skip looking up a digest the table cannot hold.
//
// A hand-off of a Merkle batch brings thousands of digests that are nearly always new, and each
// look-up is a seek at a random place of the digest index: about a tenth of what the poller and
// the submitter spend per leaf (bench/RESULTS.md, issue 11 session 21). A digest whose prefix is
// not in the set has no row; one whose prefix is in it may have one and is looked up as before.
//
// The set follows the table by its key, an INTEGER PRIMARY KEY AUTOINCREMENT (never reused, so
// every row added after a key was seen has a larger key): Sync, inside the write transaction and
// before the look-ups, reads the rows added since the keys it has seen, whoever added them
// (another path of this process, or another process on the same file). Rows are never taken out
// of the set: one that holds a prefix no row has any more (a deleted row, a rolled-back write)
// only costs a look-up. A table larger than `max_rows` turns the set off (every digest "may" be
// held), so its memory stays bounded (10-20 bytes a row: an 8-byte slot and a control byte of
// a hash set at most 7/8 full, whose capacity doubles).
//
// Not thread-safe: use it under the lock of the connection whose transactions it follows.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "libs/ledger/sqlite_db.h"

namespace anchord::ledger {

class PrefixFilter {
 public:
  // `table`'s `key` (INTEGER PRIMARY KEY AUTOINCREMENT) and its digest column `digest` (BLOB).
  PrefixFilter(std::string table, std::string key, std::string digest, int64_t max_rows);

  // In a write transaction, before the look-ups: brings the set up to the table as `tx` sees it
  // (all of it at the first call). From then on, until `tx` ends, MayHold is false only for a
  // digest that has no row, provided that every digest `tx` writes a row of was Added first.
  absl::Status Sync(Transaction& tx);
  // False when the table holds no row of `digest` (see Sync).
  bool MayHold(absl::string_view digest) const;
  // A digest that the transaction may write a row of, before it is written.
  void Add(absl::string_view digest);
  // In the transaction, after its writes and before its commit: `rows_added`, how many rows it
  // added to the table. When they account for every key after the last one seen, Committed makes
  // them seen; otherwise the next Sync reads them.
  absl::Status Settle(Transaction& tx, int64_t rows_added);
  // After the transaction committed. (After a rollback nothing is needed: Settle's note is
  // dropped by the next Sync.)
  void Committed();

  bool enabled() const { return enabled_; }
  size_t size() const { return prefixes_.size(); }

 private:
  static uint64_t PrefixOf(absl::string_view digest);
  absl::StatusOr<int64_t> MaxKey(Transaction& tx);
  // Adds the digests of the rows whose key is above `after`.
  absl::Status Load(Transaction& tx, int64_t after);
  void TurnOff();

  const std::string table_, key_, digest_;
  const int64_t max_rows_;
  bool enabled_ = true;
  bool loaded_ = false;
  int64_t seen_ = 0;      // every row with a key up to this one is in the set
  int64_t settled_ = -1;  // Settle's next seen_, -1 when none
  absl::flat_hash_set<uint64_t> prefixes_;
};

// A writer's use of a filter (optional: null keeps every digest), in one call before its
// look-ups: Syncs it in `tx`, Adds every digest of *digests, and keeps in *digests only those the
// table may hold, the ones still to look up (in their order).
absl::Status KeepThoseItMayHold(Transaction& tx, PrefixFilter* known,
                                std::vector<absl::string_view>* digests);

}  // namespace anchord::ledger
