// `anchorctl bundle` and `anchorctl verify-bundle`: one ZIP per job that anyone can check offline
// (docs/bundle.md describes the layout).
//
// bundle: MANIFEST.sha256 (`DIGEST  PATH`, paths relative to the hasher's root, for
// `sha256sum -c`), proofs/<path>.<provider>.{ots,tsr,tsrm}, headers/<height>.hdr (raw 80-byte
// Bitcoin headers every .ots needs) + headers/headers.txt, tsa/ca.pem (trust anchors),
// tsa/chain.pem (the certificates the tokens carry), tsa/roots/<root>.tsr (Merkle roots' tokens),
// report.csv, report.json, report.html, bundle.json (index and header policy), VERIFY.md.
//
// verify-bundle exit codes: 0 every proof verified; 3 a mismatch (the message names the file);
// 4 some files have no complete proof yet (pending) and nothing mismatched; 2 a malformed bundle
// (the message names the entry) or bad arguments.
#pragma once

#include <ostream>
#include <string>

#include "services/anchorctl/commands.h"

namespace anchord::anchorctl {

inline constexpr int kBundleExitVerified = 0;
inline constexpr int kBundleExitMalformed = 2;
inline constexpr int kBundleExitMismatch = 3;
inline constexpr int kBundleExitPending = 4;

struct BundleOptions {
  std::string job;
  std::string output;
  // Header source for the .ots proofs' Bitcoin attestations (ots::MakeHeaderSource spec); empty:
  // the local sandbox stack's "sandbox:URL" when there is one.
  std::string headers;
  // "mainnet" or "regtest" (recorded; verify-bundle then accepts regtest-difficulty headers);
  // empty: regtest for a sandbox: source, mainnet otherwise.
  std::string network;
  std::string tsa_ca_file;  // empty: the local sandbox stack's TSA CA
};

int RunBundle(const GlobalOptions& g, const BundleOptions& o);

// Checks a bundle offline. `files_dir` (may be empty): also hash every manifest file under it.
int RunVerifyBundle(const std::string& bundle_path, const std::string& files_dir, bool json,
                    std::ostream& out, std::ostream& err);

}  // namespace anchord::anchorctl
