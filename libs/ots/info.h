// Rendering a proof as a readable tree, in the layout of the reference `ots info`
// (python-opentimestamps Timestamp.str_tree; upstream samples in tests/data/ots/extra-js/*.info,
// the format in docs/ots-format.md).
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
//
// Output is linear in the size of the proof (the reference's layout is not: a 1-byte op can
// derive a 4096-byte message, and forks indent without bound). Unless `full`:
//  - a derived message (op result, node message) longer than kInfoShortMessage bytes is shown as
//    its first kInfoShortMessage / 2 bytes, "...", and its length; op arguments and attestation
//    payloads are bytes of the proof and are printed whole. Each node then costs at most about
//    100 bytes of output plus its argument, and at least one byte of the proof;
//  - forks deeper than kInfoMaxIndentLevels keep that indent and print "[level N] ".
// A node reachable along two paths (possible in trees built in memory, never in a parsed file) is
// printed once; its second occurrence says so. Each message is printed once (the JSON has no
// separate op "result": it is the child's "msg").
#pragma once

#include <string>

#include "libs/ots/ots.h"

namespace anchord::ots {

std::string AttestationToString(const Attestation& a);  // "PendingAttestation('https://...')"
std::string OpToString(const Op& op);                   // "append 0a1b", "sha256"

inline constexpr size_t kInfoShortMessage = 32;  // hashes and merkle roots are always whole
inline constexpr int kInfoMaxIndentLevels = 16;

// Hex of `msg`, or (unless `full`) of its first `limit` / 2 bytes followed by "... (N bytes)" when
// it is longer than `limit`. For derived messages in any output.
std::string ShowMessage(absl::string_view msg, bool full = false, size_t limit = kInfoShortMessage);

std::string RenderInfo(const DetachedFile& proof, bool verbose = false, bool full = false);
// The same tree as compact JSON: {"file_hash_op","digest","timestamp":{"msg"?,"msg_length"?,
// "attestations"?:[...],"bitcoin_txid"?,"ops":[{"op","arg"?,"timestamp":{...}}]}} (hex strings).
// "msg" is on the root, on nodes with attestations (the commitment) and, with `full`, on every
// node; shortened as above unless `full`, with "msg_length" then. "attestations" only when there
// are some; "same_as_above": true on a repeated node.
std::string RenderInfoJson(const DetachedFile& proof, bool full = false);

// The double-SHA256 txid (display order) when `msg` is exactly one serialized non-witness Bitcoin
// transaction; empty otherwise.
std::string BitcoinTxidIfTransaction(absl::string_view msg);

}  // namespace anchord::ots
