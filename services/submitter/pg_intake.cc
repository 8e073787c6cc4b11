#include "services/submitter/pg_intake.h"

#include <algorithm>
#include <optional>
#include <string>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "libs/common/status_macros.h"
#include "services/submitter/store_rows.h"

namespace anchord::submitter {
namespace {

using ledger::PgConn;
using ledger::PgParams;
using ledger::PgResult;

// refs rows to insert, one array per column: $1..$6 of kRefRows, $7 the time.
struct RefColumns {
  std::vector<std::string> digest, job, source_path, filename, mime_type;
  std::vector<int64_t> size_bytes;

  void Add(const Digest& d, const FileRef& f) {
    digest.emplace_back(d.bytes());
    job.push_back(f.job);
    source_path.push_back(f.source_path);
    filename.push_back(f.filename);
    size_bytes.push_back(f.size_bytes);
    mime_type.push_back(f.mime_type);
  }
  PgParams Params(int64_t now_ms) const {
    PgParams p;
    p.AddBytesArray(digest)
        .AddBytesArray(job)
        .AddBytesArray(source_path)
        .AddBytesArray(filename)
        .AddIntArray(size_bytes)
        .AddBytesArray(mime_type)
        .Add(now_ms);
    return p;
  }
};

constexpr char kRefRows[] =
    "FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::bytea[], $5::bigint[], $6::bytea[]) "
    "AS u(d, j, p, f, s, m)";

// A first ref per new digest. Without a conflict target every unique index is an arbiter: the
// partial refs_first (one first ref per digest) makes a second transaction inserting the same new
// digest wait for the first one and then skip it, which is what serializes replicas per digest.
// Sorted, so that two intakes never wait on each other's rows in opposite orders.
constexpr char kInsertFirstRefs[] =
    "INSERT INTO refs (digest, job, source_path, filename, size_bytes, mime_type, created_at, "
    "is_first) SELECT d, j, p, f, s, m, $7, true ";
constexpr char kInsertFirstRefsTail[] = " ORDER BY d ON CONFLICT DO NOTHING RETURNING digest";

// The other files (kind 0: the ones stored now) and the original file of each digest known before
// this transaction (kind 1), read in the same snapshot, which holds every first ref the previous
// statement waited for. The lowest id stands in for a first ref a database may lack.
constexpr char kInsertOtherRefs[] =
    "WITH added AS (INSERT INTO refs (digest, job, source_path, filename, size_bytes, mime_type, "
    "created_at) SELECT d, j, p, f, s, m, $7 ";
constexpr char kInsertOtherRefsTail[] =
    " ORDER BY d, j, p ON CONFLICT DO NOTHING RETURNING digest, job, source_path) "
    "SELECT 0, digest, job, source_path, ''::bytea, 0::bigint, ''::bytea FROM added UNION ALL "
    "(SELECT DISTINCT ON (digest) 1, digest, job, source_path, filename, size_bytes, mime_type "
    "FROM refs WHERE digest = ANY($8::bytea[]) ORDER BY digest, is_first DESC, id)";

// change_seq is given per row: 1 plus the new files of its digest that come after it in the batch
// (each of which would have bumped it, as in the SQLite intake).
constexpr char kInsertSubmissions[] =
    "INSERT INTO submissions (digest, provider, job, filename, size_bytes, mime_type, source_path, "
    "state, next_attempt_at, created_at, updated_at, mode, fallback_provider, change_seq, "
    "batch_id) SELECT d, pr, j, f, s, m, p, 0, $11, $11, $11, mo, fb, cs, bi FROM "
    "unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::bytea[], $5::bigint[], $6::bytea[], "
    "$7::bytea[], $8::integer[], $9::bytea[], $10::bigint[], $12::bigint[]) AS u(d, pr, j, f, s, "
    "m, p, mo, fb, cs, bi) "
    "ORDER BY d, pr ON CONFLICT (digest, provider) DO NOTHING RETURNING id, digest, provider";

// Rows of known digests that this transaction did not insert ($4): bumped by the batch's new files
// of their digest, and their least advanced state. One snapshot for both.
constexpr char kBumpAndStates[] =
    "WITH bumped AS (UPDATE submissions s SET change_seq = s.change_seq + u.n, updated_at = $3 "
    "FROM unnest($1::bytea[], $2::bigint[]) AS u(d, n) WHERE s.digest = u.d AND s.id NOT IN "
    "(SELECT unnest($4::bigint[])) RETURNING s.id) SELECT digest, MIN(state) FROM submissions "
    "WHERE digest = ANY($5::bytea[]) AND id NOT IN (SELECT unnest($4::bigint[])) GROUP BY digest";

// A refs key as one string: the digest's fixed 32 bytes, the job's length, the job, the path.
std::string RefKey(absl::string_view digest, absl::string_view job, absl::string_view path) {
  return absl::StrCat(digest, job.size(), ":", job, path);
}

}  // namespace

absl::StatusOr<std::vector<InsertResult>> InsertPgIntakeItems(PgConn& c,
                                                              const std::vector<NewItem>& items,
                                                              absl::Time now, PgOpenBatches* open) {
  const int64_t now_ms = ToMs(now);
  const size_t n = items.size();
  std::vector<InsertResult> out(n);
  if (n == 0) return out;

  // The batch's digests in order of first appearance.
  std::unordered_map<Digest, size_t> index;
  std::vector<size_t> digest_of(n), first_item;
  for (size_t i = 0; i < n; ++i) {
    auto [it, fresh] = index.emplace(items[i].digest, first_item.size());
    if (fresh) first_item.push_back(i);
    digest_of[i] = it->second;
  }
  const size_t nd = first_item.size();
  auto digest_index = [&](const std::string& raw) -> absl::StatusOr<size_t> {
    ANCHORD_ASSIGN_OR_RETURN(Digest d, Digest::FromBytes(raw, "refs.digest"));
    auto it = index.find(d);
    if (it == index.end()) return absl::InternalError("intake: a row of a digest not in the batch");
    return it->second;
  };

  // 1. First refs: which digests this transaction stores first.
  RefColumns firsts;
  for (size_t d = 0; d < nd; ++d)
    firsts.Add(items[first_item[d]].digest, items[first_item[d]].file);
  ANCHORD_ASSIGN_OR_RETURN(PgResult stored,
                           c.Exec(absl::StrCat(kInsertFirstRefs, kRefRows, kInsertFirstRefsTail),
                                  firsts.Params(now_ms)));
  std::vector<bool> new_digest(nd, false);
  for (int r = 0; r < stored.rows(); ++r) {
    ANCHORD_ASSIGN_OR_RETURN(size_t d, digest_index(stored.Bytes(r, 0)));
    new_digest[d] = true;
  }

  // 2. Every other file, once per (digest, job, source_path), and the originals of known digests.
  std::vector<std::optional<FileRef>> original(nd);
  std::unordered_map<std::string, size_t> ref_item;  // key -> the item storing it
  std::vector<bool> new_ref(n, false);
  for (size_t d = 0; d < nd; ++d) {
    if (!new_digest[d]) continue;
    const NewItem& item = items[first_item[d]];
    original[d] = item.file;
    ref_item.emplace(RefKey(item.digest.bytes(), item.file.job, item.file.source_path),
                     first_item[d]);
    new_ref[first_item[d]] = true;
  }
  RefColumns others;
  for (size_t i = 0; i < n; ++i) {
    const NewItem& item = items[i];
    if (ref_item.emplace(RefKey(item.digest.bytes(), item.file.job, item.file.source_path), i)
            .second) {
      others.Add(item.digest, item.file);
    }
  }
  std::vector<std::string> known;
  for (size_t d = 0; d < nd; ++d) {
    if (!new_digest[d]) known.emplace_back(items[first_item[d]].digest.bytes());
  }
  if (!others.digest.empty() || !known.empty()) {
    PgParams p = others.Params(now_ms);
    p.AddBytesArray(known);
    ANCHORD_ASSIGN_OR_RETURN(
        PgResult r, c.Exec(absl::StrCat(kInsertOtherRefs, kRefRows, kInsertOtherRefsTail), p));
    for (int row = 0; row < r.rows(); ++row) {
      const std::string raw = r.Bytes(row, 1);
      ANCHORD_ASSIGN_OR_RETURN(size_t d, digest_index(raw));
      if (r.Int(row, 0) == 0) {
        auto it = ref_item.find(RefKey(raw, r.Bytes(row, 2), r.Bytes(row, 3)));
        if (it == ref_item.end()) return absl::InternalError("intake: a stored ref not asked for");
        new_ref[it->second] = true;
      } else {
        FileRef f;
        f.job = r.Bytes(row, 2);
        f.source_path = r.Bytes(row, 3);
        f.filename = r.Bytes(row, 4);
        f.size_bytes = r.Int(row, 5);
        f.mime_type = r.Bytes(row, 6);
        original[d] = std::move(f);
      }
    }
  }

  // Per item, as if the items were stored one after the other: a file is a duplicate when its
  // digest already had a file, and a new file of such a digest bumps the digest's rows.
  std::vector<bool> bump(n, false);
  for (size_t i = 0; i < n; ++i) {
    const size_t d = digest_of[i];
    if (!original[d].has_value()) {
      return absl::InternalError("intake: a known digest without its original file");
    }
    InsertResult& res = out[i];
    res.known_before = !(new_digest[d] && i == first_item[d]);
    const FileRef& file = items[i].file;
    if (res.known_before &&
        (original[d]->job != file.job || original[d]->source_path != file.source_path)) {
      res.duplicate_of = original[d]->source_path;
    }
    bump[i] = res.known_before && new_ref[i];
  }
  std::vector<int64_t> later_bumps(n), bumps(nd, 0);  // per item: bumps at or after it
  for (size_t i = n; i-- > 0;) {
    if (bump[i]) ++bumps[digest_of[i]];
    later_bumps[i] = bumps[digest_of[i]];
  }

  // 3. A submissions row per (digest, provider), each with the digest's original file.
  std::unordered_map<std::string, size_t> row_of;  // digest + provider -> candidate
  std::vector<size_t> row_item;
  std::vector<std::string> r_digest, r_provider, r_job, r_filename, r_mime, r_path, r_fallback;
  std::vector<int64_t> r_size, r_mode, r_seq, r_batch;
  std::vector<bool> all_new(n, true);
  for (size_t i = 0; i < n; ++i) {
    const NewItem& item = items[i];
    const FileRef& file = *original[digest_of[i]];
    for (const std::string& provider : item.providers) {
      if (!row_of.emplace(absl::StrCat(item.digest.bytes(), provider), row_item.size()).second) {
        all_new[i] = false;  // an earlier item (or this one) already has the row
        continue;
      }
      row_item.push_back(i);
      r_digest.emplace_back(item.digest.bytes());
      r_provider.push_back(provider);
      r_job.push_back(file.job);
      r_filename.push_back(file.filename);
      r_size.push_back(file.size_bytes);
      r_mime.push_back(file.mime_type);
      r_path.push_back(file.source_path);
      r_mode.push_back(static_cast<int64_t>(item.merkle ? RowMode::kLeaf : RowMode::kPerFile));
      r_fallback.push_back(item.fallback_provider);
      r_seq.push_back(1 + later_bumps[i]);
      int64_t batch_id = 0;
      if (item.merkle && open != nullptr) {
        ANCHORD_ASSIGN_OR_RETURN(batch_id, open->Take(provider));
      }
      r_batch.push_back(batch_id);
    }
  }
  std::vector<bool> inserted(row_item.size(), false);
  std::vector<int64_t> row_id(row_item.size(), 0);
  if (!row_item.empty()) {
    ANCHORD_ASSIGN_OR_RETURN(PgResult r, c.Exec(kInsertSubmissions, PgParams()
                                                                        .AddBytesArray(r_digest)
                                                                        .AddBytesArray(r_provider)
                                                                        .AddBytesArray(r_job)
                                                                        .AddBytesArray(r_filename)
                                                                        .AddIntArray(r_size)
                                                                        .AddBytesArray(r_mime)
                                                                        .AddBytesArray(r_path)
                                                                        .AddIntArray(r_mode)
                                                                        .AddBytesArray(r_fallback)
                                                                        .AddIntArray(r_seq)
                                                                        .Add(now_ms)
                                                                        .AddIntArray(r_batch)));
    for (int row = 0; row < r.rows(); ++row) {
      auto it = row_of.find(absl::StrCat(r.Bytes(row, 1), r.Bytes(row, 2)));
      if (it == row_of.end()) return absl::InternalError("intake: a stored row not asked for");
      inserted[it->second] = true;
      row_id[it->second] = r.Int(row, 0);
    }
  }
  if (open != nullptr) {
    // A leaf row that was not stored (its digest and provider have a row) does not count.
    for (size_t k = 0; k < row_item.size(); ++k) {
      if (!inserted[k] && r_batch[k] != 0) open->PutBack(r_batch[k]);
    }
    ANCHORD_RETURN_IF_ERROR(open->Finish());
  }
  // The first item of each digest that got a row of its own (n when none did).
  std::vector<size_t> first_own(nd, n);
  for (size_t k = 0; k < row_item.size(); ++k) {
    const size_t i = row_item[k];
    if (!inserted[k]) {
      all_new[i] = false;
      continue;
    }
    first_own[digest_of[i]] = std::min(first_own[digest_of[i]], i);
  }

  // 4. Known digests: their other rows are bumped, and an item that stored no row (and follows
  // none stored) reports their least advanced state. A row just stored is QUEUED, the least
  // advanced state there is, so no other item needs to ask.
  std::vector<bool> bump_digest(nd, false), state_digest(nd, false);
  std::vector<std::string> bump_d, state_d;
  std::vector<int64_t> bump_n, own_ids;
  for (size_t i = 0; i < n; ++i) {
    const size_t d = digest_of[i];
    if (items[i].providers.empty() && new_digest[d] && first_own[d] > i) {
      return absl::InternalError("intake: a digest without a submissions row");
    }
    if (!all_new[i] && first_own[d] > i && !new_digest[d] && !state_digest[d]) {
      state_digest[d] = true;
      state_d.emplace_back(items[i].digest.bytes());
    }
  }
  for (size_t d = 0; d < nd; ++d) {
    if (new_digest[d] || bumps[d] == 0) continue;
    bump_digest[d] = true;
    bump_d.emplace_back(items[first_item[d]].digest.bytes());
    bump_n.push_back(bumps[d]);
  }
  if (bump_d.empty() && state_d.empty()) return out;
  for (size_t k = 0; k < row_item.size(); ++k) {
    const size_t d = digest_of[row_item[k]];
    if (inserted[k] && (bump_digest[d] || state_digest[d])) own_ids.push_back(row_id[k]);
  }
  ANCHORD_ASSIGN_OR_RETURN(PgResult states, c.Exec(kBumpAndStates, PgParams()
                                                                       .AddBytesArray(bump_d)
                                                                       .AddIntArray(bump_n)
                                                                       .Add(now_ms)
                                                                       .AddIntArray(own_ids)
                                                                       .AddBytesArray(state_d)));
  std::vector<std::optional<SubState>> least(nd);
  for (int row = 0; row < states.rows(); ++row) {
    ANCHORD_ASSIGN_OR_RETURN(size_t d, digest_index(states.Bytes(row, 0)));
    if (!states.IsNull(row, 1)) least[d] = StateFromInt(states.Int(row, 1));
  }
  for (size_t i = 0; i < n; ++i) {
    const size_t d = digest_of[i];
    if (!all_new[i] && first_own[d] > i && least[d].has_value()) out[i].state = *least[d];
  }
  return out;
}

}  // namespace anchord::submitter
