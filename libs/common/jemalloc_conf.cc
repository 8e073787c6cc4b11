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
// before. MALLOC_CONF in the environment still overrides this.
extern "C" {
// NOLINTNEXTLINE(readability-identifier-naming): the name jemalloc looks for.
const char* malloc_conf = "oversize_threshold:0";
}
