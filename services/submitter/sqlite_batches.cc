#include "services/submitter/sqlite_batches.h"

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "libs/common/status_macros.h"
#include "libs/ledger/sqlite_rows.h"
#include "services/submitter/store_rows.h"

namespace anchord::submitter {

using ledger::Statement;

namespace {

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

}  // namespace

absl::StatusOr<int64_t> SealSqliteBatch(ledger::Transaction& tx, const NewBatch& b,
                                        int64_t now_ms) {
  if (b.leaf_ids.empty() || b.nonces.size() != b.leaf_ids.size() || b.root.size() != 32) {
    return absl::InvalidArgumentError("merkle batch: one nonce per leaf and a 32-byte root");
  }
  // Every leaf still waits (else another batcher won: ABORTED) and takes the batch's id in the
  // same statement; their digests, in the batch's order, are the batch row's leaves. The batch
  // row is written after its leaves, so the leaves are marked with the id it will get: the
  // transaction holds the write lock, and the next id is the one after the highest ever given
  // (AUTOINCREMENT's rule). One statement per leaf instead of a check and then an update.
  std::optional<Statement> next_id;
  ANCHORD_ASSIGN_OR_RETURN(const int64_t batch_id,
                           ledger::NextAutoincrementKey(tx, next_id, "batches", "id"));
  ANCHORD_ASSIGN_OR_RETURN(bool as_range, SealWaitingRange(tx, b, batch_id, now_ms));
  if (as_range) {
    std::vector<std::string> digests;
    digests.reserve(b.leaf_digests.size());
    for (const Digest& d : b.leaf_digests) digests.push_back(d.raw());
    return AddBatchAndRoot(tx, b, batch_id, digests, now_ms);
  }
  // With the caller's digests the statement needs no RETURNING, which SQLite runs by collecting
  // the rows in a temporary table before the first is returned: a cost per leaf.
  const bool given = b.leaf_digests.size() == b.leaf_ids.size();
  ANCHORD_ASSIGN_OR_RETURN(
      Statement set_leaf,
      tx.Prepare(absl::StrCat(
          "UPDATE submissions SET batch_id = ?3, updated_at = ?4 WHERE id = ?1 AND mode = 1 AND "
          "batch_id = 0 AND state = 0 AND provider = ?2",
          given ? " AND digest = ?5" : " RETURNING digest")));
  std::vector<std::string> digests;
  digests.reserve(b.leaf_ids.size());
  auto lost = [](int64_t leaf_id) {
    return absl::AbortedError(absl::StrCat("merkle batch: leaf row ", leaf_id,
                                           " was batched, changed or given twice meanwhile"));
  };
  for (size_t i = 0; i < b.leaf_ids.size(); ++i) {
    const int64_t leaf_id = b.leaf_ids[i];
    set_leaf.Reset();
    set_leaf.Bind(1, leaf_id).Bind(2, b.provider).Bind(3, batch_id).Bind(4, now_ms);
    if (given) {
      set_leaf.BindBlob(5, b.leaf_digests[i].bytes());
      ANCHORD_RETURN_IF_ERROR(set_leaf.Run());
      if (tx.Changes() != 1) return lost(leaf_id);
      digests.push_back(b.leaf_digests[i].raw());
      continue;
    }
    ANCHORD_ASSIGN_OR_RETURN(bool found, set_leaf.Step());
    if (!found) return lost(leaf_id);
    digests.push_back(set_leaf.ColumnText(0));
    ANCHORD_ASSIGN_OR_RETURN(bool more, set_leaf.Step());  // runs the statement to its end
    if (more) return absl::InternalError("merkle batch: a leaf id matched two rows");
  }
  set_leaf.Reset();
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
  ANCHORD_RETURN_IF_ERROR(add_root.Run());
  return batch_id;
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
