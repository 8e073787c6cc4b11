#include "services/poller/poller_store_rows.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "libs/common/status_macros.h"
#include "libs/digest/stored_digest.h"
#include "libs/merkle/merkle.h"
#include "services/poller/poller_store_schema.h"
#include "services/poller/store_rows.h"

namespace anchord::poller {

using ledger::Statement;

absl::StatusOr<ProofRow> ReadProofRow(const Statement& s) {
  ProofRow r;
  r.seq = s.ColumnInt(0);
  ANCHORD_ASSIGN_OR_RETURN(r.digest, DigestFromColumn(s.ColumnText(1), "proofs.digest"));
  r.provider = s.ColumnText(2);
  r.proof_id = s.ColumnText(3);
  r.state = DigestStateFromDb(s.ColumnInt(4));
  r.certificate_url = s.ColumnText(5);
  r.verify_url = s.ColumnText(6);
  r.block_height = s.ColumnInt(7);
  r.bitcoin_tx = s.ColumnText(8);
  r.submitted_at = FromDb(s.ColumnInt(9));
  r.confirmed_at = FromDb(s.ColumnInt(10));
  r.ots_size = s.ColumnInt(11);
  r.failure_code = static_cast<int32_t>(s.ColumnInt(12));
  r.failure_message = s.ColumnText(13);
  r.failure_reason = s.ColumnText(14);
  r.provider_request_id = s.ColumnText(15);
  r.stalled = s.ColumnInt(16) != 0;
  r.tracked_at = FromDb(s.ColumnInt(17));
  r.last_checked_at = FromDb(s.ColumnInt(18));
  r.updated_at = FromDb(s.ColumnInt(19));
  r.merkle_root = s.ColumnText(20);
  r.merkle_path = s.ColumnText(21);
  r.leaf_count = s.ColumnInt(22);
  r.fallback_provider = s.ColumnText(23);
  r.fallback_sent = s.ColumnInt(24) != 0;
  r.leaf_index = s.ColumnInt(25);
  return r;
}

absl::StatusOr<std::vector<FileRow>> FilesOfSeq(ledger::Session& session, int64_t proof_seq) {
  std::vector<FileRow> out;
  ANCHORD_ASSIGN_OR_RETURN(
      Statement own,
      session.Prepare("SELECT files_kept, file_job, file_source_path, file_name, file_size, "
                      "file_mime_type FROM proofs WHERE seq = ?"));
  own.Bind(1, proof_seq);
  ANCHORD_ASSIGN_OR_RETURN(bool has_own, own.Step());
  const int64_t kept = has_own ? own.ColumnInt(0) : 0;
  if (kept != static_cast<int64_t>(FilesKept::kAllInFiles)) {
    out.push_back(FileRow{own.ColumnText(1), own.ColumnText(2), own.ColumnText(3), own.ColumnInt(4),
                          own.ColumnText(5)});
  }
  if (kept == static_cast<int64_t>(FilesKept::kOwnOnly)) return out;
  ANCHORD_ASSIGN_OR_RETURN(
      Statement st,
      session.Prepare("SELECT job, source_path, filename, size_bytes, mime_type FROM files WHERE "
                      "proof_seq = ? ORDER BY id"));
  st.Bind(1, proof_seq);
  while (true) {
    ANCHORD_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    FileRow f{st.ColumnText(0), st.ColumnText(1), st.ColumnText(2), st.ColumnInt(3),
              st.ColumnText(4)};
    // A row of this release keeps none equal to its own file in files; the check is free.
    if (!out.empty() && f.job == out.front().job && f.source_path == out.front().source_path) {
      continue;
    }
    out.push_back(std::move(f));
  }
  return out;
}

absl::StatusOr<int64_t> FilesSeqOf(ledger::Session& session, const Digest& digest) {
  ANCHORD_ASSIGN_OR_RETURN(Statement st,
                           session.Prepare(absl::StrCat("SELECT MIN(seq) FROM ", kProofsByDigest,
                                                        " WHERE ", DigestIs(1))));
  st.BindBlob(1, digest.bytes());
  ANCHORD_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row || st.ColumnIsNull(0)) return int64_t{0};
  return st.ColumnInt(0);
}

absl::StatusOr<std::vector<FileRow>> FilesOf(ledger::Session& session, const Digest& digest) {
  ANCHORD_ASSIGN_OR_RETURN(const int64_t seq, FilesSeqOf(session, digest));
  if (seq == 0) return std::vector<FileRow>();
  return FilesOfSeq(session, seq);
}

absl::StatusOr<std::vector<ProofRow>> CollectProofs(ledger::Session& session, Statement& st,
                                                    bool with_files) {
  std::vector<ProofRow> out;
  while (true) {
    ANCHORD_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    ANCHORD_ASSIGN_OR_RETURN(ProofRow r, ReadProofRow(st));
    out.push_back(std::move(r));
  }
  if (!with_files) return out;
  for (ProofRow& r : out) {
    ANCHORD_ASSIGN_OR_RETURN(r.files, FilesOf(session, r.digest));
  }
  return out;
}

absl::StatusOr<std::optional<ProofRow>> GetProofRow(ledger::Session& session, const Digest& digest,
                                                    const std::string& provider, bool with_files) {
  std::string sql = absl::StrCat("SELECT ", kSqliteProofColumns, " FROM ", kProofsByDigest,
                                 " WHERE ", DigestIs(1));
  if (!provider.empty()) sql += " AND provider = ?2";
  sql += " ORDER BY seq LIMIT 1";
  ANCHORD_ASSIGN_OR_RETURN(Statement st, session.Prepare(sql));
  st.BindBlob(1, digest.bytes());
  if (!provider.empty()) st.Bind(2, provider);
  ANCHORD_ASSIGN_OR_RETURN(std::vector<ProofRow> rows, CollectProofs(session, st, with_files));
  if (rows.empty()) return std::optional<ProofRow>();
  return std::optional<ProofRow>(std::move(rows.front()));
}

int64_t LeafOtsSize(const ProofRow& root, size_t path_bytes) {
  if (root.state != kConfirmed || root.ots_size <= 0) return 0;
  return root.ots_size + static_cast<int64_t>(path_bytes);
}

absl::StatusOr<std::vector<ProofRow>> PropagateRootToLeaves(ledger::Transaction& tx,
                                                            const ProofRow& r, absl::Time now) {
  // One SET for both kinds of leaf; a leaf changes only when it is PENDING, or in the root's
  // CONFIRMED state without the .ots the root now has. The changed rows are returned by each
  // UPDATE itself: read back later, a leaf moved to CONFIRMED with its .ots would no longer match.
  const std::string set = absl::StrCat(
      "SET state = ?3, proof_id = ?4, certificate_url = ?5, verify_url = ?6, "
      "block_height = ?7, bitcoin_tx = ?8, confirmed_at = ?9, failure_code = ?10, "
      "failure_message = ?11, failure_reason = ?12, stalled = ?13, "
      "ots_size = CASE WHEN ?14 > 0 THEN ?14 + length(merkle_path) + path_size ELSE 0 END, "
      "updated_at = ?15 WHERE provider = ?2 AND merkle_root = ?1 AND ");
  const std::string changes =
      absl::StrCat(" AND (state = ?16 OR (state = ?3 AND ots_size = 0 AND ?14 > 0)) RETURNING ",
                   kSqliteProofColumns);
  auto bind = [&](Statement& upd) {
    upd.BindBlob(1, r.digest.bytes()).Bind(2, r.provider).Bind(3, static_cast<int64_t>(r.state));
    upd.Bind(4, r.proof_id).Bind(5, r.certificate_url).Bind(6, r.verify_url);
    upd.Bind(7, r.block_height).Bind(8, r.bitcoin_tx).Bind(9, ToDb(r.confirmed_at));
    upd.Bind(10, static_cast<int64_t>(r.failure_code)).Bind(11, r.failure_message);
    upd.Bind(12, r.failure_reason).Bind(13, static_cast<int64_t>(r.stalled ? 1 : 0));
    upd.Bind(14, r.state == kConfirmed ? r.ots_size : 0).Bind(15, ToDb(now));
    upd.Bind(16, static_cast<int64_t>(kPending));
  };
  // Leaves with their own path: all in proofs_open_leaves, whose condition `kSqliteOpenLeaf` is
  // stated word for word (SQLite uses a partial index only for a query that states its
  // condition), so they are found by one index seek rather than a scan of the provider's proofs.
  ANCHORD_ASSIGN_OR_RETURN(
      Statement by_path, tx.Prepare(absl::StrCat("UPDATE proofs ", set, kSqliteOpenLeaf, changes)));
  bind(by_path);
  // With their files (for events).
  ANCHORD_ASSIGN_OR_RETURN(std::vector<ProofRow> changed, CollectProofs(tx, by_path));
  // Leaves of the batch form: the root's tree (merkle_trees: every leaf digest, 32 bytes each,
  // then the nonces) lists them, and each is found through proofs_by_digest: a seek per leaf of
  // the tree when the root changes (a few times in its life) instead of an index entry written
  // for each leaf at its hand-off. The tree is read once and bound whole: a query reading it from
  // its table for each leaf costs about 2.5 times as much (about 21 against 8-9 us per leaf with
  // 10,000 leaves). A root without a tree has no batch-form leaf.
  ANCHORD_ASSIGN_OR_RETURN(Statement tree,
                           tx.Prepare("SELECT leaves FROM merkle_trees WHERE root = ?1"));
  tree.BindBlob(1, r.digest.bytes());
  ANCHORD_ASSIGN_OR_RETURN(const bool has_tree, tree.Step());
  if (has_tree) {
    const std::string leaves = tree.ColumnText(0);
    tree.Reset();
    constexpr size_t kPerLeaf = merkle::kDigestSize + merkle::kNonceSize;
    ANCHORD_ASSIGN_OR_RETURN(
        Statement by_tree,
        tx.Prepare(absl::StrCat(
            "WITH RECURSIVE k (i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i + 1 < ?18), "
            "leaf (prefix) AS (SELECT substr(?17, i * ",
            merkle::kDigestSize, " + 1, 8) FROM k) UPDATE ", kProofsByDigest, " ", set,
            "substr(digest, 1, 8) IN (SELECT prefix FROM leaf) AND length(merkle_root) > 0 AND "
            "leaf_index >= 0 AND (state = 4 OR (state = 5 AND ots_size = 0))",
            changes)));
    bind(by_tree);
    by_tree.BindBlobView(17, leaves).Bind(18, static_cast<int64_t>(leaves.size() / kPerLeaf));
    ANCHORD_ASSIGN_OR_RETURN(std::vector<ProofRow> from_tree, CollectProofs(tx, by_tree));
    for (ProofRow& leaf : from_tree) changed.push_back(std::move(leaf));
  } else {
    tree.Reset();
  }
  // In seq order (RETURNING gives no order).
  std::sort(changed.begin(), changed.end(),
            [](const ProofRow& a, const ProofRow& b) { return a.seq < b.seq; });
  ANCHORD_ASSIGN_OR_RETURN(
      Statement caught_up,
      tx.Prepare(absl::StrCat("UPDATE ", kProofsByDigest, " SET leaves_behind = 0 WHERE ",
                              DigestIs(1), " AND provider = ?2 AND ", kSqliteLeavesBehind)));
  caught_up.BindBlob(1, r.digest.bytes()).Bind(2, r.provider);
  ANCHORD_RETURN_IF_ERROR(caught_up.Run());
  return changed;
}

}  // namespace anchord::poller
