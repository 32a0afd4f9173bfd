#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <filesystem>
#include <thread>

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

namespace {

// The server side of a loopback connection to `port` (not the listener).
int accepted_socket_on(int port) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    int fd = 0;
    const auto name = entry.path().filename().string();
    if (std::from_chars(name.data(), name.data() + name.size(), fd).ec != std::errc{}) continue;
    sockaddr_in local{};
    socklen_t len = sizeof local;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) continue;
    if (local.sin_family != AF_INET || ntohs(local.sin_port) != port) continue;
    int listening = 0;
    socklen_t optlen = sizeof listening;
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &optlen) == 0 && listening == 0) {
      return fd;
    }
  }
  return -1;
}

}  // namespace

// A real broker answers with Nagle off; without it a producer's
// acknowledgement waits for the client's delayed ACK (~40 ms) whenever the
// client has nothing else to send.
TEST(EmbeddedKafka, AcceptsConnectionsWithNagleOff) {
  EmbeddedKafka kafka(1);
  const std::string bootstrap = kafka.bootstrap_servers();
  const int port = std::stoi(bootstrap.substr(bootstrap.rfind(':') + 1));

  int client = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(client, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);

  // The mock thread accepts asynchronously: wait (bounded) until the
  // accepted socket exists and carries the option.
  auto nodelay_of = [](int fd) {
    int v = 0;
    socklen_t len = sizeof v;
    return getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &v, &len) == 0 ? v : -1;
  };
  int server_side = -1;
  int nodelay = -1;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    server_side = accepted_socket_on(port);
    if (server_side >= 0 && (nodelay = nodelay_of(server_side)) > 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_GE(server_side, 0) << "the mock broker did not accept the connection";
  EXPECT_GT(nodelay, 0);

  // Our own (client) sockets are left as they were: only the mock's accepts change.
  EXPECT_EQ(nodelay_of(client), 0);
  close(client);
}
