#include <gtest/gtest.h>

#include <atomic>

#include "http_client.hpp"
#include "kpay/core/admin_server.hpp"
#include "kpay/core/embedded_kafka.hpp"
#include "kpay/core/kafka.hpp"

using namespace kpay::core;
using kpay::test::http_request;

TEST(AdminServer, ServesMetricsHealthAndReadiness) {
  Registry r;
  r.counter("demo_total", "Demo.").with({}).inc(5);
  std::atomic<bool> ready{false};
  AdminServer admin(r, [&] { return Readiness{ready.load(), ready ? "" : "kafka unreachable"}; });
  auto port = admin.start("127.0.0.1", 0);
  ASSERT_NE(port, 0);

  auto metrics = http_request(port, "GET", "/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_NE(metrics->body.find("demo_total 5"), std::string::npos);
  EXPECT_NE(metrics->header("content-type").find("text/plain"), std::string::npos);

  EXPECT_EQ(http_request(port, "GET", "/healthz")->status, 200);
  auto not_ready = http_request(port, "GET", "/readyz");
  EXPECT_EQ(not_ready->status, 503);
  EXPECT_NE(not_ready->body.find("kafka unreachable"), std::string::npos);
  ready = true;
  EXPECT_EQ(http_request(port, "GET", "/readyz")->status, 200);
  EXPECT_EQ(http_request(port, "GET", "/nope")->status, 404);
  EXPECT_EQ(http_request(port, "POST", "/metrics", "x")->status, 405);
}

TEST(Kafka, BadPropertyNamesTheProperty) {
  try {
    make_kafka_conf({{"no.such.property", "1"}});
    FAIL();
  } catch (const KafkaConfigError& e) {
    EXPECT_EQ(e.property(), "no.such.property");
  }
}

TEST(EmbeddedKafka, ProducesAndConsumesOverLoopback) {
  EmbeddedKafka kafka(1);
  EXPECT_EQ(kafka.bootstrap_servers().rfind("127.0.0.1:", 0), 0u) << kafka.bootstrap_servers();
  kafka.create_topic("core-test", 2);

  auto producer = make_kafka(RD_KAFKA_PRODUCER,
                             make_kafka_conf({{"bootstrap.servers", kafka.bootstrap_servers()},
                                              {"enable.idempotence", "true"},
                                              {"acks", "all"}}));
  auto err = rd_kafka_producev(producer.get(), RD_KAFKA_V_TOPIC("core-test"),
                               RD_KAFKA_V_KEY("k", 1), RD_KAFKA_V_VALUE(const_cast<char*>("hello"), 5),
                               RD_KAFKA_V_HEADER("h", "v", 1), RD_KAFKA_V_END);
  ASSERT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR);
  ASSERT_EQ(rd_kafka_flush(producer.get(), 10000), RD_KAFKA_RESP_ERR_NO_ERROR);

  auto consumer = make_kafka(RD_KAFKA_CONSUMER,
                             make_kafka_conf({{"bootstrap.servers", kafka.bootstrap_servers()},
                                              {"group.id", "core-test"},
                                              {"auto.offset.reset", "earliest"}}));
  KafkaPartitionList topics(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(topics.get(), "core-test", RD_KAFKA_PARTITION_UA);
  ASSERT_EQ(rd_kafka_subscribe(consumer.get(), topics.get()), RD_KAFKA_RESP_ERR_NO_ERROR);
  std::string got;
  std::string header;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (got.empty() && std::chrono::steady_clock::now() < deadline) {
    KafkaMessage m(rd_kafka_consumer_poll(consumer.get(), 200));
    if (m && m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      got.assign(static_cast<const char*>(m->payload), m->len);
      header = kafka_header(m.get(), "h");
    }
  }
  rd_kafka_consumer_close(consumer.get());
  EXPECT_EQ(got, "hello");
  EXPECT_EQ(header, "v");
}
