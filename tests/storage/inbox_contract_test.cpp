// Contract: InboxStore (storage/README.md, "Idempotency", "History").
#include "store_contract.hpp"

namespace kpay::storage::contract {
namespace {

class InboxContract : public StoreContract {};

HistoryRow history_row(const std::string& event_id, const std::string& entity,
                       std::int64_t offset) {
  HistoryRow h;
  h.event_id = event_id;
  h.entity_kind = "payment_transaction";
  h.entity_id = entity;
  h.event_type = "payment.transaction.state-change.authorized";
  h.event_version = "v2";
  h.occurred_at = "2026-12-07T01:00:00Z";
  h.outcome = "applied";
  h.to_state = "AUTHORIZED";
  h.topic = "klarna.events";
  h.offset = offset;
  return h;
}

TEST_P(InboxContract, AnEventIdIsRecordedOnceWithItsFirstDelivery) {
  const std::string digest(32, '\x01');
  EXPECT_TRUE(store().insert_inbox({"e1", "klarna.events", 3, 7, digest}));
  EXPECT_FALSE(store().insert_inbox({"e1", "klarna.events", 4, 9, std::string(32, '\x02')}));
  const auto first = store().find_inbox("e1");
  ASSERT_TRUE(first);
  EXPECT_EQ(first->partition, 3);
  EXPECT_EQ(first->offset, 7);
  EXPECT_EQ(first->digest, digest.substr(0, 8));  // the first 8 bytes (schema v14)
  EXPECT_FALSE(store().find_inbox("e2"));
}

TEST_P(InboxContract, AnotherConnectionSeesTheEventAsADuplicate) {
  EXPECT_TRUE(store().insert_inbox({"e1", "klarna.events", 0, 1, ""}));
  EXPECT_FALSE(second_connection()->insert_inbox({"e1", "klarna.events", 0, 1, ""}));
}

TEST_P(InboxContract, HistoryIsPerEntityInAppendOrder) {
  store().append_history(history_row("e1", "tx-1", 1));
  store().append_history(history_row("e2", "tx-2", 2));
  store().append_history(history_row("e3", "tx-1", 3));
  store().index_history_if_due(1);  // whatever a backend indexes, reads stay the same
  store().append_history(history_row("e4", "tx-1", 4));
  const auto rows = store().history("tx-1");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].event_id, "e1");
  EXPECT_EQ(rows[1].event_id, "e3");
  EXPECT_EQ(rows[2].event_id, "e4");
  EXPECT_LT(rows[0].seq, rows[1].seq);
  EXPECT_LT(rows[1].seq, rows[2].seq);
  EXPECT_EQ(rows[2].to_state, "AUTHORIZED");
  EXPECT_FALSE(rows[2].from_state);
  EXPECT_EQ(rows[2].offset, 4);
  EXPECT_TRUE(store().history("tx-3").empty());
}

TEST_P(InboxContract, ConflictsAreListedNewestFirst) {
  EventConflictRow c;
  c.event_id = "e1";
  c.topic = "klarna.events";
  c.offset = 9;
  c.digest = std::string(32, 'b');
  c.first_digest = std::string(32, 'a');
  c.first_topic = "klarna.events";
  c.first_offset = 7;
  c.recorded_at_ms = 1000;
  store().insert_conflict(c);
  c.offset = 10;
  c.recorded_at_ms = 2000;
  store().insert_conflict(c);
  const auto rows = store().list_conflicts(10);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].offset, 10);
  EXPECT_EQ(rows[1].first_offset, 7);
  EXPECT_EQ(rows[1].digest, std::string(32, 'b'));
  EXPECT_EQ(store().list_conflicts(1).size(), 1u);
}

KPAY_STORE_CONTRACT(InboxContract);

}  // namespace
}  // namespace kpay::storage::contract
