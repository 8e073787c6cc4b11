// A real PostgreSQL server for tests: initdb + pg_ctl (tests/support/pg_ctl.sh) in a fresh
// temporary directory, on a free loopback port, as an unprivileged user (`postgres` via runuser
// when the test runs as root, since PostgreSQL refuses to run as root). Each test takes its own
// database (CreateDatabase), so tests never see each other's rows.
//
// Shell scripts (chaos tests, benchmarks) use the same script directly:
//   tests/support/pg_ctl.sh start DIR PORT | stop DIR | restart DIR PORT | url DIR PORT [DB]
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace anchord::testing {

class PgServer {
 public:
  // Starts a new server (initdb takes about a second). UNAVAILABLE when PostgreSQL is not
  // installed or does not start; the message carries the end of the server's log.
  static absl::StatusOr<std::unique_ptr<PgServer>> Start();
  // One server shared by every test of the process, started on first use and stopped at exit.
  // nullptr when it cannot start (the reason is printed to stderr once).
  static PgServer* Shared();
  // Stops the server and removes its directory.
  ~PgServer();

  int port() const { return port_; }
  const std::string& dir() const { return dir_; }
  // postgresql://postgres@127.0.0.1:PORT/DB (trust authentication on loopback).
  std::string Url(const std::string& db = "postgres") const;
  // A new empty database with a unique name; returns its URL.
  absl::StatusOr<std::string> CreateDatabase();

  // Fast shutdown (clients are disconnected), then start again on the same port and data.
  absl::Status Stop();
  absl::Status StartAgain();
  absl::Status Restart();

 private:
  PgServer(std::string dir, int port) : dir_(std::move(dir)), port_(port) {}
  absl::Status Script(const std::string& args) const;

  std::string dir_;
  int port_;
  int next_db_ = 0;
};

// A new empty database on the process's shared server (PgServer::Shared()); returns its URL.
// UNAVAILABLE naming the Debian package when the server cannot start.
absl::StatusOr<std::string> CreateSharedDatabase();

// The path of tests/support/pg_ctl.sh in the source tree.
std::string PgCtlScript();

}  // namespace anchord::testing
