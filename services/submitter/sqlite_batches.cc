#include "services/submitter/sqlite_batches.h"

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "libs/common/status_macros.h"
#include "libs/digest/stored_digest.h"
#include "libs/ledger/sqlite_rows.h"
#include "services/submitter/store_rows.h"

namespace anchord::submitter {

using ledger::Statement;

namespace {

// Leaves of provider ?1 stored with batch id 0 (by an older release) and not yet sealed.
constexpr char kUnbatchedOfProvider[] = "provider = ?1 AND mode = 1 AND batch_id = 0 AND state = 0";
constexpr char kWaitingRange[] =
    "provider = ?1 AND mode = 1 AND batch_id = 0 AND state = 0 AND id BETWEEN ?2 AND ?3";

// When the leaves are every waiting leaf of the provider from the first to the last, in id order
// (as the batcher gives them: the oldest waiting), one UPDATE gives them all the batch id instead
// of a statement per leaf (bench/results/s8-submitter.md). True when done; false, with nothing
// changed, when they are not such a range (the caller then marks them one by one).
absl::StatusOr<bool> SealWaitingRange(ledger::Transaction& tx, const NewBatch& b, int64_t batch_id,
                                      int64_t now_ms) {
  const size_t n = b.leaf_ids.size();
  if (b.leaf_digests.size() != n) return false;
  for (size_t i = 1; i < n; ++i) {
    if (b.leaf_ids[i] <= b.leaf_ids[i - 1]) return false;
  }
  // The check the per-leaf statement makes (each leaf waits, with the digest given) for the
  // whole range, read from the waiting index in one pass: the range must hold exactly the leaves.
  ANCHORD_ASSIGN_OR_RETURN(Statement look,
                           tx.Prepare(absl::StrCat("SELECT id, digest FROM submissions WHERE ",
                                                   kWaitingRange, " ORDER BY id")));
  look.Bind(1, b.provider).Bind(2, b.leaf_ids.front()).Bind(3, b.leaf_ids.back());
  size_t seen = 0;
  for (;;) {
    ANCHORD_ASSIGN_OR_RETURN(bool row, look.Step());
    if (!row) break;
    if (seen >= n || look.ColumnInt(0) != b.leaf_ids[seen] ||
        look.ColumnText(1) != b.leaf_digests[seen].bytes()) {
      return false;
    }
    ++seen;
  }
  look.Reset();
  if (seen != n) return false;
  ANCHORD_ASSIGN_OR_RETURN(
      Statement set,
      tx.Prepare(absl::StrCat("UPDATE submissions SET batch_id = ?4, updated_at = ?5 WHERE ",
                              kWaitingRange)));
  set.Bind(1, b.provider)
      .Bind(2, b.leaf_ids.front())
      .Bind(3, b.leaf_ids.back())
      .Bind(4, batch_id)
      .Bind(5, now_ms);
  ANCHORD_RETURN_IF_ERROR(set.Run());
  // The transaction holds the write lock: nothing changed the range since the look.
  if (tx.Changes() != static_cast<int>(n)) {
    return absl::InternalError(
        absl::StrCat("merkle batch: ", tx.Changes(), " of ", n, " leaves marked in one range"));
  }
  return true;
}

// The batch row with its leaves (`digests` in tree order) and the batch's root row.
absl::StatusOr<int64_t> AddBatchAndRoot(ledger::Transaction& tx, const NewBatch& b,
                                        int64_t batch_id, const std::vector<std::string>& digests,
                                        int64_t now_ms);
// The root row of batch `batch_id` (QUEUED, kRoot).
absl::Status AddRoot(ledger::Transaction& tx, const NewBatch& b, int64_t batch_id, int64_t now_ms);

}  // namespace

std::string SqliteOpenBatch(absl::string_view alias) {
  return absl::StrCat("length(", alias, "root) = 0");
}

absl::StatusOr<OpenBatchTally::Open> OpenLeafBatches::FindOpen(const std::string& provider) {
  ANCHORD_ASSIGN_OR_RETURN(
      Statement * find,
      ledger::Reuse(tx_, find_,
                    "SELECT id, leaf_count FROM batches INDEXED BY batches_open WHERE "
                    "provider = ?1 AND length(root) = 0 ORDER BY id DESC LIMIT 1"));
  find->Bind(1, provider);
  ANCHORD_ASSIGN_OR_RETURN(bool row, find->Step());
  Open o;
  if (row) {
    o.id = find->ColumnInt(0);
    o.count = o.stored = find->ColumnInt(1);
  }
  find->Reset();
  return o;
}

absl::StatusOr<int64_t> OpenLeafBatches::OpenNew(const std::string& provider) {
  ANCHORD_ASSIGN_OR_RETURN(Statement * open,
                           ledger::Reuse(tx_, open_,
                                         "INSERT INTO batches (provider, root, leaf_count, "
                                         "created_at, leaves) VALUES (?1, X'', 0, ?2, X'')"));
  open->Bind(1, provider).Bind(2, now_ms_);
  ANCHORD_RETURN_IF_ERROR(open->Run());
  return tx_.LastInsertRowId();
}

absl::Status OpenLeafBatches::Finish() {
  std::optional<Statement> set;
  for (const auto& [id, added] : Added()) {
    ANCHORD_ASSIGN_OR_RETURN(
        Statement * st,
        ledger::Reuse(tx_, set, "UPDATE batches SET leaf_count = leaf_count + ?2 WHERE id = ?1"));
    st->Bind(1, id).Bind(2, added);
    ANCHORD_RETURN_IF_ERROR(st->Run());
  }
  return absl::OkStatus();
}

namespace {

// The oldest open batch of ?1 holding any leaf: found by its leaves, not by its count, so that an
// open batch left without leaves can never hold up the ones after it.
constexpr char kOldestOpenBatch[] =
    "FROM batches INDEXED BY batches_open WHERE provider = ?1 AND length(root) = 0 AND EXISTS "
    "(SELECT 1 FROM submissions INDEXED BY submissions_batch_leaves WHERE batch_id = batches.id "
    "AND mode = 1 AND batch_id <> 0) ORDER BY id LIMIT 1";

}  // namespace

absl::StatusOr<SubmitterStore::Waiting> SqliteUnbatchedWaiting(ledger::Session& session,
                                                               const std::string& provider) {
  // Leaves stored with batch id 0 by an older release: rows are inserted in time order, so the
  // oldest is the one with the lowest id.
  ANCHORD_ASSIGN_OR_RETURN(Statement s,
                           session.Prepare(absl::StrCat("SELECT COUNT(*) FROM submissions WHERE ",
                                                        kUnbatchedOfProvider)));
  s.Bind(1, provider);
  ANCHORD_ASSIGN_OR_RETURN(bool row, s.Step());
  SubmitterStore::Waiting w;
  if (row) w.count = s.ColumnInt(0);
  s.Reset();
  if (w.count > 0) {
    ANCHORD_ASSIGN_OR_RETURN(Statement first, session.Prepare(absl::StrCat(
                                                  "SELECT created_at FROM submissions WHERE ",
                                                  kUnbatchedOfProvider, " ORDER BY id LIMIT 1")));
    first.Bind(1, provider);
    ANCHORD_ASSIGN_OR_RETURN(bool found, first.Step());
    if (found) w.oldest = FromMs(first.ColumnInt(0));
    return w;
  }
  ANCHORD_ASSIGN_OR_RETURN(
      Statement open,
      session.Prepare(absl::StrCat("SELECT leaf_count, created_at ", kOldestOpenBatch)));
  open.Bind(1, provider);
  ANCHORD_ASSIGN_OR_RETURN(bool found, open.Step());
  if (found) {
    w.count = open.ColumnInt(0);
    w.oldest = FromMs(open.ColumnInt(1));
  }
  return w;
}

absl::StatusOr<std::vector<WaitingLeaf>> SqliteUnbatchedLeaves(ledger::Session& session,
                                                               const std::string& provider,
                                                               int limit) {
  // Only what sealing needs (the batcher reads up to max_leaves rows every batch): decoding
  // every column of every leaf was a tenth of the submitter's CPU in Merkle mode.
  std::vector<WaitingLeaf> out;
  out.reserve(static_cast<size_t>(std::clamp(limit, 0, 1 << 16)));
  auto read = [&](Statement& s) -> absl::Status {
    for (;;) {
      ANCHORD_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      WaitingLeaf& r = out.emplace_back();
      r.id = s.ColumnInt(0);
      ANCHORD_ASSIGN_OR_RETURN(r.digest, DigestFromColumn(s.ColumnText(1), "submissions.digest"));
      r.job = s.ColumnText(2);
    }
    s.Reset();
    return absl::OkStatus();
  };
  ANCHORD_ASSIGN_OR_RETURN(Statement legacy, session.Prepare(absl::StrCat(
                                                 "SELECT id, digest, job FROM submissions WHERE ",
                                                 kUnbatchedOfProvider, " ORDER BY id LIMIT ?2")));
  legacy.Bind(1, provider).Bind(2, static_cast<int64_t>(limit));
  ANCHORD_RETURN_IF_ERROR(read(legacy));
  if (!out.empty()) return out;
  ANCHORD_ASSIGN_OR_RETURN(
      Statement s,
      session.Prepare(absl::StrCat(
          "SELECT id, digest, job FROM submissions INDEXED BY submissions_batch_leaves WHERE "
          "batch_id = (SELECT id ",
          kOldestOpenBatch,
          ") AND mode = 1 AND batch_id <> 0 AND state = 0 ORDER BY id LIMIT ?2")));
  s.Bind(1, provider).Bind(2, static_cast<int64_t>(limit));
  ANCHORD_RETURN_IF_ERROR(read(s));
  return out;
}

namespace {

// The open batch whose leaves (in id order) are exactly `b`'s, each still waiting (with the digest
// given, if given), or 0 when they are not; `digests` gets theirs. A batch with leaves after
// `b`'s (stored after the batcher read the leaves, or beyond its limit) is not: its leaves are
// then marked one by one, and the later ones stay in the open batch, which is the oldest and
// sealed next.
absl::StatusOr<int64_t> FirstLeavesOfOpenBatch(ledger::Transaction& tx, const NewBatch& b,
                                               std::vector<std::string>* digests) {
  const size_t n = b.leaf_ids.size();
  const bool given = b.leaf_digests.size() == n;
  for (size_t i = 1; i < n; ++i) {
    if (b.leaf_ids[i] <= b.leaf_ids[i - 1]) return 0;
  }
  ANCHORD_ASSIGN_OR_RETURN(
      Statement of_first,
      tx.Prepare(absl::StrCat("SELECT s.batch_id FROM submissions s JOIN batches ob ON ob.id = "
                              "s.batch_id WHERE s.id = ?1 AND s.mode = 1 AND s.state = 0 AND "
                              "s.provider = ?2 AND ob.provider = ?2 AND ",
                              SqliteOpenBatch("ob."))));
  of_first.Bind(1, b.leaf_ids.front()).Bind(2, b.provider);
  ANCHORD_ASSIGN_OR_RETURN(bool found, of_first.Step());
  if (!found) return 0;
  const int64_t batch_id = of_first.ColumnInt(0);
  of_first.Reset();
  ANCHORD_ASSIGN_OR_RETURN(
      Statement look,
      tx.Prepare("SELECT id, digest FROM submissions INDEXED BY submissions_batch_leaves WHERE "
                 "batch_id = ?1 AND mode = 1 AND batch_id <> 0 AND state = 0 ORDER BY id"));
  look.Bind(1, batch_id);
  size_t seen = 0;
  digests->clear();
  digests->reserve(n);
  for (;;) {
    ANCHORD_ASSIGN_OR_RETURN(bool row, look.Step());
    if (!row) break;
    if (seen == n) return 0;
    if (look.ColumnInt(0) != b.leaf_ids[seen] ||
        (given && look.ColumnText(1) != b.leaf_digests[seen].bytes())) {
      return 0;
    }
    digests->push_back(look.ColumnText(1));
    ++seen;
  }
  return seen == n ? batch_id : 0;
}

// Seals open batch `batch_id` whose first leaves are `b`'s: its row takes the root, the leaves
// and their count, and the time of the seal; its root row is added.
absl::StatusOr<int64_t> SealOpenBatch(ledger::Transaction& tx, const NewBatch& b, int64_t batch_id,
                                      const std::vector<std::string>& digests, int64_t now_ms) {
  ANCHORD_ASSIGN_OR_RETURN(std::string leaves, EncodeBatchLeaves(digests, b.nonces));
  ANCHORD_ASSIGN_OR_RETURN(
      Statement seal, tx.Prepare("UPDATE batches SET root = ?2, leaf_count = ?3, created_at = ?4, "
                                 "leaves = ?5 WHERE id = ?1 AND length(root) = 0"));
  seal.Bind(1, batch_id)
      .BindBlob(2, b.root)
      .Bind(3, static_cast<int64_t>(b.leaf_ids.size()))
      .Bind(4, now_ms)
      .BindBlob(5, leaves);
  ANCHORD_RETURN_IF_ERROR(seal.Run());
  if (tx.Changes() != 1) {
    return absl::InternalError(absl::StrCat("merkle batch ", batch_id, " was sealed twice"));
  }
  ANCHORD_RETURN_IF_ERROR(AddRoot(tx, b, batch_id, now_ms));
  return batch_id;
}

}  // namespace

absl::StatusOr<int64_t> SealSqliteBatch(ledger::Transaction& tx, const NewBatch& b,
                                        int64_t now_ms) {
  if (b.leaf_ids.empty() || b.nonces.size() != b.leaf_ids.size() || b.root.size() != 32) {
    return absl::InvalidArgumentError("merkle batch: one nonce per leaf and a 32-byte root");
  }
  // The batcher's usual batch: the leaves of their provider's oldest open batch. No leaf row is
  // written.
  std::vector<std::string> digests;
  ANCHORD_ASSIGN_OR_RETURN(const int64_t open_id, FirstLeavesOfOpenBatch(tx, b, &digests));
  if (open_id != 0) return SealOpenBatch(tx, b, open_id, digests, now_ms);
  // Otherwise a batch row is added, and its leaves are marked with its id: leaves stored with
  // batch id 0 by an older release, or a batch of other leaves than the first ones of an open
  // batch. The batch row is written after its leaves, so the leaves are marked with the id it
  // will get: the transaction holds the write lock, and the next id is the one after the highest
  // ever given (AUTOINCREMENT's rule).
  std::optional<Statement> next_id;
  ANCHORD_ASSIGN_OR_RETURN(const int64_t batch_id,
                           ledger::NextAutoincrementKey(tx, next_id, "batches", "id"));
  ANCHORD_ASSIGN_OR_RETURN(bool as_range, SealWaitingRange(tx, b, batch_id, now_ms));
  digests.clear();
  if (as_range) {
    digests.reserve(b.leaf_digests.size());
    for (const Digest& d : b.leaf_digests) digests.push_back(d.raw());
    return AddBatchAndRoot(tx, b, batch_id, digests, now_ms);
  }
  // One leaf at a time: each must still wait (with batch id 0 or in an open batch of its
  // provider, whose count then loses it), else another batcher won: ABORTED.
  const bool given = b.leaf_digests.size() == b.leaf_ids.size();
  ANCHORD_ASSIGN_OR_RETURN(
      Statement look_leaf,
      tx.Prepare(absl::StrCat(
          "SELECT s.batch_id, s.digest FROM submissions s LEFT JOIN batches ob ON ob.id = "
          "s.batch_id WHERE s.id = ?1 AND s.mode = 1 AND s.state = 0 AND s.provider = ?2 AND "
          "(s.batch_id = 0 OR (ob.provider = ?2 AND ",
          SqliteOpenBatch("ob."), "))")));
  ANCHORD_ASSIGN_OR_RETURN(
      Statement set_leaf,
      tx.Prepare("UPDATE submissions SET batch_id = ?2, updated_at = ?3 WHERE id = ?1"));
  digests.reserve(b.leaf_ids.size());
  absl::flat_hash_map<int64_t, int64_t> left_open;  // open batch -> leaves taken out of it
  for (size_t i = 0; i < b.leaf_ids.size(); ++i) {
    const int64_t leaf_id = b.leaf_ids[i];
    look_leaf.Reset();
    look_leaf.Bind(1, leaf_id).Bind(2, b.provider);
    ANCHORD_ASSIGN_OR_RETURN(bool found, look_leaf.Step());
    if (!found || (given && look_leaf.ColumnText(1) != b.leaf_digests[i].bytes())) {
      return absl::AbortedError(absl::StrCat("merkle batch: leaf row ", leaf_id,
                                             " was batched, changed or given twice meanwhile"));
    }
    if (look_leaf.ColumnInt(0) != 0) ++left_open[look_leaf.ColumnInt(0)];
    digests.push_back(look_leaf.ColumnText(1));
    set_leaf.Reset();
    set_leaf.Bind(1, leaf_id).Bind(2, batch_id).Bind(3, now_ms);
    ANCHORD_RETURN_IF_ERROR(set_leaf.Run());
  }
  look_leaf.Reset();
  if (left_open.empty()) return AddBatchAndRoot(tx, b, batch_id, digests, now_ms);
  // An open batch left without leaves goes.
  ANCHORD_ASSIGN_OR_RETURN(
      Statement fewer, tx.Prepare("UPDATE batches SET leaf_count = leaf_count - ?2 WHERE id = ?1"));
  ANCHORD_ASSIGN_OR_RETURN(
      Statement drop,
      tx.Prepare("DELETE FROM batches WHERE id = ?1 AND length(root) = 0 AND NOT EXISTS (SELECT "
                 "1 FROM submissions INDEXED BY submissions_batch_leaves WHERE batch_id = ?1 AND "
                 "mode = 1 AND batch_id <> 0)"));
  for (const auto& [open, n] : left_open) {
    fewer.Reset();
    fewer.Bind(1, open).Bind(2, n);
    ANCHORD_RETURN_IF_ERROR(fewer.Run());
    drop.Reset();
    drop.Bind(1, open);
    ANCHORD_RETURN_IF_ERROR(drop.Run());
  }
  return AddBatchAndRoot(tx, b, batch_id, digests, now_ms);
}

namespace {

absl::StatusOr<int64_t> AddBatchAndRoot(ledger::Transaction& tx, const NewBatch& b,
                                        int64_t batch_id, const std::vector<std::string>& digests,
                                        int64_t now_ms) {
  ANCHORD_ASSIGN_OR_RETURN(std::string leaves, EncodeBatchLeaves(digests, b.nonces));
  ANCHORD_ASSIGN_OR_RETURN(
      Statement add_batch,
      tx.Prepare("INSERT INTO batches (id, provider, root, leaf_count, created_at, leaves) "
                 "VALUES (?6, ?1, ?2, ?3, ?4, ?5)"));
  add_batch.Bind(1, b.provider)
      .BindBlob(2, b.root)
      .Bind(3, static_cast<int64_t>(b.leaf_ids.size()))
      .Bind(4, now_ms)
      .BindBlob(5, leaves)
      .Bind(6, batch_id);
  ANCHORD_RETURN_IF_ERROR(add_batch.Run());
  ANCHORD_RETURN_IF_ERROR(AddRoot(tx, b, batch_id, now_ms));
  return batch_id;
}

absl::Status AddRoot(ledger::Transaction& tx, const NewBatch& b, int64_t batch_id, int64_t now_ms) {
  ANCHORD_ASSIGN_OR_RETURN(
      Statement add_root,
      tx.Prepare("INSERT INTO submissions (digest, provider, job, filename, size_bytes, "
                 "mime_type, source_path, state, next_attempt_at, created_at, updated_at, "
                 "mode, batch_id, leaf_count) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, ?8, "
                 "?8, 2, ?9, ?10)"));
  add_root.BindBlob(1, b.root)
      .Bind(2, b.provider)
      .Bind(3, b.root_file.job)
      .Bind(4, b.root_file.filename)
      .Bind(5, b.root_file.size_bytes)
      .Bind(6, b.root_file.mime_type)
      .Bind(7, b.root_file.source_path)
      .Bind(8, now_ms)
      .Bind(9, batch_id)
      .Bind(10, static_cast<int64_t>(b.leaf_ids.size()));
  return add_root.Run();
}

}  // namespace

absl::StatusOr<StoredBatch> ReadSqliteBatch(ledger::Session& session, int64_t batch_id) {
  ANCHORD_ASSIGN_OR_RETURN(Statement s,
                           session.Prepare("SELECT leaves, root FROM batches WHERE id = ?1"));
  s.Bind(1, batch_id);
  ANCHORD_ASSIGN_OR_RETURN(bool found, s.Step());
  if (!found) return absl::NotFoundError(absl::StrCat("merkle batch ", batch_id, " is missing"));
  StoredBatch out{s.ColumnText(0), s.ColumnText(1)};
  s.Reset();
  return out;
}

absl::Status DecideSqliteLeaves(ledger::Transaction& tx, int64_t root_id, SubState verdict) {
  // One row per batch instead of one per leaf (submitter_store_schema.h, EffectiveState). A
  // SUBMITTED batch's leaves are owed to the poller from its first leaf (handoff_next).
  ANCHORD_ASSIGN_OR_RETURN(
      Statement s,
      tx.Prepare("UPDATE batches SET leaves_state = ?2, handoff_next = CASE WHEN ?2 = 2 THEN "
                 "COALESCE((SELECT MIN(l.id) FROM submissions l INDEXED BY "
                 "submissions_batch_leaves WHERE l.batch_id = batches.id AND l.mode = 1 AND "
                 "l.batch_id <> 0), -1) ELSE -1 END WHERE id = (SELECT batch_id FROM submissions "
                 "WHERE id = ?1 AND mode = 2)"));
  s.Bind(1, root_id).Bind(2, static_cast<int64_t>(verdict));
  return s.Run();
}

absl::StatusOr<std::vector<OwedBatch>> SqliteBatchesOwed(ledger::Session& session) {
  ANCHORD_ASSIGN_OR_RETURN(Statement s,
                           session.Prepare("SELECT id, handoff_next FROM batches INDEXED BY "
                                           "batches_handoff WHERE handoff_next >= 0 ORDER BY id"));
  std::vector<OwedBatch> out;
  for (;;) {
    ANCHORD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back({s.ColumnInt(0), s.ColumnInt(1)});
  }
  return out;
}

absl::Status AdvanceSqliteLeafHandoffs(ledger::Transaction& tx, absl::btree_set<int64_t>* acked) {
  if (acked->empty()) return absl::OkStatus();
  ANCHORD_ASSIGN_OR_RETURN(std::vector<OwedBatch> owed, SqliteBatchesOwed(tx));
  if (owed.empty()) return absl::OkStatus();
  // Every leaf of the batch from next_leaf_id on: one written SUBMITTED on its own after it was
  // read out as owed (a new file of its digest) is passed over, its acknowledgement dropped.
  ANCHORD_ASSIGN_OR_RETURN(
      Statement leaves,
      tx.Prepare("SELECT id, state FROM submissions INDEXED BY submissions_batch_leaves WHERE "
                 "batch_id = ?1 AND mode = 1 AND batch_id <> 0 AND id >= ?2 ORDER BY id"));
  ANCHORD_ASSIGN_OR_RETURN(Statement set,
                           tx.Prepare("UPDATE batches SET handoff_next = ?2 WHERE id = ?1"));
  for (const OwedBatch& b : owed) {
    leaves.Reset();
    leaves.Bind(1, b.batch_id).Bind(2, b.next_leaf_id);
    int64_t next = -1;
    for (;;) {
      ANCHORD_ASSIGN_OR_RETURN(bool row, leaves.Step());
      if (!row) break;
      const int64_t id = leaves.ColumnInt(0);
      if (acked->erase(id) == 0 && leaves.ColumnInt(1) == 0) {
        next = id;
        break;
      }
    }
    if (next == b.next_leaf_id) continue;
    set.Reset();
    set.Bind(1, b.batch_id).Bind(2, next);
    ANCHORD_RETURN_IF_ERROR(set.Run());
  }
  leaves.Reset();
  return absl::OkStatus();
}

absl::StatusOr<absl::flat_hash_map<int64_t, SubState>> SqliteBatchVerdicts(
    ledger::Session& session) {
  ANCHORD_ASSIGN_OR_RETURN(
      Statement s, session.Prepare("SELECT id, leaves_state FROM batches WHERE leaves_state <> 0"));
  absl::flat_hash_map<int64_t, SubState> out;
  for (;;) {
    ANCHORD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out[s.ColumnInt(0)] = StateFromInt(s.ColumnInt(1));
  }
  return out;
}

std::string SqliteCountedBatch(absl::string_view alias) {
  return absl::StrCat("CASE WHEN ", alias, "state = 0 AND ", alias, "mode = 1 THEN ", alias,
                      "batch_id ELSE 0 END");
}

SubState SqliteCountedState(const absl::flat_hash_map<int64_t, SubState>& verdicts,
                            int64_t stored_state, int64_t batch) {
  if (batch != 0) {
    auto it = verdicts.find(batch);
    if (it != verdicts.end()) return it->second;
  }
  return StateFromInt(stored_state);
}

}  // namespace anchord::submitter
