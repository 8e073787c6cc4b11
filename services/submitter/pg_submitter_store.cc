#include "services/submitter/pg_submitter_store.h"

#include <algorithm>
#include <atomic>
#include <limits>
#include <random>
#include <set>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"
#include "libs/common/status_macros.h"
#include "libs/digest/stored_digest.h"
#include "services/submitter/batch_leaves.h"
#include "services/submitter/pg_batches.h"
#include "services/submitter/pg_intake.h"
#include "services/submitter/pg_leases.h"
#include "services/submitter/pg_owed_leaves.h"
#include "services/submitter/pg_submitter_schema.h"
#include "services/submitter/store_rows.h"

namespace anchord::submitter {
namespace {

using ledger::PgConn;
using ledger::PgDb;
using ledger::PgParams;
using ledger::PgResult;

constexpr char kMarkPreparedSql[] =
    "UPDATE submissions SET state = 1, idempotency_key = $2, body = $3, updated_at = $4 "
    "WHERE id = $1";

std::string RandomInstanceId() {
  std::random_device rd;
  std::mt19937_64 gen((static_cast<uint64_t>(rd()) << 32) ^ rd());
  uint64_t v = gen();
  return HexEncode(std::string(reinterpret_cast<const char*>(&v), sizeof(v)));
}

class PgSubmitterStore final : public SubmitterStore {
 public:
  PgSubmitterStore(std::shared_ptr<PgDb> db, PgSubmitterOptions options)
      : db_(std::move(db)),
        options_(WithClock(options)),
        instance_("@" + RandomInstanceId()),
        leases_(db_, options_.lease_term, options_.heartbeat, options_.clock) {}

  absl::StatusOr<std::vector<InsertResult>> InsertBatch(const std::vector<NewItem>& items,
                                                        absl::Time now) override {
    std::vector<InsertResult> out;
    ANCHORD_RETURN_IF_ERROR(db_->Tx([&](PgConn& c) -> absl::Status {
      PgOpenBatches open(c, instance_, leaves_per_batch_.load(), ToMs(now));
      ANCHORD_ASSIGN_OR_RETURN(out, InsertPgIntakeItems(c, items, now, &open));
      return absl::OkStatus();
    }));
    return out;
  }

  absl::StatusOr<int64_t> CountBacklog() override {
    int64_t n = 0;
    ANCHORD_RETURN_IF_ERROR(db_->Run([&](PgConn& c) -> absl::Status {
      ANCHORD_ASSIGN_OR_RETURN(PgResult r,
                               c.Exec("SELECT COUNT(*) FROM submissions WHERE state IN (0, 1)"));
      n = r.Int(0, 0);
      return absl::OkStatus();
    }));
    return n;
  }

  absl::StatusOr<std::vector<BacklogCount>> CountByProviderState() override {
    std::vector<BacklogCount> out;
    ANCHORD_RETURN_IF_ERROR(db_->Run([&](PgConn& c) -> absl::Status {
      ANCHORD_ASSIGN_OR_RETURN(
          PgResult r,
          c.Exec("SELECT provider, state, COUNT(*) FROM submissions GROUP BY provider, state "
                 "ORDER BY provider, state"));
      out.clear();
      for (int i = 0; i < r.rows(); ++i) {
        out.push_back({r.Bytes(i, 0), StateFromInt(r.Int(i, 1)), r.Int(i, 2)});
      }
      return absl::OkStatus();
    }));
    return out;
  }

  absl::StatusOr<std::vector<Submission>> ClaimBatch(const std::string& provider,
                                                     const std::string& owner, absl::Time now,
                                                     absl::Time lease_until, int limit) override {
    if (options_.lease_term > absl::ZeroDuration()) {
      lease_until = std::min(lease_until, now + options_.lease_term);
    }
    const std::string tag = owner + instance_;
    std::vector<Submission> out;
    // SKIP LOCKED: replicas claiming at once take different rows instead of queueing on the
    // same ones; the lease keeps a claimed row away from them after this transaction ends.
    ANCHORD_RETURN_IF_ERROR(db_->Tx([&](PgConn& c) -> absl::Status {
      ANCHORD_ASSIGN_OR_RETURN(
          PgResult r,
          c.Exec(
              absl::StrCat("UPDATE submissions SET lease_owner = $2, lease_until = $3 WHERE id IN ("
                           "SELECT id FROM submissions WHERE provider = $1 AND state IN (0, 1) AND "
                           "next_attempt_at <= $4 AND lease_until <= $4 AND mode <> 1 ORDER BY id "
                           "LIMIT $5 FOR UPDATE SKIP LOCKED) RETURNING ",
                           kSubmissionColumns),
              PgParams()
                  .AddBytes(provider)
                  .AddBytes(tag)
                  .Add(ToMs(lease_until))
                  .Add(ToMs(now))
                  .Add(static_cast<int64_t>(std::max(1, limit)))));
      ANCHORD_ASSIGN_OR_RETURN(out, ReadSubmissions(r));
      return absl::OkStatus();
    }));
    std::sort(out.begin(), out.end(),
              [](const Submission& a, const Submission& b) { return a.id < b.id; });
    if (!out.empty()) {
      std::vector<int64_t> ids;
      for (const Submission& s : out) ids.push_back(s.id);
      leases_.Hold(ids, tag);
    }
    return out;
  }

  absl::Status ReleaseAllLeases() override {
    // Only this replica's leases: another replica's lease is live until it expires.
    leases_.ForgetAll();
    return db_->Run([&](PgConn& c) {
      return c
          .Exec(
              "UPDATE submissions SET lease_owner = '', lease_until = 0 WHERE lease_until <> 0 "
              "AND position($1::bytea in lease_owner) > 0",
              PgParams().AddBytes(instance_))
          .status();
    });
  }

  absl::StatusOr<std::optional<absl::Time>> NextAttemptAt(const std::string& provider) override {
    std::optional<absl::Time> out;
    ANCHORD_RETURN_IF_ERROR(db_->Run([&](PgConn& c) -> absl::Status {
      ANCHORD_ASSIGN_OR_RETURN(
          PgResult r, c.Exec("SELECT MIN(next_attempt_at) FROM submissions WHERE provider = $1 "
                             "AND state IN (0, 1) AND mode <> 1 AND lease_until = 0",
                             PgParams().AddBytes(provider)));
      out.reset();
      if (r.rows() > 0 && !r.IsNull(0, 0)) out = FromMs(r.Int(0, 0));
      return absl::OkStatus();
    }));
    return out;
  }

  absl::Status MarkPrepared(int64_t id, const std::string& key, const std::string& body,
                            absl::Time now) override {
    return Exec(kMarkPreparedSql, PgParams().Add(id).AddBytes(key).AddBytes(body).Add(ToMs(now)));
  }

  absl::Status MarkPreparedBatch(const std::vector<PreparedRow>& rows, absl::Time now) override {
    if (rows.empty()) return absl::OkStatus();
    return db_->Tx([&](PgConn& c) -> absl::Status {
      for (const PreparedRow& r : rows) {
        ANCHORD_RETURN_IF_ERROR(
            c.Exec(kMarkPreparedSql,
                   PgParams().Add(r.id).AddBytes(r.idempotency_key).AddBytes(r.body).Add(ToMs(now)))
                .status());
      }
      return absl::OkStatus();
    });
  }

  absl::Status MarkSubmitted(int64_t id, const StoredRecord& r, const std::string& request_id,
                             absl::Time now) override {
    leases_.Forget(id);
    return db_->Tx([&](PgConn& c) { return SubmitIn(c, id, r, request_id, now); });
  }

  absl::Status MarkSubmittedBatch(const std::vector<SubmittedRow>& rows, absl::Time now) override {
    if (rows.empty()) return absl::OkStatus();
    for (const SubmittedRow& row : rows) leases_.Forget(row.id);
    return db_->Tx([&](PgConn& c) -> absl::Status {
      for (const SubmittedRow& row : rows) {
        ANCHORD_RETURN_IF_ERROR(SubmitIn(c, row.id, row.record, row.request_id, now));
      }
      return absl::OkStatus();
    });
  }

  // The updates of MarkSubmitted on `c` (inside its transaction).
  absl::Status SubmitIn(PgConn& c, int64_t id, const StoredRecord& r, const std::string& request_id,
                        absl::Time now) {
    ANCHORD_RETURN_IF_ERROR(
        c.Exec("UPDATE submissions SET state = 2, proof_id = $2, record_state = $3, "
               "certificate_url = $4, verify_url = $5, block_height = $6, bitcoin_tx = $7, "
               "provider_created_at = $8, confirmed_at = $9, request_id = $10, "
               "updated_at = $11, change_seq = change_seq + 1, lease_owner = '', "
               "lease_until = 0, error_canonical = 0, evidence = $12 WHERE id = $1",
               PgParams()
                   .Add(id)
                   .AddBytes(r.proof_id)
                   .Add(static_cast<int64_t>(r.record_state))
                   .AddBytes(r.certificate_url)
                   .AddBytes(r.verify_url)
                   .Add(r.block_height)
                   .AddBytes(r.bitcoin_tx)
                   .Add(ToMs(r.provider_created_at))
                   .Add(ToMs(r.confirmed_at))
                   .AddBytes(request_id)
                   .Add(ToMs(now))
                   .AddBytes(r.evidence))
            .status());
    return SubmitPgLeaves(c, id, ToMs(now));
  }

  absl::Status Reschedule(int64_t id, absl::Time next, bool count_attempt, const std::string& code,
                          const std::string& message, const std::string& request_id,
                          absl::Time now) override {
    leases_.Forget(id);
    return Exec(
        "UPDATE submissions SET next_attempt_at = $2, attempts = attempts + $3, error_code = $4, "
        "error_message = $5, error_request_id = $6, updated_at = $7, lease_owner = '', "
        "lease_until = 0 WHERE id = $1",
        PgParams()
            .Add(id)
            .Add(ToMs(next))
            .Add(static_cast<int64_t>(count_attempt ? 1 : 0))
            .AddBytes(code)
            .AddBytes(message)
            .AddBytes(request_id)
            .Add(ToMs(now)));
  }

  absl::Status MarkFailed(int64_t id, int canonical, const std::string& code,
                          const std::string& message, const std::string& request_id,
                          absl::Time now) override {
    leases_.Forget(id);
    return db_->Tx([&](PgConn& c) -> absl::Status {
      for (bool leaves : {false, true}) {
        const std::string where =
            leaves ? "mode = 1 AND batch_id = (SELECT batch_id FROM submissions WHERE id = $1 "
                     "AND mode = 2)"
                   : "id = $1";
        ANCHORD_RETURN_IF_ERROR(
            c.Exec(absl::StrCat("UPDATE submissions SET state = 3, error_canonical = $2, "
                                "error_code = $3, error_message = $4, error_request_id = $5, "
                                "updated_at = $6, attempts = attempts + 1, "
                                "change_seq = change_seq + 1, lease_owner = '', lease_until = 0 "
                                "WHERE ",
                                where),
                   PgParams()
                       .Add(id)
                       .Add(static_cast<int64_t>(canonical))
                       .AddBytes(code)
                       .AddBytes(message)
                       .AddBytes(request_id)
                       .Add(ToMs(now)))
                .status());
      }
      return absl::OkStatus();
    });
  }

  absl::Status ReleaseLease(int64_t id) override {
    const std::string tag = leases_.Forget(id);
    // A row this replica does not hold (its lease expired and another replica took it) is left
    // alone. Rows leased before this store object existed are not ours either.
    if (tag.empty()) return absl::OkStatus();
    return Exec(
        "UPDATE submissions SET lease_owner = '', lease_until = 0 WHERE id = $1 AND "
        "lease_owner = $2",
        PgParams().Add(id).AddBytes(tag));
  }

  void SetLeavesPerBatch(int64_t n) override { leaves_per_batch_ = n < 1 ? 1 : n; }

  absl::StatusOr<Waiting> UnbatchedWaiting(const std::string& provider) override {
    Waiting w;
    ANCHORD_RETURN_IF_ERROR(db_->Run([&](PgConn& c) -> absl::Status {
      ANCHORD_ASSIGN_OR_RETURN(w, PgUnbatchedWaiting(c, provider));
      return absl::OkStatus();
    }));
    return w;
  }

  absl::StatusOr<std::vector<WaitingLeaf>> UnbatchedLeaves(const std::string& provider,
                                                           int limit) override {
    std::vector<WaitingLeaf> out;
    ANCHORD_RETURN_IF_ERROR(db_->Run([&](PgConn& c) -> absl::Status {
      ANCHORD_ASSIGN_OR_RETURN(out, PgUnbatchedLeaves(c, provider, limit));
      return absl::OkStatus();
    }));
    return out;
  }

  absl::StatusOr<int64_t> CreateMerkleBatch(const NewBatch& b, absl::Time now) override {
    int64_t batch_id = 0;
    ANCHORD_RETURN_IF_ERROR(db_->Tx([&](PgConn& c) -> absl::Status {
      ANCHORD_ASSIGN_OR_RETURN(batch_id, SealPgBatch(c, b, ToMs(now)));
      return absl::OkStatus();
    }));
    leaf_details_.Sealed(batch_id, b);
    return batch_id;
  }

  absl::Status Pause(const PauseInfo& p) override {
    return Exec(
        "INSERT INTO pauses (provider, reason, paused_at, probe_at) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (provider) DO UPDATE SET reason = $2, probe_at = $4",
        PgParams()
            .AddBytes(p.provider)
            .AddBytes(p.reason)
            .Add(ToMs(p.paused_at))
            .Add(ToMs(p.probe_at)));
  }

  absl::StatusOr<std::vector<std::string>> Resume(const std::string& provider) override {
    std::vector<std::string> out;
    ANCHORD_RETURN_IF_ERROR(db_->Tx([&](PgConn& c) -> absl::Status {
      ANCHORD_ASSIGN_OR_RETURN(PgResult r,
                               c.Exec("DELETE FROM pauses WHERE $1 = ''::bytea OR provider = $1 "
                                      "RETURNING provider",
                                      PgParams().AddBytes(provider)));
      out.clear();
      for (int i = 0; i < r.rows(); ++i) out.push_back(r.Bytes(i, 0));
      return absl::OkStatus();
    }));
    std::sort(out.begin(), out.end());
    return out;
  }

  absl::StatusOr<std::vector<PauseInfo>> ListPauses() override {
    std::vector<PauseInfo> out;
    ANCHORD_RETURN_IF_ERROR(db_->Run([&](PgConn& c) -> absl::Status {
      ANCHORD_ASSIGN_OR_RETURN(
          PgResult r,
          c.Exec("SELECT provider, reason, paused_at, probe_at FROM pauses ORDER BY provider"));
      out.clear();
      for (int i = 0; i < r.rows(); ++i) {
        out.push_back({r.Bytes(i, 0), r.Bytes(i, 1), FromMs(r.Int(i, 2)), FromMs(r.Int(i, 3))});
      }
      return absl::OkStatus();
    }));
    return out;
  }

  absl::StatusOr<std::vector<Submission>> PendingHandoff(int limit) override {
    return PendingHandoffExcept(limit, {});
  }

  // The rows owed as rows (roots, per-file rows, FAILED leaves, a leaf changed after its root's
  // acceptance), then the leaves of owed batches (pg_owed_leaves.h), oldest first, none in
  // `skip`. With a lease only the rows returned are claimed: asking for limit + skip.size() rows
  // and dropping the extra, as the default does, claimed rows nobody sent, and the hand-off
  // stalled until their lease ran out (25 s with 30 s leases in bench/pipeline_bench.sh
  // BACKEND=postgresql, issue 11 session 31). A row in `skip` still comes back when its lease
  // ran out while it was in flight: it is dropped here, and its acknowledgement marks it.
  absl::StatusOr<std::vector<Submission>> PendingHandoffExcept(int limit,
                                                               const RowIds& skip) override {
    const size_t want = static_cast<size_t>(std::max(limit, 0));
    const absl::Time now = options_.clock->Now();
    // The owed batches' claims commit at once, each statement on its own, rather than hold the
    // batch rows locked while the rest is read: the marks of the window before move the same
    // rows, and waited up to 1.4 s a run for the reads (issue 11, session 32).
    PgOwedLeaves::Read read;
    ANCHORD_RETURN_IF_ERROR(db_->Run([&](PgConn& c) -> absl::Status {
      ANCHORD_ASSIGN_OR_RETURN(read, owed_.ReadIn(c, want, skip, now));
      return absl::OkStatus();
    }));
    // Rows past a full window of leaves would only be cut again.
    const int64_t below = read.leaves.size() >= want && !read.leaves.empty()
                              ? read.leaves.back().second.id
                              : std::numeric_limits<int64_t>::max();
    std::vector<Submission> rows;
    size_t rows_kept = 0, leaves_kept = 0;
    ANCHORD_RETURN_IF_ERROR(db_->Tx([&](PgConn& c) -> absl::Status {
      ANCHORD_ASSIGN_OR_RETURN(rows, PendingRowsIn(c, want, skip, now, below));
      DropSkipped(&rows, skip);
      // The oldest `want` of both: a prefix of each.
      rows_kept = leaves_kept = 0;
      while (rows_kept + leaves_kept < want &&
             (rows_kept < rows.size() || leaves_kept < read.leaves.size())) {
        const bool row_first =
            leaves_kept == read.leaves.size() ||
            (rows_kept < rows.size() && rows[rows_kept].id < read.leaves[leaves_kept].second.id);
        row_first ? ++rows_kept : ++leaves_kept;
      }
      if (rows_kept < rows.size() && options_.handoff_lease > absl::ZeroDuration()) {
        // Claimed in this transaction and not returned: free again at its commit.
        std::vector<int64_t> cut;
        for (size_t i = rows_kept; i < rows.size(); ++i) cut.push_back(rows[i].id);
        ANCHORD_RETURN_IF_ERROR(c.Exec("UPDATE submissions SET handoff_until = 0 WHERE id = "
                                       "ANY($1::bigint[])",
                                       PgParams().AddIntArray(cut))
                                    .status());
      }
      return absl::OkStatus();
    }));
    rows.resize(rows_kept);
    read.leaves.resize(leaves_kept);
    if (!rows.empty() && !read.leaves.empty()) {
      // A leaf changed after its root's acceptance is owed as a row as well: it goes once, as
      // a row (its batch's hand-off steps over it as over a row in flight).
      absl::flat_hash_set<int64_t> as_row;
      for (const Submission& r : rows) as_row.insert(r.id);
      read.leaves.erase(std::remove_if(read.leaves.begin(), read.leaves.end(),
                                       [&](const auto& l) { return as_row.contains(l.second.id); }),
                        read.leaves.end());
    }
    owed_.ReturnedAsRows(rows);
    owed_.Returned(read);
    std::vector<Submission> out = std::move(rows);
    for (auto& [batch_id, row] : read.leaves) out.push_back(std::move(row));
    std::sort(out.begin(), out.end(),
              [](const Submission& a, const Submission& b) { return a.id < b.id; });
    return WithLeafDetails(std::move(out));
  }

  absl::Status MarkHandedOff(int64_t id, int64_t seq) override {
    return MarkHandedOffBatch({{id, seq}});
  }

  // One transaction for a window of acknowledgements: the leaves returned as a batch's move
  // their batch's handoff_next (pg_owed_leaves.h), the other rows are marked in one statement (a
  // statement per row was 70,000 round trips for 100,000 Merkle leaves). A row acknowledged
  // twice in the window keeps the later version (an UPDATE ... FROM joins each row to one source
  // row only). A row acknowledged as of its latest change gives its hand-off lease back: a later
  // change (a new file of its digest) is then offered at once, not when the lease runs out.
  absl::Status MarkHandedOffBatch(const std::vector<std::pair<int64_t, int64_t>>& rows) override {
    if (rows.empty()) return absl::OkStatus();
    std::vector<std::pair<int64_t, int64_t>> as_rows = rows;
    const PgOwedLeaves::Advances advances = owed_.Acknowledged(&as_rows);
    std::map<int64_t, int64_t> latest;
    for (const auto& [id, seq] : as_rows) {
      auto [it, added] = latest.try_emplace(id, seq);
      if (!added) it->second = std::max(it->second, seq);
    }
    const std::vector<std::pair<int64_t, int64_t>> marks(latest.begin(), latest.end());
    return db_->Tx([&](PgConn& c) -> absl::Status {
      if (!marks.empty()) {
        ANCHORD_RETURN_IF_ERROR(
            c.Exec("UPDATE submissions s SET handed_off_seq = GREATEST(s.handed_off_seq, u.seq), "
                   "handoff_until = CASE WHEN u.seq >= s.change_seq THEN 0 ELSE s.handoff_until "
                   "END FROM unnest($1::bigint[], $2::bigint[]) AS u(id, seq) WHERE s.id = u.id",
                   PgParams().AddIntArrayPairs(marks))
                .status());
      }
      return PgOwedLeaves::WriteIn(c, advances);
    });
  }

  absl::StatusOr<HandoffBatch> BatchForHandoff(int64_t batch_id) override {
    return leaf_details_.ForHandoff(batch_id, LeafSource());
  }

  absl::StatusOr<std::vector<Submission>> GetByDigest(const Digest& digest) override {
    return WithLeafDetails(Query(absl::StrCat("SELECT ", PgOwedLeaves::ColumnsAsOwed(),
                                              " FROM submissions WHERE digest = $1 ORDER BY id"),
                                 PgParams().AddBytes(digest.bytes())));
  }

  absl::StatusOr<std::vector<FileRef>> Refs(const Digest& digest) override {
    std::vector<FileRef> out;
    ANCHORD_RETURN_IF_ERROR(db_->Run([&](PgConn& c) -> absl::Status {
      ANCHORD_ASSIGN_OR_RETURN(PgResult r,
                               c.Exec(absl::StrCat("SELECT ", kFileRefColumns,
                                                   " FROM refs WHERE digest = $1 ORDER BY id"),
                                      PgParams().AddBytes(digest.bytes())));
      out.clear();
      for (int i = 0; i < r.rows(); ++i) out.push_back(ReadFileRef(r, i));
      return absl::OkStatus();
    }));
    return out;
  }

  // A hand-off window's files in one statement instead of one per digest.
  absl::StatusOr<std::vector<std::vector<FileRef>>> RefsOfEach(
      const std::vector<Digest>& digests) override {
    std::vector<std::string> raw;
    raw.reserve(digests.size());
    for (const Digest& d : digests) raw.emplace_back(d.bytes());
    std::map<std::string, std::vector<FileRef>> by_digest;
    ANCHORD_RETURN_IF_ERROR(db_->Run([&](PgConn& c) -> absl::Status {
      ANCHORD_ASSIGN_OR_RETURN(
          PgResult r, c.Exec(absl::StrCat("SELECT ", kFileRefColumns,
                                          ", digest FROM refs WHERE digest = ANY($1::bytea[]) "
                                          "ORDER BY id"),
                             PgParams().AddBytesArray(raw)));
      by_digest.clear();
      for (int i = 0; i < r.rows(); ++i) by_digest[r.Bytes(i, 5)].push_back(ReadFileRef(r, i));
      return absl::OkStatus();
    }));
    std::vector<std::vector<FileRef>> out;
    out.reserve(raw.size());
    for (const std::string& d : raw) {
      auto it = by_digest.find(d);
      out.push_back(it == by_digest.end() ? std::vector<FileRef>() : it->second);
    }
    return out;
  }

  absl::StatusOr<std::map<SubState, int64_t>> SummarizeJob(const std::string& job) override {
    std::map<SubState, int64_t> out;
    ANCHORD_RETURN_IF_ERROR(db_->Run([&](PgConn& c) -> absl::Status {
      ANCHORD_ASSIGN_OR_RETURN(
          PgResult r,
          c.Exec("SELECT m, COUNT(*) FROM (SELECT MIN(s.state) AS m FROM submissions s WHERE "
                 "$1 = ''::bytea OR EXISTS (SELECT 1 FROM refs r WHERE r.digest = s.digest AND "
                 "r.job = $1) GROUP BY s.digest) per_digest GROUP BY m",
                 PgParams().AddBytes(job)));
      out.clear();
      for (int i = 0; i < r.rows(); ++i) out[StateFromInt(r.Int(i, 0))] += r.Int(i, 1);
      return absl::OkStatus();
    }));
    return out;
  }

  absl::Status SaveGate(const std::string& name, absl::Time until) override {
    return Exec(
        "INSERT INTO gates (name, blocked_until) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE "
        "SET blocked_until = GREATEST(gates.blocked_until, $2)",
        PgParams().AddBytes(name).Add(ToMs(until)));
  }

  absl::StatusOr<absl::Time> LoadGate(const std::string& name) override {
    absl::Time out = absl::InfinitePast();
    ANCHORD_RETURN_IF_ERROR(db_->Run([&](PgConn& c) -> absl::Status {
      ANCHORD_ASSIGN_OR_RETURN(PgResult r, c.Exec("SELECT blocked_until FROM gates WHERE name = $1",
                                                  PgParams().AddBytes(name)));
      out = r.rows() > 0 ? FromMs(r.Int(0, 0)) : absl::InfinitePast();
      return absl::OkStatus();
    }));
    return out;
  }

  absl::Status RecordSend(const std::string& bucket, absl::Time when,
                          absl::Time forget_before) override {
    return db_->Tx([&](PgConn& c) -> absl::Status {
      ANCHORD_RETURN_IF_ERROR(c.Exec("DELETE FROM sends WHERE bucket = $1 AND sent_at < $2",
                                     PgParams().AddBytes(bucket).Add(ToMs(forget_before)))
                                  .status());
      return c
          .Exec("INSERT INTO sends (bucket, sent_at) VALUES ($1, $2)",
                PgParams().AddBytes(bucket).Add(ToMs(when)))
          .status();
    });
  }

  absl::StatusOr<std::vector<absl::Time>> RecentSends(const std::string& bucket,
                                                      absl::Time since) override {
    std::vector<absl::Time> out;
    ANCHORD_RETURN_IF_ERROR(db_->Run([&](PgConn& c) -> absl::Status {
      ANCHORD_ASSIGN_OR_RETURN(
          PgResult r, c.Exec("SELECT sent_at FROM sends WHERE bucket = $1 AND sent_at >= $2 "
                             "ORDER BY sent_at",
                             PgParams().AddBytes(bucket).Add(ToMs(since))));
      out.clear();
      for (int i = 0; i < r.rows(); ++i) out.push_back(FromMs(r.Int(i, 0)));
      return absl::OkStatus();
    }));
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

  // Where LeafDetails reads a batch row and its root row.
  LeafDetails::Source LeafSource() {
    LeafDetails::Source source;
    source.batch = [this](int64_t batch_id) -> absl::StatusOr<StoredBatch> {
      StoredBatch out;
      ANCHORD_RETURN_IF_ERROR(db_->Run([&](PgConn& c) -> absl::Status {
        ANCHORD_ASSIGN_OR_RETURN(out, ReadPgBatch(c, batch_id));
        return absl::OkStatus();
      }));
      return out;
    };
    source.root = [this](int64_t batch_id) -> absl::StatusOr<std::optional<Submission>> {
      ANCHORD_ASSIGN_OR_RETURN(std::vector<Submission> root,
                               Query(absl::StrCat("SELECT ", kSubmissionColumns,
                                                  " FROM submissions WHERE ", kPgBatchRootWhere),
                                     PgParams().Add(batch_id)));
      if (root.empty()) return std::optional<Submission>();
      return std::optional<Submission>(std::move(root.front()));
    };
    return source;
  }

  // On `c`, in its transaction: up to `want` rows owed as rows, with ids below `below`, not in
  // `skip` (more when rows in `skip` whose lease ran out come back: the caller drops them). With a
  // lease, each is claimed for it, so replicas hand different rows to the pollers; without, every
  // such row is returned.
  absl::StatusOr<std::vector<Submission>> PendingRowsIn(PgConn& c, size_t want, const RowIds& skip,
                                                        absl::Time now, int64_t below) {
    if (options_.handoff_lease <= absl::ZeroDuration()) {
      ANCHORD_ASSIGN_OR_RETURN(
          PgResult r, c.Exec(absl::StrCat("SELECT ", kSubmissionColumns,
                                          " FROM submissions WHERE state IN (2, 3) AND "
                                          "handed_off_seq < change_seq AND id < $2 ORDER BY id "
                                          "LIMIT $1"),
                             PgParams().Add(static_cast<int64_t>(want + skip.size())).Add(below)));
      return ReadSubmissions(r);
    }
    ANCHORD_ASSIGN_OR_RETURN(
        PgResult r,
        c.Exec(absl::StrCat("UPDATE submissions SET handoff_until = $2 WHERE id IN (SELECT id "
                            "FROM submissions WHERE state IN (2, 3) AND handed_off_seq < "
                            "change_seq AND handoff_until <= $1 AND id < $4 ORDER BY id LIMIT $3 "
                            "FOR UPDATE SKIP LOCKED) RETURNING ",
                            kSubmissionColumns),
               PgParams()
                   .Add(ToMs(now))
                   .Add(ToMs(now + options_.handoff_lease))
                   .Add(static_cast<int64_t>(want))
                   .Add(below)));
    ANCHORD_ASSIGN_OR_RETURN(std::vector<Submission> out, ReadSubmissions(r));
    std::sort(out.begin(), out.end(),
              [](const Submission& a, const Submission& b) { return a.id < b.id; });
    return out;
  }

  absl::Status Exec(const char* sql, const PgParams& params) {
    return db_->Run([&](PgConn& c) { return c.Exec(sql, params).status(); });
  }

  absl::StatusOr<std::vector<Submission>> Query(const std::string& sql, const PgParams& params) {
    std::vector<Submission> out;
    ANCHORD_RETURN_IF_ERROR(db_->Run([&](PgConn& c) -> absl::Status {
      ANCHORD_ASSIGN_OR_RETURN(PgResult r, c.Exec(sql, params));
      ANCHORD_ASSIGN_OR_RETURN(out, ReadSubmissions(r));
      return absl::OkStatus();
    }));
    return out;
  }

  static PgSubmitterOptions WithClock(PgSubmitterOptions o) {
    if (o.clock == nullptr) o.clock = Clock::Real();
    return o;
  }

  std::shared_ptr<PgDb> db_;
  PgSubmitterOptions options_;
  const std::string instance_;
  LeafDetails leaf_details_;
  PgOwedLeaves owed_{instance_, options_.handoff_lease};
  std::atomic<int64_t> leaves_per_batch_{kDefaultLeavesPerBatch};
  PgLeases leases_;  // declared last: its heartbeat stops before the rest goes
};

}  // namespace

absl::StatusOr<std::unique_ptr<SubmitterStore>> OpenPgSubmitterStore(
    std::shared_ptr<ledger::PgDb> db, PgSubmitterOptions options) {
  if (db == nullptr) return absl::InvalidArgumentError("database: not open");
  ANCHORD_RETURN_IF_ERROR(ledger::Migrate(*db, "submitter", SubmitterMigrations()).status());
  return std::unique_ptr<SubmitterStore>(new PgSubmitterStore(std::move(db), options));
}

}  // namespace anchord::submitter
