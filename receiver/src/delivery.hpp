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
#include <string>
#include <string_view>
#include <vector>

#include "io_types.hpp"
#include "kpay/receiver/publisher.hpp"

namespace kpay::receiver {

class DeliveryMailbox;

// A request waiting for its report, in one allocation: the publisher's
// callback, the message's value (librdkafka reads it in place, no copy) and
// the waiter's wake-up. The timer is the deadline and the wake-up. Shared by
// the waiting coroutine and, until the report, the publisher (`self`), so a
// request answered on its deadline leaves the body alive for librdkafka.
class PendingDelivery final : public DeliveryCallback {
 public:
  PendingDelivery(const Executor& ex, DeliveryMailbox& mailbox, std::string value)
      : timer(ex), body(std::move(value)), mailbox_(mailbox) {}
  void delivered(const DeliveryReport& report) noexcept override;

  Timer timer;
  std::optional<DeliveryReport> report;
  const std::string body;
  std::shared_ptr<PendingDelivery> self;  // set while librdkafka holds the message

 private:
  DeliveryMailbox& mailbox_;
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

// Publishes `message` with `body` as its value and waits, on the calling
// coroutine's context (whose mailbox is `mailbox`), for its delivery report,
// at most `timeout`. The body is kept (not copied) until Kafka's report, even
// when the wait ends first.
Task<Published> publish_and_wait(KafkaPublisher& publisher, DeliveryMailbox& mailbox,
                                 OutgoingMessage message, std::string body,
                                 std::chrono::milliseconds timeout);

// Serves the publisher's delivery reports whenever report_fd() turns readable,
// until cancelled. Run it on one context.
Task<void> serve_delivery_reports(KafkaPublisher& publisher);

}  // namespace kpay::receiver
