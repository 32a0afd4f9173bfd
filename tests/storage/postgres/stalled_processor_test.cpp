// A processor stopped inside its batch's transaction on PostgreSQL (SIGSTOP, a
// debugger, a paused VM; docs/OPERATIONS.md, "A stalled processor's batch").
// The server ends its session after postgresql.idle_in_transaction_timeout_ms
// (here 500 ms), so the partition's new owner applies the same messages
// without waiting for it to resume; resumed, its next statement fails as a
// lost connection (transient), and the batch, retried as the consumer retries
// any transient fault, reconnects and is skipped by the offset fence: nothing
// applied twice.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>

#include "kpay/processor/batch_applier.hpp"
#include "kpay/storage/postgres.hpp"
#include "kpay/storage/store_error.hpp"
#include "postgres_server.hpp"

using namespace kpay;
using namespace std::chrono_literals;

namespace {

const std::string kTopic = klarna::Topics{}.payment_requests;

// payment.request.state-change.submitted of its own request "req-<offset>".
std::vector<processor::InputMessage> batch(std::int64_t first, std::int64_t last) {
  std::vector<processor::InputMessage> out;
  for (std::int64_t o = first; o <= last; ++o) {
    const std::string request = "req-" + std::to_string(o);
    const std::string body =
        R"({"metadata":{"event_type":"payment.request.state-change.submitted","event_id":"ev-)" +
        request + R"(","event_version":"v1","occurred_at":"2026-12-07T10:00:00.000Z",)" +
        R"("subject_account_id":"krn:partner:global:account:test:M1"},)" +
        R"("payload":{"payment_request_id":")" + request + R"("}})";
    out.push_back({kTopic, 0, o, request, body});
  }
  return out;
}

class StalledProcessor : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = std::make_unique<test::PostgresServer>(); }
  static void TearDownTestSuite() { server_.reset(); }
  std::unique_ptr<storage::Store> open(const std::string& name) {
    storage::PostgresSettings s;
    s.dsn = server_->dsn();
    s.instance = name;
    s.idle_in_transaction_timeout = 500ms;
    return storage::open_postgres_store(s);
  }
  static inline std::unique_ptr<test::PostgresServer> server_;
};

TEST_F(StalledProcessor, StoppedInsideItsBatchItLetsGoAndItsRetryIsFenced) {
  auto stale = open("proc-a");
  auto owner = open("proc-b");
  processor::BatchApplier stale_applier(*stale, klarna::Topics{});
  processor::BatchApplier owner_applier(*owner, klarna::Topics{});
  const auto before = batch(0, 1);
  stale_applier.apply(std::span<const processor::InputMessage>(before));

  // proc-a's next batch, stopped after its first statements: the partition's
  // row locked, one inbox row written.
  const auto messages = batch(2, 4);
  const std::vector<storage::TopicPartition> partitions{{kTopic, 0}};
  auto tx = std::make_unique<storage::WriteTransaction>(*stale);
  ASSERT_EQ(stale->fence_offsets(partitions).at({kTopic, 0}), 2);
  ASSERT_TRUE(stale->insert_inbox({"ev-req-2", kTopic, 0, 2, ""}));

  // proc-b, the partition's owner after the rebalance, applies the same.
  auto applied = std::async(std::launch::async, [&] {
    return owner_applier.apply(std::span<const processor::InputMessage>(messages));
  });
  const bool ready = applied.wait_for(10s) == std::future_status::ready;
  if (!ready) tx.reset();  // without the timeout: lets proc-b go, so the test ends
  ASSERT_TRUE(ready) << "proc-b still waits on the stopped processor's transaction";
  EXPECT_EQ(applied.get().applied, 3u);

  // proc-a resumes: its session is gone, its next statement transient.
  try {
    stale->insert_inbox({"ev-req-3", kTopic, 0, 3, ""});
    ADD_FAILURE() << "a statement on the ended session succeeded";
  } catch (const storage::StoreError& e) {
    EXPECT_TRUE(e.is_transient()) << e.what();
  }
  tx.reset();
  // The consumer retries the batch: reconnected, and fenced.
  const auto retried = stale_applier.apply(std::span<const processor::InputMessage>(messages));
  EXPECT_EQ(retried.applied + retried.duplicates + retried.stale + retried.rejected, 0u);
  ASSERT_EQ(retried.fenced.size(), 1u);
  EXPECT_EQ(retried.fenced[0].count, 3u);
  EXPECT_EQ(retried.fenced[0].stored, 5);
  std::size_t rows = 0;
  for (int o = 0; o <= 4; ++o) rows += owner->history("req-" + std::to_string(o)).size();
  EXPECT_EQ(rows, 5u) << "one history row per offset: nothing applied twice";
  EXPECT_EQ(owner->stored_offset(kTopic, 0), 5);
}

}  // namespace
