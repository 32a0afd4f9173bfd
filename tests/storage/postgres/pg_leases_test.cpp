// Claims with leases (storage/src/postgres/pg_leases.hpp): several processors
// on one PostgreSQL never claim one outbox row together, a dead claimer's
// rows are claimed again after its lease (the callers' clocks: now_ms) and
// resent with the same key, a starting processor releases only its own, and
// a job runs on one processor at a time (the server's clock).
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
  std::string dsn_;
};

storage::OutboxClaim claim(std::int64_t now, std::string owner, std::int64_t lease_ms,
                           std::size_t limit = 10) {
  return {.now_ms = now, .limit = limit, .owner = std::move(owner), .lease_ms = lease_ms};
}

TEST_F(PgLeases, ProcessorsClaimingTogetherNeverShareARow) {
  add_calls(300);
  constexpr int kProcessors = 4;
  std::vector<std::vector<storage::OutboxRow>> claimed(kProcessors);
  std::vector<std::thread> threads;
  for (int p = 0; p < kProcessors; ++p) {
    threads.emplace_back([&, p] {
      auto c = connect(dsn_);
      for (;;) {
        auto rows = pg::claim_due_outbox(c, claim(1000, "proc-" + std::to_string(p), 60000, 7));
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
      EXPECT_EQ(row.status, storage::OutboxStatus::in_flight);
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
  auto first = pg::claim_due_outbox(a, claim(1000, "proc-a", 500));
  ASSERT_EQ(first.size(), 1u);
  EXPECT_TRUE(pg::claim_due_outbox(b, claim(1499, "proc-b", 500)).empty()) << "under a lease";
  auto again = pg::claim_due_outbox(b, claim(1500, "proc-b", 500));
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].id, first[0].id);
  EXPECT_EQ(again[0].idempotency_key, first[0].idempotency_key);
  EXPECT_EQ(again[0].call_token, "tok-0");
  EXPECT_EQ(again[0].attempts, 2);

  storage::OutboxUpdate done;
  done.id = first[0].id;
  done.status = storage::OutboxStatus::succeeded;
  done.now_ms = 3000;
  done.last_status = 201;
  done.result = "capture-1";
  done.owner = "proc-a";
  // A's late answer: its hold fails first (the worker then writes none of
  // the answer's effects), and the record would fail too.
  EXPECT_FALSE(pg::hold_outbox_claim(a, first[0].id, "proc-a")) << "the lost claim held";
  EXPECT_TRUE(pg::hold_outbox_claim(b, first[0].id, "proc-b"));
  EXPECT_TRUE(pg::hold_outbox_claim(a, first[0].id, "")) << "no owner: a single processor";
  EXPECT_FALSE(pg::record_outbox_answer(a, done)) << "the lost claim recorded";
  done.owner = "proc-b";
  EXPECT_TRUE(pg::record_outbox_answer(b, done));
  pg::Result r = a.query("SELECT status, claimed_by, result FROM outbox");
  EXPECT_EQ(r.text(0, 0), "succeeded");
  EXPECT_TRUE(r.is_null(0, 1));
  EXPECT_EQ(r.text(0, 2), "capture-1");
  EXPECT_TRUE(pg::claim_due_outbox(b, claim(9000, "proc-b", 500)).empty());
}

// A claimer that holds its claim (recording an answer) keeps the row for the
// rest of its transaction, even once its lease ran out: another processor's
// claim skips the locked row, and takes it only if the holder never records.
TEST_F(PgLeases, AHeldClaimIsNotTakenOverUntilItsTransactionEnds) {
  add_calls(1);
  auto a = connect(dsn_);
  auto b = connect(dsn_);
  auto first = pg::claim_due_outbox(a, claim(1000, "proc-a", 500));
  ASSERT_EQ(first.size(), 1u);
  {
    pg::Transaction tx(a, pg::Isolation::repeatable_read);
    ASSERT_TRUE(pg::hold_outbox_claim(a, first[0].id, "proc-a"));
    EXPECT_TRUE(pg::claim_due_outbox(b, claim(5000, "proc-b", 500)).empty())
        << "a held claim taken over";
    // The holder gives up (its transaction rolls back): the row is free again.
  }
  auto again = pg::claim_due_outbox(b, claim(5000, "proc-b", 500));
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].attempts, 2);
  {
    pg::Transaction tx(a, pg::Isolation::repeatable_read);
    EXPECT_FALSE(pg::hold_outbox_claim(a, first[0].id, "proc-a"));
  }
  storage::OutboxUpdate done;
  done.id = first[0].id;
  done.status = storage::OutboxStatus::succeeded;
  done.now_ms = 6000;
  done.owner = "proc-b";
  {
    pg::Transaction tx(b, pg::Isolation::repeatable_read);
    ASSERT_TRUE(pg::hold_outbox_claim(b, first[0].id, "proc-b"));
    EXPECT_TRUE(pg::record_outbox_answer(b, done));
    tx.commit();
  }
  EXPECT_EQ(a.query("SELECT status FROM outbox").text(0, 0), "succeeded");
}

TEST_F(PgLeases, AStartingProcessorReleasesOnlyItsOwnClaims) {
  add_calls(3);
  auto a = connect(dsn_);
  auto b = connect(dsn_);
  EXPECT_EQ(pg::claim_due_outbox(a, claim(1000, "proc-a", 60000, 2)).size(), 2u);
  EXPECT_EQ(pg::claim_due_outbox(b, claim(1000, "proc-b", 60000, 2)).size(), 1u);
  EXPECT_EQ(pg::release_outbox_claims(b, "proc-a", 5000), 2);
  EXPECT_TRUE(pg::claim_due_outbox(b, claim(4999, "proc-b", 60000)).empty());
  EXPECT_EQ(pg::claim_due_outbox(b, claim(5000, "proc-b", 60000)).size(), 2u);
  EXPECT_EQ(pg::release_outbox_claims(a, "", 6000), 3) << "no owner: a single processor";
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
