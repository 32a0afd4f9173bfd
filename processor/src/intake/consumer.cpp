#include "kpay/processor/consumer.hpp"

#include <condition_variable>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <utility>

#include "intake/message_meta.hpp"
#include "intake/storage_health.hpp"
#include "kpay/core/traceparent.hpp"
#include "kpay/klarna/kafka_contract.hpp"
#include "kpay/storage/store_error.hpp"

namespace kpay::processor {

struct Processor::Metrics {
  explicit Metrics(core::Registry& r)
      : consumed(r.counter("kpay_processor_messages_consumed_total",
                           "Messages consumed from Kafka, per topic.", {"topic"})),
        events(r.counter("kpay_processor_events_total",
                         "Events by outcome: applied, duplicate, stale, rejected.", {"outcome"})),
        applied(events.with({"applied"})),
        duplicates(events.with({"duplicate"})),
        stale(events.with({"stale"})),
        rejected(events.with({"rejected"})),
        conflicts(r.counter("kpay_processor_event_conflicts_total",
                            "Messages with the event_id of an event applied before but another "
                            "body (SHA-256): dead-lettered as event_id_conflict, never applied.")
                      .with({})),
        poison(r.counter(klarna::contract::metric::processor_poison_messages,
                         "Unusable messages, recorded and copied to the dead-letter topic.",
                         {"reason"})),
        environment_mismatch(
            r.counter("kpay_processor_environment_mismatch_events_total",
                      "Events whose metadata.live contradicts klarna.environment: applied, but "
                      "never the cause of a Klarna call.")
                .with({})),
        account_mismatch(
            r.counter("kpay_processor_account_mismatch_events_total",
                      "Events whose metadata.subject_account_id disagrees with the account "
                      "stored for their entity or a dispute's transaction (stored one kept).")
                .with({})),
        payouts_failed(r.counter(klarna::contract::metric::processor_payouts_failed,
                                 "Payouts Klarna reported failed (settlement.payout.failed "
                                 "applied): money that did not arrive.")
                           .with({})),
        unrouted(r.counter("kpay_processor_unrouted_events_total",
                           "Events of types no state machine handles (recorded only).")
                     .with({})),
        batch_commit(r.histogram("kpay_processor_batch_commit_seconds",
                                 "Time to apply and durably commit one batch.", {},
                                 core::latency_buckets_seconds())
                         .with({})),
        batch_events(r.counter("kpay_processor_batches_total", "Batches committed.").with({})),
        storage_errors(r.counter("kpay_processor_storage_errors_total",
                                 "Batches rolled back on a storage error (then retried).")
                           .with({})),
        batch_conflicts(r.counter("kpay_processor_batch_conflicts_total",
                                  "Batches rolled back because another processor's transaction "
                                  "changed the same rows at the same time (then retried).")
                            .with({})),
        published(r.counter("kpay_processor_published_total",
                            "Messages acknowledged by Kafka (state changes, dead letters).",
                            {"topic"})),
        publish_failures(r.counter("kpay_processor_publish_failures_total",
                                   "Publications that failed and will be retried.")
                             .with({})),
        in_flight(r.gauge("kpay_processor_publications_in_flight",
                          "Queued publications not yet acknowledged by Kafka.")
                      .with({})),
        commands_refused(r.counter("kpay_processor_commands_refused_total",
                                   "Commands refused for their signature, age (expired) or "
                                   "the sender's permissions (not_permitted), by reason.",
                                   {"reason"})) {}
  core::CounterFamily& consumed;
  core::CounterFamily& events;
  core::Counter& applied;
  core::Counter& duplicates;
  core::Counter& stale;
  core::Counter& rejected;
  core::Counter& conflicts;
  core::CounterFamily& poison;
  core::Counter& environment_mismatch;
  core::Counter& account_mismatch;
  core::Counter& payouts_failed;
  core::Counter& unrouted;
  core::Histogram& batch_commit;
  core::Counter& batch_events;
  core::Counter& storage_errors;
  core::Counter& batch_conflicts;
  core::CounterFamily& published;
  core::Counter& publish_failures;
  core::Gauge& in_flight;
  core::CounterFamily& commands_refused;
};

namespace {

// A batch rolled back by a concurrent transaction (StoreFault::conflict) is
// done again at once, this many times in a row; conflicts beyond are handled
// like any failing store (backoff, /readyz), so a livelock shows.
constexpr int kConflictRetries = 5;

extern "C" void rebalance_trampoline(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                                     rd_kafka_topic_partition_list_t* partitions, void* opaque) {
  static_cast<Processor*>(opaque)->on_rebalance(rk, err, partitions);
}
extern "C" void delivery_trampoline(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque) {
  static_cast<Processor*>(opaque)->on_delivery(msg);
}
extern "C" void error_trampoline(rd_kafka_t*, int err, const char* reason, void* opaque) {
  static_cast<Processor*>(opaque)->on_error(err, reason);
}

// rd_kafka_destroy_flags() on a thread of its own, waited for up to `grace`.
// When it does not return in time, the handle and that thread are abandoned:
// the process is about to exit, which ends them. Nothing polls the handle's
// queues any more, so none of our callbacks (opaque = the Processor) can run;
// only librdkafka's log callback may, and it uses no Processor state.
bool destroy_within(rd_kafka_t* rk, int flags, std::chrono::milliseconds grace) {
  if (rk == nullptr) return true;
  struct Done {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
  };
  auto state = std::make_shared<Done>();
  std::thread destroyer([rk, flags, state] {
    rd_kafka_destroy_flags(rk, flags);
    std::lock_guard lock(state->mu);
    state->done = true;
    state->cv.notify_all();
  });
  std::unique_lock lock(state->mu);
  if (state->cv.wait_for(lock, grace, [&] { return state->done; })) {
    lock.unlock();
    destroyer.join();
    return true;
  }
  destroyer.detach();
  return false;
}

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

ProcessorSettings settings_from_config(const core::Config& c) {
  ProcessorSettings s;
  s.bootstrap_servers = c.string("kafka.bootstrap_servers", s.bootstrap_servers);
  s.group_id = c.string("kafka.group_id", s.group_id);
  s.topics.apply_prefix(c.string("kafka.topic_prefix", ""));
  s.kafka_properties = c.string_table("kafka.properties");
  s.consume_unrouted = c.boolean("processor.consume_unrouted", true);
  s.batch_size = static_cast<std::size_t>(c.integer("processor.batch_size", 5000, 1, 100000));
  s.batch_timeout = c.millis("processor.batch_timeout_ms", std::chrono::milliseconds(50),
                             std::chrono::milliseconds(1), std::chrono::milliseconds(10000));
  s.shutdown_flush_timeout =
      c.millis("processor.shutdown_flush_timeout_ms", std::chrono::milliseconds(10000),
               std::chrono::milliseconds(0), std::chrono::milliseconds(120000));
  s.follow_ups = follow_up_settings_from_config(c);
  s.commands = command_policy_from_config(c);
  const auto policy = storage::parse_gap_policy(c.string("processor.on_offset_gap", "pause"));
  if (!policy) {
    throw core::ConfigError("processor.on_offset_gap", "must be \"pause\" or \"continue\"");
  }
  s.on_offset_gap = *policy;
  const auto repair = c.string("processor.gap_repair", "manual");
  if (repair != "manual" && repair != "auto") {
    throw core::ConfigError("processor.gap_repair", "must be \"manual\" or \"auto\"");
  }
  s.gap_repair_auto = repair == "auto";
  s.gap_check_interval = c.millis("processor.gap_check_interval_ms", s.gap_check_interval,
                                  std::chrono::milliseconds(10), std::chrono::milliseconds(60000));
  return s;
}

Processor::Processor(ProcessorSettings settings, storage::Store& store, core::Registry& registry)
    : settings_(std::move(settings)),
      store_(store),
      applier_(store, settings_.topics, settings_.follow_ups),
      metrics_(std::make_unique<Metrics>(registry)) {
  storage_health_ = std::make_unique<StorageHealth>(store_.database_file(), registry);
  secure_commands(registry);
  gap_metrics_ = make_gap_metrics(registry);
  registry.gauge_callback(klarna::contract::metric::processor_consumer_lag,
                          "Messages between the partition's high watermark and our position.",
                          {"topic", "partition"}, [this] { return lag_samples(); });

  core::KafkaProperties producer_props = {
      {"bootstrap.servers", settings_.bootstrap_servers},
      {"enable.idempotence", "true"},
      {"acks", "all"},
      {"linger.ms", "5"},
      // Backpressure instead of buffering: produce() polls when this is full.
      {"queue.buffering.max.kbytes", "16384"},
      {"log_level", "4"},
  };
  for (const auto& p : settings_.kafka_properties) producer_props.push_back(p);
  auto pconf = core::make_kafka_conf(producer_props);
  rd_kafka_conf_set_opaque(pconf.get(), this);
  rd_kafka_conf_set_dr_msg_cb(pconf.get(), delivery_trampoline);
  producer_ = core::make_kafka(RD_KAFKA_PRODUCER, std::move(pconf));

  core::KafkaProperties consumer_props = {
      {"bootstrap.servers", settings_.bootstrap_servers},
      {"group.id", settings_.group_id},
      {"enable.auto.offset.store", "false"},
      {"enable.auto.commit", "true"},
      {"auto.commit.interval.ms", "1000"},
      // Never a silent jump: an out-of-range position is reported to us
      // (consumer_gaps.cpp) instead of being moved to the log's start.
      {"auto.offset.reset", "error"},
      // Bound what librdkafka prefetches and fetches at once: the RSS budget
      // is 128 MiB, and a batch needs only a few MB of messages in hand.
      {"queued.max.messages.kbytes", "8192"},
      {"fetch.max.bytes", "8388608"},
      {"max.partition.fetch.bytes", "1048576"},
      {"log_level", "4"},
  };
  for (const auto& p : settings_.kafka_properties) consumer_props.push_back(p);
  auto cconf = core::make_kafka_conf(consumer_props);
  rd_kafka_conf_set_opaque(cconf.get(), this);
  rd_kafka_conf_set_rebalance_cb(cconf.get(), rebalance_trampoline);
  rd_kafka_conf_set_error_cb(cconf.get(), error_trampoline);
  consumer_ = core::make_kafka(RD_KAFKA_CONSUMER, std::move(cconf));
  rd_kafka_poll_set_consumer(consumer_.get());
}

Processor::~Processor() = default;

core::Readiness Processor::readiness() const {
  if (!storage_ok_) {
    auto why = storage_health_->reason();
    return {false, why.empty() ? "state store failing" : why};
  }
  if (!kafka_ok_) return {false, "kafka unreachable"};
  if (!assigned_) return {false, "no partitions assigned yet"};
  if (auto open = open_gaps_.load(); open > 0) {
    return {false, std::to_string(open) + " offset gap(s) open: klarnactl gaps list"};
  }
  return {true, ""};
}

void Processor::on_error(int err, const char* reason) {
  if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__FATAL) {
    kafka_ok_ = false;
  }
  log_.warn("kafka error", {{"error", rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(err))},
                            {"reason", reason}});
}

void Processor::on_rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                             rd_kafka_topic_partition_list_t* partitions) {
  const bool cooperative = std::strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    // Resume from the store's own record of what it applied; it committed in
    // the same transaction as the effects, so it is never ahead or behind.
    // (The store thread finishes its batch first: one connection, one user.)
    finish_commit();
    // Reads retried while the store fails (a PostgreSQL restart during a
    // rebalance: the connection's error may not even say it was lost), with
    // /readyz saying so: a rebalance callback must not throw.
    auto retried = [&](const char* what, auto&& read) {
      for (int attempt = 0;; ++attempt) {
        try {
          read();
          if (attempt > 0) {
            storage_health_->succeeded();
            storage_ok_ = true;
          }
          return;
        } catch (const storage::StoreError& e) {
          storage_health_->failed(e);
          storage_ok_ = false;
          metrics_->storage_errors.inc();
          log_.error(what, {{"error", e.what()}, {"attempt", attempt}});
          std::this_thread::sleep_for(
              std::chrono::milliseconds(std::min(2000, 50 << std::min(attempt, 5))));
        }
      }
    };
    std::map<std::pair<std::string, std::int32_t>, std::int64_t> stored;
    retried("cannot read the assigned partitions' stored offsets; retrying", [&] {
      stored.clear();
      for (int i = 0; i < partitions->cnt; ++i) {
        const auto& tp = partitions->elems[i];
        if (auto next = store_.stored_offset(tp.topic, tp.partition)) {
          stored[{tp.topic, tp.partition}] = *next;
        }
      }
    });
    {
      std::lock_guard lock(positions_mu_);
      for (int i = 0; i < partitions->cnt; ++i) {
        auto& tp = partitions->elems[i];
        const auto it = stored.find({tp.topic, tp.partition});
        if (it != stored.end()) {
          tp.offset = it->second;
          positions_[{tp.topic, tp.partition}] = it->second;
        } else {
          // Nothing applied from it yet: all of it, explicitly (with
          // auto.offset.reset=error there is no implicit start).
          tp.offset = RD_KAFKA_OFFSET_BEGINNING;
        }
      }
    }
    if (cooperative) {
      if (auto* e = rd_kafka_incremental_assign(rk, partitions)) rd_kafka_error_destroy(e);
    } else {
      rd_kafka_assign(rk, partitions);
    }
    retried("cannot read the assigned partitions' offset gaps; retrying",
            [&] { expect_assigned(partitions); });
    assigned_ = true;
    kafka_ok_ = true;
    log_.info("partitions assigned", {{"count", partitions->cnt}});
    return;
  }
  // Revoked (or lost): finish what is in hand, then let go.
  commit_pending(stop_);
  if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
    auto cerr = rd_kafka_commit(rk, nullptr, 0);  // synchronous
    if (cerr != RD_KAFKA_RESP_ERR_NO_ERROR && cerr != RD_KAFKA_RESP_ERR__NO_OFFSET) {
      log_.warn("offset commit on revoke failed", {{"error", rd_kafka_err2name(cerr)}});
    }
  }
  {
    std::lock_guard lock(positions_mu_);
    for (int i = 0; i < partitions->cnt; ++i) {
      positions_.erase({partitions->elems[i].topic, partitions->elems[i].partition});
    }
  }
  forget_revoked(partitions);
  if (cooperative) {
    if (auto* e = rd_kafka_incremental_unassign(rk, partitions)) rd_kafka_error_destroy(e);
  } else {
    rd_kafka_assign(rk, nullptr);
    assigned_ = false;
  }
  log_.info("partitions revoked", {{"count", partitions->cnt}});
}

void Processor::on_delivery(const rd_kafka_message_t* msg) {
  auto seq = static_cast<std::int64_t>(reinterpret_cast<std::intptr_t>(msg->_private));
  if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    acknowledged_.push_back(seq);
    if (auto it = in_flight_.find(seq); it != in_flight_.end()) {
      metrics_->published.with({it->second.topic}).inc();
      in_flight_.erase(it);
    }
  } else {
    metrics_->publish_failures.inc();
    failed_.push_back(seq);
    log_.warn("publication failed; will retry",
              {{"error", rd_kafka_err2name(msg->err)}, {"seq", seq}});
  }
  metrics_->in_flight.set(static_cast<double>(in_flight_.size()));
}

void Processor::produce(const storage::PublishRow& row) {
  for (;;) {
    rd_kafka_headers_t* headers = rd_kafka_headers_new(2);
    if (!row.traceparent.empty()) {
      rd_kafka_header_add(headers, klarna::contract::header::traceparent, -1,
                          row.traceparent.data(), static_cast<ssize_t>(row.traceparent.size()));
    }
    if (row.reason.empty()) {
      rd_kafka_header_add(headers, klarna::contract::header::content_type, -1, "application/json",
                          -1);
    } else {
      rd_kafka_header_add(headers, klarna::contract::header::processor_dead_letter_reason, -1,
                          row.reason.data(), static_cast<ssize_t>(row.reason.size()));
    }
    auto err = rd_kafka_producev(
        producer_.get(), RD_KAFKA_V_TOPIC(row.topic.c_str()),
        RD_KAFKA_V_KEY(row.key.data(), row.key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(row.value.data()), row.value.size()),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(headers),
        RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(static_cast<std::intptr_t>(row.seq))),
        RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      in_flight_[row.seq] = row;  // headers now owned by the message
      return;
    }
    rd_kafka_headers_destroy(headers);
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      // Stays in the store's queue; republished on the next start.
      log_.error("cannot publish", {{"error", rd_kafka_err2name(err)}, {"seq", row.seq}});
      metrics_->publish_failures.inc();
      return;
    }
    if (stop_ != nullptr && stop_->load()) {
      // Kafka is not draining the queue and we are stopping: the row stays in
      // the store's queue (republished on the next start) rather than hold
      // the stop until message.timeout.ms frees room.
      metrics_->publish_failures.inc();
      return;
    }
    heartbeat_.beat();  // waiting on Kafka, not stuck
    rd_kafka_poll(producer_.get(), 100);
  }
}

void Processor::publish_later(std::vector<storage::PublishRow> rows) {
  std::lock_guard lock(external_mu_);
  for (auto& r : rows) external_.push_back(std::move(r));
}

void Processor::produce_external() {
  std::vector<storage::PublishRow> rows;
  {
    std::lock_guard lock(external_mu_);
    rows.swap(external_);
  }
  for (const auto& row : rows) produce(row);
}

void Processor::retry_failed_publications() {
  if (failed_.empty()) return;
  auto retry = std::move(failed_);
  failed_.clear();
  for (auto seq : retry) {
    auto it = in_flight_.find(seq);
    if (it == in_flight_.end()) continue;
    auto row = it->second;
    in_flight_.erase(it);
    produce(row);
  }
}

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

bool Processor::finish_commit() {
  store_thread_.wait_idle();
  if (!commit_in_flight_) return true;
  commit_in_flight_ = false;
  auto outcome = std::exchange(committed_, std::nullopt);
  if (!outcome) {
    // Gave up while stopping: nothing of the batch was stored. Hand the
    // batch back so nothing claims it done.
    committing_.clear();
    acknowledged_.insert(acknowledged_.end(), committing_acks_.begin(), committing_acks_.end());
    committing_acks_.clear();
    return false;
  }
  BatchResult& result = *outcome;
  metrics_->batch_events.inc();
  committing_acks_.clear();

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
  for (const auto& [reason, n] : result.commands_refused) {
    metrics_->commands_refused.with({reason}).inc(n);
  }
  for (const auto& [reason, n] : result.poison_by_reason) {
    metrics_->poison.with({reason}).inc(n);
    log_.warn("poison messages dead-lettered", {{"reason", reason}, {"count", n}});
  }
  const bool debug = log_.enabled(core::LogLevel::debug);
  for (const auto& d : committing_) {
    metrics_->consumed.with({d.message.topic}).inc();
    if (debug) {
      log_.debug("message committed", {{"topic", d.message.topic},
                                       {"partition", d.message.partition},
                                       {"offset", d.message.offset},
                                       {"trace_id", core::trace_id_of(d.message.traceparent)}});
    }
  }
  events_seen_ += committing_.size();
  committing_.clear();

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
  {
    std::lock_guard lock(positions_mu_);
    for (const auto& [tp, next] : result.next_offsets) positions_[tp] = next;
  }
  for (const auto& row : result.publications) produce(row);
  metrics_->in_flight.set(static_cast<double>(in_flight_.size()));
  if (result.applied > 0 && batch_listener_) batch_listener_();
  return true;
}

bool Processor::commit_pending(const std::atomic<bool>* give_up) {
  if (!finish_commit()) return false;
  if (pending_.empty() && acknowledged_.empty()) return true;
  start_commit(give_up);
  return finish_commit();
}

std::vector<core::GaugeSample> Processor::lag_samples() const {
  std::vector<core::GaugeSample> out;
  std::lock_guard lock(positions_mu_);
  for (const auto& [tp, next] : positions_) {
    int64_t low = 0, high = 0;
    if (rd_kafka_get_watermark_offsets(consumer_.get(), tp.first.c_str(), tp.second, &low, &high) !=
            RD_KAFKA_RESP_ERR_NO_ERROR ||
        high < 0) {
      continue;
    }
    out.push_back({{tp.first, std::to_string(tp.second)},
                   static_cast<double>(std::max<std::int64_t>(0, high - next))});
  }
  return out;
}

bool Processor::run(const std::atomic<bool>& stop) {
  stop_ = &stop;
  // Publications a previous run committed but Kafka never acknowledged.
  for (const auto& row : store_.pending_publications()) produce(row);

  const auto& t = settings_.topics;
  std::vector<std::string> topics = {t.payment_requests, t.payment_transactions,
                                     t.disputes,         t.settlements,
                                     t.accounts,         t.commands};
  if (settings_.consume_unrouted) topics.push_back(t.unrouted);
  core::KafkaPartitionList subscription(
      rd_kafka_topic_partition_list_new(static_cast<int>(topics.size())));
  for (const auto& topic : topics) {
    rd_kafka_topic_partition_list_add(subscription.get(), topic.c_str(), RD_KAFKA_PARTITION_UA);
  }
  if (auto err = rd_kafka_subscribe(consumer_.get(), subscription.get()); err) {
    log_.error("subscribe failed", {{"error", rd_kafka_err2name(err)}});
    return false;
  }
  log_.info("consuming", {{"group_id", settings_.group_id}, {"topics", topics.size()}});

  bool ok = true;
  pending_.reserve(settings_.batch_size);
  while (!stop.load()) {
    heartbeat_.beat();  // the previous batch committed, or there was none
    auto deadline = std::chrono::steady_clock::now() + settings_.batch_timeout;
    while (pending_.size() < settings_.batch_size && !stop.load()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      // With nothing in hand, wait in longer slices (still waking for stop).
      int wait_ms =
          pending_.empty() ? 100 : static_cast<int>(std::max<std::int64_t>(0, left.count()));
      core::KafkaMessage m(rd_kafka_consumer_poll(consumer_.get(), wait_ms));
      if (!m) {
        if (!pending_.empty() && std::chrono::steady_clock::now() >= deadline) break;
        if (pending_.empty()) break;  // serve deliveries, then poll again
        continue;
      }
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) continue;
      if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
          m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
        on_out_of_range(m.get());
        continue;
      }
      if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log_.warn("consume error", {{"error", rd_kafka_err2name(m->err)}});
        if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
          ok = false;
          break;
        }
        continue;
      }
      kafka_ok_ = true;
      InputMessage in;
      in.topic = rd_kafka_topic_name(m->rkt);
      in.partition = m->partition;
      in.offset = m->offset;
      if (!offset_in_sequence(in.topic, in.partition, in.offset)) continue;
      if (m->key != nullptr) in.key.assign(static_cast<const char*>(m->key), m->key_len);
      if (m->payload != nullptr) in.value.assign(static_cast<const char*>(m->payload), m->len);
      read_message_meta(m.get(), in, in.topic == settings_.topics.commands);
      pending_.push_back(applier_.decode(std::move(in)));
    }
    if (!ok) break;
    rd_kafka_poll(producer_.get(), 0);  // delivery reports → acknowledged_
    retry_failed_publications();
    // The previous batch must be committed before this one is handed over.
    if (!finish_commit()) {
      ok = false;
      break;
    }
    if (std::chrono::steady_clock::now() >= next_gap_check_) check_gaps();  // store thread idle
    // Only after the batch's own publications: the worker may already have
    // answered a command that batch accepted, and per key `accepted` must be
    // produced before the final result (one producer keeps the order).
    produce_external();
    // Acknowledged publications are deleted with the next batch, or alone when idle.
    if (!pending_.empty() || !acknowledged_.empty()) start_commit(&stop);
  }

  // SIGTERM: finish the batches in hand, commit, hand offsets to Kafka, leave.
  if (!finish_commit()) ok = false;
  if (ok && !pending_.empty()) ok = commit_pending(&stop);
  leave_kafka(ok);
  log_.info("consumer closed", {{"events", events_seen_.load()}});
  return ok;
}

void Processor::leave_kafka(bool ok) {
  // One budget for the whole of Kafka's part of a stop: the publications'
  // acknowledgements, then leaving the group. The grace constants below are
  // all that may come on top of it, however Kafka behaves.
  const auto deadline = std::chrono::steady_clock::now() + settings_.shutdown_flush_timeout;
  produce_external();
  while (!in_flight_.empty() && std::chrono::steady_clock::now() < deadline) {
    rd_kafka_poll(producer_.get(), 50);
    retry_failed_publications();
  }
  if (ok && !acknowledged_.empty()) commit_pending(stop_);  // delete acknowledged rows
  if (!in_flight_.empty()) {
    log_.warn("publications still unacknowledged at exit; republished on next start",
              {{"count", in_flight_.size()}});
  }
  // Kafka's committed offsets are advisory here (the store's own offsets are
  // the truth), so the final commit is asynchronous.
  auto cerr = rd_kafka_commit(consumer_.get(), nullptr, 1);
  if (cerr != RD_KAFKA_RESP_ERR_NO_ERROR && cerr != RD_KAFKA_RESP_ERR__NO_OFFSET) {
    log_.warn("final offset commit failed", {{"error", rd_kafka_err2name(cerr)}});
  }
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  const bool closed = close_consumer_within(std::max(left, kLeaveGroupFloor));
  if (!closed) log_.warn("Kafka did not confirm leaving the group in time; closing anyway");
  release_kafka_handles(closed);
}

void Processor::release_kafka_handles(bool consumer_closed) {
  // A scrape reads watermarks through the consumer: it must find no
  // partition (and so never touch the handle) once the handle is going.
  core::KafkaHandle consumer;
  core::KafkaHandle producer;
  {
    std::lock_guard lock(positions_mu_);
    positions_.clear();
    consumer = std::move(consumer_);
    producer = std::move(producer_);
  }
  // What Kafka has not acknowledged stays in the store's publish_queue and is
  // republished on the next start, so the producer's copies may go: without
  // them its destroy does not wait for message.timeout.ms.
  rd_kafka_purge(producer.get(), RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  if (!destroy_within(producer.release(), 0, kDestroyGrace)) {
    log_.warn("Kafka producer did not finish in time; left to the process exit");
  }
  // Measured (librdkafka 2.0.2, cluster gone with commits pending): destroy,
  // even with NO_CONSUMER_CLOSE, joins a main thread that spins at 100% CPU
  // until its offset commits give up waiting for a coordinator, 45 s later
  // (session.timeout.ms; librdkafka issues #625, #3740). A stop must not
  // wait for that: past the grace the handle is abandoned to the exit.
  const int flags = consumer_closed ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE;
  if (!destroy_within(consumer.release(), flags, kDestroyGrace)) {
    log_.warn("Kafka consumer did not finish in time; left to the process exit");
  }
}

bool Processor::close_consumer_within(std::chrono::milliseconds budget) {
  rd_kafka_queue_t* queue = rd_kafka_queue_new(consumer_.get());
  if (rd_kafka_error_t* error = rd_kafka_consumer_close_queue(consumer_.get(), queue)) {
    log_.warn("consumer close failed", {{"error", rd_kafka_error_string(error)}});
    rd_kafka_error_destroy(error);
    rd_kafka_queue_destroy(queue);
    return false;
  }
  auto deadline = std::chrono::steady_clock::now() + budget;
  while (!rd_kafka_consumer_closed(consumer_.get()) &&
         std::chrono::steady_clock::now() < deadline) {
    rd_kafka_event_t* event = rd_kafka_queue_poll(queue, 100);
    if (event == nullptr) continue;
    if (rd_kafka_event_type(event) == RD_KAFKA_EVENT_REBALANCE) {
      // Leaving the group revokes everything; nothing is left to apply.
      if (std::strcmp(rd_kafka_rebalance_protocol(consumer_.get()), "COOPERATIVE") == 0) {
        if (rd_kafka_error_t* e = rd_kafka_incremental_unassign(
                consumer_.get(), rd_kafka_event_topic_partition_list(event))) {
          rd_kafka_error_destroy(e);
        }
      } else {
        rd_kafka_assign(consumer_.get(), nullptr);
      }
    }
    rd_kafka_event_destroy(event);
  }
  bool closed = rd_kafka_consumer_closed(consumer_.get()) != 0;
  rd_kafka_queue_destroy(queue);
  return closed;
}

}  // namespace kpay::processor
