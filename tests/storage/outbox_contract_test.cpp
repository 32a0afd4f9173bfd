// Contract: OutboxStore (storage/README.md, "Outbox: claims, leases, answers").
#include <algorithm>
#include <memory>
#include <thread>

#include "store_contract.hpp"

namespace kpay::storage::contract {
namespace {

class OutboxContract : public StoreContract {};

OutboxRow call(const std::string& key, std::int64_t due_at_ms) {
  OutboxRow o;
  o.operation = OutboxOperation::capture;
  o.entity_id = "tx-1";
  o.idempotency_key = key;
  o.request_body = R"({"captured_amount":100})";
  o.call_token = "secret-token-" + key;
  o.created_by_event_id = "e1";
  o.account_id = "acc-1";
  o.path = "/payment/transactions/tx-1/captures";
  o.next_attempt_at_ms = due_at_ms;
  o.created_at_ms = 1;
  o.amount = 100;
  return o;
}

std::vector<std::string> keys(const std::vector<OutboxRow>& rows) {
  std::vector<std::string> out;
  for (const auto& r : rows) out.push_back(r.idempotency_key);
  return out;
}

TEST_P(OutboxContract, TheIdempotencyKeyIsUniqueForEver) {
  EXPECT_TRUE(store().insert_outbox(call("k1", 0)));
  auto again = call("k1", 0);
  again.entity_id = "tx-2";
  EXPECT_FALSE(store().insert_outbox(again));
  const auto rows = store().outbox("tx-1");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].status, OutboxStatus::pending);
  EXPECT_TRUE(store().outbox("tx-2").empty());
}

TEST_P(OutboxContract, ClaimTakesDueRowsOldestFirstWithTheirToken) {
  store().insert_outbox(call("late", 300));
  store().insert_outbox(call("first", 100));
  store().insert_outbox(call("second", 200));
  store().insert_outbox(call("not-due", 5000));
  const auto claimed = store().claim_due_outbox(OutboxClaim{.now_ms = 1000, .limit = 2});
  EXPECT_EQ(keys(claimed), (std::vector<std::string>{"first", "second"}));
  EXPECT_EQ(claimed[0].status, OutboxStatus::in_flight);
  EXPECT_EQ(claimed[0].attempts, 1);
  EXPECT_EQ(claimed[0].call_token, "secret-token-first");
  EXPECT_EQ(claimed[0].updated_at_ms, 1000);
  {
    WriteTransaction answer(store());  // recording an answer: the claim still ours
    EXPECT_TRUE(store().hold_outbox_claim(claimed[0].id));
    answer.commit();
  }
  // Reads never give the token back.
  const auto read = store().find_outbox(claimed[0].id);
  ASSERT_TRUE(read);
  EXPECT_EQ(read->status, OutboxStatus::in_flight);
  EXPECT_TRUE(read->call_token.empty());
  for (const auto& r : store().list_outbox(std::nullopt, 10)) EXPECT_TRUE(r.call_token.empty());
  // What is left: the one due, not the one in the future.
  EXPECT_EQ(keys(store().claim_due_outbox(1000, 10)), std::vector<std::string>{"late"});
  EXPECT_TRUE(store().claim_due_outbox(1000, 10).empty());
  EXPECT_EQ(store().next_outbox_attempt(), 5000);
}

TEST_P(OutboxContract, TwoClaimersNeverGetTheSameRow) {
  for (int i = 0; i < 20; ++i) store().insert_outbox(call("k" + std::to_string(i), 0));
  auto other = second_connection();
  std::vector<std::string> seen;
  for (int round = 0; round < 10; ++round) {
    WriteTransaction a(store());
    auto mine = store().claim_due_outbox(
        OutboxClaim{.now_ms = 10, .limit = 1, .owner = "p1", .lease_ms = 60000});
    a.commit();
    WriteTransaction b(*other);
    auto theirs = other->claim_due_outbox(
        OutboxClaim{.now_ms = 10, .limit = 1, .owner = "p2", .lease_ms = 60000});
    b.commit();
    for (const auto& r : mine) seen.push_back(r.idempotency_key);
    for (const auto& r : theirs) seen.push_back(r.idempotency_key);
  }
  EXPECT_EQ(seen.size(), 20u);
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(std::adjacent_find(seen.begin(), seen.end()), seen.end());
}

// Processors claiming at once, as the outbox worker does (each claim a unit
// of work of its own, one row at a time, all after the same due rows): no
// claim fails and no row is claimed twice. On PostgreSQL a claim made at
// REPEATABLE READ failed here with a serialization failure (40001) whenever
// another committed its claim of the head row after this one's snapshot
// (pg_store.hpp).
TEST_P(OutboxContract, ProcessorsClaimingAtOnceNeitherFailNorShareARow) {
  constexpr int kCalls = 200, kClaimers = 4;
  for (int i = 0; i < kCalls; ++i) store().insert_outbox(call("k" + std::to_string(i), 0));
  std::vector<std::unique_ptr<Store>> stores;
  for (int p = 0; p < kClaimers; ++p) stores.push_back(second_connection());
  std::vector<std::vector<std::string>> claimed(kClaimers);
  std::vector<std::string> errors(kClaimers);
  std::vector<std::thread> threads;
  for (int p = 0; p < kClaimers; ++p) {
    threads.emplace_back([&, p] {
      const OutboxClaim claim{
          .now_ms = 10, .limit = 1, .owner = "p" + std::to_string(p), .lease_ms = 60000};
      try {
        for (;;) {
          WriteTransaction tx(*stores[p]);
          const auto rows = stores[p]->claim_due_outbox(claim);
          tx.commit();
          if (rows.empty()) return;
          claimed[p].push_back(rows[0].idempotency_key);
        }
      } catch (const std::exception& e) {
        errors[p] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  std::vector<std::string> seen;
  for (int p = 0; p < kClaimers; ++p) {
    EXPECT_EQ(errors[p], "") << "claimer " << p << " after " << claimed[p].size() << " claims";
    seen.insert(seen.end(), claimed[p].begin(), claimed[p].end());
  }
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(kCalls));
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(std::adjacent_find(seen.begin(), seen.end()), seen.end()) << "a row claimed twice";
}

TEST_P(OutboxContract, ALapsedLeaseLetsAnotherClaimerResendWithTheSameKey) {
  store().insert_outbox(call("k1", 0));
  const auto first = store().claim_due_outbox(
      OutboxClaim{.now_ms = 1000, .limit = 10, .owner = "p1", .lease_ms = 500});
  ASSERT_EQ(first.size(), 1u);
  auto other = second_connection();
  EXPECT_TRUE(other
                  ->claim_due_outbox(
                      OutboxClaim{.now_ms = 1499, .limit = 10, .owner = "p2", .lease_ms = 500})
                  .empty());  // held
  const auto second = other->claim_due_outbox(
      OutboxClaim{.now_ms = 1500, .limit = 10, .owner = "p2", .lease_ms = 500});
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].id, first[0].id);
  EXPECT_EQ(second[0].idempotency_key, "k1");
  EXPECT_EQ(second[0].call_token, "secret-token-k1");
  EXPECT_EQ(second[0].attempts, 2);
}

TEST_P(OutboxContract, WithoutALeaseAClaimHoldsUntilReleasedAtStart) {
  store().insert_outbox(call("k1", 0));
  ASSERT_EQ(store().claim_due_outbox(1000, 10).size(), 1u);
  EXPECT_TRUE(store().claim_due_outbox(1000000000, 10).empty());
  EXPECT_EQ(store().release_in_flight_outbox(2000), 1);
  const auto again = store().claim_due_outbox(2000, 10);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].attempts, 2);
}

TEST_P(OutboxContract, AnswersRetriesAndOperatorRequeue) {
  store().insert_outbox(call("k1", 0));
  const auto id = store().claim_due_outbox(10, 1).at(0).id;
  OutboxUpdate retry{id,  OutboxStatus::pending,     500,          20,
                     503, "503 Service Unavailable", std::nullopt, ""};
  EXPECT_TRUE(store().update_outbox(retry));
  EXPECT_TRUE(store().claim_due_outbox(499, 1).empty());
  ASSERT_EQ(store().claim_due_outbox(500, 1).size(), 1u);
  OutboxUpdate failed{
      id, OutboxStatus::failed, 0, 600, std::nullopt, "400 Bad Request", std::nullopt, ""};
  EXPECT_TRUE(store().update_outbox(failed));
  auto row = store().find_outbox(id);
  EXPECT_EQ(row->status, OutboxStatus::failed);
  EXPECT_EQ(row->last_status, 503);  // kept: the update gave none
  EXPECT_EQ(row->last_error, "400 Bad Request");
  EXPECT_EQ(row->attempts, 2);
  EXPECT_EQ(store().outbox_counts().failed, 1);
  EXPECT_TRUE(store().retry_outbox(id, 700));
  EXPECT_FALSE(store().retry_outbox(id, 700));  // pending now, not failed
  ASSERT_EQ(store().claim_due_outbox(700, 1).size(), 1u);
  OutboxUpdate ok{id, OutboxStatus::succeeded, 0, 800, 200, std::nullopt, "cap-1", ""};
  EXPECT_TRUE(store().update_outbox(ok));
  row = store().find_outbox(id);
  EXPECT_EQ(row->status, OutboxStatus::succeeded);
  EXPECT_EQ(row->result, "cap-1");
  EXPECT_FALSE(row->last_error);
  const auto counts = store().outbox_counts();
  EXPECT_EQ(counts.succeeded, 1);
  EXPECT_EQ(counts.pending + counts.in_flight + counts.failed, 0);
  EXPECT_FALSE(store().update_outbox(OutboxUpdate{id + 100, OutboxStatus::failed, 0, 900,
                                                  std::nullopt, std::nullopt, std::nullopt, ""}));
}

TEST_P(OutboxContract, MoneyNotYetMovedAndDeadlines) {
  auto a = call("a", 0);
  a.due_by_ms = 10000;
  auto b = call("b", 0);
  b.capture_id = "cap-1";
  b.due_by_ms = 3000;
  auto c = call("c", 0);
  c.operation = OutboxOperation::refund_capture;
  store().insert_outbox(a);
  store().insert_outbox(b);
  store().insert_outbox(c);
  EXPECT_EQ(store().pending_outbox_amount("tx-1", OutboxOperation::capture), 200);
  EXPECT_EQ(store().pending_outbox_amount("tx-1", OutboxOperation::capture, "cap-1"), 100);
  EXPECT_EQ(store().pending_outbox_amount("tx-2", OutboxOperation::capture), 0);
  const auto due = store().outbox_due_within(2000, 9000, 10);
  EXPECT_EQ(keys(due), (std::vector<std::string>{"b", "a"}));
  EXPECT_EQ(keys(store().outbox_due_within(2000, 1500, 10)), std::vector<std::string>{"b"});
  const auto d = store().deadlines(4000, 60000, 10000);
  EXPECT_EQ(d.calls_pending, 3);
  EXPECT_EQ(d.calls_overdue, 1);
  EXPECT_EQ(d.calls_at_risk, 1);
  EXPECT_EQ(d.nearest_call_due_ms, 3000);
}

KPAY_STORE_CONTRACT(OutboxContract);

}  // namespace
}  // namespace kpay::storage::contract
