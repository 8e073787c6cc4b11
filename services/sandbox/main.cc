// anchord-sandbox: the proofd.id v1 emulator as a process. Runs until SIGTERM or SIGINT.
//
//   anchord-sandbox --listen 127.0.0.1:0 --port-file /tmp/sandbox.port
//
// Every flag can also be set from the environment variable named in its help (ANCHORD_SANDBOX_*).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "libs/common/log.h"
#include "libs/common/secret.h"
#include "libs/rpc/server.h"
#include "services/sandbox/sandbox.h"

namespace {

int Run(int argc, char** argv) {
  anchord::rpc::BlockTerminationSignals();

  CLI::App app{"anchord-sandbox: local proofd.id v1 emulator with rate limits and faults"};
  std::string listen = "127.0.0.1:0";
  std::string port_file;
  std::vector<std::string> api_keys;
  std::string api_key_file;
  std::vector<std::string> not_entitled;
  int64_t monthly_quota = 0;
  double confirm_after = 5;
  double window = 60;
  int general_limit = 120, create_key_limit = 30, create_ip_limit = 60;
  double error_rate = 0, drop_rate = 0, storm_seconds = 0;
  int latency_ms = 0;
  uint64_t seed = 1;
  std::string public_base_url = "https://proofd.id";
  int64_t first_block_height = 900000;
  int threads = 32;
  std::string log_level = "info";

  app.add_option("--listen", listen, "host:port to serve on (port 0 picks one)")
      ->envname("ANCHORD_SANDBOX_LISTEN");
  app.add_option("--port-file", port_file, "write the bound port here once listening")
      ->envname("ANCHORD_SANDBOX_PORT_FILE");
  app.add_option("--api-key", api_keys, "accepted API key (repeatable; env: comma-separated)")
      ->delimiter(',')
      ->envname("ANCHORD_SANDBOX_API_KEYS");
  app.add_option("--api-key-file", api_key_file, "file holding one more accepted API key")
      ->envname("ANCHORD_SANDBOX_API_KEY_FILE");
  app.add_option("--not-entitled-key", not_entitled,
                 "key answered 403 PLAN_NOT_ENTITLED (repeatable; env: comma-separated)")
      ->delimiter(',')
      ->envname("ANCHORD_SANDBOX_NOT_ENTITLED_KEYS");
  app.add_option("--monthly-quota", monthly_quota, "creates per account, 0 = unlimited")
      ->envname("ANCHORD_SANDBOX_MONTHLY_QUOTA");
  app.add_option("--confirm-after-seconds", confirm_after, "pending -> confirmed delay")
      ->envname("ANCHORD_SANDBOX_CONFIRM_AFTER_SECONDS");
  app.add_option("--window-seconds", window, "rate-limit window (the doc's is 60)")
      ->envname("ANCHORD_SANDBOX_WINDOW_SECONDS");
  app.add_option("--general-limit", general_limit, "requests per window per key")
      ->envname("ANCHORD_SANDBOX_GENERAL_LIMIT");
  app.add_option("--create-key-limit", create_key_limit, "creates per window per key")
      ->envname("ANCHORD_SANDBOX_CREATE_KEY_LIMIT");
  app.add_option("--create-ip-limit", create_ip_limit, "creates per window per source IP")
      ->envname("ANCHORD_SANDBOX_CREATE_IP_LIMIT");
  app.add_option("--error-rate", error_rate, "fraction of /api requests answered 500/502")
      ->envname("ANCHORD_SANDBOX_ERROR_RATE");
  app.add_option("--drop-rate", drop_rate, "fraction of /api responses cut off mid-body")
      ->envname("ANCHORD_SANDBOX_DROP_RATE");
  app.add_option("--latency-ms", latency_ms, "delay added to every /api request")
      ->envname("ANCHORD_SANDBOX_LATENCY_MS");
  app.add_option("--storm-seconds", storm_seconds, "429 storm for this long from start")
      ->envname("ANCHORD_SANDBOX_STORM_SECONDS");
  app.add_option("--seed", seed, "PRNG seed (faults, ids, nonces)")->envname("ANCHORD_SANDBOX_SEED");
  app.add_option("--public-base-url", public_base_url, "base of certificate_url and verify_url")
      ->envname("ANCHORD_SANDBOX_PUBLIC_BASE_URL");
  app.add_option("--first-block-height", first_block_height, "height of the first fake block")
      ->envname("ANCHORD_SANDBOX_FIRST_BLOCK_HEIGHT");
  app.add_option("--threads", threads, "HTTP worker threads (min 32)")
      ->envname("ANCHORD_SANDBOX_THREADS");
  app.add_option("--log-level", log_level, "debug|info|warning|error")
      ->envname("ANCHORD_SANDBOX_LOG_LEVEL");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  anchord::InitLogging("sandbox", anchord::ParseLogLevel(log_level));

  anchord::sandbox::SandboxOptions opt;
  const auto colon = listen.rfind(':');
  if (colon == std::string::npos || !absl::SimpleAtoi(listen.substr(colon + 1), &opt.port) ||
      opt.port < 0 || opt.port > 65535) {
    ANCHORD_LOG(Error) << "--listen must be host:port, got " << listen;
    return 2;
  }
  opt.host = listen.substr(0, colon);
  if (opt.host.size() >= 2 && opt.host.front() == '[' && opt.host.back() == ']') {
    opt.host = opt.host.substr(1, opt.host.size() - 2);
  }
  // Keys are registered with the log scrubber so they never reach a log line.
  std::vector<std::string> keys;
  for (const auto& k : api_keys) {
    auto loaded = anchord::LoadSecret("sandbox API key", k, "");
    if (loaded.ok() && !loaded->empty()) keys.push_back(*loaded);
  }
  if (!api_key_file.empty()) {
    auto loaded = anchord::LoadSecret("sandbox API key", "", api_key_file);
    if (!loaded.ok()) {
      ANCHORD_LOG(Error) << loaded.status();
      return 2;
    }
    keys.push_back(*loaded);
  }
  if (keys.empty()) keys.push_back("proofd_live_sandbox");
  for (const auto& k : not_entitled) anchord::RegisterSecret(k);
  opt.api_keys = keys;
  opt.not_entitled_keys = not_entitled;
  opt.monthly_quota = monthly_quota;
  opt.confirm_after = absl::Seconds(std::max(0.0, confirm_after));
  opt.window = absl::Seconds(window > 0 ? window : 60);
  opt.general_limit = general_limit;
  opt.create_key_limit = create_key_limit;
  opt.create_ip_limit = create_ip_limit;
  opt.faults.error_rate = error_rate;
  opt.faults.drop_rate = drop_rate;
  opt.faults.latency_ms = latency_ms;
  opt.faults.storm_seconds = storm_seconds;
  opt.seed = seed;
  opt.public_base_url = public_base_url;
  opt.first_block_height = first_block_height;
  opt.threads = threads;

  auto sandbox = anchord::sandbox::Sandbox::Start(opt);
  if (!sandbox.ok()) {
    ANCHORD_LOG(Error) << sandbox.status();
    return 1;
  }
  const int port = (*sandbox)->port();
  if (!port_file.empty()) {
    if (auto st = anchord::rpc::WriteFileAtomically(port_file, absl::StrCat(port, "\n")); !st.ok()) {
      ANCHORD_LOG(Error) << st;
      return 1;
    }
  }
  ANCHORD_LOG(Info) << "sandbox: proofd.id v1 emulator listening on " << opt.host << ":" << port
                    << " (" << keys.size() << " key(s), window " << window << " s)";
  const int sig = anchord::rpc::WaitForTerminationSignal();
  ANCHORD_LOG(Info) << "sandbox: signal " << sig << ", stopping";
  (*sandbox)->Stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "anchord-sandbox: fatal: %s\n", e.what());
    return 1;
  }
}
