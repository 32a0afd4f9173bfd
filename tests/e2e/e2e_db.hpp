// The end-to-end suites' own look into the processor's state, read-only:
// a SQLite file, or a PostgreSQL database named by its libpq DSN
// ("host=… dbname=…" or "postgresql://…"), the same queries on either.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace kpay::test {

// True when `db` is a PostgreSQL DSN rather than a file.
bool is_postgres_dsn(const std::string& db);

// Every row of `sql`, each column as text (nullopt: NULL); empty when the
// database cannot be read yet (not created, not migrated, server down).
std::vector<std::vector<std::optional<std::string>>> select_rows(const std::string& db,
                                                                 const std::string& sql);

// On PostgreSQL, the SQLite functions the suites' queries use that it lacks
// (group_concat(x) and group_concat(x, separator)), created in the test's
// database. A no-op for SQLite.
void add_sqlite_functions(const std::string& db);

}  // namespace kpay::test
