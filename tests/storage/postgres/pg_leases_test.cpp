// Claims with leases (storage/src/postgres/pg_leases.hpp): several processors
// on one PostgreSQL never claim one outbox row together, a dead claimant's
// rows are claimed again after its lease and resent with the same key, and a
// job runs on one processor at a time.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <set>
#include <thread>

#include "pg_test_support.hpp"
#include "postgres/pg_leases.hpp"
#include "postgres/pg_schema.hpp"

namespace pg = kpay::storage::pg;
using namespace std::chrono_literals;
using pg::params;

namespace kpay::test {
namespace {

class PgLeases : public PgSuite {
 protected:
  void SetUp() override {
    dsn_ = fresh_database();
    auto c = connect(dsn_);
    pg::migrate(c);
  }
  // n pending capture calls, due at 0, keys idem-<i>, tokens tok-<i>.
  void add_calls(int n) {
    auto c = connect(dsn_);
    for (int i = 0; i < n; ++i) {
      c.query(
          "INSERT INTO outbox (operation, entity_id, idempotency_key, request_body, call_token, "
          "created_by_event_id) VALUES ('capture', $1, $2, '{}', $3, 'evt')",
          params("txn-" + std::to_string(i), "idem-" + std::to_string(i),
                 "tok-" + std::to_string(i)));
    }
  }
  // Polls `claim` until it returns rows: a bounded wait for a lease to expire.
  template <class F>
  static auto wait_for_rows(F claim) {
    const auto end = std::chrono::steady_clock::now() + 20s;
    for (;;) {
      auto rows = claim();
      if (!rows.empty() || std::chrono::steady_clock::now() > end) return rows;
      std::this_thread::sleep_for(20ms);
    }
  }
  std::string dsn_;
};

TEST_F(PgLeases, ProcessorsClaimingTogetherNeverShareARow) {
  add_calls(300);
  constexpr int kProcessors = 4;
  std::vector<std::vector<storage::OutboxRow>> claimed(kProcessors);
  std::vector<std::thread> threads;
  for (int p = 0; p < kProcessors; ++p) {
    threads.emplace_back([&, p] {
      auto c = connect(dsn_);
      const pg::Claimant me{"proc-" + std::to_string(p), 60s};
      for (;;) {
        auto rows = pg::claim_due_outbox(c, me, 1000, 7);
        if (rows.empty()) break;
        claimed[p].insert(claimed[p].end(), rows.begin(), rows.end());
      }
    });
  }
  for (auto& t : threads) t.join();
  std::map<std::int64_t, int> owner;
  for (int p = 0; p < kProcessors; ++p) {
    for (const auto& row : claimed[p]) {
      EXPECT_TRUE(owner.emplace(row.id, p).second) << "row " << row.id << " claimed twice";
      EXPECT_EQ(row.status, "in_flight");
      EXPECT_EQ(row.attempts, 1);
      EXPECT_EQ(row.call_token, "tok-" + row.entity_id.substr(4));
    }
  }
  EXPECT_EQ(owner.size(), 300u);
  auto c = connect(dsn_);
  pg::Result r = c.query("SELECT id, claimed_by FROM outbox");
  for (int i = 0; i < r.rows(); ++i) {
    EXPECT_EQ(r.text(i, 1), "proc-" + std::to_string(owner[r.int64(i, 0)]));
  }
}

// A processor that dies mid-call (it claimed, maybe sent, never recorded):
// another claims the row after the lease and resends it with the same key;
// the dead one's late answer, should it come back, is not recorded.
TEST_F(PgLeases, ADeadClaimantsRowIsClaimedAgainAfterItsLease) {
  add_calls(1);
  auto a = connect(dsn_);
  auto b = connect(dsn_);
  const pg::Claimant dying{"proc-a", 300ms};
  const pg::Claimant survivor{"proc-b", 60s};
  auto first = pg::claim_due_outbox(a, dying, 1000, 10);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_TRUE(pg::claim_due_outbox(b, survivor, 1000, 10).empty()) << "claimed under a lease";
  auto again = wait_for_rows([&] { return pg::claim_due_outbox(b, survivor, 2000, 10); });
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].id, first[0].id);
  EXPECT_EQ(again[0].idempotency_key, first[0].idempotency_key);
  EXPECT_EQ(again[0].call_token, "tok-0");
  EXPECT_EQ(again[0].attempts, 2);

  storage::OutboxUpdate done;
  done.id = first[0].id;
  done.status = "succeeded";
  done.now_ms = 3000;
  done.last_status = 201;
  done.result = "capture-1";
  EXPECT_FALSE(pg::record_outbox_answer(a, "proc-a", done)) << "the lost claim recorded";
  EXPECT_TRUE(pg::record_outbox_answer(b, "proc-b", done));
  pg::Result r = a.query("SELECT status, claimed_by, result FROM outbox");
  EXPECT_EQ(r.text(0, 0), "succeeded");
  EXPECT_TRUE(r.is_null(0, 1));
  EXPECT_EQ(r.text(0, 2), "capture-1");
  EXPECT_TRUE(pg::claim_due_outbox(b, survivor, 9000, 10).empty());
}

TEST_F(PgLeases, RenewedClaimsHoldAndReleasedOnesAreDueAtOnce) {
  add_calls(2);
  auto a = connect(dsn_);
  auto b = connect(dsn_);
  const pg::Claimant me{"proc-a", 1ms};
  auto rows = pg::claim_due_outbox(a, me, 1000, 10);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(pg::renew_outbox_claims(a, {"proc-a", 60s}, {rows[0].id, rows[1].id}), 2);
  EXPECT_EQ(pg::renew_outbox_claims(b, {"proc-b", 60s}, {rows[0].id}), 0) << "not b's claim";
  EXPECT_TRUE(pg::claim_due_outbox(b, {"proc-b", 60s}, 1000, 10).empty());
  // next_outbox_wakeup: no pending row; the nearest lease ends ~60 s from now.
  auto wake = pg::next_outbox_wakeup(a, 1000);
  ASSERT_TRUE(wake.has_value());
  EXPECT_GT(*wake, 1000 + 50000);
  EXPECT_EQ(pg::release_outbox_claims(a, "proc-a", 5000), 2);
  EXPECT_EQ(pg::next_outbox_wakeup(a, 1000), 5000);
  EXPECT_TRUE(pg::claim_due_outbox(b, {"proc-b", 60s}, 4999, 10).empty());
  EXPECT_EQ(pg::claim_due_outbox(b, {"proc-b", 60s}, 5000, 10).size(), 2u);
}

TEST_F(PgLeases, AJobRunsOnOneProcessorAtATime) {
  auto a = connect(dsn_);
  auto b = connect(dsn_);
  const pg::Claimant pa{"proc-a", 60s}, pb{"proc-b", 60s};
  EXPECT_TRUE(pg::hold_job(a, "dispute-deadlines", pa));
  EXPECT_FALSE(pg::hold_job(b, "dispute-deadlines", pb));
  EXPECT_TRUE(pg::hold_job(b, "publish-drain", pb)) << "jobs are independent";
  EXPECT_TRUE(pg::hold_job(a, "dispute-deadlines", pa)) << "renewal";
  EXPECT_EQ(pg::job_holder(b, "dispute-deadlines"), "proc-a");
  pg::release_job(a, "dispute-deadlines", "proc-a");
  EXPECT_EQ(pg::job_holder(b, "dispute-deadlines"), std::nullopt);
  EXPECT_TRUE(pg::hold_job(b, "dispute-deadlines", pb));
  // A holder that stops renewing loses the job when its lease ends.
  EXPECT_TRUE(pg::hold_job(a, "call-deadlines", {"proc-a", 200ms}));
  EXPECT_FALSE(pg::hold_job(b, "call-deadlines", pb));
  const auto end = std::chrono::steady_clock::now() + 20s;
  bool taken = false;
  while (!taken && std::chrono::steady_clock::now() < end) {
    taken = pg::hold_job(b, "call-deadlines", pb);
    if (!taken) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(taken);
  EXPECT_FALSE(pg::hold_job(a, "call-deadlines", {"proc-a", 200ms}));
}

}  // namespace
}  // namespace kpay::test
