// The storage contract suite (tests/storage/, storage/README.md) run against
// the PostgreSQL backend: one throwaway server for the whole run
// (tests/support/postgres_server.hpp), a fresh database per test.
#include <libpq-fe.h>

#include <atomic>
#include <cstdlib>
#include <memory>

#include "kpay/storage/postgres.hpp"
#include "postgres_server.hpp"
#include "store_contract.hpp"

namespace kpay::storage::contract {

namespace {

kpay::test::PostgresServer& server() {
  static kpay::test::PostgresServer s;
  return s;
}

class PostgresBackend final : public Backend {
 public:
  std::string name() const override { return "postgresql"; }
  std::unique_ptr<Store> open_fresh() override {
    static std::atomic<int> n{0};
    database_ = "contract" + std::to_string(n++);
    server().create_database(database_);
    settings_.dsn = server().dsn(database_);
    settings_.instance = "contract";
    return open_postgres_store(settings_);
  }
  std::unique_ptr<Store> open_again() override { return open_postgres_store(settings_); }
  std::optional<int> sessions_waiting_on_locks() override {
    PGconn* c = PQconnectdb(server().dsn(database_).c_str());
    PGresult* r = PQexec(c,
                         "SELECT count(*) FROM pg_stat_activity "
                         "WHERE datname = current_database() AND wait_event_type = 'Lock'");
    std::optional<int> n;
    if (PQresultStatus(r) == PGRES_TUPLES_OK) n = std::atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
    return n.value_or(0);
  }
  void clean_up() override {
    if (database_.empty()) return;
    PGconn* c = PQconnectdb(server().dsn("postgres").c_str());
    PQclear(PQexec(c, ("DROP DATABASE IF EXISTS " + database_ + " WITH (FORCE)").c_str()));
    PQfinish(c);
  }

 private:
  std::string database_;
  PostgresSettings settings_;
};

}  // namespace

std::vector<NamedFactory> backends() {
  return {
      {"postgresql", [] { return std::unique_ptr<Backend>(std::make_unique<PostgresBackend>()); }},
  };
}

}  // namespace kpay::storage::contract
