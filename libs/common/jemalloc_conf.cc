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
// thp:default leaves transparent huge pages to the kernel's setting (with "madvise", as on the
// machines measured, jemalloc's memory gets none; with "always", the kernel's choice). Sessions 13
// to 27 ran with thp:always, which made a fresh service's growth one fault per 2 MiB instead of per
// 4 KiB page and measured faster then. On the virtual machines measured since (bench/RESULTS.md,
// issue 11 session 28) the host takes back guest memory that is free in large blocks (free page
// reporting), and a huge page is nearly always carved from such a block: the first touch of each
// costs the host's fault, 2.1-2.6 ms of CPU per MiB against 0.4-0.9 for 4 KiB pages. The kernel's
// zeroing of huge pages was 22-25% of the submitter's and the poller's CPU in a 100,000-file Merkle
// run; with thp:default the run took 1.74-1.92 s and 3.2-3.4 CPU s against 2.00-2.16 s and 3.6-3.9
// CPU s (4 pairs alternately), the poller's Track path alone (bench/track_bench.sh) and the
// hasher's small files (bench/hash_throughput.sh) the same within their variation either way. Where
// huge pages pay (a host that does not take memory back), MALLOC_CONF=thp:always turns them on
// again.
//
// narenas:1 (the submitter, the poller and anchorctl: anchord_use_jemalloc(... ONE_ARENA) in CMake)
// gives every thread the one arena instead of jemalloc's 4 per CPU, assigned to threads in turn.
// The services' store work moves between threads (a pool worker per Track call; the intake, the
// seal and the hand-off in the submitter), and each arena kept its own high-water mark of the same
// per-call vectors: the poller's peak resident memory over a 100,000-leaf hand-off was 172-199 MiB,
// and with one arena 130-132 (bench/track_bench.sh). On the machines measured, memory a process
// touches for the first time costs 1.5-2 ms of CPU per MiB in huge pages (the host backs it on
// first touch; 0.4-0.9 in 4 KiB pages), so the poller spent 9.2 instead of 9.9 us of CPU per leaf
// (medians of 3 pairs, with thp:always). Each
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
const char* malloc_conf = "oversize_threshold:0,thp:default,narenas:1";
#else
// NOLINTNEXTLINE(readability-identifier-naming): the name jemalloc looks for.
const char* malloc_conf = "oversize_threshold:0,thp:default";
#endif
}
