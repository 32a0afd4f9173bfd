// A batch's commit on the store thread: applied with retries of transient
// store faults (and of conflicts with another processor), message by message
// when the batch fails deterministically; then its results counted, its
// offsets handed to Kafka and its publications produced (finish_commit).
#include <span>
#include <thread>
#include <utility>

#include "intake/batch_fence.hpp"
#include "intake/consumer_metrics.hpp"
#include "intake/storage_health.hpp"
#include "kpay/core/traceparent.hpp"
#include "kpay/processor/consumer.hpp"
#include "kpay/storage/store_error.hpp"

namespace kpay::processor {

namespace {

// A batch rolled back by a concurrent transaction (StoreFault::conflict) is
// done again at once, this many times in a row; conflicts beyond are handled
// like any failing store (backoff, /readyz), so a livelock shows.
constexpr int kConflictRetries = 5;

// Adds one message's result to the batch's.
void merge(BatchResult& into, BatchResult&& one) {
  into.applied += one.applied;
  into.duplicates += one.duplicates;
  into.stale += one.stale;
  into.rejected += one.rejected;
  into.unrouted += one.unrouted;
  into.environment_mismatch += one.environment_mismatch;
  for (auto& m : one.account_mismatches) into.account_mismatches.push_back(std::move(m));
  for (auto& p : one.failed_payouts) into.failed_payouts.push_back(std::move(p));
  into.conflicts += one.conflicts;
  for (const auto& [reason, n] : one.poison_by_reason) into.poison_by_reason[reason] += n;
  for (auto& row : one.publications) into.publications.push_back(std::move(row));
  for (const auto& [tp, next] : one.next_offsets) {
    auto& n = into.next_offsets[tp];
    n = std::max(n, next);
  }
  for (const auto& f : one.fenced) add_fenced(into.fenced, f);
}

// Messages a batch skipped below their partition's stored offset: counted,
// and one warning per partition of the batch (docs/OPERATIONS.md, "Running
// on PostgreSQL").
void report_fenced(const core::Logger& log, core::Counter& counter,
                   const std::vector<FencedRange>& fenced) {
  for (const auto& f : fenced) {
    counter.inc(f.count);
    log.warn(
        "messages below the partition's stored offset fenced: applied already (another "
        "processor owns the partition now, or an earlier attempt of this batch committed)",
        {{"topic", f.topic},
         {"partition", f.partition},
         {"first_offset", f.first},
         {"last_offset", f.last},
         {"stored_offset", f.stored},
         {"count", f.count}});
  }
}

// A failed payout: money Klarna meant to pay did not arrive. Counted and
// logged as an error (config/alerts/ pages on the counter).
void report_failed_payouts(const core::Logger& log, core::Counter& counter,
                           const std::vector<FailedPayout>& failed) {
  counter.inc(failed.size());
  for (const auto& p : failed) {
    log.error("settlement payout failed: the money did not arrive",
              {{"entity_id", p.entity_id},
               {"settlement_id", p.settlement_id.value_or("")},
               {"payout_id", p.payout_id.value_or("")},
               {"amount", p.amount.value_or(0)},
               {"currency", p.currency.value_or("")}});
  }
}

}  // namespace

void Processor::start_commit(const std::atomic<bool>* give_up) {
  committing_.swap(pending_);
  pending_.clear();
  committing_acks_.swap(acknowledged_);
  acknowledged_.clear();
  commit_in_flight_ = true;
  store_thread_.submit([this, give_up] { committed_ = apply_with_retry(give_up); });
}

std::optional<BatchResult> Processor::apply_with_retry(const std::atomic<bool>* give_up) {
  auto started = std::chrono::steady_clock::now();
  std::optional<BatchResult> result;
  try {
    result = retry_storage_faults(give_up, [&] {
      return applier_.apply(std::span<const DecodedMessage>(committing_), committing_acks_);
    });
  } catch (const std::exception& e) {
    // Not the store: something in the batch makes it throw every time.
    // Retrying the batch would stall the partition forever; find the
    // message instead and set it aside.
    log_.error("batch failed deterministically; applying its messages one by one",
               {{"error", e.what()}, {"messages", committing_.size()}});
    result = apply_one_by_one(give_up);
  }
  if (result) {
    metrics_->batch_commit.observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  }
  return result;
}

std::optional<BatchResult> Processor::retry_storage_faults(
    const std::atomic<bool>* give_up, const std::function<BatchResult()>& transaction) {
  for (int attempt = 0;; ++attempt) {
    try {
      auto result = transaction();
      storage_health_->succeeded();
      storage_ok_ = true;
      return result;
    } catch (const storage::StoreError& e) {
      // Faults of the store itself are worth retrying: another writer holds
      // the lock, the disk is full or failing, the database is unreachable.
      // Anything else (a constraint a message violates, a bug) fails the same
      // way every time.
      if (!e.is_transient()) throw;
      if (e.fault() == storage::StoreFault::conflict && attempt < kConflictRetries) {
        // Another processor changed the same rows at the same time (N
        // processors on PostgreSQL): the store is fine, the batch is simply
        // done again, now. Only conflicts that keep coming are a fault.
        metrics_->batch_conflicts.inc();
        log_.warn("batch rolled back: another processor changed the same rows; retried",
                  {{"error", e.what()}, {"attempt", attempt}});
        std::this_thread::sleep_for(std::chrono::milliseconds(10 * attempt));
        continue;
      }
      // The transaction rolled back, nothing was stored; the same work is
      // retried (it is idempotent) until the store recovers. /readyz says so.
      // A full disk is waited out with the watchdog fed: a restart cannot
      // make room, and the consume loop is waiting, not stuck.
      if (storage_health_->failed(e)) heartbeat_.beat();
      storage_ok_ = false;
      metrics_->storage_errors.inc();
      log_.error("state store failing; retrying", {{"error", e.what()}, {"attempt", attempt}});
      if (give_up != nullptr && give_up->load() && attempt >= 3) return std::nullopt;
      std::this_thread::sleep_for(
          std::chrono::milliseconds(std::min(2000, 50 << std::min(attempt, 5))));
    }
  }
}

std::optional<BatchResult> Processor::record_apply_error(const std::atomic<bool>* give_up,
                                                         const DecodedMessage& d,
                                                         const std::string& what) {
  try {
    return retry_storage_faults(give_up, [&] { return applier_.record_apply_error(d, what); });
  } catch (const std::exception& e) {
    // Even the poison record fails: nothing can move this partition on.
    // Stop (exit 1) rather than spin; systemd restarts, an operator looks.
    storage_ok_ = false;
    log_.error("cannot record the message as poison either; stopping",
               {{"topic", d.message.topic},
                {"partition", d.message.partition},
                {"offset", d.message.offset},
                {"error", e.what()}});
    return std::nullopt;
  }
}

std::optional<BatchResult> Processor::apply_one_by_one(const std::atomic<bool>* give_up) {
  // Acknowledged publications first, alone; then one transaction per message.
  auto total = retry_storage_faults(
      give_up, [&] { return applier_.apply(std::span<const DecodedMessage>(), committing_acks_); });
  if (!total) return std::nullopt;
  for (const auto& d : committing_) {
    std::optional<BatchResult> one;
    try {
      one = retry_storage_faults(
          give_up, [&] { return applier_.apply(std::span<const DecodedMessage>(&d, 1)); });
    } catch (const std::exception& e) {
      log_.error("message cannot be applied; recorded as poison (apply_error)",
                 {{"topic", d.message.topic},
                  {"partition", d.message.partition},
                  {"offset", d.message.offset},
                  {"error", e.what()},
                  {"trace_id", core::trace_id_of(d.message.traceparent)}});
      one = record_apply_error(give_up, d, e.what());
    }
    if (!one) return std::nullopt;
    merge(*total, std::move(*one));
  }
  return total;
}

Processor::TakenCommit Processor::take_commit() {
  store_thread_.wait_idle();
  if (!commit_in_flight_) return {};
  commit_in_flight_ = false;
  auto outcome = std::exchange(committed_, std::nullopt);
  if (!outcome) {
    // Gave up while stopping: nothing of the batch was stored. Hand the
    // batch back so nothing claims it done.
    committing_.clear();
    acknowledged_.insert(acknowledged_.end(), committing_acks_.begin(), committing_acks_.end());
    committing_acks_.clear();
    return {TakenCommit::Outcome::gave_up, {}};
  }
  committing_acks_.clear();
  // What needs the batch's messages, before start_commit() hands the buffer
  // to the next batch: counted per topic, logged at debug.
  const bool debug = log_.enabled(core::LogLevel::debug);
  std::string_view topic;
  std::uint64_t same_topic = 0;
  for (const auto& d : committing_) {
    if (d.message.topic != topic) {
      if (same_topic > 0) metrics_->consumed.with({std::string(topic)}).inc(same_topic);
      topic = d.message.topic;
      same_topic = 0;
    }
    ++same_topic;
    if (debug) {
      log_.debug("message committed", {{"topic", d.message.topic},
                                       {"partition", d.message.partition},
                                       {"offset", d.message.offset},
                                       {"trace_id", core::trace_id_of(d.message.traceparent)}});
    }
  }
  if (same_topic > 0) metrics_->consumed.with({std::string(topic)}).inc(same_topic);
  events_seen_ += committing_.size();
  committing_.clear();
  {
    // Before the gap check (run between take and the next start) reads them.
    std::lock_guard lock(positions_mu_);
    for (const auto& [tp, next] : outcome->next_offsets) positions_[tp] = next;
  }
  return {TakenCommit::Outcome::committed, std::move(*outcome)};
}

void Processor::act_on_commit(BatchResult& result) {
  metrics_->batch_events.inc();
  metrics_->applied.inc(result.applied);
  metrics_->duplicates.inc(result.duplicates);
  metrics_->stale.inc(result.stale);
  metrics_->rejected.inc(result.rejected);
  metrics_->unrouted.inc(result.unrouted);
  if (result.conflicts > 0) {
    metrics_->conflicts.inc(result.conflicts);
    log_.error(
        "messages reuse the event_id of an applied event with another body; "
        "dead-lettered (event_id_conflict), not applied",
        {{"count", result.conflicts}});
  }
  if (result.environment_mismatch > 0) {
    metrics_->environment_mismatch.inc(result.environment_mismatch);
    log_.warn("events from the other Klarna environment: state applied, no call made",
              {{"count", result.environment_mismatch}});
  }
  metrics_->account_mismatch.inc(result.account_mismatches.size());
  for (const auto& [entity, what] : result.account_mismatches) {
    log_.warn("partner account disagrees with the stored one; stored kept",
              {{"entity_id", entity}, {"detail", what}});
  }
  report_failed_payouts(log_, metrics_->payouts_failed, result.failed_payouts);
  report_fenced(log_, metrics_->fenced, result.fenced);
  for (const auto& [reason, n] : result.commands_refused) {
    metrics_->commands_refused.with({reason}).inc(n);
  }
  for (const auto& [reason, n] : result.poison_by_reason) {
    metrics_->poison.with({reason}).inc(n);
    log_.warn("poison messages dead-lettered", {{"reason", reason}, {"count", n}});
  }

  // Only now, after the commit, may Kafka learn that these offsets are done.
  core::KafkaPartitionList offsets(
      rd_kafka_topic_partition_list_new(static_cast<int>(result.next_offsets.size())));
  for (const auto& [tp, next] : result.next_offsets) {
    rd_kafka_topic_partition_list_add(offsets.get(), tp.first.c_str(), tp.second)->offset = next;
  }
  if (offsets->cnt > 0) {
    if (auto err = rd_kafka_offsets_store(consumer_.get(), offsets.get()); err) {
      // Not assigned any more (a rebalance): the store's offsets still hold.
      log_.debug("offsets_store", {{"error", rd_kafka_err2name(err)}});
    }
  }
  for (const auto& row : result.publications) produce(row);
  metrics_->in_flight.set(static_cast<double>(in_flight_.size()));
  if (result.applied > 0 && batch_listener_) batch_listener_();
}

bool Processor::finish_commit() {
  auto taken = take_commit();
  if (taken.outcome == TakenCommit::Outcome::gave_up) return false;
  if (taken.outcome == TakenCommit::Outcome::committed) act_on_commit(taken.result);
  return true;
}

bool Processor::commit_pending(const std::atomic<bool>* give_up) {
  if (!finish_commit()) return false;
  if (pending_.empty() && acknowledged_.empty()) return true;
  start_commit(give_up);
  return finish_commit();
}

}  // namespace kpay::processor
