// Shared by the PostgreSQL storage suites: one throwaway server per suite
// (tests/support/postgres_server.hpp) and a fresh database per test.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>

#include "postgres/pg.hpp"
#include "postgres_server.hpp"

namespace kpay::test {

class PgSuite : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = std::make_unique<PostgresServer>(); }
  static void TearDownTestSuite() { server_.reset(); }

  static PostgresServer& server() { return *server_; }
  // A database no other test used.
  static std::string fresh_database() {
    static std::atomic<int> n{0};
    std::string name = "t" + std::to_string(n.fetch_add(1));
    server_->create_database(name);
    return server_->dsn(name);
  }
  static storage::pg::Connection connect(const std::string& dsn) {
    storage::pg::ConnectOptions options;
    options.dsn = dsn;
    return storage::pg::Connection::open(options);
  }
  static storage::pg::Connection connect() { return connect(server_->dsn()); }

 private:
  static inline std::unique_ptr<PostgresServer> server_;
};

}  // namespace kpay::test
