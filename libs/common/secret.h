// Reading credentials. A key comes either as a value (flag or environment) or from a file, the
// form Kubernetes mounts a Secret in. Whatever is read is registered with the log scrubber.
#pragma once

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace anchord {

// Returns the secret: the contents of `file` (trailing whitespace trimmed) when `file` is not
// empty, else `value`. Errors name `what` (e.g. "proofd API key") and the file, never the secret.
absl::StatusOr<std::string> LoadSecret(absl::string_view what, absl::string_view value,
                                       absl::string_view file);

// A short, stable, non-reversible name for a secret (first 12 hex chars of its SHA-256), for logs
// and ledger rows that must tell two accounts apart without holding the key.
std::string SecretFingerprint(absl::string_view secret);

}  // namespace anchord
