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

#include <boost/asio/cancellation_signal.hpp>

#include "io_types.hpp"
#include "kpay/receiver/publisher.hpp"

namespace kpay::receiver {

class DeliveryMailbox;

// What resumes a coroutine suspended in DeliveryMailbox::wait. The concrete
// type, not asio::any_completion_handler: Boost 1.81's move assignment of
// that one recurses without end.
using WaitHandler = asio::async_result<asio::use_awaitable_t<Executor>, void()>::handler_type;

// A request waiting for its report, in one allocation: the publisher's
// callback, the message's value (librdkafka reads it in place, no copy) and
// the waiting coroutine's handler. Shared by the waiting coroutine and, until
// the report, the publisher (`self`), so a request answered on its deadline
// leaves the body alive for librdkafka.
class PendingDelivery final : public DeliveryCallback,
                              public std::enable_shared_from_this<PendingDelivery> {
 public:
  PendingDelivery(DeliveryMailbox& mailbox, std::string value)
      : body(std::move(value)), mailbox_(mailbox) {}
  void delivered(const DeliveryReport& report) noexcept override;

  const std::string body;
  std::shared_ptr<PendingDelivery> self;  // set while librdkafka holds the message
  std::optional<DeliveryReport> report;   // empty after the wait: deadline or cancelled

 private:
  friend class DeliveryMailbox;

  // What resumes a coroutine suspended in DeliveryMailbox::wait. The concrete
  // type, not asio::any_completion_handler: Boost 1.81's move assignment of
  // that one recurses without end.
  using WaitHandler = asio::async_result<asio::use_awaitable_t<Executor>, void()>::handler_type;
  DeliveryMailbox& mailbox_;
  // The mailbox's deadline list and the suspended waiter (its context only).
  std::chrono::steady_clock::time_point deadline_;
  PendingDelivery* prev_ = nullptr;
  PendingDelivery* next_ = nullptr;
  bool waiting_ = false;
  std::optional<WaitHandler> waiter_;
  asio::cancellation_slot slot_;
};

// One per I/O context: the reports bound for it, handed over from the context
// that serves the reports (the same one or another), and its requests' publish
// deadlines. The deadlines are one list ordered by time with one timer for the
// earliest, not a timer per request (each one a timer-queue insert and
// removal under the reactor's lock, and a completion through the scheduler).
class DeliveryMailbox {
 public:
  explicit DeliveryMailbox(Executor ex) : ex_(ex), timer_(ex) {}
  ~DeliveryMailbox();  // waiters left (a stopped context) are destroyed unresumed
  DeliveryMailbox(const DeliveryMailbox&) = delete;
  DeliveryMailbox& operator=(const DeliveryMailbox&) = delete;

  // Any thread: `pending`'s report came.
  void deliver(std::shared_ptr<PendingDelivery> pending, const DeliveryReport& report);

  // On the mailbox's context: completes when `pending`'s report is delivered,
  // at `deadline`, or when the waiter is cancelled, whichever comes first.
  // Only terminal cancellation is let through by the connections; any type
  // ends the wait.
  auto wait(PendingDelivery& pending, std::chrono::steady_clock::time_point deadline) {
    return asio::async_initiate<const asio::use_awaitable_t<Executor>&, void()>(
        [this, &pending, deadline](auto handler) {
          start_waiting(pending, std::move(handler), deadline);
        },
        asio::use_awaitable_t<Executor>{});
  }

 private:
  struct Item {
    std::shared_ptr<PendingDelivery> pending;
    DeliveryReport report;
  };
  void drain();  // on the mailbox's context only
  void start_waiting(PendingDelivery& p, WaitHandler handler,
                     std::chrono::steady_clock::time_point deadline);
  void wake(PendingDelivery& p);
  void link(PendingDelivery& p);
  void unlink(PendingDelivery& p);
  void arm_timer();
  void disarm_if_idle();
  void expire();

  Executor ex_;
  std::mutex mu_;
  std::vector<Item> incoming_;  // guarded by mu_
  // The context's thread only:
  std::vector<Item> draining_;
  PendingDelivery* head_ = nullptr;  // earliest deadline
  PendingDelivery* tail_ = nullptr;
  Timer timer_;
  bool timer_armed_ = false;
  std::chrono::steady_clock::time_point armed_for_;
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
