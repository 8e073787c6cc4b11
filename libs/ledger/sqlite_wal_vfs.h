// A VFS over SQLite's default one that hands a transaction's write-ahead-log writes to the kernel
// in a few large writes instead of two small ones per page.
//
// SQLite writes each WAL frame as two calls, its 24-byte header and then the page, and every call
// is a pwrite(2). In this project's environments a system call costs several microseconds of
// CPU (5-6 us per frame as two pwrites against under 1 us per frame in one pwritev of 32,
// measured on the 2-core build machine), and a 100,000-file Merkle run made about 58,000 of them
// in the submitter and 38,000 in the poller (perf trace, bench/RESULTS.md "session 16").
//
// This VFS keeps the frames of a WAL file that follow one another in a buffer (128 KiB, the most
// SQLite's unix VFS writes in one call) and writes
// the buffer with one call when it is full, when a write lands elsewhere, and before anything that
// could observe the file: a sync, a read, a truncate, a size query, a file control or the close
// of the WAL, and the database file's shared-memory barrier, which SQLite calls just before it
// publishes a commit to other connections in the WAL index. Only connections with
// synchronous=FULL use it (SqliteDb::Open): there each commit syncs the WAL before it is
// published or Commit() returns, so every buffered frame reaches the kernel in that sync's call,
// and a failed write fails the commit exactly as it did unbuffered. A commit's durability and what
// another connection or process reads are unchanged; what changes is the number of calls.
//
// Only the WAL is buffered. The database file's writes (checkpoints) and the rollback journal go
// straight through.
#pragma once

#include <cstdint>

namespace anchord::ledger {

// Registers the VFS with SQLite on first use (not as the default) and returns its name, for
// sqlite3_open_v2. Thread-safe.
const char* WalCoalescingVfs();

// Totals since the process started, over every WAL opened through the VFS: the writes SQLite
// asked for, and the writes the VFS made. For tests and benchmarks.
struct WalWriteTotals {
  int64_t requested = 0;
  int64_t issued = 0;
};
WalWriteTotals WalCoalescingTotals();

}  // namespace anchord::ledger
