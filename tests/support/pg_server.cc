#include "tests/support/pg_server.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "libs/common/loopback_port.h"
#include "libs/ledger/pg_db.h"

namespace anchord::testing {
namespace {

std::string Tail(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  return s.size() > 2000 ? s.substr(s.size() - 2000) : s;
}

}  // namespace

std::string PgCtlScript() { return std::string(ANCHORD_SOURCE_DIR) + "/tests/support/pg_ctl.sh"; }

absl::Status PgServer::Script(const std::string& args) const {
  const std::string log = dir_ + ".ctl.log";
  // One initdb per machine and user, copied for every server (pg_ctl.sh PG_TEMPLATE).
  const std::string tmpl =
      (std::filesystem::temp_directory_path() / absl::StrCat("anchord_pg15_template_", getuid()))
          .string();
  const std::string cmd = absl::StrCat("PG_TEMPLATE='", tmpl, "' bash '", PgCtlScript(), "' ", args,
                                       " >'", log, "' 2>&1");
  int rc = std::system(cmd.c_str());
  if (rc != 0) {
    return absl::UnavailableError(absl::StrCat("pg_ctl.sh ", args, " failed (", rc,
                                               "): ", Tail(log), Tail(dir_ + "/server.log")));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<PgServer>> PgServer::Start() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "anchord_pg_XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) return absl::InternalError("mkdtemp failed");
  absl::Status last;
  // A port can be taken between choosing and binding it: a few tries, each with a new port.
  for (int attempt = 0; attempt < 3; ++attempt) {
    const int port = ReserveLoopbackPort();
    if (port <= 0) return absl::UnavailableError("no free loopback port");
    std::unique_ptr<PgServer> s(new PgServer(tmpl, port));
    last = s->Script(absl::StrCat("start '", tmpl, "' ", port));
    if (last.ok()) return s;
    s->dir_.clear();  // keep the data dir for the next attempt
  }
  std::error_code ec;
  std::filesystem::remove_all(tmpl, ec);
  return last;
}

PgServer* PgServer::Shared() {
  static std::once_flag once;
  static std::unique_ptr<PgServer> shared;
  std::call_once(once, [] {
    absl::StatusOr<std::unique_ptr<PgServer>> s = Start();
    if (!s.ok()) {
      std::cerr << "PostgreSQL test server: " << s.status() << std::endl;
      return;
    }
    shared = std::move(*s);
  });
  return shared.get();
}

PgServer::~PgServer() {
  if (dir_.empty()) return;
  (void)Script(absl::StrCat("stop '", dir_, "'"));
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
  std::filesystem::remove(dir_ + ".ctl.log", ec);
}

std::string PgServer::Url(const std::string& db) const {
  return absl::StrCat("postgresql://postgres@127.0.0.1:", port_, "/", db);
}

absl::StatusOr<std::string> PgServer::CreateDatabase() {
  static std::atomic<int> counter{0};
  const std::string name = absl::StrCat("t", getpid(), "_", counter.fetch_add(1));
  ledger::PgOptions opts;
  opts.pool_size = 1;
  opts.retry_for = absl::Seconds(10);
  absl::StatusOr<std::unique_ptr<ledger::PgDb>> admin = ledger::PgDb::Open(Url(), opts);
  if (!admin.ok()) return admin.status();
  absl::Status st = (*admin)->Run(
      [&](ledger::PgConn& c) { return c.ExecScript(absl::StrCat("CREATE DATABASE ", name)); });
  if (!st.ok()) return st;
  return Url(name);
}

absl::StatusOr<std::string> CreateSharedDatabase() {
  PgServer* server = PgServer::Shared();
  if (server == nullptr) {
    return absl::UnavailableError("PostgreSQL must be installed (Debian package postgresql)");
  }
  return server->CreateDatabase();
}

absl::Status PgServer::Stop() { return Script(absl::StrCat("stop '", dir_, "'")); }
absl::Status PgServer::StartAgain() { return Script(absl::StrCat("start '", dir_, "' ", port_)); }
absl::Status PgServer::Restart() {
  absl::Status st = Stop();
  if (!st.ok()) return st;
  return StartAgain();
}

}  // namespace anchord::testing
