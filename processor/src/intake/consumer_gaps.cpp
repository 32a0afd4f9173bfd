// Offset gaps: the processor never skips events silently (docs/PROCESSOR.md,
// "Offset gaps"; docs/OPERATIONS.md for the operator's side).
//
// A partition's first offset after the stored position must be that position.
// Kafka tells us when it is not in two ways: an out-of-range answer
// (auto.offset.reset=error makes librdkafka report it instead of jumping), or
// a message beyond the expected offset. The latter is normal after compaction
// or transaction markers: those leave offsets out but keep the log's start at
// or below the expected offset. The log's start (low watermark, asked of the
// broker) tells them apart:
//   expected < low                 deleted    retention, a truncated log, an older database
//   out of range, expected > high  log_reset  the log was recreated or truncated below us
//   low <= expected (<= high)      no gap     compaction / markers; a transient answer
// A gap is recorded once per (topic, partition, expected) in the store, with
// its publication on klarna.payment-states; logged at error; counted; /readyz
// is not ready while a gap is open. Policy pause holds the partition until
// `klarnactl gaps accept ID` (this thread looks every gap_check_interval);
// policy continue goes on from the first offset left at once.
#include <chrono>
#include <cstring>

#include "kpay/core/wall_clock.hpp"
#include "kpay/processor/consumer.hpp"
#include "kpay/processor/gap_repair.hpp"

namespace kpay::processor {

struct Processor::GapMetrics {
  explicit GapMetrics(core::Registry& r)
      : gaps(r.counter("kpay_processor_offset_gaps_total",
                       "Offset gaps detected: a partition's next offsets were gone (deleted: "
                       "retention or truncation; log_reset: the log recreated below our "
                       "position; jump: offsets skipped by the consumer).",
                       {"kind"})),
        skipped(r.counter("kpay_processor_events_skipped_total",
                          "Offsets known lost in offset gaps (messages never applied).")
                    .with({})),
        open(r.gauge("kpay_processor_offset_gaps_open",
                     "Offset gaps no operator has accepted yet (klarnactl gaps list).")
                 .with({})),
        paused(r.gauge("kpay_processor_partitions_paused",
                       "Partitions held by an open offset gap (processor.on_offset_gap = pause).")
                   .with({})) {}
  core::CounterFamily& gaps;
  core::Counter& skipped;
  core::Gauge& open;
  core::Gauge& paused;
};

std::shared_ptr<Processor::GapMetrics> Processor::make_gap_metrics(core::Registry& registry) {
  return std::make_shared<GapMetrics>(registry);
}

namespace {

using core::now_ms;

std::int64_t* find_offset(
    std::map<std::string, std::map<std::int32_t, std::int64_t>, std::less<>>& m,
    std::string_view topic, std::int32_t partition) {
  auto t = m.find(topic);
  if (t == m.end()) return nullptr;
  auto p = t->second.find(partition);
  return p == t->second.end() ? nullptr : &p->second;
}

core::KafkaPartitionList one_partition(const std::string& topic, std::int32_t partition,
                                       std::int64_t offset) {
  core::KafkaPartitionList list(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), partition)->offset = offset;
  return list;
}

}  // namespace

bool Processor::offset_in_sequence(const std::string& topic, std::int32_t partition,
                                   std::int64_t offset) {
  if (!held_.empty() && find_offset(held_, topic, partition) != nullptr) {
    return false;  // fetched before the pause took effect: read again after the decision
  }
  std::int64_t* expected = find_offset(expected_, topic, partition);
  if (expected != nullptr && offset > *expected &&
      handle_gap(topic, partition, *expected, offset)) {
    return false;
  }
  if (expected != nullptr) {
    *expected = offset + 1;
  } else {
    expected_[topic][partition] = offset + 1;
  }
  return true;
}

void Processor::on_out_of_range(const rd_kafka_message_t* m) {
  if (m->rkt == nullptr) {
    log_.error("offset out of range on an unnamed partition",
               {{"error", rd_kafka_err2name(m->err)}});
    return;
  }
  const std::string topic = rd_kafka_topic_name(m->rkt);
  const std::int64_t* known = find_offset(expected_, topic, m->partition);
  const std::int64_t expected = known != nullptr ? *known : m->offset;
  if (!handle_gap(topic, m->partition, expected, -1)) {
    // The log still holds our position (a transient answer): fetch it again.
    restart_partition(topic, m->partition, expected);
  }
}

bool Processor::handle_gap(const std::string& topic, std::int32_t partition, std::int64_t expected,
                           std::int64_t delivered) {
  std::int64_t low = -1, high = -1;
  auto err = rd_kafka_query_watermark_offsets(consumer_.get(), topic.c_str(), partition, &low,
                                              &high, 5000);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    // Cannot tell a gap from compaction now: hold the partition, try again.
    log_.error("cannot read the log's start to check an offset jump; partition held",
               {{"topic", topic}, {"partition", partition}, {"error", rd_kafka_err2name(err)}});
    hold_partition(topic, partition, -1);
    return true;
  }
  storage::OffsetGapRow gap;
  gap.topic = topic;
  gap.partition = partition;
  gap.expected = expected;
  if (expected < low) {
    gap.kind = delivered < 0 ? "deleted" : "jump";
    gap.resume_at = delivered < 0 ? low : delivered;
    gap.skipped = std::min(low, gap.resume_at) - expected;
  } else if (delivered < 0 && expected > high) {
    gap.kind = "log_reset";
    gap.resume_at = low;
    gap.skipped = 0;  // what followed our position in the old log is unknowable
  } else {
    return false;  // compaction or markers, or a transient out-of-range answer
  }
  gap.policy = settings_.on_offset_gap;
  gap.detected_at_ms = now_ms();
  if (!record_gap(gap)) {
    hold_partition(topic, partition, -1);
    return true;
  }
  if (gap.policy == storage::GapPolicy::pause && gap.status == storage::GapStatus::open) {
    hold_partition(topic, partition, gap.id);
  } else {
    restart_partition(topic, partition, gap.resume_at);
  }
  return true;
}

bool Processor::record_gap(storage::OffsetGapRow& gap) {
  // What is in hand comes before the gap: applied and committed first, so
  // the stored position is the gap's start and one connection has one user.
  if (!commit_pending(stop_)) return false;
  try {
    storage::WriteTransaction tx(store_);
    auto [row, inserted] = store_.record_gap(gap);
    std::optional<GapRepair> repair;
    std::optional<storage::PublishRow> publication;
    if (inserted) {
      if (row.policy == storage::GapPolicy::go_on)
        store_.reset_offset(row.topic, row.partition, row.resume_at);
      if (settings_.gap_repair_auto) repair = queue_gap_repair(store_, row, now_ms());
      storage::PublishRow p{0, settings_.topics.payment_states, gap_message_key(row),
                            render_gap_message(row), ""};
      p.seq = store_.enqueue_publish(p);
      publication = std::move(p);
    }
    tx.commit();
    const bool counted = inserted;
    gap = row;
    if (!counted) {
      log_.warn("offset gap seen again (recorded before)",
                {{"gap_id", row.id},
                 {"topic", row.topic},
                 {"partition", row.partition},
                 {"status", std::string(storage::to_string(row.status))}});
      return true;
    }
    gap_metrics_->gaps.with({row.kind}).inc();
    gap_metrics_->skipped.inc(static_cast<std::uint64_t>(row.skipped));
    open_gaps_ += 1;
    gap_metrics_->open.set(static_cast<double>(open_gaps_.load()));
    log_.error("offset gap: events of this partition were never applied",
               {{"gap_id", row.id},
                {"topic", row.topic},
                {"partition", row.partition},
                {"expected", row.expected},
                {"resume_at", row.resume_at},
                {"kind", row.kind},
                {"events_missing", row.skipped},
                {"policy", std::string(storage::to_string(row.policy))},
                {"next", row.policy == storage::GapPolicy::pause
                             ? "partition paused: klarnactl gaps list, "
                               "gaps repair ID, gaps accept ID"
                             : "going on; klarnactl gaps repair ID, "
                               "gaps accept ID to acknowledge"}});
    if (repair) {
      log_.warn("offset gap: open entities queued for reading from Klarna",
                {{"gap_id", row.id},
                 {"reads", repair->queued},
                 {"final", repair->final},
                 {"no_account", repair->no_account}});
    }
    if (publication) produce(*publication);
    return true;
  } catch (const std::exception& e) {
    storage_ok_ = false;
    log_.error("cannot record an offset gap; partition held, retried",
               {{"topic", gap.topic}, {"partition", gap.partition}, {"error", e.what()}});
    return false;
  }
}

void Processor::hold_partition(const std::string& topic, std::int32_t partition,
                               std::int64_t gap_id) {
  auto list = one_partition(topic, partition, RD_KAFKA_OFFSET_INVALID);
  rd_kafka_pause_partitions(consumer_.get(), list.get());
  held_[topic][partition] = gap_id;
  std::size_t held = 0;
  for (const auto& [t, parts] : held_) held += parts.size();
  gap_metrics_->paused.set(static_cast<double>(held));
}

void Processor::restart_partition(const std::string& topic, std::int32_t partition,
                                  std::int64_t offset) {
  // After an out-of-range answer librdkafka has stopped fetching the
  // partition, and a seek is refused then (_STATE): the partition is
  // assigned again at `offset`. Eager protocol: the whole assignment, every
  // other partition at the offset it was going to deliver next.
  expected_[topic][partition] = offset;
  {
    std::lock_guard lock(positions_mu_);
    positions_[{topic, partition}] = offset;
  }
  rd_kafka_error_t* error = nullptr;
  if (std::strcmp(rd_kafka_rebalance_protocol(consumer_.get()), "COOPERATIVE") == 0) {
    auto one = one_partition(topic, partition, offset);
    error = rd_kafka_incremental_unassign(consumer_.get(), one.get());
    if (error == nullptr) error = rd_kafka_incremental_assign(consumer_.get(), one.get());
  } else {
    rd_kafka_topic_partition_list_t* raw = nullptr;
    if (auto err = rd_kafka_assignment(consumer_.get(), &raw); err) {
      error = rd_kafka_error_new(err, "cannot read the assignment");
    } else {
      core::KafkaPartitionList all(raw);
      for (int i = 0; i < all->cnt; ++i) {
        auto& tp = all->elems[i];
        const std::int64_t* next = find_offset(expected_, tp.topic, tp.partition);
        tp.offset = next != nullptr ? *next : RD_KAFKA_OFFSET_BEGINNING;
      }
      if (auto err = rd_kafka_assign(consumer_.get(), all.get()); err) {
        error = rd_kafka_error_new(err, "cannot assign again");
      }
    }
  }
  if (error != nullptr) {
    log_.error("cannot restart a partition", {{"topic", topic},
                                              {"partition", partition},
                                              {"offset", offset},
                                              {"error", rd_kafka_error_string(error)}});
    rd_kafka_error_destroy(error);
  }
  // A pause outlives an assignment: this partition is resumed, the others a
  // gap holds stay (or are again) paused.
  {
    auto one = one_partition(topic, partition, RD_KAFKA_OFFSET_INVALID);
    rd_kafka_resume_partitions(consumer_.get(), one.get());
  }
  for (const auto& [t, parts] : held_) {
    for (const auto& [p, id] : parts) {
      if (t == topic && p == partition) continue;
      auto list = one_partition(t, p, RD_KAFKA_OFFSET_INVALID);
      rd_kafka_pause_partitions(consumer_.get(), list.get());
    }
  }
}

void Processor::expect_assigned(rd_kafka_topic_partition_list_t* partitions) {
  for (int i = 0; i < partitions->cnt; ++i) {
    const auto& tp = partitions->elems[i];
    if (tp.offset >= 0) expected_[tp.topic][tp.partition] = tp.offset;
    if (auto gap = store_.open_gap(tp.topic, tp.partition);
        gap && gap->policy == storage::GapPolicy::pause) {
      log_.warn("partition held by an open offset gap: klarnactl gaps accept ID resumes it",
                {{"gap_id", gap->id}, {"topic", gap->topic}, {"partition", gap->partition}});
      hold_partition(tp.topic, tp.partition, gap->id);
    }
  }
}

void Processor::forget_revoked(const rd_kafka_topic_partition_list_t* partitions) {
  for (int i = 0; i < partitions->cnt; ++i) {
    const auto& tp = partitions->elems[i];
    if (auto t = expected_.find(std::string_view(tp.topic)); t != expected_.end()) {
      t->second.erase(tp.partition);
    }
    if (auto t = held_.find(std::string_view(tp.topic)); t != held_.end()) {
      t->second.erase(tp.partition);
      if (t->second.empty()) held_.erase(t);
    }
  }
}

void Processor::check_gaps() {
  next_gap_check_ = std::chrono::steady_clock::now() + settings_.gap_check_interval;
  try {
    std::vector<std::tuple<std::string, std::int32_t, std::int64_t>> resume;
    for (const auto& [topic, parts] : held_) {
      for (const auto& [partition, gap_id] : parts) {
        if (gap_id < 0) {  // unresolved: from the stored position again
          resume.emplace_back(topic, partition, store_.stored_offset(topic, partition).value_or(0));
          continue;
        }
        auto gap = store_.find_gap(gap_id);
        if (gap && gap->status != storage::GapStatus::open) {
          log_.info("offset gap accepted; partition resumes",
                    {{"gap_id", gap->id},
                     {"topic", topic},
                     {"partition", partition},
                     {"offset", store_.stored_offset(topic, partition).value_or(gap->resume_at)}});
          resume.emplace_back(topic, partition,
                              store_.stored_offset(topic, partition).value_or(gap->resume_at));
        }
      }
    }
    for (const auto& [topic, partition, offset] : resume) {
      held_[topic].erase(partition);
      if (held_[topic].empty()) held_.erase(topic);
      restart_partition(topic, partition, offset);
    }
    open_gaps_ = store_.count_open_gaps();
    gap_metrics_->open.set(static_cast<double>(open_gaps_.load()));
    std::size_t held = 0;
    for (const auto& [t, parts] : held_) held += parts.size();
    gap_metrics_->paused.set(static_cast<double>(held));
  } catch (const std::exception& e) {
    log_.error("cannot read the offset gaps; retried", {{"error", e.what()}});
  }
}

}  // namespace kpay::processor
