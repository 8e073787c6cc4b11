// anchord-sandbox: the provider emulator as a process (proofd.id v1, ProofLedger v1, SimpleProof
// on the main port; OpenTimestamps calendars on their own ports). Runs until SIGTERM or SIGINT.
//
//   anchord-sandbox --listen 127.0.0.1:0 --port-file /tmp/sandbox.port
//                   --calendar-urls-file /tmp/sandbox.calendars
//
// Every flag can also be set from the environment (ANCHORD_SANDBOX_*, see EnvName).
#include <CLI/CLI.hpp>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "libs/common/atomic_file.h"
#include "libs/common/build_info.h"
#include "libs/common/log.h"
#include "libs/common/secret.h"
#include "libs/rpc/server.h"
#include "services/sandbox/sandbox.h"

namespace {

// Seconds from a flag: negative, NaN or absurd values fall back to `fallback`.
absl::Duration FlagSeconds(double v, double fallback) {
  return absl::Seconds(std::isfinite(v) && v >= 0 && v <= 1e9 ? v : fallback);
}

// Keys and tokens from repeatable flags plus an optional file, registered with the log scrubber.
// Empty when neither gives one (the caller keeps its default).
absl::StatusOr<std::vector<std::string>> LoadKeys(const char* what,
                                                  const std::vector<std::string>& values,
                                                  const std::string& file) {
  std::vector<std::string> keys;
  for (const auto& k : values) {
    auto loaded = anchord::LoadSecret(what, k, "");
    if (loaded.ok() && !loaded->empty()) keys.push_back(*loaded);
  }
  if (!file.empty()) {
    auto loaded = anchord::LoadSecret(what, "", file);
    if (!loaded.ok()) return loaded.status();
    keys.push_back(*loaded);
  }
  return keys;
}

// Every flag can also be set from ANCHORD_SANDBOX_ and its name in upper snake case
// (--window-seconds: ANCHORD_SANDBOX_WINDOW_SECONDS); a repeatable flag's variable is the plural
// (--api-key: ANCHORD_SANDBOX_API_KEYS) and holds a comma-separated list.
std::string EnvName(const std::string& flag, bool plural) {
  std::string env =
      absl::StrCat("ANCHORD_SANDBOX_", absl::AsciiStrToUpper(flag.substr(2)), plural ? "S" : "");
  absl::StrReplaceAll({{"-", "_"}}, &env);
  return env;
}

template <typename T>
CLI::Option* Flag(CLI::App& app, const std::string& name, T& value, const std::string& help) {
  return app.add_option(name, value, help)->envname(EnvName(name, /*plural=*/false));
}

template <typename T>
CLI::Option* ListFlag(CLI::App& app, const std::string& name, std::vector<T>& values,
                      const std::string& help) {
  return app.add_option(name, values, help)
      ->delimiter(',')
      ->envname(EnvName(name, /*plural=*/true));
}

int Run(int argc, char** argv) {
  anchord::rpc::BlockTerminationSignals();

  CLI::App app{
      "anchord-sandbox: local emulator of proofd.id v1, ProofLedger v1, SimpleProof and "
      "OpenTimestamps calendars, with rate limits and faults"};
  app.set_version_flag("--version", anchord::BuildInfo());
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
  // ProofLedger v1
  std::vector<std::string> pl_keys, pl_not_entitled;
  std::string pl_key_file;
  int pl_create_limit = 60, pl_verify_limit = 120;
  double pl_verify_window = 3600;
  std::string pl_base_url = "https://proofledger.io";
  // SimpleProof
  std::vector<std::string> sp_tokens;
  std::string sp_token_file;
  int sp_limit = 60, callback_retries = 3;
  double callback_retry_seconds = 1, callback_timeout_seconds = 5, callback_drop_rate = 0;
  double ots_url_ttl = 1800;
  std::string sp_base_url = "https://verify.simpleproof.com";
  // OpenTimestamps calendars
  int calendars = 2, calendar_limit = 0;
  std::vector<int> calendar_ports;
  double pending_max_age = 60;
  std::string calendar_urls_file;
  std::string tsa_ca_out;
  int tsa_limit = 0;

  Flag(app, "--listen", listen, "host:port to serve on (port 0 picks one)");
  Flag(app, "--port-file", port_file, "write the bound port here once listening");
  ListFlag(app, "--api-key", api_keys, "accepted API key (repeatable; env: comma-separated)");
  Flag(app, "--api-key-file", api_key_file, "file holding one more accepted API key");
  ListFlag(app, "--not-entitled-key", not_entitled,
           "key answered 403 PLAN_NOT_ENTITLED (repeatable; env: comma-separated)");
  Flag(app, "--monthly-quota", monthly_quota, "creates per account, 0 = unlimited");
  Flag(app, "--confirm-after-seconds", confirm_after, "pending -> confirmed delay (every API)");
  Flag(app, "--window-seconds", window, "rate-limit window (the doc's is 60)");
  Flag(app, "--general-limit", general_limit, "requests per window per key");
  Flag(app, "--create-key-limit", create_key_limit, "creates per window per key");
  Flag(app, "--create-ip-limit", create_ip_limit, "creates per window per source IP");
  Flag(app, "--error-rate", error_rate, "fraction of /api requests answered 500/502");
  Flag(app, "--drop-rate", drop_rate, "fraction of /api responses cut off mid-body");
  Flag(app, "--latency-ms", latency_ms, "delay added to every /api request");
  Flag(app, "--storm-seconds", storm_seconds, "429 storm for this long from start");
  Flag(app, "--seed", seed, "PRNG seed (faults, ids, nonces)");
  Flag(app, "--public-base-url", public_base_url, "base of certificate_url and verify_url");
  Flag(app, "--first-block-height", first_block_height, "height of the first fake block");
  Flag(app, "--threads", threads, "HTTP worker threads (min 32)");
  Flag(app, "--log-level", log_level, "debug|info|warning|error");
  ListFlag(app, "--proofledger-api-key", pl_keys,
           "accepted ProofLedger key (repeatable; env: comma-separated; default sk_sandbox)");
  Flag(app, "--proofledger-api-key-file", pl_key_file, "file holding one more ProofLedger key");
  ListFlag(app, "--proofledger-not-entitled-key", pl_not_entitled,
           "ProofLedger key answered 403 (repeatable; env: comma-separated)");
  Flag(app, "--proofledger-create-limit", pl_create_limit,
       "ProofLedger creates per window per key (0 = unlimited)");
  Flag(app, "--proofledger-verify-limit", pl_verify_limit,
       "ProofLedger verify requests per verify window per IP (doc: 120)");
  Flag(app, "--proofledger-verify-window-seconds", pl_verify_window,
       "ProofLedger verify window (doc: 3600)");
  Flag(app, "--proofledger-public-base-url", pl_base_url, "base of ProofLedger certificate_url");
  ListFlag(app, "--simpleproof-token", sp_tokens,
           "accepted SimpleProof x-access-token (repeatable; env: comma-separated; default "
           "sp_sandbox_token)");
  Flag(app, "--simpleproof-token-file", sp_token_file, "file holding one more SimpleProof token");
  Flag(app, "--simpleproof-limit", sp_limit, "SimpleProof requests per window per token");
  Flag(app, "--simpleproof-public-base-url", sp_base_url,
       "base of SimpleProof url / verification_link");
  Flag(app, "--callback-retries", callback_retries, "SimpleProof callback retries after a non-2xx");
  Flag(app, "--callback-retry-seconds", callback_retry_seconds, "time between callback attempts");
  Flag(app, "--callback-timeout-seconds", callback_timeout_seconds,
       "timeout of one callback attempt");
  Flag(app, "--callback-drop-rate", callback_drop_rate, "fraction of callbacks lost entirely");
  Flag(app, "--ots-url-ttl-seconds", ots_url_ttl,
       "lifetime of SimpleProof ots_download_url (doc: 1800)");
  Flag(app, "--calendars", calendars, "OpenTimestamps calendars, one port each (0..16)");
  ListFlag(app, "--calendar-port", calendar_ports,
           "port of the next calendar (repeatable; env: comma-separated; 0 = free port)");
  Flag(app, "--pending-max-age-seconds", pending_max_age,
       "Cache-Control max-age of a calendar's pending 404 (reference: 60)");
  Flag(app, "--calendar-limit", calendar_limit, "POST /digest per window per IP, 0 = unlimited");
  Flag(app, "--calendar-urls-file", calendar_urls_file,
       "write the calendar URLs here (one per line) once listening");
  Flag(app, "--tsa-ca-out", tsa_ca_out,
       "write the test CA certificate of POST /tsa here (PEM) once listening; also "
       "served at GET /tsa/ca.pem");
  Flag(app, "--tsa-limit", tsa_limit, "POST /tsa per window per client IP (0 = unlimited)")
      ->capture_default_str();
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
  auto proofd_keys = LoadKeys("sandbox API key", api_keys, api_key_file);
  if (!proofd_keys.ok()) {
    ANCHORD_LOG(Error) << proofd_keys.status();
    return 2;
  }
  std::vector<std::string> keys = *std::move(proofd_keys);
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

  auto pl = LoadKeys("sandbox ProofLedger key", pl_keys, pl_key_file);
  auto sp = LoadKeys("sandbox SimpleProof token", sp_tokens, sp_token_file);
  for (const auto* loaded : {&pl, &sp}) {
    if (!loaded->ok()) {
      ANCHORD_LOG(Error) << loaded->status();
      return 2;
    }
  }
  if (!pl->empty()) opt.proofledger_api_keys = *pl;
  for (const auto& k : pl_not_entitled) anchord::RegisterSecret(k);
  opt.proofledger_not_entitled_keys = pl_not_entitled;
  opt.proofledger_create_limit = pl_create_limit;
  opt.proofledger_verify_limit = pl_verify_limit;
  opt.proofledger_verify_window = FlagSeconds(pl_verify_window > 0 ? pl_verify_window : -1, 3600);
  opt.proofledger_public_base_url = pl_base_url;
  if (!sp->empty()) opt.simpleproof_tokens = *sp;
  opt.simpleproof_limit = sp_limit;
  opt.simpleproof_public_base_url = sp_base_url;
  opt.callback_retries = callback_retries;
  opt.callback_retry_interval = FlagSeconds(callback_retry_seconds, 1);
  opt.callback_timeout =
      FlagSeconds(callback_timeout_seconds > 0 ? callback_timeout_seconds : -1, 5);
  opt.faults.callback_drop_rate = callback_drop_rate;
  opt.ots_url_ttl = FlagSeconds(ots_url_ttl, 1800);
  opt.calendars = calendars;
  opt.calendar_ports = calendar_ports;
  opt.pending_max_age = FlagSeconds(pending_max_age, 60);
  opt.calendar_limit = calendar_limit;
  opt.tsa_limit = tsa_limit;

  auto sandbox = anchord::sandbox::Sandbox::Start(opt);
  if (!sandbox.ok()) {
    ANCHORD_LOG(Error) << sandbox.status();
    return 1;
  }
  // The calendar URLs first: a script that waits for the port file then finds them too.
  const std::vector<std::string> urls = (*sandbox)->calendar_urls();
  if (!calendar_urls_file.empty()) {
    std::string content;
    for (const auto& u : urls) absl::StrAppend(&content, u, "\n");
    if (auto st = anchord::WriteFileAtomically(calendar_urls_file, content); !st.ok()) {
      ANCHORD_LOG(Error) << st;
      return 1;
    }
  }
  if (!tsa_ca_out.empty()) {
    if (auto st = anchord::WriteFileAtomically(tsa_ca_out, (*sandbox)->tsa_ca_pem()); !st.ok()) {
      ANCHORD_LOG(Error) << st;
      return 1;
    }
  }
  const int port = (*sandbox)->port();
  if (!port_file.empty()) {
    if (auto st = anchord::WriteFileAtomically(port_file, absl::StrCat(port, "\n")); !st.ok()) {
      ANCHORD_LOG(Error) << st;
      return 1;
    }
  }
  ANCHORD_LOG(Info) << "sandbox: proofd.id, ProofLedger and SimpleProof emulators listening on "
                    << opt.host << ":" << port << " (" << keys.size() << " proofd key(s), window "
                    << window << " s); " << urls.size()
                    << " calendar(s): " << absl::StrJoin(urls, " ") << "; RFC 3161 TSA at "
                    << (*sandbox)->tsa_url();
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
