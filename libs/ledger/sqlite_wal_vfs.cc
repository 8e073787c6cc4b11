#include "libs/ledger/sqlite_wal_vfs.h"

#include <sqlite3.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace anchord::ledger {
namespace {

// The most the default (unix) VFS writes in one call: it masks each write's length to 17 bits
// (os_unix.c, seekAndWriteFd), as no page of SQLite's is larger. 31 frames of 4 KiB pages.
constexpr int kBufferBytes = (1 << 17) - 1;

std::atomic<int64_t> g_requested{0};
std::atomic<int64_t> g_issued{0};

// The object SQLite allocates for every file opened through the VFS: this header, then the
// default VFS's own file object (`real`), which does the I/O.
struct File {
  sqlite3_file base;
  sqlite3_file* real;
  bool wal;
  // A WAL: its buffered bytes, which belong at [start, start + len) of the file.
  char* buf;
  int len;
  sqlite3_int64 start;
  // A WAL: set when a flush that could not report its error (at the barrier) failed. Every later
  // call then fails with it, so nothing is built on frames that never reached the file.
  int failed;
  // A WAL: the database file of the same connection; a database file: its open WAL. Both are
  // used by that connection's thread only; they are linked and unlinked under g_mu.
  File* peer;
  // A database file: its key in Databases() (the name SQLite gave xOpen); null when not there.
  const char* registered;
};

sqlite3_vfs* g_root = nullptr;
sqlite3_vfs g_vfs;

absl::Mutex g_mu;
// Open database files by the name SQLite gave xOpen: a WAL's name leads to its database's
// (sqlite3_filename_database), which is the same pointer for the same connection.
absl::flat_hash_map<const char*, File*>& Databases() ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_mu) {
  static auto* map = new absl::flat_hash_map<const char*, File*>();
  return *map;
}

File* Of(sqlite3_file* f) { return reinterpret_cast<File*>(f); }

int Flush(File* f) {
  if (f->len == 0) return SQLITE_OK;
  const int len = f->len;
  f->len = 0;
  g_issued.fetch_add(1, std::memory_order_relaxed);
  return f->real->pMethods->xWrite(f->real, f->buf, len, f->start);
}

// Flushes before a call that could observe the file.
int Settle(File* f) {
  if (f->failed != SQLITE_OK) return f->failed;
  return f->wal ? Flush(f) : SQLITE_OK;
}

void Unlink(File* f) {
  absl::MutexLock lock(&g_mu);
  if (f->peer != nullptr) f->peer->peer = nullptr;
  f->peer = nullptr;
  if (f->registered != nullptr) Databases().erase(f->registered);
  f->registered = nullptr;
}

int Close(sqlite3_file* file) {
  File* f = Of(file);
  int rc = f->wal ? Flush(f) : SQLITE_OK;
  Unlink(f);
  int closed = f->real->pMethods->xClose(f->real);
  std::free(f->buf);
  f->buf = nullptr;
  return rc != SQLITE_OK ? rc : closed;
}

int Read(sqlite3_file* file, void* out, int amt, sqlite3_int64 off) {
  File* f = Of(file);
  int rc = Settle(f);
  if (rc != SQLITE_OK) return rc;
  return f->real->pMethods->xRead(f->real, out, amt, off);
}

int Write(sqlite3_file* file, const void* data, int amt, sqlite3_int64 off) {
  File* f = Of(file);
  if (!f->wal) return f->real->pMethods->xWrite(f->real, data, amt, off);
  if (f->failed != SQLITE_OK) return f->failed;
  g_requested.fetch_add(1, std::memory_order_relaxed);
  if (f->len > 0 && off == f->start + f->len && amt <= kBufferBytes - f->len) {
    std::memcpy(f->buf + f->len, data, static_cast<size_t>(amt));
    f->len += amt;
    return SQLITE_OK;
  }
  // Not the next bytes (a frame rewritten in place, a WAL started over), or no room: what is
  // buffered goes first, so the file sees the writes in the order they were made.
  int rc = Flush(f);
  if (rc != SQLITE_OK) return rc;
  if (amt >= kBufferBytes) {
    g_issued.fetch_add(1, std::memory_order_relaxed);
    return f->real->pMethods->xWrite(f->real, data, amt, off);
  }
  if (f->buf == nullptr) {
    f->buf = static_cast<char*>(std::malloc(kBufferBytes));
    if (f->buf == nullptr) return SQLITE_NOMEM;
  }
  std::memcpy(f->buf, data, static_cast<size_t>(amt));
  f->start = off;
  f->len = amt;
  return SQLITE_OK;
}

int Truncate(sqlite3_file* file, sqlite3_int64 size) {
  File* f = Of(file);
  int rc = Settle(f);
  if (rc != SQLITE_OK) return rc;
  return f->real->pMethods->xTruncate(f->real, size);
}

int Sync(sqlite3_file* file, int flags) {
  File* f = Of(file);
  int rc = Settle(f);
  if (rc != SQLITE_OK) return rc;
  return f->real->pMethods->xSync(f->real, flags);
}

int FileSize(sqlite3_file* file, sqlite3_int64* size) {
  File* f = Of(file);
  int rc = Settle(f);
  if (rc != SQLITE_OK) return rc;
  return f->real->pMethods->xFileSize(f->real, size);
}

int Lock(sqlite3_file* file, int level) {
  File* f = Of(file);
  return f->real->pMethods->xLock(f->real, level);
}

int Unlock(sqlite3_file* file, int level) {
  File* f = Of(file);
  return f->real->pMethods->xUnlock(f->real, level);
}

int CheckReservedLock(sqlite3_file* file, int* out) {
  File* f = Of(file);
  return f->real->pMethods->xCheckReservedLock(f->real, out);
}

int FileControl(sqlite3_file* file, int op, void* arg) {
  File* f = Of(file);
  int rc = Settle(f);
  if (rc != SQLITE_OK) return rc;
  return f->real->pMethods->xFileControl(f->real, op, arg);
}

int SectorSize(sqlite3_file* file) {
  File* f = Of(file);
  return f->real->pMethods->xSectorSize(f->real);
}

int DeviceCharacteristics(sqlite3_file* file) {
  File* f = Of(file);
  return f->real->pMethods->xDeviceCharacteristics(f->real);
}

// The shared-memory methods are the database file's (version 2 and up of the real methods).
int ShmMap(sqlite3_file* file, int region, int size, int extend, void volatile** out) {
  File* f = Of(file);
  if (f->real->pMethods->iVersion < 2) return SQLITE_IOERR;
  return f->real->pMethods->xShmMap(f->real, region, size, extend, out);
}

int ShmLock(sqlite3_file* file, int offset, int n, int flags) {
  File* f = Of(file);
  if (f->real->pMethods->iVersion < 2) return SQLITE_IOERR;
  return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}

// SQLite calls this between writing the two copies of the WAL index's header, the moment a
// commit becomes visible to other connections: the frames it points at must be in the file by
// then. With synchronous=FULL the commit's sync has already flushed them; this is the safety net
// for any path that publishes without a sync. It cannot report an error, so a failure poisons the
// WAL (every later call fails).
void ShmBarrier(sqlite3_file* file) {
  File* f = Of(file);
  File* wal = f->peer;
  if (wal != nullptr && wal->failed == SQLITE_OK) {
    int rc = Flush(wal);
    if (rc != SQLITE_OK) wal->failed = rc;
  }
  if (f->real->pMethods->iVersion >= 2) f->real->pMethods->xShmBarrier(f->real);
}

int ShmUnmap(sqlite3_file* file, int remove) {
  File* f = Of(file);
  if (f->real->pMethods->iVersion < 2) return SQLITE_OK;
  return f->real->pMethods->xShmUnmap(f->real, remove);
}

int Fetch(sqlite3_file* file, sqlite3_int64 off, int amt, void** out) {
  File* f = Of(file);
  if (f->real->pMethods->iVersion < 3) {
    *out = nullptr;
    return SQLITE_OK;
  }
  int rc = Settle(f);
  if (rc != SQLITE_OK) return rc;
  return f->real->pMethods->xFetch(f->real, off, amt, out);
}

int Unfetch(sqlite3_file* file, sqlite3_int64 off, void* p) {
  File* f = Of(file);
  if (f->real->pMethods->iVersion < 3) return SQLITE_OK;
  return f->real->pMethods->xUnfetch(f->real, off, p);
}

const sqlite3_io_methods kMethods = {
    .iVersion = 3,
    .xClose = Close,
    .xRead = Read,
    .xWrite = Write,
    .xTruncate = Truncate,
    .xSync = Sync,
    .xFileSize = FileSize,
    .xLock = Lock,
    .xUnlock = Unlock,
    .xCheckReservedLock = CheckReservedLock,
    .xFileControl = FileControl,
    .xSectorSize = SectorSize,
    .xDeviceCharacteristics = DeviceCharacteristics,
    .xShmMap = ShmMap,
    .xShmLock = ShmLock,
    .xShmBarrier = ShmBarrier,
    .xShmUnmap = ShmUnmap,
    .xFetch = Fetch,
    .xUnfetch = Unfetch,
};

int Open(sqlite3_vfs*, sqlite3_filename name, sqlite3_file* file, int flags, int* out_flags) {
  File* f = Of(file);
  f->base.pMethods = nullptr;
  f->real = reinterpret_cast<sqlite3_file*>(f + 1);
  f->wal = (flags & SQLITE_OPEN_WAL) != 0 && name != nullptr;
  f->buf = nullptr;
  f->len = 0;
  f->start = 0;
  f->failed = SQLITE_OK;
  f->peer = nullptr;
  f->registered = nullptr;
  int rc = g_root->xOpen(g_root, name, f->real, flags, out_flags);
  if (f->real->pMethods == nullptr) return rc;
  // From here on xClose is called, even when the open failed.
  f->base.pMethods = &kMethods;
  if (rc != SQLITE_OK) return rc;
  absl::MutexLock lock(&g_mu);
  if (f->wal) {
    auto db = Databases().find(sqlite3_filename_database(name));
    if (db != Databases().end() && db->second->peer == nullptr) {
      f->peer = db->second;
      db->second->peer = f;
    }
  } else if ((flags & SQLITE_OPEN_MAIN_DB) != 0 && name != nullptr) {
    Databases()[name] = f;
    f->registered = name;
  }
  return SQLITE_OK;
}

}  // namespace

const char* WalCoalescingVfs() {
  static const char* const name = [] {
    g_root = sqlite3_vfs_find(nullptr);
    g_vfs = *g_root;
    g_vfs.szOsFile = static_cast<int>(sizeof(File)) + g_root->szOsFile;
    g_vfs.zName = "anchord-wal-coalescing";
    g_vfs.pNext = nullptr;
    g_vfs.xOpen = Open;
    (void)sqlite3_vfs_register(&g_vfs, /*makeDflt=*/0);
    return g_vfs.zName;
  }();
  return name;
}

WalWriteTotals WalCoalescingTotals() {
  return {g_requested.load(std::memory_order_relaxed), g_issued.load(std::memory_order_relaxed)};
}

}  // namespace anchord::ledger
