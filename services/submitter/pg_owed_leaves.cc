#include "services/submitter/pg_owed_leaves.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "libs/common/status_macros.h"
#include "services/submitter/pg_submitter_schema.h"
#include "services/submitter/store_rows.h"

namespace anchord::submitter {

using ledger::PgParams;
using ledger::PgResult;

namespace {

// A read claims one batch, then two more, four more, ... until it has `want` leaves, at most this
// many times: it holds hardly more batches than it reads from (another replica takes the next
// ones), and a window of many small batches still takes a few statements.
constexpr int kMaxClaimSteps = 16;

}  // namespace

absl::StatusOr<PgOwedLeaves::Read> PgOwedLeaves::ReadIn(ledger::PgConn& c, size_t want,
                                                        const RowIds& skip, absl::Time now) {
  Read out;
  if (want == 0) return out;
  // This replica's view as of now; a mark committed meanwhile only moves `next` further.
  absl::flat_hash_map<int64_t, Batch> known;
  {
    absl::MutexLock lock(&mu_);
    known = batches_;
  }
  size_t left = want;
  int64_t after = 0;  // batches are claimed in id order, past those already looked at
  int64_t claim = 1;
  for (int step = 0; step < kMaxClaimSteps && left > 0; ++step, claim *= 2) {
    // A batch is this replica's while its lease runs (renewed by every read); a lapsed one is
    // anybody's. SKIP LOCKED: replicas claiming at once take different batches.
    ANCHORD_ASSIGN_OR_RETURN(
        PgResult claimed,
        c.Exec("UPDATE batches SET handoff_owner = $1, handoff_until = $2 WHERE id IN (SELECT id "
               "FROM batches WHERE handoff_next >= 0 AND id > $3 AND (handoff_until <= $4 OR "
               "handoff_owner = $1) ORDER BY id LIMIT $5 FOR UPDATE SKIP LOCKED) RETURNING id, "
               "handoff_next",
               PgParams()
                   .AddBytes(owner_)
                   .Add(ToMs(now + lease_))
                   .Add(after)
                   .Add(ToMs(now))
                   .Add(claim)));
    if (claimed.rows() == 0) break;
    std::vector<std::pair<int64_t, int64_t>> batches;
    for (int i = 0; i < claimed.rows(); ++i) {
      batches.emplace_back(claimed.Int(i, 0), claimed.Int(i, 1));
    }
    std::sort(batches.begin(), batches.end());
    for (const auto& [batch_id, stored_next] : batches) {
      after = batch_id;
      out.batch_next.emplace_back(batch_id, stored_next);
      if (left == 0) continue;  // claimed (renewed) only
      const Batch* mine = nullptr;
      if (auto it = known.find(batch_id); it != known.end()) mine = &it->second;
      auto acked = [&](int64_t id) {
        if (mine == nullptr) return false;
        auto o = mine->out.find(id);
        return o != mine->out.end() && o->second;
      };
      const int64_t next = std::max(stored_next, mine != nullptr ? mine->next : int64_t{0});
      // Past the leaves in flight and acknowledged, so that a batch in flight is not read again
      // only to be stepped over: from the first leaf returned before that is neither (sent on a
      // stream that broke), else from the end of those returned, then over the ids in flight.
      int64_t start = next;
      if (mine != nullptr && mine->read_end > next) {
        start = mine->read_end;
        for (auto it = mine->out.lower_bound(next);
             it != mine->out.end() && it->first < mine->read_end; ++it) {
          if (!it->second && skip.count(it->first) == 0) {
            start = it->first;
            break;
          }
        }
      }
      while (skip.count(start) > 0 || acked(start)) ++start;
      // As many as are wanted, and as many more as may be stepped over.
      int64_t ask = static_cast<int64_t>(left);
      for (auto it = skip.lower_bound(start); it != skip.end(); ++it) ++ask;
      if (mine != nullptr) {
        for (auto it = mine->out.lower_bound(start); it != mine->out.end(); ++it) {
          if (it->second) ++ask;
        }
      }
      ANCHORD_ASSIGN_OR_RETURN(
          PgResult leaves,
          c.Exec(absl::StrCat("SELECT ", kSubmissionColumns,
                              " FROM submissions WHERE batch_id = $1 AND id >= $2 AND mode = 1 "
                              "AND state = 2 ORDER BY id LIMIT $3"),
                 PgParams().Add(batch_id).Add(start).Add(ask)));
      if (leaves.rows() == 0 && start == next) {
        // Every leaf is acknowledged: the batch is owed no more.
        ANCHORD_RETURN_IF_ERROR(
            c.Exec("UPDATE batches SET handoff_next = -1, handoff_owner = '', handoff_until = 0 "
                   "WHERE id = $1 AND handoff_next >= 0",
                   PgParams().Add(batch_id))
                .status());
        out.batch_next.back().second = -1;
        continue;
      }
      ANCHORD_ASSIGN_OR_RETURN(std::vector<Submission> rows, ReadSubmissions(leaves));
      for (Submission& r : rows) {
        if (left == 0) break;
        if (skip.count(r.id) > 0 || acked(r.id)) continue;
        // Stored handed off as of its root's acceptance; owed, as this read found it.
        r.handed_off_seq = std::min(r.handed_off_seq, r.change_seq - 1);
        out.leaves.emplace_back(batch_id, std::move(r));
        --left;
      }
    }
  }
  std::sort(out.leaves.begin(), out.leaves.end(),
            [](const auto& a, const auto& b) { return a.second.id < b.second.id; });
  return out;
}

void PgOwedLeaves::Returned(const Read& read) {
  absl::MutexLock lock(&mu_);
  absl::flat_hash_map<int64_t, bool> seen;  // batch id -> still owed
  for (const auto& [batch_id, next] : read.batch_next) {
    seen[batch_id] = next >= 0;
    if (next < 0) {
      if (auto it = batches_.find(batch_id); it != batches_.end()) {
        for (const auto& [id, acked] : it->second.out) out_.erase(id);
        batches_.erase(it);
      }
      continue;
    }
    Batch& b = batches_[batch_id];
    b.next = std::max(b.next, next);
  }
  for (const auto& [batch_id, row] : read.leaves) {
    Batch& b = batches_[batch_id];
    b.out.try_emplace(row.id, false);
    b.read_end = std::max(b.read_end, row.id + 1);
    out_[row.id] = {batch_id, row.change_seq};
  }
  // A batch this replica no longer holds (another took it over after a lapse) and owes nothing
  // to: forgotten, and read afresh from handoff_next if it comes back.
  for (auto it = batches_.begin(); it != batches_.end();) {
    if (it->second.out.empty() && seen.find(it->first) == seen.end()) {
      batches_.erase(it++);
    } else {
      ++it;
    }
  }
}

void PgOwedLeaves::ReturnedAsRows(const std::vector<Submission>& rows) {
  absl::MutexLock lock(&mu_);
  for (const Submission& r : rows) {
    auto it = out_.find(r.id);
    if (it == out_.end()) continue;
    // Settled as far as its batch is concerned: its own acknowledgement marks the row.
    if (auto b = batches_.find(it->second.first); b != batches_.end()) b->second.out[r.id] = true;
    out_.erase(it);
  }
}

PgOwedLeaves::Advances PgOwedLeaves::Acknowledged(std::vector<std::pair<int64_t, int64_t>>* rows) {
  absl::MutexLock lock(&mu_);
  std::vector<int64_t> touched;
  std::vector<std::pair<int64_t, int64_t>> as_rows;
  as_rows.reserve(rows->size());
  for (const auto& row : *rows) {
    auto it = out_.find(row.first);
    if (it == out_.end()) {
      as_rows.push_back(row);
      continue;
    }
    const auto [batch_id, returned_seq] = it->second;
    if (row.second < returned_seq) continue;  // still owed: read again
    if (auto b = batches_.find(batch_id); b != batches_.end()) {
      b->second.out[row.first] = true;
      touched.push_back(batch_id);
    }
    out_.erase(it);
  }
  rows->swap(as_rows);
  std::sort(touched.begin(), touched.end());
  touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
  Advances advances;
  for (int64_t batch_id : touched) {
    Batch& b = batches_[batch_id];
    const int64_t before = b.next;
    while (!b.out.empty() && b.out.begin()->second) {
      b.next = std::max(b.next, b.out.begin()->first + 1);
      b.out.erase(b.out.begin());
    }
    if (b.next != before) advances.emplace_back(batch_id, b.next);
  }
  return advances;
}

absl::Status PgOwedLeaves::WriteIn(ledger::PgConn& c, const Advances& advances) {
  if (advances.empty()) return absl::OkStatus();
  return c
      .Exec(
          "UPDATE batches b SET handoff_next = GREATEST(b.handoff_next, u.n) FROM "
          "unnest($1::bigint[], $2::bigint[]) AS u(id, n) WHERE b.id = u.id AND b.handoff_next >= "
          "0",
          PgParams().AddIntArrayPairs(advances))
      .status();
}

absl::Status PgOwedLeaves::OweLeavesOfRootIn(ledger::PgConn& c, int64_t root_id) {
  return c
      .Exec(
          "UPDATE batches SET handoff_next = 0 WHERE id = (SELECT batch_id FROM submissions "
          "WHERE id = $1 AND mode = 2)",
          PgParams().Add(root_id))
      .status();
}

const std::string& PgOwedLeaves::ColumnsAsOwed() {
  // Built once: GetByDigest serves every status query.
  static const std::string* const kColumns = new std::string(absl::StrReplaceAll(
      kSubmissionColumns,
      {{" handed_off_seq,",
        " CASE WHEN mode = 1 AND state = 2 AND id >= COALESCE((SELECT ob.handoff_next FROM "
        "batches ob WHERE ob.id = submissions.batch_id AND ob.handoff_next >= 0), id + 1) THEN "
        "LEAST(handed_off_seq, change_seq - 1) ELSE handed_off_seq END,"}}));
  return *kColumns;
}

}  // namespace anchord::submitter
