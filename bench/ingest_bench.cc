// Durable ingest, measured from outside: streams precomputed digests to a running submitter's
// Submit and counts acknowledgements (each one is sent only after the commit that holds its item),
// and, as the reference in the same run, inserts the same rows into a raw SQLite table in
// 1,000-row transactions with the submitter's settings (WAL, synchronous=FULL). Prints one JSON
// line. Used by bench/pipeline_bench.sh; not a test.
//
//   ingest_bench submit HOST:PORT COUNT [STREAMS] [WINDOW] [SEED] [PER_MESSAGE]
//
// PER_MESSAGE 1 (the default) sends each digest in its own SubmitRequest; more packs that many
// into one request's `items` (the batch form), answered by one response once all are durable.
// WINDOW counts digests either way.
//   ingest_bench reference DB_PATH COUNT [SEED]
//   ingest_bench reference-pg URL COUNT [SEED]
// reference-pg is the same reference on PostgreSQL (the server's own durability settings): a raw
// libpq client sending each 1,000 rows as one multi-row INSERT (one statement, one transaction).
#include <grpcpp/grpcpp.h>
#include <libpq-fe.h>
#include <openssl/sha.h>
#include <sqlite3.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "anchord/v1/submitter.grpc.pb.h"

namespace {

namespace v1 = anchord::v1;

std::string Digest(long long seed, long long i) {
  unsigned char out[SHA256_DIGEST_LENGTH];
  std::string in = std::to_string(seed) + "/" + std::to_string(i);
  SHA256(reinterpret_cast<const unsigned char*>(in.data()), in.size(), out);
  return std::string(reinterpret_cast<const char*>(out), sizeof(out));
}

std::string Path(long long i) {
  return "bench/d" + std::to_string(i / 1000) + "/f" + std::to_string(i) + ".bin";
}

// CPU time (user + system) of this process so far, in seconds: on a shared machine the rate moves
// with the load, the CPU a row costs much less.
double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// One line of JSON for a reference run (raw inserts of `rows` rows), read by bench/ingest_bench.sh.
void PrintReference(const char* mode, long long rows, double secs, double cpu) {
  std::printf(
      "{\"mode\":\"%s\",\"rows\":%lld,\"seconds\":%.3f,\"per_second\":%.0f,"
      "\"cpu_seconds\":%.3f}\n",
      mode, rows, secs, rows / secs, cpu);
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

v1::SubmitRequest Item(long long seed, long long i) {
  v1::SubmitRequest r;
  r.set_request_id("r" + std::to_string(i));
  r.set_digest(Digest(seed, i));
  auto* m = r.mutable_metadata();
  m->set_filename("f" + std::to_string(i) + ".bin");
  m->set_size_bytes(1024 + i % 3072);
  m->set_job("ingest-bench");
  m->set_source_path(Path(i));
  r.set_anchor_mode(v1::ANCHOR_MODE_MERKLE_BATCH);
  return r;
}

// One answer's digests: the message itself (single form) or its items (batch form).
void Count(const v1::SubmitResponse& resp, std::atomic<long long>& acked,
           std::atomic<long long>& failed, long long& digests) {
  if (resp.items_size() == 0) {
    ++digests;
    ++(resp.status().code() == 0 ? acked : failed);
    return;
  }
  for (const auto& item : resp.items()) {
    ++digests;
    ++(item.status().code() == 0 ? acked : failed);
  }
}

int Submit(const std::string& target, long long count, int streams, int window, long long seed,
           int per_message) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 * 1024 * 1024);
  // Each stream on its own connection, as separate hashers would be.
  // Stream s gets digests s, s + streams, ...; grouped PER_MESSAGE to a request.
  std::vector<std::vector<v1::SubmitRequest>> per_stream(streams);
  std::vector<std::vector<long long>> sizes(streams);  // digests per request
  for (int s = 0; s < streams; ++s) {
    v1::SubmitRequest batch;
    for (long long i = s; i < count; i += streams) {
      if (per_message <= 1) {
        per_stream[s].push_back(Item(seed, i));
        sizes[s].push_back(1);
        continue;
      }
      *batch.add_items() = Item(seed, i);
      if (batch.items_size() == per_message || i + streams >= count) {
        sizes[s].push_back(batch.items_size());
        per_stream[s].push_back(std::move(batch));
        batch.Clear();
      }
    }
  }
  std::atomic<long long> acked{0}, failed{0};
  std::vector<std::thread> threads;
  const double start = Now();
  for (int s = 0; s < streams; ++s) {
    threads.emplace_back([&, s] {
      grpc::ChannelArguments own = args;
      own.SetInt("anchord.bench.stream", s);  // distinct args: a channel (connection) per stream
      auto channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), own);
      auto stub = v1::SubmitterService::NewStub(channel);
      grpc::ClientContext ctx;
      auto stream = stub->Submit(&ctx);
      std::mutex mu;
      std::condition_variable cv;
      long long outstanding = 0;
      const auto& reqs = per_stream[s];
      long long expected = 0;
      for (long long n : sizes[s]) expected += n;
      std::thread reader([&] {
        v1::SubmitResponse resp;
        long long got = 0;
        while (got < expected && stream->Read(&resp)) {
          long long digests = 0;
          Count(resp, acked, failed, digests);
          got += digests;
          std::lock_guard<std::mutex> lock(mu);
          outstanding -= digests;
          cv.notify_one();
        }
      });
      for (size_t k = 0; k < reqs.size(); ++k) {
        const long long n = sizes[s][k];
        {
          std::unique_lock<std::mutex> lock(mu);
          // A request larger than the window goes alone.
          cv.wait(lock, [&] { return outstanding == 0 || outstanding + n <= window; });
          outstanding += n;
        }
        if (!stream->Write(reqs[k])) break;
      }
      reader.join();
      stream->WritesDone();
      grpc::Status st = stream->Finish();
      if (!st.ok()) std::fprintf(stderr, "stream %d: %s\n", s, st.error_message().c_str());
    });
  }
  for (auto& t : threads) t.join();
  const double secs = Now() - start;
  std::printf(
      "{\"mode\":\"submit\",\"digests\":%lld,\"acked\":%lld,\"failed\":%lld,"
      "\"streams\":%d,\"window\":%d,\"per_message\":%d,\"seconds\":%.3f,\"per_second\":%.0f}\n",
      count, acked.load(), failed.load(), streams, window, per_message, secs, acked.load() / secs);
  return acked.load() == count ? 0 : 1;
}

int Reference(const std::string& path, long long count, long long seed) {
  sqlite3* db = nullptr;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK) return 1;
  auto exec = [&](const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
      std::fprintf(stderr, "sqlite: %s\n", err ? err : "?");
      std::exit(1);
    }
  };
  exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;");
  // The row the submitter stores per digest (digest, provider and the file's metadata), keyed by
  // the digest, without the submitter's secondary indexes: the floor for the same rows.
  exec(
      "CREATE TABLE IF NOT EXISTS rows (digest BLOB PRIMARY KEY, provider TEXT NOT NULL, "
      "job TEXT NOT NULL, filename TEXT NOT NULL, size_bytes INTEGER NOT NULL, "
      "source_path TEXT NOT NULL, state INTEGER NOT NULL, created_at INTEGER NOT NULL)");
  std::vector<std::string> digests;
  digests.reserve(count);
  for (long long i = 0; i < count; ++i) digests.push_back(Digest(seed, i));
  sqlite3_stmt* ins = nullptr;
  sqlite3_prepare_v2(db,
                     "INSERT INTO rows VALUES (?1, 'proofd', 'ingest-bench', ?2, ?3, ?4, 0, ?5)",
                     -1, &ins, nullptr);
  const double start = Now(), cpu_start = CpuSeconds();
  for (long long i = 0; i < count; ++i) {
    if (i % 1000 == 0) exec("BEGIN");
    const std::string name = "f" + std::to_string(i) + ".bin", path = Path(i);
    sqlite3_bind_blob(ins, 1, digests[i].data(), 32, SQLITE_STATIC);
    sqlite3_bind_text(ins, 2, name.data(), static_cast<int>(name.size()), SQLITE_STATIC);
    sqlite3_bind_int64(ins, 3, 1024 + i % 3072);
    sqlite3_bind_text(ins, 4, path.data(), static_cast<int>(path.size()), SQLITE_STATIC);
    sqlite3_bind_int64(ins, 5, 1700000000000LL + i);
    if (sqlite3_step(ins) != SQLITE_DONE) {
      std::fprintf(stderr, "sqlite: %s\n", sqlite3_errmsg(db));
      return 1;
    }
    sqlite3_reset(ins);
    if (i % 1000 == 999 || i == count - 1) exec("COMMIT");
  }
  const double secs = Now() - start, cpu = CpuSeconds() - cpu_start;
  sqlite3_finalize(ins);
  sqlite3_close(db);
  PrintReference("reference", count, secs, cpu);
  return 0;
}

int ReferencePg(const std::string& url, long long count, long long seed) {
  PGconn* c = PQconnectdb(url.c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    std::fprintf(stderr, "postgresql: %s\n", PQerrorMessage(c));
    return 1;
  }
  auto ok = [&](PGresult* r) {
    const ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
      std::fprintf(stderr, "postgresql: %s\n", PQresultErrorMessage(r));
      std::exit(1);
    }
    PQclear(r);
  };
  // The SQLite reference's table, keyed by the digest, without secondary indexes.
  ok(PQexec(c,
            "CREATE TABLE IF NOT EXISTS rows (digest BYTEA PRIMARY KEY, provider BYTEA NOT NULL, "
            "job BYTEA NOT NULL, filename BYTEA NOT NULL, size_bytes BIGINT NOT NULL, "
            "source_path BYTEA NOT NULL, state INTEGER NOT NULL, created_at BIGINT NOT NULL)"));
  std::vector<std::string> digests;
  digests.reserve(count);
  for (long long i = 0; i < count; ++i) digests.push_back(Digest(seed, i));
  const double start = Now(), cpu_start = CpuSeconds();
  for (long long first = 0; first < count; first += 1000) {
    const long long n = std::min<long long>(1000, count - first);
    std::string sql = "INSERT INTO rows VALUES ";
    std::vector<std::string> text;  // every parameter's bytes, 5 per row
    for (long long k = 0; k < n; ++k) {
      const long long i = first + k;
      const std::string p = "$" + std::to_string(5 * k + 1);
      sql += (k ? ", (" : "(") + p + ", 'proofd', 'ingest-bench', $" + std::to_string(5 * k + 2) +
             ", $" + std::to_string(5 * k + 3) + ", $" + std::to_string(5 * k + 4) + ", 0, $" +
             std::to_string(5 * k + 5) + ")";
      text.push_back(digests[i]);
      text.push_back("f" + std::to_string(i) + ".bin");
      text.push_back(std::to_string(1024 + i % 3072));
      text.push_back(Path(i));
      text.push_back(std::to_string(1700000000000LL + i));
    }
    std::vector<const char*> values;
    std::vector<int> lengths, formats;
    for (size_t j = 0; j < text.size(); ++j) {
      values.push_back(text[j].data());
      lengths.push_back(static_cast<int>(text[j].size()));
      formats.push_back(j % 5 == 0 ? 1 : 0);  // the digest in binary, the rest as text
    }
    ok(PQexecParams(c, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(),
                    lengths.data(), formats.data(), 0));
  }
  const double secs = Now() - start, cpu = CpuSeconds() - cpu_start;
  PQfinish(c);
  PrintReference("reference-pg", count, secs, cpu);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 4 && std::string(argv[1]) == "submit") {
    return Submit(argv[2], std::atoll(argv[3]), argc > 4 ? std::atoi(argv[4]) : 1,
                  argc > 5 ? std::atoi(argv[5]) : 4096, argc > 6 ? std::atoll(argv[6]) : 1,
                  argc > 7 ? std::atoi(argv[7]) : 1);
  }
  if (argc >= 4 && std::string(argv[1]) == "reference") {
    return Reference(argv[2], std::atoll(argv[3]), argc > 4 ? std::atoll(argv[4]) : 1);
  }
  if (argc >= 4 && std::string(argv[1]) == "reference-pg") {
    return ReferencePg(argv[2], std::atoll(argv[3]), argc > 4 ? std::atoll(argv[4]) : 1);
  }
  std::fprintf(
      stderr,
      "usage: ingest_bench submit HOST:PORT COUNT [STREAMS] [WINDOW] [SEED] [PER_MESSAGE]\n"
      "       ingest_bench reference DB_PATH COUNT [SEED]\n"
      "       ingest_bench reference-pg URL COUNT [SEED]\n");
  return 2;
}
