#include "services/poller/pg_poller_store.h"

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/types/span.h"
#include "absl/synchronization/mutex.h"
#include "libs/common/status_macros.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"
#include "services/poller/pg_poller_schema.h"
#include "services/poller/pg_poller_track.h"
#include "services/poller/store_rows.h"
#include "services/poller/tree_cache.h"

namespace anchord::poller {
namespace {

using ledger::PgConn;
using ledger::PgDb;
using ledger::PgParams;
using ledger::PgResult;

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
      std::set<std::string> trees_stored;  // per attempt: a re-run transaction writes them again
      // Nearly every call is of new proofs only (a hand-off is stored once), or a few runs of
      // them, each led by its batch's root: a few statements per part. The parts are bounded, so
      // a call that alternates stored and new proofs costs at most kMaxParts set-based tries
      // before the rest is stored one by one, as every call was before.
      constexpr int kMaxParts = 16;
      const absl::Span<const TrackInput> all(inputs);
      size_t done = 0;
      for (int part = 0; part < kMaxParts && done < all.size(); ++part) {
        auto stored = TrackNewIn(c, all.subspan(done), now, &trees_stored);
        if (!stored.ok()) return stored.status();
        if (!stored->has_value()) break;
        done += (*stored)->size();
        for (TrackOutcome& o : **stored) out.push_back(std::move(o));
      }
      for (size_t i = done; i < all.size(); ++i) {
        auto one = TrackIn(c, all[i], now, &trees_stored);
        if (!one.ok()) return one.status();
        out.push_back(std::move(*one));
      }
      return absl::OkStatus();
    }));
    return out;
  }

  absl::StatusOr<std::optional<ProofRow>> Get(const Digest& digest,
                                              const std::string& provider) override {
    std::optional<ProofRow> out;
    ANCHORD_RETURN_IF_ERROR(db_->Run([&](PgConn& c) -> absl::Status {
      auto r = FindProof(c, digest, provider);
      if (!r.ok()) return r.status();
      out = std::move(*r);
      return absl::OkStatus();
    }));
    return out;
  }

  absl::StatusOr<std::vector<ProofRow>> GetAll(const Digest& digest) override {
    return Query(
        absl::StrCat("SELECT ", kProofColumns, " FROM proofs WHERE digest = $1 ORDER BY seq"),
        PgParams().AddBytes(digest.bytes()));
  }

  absl::StatusOr<std::vector<ProofRow>> List(const ListFilter& filter, int64_t after_seq,
                                             int limit) override {
    // A list of digests (a caller asking about its own, 500 to a call) is looked up by digest
    // first, every condition tested on those rows alone, and only they are sorted: planned as one
    // query next to `ORDER BY seq LIMIT`, and with statistics that lag a bulk hand-off, the
    // planner walked the table in seq order or hashed every file of the job (100,000 blocks a
    // call at 100,000 proofs; bench/RESULTS.md, issue 11 session 31). The materialized CTE and the
    // job test as a subquery per row (which cannot become a join) keep that order.
    const bool by_digest = !filter.digests.empty();
    // The seq bound is the outer query's when the CTE has the digests (inside, it joined a bitmap
    // of the whole primary key from $1 on to the digests' rows).
    std::string where = by_digest ? " WHERE true" : " WHERE seq > $1";
    PgParams p;
    p.Add(after_seq);
    int n = 1;
    if (!filter.job.empty()) {
      absl::StrAppend(&where,
                      by_digest ? " AND (SELECT true FROM files f WHERE f.digest = p.digest AND "
                                  "f.job = $"
                                : " AND EXISTS (SELECT 1 FROM files f WHERE f.digest = p.digest "
                                  "AND f.job = $",
                      ++n, by_digest ? " LIMIT 1)" : ")");
      p.AddBytes(filter.job);
    }
    if (filter.state != anchord::v1::DIGEST_STATE_UNSPECIFIED) {
      absl::StrAppend(&where, " AND state = $", ++n);
      p.Add(static_cast<int64_t>(filter.state));
    }
    if (!filter.provider.empty()) {
      absl::StrAppend(&where, " AND provider = $", ++n);
      p.AddBytes(filter.provider);
    }
    if (!filter.with_leaves) absl::StrAppend(&where, " AND length(merkle_root) = 0");
    std::string sql;
    if (by_digest) {
      std::vector<std::string> raw;
      for (const Digest& d : filter.digests) raw.emplace_back(d.bytes());
      absl::StrAppend(&where, " AND digest = ANY($", ++n, "::bytea[])");
      p.AddBytesArray(raw);
      sql = absl::StrCat("WITH wanted AS MATERIALIZED (SELECT ", kProofColumns, " FROM proofs p",
                         where, ") SELECT ", kProofColumns, " FROM wanted WHERE seq > $1");
    } else {
      sql = absl::StrCat("SELECT ", kProofColumns, " FROM proofs p", where);
    }
    absl::StrAppend(&sql, " ORDER BY seq LIMIT $", ++n);
    p.Add(static_cast<int64_t>(limit));
    return Query(sql, p, filter.with_files);
  }

  absl::StatusOr<std::vector<ProofRow>> PendingToCheck(const std::string& provider,
                                                       absl::Time tracked_before,
                                                       int limit) override {
    // Proofs another replica claimed for its round (and still holds) are left to it.
    return Query(absl::StrCat("SELECT ", kProofColumns,
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
              .AddIntArray(seqs)
              .Add(ToDb(now))
              .AddIntArray(checked));
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
    static_assert(kConfirmed == 5);  // kPgOtsDue's literal
    return Query(absl::StrCat("SELECT ", kProofColumns, " FROM proofs WHERE provider = $1 AND ",
                              kPgOtsDue, " ORDER BY last_checked_at, seq LIMIT $2"),
                 PgParams().AddBytes(provider).Add(static_cast<int64_t>(limit)));
  }

  absl::StatusOr<std::vector<ProofRow>> NewlyStalled(const std::string& provider,
                                                     absl::Time pending_before,
                                                     int limit) override {
    return Query(
        absl::StrCat("SELECT ", kProofColumns,
                     " FROM proofs WHERE provider = $1 AND state = $2 AND stalled = 0 AND "
                     "pending_since < $3 AND length(merkle_root) = 0 ORDER BY pending_since, seq "
                     "LIMIT $4"),
        PgParams()
            .AddBytes(provider)
            .Add(static_cast<int64_t>(kPending))
            .Add(ToDb(pending_before))
            .Add(static_cast<int64_t>(limit)));
  }

  absl::StatusOr<std::optional<ProofRow>> MarkConfirmed(const Digest& digest,
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
                      .AddBytes(digest.bytes())
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

  absl::StatusOr<std::optional<ProofRow>> ReplaceOts(const Digest& digest,
                                                     const std::string& provider,
                                                     const std::string& ots,
                                                     absl::Time now) override {
    if (ots.empty()) return absl::InvalidArgumentError("ots: must not be empty");
    return Update(digest, provider,
                  "UPDATE proofs SET ots = $3, ots_size = $4, last_checked_at = $5, "
                  "updated_at = $5 WHERE digest = $1 AND provider = $2 AND state IN ($6, $7)",
                  PgParams()
                      .AddBytes(digest.bytes())
                      .AddBytes(provider)
                      .AddBytes(ots)
                      .Add(static_cast<int64_t>(ots.size()))
                      .Add(ToDb(now))
                      .Add(static_cast<int64_t>(kPending))
                      .Add(static_cast<int64_t>(kConfirmed)));
  }

  absl::StatusOr<std::vector<ProofRow>> PropagateToLeaves(const Digest& root,
                                                          const std::string& provider,
                                                          absl::Time now) override {
    std::vector<ProofRow> out;
    ANCHORD_RETURN_IF_ERROR(db_->Tx([&](PgConn& c) -> absl::Status {
      auto changed = PropagateToLeavesIn(c, root, provider, now);
      if (!changed.ok()) return changed.status();
      out = std::move(*changed);
      return absl::OkStatus();
    }));
    return out;
  }

  // Roots whose leaves a propagation missed: final roots with a pending leaf of its own path
  // (RootsWithOpenLeaves, a bounded walk) and roots marked leaves_behind (a propagation cut off
  // after the root moved; nearly always none). As on SQLite: each call reads at most
  // kRootsPerWalk roots of proofs_open_leaves, never every pending leaf (a join over them cost
  // 130-200 ms a round at 1,000,000 pending leaves, bench/RESULTS.md issue 11 session 30).
  absl::StatusOr<std::vector<ProofRow>> SettleStrandedLeaves(const std::string& provider,
                                                             absl::Time now,
                                                             int max_roots) override {
    ANCHORD_ASSIGN_OR_RETURN(std::vector<ProofRow> roots, RootsWithOpenLeaves(provider));
    ANCHORD_ASSIGN_OR_RETURN(
        std::vector<ProofRow> behind,
        Query(absl::StrCat("SELECT ", kProofColumns,
                           " FROM proofs WHERE provider = $1 AND leaves_behind = 1 ORDER BY seq "
                           "LIMIT $2"),
              PgParams().AddBytes(provider).Add(static_cast<int64_t>(max_roots)),
              /*with_files=*/false));
    return SettleRoots(*this, std::move(roots), std::move(behind), provider, now, max_roots);
  }

  absl::StatusOr<std::vector<ProofRow>> FallbacksDue(const std::string& provider,
                                                     int limit) override {
    static_assert(kPending == 4);  // kPgFallbackDue's literal
    return Query(absl::StrCat("SELECT ", kProofColumns, " FROM proofs WHERE provider = $1 AND ",
                              kPgFallbackDue, " ORDER BY seq LIMIT $2"),
                 PgParams().AddBytes(provider).Add(static_cast<int64_t>(limit)));
  }

  absl::Status MarkFallbackSent(const Digest& digest, const std::string& provider) override {
    return Exec("UPDATE proofs SET fallback_sent = 1 WHERE digest = $1 AND provider = $2",
                PgParams().AddBytes(digest.bytes()).AddBytes(provider));
  }

  absl::StatusOr<std::optional<ProofRow>> MarkFailed(
      const Digest& digest, const std::string& provider, int32_t code, const std::string& message,
      const std::string& reason, const std::string& request_id, absl::Time now) override {
    return Update(digest, provider,
                  "UPDATE proofs SET state = $3, failure_code = $4, failure_message = $5, "
                  "failure_reason = $6, provider_request_id = CASE WHEN $7 = ''::bytea THEN "
                  "provider_request_id ELSE $7 END, last_checked_at = $8, updated_at = $8, "
                  "check_until = 0 WHERE digest = $1 AND provider = $2 AND state = $9",
                  PgParams()
                      .AddBytes(digest.bytes())
                      .AddBytes(provider)
                      .Add(static_cast<int64_t>(kFailed))
                      .Add(static_cast<int64_t>(code))
                      .AddBytes(message)
                      .AddBytes(reason)
                      .AddBytes(request_id)
                      .Add(ToDb(now))
                      .Add(static_cast<int64_t>(kPending)));
  }

  absl::StatusOr<std::optional<ProofRow>> StoreOts(const Digest& digest,
                                                   const std::string& provider,
                                                   const std::string& ots,
                                                   absl::Time now) override {
    if (ots.empty()) return absl::InvalidArgumentError("ots: must not be empty");
    return Update(digest, provider,
                  "UPDATE proofs SET ots = $3, ots_size = $4, last_checked_at = $5, "
                  "updated_at = $5 WHERE digest = $1 AND provider = $2 AND state = $6 "
                  "AND ots_size = 0",
                  PgParams()
                      .AddBytes(digest.bytes())
                      .AddBytes(provider)
                      .AddBytes(ots)
                      .Add(static_cast<int64_t>(ots.size()))
                      .Add(ToDb(now))
                      .Add(static_cast<int64_t>(kConfirmed)));
  }

  absl::StatusOr<std::optional<ProofRow>> MarkStalled(const Digest& digest,
                                                      const std::string& provider,
                                                      absl::Time now) override {
    return Update(
        digest, provider,
        "UPDATE proofs SET stalled = 1 WHERE digest = $1 AND provider = $2 "
        "AND state = $3 AND stalled = 0",
        PgParams().AddBytes(digest.bytes()).AddBytes(provider).Add(static_cast<int64_t>(kPending)));
  }

  absl::Status MarkCheckedAll(const std::vector<CheckedProof>& checked) override {
    if (checked.empty()) return absl::OkStatus();
    // One statement: one commit, and one run of the count triggers (a statement-level trigger
    // fires for every UPDATE, whatever columns it sets). A proof marked twice keeps its latest
    // mark: an UPDATE ... FROM whose row matches two source rows takes either.
    std::vector<std::string> digests, providers;
    std::vector<int64_t> at;
    absl::flat_hash_map<std::pair<std::string, std::string>, size_t> index;
    for (const CheckedProof& c : checked) {
      auto [it, added] = index.try_emplace(
          std::make_pair(std::string(c.digest.bytes()), c.provider), digests.size());
      if (!added) {
        at[it->second] = std::max(at[it->second], ToDb(c.at));
        continue;
      }
      digests.emplace_back(c.digest.bytes());
      providers.push_back(c.provider);
      at.push_back(ToDb(c.at));
    }
    return Exec(
        "UPDATE proofs p SET last_checked_at = u.at FROM unnest($1::bytea[], $2::bytea[], "
        "$3::bigint[]) AS u(d, pr, at) WHERE p.digest = u.d AND p.provider = u.pr",
        PgParams().AddBytesArray(digests).AddBytesArray(providers).AddIntArray(at));
  }

  absl::StatusOr<std::optional<std::string>> GetOts(const Digest& digest,
                                                    const std::string& provider) override {
    std::optional<std::string> out;
    ANCHORD_RETURN_IF_ERROR(db_->Run([&](PgConn& c) -> absl::Status {
      std::string sql = "SELECT ots FROM proofs WHERE digest = $1 AND ots_size > 0";
      PgParams p;
      p.AddBytes(digest.bytes());
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

  absl::StatusOr<std::shared_ptr<const merkle::SealedBatch>> TreeOf(const Digest& root) override {
    return trees_.Get(root, [&]() -> absl::StatusOr<std::optional<std::string>> {
      std::optional<std::string> out;
      ANCHORD_RETURN_IF_ERROR(db_->Run([&](PgConn& c) -> absl::Status {
        auto r = c.Exec("SELECT leaves FROM merkle_trees WHERE root = $1",
                        PgParams().AddBytes(root.bytes()));
        if (!r.ok()) return r.status();
        out.reset();
        if (r->rows() > 0) out = r->Bytes(0, 0);
        return absl::OkStatus();
      }));
      return out;
    });
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

  // From proof_counts (pg_poller_schema.cc, migration 3): the changes logged since the last fold
  // are folded in first (at most kFoldRows a call; SKIP LOCKED: replicas folding at once take
  // different changes), then the counts and the changes not folded yet are summed, and each
  // provider's oldest pending proof is a seek on proofs_stall_roots per value of `stalled`. The
  // work grows with the writes since the last call, never with the backlog.
  absl::StatusOr<std::map<std::string, ProviderStats>> Stats() override {
    std::map<std::string, ProviderStats> out;
    ANCHORD_RETURN_IF_ERROR(db_->Tx([&](PgConn& c) -> absl::Status {
      // In key order, so two folds lock the count rows they both update in the same order.
      auto fold = c.Exec(
          "WITH moved AS (DELETE FROM proof_count_changes WHERE id IN (SELECT id FROM "
          "proof_count_changes ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING provider, "
          "state, stalled, n) INSERT INTO proof_counts (provider, state, stalled, n) SELECT "
          "provider, state, stalled, SUM(n) FROM moved GROUP BY provider, state, stalled ORDER BY "
          "provider, state, stalled ON CONFLICT (provider, state, stalled) DO UPDATE SET n = "
          "proof_counts.n + EXCLUDED.n",
          PgParams().Add(kFoldRows));
      if (!fold.ok()) return fold.status();
      // One statement, one snapshot: a fold another replica commits meanwhile is seen whole
      // (its changes gone and its counts updated) or not at all.
      auto r = c.Exec(
          "SELECT provider, state, stalled, SUM(n)::bigint, CASE WHEN state = $1 THEN (SELECT "
          "pending_since FROM proofs p WHERE p.provider = c.provider AND p.state = $1 AND "
          "p.stalled = c.stalled AND length(p.merkle_root) = 0 ORDER BY pending_since LIMIT 1) "
          "END FROM (SELECT provider, state, stalled, n FROM proof_counts UNION ALL SELECT "
          "provider, state, stalled, n FROM proof_count_changes) c GROUP BY provider, state, "
          "stalled HAVING SUM(n) > 0",
          PgParams().Add(static_cast<int64_t>(kPending)));
      if (!r.ok()) return r.status();
      out.clear();
      for (int i = 0; i < r->rows(); ++i) {
        ProviderStats& ps = out[r->Bytes(i, 0)];
        const int state = static_cast<int>(r->Int(i, 1));
        const int64_t n = r->Int(i, 3);
        if (anchord::v1::DigestState_IsValid(state)) {
          ps.proofs_by_state[static_cast<DigestState>(state)] += n;
        }
        if (state != kPending) continue;
        if (r->Int(i, 2) == 1) ps.stalled += n;
        // Unset (InfinitePast) wins the minimum, and then means "none", as on SQLite.
        if (!r->IsNull(i, 4)) ps.oldest_pending = std::min(ps.oldest_pending, FromDb(r->Int(i, 4)));
      }
      for (auto& [provider, ps] : out) {
        if (ps.oldest_pending == absl::InfinitePast()) ps.oldest_pending = absl::InfiniteFuture();
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
      auto rows = ReadProofs(c, sql, params, with_files);
      if (!rows.ok()) return rows.status();
      out = std::move(*rows);
      return absl::OkStatus();
    }));
    return out;
  }

  // A conditional single-row UPDATE ($1 = digest, $2 = provider) and the row after it, in one
  // transaction; nullopt when the condition did not hold.
  absl::StatusOr<std::optional<ProofRow>> Update(const Digest& digest, const std::string& provider,
                                                 const char* sql, const PgParams& params) {
    std::optional<ProofRow> out;
    ANCHORD_RETURN_IF_ERROR(db_->Tx([&](PgConn& c) -> absl::Status {
      auto r = c.Exec(sql, params);
      if (!r.ok()) return r.status();
      out.reset();
      if (r->affected() == 0) return absl::OkStatus();
      auto row = FindProof(c, digest, provider);
      if (!row.ok()) return row.status();
      out = std::move(*row);
      return absl::OkStatus();
    }));
    return out;
  }

  // Final roots (not PENDING) with a PENDING leaf of their own path: such a leaf was stored while
  // its root, not yet committed, was being stored final by another replica (nothing to lock
  // then, pg_poller_track.cc). proofs_open_leaves is walked from root to root (a recursive
  // query, one seek per root, never over a root's leaves), at most kRootsPerWalk roots a call,
  // resumed after the last one at the next call and from the start once the walk reached the
  // end: a stranded leaf is found within (roots with open leaves) / kRootsPerWalk calls.
  absl::StatusOr<std::vector<ProofRow>> RootsWithOpenLeaves(const std::string& provider) {
    std::string cursor;
    {
      absl::MutexLock lock(&walk_mu_);
      cursor = open_leaves_walk_[provider];
    }
    std::vector<std::string> walked;
    std::vector<ProofRow> out;
    ANCHORD_RETURN_IF_ERROR(db_->Run([&](PgConn& c) -> absl::Status {
      static_assert(kPending == 4);  // kPgOpenLeaf's literal
      auto w = c.Exec(
          absl::StrCat("WITH RECURSIVE walk(root, n) AS (SELECT (SELECT merkle_root FROM proofs "
                       "WHERE provider = $1 AND merkle_root > $2 AND ",
                       kPgOpenLeaf,
                       " ORDER BY merkle_root LIMIT 1), 1 UNION ALL SELECT (SELECT merkle_root "
                       "FROM proofs WHERE provider = $1 AND merkle_root > walk.root AND ",
                       kPgOpenLeaf,
                       " ORDER BY merkle_root LIMIT 1), n + 1 FROM walk WHERE root IS NOT NULL "
                       "AND n < $3) SELECT root FROM walk WHERE root IS NOT NULL ORDER BY n"),
          PgParams().AddBytes(provider).AddBytes(cursor).Add(kRootsPerWalk));
      if (!w.ok()) return w.status();
      walked.clear();
      for (int i = 0; i < w->rows(); ++i) walked.push_back(w->Bytes(i, 0));
      if (walked.empty()) return absl::OkStatus();
      auto rows = ReadProofs(
          c,
          absl::StrCat("SELECT ", kProofColumns,
                       " FROM proofs r WHERE provider = $1 AND digest = ANY($2::bytea[]) AND "
                       "state <> 4 AND leaf_count > 0 AND EXISTS (SELECT 1 FROM proofs WHERE "
                       "provider = r.provider AND merkle_root = r.digest AND state = 4 AND ",
                       kPgOpenLeaf, ") ORDER BY seq"),
          PgParams().AddBytes(provider).AddBytesArray(walked), /*with_files=*/false);
      if (!rows.ok()) return rows.status();
      out = std::move(*rows);
      return absl::OkStatus();
    }));
    absl::MutexLock lock(&walk_mu_);
    // Fewer roots than asked for: the walk reached the end and starts again next time.
    open_leaves_walk_[provider] =
        static_cast<int64_t>(walked.size()) < kRootsPerWalk ? std::string() : walked.back();
    return out;
  }

  static constexpr int64_t kRootsPerWalk = 256;
  absl::Mutex walk_mu_;
  // Per provider, the root the walk of proofs_open_leaves stopped after ("": from the start).
  std::map<std::string, std::string> open_leaves_walk_ ABSL_GUARDED_BY(walk_mu_);

  // Changes folded into proof_counts per Stats call at most: a call's work stays bounded however
  // long the counts went unread.
  static constexpr int64_t kFoldRows = 100'000;

  std::shared_ptr<PgDb> db_;
  Clock* clock_;
  const std::string instance_;
  TreeCache trees_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<PollerStore>> OpenPgPollerStore(std::shared_ptr<ledger::PgDb> db,
                                                               Clock* clock) {
  if (db == nullptr) return absl::InvalidArgumentError("database: not open");
  ANCHORD_RETURN_IF_ERROR(ledger::Migrate(*db, "poller", PollerMigrations()).status());
  return std::unique_ptr<PollerStore>(new PgPollerStore(std::move(db), clock));
}

}  // namespace anchord::poller
