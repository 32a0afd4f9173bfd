// Leaving Kafka at a stop, within one budget however Kafka behaves: the
// publications' acknowledgements, the group, then the handles (abandoned to
// the process exit when librdkafka does not return in time).
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>

#include "kpay/processor/consumer.hpp"

namespace kpay::processor {

namespace {

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

}  // namespace

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
