// The processor's Kafka side: a consumer-group member over the receiver's
// topics and klarna.commands that feeds batches to the BatchApplier, and a
// producer for the state changes, command results and dead-letter copies the
// batches queue.
//
// Guarantees:
//   - enable.auto.offset.store=false: an offset is stored (and later committed
//     to Kafka) only after the SQLite transaction holding its effects committed.
//   - The store also records the next offset per partition inside that same
//     transaction; on assignment the consumer resumes from the store's offset
//     when it has one. So a crash at any instant neither loses nor re-applies
//     an event, and the history shows every event exactly once.
//   - Two stages: the Kafka thread polls and decodes while a store thread
//     commits the previous batch (SerialWorker); at most two batches in hand.
//   - On revocation the messages already gathered are applied and committed,
//     their offsets committed to Kafka synchronously, and only then is the
//     partition given up.
//   - A poison message is recorded, counted, queued for the dead-letter topic
//     and its offset advanced: the partition keeps moving.
//   - Published messages (state changes, dead letters) go through the store's
//     publish queue: at-least-once, republished after a crash.
//   - Never a silent skip (consumer_gaps.cpp): auto.offset.reset=error, and
//     the first offset of a partition after the stored position must be that
//     position; a partition whose next offsets are gone (retention, a
//     truncated or recreated log, an older database restored) is an offset
//     gap: recorded, logged, counted, published, /readyz not ready, and (policy
//     pause) the partition paused until `klarnactl gaps accept`.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "kpay/core/admin_server.hpp"
#include "kpay/core/config.hpp"
#include "kpay/core/kafka.hpp"
#include "kpay/core/log.hpp"
#include "kpay/core/metrics.hpp"
#include "kpay/core/process.hpp"
#include "kpay/core/serial_worker.hpp"
#include "kpay/klarna/envelope.hpp"
#include "kpay/processor/batch_applier.hpp"
#include "kpay/processor/follow_ups.hpp"
#include "kpay/processor/sender_keys.hpp"
#include "kpay/storage/store.hpp"

namespace kpay::processor {

class StorageHealth;         // intake/storage_health.hpp
struct PrefetchWakeMetrics;  // intake/prefetch_wake.hpp

struct ProcessorSettings {
  std::string bootstrap_servers = "127.0.0.1:9092";
  std::string group_id = "klarna-processor";
  klarna::Topics topics;  // prefix already applied
  bool consume_unrouted = true;
  core::KafkaProperties kafka_properties;  // pass-through, applied last
  std::size_t batch_size = 5000;
  std::chrono::milliseconds batch_timeout{50};
  std::chrono::milliseconds shutdown_flush_timeout{10000};
  FollowUpSettings follow_ups;  // capture policy, environment
  // Who may send commands (command_auth.hpp). None: every command is trusted
  // (suites that build settings by hand); settings_from_config always sets it.
  std::optional<CommandPolicy> commands;
  // processor.on_offset_gap: pause the partition until an operator accepts
  // the gap (default), or record it and go on from the first offset left.
  using GapPolicy = storage::GapPolicy;  // "pause" | "continue"
  GapPolicy on_offset_gap = GapPolicy::pause;
  // processor.gap_repair = "auto": read the gap's open entities again at once.
  bool gap_repair_auto = false;
  // How often paused partitions look for the operator's decision.
  std::chrono::milliseconds gap_check_interval{1000};
  // processor.prefetch_wake: when the consumer queue runs low after reaching
  // librdkafka's prefetch bound, wake the partitions' leaders' broker threads
  // so they fetch again at once (intake/prefetch_wake.hpp), at most once per
  // prefetch_wake_interval.
  bool prefetch_wake = true;
  std::chrono::milliseconds prefetch_wake_interval{10};
};

class Processor {
 public:
  // Registers its metrics in `registry`. Throws at start-up (bad Kafka config).
  Processor(ProcessorSettings settings, storage::Store& store, core::Registry& registry);
  ~Processor();
  Processor(const Processor&) = delete;
  Processor& operator=(const Processor&) = delete;

  // Consumes until `stop` becomes true; then applies and commits the batch in
  // hand, commits offsets, flushes the producer and leaves the group, all of
  // Kafka's part within shutdown_flush_timeout + 3 s, reachable or not; the
  // Kafka handles are gone when it returns. Returns false when it had to
  // stop on an unrecoverable error.
  bool run(const std::atomic<bool>& stop);

  // /readyz: storage usable, Kafka reachable, partitions assigned.
  core::Readiness readiness() const;

  // Called by librdkafka from inside poll (our thread).
  void on_rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                    rd_kafka_topic_partition_list_t* partitions);
  void on_delivery(const rd_kafka_message_t* msg);
  void on_error(int err, const char* reason);

  std::uint64_t events_seen() const { return events_seen_.load(); }
  // Beats on every turn of the consume loop, i.e. after each committed batch
  // and when there was nothing to do, and while waiting for Kafka to take
  // publications (a restart cannot bring a broker back; /readyz says so).
  // It stops while a batch is retried on storage errors or anything else
  // holds the loop: the systemd watchdog is fed from it (main.cpp).
  const core::Heartbeat& heartbeat() const { return heartbeat_; }

  // Rows another thread (the outbox worker) committed to the publish queue:
  // produced by the Kafka thread on its next turn. Thread-safe.
  void publish_later(std::vector<storage::PublishRow> rows);
  // Called on the Kafka thread after each committed batch that applied
  // events (new outbox rows may be due). Set before run().
  void on_batch_committed(std::function<void()> listener) { batch_listener_ = std::move(listener); }
  // SIGHUP: re-reads the command senders' keys (the previous ones are kept
  // when the file is refused). True when there are none to read.
  bool reload_sender_keys();

 private:
  // The pipeline: this (Kafka) thread polls and decodes batch N+1 while the
  // store thread applies and commits batch N. start_commit() hands
  // `pending_` (and the acknowledged publications) over; take_commit() waits
  // for that commit and takes its result (counting its messages, moving the
  // partitions' positions on); act_on_commit() then stores its offsets in
  // librdkafka, reports it and produces its publications — in the consume
  // loop while the store thread already applies the next batch. Offsets reach
  // Kafka only after the commit.
  void start_commit(const std::atomic<bool>* give_up);
  // What take_commit() found: no commit in flight; a commit the store failed
  // and `give_up` said to stop retrying (the batch is handed back); or a
  // committed batch and its result.
  struct TakenCommit {
    enum class Outcome { none, gave_up, committed } outcome = Outcome::none;
    BatchResult result;  // committed only
  };
  TakenCommit take_commit();
  void act_on_commit(BatchResult& result);
  // Both, for a commit in flight. False when the store failed and `give_up`
  // said to stop retrying.
  bool finish_commit();
  // Both, for the batch in hand (rebalance, shutdown).
  bool commit_pending(const std::atomic<bool>* give_up);
  // On the store thread: one transaction, retried on storage faults (busy,
  // locked, I/O, disk full, cannot open, read-only) until it succeeds or
  // `give_up` says so (then nullopt). Any other failure is deterministic:
  // the batch is applied one message per transaction and the message that
  // fails is recorded as poison (apply_error), so the partition moves on.
  std::optional<BatchResult> apply_with_retry(const std::atomic<bool>* give_up);
  std::optional<BatchResult> retry_storage_faults(const std::atomic<bool>* give_up,
                                                  const std::function<BatchResult()>& transaction);
  std::optional<BatchResult> apply_one_by_one(const std::atomic<bool>* give_up);
  // nullopt when even that fails: run() then stops with false.
  std::optional<BatchResult> record_apply_error(const std::atomic<bool>* give_up,
                                                const DecodedMessage& d, const std::string& what);
  void produce(const storage::PublishRow& row);
  void retry_failed_publications();
  std::vector<core::GaugeSample> lag_samples() const;
  // consumer_security.cpp: with settings_.commands, the senders' keys loaded
  // (throws core::ConfigError on a key file others may read) and handed to
  // the applier, with their metrics.
  void secure_commands(core::Registry& registry);

  // ---- offset gaps (consumer_gaps.cpp); Kafka thread only ----
  using PartitionOffsets = std::map<std::string, std::map<std::int32_t, std::int64_t>, std::less<>>;
  // False when the message must not be applied (its partition is held by a gap).
  bool offset_in_sequence(const std::string& topic, std::int32_t partition, std::int64_t offset);
  // The broker answered out of range (auto.offset.reset=error).
  void on_out_of_range(const rd_kafka_message_t* m);
  // `delivered`: the offset that came instead of `expected` (-1: out of range).
  // True when a gap was recorded (or is being resolved) and the partition held.
  bool handle_gap(const std::string& topic, std::int32_t partition, std::int64_t expected,
                  std::int64_t delivered);
  bool record_gap(storage::OffsetGapRow& gap);
  void hold_partition(const std::string& topic, std::int32_t partition, std::int64_t gap_id);
  void restart_partition(const std::string& topic, std::int32_t partition, std::int64_t offset);
  // On assignment: partitions an open gap holds stay paused; expectations set.
  void expect_assigned(rd_kafka_topic_partition_list_t* partitions);
  void forget_revoked(const rd_kafka_topic_partition_list_t* partitions);
  // Every gap_check_interval, with the store thread idle: accepted gaps
  // resume their partitions; the open count for /readyz and the gauge.
  void check_gaps();
  struct GapMetrics;
  std::shared_ptr<GapMetrics> gap_metrics_;  // shared_ptr: defined in consumer_gaps.cpp
  static std::shared_ptr<GapMetrics> make_gap_metrics(core::Registry& registry);
  PartitionOffsets expected_;  // next offset per partition
  PartitionOffsets held_;      // partition → gap id (-1: unresolved, retried)
  std::chrono::steady_clock::time_point next_gap_check_{};
  std::atomic<std::int64_t> open_gaps_{0};

  ProcessorSettings settings_;
  storage::Store& store_;
  std::unique_ptr<SenderKeySource> sender_keys_;  // with settings_.commands
  BatchApplier applier_;
  core::Logger log_{"processor"};

  struct Metrics;
  std::unique_ptr<Metrics> metrics_;
  // Why commits fail (disk full, I/O, …): /readyz, log, metric.
  std::unique_ptr<StorageHealth> storage_health_;
  std::unique_ptr<PrefetchWakeMetrics> prefetch_wake_metrics_;

  std::vector<DecodedMessage> pending_;     // being gathered
  std::vector<std::int64_t> acknowledged_;  // publish seqs the broker confirmed
  std::vector<std::int64_t> failed_;        // publish seqs to produce again
  std::map<std::int64_t, storage::PublishRow> in_flight_;
  std::mutex external_mu_;
  std::vector<storage::PublishRow> external_;  // publish_later(), guarded by external_mu_
  std::function<void()> batch_listener_;
  void produce_external();

  mutable std::mutex positions_mu_;
  std::map<std::pair<std::string, std::int32_t>, std::int64_t> positions_;  // next offset

  std::atomic<bool> storage_ok_{true};
  std::atomic<bool> kafka_ok_{true};
  std::atomic<bool> assigned_{false};
  std::atomic<std::uint64_t> events_seen_{0};
  core::Heartbeat heartbeat_;
  const std::atomic<bool>* stop_ = nullptr;

  // The batch the store thread holds; touched by this thread only while the
  // worker is idle.
  std::vector<DecodedMessage> committing_;
  std::vector<std::int64_t> committing_acks_;
  std::optional<BatchResult> committed_;  // the store thread's outcome
  bool commit_in_flight_ = false;
  core::SerialWorker store_thread_;  // after what its jobs use: joined first

  // The stop's Kafka part, bounded: publications acknowledged (or left in the
  // store's queue) within shutdown_flush_timeout, the group left within what
  // remains (at least kLeaveGroupFloor), each handle destroyed within
  // kDestroyGrace or abandoned to the process exit.
  void leave_kafka(bool ok);
  void release_kafka_handles(bool consumer_closed);
  static constexpr std::chrono::milliseconds kLeaveGroupFloor{1000};
  static constexpr std::chrono::milliseconds kDestroyGrace{1000};

  // Last: the handles call back into the members above until destroyed.
  // rd_kafka_consumer_close() bounded by `budget`; false when it did not finish.
  bool close_consumer_within(std::chrono::milliseconds budget);
  core::KafkaHandle producer_;
  core::KafkaHandle consumer_;
};

// Reads the processor's settings from the shared TOML configuration.
ProcessorSettings settings_from_config(const core::Config& config);

}  // namespace kpay::processor
