// A throwaway PostgreSQL server for tests: `initdb` in a fresh temp dir, then
// `postgres` itself as a child of the test, listening only on a Unix socket in
// that dir (no TCP port to race for), trust authentication for user "kpay" (or
// a password, when asked for), and a database created for the test.
//
// PostgreSQL refuses to run as root, and CI runs the tests as root: then the
// server runs as `nobody` (the dir chowned to it). The server is the test's
// child with a parent-death signal (SIGQUIT: immediate shutdown), so a test
// that crashes or is killed leaves no server behind; the destructor stops it
// and removes the dir. fsync is off (the server's durability against an OS
// crash is not what tests exercise; a server restart or crash keeps every
// committed transaction). initdb runs once per machine into a template
// (<tmp>/kpay-pg-template-<uid>-<n>, kept as a cache) that each server
// copies, so a suite's server starts in about a second.
//
// The server programs come from KPAY_PG_BINDIR (CMake: `pg_config --bindir`,
// else /usr/lib/postgresql/15/bin).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

namespace kpay::test {

class PostgresServer {
 public:
  struct Options {
    std::string database = "kpay";
    // Set: password authentication (scram-sha-256) for user "kpay" with it.
    std::optional<std::string> password;
  };
  PostgresServer() : PostgresServer(Options{}) {}
  explicit PostgresServer(Options options);
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // libpq connection string for the test database (or another one), without
  // the password.
  std::string dsn() const { return dsn(options_.database); }
  std::string dsn(const std::string& database) const;
  void create_database(const std::string& name);
  // Runs SQL as the superuser in the test database (or another one).
  void execute(const std::string& sql);
  void execute(const std::string& sql, const std::string& database);
  // The next `count` transactions that insert into `table` fail at COMMIT
  // with SQLSTATE 40001, as a serialization failure would (a deferred
  // constraint trigger; `table` a plain identifier). The sequence
  // `<table>_commits` counts the rows that reached COMMIT.
  void fail_commits_writing(const std::string& table, int count);

  // Fast shutdown (clients are disconnected, transactions in progress roll
  // back), then the same data started again.
  void restart();
  // Immediate shutdown (a crash: recovery from WAL on the next start).
  void crash();
  void stop();   // fast shutdown; start() brings it back
  void start();  // returns once it accepts connections
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  const std::string& dir() const { return dir_; }
  std::string log() const;  // the server's log so far

 private:
  static std::string trust_template();
  void init_cluster();
  void shutdown(int sig);
  Options options_;
  std::string dir_;
  pid_t pid_ = -1;
};

}  // namespace kpay::test
