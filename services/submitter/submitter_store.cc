#include "services/submitter/submitter_store.h"

#include <algorithm>
#include <atomic>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "libs/ledger/sqlite_db.h"
#include "libs/ledger/sqlite_rows.h"
#include "libs/common/status_macros.h"
#include "libs/digest/stored_digest.h"
#include "services/submitter/batch_leaves.h"
#include "services/submitter/sqlite_batches.h"
#include "services/submitter/sqlite_summary.h"
#include "services/submitter/store_rows.h"
#include "services/submitter/submitter_store_intake.h"
#include "services/submitter/submitter_store_schema.h"

namespace anchord::submitter {

const char* SubStateName(SubState s) {
  switch (s) {
    case SubState::kQueued:
      return "QUEUED";
    case SubState::kSubmitting:
      return "SUBMITTING";
    case SubState::kSubmitted:
      return "SUBMITTED";
    case SubState::kFailed:
      return "FAILED";
  }
  return "UNKNOWN";
}

absl::StatusOr<std::vector<Submission>> SubmitterStore::PendingHandoffExcept(int limit,
                                                                             const RowIds& skip) {
  // Every skipped row may come first (rows in flight are a few windows at most).
  const int extra = static_cast<int>(std::min<size_t>(skip.size(), 1 << 20));
  absl::StatusOr<std::vector<Submission>> rows = PendingHandoff(std::max(limit, 0) + extra);
  if (!rows.ok()) return rows;
  DropSkipped(&*rows, skip);
  if (rows->size() > static_cast<size_t>(std::max(limit, 0))) rows->resize(std::max(limit, 0));
  return rows;
}

void SubmitterStore::DropSkipped(std::vector<Submission>* rows, const RowIds& skip) {
  if (skip.empty()) return;
  rows->erase(std::remove_if(rows->begin(), rows->end(),
                             [&](const Submission& r) { return skip.count(r.id) > 0; }),
              rows->end());
}

namespace {

using ledger::SqliteDb;
using ledger::Statement;
using ledger::Transaction;

// The columns ReadRow reads, for a query FROM submissions (not aliased), with `state` and
// `handed_off_seq` as the expressions of the row's.
std::string ColsWith(absl::string_view state, absl::string_view handed_off_seq) {
  return absl::StrCat(
      "id, digest, provider, job, filename, size_bytes, mime_type, source_path, ", state,
      ", idempotency_key, body, proof_id, record_state, certificate_url, verify_url, "
      "block_height, bitcoin_tx, provider_created_at, confirmed_at, attempts, next_attempt_at, "
      "error_canonical, error_code, error_message, error_request_id, request_id, created_at, "
      "updated_at, change_seq, ",
      handed_off_seq,
      ", evidence, mode, batch_id, nonce, merkle_path, merkle_root, leaf_count, "
      "fallback_provider, files_kept");
}

// Every row as readers see it: a sealed leaf's state is its batch's (EffectiveState), and a leaf
// of a SUBMITTED batch is handed off once its batch's hand-off is past it (sqlite_batches.h).
const std::string& Cols() {
  static const std::string* const cols = new std::string(ColsWith(
      EffectiveState("submissions."),
      "(CASE WHEN state = 0 AND mode = 1 AND batch_id <> 0 AND COALESCE((SELECT "
      "lb.leaves_state = 2 AND (lb.handoff_next < 0 OR lb.handoff_next > submissions.id) FROM "
      "batches lb WHERE lb.id = submissions.batch_id), 0) THEN change_seq ELSE handed_off_seq "
      "END)"));
  return *cols;
}

// FROM and WHERE of a query for the refs of the digest bound as ?1: a digest's files hang off its
// first submissions row (refs.sub_id, see submitter_store_intake.cc).
std::string RefsOfDigest() {
  return absl::StrCat("FROM refs WHERE sub_id = (SELECT MIN(id) FROM ", kDigestIndex, " WHERE ",
                      DigestIs(1), ")");
}

// A digest's files: `own` (its rows' own file) first unless they are all in refs, then `in_refs`
// (what refs holds for it, in id order) without a file equal to `own` (a row of this release
// keeps none there; the check costs nothing where refs holds nothing).
std::vector<FileRef> FilesOf(int64_t files_kept, const FileRef& own, std::vector<FileRef> in_refs) {
  if (files_kept == static_cast<int64_t>(FilesKept::kAllInRefs)) return in_refs;
  std::vector<FileRef> out;
  out.reserve(1 + in_refs.size());
  out.push_back(own);
  for (FileRef& f : in_refs) {
    if (f.job != own.job || f.source_path != own.source_path) out.push_back(std::move(f));
  }
  return out;
}

constexpr char kMarkPreparedSql[] =
    "UPDATE submissions SET state = 1, idempotency_key = ?2, body = ?3, updated_at = ?4 "
    "WHERE id = ?1";

absl::StatusOr<Submission> ReadRow(const Statement& s) {
  Submission r;
  r.id = s.ColumnInt(0);
  ANCHORD_ASSIGN_OR_RETURN(r.digest, DigestFromColumn(s.ColumnText(1), "submissions.digest"));
  r.provider = s.ColumnText(2);
  r.file.job = s.ColumnText(3);
  r.file.filename = s.ColumnText(4);
  r.file.size_bytes = s.ColumnInt(5);
  r.file.mime_type = s.ColumnText(6);
  r.file.source_path = s.ColumnText(7);
  r.state = StateFromInt(s.ColumnInt(8));
  r.idempotency_key = s.ColumnText(9);
  r.body = s.ColumnText(10);
  r.record.proof_id = s.ColumnText(11);
  r.record.record_state = static_cast<int>(s.ColumnInt(12));
  r.record.certificate_url = s.ColumnText(13);
  r.record.verify_url = s.ColumnText(14);
  r.record.block_height = s.ColumnInt(15);
  r.record.bitcoin_tx = s.ColumnText(16);
  r.record.provider_created_at = FromMs(s.ColumnInt(17));
  r.record.confirmed_at = FromMs(s.ColumnInt(18));
  r.attempts = static_cast<int>(s.ColumnInt(19));
  r.next_attempt_at = FromMs(s.ColumnInt(20));
  r.error_canonical = static_cast<int>(s.ColumnInt(21));
  r.error_code = s.ColumnText(22);
  r.error_message = s.ColumnText(23);
  r.error_request_id = s.ColumnText(24);
  r.request_id = s.ColumnText(25);
  r.created_at = FromMs(s.ColumnInt(26));
  r.updated_at = FromMs(s.ColumnInt(27));
  r.change_seq = s.ColumnInt(28);
  r.handed_off_seq = s.ColumnInt(29);
  r.record.evidence = s.ColumnText(30);
  const int64_t mode = s.ColumnInt(31);
  r.mode = mode == 1 ? RowMode::kLeaf : mode == 2 ? RowMode::kRoot : RowMode::kPerFile;
  r.batch_id = s.ColumnInt(32);
  r.nonce = s.ColumnText(33);
  r.merkle_path = s.ColumnText(34);
  r.merkle_root = s.ColumnText(35);
  r.leaf_count = s.ColumnInt(36);
  r.fallback_provider = s.ColumnText(37);
  r.files_kept = s.ColumnInt(38);
  return r;
}

// ColsWith("2", "handed_off_seq") as ReadThinLeaf reads it, each column at its place, the ones it
// does not read given as constants: SQLite decodes every column a query selects, and the
// batch-form hand-off reads thousands of leaves a window.
const std::string& ThinLeafCols() {
  static const std::string* const cols = new std::string(
      "id, digest, provider, job, filename, size_bytes, mime_type, source_path, 2, '', '', '', 0, "
      "'', '', 0, '', 0, 0, 0, 0, 0, '', '', '', '', 0, 0, change_seq, handed_off_seq, '', mode, "
      "batch_id, '', merkle_path, '', 0, '', files_kept");
  return *cols;
}

// A row of Cols() read thin (Submission::thin) when it is a SUBMITTED leaf of a batch sealed by
// this release (no path of its own): the batch-form hand-off needs only its identity, version,
// batch and files (its own, which RefsOfRows gives without a read when they are all it has), so
// none of the rest is decoded, and its path and a copy of the root's record are not derived
// (LeafDetails::Fill). Nothing is read into `r` for any other row (false).
absl::StatusOr<bool> ReadThinLeaf(const Statement& s, Submission* r) {
  if (s.ColumnInt(31) != static_cast<int64_t>(RowMode::kLeaf) || s.ColumnInt(32) == 0 ||
      StateFromInt(s.ColumnInt(8)) != SubState::kSubmitted || !s.ColumnText(34).empty()) {
    return false;
  }
  r->id = s.ColumnInt(0);
  ANCHORD_ASSIGN_OR_RETURN(r->digest, DigestFromColumn(s.ColumnText(1), "submissions.digest"));
  r->provider = s.ColumnText(2);
  r->state = SubState::kSubmitted;
  r->mode = RowMode::kLeaf;
  r->batch_id = s.ColumnInt(32);
  r->change_seq = s.ColumnInt(28);
  r->handed_off_seq = s.ColumnInt(29);
  r->files_kept = s.ColumnInt(38);
  if (r->files_kept != static_cast<int64_t>(FilesKept::kAllInRefs)) {
    r->file.job = s.ColumnText(3);
    r->file.filename = s.ColumnText(4);
    r->file.size_bytes = s.ColumnInt(5);
    r->file.mime_type = s.ColumnText(6);
    r->file.source_path = s.ColumnText(7);
  }
  r->thin = true;
  return true;
}

class SqliteSubmitterStore final : public SubmitterStore {
 public:
  explicit SqliteSubmitterStore(std::unique_ptr<SqliteDb> db) : db_(std::move(db)) {}

  // `path`: the database's file, opened again for the reader connection once the schema is there.
  absl::Status Init(const std::string& path) {
    {
      ledger::Session session(*db_);
      // A statement over many rows (a batch's leaves sealed, a run of acknowledgements marked)
      // keeps the pages it changes in a statement journal until it ends; past 64 KiB SQLite
      // spills it to a temporary file, disk writes of nothing durable. In memory it stays (a few
      // MiB for the largest batch), as do the sorters of the summary's queries.
      ANCHORD_RETURN_IF_ERROR(session.Exec("PRAGMA temp_store = MEMORY"));
      ANCHORD_RETURN_IF_ERROR(InitSqliteSubmitterSchema(session));
    }
    ANCHORD_ASSIGN_OR_RETURN(reader_, SqliteDb::Open(path));
    ledger::Session session(*reader_);
    return session.Exec("PRAGMA temp_store = MEMORY");
  }

  absl::StatusOr<std::vector<InsertResult>> InsertBatch(const std::vector<NewItem>& items,
                                                        absl::Time now) override {
    Transaction tx(*db_);
    ANCHORD_RETURN_IF_ERROR(tx.begin_status());
    absl::MutexLock lock(&known_mu_);
    ANCHORD_ASSIGN_OR_RETURN(std::vector<InsertResult> out,
                             InsertIntakeItems(tx, items, now, leaves_per_batch_.load(), &known_));
    ANCHORD_RETURN_IF_ERROR(tx.Commit());
    known_.Committed();
    return out;
  }

  absl::StatusOr<int64_t> CountBacklog() override {
    ledger::Session session(*db_);
    ANCHORD_ASSIGN_OR_RETURN(Statement s, session.Prepare(kSqliteBacklogQuery));
    ANCHORD_ASSIGN_OR_RETURN(bool row, s.Step());
    return row ? s.ColumnInt(0) : 0;
  }

  absl::StatusOr<std::vector<BacklogCount>> CountByProviderState() override {
    ledger::Session session(*db_);
    ANCHORD_ASSIGN_OR_RETURN(
        Statement s,
        session.Prepare(absl::StrCat("SELECT provider, state, ", SqliteCountedBatch(""),
                                     " AS b, COUNT(*) FROM submissions GROUP BY provider, state, "
                                     "b")));
    ANCHORD_ASSIGN_OR_RETURN(auto verdicts, SqliteBatchVerdicts(session));
    std::map<std::pair<std::string, SubState>, int64_t> counts;
    for (;;) {
      ANCHORD_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      counts[{s.ColumnText(0), SqliteCountedState(verdicts, s.ColumnInt(1), s.ColumnInt(2))}] +=
          s.ColumnInt(3);
    }
    std::vector<BacklogCount> out;
    for (const auto& [key, n] : counts) out.push_back({key.first, key.second, n});
    return out;
  }

  absl::StatusOr<std::vector<Submission>> ClaimBatch(const std::string& provider,
                                                     const std::string& owner, absl::Time now,
                                                     absl::Time lease_until, int limit) override {
    Transaction tx(*db_);
    ANCHORD_RETURN_IF_ERROR(tx.begin_status());
    // BEGIN IMMEDIATE makes select-then-update atomic here; see the schema notes (in
    // submitter_store_schema.cc) for PostgreSQL.
    ANCHORD_ASSIGN_OR_RETURN(
        Statement pick,
        tx.Prepare("SELECT id FROM submissions WHERE provider = ?1 AND state IN (0, 1) AND "
                   "next_attempt_at <= ?2 AND lease_until <= ?2 AND mode <> 1 ORDER BY id "
                   "LIMIT ?3"));
    pick.Bind(1, provider).Bind(2, ToMs(now)).Bind(3, static_cast<int64_t>(std::max(1, limit)));
    std::vector<int64_t> ids;
    for (;;) {
      ANCHORD_ASSIGN_OR_RETURN(bool found, pick.Step());
      if (!found) break;
      ids.push_back(pick.ColumnInt(0));
    }
    std::vector<Submission> out;
    if (ids.empty()) return out;
    ANCHORD_ASSIGN_OR_RETURN(
        Statement lease,
        tx.Prepare("UPDATE submissions SET lease_owner = ?2, lease_until = ?3 WHERE id = ?1"));
    for (int64_t id : ids) {
      lease.Reset();
      lease.Bind(1, id).Bind(2, owner).Bind(3, ToMs(lease_until));
      ANCHORD_RETURN_IF_ERROR(lease.Run());
      ANCHORD_ASSIGN_OR_RETURN(std::optional<Submission> row, LoadById(tx, id));
      if (row) out.push_back(*std::move(row));
    }
    ANCHORD_RETURN_IF_ERROR(tx.Commit());
    return out;
  }

  void SetLeavesPerBatch(int64_t n) override { leaves_per_batch_ = n < 1 ? 1 : n; }

  absl::StatusOr<Waiting> UnbatchedWaiting(const std::string& provider) override {
    ledger::Session session(*db_);
    return SqliteUnbatchedWaiting(session, provider);
  }

  absl::StatusOr<std::vector<WaitingLeaf>> UnbatchedLeaves(const std::string& provider,
                                                           int limit) override {
    ledger::Session session(*db_);
    return SqliteUnbatchedLeaves(session, provider, limit);
  }

  absl::StatusOr<int64_t> CreateMerkleBatch(const NewBatch& b, absl::Time now) override {
    Transaction tx(*db_);
    ANCHORD_RETURN_IF_ERROR(tx.begin_status());
    ANCHORD_ASSIGN_OR_RETURN(int64_t batch_id, SealSqliteBatch(tx, b, ToMs(now)));
    ANCHORD_RETURN_IF_ERROR(tx.Commit());
    leaf_details_.Sealed(batch_id, b);
    return batch_id;
  }

  absl::Status ReleaseAllLeases() override {
    ledger::Session session(*db_);
    return session.Exec(
        "UPDATE submissions SET lease_owner = '', lease_until = 0 WHERE lease_until <> 0");
  }

  absl::StatusOr<std::optional<absl::Time>> NextAttemptAt(const std::string& provider) override {
    ledger::Session session(*db_);
    ANCHORD_ASSIGN_OR_RETURN(
        Statement s,
        session.Prepare("SELECT MIN(next_attempt_at) FROM submissions WHERE provider = ?1 "
                        "AND state IN (0, 1) AND mode <> 1 AND lease_until = 0"));
    s.Bind(1, provider);
    ANCHORD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row || s.ColumnIsNull(0)) return std::optional<absl::Time>();
    return std::optional<absl::Time>(FromMs(s.ColumnInt(0)));
  }

  absl::Status MarkPrepared(int64_t id, const std::string& key, const std::string& body,
                            absl::Time now) override {
    return Update(kMarkPreparedSql, [&](Statement& s) {
      s.Bind(1, id).Bind(2, key).BindBlob(3, body).Bind(4, ToMs(now));
    });
  }

  absl::Status MarkPreparedBatch(const std::vector<PreparedRow>& rows, absl::Time now) override {
    if (rows.empty()) return absl::OkStatus();
    Transaction tx(*db_);
    ANCHORD_RETURN_IF_ERROR(tx.begin_status());
    ANCHORD_ASSIGN_OR_RETURN(Statement s, tx.Prepare(kMarkPreparedSql));
    for (const PreparedRow& r : rows) {
      s.Reset();
      s.Bind(1, r.id).Bind(2, r.idempotency_key).BindBlob(3, r.body).Bind(4, ToMs(now));
      ANCHORD_RETURN_IF_ERROR(s.Run());
    }
    return tx.Commit();
  }

  absl::Status MarkSubmitted(int64_t id, const StoredRecord& r, const std::string& request_id,
                             absl::Time now) override {
    Transaction tx(*db_);
    ANCHORD_RETURN_IF_ERROR(tx.begin_status());
    ANCHORD_RETURN_IF_ERROR(SubmitIn(tx, id, r, request_id, now));
    return tx.Commit();
  }

  absl::Status MarkSubmittedBatch(const std::vector<SubmittedRow>& rows, absl::Time now) override {
    if (rows.empty()) return absl::OkStatus();
    Transaction tx(*db_);
    ANCHORD_RETURN_IF_ERROR(tx.begin_status());
    for (const SubmittedRow& row : rows) {
      ANCHORD_RETURN_IF_ERROR(SubmitIn(tx, row.id, row.record, row.request_id, now));
    }
    return tx.Commit();
  }

  // The updates of MarkSubmitted inside `tx`.
  absl::Status SubmitIn(Transaction& tx, int64_t id, const StoredRecord& r,
                        const std::string& request_id, absl::Time now) {
    ANCHORD_ASSIGN_OR_RETURN(
        Statement s,
        tx.Prepare("UPDATE submissions SET state = 2, proof_id = ?2, record_state = ?3, "
                   "certificate_url = ?4, verify_url = ?5, block_height = ?6, bitcoin_tx = ?7, "
                   "provider_created_at = ?8, confirmed_at = ?9, request_id = ?10, "
                   "updated_at = ?11, change_seq = change_seq + 1, lease_owner = '', "
                   "lease_until = 0, error_canonical = 0, evidence = ?12 WHERE id = ?1"));
    s.Bind(1, id)
        .Bind(2, r.proof_id)
        .Bind(3, static_cast<int64_t>(r.record_state))
        .Bind(4, r.certificate_url)
        .Bind(5, r.verify_url)
        .Bind(6, r.block_height)
        .Bind(7, r.bitcoin_tx)
        .Bind(8, ToMs(r.provider_created_at))
        .Bind(9, ToMs(r.confirmed_at))
        .Bind(10, request_id)
        .Bind(11, ToMs(now))
        .BindBlob(12, r.evidence);
    ANCHORD_RETURN_IF_ERROR(s.Run());
    return DecideSqliteLeaves(tx, id, SubState::kSubmitted);
  }

  absl::Status Reschedule(int64_t id, absl::Time next, bool count_attempt, const std::string& code,
                          const std::string& message, const std::string& request_id,
                          absl::Time now) override {
    return Update(
        "UPDATE submissions SET next_attempt_at = ?2, attempts = attempts + ?3, error_code = ?4, "
        "error_message = ?5, error_request_id = ?6, updated_at = ?7, lease_owner = '', "
        "lease_until = 0 WHERE id = ?1",
        [&](Statement& s) {
          s.Bind(1, id)
              .Bind(2, ToMs(next))
              .Bind(3, static_cast<int64_t>(count_attempt ? 1 : 0))
              .Bind(4, code)
              .Bind(5, message)
              .Bind(6, request_id)
              .Bind(7, ToMs(now));
        });
  }

  absl::Status MarkFailed(int64_t id, int canonical, const std::string& code,
                          const std::string& message, const std::string& request_id,
                          absl::Time now) override {
    Transaction tx(*db_);
    ANCHORD_RETURN_IF_ERROR(tx.begin_status());
    // The leaves of a failed root fail with it, for the same reason: each leaf row carries the
    // failure (rare), and the batch row says it for the counts (EffectiveState).
    ANCHORD_RETURN_IF_ERROR(DecideSqliteLeaves(tx, id, SubState::kFailed));
    for (const char* where : {"id = ?1",
                              "mode = 1 AND batch_id <> 0 AND batch_id = (SELECT batch_id "
                              "FROM submissions WHERE id = ?1 AND mode = 2)"}) {
      ANCHORD_ASSIGN_OR_RETURN(
          Statement s,
          tx.Prepare(absl::StrCat(
              "UPDATE submissions SET state = 3, error_canonical = ?2, error_code = ?3, "
              "error_message = ?4, error_request_id = ?5, updated_at = ?6, "
              "attempts = attempts + 1, change_seq = change_seq + 1, lease_owner = '', "
              "lease_until = 0 WHERE ",
              where)));
      s.Bind(1, id)
          .Bind(2, static_cast<int64_t>(canonical))
          .Bind(3, code)
          .Bind(4, message)
          .Bind(5, request_id)
          .Bind(6, ToMs(now));
      ANCHORD_RETURN_IF_ERROR(s.Run());
    }
    return tx.Commit();
  }

  absl::Status ReleaseLease(int64_t id) override {
    return Update("UPDATE submissions SET lease_owner = '', lease_until = 0 WHERE id = ?1",
                  [&](Statement& s) { s.Bind(1, id); });
  }

  absl::Status Pause(const PauseInfo& p) override {
    return Update(
        "INSERT INTO pauses (provider, reason, paused_at, probe_at) VALUES (?1, ?2, ?3, ?4) "
        "ON CONFLICT (provider) DO UPDATE SET reason = ?2, probe_at = ?4",
        [&](Statement& s) {
          s.Bind(1, p.provider)
              .Bind(2, p.reason)
              .Bind(3, ToMs(p.paused_at))
              .Bind(4, ToMs(p.probe_at));
        });
  }

  absl::StatusOr<std::vector<std::string>> Resume(const std::string& provider) override {
    Transaction tx(*db_);
    ANCHORD_RETURN_IF_ERROR(tx.begin_status());
    ANCHORD_ASSIGN_OR_RETURN(
        Statement sel, tx.Prepare("SELECT provider FROM pauses WHERE ?1 = '' OR provider = ?1 "
                                  "ORDER BY provider"));
    sel.Bind(1, provider);
    std::vector<std::string> out;
    for (;;) {
      ANCHORD_ASSIGN_OR_RETURN(bool row, sel.Step());
      if (!row) break;
      out.push_back(sel.ColumnText(0));
    }
    ANCHORD_ASSIGN_OR_RETURN(Statement del,
                             tx.Prepare("DELETE FROM pauses WHERE ?1 = '' OR provider = ?1"));
    del.Bind(1, provider);
    ANCHORD_RETURN_IF_ERROR(del.Run());
    ANCHORD_RETURN_IF_ERROR(tx.Commit());
    return out;
  }

  absl::StatusOr<std::vector<PauseInfo>> ListPauses() override {
    ledger::Session session(*db_);
    ANCHORD_ASSIGN_OR_RETURN(
        Statement s, session.Prepare("SELECT provider, reason, paused_at, probe_at FROM pauses"));
    std::vector<PauseInfo> out;
    for (;;) {
      ANCHORD_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      out.push_back(
          {s.ColumnText(0), s.ColumnText(1), FromMs(s.ColumnInt(2)), FromMs(s.ColumnInt(3))});
    }
    return out;
  }

  absl::StatusOr<std::vector<Submission>> PendingHandoff(int limit) override {
    return WithLeafDetails(ReadPending(limit, {}, /*thin=*/false));
  }

  absl::StatusOr<std::vector<Submission>> PendingHandoffForBatchForm(int limit,
                                                                     const RowIds& skip) override {
    // The session (the store's connection) ends before Fill, which opens its own.
    return WithLeafDetails(ReadPending(limit, skip, /*thin=*/true));
  }

  // The rows owed to the poller, oldest first, without those in `skip`: the rows of the
  // hand-off index (written SUBMITTED or FAILED) and the leaves of SUBMITTED batches not yet
  // acknowledged (sqlite_batches.h, OwedBatch), which read as SUBMITTED. `thin`: a leaf is read
  // thin where it can be (PendingHandoffForBatchForm).
  absl::StatusOr<std::vector<Submission>> ReadPending(int limit, const RowIds& skip, bool thin) {
    const size_t want = static_cast<size_t>(std::max(limit, 0));
    // Every skipped row may come first: each statement asks for as many more to find `want`
    // others if there are.
    const int64_t ask = static_cast<int64_t>(want + skip.size());
    // On the reader connection, so the hand-off's read never waits for the intake's or the
    // batcher's commit (bench/RESULTS.md, issue 11 session 27), in one snapshot. What the marks
    // keep in memory (acked_ahead_) is taken as of the snapshot: the snapshot begins (its first
    // read, SqliteBatchesOwed) under handoff_mu_, which every mark holds until it has committed,
    // so the copy and the rows read agree. A mark committed after that changes only rows in
    // `skip`: the hand-off takes a row out of its rows in flight after the row's mark.
    ledger::Snapshot session(*reader_);
    ANCHORD_RETURN_IF_ERROR(session.begin_status());
    absl::btree_set<int64_t> acked_ahead;
    std::vector<OwedBatch> owed;
    {
      absl::MutexLock lock(&handoff_mu_);
      ANCHORD_ASSIGN_OR_RETURN(owed, SqliteBatchesOwed(session));
      acked_ahead = acked_ahead_;
    }
    ANCHORD_ASSIGN_OR_RETURN(
        Statement own,
        session.Prepare(absl::StrCat("SELECT ", Cols(),
                                     " FROM submissions WHERE state IN (2, 3) AND "
                                     "handed_off_seq < change_seq ORDER BY id LIMIT ?1")));
    own.Bind(1, ask);
    // Thin, a leaf is read with ThinLeafCols, and again whole in the rare case it cannot be thin
    // (sealed by an older release: it holds its own path).
    const std::string whole_leaf = ColsWith("2", "handed_off_seq");
    ANCHORD_ASSIGN_OR_RETURN(
        Statement leaf, session.Prepare(absl::StrCat("SELECT ", thin ? ThinLeafCols() : whole_leaf,
                                                     " ", kSqliteOwedLeaves, " LIMIT ?3")));
    std::optional<Statement> whole_by_id;
    // A batch's leaves are read from the first that is neither in flight nor acknowledged ahead
    // (as far as that is known without reading: its leaves have consecutive ids when it was
    // sealed as a range), not again over the windows in flight.
    for (OwedBatch& b : owed) {
      while (skip.count(b.next_leaf_id) > 0 || acked_ahead.contains(b.next_leaf_id)) {
        ++b.next_leaf_id;
      }
    }
    // The two are merged as they are stepped, each row decoded once, in place: the leaves of
    // the owed batches one batch after the other.
    size_t next_batch = 0;
    auto step_leaf = [&]() -> absl::StatusOr<bool> {
      for (;;) {
        if (next_batch > 0) {
          ANCHORD_ASSIGN_OR_RETURN(bool row, leaf.Step());
          if (row) return true;
        }
        if (next_batch == owed.size()) return false;
        leaf.Reset();
        leaf.Bind(1, owed[next_batch].batch_id).Bind(2, owed[next_batch].next_leaf_id).Bind(3, ask);
        ++next_batch;
        ANCHORD_ASSIGN_OR_RETURN(bool row, leaf.Step());
        if (row) return true;
      }
    };
    ANCHORD_ASSIGN_OR_RETURN(bool has_own, own.Step());
    ANCHORD_ASSIGN_OR_RETURN(bool has_leaf, step_leaf());
    std::vector<Submission> out;
    out.reserve(want);
    std::vector<std::pair<int64_t, int64_t>> owed_out;  // {leaf id, version} for owed_out_
    while (out.size() < want && (has_own || has_leaf)) {
      const bool from_own = has_own && (!has_leaf || own.ColumnInt(0) < leaf.ColumnInt(0));
      Statement& s = from_own ? own : leaf;
      const int64_t id = s.ColumnInt(0);
      // A leaf acknowledged beyond its batch's handoff_next is owed no more.
      const bool still_owed = from_own || !acked_ahead.contains(id);
      if (still_owed && skip.count(id) == 0) {
        Submission& r = out.emplace_back();  // built in place: most rows are thin leaves
        bool is_thin = false;
        if (thin) {
          ANCHORD_ASSIGN_OR_RETURN(is_thin, ReadThinLeaf(s, &r));
        }
        if (!is_thin && thin && !from_own) {
          ANCHORD_ASSIGN_OR_RETURN(Statement * whole, ledger::Reuse(session, whole_by_id, [&] {
                                     return absl::StrCat("SELECT ", whole_leaf,
                                                         " FROM submissions WHERE id = ?1");
                                   }));
          whole->Bind(1, id);
          ANCHORD_ASSIGN_OR_RETURN(bool found, whole->Step());
          if (!found) return absl::InternalError(absl::StrCat("leaf row ", id, " vanished"));
          absl::StatusOr<Submission> row = ReadRow(*whole);
          whole->Reset();
          if (!row.ok()) return row.status();
          r = *std::move(row);
        } else if (!is_thin) {
          ANCHORD_ASSIGN_OR_RETURN(r, ReadRow(s));
        }
        if (!from_own) owed_out.emplace_back(id, r.change_seq);
      }
      if (from_own) {
        ANCHORD_ASSIGN_OR_RETURN(has_own, own.Step());
      } else {
        ANCHORD_ASSIGN_OR_RETURN(has_leaf, step_leaf());
      }
    }
    own.Reset();
    leaf.Reset();
    {
      // No mark can have seen these leaves yet: they are not sent before this read returns.
      absl::MutexLock lock(&handoff_mu_);
      for (const auto& [id, version] : owed_out) owed_out_[id] = version;
    }
    // Oldest first. The batches' leaves are in id order (a batch takes its provider's oldest
    // waiting leaves) unless several providers batch.
    auto by_id = [](const Submission& a, const Submission& b) { return a.id < b.id; };
    if (!std::is_sorted(out.begin(), out.end(), by_id)) {
      std::sort(out.begin(), out.end(), by_id);
    }
    return out;
  }

  absl::Status MarkHandedOff(int64_t id, int64_t seq) override {
    return MarkHandedOffBatch({{id, seq}});
  }

  absl::Status MarkHandedOffBatch(const std::vector<std::pair<int64_t, int64_t>>& rows) override {
    if (rows.empty()) return absl::OkStatus();
    Transaction tx(*db_);
    ANCHORD_RETURN_IF_ERROR(tx.begin_status());
    absl::MutexLock lock(&handoff_mu_);
    // A SUBMITTED batch's leaf read out as owed is not written: its batch's handoff_next moves
    // past it (AdvanceSqliteLeafHandoffs) once every leaf before it is acknowledged too.
    // In id order (acknowledgements arrive in any order), so neighbouring rows share their pages'
    // lookups; a row already marked as of `seq` is not rewritten.
    std::vector<std::pair<int64_t, int64_t>> sorted;
    sorted.reserve(rows.size());
    for (const auto& row : rows) {
      auto out = owed_out_.find(row.first);
      if (out != owed_out_.end() && row.second >= out->second) {
        owed_out_.erase(out);
        acked_ahead_.insert(row.first);
      } else {
        sorted.push_back(row);  // (an acknowledgement of an older version changes nothing)
      }
    }
    std::sort(sorted.begin(), sorted.end());
    // A run of consecutive ids acknowledged as of the same seq (a batch's leaves were taken in
    // with consecutive ids, and become SUBMITTED together) is marked by one statement over the
    // id range: every id of the range is one of the rows, so the range holds no other row
    // (a statement per row cost the mark ~40% more CPU, bench/results/s8-submitter.md).
    ANCHORD_ASSIGN_OR_RETURN(
        Statement s, tx.Prepare("UPDATE submissions SET handed_off_seq = ?3 WHERE id BETWEEN ?1 "
                                "AND ?2 AND handed_off_seq < ?3"));
    for (size_t i = 0; i < sorted.size();) {
      const auto [first, seq] = sorted[i];
      size_t j = i + 1;
      while (j < sorted.size() && sorted[j].first == sorted[j - 1].first + 1 &&
             sorted[j].second == seq) {
        ++j;
      }
      s.Reset();
      s.Bind(1, first).Bind(2, sorted[j - 1].first).Bind(3, seq);
      ANCHORD_RETURN_IF_ERROR(s.Run());
      i = j;
    }
    ANCHORD_RETURN_IF_ERROR(AdvanceSqliteLeafHandoffs(tx, &acked_ahead_));
    return tx.Commit();
  }

  absl::StatusOr<HandoffBatch> BatchForHandoff(int64_t batch_id) override {
    return leaf_details_.ForHandoff(batch_id, LeafSource());
  }

  absl::StatusOr<std::vector<Submission>> GetByDigest(const Digest& digest) override {
    return WithLeafDetails(Query(absl::StrCat("SELECT ", Cols(), " FROM ", kDigestIndex, " WHERE ",
                                              DigestIs(1), " ORDER BY id"),
                                 [&](Statement& s) { s.BindBlob(1, digest.bytes()); }));
  }

  absl::StatusOr<std::vector<FileRef>> Refs(const Digest& digest) override {
    ANCHORD_ASSIGN_OR_RETURN(std::vector<std::vector<FileRef>> refs, RefsOfEach({digest}));
    return std::move(refs.front());
  }

  absl::StatusOr<std::vector<std::vector<FileRef>>> RefsOfEach(
      const std::vector<Digest>& digests) override {
    ledger::Session session(*db_);
    // A digest's first file is in its rows' own columns (read from its first row), the others in
    // refs under that row's id (FilesKept, submitter_store_schema.h).
    ANCHORD_ASSIGN_OR_RETURN(Statement first,
                             session.Prepare(absl::StrCat(
                                 "SELECT id, files_kept, job, source_path, filename, "
                                 "size_bytes, mime_type FROM ",
                                 kDigestIndex, " WHERE ", DigestIs(1), " ORDER BY id LIMIT 1")));
    ANCHORD_ASSIGN_OR_RETURN(
        Statement refs,
        session.Prepare("SELECT job, source_path, filename, size_bytes, mime_type FROM refs "
                        "WHERE sub_id = ?1 ORDER BY id"));
    std::vector<std::vector<FileRef>> out(digests.size());
    for (size_t i = 0; i < digests.size(); ++i) {
      first.Reset();
      first.BindBlob(1, digests[i].bytes());
      ANCHORD_ASSIGN_OR_RETURN(bool has_row, first.Step());
      if (!has_row) continue;
      const int64_t sub_id = first.ColumnInt(0);
      const int64_t kept = first.ColumnInt(1);
      const FileRef own = ReadRef(first, 2);
      std::vector<FileRef> in_refs;
      if (kept != static_cast<int64_t>(FilesKept::kOwnOnly)) {
        refs.Reset();
        refs.Bind(1, sub_id);
        for (;;) {
          ANCHORD_ASSIGN_OR_RETURN(bool row, refs.Step());
          if (!row) break;
          in_refs.push_back(ReadRef(refs, 0));
        }
      }
      out[i] = FilesOf(kept, own, std::move(in_refs));
    }
    first.Reset();
    refs.Reset();
    return out;
  }

  absl::StatusOr<std::vector<std::vector<FileRef>>> RefsOfRows(
      const std::vector<Submission>& rows) override {
    // A row whose own file is its digest's only one needs no read: nearly every leaf of a batch.
    std::vector<size_t> read_at;  // the rows whose files are (also) in refs
    std::vector<std::vector<FileRef>> out(rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      if (rows[i].files_kept == static_cast<int64_t>(FilesKept::kOwnOnly)) {
        out[i].push_back(rows[i].file);
      } else {
        read_at.push_back(i);
      }
    }
    if (read_at.empty()) return out;
    // A window of an older release's rows is read as it is; a mixed one (a root, a digest with
    // later files) through a copy of the few rows that need it.
    if (read_at.size() == rows.size()) return ReadRefsOfRows(rows);
    std::vector<Submission> to_read;
    to_read.reserve(read_at.size());
    for (size_t i : read_at) to_read.push_back(rows[i]);
    ANCHORD_ASSIGN_OR_RETURN(std::vector<std::vector<FileRef>> read, ReadRefsOfRows(to_read));
    for (size_t k = 0; k < read.size(); ++k) out[read_at[k]] = std::move(read[k]);
    return out;
  }

  // RefsOfRows for rows whose files are (also) in refs.
  absl::StatusOr<std::vector<std::vector<FileRef>>> ReadRefsOfRows(
      const std::vector<Submission>& rows) {
    // One read transaction for the window: each statement on its own would begin and end one,
    // taking and releasing the WAL's read lock (fcntl calls) once or twice per row. On the
    // reader connection: committed refs are never changed, only added.
    ledger::Snapshot session(*reader_);
    ANCHORD_RETURN_IF_ERROR(session.begin_status());
    // A digest's refs name its lowest submissions id (sub_id), which is nearly always the row
    // being handed off: looked up by that id, a window reads neighbouring entries of the refs
    // index, where a lookup by digest first descends the digest index at a random
    // place per row. No ref names a row that is not its digest's lowest, so finding none by the
    // row's id means the digest's refs (if any) hang off another row: then the digest decides.
    // The refs come back in index order and are put in id order (the original first) here, which
    // spares the statement a sorter per row.
    ANCHORD_ASSIGN_OR_RETURN(
        Statement by_row,
        session.Prepare("SELECT id, job, source_path, filename, size_bytes, mime_type FROM refs "
                        "WHERE sub_id = ?1"));
    ANCHORD_ASSIGN_OR_RETURN(
        Statement by_digest,
        session.Prepare(absl::StrCat(
            "SELECT id, job, source_path, filename, size_bytes, mime_type ", RefsOfDigest())));
    // A window of rows with nearly consecutive ids (a batch's leaves) reads the refs of all of
    // them in one pass over the index, not one statement per row.
    ANCHORD_ASSIGN_OR_RETURN(
        Statement by_range,
        session.Prepare("SELECT sub_id, id, job, source_path, filename, size_bytes, mime_type "
                        "FROM refs WHERE sub_id BETWEEN ?1 AND ?2 ORDER BY sub_id"));
    return ReadRefsOfRowsIn(by_row, by_range, by_digest, rows);
  }

  // Whether the rows' ids ascend and fill at least half of their range: the refs of the range
  // are then read in one pass, few of them for rows outside the window.
  static bool DenseWindow(const std::vector<Submission>& rows) {
    if (rows.size() < 2) return false;
    for (size_t i = 1; i < rows.size(); ++i) {
      if (rows[i].id <= rows[i - 1].id) return false;
    }
    return rows.back().id - rows.front().id < 2 * static_cast<int64_t>(rows.size());
  }

  // The refs whose sub_id is a row's id, per row (found by id, not digest).
  static absl::StatusOr<std::vector<std::vector<std::pair<int64_t, FileRef>>>> RefsByRange(
      Statement& by_range, const std::vector<Submission>& rows) {
    std::vector<std::vector<std::pair<int64_t, FileRef>>> out(rows.size());
    by_range.Reset();
    by_range.Bind(1, rows.front().id).Bind(2, rows.back().id);
    size_t i = 0;
    for (;;) {
      ANCHORD_ASSIGN_OR_RETURN(bool row, by_range.Step());
      if (!row) break;
      const int64_t sub_id = by_range.ColumnInt(0);
      while (i < rows.size() && rows[i].id < sub_id) ++i;
      if (i == rows.size()) break;
      if (rows[i].id == sub_id) out[i].emplace_back(by_range.ColumnInt(1), ReadRef(by_range, 2));
    }
    by_range.Reset();
    return out;
  }

  static absl::StatusOr<std::vector<std::vector<FileRef>>> ReadRefsOfRowsIn(
      Statement& by_row, Statement& by_range, Statement& by_digest,
      const std::vector<Submission>& rows) {
    std::vector<std::vector<FileRef>> out(rows.size());
    std::vector<std::pair<int64_t, FileRef>> found;
    auto read = [&found](Statement& s) -> absl::Status {
      found.clear();
      for (;;) {
        ANCHORD_ASSIGN_OR_RETURN(bool row, s.Step());
        if (!row) break;
        found.emplace_back(s.ColumnInt(0), ReadRef(s, 1));
      }
      s.Reset();
      return absl::OkStatus();
    };
    std::vector<std::vector<std::pair<int64_t, FileRef>>> ranged;
    if (DenseWindow(rows)) {
      ANCHORD_ASSIGN_OR_RETURN(ranged, RefsByRange(by_range, rows));
    }
    for (size_t i = 0; i < rows.size(); ++i) {
      if (!ranged.empty()) {
        found.swap(ranged[i]);
      } else {
        by_row.Reset();
        by_row.Bind(1, rows[i].id);
        ANCHORD_RETURN_IF_ERROR(read(by_row));
      }
      if (found.empty()) {
        by_digest.Reset();
        by_digest.BindBlob(1, rows[i].digest.bytes());
        ANCHORD_RETURN_IF_ERROR(read(by_digest));
      }
      if (found.size() > 1) {
        std::sort(found.begin(), found.end(),
                  [](const auto& a, const auto& b) { return a.first < b.first; });
      }
      std::vector<FileRef> in_refs;
      in_refs.reserve(found.size());
      for (auto& [id, ref] : found) in_refs.push_back(std::move(ref));
      out[i] = FilesOf(rows[i].files_kept, rows[i].file, std::move(in_refs));
    }
    return out;
  }

  absl::StatusOr<std::map<SubState, int64_t>> SummarizeJob(const std::string& job) override {
    // The session holds the store's one connection, so no write lands between its reads.
    ledger::Session session(*db_);
    return SummarizeSqliteJob(session, job);
  }

  absl::Status SaveGate(const std::string& name, absl::Time until) override {
    return Update(
        "INSERT INTO gates (name, blocked_until) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE "
        "SET blocked_until = MAX(blocked_until, ?2)",
        [&](Statement& s) { s.Bind(1, name).Bind(2, ToMs(until)); });
  }

  absl::StatusOr<absl::Time> LoadGate(const std::string& name) override {
    ledger::Session session(*db_);
    ANCHORD_ASSIGN_OR_RETURN(Statement s,
                             session.Prepare("SELECT blocked_until FROM gates WHERE name = ?1"));
    s.Bind(1, name);
    ANCHORD_ASSIGN_OR_RETURN(bool row, s.Step());
    return row ? FromMs(s.ColumnInt(0)) : absl::InfinitePast();
  }

  absl::Status RecordSend(const std::string& bucket, absl::Time when,
                          absl::Time forget_before) override {
    Transaction tx(*db_);
    ANCHORD_RETURN_IF_ERROR(tx.begin_status());
    ANCHORD_ASSIGN_OR_RETURN(Statement del,
                             tx.Prepare("DELETE FROM sends WHERE bucket = ?1 AND sent_at < ?2"));
    del.Bind(1, bucket).Bind(2, ToMs(forget_before));
    ANCHORD_RETURN_IF_ERROR(del.Run());
    ANCHORD_ASSIGN_OR_RETURN(Statement ins,
                             tx.Prepare("INSERT INTO sends (bucket, sent_at) VALUES (?1, ?2)"));
    ins.Bind(1, bucket).Bind(2, ToMs(when));
    ANCHORD_RETURN_IF_ERROR(ins.Run());
    return tx.Commit();
  }

  absl::StatusOr<std::vector<absl::Time>> RecentSends(const std::string& bucket,
                                                      absl::Time since) override {
    ledger::Session session(*db_);
    ANCHORD_ASSIGN_OR_RETURN(
        Statement s,
        session.Prepare("SELECT sent_at FROM sends WHERE bucket = ?1 AND sent_at >= ?2 "
                        "ORDER BY sent_at"));
    s.Bind(1, bucket).Bind(2, ToMs(since));
    std::vector<absl::Time> out;
    for (;;) {
      ANCHORD_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      out.push_back(FromMs(s.ColumnInt(0)));
    }
    return out;
  }

 private:
  // Leaf rows as they read in full (batch_leaves.h).
  absl::StatusOr<std::vector<Submission>> WithLeafDetails(
      absl::StatusOr<std::vector<Submission>> rows) {
    if (!rows.ok()) return rows;
    ANCHORD_RETURN_IF_ERROR(leaf_details_.Fill(&*rows, LeafSource()));
    return rows;
  }

  // Where LeafDetails reads a batch row and its root row: on the reader connection (every caller
  // reads after its own session ended, so it sees what it committed).
  LeafDetails::Source LeafSource() {
    LeafDetails::Source source;
    source.batch = [this](int64_t batch_id) {
      ledger::Session session(*reader_);
      return ReadSqliteBatch(session, batch_id);
    };
    source.root = [this](int64_t batch_id) -> absl::StatusOr<std::optional<Submission>> {
      ANCHORD_ASSIGN_OR_RETURN(std::vector<Submission> root,
                               Query(*reader_,
                                     absl::StrCat("SELECT ", Cols(), " FROM ", kDigestIndex,
                                                  " WHERE ", kSqliteBatchRootWhere),
                                     [&](Statement& s) { s.Bind(1, batch_id); }));
      if (root.empty()) return std::optional<Submission>();
      return std::optional<Submission>(std::move(root.front()));
    };
    return source;
  }

  // Runs inside the caller's session (a claim's transaction).
  absl::StatusOr<std::optional<Submission>> LoadById(ledger::Session& session, int64_t id) {
    ANCHORD_ASSIGN_OR_RETURN(
        Statement s,
        session.Prepare(absl::StrCat("SELECT ", Cols(), " FROM submissions WHERE id = ?1")));
    s.Bind(1, id);
    ANCHORD_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) return std::optional<Submission>();
    ANCHORD_ASSIGN_OR_RETURN(Submission r, ReadRow(s));
    return std::optional<Submission>(std::move(r));
  }

  template <typename BindFn>
  absl::Status Update(absl::string_view sql, BindFn bind) {
    ledger::Session session(*db_);
    ANCHORD_ASSIGN_OR_RETURN(Statement s, session.Prepare(sql));
    bind(s);
    return s.Run();
  }

  template <typename BindFn>
  absl::StatusOr<std::vector<Submission>> Query(const std::string& sql, BindFn bind) {
    return Query(*db_, sql, bind);
  }

  template <typename BindFn>
  absl::StatusOr<std::vector<Submission>> Query(SqliteDb& db, const std::string& sql, BindFn bind) {
    ledger::Session session(db);
    ANCHORD_ASSIGN_OR_RETURN(Statement s, session.Prepare(sql));
    bind(s);
    std::vector<Submission> out;
    for (;;) {
      ANCHORD_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      ANCHORD_ASSIGN_OR_RETURN(Submission r, ReadRow(s));
      out.push_back(std::move(r));
    }
    return out;
  }

  std::unique_ptr<SqliteDb> db_;
  // A second connection to the same file for the hand-off's reads (ReadPending, the refs and the
  // batches of its windows): in WAL mode a reader neither waits for the writer's transactions (the
  // intake's and the batcher's, each ending in an fsync) nor holds them up.
  std::unique_ptr<SqliteDb> reader_;
  // The prefixes of the digests submissions holds, for the intake (ledger/prefix_filter.h): new
  // digests, nearly every item, are not looked up one by one. Up to kKnownPrefixRows rows
  // (10-20 bytes each; the filter turns itself off above that and every digest is looked up).
  static constexpr int64_t kKnownPrefixRows = 2'000'000;
  absl::Mutex known_mu_;  // taken inside a transaction (after the connection's lock)
  ledger::PrefixFilter known_ ABSL_GUARDED_BY(known_mu_){"submissions", "id", "digest",
                                                         kKnownPrefixRows};
  std::atomic<int64_t> leaves_per_batch_{kDefaultLeavesPerBatch};
  LeafDetails leaf_details_;
  // Where the hand-off of SUBMITTED batches' leaves stands between two moves of a batch's
  // handoff_next (kept per batch, not per leaf row): the leaves ReadPending gave out as owed (and
  // as of which version), and those acknowledged while a leaf before them was not yet. Lost at a
  // restart, which resends the leaves from handoff_next on (the poller stores nothing twice).
  // Taken inside a session.
  absl::Mutex handoff_mu_;
  absl::flat_hash_map<int64_t, int64_t> owed_out_ ABSL_GUARDED_BY(handoff_mu_);  // id -> version
  absl::btree_set<int64_t> acked_ahead_ ABSL_GUARDED_BY(handoff_mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<SubmitterStore>> OpenSqliteSubmitterStore(const std::string& path) {
  ANCHORD_ASSIGN_OR_RETURN(std::unique_ptr<SqliteDb> db, SqliteDb::Open(path));
  auto store = std::make_unique<SqliteSubmitterStore>(std::move(db));
  ANCHORD_RETURN_IF_ERROR(store->Init(path));
  return std::unique_ptr<SubmitterStore>(std::move(store));
}

}  // namespace anchord::submitter
