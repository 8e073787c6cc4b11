// Rendering a proof as a readable tree, in the layout of the reference `ots info`
// (python-opentimestamps Timestamp.str_tree; samples in ../shared/ots/vectors/extra-js/*.info).
//
//   File sha256 hash: <hex>
//   Timestamp:
//   append <hex>              one line per op; a single path continues at the same indent
//   sha256
//    -> append <hex>          a fork: one " -> " entry per op, its sub-tree indented by 4
//       ...
//   verify BitcoinBlockHeaderAttestation(358391)
//   # Bitcoin block merkle root <display hex>
//
// A message that parses as a Bitcoin transaction gets "# Bitcoin transaction id <txid>" before
// its op, like the reference. With `verbose`, every op line gets " == <result hex>".
#pragma once

#include <string>

#include "libs/ots/ots.h"

namespace anchord::ots {

std::string AttestationToString(const Attestation& a);  // "PendingAttestation('https://...')"
std::string OpToString(const Op& op);                    // "append 0a1b", "sha256"

std::string RenderInfo(const DetachedFile& proof, bool verbose = false);
// The same tree as JSON: {"file_hash_op","digest","timestamp":{"msg","attestations":[...],
// "ops":[{"op","arg","result","timestamp":{...}}]}} (hex strings).
std::string RenderInfoJson(const DetachedFile& proof);

// The double-SHA256 txid (display order) when `msg` is exactly one serialized non-witness Bitcoin
// transaction; empty otherwise.
std::string BitcoinTxidIfTransaction(absl::string_view msg);

}  // namespace anchord::ots
