// Contract: traces (v11; storage/README.md, "Trace context" and "Call
// attempts"): the store's trace context fills the rows that carry none,
// every attempt of a call is kept once, and the reads klarnactl payments
// trace makes.
#include "store_contract.hpp"

namespace kpay::storage::contract {
namespace {

class TraceContract : public StoreContract {};

const std::string kTrace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const std::string kOwn = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

HistoryRow history_row(const std::string& event_id) {
  HistoryRow h;
  h.event_id = event_id;
  h.entity_kind = "payment_transaction";
  h.entity_id = "tx-1";
  h.event_type = "payment.transaction.state-change.authorized";
  h.event_version = "v2";
  h.occurred_at = "2026-12-07T01:00:00Z";
  h.outcome = "applied";
  h.topic = "klarna.events";
  return h;
}

OutboxRow call(const std::string& key) {
  OutboxRow o;
  o.operation = OutboxOperation::capture;
  o.entity_id = "tx-1";
  o.idempotency_key = key;
  o.created_by_event_id = "e1";
  o.account_id = "acc-1";
  o.path = "/payment/transactions/tx-1/captures";
  o.created_at_ms = 1;
  return o;
}

TEST_P(TraceContract, TheTraceContextFillsRowsThatCarryNone) {
  store().set_trace_context({kTrace, "2026-12-07T01:00:00.123Z", 1796605200125});
  store().append_history(history_row("e1"));
  auto own = history_row("e2");
  own.traceparent = kOwn;
  own.recorded_at_ms = 42;
  store().append_history(own);
  ASSERT_TRUE(store().insert_outbox(call("k1")));
  auto own_call = call("k2");
  own_call.traceparent = kOwn;
  ASSERT_TRUE(store().insert_outbox(own_call));
  store().enqueue_publish({0, "klarna.state", "k", "v", ""});
  store().set_trace_context({});
  store().append_history(history_row("e3"));
  ASSERT_TRUE(store().insert_outbox(call("k3")));
  store().enqueue_publish({0, "klarna.state", "k", "v2", ""});

  const auto history = second_connection()->history("tx-1");
  ASSERT_EQ(history.size(), 3u);
  EXPECT_EQ(history[0].traceparent, kTrace);
  EXPECT_EQ(history[0].received_at, "2026-12-07T01:00:00.123Z");
  EXPECT_EQ(history[0].kafka_timestamp_ms, 1796605200125);
  EXPECT_GT(history[0].recorded_at_ms, 0) << "the store fills in now";
  EXPECT_EQ(history[1].traceparent, kOwn);
  EXPECT_EQ(history[1].recorded_at_ms, 42);
  EXPECT_TRUE(history[2].traceparent.empty());
  EXPECT_TRUE(history[2].received_at.empty());
  EXPECT_FALSE(history[2].kafka_timestamp_ms);
  const auto calls = store().outbox("tx-1");
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_EQ(calls[0].traceparent, kTrace);
  EXPECT_EQ(calls[1].traceparent, kOwn);
  EXPECT_TRUE(calls[2].traceparent.empty());
  const auto claimed = store().claim_due_outbox(10, 10);
  ASSERT_EQ(claimed.size(), 3u);
  EXPECT_EQ(claimed[0].traceparent, kTrace) << "claims carry it to the worker";
  const auto queued = store().pending_publications();
  ASSERT_EQ(queued.size(), 2u);
  EXPECT_EQ(queued[0].traceparent, kTrace);
  EXPECT_TRUE(queued[1].traceparent.empty());
}

TEST_P(TraceContract, EveryAttemptOfACallIsKeptOnce) {
  CallAttemptRow a;
  a.outbox_id = 7;
  a.attempt = 1;
  a.started_at_ms = 1000;
  a.latency_us = 4100;
  a.outcome = "retry";
  a.http_status = 503;
  a.klarna_error_id = "err-1";
  a.klarna_error_code = "TEMPORARY_UNAVAILABLE";
  a.summary = "503";
  a.traceparent = kTrace;
  a.recorded_at_ms = 1005;
  store().insert_call_attempt(a);
  auto second = a;
  second.attempt = 2;
  second.outcome = "succeeded";
  second.http_status = 200;
  second.klarna_error_id.reset();
  second.klarna_error_code.reset();
  second.klarna_correlation_id = "corr-2";
  store().insert_call_attempt(second);
  second.latency_us = 5000;
  store().insert_call_attempt(second);  // the same attempt again: replaces it
  const auto rows = second_connection()->call_attempts(7);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0], a);
  EXPECT_EQ(rows[1], second);
  EXPECT_TRUE(store().call_attempts(8).empty());
}

TEST_P(TraceContract, APaymentsCommandsDisputesAndCallAuditAreFound) {
  for (const auto& [id, at] : {std::pair{"c2", 200}, std::pair{"c1", 100}}) {
    CommandRow c{id,           "capture", "tx-1",       "hash", CommandStatus::accepted,
                 std::nullopt, "tx-1",    std::nullopt, at,     at};
    ASSERT_TRUE(store().insert_command(c));
  }
  CommandRow other{"c3",         "refund", "tx-2",       "hash", CommandStatus::accepted,
                   std::nullopt, "tx-2",   std::nullopt, 50,     50};
  ASSERT_TRUE(store().insert_command(other));
  const auto commands = store().commands_for_entity("tx-1");
  ASSERT_EQ(commands.size(), 2u);
  EXPECT_EQ(commands[0].command_id, "c1");
  EXPECT_EQ(commands[1].command_id, "c2");

  for (const auto& [id, txn] : {std::pair{"d1", "tx-1"}, std::pair{"d2", "tx-2"}}) {
    DisputeRow d;
    d.id = id;
    d.framework = DisputeFramework::current;
    d.payment_transaction_id = txn;
    d.last_event_id = std::string("e-") + id;
    store().save_dispute(d);
  }
  EXPECT_EQ(store().disputes_of_transaction("tx-1"), std::vector<std::string>{"d1"});
  EXPECT_TRUE(store().disputes_of_transaction("tx-9").empty());

  AuditEvent e;
  e.at_ms = 10;
  e.kind = "attempt";
  e.outbox_id = 5;
  e.attempt = 1;
  e.status = "sent";
  store().append_audit(e);
  e.outbox_id = 6;
  store().append_audit(e);
  e.outbox_id = 5;
  e.kind = "outcome";
  e.status = "succeeded";
  store().append_audit(e);
  const auto audit = store().audit_of_outbox(5);
  ASSERT_EQ(audit.size(), 2u);
  EXPECT_EQ(audit[0].kind, "attempt");
  EXPECT_EQ(audit[1].kind, "outcome");
  EXPECT_LT(audit[0].seq, audit[1].seq);
}

}  // namespace

KPAY_STORE_CONTRACT(TraceContract);

}  // namespace kpay::storage::contract
