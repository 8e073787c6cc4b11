#include "services/submitter/sqlite_summary.h"

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "libs/common/status_macros.h"
#include "services/submitter/sqlite_batches.h"
#include "services/submitter/submitter_store_schema.h"
#include "services/submitter/store_rows.h"

namespace anchord::submitter {

using ledger::Statement;

// Why not one GROUP BY digest: grouping 100,000 rows by their random digest walks the table in
// digest order (a random page per row) and, with a job, first builds a temporary index of the
// job's digests; that was 0.4 s per call at 100,000 rows, and `archive --wait` asks every 2 s.
// Here almost every digest has one row (one provider), so rows are counted by state in table
// order, each row being its own digest; the few digests with several rows (found from the
// digest index alone) are then corrected to count once, at their least advanced state.
// "A digest with a file in the job" is "a row whose own file is in the job (the digest's
// original: every row of the digest carries it) or that a ref of the job names" (a ref names its
// digest's first row, sub_id), found through the refs (sub_id, job, source_path) index; the rows
// of an older release keep every file in refs, and a row whose own file is its only one has none
// there (FilesKept, submitter_store_schema.h). Every row of a digest with several rows may match:
// the second query below counts such a digest once whichever of its rows the first counted.
constexpr char kInJob[] =
    "(s.files_kept <> 0 AND s.job = ?J) OR (s.files_kept <> 1 AND EXISTS (SELECT 1 FROM refs r "
    "WHERE r.sub_id = s.id AND r.job = ?J))";

static_assert(static_cast<int64_t>(FilesKept::kAllInRefs) == 0 &&
              static_cast<int64_t>(FilesKept::kOwnOnly) == 1);

std::string InJob(int param) {
  return absl::StrReplaceAll(kInJob, {{"?J", absl::StrCat("?", param)}});
}
absl::StatusOr<std::map<SubState, int64_t>> SummarizeSqliteJob(ledger::Session& session,
                                                               const std::string& job) {
  std::map<int64_t, int64_t> by_state;  // state -> rows counted
  {
    ANCHORD_ASSIGN_OR_RETURN(
        Statement s,
        session.Prepare(absl::StrCat("SELECT s.state, ", SqliteCountedBatch("s."),
                                     " AS b, COUNT(*) FROM submissions s WHERE ?1 = '' OR ",
                                     InJob(1), " GROUP BY s.state, b")));
    s.Bind(1, job);
    ANCHORD_ASSIGN_OR_RETURN(auto verdicts, SqliteBatchVerdicts(session));
    for (;;) {
      ANCHORD_ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      by_state[static_cast<int64_t>(
          SqliteCountedState(verdicts, s.ColumnInt(0), s.ColumnInt(1)))] += s.ColumnInt(2);
    }
  }
  std::vector<std::string> multi;  // digests with more than one row
  {
    // From the digest index alone: the 8-byte prefixes held by several rows, then those rows'
    // digests (two digests sharing a prefix are counted apart).
    ANCHORD_ASSIGN_OR_RETURN(
        Statement prefixes,
        session.Prepare(absl::StrCat("SELECT substr(digest, 1, 8) FROM ", kDigestIndex,
                                     " GROUP BY substr(digest, 1, 8) HAVING COUNT(*) > 1")));
    ANCHORD_ASSIGN_OR_RETURN(Statement digests,
                             session.Prepare(absl::StrCat("SELECT digest FROM ", kDigestIndex,
                                                          " WHERE substr(digest, 1, 8) = ?1")));
    for (;;) {
      ANCHORD_ASSIGN_OR_RETURN(bool row, prefixes.Step());
      if (!row) break;
      std::map<std::string, int> rows_of;
      digests.Reset();
      digests.BindBlob(1, prefixes.ColumnText(0));
      for (;;) {
        ANCHORD_ASSIGN_OR_RETURN(bool d, digests.Step());
        if (!d) break;
        ++rows_of[digests.ColumnText(0)];
      }
      for (const auto& [digest, n] : rows_of) {
        if (n > 1) multi.push_back(digest);
      }
    }
    digests.Reset();
  }
  if (!multi.empty()) {
    ANCHORD_ASSIGN_OR_RETURN(
        Statement rows,
        session.Prepare(absl::StrCat("SELECT ", EffectiveState("s."), ", ?2 = '' OR ", InJob(2),
                                     " FROM submissions AS s "
                                     "INDEXED BY submissions_by_digest WHERE ",
                                     DigestIs(1, "s."))));
    for (const std::string& digest : multi) {
      rows.Reset();
      rows.BindBlob(1, digest).Bind(2, job);
      int64_t least = -1;
      bool counted = false;
      for (;;) {
        ANCHORD_ASSIGN_OR_RETURN(bool row, rows.Step());
        if (!row) break;
        const int64_t state = rows.ColumnInt(0);
        least = least < 0 ? state : std::min(least, state);
        if (rows.ColumnInt(1) != 0) {  // counted by the first query: taken back here
          --by_state[state];
          counted = true;
        }
      }
      if (counted) ++by_state[least];
    }
    rows.Reset();
  }
  std::map<SubState, int64_t> out;
  for (const auto& [state, n] : by_state) {
    if (n > 0) out[StateFromInt(state)] += n;
  }
  return out;
}

}  // namespace anchord::submitter
