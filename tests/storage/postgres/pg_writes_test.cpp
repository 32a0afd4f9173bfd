// Queued writes (Connection::write, pg.hpp): inside a transaction they wait
// and go to the server in one pipeline with the next statement that needs an
// answer, or before COMMIT. What must hold: one round trip for many writes,
// the order kept, a failed queued write failing the whole transaction (the
// store's unit of work too: nothing of it visible, transient when the
// connection was lost, and the retried unit then commits once).
#include <gtest/gtest.h>

#include "kpay/storage/postgres.hpp"
#include "kpay/storage/store.hpp"
#include "pg_test_support.hpp"

// Rows are written with designated initializers naming only what matters.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

using kpay::storage::pg::Connection;
using kpay::storage::pg::params;
using kpay::storage::pg::PgError;
using kpay::storage::pg::Transaction;

namespace kpay::test {
namespace {

class PgWrites : public PgSuite {};

std::int64_t count(Connection& c) {
  return c.query("SELECT count(*) FROM t").int64(0, 0);
}

TEST_F(PgWrites, QueuedWritesGoWithTheNextReadInOneRoundTrip) {
  const std::string dsn = fresh_database();
  auto c = connect(dsn);
  auto other = connect(dsn);
  c.exec("CREATE TABLE t (k BIGINT PRIMARY KEY, v TEXT)");
  const std::string insert = "INSERT INTO t (k, v) VALUES ($1, $2)";
  Transaction tx(c);
  const auto before = c.round_trips();
  for (std::int64_t k = 0; k < 100; ++k) c.write(insert, params(k, "v" + std::to_string(k)));
  c.write("UPDATE t SET v = 'last' WHERE k = $1", params(std::int64_t{99}));
  EXPECT_EQ(c.round_trips(), before) << "a queued write went to the server alone";
  EXPECT_EQ(c.queued_writes(), 101u);
  // The read sees every queued write, in order (the UPDATE after its INSERT).
  EXPECT_EQ(c.query("SELECT v FROM t WHERE k = 99").text(0, 0), "last");
  EXPECT_EQ(c.round_trips(), before + 1);
  EXPECT_EQ(c.queued_writes(), 0u);
  c.write(insert, params(std::int64_t{100}, "after"));
  EXPECT_EQ(count(other), 0) << "not committed yet";
  tx.commit();
  EXPECT_EQ(count(other), 101);
  // Outside a transaction a write runs at once.
  c.write(insert, params(std::int64_t{101}, "now"));
  EXPECT_EQ(c.queued_writes(), 0u);
  EXPECT_EQ(count(other), 102);
}

TEST_F(PgWrites, AFailedQueuedWriteFailsTheCommitAndKeepsNothing) {
  auto c = connect(fresh_database());
  c.exec("CREATE TABLE t (k BIGINT PRIMARY KEY)");
  {
    Transaction tx(c);
    c.write("INSERT INTO t VALUES ($1)", params(1));
    c.write("INSERT INTO t VALUES ($1)", params(1));  // unique violation, found at commit
    c.write("INSERT INTO t VALUES ($1)", params(2));
    try {
      tx.commit();
      ADD_FAILURE() << "a transaction with a failed write committed";
    } catch (const PgError& e) {
      EXPECT_TRUE(e.unique_violation()) << e.what();
      EXPECT_FALSE(e.transient());
    }
  }
  EXPECT_EQ(count(c), 0);
  // Rolled back, not left aborted: the next transaction works.
  Transaction tx(c);
  c.write("INSERT INTO t VALUES ($1)", params(3));
  tx.commit();
  EXPECT_EQ(count(c), 1);
}

TEST_F(PgWrites, WritesOfARolledBackTransactionAreDropped) {
  auto c = connect(fresh_database());
  c.exec("CREATE TABLE t (k BIGINT PRIMARY KEY)");
  {
    Transaction tx(c);
    c.write("INSERT INTO t VALUES ($1)", params(1));
  }
  EXPECT_EQ(c.queued_writes(), 0u);
  {
    Transaction tx(c);
    c.write("INSERT INTO t VALUES ($1)", params(2));
    tx.commit();
  }
  const auto r = c.query("SELECT k FROM t");
  ASSERT_EQ(r.rows(), 1);
  EXPECT_EQ(r.int64(0, 0), 2);
}

// The store's unit of work: what a batch writes without reading it back
// (history, entities, publications, offsets) waits for the commit; a failure
// there rolls back the whole batch.
class PgStoreWrites : public PgSuite {
 protected:
  void SetUp() override {
    dsn_ = fresh_database();
    storage::PostgresSettings s;
    s.dsn = dsn_;
    store_ = storage::open_postgres_store(s);
  }
  // One event's worth of a batch: inbox, request, publication, history, offset.
  void write_batch(const std::string& outcome) {
    ASSERT_TRUE(store_->insert_inbox({"ev-1", "t.requests", 0, 7, ""}));
    store_->save_request({.id = "pr-1",
                          .generation = 2,
                          .state = "COMPLETED",
                          .state_as_of_ms = 1,
                          .last_event_id = "ev-1"});
    EXPECT_GT(store_->enqueue_publish({0, "t.states", "pr-1", "{}", ""}), 0);
    // After the batch's last read: a failure here is found at commit.
    store_->append_history({.event_id = "ev-1",
                            .entity_kind = "payment_request",
                            .entity_id = "pr-1",
                            .event_type = "x",
                            .event_version = "v2",
                            .occurred_at = "2026-12-07T00:00:00Z",
                            .outcome = outcome,
                            .reason = "r",
                            .topic = "t.requests",
                            .partition = 0,
                            .offset = 7});
    store_->save_offset("t.requests", 0, 8);
  }
  void expect_nothing_visible() {
    EXPECT_EQ(store_->find_inbox("ev-1"), std::nullopt);
    EXPECT_EQ(store_->find_request("pr-1"), std::nullopt);
    EXPECT_TRUE(store_->history("pr-1").empty());
    EXPECT_TRUE(store_->pending_publications().empty());
    EXPECT_EQ(store_->stored_offset("t.requests", 0), std::nullopt);
  }
  std::string dsn_;
  std::unique_ptr<storage::Store> store_;
};

TEST_F(PgStoreWrites, AFailingDeferredWriteRollsBackTheBatch) {
  {
    storage::WriteTransaction tx(*store_);
    write_batch("not-an-outcome");  // the history CHECK fails, at commit
    try {
      tx.commit();
      ADD_FAILURE() << "a batch with a failed history row committed";
    } catch (const storage::StoreError& e) {
      EXPECT_FALSE(e.is_transient()) << e.what();
      EXPECT_NE(std::string(e.what()).find("INSERT INTO history"), std::string::npos) << e.what();
    }
  }
  expect_nothing_visible();
}

TEST_F(PgStoreWrites, AConnectionLostBeforeCommitIsTransientAndTheRetryCommitsOnce) {
  auto other = connect(dsn_);
  {
    storage::WriteTransaction tx(*store_);
    write_batch("applied");
    other.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()");
    try {
      tx.commit();
      ADD_FAILURE() << "a batch committed on a terminated connection";
    } catch (const storage::StoreError& e) {
      EXPECT_TRUE(e.is_transient()) << e.what();
    }
  }
  expect_nothing_visible();
  {
    storage::WriteTransaction tx(*store_);  // reconnects
    write_batch("applied");
    tx.commit();
  }
  EXPECT_TRUE(store_->find_request("pr-1").has_value());
  EXPECT_EQ(store_->history("pr-1").size(), 1u);
  EXPECT_EQ(store_->stored_offset("t.requests", 0), 8);
  EXPECT_EQ(other.query("SELECT count(*) FROM publish_queue").int64(0, 0), 1);
}

}  // namespace
}  // namespace kpay::test
