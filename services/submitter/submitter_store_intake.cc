#include "services/submitter/submitter_store_intake.h"

#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "libs/common/status_macros.h"
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

absl::StatusOr<std::vector<InsertResult>> InsertIntakeItems(ledger::Transaction& tx,
                                                            const std::vector<NewItem>& items,
                                                            absl::Time now) {
  // A digest is found by its submissions rows (the digest index); its files
  // hang off the lowest of their ids (refs.sub_id, see the schema).
  ANCHORD_ASSIGN_OR_RETURN(
      Statement first_id,
      tx.Prepare(absl::StrCat("SELECT MIN(id) FROM ", kDigestIndex, " WHERE ", DigestIs(1))));
  ANCHORD_ASSIGN_OR_RETURN(
      Statement first_ref,
      tx.Prepare("SELECT job, source_path, filename, size_bytes, mime_type FROM refs "
                 "WHERE sub_id = ?1 ORDER BY id LIMIT 1"));
  ANCHORD_ASSIGN_OR_RETURN(
      Statement add_ref,
      tx.Prepare("INSERT OR IGNORE INTO refs (sub_id, job, source_path, filename, size_bytes, "
                 "mime_type, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"));
  ANCHORD_ASSIGN_OR_RETURN(
      Statement bump,
      tx.Prepare(absl::StrCat("UPDATE ", kDigestIndex,
                              " SET change_seq = change_seq + 1, updated_at = ?2 WHERE ",
                              DigestIs(1))));
  // (digest, provider) is the key: a row is added unless the pair has one. No UNIQUE index
  // enforces it (the schema says why): this transaction holds the database's write lock, so
  // nothing can add the pair between the look and the insert. A digest with no row at all (the
  // lowest-id lookup below found none: nearly every digest) needs no look for its first row.
  // The first row of a new digest is a plain INSERT ... VALUES: SQLite gives an INSERT ... SELECT
  // a statement journal (it may write several rows), a copy of every page the insert touches,
  // which cost 1.7 us of CPU per row (measured with the same indexes). Only the rarer row of a
  // known digest needs the SELECT, for its WHERE NOT EXISTS.
  constexpr char kColumns[] =
      "INSERT INTO submissions (digest, provider, job, filename, size_bytes, mime_type, "
      "source_path, state, next_attempt_at, created_at, updated_at, mode, fallback_provider) ";
  ANCHORD_ASSIGN_OR_RETURN(
      Statement add_new,
      tx.Prepare(
          absl::StrCat(kColumns, "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, ?8, ?8, ?9, ?10)")));
  ANCHORD_ASSIGN_OR_RETURN(
      Statement add_sub, tx.Prepare(absl::StrCat(
                             kColumns, "SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8, ?8, ?8, ?9, ?10 ",
                             "WHERE NOT EXISTS (SELECT 1 FROM ", kDigestIndex, " WHERE ",
                             DigestIs(1), " AND provider = ?2)")));
  ANCHORD_ASSIGN_OR_RETURN(
      Statement min_state,
      tx.Prepare(absl::StrCat("SELECT MIN(state) FROM ", kDigestIndex, " WHERE ", DigestIs(1))));
  // The lowest submissions id of a digest, 0 when it has none yet.
  auto lowest_id = [&](const Digest& digest) -> absl::StatusOr<int64_t> {
    first_id.Reset();
    first_id.BindBlob(1, digest.bytes());
    ANCHORD_ASSIGN_OR_RETURN(bool row, first_id.Step());
    const int64_t id = row && !first_id.ColumnIsNull(0) ? first_id.ColumnInt(0) : 0;
    first_id.Reset();
    return id;
  };
  std::vector<InsertResult> out;
  out.reserve(items.size());
  const int64_t now_ms = ToMs(now);
  for (const NewItem& item : items) {
    InsertResult res;
    ANCHORD_ASSIGN_OR_RETURN(int64_t sub_id, lowest_id(item.digest));
    std::optional<FileRef> original;
    if (sub_id != 0) {
      first_ref.Reset();
      first_ref.Bind(1, sub_id);
      ANCHORD_ASSIGN_OR_RETURN(bool has_ref, first_ref.Step());
      if (has_ref) original = ReadRef(first_ref, 0);
      first_ref.Reset();
    }
    res.known_before = original.has_value();
    const FileRef& file = original.has_value() ? *original : item.file;
    bool all_new = true;
    for (const std::string& provider : item.providers) {
      Statement& add = sub_id == 0 ? add_new : add_sub;
      add.Reset();
      add.BindBlob(1, item.digest.bytes())
          .Bind(2, provider)
          .Bind(3, file.job)
          .Bind(4, file.filename)
          .Bind(5, file.size_bytes)
          .Bind(6, file.mime_type)
          .Bind(7, file.source_path)
          .Bind(8, now_ms)
          .Bind(9, static_cast<int64_t>(item.merkle ? RowMode::kLeaf : RowMode::kPerFile))
          .Bind(10, item.fallback_provider);
      ANCHORD_RETURN_IF_ERROR(add.Run());
      if (tx.Changes() == 0) {
        all_new = false;
      } else if (sub_id == 0) {
        sub_id = tx.LastInsertRowId();  // a new digest: its first row is the lowest
      }
    }
    if (sub_id == 0) return absl::InternalError("intake: a digest without a submissions row");

    add_ref.Reset();
    add_ref.Bind(1, sub_id)
        .Bind(2, item.file.job)
        .Bind(3, item.file.source_path)
        .Bind(4, item.file.filename)
        .Bind(5, item.file.size_bytes)
        .Bind(6, item.file.mime_type)
        .Bind(7, now_ms);
    ANCHORD_RETURN_IF_ERROR(add_ref.Run());
    const bool new_ref = tx.Changes() > 0;
    if (original.has_value()) {
      if (original->job != item.file.job || original->source_path != item.file.source_path) {
        res.duplicate_of = original->source_path;
      }
      // A new file with a known digest: the poller must hear of it (re-hand-off).
      if (new_ref) {
        bump.Reset();
        bump.BindBlob(1, item.digest.bytes()).Bind(2, now_ms);
        ANCHORD_RETURN_IF_ERROR(bump.Run());
      }
    }
    // A row just inserted is QUEUED, the least advanced state there is: no need to ask.
    if (!all_new) {
      min_state.Reset();
      min_state.BindBlob(1, item.digest.bytes());
      ANCHORD_ASSIGN_OR_RETURN(bool has_row, min_state.Step());
      if (has_row && !min_state.ColumnIsNull(0)) res.state = StateFromInt(min_state.ColumnInt(0));
      min_state.Reset();
    }
    out.push_back(std::move(res));
  }
  return out;
}

}  // namespace anchord::submitter
