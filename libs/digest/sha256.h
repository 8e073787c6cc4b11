// Streaming SHA-256 over OpenSSL's EVP interface.
#pragma once

#include <openssl/evp.h>

#include <string>

#include "absl/strings/string_view.h"
#include "libs/digest/digest.h"

namespace anchord::digest {

// Incremental SHA-256. Not thread-safe; one instance per stream of bytes.
//
// Example:
//   Sha256 h;
//   h.Update("ab");
//   h.Update("c");
//   Digest d = h.Finish();
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(absl::string_view bytes);
  void Update(const void* data, size_t n);
  // Returns the digest and resets the object for a new message.
  Digest Finish();
  // Discards everything fed so far.
  void Reset();

  // One-shot convenience.
  static Digest Of(absl::string_view bytes);

 private:
  EVP_MD_CTX* ctx_;
};

}  // namespace anchord::digest
