#include "kpay/core/embedded_kafka.hpp"

#include <dlfcn.h>
#include <librdkafka/rdkafka_mock.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <mutex>
#include <stdexcept>
#include <string_view>
#include <vector>

// librdkafka's mock broker accepts connections without TCP_NODELAY; a real
// Kafka broker sets it. Without it, each small response waits behind Nagle
// for the client's delayed ACK whenever the client has nothing else to send:
// a producer's acknowledgement then takes up to ~45 ms instead of ~0.1 ms,
// and at 50 messages/s the measured round trip was 20 ms (docs/PERFORMANCE.md).
// The mock has no option for it, so this process's accept() is wrapped: a
// connection accepted on one of an embedded cluster's listening ports gets
// TCP_NODELAY. Every other accept() is passed through untouched.
namespace {

std::mutex g_ports_mu;
std::vector<int> g_mock_ports;  // listening ports of live embedded clusters

std::vector<int> ports_of(std::string_view bootstraps) {
  std::vector<int> ports;
  while (!bootstraps.empty()) {
    auto comma = bootstraps.find(',');
    auto entry = bootstraps.substr(0, comma);
    if (auto colon = entry.rfind(':'); colon != std::string_view::npos) {
      int port = 0;
      auto digits = entry.substr(colon + 1);
      if (std::from_chars(digits.data(), digits.data() + digits.size(), port).ec == std::errc{}) {
        ports.push_back(port);
      }
    }
    if (comma == std::string_view::npos) break;
    bootstraps.remove_prefix(comma + 1);
  }
  return ports;
}

bool is_mock_listener(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return false;
  int port = 0;
  if (addr.ss_family == AF_INET) {
    port = ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    port = ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
  } else {
    return false;
  }
  std::lock_guard lock(g_ports_mu);
  return std::find(g_mock_ports.begin(), g_mock_ports.end(), port) != g_mock_ports.end();
}

int after_accept(int listener, int fd) {
  if (fd >= 0 && is_mock_listener(listener)) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return fd;
}

}  // namespace

extern "C" int accept(int fd, sockaddr* addr, socklen_t* len) {
  using Accept = int (*)(int, sockaddr*, socklen_t*);
  static const auto real = reinterpret_cast<Accept>(dlsym(RTLD_NEXT, "accept"));
  return after_accept(fd, real(fd, addr, len));
}

extern "C" int accept4(int fd, sockaddr* addr, socklen_t* len, int flags) {
  using Accept4 = int (*)(int, sockaddr*, socklen_t*, int);
  static const auto real = reinterpret_cast<Accept4>(dlsym(RTLD_NEXT, "accept4"));
  return after_accept(fd, real(fd, addr, len, flags));
}

namespace kpay::core {

EmbeddedKafka::EmbeddedKafka(int brokers) : brokers_(brokers) {
  // A producer handle that never produces: it only hosts the mock cluster.
  owner_ = make_kafka(RD_KAFKA_PRODUCER, make_kafka_conf({{"log_level", "3"}}));
  cluster_ = rd_kafka_mock_cluster_new(owner_.get(), brokers);
  if (cluster_ == nullptr) throw std::runtime_error("could not start the embedded Kafka cluster");
  bootstraps_ = rd_kafka_mock_cluster_bootstraps(cluster_);
  // Clients learn these ports from bootstraps_ only: registered before any
  // connection can reach them.
  std::lock_guard lock(g_ports_mu);
  for (int port : ports_of(bootstraps_)) g_mock_ports.push_back(port);
}

EmbeddedKafka::~EmbeddedKafka() {
  if (cluster_ != nullptr) rd_kafka_mock_cluster_destroy(cluster_);
  std::lock_guard lock(g_ports_mu);
  for (int port : ports_of(bootstraps_)) {
    if (auto it = std::find(g_mock_ports.begin(), g_mock_ports.end(), port);
        it != g_mock_ports.end()) {
      g_mock_ports.erase(it);
    }
  }
}

void EmbeddedKafka::create_topic(const std::string& topic, int partitions) {
  auto err = rd_kafka_mock_topic_create(cluster_, topic.c_str(), partitions,
                                        brokers_ < 3 ? brokers_ : 3);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
    throw std::runtime_error("create topic " + topic + ": " + rd_kafka_err2str(err));
  }
}

void EmbeddedKafka::set_broker_down(int id) { rd_kafka_mock_broker_set_down(cluster_, id); }
void EmbeddedKafka::set_broker_up(int id) { rd_kafka_mock_broker_set_up(cluster_, id); }
void EmbeddedKafka::set_broker_rtt(int id, int rtt_ms) {
  rd_kafka_mock_broker_set_rtt(cluster_, id, rtt_ms);
}
void EmbeddedKafka::set_all_brokers_down() {
  for (int i = 1; i <= brokers_; ++i) set_broker_down(i);
}
void EmbeddedKafka::set_all_brokers_up() {
  for (int i = 1; i <= brokers_; ++i) set_broker_up(i);
}

}  // namespace kpay::core
