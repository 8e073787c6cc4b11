// TrackNewIn (pg_poller_track.h): a Track call of new proofs stored set by set. TrackIn stores a
// row at a time, about seven round trips per proof (insert, the root's locked read, the leaf's
// update, the rows read back with their files); a batch of 10,000 Merkle leaves took about 25 s
// (bench/RESULTS.md, issue 11 session 30). Here the call costs a few statements whatever its
// size, and each outcome is the one TrackIn gives: the restrictions below (stored proofs only
// leading the part, each digest once, a leaf before its root in the part only when that root is
// PENDING) are what make the two agree; a call is stored part by part, and a part outside them
// goes to TrackIn.
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "libs/common/status_macros.h"
#include "services/poller/pg_poller_schema.h"
#include "services/poller/pg_poller_track.h"
#include "services/poller/store_rows.h"

namespace anchord::poller {

using ledger::PgConn;
using ledger::PgParams;

namespace {

using Key = std::pair<std::string, std::string>;  // (raw digest, provider)

// Whether inputs[first..] of a part (PartEnd: each digest in it once) are of the kind TrackNewIn
// stores, judged from the inputs alone (`rows`: their stored states): no leaf before its root
// unless that root is PENDING (then the leaf takes nothing from it, one by one as here). Fills
// `index_of` with those inputs by key.
bool OfTheNewKind(absl::Span<const TrackInput> inputs, size_t first,
                  const std::vector<NewRow>& rows, std::map<Key, size_t>* index_of) {
  for (size_t i = first; i < inputs.size(); ++i) {
    const ProofRow& p = inputs[i].proof;
    (*index_of)[{std::string(p.digest.raw()), p.provider}] = i;
  }
  for (size_t i = first; i < inputs.size(); ++i) {
    const ProofRow& p = inputs[i].proof;
    if (p.merkle_root.empty()) continue;
    auto root = index_of->find({p.merkle_root, p.provider});
    if (root != index_of->end() && root->second > i && rows[root->second].state != kPending) {
      return false;
    }
  }
  return true;
}

// Which inputs are stored already, in input order.
absl::StatusOr<std::vector<bool>> StoredNow(PgConn& c, absl::Span<const TrackInput> inputs) {
  std::vector<std::string> digests, providers;
  for (const TrackInput& in : inputs) {
    digests.emplace_back(in.proof.digest.raw());
    providers.push_back(in.proof.provider);
  }
  auto stored = c.Exec(
      "SELECT o FROM unnest($1::bytea[], $2::bytea[]) WITH ORDINALITY AS u(d, p, o) WHERE EXISTS "
      "(SELECT 1 FROM proofs WHERE digest = u.d AND provider = u.p)",
      PgParams().AddBytesArray(digests).AddBytesArray(providers));
  if (!stored.ok()) return stored.status();
  std::vector<bool> out(inputs.size(), false);
  for (int i = 0; i < stored->rows(); ++i) {
    const int64_t o = stored->Int(i, 0);
    if (o < 1 || o > static_cast<int64_t>(inputs.size())) {
      return absl::InternalError("an ordinal out of the call");
    }
    out[static_cast<size_t>(o - 1)] = true;
  }
  return out;
}

// The part of the call TrackNewIn stores: inputs stored already (leading it), then new ones, up
// to the first input that is stored after a new one or repeats a digest of the part (the next
// call takes it: then it is stored, and leads). TrackBatch repeats a batch's root in each of its
// requests, so a call of several requests of one batch is such parts one after the other.
size_t PartEnd(absl::Span<const TrackInput> inputs, const std::vector<bool>& stored) {
  std::set<std::string> digests;
  bool any_new = false;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if ((stored[i] && any_new) ||
        !digests.insert(std::string(inputs[i].proof.digest.raw())).second) {
      return i;
    }
    any_new = any_new || !stored[i];
  }
  return inputs.size();
}

}  // namespace

absl::StatusOr<std::optional<std::vector<TrackOutcome>>> TrackNewIn(
    PgConn& c, absl::Span<const TrackInput> inputs, absl::Time now,
    std::set<std::string>* trees_stored) {
  using Result = std::optional<std::vector<TrackOutcome>>;
  // Checked first, in input order, so an invalid input fails the call as it fails TrackIn.
  std::vector<NewRow> rows;
  std::vector<BatchForm> forms;
  rows.reserve(inputs.size());
  forms.reserve(inputs.size());
  for (const TrackInput& in : inputs) {
    ANCHORD_ASSIGN_OR_RETURN(const int state, StoredStateOf(in));
    ANCHORD_ASSIGN_OR_RETURN(BatchForm form, BatchFormOf(in));
    rows.push_back(NewRowOf(in, form, state, now));
    forms.push_back(std::move(form));
  }
  if (inputs.empty()) return Result();
  ANCHORD_ASSIGN_OR_RETURN(const std::vector<bool> stored_now, StoredNow(c, inputs));
  const size_t end = PartEnd(inputs, stored_now);
  inputs = inputs.subspan(0, end);
  rows.resize(end);
  forms.resize(end);
  // Inputs stored already may lead the part: TrackIn stores them first (below), as it would.
  size_t first = 0;
  while (first < end && stored_now[first]) ++first;
  if (first == end) {
    std::vector<TrackOutcome> out;
    for (const TrackInput& in : inputs) {
      ANCHORD_ASSIGN_OR_RETURN(out.emplace_back(), TrackIn(c, in, now, trees_stored));
    }
    return Result(std::move(out));
  }
  std::map<Key, size_t> index_of;  // every new input by its key
  if (!OfTheNewKind(inputs, first, rows, &index_of)) return Result();

  // The trees first, outside the savepoint: TrackIn, if it takes the call over, finds them stored
  // (it writes a tree only once per transaction, trees_stored).
  for (size_t i = 0; i < inputs.size(); ++i) {
    ANCHORD_RETURN_IF_ERROR(StoreTreeOnce(c, inputs[i], forms[i], trees_stored));
  }
  ANCHORD_RETURN_IF_ERROR(c.Exec("SAVEPOINT track_new").status());
  std::vector<TrackOutcome> out(inputs.size());
  for (size_t i = 0; i < first; ++i) {
    ANCHORD_ASSIGN_OR_RETURN(out[i], TrackIn(c, inputs[i], now, trees_stored));
  }
  // One column array per proofs column, in input order.
  std::vector<std::string> digest, provider, proof_id, cert, verify, tx, fmsg, freason, request,
      root, path, fallback, ots;
  std::vector<int64_t> state, height, submitted, confirmed, fcode, pending, leaf_count, ots_size,
      leaf_index, path_size;
  std::vector<std::string> f_digest, f_job, f_source, f_name, f_mime;
  std::vector<int64_t> f_size;
  for (size_t i = first; i < inputs.size(); ++i) {
    const TrackInput& in = inputs[i];
    const ProofRow& p = in.proof;
    const NewRow& r = rows[i];
    digest.emplace_back(p.digest.raw());
    provider.push_back(p.provider);
    proof_id.push_back(p.proof_id);
    cert.push_back(p.certificate_url);
    verify.push_back(p.verify_url);
    tx.push_back(p.bitcoin_tx);
    fmsg.push_back(r.failure_message);
    freason.push_back(r.failure_reason);
    request.push_back(p.provider_request_id);
    root.push_back(p.merkle_root);
    path.push_back(r.merkle_path);
    fallback.push_back(p.fallback_provider);
    ots.push_back(in.evidence);
    state.push_back(r.state);
    height.push_back(p.block_height);
    submitted.push_back(r.submitted_at);
    confirmed.push_back(r.confirmed_at);
    fcode.push_back(r.failure_code);
    pending.push_back(r.pending_since);
    leaf_count.push_back(p.leaf_count);
    ots_size.push_back(static_cast<int64_t>(in.evidence.size()));
    leaf_index.push_back(forms[i].leaf_index);
    path_size.push_back(forms[i].path_size);
    for (const FileRow& f : in.files) {
      f_digest.emplace_back(p.digest.raw());
      f_job.push_back(f.job.empty() ? std::string("default") : f.job);
      f_source.push_back(f.source_path);
      f_name.push_back(f.filename);
      f_size.push_back(f.size_bytes);
      f_mime.push_back(f.mime_type);
    }
  }
  // Insert-or-nothing, in input order (seqs follow it, as one insert at a time gives them).
  auto inserted = c.Exec(
      "INSERT INTO proofs (digest, provider, proof_id, state, certificate_url, verify_url, "
      "block_height, bitcoin_tx, submitted_at, confirmed_at, failure_code, failure_message, "
      "failure_reason, provider_request_id, tracked_at, pending_since, updated_at, merkle_root, "
      "merkle_path, leaf_count, fallback_provider, ots, ots_size, leaf_index, path_size) SELECT "
      "d, p, pid, st, cu, vu, bh, btx, sa, ca, fc, fm, fr, rid, $24, ps, $24, mr, mp, lc, fp, "
      "CASE WHEN length(o) > 0 THEN o END, os, li, pz FROM unnest($1::bytea[], $2::bytea[], "
      "$3::bytea[], $4::bigint[], $5::bytea[], $6::bytea[], $7::bigint[], $8::bytea[], "
      "$9::bigint[], $10::bigint[], $11::bigint[], $12::bytea[], $13::bytea[], $14::bytea[], "
      "$15::bigint[], $16::bytea[], $17::bytea[], $18::bigint[], $19::bytea[], $20::bytea[], "
      "$21::bigint[], $22::bigint[], $23::bigint[]) WITH ORDINALITY AS u(d, p, pid, st, cu, vu, "
      "bh, btx, sa, ca, fc, fm, fr, rid, ps, mr, mp, lc, fp, o, os, li, pz, ord) ORDER BY ord "
      "ON CONFLICT (digest, provider) DO NOTHING RETURNING seq",
      PgParams()
          .AddBytesArray(digest)
          .AddBytesArray(provider)
          .AddBytesArray(proof_id)
          .AddIntArray(state)
          .AddBytesArray(cert)
          .AddBytesArray(verify)
          .AddIntArray(height)
          .AddBytesArray(tx)
          .AddIntArray(submitted)
          .AddIntArray(confirmed)
          .AddIntArray(fcode)
          .AddBytesArray(fmsg)
          .AddBytesArray(freason)
          .AddBytesArray(request)
          .AddIntArray(pending)
          .AddBytesArray(root)
          .AddBytesArray(path)
          .AddIntArray(leaf_count)
          .AddBytesArray(fallback)
          .AddBytesArray(ots)
          .AddIntArray(ots_size)
          .AddIntArray(leaf_index)
          .AddIntArray(path_size)
          .Add(ToDb(now)));
  if (!inserted.ok()) return inserted.status();
  if (inserted->rows() != static_cast<int>(inputs.size() - first)) {
    // Some proof was stored meanwhile (by another replica): nothing of this part stays (the
    // leading inputs' TrackIn included), TrackIn takes the call from the part's start.
    ANCHORD_RETURN_IF_ERROR(c.Exec("ROLLBACK TO SAVEPOINT track_new").status());
    ANCHORD_RETURN_IF_ERROR(c.Exec("RELEASE SAVEPOINT track_new").status());
    return Result();
  }
  std::vector<int64_t> seqs;
  seqs.reserve(inputs.size() - first);
  for (int i = 0; i < inserted->rows(); ++i) seqs.push_back(inserted->Int(i, 0));
  if (!f_digest.empty()) {
    ANCHORD_RETURN_IF_ERROR(
        c.Exec("INSERT INTO files (digest, job, source_path, filename, size_bytes, mime_type) "
               "SELECT d, j, s, n, z, m FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], "
               "$4::bytea[], $5::bigint[], $6::bytea[]) WITH ORDINALITY AS u(d, j, s, n, z, m, "
               "ord) ORDER BY ord ON CONFLICT DO NOTHING",
               PgParams()
                   .AddBytesArray(f_digest)
                   .AddBytesArray(f_job)
                   .AddBytesArray(f_source)
                   .AddBytesArray(f_name)
                   .AddIntArray(f_size)
                   .AddBytesArray(f_mime))
            .status());
  }
  ANCHORD_RETURN_IF_ERROR(c.Exec("RELEASE SAVEPOINT track_new").status());

  for (size_t i = first; i < inputs.size(); ++i) out[i].inserted = true;
  // Roots handed off final first, as TrackIn stores a root before the leaves that follow it: the
  // leaves it moves are its leaves_changed, except the leaves of this call, which TrackIn would
  // have stored after it and moved one by one (their own state_changed).
  for (size_t i = first; i < inputs.size(); ++i) {
    if (inputs[i].proof.leaf_count <= 0 || rows[i].state == kPending) continue;
    ANCHORD_ASSIGN_OR_RETURN(
        std::vector<ProofRow> moved,
        PropagateToLeavesIn(c, inputs[i].proof.digest, inputs[i].proof.provider, now));
    for (ProofRow& m : moved) {
      auto it = index_of.find({std::string(m.digest.raw()), m.provider});
      if (it != index_of.end()) {
        out[it->second].state_changed = m.state != kPending;
      } else {
        out[i].leaves_changed.push_back(std::move(m));
      }
    }
  }
  // Then the leaves, by (root, provider): each takes its root's state and fields as TrackIn's
  // propagation for it would give them. A leaf before its root in the call found no root then
  // (and the root, PENDING, moved nothing): it takes nothing.
  std::map<Key, std::vector<std::string>> leaves_of;
  for (size_t i = first; i < inputs.size(); ++i) {
    const ProofRow& p = inputs[i].proof;
    if (p.merkle_root.empty()) continue;
    const Key root{p.merkle_root, p.provider};
    auto in_call = index_of.find(root);
    if (in_call != index_of.end() && in_call->second > i) continue;
    leaves_of[root].emplace_back(p.digest.raw());
  }
  for (const auto& [key, leaves] : leaves_of) {
    ANCHORD_ASSIGN_OR_RETURN(const Digest r, Digest::FromBytes(key.first, "proof.merkle_root"));
    ANCHORD_ASSIGN_OR_RETURN(std::vector<ProofRow> moved,
                             PropagateToLeavesIn(c, r, key.second, now, leaves));
    // A leaf of this call that left PENDING moved with its root (TrackIn's state_changed); other
    // leaves a final root moved are not this call's to report (TrackIn drops them too).
    for (const ProofRow& m : moved) {
      auto it = index_of.find({std::string(m.digest.raw()), m.provider});
      if (it != index_of.end()) {
        out[it->second].state_changed = m.state != kPending;
      }
    }
  }
  // The rows as they are now, with their files.
  ANCHORD_ASSIGN_OR_RETURN(
      std::vector<ProofRow> stored,
      ReadProofs(
          c, absl::StrCat("SELECT ", kProofColumns, " FROM proofs WHERE seq = ANY($1::bigint[])"),
          PgParams().AddIntArray(seqs)));
  if (stored.size() != inputs.size() - first) {
    return absl::InternalError("proofs vanished inside their transaction");
  }
  for (ProofRow& row : stored) {
    auto it = index_of.find({std::string(row.digest.raw()), row.provider});
    if (it == index_of.end()) return absl::InternalError("a stored proof not of this call");
    out[it->second].proof = std::move(row);
  }
  return Result(std::move(out));
}

}  // namespace anchord::poller
