#include "libs/digest/sha256.h"

#include <cstdlib>

namespace anchord::digest {

// EVP failures only happen on allocation failure or a broken OpenSSL install; both are "unlikely
// after process initialization", so they abort rather than thread a Status through every Update.
Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr) std::abort();
  Reset();
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

void Sha256::Reset() {
  if (EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) std::abort();
}

void Sha256::Update(absl::string_view bytes) { Update(bytes.data(), bytes.size()); }

void Sha256::Update(const void* data, size_t n) {
  if (n == 0) return;
  if (EVP_DigestUpdate(ctx_, data, n) != 1) std::abort();
}

Digest Sha256::Finish() {
  Digest::Array out;
  unsigned int len = 0;
  // EVP_sha256 writes exactly 32 bytes (checked: anything else means a broken OpenSSL).
  if (EVP_DigestFinal_ex(ctx_, out.data(), &len) != 1 || len != Digest::kSize) std::abort();
  Reset();
  return Digest(out);
}

Digest Sha256::Of(absl::string_view bytes) {
  Sha256 h;
  h.Update(bytes);
  return h.Finish();
}

}  // namespace anchord::digest
