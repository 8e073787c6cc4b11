// What a binary was built as, for --version and the startup log line.
#pragma once

#include <string>

namespace anchord {

// "anchord 0.1.0 (allocator: jemalloc 5.3.0-..., oversize_threshold 0)" or "... (allocator: system
// malloc)": which allocator the process really runs on, read from the process itself rather than
// from the build options, so a binary that lost its jemalloc link says so.
std::string BuildInfo();

}  // namespace anchord
