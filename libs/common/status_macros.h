// RETURN_IF_ERROR / ASSIGN_OR_RETURN for every module: the bookworm absl (20220623) has no
// status_macros.h.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define ANCHORD_RETURN_IF_ERROR(expr)          \
  do {                                         \
    ::absl::Status _anchord_st = (expr);       \
    if (!_anchord_st.ok()) return _anchord_st; \
  } while (0)

#define ANCHORD_CONCAT_INNER(a, b) a##b
#define ANCHORD_CONCAT(a, b) ANCHORD_CONCAT_INNER(a, b)
#define ANCHORD_ASSIGN_OR_RETURN(lhs, expr) \
  ANCHORD_ASSIGN_OR_RETURN_IMPL(ANCHORD_CONCAT(_anchord_or_, __LINE__), lhs, expr)
#define ANCHORD_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = std::move(*tmp)
