#include "services/submitter/pg_batches.h"

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "libs/common/status_macros.h"
#include "libs/digest/stored_digest.h"
#include "services/submitter/store_rows.h"
#include "services/submitter/pg_owed_leaves.h"

namespace anchord::submitter {

using ledger::PgParams;
using ledger::PgResult;

absl::StatusOr<OpenBatchTally::Open> PgOpenBatches::FindOpen(const std::string& provider) {
  ANCHORD_ASSIGN_OR_RETURN(
      PgResult r, c_.Exec("SELECT id, leaf_count FROM batches WHERE provider = $1 AND opener = $2 "
                          "AND length(root) = 0 ORDER BY id DESC LIMIT 1 FOR UPDATE",
                          PgParams().AddBytes(provider).AddBytes(opener_)));
  Open o;
  if (r.rows() > 0) {
    o.id = r.Int(0, 0);
    o.count = o.stored = r.Int(0, 1);
  }
  return o;
}

absl::StatusOr<int64_t> PgOpenBatches::OpenNew(const std::string& provider) {
  ANCHORD_ASSIGN_OR_RETURN(
      PgResult r, c_.Exec("INSERT INTO batches (provider, root, leaf_count, created_at, leaves, "
                          "opener) VALUES ($1, ''::bytea, 0, $2, ''::bytea, $3) RETURNING id",
                          PgParams().AddBytes(provider).Add(now_ms_).AddBytes(opener_)));
  return r.Int(0, 0);
}

absl::Status PgOpenBatches::Finish() {
  const std::vector<std::pair<int64_t, int64_t>> added = Added();
  if (added.empty()) return absl::OkStatus();
  return c_
      .Exec(
          "UPDATE batches b SET leaf_count = b.leaf_count + u.n FROM unnest($1::bigint[], "
          "$2::bigint[]) AS u(id, n) WHERE b.id = u.id",
          PgParams().AddIntArrayPairs(added))
      .status();
}

namespace {

// The oldest open batch of $1 holding any leaf: found by its leaves, not by its count, so that an
// open batch left without leaves can never hold up the ones after it.
constexpr char kOldestOpenBatch[] =
    "FROM batches b WHERE b.provider = $1 AND length(b.root) = 0 AND EXISTS (SELECT 1 FROM "
    "submissions s WHERE s.batch_id = b.id AND s.batch_id <> 0 AND s.mode = 1) ORDER BY b.id "
    "LIMIT 1";

// Leaves of provider $1 stored with batch id 0 (by an older release) and not yet sealed.
constexpr char kLegacyWaiting[] = "provider = $1 AND mode = 1 AND batch_id = 0 AND state = 0";

}  // namespace

absl::StatusOr<SubmitterStore::Waiting> PgUnbatchedWaiting(ledger::PgConn& c,
                                                           const std::string& provider) {
  SubmitterStore::Waiting w;
  ANCHORD_ASSIGN_OR_RETURN(
      PgResult legacy,
      c.Exec(
          absl::StrCat("SELECT COUNT(*), MIN(created_at) FROM submissions WHERE ", kLegacyWaiting),
          PgParams().AddBytes(provider)));
  if (legacy.rows() > 0 && legacy.Int(0, 0) > 0) {
    w.count = legacy.Int(0, 0);
    if (!legacy.IsNull(0, 1)) w.oldest = FromMs(legacy.Int(0, 1));
    return w;
  }
  ANCHORD_ASSIGN_OR_RETURN(
      PgResult open, c.Exec(absl::StrCat("SELECT b.leaf_count, b.created_at ", kOldestOpenBatch),
                            PgParams().AddBytes(provider)));
  if (open.rows() > 0) {
    w.count = open.Int(0, 0);
    w.oldest = FromMs(open.Int(0, 1));
  }
  return w;
}

absl::StatusOr<std::vector<WaitingLeaf>> PgUnbatchedLeaves(ledger::PgConn& c,
                                                           const std::string& provider, int limit) {
  std::vector<WaitingLeaf> out;
  auto read = [&](const PgResult& r) -> absl::Status {
    out.reserve(static_cast<size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) {
      WaitingLeaf& l = out.emplace_back();
      l.id = r.Int(i, 0);
      ANCHORD_ASSIGN_OR_RETURN(l.digest, DigestFromColumn(r.Bytes(i, 1), "submissions.digest"));
      l.job = r.Bytes(i, 2);
    }
    return absl::OkStatus();
  };
  ANCHORD_ASSIGN_OR_RETURN(PgResult legacy,
                           c.Exec(absl::StrCat("SELECT id, digest, job FROM submissions WHERE ",
                                               kLegacyWaiting, " ORDER BY id LIMIT $2"),
                                  PgParams().AddBytes(provider).Add(static_cast<int64_t>(limit))));
  ANCHORD_RETURN_IF_ERROR(read(legacy));
  if (!out.empty()) return out;
  ANCHORD_ASSIGN_OR_RETURN(
      PgResult open,
      c.Exec(absl::StrCat("SELECT id, digest, job FROM submissions WHERE batch_id = (SELECT b.id ",
                          kOldestOpenBatch,
                          ") AND batch_id <> 0 AND mode = 1 AND state = 0 ORDER BY id LIMIT $2"),
             PgParams().AddBytes(provider).Add(static_cast<int64_t>(limit))));
  ANCHORD_RETURN_IF_ERROR(read(open));
  return out;
}

namespace {

// The root row of batch `batch_id` (QUEUED, kRoot).
absl::Status AddPgRoot(ledger::PgConn& c, const NewBatch& b, int64_t batch_id, int64_t now_ms) {
  return c
      .Exec(
          "INSERT INTO submissions (digest, provider, job, filename, size_bytes, mime_type, "
          "source_path, state, next_attempt_at, created_at, updated_at, mode, batch_id, "
          "leaf_count) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8, $8, 2, $9, $10)",
          PgParams()
              .AddBytes(b.root)
              .AddBytes(b.provider)
              .AddBytes(b.root_file.job)
              .AddBytes(b.root_file.filename)
              .Add(b.root_file.size_bytes)
              .AddBytes(b.root_file.mime_type)
              .AddBytes(b.root_file.source_path)
              .Add(now_ms)
              .Add(batch_id)
              .Add(static_cast<int64_t>(b.leaf_ids.size())))
      .status();
}

// When `b`'s leaves (in id order) are exactly those of an open batch of its provider, each still
// waiting: seals that batch (its row takes the root, the leaves and their count, and the time of
// the seal) and adds the root row; returns the batch id. 0 (nothing written) otherwise: a batch
// with leaves after `b`'s (stored after the batcher read them, or beyond its limit) is not one,
// and its first leaves are then moved into a batch of their own.
absl::StatusOr<int64_t> SealOpenPgBatch(ledger::PgConn& c, const NewBatch& b, int64_t now_ms) {
  const size_t n = b.leaf_ids.size();
  for (size_t i = 1; i < n; ++i) {
    if (b.leaf_ids[i] <= b.leaf_ids[i - 1]) return 0;
  }
  // The batch row first, as the intake locks it: the intake's leaves of it are then all
  // committed and read below, or come after the seal (into another batch).
  ANCHORD_ASSIGN_OR_RETURN(
      PgResult batch,
      c.Exec("SELECT b.id FROM batches b WHERE b.id = (SELECT batch_id FROM submissions WHERE id "
             "= $1) AND b.provider = $2 AND length(b.root) = 0 FOR UPDATE",
             PgParams().Add(b.leaf_ids.front()).AddBytes(b.provider)));
  if (batch.rows() == 0) return 0;
  const int64_t batch_id = batch.Int(0, 0);
  ANCHORD_ASSIGN_OR_RETURN(
      PgResult leaves,
      c.Exec("SELECT id, digest FROM submissions WHERE batch_id = $1 AND batch_id <> 0 AND mode = "
             "1 AND state = 0 ORDER BY id",
             PgParams().Add(batch_id)));
  if (static_cast<size_t>(leaves.rows()) != n) return 0;
  const bool given = b.leaf_digests.size() == n;
  std::vector<std::string> digests;
  digests.reserve(n);
  for (int i = 0; i < leaves.rows(); ++i) {
    if (leaves.Int(i, 0) != b.leaf_ids[static_cast<size_t>(i)]) return 0;
    digests.push_back(leaves.Bytes(i, 1));
    if (given && digests.back() != b.leaf_digests[static_cast<size_t>(i)].bytes()) return 0;
  }
  ANCHORD_ASSIGN_OR_RETURN(std::string encoded, EncodeBatchLeaves(digests, b.nonces));
  ANCHORD_RETURN_IF_ERROR(
      c.Exec("UPDATE batches SET root = $2, leaf_count = $3, created_at = $4, leaves = $5 WHERE "
             "id = $1 AND length(root) = 0",
             PgParams()
                 .Add(batch_id)
                 .AddBytes(b.root)
                 .Add(static_cast<int64_t>(n))
                 .Add(now_ms)
                 .AddBytes(encoded))
          .status());
  ANCHORD_RETURN_IF_ERROR(AddPgRoot(c, b, batch_id, now_ms));
  return batch_id;
}

}  // namespace

absl::StatusOr<int64_t> SealPgBatch(ledger::PgConn& c, const NewBatch& b, int64_t now_ms) {
  if (b.leaf_ids.empty() || b.nonces.size() != b.leaf_ids.size() || b.root.size() != 32) {
    return absl::InvalidArgumentError("merkle batch: one nonce per leaf and a 32-byte root");
  }
  ANCHORD_ASSIGN_OR_RETURN(const int64_t open_id, SealOpenPgBatch(c, b, now_ms));
  if (open_id != 0) return open_id;
  std::vector<int64_t> ids = b.leaf_ids;
  std::sort(ids.begin(), ids.end());
  if (std::adjacent_find(ids.begin(), ids.end()) != ids.end()) {
    return absl::AbortedError("merkle batch: a leaf row is given twice");
  }
  // Leaves stored with batch id 0, or some of an open batch's: their open batches are locked
  // first (in id order, as the intake locks the one it fills), then the leaves.
  ANCHORD_ASSIGN_OR_RETURN(
      PgResult open,
      c.Exec("SELECT id FROM batches WHERE id IN (SELECT batch_id FROM submissions WHERE id = "
             "ANY($1::bigint[]) AND batch_id <> 0) AND length(root) = 0 ORDER BY id FOR UPDATE",
             PgParams().AddIntArray(ids)));
  std::vector<int64_t> open_ids;
  for (int i = 0; i < open.rows(); ++i) open_ids.push_back(open.Int(i, 0));
  ANCHORD_ASSIGN_OR_RETURN(
      PgResult locked,
      c.Exec("SELECT id, digest, batch_id FROM submissions WHERE id = ANY($1::bigint[]) AND mode "
             "= 1 AND (batch_id = 0 OR batch_id = ANY($3::bigint[])) AND state = 0 AND provider = "
             "$2 ORDER BY id FOR UPDATE",
             PgParams().AddIntArray(ids).AddBytes(b.provider).AddIntArray(open_ids)));
  if (static_cast<size_t>(locked.rows()) != ids.size()) {
    return absl::AbortedError("merkle batch: a leaf was batched or changed meanwhile");
  }
  std::map<int64_t, std::string> digest_of;
  std::map<int64_t, int64_t> taken_from;  // open batch -> its leaves moved out
  for (int i = 0; i < locked.rows(); ++i) {
    digest_of[locked.Int(i, 0)] = locked.Bytes(i, 1);
    if (locked.Int(i, 2) != 0) ++taken_from[locked.Int(i, 2)];
  }
  std::vector<std::string> digests;  // in the batch's (tree) order
  digests.reserve(b.leaf_ids.size());
  for (int64_t id : b.leaf_ids) digests.push_back(digest_of[id]);
  ANCHORD_ASSIGN_OR_RETURN(std::string leaves, EncodeBatchLeaves(digests, b.nonces));
  ANCHORD_ASSIGN_OR_RETURN(
      PgResult added, c.Exec("INSERT INTO batches (provider, root, leaf_count, created_at, leaves) "
                             "VALUES ($1, $2, $3, $4, $5) RETURNING id",
                             PgParams()
                                 .AddBytes(b.provider)
                                 .AddBytes(b.root)
                                 .Add(static_cast<int64_t>(b.leaf_ids.size()))
                                 .Add(now_ms)
                                 .AddBytes(leaves)));
  const int64_t batch_id = added.Int(0, 0);
  ANCHORD_RETURN_IF_ERROR(AddPgRoot(c, b, batch_id, now_ms));
  // A leaf row takes only its batch id (one statement for the batch): nonce, path and root are
  // the batch row's.
  ANCHORD_ASSIGN_OR_RETURN(
      PgResult set,
      c.Exec("UPDATE submissions SET batch_id = $2, updated_at = $3 WHERE id = ANY($1::bigint[]) "
             "AND (batch_id = 0 OR batch_id = ANY($4::bigint[]))",
             PgParams().AddIntArray(ids).Add(batch_id).Add(now_ms).AddIntArray(open_ids)));
  if (static_cast<size_t>(set.affected()) != ids.size()) {
    return absl::AbortedError("merkle batch: a leaf was batched or changed meanwhile");
  }
  for (const auto& [open_id, moved] : taken_from) {
    ANCHORD_RETURN_IF_ERROR(c.Exec("UPDATE batches SET leaf_count = leaf_count - $2 WHERE id = $1",
                                   PgParams().Add(open_id).Add(moved))
                                .status());
  }
  return batch_id;
}

absl::StatusOr<StoredBatch> ReadPgBatch(ledger::PgConn& c, int64_t batch_id) {
  ANCHORD_ASSIGN_OR_RETURN(PgResult r, c.Exec("SELECT leaves, root FROM batches WHERE id = $1",
                                              PgParams().Add(batch_id)));
  if (r.rows() == 0) {
    return absl::NotFoundError(absl::StrCat("merkle batch ", batch_id, " is missing"));
  }
  return StoredBatch{r.Bytes(0, 0), r.Bytes(0, 1)};
}

absl::Status SubmitPgLeaves(ledger::PgConn& c, int64_t root_id, int64_t now_ms) {
  // Each leaf row changes by a few bytes rather than gaining a copy of the root's record, which
  // readers take from the root (batch_leaves.h). It is written handed off as of this change (SET
  // reads the old change_seq): the batch row owes its leaves to the poller instead
  // (pg_owed_leaves.h), and the leaf takes no entry in the rows' hand-off index.
  ANCHORD_RETURN_IF_ERROR(
      c.Exec("UPDATE submissions SET state = 2, updated_at = $2, change_seq = change_seq + 1, "
             "handed_off_seq = change_seq + 1, error_canonical = 0 WHERE mode = 1 AND batch_id "
             "<> 0 AND batch_id = (SELECT batch_id FROM submissions WHERE id = $1 AND mode = 2)",
             PgParams().Add(root_id).Add(now_ms))
          .status());
  return PgOwedLeaves::OweLeavesOfRootIn(c, root_id);
}

}  // namespace anchord::submitter
