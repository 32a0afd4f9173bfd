// klarnactl store copy (storage/src/postgres/pg_copy.cpp): a SQLite state made
// by the processor's own appliers (lifecycles with duplicates, a capture
// command whose Klarna call is still pending) is copied with the klarnactl
// binary into an empty PostgreSQL database; then the processor's applier on
// PostgreSQL continues from it: the remaining messages and a redelivered
// part of the copied ones (nothing applied twice, offsets continue), the
// pending call claimed once with its original idempotency key, new ids after
// the copied ones. The result equals one SQLite run over every message. A
// second copy into the filled database, and a SQLite file of another schema
// version, are refused with nothing written. klarnactl settlements
// list|show|reconcile print the same on the copy as on its SQLite source.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>

#include "child_process.hpp"
#include "kafka_support.hpp"
#include "kpay/core/wall_clock.hpp"
#include "kpay/processor/batch_applier.hpp"
#include "kpay/processor/reconciler.hpp"
#include "kpay/storage/postgres.hpp"
#include "kpay/storage/reconciliation_store.hpp"
#include "kpay/storage/state_store.hpp"
#include "lifecycles.hpp"
#include "postgres/pg.hpp"
#include "postgres_server.hpp"

using namespace kpay;
namespace pg = kpay::storage::pg;

namespace {

constexpr int kPartitions = 4;

// The lifecycles as the consumer would hand them over: partitioned by key,
// offsets counted per partition.
std::vector<processor::InputMessage> as_messages(const std::vector<test::TestEvent>& events) {
  std::map<std::pair<std::string, int>, std::int64_t> next;
  std::vector<processor::InputMessage> out;
  for (const auto& e : events) {
    const int partition = static_cast<int>(std::hash<std::string>{}(e.key) % kPartitions);
    out.push_back({e.topic, partition, next[{e.topic, partition}]++, e.key, e.body});
  }
  return out;
}

void apply(processor::BatchApplier& applier, std::span<const processor::InputMessage> messages) {
  for (std::size_t i = 0; i < messages.size(); i += 50) {
    applier.apply(messages.subspan(i, std::min<std::size_t>(50, messages.size() - i)));
  }
}

processor::InputMessage capture_command(const klarna::Topics& topics, std::int64_t offset,
                                        const std::string& id, const std::string& txn) {
  return {topics.commands, 0, offset, txn,
          R"({"command_id":")" + id + R"(","type":"capture","payment_transaction_id":")" + txn +
              R"(","amount":400})"};
}

void save_authorized(storage::Store& store, const std::string& id) {
  storage::PaymentTransactionRow t;
  t.id = id;
  t.state = "AUTHORIZED";
  t.amount = 1000;
  t.currency = "EUR";
  t.account_id = "acc-copy";
  t.last_event_id = "e-" + id;
  store.save_transaction(t);
}

long long pg_int(pg::Connection& c, const std::string& sql) {
  return c.exec(sql).int64(0, 0);
}

long long sqlite_int(storage::StateStore& s, const std::string& sql) {
  auto st = s.database().prepare(sql);
  st.step();
  return st.int64(0);
}

std::vector<std::string> copied_tables(storage::StateStore& s) {
  std::vector<std::string> out;
  auto st = s.database().prepare(
      "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name "
      "NOT IN ('schema_migrations', 'history_by_entity', 'history_indexed', 'inbox_topics') ORDER "
      "BY name");
  while (st.step()) out.push_back(st.text(0));
  return out;
}

class StoreCopy : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::make_temp_dir("store-copy");
    server_.create_database("target");
    server_.create_database("other");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // klarnactl --config (processor.database = sqlite, [postgresql] dsn) store copy …
  std::pair<int, std::string> klarnactl_copy(const std::string& sqlite, const std::string& db,
                                             std::vector<std::string> extra = {}) {
    const std::string config = dir_ + "/copy.toml";
    std::ofstream(config) << "[processor]\ndatabase = \"" << sqlite << "\"\n[postgresql]\ndsn = \""
                          << server_.dsn(db) << "\"\n";
    std::vector<std::string> args = {"store", "copy"};
    args.insert(args.end(), extra.begin(), extra.end());
    return klarnactl(config, args);
  }
  // klarnactl --config CONFIG ARGS…: its exit status and output.
  std::pair<int, std::string> klarnactl(const std::string& config,
                                        const std::vector<std::string>& args) {
    std::vector<std::string> argv = {test::binary("tools/klarnactl"), "--config", config};
    argv.insert(argv.end(), args.begin(), args.end());
    const std::string log = dir_ + "/klarnactl-" + std::to_string(runs_++) + ".log";
    test::ChildProcess ctl(argv, log);
    auto status = ctl.wait(std::chrono::seconds(60));
    return {status.value_or(-1), test::read_file(log)};
  }

  std::string dir_;
  test::PostgresServer server_;
  int runs_ = 0;
};

TEST_F(StoreCopy, AProcessorOnPostgresqlContinuesFromTheCopiedState) {
  klarna::Topics topics;
  const auto messages =
      as_messages(test::shuffle_with_duplicates(test::make_lifecycles(240, topics, 11), 0.1, 3));
  const std::size_t half = messages.size() * 3 / 5;
  const std::string sqlite = dir_ + "/state.db";
  std::string key;                              // the pending capture's idempotency key
  std::map<std::string, std::int64_t> pending;  // every pending call: key → id
  {
    storage::StateStore store(sqlite);
    save_authorized(store, "txn-copy");
    processor::BatchApplier applier(store, topics);
    apply(applier, std::span(messages).first(half));
    const auto cmd = capture_command(topics, 0, "cmd-copy", "txn-copy");
    applier.apply(std::span(&cmd, 1));
    const auto rows = store.outbox("txn-copy");
    ASSERT_EQ(rows.size(), 1u);
    key = rows[0].idempotency_key;
    for (const auto& r : store.list_outbox(storage::OutboxStatus::pending, 100000)) {
      pending[r.idempotency_key] = r.id;
    }
    ASSERT_TRUE(pending.contains(key));
  }  // the processor stops

  auto [status, out] = klarnactl_copy(sqlite, "target");
  ASSERT_EQ(status, 0) << out;
  EXPECT_NE(out.find("in one transaction"), std::string::npos) << out;
  EXPECT_NE(out.find("outbox"), std::string::npos) << out;

  pg::ConnectOptions o;
  o.dsn = server_.dsn("target");
  pg::Connection c = pg::Connection::open(o);
  {
    storage::StateStore source(sqlite, true);
    for (const auto& table : copied_tables(source)) {
      EXPECT_EQ(pg_int(c, "SELECT COUNT(*) FROM " + table),
                sqlite_int(source, "SELECT COUNT(*) FROM " + table))
          << table;
    }
    EXPECT_GT(pg_int(c, "SELECT COUNT(*) FROM audit_events"), 0)
        << "the capture's call_queued event, copied (the target's trigger added none)";
  }

  storage::PostgresSettings settings;
  settings.dsn = server_.dsn("target");
  settings.instance = "after-copy";
  auto store = storage::open_postgres_store(settings);
  // Every call pending in SQLite (the capture, the lifecycles' follow-ups):
  // claimed once, under its id and with the key it had there.
  auto claim_all = [&] {
    return store->claim_due_outbox({.now_ms = std::numeric_limits<std::int64_t>::max() / 2,
                                    .limit = 100000,
                                    .owner = "after-copy",
                                    .lease_ms = 0});
  };
  const auto claimed = claim_all();
  std::map<std::string, std::int64_t> claimed_keys;
  std::int64_t highest = 0;
  for (const auto& r : claimed) {
    claimed_keys[r.idempotency_key] = r.id;
    highest = std::max(highest, r.id);
    EXPECT_EQ(r.attempts, 1) << r.idempotency_key;
    storage::OutboxUpdate done;
    done.id = r.id;
    done.status = storage::OutboxStatus::succeeded;
    done.now_ms = 1;
    done.last_status = 200;
    done.owner = "after-copy";
    EXPECT_TRUE(store->update_outbox(done));
  }
  EXPECT_EQ(claimed_keys, pending);
  EXPECT_EQ(claimed.size(), pending.size());
  EXPECT_TRUE(claim_all().empty()) << "each executed once";

  processor::BatchApplier applier(*store, topics);
  // The rest, and a redelivery of the last 100 copied messages (a consumer
  // group whose committed offsets lag the state's).
  apply(applier, std::span(messages).subspan(half - 100));
  for (int p = 0; p < kPartitions; ++p) {
    for (const std::string& topic : {topics.payment_requests, topics.payment_transactions}) {
      std::int64_t last = -1;
      for (const auto& m : messages) {
        if (m.topic == topic && m.partition == p) last = m.offset;
      }
      if (last >= 0) {
        EXPECT_EQ(store->stored_offset(topic, p), last + 1) << topic << "/" << p;
      }
    }
  }

  // A new call gets an id after the copied one (the sequence continued).
  save_authorized(*store, "txn-new");
  const auto cmd = capture_command(topics, 1, "cmd-new", "txn-new");
  applier.apply(std::span(&cmd, 1));
  const auto fresh = store->outbox("txn-new");
  ASSERT_EQ(fresh.size(), 1u);
  EXPECT_GT(fresh[0].id, highest);

  // Nothing applied twice: the same state as one SQLite run over everything.
  const std::string reference = dir_ + "/reference.db";
  test::apply_reference(reference, topics, messages, 64);
  storage::StateStore ref(reference, true);
  // (Lifecycle ids are krn:…; the two transactions saved directly and their
  // commands' history rows are not the reference's.)
  for (const char* sql :
       {"SELECT COUNT(*) FROM payment_requests",
        "SELECT COUNT(*) FROM payment_transactions WHERE id NOT LIKE 'txn-%'",
        "SELECT COUNT(*) FROM disputes", "SELECT COUNT(*) FROM inbox",
        "SELECT COUNT(*) FROM transaction_sub_records",
        "SELECT COALESCE(SUM(captured_amount), 0) FROM payment_transactions",
        "SELECT COALESCE(SUM(refunded_amount), 0) FROM payment_transactions",
        "SELECT COUNT(*) FROM payment_requests WHERE state = 'COMPLETED'",
        "SELECT COUNT(*) FROM history WHERE outcome = 'applied' AND entity_id NOT LIKE 'txn-%'"}) {
    EXPECT_EQ(pg_int(c, sql), sqlite_int(ref, sql)) << sql;
  }
  EXPECT_EQ(pg_int(c, "SELECT COUNT(*) FROM history WHERE outcome = 'applied'"),
            sqlite_int(ref, "SELECT COUNT(*) FROM history WHERE outcome = 'applied'") + 2)
      << "each capture command once";
}

// A settlement reconciled on SQLite (its SALE of cap-1 for 450, captured
// 400: an amount_mismatch; cap-2 not settled yet), copied: klarnactl reads and
// reconciles it on PostgreSQL as on SQLite, line for line.
TEST_F(StoreCopy, KlarnactlSettlementsPrintTheSameOnPostgresqlAsOnSqlite) {
  const std::string sqlite = dir_ + "/state.db";
  {
    storage::StateStore store(sqlite);
    save_authorized(store, "txn-1");
    const auto now = core::now_ms();  // within the grace period: nothing missing
    for (const auto& [id, amount] :
         {std::pair<std::string, std::int64_t>{"cap-1", 400}, {"cap-2", 300}}) {
      ASSERT_TRUE(store.insert_sub_record(
          {"capture", id, "txn-1", amount, "EUR", std::nullopt, now, "e-" + id}));
    }
    auto& ledger = storage::ledger_of(store);
    storage::SettlementRow s;
    s.settlement_id = "stl-1";
    s.account_id = "acc-copy";
    s.status = "fetched";
    s.currency = "EUR";
    s.total_sale_amount = 450;
    s.total_settlement_amount = 450;
    s.payout_amount = 450;
    s.lines_booked = 1;
    s.caused_by = "evt-stl-1";
    s.created_at_ms = now;
    ASSERT_TRUE(ledger.insert_settlement(s));
    storage::SettlementLineRow l;
    l.settlement_id = "stl-1";
    l.type = "SALE";
    l.capture_id = "cap-1";
    l.payment_transaction_id = "txn-1";
    l.amount = 450;
    l.currency = "EUR";
    ASSERT_TRUE(ledger.insert_line(l));
    ASSERT_EQ(processor::reconcile_settlement(store, "stl-1", now).found.size(), 1u);
  }
  ASSERT_EQ(klarnactl_copy(sqlite, "target").first, 0);
  const std::string on_sqlite = dir_ + "/sqlite.toml", on_pg = dir_ + "/pg.toml";
  std::ofstream(on_sqlite) << "[processor]\ndatabase = \"" << sqlite << "\"\n";
  std::ofstream(on_pg) << "[processor]\nstore = \"postgresql\"\n[postgresql]\ndsn = \""
                       << server_.dsn("target") << "\"\n";
  std::map<std::string, std::string> printed;  // on PostgreSQL, by command
  for (const std::vector<std::string>& args : {std::vector<std::string>{"settlements", "list"},
                                               {"settlements", "list", "--json"},
                                               {"settlements", "show", "stl-1"},
                                               {"settlements", "show", "stl-1", "--json"},
                                               {"settlements", "reconcile"},
                                               {"settlements", "reconcile", "--json"}}) {
    const auto [status, out] = klarnactl(on_pg, args);
    EXPECT_EQ(status, 0) << out;
    EXPECT_EQ(out, klarnactl(on_sqlite, args).second) << args.back();
    EXPECT_NE(out.find("stl-1"), std::string::npos) << out;
    printed[args[1] + (args.back() == "--json" ? " --json" : "")] = out;
  }
  const auto& shown = printed["show"];
  EXPECT_NE(shown.find("amount_mismatch"), std::string::npos) << shown;
  EXPECT_NE(shown.find("cap-1"), std::string::npos) << shown;
  const auto& reconciled = printed["reconcile --json"];
  EXPECT_NE(reconciled.find(R"("new_findings":0)"), std::string::npos) << reconciled;
  EXPECT_NE(reconciled.find(R"("unsettled_capture_amounts":{"EUR":300})"), std::string::npos)
      << reconciled;
}

TEST_F(StoreCopy, AFilledTargetOrAnotherSchemaVersionIsRefusedWithNothingWritten) {
  const std::string sqlite = dir_ + "/state.db";
  {
    storage::StateStore store(sqlite);
    save_authorized(store, "txn-1");
  }
  ASSERT_EQ(klarnactl_copy(sqlite, "target").first, 0);
  auto [again, out] = klarnactl_copy(sqlite, "target");
  EXPECT_EQ(again, 1) << out;
  EXPECT_NE(out.find("already holds state (payment_transactions)"), std::string::npos) << out;

  {
    storage::StateStore store(sqlite);
    store.database().exec("DELETE FROM schema_migrations WHERE schema = 'state' AND version = 12");
  }
  auto [older, why] = klarnactl_copy(sqlite, "other", {"--json"});
  EXPECT_EQ(older, 1) << why;
  EXPECT_NE(why.find("lacks schema version 12"), std::string::npos) << why;
  pg::ConnectOptions o;
  o.dsn = server_.dsn("other");
  pg::Connection c = pg::Connection::open(o);
  EXPECT_EQ(pg_int(c, "SELECT COUNT(*) FROM payment_transactions"), 0);
}

}  // namespace
