#include "services/hasher/hasher_store.h"

#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "libs/common/status_macros.h"
#include "libs/digest/stored_digest.h"
#include "libs/ledger/sqlite_rows.h"

namespace anchord::hasher {
namespace {

int64_t NowMs() { return absl::ToUnixMillis(absl::Now()); }

// FirstPathWithDigest (bound: job, digest, excluded path). INDEXED BY: without statistics the
// planner could as well pick the primary key for job=?, a scan of the whole job per query.
constexpr const char* kFirstPathWithDigest =
    "SELECT path FROM files INDEXED BY files_by_digest_prefix "
    "WHERE substr(digest, 1, 8) = substr(?2, 1, 8) AND digest = ?2 AND job = ?1 AND path <> ?3 "
    "ORDER BY rowid LIMIT 1";

// Page size of a new hasher.db (see HasherStore::Open).
constexpr int kPageBytes = 1024;

FileState ParseState(absl::string_view s) {
  if (s == "QUEUED") return FileState::kQueued;
  if (s == "ERROR") return FileState::kError;
  return FileState::kHashed;
}

constexpr const char* kColumns =
    "job, path, size, mtime_ns, digest, state, duplicate_of, error_code, error_reason, "
    "error_message, updated_at, read_by_hasher";

// DATA_LOSS when a row's digest is neither NULL (an ERROR row) nor 32 bytes.
absl::StatusOr<FileRow> ReadRow(const ledger::Statement& s) {
  FileRow r;
  r.job = s.ColumnText(0);
  r.path = s.ColumnText(1);
  r.size_bytes = s.ColumnInt(2);
  r.mtime_ns = s.ColumnInt(3);
  if (!s.ColumnIsNull(4)) {
    ANCHORD_ASSIGN_OR_RETURN(r.digest, DigestFromColumn(s.ColumnText(4), "files.digest"));
  }
  r.state = ParseState(s.ColumnText(5));
  r.duplicate_of = s.ColumnText(6);
  r.error_code = static_cast<int>(s.ColumnInt(7));
  r.error_reason = s.ColumnText(8);
  r.error_message = s.ColumnText(9);
  r.updated_at_ms = s.ColumnInt(10);
  r.read_by_hasher = s.ColumnInt(11) != 0;
  return r;
}

// Upserts rows that carry a digest, 12 parameters a row: job, path, size, mtime_ns, digest, state,
// duplicate_of, error_code (0), error_reason (''), error_message (''), updated_at, read_by_hasher.
// Clears any error a previous run recorded. Followed by ledger::Placeholders(kDigestRowParams, n).
constexpr const char* kUpsertDigestRows =
    "INSERT INTO files (job, path, size, mtime_ns, digest, state, duplicate_of, error_code, "
    "error_reason, error_message, updated_at, read_by_hasher) VALUES ";
constexpr const char* kUpsertDigestRowsConflict =
    " ON CONFLICT (job, path) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns, "
    "digest=excluded.digest, state=excluded.state, duplicate_of=excluded.duplicate_of, "
    "error_code=0, error_reason='', error_message='', updated_at=excluded.updated_at, "
    "read_by_hasher=excluded.read_by_hasher";
// The same for a row whose digest is unchanged, which is then not set (the WHERE leaves a row
// whose digest changed as it is, for kUpsertDigestRowsConflict): SQLite moves the index entries of
// every column a DO UPDATE sets, so setting a digest to itself deleted and re-inserted the row's
// files_by_digest_prefix entry, two B-tree writes at a random place for nothing. A file hashed
// again with the same bytes (a dry run, then the archive; a file not acknowledged last time) cost
// SQLite 9.33 us of CPU a row that way, 3.30 without the digest (1 KiB pages, bench/RESULTS.md,
// issue 11 session 20).
constexpr const char* kUpsertSameDigestConflict =
    " ON CONFLICT (job, path) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns, "
    "state=excluded.state, duplicate_of=excluded.duplicate_of, error_code=0, error_reason='', "
    "error_message='', updated_at=excluded.updated_at, read_by_hasher=excluded.read_by_hasher "
    "WHERE files.digest IS excluded.digest";
constexpr int kDigestRowParams = 12;
// Rows to an upsert statement when a batch is written (ledger/sqlite_rows.h).
constexpr size_t kRowsPerStatement = 16;

// One row of a digest upsert (kUpsertDigestRows).
struct DigestRow {
  absl::string_view path;
  int64_t size_bytes;
  int64_t mtime_ns;
  const Digest& digest;
  FileState state;
  absl::string_view duplicate_of;
  bool read_by_hasher;
};

// Bound without copies: the row's bytes and `job` stay put until the statement has run.
void BindDigestRow(ledger::Statement& ins, int base, absl::string_view job, const DigestRow& r,
                   int64_t now_ms) {
  ins.BindView(base + 1, job)
      .BindView(base + 2, r.path)
      .Bind(base + 3, r.size_bytes)
      .Bind(base + 4, r.mtime_ns)
      .BindBlobView(base + 5, r.digest.bytes())
      .BindView(base + 6, FileStateName(r.state))
      .BindView(base + 7, r.duplicate_of)
      .Bind(base + 8, int64_t{0})
      .BindView(base + 9, "")
      .BindView(base + 10, "")
      .Bind(base + 11, now_ms)
      .Bind(base + 12, int64_t{r.read_by_hasher ? 1 : 0});
}

// Upserts row(i) for i in [0, count) in `session`, kRowsPerStatement rows to a statement. Each
// statement first leaves every digest as it is (kUpsertSameDigestConflict); when it did not write
// all of its rows (a path whose digest changed), it runs again with kUpsertDigestRowsConflict.
template <typename RowOf>
absl::Status UpsertDigestRows(ledger::Session& session, absl::string_view job, size_t count,
                              int64_t now_ms, const RowOf& row) {
  std::optional<ledger::Statement> same_many, same_one, full_many, full_one;
  // Writes rows [first, first + n) with one statement; true when it wrote each of them.
  auto run = [&](size_t first, size_t n, std::optional<ledger::Statement>& slot,
                 const char* conflict) -> absl::StatusOr<bool> {
    ANCHORD_ASSIGN_OR_RETURN(ledger::Statement * st, ledger::Reuse(session, slot, [&] {
                               return absl::StrCat(kUpsertDigestRows,
                                                   ledger::Placeholders(kDigestRowParams, n),
                                                   conflict);
                             }));
    for (size_t k = 0; k < n; ++k) {
      BindDigestRow(*st, static_cast<int>(k) * kDigestRowParams, job, row(first + k), now_ms);
    }
    ANCHORD_RETURN_IF_ERROR(st->Run());
    return static_cast<size_t>(session.Changes()) == n;
  };
  for (size_t first = 0; first < count;) {
    const bool many = count - first >= kRowsPerStatement;
    const size_t n = many ? kRowsPerStatement : 1;
    ANCHORD_ASSIGN_OR_RETURN(const bool all,
                             run(first, n, many ? same_many : same_one, kUpsertSameDigestConflict));
    if (!all) {
      ANCHORD_RETURN_IF_ERROR(
          run(first, n, many ? full_many : full_one, kUpsertDigestRowsConflict).status());
    }
    first += n;
  }
  return absl::OkStatus();
}

// Every row `s` returns (a query selecting kColumns).
absl::StatusOr<std::vector<FileRow>> CollectRows(ledger::Statement& s) {
  std::vector<FileRow> out;
  for (;;) {
    auto row = s.Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    ANCHORD_ASSIGN_OR_RETURN(FileRow r, ReadRow(s));
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace

absl::string_view FileStateName(FileState s) {
  switch (s) {
    case FileState::kHashed:
      return "HASHED";
    case FileState::kQueued:
      return "QUEUED";
    case FileState::kError:
      return "ERROR";
  }
  return "HASHED";
}

absl::StatusOr<std::unique_ptr<HasherStore>> HasherStore::Open(const std::string& path) {
  // The hasher's rows are a cache of what it hashed (the submitter holds the durable queue): a
  // row lost to a power failure only means the file is read again, so no fsync per file.
  auto db = ledger::SqliteDb::Open(path, ledger::Durability::kProcessCrash);
  if (!db.ok()) return db.status();
  {
    ledger::Session session(**db);
    // 1 KiB pages instead of 4 KiB for a new database: each row puts its digest, a random key,
    // into files_by_digest, so a commit dirties about one index page per row and the WAL gets a
    // whole page for each. Smaller pages write less per row (an A/B in bench/RESULTS.md, issue 11
    // goal 4 session 4). A database in WAL mode keeps its page size, so a new (empty) one is
    // converted once, before the schema exists; an existing database keeps the size it has.
    bool fresh = false;
    {
      auto exists = session.Prepare("SELECT 1 FROM sqlite_master WHERE name='files'");
      if (!exists.ok()) return exists.status();
      auto found = exists->Step();
      if (!found.ok()) return found.status();
      fresh = !*found;
    }
    if (fresh) {
      absl::Status st =
          session.Exec(absl::StrCat("PRAGMA journal_mode=DELETE; PRAGMA page_size=", kPageBytes,
                                    "; VACUUM; PRAGMA journal_mode=WAL;"));
      if (!st.ok()) return st;
    }
    absl::Status st = session.Exec(R"sql(
    CREATE TABLE IF NOT EXISTS files (
      job TEXT NOT NULL,
      path TEXT NOT NULL,
      size INTEGER NOT NULL,
      mtime_ns INTEGER NOT NULL,
      digest BLOB,
      state TEXT NOT NULL CHECK (state IN ('HASHED', 'QUEUED', 'ERROR')),
      duplicate_of TEXT NOT NULL DEFAULT '',
      error_code INTEGER NOT NULL DEFAULT 0,
      error_reason TEXT NOT NULL DEFAULT '',
      error_message TEXT NOT NULL DEFAULT '',
      updated_at INTEGER NOT NULL,
      PRIMARY KEY (job, path)
    );
  )sql");
    if (!st.ok()) return st;
    // The digest index keys on the digest's first 8 bytes, not all 32: a row's entry is about a
    // third of the size, so the index has a third of the pages and a commit of random keys dirties
    // fewer of them (leaves and the interior pages above them). The queries compare the whole
    // digest after the index lookup, so rows sharing a prefix (chance, or files made to collide on
    // 64 bits) cost a few more comparisons, never a wrong answer. A database from before drops the
    // full-width index once (and builds this one).
    st = session.Exec(R"sql(
    DROP INDEX IF EXISTS files_by_digest;
    CREATE INDEX IF NOT EXISTS files_by_digest_prefix ON files (substr(digest, 1, 8));
  )sql");
    if (!st.ok()) return st;
    // Rows written before the column existed count as not read by the hasher: such a file is read
    // once more, which costs time but never trusts a digest of unknown origin.
    st = session.AddMissingColumns("files", {{"read_by_hasher", "INTEGER NOT NULL DEFAULT 0"}});
    if (!st.ok()) return st;
    // Checkpoints (copying the WAL into the database, with an fsync of each under
    // synchronous=NORMAL) every 16 MiB of WAL: hashing small files writes many random pages of
    // the digest index per commit, and a page written by several commits between two checkpoints
    // is copied once. The WAL file may reach about 16 MiB on disk; memory is unaffected.
    st = session.Exec(absl::StrCat("PRAGMA wal_autocheckpoint=", (16 << 20) / kPageBytes, ";"));
    if (!st.ok()) return st;
  }
  return std::unique_ptr<HasherStore>(new HasherStore(std::move(*db)));
}

absl::StatusOr<std::optional<FileRow>> HasherStore::Get(absl::string_view job,
                                                        absl::string_view path) {
  ledger::Session session(*db_);
  auto s = session.Prepare(absl::StrCat("SELECT ", kColumns, " FROM files WHERE job=? AND path=?"));
  if (!s.ok()) return s.status();
  s->Bind(1, job).Bind(2, path);
  auto row = s->Step();
  if (!row.ok()) return row.status();
  if (!*row) return std::optional<FileRow>();
  ANCHORD_ASSIGN_OR_RETURN(FileRow r, ReadRow(*s));
  return std::optional<FileRow>(std::move(r));
}

absl::Status HasherStore::RecordUploaded(absl::string_view job, absl::string_view path,
                                         int64_t size_bytes, int64_t mtime_ns,
                                         const Digest& digest) {
  ledger::Session session(*db_);
  const DigestRow row{path,
                      size_bytes,
                      mtime_ns,
                      digest,
                      FileState::kHashed,
                      "",
                      /*read_by_hasher=*/false};
  return UpsertDigestRows(session, job, 1, NowMs(), [&](size_t) { return row; });
}

absl::Status HasherStore::RecordHashedBatch(absl::string_view job,
                                            const std::vector<HashedRecord>& records,
                                            std::vector<std::string>* duplicates) {
  if (duplicates != nullptr) duplicates->clear();
  if (records.empty()) return absl::OkStatus();
  ledger::Transaction tx(*db_);
  if (!tx.begin_status().ok()) return tx.begin_status();
  std::optional<ledger::Statement> dup;
  if (duplicates != nullptr) {
    auto d = tx.Prepare(kFirstPathWithDigest);
    if (!d.ok()) return d.status();
    dup.emplace(std::move(*d));
  }
  const int64_t now = NowMs();
  auto row_of = [&](size_t i) {
    const HashedRecord& r = records[i];
    return DigestRow{r.path,
                     r.size_bytes,
                     r.mtime_ns,
                     r.digest,
                     FileState::kHashed,
                     "",
                     /*read_by_hasher=*/true};
  };
  // Records are written several to a statement, those not yet written being [from, i). The
  // duplicate of a record is asked before it is written, which gives the same answer as after
  // (the query excludes the record's own path, the only row the upsert touches) and is cheaper: a
  // new digest finds no index entry at all. Only the records not yet written can make the answer
  // differ from the one-by-one writes: one of the same digest (written first, so that it is
  // found), or one whose path is the row found (it may change that row's digest: written first,
  // and asked again).
  size_t from = 0;
  auto unwritten = [&](size_t i, auto same) {
    for (size_t k = from; k < i; ++k) {
      if (same(records[k])) return true;
    }
    return false;
  };
  auto write = [&](size_t to) {
    absl::Status st =
        UpsertDigestRows(tx, job, to - from, now, [&](size_t k) { return row_of(from + k); });
    from = to;
    return st;
  };
  auto first_path = [&](const HashedRecord& r) -> absl::StatusOr<std::optional<std::string>> {
    dup->Reset();
    dup->Bind(1, job).BindBlob(2, r.digest.bytes()).Bind(3, r.path);
    ANCHORD_ASSIGN_OR_RETURN(const bool found, dup->Step());
    if (!found) return std::optional<std::string>();
    return std::optional<std::string>(dup->ColumnText(0));
  };
  for (size_t i = 0; i < records.size() && dup; ++i) {
    const HashedRecord& r = records[i];
    if (unwritten(i, [&](const HashedRecord& u) { return u.digest == r.digest; })) {
      ANCHORD_RETURN_IF_ERROR(write(i));
    }
    ANCHORD_ASSIGN_OR_RETURN(std::optional<std::string> path, first_path(r));
    if (path.has_value() && unwritten(i, [&](const HashedRecord& u) { return u.path == *path; })) {
      ANCHORD_RETURN_IF_ERROR(write(i));
      ANCHORD_ASSIGN_OR_RETURN(path, first_path(r));
    }
    duplicates->push_back(path.value_or(std::string()));
    // Written once a statement's worth waits: the looks above stay this short.
    if (i + 1 - from >= kRowsPerStatement) ANCHORD_RETURN_IF_ERROR(write(i + 1));
  }
  if (absl::Status st = write(records.size()); !st.ok()) return st;
  absl::Status st = tx.Commit();
  if (!st.ok() && duplicates != nullptr) duplicates->clear();
  return st;
}

absl::StatusOr<bool> HasherStore::JobHasRows(absl::string_view job) {
  ledger::Session session(*db_);
  auto s = session.Prepare("SELECT 1 FROM files WHERE job=? LIMIT 1");
  if (!s.ok()) return s.status();
  s->Bind(1, job);
  return s->Step();
}

absl::StatusOr<std::vector<std::optional<FileRow>>> HasherStore::GetMany(
    absl::string_view job, const std::vector<std::string>& paths) {
  std::vector<std::optional<FileRow>> out;
  if (paths.empty()) return out;
  // One read transaction for all lookups (each statement outside one would open and close its
  // own, which dominated the lookups). Nothing is written: the destructor rolls back.
  ledger::Transaction tx(*db_);
  if (!tx.begin_status().ok()) return tx.begin_status();
  auto s = tx.Prepare(absl::StrCat("SELECT ", kColumns, " FROM files WHERE job=? AND path=?"));
  if (!s.ok()) return s.status();
  out.reserve(paths.size());
  for (const std::string& p : paths) {
    s->Reset();
    s->Bind(1, job).Bind(2, p);
    auto row = s->Step();
    if (!row.ok()) return row.status();
    if (!*row) {
      out.push_back(std::nullopt);
      continue;
    }
    ANCHORD_ASSIGN_OR_RETURN(FileRow r, ReadRow(*s));
    out.push_back(std::move(r));
  }
  return out;
}

absl::Status HasherStore::MarkQueued(absl::string_view job, absl::string_view path,
                                     const Digest& digest, absl::string_view duplicate_of) {
  ledger::Session session(*db_);
  auto s = session.Prepare(
      "UPDATE files SET state='QUEUED', duplicate_of=?, updated_at=? "
      "WHERE job=? AND path=? AND digest=?");
  if (!s.ok()) return s.status();
  s->Bind(1, duplicate_of).Bind(2, NowMs()).Bind(3, job).Bind(4, path).BindBlob(5, digest.bytes());
  return s->Run();
}

absl::Status HasherStore::RecordForwarded(absl::string_view job,
                                          const std::vector<ForwardedRecord>& records) {
  if (records.empty()) return absl::OkStatus();
  ledger::Transaction tx(*db_);
  if (!tx.begin_status().ok()) return tx.begin_status();
  ANCHORD_RETURN_IF_ERROR(UpsertDigestRows(tx, job, records.size(), NowMs(), [&](size_t i) {
    const ForwardedRecord& r = records[i];
    return DigestRow{r.path,
                     r.size_bytes,
                     r.mtime_ns,
                     r.digest,
                     r.queued ? FileState::kQueued : FileState::kHashed,
                     r.duplicate_of,
                     /*read_by_hasher=*/true};
  }));
  return tx.Commit();
}

absl::Status HasherStore::RecordError(absl::string_view job, absl::string_view path,
                                      int64_t size_bytes, int64_t mtime_ns, int code,
                                      absl::string_view reason, absl::string_view message) {
  ledger::Session session(*db_);
  auto s = session.Prepare(
      "INSERT INTO files (job, path, size, mtime_ns, digest, state, duplicate_of, error_code, "
      "error_reason, error_message, updated_at) VALUES (?, ?, ?, ?, NULL, 'ERROR', '', ?, ?, ?, ?) "
      "ON CONFLICT (job, path) DO UPDATE SET size=excluded.size, mtime_ns=excluded.mtime_ns, "
      "digest=NULL, state='ERROR', duplicate_of='', error_code=excluded.error_code, "
      "read_by_hasher=0, "
      "error_reason=excluded.error_reason, error_message=excluded.error_message, "
      "updated_at=excluded.updated_at");
  if (!s.ok()) return s.status();
  s->Bind(1, job).Bind(2, path).Bind(3, size_bytes).Bind(4, mtime_ns).Bind(5, int64_t{code});
  s->Bind(6, reason).Bind(7, message).Bind(8, NowMs());
  return s->Run();
}

absl::StatusOr<std::vector<FileRow>> HasherStore::ListPage(absl::string_view job,
                                                           absl::string_view after, int limit) {
  ledger::Session session(*db_);
  auto s = session.Prepare(absl::StrCat(
      "SELECT ", kColumns, " FROM files WHERE job=? AND path>? ORDER BY path LIMIT ?"));
  if (!s.ok()) return s.status();
  s->Bind(1, job).Bind(2, after).Bind(3, int64_t{limit});
  return CollectRows(*s);
}

absl::StatusOr<std::vector<FileRow>> HasherStore::FindByDigest(const Digest& digest, int limit) {
  ledger::Session session(*db_);
  auto s = session.Prepare(absl::StrCat(
      "SELECT ", kColumns, " FROM files INDEXED BY files_by_digest_prefix ",
      "WHERE substr(digest, 1, 8) = substr(?1, 1, 8) AND digest = ?1 ", "ORDER BY rowid LIMIT ?2"));
  if (!s.ok()) return s.status();
  s->BindBlob(1, digest.bytes()).Bind(2, int64_t{limit});
  return CollectRows(*s);
}

absl::StatusOr<std::string> HasherStore::FirstPathWithDigest(absl::string_view job,
                                                             const Digest& digest,
                                                             absl::string_view exclude_path) {
  ledger::Session session(*db_);
  auto s = session.Prepare(kFirstPathWithDigest);
  if (!s.ok()) return s.status();
  s->Bind(1, job).BindBlob(2, digest.bytes()).Bind(3, exclude_path);
  auto row = s->Step();
  if (!row.ok()) return row.status();
  return *row ? s->ColumnText(0) : std::string();
}

absl::StatusOr<JobSummary> HasherStore::Summarize(absl::string_view job) {
  ledger::Session session(*db_);
  JobSummary out;
  // A digest is counted once, in the furthest state any of its rows reached.
  auto s = session.Prepare(
      "SELECT st, COUNT(*) FROM (SELECT digest, MAX(CASE state WHEN 'QUEUED' THEN 2 ELSE 1 END) "
      "AS st FROM files WHERE digest IS NOT NULL AND (?1 = '' OR job = ?1) GROUP BY digest) "
      "GROUP BY st");
  if (!s.ok()) return s.status();
  s->Bind(1, job);
  for (;;) {
    auto row = s->Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    out.digests_by_state[s->ColumnInt(0) == 2 ? "DIGEST_STATE_QUEUED" : "DIGEST_STATE_HASHED"] =
        s->ColumnInt(1);
  }
  auto c = session.Prepare("SELECT COUNT(*) FROM files WHERE (?1 = '' OR job = ?1)");
  if (!c.ok()) return c.status();
  c->Bind(1, job);
  auto row = c->Step();
  if (!row.ok()) return row.status();
  out.files = *row ? c->ColumnInt(0) : 0;
  return out;
}

}  // namespace anchord::hasher
