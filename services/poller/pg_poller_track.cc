#include "services/poller/pg_poller_track.h"

#include "absl/strings/str_cat.h"
#include "libs/common/log.h"
#include "libs/common/status_macros.h"
#include "services/poller/pg_poller_schema.h"
#include "services/poller/store_rows.h"

namespace anchord::poller {

using ledger::PgConn;
using ledger::PgParams;

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
absl::StatusOr<std::vector<ProofRow>> PropagateToLeavesIn(PgConn& c, const Digest& root,
                                                          const std::string& provider,
                                                          absl::Time now,
                                                          const std::vector<std::string>& leaves) {
  auto locked = ReadProofs(
      c,
      absl::StrCat("SELECT ", kProofColumns, " FROM proofs WHERE digest = $1 AND provider = $2 ",
                   leaves.empty() ? "FOR UPDATE" : "FOR SHARE"),
      PgParams().AddBytes(root.bytes()).AddBytes(provider), /*with_files=*/false);
  if (!locked.ok()) return locked.status();
  std::vector<ProofRow> changed;
  if (locked->empty()) return changed;
  const ProofRow& r = locked->front();
  // While storing leaves of a root still pending, only those leaves take the root's fields (the
  // others already did when stored; an UPDATE of every pending leaf per hand-off would be
  // quadratic in the batch). For the root itself (a new state, or the stalled flag) all.
  static const std::vector<std::string> kAll;
  const std::vector<std::string>& only = r.state == kPending ? leaves : kAll;
  auto upd = c.Exec(
      absl::StrCat(
          "UPDATE proofs SET state = $3, proof_id = $4, certificate_url = $5, verify_url = $6, "
          "block_height = $7, bitcoin_tx = $8, confirmed_at = $9, failure_code = $10, "
          "failure_message = $11, failure_reason = $12, stalled = $13, "
          "ots_size = CASE WHEN $14 > 0 THEN $14 + length(merkle_path) + path_size ELSE 0 END, "
          "updated_at = $15 WHERE merkle_root = $1 AND length(merkle_root) > 0 AND "
          "provider = $2 AND "
          "(state = $16 OR (state = $3 AND ots_size = 0 AND $14 > 0)) AND "
          "(cardinality($17::bytea[]) = 0 OR digest = ANY($17::bytea[])) AND "
          // A leaf that has its root's fields already (one just stored from the same hand-off as
          // its pending root, most of all) is not written again: a new row version of every leaf
          // and its index entries, for nothing, was 1.9 of the server's 12.6 CPU s in a Merkle
          // run (issue 11, session 32).
          "(state, proof_id, certificate_url, verify_url, block_height, bitcoin_tx, "
          "confirmed_at, failure_code, failure_message, failure_reason, stalled, ots_size) IS "
          "DISTINCT FROM ($3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, CASE WHEN $14 > 0 THEN "
          "$14 + length(merkle_path) + path_size ELSE 0 END) RETURNING ",
          kProofColumns),
      PgParams()
          .AddBytes(root.bytes())
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
          .AddBytesArray(only));
  if (!upd.ok()) return upd.status();
  if (only.empty() && r.leaf_count > 0) {
    // Every leaf is up to the root now: its leaves_behind mark (set when it moved) is done.
    auto done = c.Exec("UPDATE proofs SET leaves_behind = 0 WHERE seq = $1 AND leaves_behind = 1",
                       PgParams().Add(r.seq));
    if (!done.ok()) return done.status();
  }
  if (upd->rows() == 0) return changed;
  std::vector<int64_t> seqs;
  for (int i = 0; i < upd->rows(); ++i) seqs.push_back(upd->Int(i, 0));
  // The changed leaves as they are now, with their files (for events), in seq order.
  return ReadProofs(c,
                    absl::StrCat("SELECT ", kProofColumns,
                                 " FROM proofs WHERE seq = ANY($1::bigint[]) ORDER BY seq"),
                    PgParams().AddIntArray(seqs));
}

absl::StatusOr<int> StoredStateOf(const TrackInput& in) {
  const int state =
      in.proof.state == anchord::v1::DIGEST_STATE_SUBMITTED ? kPending : in.proof.state;
  if (state != kPending && state != kConfirmed && state != kFailed) {
    return absl::InvalidArgumentError(
        "proof.state: must be SUBMITTED, PENDING, CONFIRMED or FAILED");
  }
  return state;
}

NewRow NewRowOf(const TrackInput& in, const BatchForm& form, int state, absl::Time now) {
  const ProofRow& p = in.proof;
  NewRow r;
  r.state = state;
  r.submitted_at = ToDb(p.submitted_at);
  absl::Time confirmed_at = p.confirmed_at;
  if (state == kConfirmed && confirmed_at == absl::InfinitePast()) confirmed_at = now;
  r.confirmed_at = state == kConfirmed ? ToDb(confirmed_at) : int64_t{0};
  r.pending_since = ToDb(p.submitted_at != absl::InfinitePast() ? p.submitted_at : now);
  if (state == kFailed) {
    r.failure_code = p.failure_code;
    r.failure_message = p.failure_message;
    r.failure_reason = p.failure_reason;
  }
  // A batch-form leaf's path is derived from its root's tree when needed (leaf_proof.h).
  if (form.leaf_index < 0) r.merkle_path = p.merkle_path;
  return r;
}

absl::Status StoreTreeOnce(PgConn& c, const TrackInput& in, const BatchForm& form,
                           std::set<std::string>* trees_stored) {
  if (form.tree_root.empty() || !trees_stored->insert(form.tree_root).second) {
    return absl::OkStatus();
  }
  return c
      .Exec("INSERT INTO merkle_trees (root, leaves) VALUES ($1, $2) ON CONFLICT (root) DO NOTHING",
            PgParams().AddBytes(form.tree_root).AddBytes(in.batch->encoded()))
      .status();
}

absl::StatusOr<TrackOutcome> TrackIn(PgConn& c, const TrackInput& in, absl::Time now,
                                     std::set<std::string>* trees_stored) {
  const ProofRow& p = in.proof;
  ANCHORD_ASSIGN_OR_RETURN(const int state, StoredStateOf(in));
  ANCHORD_ASSIGN_OR_RETURN(const BatchForm form, BatchFormOf(in));
  ANCHORD_RETURN_IF_ERROR(StoreTreeOnce(c, in, form, trees_stored));
  TrackOutcome out;
  const NewRow row = NewRowOf(in, form, state, now);
  PgParams ins;
  ins.AddBytes(p.digest.bytes())
      .AddBytes(p.provider)
      .AddBytes(p.proof_id)
      .Add(row.state)
      .AddBytes(p.certificate_url)
      .AddBytes(p.verify_url)
      .Add(p.block_height)
      .AddBytes(p.bitcoin_tx)
      .Add(row.submitted_at)
      .Add(row.confirmed_at)
      .Add(row.failure_code)
      .AddBytes(row.failure_message)
      .AddBytes(row.failure_reason)
      .AddBytes(p.provider_request_id)
      .Add(ToDb(now))
      .Add(row.pending_since)
      .AddBytes(p.merkle_root)
      .AddBytes(row.merkle_path)
      .Add(p.leaf_count)
      .AddBytes(p.fallback_provider);
  if (in.evidence.empty()) {
    ins.AddNull();
  } else {
    ins.AddBytes(in.evidence);
  }
  ins.Add(static_cast<int64_t>(in.evidence.size())).Add(form.leaf_index).Add(form.path_size);
  // Insert-or-nothing: two replicas storing the same hand-off at once both succeed, one inserts.
  auto inserted = c.Exec(
      "INSERT INTO proofs (digest, provider, proof_id, state, certificate_url, verify_url, "
      "block_height, bitcoin_tx, submitted_at, confirmed_at, failure_code, failure_message, "
      "failure_reason, provider_request_id, tracked_at, pending_since, updated_at, "
      "merkle_root, merkle_path, leaf_count, fallback_provider, ots, ots_size, leaf_index, "
      "path_size) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, "
      "$15, $17, $18, $19, $20, $21::bytea, $22, $23, $24) ON CONFLICT (digest, provider) DO "
      "NOTHING",
      ins);
  if (!inserted.ok()) return inserted.status();
  if (inserted->affected() > 0) {
    out.inserted = true;
    if (!p.merkle_root.empty()) {
      ANCHORD_ASSIGN_OR_RETURN(const Digest root,
                               Digest::FromBytes(p.merkle_root, "proof.merkle_root"));
      auto moved = PropagateToLeavesIn(c, root, p.provider, now, {std::string(p.digest.raw())});
      if (!moved.ok()) return moved.status();
      for (const ProofRow& m : *moved) {
        if (m.digest == p.digest) out.state_changed = m.state != kPending;
      }
    }
  } else {
    auto existing = FindProof(c, p.digest, p.provider);
    if (!existing.ok()) return existing.status();
    if (!existing->has_value()) return absl::InternalError("proof vanished inside its transaction");
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
              .AddBytes(p.digest.bytes())
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
            .AddBytes(p.digest.bytes())
            .AddBytes(f.job.empty() ? std::string("default") : f.job)
            .AddBytes(f.source_path)
            .AddBytes(f.filename)
            .Add(f.size_bytes)
            .AddBytes(f.mime_type));
    if (!st.ok()) return st.status();
  }
  auto after = FindProof(c, p.digest, p.provider);
  if (!after.ok()) return after.status();
  if (!after->has_value()) return absl::InternalError("proof vanished inside its transaction");
  out.proof = std::move(**after);
  if (out.proof.leaf_count > 0 && out.proof.state != kPending) {
    auto moved = PropagateToLeavesIn(c, p.digest, p.provider, now);
    if (!moved.ok()) return moved.status();
    out.leaves_changed = std::move(*moved);
  }
  return out;
}

}  // namespace anchord::poller
