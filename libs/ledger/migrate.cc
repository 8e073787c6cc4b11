#include "libs/ledger/migrate.h"

#include "absl/strings/str_cat.h"
#include "libs/common/log.h"

namespace anchord::ledger {
namespace {

// One advisory lock key for every component's migrations: they also share the schema_version
// table, whose CREATE must not race. ("anchord" in ASCII, bit 62 set.)
constexpr int64_t kMigrateLockKey = 0x4000616e63686f72;

constexpr char kVersionTable[] =
    "CREATE TABLE IF NOT EXISTS schema_version (component TEXT NOT NULL, version INTEGER NOT NULL, "
    "what TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), "
    "PRIMARY KEY (component, version))";

absl::StatusOr<int> CurrentVersion(PgConn& c, absl::string_view component) {
  absl::StatusOr<PgResult> r =
      c.Exec("SELECT COALESCE(MAX(version), 0)::bigint FROM schema_version WHERE component = $1",
             PgParams().Add(component));
  if (!r.ok()) return r.status();
  return static_cast<int>(r->Int(0, 0));
}

}  // namespace

absl::StatusOr<int> Migrate(PgDb& db, absl::string_view component,
                            const std::vector<Migration>& migrations) {
  const int known = migrations.empty() ? 0 : migrations.back().version;
  int applied = 0;
  absl::Status st = db.Tx([&](PgConn& c) -> absl::Status {
    applied = 0;
    absl::StatusOr<PgResult> lock =
        c.Exec("SELECT pg_advisory_xact_lock($1)", PgParams().Add(kMigrateLockKey));
    if (!lock.ok()) return lock.status();
    if (absl::Status s = c.ExecScript(kVersionTable); !s.ok()) return s;
    absl::StatusOr<int> have = CurrentVersion(c, component);
    if (!have.ok()) return have.status();
    if (*have > known) {
      return absl::FailedPreconditionError(absl::StrCat(
          "database schema of ", component, " is version ", *have,
          ", newer than this release knows (", known,
          "): a newer anchord migrated it; run that release (or newer), not this one"));
    }
    for (const Migration& m : migrations) {
      if (m.version <= *have) continue;
      if (absl::Status s = c.ExecScript(m.sql); !s.ok()) {
        return absl::Status(s.code(), absl::StrCat("migration ", component, " ", m.version, " (",
                                                   m.what, "): ", s.message()));
      }
      absl::StatusOr<PgResult> rec =
          c.Exec("INSERT INTO schema_version (component, version, what) VALUES ($1, $2, $3)",
                 PgParams().Add(component).Add(m.version).Add(m.what));
      if (!rec.ok()) return rec.status();
      ++applied;
    }
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  if (applied > 0) {
    ANCHORD_LOG(Info) << "database schema of " << component << " migrated to version " << known
                      << " (" << applied << " migration" << (applied == 1 ? "" : "s") << ")";
  }
  return applied;
}

absl::StatusOr<int> SchemaVersion(PgDb& db, absl::string_view component) {
  int v = 0;
  absl::Status st = db.Run([&](PgConn& c) -> absl::Status {
    absl::StatusOr<PgResult> t = c.Exec("SELECT to_regclass('schema_version') IS NOT NULL");
    if (!t.ok()) return t.status();
    if (t->Int(0, 0) == 0) {
      v = 0;
      return absl::OkStatus();
    }
    absl::StatusOr<int> have = CurrentVersion(c, component);
    if (!have.ok()) return have.status();
    v = *have;
    return absl::OkStatus();
  });
  if (!st.ok()) return st;
  return v;
}

}  // namespace anchord::ledger
