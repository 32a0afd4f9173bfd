// RAII ownership of librdkafka's C handles, and the conversions every
// component needs. librdkafka's own threads call back into us; callbacks set
// here must not throw.
#pragma once

#include <librdkafka/rdkafka.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace kpay::core {

struct KafkaConfDeleter {
  void operator()(rd_kafka_conf_t* c) const noexcept { rd_kafka_conf_destroy(c); }
};
// Destroying a consumer handle does not leave the group cleanly: consumers call
// rd_kafka_consumer_close() first (see processor/), producers flush first.
struct KafkaDeleter {
  void operator()(rd_kafka_t* k) const noexcept { rd_kafka_destroy(k); }
};
struct KafkaMessageDeleter {
  void operator()(rd_kafka_message_t* m) const noexcept { rd_kafka_message_destroy(m); }
};
struct KafkaPartitionListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const noexcept {
    rd_kafka_topic_partition_list_destroy(l);
  }
};
struct KafkaHeadersDeleter {
  void operator()(rd_kafka_headers_t* h) const noexcept { rd_kafka_headers_destroy(h); }
};

using KafkaConf = std::unique_ptr<rd_kafka_conf_t, KafkaConfDeleter>;
using KafkaHandle = std::unique_ptr<rd_kafka_t, KafkaDeleter>;
using KafkaMessage = std::unique_ptr<rd_kafka_message_t, KafkaMessageDeleter>;
using KafkaPartitionList =
    std::unique_ptr<rd_kafka_topic_partition_list_t, KafkaPartitionListDeleter>;
using KafkaHeaders = std::unique_ptr<rd_kafka_headers_t, KafkaHeadersDeleter>;

using KafkaProperties = std::vector<std::pair<std::string, std::string>>;

// Thrown when librdkafka refuses a property; names the property but not its value
// (values may be SASL passwords).
class KafkaConfigError : public std::runtime_error {
 public:
  KafkaConfigError(std::string property, const std::string& reason)
      : std::runtime_error("kafka property '" + property + "': " + reason),
        property_(std::move(property)) {}
  const std::string& property() const noexcept { return property_; }

 private:
  std::string property_;
};

// Builds a conf from properties applied in order (later ones win).
KafkaConf make_kafka_conf(const KafkaProperties& properties);
// Takes ownership of `conf` (librdkafka does, on success and failure alike here).
KafkaHandle make_kafka(rd_kafka_type_t type, KafkaConf conf);

// Reads a header value from a message; empty when absent.
std::string kafka_header(const rd_kafka_message_t* msg, const char* name);

}  // namespace kpay::core
