// The record a publish waits on (receiver/src/delivery.hpp) holds the body
// librdkafka reads in place (no copy): it must outlive the waiting request
// (answered 503 on its deadline) until Kafka's delivery report, and go then.
#include "delivery.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace kpay::receiver {
namespace {

TEST(PendingDelivery, TheBodyLivesUntilKafkasReportNotJustUntilTheWaitEnds) {
  asio::io_context ioc{1};
  DeliveryMailbox mailbox(ioc.get_executor());
  auto waiter =
      std::make_shared<PendingDelivery>(ioc.get_executor(), mailbox, std::string(4096, 'b'));
  waiter->self = waiter;  // the publisher's reference, as publish_and_wait sets it
  const char* bytes = waiter->body.data();
  std::weak_ptr<PendingDelivery> record = waiter;
  waiter.reset();  // the request was answered on its deadline
  ASSERT_FALSE(record.expired()) << "body freed while librdkafka may still read it";
  EXPECT_EQ(record.lock()->body.data(), bytes);
  record.lock()->delivered({RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, -1, -1});  // the late report
  ioc.run();  // the mailbox hands it to the context, which drops the last reference
  EXPECT_TRUE(record.expired()) << "the record outlived its report";
}

}  // namespace
}  // namespace kpay::receiver
