#include "libs/common/log.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace anchord {
namespace {

struct LogState {
  absl::Mutex mu;
  std::string component ABSL_GUARDED_BY(mu) = "anchord";
  std::vector<std::string> secrets ABSL_GUARDED_BY(mu);
};

LogState& State() {
  static LogState* state = new LogState();
  return *state;
}

std::atomic<int> g_min_level{static_cast<int>(LogLevel::kInfo)};

const char* LevelName(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kWarning:
      return "WARN";
    case LogLevel::kError:
      return "ERROR";
  }
  return "INFO";
}

}  // namespace

void InitLogging(absl::string_view component, LogLevel min_level) {
  LogState& state = State();
  absl::MutexLock lock(&state.mu);
  state.component = std::string(component);
  g_min_level.store(static_cast<int>(min_level));
}

LogLevel ParseLogLevel(absl::string_view s) {
  if (s == "debug") return LogLevel::kDebug;
  if (s == "warning" || s == "warn") return LogLevel::kWarning;
  if (s == "error") return LogLevel::kError;
  return LogLevel::kInfo;
}

void RegisterSecret(absl::string_view secret) {
  if (secret.size() < 4) return;
  LogState& state = State();
  absl::MutexLock lock(&state.mu);
  for (const auto& s : state.secrets) {
    if (s == secret) return;
  }
  state.secrets.emplace_back(secret);
}

std::string ScrubSecrets(absl::string_view text) {
  LogState& state = State();
  absl::MutexLock lock(&state.mu);
  std::string out(text);
  for (const auto& s : state.secrets) {
    out = absl::StrReplaceAll(out, {{s, "[REDACTED]"}});
  }
  return out;
}

std::string EscapeLogText(absl::string_view text, size_t max_bytes) {
  const absl::string_view shown = text.substr(0, std::min(text.size(), max_bytes));
  std::string out;
  out.reserve(shown.size() + 16);
  static constexpr char kHex[] = "0123456789abcdef";
  for (char ch : shown) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c >= 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += ch;
    }
  }
  if (shown.size() < text.size()) out += "...[" + std::to_string(text.size()) + " bytes]";
  return out;
}

namespace log_internal {

bool Enabled(LogLevel level) { return static_cast<int>(level) >= g_min_level.load(); }

LogMessage::LogMessage(LogLevel level, const char* file, int line) : level_(level) {
  (void)file;
  (void)line;
}

LogMessage::~LogMessage() {
  std::string body = EscapeLogText(ScrubSecrets(stream_.str()));
  std::string component;
  {
    LogState& state = State();
    absl::MutexLock lock(&state.mu);
    component = state.component;
  }
  std::string line = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  line += ' ';
  line += LevelName(level_);
  line += ' ';
  line += component;
  line += ": ";
  line += body;
  line += '\n';
  // One fwrite per line keeps lines whole when threads log at once.
  std::fwrite(line.data(), 1, line.size(), stderr);
}

}  // namespace log_internal
}  // namespace anchord
