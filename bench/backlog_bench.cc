// Large poller backlogs (issue 11 goal 5): fills a poller SQLite store with N PENDING proofs
// through the store's own API, then runs polling rounds over it in this process with every store
// call counted (CountingStore), against a proofd sandbox over loopback. Run by backlog_bench.sh,
// which also runs a real anchord-poller on the same database for its peak RSS.
//
//   backlog_bench fill DB N LEAVES_PER_ROOT   (0: N per-file proofs; K: N leaves under N/K roots,
//                                             each with its own path, as Track stores a leaf handed
//                                             off alone; -K: the same in the batch form, as
//                                             TrackBatch stores them: the root's tree once, each
//                                             leaf its position in it)
//   backlog_bench rounds DB PROOFD_URL ROUNDS [MAX_LOOKUPS]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <prometheus/registry.h>

#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "libs/common/clock.h"
#include "libs/ledger/sqlite_db.h"
#include "libs/merkle/merkle.h"
#include "libs/merkle/sealed_batch.h"
#include "libs/providers/factory.h"
#include "services/poller/counting_store.h"
#include "services/poller/event_bus.h"
#include "services/poller/poll_engine.h"
#include "services/poller/poller_metrics.h"
#include "services/poller/poller_store.h"

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

// N leaves in the batch form, K to a root: each root handed off with its tree and its leaves
// (positions in the tree), as TrackBatch hands them to the store, one root per Track call.
int FillBatchForm(anchord::poller::PollerStore& store, int64_t n, int64_t k, absl::Time tracked,
                  std::chrono::steady_clock::time_point start) {
  int64_t roots = 0;
  for (int64_t first = 0; first < n; first += k, ++roots) {
    const int64_t size = std::min(k, n - first);
    std::vector<std::string> digests, nonces;
    for (int64_t i = 0; i < size; ++i) {
      digests.push_back(MakeDigest(2, static_cast<uint64_t>(first + i)));
      nonces.push_back(anchord::merkle::RandomNonce());
    }
    auto batch = anchord::merkle::SealedBatch::Build(digests, nonces);
    if (!batch.ok()) {
      std::fprintf(stderr, "batch: %s\n", batch.status().ToString().c_str());
      return 1;
    }
    const std::string root_digest((*batch)->tree().root().raw());
    std::vector<TrackInput> in;
    in.reserve(static_cast<size_t>(size) + 1);
    TrackInput root = Pending(root_digest, ProofId(3, static_cast<uint64_t>(roots)));
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
    auto r = store.Track(in, tracked);
    if (!r.ok()) {
      std::fprintf(stderr, "track: %s\n", r.status().ToString().c_str());
      return 1;
    }
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("fill n=%lld roots=%lld (batch form) seconds=%.1f rows_per_s=%.0f\n",
              static_cast<long long>(n), static_cast<long long>(roots), secs,
              static_cast<double>(n + roots) / secs);
  return 0;
}

int Fill(const std::string& db, int64_t n, int64_t leaves_per_root) {
  auto store = anchord::poller::OpenSqlitePollerStore(db);
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
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("fill n=%lld roots=%lld seconds=%.1f rows_per_s=%.0f\n", static_cast<long long>(n),
              static_cast<long long>(root), secs, static_cast<double>(n + root) / secs);
  return 0;
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
  auto store = anchord::poller::OpenSqlitePollerStore(db);
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
    const auto start = std::chrono::steady_clock::now();
    anchord::poller::RoundStats stats = engine.RunRound(p);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    CountingStore::Count total = counting.Total();
    std::printf(
        "round %d ms=%.1f walked=%d lookups=%d store_calls=%lld store_rows=%lld "
        "store_ms=%.1f",
        r, secs * 1000, stats.walked ? 1 : 0, stats.lookups, static_cast<long long>(total.calls),
        static_cast<long long>(total.rows), total.seconds * 1000);
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
