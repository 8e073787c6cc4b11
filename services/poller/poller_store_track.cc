#include "services/poller/poller_store_track.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "libs/common/log.h"
#include "libs/common/status_macros.h"
#include "libs/ledger/sqlite_rows.h"
#include "services/poller/poller_store_counts.h"
#include "services/poller/poller_store_rows.h"
#include "services/poller/poller_store_schema.h"
#include "services/poller/store_rows.h"

namespace anchord::poller {
namespace {

using ledger::Statement;
using ledger::Transaction;

// A time as it reads back from the store (microseconds; unset stays unset).
absl::Time Stored(absl::Time t) { return FromDb(ToDb(t)); }

// The row a new proof is stored as, seq and files aside, exactly as ReadProofRow would read it.
ProofRow NewRowOf(const TrackInput& in, const BatchForm& form, int state, absl::Time now) {
  const ProofRow& p = in.proof;
  ProofRow r;
  r.digest = p.digest;
  r.provider = p.provider;
  r.proof_id = p.proof_id;
  r.state = static_cast<DigestState>(state);
  r.certificate_url = p.certificate_url;
  r.verify_url = p.verify_url;
  r.block_height = p.block_height;
  r.bitcoin_tx = p.bitcoin_tx;
  r.submitted_at = Stored(p.submitted_at);
  if (state == kConfirmed) {
    r.confirmed_at = Stored(p.confirmed_at == absl::InfinitePast() ? now : p.confirmed_at);
  }
  r.ots_size = static_cast<int64_t>(in.evidence.size());
  if (state == kFailed) {
    r.failure_code = p.failure_code;
    r.failure_message = p.failure_message;
    r.failure_reason = p.failure_reason;
  }
  r.provider_request_id = p.provider_request_id;
  r.tracked_at = Stored(now);
  r.updated_at = Stored(now);
  r.merkle_root = p.merkle_root;
  // A batch-form leaf's path is derived from its root's tree when needed (leaf_proof.h).
  if (form.leaf_index < 0) r.merkle_path = p.merkle_path;
  r.leaf_index = form.leaf_index;
  r.leaf_count = p.leaf_count;
  r.fallback_provider = p.fallback_provider;
  return r;
}

// `f` as the store keeps it: a file without a job belongs to "default".
FileRow WithJob(const FileRow& f) {
  FileRow out = f;
  if (out.job.empty()) out.job = "default";
  return out;
}

// What PropagateRootToLeaves gives a PENDING leaf of `root` (`path_size`: its derived path's
// length when it is stored in the batch form).
void TakeRootFields(const ProofRow& root, int64_t path_size, ProofRow* leaf) {
  leaf->state = root.state;
  leaf->proof_id = root.proof_id;
  leaf->certificate_url = root.certificate_url;
  leaf->verify_url = root.verify_url;
  leaf->block_height = root.block_height;
  leaf->bitcoin_tx = root.bitcoin_tx;
  leaf->confirmed_at = root.confirmed_at;
  leaf->failure_code = root.failure_code;
  leaf->failure_message = root.failure_message;
  leaf->failure_reason = root.failure_reason;
  leaf->stalled = root.stalled;
  leaf->ots_size = LeafOtsSize(root, leaf->merkle_path.size() + static_cast<size_t>(path_size));
}

// A proofs insert up to VALUES, seq last (bound: a queued proof's seq is known before it is
// written).
constexpr char kInsertProof[] =
    "INSERT INTO proofs (digest, provider, proof_id, state, certificate_url, verify_url, "
    "block_height, bitcoin_tx, submitted_at, confirmed_at, failure_code, failure_message, "
    "failure_reason, provider_request_id, tracked_at, pending_since, updated_at, merkle_root, "
    "merkle_path, leaf_count, fallback_provider, ots, ots_size, stalled, leaf_index, path_size, "
    "files_kept, file_job, file_source_path, file_name, file_size, file_mime_type, seq) VALUES ";
constexpr int kInsertParams = 33;
// A file of a proof (INSERT OR IGNORE: a file already held under the proof is kept as it is).
constexpr char kInsertFile[] =
    "INSERT OR IGNORE INTO files (proof_seq, job, source_path, filename, size_bytes, mime_type) "
    "VALUES ";
constexpr int kFileParams = 6;

// One Track call: its statements are compiled once, and each root its leaves name is read once.
class Tracker {
 public:
  Tracker(Transaction& tx, absl::Time now, ledger::PrefixFilter* known)
      : tx_(tx), now_(now), known_(known) {}

  // Reads, before the call writes anything, every proof of the inputs' digests: kLookAhead
  // digests to a statement (one seek each) instead of a statement per input, whose run, reset and
  // bindings cost more than its seek (1.4 of the 14 us of CPU a hand-off spends per leaf,
  // bench/RESULTS.md issue 11 session 20). The answers hold for a digest until an input of it is
  // stored: only an input's own digest gains a row in a Track call (Queue, Insert); nothing else
  // in it adds a proof. LookUp falls back to Look from then on.
  //
  // A digest the store's prefix filter (`known_`) says proofs cannot hold is not read: its answer
  // is "none" (a new digest: nearly every leaf of a batch). Every input's digest is added to the
  // filter here, before anything is written.
  absl::Status Prefetch(const std::vector<TrackInput>& inputs) {
    std::vector<absl::string_view> digests;
    digests.reserve(inputs.size());
    // Sized once: a call holds thousands of digests, and growing the table rehashes them all.
    ahead_.reserve(ahead_.size() + inputs.size());
    for (const TrackInput& in : inputs) {
      const absl::string_view d = in.proof.digest.bytes();
      if (ahead_.try_emplace(d).second) digests.push_back(d);
    }
    ANCHORD_RETURN_IF_ERROR(ledger::KeepThoseItMayHold(tx_, known_, &digests));
    return ledger::LookAhead(
        tx_, look_ahead_, digests, kLookAhead,
        [](int i) {
          return absl::StrCat("SELECT ", i, ", seq, provider FROM ", kProofsByDigest, " WHERE ",
                              DigestIs(i));
        },
        [this, &digests](size_t k, const Statement& st) {
          Ahead& a = ahead_[digests[k]];
          const int64_t seq = st.ColumnInt(1);
          a.first_seq = a.first_seq == 0 ? seq : std::min(a.first_seq, seq);
          a.providers.push_back(st.ColumnText(2));
        });
  }

  // Stores `in`; its outcome goes to *out, an element of the caller's vector that stays where it
  // is until Finish (a queued proof is written from it).
  absl::Status One(const TrackInput& in, TrackOutcome* out_ptr) {
    TrackOutcome& out = *out_ptr;
    const ProofRow& p = in.proof;
    // SUBMITTED means "accepted by the provider, not yet followed": for the poller that is PENDING.
    const int state = p.state == anchord::v1::DIGEST_STATE_SUBMITTED ? kPending : p.state;
    if (state != kPending && state != kConfirmed && state != kFailed) {
      return absl::InvalidArgumentError(
          "proof.state: must be SUBMITTED, PENDING, CONFIRMED or FAILED");
    }
    ANCHORD_ASSIGN_OR_RETURN(const BatchForm form, BatchFormOf(in));
    ANCHORD_RETURN_IF_ERROR(StoreTree(form, in));
    ProofRow row = NewRowOf(in, form, state, now_);
    Root* root = nullptr;
    bool took_root = false;
    if (!p.merkle_root.empty()) {
      ANCHORD_ASSIGN_OR_RETURN(const Digest root_digest,
                               Digest::FromBytes(p.merkle_root, "proof.merkle_root"));
      ANCHORD_ASSIGN_OR_RETURN(root, RootOf(root_digest, p.provider));
      // A pending leaf takes the root's fields at insert when nothing else would change: the root
      // is pending (it gives them to the new leaf only) or its leaves were already brought up to
      // its state in this transaction.
      if (root->row.has_value() && state == kPending &&
          (root->row->state == kPending || root->leaves_synced)) {
        TakeRootFields(*root->row, form.path_size, &row);
        took_root = true;
      }
    }
    // A digest queued earlier in this call is written before it is looked up again.
    if (Queued(p.digest)) ANCHORD_RETURN_IF_ERROR(Flush());
    ANCHORD_ASSIGN_OR_RETURN(const Held look, LookUp(row));
    // The common hand-off (a digest the store has never seen, with at most one file, no .ots,
    // nothing in this call to move with it) is queued and written with others in one statement:
    // its outcome is the row as built, so nothing needs to read it back before the call ends.
    const bool moves_leaves =
        !took_root && root != nullptr && root->row.has_value() && root->row->state != kPending;
    if (look.first_seq == 0 && in.files.size() <= 1 && in.evidence.empty() && !moves_leaves &&
        !(row.leaf_count > 0 && row.state != kPending)) {
      return Queue(in, std::move(row), took_root, form.path_size, &out);
    }
    ANCHORD_RETURN_IF_ERROR(Flush());
    ANCHORD_ASSIGN_OR_RETURN(const Held held, Insert(in, row, form.path_size, look));
    const bool inserted = held.inserted;
    bool reread = !inserted;
    if (inserted) {
      out.inserted = true;
      row.seq = tx_.LastInsertRowId();
      if (took_root) {
        out.state_changed = row.state != kPending;
      } else if (root != nullptr && root->row.has_value() && root->row->state != kPending) {
        // The first leaf of a root that has reached its end in this batch: bring every leaf
        // still behind it (this one included) up to its state, once.
        ANCHORD_ASSIGN_OR_RETURN(std::vector<ProofRow> moved,
                                 PropagateRootToLeaves(tx_, *root->row, now_));
        root->leaves_synced = true;
        for (const ProofRow& m : moved) {
          if (m.digest == p.digest) {
            out.state_changed = m.state != kPending;
            reread = true;
          }
        }
      }
    } else {
      ANCHORD_ASSIGN_OR_RETURN(out.state_changed, UpdateExisting(in, state));
    }
    // The digest's files are stored under its first proof's seq (poller_store_schema.cc): the
    // lowest seq the look before the insert saw, or the new row's when the digest had none (no
    // statement here removes a proof or changes a seq).
    int64_t files_seq = held.first_seq;
    if (inserted && (files_seq == 0 || row.seq < files_seq)) files_seq = row.seq;
    ANCHORD_RETURN_IF_ERROR(AddFiles(in, files_seq));
    if (reread) {
      ANCHORD_ASSIGN_OR_RETURN(std::optional<ProofRow> after,
                               GetProofRow(tx_, p.digest, p.provider));
      if (!after.has_value()) return absl::InternalError("proof vanished inside its transaction");
      out.proof = std::move(*after);
    } else if (files_seq == row.seq && in.files.size() <= 1) {
      // A new digest with at most one file: its files are the input's (no duplicate to drop).
      for (const FileRow& f : in.files) row.files.push_back(WithJob(f));
      out.proof = std::move(row);
    } else {
      ANCHORD_ASSIGN_OR_RETURN(row.files, FilesOfSeq(tx_, files_seq));
      out.proof = std::move(row);
    }
    // This proof may be a root read earlier in the batch: read it again when a leaf needs it.
    if (auto it = roots_.find(RootView{p.digest.bytes(), p.provider}); it != roots_.end()) {
      roots_.erase(it);
    }
    if (out.proof.leaf_count > 0 && out.proof.state != kPending) {
      ANCHORD_ASSIGN_OR_RETURN(out.leaves_changed, PropagateRootToLeaves(tx_, out.proof, now_));
    }
    return absl::OkStatus();
  }

  // Writes what is still queued; then adds this call's inserts to proof_counts.
  absl::Status Finish() {
    ANCHORD_RETURN_IF_ERROR(Flush());
    ANCHORD_RETURN_IF_ERROR(AddInsertedCounts(tx_, inserted_));
    return known_ == nullptr ? absl::OkStatus() : known_->Settle(tx_, rows_added_);
  }

 private:
  struct Root {
    std::optional<ProofRow> row;  // without files
    bool leaves_synced = false;   // PropagateRootToLeaves ran for it in this transaction
  };

  // roots_' key, (raw digest, provider), and its view: every input looks its own pair up (it may
  // be a root read earlier), without building a key.
  using RootKey = std::pair<std::string, std::string>;
  using RootView = std::pair<absl::string_view, absl::string_view>;
  struct RootLess {
    using is_transparent = void;
    static RootView View(const RootKey& k) { return {k.first, k.second}; }
    static RootView View(const RootView& k) { return k; }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return View(a) < View(b);
    }
  };

  absl::StatusOr<Root*> RootOf(const Digest& digest, const std::string& provider) {
    auto it = roots_.find(RootView{digest.bytes(), provider});
    if (it != roots_.end()) return &it->second;
    ANCHORD_RETURN_IF_ERROR(Flush());  // the root may be queued
    ANCHORD_ASSIGN_OR_RETURN(std::optional<ProofRow> row,
                             GetProofRow(tx_, digest, provider, /*with_files=*/false));
    return &roots_
                .emplace(RootKey(std::string(digest.bytes()), provider),
                         Root{std::move(row), false})
                .first->second;
  }

  // Stores the batch's tree for its root unless held (once per root and Track call: the leaves
  // of one root share it).
  absl::Status StoreTree(const BatchForm& form, const TrackInput& in) {
    if (form.tree_root.empty() || !trees_stored_.insert(form.tree_root).second) {
      return absl::OkStatus();
    }
    ANCHORD_ASSIGN_OR_RETURN(Statement * st,
                             Reused(insert_tree_,
                                    "INSERT INTO merkle_trees (root, leaves) VALUES (?, ?) "
                                    "ON CONFLICT (root) DO NOTHING"));
    st->BindBlob(1, form.tree_root).BindBlob(2, in.batch->encoded());
    return st->Run();
  }

  template <typename Sql>
  absl::StatusOr<Statement*> Reused(std::optional<Statement>& slot, const Sql& sql) {
    return ledger::Reuse(tx_, slot, sql);
  }

  struct Held {
    bool held = false;      // (digest, provider) has a row (Look)
    bool inserted = false;  // (digest, provider) was not held: `row` is now (Insert)
    int64_t first_seq = 0;  // the digest's lowest seq before the insert; 0 when it had none
  };

  // Look's answer, from Prefetch's reads while they hold (see Prefetch).
  absl::StatusOr<Held> LookUp(const ProofRow& row) {
    auto it = ahead_.find(row.digest.bytes());
    if (it == ahead_.end() || it->second.stored) return Look(row);
    it->second.stored = true;  // an input of the digest is being stored: look in the table next
    Held out;
    out.first_seq = it->second.first_seq;
    for (const std::string& provider : it->second.providers) {
      if (provider == row.provider) out.held = true;
    }
    return out;
  }

  // Whether (digest, provider) is held, and the digest's lowest seq.
  // (digest, provider) is the key, and no UNIQUE index enforces it (the schema says why): the
  // look and the insert run in this Track's write transaction, which holds the database's write
  // lock (SQLite has one writer), so nothing can add the pair in between. Two statements: an
  // INSERT ... SELECT reading its own table fills a temporary table at every run (measured: +30%
  // CPU per proof in backlog_bench fill). The look reads every proof of the digest anyway, so it
  // also answers the digest's lowest seq (where its files go) instead of a second seek.
  absl::StatusOr<Held> Look(const ProofRow& row) {
    ANCHORD_ASSIGN_OR_RETURN(Statement * st, Reused(held_, [] {
                               return absl::StrCat("SELECT MIN(seq), MAX(provider = ?2) FROM ",
                                                   kProofsByDigest, " WHERE ", DigestIs(1));
                             }));
    st->BindBlob(1, row.digest.bytes()).Bind(2, row.provider);
    ANCHORD_ASSIGN_OR_RETURN(const bool has_row, st->Step());
    Held out;
    if (has_row && !st->ColumnIsNull(0)) {
      out.first_seq = st->ColumnInt(0);
      out.held = st->ColumnInt(1) != 0;
    }
    st->Reset();
    return out;
  }

  // Inserts `row` (its seq chosen by the store) unless `look` found (digest, provider) held.
  absl::StatusOr<Held> Insert(const TrackInput& in, const ProofRow& row, int64_t path_size,
                              Held look) {
    if (look.held) return look;
    ANCHORD_ASSIGN_OR_RETURN(Statement * st, Reused(insert_, [] {
                               return absl::StrCat(kInsertProof,
                                                   ledger::Placeholders(kInsertParams, 1));
                             }));
    // Its files, if any, go to files (AddFiles): only a queued proof keeps its file in its row.
    BindInsert(*st, 0, row, in, PendingSince(in), path_size, nullptr);
    st->BindNull(kInsertParams);  // seq: the next one
    ANCHORD_RETURN_IF_ERROR(st->Run());
    look.inserted = tx_.Changes() > 0;
    next_seq_ = 0;  // the store chose it: read the next one again before queueing
    if (look.inserted) ANCHORD_RETURN_IF_ERROR(CountInsert(row));
    return look;
  }

  absl::Time PendingSince(const TrackInput& in) const {
    return in.proof.submitted_at != absl::InfinitePast() ? in.proof.submitted_at : now_;
  }

  // Binds one row of the proofs insert at parameters base+1 .. base+kInsertParams (the last one,
  // seq, is left to the caller), without copies: `row`, `in` and `own` stay put until it has run.
  // `own`: the digest's only file, kept in the row (FilesKept::kOwnOnly), or none.
  void BindInsert(Statement& st, int base, const ProofRow& row, const TrackInput& in,
                  absl::Time pending_since, int64_t path_size, const FileRow* own) {
    st.BindBlobView(base + 1, row.digest.bytes()).BindView(base + 2, row.provider);
    st.BindView(base + 3, row.proof_id).Bind(base + 4, static_cast<int64_t>(row.state));
    st.BindView(base + 5, row.certificate_url).BindView(base + 6, row.verify_url);
    st.Bind(base + 7, row.block_height).BindView(base + 8, row.bitcoin_tx);
    st.Bind(base + 9, ToDb(row.submitted_at)).Bind(base + 10, ToDb(row.confirmed_at));
    st.Bind(base + 11, static_cast<int64_t>(row.failure_code))
        .BindView(base + 12, row.failure_message);
    st.BindView(base + 13, row.failure_reason).BindView(base + 14, row.provider_request_id);
    st.Bind(base + 15, ToDb(now_)).Bind(base + 16, ToDb(pending_since));
    st.Bind(base + 17, ToDb(now_));
    st.BindBlobView(base + 18, row.merkle_root).BindBlobView(base + 19, row.merkle_path);
    st.Bind(base + 20, row.leaf_count).BindView(base + 21, row.fallback_provider);
    if (in.evidence.empty()) {
      st.BindNull(base + 22);
    } else {
      st.BindBlobView(base + 22, in.evidence);
    }
    st.Bind(base + 23, row.ots_size).Bind(base + 24, static_cast<int64_t>(row.stalled ? 1 : 0));
    st.Bind(base + 25, row.leaf_index).Bind(base + 26, path_size);
    if (own == nullptr) {
      st.Bind(base + 27, static_cast<int64_t>(FilesKept::kAllInFiles));
      st.BindView(base + 28, "").BindView(base + 29, "").BindView(base + 30, "");
      st.Bind(base + 31, int64_t{0}).BindView(base + 32, "");
    } else {
      st.Bind(base + 27, static_cast<int64_t>(FilesKept::kOwnOnly));
      st.BindView(base + 28, own->job).BindView(base + 29, own->source_path);
      st.BindView(base + 30, own->filename).Bind(base + 31, own->size_bytes);
      st.BindView(base + 32, own->mime_type);
    }
  }

  // Counts a new proof for proof_counts.
  absl::Status CountInsert(const ProofRow& row) {
    auto [it, first] = inserted_.try_emplace(
        {row.provider, static_cast<int64_t>(row.state), row.stalled ? 1 : 0}, 0);
    ++it->second;
    ++rows_added_;
    // The count row must exist before anything in this transaction moves the new proof: the
    // triggers take a moved proof off its old count with an UPDATE, which finds no row to
    // change when the count was never there (this call's inserts are added at its end).
    if (first) ANCHORD_RETURN_IF_ERROR(EnsureCountRow(it->first));
    return absl::OkStatus();
  }

  // A new proof whose outcome needs no read: given the next seq, counted, answered, and written
  // by Flush with the others queued, kQueueRows to a statement (ledger/sqlite_rows.h).
  absl::Status Queue(const TrackInput& in, ProofRow row, bool took_root, int64_t path_size,
                     TrackOutcome* out) {
    if (next_seq_ == 0) {
      ANCHORD_ASSIGN_OR_RETURN(next_seq_,
                               ledger::NextAutoincrementKey(tx_, next_seq_stmt_, "proofs", "seq"));
    }
    row.seq = next_seq_++;
    ANCHORD_RETURN_IF_ERROR(CountInsert(row));
    out->inserted = true;
    out->state_changed = took_root && row.state != kPending;
    for (const FileRow& f : in.files) row.files.push_back(WithJob(f));
    out->proof = std::move(row);
    queue_.push_back(QueuedProof{&in, out, path_size});
    // This proof may be a root read earlier in the batch: read it again when a leaf needs it.
    if (auto it = roots_.find(RootView{in.proof.digest.bytes(), in.proof.provider});
        it != roots_.end()) {
      roots_.erase(it);
    }
    // Written once a statement's worth is queued: the queue (and the look for a queued digest)
    // stays this small.
    return queue_.size() >= kQueueRows ? Flush() : absl::OkStatus();
  }

  // Whether a proof of `digest` is queued.
  bool Queued(const Digest& digest) const {
    for (const QueuedProof& q : queue_) {
      if (q.in->proof.digest == digest) return true;
    }
    return false;
  }

  // Writes the queued proofs. A queued proof is its digest's first and has one file at most,
  // kept in its own row (its job already "default" when empty: WithJob).
  absl::Status Flush() {
    if (queue_.empty()) return absl::OkStatus();
    ANCHORD_RETURN_IF_ERROR(ledger::InsertRows(
        tx_, queue_.size(), kInsertParams, kInsertProof, kQueueRows, insert_many_, insert_,
        [this](Statement& st, int base, size_t i) { BindQueued(st, base, i); }));
    queue_.clear();
    return absl::OkStatus();
  }

  void BindQueued(Statement& st, int base, size_t i) {
    const QueuedProof& q = queue_[i];
    const std::vector<FileRow>& files = q.out->proof.files;
    BindInsert(st, base, q.out->proof, *q.in, PendingSince(*q.in), q.path_size,
               files.empty() ? nullptr : &files.front());
    st.Bind(base + kInsertParams, q.out->proof.seq);
  }

  absl::Status EnsureCountRow(const InsertedCounts::key_type& key) {
    ANCHORD_ASSIGN_OR_RETURN(Statement * st,
                             Reused(ensure_count_,
                                    "INSERT INTO proof_counts (provider, state, stalled, n) "
                                    "VALUES (?1, ?2, ?3, 0) ON CONFLICT DO NOTHING"));
    st->Bind(1, std::get<0>(key)).Bind(2, std::get<1>(key)).Bind(3, std::get<2>(key));
    return st->Run();
  }

  // A hand-off of a proof already held: only a forward move (a PENDING proof becomes CONFIRMED
  // or FAILED) changes it. True when it moved.
  absl::StatusOr<bool> UpdateExisting(const TrackInput& in, int state) {
    const ProofRow& p = in.proof;
    ANCHORD_ASSIGN_OR_RETURN(std::optional<ProofRow> old,
                             GetProofRow(tx_, p.digest, p.provider, /*with_files=*/false));
    if (!old.has_value()) return absl::InternalError("proof vanished inside its transaction");
    if (old->state == kPending && state != kPending) {
      ANCHORD_ASSIGN_OR_RETURN(
          Statement st,
          tx_.Prepare(absl::StrCat(
              "UPDATE ", kProofsByDigest,
              " SET state = ?3, proof_id = CASE WHEN proof_id = '' THEN ?4 ELSE "
              "proof_id END, certificate_url = CASE WHEN ?5 = '' THEN certificate_url ELSE ?5 "
              "END, verify_url = CASE WHEN ?6 = '' THEN verify_url ELSE ?6 END, block_height = "
              "?7, bitcoin_tx = ?8, confirmed_at = ?9, failure_code = ?10, failure_message = "
              "?11, failure_reason = ?12, provider_request_id = CASE WHEN provider_request_id = "
              "'' THEN ?13 ELSE provider_request_id END, updated_at = ?14 "
              "WHERE ",
              DigestIs(1), " AND provider = ?2 AND state = ?15")));
      absl::Time confirmed_at = p.confirmed_at != absl::InfinitePast() ? p.confirmed_at : now_;
      st.BindBlob(1, p.digest.bytes()).Bind(2, p.provider).Bind(3, static_cast<int64_t>(state));
      st.Bind(4, p.proof_id).Bind(5, p.certificate_url).Bind(6, p.verify_url);
      st.Bind(7, state == kConfirmed ? p.block_height : 0);
      st.Bind(8, state == kConfirmed ? p.bitcoin_tx : std::string());
      st.Bind(9, state == kConfirmed ? ToDb(confirmed_at) : 0);
      st.Bind(10, static_cast<int64_t>(state == kFailed ? p.failure_code : 0));
      st.Bind(11, state == kFailed ? p.failure_message : std::string());
      st.Bind(12, state == kFailed ? p.failure_reason : std::string());
      st.Bind(13, p.provider_request_id).Bind(14, ToDb(now_));
      st.Bind(15, static_cast<int64_t>(kPending));
      ANCHORD_RETURN_IF_ERROR(st.Run());
      return tx_.Changes() > 0;
    }
    if (!p.proof_id.empty() && old->proof_id != p.proof_id) {
      // Same (digest, provider), different provider record: keep the first one (the provider
      // deduplicates by digest, so a second id points at the same anchoring).
      ANCHORD_LOG(Warning) << "hand-off for provider " << p.provider << " carries proof id "
                           << p.proof_id << ", keeping " << old->proof_id;
    }
    return false;
  }

  // Stores the input's files under the digest's first proof (`files_seq`): in files, but for
  // one equal to the file that proof keeps in its own row (FilesKept), which then says that its
  // digest has more.
  absl::Status AddFiles(const TrackInput& in, int64_t files_seq) {
    if (in.files.empty()) return absl::OkStatus();
    if (files_seq <= 0) return absl::InternalError("proof vanished inside its transaction");
    ANCHORD_ASSIGN_OR_RETURN(Statement * first,
                             Reused(first_file_,
                                    "SELECT files_kept, file_job, file_source_path FROM proofs "
                                    "WHERE seq = ?1"));
    first->Bind(1, files_seq);
    ANCHORD_ASSIGN_OR_RETURN(bool has_first, first->Step());
    if (!has_first) {
      first->Reset();
      return absl::InternalError("proof vanished inside its transaction");
    }
    int64_t kept = first->ColumnInt(0);
    const std::string own_job = first->ColumnText(1);
    const std::string own_path = first->ColumnText(2);
    first->Reset();
    ANCHORD_ASSIGN_OR_RETURN(Statement * st, Reused(add_file_, [] {
                               return absl::StrCat(kInsertFile,
                                                   ledger::Placeholders(kFileParams, 1));
                             }));
    for (const FileRow& f : in.files) {
      const absl::string_view job =
          f.job.empty() ? absl::string_view("default") : absl::string_view(f.job);
      if (kept != static_cast<int64_t>(FilesKept::kAllInFiles) && job == own_job &&
          f.source_path == own_path) {
        continue;
      }
      st->Reset();
      st->Bind(1, files_seq);
      st->Bind(2, job);
      st->Bind(3, f.source_path).Bind(4, f.filename).Bind(5, f.size_bytes).Bind(6, f.mime_type);
      ANCHORD_RETURN_IF_ERROR(st->Run());
      if (tx_.Changes() > 0 && kept == static_cast<int64_t>(FilesKept::kOwnOnly)) {
        ANCHORD_ASSIGN_OR_RETURN(
            Statement * more,
            Reused(more_files_, "UPDATE proofs SET files_kept = 2 WHERE seq = ?1"));
        static_assert(static_cast<int64_t>(FilesKept::kOwnAndFiles) == 2);
        more->Bind(1, files_seq);
        ANCHORD_RETURN_IF_ERROR(more->Run());
        kept = static_cast<int64_t>(FilesKept::kOwnAndFiles);
      }
    }
    return absl::OkStatus();
  }

  // A queued proof: its input, and its outcome (holding the row to write).
  struct QueuedProof {
    const TrackInput* in;
    TrackOutcome* out;
    int64_t path_size;
  };
  static constexpr size_t kQueueRows = 16;
  static constexpr int kLookAhead = 16;  // digests to a Prefetch statement

  // A digest's proofs as Prefetch read them; `stored` once an input of the digest was looked up.
  struct Ahead {
    int64_t first_seq = 0;  // 0: none
    std::vector<std::string> providers;
    bool stored = false;
  };

  Transaction& tx_;
  const absl::Time now_;
  ledger::PrefixFilter* const known_;  // optional
  int64_t rows_added_ = 0;             // proofs inserted by this call
  // The digest's lowest seq, and whether (digest, provider) has a row.
  std::optional<Statement> held_;
  std::optional<Statement> look_ahead_;  // kLookAhead digests' proofs (Prefetch)
  // By raw digest (views into the call's inputs, which outlive the Tracker).
  absl::flat_hash_map<absl::string_view, Ahead> ahead_;
  std::optional<Statement> insert_;       // one row, seq bound (NULL: the store's choice)
  std::optional<Statement> insert_many_;  // kQueueRows rows, seqs bound
  std::optional<Statement> next_seq_stmt_;
  std::vector<QueuedProof> queue_;  // kQueueRows at most
  int64_t next_seq_ = 0;            // 0: read it (NextAutoincrementKey) before queueing
  std::optional<Statement> add_file_;
  std::optional<Statement> first_file_;  // the file a digest's first proof keeps (AddFiles)
  std::optional<Statement> more_files_;
  std::optional<Statement> insert_tree_;
  std::optional<Statement> ensure_count_;
  std::set<std::string> trees_stored_;       // raw roots whose tree this call stored (or found)
  std::map<RootKey, Root, RootLess> roots_;  // by (root digest, provider)
  InsertedCounts inserted_;                  // for proof_counts, added at the end of the call
};

}  // namespace

absl::StatusOr<std::vector<TrackOutcome>> TrackInSqlite(Transaction& tx,
                                                        const std::vector<TrackInput>& inputs,
                                                        absl::Time now,
                                                        ledger::PrefixFilter* known) {
  Tracker tracker(tx, now, known);
  ANCHORD_RETURN_IF_ERROR(tracker.Prefetch(inputs));
  // Reserved once: a queued proof is written from its outcome here, which must not move.
  std::vector<TrackOutcome> out(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    ANCHORD_RETURN_IF_ERROR(tracker.One(inputs[i], &out[i]));
  }
  ANCHORD_RETURN_IF_ERROR(tracker.Finish());
  return out;
}

}  // namespace anchord::poller
