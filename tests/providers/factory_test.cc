#include "libs/providers/factory.h"
#include "libs/providers/proofd.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"

namespace anchord::providers {
namespace {

TEST(ProviderSet, MissingKeyNamesTheFlag) {
  ProviderSettings s;
  auto set = ProviderSet::Create(s, nullptr);
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(set.status().message(), "--proofd-api-key")) << set.status();
}

TEST(ProviderSet, RejectsBadSettings) {
  ProviderSettings s;
  s.proofd_api_key = "k-123456";
  s.default_provider = "nosuch";
  EXPECT_EQ(ProviderSet::Create(s, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
  s.default_provider = "proofd";
  s.proofd_url = "ftp://x";
  EXPECT_EQ(ProviderSet::Create(s, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
  s.proofd_url = "http://127.0.0.1:1";
  s.proofd_window_seconds = 0;
  EXPECT_EQ(ProviderSet::Create(s, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
  s.proofd_window_seconds = 60;
  s.proofd_create_limit = -1;
  EXPECT_EQ(ProviderSet::Create(s, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ProviderSet, BuildsProofdWithLimitersFromFactory) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("providers_factory_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto key_file = dir / "key";
  {
    std::ofstream(key_file) << "file-key-abcdef\n";
  }
  ProviderSettings s;
  s.proofd_api_key_file = key_file.string();
  s.proofd_url = "http://127.0.0.1:1";
  s.proofd_create_limit = 7;
  s.proofd_general_limit = 11;
  s.proofd_window_seconds = 2;
  std::vector<std::pair<std::string, ratelimit::RateLimit>> made;
  FakeClock clock;
  prometheus::Registry registry;
  ProviderMetrics metrics(registry);
  auto set = ProviderSet::Create(
      s, &metrics,
      [&](const std::string& name, ratelimit::RateLimit rl) {
        made.emplace_back(name, rl);
        return ratelimit::MakeLocalRateLimiter(name, rl, &clock);
      },
      &clock);
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_NE((*set)->Default(), nullptr);
  EXPECT_EQ((*set)->Default()->name(), "proofd");
  EXPECT_EQ((*set)->Get("proofd"), (*set)->Default());
  EXPECT_EQ((*set)->Get("other"), nullptr);
  EXPECT_EQ((*set)->All().size(), 1u);
  ASSERT_NE((*set)->limiter("proofd.create"), nullptr);
  ASSERT_NE((*set)->limiter("proofd.general"), nullptr);
  EXPECT_EQ((*set)->limiter("nope"), nullptr);
  ASSERT_EQ(made.size(), 2u);
  EXPECT_EQ(made[0].first, "proofd.create");
  EXPECT_EQ(made[0].second.limit, 7);
  EXPECT_EQ(made[0].second.window, absl::Seconds(2));
  EXPECT_EQ(made[1].first, "proofd.general");
  EXPECT_EQ(made[1].second.limit, 11);

  // The key from the file drives the idempotency key.
  auto p = (*set)->Default()->PrepareCreate({std::string(64, 'a'), "a.bin", 3, ""});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->idempotency_key, ProofdIdempotencyKey("file-key-abcdef", p->body));

  (*set)->Stop();
  EXPECT_EQ((*set)->limiter("proofd.general")->Acquire().status().code(),
            absl::StatusCode::kCancelled);
  std::filesystem::remove_all(dir);
}

TEST(ProviderFlags, ParseFlagsAndEnvironment) {
  ::setenv("ANCHORD_PROOFD_WINDOW_SECONDS", "1.5", 1);
  ProviderSettings s;
  CLI::App app;
  AddProviderFlags(app, &s);
  std::vector<std::string> args = {"--proofd-general-limit", "60", "--proofd-url",
                                   "http://127.0.0.1:9", "--proofd-create-limit", "3"};
  std::reverse(args.begin(), args.end());  // CLI11 takes the vector reversed
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    FAIL() << e.what();
  }
  ::unsetenv("ANCHORD_PROOFD_WINDOW_SECONDS");
  EXPECT_EQ(s.proofd_general_limit, 60);
  EXPECT_EQ(s.proofd_create_limit, 3);
  EXPECT_EQ(s.proofd_url, "http://127.0.0.1:9");
  EXPECT_DOUBLE_EQ(s.proofd_window_seconds, 1.5);
  EXPECT_EQ(s.default_provider, "proofd");
}

}  // namespace
}  // namespace anchord::providers
