#include "services/anchorctl/dry_run_lines.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "services/anchorctl/command_common.h"

namespace anchord::anchorctl {
namespace {

bool NeedsEscape(absl::string_view s) {
  return s.find_first_of("\\\n\r") != absl::string_view::npos;
}

void AppendEscaped(absl::string_view s, std::string* out) {
  for (char c : s) {
    switch (c) {
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      default:
        out->push_back(c);
    }
  }
}

}  // namespace

void AppendDryRunLine(const anchord::v1::HashTreeResponse& r, std::string* out) {
  const bool ok = r.status().code() == 0;
  const bool escape =
      NeedsEscape(r.path()) ||
      (!ok && (NeedsEscape(r.status().reason()) || NeedsEscape(r.status().message())));
  if (escape) out->push_back('\\');
  if (ok) {
    absl::StrAppend(out, DigestOf(r.digest()), "  ");
  } else {
    out->append("-  ");
  }
  AppendEscaped(r.path(), out);
  if (!ok) {
    out->append("  ");
    AppendEscaped(r.status().reason(), out);
    out->append(": ");
    AppendEscaped(r.status().message(), out);
  }
  out->push_back('\n');
}

}  // namespace anchord::anchorctl
