// Contract: the fence of a batch (OffsetStore::fence_offsets; storage/README.md,
// "Publish queue and offsets"). Two processors on one database, each its own
// store object (connection) and batch applier: a batch the other one applied
// and committed already is skipped entirely (no history row, no effect, the
// offsets kept), also when its transaction overlaps the other's commit. An
// offset lowered on purpose (reset_offset: an operator's replay, a gap
// repair) lets the messages be applied again.
#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "kpay/core/wall_clock.hpp"
#include "kpay/processor/batch_applier.hpp"
#include "kpay/storage/store_error.hpp"
#include "store_contract.hpp"

namespace kpay::storage::contract {
namespace {

using processor::BatchApplier;
using processor::BatchResult;
using processor::InputMessage;

const std::string kTopic = klarna::Topics{}.payment_requests;

// payment.request.state-change.submitted of request `request` (its own
// entity: one history row per message).
InputMessage submitted(const std::string& request, std::int64_t offset) {
  const std::string body =
      R"({"metadata":{"event_type":"payment.request.state-change.submitted","event_id":"ev-)" +
      request + R"(","event_version":"v1","occurred_at":"2026-12-07T10:00:00.000Z",)" +
      R"("subject_account_id":"krn:partner:global:account:test:M1"},)" +
      R"("payload":{"payment_request_id":")" + request + R"("}})";
  return InputMessage{kTopic, 0, offset, request, body};
}

std::vector<InputMessage> batch(std::int64_t first, std::int64_t last) {
  std::vector<InputMessage> out;
  for (std::int64_t o = first; o <= last; ++o)
    out.push_back(submitted("req-" + std::to_string(o), o));
  return out;
}

std::size_t history_rows(Store& s, std::int64_t first, std::int64_t last) {
  std::size_t n = 0;
  for (std::int64_t o = first; o <= last; ++o) n += s.history("req-" + std::to_string(o)).size();
  return n;
}

// What a processor's store thread does with a batch (consumer_commit.cpp):
// a conflict with another processor's transaction rolls it back, then it is
// applied again on a new snapshot.
BatchResult apply_retrying_conflicts(BatchApplier& applier, const std::vector<InputMessage>& b,
                                     int& conflicts) {
  for (;;) {
    try {
      return applier.apply(std::span<const InputMessage>(b));
    } catch (const StoreError& e) {
      if (e.fault() != StoreFault::conflict || conflicts >= 5) throw;
      ++conflicts;
    }
  }
}

class OffsetFenceContract : public StoreContract {};

TEST_P(OffsetFenceContract, FenceReadsTheCommittedOffsetsOfTheBatchsPartitions) {
  store().save_offset(kTopic, 0, 7);
  store().save_offset(kTopic, 2, 3);
  auto other = second_connection();
  WriteTransaction tx(*other);
  const std::vector<TopicPartition> partitions{{kTopic, 0}, {kTopic, 1}, {kTopic, 2}};
  const auto fence = other->fence_offsets(partitions);
  EXPECT_EQ(fence, (std::map<TopicPartition, std::int64_t>{{{kTopic, 0}, 7}, {{kTopic, 2}, 3}}))
      << "a partition without a stored offset is absent";
  EXPECT_TRUE(other->fence_offsets({}).empty());
  tx.commit();
}

TEST_P(OffsetFenceContract, ABatchAnotherProcessorAppliedIsFencedWholly) {
  auto second = second_connection();
  BatchApplier first_applier(store(), klarna::Topics{});
  BatchApplier second_applier(*second, klarna::Topics{});
  const auto messages = batch(0, 2);

  const auto first = first_applier.apply(std::span<const InputMessage>(messages));
  EXPECT_EQ(first.applied, 3u);
  EXPECT_TRUE(first.fenced.empty());
  ASSERT_EQ(history_rows(store(), 0, 2), 3u);

  // The processor that lost the partition commits the same batch late.
  const auto stale = second_applier.apply(std::span<const InputMessage>(messages));
  EXPECT_EQ(stale.applied + stale.duplicates + stale.stale + stale.rejected, 0u);
  ASSERT_EQ(stale.fenced.size(), 1u);
  EXPECT_EQ(stale.fenced[0].topic, kTopic);
  EXPECT_EQ(stale.fenced[0].partition, 0);
  EXPECT_EQ(stale.fenced[0].first, 0);
  EXPECT_EQ(stale.fenced[0].last, 2);
  EXPECT_EQ(stale.fenced[0].stored, 3);
  EXPECT_EQ(stale.fenced[0].count, 3u);
  EXPECT_TRUE(stale.publications.empty());
  EXPECT_EQ((stale.next_offsets.at({kTopic, 0})), 3);
  EXPECT_EQ(history_rows(*second, 0, 2), 3u) << "no duplicate history row";
  EXPECT_EQ(second->stored_offset(kTopic, 0), 3);
}

TEST_P(OffsetFenceContract, ABatchStraddlingTheStoredOffsetAppliesOnlyWhatFollowsIt) {
  auto second = second_connection();
  BatchApplier first_applier(store(), klarna::Topics{});
  BatchApplier second_applier(*second, klarna::Topics{});
  const auto applied_first = batch(0, 2);
  first_applier.apply(std::span<const InputMessage>(applied_first));

  const auto messages = batch(1, 4);
  const auto r = second_applier.apply(std::span<const InputMessage>(messages));
  EXPECT_EQ(r.applied, 2u);
  EXPECT_EQ(r.duplicates, 0u);
  ASSERT_EQ(r.fenced.size(), 1u);
  EXPECT_EQ(r.fenced[0].first, 1);
  EXPECT_EQ(r.fenced[0].last, 2);
  EXPECT_EQ(r.fenced[0].count, 2u);
  EXPECT_EQ((r.next_offsets.at({kTopic, 0})), 5);
  EXPECT_EQ(history_rows(store(), 0, 4), 5u) << "one history row per offset";
  EXPECT_EQ(store().stored_offset(kTopic, 0), 5);
}

TEST_P(OffsetFenceContract, AnOffsetLoweredOnPurposeLetsTheMessagesApplyAgain) {
  BatchApplier applier(store(), klarna::Topics{});
  const auto messages = batch(0, 2);
  applier.apply(std::span<const InputMessage>(messages));
  store().reset_offset(kTopic, 0, 1);  // an operator replays from offset 1

  const auto again = batch(1, 2);
  const auto r = applier.apply(std::span<const InputMessage>(again));
  EXPECT_TRUE(r.fenced.empty());
  EXPECT_EQ(r.duplicates, 2u) << "read again, recorded; the inbox keeps the effects once";
  EXPECT_EQ(history_rows(store(), 0, 2), 5u);
  EXPECT_EQ(store().stored_offset(kTopic, 0), 3);
}

// The stale processor's batch begins while the new owner's transaction for
// the same offsets is open, and waits on it. PostgreSQL: it waits on the
// partition's row (FOR UPDATE), fails with a conflict once the owner
// committed, and its retry on a new snapshot skips the batch. SQLite: it
// waits for the write lock, then reads the committed offset.
TEST_P(OffsetFenceContract, ABatchOverlappingTheOwnersCommitIsFencedOnItsRetry) {
  auto second = second_connection();
  BatchApplier second_applier(*second, klarna::Topics{});
  {
    BatchApplier owner(store(), klarna::Topics{});
    const auto start = batch(0, 0);
    owner.apply(std::span<const InputMessage>(start));
  }
  const auto messages = batch(1, 2);
  int conflicts = 0;
  std::optional<BatchResult> stale;
  {
    // The owner's batch: offsets 1 and 2, as its applier writes them.
    WriteTransaction tx(store());
    const std::vector<TopicPartition> partitions{{kTopic, 0}};
    ASSERT_EQ(store().fence_offsets(partitions).at({kTopic, 0}), 1);
    for (const auto& m : messages) {
      ASSERT_TRUE(store().insert_inbox({"ev-" + m.key, m.topic, m.partition, m.offset, ""}));
      HistoryRow h;
      h.event_id = "ev-" + m.key;
      h.entity_kind = "payment_request";
      h.entity_id = m.key;
      h.event_type = "payment.request.state-change.submitted";
      h.outcome = "applied";
      h.topic = m.topic;
      h.partition = m.partition;
      h.offset = m.offset;
      h.occurred_at = "2026-12-07T10:00:00.000Z";
      h.recorded_at_ms = core::now_ms();
      store().append_history(h);
    }
    store().save_offset(kTopic, 0, 3);

    std::string failure;
    std::thread stale_processor([&] {
      try {
        stale = apply_retrying_conflicts(second_applier, messages, conflicts);
      } catch (const std::exception& e) {
        failure = e.what();
      }
    });
    // Committed only once the stale batch waits on it (where the backend can
    // tell; SQLite's writer waits in its busy handler, unseen).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    bool waiting = backend_->sessions_waiting_on_locks() == std::nullopt;
    while (!waiting && std::chrono::steady_clock::now() < deadline) {
      waiting = backend_->sessions_waiting_on_locks().value_or(0) > 0;
      if (!waiting) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_TRUE(waiting) << "the stale batch never waited on the owner's transaction";
    tx.commit();
    stale_processor.join();
    ASSERT_TRUE(stale) << failure;
  }
  if (backend_->sessions_waiting_on_locks()) {
    EXPECT_EQ(conflicts, 1) << "PostgreSQL: rolled back once, then skipped";
  }
  EXPECT_EQ(stale->applied + stale->duplicates + stale->stale + stale->rejected, 0u);
  ASSERT_EQ(stale->fenced.size(), 1u);
  EXPECT_EQ(stale->fenced[0].count, 2u);
  EXPECT_EQ(history_rows(store(), 0, 2), 3u) << "one history row per offset";
  EXPECT_EQ(store().stored_offset(kTopic, 0), 3);
}

// The stale processor's batch lies wholly below the offset the owner
// committed, while the owner's next transaction holds the partition's row.
// The batch is finished (skipped, counted) from the committed offsets read
// before any lock: on PostgreSQL it never waits on the owner, who may keep
// its transaction open as long as it likes (and would meet the stale batch's
// retry the same way under sustained load). SQLite has one writer: the batch
// waits for the write lock and then reads the owner's commit.
TEST_P(OffsetFenceContract, ABatchBelowTheCommittedOffsetFinishesWhileTheOwnerHoldsItsRow) {
  auto second = second_connection();
  BatchApplier stale_applier(*second, klarna::Topics{});
  {
    BatchApplier owner(store(), klarna::Topics{});
    const auto applied = batch(0, 4);
    owner.apply(std::span<const InputMessage>(applied));  // committed: next offset 5
  }
  // The owner's next batch, open: the partition's row locked and advanced.
  WriteTransaction tx(store());
  const std::vector<TopicPartition> partitions{{kTopic, 0}};
  ASSERT_EQ(store().fence_offsets(partitions).at({kTopic, 0}), 5);
  store().save_offset(kTopic, 0, 8);

  const auto messages = batch(1, 3);
  auto stale = std::async(std::launch::async, [&] {
    return stale_applier.apply(std::span<const InputMessage>(messages));
  });
  const bool several_writers = backend_->sessions_waiting_on_locks().has_value();
  if (several_writers) {
    EXPECT_EQ(stale.wait_for(std::chrono::seconds(5)), std::future_status::ready)
        << "the stale batch waited on the owner's open transaction";
  }
  tx.commit();  // ends the wait of a stale batch that blocks (the old code)
  std::optional<BatchResult> r;
  try {
    r = stale.get();
  } catch (const StoreError& e) {
    FAIL() << "the stale batch failed: " << e.what();
  }
  EXPECT_EQ(r->applied + r->duplicates + r->stale + r->rejected, 0u);
  ASSERT_EQ(r->fenced.size(), 1u);
  EXPECT_EQ(r->fenced[0].first, 1);
  EXPECT_EQ(r->fenced[0].last, 3);
  EXPECT_EQ(r->fenced[0].count, 3u);
  // PostgreSQL: the committed offset it read; SQLite: the owner's commit.
  EXPECT_EQ(r->fenced[0].stored, several_writers ? 5 : 8);
  EXPECT_EQ((r->next_offsets.at({kTopic, 0})), r->fenced[0].stored);
  EXPECT_TRUE(r->publications.empty());
  EXPECT_EQ(history_rows(store(), 0, 4), 5u) << "no duplicate history row";
  EXPECT_EQ(store().stored_offset(kTopic, 0), 8) << "the owner's offset stands";
}

// Acknowledged publications of a batch that is skipped wholly are still
// deleted (in a transaction of their own, without the fence).
TEST_P(OffsetFenceContract, AWhollyFencedBatchStillDeletesItsAcknowledgedPublications) {
  auto second = second_connection();
  BatchApplier owner(store(), klarna::Topics{});
  BatchApplier stale_applier(*second, klarna::Topics{});
  const auto applied = batch(0, 2);
  owner.apply(std::span<const InputMessage>(applied));
  std::int64_t seq = 0;
  {
    WriteTransaction tx(*second);
    seq = second->enqueue_publish({0, "klarna.payment-states", "k", "v", ""});
    tx.commit();
  }
  const std::vector<std::int64_t> acknowledged{seq};
  const auto r = stale_applier.apply(std::span<const InputMessage>(applied), acknowledged);
  ASSERT_EQ(r.fenced.size(), 1u);
  EXPECT_EQ(r.fenced[0].count, 3u);
  EXPECT_EQ((r.next_offsets.at({kTopic, 0})), 3);
  for (const auto& p : second->pending_publications()) EXPECT_NE(p.seq, seq);
}

// record_apply_error (a message that made its batch throw, set aside as
// poison) is fenced too: below its partition's stored offset it records
// nothing (no history row, no dead letter), at or past it the poison record.
TEST_P(OffsetFenceContract, APoisonRecordBelowTheStoredOffsetRecordsNothing) {
  auto second = second_connection();
  BatchApplier owner(store(), klarna::Topics{});
  BatchApplier stale_applier(*second, klarna::Topics{});
  const auto applied = batch(0, 2);
  owner.apply(std::span<const InputMessage>(applied));

  const auto below = stale_applier.record_apply_error(stale_applier.decode(submitted("req-1", 1)),
                                                      "applier threw");
  EXPECT_EQ(below.rejected, 0u);
  EXPECT_TRUE(below.publications.empty());
  ASSERT_EQ(below.fenced.size(), 1u);
  EXPECT_EQ(below.fenced[0].first, 1);
  EXPECT_EQ(below.fenced[0].count, 1u);
  EXPECT_EQ(below.fenced[0].stored, 3);
  EXPECT_EQ((below.next_offsets.at({kTopic, 0})), 3);
  EXPECT_TRUE(second->list_poison(10).empty());
  EXPECT_EQ(history_rows(*second, 1, 1), 1u) << "the owner's row only";

  const auto past = stale_applier.record_apply_error(stale_applier.decode(submitted("req-3", 3)),
                                                     "applier threw");
  EXPECT_EQ(past.rejected, 1u);
  EXPECT_TRUE(past.fenced.empty());
  EXPECT_EQ(second->list_poison(10).size(), 1u);
  EXPECT_EQ(store().stored_offset(kTopic, 0), 4);
}

KPAY_STORE_CONTRACT(OffsetFenceContract);

}  // namespace
}  // namespace kpay::storage::contract
