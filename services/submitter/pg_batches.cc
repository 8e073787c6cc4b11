#include "services/submitter/pg_batches.h"

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "libs/common/status_macros.h"
#include "services/submitter/pg_owed_leaves.h"

namespace anchord::submitter {

using ledger::PgParams;
using ledger::PgResult;

absl::StatusOr<int64_t> SealPgBatch(ledger::PgConn& c, const NewBatch& b, int64_t now_ms) {
  if (b.leaf_ids.empty() || b.nonces.size() != b.leaf_ids.size() || b.root.size() != 32) {
    return absl::InvalidArgumentError("merkle batch: one nonce per leaf and a 32-byte root");
  }
  std::vector<int64_t> ids = b.leaf_ids;
  std::sort(ids.begin(), ids.end());
  if (std::adjacent_find(ids.begin(), ids.end()) != ids.end()) {
    return absl::AbortedError("merkle batch: a leaf row is given twice");
  }
  ANCHORD_ASSIGN_OR_RETURN(
      PgResult locked,
      c.Exec("SELECT id, digest FROM submissions WHERE id = ANY($1::bigint[]) AND mode = 1 AND "
             "batch_id = 0 AND state = 0 AND provider = $2 ORDER BY id FOR UPDATE",
             PgParams().AddIntArray(ids).AddBytes(b.provider)));
  if (static_cast<size_t>(locked.rows()) != ids.size()) {
    return absl::AbortedError("merkle batch: a leaf was batched or changed meanwhile");
  }
  std::map<int64_t, std::string> digest_of;
  for (int i = 0; i < locked.rows(); ++i) digest_of[locked.Int(i, 0)] = locked.Bytes(i, 1);
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
  ANCHORD_RETURN_IF_ERROR(
      c.Exec("INSERT INTO submissions (digest, provider, job, filename, size_bytes, "
             "mime_type, source_path, state, next_attempt_at, created_at, updated_at, "
             "mode, batch_id, leaf_count) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $8, "
             "$8, 2, $9, $10)",
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
          .status());
  // A leaf row takes only its batch id (one statement for the batch): nonce, path and root are
  // the batch row's.
  ANCHORD_ASSIGN_OR_RETURN(
      PgResult set,
      c.Exec("UPDATE submissions SET batch_id = $2, updated_at = $3 WHERE id = ANY($1::bigint[]) "
             "AND batch_id = 0",
             PgParams().AddIntArray(ids).Add(batch_id).Add(now_ms)));
  if (static_cast<size_t>(set.affected()) != ids.size()) {
    return absl::AbortedError("merkle batch: a leaf was batched or changed meanwhile");
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
