#include "delivery.hpp"

#include <unistd.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <stdexcept>

namespace kpay::receiver {

void PendingDelivery::delivered(const DeliveryReport& r) noexcept {
  mailbox_.deliver(std::move(self), r);  // the publisher's reference, handed on
}

DeliveryMailbox::~DeliveryMailbox() {
  while (head_ != nullptr) {
    PendingDelivery& p = *head_;
    unlink(p);
    p.waiting_ = false;
    // Destroying the handler may free `p` (the coroutine held it): moved out first.
    WaitHandler handler = std::move(*p.waiter_);
    p.waiter_.reset();
  }
}

void DeliveryMailbox::deliver(std::shared_ptr<PendingDelivery> pending,
                              const DeliveryReport& report) {
  bool was_empty;
  {
    std::lock_guard lock(mu_);
    was_empty = incoming_.empty();
    incoming_.push_back({std::move(pending), report});
  }
  if (was_empty) asio::post(ex_, [this] { drain(); });
}

void DeliveryMailbox::drain() {
  {
    std::lock_guard lock(mu_);
    draining_.swap(incoming_);
  }
  for (auto& item : draining_) {
    item.pending->report = item.report;
    if (item.pending->waiting_) wake(*item.pending);
  }
  draining_.clear();  // keeps its capacity for the next round
  disarm_if_idle();
}

// A timer left set with nothing waiting would keep the context busy (its
// thread could not run out of work at shutdown) until that deadline. Checked
// once per batch of reports, not per request.
void DeliveryMailbox::disarm_if_idle() {
  if (head_ != nullptr || !timer_armed_) return;
  timer_armed_ = false;
  timer_.cancel();
}

void DeliveryMailbox::start_waiting(PendingDelivery& p, WaitHandler handler,
                                    std::chrono::steady_clock::time_point deadline) {
  p.deadline_ = deadline;
  p.slot_ = asio::get_associated_cancellation_slot(handler);
  p.waiter_.emplace(std::move(handler));
  p.waiting_ = true;
  link(p);
  if (p.slot_.is_connected()) {
    // Woken from a posted handler, not from inside the slot's own handler.
    p.slot_.assign([this, keep = p.weak_from_this()](asio::cancellation_type) {
      asio::post(ex_, [this, keep] {
        if (auto q = keep.lock(); q && q->waiting_) wake(*q);
        disarm_if_idle();
      });
    });
  }
}

void DeliveryMailbox::wake(PendingDelivery& p) {
  unlink(p);
  p.waiting_ = false;
  if (p.slot_.is_connected()) p.slot_.clear();
  p.slot_ = {};
  WaitHandler handler = std::move(*p.waiter_);
  p.waiter_.reset();
  std::move(handler)();  // resumes the coroutine here: the context's thread
}

// Deadlines are nearly always in order (one publish timeout for all), so the
// place is found from the tail in one step.
void DeliveryMailbox::link(PendingDelivery& p) {
  PendingDelivery* after = tail_;
  while (after != nullptr && after->deadline_ > p.deadline_) after = after->prev_;
  p.prev_ = after;
  p.next_ = after != nullptr ? after->next_ : head_;
  (p.next_ != nullptr ? p.next_->prev_ : tail_) = &p;
  (after != nullptr ? after->next_ : head_) = &p;
  if (!timer_armed_ || p.deadline_ < armed_for_) arm_timer();
}

void DeliveryMailbox::unlink(PendingDelivery& p) {
  (p.prev_ != nullptr ? p.prev_->next_ : head_) = p.next_;
  (p.next_ != nullptr ? p.next_->prev_ : tail_) = p.prev_;
  p.prev_ = p.next_ = nullptr;
}

// The timer stays set for a deadline whose request was answered meanwhile:
// it then finds nothing due and is set for the new earliest.
void DeliveryMailbox::arm_timer() {
  timer_armed_ = true;
  armed_for_ = head_->deadline_;
  timer_.expires_at(armed_for_);  // cancels a wait for a later deadline
  timer_.async_wait([this](boost::system::error_code ec) {
    if (ec == asio::error::operation_aborted) return;  // re-set, or the mailbox is gone
    timer_armed_ = false;
    expire();
  });
}

void DeliveryMailbox::expire() {
  const auto now = std::chrono::steady_clock::now();
  while (head_ != nullptr && head_->deadline_ <= now) {
    // Hold it: the resumed coroutine may drop its reference.
    auto keep = head_->shared_from_this();
    wake(*keep);  // no report: the deadline passed
  }
  if (head_ != nullptr && !timer_armed_) arm_timer();
}

Task<Published> publish_and_wait(KafkaPublisher& publisher, DeliveryMailbox& mailbox,
                                 OutgoingMessage message, std::string body,
                                 std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto pending = std::make_shared<PendingDelivery>(mailbox, std::move(body));
  message.value = pending->body;
  message.value_outlives_report = true;  // `pending->self` keeps it until the report
  pending->self = pending;
  auto err = publisher.publish(message, *pending);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    pending->self.reset();  // not queued: no report will come
    co_return Published{rd_kafka_err2name(err), {}};
  }
  co_await mailbox.wait(*pending, deadline);
  if (!pending->report) co_return Published{"publish_timeout", {}};
  const DeliveryReport& report = *pending->report;
  if (report.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    co_return Published{rd_kafka_err2name(report.err), report};
  }
  co_return Published{{}, report};
}

Task<void> serve_delivery_reports(KafkaPublisher& publisher) {
  auto executor = co_await asio::this_coro::executor;
  // A descriptor of our own: closing it must not close the publisher's.
  const int fd = ::dup(publisher.report_fd());
  if (fd < 0) throw std::runtime_error("dup of the Kafka report descriptor failed");
  asio::posix::basic_stream_descriptor<Executor> reports(executor, fd);
  for (;;) {
    auto [ec] = co_await reports.async_wait(asio::posix::descriptor_base::wait_read, kUseTuple);
    if (ec) co_return;  // cancelled: shutting down
    publisher.serve_reports();
  }
}

}  // namespace kpay::receiver
