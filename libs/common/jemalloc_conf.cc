// jemalloc's options for the binaries that link it (CMake's anchord_use_jemalloc compiles this
// file into each of them; nothing else reads the symbol).
//
// oversize_threshold:0 turns off jemalloc's arena for requests of 8 MiB and more, which gives
// their pages back to the kernel as soon as they are freed. The submitter reads each hand-off
// window (16,384 rows of near a kilobyte) into a vector above that size several times a second,
// and every one was faulted in page by page again: with the batcher's vectors of waiting leaves,
// then as large, 0.35 of the submitter's 0.69 minor faults per file of a 100,000-file Merkle run
// (bench/pipeline_bench.sh). In the ordinary arenas a freed extent is reused while warm and
// returned after the usual decay (10 s), so the peak RSS is what the program holds at once, as
// before.
//
// thp:always (and metadata_thp:always) asks the kernel for transparent huge pages for jemalloc's
// extents (madvise; it changes nothing where /sys/kernel/mm/transparent_hugepage/enabled is
// "never"). A fresh service's memory grows by tens of MiB in its first large run (the SQLite page
// caches, the per-call vectors), and each 4 KiB page of it was one fault: 0.5 per file in the
// poller, 0.3 in the submitter (bench/pipeline_bench.sh). With 2 MiB pages they fell to 0.05,
// and the poller's Track path took 8.8 instead of 10.8 us of CPU per leaf (bench/track_bench.sh,
// 100,000 leaves, medians of 5 pairs).
// The price is resident memory rounded up to huge pages: the poller over 1,000,000 pending proofs
// peaked at 54 MiB instead of 38 (bench/backlog_bench.sh).
//
// narenas:1 (the submitter, the poller and anchorctl: anchord_use_jemalloc(... ONE_ARENA) in CMake)
// gives every thread the one arena instead of jemalloc's 4 per CPU, assigned to threads in turn.
// The services' store work moves between threads (a pool worker per Track call; the intake, the
// seal and the hand-off in the submitter), and each arena kept its own high-water mark of the same
// per-call vectors: the poller's peak resident memory over a 100,000-leaf hand-off was 172-199 MiB,
// and with one arena 130-132 (bench/track_bench.sh). On the machines measured, memory a process
// touches for the first time costs 1.5-2 ms of CPU per MiB (the hypervisor backs it on first
// touch), so the poller spent 9.2 instead of 9.9 us of CPU per leaf (medians of 3 pairs). Each
// thread's cache (tcache) still serves the small allocations without the arena's lock; those
// services run a few busy threads, so the one lock is rarely contended. On a node with many cores
// the default would also give each of their threads an arena of its own. anchorctl's streams (the
// hashes, the Watch events) are read on gRPC's threads: over the same run its peak RSS was 41-42
// MiB instead of 57-60 and its CPU 0.23-0.27 s instead of 0.27-0.30 (3 pairs). The hasher's peak
// fell too (92-94 against 118-123 MiB) but it keeps the default: its CPU did not differ beyond the
// noise, and its hashing benchmarks were not run with one arena.
//
// MALLOC_CONF in the environment still overrides all of this.
extern "C" {
#ifdef ANCHORD_JEMALLOC_ONE_ARENA
// NOLINTNEXTLINE(readability-identifier-naming): the name jemalloc looks for.
const char* malloc_conf = "oversize_threshold:0,thp:always,metadata_thp:always,narenas:1";
#else
// NOLINTNEXTLINE(readability-identifier-naming): the name jemalloc looks for.
const char* malloc_conf = "oversize_threshold:0,thp:always,metadata_thp:always";
#endif
}
