// Reads what landed on Kafka topics, for assertions: a consumer with manual
// partition assignment from the beginning (no consumer group, so no ~3 s
// group join on the mock cluster).
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "kpay/core/kafka.hpp"

namespace kpay::test {

struct ConsumedMessage {
  std::string topic;
  int partition = -1;
  long long offset = -1;
  std::string key;
  std::string value;
  std::map<std::string, std::string> headers;
  long long timestamp_ms = -1;  // the message's Kafka timestamp; -1: none
};

class KafkaReader {
 public:
  // Assigns partitions [0, partitions) of every topic, from the beginning.
  KafkaReader(const std::string& bootstrap, const std::vector<std::string>& topics, int partitions);
  ~KafkaReader();
  // Polls until `count` messages in total have been read since construction
  // (or `timeout` passed); returns everything read so far.
  const std::vector<ConsumedMessage>& read_at_least(std::size_t count,
                                                    std::chrono::milliseconds timeout);
  // Polls for `quiet` to let stragglers arrive; returns everything read so far.
  const std::vector<ConsumedMessage>& drain(std::chrono::milliseconds quiet);
  const std::vector<ConsumedMessage>& messages() const { return messages_; }

 private:
  void poll_once(int timeout_ms);
  core::KafkaHandle consumer_;
  std::vector<ConsumedMessage> messages_;
};

}  // namespace kpay::test
