#include "libs/providers/factory.h"
#include "libs/providers/proofd.h"

#include <gtest/gtest.h>
#include <prometheus/registry.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <fstream>

#include "absl/strings/match.h"

namespace anchord::providers {
namespace {

TEST(ProviderSet, MissingKeyNamesTheFlag) {
  // proofd chosen explicitly (without a key the default is ots, see below).
  ProviderSettings s;
  s.default_provider = "proofd";
  auto set = ProviderSet::Create(s, nullptr);
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(set.status().message(), "--proofd-api-key")) << set.status();

  // Named in --providers without a key.
  ProviderSettings p;
  p.providers = "ots, proofledger";
  set = ProviderSet::Create(p, nullptr);
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(set.status().message(), "--proofledger-api-key")) << set.status();
  ProviderSettings sp;
  sp.default_provider = "simpleproof";
  set = ProviderSet::Create(sp, nullptr);
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(set.status().message(), "--simpleproof-api-key")) << set.status();
}

TEST(ProviderSet, WithoutAnyKeyTheDefaultIsTheFreeCalendars) {
  ProviderSettings s;
  auto set = ProviderSet::Create(s, nullptr);
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_NE((*set)->Default(), nullptr);
  EXPECT_EQ((*set)->Default()->name(), "ots");
  EXPECT_EQ((*set)->All().size(), 1u);
  EXPECT_EQ((*set)->Get("proofd"), nullptr);
}

TEST(ProviderSet, EnabledSetIsDefaultPlusListedPlusKeyed) {
  ProviderSettings s;
  s.proofd_api_key = "proofd-key-123";
  s.simpleproof_api_key = "sp-token-123";
  auto set = ProviderSet::Create(s, nullptr);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ((*set)->Default()->name(), "proofd");  // a proofd key makes proofd the default
  EXPECT_NE((*set)->Get("simpleproof"), nullptr);  // keyed, so enabled
  EXPECT_EQ((*set)->Get("ots"), nullptr);
  EXPECT_EQ((*set)->Get("proofledger"), nullptr);
  EXPECT_EQ((*set)->All().size(), 2u);
  EXPECT_EQ((*set)->Get("simpleproof")->max_batch(), 25);

  s.providers = "ots";
  s.default_provider = "simpleproof";
  s.proofledger_api_key = "pl-key-123";
  s.simpleproof_batch_size = 10;
  set = ProviderSet::Create(s, nullptr);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ((*set)->Default()->name(), "simpleproof");
  EXPECT_EQ((*set)->All().size(), 4u);
  EXPECT_EQ((*set)->Get("simpleproof")->max_batch(), 10);
  EXPECT_FALSE((*set)->Get("proofledger")->OffersOts());
  EXPECT_EQ((*set)->Get("proofledger")->LookupBudgetRemaining(), 120);
  ASSERT_NE((*set)->limiter("proofledger.create"), nullptr);
  ASSERT_NE((*set)->limiter("proofledger.verify"), nullptr);
  ASSERT_NE((*set)->limiter("simpleproof.general"), nullptr);
}

TEST(ProviderSet, NewProvidersLimitersFromFactory) {
  ProviderSettings s;
  s.default_provider = "proofledger";
  s.providers = "simpleproof";
  s.proofledger_api_key = "pl-key-123";
  s.proofledger_create_limit = 5;
  s.proofledger_window_seconds = 10;
  s.proofledger_verify_limit = 7;
  s.proofledger_verify_window_seconds = 70;
  s.simpleproof_api_key = "sp-token-123";
  s.simpleproof_limit = 9;
  s.simpleproof_window_seconds = 90;
  std::map<std::string, ratelimit::RateLimit> made;
  FakeClock clock;
  auto set = ProviderSet::Create(
      s, nullptr,
      [&](const std::string& name, ratelimit::RateLimit rl) {
        made[name] = rl;
        return ratelimit::MakeLocalRateLimiter(name, rl, &clock);
      },
      &clock);
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_EQ(made.size(), 3u);
  EXPECT_EQ(made["proofledger.create"].limit, 5);
  EXPECT_EQ(made["proofledger.create"].window, absl::Seconds(10));
  EXPECT_EQ(made["proofledger.verify"].limit, 7);
  EXPECT_EQ(made["proofledger.verify"].window, absl::Seconds(70));
  EXPECT_EQ(made["simpleproof.general"].limit, 9);
  EXPECT_EQ(made["simpleproof.general"].window, absl::Seconds(90));
  EXPECT_EQ((*set)->Get("proofledger")->LookupBudgetRemaining(), 7);
}

TEST(ProviderSet, BadNewSettingsNameTheFlag) {
  struct Case {
    std::function<void(ProviderSettings*)> set;
    const char* flag;
  };
  const std::vector<Case> cases = {
      {[](ProviderSettings* s) { s->providers = "ots,nosuch"; }, "--providers"},
      {[](ProviderSettings* s) { s->default_provider = "calendar"; }, "--provider"},
      {[](ProviderSettings* s) { s->proofledger_url = "proofledger.io"; }, "--proofledger-url"},
      {[](ProviderSettings* s) { s->proofledger_create_limit = -1; }, "--proofledger-create-limit"},
      {[](ProviderSettings* s) { s->proofledger_verify_limit = -1; }, "--proofledger-verify-limit"},
      {[](ProviderSettings* s) { s->proofledger_window_seconds = 0; },
       "--proofledger-window-seconds"},
      {[](ProviderSettings* s) { s->proofledger_verify_window_seconds = -5; },
       "--proofledger-verify-window-seconds"},
      {[](ProviderSettings* s) { s->simpleproof_url = "ftp://x"; }, "--simpleproof-url"},
      {[](ProviderSettings* s) { s->simpleproof_limit = -2; }, "--simpleproof-limit"},
      {[](ProviderSettings* s) { s->simpleproof_window_seconds = 1e9; },
       "--simpleproof-window-seconds"},
      {[](ProviderSettings* s) { s->simpleproof_callback_url = "not a url"; },
       "--simpleproof-callback-url"},
      {[](ProviderSettings* s) { s->simpleproof_batch_size = 26; }, "--simpleproof-batch-size"},
      {[](ProviderSettings* s) { s->simpleproof_batch_size = 0; }, "--simpleproof-batch-size"},
      {[](ProviderSettings* s) { s->ots_calendars = "https://a.example/path"; }, "--ots-calendars"},
      {[](ProviderSettings* s) { s->ots_calendars = "a.example"; }, "--ots-calendars"},
      {[](ProviderSettings* s) { s->ots_calendars = " , "; }, "--ots-calendars"},
      {[](ProviderSettings* s) {
         s->ots_calendars = "https://a.example";
         s->ots_min_calendars = 2;
       },
       "--ots-min-calendars"},
      {[](ProviderSettings* s) { s->ots_min_calendars = 0; }, "--ots-min-calendars"},
      {[](ProviderSettings* s) { s->ots_timeout_seconds = 0; }, "--ots-timeout-seconds"},
      {[](ProviderSettings* s) { s->ots_calendar_limit = -1; }, "--ots-calendar-limit"},
  };
  for (const Case& c : cases) {
    ProviderSettings s;
    c.set(&s);
    auto set = ProviderSet::Create(s, nullptr);
    ASSERT_FALSE(set.ok()) << c.flag;
    EXPECT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument) << set.status();
    EXPECT_TRUE(absl::StartsWith(set.status().message(), c.flag)) << set.status();
  }
  // Good calendar lists: bare origins, a trailing slash tolerated.
  ProviderSettings ok;
  ok.ots_calendars = "http://127.0.0.1:1, https://b.example/";
  ok.ots_min_calendars = 2;
  EXPECT_TRUE(ProviderSet::Create(ok, nullptr).ok());
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
  const auto dir =
      std::filesystem::temp_directory_path() / ("providers_factory_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto key_file = dir / "key";
  { std::ofstream(key_file) << "file-key-abcdef\n"; }
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
  auto p =
      (*set)->Default()->PrepareCreate({*Digest::FromHex(std::string(64, 'a')), "a.bin", 3, ""});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->idempotency_key, ProofdIdempotencyKey("file-key-abcdef", p->body));

  (*set)->Stop();
  EXPECT_EQ((*set)->limiter("proofd.general")->Acquire().status().code(),
            absl::StatusCode::kCancelled);
  std::filesystem::remove_all(dir);
}

TEST(ProviderFlags, ParseFlagsAndEnvironment) {
  ::setenv("ANCHORD_PROOFD_WINDOW_SECONDS", "1.5", 1);
  ::setenv("ANCHORD_PROVIDERS", "simpleproof,ots", 1);
  ::setenv("ANCHORD_SIMPLEPROOF_BATCH_SIZE", "12", 1);
  ::setenv("ANCHORD_PROOFLEDGER_VERIFY_WINDOW_SECONDS", "1800", 1);
  ProviderSettings s;
  CLI::App app;
  AddProviderFlags(app, &s);
  std::vector<std::string> args = {"--proofd-general-limit",
                                   "60",
                                   "--proofd-url",
                                   "http://127.0.0.1:9",
                                   "--proofd-create-limit",
                                   "3",
                                   "--proofledger-url",
                                   "http://127.0.0.1:8",
                                   "--proofledger-api-key-file",
                                   "/run/pl",
                                   "--proofledger-create-limit",
                                   "4",
                                   "--proofledger-window-seconds",
                                   "30",
                                   "--proofledger-verify-limit",
                                   "100",
                                   "--simpleproof-url",
                                   "http://127.0.0.1:7",
                                   "--simpleproof-api-key",
                                   "tok-123",
                                   "--simpleproof-limit",
                                   "20",
                                   "--simpleproof-window-seconds",
                                   "10",
                                   "--simpleproof-callback-url",
                                   "https://hooks.example/sp",
                                   "--ots-calendars",
                                   "http://127.0.0.1:5,http://127.0.0.1:6",
                                   "--ots-min-calendars",
                                   "1",
                                   "--ots-timeout-seconds",
                                   "2.5",
                                   "--ots-calendar-limit",
                                   "30"};
  std::reverse(args.begin(), args.end());  // CLI11 takes the vector reversed
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    FAIL() << e.what();
  }
  ::unsetenv("ANCHORD_PROOFD_WINDOW_SECONDS");
  ::unsetenv("ANCHORD_PROVIDERS");
  ::unsetenv("ANCHORD_SIMPLEPROOF_BATCH_SIZE");
  ::unsetenv("ANCHORD_PROOFLEDGER_VERIFY_WINDOW_SECONDS");
  EXPECT_EQ(s.proofd_general_limit, 60);
  EXPECT_EQ(s.proofd_create_limit, 3);
  EXPECT_EQ(s.proofd_url, "http://127.0.0.1:9");
  EXPECT_DOUBLE_EQ(s.proofd_window_seconds, 1.5);
  // Empty: chosen by the rule (proofd with a proofd key, else ots).
  EXPECT_EQ(s.default_provider, "");
  EXPECT_EQ(s.providers, "simpleproof,ots");
  EXPECT_EQ(s.proofledger_url, "http://127.0.0.1:8");
  EXPECT_EQ(s.proofledger_api_key_file, "/run/pl");
  EXPECT_EQ(s.proofledger_create_limit, 4);
  EXPECT_DOUBLE_EQ(s.proofledger_window_seconds, 30);
  EXPECT_EQ(s.proofledger_verify_limit, 100);
  EXPECT_DOUBLE_EQ(s.proofledger_verify_window_seconds, 1800);
  EXPECT_EQ(s.simpleproof_url, "http://127.0.0.1:7");
  EXPECT_EQ(s.simpleproof_api_key, "tok-123");
  EXPECT_EQ(s.simpleproof_limit, 20);
  EXPECT_DOUBLE_EQ(s.simpleproof_window_seconds, 10);
  EXPECT_EQ(s.simpleproof_callback_url, "https://hooks.example/sp");
  EXPECT_EQ(s.simpleproof_batch_size, 12);
  EXPECT_EQ(s.ots_calendars, "http://127.0.0.1:5,http://127.0.0.1:6");
  EXPECT_EQ(s.ots_min_calendars, 1);
  EXPECT_DOUBLE_EQ(s.ots_timeout_seconds, 2.5);
  EXPECT_EQ(s.ots_calendar_limit, 30);

  // Defaults of the new flags.
  ProviderSettings d;
  EXPECT_EQ(d.proofledger_verify_limit, 120);
  EXPECT_DOUBLE_EQ(d.proofledger_verify_window_seconds, 3600);
  EXPECT_EQ(d.simpleproof_batch_size, 25);
  EXPECT_EQ(d.ots_min_calendars, 2);
  EXPECT_DOUBLE_EQ(d.ots_timeout_seconds, 5);
}

TEST(ProviderFlags, EveryFlagHasItsEnvironmentVariable) {
  ProviderSettings s;
  CLI::App app;
  AddProviderFlags(app, &s);
  int checked = 0;
  for (const CLI::Option* o : app.get_options()) {
    if (o->get_lnames().empty() || o->get_lnames()[0] == "help") continue;
    const std::string flag = o->get_lnames()[0];
    std::string env = "ANCHORD_";
    for (char c : flag) env += c == '-' ? '_' : static_cast<char>(toupper(c));
    EXPECT_EQ(o->get_envname(), env) << flag;
    ++checked;
  }
  EXPECT_EQ(checked, 2 + 6 + 7 + 7 + 4 + 6);  // ..., calendars, TSAs
}

}  // namespace
}  // namespace anchord::providers
