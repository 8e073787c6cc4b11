// Minimal thread-safe logging to stderr, one line per message.
//
// Every line passes through the secret scrubber: any string registered with RegisterSecret (API
// keys, bearer tokens) is replaced by "[REDACTED]" before the line is written, so a secret that
// slips into an error message from a provider or a library still never reaches the log.
#pragma once

#include <sstream>
#include <string>
#include "absl/strings/string_view.h"

namespace anchord {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Sets the name printed on every line (the service name) and the lowest level written.
void InitLogging(absl::string_view component, LogLevel min_level = LogLevel::kInfo);
// Parses "debug", "info", "warning", "error"; unknown strings give kInfo.
LogLevel ParseLogLevel(absl::string_view s);

// Registers a value that must never be printed. Thread-safe; values shorter than 4 bytes are
// ignored (they would scrub ordinary words).
void RegisterSecret(absl::string_view secret);
// Replaces every registered secret in `text` by "[REDACTED]".
std::string ScrubSecrets(absl::string_view text);

// The body of a log line as written: control characters, DEL, backslashes and bytes outside
// ASCII are escaped (\n, \x1b, \\, ...), so a caller-supplied string (a path, an id, a provider's
// message) can neither forge a line nor steer a terminal, and a body longer than `max_bytes` is
// cut there and ends with "...[N bytes]".
inline constexpr size_t kMaxLogBodyBytes = 8192;
std::string EscapeLogText(absl::string_view text, size_t max_bytes = kMaxLogBodyBytes);

namespace log_internal {
class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  std::ostringstream stream_;
};
bool Enabled(LogLevel level);
}  // namespace log_internal

}  // namespace anchord

#define ANCHORD_LOG(level)                                                \
  if (!::anchord::log_internal::Enabled(::anchord::LogLevel::k##level)) { \
  } else                                                                  \
    ::anchord::log_internal::LogMessage(::anchord::LogLevel::k##level, __FILE__, __LINE__).stream()
