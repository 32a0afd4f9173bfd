// The benchmarks' PostgreSQL: a throwaway test server (tests/support/
// postgres_server, fsync off for tests) made durable for a measurement:
// fsync and full_page_writes on, shared_buffers 128 MB, max_wal_size 1 GB,
// then restarted. Throws std::runtime_error when fsync is not on after.
// `statement_stats`: pg_stat_statements loaded too (calls, execution and
// planning time per statement), for a profile of where the server's time goes.
#pragma once

#include <libpq-fe.h>

#include <stdexcept>
#include <string>

#include "postgres_server.hpp"

namespace kpay::bench {

inline void make_durable(test::PostgresServer& server, bool statement_stats = false) {
  PGconn* c = PQconnectdb(server.dsn("postgres").c_str());
  for (const char* sql :
       {"ALTER SYSTEM SET fsync = on", "ALTER SYSTEM SET full_page_writes = on",
        "ALTER SYSTEM SET shared_buffers = '128MB'", "ALTER SYSTEM SET max_wal_size = '1GB'"}) {
    PQclear(PQexec(c, sql));
  }
  if (statement_stats) {
    for (const char* sql : {"ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'",
                            "ALTER SYSTEM SET pg_stat_statements.track_planning = on",
                            "ALTER SYSTEM SET pg_stat_statements.track_utility = on"}) {
      PQclear(PQexec(c, sql));
    }
  }
  PQfinish(c);
  server.restart();
  c = PQconnectdb(server.dsn("postgres").c_str());
  PGresult* r = PQexec(c, "SHOW fsync");
  const bool on = PQresultStatus(r) == PGRES_TUPLES_OK && std::string(PQgetvalue(r, 0, 0)) == "on";
  PQclear(r);
  PQfinish(c);
  if (!on) throw std::runtime_error("the benchmark's PostgreSQL is not durable (fsync off)");
}

}  // namespace kpay::bench
