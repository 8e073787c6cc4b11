// What SimpleProof's answers say (internal to libs/providers): the JSON bodies of a verification,
// a create, a page of the document listing and a callback, validated before anything in them is
// trusted, and the listing cursor. The HTTP side (pacing, errors, batching) is simpleproof.cc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "libs/providers/provider.h"

namespace anchord::providers::simpleproof {

inline constexpr int kListLimitMax = 100;  // the sandbox's cap; the document names none
inline constexpr size_t kMaxCallbackBytes = 64 * 1024;
// The listing statuses that are not yet confirmed, in the order a document moves through them:
// walking pending_stamp first means a document that moves on during the walk is met again in
// `pending` rather than missed.
inline constexpr const char* kPendingStatuses[] = {"pending_stamp", "pending"};

// What a verification says about one hash.
struct Verification {
  ProviderRecord record;  // proof_id = digest, state, verify_url, times
  std::string ots_url;    // ots_download_url; may be empty
};

// A verification answer for `digest`: nullopt when the account does not hold it.
absl::StatusOr<std::optional<Verification>> ParseVerification(const std::string& body,
                                                              const Digest& digest);

// The hashes (lowercase) of a create answer's `files` (strings; objects with a hash are accepted
// too).
absl::StatusOr<std::set<std::string>> ParseFiles(const std::string& body);

// One page of GET /api/proof/document.
struct DocumentPage {
  std::vector<ProviderRecord> pending;  // valid documents not yet COMPLETE, kPending
  std::vector<std::string> invalid;     // why each skipped document was invalid (raw text)
  size_t documents = 0;                 // documents on the page, valid or not
  int64_t total_pages = -1;             // -1 when the answer names no count
};
absl::StatusOr<DocumentPage> ParseDocumentPage(const std::string& body);

// Where a ListPending walk stands: "<status>:<page>:<limit>".
struct Cursor {
  int status = 0;  // index into kPendingStatuses
  int page = 0;
  int limit = 50;
};
std::string FormatCursor(const Cursor& c);
// INVALID_ARGUMENT "cursor: not status:page:limit" for anything FormatCursor does not make.
absl::StatusOr<Cursor> ParseCursor(const std::string& s);

// The digest a callback body names, once the body has the documented shape; INVALID_ARGUMENT
// "callback: ..." naming what is wrong otherwise.
absl::StatusOr<Digest> ParseCallback(const std::string& body);

}  // namespace anchord::providers::simpleproof
