// Plans of the store's lookups on PostgreSQL (storage/src/postgres/). A
// prepared statement is, after five runs, planned once for any value (a
// "generic plan") from the statistics of that moment. For "the first
// transaction of a request" (… WHERE payment_request_id = $1 ORDER BY id
// LIMIT 1) statistics taken while the table was young (few requests, many
// rows each) made that plan walk the whole primary key in id order looking
// for the request: seen in pg_bench as 1.3 ms per lookup, 40 % of the
// server's time. Since migration 16 the (request, id) index gives both the
// request and the order, so every plan uses it.
#include <gtest/gtest.h>

#include "pg_test_support.hpp"
#include "postgres/pg_schema.hpp"
#include "postgres/pg_state.hpp"

namespace kpay::test {
namespace {

class PgPlans : public PgSuite {};

std::string plan_of(storage::pg::Connection& c, const std::string& sql) {
  auto r = c.query("EXPLAIN " + sql);
  std::string plan;
  for (int i = 0; i < r.rows(); ++i) plan += r.text(i, 0) + "\n";
  return plan;
}

TEST_F(PgPlans, LookupsByAForeignIdUseItsIndexInEveryPlan) {
  auto c = connect(fresh_database());
  storage::pg::migrate(c);
  // Statistics of a young table, then many more rows.
  c.exec(
      "INSERT INTO payment_transactions (id, state_as_of_ms, payment_request_id, last_event_id) "
      "SELECT 'tx-' || i, 0, 'pr-early', 'ev' FROM generate_series(1, 50) i");
  c.exec(
      "INSERT INTO payment_requests (id, generation, state_as_of_ms, payment_transaction_id, "
      "last_event_id) SELECT 'pr-' || i, 2, 0, 'tx-early', 'ev' FROM generate_series(1, 50) i");
  c.exec("ANALYZE payment_transactions; ANALYZE payment_requests");
  c.exec(
      "INSERT INTO payment_transactions (id, state_as_of_ms, payment_request_id, last_event_id) "
      "SELECT 'tx-' || i, 0, 'pr-' || i, 'ev' FROM generate_series(51, 20000) i");
  c.exec(
      "INSERT INTO payment_requests (id, generation, state_as_of_ms, payment_transaction_id, "
      "last_event_id) SELECT 'pr-' || i, 2, 0, 'tx-' || i, 'ev' FROM generate_series(51, 20000) i");
  // One plan for any value, as a prepared statement gets after five runs.
  c.exec("SET plan_cache_mode = force_generic_plan");
  const auto generic_plan = [&](const std::string& sql, const std::string& value) {
    c.exec("PREPARE q AS " + sql);
    const std::string plan = plan_of(c, "EXECUTE q('" + value + "')");
    c.exec("DEALLOCATE q");
    return plan;
  };
  const std::string by_request = generic_plan(
      "SELECT id FROM payment_transactions WHERE payment_request_id = $1 ORDER BY id LIMIT 1",
      "pr-777");
  EXPECT_NE(by_request.find("payment_transactions_by_request"), std::string::npos) << by_request;
  const std::string by_transaction = generic_plan(
      "SELECT id FROM payment_requests WHERE payment_transaction_id = $1 ORDER BY id LIMIT 1",
      "tx-777");
  EXPECT_NE(by_transaction.find("payment_requests_by_transaction"), std::string::npos)
      << by_transaction;
  c.exec("RESET plan_cache_mode");
  storage::pg::PgState state(c);
  EXPECT_EQ(state.transaction_for_request("pr-777"), "tx-777");
  EXPECT_EQ(state.request_for_transaction("tx-777"), "pr-777");
}

// Migration 20: a store that has run for years holds mostly closed disputes;
// the deadline watcher's pages of open ones use the partial index of the open
// ones in a generic plan made from those statistics, not a scan of them all.
TEST_F(PgPlans, OpenDisputesAreReadThroughTheirPartialIndex) {
  auto c = connect(fresh_database());
  storage::pg::migrate(c);
  c.exec(
      "INSERT INTO disputes (id, framework, framework_inferred, state, state_as_of_ms, "
      "representment_as_of_ms, arbitration_as_of_ms, last_event_id) SELECT 'dis-' || "
      "lpad(i::text, 6, '0'), 'current', false, CASE WHEN i % 100 = 0 THEN 'INITIATED' ELSE "
      "'CLOSED' END, 0, 0, 0, 'ev' FROM generate_series(1, 20000) i");
  c.exec("ANALYZE disputes");
  c.exec("SET plan_cache_mode = force_generic_plan");
  for (bool after : {false, true}) {
    c.exec("PREPARE q AS " + storage::pg::open_disputes_sql(after));
    const std::string plan = plan_of(c, after ? "EXECUTE q('dis-010000', 50)" : "EXECUTE q(50)");
    c.exec("DEALLOCATE q");
    EXPECT_NE(plan.find("disputes_open"), std::string::npos) << plan;
    EXPECT_EQ(plan.find("Seq Scan"), std::string::npos) << plan;
  }
  c.exec("RESET plan_cache_mode");
  storage::pg::PgState state(c);
  const auto page = state.open_disputes_after(std::string("dis-010000"), 3);
  ASSERT_EQ(page.size(), 3u);
  EXPECT_EQ(page[0].id, "dis-010100");
  EXPECT_EQ(page[2].id, "dis-010300");
}

}  // namespace
}  // namespace kpay::test
