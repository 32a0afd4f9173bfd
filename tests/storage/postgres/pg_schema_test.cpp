// The PostgreSQL state schema (storage/src/postgres/pg_schema.cpp): the same
// tables and columns as SQLite's, migrations applied once even by processors
// starting together, a newer database refused untouched, and the constraints
// the processors rely on (inbox, commands, append-only audit trail).
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include "child_process.hpp"
#include "kpay/storage/state_store.hpp"
#include "pg_test_support.hpp"
#include "postgres/pg_schema.hpp"

namespace pg = kpay::storage::pg;
using kpay::storage::SchemaTooNewError;
using pg::params;
using pg::PgError;

namespace kpay::test {
namespace {

class PgSchema : public PgSuite {};

// The newest migration and how many there are: tests need not change with
// each new migration.
int newest() {
  return pg::state_migrations().back().version;
}
std::int64_t migration_count() {
  return static_cast<std::int64_t>(pg::state_migrations().size());
}

using Columns = std::map<std::string, std::set<std::string>>;  // table → columns

Columns sqlite_columns() {
  const std::string dir = make_temp_dir("pg-schema");
  struct Remove {
    std::string dir;
    ~Remove() { std::filesystem::remove_all(dir); }
  } remove{dir};
  storage::StateStore store(dir + "/state.db");
  Columns out;
  auto tables = store.database().prepare(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'");
  while (tables.step()) {
    const std::string table = tables.text(0);
    auto cols = store.database().prepare("SELECT name FROM pragma_table_info(?)");
    cols.bind(1, table);
    while (cols.step()) out[table].insert(cols.text(0));
  }
  return out;
}

Columns pg_columns(pg::Connection& c) {
  Columns out;
  pg::Result r = c.query(
      "SELECT table_name, column_name FROM information_schema.columns "
      "WHERE table_schema = 'public'");
  for (int i = 0; i < r.rows(); ++i) out[r.text(i, 0)].insert(r.text(i, 1));
  return out;
}

TEST_F(PgSchema, HoldsEveryTableAndColumnOfTheSqliteSchema) {
  auto c = connect(fresh_database());
  EXPECT_EQ(pg::schema_version(c), 0);
  EXPECT_EQ(pg::migrate(c), newest());
  EXPECT_EQ(pg::schema_version(c), storage::state_migrations().back().version);
  const Columns pg = pg_columns(c);
  // SQLite-only: its bulk-filled history index (PostgreSQL indexes history
  // directly) and its migration record (PostgreSQL's is schema_version).
  const std::set<std::string> sqlite_only{"history_by_entity", "history_indexed",
                                          "schema_migrations"};
  for (const auto& [table, columns] : sqlite_columns()) {
    if (sqlite_only.contains(table)) continue;
    ASSERT_TRUE(pg.contains(table)) << table;
    for (const auto& column : columns) {
      if (table == "history" && column == "entity_hash") continue;
      EXPECT_TRUE(pg.at(table).contains(column)) << table << "." << column;
    }
  }
  EXPECT_TRUE(pg.at("outbox").contains("claimed_by"));
  EXPECT_TRUE(pg.at("outbox").contains("lease_expires_at_ms"));
  EXPECT_TRUE(pg.at("publish_queue").contains("lease_expires_at_ms"));
}

TEST_F(PgSchema, MigratingAgainChangesNothing) {
  auto c = connect(fresh_database());
  pg::migrate(c);
  EXPECT_EQ(pg::migrate(c), newest());
  EXPECT_EQ(c.query("SELECT count(*) FROM schema_version").int64(0, 0), migration_count());
}

// Migration 17: a finding of a settlement line of an unknown type is stored;
// a kind outside the list is still refused.
TEST_F(PgSchema, FindingsAdmitUnrecognisedLines) {
  auto c = connect(fresh_database());
  pg::migrate(c);
  const std::string insert =
      "INSERT INTO reconciliation_findings (finding_id, kind, settlement_id, subject, ours_json, "
      "theirs_json, detail, found_at_ms) VALUES ($1, $2, 's', 'line:4', '{}', '{}', 'd', 1)";
  c.query(insert, params("unrecognised_line:s:line:4", "unrecognised_line"));
  EXPECT_THROW(c.query(insert, params("x:s:line:4", "x")), PgError);
  EXPECT_EQ(c.query("SELECT count(*) FROM reconciliation_findings").int64(0, 0), 1);
}

// Migration 11 was numbered before 12 but merged after it: a database that
// has 12 gets 11 when it opens.
TEST_F(PgSchema, AMigrationBelowTheNewestRecordedIsStillApplied) {
  auto c = connect(fresh_database());
  std::vector<kpay::storage::Migration> without_11;
  for (const auto& m : pg::state_migrations()) {
    if (m.version != 11) without_11.push_back(m);
  }
  EXPECT_EQ(pg::migrate(c, without_11), newest());
  EXPECT_FALSE(c.query("SELECT to_regclass('call_attempts') IS NOT NULL").boolean(0, 0));
  EXPECT_EQ(pg::migrate(c), newest());
  EXPECT_TRUE(c.query("SELECT to_regclass('call_attempts') IS NOT NULL").boolean(0, 0));
  EXPECT_EQ(c.query("SELECT count(*) FROM schema_version").int64(0, 0), migration_count());
}

TEST_F(PgSchema, RefusesANewerDatabaseAndLeavesItAlone) {
  auto c = connect(fresh_database());
  const std::string newer = std::to_string(newest() + 1);
  c.exec(
      "CREATE TABLE schema_version (schema TEXT NOT NULL, version INTEGER NOT NULL, "
      "name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL, PRIMARY KEY (schema, version));"
      "INSERT INTO schema_version VALUES ('state', " +
      newer + ", 'from a newer release', 0)");
  try {
    pg::migrate(c);
    ADD_FAILURE() << "a newer database was migrated";
  } catch (const SchemaTooNewError& e) {
    EXPECT_NE(std::string(e.what()).find("version " + newer), std::string::npos) << e.what();
  }
  EXPECT_EQ(pg_columns(c).size(), 1u) << "tables were created";
  EXPECT_EQ(c.query("SELECT count(*) FROM schema_version").int64(0, 0), 1);
}

TEST_F(PgSchema, ProcessorsStartingTogetherMigrateOnce) {
  const std::string dsn = fresh_database();
  std::vector<std::thread> threads;
  std::vector<std::string> errors(4);
  std::vector<int> versions(4, -1);
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      try {
        auto c = connect(dsn);
        versions[i] = pg::migrate(c);
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(errors[i], "");
    EXPECT_EQ(versions[i], newest());
  }
  auto c = connect(dsn);
  EXPECT_EQ(c.query("SELECT count(*) FROM schema_version").int64(0, 0), migration_count());
}

TEST_F(PgSchema, InboxAndCommandsAreUniqueByTheirIds) {
  auto c = connect(fresh_database());
  pg::migrate(c);
  const std::string inbox =
      "INSERT INTO inbox (event_id, topic, partition, \"offset\") VALUES ($1, 't', 0, $2) "
      "ON CONFLICT (event_id) DO NOTHING";
  EXPECT_EQ(c.query(inbox, params("evt-1", 1)).affected(), 1);
  EXPECT_EQ(c.query(inbox, params("evt-1", 2)).affected(), 0);
  try {
    c.query("INSERT INTO inbox (event_id, topic, partition, \"offset\") VALUES ('evt-1','t',0,3)");
    ADD_FAILURE() << "a second inbox row for one event_id";
  } catch (const PgError& e) {
    EXPECT_TRUE(e.unique_violation()) << e.what();
  }
  const std::string command =
      "INSERT INTO commands (command_id, type, key, body_hash, status, created_at_ms, "
      "updated_at_ms) VALUES ($1, 'capture', $2, 'h', 'accepted', 0, 0)";
  pg::Params p = params("cmd-1");
  p.add_bytes(std::string("k\0y", 3));
  c.query(command, p);
  EXPECT_THROW(c.query(command, p), PgError);
  EXPECT_EQ(c.query("SELECT key FROM commands").bytea(0, 0), std::string("k\0y", 3));
}

TEST_F(PgSchema, OutboxCallsAreAuditedAndTheAuditTrailIsAppendOnly) {
  auto c = connect(fresh_database());
  pg::migrate(c);
  c.query(
      "INSERT INTO outbox (operation, entity_id, idempotency_key, request_body, call_token, "
      "created_by_event_id, path) VALUES ('capture', 'txn-1', 'idem-1', '{\"amount\":5}', "
      "'tok-secret', 'evt-9', '/payment/transactions/txn-1/captures')");
  c.query(
      "INSERT INTO outbox (operation, entity_id, idempotency_key, request_body, call_token, "
      "created_by_event_id, method) VALUES ('read_payment_request', 'req-1', 'idem-2', '', '', "
      "'evt-9', 'GET')");
  c.query("UPDATE outbox SET status = 'in_flight', attempts = 1 WHERE id = 1");
  c.query("UPDATE outbox SET status = 'succeeded', last_status = 201 WHERE id = 1");
  pg::Result r = c.query(
      "SELECT kind, operation, outbox_id, status, detail, request, klarna_status "
      "FROM audit_events ORDER BY seq");
  ASSERT_EQ(r.rows(), 2) << "reads are not audited";
  EXPECT_EQ(r.text(0, 0), "call_queued");
  EXPECT_EQ(r.text(0, 4), "caused by evt-9");
  EXPECT_EQ(r.text(0, 5), "POST /payment/transactions/txn-1/captures {\"amount\":5}");
  EXPECT_EQ(r.text(1, 0), "outcome");
  EXPECT_EQ(r.text(1, 3), "succeeded");
  EXPECT_EQ(r.int64(1, 6), 201);
  for (const char* change : {"UPDATE audit_events SET status = 'x'", "DELETE FROM audit_events",
                             "TRUNCATE audit_events"}) {
    try {
      c.exec(change);
      ADD_FAILURE() << change << " succeeded";
    } catch (const PgError& e) {
      EXPECT_NE(std::string(e.what()).find("append-only"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(c.query("SELECT count(*) FROM audit_events").int64(0, 0), 2);
  EXPECT_THROW(c.query("UPDATE outbox SET status = 'done' WHERE id = 1"), PgError);
}

// A database at 12 kept who sent each command in command_senders; 13 moves
// every sender into its command's row, and the audit trail of a call queued
// afterwards names the sender it finds there.
TEST_F(PgSchema, Migration13KeepsEverySenderInItsCommandsRow) {
  auto c = connect(fresh_database());
  std::vector<kpay::storage::Migration> up_to_12;
  for (const auto& m : pg::state_migrations()) {
    if (m.version <= 12) up_to_12.push_back(m);
  }
  ASSERT_EQ(pg::migrate(c, up_to_12), 12);
  for (const char* id : {"cmd-signed-1", "cmd-signed-2", "cmd-unsigned"}) {
    c.query(
        "INSERT INTO commands (command_id, type, key, body_hash, status, created_at_ms, "
        "updated_at_ms) VALUES ($1, 'capture', 'k', 'h', 'accepted', 0, 0)",
        params(id));
  }
  c.exec(
      "INSERT INTO command_senders VALUES "
      "('cmd-signed-1', 'capture-service', 'k1', 'EUR', 100, '2026-12-07', 0), "
      "('cmd-signed-2', 'refund-service', 'k7', NULL, NULL, '2026-12-07', 0)");
  ASSERT_EQ(pg::migrate(c), newest());

  pg::Result r =
      c.query("SELECT command_id, sender, sender_key_id FROM commands ORDER BY command_id");
  ASSERT_EQ(r.rows(), 3);
  EXPECT_EQ(r.text(0, 1), "capture-service");
  EXPECT_EQ(r.text(0, 2), "k1");
  EXPECT_EQ(r.text(1, 1), "refund-service");
  EXPECT_EQ(r.text(1, 2), "k7");
  EXPECT_EQ(r.optional_text(2, 1), std::nullopt);
  EXPECT_FALSE(c.query("SELECT to_regclass('command_senders') IS NOT NULL").boolean(0, 0));
  c.query(
      "INSERT INTO outbox (operation, entity_id, idempotency_key, request_body, call_token, "
      "created_by_event_id, path, command_id) VALUES ('capture', 'txn-1', 'idem-1', '{}', '', "
      "'command:cmd-signed-1', '/payment/transactions/txn-1/captures', 'cmd-signed-1')");
  EXPECT_EQ(c.query("SELECT sender FROM audit_events WHERE command_id = 'cmd-signed-1'")
                .optional_text(0, 0),
            "capture-service");
}

}  // namespace
}  // namespace kpay::test
