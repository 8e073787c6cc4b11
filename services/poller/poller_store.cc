#include "services/poller/poller_store.h"

#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libs/common/status_macros.h"
#include "libs/common/log.h"
#include "libs/ledger/sqlite_db.h"
#include "services/poller/poller_store_counts.h"
#include "services/poller/poller_store_schema.h"
#include "libs/digest/stored_digest.h"
#include "services/poller/store_rows.h"

namespace anchord::poller {
namespace {

using ledger::SqliteDb;
using ledger::Statement;
using ledger::Transaction;

constexpr char kColumns[] =
    "seq, digest, provider, proof_id, state, certificate_url, verify_url, block_height, "
    "bitcoin_tx, submitted_at, confirmed_at, ots_size, failure_code, failure_message, "
    "failure_reason, provider_request_id, stalled, tracked_at, last_checked_at, updated_at, "
    "merkle_root, merkle_path, leaf_count, fallback_provider, fallback_sent";

absl::StatusOr<ProofRow> ReadRow(const Statement& s) {
  ProofRow r;
  r.seq = s.ColumnInt(0);
  ANCHORD_ASSIGN_OR_RETURN(r.digest, DigestFromColumn(s.ColumnText(1), "proofs.digest"));
  r.provider = s.ColumnText(2);
  r.proof_id = s.ColumnText(3);
  int state = static_cast<int>(s.ColumnInt(4));
  r.state = anchord::v1::DigestState_IsValid(state) ? static_cast<DigestState>(state)
                                                    : anchord::v1::DIGEST_STATE_PENDING;
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
  return r;
}

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
    std::vector<TrackOutcome> out;
    out.reserve(inputs.size());
    for (const TrackInput& in : inputs) {
      auto one = TrackOne(tx, in, now);
      if (!one.ok()) return one.status();
      out.push_back(std::move(*one));
    }
    ANCHORD_RETURN_IF_ERROR(tx.Commit());
    return out;
  }

  absl::StatusOr<std::optional<ProofRow>> Get(const Digest& digest,
                                              const std::string& provider) override {
    ledger::Session session(*db_);
    return GetRow(session, digest, provider);
  }

  absl::StatusOr<std::vector<ProofRow>> GetAll(const Digest& digest) override {
    ledger::Session session(*db_);
    auto st = session.Prepare(
        absl::StrCat("SELECT ", kColumns, " FROM proofs WHERE digest = ? ORDER BY seq"));
    if (!st.ok()) return st.status();
    st->BindBlob(1, digest.bytes());
    return Collect(session, *st);
  }

  absl::StatusOr<std::vector<ProofRow>> List(const ListFilter& filter, int64_t after_seq,
                                             int limit) override {
    std::string sql = absl::StrCat("SELECT ", kColumns, " FROM proofs p WHERE seq > ?");
    if (!filter.job.empty()) {
      absl::StrAppend(
          &sql, " AND EXISTS (SELECT 1 FROM files f WHERE f.digest = p.digest AND f.job = ?)");
    }
    if (filter.state != anchord::v1::DIGEST_STATE_UNSPECIFIED)
      absl::StrAppend(&sql, " AND state = ?");
    if (!filter.provider.empty()) absl::StrAppend(&sql, " AND provider = ?");
    if (!filter.with_leaves) absl::StrAppend(&sql, " AND length(merkle_root) = 0");
    if (!filter.digests.empty()) {
      std::vector<std::string> marks(filter.digests.size(), "?");
      absl::StrAppend(&sql, " AND digest IN (", absl::StrJoin(marks, ","), ")");
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
    for (const Digest& d : filter.digests) st->BindBlob(i++, d.bytes());
    st->Bind(i++, static_cast<int64_t>(limit));
    return Collect(session, *st, filter.with_files);
  }

  absl::StatusOr<std::vector<ProofRow>> PendingToCheck(const std::string& provider,
                                                       absl::Time tracked_before,
                                                       int limit) override {
    ledger::Session session(*db_);
    auto st = session.Prepare(absl::StrCat("SELECT ", kColumns,
                                           " FROM proofs WHERE provider = ? AND state = ? AND "
                                           "tracked_at < ? AND length(merkle_root) = 0"
                                           " ORDER BY last_checked_at, seq LIMIT ?"));
    if (!st.ok()) return st.status();
    st->Bind(1, provider).Bind(2, static_cast<int64_t>(kPending));
    st->Bind(3, ToDb(tracked_before)).Bind(4, static_cast<int64_t>(limit));
    return Collect(session, *st);
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
    auto st = session.Prepare(absl::StrCat(
        "SELECT ", kColumns,
        " FROM proofs WHERE provider = ? AND state = ? AND ots_size = 0 AND length(merkle_root) = 0"
        " ORDER BY last_checked_at, seq LIMIT ?"));
    if (!st.ok()) return st.status();
    st->Bind(1, provider).Bind(2, static_cast<int64_t>(kConfirmed));
    st->Bind(3, static_cast<int64_t>(limit));
    return Collect(session, *st);
  }

  absl::StatusOr<std::vector<ProofRow>> NewlyStalled(const std::string& provider,
                                                     absl::Time pending_before,
                                                     int limit) override {
    ledger::Session session(*db_);
    auto st = session.Prepare(absl::StrCat(
        "SELECT ", kColumns,
        " FROM proofs WHERE provider = ? AND state = ? AND stalled = 0 AND pending_since < ?"
        " AND length(merkle_root) = 0"
        " ORDER BY pending_since, seq LIMIT ?"));
    if (!st.ok()) return st.status();
    st->Bind(1, provider).Bind(2, static_cast<int64_t>(kPending));
    st->Bind(3, ToDb(pending_before)).Bind(4, static_cast<int64_t>(limit));
    return Collect(session, *st);
  }

  absl::StatusOr<std::optional<ProofRow>> MarkConfirmed(const Digest& digest,
                                                        const std::string& provider,
                                                        const ConfirmInput& in,
                                                        absl::Time now) override {
    return Update(digest, provider,
                  "UPDATE proofs SET state = ?3, certificate_url = CASE WHEN ?4 = '' THEN "
                  "certificate_url ELSE ?4 END, verify_url = CASE WHEN ?5 = '' THEN verify_url "
                  "ELSE ?5 END, block_height = ?6, bitcoin_tx = ?7, confirmed_at = ?8, "
                  "last_checked_at = ?9, updated_at = ?9, "
                  "ots = CASE WHEN length(?11) > 0 THEN ?11 ELSE ots END, "
                  "ots_size = CASE WHEN length(?11) > 0 THEN length(?11) ELSE ots_size END "
                  "WHERE digest = ?1 AND provider = ?2 AND state = ?10",
                  [&](Statement& s) {
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
                  "UPDATE proofs SET ots = ?3, ots_size = ?4, last_checked_at = ?5, "
                  "updated_at = ?5 WHERE digest = ?1 AND provider = ?2 AND state IN (?6, ?7)",
                  [&](Statement& s) {
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
    auto changed = Propagate(tx, root, provider, now);
    if (!changed.ok()) return changed.status();
    ANCHORD_RETURN_IF_ERROR(tx.Commit());
    return changed;
  }

  absl::StatusOr<std::vector<ProofRow>> SettleStrandedLeaves(const std::string& provider,
                                                             absl::Time now,
                                                             int max_roots) override {
    std::vector<ProofRow> roots;
    {
      ledger::Session session(*db_);
      auto st = session.Prepare(absl::StrCat(
          "SELECT ", kColumns,
          " FROM proofs WHERE provider = ?1 AND state <> ?2 AND leaf_count > 0 AND digest IN "
          "(SELECT merkle_root FROM proofs INDEXED BY proofs_pending_leaves WHERE provider = ?1 "
          "AND state = 4 AND length(merkle_root) > 0) ORDER BY seq LIMIT ?3"));
      if (!st.ok()) return st.status();
      st->Bind(1, provider).Bind(2, static_cast<int64_t>(kPending));
      st->Bind(3, static_cast<int64_t>(max_roots));
      auto rows = Collect(session, *st);
      if (!rows.ok()) return rows.status();
      roots = std::move(*rows);
    }
    std::vector<ProofRow> out;
    for (const ProofRow& root : roots) {
      auto changed = PropagateToLeaves(root.digest, provider, now);
      if (!changed.ok()) return changed.status();
      for (ProofRow& leaf : *changed) out.push_back(std::move(leaf));
    }
    return out;
  }

  absl::StatusOr<std::vector<ProofRow>> FallbacksDue(const std::string& provider,
                                                     int limit) override {
    ledger::Session session(*db_);
    auto st = session.Prepare(absl::StrCat(
        "SELECT ", kColumns,
        " FROM proofs WHERE provider = ? AND state = ? AND stalled = 1 AND fallback_sent = 0"
        " AND fallback_provider <> '' ORDER BY seq LIMIT ?"));
    if (!st.ok()) return st.status();
    st->Bind(1, provider).Bind(2, static_cast<int64_t>(kPending));
    st->Bind(3, static_cast<int64_t>(limit));
    return Collect(session, *st);
  }

  absl::Status MarkFallbackSent(const Digest& digest, const std::string& provider) override {
    ledger::Session session(*db_);
    auto st =
        session.Prepare("UPDATE proofs SET fallback_sent = 1 WHERE digest = ? AND provider = ?");
    if (!st.ok()) return st.status();
    st->BindBlob(1, digest.bytes()).Bind(2, provider);
    return st->Run();
  }

  absl::StatusOr<std::optional<ProofRow>> MarkFailed(
      const Digest& digest, const std::string& provider, int32_t code, const std::string& message,
      const std::string& reason, const std::string& request_id, absl::Time now) override {
    return Update(digest, provider,
                  "UPDATE proofs SET state = ?3, failure_code = ?4, failure_message = ?5, "
                  "failure_reason = ?6, provider_request_id = CASE WHEN ?7 = '' THEN "
                  "provider_request_id ELSE ?7 END, last_checked_at = ?8, updated_at = ?8 "
                  "WHERE digest = ?1 AND provider = ?2 AND state = ?9",
                  [&](Statement& s) {
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
                  "UPDATE proofs SET ots = ?3, ots_size = ?4, last_checked_at = ?5, "
                  "updated_at = ?5 WHERE digest = ?1 AND provider = ?2 AND state = ?6 "
                  "AND ots_size = 0",
                  [&](Statement& s) {
                    s.BindBlob(3, ots).Bind(4, static_cast<int64_t>(ots.size()));
                    s.Bind(5, ToDb(now)).Bind(6, static_cast<int64_t>(kConfirmed));
                  });
  }

  absl::StatusOr<std::optional<ProofRow>> MarkStalled(const Digest& digest,
                                                      const std::string& provider,
                                                      absl::Time now) override {
    return Update(digest, provider,
                  "UPDATE proofs SET stalled = 1 WHERE digest = ?1 AND provider = ?2 "
                  "AND state = ?3 AND stalled = 0",
                  [&](Statement& s) { s.Bind(3, static_cast<int64_t>(kPending)); });
  }

  absl::Status MarkChecked(const Digest& digest, const std::string& provider,
                           absl::Time now) override {
    ledger::Session session(*db_);
    auto st =
        session.Prepare("UPDATE proofs SET last_checked_at = ? WHERE digest = ? AND provider = ?");
    if (!st.ok()) return st.status();
    st->Bind(1, ToDb(now)).BindBlob(2, digest.bytes()).Bind(3, provider);
    return st->Run();
  }

  absl::StatusOr<std::optional<std::string>> GetOts(const Digest& digest,
                                                    const std::string& provider) override {
    ledger::Session session(*db_);
    std::string sql = "SELECT ots FROM proofs WHERE digest = ? AND ots_size > 0";
    if (!provider.empty()) sql += " AND provider = ?";
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

  absl::StatusOr<Summary> Summarize(const std::string& job) override {
    // The furthest state of each digest (over its providers), counted per state.
    std::string sql = "SELECT st, COUNT(*) FROM (SELECT digest, MAX(state) AS st FROM proofs p";
    if (!job.empty()) {
      sql += " WHERE EXISTS (SELECT 1 FROM files f WHERE f.digest = p.digest AND f.job = ?)";
    }
    sql += " GROUP BY digest) GROUP BY st";
    ledger::Session session(*db_);
    auto st = session.Prepare(sql);
    if (!st.ok()) return st.status();
    if (!job.empty()) st->Bind(1, job);
    Summary out;
    while (true) {
      auto row = st->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      int state = static_cast<int>(st->ColumnInt(0));
      if (!anchord::v1::DigestState_IsValid(state)) continue;
      out.digests_by_state[static_cast<DigestState>(state)] += st->ColumnInt(1);
      out.digests += st->ColumnInt(1);
    }
    return out;
  }

  absl::StatusOr<std::map<std::string, ProviderStats>> Stats() override {
    ledger::Session session(*db_);
    return ReadProviderStats(session);
  }

 private:
  // Runs in the caller's transaction. Leaves follow their root: state, fields, stalled flag, and an
  // ots size equal to what JoinProof produces (root .ots + path bytes).
  absl::StatusOr<std::vector<ProofRow>> Propagate(ledger::Transaction& tx, const Digest& root,
                                                  const std::string& provider, absl::Time now) {
    auto root_row = GetRow(tx, root, provider);
    if (!root_row.ok()) return root_row.status();
    std::vector<ProofRow> changed;
    if (!root_row->has_value()) return changed;
    const ProofRow& r = **root_row;
    auto upd = tx.Prepare(
        "UPDATE proofs SET state = ?3, proof_id = ?4, certificate_url = ?5, verify_url = ?6, "
        "block_height = ?7, bitcoin_tx = ?8, confirmed_at = ?9, failure_code = ?10, "
        "failure_message = ?11, failure_reason = ?12, stalled = ?13, "
        "ots_size = CASE WHEN ?14 > 0 THEN ?14 + length(merkle_path) ELSE 0 END, "
        "updated_at = ?15 WHERE merkle_root = ?1 AND provider = ?2 AND "
        "(state = ?16 OR (state = ?3 AND ots_size = 0 AND ?14 > 0))");
    if (!upd.ok()) return upd.status();
    upd->BindBlob(1, root.bytes()).Bind(2, provider).Bind(3, static_cast<int64_t>(r.state));
    upd->Bind(4, r.proof_id).Bind(5, r.certificate_url).Bind(6, r.verify_url);
    upd->Bind(7, r.block_height).Bind(8, r.bitcoin_tx).Bind(9, ToDb(r.confirmed_at));
    upd->Bind(10, static_cast<int64_t>(r.failure_code)).Bind(11, r.failure_message);
    upd->Bind(12, r.failure_reason).Bind(13, static_cast<int64_t>(r.stalled ? 1 : 0));
    upd->Bind(14, r.state == kConfirmed ? r.ots_size : 0).Bind(15, ToDb(now));
    upd->Bind(16, static_cast<int64_t>(kPending));
    ANCHORD_RETURN_IF_ERROR(upd->Run());
    if (tx.Changes() == 0) return changed;
    // Return the changed leaves as they are now, with their files (for events).
    auto after = tx.Prepare(absl::StrCat("SELECT ", kColumns,
                                         " FROM proofs WHERE merkle_root = ? AND provider = ? "
                                         "AND updated_at = ? ORDER BY seq"));
    if (!after.ok()) return after.status();
    after->BindBlob(1, root.bytes()).Bind(2, provider).Bind(3, ToDb(now));
    return Collect(tx, *after);
  }

  absl::StatusOr<std::vector<FileRow>> FilesOf(ledger::Session& session, const Digest& digest) {
    auto st = session.Prepare(
        "SELECT job, source_path, filename, size_bytes, mime_type FROM files WHERE digest = ? "
        "ORDER BY id");
    if (!st.ok()) return st.status();
    st->BindBlob(1, digest.bytes());
    std::vector<FileRow> out;
    while (true) {
      auto row = st->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      out.push_back(FileRow{st->ColumnText(0), st->ColumnText(1), st->ColumnText(2),
                            st->ColumnInt(3), st->ColumnText(4)});
    }
    return out;
  }

  // Reads every row of `st` (prepared in `session`) and attaches each proof's files.
  absl::StatusOr<std::vector<ProofRow>> Collect(ledger::Session& session, Statement& st,
                                                bool with_files = true) {
    std::vector<ProofRow> out;
    while (true) {
      auto row = st.Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      ANCHORD_ASSIGN_OR_RETURN(ProofRow r, ReadRow(st));
      out.push_back(std::move(r));
    }
    if (!with_files) return out;
    for (ProofRow& r : out) {
      auto files = FilesOf(session, r.digest);
      if (!files.ok()) return files.status();
      r.files = std::move(*files);
    }
    return out;
  }

  absl::StatusOr<std::optional<ProofRow>> GetRow(ledger::Session& session, const Digest& digest,
                                                 const std::string& provider) {
    std::string sql = absl::StrCat("SELECT ", kColumns, " FROM proofs WHERE digest = ?");
    if (!provider.empty()) sql += " AND provider = ?";
    sql += " ORDER BY seq LIMIT 1";
    auto st = session.Prepare(sql);
    if (!st.ok()) return st.status();
    st->BindBlob(1, digest.bytes());
    if (!provider.empty()) st->Bind(2, provider);
    auto rows = Collect(session, *st);
    if (!rows.ok()) return rows.status();
    if (rows->empty()) return std::optional<ProofRow>();
    return std::optional<ProofRow>(std::move(rows->front()));
  }

  // Runs a conditional single-row UPDATE (?1 = digest, ?2 = provider) in a transaction and
  // returns the row after it, or nullopt when the condition did not hold.
  template <typename BindFn>
  absl::StatusOr<std::optional<ProofRow>> Update(const Digest& digest, const std::string& provider,
                                                 const char* sql, BindFn bind) {
    Transaction tx(*db_);
    ANCHORD_RETURN_IF_ERROR(tx.begin_status());
    {
      auto st = tx.Prepare(sql);
      if (!st.ok()) return st.status();
      st->BindBlob(1, digest.bytes()).Bind(2, provider);
      bind(*st);
      ANCHORD_RETURN_IF_ERROR(st->Run());
    }
    if (tx.Changes() == 0) return std::optional<ProofRow>();
    auto row = GetRow(tx, digest, provider);
    if (!row.ok()) return row.status();
    ANCHORD_RETURN_IF_ERROR(tx.Commit());
    return row;
  }

  absl::StatusOr<TrackOutcome> TrackOne(ledger::Transaction& tx, const TrackInput& in,
                                        absl::Time now) {
    const ProofRow& p = in.proof;
    // SUBMITTED means "accepted by the provider, not yet followed": for the poller that is PENDING.
    int state = p.state == anchord::v1::DIGEST_STATE_SUBMITTED ? kPending : p.state;
    if (state != kPending && state != kConfirmed && state != kFailed) {
      return absl::InvalidArgumentError(
          "proof.state: must be SUBMITTED, PENDING, CONFIRMED or FAILED");
    }
    TrackOutcome out;
    auto existing = GetRow(tx, p.digest, p.provider);
    if (!existing.ok()) return existing.status();
    if (!existing->has_value()) {
      auto st = tx.Prepare(
          "INSERT INTO proofs (digest, provider, proof_id, state, certificate_url, verify_url, "
          "block_height, bitcoin_tx, submitted_at, confirmed_at, failure_code, failure_message, "
          "failure_reason, provider_request_id, tracked_at, pending_since, updated_at, "
          "merkle_root, merkle_path, leaf_count, fallback_provider, ots, ots_size) "
          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?15, "
          "?17, ?18, ?19, ?20, ?21, ?22)");
      if (!st.ok()) return st.status();
      absl::Time confirmed_at = p.confirmed_at;
      if (state == kConfirmed && confirmed_at == absl::InfinitePast()) confirmed_at = now;
      absl::Time pending_since = p.submitted_at != absl::InfinitePast() ? p.submitted_at : now;
      st->BindBlob(1, p.digest.bytes()).Bind(2, p.provider).Bind(3, p.proof_id);
      st->Bind(4, static_cast<int64_t>(state)).Bind(5, p.certificate_url).Bind(6, p.verify_url);
      st->Bind(7, p.block_height).Bind(8, p.bitcoin_tx).Bind(9, ToDb(p.submitted_at));
      st->Bind(10, state == kConfirmed ? ToDb(confirmed_at) : 0);
      st->Bind(11, static_cast<int64_t>(state == kFailed ? p.failure_code : 0));
      st->Bind(12, state == kFailed ? p.failure_message : std::string());
      st->Bind(13, state == kFailed ? p.failure_reason : std::string());
      st->Bind(14, p.provider_request_id).Bind(15, ToDb(now)).Bind(16, ToDb(pending_since));
      st->BindBlob(17, p.merkle_root).BindBlob(18, p.merkle_path).Bind(19, p.leaf_count);
      st->Bind(20, p.fallback_provider);
      if (in.evidence.empty()) {
        st->BindNull(21);
      } else {
        st->BindBlob(21, in.evidence);
      }
      st->Bind(22, static_cast<int64_t>(in.evidence.size()));
      ANCHORD_RETURN_IF_ERROR(st->Run());
      out.inserted = true;
      // A leaf whose root the poller already followed to its end takes the root's state now.
      if (!p.merkle_root.empty()) {
        ANCHORD_ASSIGN_OR_RETURN(const Digest root,
                                 Digest::FromBytes(p.merkle_root, "proof.merkle_root"));
        auto moved = Propagate(tx, root, p.provider, now);
        if (!moved.ok()) return moved.status();
        for (const ProofRow& m : *moved) {
          if (m.digest == p.digest) out.state_changed = m.state != kPending;
        }
      }
    } else {
      const ProofRow& old = **existing;
      if (old.state == kPending && state != kPending) {
        // Forward move only: a PENDING proof becomes CONFIRMED or FAILED.
        auto st = tx.Prepare(
            "UPDATE proofs SET state = ?3, proof_id = CASE WHEN proof_id = '' THEN ?4 ELSE "
            "proof_id END, certificate_url = CASE WHEN ?5 = '' THEN certificate_url ELSE ?5 END, "
            "verify_url = CASE WHEN ?6 = '' THEN verify_url ELSE ?6 END, block_height = ?7, "
            "bitcoin_tx = ?8, confirmed_at = ?9, failure_code = ?10, failure_message = ?11, "
            "failure_reason = ?12, provider_request_id = CASE WHEN provider_request_id = '' "
            "THEN ?13 ELSE provider_request_id END, updated_at = ?14 "
            "WHERE digest = ?1 AND provider = ?2 AND state = ?15");
        if (!st.ok()) return st.status();
        absl::Time confirmed_at = p.confirmed_at != absl::InfinitePast() ? p.confirmed_at : now;
        st->BindBlob(1, p.digest.bytes()).Bind(2, p.provider).Bind(3, static_cast<int64_t>(state));
        st->Bind(4, p.proof_id).Bind(5, p.certificate_url).Bind(6, p.verify_url);
        st->Bind(7, state == kConfirmed ? p.block_height : 0);
        st->Bind(8, state == kConfirmed ? p.bitcoin_tx : std::string());
        st->Bind(9, state == kConfirmed ? ToDb(confirmed_at) : 0);
        st->Bind(10, static_cast<int64_t>(state == kFailed ? p.failure_code : 0));
        st->Bind(11, state == kFailed ? p.failure_message : std::string());
        st->Bind(12, state == kFailed ? p.failure_reason : std::string());
        st->Bind(13, p.provider_request_id).Bind(14, ToDb(now));
        st->Bind(15, static_cast<int64_t>(kPending));
        ANCHORD_RETURN_IF_ERROR(st->Run());
        out.state_changed = tx.Changes() > 0;
      } else if (!p.proof_id.empty() && old.proof_id != p.proof_id) {
        // Same (digest, provider), different provider record: keep the first one (the provider
        // deduplicates by digest, so a second id points at the same anchoring).
        ANCHORD_LOG(Warning) << "hand-off for provider " << p.provider << " carries proof id "
                             << p.proof_id << ", keeping " << old.proof_id;
      }
    }
    for (const FileRow& f : in.files) {
      auto st = tx.Prepare(
          "INSERT OR IGNORE INTO files (digest, job, source_path, filename, size_bytes, "
          "mime_type) VALUES (?, ?, ?, ?, ?, ?)");
      if (!st.ok()) return st.status();
      st->BindBlob(1, p.digest.bytes()).Bind(2, f.job.empty() ? std::string("default") : f.job);
      st->Bind(3, f.source_path).Bind(4, f.filename).Bind(5, f.size_bytes).Bind(6, f.mime_type);
      ANCHORD_RETURN_IF_ERROR(st->Run());
    }
    auto after = GetRow(tx, p.digest, p.provider);
    if (!after.ok()) return after.status();
    if (!after->has_value()) return absl::InternalError("proof vanished inside its transaction");
    out.proof = std::move(**after);
    if (out.proof.leaf_count > 0 && out.proof.state != kPending) {
      auto moved = Propagate(tx, p.digest, p.provider, now);
      if (!moved.ok()) return moved.status();
      out.leaves_changed = std::move(*moved);
    }
    return out;
  }

  std::unique_ptr<SqliteDb> db_;
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
