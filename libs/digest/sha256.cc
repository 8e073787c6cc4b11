#include "libs/digest/sha256.h"

#include <cstdlib>

namespace anchord::digest {
namespace {

// EVP_sha256() names the algorithm, not an implementation: OpenSSL 3 looks one up in its provider
// store at every EVP_DigestInit_ex given it (a read lock and a property match; 11% of the
// hasher's CPU over 100,000 small files, with two inits per file). Fetched once per process and
// kept for its lifetime.
const EVP_MD* Sha256Md() {
  static const EVP_MD* const md = [] {
    EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    if (fetched == nullptr) std::abort();
    return fetched;
  }();
  return md;
}

}  // namespace

// EVP failures only happen on allocation failure or a broken OpenSSL install; both are "unlikely
// after process initialization", so they abort rather than thread a Status through every Update.
Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr) std::abort();
  Reset();
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

void Sha256::Reset() {
  if (EVP_DigestInit_ex2(ctx_, Sha256Md(), nullptr) != 1) std::abort();
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
