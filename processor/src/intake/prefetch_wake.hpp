// Wakes librdkafka's broker threads when the consumer queue has drained, so
// that they fetch again at once instead of up to a second later.
//
// Why (docs/performance/processor.md, "The prefetch wake"): librdkafka 2.0.2 (Debian
// 12's) takes every partition a broker thread leads off that thread's fetch
// list once the consumer queue holds `queued.max.messages.kbytes` (or
// `queued.min.messages`), with no back-off time (rd_kafka_toppar_fetch_decide
// in rdkafka_fetcher.c). The thread decides again only when it next goes
// round its serve loop: when an op arrives on its queue, on I/O on its
// socket, or after rd_kafka_max_block_ms (1 s). The consumer drains the queue
// in well under that and then waits. (2.2.0 added `fetch.queue.backoff.ms`.)
//
// The wake: a ListOffsets request ("latest", rd_kafka_offsets_for_times) for
// the assigned partitions, which librdkafka sends as one request to each of
// their leaders, i.e. an op on the queue of exactly the broker threads that
// fetch them. The answer is discarded. It changes nothing the consumer
// relies on: no op version (as pause/resume or seek would, which purge the
// prefetched messages), no position, no fetch state. (A partition fetched
// from a follower, client.rack, would not be woken: the request goes to its
// leader. The processor fetches from leaders.)
//
// When: the consumer thread reports each message (and each empty poll);
// every few messages it reads the consumer queue's length and estimates its
// bytes from the recent payload sizes. Once the queue was near the bound (the
// broker threads have likely stopped fetching), the first time it is down to
// half the bound a wake is requested. A thread of its own sends it (the call
// waits up to kAnswerWait for the answers), at most once per `min_interval`;
// requests made meanwhile are merged.
#pragma once

#include <librdkafka/rdkafka.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <thread>

#include "kpay/core/log.hpp"
#include "kpay/core/metrics.hpp"

namespace kpay::processor {

// kpay_processor_prefetch_wakes_total{outcome}: registered once per Processor.
struct PrefetchWakeMetrics {
  explicit PrefetchWakeMetrics(core::Registry& registry);
  core::Counter& sent;
  core::Counter& failed;

 private:
  explicit PrefetchWakeMetrics(core::CounterFamily& wakes);
};

class PrefetchWake {
 public:
  // Reads the consumer's effective bounds from its configuration. The
  // thread starts at once; `consumer` must outlive this object.
  PrefetchWake(rd_kafka_t* consumer, std::chrono::milliseconds min_interval,
               PrefetchWakeMetrics& metrics);
  ~PrefetchWake();  // stop()
  PrefetchWake(const PrefetchWake&) = delete;
  PrefetchWake& operator=(const PrefetchWake&) = delete;

  // Consumer thread only.
  void on_message(std::size_t payload_bytes);
  void on_empty_poll() { check(); }

  // Asks the thread to end without waiting for it: a wake in progress
  // finishes meanwhile (the stop's final commit runs in parallel).
  void request_stop();
  // Waits for a wake in progress (at most kAnswerWait once sent) and ends
  // the thread. Before the consumer is closed.
  void stop();

  // How long a wake waits for the leaders' answers (they only confirm it).
  static constexpr std::chrono::milliseconds kAnswerWait{20};

 private:
  void check();
  void request();
  void serve();
  void wake_brokers();

  rd_kafka_t* consumer_;
  rd_kafka_queue_t* queue_;  // the consumer queue (a reference of ours)
  std::chrono::milliseconds min_interval_;
  PrefetchWakeMetrics& metrics_;
  core::Logger log_{"processor"};

  // Consumer thread's state.
  std::int64_t bound_bytes_;
  std::int64_t bound_messages_;
  double mean_payload_ = 0;
  unsigned since_check_ = 0;
  bool armed_ = false;

  std::mutex mu_;
  std::condition_variable cv_;
  bool requested_ = false;
  bool stopping_ = false;
  std::thread thread_;  // last: started when the rest is set
};

}  // namespace kpay::processor
