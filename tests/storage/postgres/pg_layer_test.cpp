// The libpq layer (storage/src/postgres/pg.hpp) against a real server:
// parameters and results, prepared statements, transactions, pipelines, and
// which failures are transient.
#include <gtest/gtest.h>

#include <climits>
#include <future>
#include <iostream>
#include <thread>

#include "kpay/storage/postgres.hpp"
#include "pg_test_support.hpp"
#include "postgres/pg_key_locks.hpp"

using kpay::storage::pg::Connection;
using kpay::storage::pg::Isolation;
using kpay::storage::pg::key_lock_id;
using kpay::storage::pg::KeyLocks;
using kpay::storage::pg::params;
using kpay::storage::pg::Params;
using kpay::storage::pg::PgError;
using kpay::storage::pg::Pipeline;
using kpay::storage::pg::Result;
using kpay::storage::pg::Transaction;

namespace kpay::test {
namespace {

class PgLayer : public PgSuite {};

std::int64_t count_prepared(Connection& c, const std::string& sql) {
  return c.query("SELECT count(*) FROM pg_prepared_statements WHERE statement = $1", params(sql))
      .int64(0, 0);
}

TEST_F(PgLayer, ParametersAndResultsRoundTrip) {
  auto c = connect(fresh_database());
  c.exec("CREATE TABLE t (i BIGINT, s TEXT, b BYTEA, f BOOLEAN, n BIGINT, p INTEGER)");
  const std::string bytes("\0\x01\xff' \\x00", 9);
  const std::string text = "ünïcode 'quoted' $1 \\ \"";
  Params p;
  p.add(std::int64_t{INT64_MIN}).add(text).add_bytes(bytes).add(true).add(std::nullopt).add(7);
  c.query("INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6)", p);
  c.query("INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6)",
          params(std::int64_t{INT64_MAX}, std::optional<std::string>{}, std::string(), false,
                 std::optional<std::int64_t>{42}, 0));
  Result r = c.query("SELECT i, s, b, f, n, p FROM t ORDER BY i");
  ASSERT_EQ(r.rows(), 2);
  EXPECT_EQ(r.int64(0, 0), INT64_MIN);
  EXPECT_EQ(r.text(0, 1), text);
  EXPECT_EQ(r.bytea(0, 2), bytes);
  EXPECT_TRUE(r.boolean(0, 3));
  EXPECT_EQ(r.optional_int64(0, 4), std::nullopt);
  EXPECT_EQ(r.int64(0, 5), 7);
  EXPECT_EQ(r.int64(1, 0), INT64_MAX);
  EXPECT_EQ(r.optional_text(1, 1), std::nullopt);
  EXPECT_EQ(r.bytea(1, 2), "");
  EXPECT_FALSE(r.boolean(1, 3));
  EXPECT_EQ(r.optional_int64(1, 4), 42);
  EXPECT_EQ(c.query("UPDATE t SET n = 1").affected(), 2);
}

TEST_F(PgLayer, PreparesEachStatementOncePerConnection) {
  auto c = connect(fresh_database());
  c.exec("CREATE TABLE t (k BIGINT PRIMARY KEY)");
  const std::string sql = "INSERT INTO t (k) VALUES ($1)";
  for (std::int64_t k = 0; k < 5; ++k) c.query(sql, params(k));
  EXPECT_EQ(count_prepared(c, sql), 1);
  EXPECT_EQ(c.query("SELECT count(*) FROM t").int64(0, 0), 5);
}

TEST_F(PgLayer, TransactionRollsBackUnlessCommitted) {
  auto c = connect(fresh_database());
  c.exec("CREATE TABLE t (k BIGINT PRIMARY KEY)");
  {
    Transaction tx(c);
    c.query("INSERT INTO t VALUES (1)");
  }
  {
    Transaction tx(c, Isolation::serializable);
    c.query("INSERT INTO t VALUES (2)");
    tx.commit();
  }
  Result r = c.query("SELECT k FROM t");
  ASSERT_EQ(r.rows(), 1);
  EXPECT_EQ(r.int64(0, 0), 2);
}

// A caller that catches a failed statement and commits anyway must learn that
// nothing was kept (PostgreSQL answers such a COMMIT with ROLLBACK).
// Serialisation keys (pg_key_locks.hpp): the ids never change (processors
// of two releases on one database must agree); a held key makes another
// session wait, at most its timeout (then 55P03, transient, and that session
// holds none of its keys, not even those it had taken); released, it is
// free.
TEST_F(PgLayer, KeyLocksAreStableBoundedAndLetGo) {
  EXPECT_EQ(key_lock_id("sender-day-total:limited"), 7489977231924726945);
  const std::string dsn = fresh_database();
  auto a = connect(dsn);
  auto b = connect(dsn);
  const std::string held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'";
  // `free` sorts before `taken`: b takes it, then waits for `taken`.
  std::string free = "free-0", taken = "taken";
  for (int i = 1; key_lock_id(free) > key_lock_id(taken); ++i) free = "free-" + std::to_string(i);
  const std::vector<std::string> mine{taken};
  const std::vector<std::string> theirs{taken, free};
  auto keys = std::make_unique<KeyLocks>(a, mine);
  EXPECT_EQ(b.query(held).int64(0, 0), 1);
  try {
    KeyLocks wait(b, theirs, std::chrono::milliseconds(100));
    ADD_FAILURE() << "a held key was taken";
  } catch (const PgError& e) {
    EXPECT_EQ(e.sqlstate(), "55P03") << e.what();
    EXPECT_TRUE(e.transient());
  }
  EXPECT_EQ(b.query(held).int64(0, 0), 1) << "b let go of the key it had taken";
  EXPECT_EQ(b.query("SHOW lock_timeout").text(0, 0), "0") << "the timeout was the statement's";
  keys.reset();
  EXPECT_EQ(b.query(held).int64(0, 0), 0);
  {
    KeyLocks now(b, theirs, std::chrono::milliseconds(100));
    EXPECT_EQ(a.query(held).int64(0, 0), 2);
  }
  EXPECT_EQ(a.query(held).int64(0, 0), 0);
}

// A processor stopped while it holds keys outside a transaction (taken, its
// batch's first statement not sent yet) holds them no longer than its
// idle-in-transaction limit: the server ends that session, and another
// session waiting for a key gets it. A session that released its keys goes
// back to the server's idle_session_timeout (0 here): an idle connection
// holding nothing is never ended.
TEST_F(PgLayer, KeysHeldByAStoppedSessionOutsideATransactionAreLetGo) {
  storage::pg::ConnectOptions o;
  o.dsn = fresh_database();
  o.idle_in_transaction_timeout = std::chrono::milliseconds(500);
  auto stopped = Connection::open(o);
  auto waiter = Connection::open(o);
  const std::vector<std::string> keys{"sender-day-total:limited"};
  {
    KeyLocks held(stopped, keys);
    EXPECT_EQ(stopped.exec("SHOW idle_session_timeout").text(0, 0), "500ms");
  }
  EXPECT_EQ(stopped.exec("SHOW idle_session_timeout").text(0, 0), "0") << "reset on release";

  auto held = std::make_unique<KeyLocks>(stopped, keys);  // then idle: nothing more is sent
  const auto before = std::chrono::steady_clock::now();
  try {
    KeyLocks taken(waiter, keys, std::chrono::seconds(10));
  } catch (const PgError& e) {
    ADD_FAILURE() << "the stopped session still holds the key: " << e.what();
  }
  std::cout << "the key was free after "
            << std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::steady_clock::now() - before)
                   .count()
            << " ms\n";
  try {
    stopped.exec("SELECT 1");
    ADD_FAILURE() << "a statement on the ended session succeeded";
  } catch (const PgError& e) {
    EXPECT_TRUE(e.transient()) << e.what();
  }
  held.reset();  // its session is gone, and its keys with it
  stopped.reconnect();
  EXPECT_EQ(stopped.exec("SHOW idle_session_timeout").text(0, 0), "0");
}

TEST_F(PgLayer, CommitAfterAFailedStatementThrows) {
  auto c = connect(fresh_database());
  c.exec("CREATE TABLE t (k BIGINT PRIMARY KEY)");
  Transaction tx(c);
  c.query("INSERT INTO t VALUES (1)");
  EXPECT_THROW(c.query("INSERT INTO t VALUES (1)"), PgError);
  try {
    tx.commit();
    ADD_FAILURE() << "commit of an aborted transaction succeeded";
  } catch (const PgError& e) {
    EXPECT_EQ(e.sqlstate(), "25P02");
    EXPECT_FALSE(e.transient());
  }
  EXPECT_EQ(c.query("SELECT count(*) FROM t").int64(0, 0), 0);
}

TEST_F(PgLayer, PipelineRunsABatchInParts) {
  auto c = connect(fresh_database());
  c.exec("CREATE TABLE t (k BIGINT PRIMARY KEY, v TEXT)");
  const std::string insert = "INSERT INTO t (k, v) VALUES ($1, $2) RETURNING k";
  const std::int64_t n = 3 * Pipeline::kMaxQueued + 7;
  {
    Transaction tx(c);
    Pipeline p(c);
    for (std::int64_t k = 0; k < n; ++k) p.send(insert, params(k, "v" + std::to_string(k)));
    p.send("SELECT count(*) FROM t");
    auto results = p.results();
    ASSERT_EQ(results.size(), static_cast<std::size_t>(n + 1));
    EXPECT_EQ(results[5].int64(0, 0), 5);
    EXPECT_EQ(results.back().int64(0, 0), n);
    tx.commit();
  }
  EXPECT_EQ(c.query("SELECT count(*) FROM t").int64(0, 0), n);
  // The statement prepared inside the pipeline is reused afterwards.
  c.query(insert, params(n, "last"));
  EXPECT_EQ(count_prepared(c, insert), 1);
}

TEST_F(PgLayer, PipelineStopsAtTheFirstError) {
  auto c = connect(fresh_database());
  c.exec("CREATE TABLE t (k BIGINT PRIMARY KEY)");
  {
    Transaction tx(c);
    Pipeline p(c);
    p.send("INSERT INTO t VALUES ($1)", params(1));
    p.send("INSERT INTO t VALUES ($1)", params(1));  // unique violation
    p.send("INSERT INTO t VALUES ($1)", params(2));  // not run
    try {
      p.results();
      ADD_FAILURE() << "no error";
    } catch (const PgError& e) {
      EXPECT_TRUE(e.unique_violation()) << e.what();
      EXPECT_FALSE(e.transient());
    }
  }
  // Out of pipeline mode, the transaction rolled back.
  EXPECT_EQ(c.query("SELECT count(*) FROM t").int64(0, 0), 0);
}

// An exception between send() and results() leaves the connection usable.
TEST_F(PgLayer, PipelineLeftEarlyLeavesTheConnectionUsable) {
  auto c = connect(fresh_database());
  c.exec("CREATE TABLE t (k BIGINT PRIMARY KEY)");
  {
    Pipeline p(c);
    p.send("INSERT INTO t VALUES ($1)", params(1));
  }
  EXPECT_EQ(c.query("SELECT count(*) FROM t").int64(0, 0), 1);
}

TEST_F(PgLayer, ErrorsNameTheStatementButNotTheRowValues) {
  auto c = connect(fresh_database());
  c.exec("CREATE TABLE t (k TEXT PRIMARY KEY)");
  c.query("INSERT INTO t VALUES ($1)", params("secret-token-value"));
  try {
    c.query("INSERT INTO t VALUES ($1)", params("secret-token-value"));
    ADD_FAILURE() << "no error";
  } catch (const PgError& e) {
    const std::string what = e.what();
    EXPECT_EQ(what.find("secret-token-value"), std::string::npos) << what;
    EXPECT_NE(what.find("INSERT INTO t"), std::string::npos) << what;
    EXPECT_NE(what.find("23505"), std::string::npos) << what;
  }
}

TEST_F(PgLayer, SerializationFailureIsTransient) {
  const std::string dsn = fresh_database();
  auto a = connect(dsn);
  auto b = connect(dsn);
  a.exec("CREATE TABLE t (k BIGINT PRIMARY KEY, v BIGINT); INSERT INTO t VALUES (1, 0), (2, 0)");
  Transaction ta(a, Isolation::serializable);
  Transaction tb(b, Isolation::serializable);
  a.query("SELECT sum(v) FROM t");
  b.query("SELECT sum(v) FROM t");
  a.query("UPDATE t SET v = 1 WHERE k = 1");
  b.query("UPDATE t SET v = 1 WHERE k = 2");
  ta.commit();
  try {
    tb.commit();
    ADD_FAILURE() << "write skew committed";
  } catch (const PgError& e) {
    EXPECT_EQ(e.sqlstate(), "40001") << e.what();
    EXPECT_TRUE(e.transient());
  }
}

TEST_F(PgLayer, DeadlockIsTransient) {
  const std::string dsn = fresh_database();
  auto a = connect(dsn);
  auto b = connect(dsn);
  a.exec("CREATE TABLE t (k BIGINT PRIMARY KEY, v BIGINT); INSERT INTO t VALUES (1, 0), (2, 0)");
  a.exec("SET deadlock_timeout = '50ms'");
  b.exec("SET deadlock_timeout = '50ms'");
  Transaction ta(a);
  Transaction tb(b);
  a.query("UPDATE t SET v = 1 WHERE k = 1");
  b.query("UPDATE t SET v = 1 WHERE k = 2");
  auto second = std::async(std::launch::async, [&]() -> std::string {
    try {
      a.query("UPDATE t SET v = 2 WHERE k = 2");  // waits for b
      return "";
    } catch (const PgError& e) {
      a.exec("ROLLBACK");  // the victim's locks go with its transaction
      return e.sqlstate() + (e.transient() ? " transient" : "");
    }
  });
  std::string mine;
  try {
    b.query("UPDATE t SET v = 2 WHERE k = 1");  // waits for a: one of the two is chosen
  } catch (const PgError& e) {
    mine = e.sqlstate() + (e.transient() ? " transient" : "");
    b.exec("ROLLBACK");  // lets a go on
  }
  if (mine.empty()) tb.commit();
  std::string theirs = second.get();
  EXPECT_EQ((mine.empty() ? theirs : mine), "40P01 transient") << mine << " / " << theirs;
  EXPECT_TRUE(mine.empty() != theirs.empty()) << "exactly one victim";
}

TEST_F(PgLayer, TerminatedSessionIsTransientAndReconnects) {
  auto c = connect(fresh_database());
  auto admin = connect();
  c.query("SELECT 1");
  admin.query("SELECT pg_terminate_backend($1::INTEGER)", params(c.backend_pid()));
  try {
    c.query("SELECT 1");
    ADD_FAILURE() << "query on a terminated session succeeded";
  } catch (const PgError& e) {
    EXPECT_TRUE(e.transient()) << e.what();
  }
  EXPECT_FALSE(c.ok());
  c.reconnect();
  EXPECT_TRUE(c.ok());
  EXPECT_EQ(c.query("SELECT 1").int64(0, 0), 1);  // prepared again
}

// A processor stopped inside a transaction (SIGSTOP, a debugger, a paused
// VM) holds its rows no longer than postgresql.idle_in_transaction_timeout_ms:
// the server ends its session, another store takes the rows, and the stopped
// one, resumed, finds its next statement failing as transient (its batch is
// retried) and the retry working on a new session.
TEST_F(PgLayer, AStoreIdleInATransactionLosesItsSessionAndItsRetryWorks) {
  storage::PostgresSettings s;
  s.dsn = fresh_database();
  s.idle_in_transaction_timeout = std::chrono::milliseconds(500);
  s.instance = "stopped";
  auto stopped = storage::open_postgres_store(s);
  s.instance = "owner";
  auto owner = storage::open_postgres_store(s);
  const std::vector<storage::TopicPartition> p{{"t", 0}};
  stopped->reset_offset("t", 0, 5);

  auto tx = std::make_unique<storage::WriteTransaction>(*stopped);
  ASSERT_EQ(stopped->fence_offsets(p).at({"t", 0}), 5);  // the row locked; then idle
  auto taken = std::async(std::launch::async, [&] {
    storage::WriteTransaction t(*owner);
    const auto at = owner->fence_offsets(p).at({"t", 0});
    owner->save_offset("t", 0, 9);
    t.commit();
    return at;
  });
  const bool ready = taken.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  if (!ready) tx.reset();  // without the timeout: lets the owner go, so the test ends
  ASSERT_TRUE(ready) << "the owner still waits on the idle transaction's row";
  EXPECT_EQ(taken.get(), 5);

  try {
    stopped->fence_offsets(p);
    ADD_FAILURE() << "a statement on the ended session succeeded";
  } catch (const storage::StoreError& e) {
    EXPECT_TRUE(e.is_transient()) << e.what();
    std::cout << "the resumed store's next statement: " << e.what() << "\n";
  }
  tx.reset();  // gone with its session
  storage::WriteTransaction again(*stopped);
  EXPECT_EQ(stopped->fence_offsets(p).at({"t", 0}), 9) << "the retry reads the owner's commit";
  again.commit();
}

// The timeout is set on every session of the connection, reconnects included.
TEST_F(PgLayer, IdleInTransactionTimeoutIsSetOnEachSession) {
  storage::pg::ConnectOptions o;
  o.dsn = server().dsn();
  o.idle_in_transaction_timeout = std::chrono::milliseconds(1500);
  auto c = Connection::open(o);
  EXPECT_EQ(c.exec("SHOW idle_in_transaction_session_timeout").text(0, 0), "1500ms");
  c.reconnect();
  EXPECT_EQ(c.exec("SHOW idle_in_transaction_session_timeout").text(0, 0), "1500ms");
  auto plain = connect();
  EXPECT_EQ(plain.exec("SHOW idle_in_transaction_session_timeout").text(0, 0), "0")
      << "0: left to the server";
}

TEST_F(PgLayer, ServerRestartAndCrashKeepCommittedData) {
  auto c = connect(fresh_database());
  c.exec("CREATE TABLE t (k BIGINT PRIMARY KEY)");
  c.query("INSERT INTO t VALUES (1)");
  server().restart();
  try {
    c.query("SELECT count(*) FROM t");
    ADD_FAILURE() << "query across a restart succeeded";
  } catch (const PgError& e) {
    EXPECT_TRUE(e.transient()) << e.what();
  }
  c.reconnect();
  c.query("INSERT INTO t VALUES (2)");
  server().crash();
  EXPECT_THROW(c.query("SELECT 1"), PgError);
  server().start();
  c.reconnect();
  EXPECT_EQ(c.query("SELECT count(*) FROM t").int64(0, 0), 2);
}

TEST(PgErrors, TransientSqlstates) {
  using kpay::storage::pg::is_transient_sqlstate;
  for (const char* s : {"08000", "08003", "08006", "40001", "40P01", "57P01", "57P02", "57P03",
                        "53300", "55P03", "25006", "25P03"}) {
    EXPECT_TRUE(is_transient_sqlstate(s)) << s;
  }
  for (const char* s : {"23505", "23514", "42P01", "42601", "22P02", "25P02", "", "0800"}) {
    EXPECT_FALSE(is_transient_sqlstate(s)) << s;
  }
}

// A concurrent transaction's conflict is told apart from a store fault: the
// processor retries it at once without reporting not-ready.
TEST(PgErrors, SerializationFailuresAndDeadlocksAreConflicts) {
  using kpay::storage::StoreFault;
  EXPECT_EQ(PgError::fault_of("40001", true), StoreFault::conflict);
  EXPECT_EQ(PgError::fault_of("40P01", true), StoreFault::conflict);
  EXPECT_EQ(PgError::fault_of("55P03", true), StoreFault::busy);  // lock_timeout: a holder
  EXPECT_EQ(PgError::fault_of("53100", true), StoreFault::disk_full);
  EXPECT_EQ(PgError::fault_of("57P01", true), StoreFault::unreachable);
}

// A server with password authentication: the password comes from the options
// (postgresql.password_file), and no message shows it.
class PgPassword : public ::testing::Test {
 protected:
  static constexpr const char* kPassword = "pw-Zq81-never-shown";
  static void SetUpTestSuite() {
    PostgresServer::Options options;
    options.password = kPassword;
    server_ = std::make_unique<PostgresServer>(options);
  }
  static void TearDownTestSuite() { server_.reset(); }
  static inline std::unique_ptr<PostgresServer> server_;
};

TEST_F(PgPassword, ConnectsWithThePasswordAndNeverShowsIt) {
  auto c = Connection::open({.dsn = server_->dsn(), .password = std::string(kPassword)});
  EXPECT_EQ(c.query("SELECT 1").int64(0, 0), 1);
  EXPECT_EQ(c.describe().find(kPassword), std::string::npos);
  // A password in the DSN works too and is not described either.
  kpay::storage::pg::ConnectOptions in_dsn;
  in_dsn.dsn = server_->dsn() + " password=" + kPassword;
  auto d = Connection::open(in_dsn);
  EXPECT_EQ(d.describe().find(kPassword), std::string::npos) << d.describe();
  for (const std::string& wrong : {std::string("wrong-pw-Xy7"), std::string()}) {
    try {
      Connection::open({.dsn = server_->dsn(), .password = wrong});
      ADD_FAILURE() << "connected with a wrong password";
    } catch (const PgError& e) {
      const std::string what = e.what();
      EXPECT_EQ(what.find(kPassword), std::string::npos) << what;
      if (!wrong.empty()) {
        EXPECT_EQ(what.find(wrong), std::string::npos) << what;
      }
      EXPECT_NE(what.find("password"), std::string::npos) << what;
    }
  }
}

}  // namespace
}  // namespace kpay::test
