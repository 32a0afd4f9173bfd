// The PostgreSQL state schema and its migrations (pg_schema.cpp).
//
// Versions follow the SQLite state schema's (state_schema.cpp): PostgreSQL's
// list starts at 9, one migration that creates what SQLite has after its
// migration 9, and every later change gets the same number in both lists, so
// "version N" means the same tables on either backend (what a copy from one
// to the other checks). Applied versions are recorded in `schema_version`;
// a database whose version is newer than this binary knows is refused
// (SchemaTooNewError) and left untouched. Several processors may start at
// once: migrating holds a transaction-scoped advisory lock.
#pragma once

#include <span>

#include "kpay/storage/migrations.hpp"
#include "postgres/pg.hpp"

namespace kpay::storage::pg {

// Advisory lock keys (pg_advisory_xact_lock): one per job that must run on
// one processor at a time.
inline constexpr std::int64_t kMigrationLockKey = 0x6b70617901;     // "kpay" 1
inline constexpr std::int64_t kPublishDrainLockKey = 0x6b70617902;  // "kpay" 2

std::span<const Migration> state_migrations();

// Applies the migrations newer than the database's version, all in one
// transaction; returns the version after. Throws SchemaTooNewError.
int migrate(Connection& c, std::span<const Migration> migrations);
inline int migrate(Connection& c) {
  return migrate(c, state_migrations());
}
// 0 for a database no migration ran on.
int schema_version(Connection& c);

}  // namespace kpay::storage::pg
