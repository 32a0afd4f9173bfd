// What a consumed message's headers and timestamp say (consumer.cpp calls it
// for every message it takes in).
#include "intake/message_meta.hpp"

#include <optional>
#include <string>
#include <string_view>

#include "kpay/core/traceparent.hpp"
#include "kpay/klarna/kafka_contract.hpp"
#include "kpay/processor/command_auth.hpp"

namespace kpay::processor {

// What the headers say (the last of each name) and the timestamp: the trace
// context of every message (a new trace when it carries no valid one) and a
// command's signature headers.
void read_message_meta(const rd_kafka_message_t* m, InputMessage& in, bool command) {
  namespace header = klarna::contract::header;
  rd_kafka_headers_t* headers = nullptr;
  std::string_view traceparent;
  if (rd_kafka_message_headers(m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    auto get = [&](const char* name) -> std::optional<std::string_view> {
      const void* value = nullptr;
      std::size_t size = 0;
      if (rd_kafka_header_get_last(headers, name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR ||
          value == nullptr) {
        return std::nullopt;
      }
      return std::string_view(static_cast<const char*>(value), size);
    };
    // received-at is not read: the Kafka timestamp (the receiver's produce
    // time) says when the webhook came in, at no cost per message.
    traceparent = get(header::traceparent).value_or("");
    if (command) {
      if (auto v = get(kSenderHeader.data())) in.headers.sender = std::string(*v);
      if (auto v = get(kSignatureHeader.data())) in.headers.signature = std::string(*v);
    }
  }
  in.traceparent = core::traceparent_or_new(traceparent);
  rd_kafka_timestamp_type_t type;
  const auto ts = rd_kafka_message_timestamp(m, &type);
  if (type != RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ts >= 0) in.timestamp_ms = ts;
}

}  // namespace kpay::processor
