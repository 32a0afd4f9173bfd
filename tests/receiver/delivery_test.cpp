// The per-context delivery mailbox (receiver/src/delivery.hpp): a waiting
// request is woken by its report from another thread, by its deadline (one
// timer per context for a time-ordered list), or by cancellation, and the
// body stays alive for librdkafka until the report whatever ended the wait.
#include "delivery.hpp"

#include <gtest/gtest.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

namespace kpay::receiver {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// A record as publish_and_wait makes it: `self` is the publisher's reference.
std::shared_ptr<PendingDelivery> published(DeliveryMailbox& mailbox, std::string body) {
  auto p = std::make_shared<PendingDelivery>(mailbox, std::move(body));
  p->self = p;
  return p;
}

TEST(DeliveryMailbox, AReportFromAnotherThreadWakesItsWaiterWithThatReport) {
  asio::io_context ioc{1};
  DeliveryMailbox mailbox(ioc.get_executor());
  std::optional<DeliveryReport> seen;
  std::thread reporter;
  asio::co_spawn(
      ioc.get_executor(),
      [&]() -> Task<void> {
        auto p = published(mailbox, "{\"event\":1}");
        // As librdkafka's report would: on a thread of its own.
        reporter = std::thread([p] { p->delivered({RD_KAFKA_RESP_ERR_NO_ERROR, 2, 42}); });
        co_await mailbox.wait(*p, Clock::now() + 30s);
        seen = p->report;
      },
      asio::detached);
  const auto started = Clock::now();
  ioc.run();
  reporter.join();
  ASSERT_TRUE(seen.has_value()) << "woken without the report";
  EXPECT_EQ(seen->partition, 2);
  EXPECT_EQ(seen->offset, 42);
  EXPECT_LT(Clock::now() - started, 20s) << "woken by the deadline, not the report";
}

TEST(DeliveryMailbox, DeadlinesEndWaitsInTheirOrderAndTheBodyLivesUntilTheReport) {
  asio::io_context ioc{1};
  DeliveryMailbox mailbox(ioc.get_executor());
  std::vector<int> ended;  // the deadlines' ms, in the order the waits ended
  std::vector<std::shared_ptr<PendingDelivery>> records;
  const auto start = Clock::now();
  for (int ms : {60, 20, 100}) {  // out of order: the list keeps them sorted
    asio::co_spawn(
        ioc.get_executor(),
        [&, ms]() -> Task<void> {
          auto p = published(mailbox, std::string(2000, 'x'));
          records.push_back(p);
          co_await mailbox.wait(*p, start + std::chrono::milliseconds(ms));
          EXPECT_FALSE(p->report.has_value());
          EXPECT_GE(Clock::now() - start, std::chrono::milliseconds(ms)) << "ended early";
          ended.push_back(ms);
        },
        asio::detached);
  }
  ioc.run();
  EXPECT_EQ(ended, (std::vector<int>{20, 60, 100}));
  // The waits are over; librdkafka may still read the bodies until their
  // reports, which the publisher's reference keeps alive.
  for (auto& p : records) {
    std::weak_ptr<PendingDelivery> alive = p;
    p.reset();
    ASSERT_FALSE(alive.expired()) << "body freed before Kafka's report";
    alive.lock()->delivered({RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, -1, -1});
  }
  ioc.restart();
  ioc.run();  // the late reports find no waiter and free the records
  EXPECT_TRUE(records.size() == 3);
}

TEST(DeliveryMailbox, CancellationEndsAWaitWithoutAReport) {
  asio::io_context ioc{1};
  DeliveryMailbox mailbox(ioc.get_executor());
  asio::cancellation_signal cancel;
  bool ended = false;
  std::shared_ptr<PendingDelivery> record;
  asio::co_spawn(
      ioc.get_executor(),
      [&]() -> Task<void> {
        record = published(mailbox, "{}");
        co_await mailbox.wait(*record, Clock::now() + 30s);
        EXPECT_FALSE(record->report.has_value());
        ended = true;
      },
      asio::bind_cancellation_slot(cancel.slot(), asio::detached));
  ioc.poll();  // the coroutine is now waiting
  ASSERT_FALSE(ended);
  cancel.emit(asio::cancellation_type::terminal);
  const auto started = Clock::now();
  ioc.run_for(10s);
  EXPECT_TRUE(ended) << "the wait ignored cancellation";
  EXPECT_LT(Clock::now() - started, 5s);
  record->delivered({RD_KAFKA_RESP_ERR_NO_ERROR, 0, 1});  // late: no waiter, no crash
  ioc.restart();
  ioc.run();
}

TEST(DeliveryMailbox, AMailboxDestroyedWithWaitersLeftEndsThemWithoutResuming) {
  asio::io_context ioc{1};
  auto mailbox = std::make_unique<DeliveryMailbox>(ioc.get_executor());
  bool resumed = false;
  std::weak_ptr<PendingDelivery> record;
  asio::co_spawn(
      ioc.get_executor(),
      [&]() -> Task<void> {
        auto p = std::make_shared<PendingDelivery>(*mailbox, "{}");  // no publisher reference
        record = p;
        co_await mailbox->wait(*p, Clock::now() + 30s);
        resumed = true;
      },
      asio::detached);
  ioc.poll();
  ASSERT_FALSE(record.expired());
  mailbox.reset();  // as a stopped I/O context's mailbox at the receiver's exit
  ioc.poll();       // the coroutine's frame is destroyed on its executor
  EXPECT_FALSE(resumed);
  EXPECT_TRUE(record.expired()) << "the waiting coroutine (and its record) leaked";
}

}  // namespace
}  // namespace kpay::receiver
