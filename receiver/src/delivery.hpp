// Publish and wait: a request's event goes to Kafka and its coroutine sleeps
// until Kafka's delivery report (or the publish timeout) wakes it.
//
// The hand-offs are batched. librdkafka signals waiting reports through the
// publisher's report_fd(); serve_delivery_reports() reads it on one I/O
// context and serves every report that has arrived in one pass (a produce
// response carries a batch). Each report goes to the mailbox of the context
// its request runs on; a mailbox posts to its context only when it was empty,
// so a batch costs each context one wake-up, not one per request.
// Internal to the receiver; not installed.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <vector>

#include "io_types.hpp"
#include "kpay/receiver/publisher.hpp"

namespace kpay::receiver {

// A request waiting for its report. The timer is the deadline and the wake-up.
struct PendingDelivery {
  explicit PendingDelivery(const Executor& ex) : timer(ex) {}
  Timer timer;
  std::optional<DeliveryReport> report;
};

// Reports bound for one I/O context, handed over from the context that serves
// the reports (the same one or another).
class DeliveryMailbox {
 public:
  explicit DeliveryMailbox(Executor ex) : ex_(ex) {}
  void deliver(std::shared_ptr<PendingDelivery> pending, const DeliveryReport& report);

 private:
  struct Item {
    std::shared_ptr<PendingDelivery> pending;
    DeliveryReport report;
  };
  void drain();  // on the mailbox's context only

  Executor ex_;
  std::mutex mu_;
  std::vector<Item> incoming_;  // guarded by mu_
  std::vector<Item> draining_;  // the context's thread only
};

// How a publish ended: `failure` is empty when Kafka acknowledged the write,
// else a librdkafka error name or "publish_timeout".
struct Published {
  std::string_view failure;
  DeliveryReport report;
};

// Publishes `message` and waits, on the calling coroutine's context (whose
// mailbox is `mailbox`), for its delivery report, at most `timeout`.
Task<Published> publish_and_wait(KafkaPublisher& publisher, DeliveryMailbox& mailbox,
                                 const OutgoingMessage& message, std::chrono::milliseconds timeout);

// Serves the publisher's delivery reports whenever report_fd() turns readable,
// until cancelled. Run it on one context.
Task<void> serve_delivery_reports(KafkaPublisher& publisher);

}  // namespace kpay::receiver
