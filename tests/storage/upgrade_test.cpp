// Upgrades keep the data (SQLite): a state database written by the v9
// release (tests/fixtures/state-db/state-v9.sql, made as its README.md says),
// and one of the v12 release with signed commands (state-v12.sql),
// is opened by this build, migrated in place, and everything in it is found
// and acted on; a database of a newer release is refused and left as it was.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "kpay/storage/open_store.hpp"
#include "kpay/storage/sqlite.hpp"
#include "kpay/storage/state_store.hpp"

namespace kpay::storage {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class Upgrade : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (std::filesystem::temp_directory_path() /
             ("kpay-upgrade-" + std::to_string(getpid()) + ".db"))
                .string();
    clean_up();
    const auto dump = read_file(std::string(KPAY_FIXTURES_DIR) + "/state-db/" + fixture());
    ASSERT_FALSE(dump.empty());
    auto db = Database::open(path_);
    db.exec(dump);
  }
  void TearDown() override { clean_up(); }
  virtual std::string fixture() const { return "state-v9.sql"; }
  void clean_up() {
    for (const char* s : {"", "-wal", "-shm"}) std::filesystem::remove(path_ + s);
  }
  int version_in_file() {
    auto db = Database::open(path_, {.read_only = true, .create = false});
    return storage::schema_version(db, "state");
  }

  std::string path_;
  const std::string tx_ = "krn:payment:eu1:transaction:fixture-1";
  const std::string request_ = "krn:payment:eu1:request:fixture-1";
  const std::string dispute_ = "krn:payment:eu1:dispute:fixture-1";
};

TEST_F(Upgrade, AVersion9DatabaseIsMigratedAndEverythingInItIsThere) {
  ASSERT_EQ(version_in_file(), 9);
  auto store = open_store(path_);
  EXPECT_EQ(store->schema_version(), state_migrations().back().version);

  const auto request = store->find_request(request_);
  ASSERT_TRUE(request);
  EXPECT_EQ(request->state, "COMPLETED");
  EXPECT_EQ(request->authorization_result, "APPROVED");
  const auto t = store->find_transaction(tx_);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->state, "AUTHORIZED");
  EXPECT_EQ(t->amount, 12000);
  EXPECT_EQ(t->captured_amount, 2000);
  EXPECT_EQ(store->sub_records(tx_).size(), 1u);
  EXPECT_EQ(store->history(tx_).size(), 4u);
  EXPECT_FALSE(store->insert_inbox({"evt-fixture-2", "klarna.events", 0, 2, ""}));  // a duplicate
  const auto first = store->find_inbox("evt-fixture-2");  // moved by migration 14
  ASSERT_TRUE(first);
  EXPECT_EQ(first->topic, "klarna.events");
  EXPECT_EQ(first->offset, 2);
  EXPECT_EQ(first->digest, std::string(8, 'c'));
  EXPECT_EQ(store->stored_offset("klarna.events", 0), 4);
  EXPECT_EQ(store->stored_offset("klarna.commands", 0), 2);
  EXPECT_EQ(store->pending_publications().size(), 1u);
  EXPECT_EQ(store->list_poison(10).size(), 1u);

  const auto counts = store->outbox_counts();
  EXPECT_EQ(counts.pending, 1);
  EXPECT_EQ(counts.succeeded, 1);
  EXPECT_EQ(counts.failed, 1);
  const auto command = store->find_command("cmd-fixture-capture");
  ASSERT_TRUE(command);
  EXPECT_EQ(command->status, CommandStatus::accepted);
  EXPECT_EQ(store->find_command("cmd-fixture-refund")->reason, "422");
  EXPECT_EQ(store->pending_outbox_amount(tx_, OutboxOperation::capture), 3000);
  EXPECT_EQ(store->find_payment_context(request_, std::nullopt)->amount, 12000);

  const auto disputes = store->open_disputes_after(std::nullopt, 1000);
  ASSERT_EQ(disputes.size(), 1u);
  EXPECT_EQ(disputes[0].representment_expires_at_ms, 1796500000000);
  EXPECT_EQ(store->dispute_deadlines(dispute_).size(), 1u);
  // The warning sent before the upgrade is not sent again; the next stage is.
  EXPECT_FALSE(store->mark_deadline_warning(dispute_, "representment", 1796500000000, "window",
                                            1796000005000));
  EXPECT_TRUE(store->mark_deadline_warning(dispute_, "representment", 1796500000000, "passed",
                                           1796500000001));
  const auto d = store->deadlines(1796000005000, 7LL * 24 * 3600 * 1000, 600000);
  EXPECT_EQ(d.calls_pending, 1);
  EXPECT_EQ(d.calls_failed, 1);
  EXPECT_EQ(d.dispute_deadlines_soon, 1);
}

TEST_F(Upgrade, ThePendingCallIsClaimedWithItsKeyAndTokenAndAnswered) {
  auto store = open_store(path_);
  std::vector<OutboxRow> claimed;
  {
    WriteTransaction tx(*store);
    claimed = store->claim_due_outbox(1796000005000, 10);
    tx.commit();
  }
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(claimed[0].operation, OutboxOperation::capture);
  EXPECT_EQ(claimed[0].idempotency_key, "fixture-capture-1");
  EXPECT_EQ(claimed[0].call_token, "fixture-token-fixture-capture-1");
  EXPECT_EQ(claimed[0].command_id, "cmd-fixture-capture");
  EXPECT_EQ(claimed[0].attempts, 1);
  {
    WriteTransaction tx(*store);
    EXPECT_TRUE(store->update_outbox({claimed[0].id, OutboxStatus::succeeded, 0, 1796000006000, 201,
                                      std::nullopt, "capture-2", ""}));
    store->finish_command("cmd-fixture-capture", CommandStatus::succeeded, std::nullopt,
                          1796000006000);
    tx.commit();
  }
  EXPECT_EQ(store->outbox_counts().succeeded, 2);
  EXPECT_EQ(store->find_command("cmd-fixture-capture")->status, CommandStatus::succeeded);
  // The outbox's audit triggers still record the answer.
  AuditQuery q;
  q.limit = 100;
  const auto audit = store->list_audit(q);
  ASSERT_FALSE(audit.empty());
  EXPECT_EQ(audit.back().outbox_id, claimed[0].id);
  EXPECT_EQ(audit.back().status, "succeeded");
}

TEST_F(Upgrade, ADatabaseOfANewerReleaseIsRefusedAndLeftAsItWas) {
  {
    auto db = Database::open(path_);
    db.exec("INSERT INTO schema_migrations VALUES ('state', 99, 'a later release', 0)");
  }
  const auto before = read_file(path_);
  ASSERT_FALSE(before.empty());
  for (bool read_only : {false, true}) {
    try {
      open_store(path_, {.read_only = read_only, .cache_mib = 2});
      ADD_FAILURE() << "a version 99 database was opened (read_only " << read_only << ")";
    } catch (const SchemaTooNewError& e) {
      EXPECT_NE(std::string(e.what()).find("newer than this binary"), std::string::npos)
          << e.what();
      EXPECT_FALSE(e.is_transient());
    }
  }
  EXPECT_EQ(read_file(path_), before);
  EXPECT_EQ(version_in_file(), 99);
  auto db = Database::open(path_, {.read_only = true, .create = false});
  auto rows = db.prepare("SELECT COUNT(*) FROM outbox");
  ASSERT_TRUE(rows.step());
  EXPECT_EQ(rows.int64(0), 3);
}

// Migration 14 narrows the inbox (storage/src/inbox_schema.hpp): a database
// at 12 with inbox rows of several topics, with and without a digest, keeps
// every event_id with its first delivery, a duplicate stays a duplicate, the
// digest's first 8 bytes tell a conflict, and a new topic gets its number.
TEST_F(Upgrade, Migration14KeepsEveryInboxRowWithItsFirstDelivery) {
  clean_up();
  const std::string digest(32, '\x07');
  {
    auto db = Database::open(path_);
    migrate(db, "state", state_migrations().first(12));
    auto insert = db.prepare(
        "INSERT INTO inbox (event_id, topic, partition, offset, digest) VALUES (?,?,?,?,?)");
    for (int i = 0; i < 300; ++i) {
      insert.bind(1, "evt-" + std::to_string(i));
      insert.bind(2, i % 3 == 0 ? "klarna.payment-requests" : "klarna.payment-transactions");
      insert.bind(3, i % 4).bind(4, std::int64_t{1000} + i);
      if (i % 2 == 0) insert.bind_blob(5, digest);
      insert.run();
    }
  }
  auto store = open_store(path_, {.cache_mib = 2});
  EXPECT_EQ(store->schema_version(), state_migrations().back().version);
  for (int i = 0; i < 300; ++i) {
    const auto first = store->find_inbox("evt-" + std::to_string(i));
    ASSERT_TRUE(first) << i;
    EXPECT_EQ(first->topic, i % 3 == 0 ? "klarna.payment-requests" : "klarna.payment-transactions");
    EXPECT_EQ(first->partition, i % 4);
    EXPECT_EQ(first->offset, 1000 + i);
    EXPECT_EQ(first->digest, i % 2 == 0 ? digest.substr(0, 8) : "");
  }
  EXPECT_FALSE(store->insert_inbox({"evt-7", "klarna.payment-transactions", 0, 9, ""}));
  EXPECT_TRUE(store->insert_inbox({"evt-new", "klarna.disputes", 2, 5, digest}));
  EXPECT_EQ(store->find_inbox("evt-new")->topic, "klarna.disputes");
  auto db = Database::open(path_, {.read_only = true, .create = false});
  auto rows = db.prepare("SELECT COUNT(*), COUNT(DISTINCT topic_id) FROM inbox");
  ASSERT_TRUE(rows.step());
  EXPECT_EQ(rows.int64(0), 301);
  EXPECT_EQ(rows.int64(1), 3);
}

// A topic number taken in a batch that rolls back is forgotten with it.
TEST_F(Upgrade, ATopicNumberOfARolledBackBatchIsNotReused) {
  clean_up();
  auto store = open_store(path_, {.cache_mib = 2});
  {
    WriteTransaction tx(*store);
    EXPECT_TRUE(store->insert_inbox({"evt-1", "klarna.disputes", 0, 1, ""}));
  }  // rolled back
  EXPECT_FALSE(store->find_inbox("evt-1"));
  EXPECT_TRUE(store->insert_inbox({"evt-2", "klarna.accounts", 0, 2, ""}));
  EXPECT_TRUE(store->insert_inbox({"evt-3", "klarna.disputes", 0, 3, ""}));
  EXPECT_EQ(store->find_inbox("evt-2")->topic, "klarna.accounts");
  EXPECT_EQ(store->find_inbox("evt-3")->topic, "klarna.disputes");
}

// Migration 11 was numbered before 12 but merged after it: a database that
// has 12 (and not 11) gets 11 when it opens, its rows kept.
TEST_F(Upgrade, AMigrationBelowTheNewestRecordedIsStillApplied) {
  for (const char* s : {"", "-wal", "-shm"}) std::filesystem::remove(path_ + s);
  const int newest = state_migrations().back().version;
  {
    auto db = Database::open(path_);
    std::vector<Migration> without_11;
    for (const auto& m : state_migrations()) {
      if (m.version != 11) without_11.push_back(m);
    }
    EXPECT_EQ(migrate(db, "state", without_11), newest);
    db.exec("INSERT INTO publish_queue (topic, key, value, reason) VALUES ('t', 'k', 'v', '')");
  }
  auto store = open_store(path_, {.cache_mib = 2});
  EXPECT_EQ(store->schema_version(), newest);
  const auto queued = store->pending_publications();
  ASSERT_EQ(queued.size(), 1u);
  EXPECT_TRUE(queued[0].traceparent.empty());
  CallAttemptRow a;
  a.outbox_id = 1;
  a.attempt = 1;
  a.outcome = "succeeded";
  store->insert_call_attempt(a);
  EXPECT_EQ(store->call_attempts(1).size(), 1u);
  auto db = Database::open(path_, {.read_only = true, .create = false});
  auto rows = db.prepare("SELECT COUNT(*) FROM schema_migrations WHERE schema = 'state'");
  ASSERT_TRUE(rows.step());
  EXPECT_EQ(rows.int64(0), static_cast<std::int64_t>(state_migrations().size()));
}

// A database of the v12 release (tests/fixtures/state-db/state-v12.sql) kept
// who sent each command in command_senders; migration 13 moves every sender
// into its command's row, keeps the senders' day totals, and the audit rows
// of the calls answered afterwards still name the command's sender.
class UpgradeFromV12 : public Upgrade {
 protected:
  std::string fixture() const override { return "state-v12.sql"; }
};

TEST_F(UpgradeFromV12, EverySenderIsKeptInItsCommandsRow) {
  ASSERT_EQ(version_in_file(), 12);
  auto store = open_store(path_);
  EXPECT_EQ(store->schema_version(), state_migrations().back().version);
  EXPECT_EQ(store->sender_of("cmd-signed-done"), "capture-service");
  EXPECT_EQ(store->sender_of("cmd-signed-pending"), "capture-service");
  EXPECT_EQ(store->sender_of("cmd-signed-void"), "ops-service");
  EXPECT_EQ(store->sender_of("cmd-unsigned"), std::nullopt);
  const auto pending = store->find_command("cmd-signed-pending");
  ASSERT_TRUE(pending);
  EXPECT_EQ(pending->sender, "capture-service");
  EXPECT_EQ(pending->sender_key_id, "k2");
  EXPECT_EQ(store->find_command("cmd-signed-done")->sender_key_id, "k1");
  EXPECT_EQ(store->find_command("cmd-signed-done")->status, CommandStatus::succeeded);
  EXPECT_EQ(store->find_command("cmd-signed-void")->sender_key_id, "o1");
  EXPECT_EQ(store->find_command("cmd-unsigned")->sender_key_id, std::nullopt);
  EXPECT_EQ(store->spent("capture-service", "EUR", "2026-12-07"), 3500);
  EXPECT_EQ(store->spent("ops-service", "EUR", "2026-12-07"), 0);
  auto db = Database::open(path_, {.read_only = true, .create = false});
  auto old_table = db.prepare("SELECT COUNT(*) FROM sqlite_master WHERE name = 'command_senders'");
  ASSERT_TRUE(old_table.step());
  EXPECT_EQ(old_table.int64(0), 0);
}

TEST_F(UpgradeFromV12, ThePendingCallOfASignedCommandIsAuditedWithItsSender) {
  auto store = open_store(path_);
  AuditQuery by_sender;
  by_sender.sender = "capture-service";
  ASSERT_EQ(store->list_audit(by_sender).size(), 3u);  // 2 calls queued, 1 answered (v12)
  std::vector<OutboxRow> claimed;
  {
    WriteTransaction tx(*store);
    claimed = store->claim_due_outbox(1796000005000, 10);
    tx.commit();
  }
  ASSERT_EQ(claimed.size(), 1u);
  EXPECT_EQ(claimed[0].command_id, "cmd-signed-pending");
  EXPECT_TRUE(store->update_outbox({claimed[0].id, OutboxStatus::succeeded, 0, 1796000006000, 201,
                                    std::nullopt, "krn:payment:eu1:capture:fixture-12-2"}));
  const auto audit = store->audit_of_outbox(claimed[0].id);
  ASSERT_EQ(audit.size(), 2u);
  EXPECT_EQ(audit[1].kind, "outcome");
  EXPECT_EQ(audit[1].sender, "capture-service");
  EXPECT_EQ(store->list_audit(by_sender).size(), 4u);
}

// Migration 17 rebuilds the findings table (SQLite cannot alter a CHECK): the
// findings stored before are kept, and an unrecognised_line one is admitted.
TEST_F(Upgrade, FindingsAreKeptWhenTheirTableIsRebuilt) {
  for (const char* s : {"", "-wal", "-shm"}) std::filesystem::remove(path_ + s);
  {
    auto db = Database::open(path_);
    std::vector<Migration> before_17;
    for (const auto& m : state_migrations()) {
      if (m.version < 17) before_17.push_back(m);
    }
    migrate(db, "state", before_17);
    db.exec(
        "INSERT INTO reconciliation_findings (finding_id, kind, settlement_id, subject, "
        "ours_json, theirs_json, detail, found_at_ms) VALUES ('payout_mismatch:s:payout', "
        "'payout_mismatch', 's', 'payout', '{}', '{}', 'd', 1)");
  }
  auto store = open_store(path_, {.cache_mib = 2});
  EXPECT_EQ(store->schema_version(), state_migrations().back().version);
  store.reset();
  auto db = Database::open(path_);
  db.exec(
      "INSERT INTO reconciliation_findings (finding_id, kind, settlement_id, subject, ours_json, "
      "theirs_json, detail, found_at_ms) VALUES ('unrecognised_line:s:line:4', "
      "'unrecognised_line', 's', 'line:4', '{}', '{}', 'd', 2)");
  auto rows = db.prepare(
      "SELECT group_concat(kind, ' ') FROM (SELECT kind FROM "
      "reconciliation_findings ORDER BY found_at_ms)");
  ASSERT_TRUE(rows.step());
  EXPECT_EQ(rows.text(0), "payout_mismatch unrecognised_line");
}

// The tables whose INSERT (or UPDATE) would build a temporary B-tree to check
// a CHECK constraint's IN list of three or more values (migration 19,
// storage/src/check_schema.hpp): SQLite does so on every row it checks.
std::vector<std::string> tables_checked_through_a_temporary_btree(Database& db) {
  std::vector<std::string> tables;
  auto names = db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name");
  while (names.step()) tables.push_back(names.text(0));
  std::vector<std::string> out;
  for (const auto& t : tables) {
    auto plan = db.prepare("EXPLAIN INSERT INTO \"" + t + "\" DEFAULT VALUES");
    while (plan.step()) {
      if (plan.text(1) == "OpenEphemeral") {
        out.push_back(t);
        break;
      }
    }
  }
  return out;
}

// Migration 19 rewrites the CHECK constraints in place: after it no insert
// into any table builds a temporary B-tree (before it, history, sub-records,
// dispute deadlines, commands, call attempts, offset gaps, settlements and
// findings did), a connection opened before the migration sees the new
// definitions too, every row is kept, and a value outside a list is still
// refused.
TEST_F(Upgrade, Migration19ChecksEveryRowWithoutATemporaryBTree) {
  auto before = Database::open(path_);
  EXPECT_EQ(tables_checked_through_a_temporary_btree(before).size(), 5u);  // v9 has five
  const auto history_rows = [](Database& db) {
    auto s = db.prepare("SELECT COUNT(*) FROM history");
    s.step();
    return s.int64(0);
  };
  const auto rows_before = history_rows(before);
  ASSERT_GT(rows_before, 0);
  auto store = open_store(path_, {.cache_mib = 2});
  EXPECT_EQ(store->schema_version(), state_migrations().back().version);
  // Its next statement finds the schema changed and reloads it.
  EXPECT_EQ(history_rows(before), rows_before);
  EXPECT_EQ(tables_checked_through_a_temporary_btree(before), std::vector<std::string>());
  store.reset();

  auto db = Database::open(path_);
  auto quick = db.prepare("PRAGMA quick_check");
  ASSERT_TRUE(quick.step());
  EXPECT_EQ(quick.text(0), "ok");
  try {
    db.exec(
        "INSERT INTO history (event_id, entity_kind, entity_id, event_type, event_version, "
        "occurred_at, outcome, reason, topic, partition, offset, entity_hash) VALUES "
        "('e', 'payment_request', 'r', 't', 'v1', 'o', 'applied_twice', '', 't', 0, 0, 1)");
    ADD_FAILURE() << "an outcome outside the list was stored";
  } catch (const SqliteError& e) {
    EXPECT_EQ(e.code(), SQLITE_CONSTRAINT_CHECK) << e.what();
  }
  db.exec(
      "INSERT INTO history (event_id, entity_kind, entity_id, event_type, event_version, "
      "occurred_at, outcome, reason, topic, partition, offset, entity_hash) VALUES "
      "('e', 'payment_request', 'r', 't', 'v1', 'o', 'rejected', '', 't', 0, 0, 1)");
  EXPECT_EQ(history_rows(db), rows_before + 1);
}

// Migration 20: the open disputes are read through the partial index of the
// open ones (no scan of the closed ones, no sort), on an upgraded database
// and on a new one; the upgraded one's open dispute is still found.
TEST_F(Upgrade, Migration20ReadsTheOpenDisputesThroughTheirIndex) {
  ASSERT_LT(version_in_file(), 20);
  const auto expect_index = [](StateStore& store) {
    for (bool after : {false, true}) {
      const std::string plan = store.open_disputes_plan(after);
      EXPECT_NE(plan.find("USING INDEX disputes_open"), std::string::npos) << plan;
      EXPECT_EQ(plan.find("TEMP B-TREE"), std::string::npos) << plan;
    }
  };
  {
    StateStore store(path_);
    EXPECT_GE(store.schema_version(), 20);
    expect_index(store);
    const auto open = store.open_disputes_after(std::nullopt, 10);
    ASSERT_EQ(open.size(), 1u);
    EXPECT_EQ(open[0].id, dispute_);
    EXPECT_TRUE(store.open_disputes_after(dispute_, 10).empty());
  }
  clean_up();
  StateStore fresh(path_);
  expect_index(fresh);
}

TEST_F(Upgrade, ANewDatabaseChecksEveryRowWithoutATemporaryBTree) {
  for (const char* s : {"", "-wal", "-shm"}) std::filesystem::remove(path_ + s);
  {
    auto db = Database::open(path_);
    std::vector<Migration> before_19;
    for (const auto& m : state_migrations()) {
      if (m.version < 19) before_19.push_back(m);
    }
    migrate(db, "state", before_19);
    EXPECT_EQ(tables_checked_through_a_temporary_btree(db).size(), 8u);
  }
  open_store(path_, {.cache_mib = 2}).reset();
  auto db = Database::open(path_);
  EXPECT_EQ(tables_checked_through_a_temporary_btree(db), std::vector<std::string>());
}

}  // namespace
}  // namespace kpay::storage
