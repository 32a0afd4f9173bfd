#include "e2e_db.hpp"

#include <libpq-fe.h>
#include <sqlite3.h>

#include <chrono>
#include <stdexcept>
#include <thread>

namespace kpay::test {

namespace {

using Rows = std::vector<std::vector<std::optional<std::string>>>;

// One read of `sql`; false when a step failed part-way (e.g. SQLITE_BUSY
// while the processor writes or a checkpoint runs): `out` is then not the
// whole answer.
bool read_sqlite(sqlite3* h, const std::string& sql, Rows& out, std::string& error) {
  out.clear();
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(h, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
    sqlite3_finalize(st);
    return true;  // no such table yet: no rows, as before
  }
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    std::vector<std::optional<std::string>> row;
    for (int i = 0; i < sqlite3_column_count(st); ++i) {
      const auto* t = sqlite3_column_text(st, i);
      row.push_back(t ? std::optional<std::string>(reinterpret_cast<const char*>(t))
                      : std::nullopt);
    }
    out.push_back(std::move(row));
  }
  if (rc != SQLITE_DONE) error = sqlite3_errmsg(h);
  sqlite3_finalize(st);
  return rc == SQLITE_DONE;
}

// A read that fails part-way is made again (20 attempts, 100 ms apart), never returned
// cut short: a check counting rows would report rows missing that are there.
Rows select_sqlite(const std::string& db, const std::string& sql) {
  Rows out;
  sqlite3* h = nullptr;
  if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(h);
    return out;
  }
  sqlite3_busy_timeout(h, 5000);
  std::string error;
  bool whole = false;
  for (int attempt = 0; attempt < 20 && !whole; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    whole = read_sqlite(h, sql, out, error);
  }
  sqlite3_close(h);
  if (!whole) throw std::runtime_error("reading " + db + " failed part-way: " + error);
  return out;
}

Rows select_postgres(const std::string& dsn, const std::string& sql) {
  Rows out;
  PGconn* c = PQconnectdb((dsn + " connect_timeout=5").c_str());
  if (PQstatus(c) == CONNECTION_OK) {
    PGresult* r = PQexec(c, sql.c_str());
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
      for (int i = 0; i < PQntuples(r); ++i) {
        std::vector<std::optional<std::string>> row;
        for (int j = 0; j < PQnfields(r); ++j) {
          row.push_back(PQgetisnull(r, i, j) ? std::nullopt
                                             : std::optional<std::string>(PQgetvalue(r, i, j)));
        }
        out.push_back(std::move(row));
      }
    }
    PQclear(r);
  }
  PQfinish(c);
  return out;
}

}  // namespace

bool is_postgres_dsn(const std::string& db) {
  return db.rfind("host=", 0) == 0 || db.rfind("postgresql://", 0) == 0 ||
         db.rfind("postgres://", 0) == 0;
}

Rows select_rows(const std::string& db, const std::string& sql) {
  return is_postgres_dsn(db) ? select_postgres(db, sql) : select_sqlite(db, sql);
}

void add_sqlite_functions(const std::string& db) {
  if (!is_postgres_dsn(db)) return;
  PGconn* c = PQconnectdb(db.c_str());
  PGresult* r = PQexec(
      c,
      "CREATE FUNCTION kpay_test_concat(acc TEXT, v TEXT, sep TEXT) RETURNS TEXT "
      "LANGUAGE sql IMMUTABLE AS $$ SELECT CASE WHEN v IS NULL THEN acc WHEN acc IS NULL "
      "THEN v ELSE acc || sep || v END $$; "
      "CREATE FUNCTION kpay_test_concat(acc TEXT, v TEXT) RETURNS TEXT LANGUAGE sql IMMUTABLE "
      "AS $$ SELECT kpay_test_concat(acc, v, ',') $$; "
      "CREATE AGGREGATE group_concat(TEXT, TEXT) (SFUNC = kpay_test_concat, STYPE = TEXT); "
      "CREATE AGGREGATE group_concat(TEXT) (SFUNC = kpay_test_concat, STYPE = TEXT);");
  PQclear(r);
  PQfinish(c);
}

}  // namespace kpay::test
