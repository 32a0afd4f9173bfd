#include "kafka_reader.hpp"

#include <stdexcept>

namespace kpay::test {

KafkaReader::KafkaReader(const std::string& bootstrap, const std::vector<std::string>& topics,
                         int partitions) {
  consumer_ =
      core::make_kafka(RD_KAFKA_CONSUMER, core::make_kafka_conf({{"bootstrap.servers", bootstrap},
                                                                 {"group.id", "kpay-test-reader"},
                                                                 {"enable.auto.commit", "false"},
                                                                 {"socket.timeout.ms", "10000"},
                                                                 {"log_level", "3"}}));
  core::KafkaPartitionList list(
      rd_kafka_topic_partition_list_new(static_cast<int>(topics.size()) * partitions));
  for (const auto& t : topics) {
    for (int p = 0; p < partitions; ++p) {
      rd_kafka_topic_partition_list_add(list.get(), t.c_str(), p)->offset =
          RD_KAFKA_OFFSET_BEGINNING;
    }
  }
  if (rd_kafka_assign(consumer_.get(), list.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    throw std::runtime_error("KafkaReader: assign failed");
  }
}

KafkaReader::~KafkaReader() {
  rd_kafka_consumer_close(consumer_.get());
}

void KafkaReader::poll_once(int timeout_ms) {
  core::KafkaMessage m(rd_kafka_consumer_poll(consumer_.get(), timeout_ms));
  if (!m || m->err != RD_KAFKA_RESP_ERR_NO_ERROR) return;
  ConsumedMessage c;
  c.topic = rd_kafka_topic_name(m->rkt);
  c.partition = m->partition;
  c.offset = m->offset;
  if (m->key != nullptr) c.key.assign(static_cast<const char*>(m->key), m->key_len);
  if (m->payload != nullptr) c.value.assign(static_cast<const char*>(m->payload), m->len);
  c.timestamp_ms = rd_kafka_message_timestamp(m.get(), nullptr);
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(m.get(), &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name;
    const void* value;
    size_t size;
    for (size_t i = 0;
         rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
         ++i) {
      c.headers[name] = value ? std::string(static_cast<const char*>(value), size) : "";
    }
  }
  messages_.push_back(std::move(c));
}

const std::vector<ConsumedMessage>& KafkaReader::read_at_least(std::size_t count,
                                                               std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (messages_.size() < count && std::chrono::steady_clock::now() < end) poll_once(100);
  return messages_;
}

const std::vector<ConsumedMessage>& KafkaReader::drain(std::chrono::milliseconds quiet) {
  auto end = std::chrono::steady_clock::now() + quiet;
  while (std::chrono::steady_clock::now() < end) poll_once(50);
  return messages_;
}

}  // namespace kpay::test
