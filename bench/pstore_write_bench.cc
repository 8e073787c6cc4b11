// The poller store's own cost of storing Merkle leaves: Tracks N leaves (R per root, C inputs per
// Track call, as the submitter's hand-off sends them) into a fresh SQLite store, in the path form
// (each leaf row carries its merkle_path) or the batch form (the tree once per root, each leaf its
// index), and prints the bytes the process wrote (/proc/self/io write_bytes, the store closed so
// the WAL is checkpointed) and the CPU seconds spent in Track. No RPC, no other service.
//
// --mode=model writes the same calls in a layout the poller does not have (bench/RESULTS.md,
// "Issue 11, session 12"), to measure what it would cost rather than estimate it: per call, a
// row of its leaves' files for the batch (the tree stored once per root, as now) and per leaf one
// row of (digest, batch, leaf index) with one digest-prefix index, after the same digest look-up
// Track makes; raw SQLite through libs/ledger, the store's pragmas, one transaction per call. It
// stores nothing a reader of today's poller could use: a floor for the redesign, not a store.
//
//   pstore_write_bench --mode=path|batch|model --dir=DIR [--leaves=100000] [--per_root=10000]
//                      [--per_call=4096]
#include <time.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "libs/common/status_macros.h"
#include "libs/ledger/sqlite_db.h"
#include "libs/ledger/sqlite_rows.h"
#include "libs/merkle/merkle.h"
#include "libs/merkle/sealed_batch.h"
#include "services/poller/poller_store.h"

namespace {

using anchord::poller::FileRow;
using anchord::poller::TrackInput;

int64_t WriteBytes() {
  std::ifstream io("/proc/self/io");
  std::string key;
  int64_t value = 0;
  while (io >> key >> value) {
    if (key == "write_bytes:") return value;
  }
  return -1;
}

double CpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

std::string Flag(int argc, char** argv, const std::string& name, const std::string& def) {
  const std::string prefix = "--" + name + "=";
  for (int i = 1; i < argc; ++i) {
    if (absl::StartsWith(argv[i], prefix)) return std::string(argv[i] + prefix.size());
  }
  return def;
}

int64_t IntFlag(int argc, char** argv, const std::string& name, int64_t def) {
  int64_t v = def;
  const std::string s = Flag(argc, argv, name, "");
  if (!s.empty() && !absl::SimpleAtoi(s, &v)) {
    std::fprintf(stderr, "--%s: not an integer\n", name.c_str());
    std::exit(2);
  }
  return v;
}

TrackInput Input(const anchord::Digest& digest, const std::string& name) {
  TrackInput in;
  in.proof.digest = digest;
  in.proof.provider = "opentimestamps";
  in.proof.proof_id = "ots-calendar";
  in.proof.state = anchord::v1::DIGEST_STATE_PENDING;
  in.proof.submitted_at = absl::Now();
  in.files.push_back(FileRow{"bench", "corpus/dir-0042/" + name, name, 65536, "application/pdf"});
  return in;
}

void AppendField(std::string* out, absl::string_view v) {
  const uint32_t n = static_cast<uint32_t>(v.size());
  out->append(reinterpret_cast<const char*>(&n), sizeof(n));
  out->append(v.data(), v.size());
}

// The model's schema (--mode=model): see the top of this file.
constexpr char kModelSchema[] = R"sql(
CREATE TABLE roots (id INTEGER PRIMARY KEY, root BLOB NOT NULL, provider TEXT NOT NULL,
                    proof_id TEXT NOT NULL, state INTEGER NOT NULL, tree BLOB NOT NULL);
CREATE TABLE leaf_files (id INTEGER PRIMARY KEY, root_id INTEGER NOT NULL, first INTEGER NOT NULL,
                         files BLOB NOT NULL);
CREATE TABLE leaves (id INTEGER PRIMARY KEY, digest BLOB NOT NULL, root_id INTEGER NOT NULL,
                     leaf INTEGER NOT NULL);
CREATE INDEX leaves_by_digest ON leaves (substr(digest, 1, 8));
)sql";

// One Track call in the model layout: `call` as the real store gets it (the root first when
// `root_id` is 0, which is then set).
absl::Status ModelCall(anchord::ledger::SqliteDb& db, const std::vector<TrackInput>& call,
                       const std::string& tree, int64_t* root_id) {
  anchord::ledger::Transaction tx(db);
  ANCHORD_RETURN_IF_ERROR(tx.begin_status());
  size_t first = 0;
  if (*root_id == 0) {
    const TrackInput& root = call.front();
    ANCHORD_ASSIGN_OR_RETURN(anchord::ledger::Statement add,
                             tx.Prepare("INSERT INTO roots (root, provider, proof_id, state, tree) "
                                        "VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id"));
    add.BindBlob(1, root.proof.digest.bytes()).Bind(2, root.proof.provider);
    add.Bind(3, root.proof.proof_id).Bind(4, static_cast<int64_t>(root.proof.state));
    add.BindBlob(5, tree);
    ANCHORD_ASSIGN_OR_RETURN(bool row, add.Step());
    if (!row) return absl::InternalError("no root id");
    *root_id = add.ColumnInt(0);
    add.Reset();
    first = 1;
  }
  std::string files;
  for (size_t i = first; i < call.size(); ++i) {
    const FileRow& f = call[i].files.front();
    AppendField(&files, f.job);
    AppendField(&files, f.source_path);
    AppendField(&files, f.filename);
    AppendField(&files, f.mime_type);
    files.append(reinterpret_cast<const char*>(&f.size_bytes), sizeof(f.size_bytes));
  }
  ANCHORD_ASSIGN_OR_RETURN(
      anchord::ledger::Statement add_files,
      tx.Prepare("INSERT INTO leaf_files (root_id, first, files) VALUES (?1, ?2, ?3)"));
  add_files.Bind(1, *root_id).Bind(2, call[first].proof.leaf_index).BindBlob(3, files);
  ANCHORD_RETURN_IF_ERROR(add_files.Run());
  // The look-up Track makes for every digest (is it held already?), then the rows 16 to an
  // INSERT, as the store writes its proofs.
  ANCHORD_ASSIGN_OR_RETURN(
      anchord::ledger::Statement look,
      tx.Prepare("SELECT 1 FROM leaves WHERE substr(digest, 1, 8) = substr(?1, 1, 8) AND "
                 "digest = ?1"));
  for (size_t i = first; i < call.size(); ++i) {
    look.Reset();
    look.BindBlob(1, call[i].proof.digest.bytes());
    ANCHORD_ASSIGN_OR_RETURN(bool held, look.Step());
    if (held) return absl::InternalError("a new digest is held already");
  }
  look.Reset();
  std::optional<anchord::ledger::Statement> many, one;
  ANCHORD_RETURN_IF_ERROR(anchord::ledger::InsertRows(
      tx, call.size() - first, 3, "INSERT INTO leaves (digest, root_id, leaf) VALUES ", 16, many,
      one, [&](anchord::ledger::Statement& st, int base, size_t k) {
        const TrackInput& in = call[first + k];
        st.BindBlobView(base + 1, in.proof.digest.bytes())
            .Bind(base + 2, *root_id)
            .Bind(base + 3, in.proof.leaf_index);
      }));
  many.reset();
  one.reset();
  return tx.Commit();
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = Flag(argc, argv, "mode", "batch");
  const std::string dir = Flag(argc, argv, "dir", "");
  const int64_t leaves = IntFlag(argc, argv, "leaves", 100000);
  const int64_t per_root = IntFlag(argc, argv, "per_root", 10000);
  const int64_t per_call = IntFlag(argc, argv, "per_call", 4096);
  if ((mode != "path" && mode != "batch" && mode != "model") || dir.empty() || leaves <= 0 ||
      per_root <= 0 || per_call <= 0) {
    std::fprintf(stderr,
                 "usage: pstore_write_bench --mode=path|batch|model --dir=DIR [--leaves=N] "
                 "[--per_root=N] [--per_call=N]\n");
    return 2;
  }
  const bool batch_form = mode != "path";
  const bool model = mode == "model";
  const std::string db_path = dir + "/poller.db";
  std::filesystem::remove(db_path);
  std::filesystem::remove(db_path + "-wal");
  std::filesystem::remove(db_path + "-shm");

  absl::StatusOr<std::unique_ptr<anchord::poller::PollerStore>> store;
  std::unique_ptr<anchord::ledger::SqliteDb> model_db;
  if (model) {
    auto db = anchord::ledger::SqliteDb::Open(db_path);
    absl::Status made = db.ok() ? anchord::ledger::Session(**db).Exec(kModelSchema) : db.status();
    if (!made.ok()) {
      std::fprintf(stderr, "open: %s\n", made.ToString().c_str());
      return 1;
    }
    model_db = *std::move(db);
  } else {
    store = anchord::poller::OpenSqlitePollerStore(db_path);
    if (!store.ok()) {
      std::fprintf(stderr, "open: %s\n", store.status().ToString().c_str());
      return 1;
    }
  }
  std::mt19937_64 rng(42);
  const int64_t bytes_before = WriteBytes();
  double track_cpu = 0;
  int64_t calls = 0;
  for (int64_t first = 0; first < leaves; first += per_root) {
    const int64_t n = std::min(per_root, leaves - first);
    std::vector<std::string> digests, nonces;
    std::vector<anchord::Digest> typed;
    for (int64_t i = 0; i < n; ++i) {
      std::string d(32, '\0');
      for (size_t k = 0; k < 32; k += 8) {
        const uint64_t r = rng();
        for (size_t b = 0; b < 8; ++b) d[k + b] = static_cast<char>((r >> (8 * b)) & 0xff);
      }
      typed.push_back(*anchord::Digest::FromBytes(d));
      digests.push_back(std::move(d));
      nonces.push_back(anchord::merkle::RandomNonce());
    }
    auto tree = anchord::merkle::Tree::Build(typed, nonces);
    auto encoded = anchord::merkle::EncodeBatchLeaves(digests, nonces);
    if (!tree.ok() || !encoded.ok()) {
      std::fprintf(stderr, "tree: failed\n");
      return 1;
    }
    auto batch = anchord::merkle::SealedBatch::Decode(*encoded, tree->root().raw());
    if (!batch.ok()) {
      std::fprintf(stderr, "batch: %s\n", batch.status().ToString().c_str());
      return 1;
    }
    std::vector<TrackInput> call;
    int64_t root_id = 0;  // --mode=model
    TrackInput root = Input(tree->root(), absl::StrCat("merkle-batch-", first));
    root.files.clear();
    root.proof.leaf_count = n;
    if (batch_form) root.batch = *batch;
    call.push_back(std::move(root));
    for (int64_t i = 0; i < n; ++i) {
      TrackInput in = Input(typed[i], absl::StrCat("file-", first + i, ".pdf"));
      in.proof.merkle_root = tree->root().raw();
      in.proof.merkle_path = tree->PathBytes(static_cast<size_t>(i));  // both forms carry it
      if (batch_form) {
        in.batch = *batch;
        in.proof.leaf_index = i;
      }
      call.push_back(std::move(in));
      if (static_cast<int64_t>(call.size()) >= per_call || i + 1 == n) {
        const double t0 = CpuSeconds();
        absl::Status st = model ? ModelCall(*model_db, call, *encoded, &root_id)
                                : (*store)->Track(call, absl::Now()).status();
        track_cpu += CpuSeconds() - t0;
        ++calls;
        if (!st.ok()) {
          std::fprintf(stderr, "track: %s\n", st.ToString().c_str());
          return 1;
        }
        call.clear();
      }
    }
  }
  const int64_t bytes_open = WriteBytes() - bytes_before;
  const double t0 = CpuSeconds();
  // Closes the database: the WAL is checkpointed into the file.
  if (model) {
    model_db.reset();
  } else {
    store->reset();
  }
  const double close_cpu = CpuSeconds() - t0;
  const int64_t bytes = WriteBytes() - bytes_before;
  const int64_t file = static_cast<int64_t>(std::filesystem::file_size(db_path));
  std::printf(
      "mode=%s leaves=%lld per_root=%lld per_call=%lld calls=%lld\n"
      "write_bytes=%lld (%.0f B/leaf; %.0f B/leaf before close) db_file=%lld (%.0f B/leaf)\n"
      "track_cpu_s=%.2f (%.1f us/leaf) close_cpu_s=%.2f\n",
      mode.c_str(), static_cast<long long>(leaves), static_cast<long long>(per_root),
      static_cast<long long>(per_call), static_cast<long long>(calls),
      static_cast<long long>(bytes), static_cast<double>(bytes) / static_cast<double>(leaves),
      static_cast<double>(bytes_open) / static_cast<double>(leaves), static_cast<long long>(file),
      static_cast<double>(file) / static_cast<double>(leaves), track_cpu,
      track_cpu * 1e6 / static_cast<double>(leaves), close_cpu);
  return 0;
}
