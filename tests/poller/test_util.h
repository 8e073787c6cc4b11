// Shared helpers of the poller tests: a temp directory, digests, .ots bytes and a scripted,
// deterministic fake Provider.
#pragma once

#include <algorithm>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "libs/common/hex.h"
#include "libs/providers/provider.h"
#include "services/poller/poller_store.h"
#include "tests/testing/fake_provider.h"
#include "tests/testing/temp_dir.h"

namespace anchord::poller::testing {

using ::anchord::testing::TempDir;

// A distinct 32-byte digest for each n, as raw bytes (proto fields, .ots bytes).
inline std::string DigestBytes(int n) {
  std::string d(32, '\0');
  for (int i = 0; i < 32; ++i) d[i] = static_cast<char>((n * 31 + i * 7 + (n >> 8)) & 0xff);
  d[0] = static_cast<char>(n & 0xff);
  d[1] = static_cast<char>((n >> 8) & 0xff);
  return d;
}
// The same digest as the type the store takes.
inline ::anchord::Digest Digest(int n) { return *::anchord::Digest::FromBytes(DigestBytes(n)); }

inline std::string OtsMagic() {
  return std::string("\x00OpenTimestamps\x00\x00Proof\x00\xbf\x89\xe2\xe8\x84\xe8\x92\x94", 31);
}

inline void AppendTestVaruint(uint64_t v, std::string* out) {
  do {
    unsigned char b = v & 0x7f;
    v >>= 7;
    if (v) b |= 0x80;
    out->push_back(static_cast<char>(b));
  } while (v);
}

// A valid .ots for `digest` (it parses with libs/ots): about `tail_bytes` of append ops (each
// followed by sha256, chunks small enough for the 4096-byte message limit) ending in a Bitcoin
// attestation. Deterministic, so sizes can be compared.
inline std::string MakeOts(const std::string& digest, size_t tail_bytes = 40) {
  std::string out = OtsMagic();
  out.push_back('\x01');
  out.push_back('\x08');
  out += digest;
  size_t left = tail_bytes;
  for (size_t n = 0; left > 0; ++n) {
    const size_t k = std::min<size_t>(left, 2000);
    out.push_back('\xf0');
    AppendTestVaruint(k, &out);
    for (size_t i = 0; i < k; ++i) out.push_back(static_cast<char>((i * 131 + 7 + n) & 0xff));
    out.push_back('\x08');
    left -= k;
  }
  out.push_back('\x00');
  out += std::string("\x05\x88\x96\x0d\x73\xd7\x19\x01", 8);
  std::string payload;
  AppendTestVaruint(812345, &payload);
  AppendTestVaruint(payload.size(), &out);
  out += payload;
  return out;
}
inline std::string MakeOts(const ::anchord::Digest& digest, size_t tail_bytes = 40) {
  return MakeOts(digest.raw(), tail_bytes);
}

inline TrackInput Pending(const ::anchord::Digest& digest, const std::string& proof_id,
                          const std::string& provider = "fake", const std::string& job = "",
                          const std::string& path = "") {
  TrackInput in;
  in.proof.digest = digest;
  in.proof.provider = provider;
  in.proof.proof_id = proof_id;
  in.proof.state = anchord::v1::DIGEST_STATE_PENDING;
  in.files.push_back(FileRow{job.empty() ? "default" : job, path.empty() ? proof_id + ".pdf" : path,
                             proof_id + ".pdf", 100, "application/pdf"});
  return in;
}

// Pending for a digest given as raw bytes (32 of them).
inline TrackInput Pending(const std::string& digest, const std::string& proof_id,
                          const std::string& provider = "fake", const std::string& job = "",
                          const std::string& path = "") {
  return Pending(*::anchord::Digest::FromBytes(digest), proof_id, provider, job, path);
}

// A Merkle leaf of its own path (one byte) under the root Digest(root), pending.
inline TrackInput PathLeaf(int root, int n, const std::string& provider = "fake") {
  TrackInput in = Pending(Digest(n), "", provider);
  in.proof.merkle_root = Digest(root).raw();
  in.proof.merkle_path = std::string(1, '\x01');
  return in;
}

// Scripted provider: records keyed by proof id; the pending list is every record whose state is
// kPending (by id order), paged by an index cursor.
using ::anchord::testing::FakeProvider;

}  // namespace anchord::poller::testing
