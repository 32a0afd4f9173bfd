// An in-process Kafka cluster: librdkafka's mock cluster (rdkafka_mock.h),
// which speaks the real Kafka protocol on loopback ports.
//
// NOT DURABLE: everything lives in this process's memory and is gone when it
// exits; it does not implement transactions faithfully either. It exists for
// `make run`, tests and benchmarks only. Production points `bootstrap.servers`
// at a real cluster.
#pragma once

#include <string>
#include <vector>

#include "kpay/core/kafka.hpp"

struct rd_kafka_mock_cluster_s;

namespace kpay::core {

class EmbeddedKafka {
 public:
  explicit EmbeddedKafka(int brokers = 1);
  ~EmbeddedKafka();
  EmbeddedKafka(const EmbeddedKafka&) = delete;
  EmbeddedKafka& operator=(const EmbeddedKafka&) = delete;

  // "127.0.0.1:port,…" for bootstrap.servers.
  const std::string& bootstrap_servers() const { return bootstraps_; }
  void create_topic(const std::string& topic, int partitions);
  // Brokers are numbered from 1. A down broker closes its connections and
  // refuses new ones until set up again.
  void set_broker_down(int broker_id);
  void set_broker_up(int broker_id);
  void set_all_brokers_down();
  void set_all_brokers_up();
  // Adds `rtt_ms` of latency to every response from the broker (0 removes it).
  void set_broker_rtt(int broker_id, int rtt_ms);
  int brokers() const { return brokers_; }

 private:
  KafkaHandle owner_;  // the mock cluster runs on this handle's threads
  ::rd_kafka_mock_cluster_s* cluster_ = nullptr;
  std::string bootstraps_;
  int brokers_;
};

}  // namespace kpay::core
