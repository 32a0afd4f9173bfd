// Contract: PublishQueue and OffsetStore (storage/README.md, "Publish queue
// and offsets").
#include "store_contract.hpp"

namespace kpay::storage::contract {
namespace {

class QueueContract : public StoreContract {};

TEST_P(QueueContract, PublicationsComeBackInOrderUntilDeleted) {
  const auto a = store().enqueue_publish({0, "klarna.state", "k1", "v1", ""});
  const auto b = store().enqueue_publish({0, "klarna.dead", std::string("k\0x", 3), "v2", "why"});
  const auto c = store().enqueue_publish({0, "klarna.state", "k1", "v3", ""});
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  store().delete_published(b);
  store().delete_published(b);  // gone already: no-op
  const auto rows = second_connection()->pending_publications();
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].seq, a);
  EXPECT_EQ(rows[0].value, "v1");
  EXPECT_EQ(rows[1].seq, c);
  const auto again = store().enqueue_publish({0, "klarna.dead", std::string("k\0x", 3), "v", "r"});
  const auto all = store().pending_publications();
  EXPECT_EQ(all.back().seq, again);
  EXPECT_EQ(all.back().key, std::string("k\0x", 3));  // bytes kept
  EXPECT_EQ(all.back().reason, "r");
}

TEST_P(QueueContract, OffsetsNeverMoveBackUnlessReset) {
  EXPECT_FALSE(store().stored_offset("klarna.events", 0));
  store().save_offset("klarna.events", 0, 10);
  store().save_offset("klarna.events", 0, 7);
  store().save_offset("klarna.events", 1, 3);
  EXPECT_EQ(store().stored_offset("klarna.events", 0), 10);
  EXPECT_EQ(store().stored_offset("klarna.events", 1), 3);
  store().reset_offset("klarna.events", 0, 0);
  EXPECT_EQ(store().stored_offset("klarna.events", 0), 0);
}

OffsetGapRow gap(std::int64_t expected, GapPolicy policy) {
  OffsetGapRow g;
  g.topic = "klarna.events";
  g.partition = 2;
  g.expected = expected;
  g.resume_at = expected + 50;
  g.kind = "deleted";
  g.skipped = 50;
  g.policy = policy;
  g.detected_at_ms = 1000 + expected;
  return g;
}

TEST_P(QueueContract, AGapIsRecordedOnceAndAcceptedOnce) {
  store().save_offset("klarna.events", 2, 100);
  const auto [row, inserted] = store().record_gap(gap(100, GapPolicy::pause));
  EXPECT_TRUE(inserted);
  EXPECT_EQ(row.status, GapStatus::open);
  const auto [same, again] = store().record_gap(gap(100, GapPolicy::pause));
  EXPECT_FALSE(again);
  EXPECT_EQ(same.id, row.id);
  EXPECT_EQ(store().count_open_gaps(), 1);
  EXPECT_EQ(store().open_gap("klarna.events", 2)->id, row.id);
  EXPECT_FALSE(store().open_gap("klarna.events", 3));
  EXPECT_TRUE(store().accept_gap(row.id, 2000));
  EXPECT_FALSE(store().accept_gap(row.id, 2001));
  EXPECT_EQ(store().stored_offset("klarna.events", 2), 150);  // pause: resumes after the gap
  EXPECT_EQ(store().find_gap(row.id)->status, GapStatus::accepted);
  EXPECT_EQ(store().find_gap(row.id)->decided_at_ms, 2000);
  EXPECT_EQ(store().count_open_gaps(), 0);
  store().mark_gap_repaired(row.id, 3, 2500);
  EXPECT_EQ(store().find_gap(row.id)->repair_reads, 3);
  store().record_gap(gap(400, GapPolicy::go_on));
  EXPECT_EQ(store().list_gaps(std::nullopt, 10).size(), 2u);
  EXPECT_EQ(store().list_gaps(GapStatus::open, 10).at(0).expected, 400);
}

TEST_P(QueueContract, RepairTargetsAreTheEntitiesSeenOnThePartition) {
  PaymentTransactionRow t;
  t.id = "tx-1";
  t.state = "AUTHORIZED";
  t.last_event_id = "e1";
  t.account_id = "acc-1";
  store().save_transaction(t);
  HistoryRow h;
  h.event_id = "e1";
  h.entity_kind = "payment_transaction";
  h.entity_id = "tx-1";
  h.event_type = "t";
  h.event_version = "v2";
  h.occurred_at = "2026-12-07T01:00:00Z";
  h.outcome = "applied";
  h.topic = "klarna.events";
  h.partition = 2;
  store().append_history(h);
  const auto targets = store().repair_targets("klarna.events", 2);
  ASSERT_EQ(targets.size(), 1u);
  EXPECT_EQ(targets[0].kind, "payment_transaction");
  EXPECT_EQ(targets[0].state, "AUTHORIZED");
  EXPECT_EQ(targets[0].account_id, "acc-1");
  EXPECT_TRUE(store().repair_targets("klarna.events", 1).empty());
}

KPAY_STORE_CONTRACT(QueueContract);

}  // namespace
}  // namespace kpay::storage::contract
