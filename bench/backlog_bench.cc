// Large poller backlogs (issue 11 goal 5): fills a poller store with N PENDING proofs, then runs
// polling rounds over it in this process with every store call counted (CountingStore), against a
// proofd sandbox over loopback. Run by backlog_bench.sh, which also runs a real anchord-poller on
// the same database for its peak RSS.
//
//   backlog_bench fill DB N LEAVES_PER_ROOT   (0: N per-file proofs; K: N leaves under N/K roots,
//                                             each with its own path, as Track stores a leaf handed
//                                             off alone; -K: the same in the batch form, as
//                                             TrackBatch stores them: the root's tree once, each
//                                             leaf its position in it)
//   backlog_bench rounds DB PROOFD_URL ROUNDS [MAX_LOOKUPS]
//
// DB is a SQLite file, or a postgresql:// URL (the PostgreSQL store). A SQLite store is filled
// through the store's own API (Track); a PostgreSQL one with the rows Track would write (the same
// digests, states, paths and trees, the counts kept by the same triggers) sent 20,000 to a
// statement, because Track there stores a row at a time and 1,000,000 of them would take minutes
// of a run that measures the rounds, not the fill.
#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <prometheus/registry.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "libs/common/clock.h"
#include "libs/ledger/pg_db.h"
#include "libs/ledger/sqlite_db.h"
#include "libs/merkle/merkle.h"
#include "libs/merkle/sealed_batch.h"
#include "libs/providers/factory.h"
#include "services/poller/counting_store.h"
#include "services/poller/event_bus.h"
#include "services/poller/pg_poller_store.h"
#include "services/poller/poll_engine.h"
#include "services/poller/poller_metrics.h"
#include "services/poller/poller_store.h"
#include "services/poller/store_rows.h"

namespace {

using anchord::poller::CountingStore;
using anchord::poller::ProofRow;
using anchord::poller::TrackInput;

// A distinct 32-byte digest per (kind, n): splitmix64 over the counter, so the keys land all over
// the unique index as real digests do.
std::string MakeDigest(uint64_t kind, uint64_t n) {
  std::string d(32, '\0');
  uint64_t x = (kind << 56) ^ n;
  for (int w = 0; w < 4; ++w) {
    x += 0x9e3779b97f4a7c15ULL;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    for (int i = 0; i < 8; ++i) d[w * 8 + i] = static_cast<char>((z >> (8 * i)) & 0xff);
  }
  return d;
}

// proofd's ids are UUIDs (the adapter sends nothing else); unknown to the sandbox, so a lookup is
// an ordinary 404 and the round goes on.
std::string ProofId(uint64_t kind, uint64_t n) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%08llx-0000-4000-8000-%012llx",
                static_cast<unsigned long long>(kind), static_cast<unsigned long long>(n));
  return buf;
}

TrackInput Pending(const std::string& digest, const std::string& id) {
  TrackInput in;
  in.proof.digest = *anchord::Digest::FromBytes(digest);  // 32 bytes by construction
  in.proof.provider = "proofd";
  in.proof.proof_id = id;
  in.proof.state = anchord::v1::DIGEST_STATE_PENDING;
  return in;
}

// The fill's summary line; 0 (the fill's exit code).
int PrintFill(int64_t n, int64_t roots, const char* form,
              std::chrono::steady_clock::time_point start) {
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("fill n=%lld roots=%lld %s%sseconds=%.1f rows_per_s=%.0f\n",
              static_cast<long long>(n), static_cast<long long>(roots), form, *form ? " " : "",
              secs, static_cast<double>(n + roots) / secs);
  return 0;
}

// The Track inputs of batch number `index` (leaves first .. first+size-1, fresh nonces): its root
// with the tree, then its leaves in the batch form, as TrackBatch hands them to the store; the
// error printed.
absl::StatusOr<std::vector<TrackInput>> BatchFormInputs(int64_t first, int64_t size,
                                                        int64_t index) {
  std::vector<std::string> digests, nonces;
  for (int64_t i = 0; i < size; ++i) {
    digests.push_back(MakeDigest(2, static_cast<uint64_t>(first + i)));
    nonces.push_back(anchord::merkle::RandomNonce());
  }
  auto batch = anchord::merkle::SealedBatch::Build(digests, nonces);
  if (!batch.ok()) {
    std::fprintf(stderr, "batch: %s\n", batch.status().ToString().c_str());
    return batch.status();
  }
  const std::string root_digest((*batch)->tree().root().raw());
  std::vector<TrackInput> in;
  in.reserve(static_cast<size_t>(size) + 1);
  TrackInput root = Pending(root_digest, ProofId(3, static_cast<uint64_t>(index)));
  root.proof.leaf_count = size;
  root.batch = *batch;
  in.push_back(std::move(root));
  for (int64_t i = 0; i < size; ++i) {
    TrackInput leaf = Pending(digests[static_cast<size_t>(i)], "");
    leaf.proof.merkle_root = root_digest;
    leaf.proof.leaf_index = i;
    leaf.batch = *batch;
    in.push_back(std::move(leaf));
  }
  return in;
}

// N leaves in the batch form, K to a root: each root handed off with its tree and its leaves
// (positions in the tree), as TrackBatch hands them to the store, one root per Track call.
int FillBatchForm(anchord::poller::PollerStore& store, int64_t n, int64_t k, absl::Time tracked,
                  std::chrono::steady_clock::time_point start) {
  int64_t roots = 0;
  for (int64_t first = 0; first < n; first += k, ++roots) {
    auto in = BatchFormInputs(first, std::min(k, n - first), roots);
    if (!in.ok()) return 1;
    auto r = store.Track(*in, tracked);
    if (!r.ok()) {
      std::fprintf(stderr, "track: %s\n", r.status().ToString().c_str());
      return 1;
    }
  }
  return PrintFill(n, roots, "(batch form)", start);
}

bool IsPgUrl(const std::string& db) { return db.rfind("postgresql://", 0) == 0; }

// The store over DB (a SQLite file or a postgresql:// URL); `pg` gets the PostgreSQL connection
// pool when it is one.
absl::StatusOr<std::unique_ptr<anchord::poller::PollerStore>> OpenStore(
    const std::string& db, std::shared_ptr<anchord::ledger::PgDb>* pg = nullptr) {
  if (!IsPgUrl(db)) return anchord::poller::OpenSqlitePollerStore(db);
  auto opened = anchord::ledger::PgDb::Open(db);
  if (!opened.ok()) return opened.status();
  std::shared_ptr<anchord::ledger::PgDb> shared = std::move(*opened);
  if (pg != nullptr) *pg = shared;
  return anchord::poller::OpenPgPollerStore(shared);
}

// The PostgreSQL fill (the file's header says why not through Track): the rows of the SQLite
// fill's Track calls, 20,000 to an INSERT ... SELECT FROM unnest(...).
class PgFill {
 public:
  PgFill(std::shared_ptr<anchord::ledger::PgDb> db, absl::Time tracked)
      : db_(std::move(db)), tracked_(anchord::poller::ToDb(tracked)) {}

  void Add(const TrackInput& in, const anchord::poller::BatchForm& form) {
    digest_.push_back(std::string(in.proof.digest.raw()));
    proof_id_.push_back(in.proof.proof_id);
    root_.push_back(in.proof.merkle_root);
    path_.push_back(form.leaf_index < 0 ? in.proof.merkle_path : std::string());
    leaf_count_.push_back(in.proof.leaf_count);
    leaf_index_.push_back(form.leaf_index);
    path_size_.push_back(form.path_size);
  }
  size_t size() const { return digest_.size(); }

  absl::Status Flush() {
    if (digest_.empty()) return absl::OkStatus();
    absl::Status st = db_->Tx([&](anchord::ledger::PgConn& c) -> absl::Status {
      return c
          .Exec(
              "INSERT INTO proofs (digest, provider, proof_id, state, tracked_at, pending_since, "
              "updated_at, merkle_root, merkle_path, leaf_count, leaf_index, path_size) SELECT "
              "d, 'proofd'::bytea, i, 4, $8, $8, $8, r, p, c, x, s FROM unnest($1::bytea[], "
              "$2::bytea[], $3::bytea[], $4::bytea[], $5::bigint[], $6::bigint[], $7::bigint[]) "
              "AS u(d, i, r, p, c, x, s)",
              anchord::ledger::PgParams()
                  .AddBytesArray(digest_)
                  .AddBytesArray(proof_id_)
                  .AddBytesArray(root_)
                  .AddBytesArray(path_)
                  .AddIntArray(leaf_count_)
                  .AddIntArray(leaf_index_)
                  .AddIntArray(path_size_)
                  .Add(tracked_))
          .status();
    });
    digest_.clear(), proof_id_.clear(), root_.clear(), path_.clear();
    leaf_count_.clear(), leaf_index_.clear(), path_size_.clear();
    return st;
  }

  absl::Status AddTree(const std::string& root, const std::string& encoded) {
    return db_->Run([&](anchord::ledger::PgConn& c) {
      return c
          .Exec("INSERT INTO merkle_trees (root, leaves) VALUES ($1, $2)",
                anchord::ledger::PgParams().AddBytes(root).AddBytes(encoded))
          .status();
    });
  }

 private:
  std::shared_ptr<anchord::ledger::PgDb> db_;
  const int64_t tracked_;
  std::vector<std::string> digest_, proof_id_, root_, path_;
  std::vector<int64_t> leaf_count_, leaf_index_, path_size_;
};

int FillPg(const std::string& url, int64_t n, int64_t leaves_per_root) {
  std::shared_ptr<anchord::ledger::PgDb> db;
  auto store = OpenStore(url, &db);
  if (!store.ok()) {
    std::fprintf(stderr, "open: %s\n", store.status().ToString().c_str());
    return 1;
  }
  const auto start = std::chrono::steady_clock::now();
  PgFill fill(db, absl::Now() - absl::Hours(1));
  int64_t roots = 0;
  std::set<std::string> trees;  // roots whose tree is stored
  auto add = [&](const TrackInput& in) -> bool {
    auto form = anchord::poller::BatchFormOf(in);
    if (!form.ok()) {
      std::fprintf(stderr, "batch form: %s\n", form.status().ToString().c_str());
      return false;
    }
    if (!form->tree_root.empty() && trees.insert(form->tree_root).second) {  // once a root
      if (absl::Status st = fill.AddTree(form->tree_root, in.batch->encoded()); !st.ok()) {
        std::fprintf(stderr, "tree: %s\n", st.ToString().c_str());
        return false;
      }
    }
    fill.Add(in, *form);
    if (fill.size() < 20000) return true;
    absl::Status st = fill.Flush();
    if (!st.ok()) std::fprintf(stderr, "insert: %s\n", st.ToString().c_str());
    return st.ok();
  };
  if (leaves_per_root < 0) {
    const int64_t k = -leaves_per_root;
    for (int64_t first = 0; first < n; first += k, ++roots) {
      auto in = BatchFormInputs(first, std::min(k, n - first), roots);
      if (!in.ok()) return 1;
      for (const TrackInput& one : *in) {
        if (!add(one)) return 1;
      }
    }
  } else {
    for (int64_t i = 0; i < n; ++i) {
      if (leaves_per_root == 0) {
        if (!add(Pending(MakeDigest(1, i), ProofId(1, i)))) return 1;
        continue;
      }
      TrackInput leaf = Pending(MakeDigest(2, i), "");
      leaf.proof.merkle_root = MakeDigest(3, roots);
      leaf.proof.merkle_path = std::string(1 + 33 * 10, '\x01');
      if (!add(leaf)) return 1;
      if ((i + 1) % leaves_per_root == 0 || i + 1 == n) {
        TrackInput r = Pending(MakeDigest(3, roots), ProofId(3, roots));
        r.proof.leaf_count = (i % leaves_per_root) + 1;
        if (!add(r)) return 1;
        ++roots;
      }
    }
  }
  if (absl::Status st = fill.Flush(); !st.ok()) {
    std::fprintf(stderr, "insert: %s\n", st.ToString().c_str());
    return 1;
  }
  // Planner statistics as a database in service has them (autovacuum would analyze it soon).
  absl::Status st = db->Run([](anchord::ledger::PgConn& c) { return c.ExecScript("ANALYZE"); });
  if (!st.ok()) {
    std::fprintf(stderr, "analyze: %s\n", st.ToString().c_str());
    return 1;
  }
  return PrintFill(n, roots, "(PostgreSQL rows)", start);
}

int Fill(const std::string& db, int64_t n, int64_t leaves_per_root) {
  // BACKLOG_FILL_TRACK=1: a PostgreSQL store filled through Track too (to measure Track there).
  const char* via_track = std::getenv("BACKLOG_FILL_TRACK");
  if (IsPgUrl(db) && (via_track == nullptr || std::string(via_track) != "1")) {
    return FillPg(db, n, leaves_per_root);
  }
  auto store = OpenStore(db);
  if (!store.ok()) {
    std::fprintf(stderr, "open: %s\n", store.status().ToString().c_str());
    return 1;
  }
  // An hour ago: every proof was handed off before any round's walk starts.
  const absl::Time tracked = absl::Now() - absl::Hours(1);
  const auto start = std::chrono::steady_clock::now();
  std::vector<TrackInput> batch;
  int64_t root = 0;
  auto flush = [&]() -> bool {
    if (batch.empty()) return true;
    auto r = (*store)->Track(batch, tracked);
    if (!r.ok()) {
      std::fprintf(stderr, "track: %s\n", r.status().ToString().c_str());
      return false;
    }
    batch.clear();
    return true;
  };
  if (leaves_per_root < 0) return FillBatchForm(**store, n, -leaves_per_root, tracked, start);
  for (int64_t i = 0; i < n; ++i) {
    if (leaves_per_root <= 0) {
      batch.push_back(Pending(MakeDigest(1, i), ProofId(1, i)));
    } else {
      TrackInput leaf = Pending(MakeDigest(2, i), "");
      leaf.proof.merkle_root = MakeDigest(3, root);
      leaf.proof.merkle_path = std::string(1 + 33 * 10, '\x01');
      batch.push_back(std::move(leaf));
      if ((i + 1) % leaves_per_root == 0 || i + 1 == n) {
        TrackInput r = Pending(MakeDigest(3, root), ProofId(3, root));
        r.proof.leaf_count = (i % leaves_per_root) + 1;
        batch.push_back(std::move(r));
        ++root;
      }
    }
    if (batch.size() >= 20000 && !flush()) return 1;
  }
  if (!flush()) return 1;
  return PrintFill(n, root, "", start);
}

std::string ProcStatus(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) {
      std::string v = line.substr(std::string(key).size());
      v.erase(0, v.find_first_not_of(" \t:"));
      return v;
    }
  }
  return "?";
}

int64_t ProcStatusKb(const char* key) {
  int64_t kb = 0;
  std::string v = ProcStatus(key);
  return absl::SimpleAtoi(v.substr(0, v.find(' ')), &kb) ? kb : -1;
}

// The CPU time (ms) of a PostgreSQL server's processes: the postmaster BACKLOG_PG_PID names and
// its children (the backends serving this process and the background workers), from /proc; -1
// without the variable. Server work is what a round costs there beyond the client's wait.
double ServerCpuMs() {
  const char* env = std::getenv("BACKLOG_PG_PID");
  int64_t postmaster = 0;
  if (env == nullptr || !absl::SimpleAtoi(env, &postmaster)) return -1;
  const double tick_ms = 1000.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
  int64_t ticks = 0;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return -1;
  while (dirent* e = readdir(proc)) {
    int64_t pid = 0;
    if (!absl::SimpleAtoi(e->d_name, &pid)) continue;
    std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
    std::string stat;
    if (!std::getline(in, stat)) continue;
    // Fields after the command (which may hold spaces): state ppid ... utime(14) stime(15).
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::vector<std::string> f = absl::StrSplit(stat.substr(close + 2), ' ');
    int64_t ppid = 0, utime = 0, stime = 0;
    if (f.size() < 13 || !absl::SimpleAtoi(f[1], &ppid) || !absl::SimpleAtoi(f[11], &utime) ||
        !absl::SimpleAtoi(f[12], &stime)) {
      continue;
    }
    if (pid == postmaster || ppid == postmaster) ticks += utime + stime;
    // Children the postmaster reaped (parallel query workers, ended backends) count in its own
    // cutime + cstime.
    int64_t cutime = 0, cstime = 0;
    if (pid == postmaster && f.size() >= 15 && absl::SimpleAtoi(f[13], &cutime) &&
        absl::SimpleAtoi(f[14], &cstime)) {
      ticks += cutime + cstime;
    }
  }
  closedir(proc);
  return static_cast<double>(ticks) * tick_ms;
}

// GaugeReference on PostgreSQL: the former GROUP BY over every proof, timed, with the server CPU
// it took.
int PgGaugeReference(const std::string& url, const CountingStore::Count& now) {
  auto db = anchord::ledger::PgDb::Open(url);
  if (!db.ok()) {
    std::fprintf(stderr, "open: %s\n", db.status().ToString().c_str());
    return 1;
  }
  const double cpu_before = ServerCpuMs();
  const auto start = std::chrono::steady_clock::now();
  int64_t groups = 0;
  absl::Status st = (*db)->Run([&](anchord::ledger::PgConn& c) -> absl::Status {
    auto r = c.Exec(
        "SELECT provider, state, COUNT(*), MIN(CASE WHEN state = 4 THEN pending_since END), "
        "SUM(CASE WHEN state = 4 AND stalled = 1 THEN 1 ELSE 0 END)::bigint "
        "FROM proofs GROUP BY provider, state");
    if (!r.ok()) return r.status();
    groups = r->rows();
    return absl::OkStatus();
  });
  if (!st.ok()) {
    std::fprintf(stderr, "reference: %s\n", st.ToString().c_str());
    return 1;
  }
  const double ref_ms =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() * 1000;
  std::printf(
      "gauges now: Stats ms=%.2f rows=%lld rss_file_added_kb=0 | reference GROUP BY: ms=%.1f "
      "groups=%lld rss_file_added_kb=0 server_cpu_ms=%.0f\n",
      now.seconds * 1000, static_cast<long long>(now.rows), ref_ms, static_cast<long long>(groups),
      ServerCpuMs() - cpu_before);
  return 0;
}

// The backlog gauges read now (Stats from the kept counts) against the reference, the query they
// ran before (one GROUP BY over every proof) on a connection of its own with the ledger's 1 GiB
// mmap: each one's time, rows read back and the file pages it added to this process.
int GaugeReference(const std::string& db, CountingStore& counting) {
  int64_t file_before = ProcStatusKb("RssFile");
  counting.ResetCounts();
  auto stats = counting.Stats();
  if (!stats.ok()) {
    std::fprintf(stderr, "stats: %s\n", stats.status().ToString().c_str());
    return 1;
  }
  const CountingStore::Count now = counting.Total();
  const int64_t file_now = ProcStatusKb("RssFile");
  if (IsPgUrl(db)) return PgGaugeReference(db, now);
  auto raw = anchord::ledger::SqliteDb::Open(db);
  if (!raw.ok()) {
    std::fprintf(stderr, "open: %s\n", raw.status().ToString().c_str());
    return 1;
  }
  const auto start = std::chrono::steady_clock::now();
  int64_t groups = 0;
  {
    anchord::ledger::Session session(**raw);
    auto st = session.Prepare(
        "SELECT provider, state, COUNT(*), MIN(CASE WHEN state = 4 THEN pending_since END), "
        "SUM(CASE WHEN state = 4 AND stalled = 1 THEN 1 ELSE 0 END) "
        "FROM proofs GROUP BY provider, state");
    if (!st.ok()) {
      std::fprintf(stderr, "prepare: %s\n", st.status().ToString().c_str());
      return 1;
    }
    while (true) {
      auto row = st->Step();
      if (!row.ok() || !*row) break;
      ++groups;
    }
  }
  const double ref_ms =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() * 1000;
  const int64_t file_ref = ProcStatusKb("RssFile");
  std::printf(
      "gauges now: Stats ms=%.2f rows=%lld rss_file_added_kb=%lld | reference GROUP BY (1 GiB "
      "mmap): ms=%.1f groups=%lld rss_file_added_kb=%lld\n",
      now.seconds * 1000, static_cast<long long>(now.rows),
      static_cast<long long>(file_now - file_before), ref_ms, static_cast<long long>(groups),
      static_cast<long long>(file_ref - file_now));
  return 0;
}

int Rounds(const std::string& db, const std::string& url, int rounds, int max_lookups) {
  auto store = OpenStore(db);
  if (!store.ok()) {
    std::fprintf(stderr, "open: %s\n", store.status().ToString().c_str());
    return 1;
  }
  CountingStore counting(store->get());
  anchord::providers::ProviderSettings ps;
  ps.default_provider = "proofd";
  ps.proofd_url = url;
  ps.proofd_api_key = "proofd_live_sandbox";
  ps.proofd_general_limit = 1000000;  // the sandbox runs without limits here
  auto set = anchord::providers::ProviderSet::Create(ps, nullptr, {});
  if (!set.ok()) {
    std::fprintf(stderr, "providers: %s\n", set.status().ToString().c_str());
    return 1;
  }
  anchord::providers::Provider* p = (*set)->Default();
  anchord::poller::EventBus bus;
  anchord::poller::PollEngineOptions opts;
  opts.max_lookups_per_round = max_lookups;
  // With metrics, as in the service: each round ends by refreshing the backlog gauges.
  prometheus::Registry registry;
  anchord::poller::PollerMetrics metrics(registry);
  anchord::poller::PollEngine engine(&counting, &bus, &metrics, anchord::Clock::Real(), {p}, opts);
  for (int r = 1; r <= rounds; ++r) {
    counting.ResetCounts();
    const double cpu_before = ServerCpuMs();
    const auto start = std::chrono::steady_clock::now();
    anchord::poller::RoundStats stats = engine.RunRound(p);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double server_ms = cpu_before < 0 ? -1 : ServerCpuMs() - cpu_before;
    CountingStore::Count total = counting.Total();
    std::printf(
        "round %d ms=%.1f walked=%d lookups=%d store_calls=%lld store_rows=%lld "
        "store_ms=%.1f server_cpu_ms=%.0f",
        r, secs * 1000, stats.walked ? 1 : 0, stats.lookups, static_cast<long long>(total.calls),
        static_cast<long long>(total.rows), total.seconds * 1000, server_ms);
    // The three store methods that took longest in this round.
    auto snap = counting.Snapshot();
    std::vector<std::pair<std::string, CountingStore::Count>> by_time(snap.begin(), snap.end());
    std::sort(by_time.begin(), by_time.end(),
              [](const auto& a, const auto& b) { return a.second.seconds > b.second.seconds; });
    for (size_t i = 0; i < by_time.size() && i < 3; ++i) {
      std::printf(" %s=%lldx/%lldrows/%.1fms", by_time[i].first.c_str(),
                  static_cast<long long>(by_time[i].second.calls),
                  static_cast<long long>(by_time[i].second.rows), by_time[i].second.seconds * 1000);
    }
    std::printf("\n");
    // Every store method of the round, for the reader of the log.
    std::fprintf(stderr, "round %d calls:", r);
    for (const auto& [name, count] : by_time) {
      std::fprintf(stderr, " %s=%lldx/%lldrows/%.1fms", name.c_str(),
                   static_cast<long long>(count.calls), static_cast<long long>(count.rows),
                   count.seconds * 1000);
    }
    std::fprintf(stderr, "\n");
    std::fflush(stdout);
  }
  std::printf("inprocess VmHWM=%s RssAnon=%s RssFile=%s\n", ProcStatus("VmHWM").c_str(),
              ProcStatus("RssAnon").c_str(), ProcStatus("RssFile").c_str());
  return GaugeReference(db, counting);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> a(argv + 1, argv + argc);
  int64_t n = 0, k = 0;
  if (a.size() == 4 && a[0] == "fill" && absl::SimpleAtoi(a[2], &n) && absl::SimpleAtoi(a[3], &k) &&
      n > 0 && k >= -65536) {  // a batch holds 65,536 leaves at most (TrackBatch)
    return Fill(a[1], n, k);
  }
  int rounds = 0, lookups = 100;
  if ((a.size() == 4 || a.size() == 5) && a[0] == "rounds" && absl::SimpleAtoi(a[3], &rounds) &&
      rounds > 0 && (a.size() == 4 || absl::SimpleAtoi(a[4], &lookups))) {
    return Rounds(a[1], a[2], rounds, lookups);
  }
  std::fprintf(stderr,
               "usage: backlog_bench fill DB N LEAVES_PER_ROOT\n"
               "       backlog_bench rounds DB PROOFD_URL ROUNDS [MAX_LOOKUPS]\n");
  return 2;
}
