// The consume loop: settings, the Kafka handles, rebalances, readiness and
// run(). A batch's commit is in consumer_commit.cpp, publications in
// consumer_publish.cpp, leaving Kafka at a stop in consumer_leave.cpp.
#include "kpay/processor/consumer.hpp"

#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "intake/consumer_metrics.hpp"
#include "intake/message_meta.hpp"
#include "intake/prefetch_wake.hpp"
#include "intake/storage_health.hpp"
#include "kpay/klarna/kafka_contract.hpp"
#include "kpay/storage/store_error.hpp"

namespace kpay::processor {

namespace {

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
  s.prefetch_wake = c.boolean("processor.prefetch_wake", s.prefetch_wake);
  s.prefetch_wake_interval =
      c.millis("processor.prefetch_wake_interval_ms", s.prefetch_wake_interval,
               std::chrono::milliseconds(1), std::chrono::milliseconds(10000));
  return s;
}

Processor::Processor(ProcessorSettings settings, storage::Store& store, core::Registry& registry)
    : settings_(std::move(settings)),
      store_(store),
      applier_(store, settings_.topics, settings_.follow_ups),
      metrics_(std::make_unique<Metrics>(registry)) {
  storage_health_ = std::make_unique<StorageHealth>(store_.database_file(), registry);
  prefetch_wake_metrics_ = std::make_unique<PrefetchWakeMetrics>(registry);
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
      // 4 MiB: the first batches' publications held 7 MiB for ~0.5 s, often
      // at the run's RSS peak (docs/performance/processor.md, "The prefetch wake").
      {"queue.buffering.max.kbytes", "4096"},
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
      // is 128 MiB, and a batch needs only a few MB of messages in hand. 4 MiB
      // each, with the prefetch wake refilling the queue at half of it
      // (intake/prefetch_wake.hpp): 1.08-1.28x the events/s of 8 MiB without
      // the wake, peak RSS <= 114.3 MiB in 25 of 25 runs (docs/performance/processor.md,
      // "The prefetch wake").
      {"queued.max.messages.kbytes", "4096"},
      {"fetch.max.bytes", "4194304"},
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
  // Both batches' buffers at their full size once: start_commit() swaps them,
  // so an unreserved one would grow by doubling to 8,192 slots for a batch of
  // 5,000 (12 MiB instead of 7 at ~1.3 KB a message) with both the old and
  // the new buffer live while it grows (docs/performance/processor.md, "Peak RSS run to
  // run").
  pending_.reserve(settings_.batch_size);
  committing_.reserve(settings_.batch_size);
  std::optional<PrefetchWake> wake;  // stopped before leave_kafka() closes the consumer
  if (settings_.prefetch_wake) {
    wake.emplace(consumer_.get(), settings_.prefetch_wake_interval, *prefetch_wake_metrics_);
  }
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
      if (wake && m) wake->on_message(m->len);
      if (wake && !m) wake->on_empty_poll();
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
    auto taken = take_commit();
    if (taken.outcome == TakenCommit::Outcome::gave_up) {
      ok = false;
      break;
    }
    if (std::chrono::steady_clock::now() >= next_gap_check_) check_gaps();  // store thread idle
    // Acknowledged publications are deleted with the next batch, or alone when idle.
    if (!pending_.empty() || !acknowledged_.empty()) start_commit(&stop);
    // The committed batch's offsets and publications while the store thread
    // applies the next one (docs/performance/processor.md, "The next batch
    // applied while the last one's effects are produced").
    if (taken.outcome == TakenCommit::Outcome::committed) act_on_commit(taken.result);
    // Only after the batch's own publications: the worker may already have
    // answered a command that batch accepted, and per key `accepted` must be
    // produced before the final result (one producer keeps the order).
    produce_external();
  }

  // SIGTERM: finish the batches in hand, commit, hand offsets to Kafka, leave.
  if (wake) wake->request_stop();
  if (!finish_commit()) ok = false;
  if (ok && !pending_.empty()) ok = commit_pending(&stop);
  wake.reset();
  leave_kafka(ok);
  log_.info("consumer closed", {{"events", events_seen_.load()}});
  return ok;
}

}  // namespace kpay::processor
