// Plans of the store's lookups on PostgreSQL (storage/src/postgres/). A
// prepared statement is, after five runs, planned once for any value (a
// "generic plan") from the statistics of that moment. For "the first
// transaction of a request" (… WHERE payment_request_id = $1 ORDER BY id
// LIMIT 1) statistics taken while the table was young (few requests, many
// rows each) make that plan walk the whole primary key in id order looking
// for the request: seen in pg_bench as 1.3 ms per lookup, 40 % of the
// server's time. Planned for the value each time, the lookup uses the
// request's index.
#include <gtest/gtest.h>

#include "pg_test_support.hpp"
#include "postgres/pg_schema.hpp"
#include "postgres/pg_state.hpp"

using kpay::storage::pg::params;

namespace kpay::test {
namespace {

class PgPlans : public PgSuite {};

std::string plan_of(storage::pg::Connection& c, const std::string& sql) {
  auto r = c.query("EXPLAIN " + sql);
  std::string plan;
  for (int i = 0; i < r.rows(); ++i) plan += r.text(i, 0) + "\n";
  return plan;
}

TEST_F(PgPlans, LookupsByAForeignIdArePlannedForTheIdNotOnceForAll) {
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
  // What one plan for any value does with these statistics (the defect).
  c.exec("SET plan_cache_mode = force_generic_plan");
  c.exec(
      "PREPARE q AS SELECT id FROM payment_transactions WHERE payment_request_id = $1 "
      "ORDER BY id LIMIT 1");
  EXPECT_NE(plan_of(c, "EXECUTE q('pr-777')").find("payment_transactions_pkey"), std::string::npos)
      << "the premise: a generic plan walks the primary key";
  c.exec("DEALLOCATE q");
  c.exec("RESET plan_cache_mode");

  storage::pg::PgState state(c);
  for (int i = 0; i < 10; ++i) {  // more runs than the five before a generic plan
    EXPECT_EQ(state.transaction_for_request("pr-777"), "tx-777");
    EXPECT_EQ(state.request_for_transaction("tx-777"), "pr-777");
  }
  // Never prepared, so never given one plan for all ids.
  EXPECT_EQ(c.query("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE $1",
                    params("%WHERE payment_%_id = $1 ORDER BY id LIMIT 1%"))
                .int64(0, 0),
            0);
  // Planned for the id: by the foreign id's index.
  EXPECT_NE(plan_of(c,
                    "SELECT id FROM payment_transactions WHERE payment_request_id = 'pr-777' "
                    "ORDER BY id LIMIT 1")
                .find("payment_transactions_by_request"),
            std::string::npos);
  EXPECT_NE(plan_of(c,
                    "SELECT id FROM payment_requests WHERE payment_transaction_id = 'tx-777' "
                    "ORDER BY id LIMIT 1")
                .find("payment_requests_by_transaction"),
            std::string::npos);
}

}  // namespace
}  // namespace kpay::test
