#include "delivery.hpp"

#include <unistd.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <stdexcept>

namespace kpay::receiver {

void PendingDelivery::delivered(const DeliveryReport& r) noexcept {
  mailbox_.deliver(std::move(self), r);  // the publisher's reference, handed on
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
    item.pending->timer.cancel();
  }
  draining_.clear();  // keeps its capacity for the next round
}

Task<Published> publish_and_wait(KafkaPublisher& publisher, DeliveryMailbox& mailbox,
                                 OutgoingMessage message, std::string body,
                                 std::chrono::milliseconds timeout) {
  auto executor = co_await asio::this_coro::executor;
  auto pending = std::make_shared<PendingDelivery>(executor, mailbox, std::move(body));
  pending->timer.expires_after(timeout);
  message.value = pending->body;
  message.value_outlives_report = true;  // `pending->self` keeps it until the report
  pending->self = pending;
  auto err = publisher.publish(message, *pending);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    pending->self.reset();  // not queued: no report will come
    co_return Published{rd_kafka_err2name(err), {}};
  }
  co_await pending->timer.async_wait(kUseTuple);
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
