// The SQLite store's SummarizeJob: per distinct digest with a file in a job (every digest when the
// job is empty), its least advanced state, counted by state.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "libs/ledger/sqlite_db.h"
#include "services/submitter/submitter_store.h"

namespace anchord::submitter {

// Runs in the caller's session (one read snapshot when the caller holds a transaction).
absl::StatusOr<std::map<SubState, int64_t>> SummarizeSqliteJob(ledger::Session& session,
                                                               const std::string& job);

}  // namespace anchord::submitter
