// The lines `anchorctl archive --dry-run` prints: one per file, written as its result arrives.
//
// A hashed file is a line in sha256sum's format ("<64 hex digits>  <path>", the path relative to
// the hasher's root), so `sha256sum -c` run from the root checks the output. A file the hasher
// could not read is "-  <path>  <reason>: <message>". A line whose text holds a backslash, a
// newline or a carriage return is escaped as GNU sha256sum escapes a file name ("\\", "\n",
// "\r") and starts with a backslash: a file name, which anyone who can write to the tree chooses,
// can never add a line of its own.
#pragma once

#include <string>

#include "anchord/v1/hasher.pb.h"

namespace anchord::anchorctl {

// Appends the line of one result (with its newline) to *out.
void AppendDryRunLine(const anchord::v1::HashTreeResponse& result, std::string* out);

}  // namespace anchord::anchorctl
