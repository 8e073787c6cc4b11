#include "services/poller/poller_store.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libs/common/status_macros.h"
#include "libs/ledger/sqlite_db.h"
#include "services/poller/poller_store_counts.h"
#include "services/poller/poller_store_rows.h"
#include "services/poller/poller_store_schema.h"
#include "services/poller/poller_store_track.h"
#include "services/poller/store_rows.h"
#include "services/poller/tree_cache.h"

namespace anchord::poller {
namespace {

using ledger::SqliteDb;
using ledger::Statement;
using ledger::Transaction;

class SqlitePollerStore final : public PollerStore {
 public:
  explicit SqlitePollerStore(std::unique_ptr<SqliteDb> db) : db_(std::move(db)) {}

  absl::Status Init(const SqlitePollerStoreOptions& options) {
    {
      ledger::Session session(*db_);
      ANCHORD_RETURN_IF_ERROR(ApplySqlitePollerTuning(session, options));
      ANCHORD_RETURN_IF_ERROR(InitSqlitePollerSchema(session));
    }
    Transaction tx(*db_);
    return InitProofCounts(tx);
  }

  // PollerStore
  absl::StatusOr<std::vector<TrackOutcome>> Track(const std::vector<TrackInput>& inputs,
                                                  absl::Time now) override {
    Transaction tx(*db_);
    ANCHORD_RETURN_IF_ERROR(tx.begin_status());
    absl::MutexLock lock(&known_mu_);
    ANCHORD_ASSIGN_OR_RETURN(std::vector<TrackOutcome> out,
                             TrackInSqlite(tx, inputs, now, &known_));
    ANCHORD_RETURN_IF_ERROR(tx.Commit());
    known_.Committed();
    return out;
  }

  absl::StatusOr<std::optional<ProofRow>> Get(const Digest& digest,
                                              const std::string& provider) override {
    ledger::Session session(*db_);
    return GetProofRow(session, digest, provider);
  }

  absl::StatusOr<std::vector<ProofRow>> GetAll(const Digest& digest) override {
    ledger::Session session(*db_);
    auto st =
        session.Prepare(absl::StrCat("SELECT ", kSqliteProofColumns, " FROM ", kProofsByDigest,
                                     " WHERE ", DigestIs(1), " ORDER BY seq"));
    if (!st.ok()) return st.status();
    st->BindBlob(1, digest.bytes());
    return CollectProofs(session, *st);
  }

  absl::StatusOr<std::vector<ProofRow>> List(const ListFilter& filter, int64_t after_seq,
                                             int limit) override {
    // With digests, the rows are found through proofs_by_digest (kProofsByDigest): one seek per
    // digest's 8-byte prefix (a prefix shared by another digest is dropped by `digest IN`), where
    // the seq order would scan the table.
    std::string sql = absl::StrCat("SELECT ", kSqliteProofColumns, " FROM proofs AS p",
                                   filter.digests.empty() ? "" : " INDEXED BY proofs_by_digest",
                                   " WHERE seq > ?");
    if (!filter.job.empty()) {
      absl::StrAppend(&sql, " AND ", kSqliteHasJobFile);
    }
    if (filter.state != anchord::v1::DIGEST_STATE_UNSPECIFIED)
      absl::StrAppend(&sql, " AND state = ?");
    if (!filter.provider.empty()) absl::StrAppend(&sql, " AND provider = ?");
    if (!filter.with_leaves) absl::StrAppend(&sql, " AND length(merkle_root) = 0");
    if (!filter.digests.empty()) {
      std::vector<std::string> marks(filter.digests.size(), "?");
      std::vector<std::string> prefixes(filter.digests.size(), "substr(?, 1, 8)");
      absl::StrAppend(&sql, " AND substr(digest, 1, 8) IN (", absl::StrJoin(prefixes, ","),
                      ") AND digest IN (", absl::StrJoin(marks, ","), ")");
    }
    absl::StrAppend(&sql, " ORDER BY seq LIMIT ?");
    ledger::Session session(*db_);
    auto st = session.Prepare(sql);
    if (!st.ok()) return st.status();
    int i = 1;
    st->Bind(i++, after_seq);
    if (!filter.job.empty()) st->Bind(i++, filter.job);
    if (filter.state != anchord::v1::DIGEST_STATE_UNSPECIFIED) {
      st->Bind(i++, static_cast<int64_t>(filter.state));
    }
    if (!filter.provider.empty()) st->Bind(i++, filter.provider);
    for (int pass = 0; pass < 2; ++pass) {
      for (const Digest& d : filter.digests) st->BindBlob(i++, d.bytes());
    }
    st->Bind(i++, static_cast<int64_t>(limit));
    return CollectProofs(session, *st, filter.with_files);
  }

  absl::StatusOr<std::vector<ProofRow>> PendingToCheck(const std::string& provider,
                                                       absl::Time tracked_before,
                                                       int limit) override {
    ledger::Session session(*db_);
    auto st = session.Prepare(absl::StrCat("SELECT ", kSqliteProofColumns,
                                           " FROM proofs WHERE provider = ? AND state = ? AND "
                                           "tracked_at < ? AND length(merkle_root) = 0"
                                           " ORDER BY last_checked_at, seq LIMIT ?"));
    if (!st.ok()) return st.status();
    st->Bind(1, provider).Bind(2, static_cast<int64_t>(kPending));
    st->Bind(3, ToDb(tracked_before)).Bind(4, static_cast<int64_t>(limit));
    return CollectProofs(session, *st);
  }

  absl::StatusOr<std::vector<ProofRow>> ClaimChecks(const std::string& provider,
                                                    std::vector<ProofRow> candidates,
                                                    const std::string& owner, absl::Time now,
                                                    absl::Time until) override {
    Transaction tx(*db_);
    ANCHORD_RETURN_IF_ERROR(tx.begin_status());
    auto st = tx.Prepare(
        "UPDATE proofs SET check_owner = ?2, check_until = ?3 WHERE seq = ?1 AND provider = ?5 "
        "AND (check_until <= ?4 OR check_owner = ?2) AND last_checked_at = ?6");
    if (!st.ok()) return st.status();
    std::vector<ProofRow> out;
    for (ProofRow& row : candidates) {
      st->Reset();
      st->Bind(1, row.seq).Bind(2, owner).Bind(3, ToDb(until)).Bind(4, ToDb(now));
      st->Bind(5, provider).Bind(6, ToDb(row.last_checked_at));
      ANCHORD_RETURN_IF_ERROR(st->Run());
      if (tx.Changes() > 0) out.push_back(std::move(row));
    }
    ANCHORD_RETURN_IF_ERROR(tx.Commit());
    return out;
  }

  absl::StatusOr<std::vector<ProofRow>> ConfirmedWithoutOts(const std::string& provider,
                                                            int limit) override {
    ledger::Session session(*db_);
    static_assert(kConfirmed == 5);  // kSqliteOtsDue's literal
    auto st = session.Prepare(
        absl::StrCat("SELECT ", kSqliteProofColumns,
                     " FROM proofs INDEXED BY proofs_ots_due WHERE provider = ? AND ",
                     kSqliteOtsDue, " ORDER BY last_checked_at, seq LIMIT ?"));
    if (!st.ok()) return st.status();
    st->Bind(1, provider).Bind(2, static_cast<int64_t>(limit));
    return CollectProofs(session, *st);
  }

  absl::StatusOr<std::vector<ProofRow>> NewlyStalled(const std::string& provider,
                                                     absl::Time pending_before,
                                                     int limit) override {
    ledger::Session session(*db_);
    auto st = session.Prepare(absl::StrCat(
        "SELECT ", kSqliteProofColumns,
        " FROM proofs INDEXED BY proofs_stall_roots WHERE provider = ? AND state = ? AND "
        "stalled = 0 AND pending_since < ? AND length(merkle_root) = 0"
        " ORDER BY pending_since, seq LIMIT ?"));
    if (!st.ok()) return st.status();
    st->Bind(1, provider).Bind(2, static_cast<int64_t>(kPending));
    st->Bind(3, ToDb(pending_before)).Bind(4, static_cast<int64_t>(limit));
    return CollectProofs(session, *st);
  }

  absl::StatusOr<std::optional<ProofRow>> MarkConfirmed(const Digest& digest,
                                                        const std::string& provider,
                                                        const ConfirmInput& in,
                                                        absl::Time now) override {
    return Update(digest, provider,
                  "SET state = ?3, certificate_url = CASE WHEN ?4 = '' THEN "
                  "certificate_url ELSE ?4 END, verify_url = CASE WHEN ?5 = '' THEN verify_url "
                  "ELSE ?5 END, block_height = ?6, bitcoin_tx = ?7, confirmed_at = ?8, "
                  "last_checked_at = ?9, updated_at = ?9, "
                  "ots = CASE WHEN length(?11) > 0 THEN ?11 ELSE ots END, "
                  "ots_size = CASE WHEN length(?11) > 0 THEN length(?11) ELSE ots_size END",
                  "provider = ?2 AND state = ?10", [&](Statement& s) {
                    s.Bind(3, static_cast<int64_t>(kConfirmed));
                    s.Bind(4, in.certificate_url).Bind(5, in.verify_url);
                    s.Bind(6, in.block_height).Bind(7, in.bitcoin_tx);
                    s.Bind(8,
                           ToDb(in.confirmed_at != absl::InfinitePast() ? in.confirmed_at : now));
                    s.Bind(9, ToDb(now)).Bind(10, static_cast<int64_t>(kPending));
                    s.BindBlob(11, in.ots);
                  });
  }

  absl::StatusOr<std::optional<ProofRow>> ReplaceOts(const Digest& digest,
                                                     const std::string& provider,
                                                     const std::string& ots,
                                                     absl::Time now) override {
    if (ots.empty()) return absl::InvalidArgumentError("ots: must not be empty");
    return Update(digest, provider,
                  "SET ots = ?3, ots_size = ?4, last_checked_at = ?5, "
                  "updated_at = ?5",
                  "provider = ?2 AND state IN (?6, ?7)", [&](Statement& s) {
                    s.BindBlob(3, ots).Bind(4, static_cast<int64_t>(ots.size()));
                    s.Bind(5, ToDb(now)).Bind(6, static_cast<int64_t>(kPending));
                    s.Bind(7, static_cast<int64_t>(kConfirmed));
                  });
  }

  absl::StatusOr<std::vector<ProofRow>> PropagateToLeaves(const Digest& root,
                                                          const std::string& provider,
                                                          absl::Time now) override {
    Transaction tx(*db_);
    ANCHORD_RETURN_IF_ERROR(tx.begin_status());
    ANCHORD_ASSIGN_OR_RETURN(std::optional<ProofRow> root_row,
                             GetProofRow(tx, root, provider, /*with_files=*/false));
    std::vector<ProofRow> changed;
    if (root_row.has_value()) {
      ANCHORD_ASSIGN_OR_RETURN(changed, PropagateRootToLeaves(tx, *root_row, now));
    }
    ANCHORD_RETURN_IF_ERROR(tx.Commit());
    return changed;
  }

  absl::StatusOr<std::vector<ProofRow>> SettleStrandedLeaves(const std::string& provider,
                                                             absl::Time now,
                                                             int max_roots) override {
    std::vector<ProofRow> roots, behind;
    {  // the session ends before the propagations' transactions
      ledger::Session session(*db_);
      ANCHORD_ASSIGN_OR_RETURN(roots, RootsWithOpenLeaves(session, provider));
      // Roots whose batch-form leaves may lag (proofs_leaves_behind: no index holds those
      // leaves; nearly always empty).
      auto st = session.Prepare(absl::StrCat("SELECT ", kSqliteProofColumns,
                                             " FROM proofs INDEXED BY proofs_leaves_behind WHERE "
                                             "provider = ?1 AND ",
                                             kSqliteLeavesBehind, " ORDER BY seq LIMIT ?2"));
      if (!st.ok()) return st.status();
      st->Bind(1, provider).Bind(2, static_cast<int64_t>(max_roots));
      ANCHORD_ASSIGN_OR_RETURN(behind, CollectProofs(session, *st));
    }
    return SettleRoots(*this, std::move(roots), std::move(behind), provider, now, max_roots);
  }

  absl::StatusOr<std::vector<ProofRow>> FallbacksDue(const std::string& provider,
                                                     int limit) override {
    ledger::Session session(*db_);
    auto st = session.Prepare(
        absl::StrCat("SELECT ", kSqliteProofColumns,
                     " FROM proofs INDEXED BY proofs_fallback_due WHERE provider = ? AND ",
                     kSqliteFallbackDue, " ORDER BY seq LIMIT ?"));
    if (!st.ok()) return st.status();
    st->Bind(1, provider).Bind(2, static_cast<int64_t>(limit));
    return CollectProofs(session, *st);
  }

  absl::Status MarkFallbackSent(const Digest& digest, const std::string& provider) override {
    ledger::Session session(*db_);
    auto st =
        session.Prepare(absl::StrCat("UPDATE ", kProofsByDigest, " SET fallback_sent = 1 WHERE ",
                                     DigestIs(1), " AND provider = ?2"));
    if (!st.ok()) return st.status();
    st->BindBlob(1, digest.bytes()).Bind(2, provider);
    return st->Run();
  }

  absl::StatusOr<std::optional<ProofRow>> MarkFailed(
      const Digest& digest, const std::string& provider, int32_t code, const std::string& message,
      const std::string& reason, const std::string& request_id, absl::Time now) override {
    return Update(digest, provider,
                  "SET state = ?3, failure_code = ?4, failure_message = ?5, "
                  "failure_reason = ?6, provider_request_id = CASE WHEN ?7 = '' THEN "
                  "provider_request_id ELSE ?7 END, last_checked_at = ?8, updated_at = ?8",
                  "provider = ?2 AND state = ?9", [&](Statement& s) {
                    s.Bind(3, static_cast<int64_t>(kFailed)).Bind(4, static_cast<int64_t>(code));
                    s.Bind(5, message).Bind(6, reason).Bind(7, request_id);
                    s.Bind(8, ToDb(now)).Bind(9, static_cast<int64_t>(kPending));
                  });
  }

  absl::StatusOr<std::optional<ProofRow>> StoreOts(const Digest& digest,
                                                   const std::string& provider,
                                                   const std::string& ots,
                                                   absl::Time now) override {
    if (ots.empty()) return absl::InvalidArgumentError("ots: must not be empty");
    return Update(digest, provider,
                  "SET ots = ?3, ots_size = ?4, last_checked_at = ?5, "
                  "updated_at = ?5",
                  "provider = ?2 AND state = ?6 "
                  "AND ots_size = 0",
                  [&](Statement& s) {
                    s.BindBlob(3, ots).Bind(4, static_cast<int64_t>(ots.size()));
                    s.Bind(5, ToDb(now)).Bind(6, static_cast<int64_t>(kConfirmed));
                  });
  }

  absl::StatusOr<std::optional<ProofRow>> MarkStalled(const Digest& digest,
                                                      const std::string& provider,
                                                      absl::Time now) override {
    return Update(digest, provider, "SET stalled = 1",
                  "provider = ?2 "
                  "AND state = ?3 AND stalled = 0",
                  [&](Statement& s) { s.Bind(3, static_cast<int64_t>(kPending)); });
  }

  absl::Status MarkCheckedAll(const std::vector<CheckedProof>& checked) override {
    if (checked.empty()) return absl::OkStatus();
    Transaction tx(*db_);
    ANCHORD_RETURN_IF_ERROR(tx.begin_status());
    auto st =
        tx.Prepare(absl::StrCat("UPDATE ", kProofsByDigest, " SET last_checked_at = ?3 WHERE ",
                                DigestIs(1), " AND provider = ?2"));
    if (!st.ok()) return st.status();
    for (const CheckedProof& c : checked) {
      st->Reset();
      st->BindBlob(1, c.digest.bytes()).Bind(2, c.provider).Bind(3, ToDb(c.at));
      ANCHORD_RETURN_IF_ERROR(st->Run());
    }
    return tx.Commit();
  }

  absl::StatusOr<std::optional<std::string>> GetOts(const Digest& digest,
                                                    const std::string& provider) override {
    ledger::Session session(*db_);
    std::string sql = absl::StrCat("SELECT ots FROM ", kProofsByDigest, " WHERE ", DigestIs(1),
                                   " AND ots_size > 0");
    if (!provider.empty()) sql += " AND provider = ?2";
    sql += " ORDER BY seq LIMIT 1";
    auto st = session.Prepare(sql);
    if (!st.ok()) return st.status();
    st->BindBlob(1, digest.bytes());
    if (!provider.empty()) st->Bind(2, provider);
    auto row = st->Step();
    if (!row.ok()) return row.status();
    if (!*row) return std::optional<std::string>();
    return std::optional<std::string>(st->ColumnText(0));
  }

  absl::StatusOr<std::shared_ptr<const merkle::SealedBatch>> TreeOf(const Digest& root) override {
    return trees_.Get(root, [&]() -> absl::StatusOr<std::optional<std::string>> {
      ledger::Session session(*db_);
      ANCHORD_ASSIGN_OR_RETURN(Statement st,
                               session.Prepare("SELECT leaves FROM merkle_trees WHERE root = ?"));
      st.BindBlob(1, root.bytes());
      ANCHORD_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) return std::optional<std::string>();
      return std::optional<std::string>(st.ColumnText(0));
    });
  }

  absl::StatusOr<Summary> Summarize(const std::string& job) override {
    // One read transaction: the counts and the several-row digests are read from one snapshot.
    ledger::Snapshot snapshot(*db_);
    return SummarizeSqlite(snapshot, job);
  }

  absl::StatusOr<std::map<std::string, ProviderStats>> Stats() override {
    ledger::Session session(*db_);
    return ReadProviderStats(session);
  }

 private:
  // Runs a conditional single-row UPDATE of the proof (?1 = digest, ?2 = provider) in a
  // transaction and returns the row after it, or nullopt when the condition did not hold. `set`
  // is the statement's SET clause, `where` its condition besides the digest's (added here, found
  // through proofs_by_digest).
  template <typename BindFn>
  absl::StatusOr<std::optional<ProofRow>> Update(const Digest& digest, const std::string& provider,
                                                 absl::string_view set, absl::string_view where,
                                                 BindFn bind) {
    Transaction tx(*db_);
    ANCHORD_RETURN_IF_ERROR(tx.begin_status());
    {
      auto st = tx.Prepare(absl::StrCat("UPDATE ", kProofsByDigest, " ", set, " WHERE ",
                                        DigestIs(1), " AND ", where));
      if (!st.ok()) return st.status();
      st->BindBlob(1, digest.bytes()).Bind(2, provider);
      bind(*st);
      ANCHORD_RETURN_IF_ERROR(st->Run());
    }
    if (tx.Changes() == 0) return std::optional<ProofRow>();
    auto row = GetProofRow(tx, digest, provider);
    if (!row.ok()) return row.status();
    ANCHORD_RETURN_IF_ERROR(tx.Commit());
    return row;
  }

  std::unique_ptr<SqliteDb> db_;
  // The prefixes of the digests proofs holds, for Track (ledger/prefix_filter.h): a batch's new
  // leaves are not looked up one by one. Up to kKnownPrefixRows proofs (10-20 bytes each; the
  // filter turns itself off above that and every digest is looked up).
  static constexpr int64_t kKnownPrefixRows = 2'000'000;
  // Final roots (not PENDING) with a PENDING leaf of their own path (proofs_open_leaves): such a
  // leaf's propagation missed it (a leaf handed off before its root arrived final, a database of
  // an older release). The index is walked from root to root (one seek each, never over a root's
  // leaves), at most kRootsPerWalk roots a call, resumed after the last one at the next call and
  // from the start once the walk reaches the end: a call's work is bounded by that, not by the
  // number of pending leaves (a scan of every pending leaf cost 0.3 s a round at 1,000,000 of
  // them, bench/RESULTS.md issue 11 session 29), and a stranded leaf is still found within
  // (roots with open leaves) / kRootsPerWalk calls.
  absl::StatusOr<std::vector<ProofRow>> RootsWithOpenLeaves(ledger::Session& session,
                                                            const std::string& provider) {
    ANCHORD_ASSIGN_OR_RETURN(
        Statement next,
        session.Prepare(absl::StrCat("SELECT merkle_root FROM proofs INDEXED BY proofs_open_leaves "
                                     "WHERE provider = ?1 AND merkle_root > ?2 AND ",
                                     kSqliteOpenLeaf, " ORDER BY merkle_root LIMIT 1")));
    ANCHORD_ASSIGN_OR_RETURN(
        Statement pending_leaf,
        session.Prepare(absl::StrCat("SELECT 1 FROM proofs INDEXED BY proofs_open_leaves "
                                     "WHERE provider = ?1 AND merkle_root = ?2 AND state = ?3 AND ",
                                     kSqliteOpenLeaf, " LIMIT 1")));
    std::string cursor;
    {
      absl::MutexLock lock(&walk_mu_);
      cursor = open_leaves_walk_[provider];
    }
    std::vector<ProofRow> out;
    int walked = 0;
    bool reached_end = false;
    while (walked < kRootsPerWalk) {
      next.Reset();
      next.Bind(1, provider).BindBlob(2, cursor);
      ANCHORD_ASSIGN_OR_RETURN(const bool row, next.Step());
      if (!row) {
        reached_end = true;
        break;
      }
      cursor = next.ColumnText(0);
      ++walked;
      auto root = Digest::FromBytes(cursor, "proofs.merkle_root");
      if (!root.ok()) continue;  // not a digest: no root row can match it
      ANCHORD_ASSIGN_OR_RETURN(std::optional<ProofRow> row_of_root,
                               GetProofRow(session, *root, provider, /*with_files=*/false));
      if (!row_of_root.has_value() || row_of_root->state == kPending ||
          row_of_root->leaf_count <= 0) {
        continue;
      }
      pending_leaf.Reset();
      pending_leaf.Bind(1, provider).BindBlob(2, cursor).Bind(3, static_cast<int64_t>(kPending));
      ANCHORD_ASSIGN_OR_RETURN(const bool has_pending, pending_leaf.Step());
      if (has_pending) out.push_back(*std::move(row_of_root));
    }
    absl::MutexLock lock(&walk_mu_);
    open_leaves_walk_[provider] = reached_end ? std::string() : cursor;
    return out;
  }

  static constexpr int kRootsPerWalk = 256;
  absl::Mutex walk_mu_;
  // Per provider, the root the walk of proofs_open_leaves stopped after ("": from the start).
  std::map<std::string, std::string> open_leaves_walk_ ABSL_GUARDED_BY(walk_mu_);
  absl::Mutex known_mu_;  // taken inside a transaction (after the connection's lock)
  ledger::PrefixFilter known_ ABSL_GUARDED_BY(known_mu_){"proofs", "seq", "digest",
                                                         kKnownPrefixRows};
  TreeCache trees_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<PollerStore>> OpenSqlitePollerStore(
    const std::string& path, const SqlitePollerStoreOptions& options) {
  auto db = SqliteDb::Open(path);
  if (!db.ok()) return db.status();
  auto store = std::make_unique<SqlitePollerStore>(std::move(*db));
  ANCHORD_RETURN_IF_ERROR(store->Init(options));
  return std::unique_ptr<PollerStore>(std::move(store));
}

// The token is opaque to callers; its "p1:" prefix lets the format change later without
// misreading an old token.
std::string EncodePageToken(int64_t after_seq) {
  return absl::WebSafeBase64Escape(absl::StrCat("p1:", after_seq));
}

absl::StatusOr<int64_t> DecodePageToken(const std::string& token) {
  std::string raw;
  int64_t seq = 0;
  if (token.size() > 64 || !absl::WebSafeBase64Unescape(token, &raw) || raw.rfind("p1:", 0) != 0 ||
      !absl::SimpleAtoi(absl::string_view(raw).substr(3), &seq) || seq < 0) {
    return absl::InvalidArgumentError("page_token: not a token returned by ListProofs");
  }
  return seq;
}

}  // namespace anchord::poller
