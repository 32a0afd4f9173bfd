// klarnactl's Kafka: the cluster and topic names from the daemons' files, and
// clients made with the operator's kafka.properties (SASL/SSL) on top.
#include "klarnactl.hpp"
#include "kpay/receiver/settings.hpp"

namespace kpay::ctl {

KafkaAccess kafka_from(const GlobalOptions& g) {
  auto c = g.load();
  KafkaAccess k;
  k.bootstrap = c.string("kafka.bootstrap_servers", "127.0.0.1:9092");
  k.properties = c.string_table("kafka.properties");
  k.topics = receiver::topics_from(c);
  return k;
}

core::KafkaHandle make_client(const KafkaAccess& k, rd_kafka_type_t type,
                              core::KafkaProperties extra) {
  core::KafkaProperties props = {{"bootstrap.servers", k.bootstrap}, {"log_level", "3"}};
  for (auto& p : extra) props.push_back(std::move(p));
  for (const auto& p : k.properties) props.push_back(p);
  return core::make_kafka(type, core::make_kafka_conf(props));
}

}  // namespace kpay::ctl
