#include "services/poller/poller_store_counts.h"

#include <algorithm>
#include <set>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "libs/common/status_macros.h"
#include "services/poller/poller_store_rows.h"
#include "services/poller/store_rows.h"

namespace anchord::poller {
namespace {

// One count per (provider, state, stalled). The triggers keep it through deletes and moves; an
// UPDATE that changes none of the three leaves the counts alone (the WHEN clause), so the
// frequent MarkChecked and ClaimChecks updates cost nothing here. Inserts are counted by their
// only writer, TrackInSqlite, once per Track call (AddInsertedCounts): an insert trigger made
// SQLite keep a statement journal for every proof inserted (a copy of each page the insert
// touched), 2.7 us of CPU per row measured, more than the count itself.
constexpr char kCountsSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS proof_counts (
  provider TEXT NOT NULL,
  state INTEGER NOT NULL,
  stalled INTEGER NOT NULL,
  n INTEGER NOT NULL,
  PRIMARY KEY (provider, state, stalled)
) WITHOUT ROWID;
CREATE TRIGGER proof_counts_delete AFTER DELETE ON proofs BEGIN
  UPDATE proof_counts SET n = n - 1
    WHERE provider = OLD.provider AND state = OLD.state AND stalled = OLD.stalled;
END;
CREATE TRIGGER proof_counts_update AFTER UPDATE OF provider, state, stalled ON proofs
  WHEN OLD.provider IS NOT NEW.provider OR OLD.state IS NOT NEW.state
    OR OLD.stalled IS NOT NEW.stalled
BEGIN
  UPDATE proof_counts SET n = n - 1
    WHERE provider = OLD.provider AND state = OLD.state AND stalled = OLD.stalled;
  INSERT INTO proof_counts (provider, state, stalled, n)
    VALUES (NEW.provider, NEW.state, NEW.stalled, 1)
    ON CONFLICT (provider, state, stalled) DO UPDATE SET n = n + 1;
END;
)sql";

// The count triggers a database has, by name.
absl::StatusOr<std::set<std::string>> CountTriggers(ledger::Session& session) {
  ANCHORD_ASSIGN_OR_RETURN(
      ledger::Statement st,
      session.Prepare("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name IN "
                      "('proof_counts_insert', 'proof_counts_delete', 'proof_counts_update')"));
  std::set<std::string> out;
  for (;;) {
    ANCHORD_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.insert(st.ColumnText(0));
  }
  return out;
}

// Summarize's counts, in the caller's read transaction. Rows per state (every digest counted as
// if it had one row), then corrected for the digests with several rows (a root or a fallback with
// two providers: few), which count once at their furthest state. Grouping by digest instead sorts
// the whole table (proofs_by_digest holds 8-byte prefixes, not digests): rows per state come from
// proof_counts without a job and from one pass over the table with one; the several-row digests
// from one pass over proofs_by_digest alone (its multi-row prefixes), then a seek per prefix.
absl::StatusOr<PollerStore::Summary> SummarizeIn(ledger::Session& session, const std::string& job) {
  std::map<int64_t, int64_t> rows_by_state;
  {
    ANCHORD_ASSIGN_OR_RETURN(
        ledger::Statement st,
        session.Prepare(job.empty() ? std::string("SELECT state, SUM(n) FROM proof_counts "
                                                  "GROUP BY state")
                                    : absl::StrCat("SELECT state, COUNT(*) FROM proofs AS p WHERE ",
                                                   kSqliteHasJobFile, " GROUP BY state")));
    if (!job.empty()) st.Bind(1, job);
    for (;;) {
      ANCHORD_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      rows_by_state[st.ColumnInt(0)] += st.ColumnInt(1);
    }
  }
  ANCHORD_ASSIGN_OR_RETURN(
      ledger::Statement prefixes,
      session.Prepare("SELECT substr(digest, 1, 8) FROM proofs INDEXED BY proofs_by_digest "
                      "GROUP BY substr(digest, 1, 8) HAVING COUNT(*) > 1"));
  // A prefix's rows (of the job's digests), two digests sharing a prefix told apart by digest.
  ANCHORD_ASSIGN_OR_RETURN(
      ledger::Statement rows,
      session.Prepare(absl::StrCat(
          "SELECT p.digest, p.state FROM proofs AS p INDEXED BY proofs_by_digest WHERE "
          "substr(p.digest, 1, 8) = ?1",
          job.empty() ? "" : absl::StrCat(" AND ", kSqliteHasJobFile))));
  for (;;) {
    ANCHORD_ASSIGN_OR_RETURN(bool row, prefixes.Step());
    if (!row) break;
    rows.Reset();
    rows.BindBlob(1, prefixes.ColumnText(0));
    if (!job.empty()) rows.Bind(2, job);
    std::map<std::string, std::vector<int64_t>> states_of;
    for (;;) {
      ANCHORD_ASSIGN_OR_RETURN(bool r, rows.Step());
      if (!r) break;
      states_of[rows.ColumnText(0)].push_back(rows.ColumnInt(1));
    }
    for (const auto& [digest, states] : states_of) {
      if (states.size() < 2) continue;
      for (int64_t state : states) --rows_by_state[state];
      ++rows_by_state[*std::max_element(states.begin(), states.end())];
    }
  }
  rows.Reset();
  PollerStore::Summary out;
  for (const auto& [state, n] : rows_by_state) {
    if (n <= 0 || !anchord::v1::DigestState_IsValid(static_cast<int>(state))) continue;
    out.digests_by_state[static_cast<DigestState>(state)] += n;
    out.digests += n;
  }
  return out;
}

}  // namespace

absl::StatusOr<PollerStore::Summary> SummarizeSqlite(ledger::Snapshot& snapshot,
                                                     const std::string& job) {
  ANCHORD_RETURN_IF_ERROR(snapshot.begin_status());
  return SummarizeIn(snapshot, job);
}

absl::Status InitProofCounts(ledger::Transaction& tx) {
  ANCHORD_RETURN_IF_ERROR(tx.begin_status());
  ANCHORD_ASSIGN_OR_RETURN(const std::set<std::string> present, CountTriggers(tx));
  if (present.count("proof_counts_delete") > 0 && present.count("proof_counts_update") > 0) {
    if (present.count("proof_counts_insert") == 0) return absl::OkStatus();
    // Written by a release that counted inserts with a trigger: its counts are right (the trigger
    // kept them until now), and from here on TrackInSqlite counts them. (A database this release
    // wrote, opened by that older release, has two of its three triggers: it counts again.)
    ANCHORD_RETURN_IF_ERROR(tx.Exec("DROP TRIGGER proof_counts_insert"));
    return tx.Commit();
  }
  // A database from before the counts (or one whose triggers were dropped): start again from a
  // full count, once. This is the only scan of the table, at the first open after the upgrade.
  ANCHORD_RETURN_IF_ERROR(
      tx.Exec("DROP TRIGGER IF EXISTS proof_counts_insert;"
              "DROP TRIGGER IF EXISTS proof_counts_delete;"
              "DROP TRIGGER IF EXISTS proof_counts_update;"
              "DROP TABLE IF EXISTS proof_counts;"));
  ANCHORD_RETURN_IF_ERROR(tx.Exec(kCountsSchema));
  ANCHORD_RETURN_IF_ERROR(
      tx.Exec("INSERT INTO proof_counts (provider, state, stalled, n) "
              "SELECT provider, state, stalled, COUNT(*) FROM proofs "
              "GROUP BY provider, state, stalled;"));
  return tx.Commit();
}

absl::Status AddInsertedCounts(ledger::Transaction& tx, const InsertedCounts& inserted) {
  if (inserted.empty()) return absl::OkStatus();
  ANCHORD_ASSIGN_OR_RETURN(
      ledger::Statement st,
      tx.Prepare("INSERT INTO proof_counts (provider, state, stalled, n) VALUES (?1, ?2, ?3, ?4) "
                 "ON CONFLICT (provider, state, stalled) DO UPDATE SET n = n + excluded.n"));
  for (const auto& [key, n] : inserted) {
    st.Reset();
    st.Bind(1, std::get<0>(key)).Bind(2, std::get<1>(key)).Bind(3, std::get<2>(key)).Bind(4, n);
    ANCHORD_RETURN_IF_ERROR(st.Run());
  }
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, PollerStore::ProviderStats>> ReadProviderStats(
    ledger::Session& session) {
  std::map<std::string, PollerStore::ProviderStats> out;
  // (provider, stalled) pairs that hold pending proofs: each gets one seek for its oldest.
  std::vector<std::pair<std::string, int64_t>> pending_groups;
  {
    auto st = session.Prepare("SELECT provider, state, stalled, n FROM proof_counts WHERE n > 0");
    if (!st.ok()) return st.status();
    while (true) {
      auto row = st->Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      PollerStore::ProviderStats& ps = out[st->ColumnText(0)];
      const int state = static_cast<int>(st->ColumnInt(1));
      const int64_t stalled = st->ColumnInt(2);
      const int64_t n = st->ColumnInt(3);
      if (anchord::v1::DigestState_IsValid(state)) {
        ps.proofs_by_state[static_cast<DigestState>(state)] += n;
      }
      if (state == kPending) {
        if (stalled == 1) ps.stalled += n;
        pending_groups.emplace_back(st->ColumnText(0), stalled);
      }
    }
  }
  auto oldest = session.Prepare(kOldestPendingQuery);
  if (!oldest.ok()) return oldest.status();
  for (const auto& [provider, stalled] : pending_groups) {
    oldest->Reset();
    oldest->Bind(1, provider).Bind(2, static_cast<int64_t>(kPending)).Bind(3, stalled);
    auto row = oldest->Step();
    if (!row.ok()) return row.status();
    if (!*row) continue;
    // Unset (InfinitePast) wins the minimum as it did in one GROUP BY, and then means "none".
    absl::Time t = FromDb(oldest->ColumnInt(0));
    PollerStore::ProviderStats& ps = out[provider];
    if (t < ps.oldest_pending) ps.oldest_pending = t;
  }
  for (auto& [provider, ps] : out) {
    if (ps.oldest_pending == absl::InfinitePast()) ps.oldest_pending = absl::InfiniteFuture();
  }
  return out;
}

// temp_store=MEMORY: with triggers on `proofs` every UPDATE or DELETE of a proof runs with a
// statement journal (to undo the trigger's writes if the statement fails), and SQLite keeps
// statement journals in temporary files by default: measured, that halved the rate of storing
// hand-offs. In memory the journal holds only the pages one statement touches.
// wal_autocheckpoint=32768 (128 MiB of WAL, against 32 MiB for every store in libs/ledger): a
// Merkle batch's hand-off rewrites most pages of the random-key indexes (the digests') in each of
// its commits, and a checkpoint copies each page it finds into the database file once however
// many commits wrote it, so fewer checkpoints write less: measured with bench/track_bench.sh at
// 100,000 leaves, 4.96 -> 4.25 KiB written per leaf. Durability is unchanged (a commit is
// durable in the WAL); the WAL file grows to that size on disk before it is reused.
absl::Status ApplySqlitePollerTuning(ledger::Session& session,
                                     const SqlitePollerStoreOptions& options) {
  if (options.mmap_bytes < 0) {
    return absl::InvalidArgumentError("sqlite mmap_bytes: must be 0 (no mapping) or more");
  }
  if (options.cache_kib <= 0) {
    return absl::InvalidArgumentError("sqlite cache_kib: must be more than 0");
  }
  return session.Exec(absl::StrCat("PRAGMA mmap_size=", options.mmap_bytes, "; PRAGMA cache_size=-",
                                   options.cache_kib,
                                   "; PRAGMA temp_store=MEMORY; PRAGMA wal_autocheckpoint=32768;"));
}

}  // namespace anchord::poller
