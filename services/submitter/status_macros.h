// Local RETURN_IF_ERROR / ASSIGN_OR_RETURN: the bookworm absl (20220623) has no status_macros.h.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define SUBMITTER_RETURN_IF_ERROR(expr)        \
  do {                                         \
    ::absl::Status _submitter_st = (expr);     \
    if (!_submitter_st.ok()) return _submitter_st; \
  } while (0)

#define SUBMITTER_CONCAT_INNER(a, b) a##b
#define SUBMITTER_CONCAT(a, b) SUBMITTER_CONCAT_INNER(a, b)
#define SUBMITTER_ASSIGN_OR_RETURN(lhs, expr) \
  SUBMITTER_ASSIGN_OR_RETURN_IMPL(SUBMITTER_CONCAT(_submitter_or_, __LINE__), lhs, expr)
#define SUBMITTER_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                    \
  if (!tmp.ok()) return tmp.status();                   \
  lhs = std::move(*tmp)
