// Contract: EntityStore (storage/README.md, "Idempotency").
#include "store_contract.hpp"

namespace kpay::storage::contract {
namespace {

class EntityContract : public StoreContract {};

PaymentTransactionRow transaction(const std::string& id) {
  PaymentTransactionRow t;
  t.id = id;
  t.state = "AUTHORIZED";
  t.state_as_of_ms = 1000;
  t.amount = 5000;
  t.currency = "EUR";
  t.payment_request_id = "pr-1";
  t.last_event_id = "e1";
  t.account_id = "acc-1";
  return t;
}

TEST_P(EntityContract, SaveIsAnUpsertAndFindGivesTheRowBack) {
  PaymentRequestRow r;
  r.id = "pr-1";
  r.state = "COMPLETED";
  r.amount = 5000;
  r.currency = "EUR";
  r.payment_transaction_id = "tx-1";
  r.authorization_due_ms = 99;
  r.last_event_id = "e0";
  store().save_request(r);
  EXPECT_EQ(store().find_request("pr-1"), r);
  r.authorization_result = "APPROVED";
  r.reference = std::nullopt;
  store().save_request(r);
  EXPECT_EQ(store().find_request("pr-1"), r);
  EXPECT_FALSE(store().find_request("pr-2"));

  auto t = transaction("tx-1");
  store().save_transaction(t);
  t.captured_amount = 2000;
  t.funding_state = "FUNDED";
  store().save_transaction(t);
  EXPECT_EQ(store().find_transaction("tx-1"), t);
  EXPECT_EQ(store().request_for_transaction("tx-1"), "pr-1");
  EXPECT_EQ(store().transaction_for_request("pr-1"), "tx-1");
  EXPECT_FALSE(store().request_for_transaction("tx-9"));
}

// The link columns are written only when they change (SQLite: an upsert that
// assigns an indexed column rewrites its index page even for the same
// value): a link that appears, moves or goes after the row exists is still
// stored and found from the other side.
TEST_P(EntityContract, LinksAddedChangedAndClearedAfterTheRowExistsAreKept) {
  PaymentRequestRow r;
  r.id = "pr-1";
  r.last_event_id = "e0";
  store().save_request(r);
  EXPECT_FALSE(store().request_for_transaction("tx-1"));
  r.payment_transaction_id = "tx-1";
  store().save_request(r);
  EXPECT_EQ(store().find_request("pr-1"), r);
  EXPECT_EQ(store().request_for_transaction("tx-1"), "pr-1");
  r.payment_transaction_id = "tx-2";
  r.state = "COMPLETED";
  store().save_request(r);
  EXPECT_EQ(store().find_request("pr-1"), r);
  EXPECT_FALSE(store().request_for_transaction("tx-1"));
  EXPECT_EQ(store().request_for_transaction("tx-2"), "pr-1");

  auto t = transaction("tx-2");
  t.payment_request_id = std::nullopt;
  store().save_transaction(t);
  EXPECT_FALSE(store().transaction_for_request("pr-1"));
  t.payment_request_id = "pr-1";
  store().save_transaction(t);
  EXPECT_EQ(store().transaction_for_request("pr-1"), "tx-2");
  t.captured_amount = 100;  // the same link again, another column changed
  store().save_transaction(t);
  EXPECT_EQ(store().find_transaction("tx-2"), t);
  t.payment_request_id = std::nullopt;
  store().save_transaction(t);
  EXPECT_EQ(store().find_transaction("tx-2"), t);
  EXPECT_FALSE(store().transaction_for_request("pr-1"));
}

// The same inside write transactions, where the SQLite store remembers the
// link it last read or wrote; what it remembered is forgotten when the
// transaction ends (a rollback, another connection's write after a commit).
TEST_P(EntityContract, LinksAreKeptAcrossTransactionsRollbacksAndOtherConnections) {
  PaymentRequestRow r;
  r.id = "pr-1";
  r.last_event_id = "e0";
  r.payment_transaction_id = "tx-1";
  {
    WriteTransaction tx(store());
    EXPECT_FALSE(store().find_request("pr-1"));
    store().save_request(r);
    r.state = "COMPLETED";  // the same link, read back first
    ASSERT_TRUE(store().find_request("pr-1"));
    store().save_request(r);
    tx.commit();
  }
  EXPECT_EQ(store().find_request("pr-1"), r);
  EXPECT_EQ(store().request_for_transaction("tx-1"), "pr-1");
  {
    WriteTransaction tx(store());
    ASSERT_TRUE(store().find_request("pr-1"));
    r.payment_transaction_id = "tx-2";
    store().save_request(r);
    EXPECT_EQ(store().request_for_transaction("tx-2"), "pr-1");
    // No commit: rolled back.
  }
  r.payment_transaction_id = "tx-1";
  EXPECT_EQ(store().find_request("pr-1"), r);
  {
    WriteTransaction tx(store());
    ASSERT_TRUE(store().find_request("pr-1"));  // tx-1
    tx.commit();
  }
  auto other = second_connection();
  r.payment_transaction_id = "tx-3";
  other->save_request(r);
  {
    WriteTransaction tx(store());
    r.payment_transaction_id = "tx-1";  // what this connection read last, in another transaction
    store().save_request(r);
    tx.commit();
  }
  EXPECT_EQ(other->find_request("pr-1"), r);
  EXPECT_EQ(other->request_for_transaction("tx-1"), "pr-1");
  EXPECT_FALSE(other->request_for_transaction("tx-3"));

  auto t = transaction("tx-1");
  {
    WriteTransaction tx(store());
    EXPECT_FALSE(store().find_transaction("tx-1"));
    store().save_transaction(t);
    ASSERT_TRUE(store().find_transaction("tx-1"));
    t.payment_request_id = "pr-2";
    store().save_transaction(t);
    tx.commit();
  }
  EXPECT_EQ(other->find_transaction("tx-1"), t);
  EXPECT_EQ(other->transaction_for_request("pr-2"), "tx-1");
  EXPECT_FALSE(other->transaction_for_request("pr-1"));
}

TEST_P(EntityContract, SubRecordsAreBookedOncePerKindAndId) {
  store().save_transaction(transaction("tx-1"));
  SubRecordRow capture{"capture", "cap-1", "tx-1", 2000, "EUR", std::nullopt, 2000, "e2"};
  SubRecordRow refund{"refund", "ref-1", "tx-1", 500, "EUR", "cap-1", 3000, "e3"};
  EXPECT_TRUE(store().insert_sub_record(refund));
  EXPECT_TRUE(store().insert_sub_record(capture));
  EXPECT_FALSE(store().insert_sub_record(capture));
  const auto rows = store().sub_records("tx-1");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].id, "cap-1");  // by occurred_at
  EXPECT_EQ(rows[1].capture_id, "cap-1");
  EXPECT_EQ(store().find_sub_record("refund", "ref-1")->amount, 500);
  EXPECT_FALSE(store().find_sub_record("capture", "ref-1"));
}

TEST_P(EntityContract, DisputesTheirDeadlinesAndOneWarningPerDeadlineAndStage) {
  DisputeRow d;
  d.id = "d-1";
  d.framework = DisputeFramework::current;
  d.state = "OPEN";
  d.representment_expires_at_ms = 5000;
  d.last_event_id = "e1";
  d.account_id = "acc-1";
  store().save_dispute(d);
  EXPECT_EQ(store().find_dispute("d-1"), d);
  auto closed = d;
  closed.id = "d-2";
  closed.state = "CLOSED";
  store().save_dispute(closed);
  const auto open = store().open_disputes_after(std::nullopt, 10);
  ASSERT_EQ(open.size(), 1u);
  EXPECT_EQ(open[0].id, "d-1");

  DisputeDeadlineRow dl{"d-1",
                        "representment",
                        5000,
                        1000,
                        "e1",
                        "dispute.opened",
                        "state_context.representment_expires_at"};
  EXPECT_TRUE(store().insert_dispute_deadline(dl));
  EXPECT_FALSE(store().insert_dispute_deadline(dl));
  EXPECT_EQ(store().dispute_deadlines("d-1"), std::vector<DisputeDeadlineRow>{dl});

  EXPECT_TRUE(store().mark_deadline_warning("d-1", "representment", 5000, "window", 4000));
  EXPECT_FALSE(store().mark_deadline_warning("d-1", "representment", 5000, "window", 4001));
  EXPECT_FALSE(
      second_connection()->mark_deadline_warning("d-1", "representment", 5000, "window", 4002));
  EXPECT_TRUE(store().mark_deadline_warning("d-1", "representment", 5000, "passed", 5001));
  EXPECT_TRUE(store().mark_deadline_warning("d-1", "representment", 6000, "window", 5002));
}

// The open disputes in pages (keyset on id): never a closed one (nor one
// closed since it was stored open), a state not known yet counts as open,
// id order, and every open one exactly once across page boundaries, also
// when the last page is full (the next one is empty).
TEST_P(EntityContract, OpenDisputesInPagesInIdOrderWithoutTheClosedOnes) {
  const auto save = [&](const std::string& id, std::optional<std::string> state) {
    DisputeRow d;
    d.id = id;
    d.framework = DisputeFramework::current;
    d.state = std::move(state);
    d.last_event_id = "e-" + id;
    store().save_dispute(d);
  };
  for (const char* id : {"d-07", "d-02", "d-05", "d-01", "d-04", "d-06", "d-03", "d-08"}) {
    save(id, "INITIATED");
  }
  save("d-02", "CLOSED");
  save("d-05", "CLOSED");
  save("d-04", std::nullopt);
  save("d-00", "CLOSED");
  const std::vector<std::string> open = {"d-01", "d-03", "d-04", "d-06", "d-07", "d-08"};
  const auto ids = [](const std::vector<DisputeRow>& rows) {
    std::vector<std::string> out;
    for (const auto& r : rows) out.push_back(r.id);
    return out;
  };
  EXPECT_EQ(ids(store().open_disputes_after(std::nullopt, 1000)), open);
  EXPECT_EQ(ids(store().open_disputes_after(std::nullopt, 2)),
            (std::vector<std::string>{"d-01", "d-03"}));
  for (std::size_t page : {1u, 2u, 4u, 6u, 100u}) {
    std::vector<std::string> all;
    std::optional<std::string> after;
    int pages = 0;
    for (;;) {
      const auto rows = store().open_disputes_after(after, page);
      ++pages;
      ASSERT_LE(rows.size(), page);
      for (const auto& r : rows) EXPECT_NE(r.state, "CLOSED") << r.id;
      const auto got = ids(rows);
      all.insert(all.end(), got.begin(), got.end());
      if (rows.size() < page) break;
      after = rows.back().id;
    }
    EXPECT_EQ(all, open) << "page " << page;
    EXPECT_EQ(pages, static_cast<int>(open.size() / page + 1)) << "page " << page;
  }
  // After an id that is not stored, or a closed one.
  EXPECT_EQ(ids(store().open_disputes_after("d-035", 2)),
            (std::vector<std::string>{"d-04", "d-06"}));
  EXPECT_EQ(ids(store().open_disputes_after("d-05", 10)),
            (std::vector<std::string>{"d-06", "d-07", "d-08"}));
  EXPECT_TRUE(store().open_disputes_after("d-08", 10).empty());
  EXPECT_EQ(store().open_disputes_after("d-00", 1)[0], *store().find_dispute("d-01"));
}

TEST_P(EntityContract, AWarningMarkIsSeenByEveryConnection) {
  EXPECT_FALSE(store().deadline_warning_marked("d-1", "representment", 5000, "window"));
  EXPECT_TRUE(store().mark_deadline_warning("d-1", "representment", 5000, "window", 4000));
  EXPECT_TRUE(store().deadline_warning_marked("d-1", "representment", 5000, "window"));
  EXPECT_TRUE(second_connection()->deadline_warning_marked("d-1", "representment", 5000, "window"));
  EXPECT_FALSE(store().deadline_warning_marked("d-1", "representment", 5000, "passed"));
  EXPECT_FALSE(store().deadline_warning_marked("d-1", "representment", 6000, "window"));
  EXPECT_FALSE(store().deadline_warning_marked("d-1", "arbitration", 5000, "window"));
  EXPECT_FALSE(store().deadline_warning_marked("d-2", "representment", 5000, "window"));
}

// The watcher's read of a page: one answer per key, in the keys' order,
// whatever the ids hold (quotes, backslashes, commas, braces: array literals
// on PostgreSQL).
TEST_P(EntityContract, WarningMarksAreReadForManyKeysInTheirOrder) {
  EXPECT_TRUE(store().deadline_warnings_marked({}).empty());
  const std::string odd = R"(d-"q",\{x})";
  ASSERT_TRUE(store().mark_deadline_warning(odd, "representment", 5000, "window", 4000));
  ASSERT_TRUE(store().mark_deadline_warning("d-2", "arbitration", 7000, "passed", 4000));
  const std::vector<DeadlineWarningKey> keys{
      {"d-1", "representment", 5000, "window"}, {odd, "representment", 5000, "window"},
      {odd, "representment", 5000, "passed"},   {"d-2", "arbitration", 7000, "passed"},
      {"d-2", "arbitration", 7001, "passed"},   {odd, "representment", 5000, "window"},
      {"d-2", "representment", 7000, "passed"},
  };
  EXPECT_EQ(store().deadline_warnings_marked(keys),
            (std::vector<bool>{false, true, false, true, false, true, false}));
  EXPECT_EQ(second_connection()->deadline_warnings_marked(keys),
            store().deadline_warnings_marked(keys));
  EXPECT_TRUE(store().deadline_warning_marked(odd, "representment", 5000, "window"));
}

TEST_P(EntityContract, RecordsAndSettlementEvents) {
  RecordRow r{"payout", "po-1", "PAID", 10, std::nullopt, 0, 700, "EUR", "e1"};
  store().save_record(r);
  r.state = "RETURNED";
  store().save_record(r);
  EXPECT_EQ(store().find_record("payout", "po-1")->state, "RETURNED");
  EXPECT_FALSE(store().find_record("settlement_report", "po-1"));

  SettlementEventRow s;
  s.event_id = "e9";
  s.event_type = "settlement.payout.created";
  s.entity_id = "po-1";
  s.routed_by = "payout_id";
  s.payout_id = "po-1";
  s.amount = 700;
  s.occurred_at_ms = 10;
  EXPECT_TRUE(store().insert_settlement_event(s));
  EXPECT_FALSE(store().insert_settlement_event(s));
  EXPECT_EQ(store().settlement_events(10), std::vector<SettlementEventRow>{s});
}

KPAY_STORE_CONTRACT(EntityContract);

}  // namespace
}  // namespace kpay::storage::contract
