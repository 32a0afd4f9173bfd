#include "intake/prefetch_wake.hpp"

#include <cstdlib>
#include <memory>

namespace kpay::processor {

namespace {

// Messages between two reads of the queue's length (a mutex in librdkafka).
constexpr unsigned kCheckEvery = 32;

// One of the consumer's effective integer settings (defaults applied).
std::int64_t consumer_setting(rd_kafka_t* consumer, const char* name, std::int64_t fallback) {
  char value[64];
  std::size_t size = sizeof value;
  if (rd_kafka_conf_get(rd_kafka_conf(consumer), name, value, &size) != RD_KAFKA_CONF_OK) {
    return fallback;
  }
  const auto v = std::strtoll(value, nullptr, 10);
  return v > 0 ? v : fallback;
}

using PartitionList = std::unique_ptr<rd_kafka_topic_partition_list_t,
                                      decltype(&rd_kafka_topic_partition_list_destroy)>;

}  // namespace

PrefetchWakeMetrics::PrefetchWakeMetrics(core::Registry& registry)
    : PrefetchWakeMetrics(registry.counter(
          "kpay_processor_prefetch_wakes_total",
          "Times the consumer queue ran low after reaching librdkafka's prefetch bound and the "
          "partitions' leaders were woken to fetch again (a ListOffsets request to each), by "
          "outcome: sent, failed.",
          {"outcome"})) {}

PrefetchWakeMetrics::PrefetchWakeMetrics(core::CounterFamily& wakes)
    : sent(wakes.with({"sent"})), failed(wakes.with({"failed"})) {}

PrefetchWake::PrefetchWake(rd_kafka_t* consumer, std::chrono::milliseconds min_interval,
                           PrefetchWakeMetrics& metrics)
    : consumer_(consumer),
      queue_(rd_kafka_queue_get_consumer(consumer)),
      min_interval_(min_interval),
      metrics_(metrics),
      bound_bytes_(consumer_setting(consumer, "queued.max.messages.kbytes", 65536) * 1024),
      bound_messages_(consumer_setting(consumer, "queued.min.messages", 100000)),
      thread_([this] { serve(); }) {}

PrefetchWake::~PrefetchWake() {
  stop();
}

void PrefetchWake::request_stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
}

void PrefetchWake::stop() {
  request_stop();
  if (thread_.joinable()) thread_.join();
  if (queue_ != nullptr) {
    rd_kafka_queue_destroy(queue_);
    queue_ = nullptr;
  }
}

void PrefetchWake::on_message(std::size_t payload_bytes) {
  const auto bytes = static_cast<double>(payload_bytes);
  mean_payload_ = mean_payload_ == 0 ? bytes : mean_payload_ + (bytes - mean_payload_) / 16;
  if (++since_check_ >= kCheckEvery) check();
}

void PrefetchWake::check() {
  since_check_ = 0;
  if (queue_ == nullptr) return;
  // librdkafka counts a message's payload against queued.max.messages.kbytes.
  const auto messages = static_cast<std::int64_t>(rd_kafka_queue_length(queue_));
  const auto bytes = static_cast<std::int64_t>(static_cast<double>(messages) * mean_payload_);
  // Near the bound (3/4: the estimate is an estimate): the broker threads
  // have most likely taken the partitions off their fetch lists.
  if (bytes * 4 >= bound_bytes_ * 3 || messages * 4 >= bound_messages_ * 3) {
    armed_ = true;
  } else if (armed_ && bytes * 2 < bound_bytes_ && messages * 2 < bound_messages_) {
    armed_ = false;
    request();
  }
}

void PrefetchWake::request() {
  {
    std::lock_guard lock(mu_);
    requested_ = true;
  }
  cv_.notify_one();
}

void PrefetchWake::serve() {
  auto next_allowed = std::chrono::steady_clock::now();
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return requested_ || stopping_; });
    // At most one wake per min_interval; requests meanwhile are merged.
    cv_.wait_until(lock, next_allowed, [&] { return stopping_; });
    if (stopping_) return;
    requested_ = false;
    lock.unlock();
    wake_brokers();
    next_allowed = std::chrono::steady_clock::now() + min_interval_;
    lock.lock();
  }
}

void PrefetchWake::wake_brokers() {
  rd_kafka_topic_partition_list_t* assigned = nullptr;
  if (rd_kafka_assignment(consumer_, &assigned) != RD_KAFKA_RESP_ERR_NO_ERROR ||
      assigned == nullptr) {
    return;  // no group (yet): nothing assigned to fetch
  }
  PartitionList partitions(assigned, &rd_kafka_topic_partition_list_destroy);
  if (partitions->cnt == 0) return;  // nothing to fetch: nothing to wake
  // The "timestamp" of each partition: latest (-1), the cheapest answer.
  for (int i = 0; i < partitions->cnt; ++i) partitions->elems[i].offset = RD_KAFKA_OFFSET_END;
  const auto err = rd_kafka_offsets_for_times(consumer_, partitions.get(),
                                              static_cast<int>(kAnswerWait.count()));
  // _TIMED_OUT comes only after the requests were handed to every leader's
  // broker thread, which is the wake; an answer may wait behind a fetch the
  // broker holds open (responses come in request order), and that broker
  // needed no wake. It is then discarded by librdkafka.
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR__TIMED_OUT) {
    metrics_.sent.inc();
    return;
  }
  // No leader known (metadata being refreshed, all brokers down): harmless,
  // the brokers fetch again within their own second. The first failure and
  // every 100th after it are logged.
  if (metrics_.failed.value() % 100 == 0) {
    log_.info("prefetch wake not sent; the brokers fetch again on their own",
              {{"error", rd_kafka_err2name(err)}, {"failed_so_far", metrics_.failed.value()}});
  }
  metrics_.failed.inc();
}

}  // namespace kpay::processor
