#include "services/poller/pg_poller_store.h"

#include <algorithm>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "libs/common/status_macros.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"

namespace anchord::poller {
namespace {

using ledger::PgConn;
using ledger::PgDb;
using ledger::PgParams;
using ledger::PgResult;

// Times as Unix microseconds, 0 = unset, as in the SQLite store.
int64_t ToDb(absl::Time t) {
  if (t == absl::InfinitePast()) return 0;
  if (t == absl::InfiniteFuture()) return INT64_MAX;
  return absl::ToUnixMicros(t);
}
absl::Time FromDb(int64_t micros) {
  return micros == 0 ? absl::InfinitePast() : absl::FromUnixMicros(micros);
}

constexpr int kPending = anchord::v1::DIGEST_STATE_PENDING;
constexpr int kConfirmed = anchord::v1::DIGEST_STATE_CONFIRMED;
constexpr int kFailed = anchord::v1::DIGEST_STATE_FAILED;

// String columns are BYTEA (bytes from outside, exact round trip); string parameters are bound
// with AddBytes.
const std::vector<ledger::Migration> kMigrations = {
    {1, "proofs, files", R"sql(
CREATE TABLE proofs (
  seq BIGSERIAL PRIMARY KEY,
  digest BYTEA NOT NULL,
  provider BYTEA NOT NULL,
  proof_id BYTEA NOT NULL DEFAULT '',
  state INTEGER NOT NULL,
  certificate_url BYTEA NOT NULL DEFAULT '',
  verify_url BYTEA NOT NULL DEFAULT '',
  block_height BIGINT NOT NULL DEFAULT 0,
  bitcoin_tx BYTEA NOT NULL DEFAULT '',
  submitted_at BIGINT NOT NULL DEFAULT 0,
  confirmed_at BIGINT NOT NULL DEFAULT 0,
  ots BYTEA,
  ots_size BIGINT NOT NULL DEFAULT 0,
  failure_code INTEGER NOT NULL DEFAULT 0,
  failure_message BYTEA NOT NULL DEFAULT '',
  failure_reason BYTEA NOT NULL DEFAULT '',
  provider_request_id BYTEA NOT NULL DEFAULT '',
  stalled INTEGER NOT NULL DEFAULT 0,
  tracked_at BIGINT NOT NULL DEFAULT 0,
  pending_since BIGINT NOT NULL DEFAULT 0,
  last_checked_at BIGINT NOT NULL DEFAULT 0,
  updated_at BIGINT NOT NULL DEFAULT 0,
  merkle_root BYTEA NOT NULL DEFAULT '',
  merkle_path BYTEA NOT NULL DEFAULT '',
  leaf_count BIGINT NOT NULL DEFAULT 0,
  fallback_provider BYTEA NOT NULL DEFAULT '',
  fallback_sent INTEGER NOT NULL DEFAULT 0,
  check_owner BYTEA NOT NULL DEFAULT '',
  check_until BIGINT NOT NULL DEFAULT 0,
  UNIQUE (digest, provider)
);
CREATE INDEX proofs_by_provider_state ON proofs (provider, state, last_checked_at, seq);
CREATE INDEX proofs_by_root ON proofs (merkle_root, provider) WHERE length(merkle_root) > 0;
CREATE TABLE files (
  id BIGSERIAL PRIMARY KEY,
  digest BYTEA NOT NULL,
  job BYTEA NOT NULL,
  source_path BYTEA NOT NULL,
  filename BYTEA NOT NULL,
  size_bytes BIGINT NOT NULL,
  mime_type BYTEA NOT NULL,
  UNIQUE (digest, job, source_path)
);
CREATE INDEX files_by_job ON files (job, digest);
CREATE INDEX files_by_digest ON files (digest, id);
)sql"},
};

constexpr char kColumns[] =
    "seq, digest, provider, proof_id, state, certificate_url, verify_url, block_height, "
    "bitcoin_tx, submitted_at, confirmed_at, ots_size, failure_code, failure_message, "
    "failure_reason, provider_request_id, stalled, tracked_at, last_checked_at, updated_at, "
    "merkle_root, merkle_path, leaf_count, fallback_provider, fallback_sent";

ProofRow ReadRow(const PgResult& s, int i) {
  ProofRow r;
  r.seq = s.Int(i, 0);
  r.digest = s.Bytes(i, 1);
  r.provider = s.Bytes(i, 2);
  r.proof_id = s.Bytes(i, 3);
  int state = static_cast<int>(s.Int(i, 4));
  r.state = anchord::v1::DigestState_IsValid(state) ? static_cast<DigestState>(state)
                                                    : anchord::v1::DIGEST_STATE_PENDING;
  r.certificate_url = s.Bytes(i, 5);
  r.verify_url = s.Bytes(i, 6);
  r.block_height = s.Int(i, 7);
  r.bitcoin_tx = s.Bytes(i, 8);
  r.submitted_at = FromDb(s.Int(i, 9));
  r.confirmed_at = FromDb(s.Int(i, 10));
  r.ots_size = s.Int(i, 11);
  r.failure_code = static_cast<int32_t>(s.Int(i, 12));
  r.failure_message = s.Bytes(i, 13);
  r.failure_reason = s.Bytes(i, 14);
  r.provider_request_id = s.Bytes(i, 15);
  r.stalled = s.Int(i, 16) != 0;
  r.tracked_at = FromDb(s.Int(i, 17));
  r.last_checked_at = FromDb(s.Int(i, 18));
  r.updated_at = FromDb(s.Int(i, 19));
  r.merkle_root = s.Bytes(i, 20);
  r.merkle_path = s.Bytes(i, 21);
  r.leaf_count = s.Int(i, 22);
  r.fallback_provider = s.Bytes(i, 23);
  r.fallback_sent = s.Int(i, 24) != 0;
  return r;
}

std::string RandomInstanceId() {
  std::random_device rd;
  uint64_t v = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return HexEncode(std::string(reinterpret_cast<const char*>(&v), sizeof(v)));
}

class PgPollerStore final : public PollerStore {
 public:
  PgPollerStore(std::shared_ptr<PgDb> db, Clock* clock)
      : db_(std::move(db)),
        clock_(clock ? clock : Clock::Real()),
        instance_("@" + RandomInstanceId()) {}

  absl::StatusOr<std::vector<TrackOutcome>> Track(const std::vector<TrackInput>& inputs,
                                                  absl::Time now) override {
    std::vector<TrackOutcome> out;
    ANCHORD_RETURN_IF_ERROR(db_->Tx([&](PgConn& c) -> absl::Status {
      out.clear();
      out.reserve(inputs.size());
      for (const TrackInput& in : inputs) {
        auto one = TrackOne(c, in, now);
        if (!one.ok()) return one.status();
        out.push_back(std::move(*one));
      }
      return absl::OkStatus();
    }));
    return out;
  }

  absl::StatusOr<std::optional<ProofRow>> Get(const std::string& digest,
                                              const std::string& provider) override {
    std::optional<ProofRow> out;
    ANCHORD_RETURN_IF_ERROR(db_->Run([&](PgConn& c) -> absl::Status {
      auto r = GetIn(c, digest, provider);
      if (!r.ok()) return r.status();
      out = std::move(*r);
      return absl::OkStatus();
    }));
    return out;
  }

  absl::StatusOr<std::vector<ProofRow>> GetAll(const std::string& digest) override {
    return Query(absl::StrCat("SELECT ", kColumns, " FROM proofs WHERE digest = $1 ORDER BY seq"),
                 PgParams().AddBytes(digest));
  }

  absl::StatusOr<std::vector<ProofRow>> List(const ListFilter& filter, int64_t after_seq,
                                             int limit) override {
    std::string sql = absl::StrCat("SELECT ", kColumns, " FROM proofs p WHERE seq > $1");
    PgParams p;
    p.Add(after_seq);
    int n = 1;
    if (!filter.job.empty()) {
      absl::StrAppend(&sql,
                      " AND EXISTS (SELECT 1 FROM files f WHERE f.digest = p.digest AND "
                      "f.job = $",
                      ++n, ")");
      p.AddBytes(filter.job);
    }
    if (filter.state != anchord::v1::DIGEST_STATE_UNSPECIFIED) {
      absl::StrAppend(&sql, " AND state = $", ++n);
      p.Add(static_cast<int64_t>(filter.state));
    }
    if (!filter.provider.empty()) {
      absl::StrAppend(&sql, " AND provider = $", ++n);
      p.AddBytes(filter.provider);
    }
    if (!filter.digests.empty()) {
      std::vector<std::string> marks;
      for (const std::string& d : filter.digests) {
        marks.push_back(absl::StrCat("$", ++n));
        p.AddBytes(d);
      }
      absl::StrAppend(&sql, " AND digest IN (", absl::StrJoin(marks, ","), ")");
    }
    absl::StrAppend(&sql, " ORDER BY seq LIMIT $", ++n);
    p.Add(static_cast<int64_t>(limit));
    return Query(sql, p, filter.with_files);
  }

  absl::StatusOr<std::vector<ProofRow>> PendingToCheck(const std::string& provider,
                                                       absl::Time tracked_before,
                                                       int limit) override {
    // Proofs another replica claimed for its round (and still holds) are left to it.
    return Query(absl::StrCat("SELECT ", kColumns,
                              " FROM proofs WHERE provider = $1 AND state = $2 AND tracked_at < $3 "
                              "AND length(merkle_root) = 0 AND (check_until <= $5 OR "
                              "position($6::bytea in check_owner) > 0) "
                              "ORDER BY last_checked_at, seq LIMIT $4"),
                 PgParams()
                     .AddBytes(provider)
                     .Add(static_cast<int64_t>(kPending))
                     .Add(ToDb(tracked_before))
                     .Add(static_cast<int64_t>(limit))
                     .Add(ToDb(clock_->Now()))
                     .AddBytes(instance_));
  }

  absl::StatusOr<std::vector<ProofRow>> ClaimChecks(const std::string& provider,
                                                    std::vector<ProofRow> candidates,
                                                    const std::string& owner, absl::Time now,
                                                    absl::Time until) override {
    if (candidates.empty()) return candidates;
    std::vector<int64_t> seqs, checked;
    for (const ProofRow& r : candidates) {
      seqs.push_back(r.seq);
      checked.push_back(ToDb(r.last_checked_at));
    }
    const std::string tag = owner + instance_;
    std::set<int64_t> claimed;
    ANCHORD_RETURN_IF_ERROR(db_->Tx([&](PgConn& c) -> absl::Status {
      // SKIP LOCKED: a replica claiming the same candidates at this moment gets the others.
      auto r = c.Exec(
          "UPDATE proofs SET check_owner = $2, check_until = $3 WHERE seq IN (SELECT seq FROM "
          "proofs WHERE provider = $1 AND (seq, last_checked_at) IN (SELECT * FROM "
          "unnest($4::bigint[], $6::bigint[])) AND (check_until <= $5 OR "
          "check_owner = $2) FOR UPDATE SKIP LOCKED) RETURNING seq",
          PgParams()
              .AddBytes(provider)
              .AddBytes(tag)
              .Add(ToDb(until))
              .Add(absl::StrCat("{", absl::StrJoin(seqs, ","), "}"))
              .Add(ToDb(now))
              .Add(absl::StrCat("{", absl::StrJoin(checked, ","), "}")));
      if (!r.ok()) return r.status();
      claimed.clear();
      for (int i = 0; i < r->rows(); ++i) claimed.insert(r->Int(i, 0));
      return absl::OkStatus();
    }));
    std::vector<ProofRow> out;
    for (ProofRow& row : candidates) {
      if (claimed.count(row.seq)) out.push_back(std::move(row));
    }
    return out;
  }

  absl::StatusOr<std::vector<ProofRow>> ConfirmedWithoutOts(const std::string& provider,
                                                            int limit) override {
    return Query(absl::StrCat("SELECT ", kColumns,
                              " FROM proofs WHERE provider = $1 AND state = $2 AND ots_size = 0 "
                              "AND length(merkle_root) = 0 ORDER BY last_checked_at, seq LIMIT $3"),
                 PgParams()
                     .AddBytes(provider)
                     .Add(static_cast<int64_t>(kConfirmed))
                     .Add(static_cast<int64_t>(limit)));
  }

  absl::StatusOr<std::vector<ProofRow>> NewlyStalled(const std::string& provider,
                                                     absl::Time pending_before,
                                                     int limit) override {
    return Query(
        absl::StrCat("SELECT ", kColumns,
                     " FROM proofs WHERE provider = $1 AND state = $2 AND stalled = 0 AND "
                     "pending_since < $3 AND length(merkle_root) = 0 ORDER BY seq LIMIT $4"),
        PgParams()
            .AddBytes(provider)
            .Add(static_cast<int64_t>(kPending))
            .Add(ToDb(pending_before))
            .Add(static_cast<int64_t>(limit)));
  }

  absl::StatusOr<std::optional<ProofRow>> MarkConfirmed(const std::string& digest,
                                                        const std::string& provider,
                                                        const ConfirmInput& in,
                                                        absl::Time now) override {
    return Update(digest, provider,
                  "UPDATE proofs SET state = $3, certificate_url = CASE WHEN $4 = ''::bytea THEN "
                  "certificate_url ELSE $4 END, verify_url = CASE WHEN $5 = ''::bytea THEN "
                  "verify_url ELSE $5 END, block_height = $6, bitcoin_tx = $7, confirmed_at = $8, "
                  "last_checked_at = $9, updated_at = $9, check_until = 0, "
                  "ots = CASE WHEN length($11::bytea) > 0 THEN $11 ELSE ots END, "
                  "ots_size = CASE WHEN length($11::bytea) > 0 THEN length($11::bytea) "
                  "ELSE ots_size END WHERE digest = $1 AND provider = $2 AND state = $10",
                  PgParams()
                      .AddBytes(digest)
                      .AddBytes(provider)
                      .Add(static_cast<int64_t>(kConfirmed))
                      .AddBytes(in.certificate_url)
                      .AddBytes(in.verify_url)
                      .Add(in.block_height)
                      .AddBytes(in.bitcoin_tx)
                      .Add(ToDb(in.confirmed_at != absl::InfinitePast() ? in.confirmed_at : now))
                      .Add(ToDb(now))
                      .Add(static_cast<int64_t>(kPending))
                      .AddBytes(in.ots));
  }

  absl::StatusOr<std::optional<ProofRow>> ReplaceOts(const std::string& digest,
                                                     const std::string& provider,
                                                     const std::string& ots,
                                                     absl::Time now) override {
    if (ots.empty()) return absl::InvalidArgumentError("ots: must not be empty");
    return Update(digest, provider,
                  "UPDATE proofs SET ots = $3, ots_size = $4, last_checked_at = $5, "
                  "updated_at = $5 WHERE digest = $1 AND provider = $2 AND state IN ($6, $7)",
                  PgParams()
                      .AddBytes(digest)
                      .AddBytes(provider)
                      .AddBytes(ots)
                      .Add(static_cast<int64_t>(ots.size()))
                      .Add(ToDb(now))
                      .Add(static_cast<int64_t>(kPending))
                      .Add(static_cast<int64_t>(kConfirmed)));
  }

  absl::StatusOr<std::vector<ProofRow>> PropagateToLeaves(const std::string& root,
                                                          const std::string& provider,
                                                          absl::Time now) override {
    std::vector<ProofRow> out;
    ANCHORD_RETURN_IF_ERROR(db_->Tx([&](PgConn& c) -> absl::Status {
      auto changed = PropagateIn(c, root, provider, now);
      if (!changed.ok()) return changed.status();
      out = std::move(*changed);
      return absl::OkStatus();
    }));
    return out;
  }

  absl::StatusOr<std::vector<ProofRow>> SettleStrandedLeaves(const std::string& provider,
                                                             absl::Time now,
                                                             int max_roots) override {
    // Driven by the pending leaves (the provider/state index), so it costs little when none is
    // pending.
    auto roots = Query(
        absl::StrCat("SELECT ", kColumns,
                     " FROM proofs WHERE provider = $1 AND state <> $2 AND leaf_count > 0 AND "
                     "digest IN (SELECT merkle_root FROM proofs WHERE provider = $1 AND "
                     "state = $2 AND length(merkle_root) > 0) ORDER BY seq LIMIT $3"),
        PgParams()
            .AddBytes(provider)
            .Add(static_cast<int64_t>(kPending))
            .Add(static_cast<int64_t>(max_roots)));
    if (!roots.ok()) return roots.status();
    std::vector<ProofRow> out;
    for (const ProofRow& root : *roots) {
      auto changed = PropagateToLeaves(root.digest, provider, now);
      if (!changed.ok()) return changed.status();
      for (ProofRow& leaf : *changed) out.push_back(std::move(leaf));
    }
    return out;
  }

  absl::StatusOr<std::vector<ProofRow>> FallbacksDue(const std::string& provider,
                                                     int limit) override {
    return Query(absl::StrCat("SELECT ", kColumns,
                              " FROM proofs WHERE provider = $1 AND state = $2 AND stalled = 1 AND "
                              "fallback_sent = 0 AND fallback_provider <> ''::bytea ORDER BY seq "
                              "LIMIT $3"),
                 PgParams()
                     .AddBytes(provider)
                     .Add(static_cast<int64_t>(kPending))
                     .Add(static_cast<int64_t>(limit)));
  }

  absl::Status MarkFallbackSent(const std::string& digest, const std::string& provider) override {
    return Exec("UPDATE proofs SET fallback_sent = 1 WHERE digest = $1 AND provider = $2",
                PgParams().AddBytes(digest).AddBytes(provider));
  }

  absl::StatusOr<std::optional<ProofRow>> MarkFailed(const std::string& digest,
                                                     const std::string& provider, int32_t code,
                                                     const std::string& message,
                                                     const std::string& reason,
                                                     const std::string& request_id,
                                                     absl::Time now) override {
    return Update(digest, provider,
                  "UPDATE proofs SET state = $3, failure_code = $4, failure_message = $5, "
                  "failure_reason = $6, provider_request_id = CASE WHEN $7 = ''::bytea THEN "
                  "provider_request_id ELSE $7 END, last_checked_at = $8, updated_at = $8, "
                  "check_until = 0 WHERE digest = $1 AND provider = $2 AND state = $9",
                  PgParams()
                      .AddBytes(digest)
                      .AddBytes(provider)
                      .Add(static_cast<int64_t>(kFailed))
                      .Add(static_cast<int64_t>(code))
                      .AddBytes(message)
                      .AddBytes(reason)
                      .AddBytes(request_id)
                      .Add(ToDb(now))
                      .Add(static_cast<int64_t>(kPending)));
  }

  absl::StatusOr<std::optional<ProofRow>> StoreOts(const std::string& digest,
                                                   const std::string& provider,
                                                   const std::string& ots,
                                                   absl::Time now) override {
    if (ots.empty()) return absl::InvalidArgumentError("ots: must not be empty");
    return Update(digest, provider,
                  "UPDATE proofs SET ots = $3, ots_size = $4, last_checked_at = $5, "
                  "updated_at = $5 WHERE digest = $1 AND provider = $2 AND state = $6 "
                  "AND ots_size = 0",
                  PgParams()
                      .AddBytes(digest)
                      .AddBytes(provider)
                      .AddBytes(ots)
                      .Add(static_cast<int64_t>(ots.size()))
                      .Add(ToDb(now))
                      .Add(static_cast<int64_t>(kConfirmed)));
  }

  absl::StatusOr<std::optional<ProofRow>> MarkStalled(const std::string& digest,
                                                      const std::string& provider,
                                                      absl::Time now) override {
    return Update(
        digest, provider,
        "UPDATE proofs SET stalled = 1 WHERE digest = $1 AND provider = $2 "
        "AND state = $3 AND stalled = 0",
        PgParams().AddBytes(digest).AddBytes(provider).Add(static_cast<int64_t>(kPending)));
  }

  absl::Status MarkChecked(const std::string& digest, const std::string& provider,
                           absl::Time now) override {
    return Exec("UPDATE proofs SET last_checked_at = $1 WHERE digest = $2 AND provider = $3",
                PgParams().Add(ToDb(now)).AddBytes(digest).AddBytes(provider));
  }

  absl::StatusOr<std::optional<std::string>> GetOts(const std::string& digest,
                                                    const std::string& provider) override {
    std::optional<std::string> out;
    ANCHORD_RETURN_IF_ERROR(db_->Run([&](PgConn& c) -> absl::Status {
      std::string sql = "SELECT ots FROM proofs WHERE digest = $1 AND ots_size > 0";
      PgParams p;
      p.AddBytes(digest);
      if (!provider.empty()) {
        sql += " AND provider = $2";
        p.AddBytes(provider);
      }
      sql += " ORDER BY seq LIMIT 1";
      auto r = c.Exec(sql, p);
      if (!r.ok()) return r.status();
      out.reset();
      if (r->rows() > 0) out = r->Bytes(0, 0);
      return absl::OkStatus();
    }));
    return out;
  }

  absl::StatusOr<Summary> Summarize(const std::string& job) override {
    Summary out;
    ANCHORD_RETURN_IF_ERROR(db_->Run([&](PgConn& c) -> absl::Status {
      std::string sql = "SELECT st, COUNT(*) FROM (SELECT digest, MAX(state) AS st FROM proofs p";
      PgParams p;
      if (!job.empty()) {
        sql += " WHERE EXISTS (SELECT 1 FROM files f WHERE f.digest = p.digest AND f.job = $1)";
        p.AddBytes(job);
      }
      sql += " GROUP BY digest) per_digest GROUP BY st";
      auto r = c.Exec(sql, p);
      if (!r.ok()) return r.status();
      out = Summary();
      for (int i = 0; i < r->rows(); ++i) {
        int state = static_cast<int>(r->Int(i, 0));
        if (!anchord::v1::DigestState_IsValid(state)) continue;
        out.digests_by_state[static_cast<DigestState>(state)] += r->Int(i, 1);
        out.digests += r->Int(i, 1);
      }
      return absl::OkStatus();
    }));
    return out;
  }

  absl::StatusOr<std::map<std::string, ProviderStats>> Stats() override {
    std::map<std::string, ProviderStats> out;
    ANCHORD_RETURN_IF_ERROR(db_->Run([&](PgConn& c) -> absl::Status {
      auto r = c.Exec(
          "SELECT provider, state, COUNT(*), MIN(CASE WHEN state = $1 THEN pending_since END), "
          "SUM(CASE WHEN state = $1 AND stalled = 1 THEN 1 ELSE 0 END)::bigint "
          "FROM proofs GROUP BY provider, state",
          PgParams().Add(static_cast<int64_t>(kPending)));
      if (!r.ok()) return r.status();
      out.clear();
      for (int i = 0; i < r->rows(); ++i) {
        ProviderStats& ps = out[r->Bytes(i, 0)];
        int state = static_cast<int>(r->Int(i, 1));
        if (anchord::v1::DigestState_IsValid(state)) {
          ps.proofs_by_state[static_cast<DigestState>(state)] = r->Int(i, 2);
        }
        if (state == kPending && !r->IsNull(i, 3)) {
          ps.oldest_pending = FromDb(r->Int(i, 3));
          if (ps.oldest_pending == absl::InfinitePast()) ps.oldest_pending = absl::InfiniteFuture();
        }
        ps.stalled += r->Int(i, 4);
      }
      return absl::OkStatus();
    }));
    return out;
  }

 private:
  absl::Status Exec(const char* sql, const PgParams& params) {
    return db_->Run([&](PgConn& c) { return c.Exec(sql, params).status(); });
  }

  absl::StatusOr<std::vector<ProofRow>> Query(const std::string& sql, const PgParams& params,
                                              bool with_files = true) {
    std::vector<ProofRow> out;
    ANCHORD_RETURN_IF_ERROR(db_->Run([&](PgConn& c) -> absl::Status {
      auto rows = Collect(c, sql, params, with_files);
      if (!rows.ok()) return rows.status();
      out = std::move(*rows);
      return absl::OkStatus();
    }));
    return out;
  }

  absl::StatusOr<std::vector<ProofRow>> Collect(PgConn& c, const std::string& sql,
                                                const PgParams& params, bool with_files = true) {
    auto r = c.Exec(sql, params);
    if (!r.ok()) return r.status();
    std::vector<ProofRow> out;
    out.reserve(r->rows());
    for (int i = 0; i < r->rows(); ++i) out.push_back(ReadRow(*r, i));
    if (!with_files || out.empty()) return out;
    // Every row's files in one query.
    std::vector<std::string> marks;
    PgParams fp;
    std::set<std::string> digests;
    for (const ProofRow& row : out) {
      if (digests.insert(row.digest).second) {
        fp.AddBytes(row.digest);
        marks.push_back(absl::StrCat("$", fp.size()));
      }
    }
    auto f = c.Exec(absl::StrCat("SELECT digest, job, source_path, filename, size_bytes, "
                                 "mime_type FROM files WHERE digest IN (",
                                 absl::StrJoin(marks, ","), ") ORDER BY id"),
                    fp);
    if (!f.ok()) return f.status();
    std::map<std::string, std::vector<FileRow>> files;
    for (int i = 0; i < f->rows(); ++i) {
      files[f->Bytes(i, 0)].push_back(
          FileRow{f->Bytes(i, 1), f->Bytes(i, 2), f->Bytes(i, 3), f->Int(i, 4), f->Bytes(i, 5)});
    }
    for (ProofRow& row : out) {
      auto it = files.find(row.digest);
      if (it != files.end()) row.files = it->second;
    }
    return out;
  }

  absl::StatusOr<std::optional<ProofRow>> GetIn(PgConn& c, const std::string& digest,
                                                const std::string& provider) {
    std::string sql = absl::StrCat("SELECT ", kColumns, " FROM proofs WHERE digest = $1");
    PgParams p;
    p.AddBytes(digest);
    if (!provider.empty()) {
      sql += " AND provider = $2";
      p.AddBytes(provider);
    }
    sql += " ORDER BY seq LIMIT 1";
    auto rows = Collect(c, sql, p);
    if (!rows.ok()) return rows.status();
    if (rows->empty()) return std::optional<ProofRow>();
    return std::optional<ProofRow>(std::move(rows->front()));
  }

  // A conditional single-row UPDATE ($1 = digest, $2 = provider) and the row after it, in one
  // transaction; nullopt when the condition did not hold.
  absl::StatusOr<std::optional<ProofRow>> Update(const std::string& digest,
                                                 const std::string& provider, const char* sql,
                                                 const PgParams& params) {
    std::optional<ProofRow> out;
    ANCHORD_RETURN_IF_ERROR(db_->Tx([&](PgConn& c) -> absl::Status {
      auto r = c.Exec(sql, params);
      if (!r.ok()) return r.status();
      out.reset();
      if (r->affected() == 0) return absl::OkStatus();
      auto row = GetIn(c, digest, provider);
      if (!row.ok()) return row.status();
      out = std::move(*row);
      return absl::OkStatus();
    }));
    return out;
  }

  // Copies the root's state to its PENDING leaves. `leaf` empty: called for the root (after its
  // state changed), every pending leaf; otherwise called while storing that leaf.
  //
  // The root row is read locked, so a leaf hand-off and the root's propagation serialise on it:
  // the propagation takes FOR UPDATE, a leaf being stored FOR SHARE (leaf hand-offs of one root
  // do not block each other). Without the lock a leaf inserted while the propagation ran was
  // invisible to the propagation's UPDATE (uncommitted) and had read the root still PENDING, so
  // it stayed PENDING for good. With it: either the leaf commits first and the propagation's
  // UPDATE (a new statement, READ COMMITTED) sees it, or the propagation commits first and the
  // leaf's locked read returns the root's final row and copies it. The root's own state change
  // commits before its propagation starts, so a root that is final when the lock is granted is
  // read as final. (A leaf whose root row does not exist yet has nothing to lock;
  // SettleStrandedLeaves is the safety net for that and any other gap.)
  absl::StatusOr<std::vector<ProofRow>> PropagateIn(PgConn& c, const std::string& root,
                                                    const std::string& provider, absl::Time now,
                                                    const std::string& leaf = "") {
    auto locked = Collect(
        c,
        absl::StrCat("SELECT ", kColumns, " FROM proofs WHERE digest = $1 AND provider = $2 ",
                     leaf.empty() ? "FOR UPDATE" : "FOR SHARE"),
        PgParams().AddBytes(root).AddBytes(provider), /*with_files=*/false);
    if (!locked.ok()) return locked.status();
    std::vector<ProofRow> changed;
    if (locked->empty()) return changed;
    const ProofRow& r = locked->front();
    // While storing a leaf of a root still pending, only that leaf takes the root's fields (the
    // others already did when stored; an UPDATE of every pending leaf per hand-off would be
    // quadratic in the batch). For the root itself (a new state, or the stalled flag) all.
    const std::string only_leaf = r.state == kPending ? leaf : std::string();
    auto upd = c.Exec(
        absl::StrCat(
            "UPDATE proofs SET state = $3, proof_id = $4, certificate_url = $5, verify_url = $6, "
            "block_height = $7, bitcoin_tx = $8, confirmed_at = $9, failure_code = $10, "
            "failure_message = $11, failure_reason = $12, stalled = $13, "
            "ots_size = CASE WHEN $14 > 0 THEN $14 + length(merkle_path) ELSE 0 END, "
            "updated_at = $15 WHERE merkle_root = $1 AND provider = $2 AND "
            "(state = $16 OR (state = $3 AND ots_size = 0 AND $14 > 0)) AND "
            "($17 = ''::bytea OR digest = $17) RETURNING ",
            kColumns),
        PgParams()
            .AddBytes(root)
            .AddBytes(provider)
            .Add(static_cast<int64_t>(r.state))
            .AddBytes(r.proof_id)
            .AddBytes(r.certificate_url)
            .AddBytes(r.verify_url)
            .Add(r.block_height)
            .AddBytes(r.bitcoin_tx)
            .Add(ToDb(r.confirmed_at))
            .Add(static_cast<int64_t>(r.failure_code))
            .AddBytes(r.failure_message)
            .AddBytes(r.failure_reason)
            .Add(static_cast<int64_t>(r.stalled ? 1 : 0))
            .Add(r.state == kConfirmed ? r.ots_size : 0)
            .Add(ToDb(now))
            .Add(static_cast<int64_t>(kPending))
            .AddBytes(only_leaf));
    if (!upd.ok()) return upd.status();
    if (upd->rows() == 0) return changed;
    std::vector<int64_t> seqs;
    for (int i = 0; i < upd->rows(); ++i) seqs.push_back(upd->Int(i, 0));
    // The changed leaves as they are now, with their files (for events), in seq order.
    return Collect(c,
                   absl::StrCat("SELECT ", kColumns,
                                " FROM proofs WHERE seq = ANY($1::bigint[]) ORDER BY seq"),
                   PgParams().Add(absl::StrCat("{", absl::StrJoin(seqs, ","), "}")));
  }

  absl::StatusOr<TrackOutcome> TrackOne(PgConn& c, const TrackInput& in, absl::Time now) {
    const ProofRow& p = in.proof;
    int state = p.state == anchord::v1::DIGEST_STATE_SUBMITTED ? kPending : p.state;
    if (state != kPending && state != kConfirmed && state != kFailed) {
      return absl::InvalidArgumentError(
          "proof.state: must be SUBMITTED, PENDING, CONFIRMED or FAILED");
    }
    TrackOutcome out;
    absl::Time confirmed_at = p.confirmed_at;
    if (state == kConfirmed && confirmed_at == absl::InfinitePast()) confirmed_at = now;
    const absl::Time pending_since = p.submitted_at != absl::InfinitePast() ? p.submitted_at : now;
    PgParams ins;
    ins.AddBytes(p.digest)
        .AddBytes(p.provider)
        .AddBytes(p.proof_id)
        .Add(static_cast<int64_t>(state))
        .AddBytes(p.certificate_url)
        .AddBytes(p.verify_url)
        .Add(p.block_height)
        .AddBytes(p.bitcoin_tx)
        .Add(ToDb(p.submitted_at))
        .Add(state == kConfirmed ? ToDb(confirmed_at) : int64_t{0})
        .Add(static_cast<int64_t>(state == kFailed ? p.failure_code : 0))
        .AddBytes(state == kFailed ? p.failure_message : std::string())
        .AddBytes(state == kFailed ? p.failure_reason : std::string())
        .AddBytes(p.provider_request_id)
        .Add(ToDb(now))
        .Add(ToDb(pending_since))
        .AddBytes(p.merkle_root)
        .AddBytes(p.merkle_path)
        .Add(p.leaf_count)
        .AddBytes(p.fallback_provider);
    if (in.evidence.empty()) {
      ins.AddNull();
    } else {
      ins.AddBytes(in.evidence);
    }
    ins.Add(static_cast<int64_t>(in.evidence.size()));
    // Insert-or-nothing: two replicas storing the same hand-off at once both succeed, one inserts.
    auto inserted = c.Exec(
        "INSERT INTO proofs (digest, provider, proof_id, state, certificate_url, verify_url, "
        "block_height, bitcoin_tx, submitted_at, confirmed_at, failure_code, failure_message, "
        "failure_reason, provider_request_id, tracked_at, pending_since, updated_at, "
        "merkle_root, merkle_path, leaf_count, fallback_provider, ots, ots_size) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $15, "
        "$17, $18, $19, $20, $21::bytea, $22) ON CONFLICT (digest, provider) DO NOTHING",
        ins);
    if (!inserted.ok()) return inserted.status();
    if (inserted->affected() > 0) {
      out.inserted = true;
      if (!p.merkle_root.empty()) {
        auto moved = PropagateIn(c, p.merkle_root, p.provider, now, p.digest);
        if (!moved.ok()) return moved.status();
        for (const ProofRow& m : *moved) {
          if (m.digest == p.digest) out.state_changed = m.state != kPending;
        }
      }
    } else {
      auto existing = GetIn(c, p.digest, p.provider);
      if (!existing.ok()) return existing.status();
      if (!existing->has_value())
        return absl::InternalError("proof vanished inside its transaction");
      const ProofRow& old = **existing;
      if (old.state == kPending && state != kPending) {
        auto upd = c.Exec(
            "UPDATE proofs SET state = $3, proof_id = CASE WHEN proof_id = ''::bytea THEN $4 ELSE "
            "proof_id END, certificate_url = CASE WHEN $5 = ''::bytea THEN certificate_url ELSE "
            "$5 END, verify_url = CASE WHEN $6 = ''::bytea THEN verify_url ELSE $6 END, "
            "block_height = $7, bitcoin_tx = $8, confirmed_at = $9, failure_code = $10, "
            "failure_message = $11, failure_reason = $12, provider_request_id = CASE WHEN "
            "provider_request_id = ''::bytea THEN $13 ELSE provider_request_id END, "
            "updated_at = $14 WHERE digest = $1 AND provider = $2 AND state = $15",
            PgParams()
                .AddBytes(p.digest)
                .AddBytes(p.provider)
                .Add(static_cast<int64_t>(state))
                .AddBytes(p.proof_id)
                .AddBytes(p.certificate_url)
                .AddBytes(p.verify_url)
                .Add(state == kConfirmed ? p.block_height : 0)
                .AddBytes(state == kConfirmed ? p.bitcoin_tx : std::string())
                .Add(state == kConfirmed
                         ? ToDb(p.confirmed_at != absl::InfinitePast() ? p.confirmed_at : now)
                         : int64_t{0})
                .Add(static_cast<int64_t>(state == kFailed ? p.failure_code : 0))
                .AddBytes(state == kFailed ? p.failure_message : std::string())
                .AddBytes(state == kFailed ? p.failure_reason : std::string())
                .AddBytes(p.provider_request_id)
                .Add(ToDb(now))
                .Add(static_cast<int64_t>(kPending)));
        if (!upd.ok()) return upd.status();
        out.state_changed = upd->affected() > 0;
      } else if (!p.proof_id.empty() && old.proof_id != p.proof_id) {
        ANCHORD_LOG(Warning) << "hand-off for provider " << p.provider << " carries proof id "
                             << p.proof_id << ", keeping " << old.proof_id;
      }
    }
    for (const FileRow& f : in.files) {
      auto st = c.Exec(
          "INSERT INTO files (digest, job, source_path, filename, size_bytes, mime_type) "
          "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
          PgParams()
              .AddBytes(p.digest)
              .AddBytes(f.job.empty() ? std::string("default") : f.job)
              .AddBytes(f.source_path)
              .AddBytes(f.filename)
              .Add(f.size_bytes)
              .AddBytes(f.mime_type));
      if (!st.ok()) return st.status();
    }
    auto after = GetIn(c, p.digest, p.provider);
    if (!after.ok()) return after.status();
    if (!after->has_value()) return absl::InternalError("proof vanished inside its transaction");
    out.proof = std::move(**after);
    if (out.proof.leaf_count > 0 && out.proof.state != kPending) {
      auto moved = PropagateIn(c, p.digest, p.provider, now);
      if (!moved.ok()) return moved.status();
      out.leaves_changed = std::move(*moved);
    }
    return out;
  }

  std::shared_ptr<PgDb> db_;
  Clock* clock_;
  const std::string instance_;
};

}  // namespace

const std::vector<ledger::Migration>& PollerMigrations() { return kMigrations; }

absl::StatusOr<std::unique_ptr<PollerStore>> OpenPgPollerStore(std::shared_ptr<ledger::PgDb> db,
                                                               Clock* clock) {
  if (db == nullptr) return absl::InvalidArgumentError("database: not open");
  ANCHORD_RETURN_IF_ERROR(ledger::Migrate(*db, "poller", kMigrations).status());
  return std::unique_ptr<PollerStore>(new PgPollerStore(std::move(db), clock));
}

}  // namespace anchord::poller
