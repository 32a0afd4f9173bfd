#include "kpay/core/embedded_kafka.hpp"

#include <librdkafka/rdkafka_mock.h>

#include <stdexcept>

namespace kpay::core {

EmbeddedKafka::EmbeddedKafka(int brokers) : brokers_(brokers) {
  // A producer handle that never produces: it only hosts the mock cluster.
  owner_ = make_kafka(RD_KAFKA_PRODUCER, make_kafka_conf({{"log_level", "3"}}));
  cluster_ = rd_kafka_mock_cluster_new(owner_.get(), brokers);
  if (cluster_ == nullptr) throw std::runtime_error("could not start the embedded Kafka cluster");
  bootstraps_ = rd_kafka_mock_cluster_bootstraps(cluster_);
}

EmbeddedKafka::~EmbeddedKafka() {
  if (cluster_ != nullptr) rd_kafka_mock_cluster_destroy(cluster_);
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
