#include "services/submitter/submitter_store_intake.h"

#include <algorithm>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "libs/common/status_macros.h"
#include "absl/container/inlined_vector.h"
#include "libs/ledger/sqlite_rows.h"
#include "services/submitter/sqlite_batches.h"
#include "services/submitter/submitter_store_schema.h"
#include "services/submitter/store_rows.h"

namespace anchord::submitter {

using ledger::Statement;

FileRef ReadRef(const Statement& s, int base) {
  FileRef f;
  f.job = s.ColumnText(base);
  f.source_path = s.ColumnText(base + 1);
  f.filename = s.ColumnText(base + 2);
  f.size_bytes = s.ColumnInt(base + 3);
  f.mime_type = s.ColumnText(base + 4);
  return f;
}

namespace {

// The columns of a new submissions row, its id first (bound: a queued row's id is chosen before
// it is written, as the first id of its digest's rows), and of a refs row.
constexpr char kInsertSubmission[] =
    "INSERT INTO submissions (id, digest, provider, job, filename, size_bytes, mime_type, "
    "source_path, state, next_attempt_at, created_at, updated_at, mode, fallback_provider, "
    "batch_id, files_kept) VALUES ";
constexpr int kSubmissionParams = 16;
constexpr char kInsertRef[] =
    "INSERT OR IGNORE INTO refs (sub_id, job, source_path, filename, size_bytes, mime_type, "
    "created_at) VALUES ";
constexpr int kRefParams = 7;
// Rows to an INSERT statement (ledger::InsertRows).
constexpr size_t kRowsPerStatement = 16;

bool DistinctProviders(const std::vector<std::string>& providers) {
  for (size_t i = 0; i < providers.size(); ++i) {
    for (size_t j = i + 1; j < providers.size(); ++j) {
      if (providers[i] == providers[j]) return false;
    }
  }
  return true;
}

// One InsertIntakeItems call. A new digest (nearly every item) needs nothing read back: its rows
// get their ids here and are queued, then written with the others, kRowsPerStatement to an
// INSERT (ledger/sqlite_rows.h), before anything reads or writes a row the queue could touch.
// Its file is its rows' own (FilesKept::kOwnOnly): no refs row is written for it.
class Intake {
 public:
  Intake(ledger::Transaction& tx, absl::Time now, int64_t leaves_per_batch,
         ledger::PrefixFilter* known)
      : tx_(tx), now_ms_(ToMs(now)), batches_(tx, leaves_per_batch, now_ms_), known_(known) {}

  absl::StatusOr<InsertResult> One(const NewItem& item) {
    // A digest queued earlier in this call is written before it is looked up again.
    if (Queued(item.digest)) ANCHORD_RETURN_IF_ERROR(Flush());
    ANCHORD_ASSIGN_OR_RETURN(int64_t sub_id, LowestIdOf(item.digest));
    if (sub_id == 0 && !item.providers.empty() && DistinctProviders(item.providers)) {
      if (next_id_ == 0) {
        ANCHORD_ASSIGN_OR_RETURN(
            next_id_, ledger::NextAutoincrementKey(tx_, next_id_stmt_, "submissions", "id"));
      }
      QueuedItem& q = queue_.emplace_back(QueuedItem{&item, next_id_, {}});
      next_id_ += static_cast<int64_t>(item.providers.size());
      if (item.merkle) {
        for (const std::string& provider : item.providers) {
          ANCHORD_ASSIGN_OR_RETURN(int64_t batch, batches_.Take(provider));
          q.batches.push_back(batch);
        }
      }
      // Written once a statement's worth is queued: the queue (and the look for a queued
      // digest) stays this small.
      if (queue_.size() >= kRowsPerStatement) ANCHORD_RETURN_IF_ERROR(Flush());
      return InsertResult{};  // a new digest: QUEUED, not known before
    }
    ANCHORD_RETURN_IF_ERROR(Flush());
    return Known(item, sub_id);
  }

  // Reads, before the call writes anything, the lowest id of every item's digest: kLookAhead
  // digests to a statement (one seek each) instead of a statement per item, whose run, reset and
  // binding cost more than its seek. The answer holds for a digest until an item of it is taken:
  // only an item's own digest gains rows in a call (the queue, Known). LowestIdOf falls back to
  // LowestId from then on.
  //
  // A digest the store's prefix filter (`known_`) says submissions cannot hold is not read: its
  // answer is "none" (a new digest: nearly every item). Every item's digest is added to the
  // filter here, before anything is written.
  absl::Status Prefetch(const std::vector<NewItem>& items) {
    std::vector<absl::string_view> digests;
    digests.reserve(items.size());
    // Sized once: a call holds thousands of digests, and growing the table rehashes them all.
    ahead_.reserve(ahead_.size() + items.size());
    for (const NewItem& item : items) {
      const absl::string_view d = item.digest.bytes();
      if (ahead_.try_emplace(d).second) digests.push_back(d);
    }
    ANCHORD_RETURN_IF_ERROR(ledger::KeepThoseItMayHold(tx_, known_, &digests));
    return ledger::LookAhead(
        tx_, look_ahead_, digests, kLookAhead,
        [](int i) {
          return absl::StrCat("SELECT ", i, ", MIN(id) FROM ", kDigestIndex, " WHERE ",
                              DigestIs(i));
        },
        [this, &digests](size_t k, const Statement& st) {
          if (!st.ColumnIsNull(1)) ahead_[digests[k]].id = st.ColumnInt(1);
        });
  }

  // Writes what is still queued.
  absl::Status Flush() {
    if (queue_.empty()) return absl::OkStatus();
    // Row r of the submissions insert: queue_[rows[r].first], provider rows[r].second.
    std::vector<std::pair<size_t, size_t>> rows;
    for (size_t q = 0; q < queue_.size(); ++q) {
      for (size_t k = 0; k < queue_[q].item->providers.size(); ++k) rows.emplace_back(q, k);
    }
    ANCHORD_RETURN_IF_ERROR(ledger::InsertRows(
        tx_, rows.size(), kSubmissionParams, kInsertSubmission, kRowsPerStatement, add_many_,
        add_one_, [&](Statement& st, int base, size_t r) {
          const QueuedItem& q = queue_[rows[r].first];
          BindSubmission(st, base, *q.item, q.item->file, q.item->providers[rows[r].second],
                         q.batches.empty() ? 0 : q.batches[rows[r].second], FilesKept::kOwnOnly);
          st.Bind(base + 1, q.first_id + static_cast<int64_t>(rows[r].second));
        }));
    rows_added_ += static_cast<int64_t>(rows.size());
    queue_.clear();
    return absl::OkStatus();
  }

  // After the last Flush: the open batches' counts, and the rows added for the prefix filter.
  absl::Status Finish() {
    ANCHORD_RETURN_IF_ERROR(batches_.Finish());
    return known_ == nullptr ? absl::OkStatus() : known_->Settle(tx_, rows_added_);
  }

 private:
  struct QueuedItem {
    const NewItem* item;
    int64_t first_id;                         // of its first provider's row; the others follow
    absl::InlinedVector<int64_t, 1> batches;  // a leaf's open batch, per provider
  };

  bool Queued(const Digest& digest) const {
    for (const QueuedItem& q : queue_) {
      if (q.item->digest == digest) return true;
    }
    return false;
  }

  // Binds a submissions row at base + 2 .. base + kSubmissionParams (its id, base + 1, is the
  // caller's): `file` is the digest's original, `batch` a leaf's open batch (0 for other rows),
  // `kept` where the digest's files are.
  void BindSubmission(Statement& st, int base, const NewItem& item, const FileRef& file,
                      const std::string& provider, int64_t batch, FilesKept kept) {
    st.BindBlobView(base + 2, item.digest.bytes()).BindView(base + 3, provider);
    st.BindView(base + 4, file.job).BindView(base + 5, file.filename);
    st.Bind(base + 6, file.size_bytes);
    st.BindView(base + 7, file.mime_type).BindView(base + 8, file.source_path);
    st.Bind(base + 9, int64_t{0}).Bind(base + 10, now_ms_).Bind(base + 11, now_ms_);
    st.Bind(base + 12, now_ms_);
    st.Bind(base + 13, static_cast<int64_t>(item.merkle ? RowMode::kLeaf : RowMode::kPerFile));
    st.BindView(base + 14, item.fallback_provider);
    st.Bind(base + 15, batch).Bind(base + 16, static_cast<int64_t>(kept));
  }

  void BindRef(Statement& st, int base, int64_t sub_id, const FileRef& file) {
    st.Bind(base + 1, sub_id).BindView(base + 2, file.job).BindView(base + 3, file.source_path);
    st.BindView(base + 4, file.filename).Bind(base + 5, file.size_bytes);
    st.BindView(base + 6, file.mime_type).Bind(base + 7, now_ms_);
  }

  // LowestId's answer, from Prefetch's read while it holds (see Prefetch).
  absl::StatusOr<int64_t> LowestIdOf(const Digest& digest) {
    auto it = ahead_.find(digest.bytes());
    if (it == ahead_.end() || it->second.taken) return LowestId(digest);
    it->second.taken = true;  // an item of the digest is taken: its rows may change from here
    return it->second.id;
  }

  // The lowest submissions id of a digest, 0 when it has none yet. A digest is found by its
  // submissions rows (the digest index); its files hang off the lowest of their ids (refs.sub_id,
  // see the schema).
  absl::StatusOr<int64_t> LowestId(const Digest& digest) {
    ANCHORD_ASSIGN_OR_RETURN(Statement * st, ledger::Reuse(tx_, first_id_, [&] {
                               return absl::StrCat("SELECT MIN(id) FROM ", kDigestIndex, " WHERE ",
                                                   DigestIs(1));
                             }));
    st->BindBlob(1, digest.bytes());
    ANCHORD_ASSIGN_OR_RETURN(bool row, st->Step());
    const int64_t id = row && !st->ColumnIsNull(0) ? st->ColumnInt(0) : 0;
    st->Reset();
    return id;
  }

  // An item whose digest has rows (sub_id, its lowest id), or a new digest the queue does not
  // take. (digest, provider) is the key: a row is added unless the pair has one. No UNIQUE
  // index enforces it (the schema says why): this transaction holds the database's write lock,
  // so nothing can add the pair between the look and the insert. A new digest's first row is a
  // plain INSERT ... VALUES: SQLite gives an INSERT ... SELECT a statement journal (it may write
  // several rows), a copy of every page the insert touches, which cost 1.7 us of CPU per row
  // (measured with the same indexes). Only the row of a known digest needs the SELECT, for its
  // WHERE NOT EXISTS.
  absl::StatusOr<InsertResult> Known(const NewItem& item, int64_t sub_id) {
    next_id_ = 0;  // the store chooses the ids here: read the next one again before queueing
    InsertResult res;
    std::optional<FileRef> original;
    FilesKept kept = FilesKept::kOwnOnly;  // a new digest's
    if (sub_id != 0) {
      ANCHORD_ASSIGN_OR_RETURN(std::tie(kept, original), OriginalOf(sub_id));
    }
    res.known_before = original.has_value();
    const FileRef& file = original.has_value() ? *original : item.file;
    bool all_new = true;
    for (const std::string& provider : item.providers) {
      Statement* add = nullptr;
      if (sub_id == 0) {
        ANCHORD_ASSIGN_OR_RETURN(add, ledger::Reuse(tx_, add_one_, [&] {
                                   return absl::StrCat(kInsertSubmission,
                                                       ledger::Placeholders(kSubmissionParams, 1));
                                 }));
        add->BindNull(1);  // id: the store's choice
      } else {
        ANCHORD_ASSIGN_OR_RETURN(
            add, ledger::Reuse(tx_, add_known_, [&] {
              return absl::StrCat(
                  "INSERT INTO submissions (id, digest, provider, job, filename, "
                  "size_bytes, mime_type, source_path, state, next_attempt_at, "
                  "created_at, updated_at, mode, fallback_provider, batch_id, files_kept) "
                  "SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, "
                  "?14, ?15, ?16 "
                  "WHERE NOT EXISTS (SELECT 1 FROM ",
                  kDigestIndex, " WHERE ", DigestIs(2), " AND provider = ?3)");
            }));
        add->BindNull(1);
      }
      int64_t batch = 0;
      if (item.merkle) {
        ANCHORD_ASSIGN_OR_RETURN(batch, batches_.Take(provider));
      }
      BindSubmission(*add, 0, item, file, provider, batch, kept);
      ANCHORD_RETURN_IF_ERROR(add->Run());
      if (tx_.Changes() == 0) {
        if (batch != 0) batches_.PutBack(batch);
        all_new = false;
      } else {
        ++rows_added_;
        if (sub_id == 0) sub_id = tx_.LastInsertRowId();  // a new digest: its first row is lowest
      }
    }
    if (sub_id == 0) return absl::InternalError("intake: a digest without a submissions row");

    // A file goes to refs when the digest keeps every file there (a digest of an older release),
    // or when it is not the original (which its rows hold); a new digest's file is its rows'.
    bool new_ref = false;
    if (kept == FilesKept::kAllInRefs ||
        (original.has_value() && !SameFile(*original, item.file))) {
      ANCHORD_ASSIGN_OR_RETURN(Statement * add_ref, ledger::Reuse(tx_, ref_one_, [&] {
                                 return absl::StrCat(kInsertRef,
                                                     ledger::Placeholders(kRefParams, 1));
                               }));
      BindRef(*add_ref, 0, sub_id, item.file);
      ANCHORD_RETURN_IF_ERROR(add_ref->Run());
      new_ref = tx_.Changes() > 0;
    }
    if (original.has_value()) {
      if (!SameFile(*original, item.file)) res.duplicate_of = original->source_path;
      // A new file with a known digest: the poller must hear of it (re-hand-off). A sealed
      // leaf whose state was its batch's is written with it, so that it is handed off again on
      // its own (through the hand-off index). Its rows now have files in refs.
      if (new_ref) {
        ANCHORD_ASSIGN_OR_RETURN(
            Statement * bump, ledger::Reuse(tx_, bump_, [&] {
              return absl::StrCat(
                  "UPDATE ", kDigestIndex, " SET state = ", EffectiveState("submissions."),
                  ", change_seq = change_seq + 1, updated_at = ?2, files_kept = CASE files_kept "
                  "WHEN 0 THEN 0 ELSE 2 END WHERE ",
                  DigestIs(1));
            }));
        bump->BindBlob(1, item.digest.bytes()).Bind(2, now_ms_);
        ANCHORD_RETURN_IF_ERROR(bump->Run());
      }
    }
    // A row just inserted is QUEUED, the least advanced state there is: no need to ask.
    if (!all_new) {
      ANCHORD_ASSIGN_OR_RETURN(Statement * min_state, ledger::Reuse(tx_, min_state_, [&] {
                                 return absl::StrCat("SELECT MIN(", EffectiveState("submissions."),
                                                     ") FROM ", kDigestIndex, " WHERE ",
                                                     DigestIs(1));
                               }));
      min_state->BindBlob(1, item.digest.bytes());
      ANCHORD_ASSIGN_OR_RETURN(bool has_row, min_state->Step());
      if (has_row && !min_state->ColumnIsNull(0)) {
        res.state = StateFromInt(min_state->ColumnInt(0));
      }
      min_state->Reset();
    }
    return res;
  }

  static bool SameFile(const FileRef& a, const FileRef& b) {
    return a.job == b.job && a.source_path == b.source_path;  // refs' key, beside the digest
  }

  // Where the digest whose lowest id is `sub_id` keeps its files, and its original file (none
  // only for a digest of an older release that has no file at all).
  absl::StatusOr<std::pair<FilesKept, std::optional<FileRef>>> OriginalOf(int64_t sub_id) {
    ANCHORD_ASSIGN_OR_RETURN(
        Statement * first_row,
        ledger::Reuse(tx_, first_row_,
                      "SELECT files_kept, job, source_path, filename, size_bytes, mime_type "
                      "FROM submissions WHERE id = ?1"));
    first_row->Bind(1, sub_id);
    ANCHORD_ASSIGN_OR_RETURN(bool has_row, first_row->Step());
    if (!has_row) {
      first_row->Reset();
      return absl::InternalError(absl::StrCat("intake: submissions row ", sub_id, " vanished"));
    }
    std::pair<FilesKept, std::optional<FileRef>> out;
    out.first = static_cast<FilesKept>(first_row->ColumnInt(0));
    if (out.first != FilesKept::kAllInRefs) out.second = ReadRef(*first_row, 1);
    first_row->Reset();
    if (out.first != FilesKept::kAllInRefs) return out;
    ANCHORD_ASSIGN_OR_RETURN(
        Statement * first_ref,
        ledger::Reuse(tx_, first_ref_,
                      "SELECT job, source_path, filename, size_bytes, mime_type FROM refs "
                      "WHERE sub_id = ?1 ORDER BY id LIMIT 1"));
    first_ref->Bind(1, sub_id);
    ANCHORD_ASSIGN_OR_RETURN(bool has_ref, first_ref->Step());
    if (has_ref) out.second = ReadRef(*first_ref, 0);
    first_ref->Reset();
    return out;
  }

  ledger::Transaction& tx_;
  const int64_t now_ms_;
  OpenLeafBatches batches_;
  std::optional<Statement> first_id_, first_row_, first_ref_, add_one_, add_many_, add_known_,
      ref_one_, bump_, min_state_, next_id_stmt_;
  std::vector<QueuedItem> queue_;  // kRowsPerStatement at most
  // A digest's lowest id as Prefetch read it (0: none); `taken` once an item of it was taken.
  struct Ahead {
    int64_t id = 0;
    bool taken = false;
  };
  static constexpr int kLookAhead = 16;  // digests to a Prefetch statement
  std::optional<Statement> look_ahead_;
  // By raw digest (views into the call's items, which outlive the Intake).
  absl::flat_hash_map<absl::string_view, Ahead> ahead_;
  int64_t next_id_ = 0;                // 0: read it (NextAutoincrementKey) before queueing
  ledger::PrefixFilter* const known_;  // optional
  int64_t rows_added_ = 0;             // submissions rows this call inserted
};

}  // namespace

absl::StatusOr<std::vector<InsertResult>> InsertIntakeItems(ledger::Transaction& tx,
                                                            const std::vector<NewItem>& items,
                                                            absl::Time now,
                                                            int64_t leaves_per_batch,
                                                            ledger::PrefixFilter* known) {
  Intake intake(tx, now, leaves_per_batch, known);
  ANCHORD_RETURN_IF_ERROR(intake.Prefetch(items));
  std::vector<InsertResult> out;
  out.reserve(items.size());
  for (const NewItem& item : items) {
    ANCHORD_ASSIGN_OR_RETURN(InsertResult res, intake.One(item));
    out.push_back(std::move(res));
  }
  ANCHORD_RETURN_IF_ERROR(intake.Flush());
  ANCHORD_RETURN_IF_ERROR(intake.Finish());
  return out;
}

}  // namespace anchord::submitter
