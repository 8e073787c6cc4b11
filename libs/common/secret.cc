#include "libs/common/secret.h"

#include <openssl/sha.h>

#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "libs/common/hex.h"
#include "libs/common/log.h"

namespace anchord {

absl::StatusOr<std::string> LoadSecret(absl::string_view what, absl::string_view value,
                                       absl::string_view file) {
  std::string secret;
  if (!file.empty()) {
    std::ifstream in{std::string(file)};
    if (!in) {
      return absl::FailedPreconditionError(absl::StrCat(what, ": cannot read key file ", file));
    }
    std::stringstream ss;
    ss << in.rdbuf();
    secret = std::string(absl::StripTrailingAsciiWhitespace(ss.str()));
    if (secret.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(what, ": key file ", file, " is empty"));
    }
  } else {
    secret = std::string(value);
  }
  RegisterSecret(secret);
  return secret;
}

std::string SecretFingerprint(absl::string_view secret) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(secret.data()), secret.size(), md);
  return HexEncode(absl::string_view(reinterpret_cast<const char*>(md), 6));
}

}  // namespace anchord
