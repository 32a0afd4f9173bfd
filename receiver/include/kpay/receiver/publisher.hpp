// The receiver's Kafka producer: idempotent, acks=all, one delivery report per
// message.
//
// Guarantee: for every publish() that returns NO_ERROR, the callback's
// delivered() runs exactly once, from serve_reports() (or flush()), after
// Kafka acknowledged the write (err == NO_ERROR) or librdkafka gave up on it
// (message.timeout.ms, fatal error). Only a NO_ERROR report means the event is
// durable in Kafka; the HTTP layer answers 2xx on nothing else.
//
// No thread of ours polls the producer: librdkafka makes report_fd()
// readable once when reports start waiting, and the owner's event loop calls
// serve_reports() then (receiver/src/delivery.cpp), so a produce response's
// whole batch of reports is served in one wake-up of the loop that waits for
// them.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "kpay/core/kafka.hpp"
#include "kpay/core/log.hpp"
#include "kpay/core/metrics.hpp"
#include "kpay/receiver/settings.hpp"

namespace kpay::receiver {

struct DeliveryReport {
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  std::int32_t partition = -1;
  std::int64_t offset = -1;
};

// Told how one publish ended. The publisher never owns or deletes it: the
// caller keeps it alive until delivered() ran (its last use by the publisher).
class DeliveryCallback {
 public:
  virtual void delivered(const DeliveryReport& report) noexcept = 0;

 protected:
  ~DeliveryCallback() = default;
};

struct OutgoingMessage {
  static constexpr std::size_t kMaxHeaders = 12;

  const std::string& topic;
  std::string_view key;    // empty: no key
  std::string_view value;  // copied by librdkafka unless value_outlives_report
  // True: librdkafka reads `value` where it is, until the delivery report
  // (no copy of the body per message); the caller keeps it alive until
  // delivered() ran.
  bool value_outlives_report = false;
  // Names and values are copied by librdkafka. A fixed array: no allocation.
  std::array<std::pair<const char*, std::string_view>, kMaxHeaders> headers{};
  std::size_t header_count = 0;

  void add_header(const char* name, std::string_view value) {
    if (header_count == kMaxHeaders) throw std::logic_error("too many Kafka headers");
    headers[header_count++] = {name, value};
  }
};

class KafkaPublisher {
 public:
  // `required_topics` must exist on the cluster: /readyz reports the first one
  // Kafka does not know (a missing topic would make a whole family 503).
  KafkaPublisher(const KafkaSettings& settings, std::vector<std::string> required_topics,
                 core::Registry& metrics);
  ~KafkaPublisher();  // purges what is left; call flush() first to drain
  KafkaPublisher(const KafkaPublisher&) = delete;
  KafkaPublisher& operator=(const KafkaPublisher&) = delete;

  // On NO_ERROR `callback`'s delivered() runs exactly once, later; the
  // callback (and the value, when not copied) must stay valid until then.
  // Any other return (e.g. __QUEUE_FULL) means nothing was queued and the
  // callback will not be called.
  rd_kafka_resp_err_t publish(const OutgoingMessage& message, DeliveryCallback& callback);

  // Readable (an eventfd) when delivery reports or client errors wait to be
  // served; the reader drains it and calls serve_reports().
  int report_fd() const { return report_fd_; }
  // Runs every waiting delivery report's callback (and the error callback)
  // on the calling thread, without blocking. Call from one thread at a time.
  void serve_reports();

  // Waits up to `timeout` for every queued message's report; returns how many
  // are still outstanding (0 = all delivered or failed and reported).
  int flush(std::chrono::milliseconds timeout);

  // Kafka answered a metadata request recently (checked in the background).
  bool ready() const { return ready_.load(); }
  std::string not_ready_reason() const;
  // librdkafka raised a fatal error: this producer can never deliver again.
  bool fatal() const { return fatal_.load(); }

 private:
  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque);
  static void on_error(rd_kafka_t*, int err, const char* reason, void* opaque);
  void probe_loop();
  void set_not_ready(std::string reason);
  void enable_report_fd();
  void disable_report_fd();

  core::Logger log_{"receiver.kafka"};
  core::Counter& errors_fatal_;
  core::CounterFamily& errors_;
  core::KafkaHandle producer_;
  int report_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::atomic<bool> ready_{false};
  std::atomic<bool> fatal_{false};
  mutable std::mutex reason_mu_;
  // Why the last probe or client error made the producer not ready; set
  // before ready_ turns false, so /readyz never reads a stale or empty one.
  std::string not_ready_reason_ = "kafka not checked yet: the first metadata request is under way";
  const std::vector<std::string> required_topics_;
  std::mutex probe_mu_;
  std::condition_variable probe_cv_;
  std::thread prober_;
};

}  // namespace kpay::receiver
