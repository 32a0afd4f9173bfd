// A sender's per-day limit with two processors on one PostgreSQL state
// (docs/OPERATIONS.md, "Senders"): the sender's commands arrive on two
// partitions, so on two processors, and each processor's batch would, alone,
// stay within the limit. The second batch begins only after the first
// committed and reads its total (sender_day_totals.hpp), so exactly one
// command is accepted, the other is rejected not_permitted, and neither
// batch fails and is retried on the way.
//
// The interleaving is fixed without a test seam: the test's own session holds
// the row of processor A's next offset (an uncommitted insert), so A's batch
// stops at its end, after it read and added to the sender's total; then B's
// batch starts and the test waits until it waits too (pg_locks: two
// sessions waiting) before letting A go.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <chrono>
#include <future>
#include <memory>
#include <thread>

#include "kpay/core/wall_clock.hpp"
#include "kpay/processor/batch_applier.hpp"
#include "kpay/processor/command_auth.hpp"
#include "kpay/processor/sender_keys.hpp"
#include "kpay/storage/postgres.hpp"
#include "kpay/storage/store_error.hpp"
#include "postgres_server.hpp"

using namespace kpay;
using namespace kpay::processor;
using namespace std::chrono_literals;

namespace {

constexpr const char* kSecret = "limited-secret-0123456789";

// A session of the test's own (libpq), for what no store does.
class Session {
 public:
  explicit Session(const std::string& dsn) : c_(PQconnectdb(dsn.c_str())) {
    if (PQstatus(c_) != CONNECTION_OK) throw std::runtime_error(PQerrorMessage(c_));
  }
  ~Session() { PQfinish(c_); }
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;
  void exec(const std::string& sql) {
    PGresult* r = PQexec(c_, sql.c_str());
    const auto status = PQresultStatus(r);
    const std::string error = PQresultErrorMessage(r);
    PQclear(r);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      throw std::runtime_error(sql + ": " + error);
    }
  }
  long long count(const std::string& sql) {
    PGresult* r = PQexec(c_, sql.c_str());
    long long n = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
      n = std::stoll(PQgetvalue(r, 0, 0));
    }
    PQclear(r);
    return n;
  }
  // Until `sql` counts `n` (at most 20 s); false when it never did.
  bool wait_for(const std::string& sql, long long n) {
    const auto until = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < until) {
      if (count(sql) == n) return true;
      std::this_thread::sleep_for(5ms);
    }
    return false;
  }

 private:
  PGconn* c_;
};

InputMessage authorize(const klarna::Topics& topics, const std::string& id, std::int32_t partition,
                       std::int64_t amount) {
  InputMessage m;
  m.topic = topics.commands;
  m.partition = partition;
  m.offset = 7;
  m.key = "ref-" + id;
  m.value = R"({"command_id":")" + id +
            R"(","type":"authorize","partner_account_id":"krn:partner:global:account:test:L1",)"
            R"("amount":)" +
            std::to_string(amount) + R"(,"currency":"EUR","payment_transaction_reference":"ref-)" +
            id + R"(","capture":"LATER","customer_token":"ctok-)" + id + R"("})";
  m.headers = {std::string("limited"), sign_command("l1", kSecret, m.value)};
  return m;
}

// Sender "limited": authorize only, at most 1000 EUR per UTC day.
std::shared_ptr<const CommandSecurity> limited_sender() {
  auto security = std::make_shared<CommandSecurity>();
  security->policy.senders["limited"] = {{"authorize"}, {"*"}, {}};
  security->policy.senders["limited"].limits["EUR"] = {std::nullopt, 1000};
  auto ring = std::make_shared<SenderKeyRing>();
  ring->add_active("limited", "l1", kSecret);
  std::shared_ptr<const SenderKeyRing> keys = ring;
  security->keys = [keys] { return keys; };
  return security;
}

// A processor: its own store (session) and batch applier.
struct Processor {
  Processor(const std::string& dsn, const std::string& name,
            std::shared_ptr<const CommandSecurity> security) {
    storage::PostgresSettings s;
    s.dsn = dsn;
    s.instance = name;
    store = storage::open_postgres_store(s);
    applier = std::make_unique<BatchApplier>(*store, klarna::Topics{});
    applier->secure_commands(std::move(security));
  }
  // As the consumer does (Processor::retry_storage_faults): a batch that
  // fails transiently is rolled back and applied again; `retries` counts it.
  BatchResult apply(const InputMessage& m) {
    const std::vector<InputMessage> batch{m};
    for (;;) {
      try {
        return applier->apply(std::span<const InputMessage>(batch));
      } catch (const storage::StoreError& e) {
        if (!e.is_transient()) throw;
        ++retries;
      }
    }
  }
  std::unique_ptr<storage::Store> store;
  std::unique_ptr<BatchApplier> applier;
  int retries = 0;
};

class SenderDayLimits : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = std::make_unique<test::PostgresServer>(); }
  static void TearDownTestSuite() { server_.reset(); }
  static inline std::unique_ptr<test::PostgresServer> server_;
};

TEST_F(SenderDayLimits, TwoProcessorsCannotTogetherPassASendersDailyLimit) {
  const std::string dsn = server_->dsn();
  const auto security = limited_sender();
  Processor a(dsn, "proc-a", security), b(dsn, "proc-b", security);
  const klarna::Topics topics;
  Session test(dsn);
  const std::string waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted";

  // A's batch stops at its offset, after its command was accepted and added
  // to the sender's total, before its commit.
  test.exec("BEGIN");
  test.exec("INSERT INTO consumer_offsets (topic, partition, next_offset) VALUES ('" +
            topics.commands + "', 0, 0)");
  auto first =
      std::async(std::launch::async, [&] { return a.apply(authorize(topics, "cmd-a", 0, 600)); });
  ASSERT_TRUE(test.wait_for(waiting, 1)) << "A's batch waits for the offset row";
  // B's command (another partition) would take the day to 1200.
  auto second =
      std::async(std::launch::async, [&] { return b.apply(authorize(topics, "cmd-b", 1, 600)); });
  ASSERT_TRUE(test.wait_for(waiting, 2)) << "B's batch waits for A's";
  test.exec("ROLLBACK");
  const BatchResult ra = first.get();
  const BatchResult rb = second.get();

  const auto day = core::rfc3339_ms(core::now_ms()).substr(0, 10);
  EXPECT_EQ(a.store->spent("limited", "EUR", day), 600) << "one command's amount, not both";
  const auto ca = a.store->find_command("cmd-a");
  const auto cb = a.store->find_command("cmd-b");
  ASSERT_TRUE(ca && cb);
  EXPECT_EQ(ca->status, storage::CommandStatus::accepted);
  EXPECT_EQ(cb->status, storage::CommandStatus::rejected);
  EXPECT_NE(cb->reason.value_or("").find("not_permitted: amount 600 EUR would take today's "
                                         "total to 1200, over the per-day limit 1000"),
            std::string::npos)
      << cb->reason.value_or("(no reason)");
  EXPECT_EQ(ra.commands_refused.count("not_permitted"), 0u);
  EXPECT_EQ(rb.commands_refused.at("not_permitted"), 1u);
  EXPECT_EQ(a.store->outbox("ref-cmd-a").size(), 1u) << "A's authorize is queued for Klarna";
  EXPECT_TRUE(a.store->outbox("ref-cmd-b").empty()) << "B's is not";
  EXPECT_EQ(a.retries + b.retries, 0)
      << "B waited for A's commit instead of failing (40001) and being applied again";
  EXPECT_EQ(test.count("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"), 0)
      << "both batches let the sender go";
}

// The keys are let go however a transaction ends: a rolled-back one (a batch
// that failed) leaves nothing held that would stall the other processors.
TEST_F(SenderDayLimits, TheKeysAreLetGoHoweverTheTransactionEnds) {
  const std::string dsn = server_->dsn();
  Processor a(dsn, "proc-a", limited_sender());
  Session test(dsn);
  const std::string held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'";
  const std::vector<std::string> keys{"sender-day-total:limited", "sender-day-total:other"};
  {
    storage::WriteTransaction tx(*a.store, keys);
    EXPECT_EQ(test.count(held), 2) << "both keys held while the transaction is open";
    a.store->save_offset("t", 0, 1);
  }  // rolled back
  EXPECT_EQ(test.count(held), 0);
  {
    storage::WriteTransaction tx(*a.store, keys);
    a.store->save_offset("t", 0, 2);
    tx.commit();
  }
  EXPECT_EQ(test.count(held), 0);
  EXPECT_EQ(test.count("SELECT next_offset FROM consumer_offsets WHERE topic = 't'"), 2)
      << "only the committed transaction's offset";
}

}  // namespace
