// The store backends every store test runs against (one parameterised suite, not two copies).
#pragma once

#include <gtest/gtest.h>

#include <string>

namespace anchord::testing {

enum class Backend { kSqlite, kPostgres };

inline std::string BackendName(const ::testing::TestParamInfo<Backend>& info) {
  return info.param == Backend::kSqlite ? "Sqlite" : "Postgres";
}

#define ANCHORD_ALL_BACKENDS                                                                       \
  ::testing::Values(::anchord::testing::Backend::kSqlite, ::anchord::testing::Backend::kPostgres), \
      ::anchord::testing::BackendName

}  // namespace anchord::testing
