// OpenTimestamps bytes for adapter tests, built with libs/ots the way a calendar builds them
// (docs/providers/ots.md): a create answer ending in a pending attestation, an upgrade answer
// ending in a Bitcoin attestation, and complete detached proofs.
#pragma once

#include <memory>
#include <string>

#include "libs/ots/ots.h"

namespace anchord::testing {

// A calendar's answer to POST /digest for `digest` (raw bytes): append(nonce), sha256,
// prepend(time), append(mac), PendingAttestation(uri). `commitment` receives the message at the
// pending node, the one GET /timestamp asks about.
inline std::string CalendarCreateAnswer(const std::string& digest, const std::string& uri,
                                        std::string* commitment, char nonce = 'n') {
  auto root = std::make_shared<ots::Timestamp>(digest);
  auto a = *root->AddOp(ots::Op::Append(std::string(16, nonce)));
  auto b = *a->AddOp(ots::Op::Sha256());
  auto c = *b->AddOp(ots::Op::Prepend(std::string("\x65\x00\x00\x01", 4)));
  auto d = *c->AddOp(ots::Op::Append(std::string(8, 'm')));
  d->AddAttestation(ots::Attestation::Pending(uri));
  if (commitment != nullptr) *commitment = d->msg();
  std::string out;
  (void)root->Serialize(&out);
  return out;
}

// A calendar's answer to GET /timestamp/<commitment> once confirmed: sha256, append, sha256,
// BitcoinBlockHeaderAttestation(height).
inline std::string CalendarUpgradeAnswer(const std::string& commitment, uint64_t height) {
  auto root = std::make_shared<ots::Timestamp>(commitment);
  auto a = *root->AddOp(ots::Op::Sha256());
  auto b = *a->AddOp(ots::Op::Append(std::string(32, 't')));
  auto c = *b->AddOp(ots::Op::Sha256());
  c->AddAttestation(ots::Attestation::Bitcoin(height));
  std::string out;
  (void)root->Serialize(&out);
  return out;
}

// A detached .ots of `digest` (raw bytes) with a Bitcoin attestation at `height`.
inline std::string CompleteOts(const std::string& digest, uint64_t height) {
  ots::DetachedFile f;
  f.file_hash_op = ots::Op::Sha256();
  f.digest = digest;
  f.timestamp = std::make_shared<ots::Timestamp>(digest);
  auto a = *f.timestamp->AddOp(ots::Op::Append(std::string(16, 'x')));
  auto b = *a->AddOp(ots::Op::Sha256());
  b->AddAttestation(ots::Attestation::Bitcoin(height));
  return *ots::SerializeDetached(f);
}

}  // namespace anchord::testing
