// The trace context of a message reaches every row it causes (history,
// outbox, publications), in one batch transaction; call attempts are kept.
#include <gtest/gtest.h>

#include <filesystem>

#include "child_process.hpp"
#include "kpay/processor/batch_applier.hpp"
#include "kpay/storage/state_store.hpp"

using namespace kpay;
using namespace kpay::processor;

namespace {

const std::string kTrace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const std::string kOther = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

InputMessage authorized(const std::string& traceparent, std::int64_t offset) {
  const std::string body =
      R"({"metadata":{"event_type":"payment.transaction.state-change.authorized",)"
      R"("event_id":"a1","event_version":"v2","occurred_at":"2026-01-01T00:00:00Z",)"
      R"("subject_account_id":"krn:partner:global:account:test:M1","live":false},)"
      R"("payload":{"payment_transaction_id":"txn-1","amount":1000,"currency":"EUR"}})";
  InputMessage m{klarna::Topics{}.payment_transactions, 0, offset, "txn-1", body};
  m.traceparent = traceparent;
  m.received_at = "2026-12-07T01:00:00.123Z";
  m.timestamp_ms = 1796605200125;
  return m;
}

}  // namespace

TEST(TraceContext, AMessagesTraceReachesItsHistoryOutboxAndPublications) {
  const auto dir = test::make_temp_dir("trace-context");
  {
    storage::StateStore store(dir + "/state.db");
    EXPECT_GE(store.schema_version(), 11);
    BatchApplier applier(store, klarna::Topics{});
    auto first = authorized(kTrace, 0);
    auto result = applier.apply(std::span(&first, 1));
    ASSERT_EQ(result.applied, 1u);
    ASSERT_EQ(result.publications.size(), 1u);
    EXPECT_EQ(result.publications[0].traceparent, kTrace);
    EXPECT_EQ(store.pending_publications().at(0).traceparent, kTrace) << "kept for a republish";
    auto outbox = store.outbox("txn-1");
    ASSERT_EQ(outbox.size(), 1u);
    EXPECT_EQ(outbox[0].operation, storage::OutboxOperation::capture);
    EXPECT_EQ(outbox[0].traceparent, kTrace);

    // The same event again, in another trace: a duplicate with its own.
    auto again = authorized(kOther, 1);
    result = applier.apply(std::span(&again, 1));
    EXPECT_EQ(result.duplicates, 1u);
    EXPECT_TRUE(result.publications.empty());
    const auto history = store.history("txn-1");
    ASSERT_EQ(history.size(), 2u);
    EXPECT_EQ(history[0].outcome, "applied");
    EXPECT_EQ(history[0].traceparent, kTrace);
    EXPECT_EQ(history[0].received_at, "2026-12-07T01:00:00.123Z");
    EXPECT_EQ(history[0].kafka_timestamp_ms, 1796605200125);
    EXPECT_GT(history[0].recorded_at_ms, 0);
    EXPECT_EQ(history[1].outcome, "duplicate");
    EXPECT_EQ(history[1].traceparent, kOther);
    EXPECT_TRUE(store.trace_context().traceparent.empty()) << "cleared after each message";

    // Rows written outside a message's context carry none.
    storage::PublishRow row{0, "t", "k", "v", ""};
    const auto seq = store.enqueue_publish(row);
    for (const auto& p : store.pending_publications()) {
      if (p.seq == seq) {
        EXPECT_TRUE(p.traceparent.empty());
      }
    }
  }
  std::filesystem::remove_all(dir);
}

TEST(TraceContext, CallAttemptsAreKeptPerAttempt) {
  const auto dir = test::make_temp_dir("call-attempts");
  {
    storage::StateStore store(dir + "/state.db");
    storage::CallAttemptRow a;
    a.outbox_id = 7;
    a.attempt = 1;
    a.started_at_ms = 1000;
    a.latency_us = 4100;
    a.outcome = "retry";
    a.http_status = 503;
    a.klarna_error_id = "err-1";
    a.klarna_error_code = "TEMPORARY_UNAVAILABLE";
    a.summary = "503 …";
    a.traceparent = kTrace;
    a.recorded_at_ms = 1005;
    store.insert_call_attempt(a);
    a.attempt = 2;
    a.outcome = "succeeded";
    a.http_status = 200;
    a.klarna_error_id.reset();
    a.klarna_correlation_id = "corr-2";
    store.insert_call_attempt(a);
    store.insert_call_attempt(a);  // recorded twice: still one row
    const auto rows = store.call_attempts(7);
    ASSERT_EQ(rows.size(), 2u);
    EXPECT_EQ(rows[0].attempt, 1);
    EXPECT_EQ(rows[0].http_status, 503);
    EXPECT_EQ(rows[0].klarna_error_id, "err-1");
    EXPECT_EQ(rows[0].latency_us, 4100);
    EXPECT_EQ(rows[1].outcome, "succeeded");
    EXPECT_EQ(rows[1].klarna_correlation_id, "corr-2");
    EXPECT_FALSE(rows[1].klarna_error_id);
    EXPECT_EQ(rows[1].traceparent, kTrace);
    EXPECT_TRUE(store.call_attempts(8).empty());
  }
  std::filesystem::remove_all(dir);
}
