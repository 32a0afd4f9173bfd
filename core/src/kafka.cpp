#include "kpay/core/kafka.hpp"

#include "kpay/core/log.hpp"

namespace kpay::core {

namespace {
// librdkafka's own log lines, as our JSON lines (syslog levels 0-7).
void log_to_json(const rd_kafka_t* rk, int level, const char* facility, const char* message) {
  static const Logger log("kafka");
  LogLevel l = level <= 3 ? LogLevel::error : level == 4 ? LogLevel::warn
             : level <= 6 ? LogLevel::info : LogLevel::debug;
  log.log(l, message, {{"client", rd_kafka_name(rk)}, {"facility", facility}});
}
}  // namespace

KafkaConf make_kafka_conf(const KafkaProperties& properties) {
  KafkaConf conf(rd_kafka_conf_new());
  rd_kafka_conf_set_log_cb(conf.get(), &log_to_json);
  char err[512];
  for (const auto& [name, value] : properties) {
    if (rd_kafka_conf_set(conf.get(), name.c_str(), value.c_str(), err, sizeof err) !=
        RD_KAFKA_CONF_OK) {
      throw KafkaConfigError(name, err);
    }
  }
  return conf;
}

KafkaHandle make_kafka(rd_kafka_type_t type, KafkaConf conf) {
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf.get(), err, sizeof err);
  // Refused combinations of properties (e.g. idempotence with
  // max.in.flight > 5) are configuration errors, not transient ones.
  if (rk == nullptr) throw KafkaConfigError("(combination)", err);
  conf.release();  // owned by rk now
  return KafkaHandle(rk);
}

std::string kafka_header(const rd_kafka_message_t* msg, const char* name) {
  rd_kafka_headers_t* hdrs = nullptr;
  if (rd_kafka_message_headers(msg, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR) return {};
  const void* value = nullptr;
  size_t size = 0;
  if (rd_kafka_header_get_last(hdrs, name, &value, &size) != RD_KAFKA_RESP_ERR_NO_ERROR ||
      value == nullptr) {
    return {};
  }
  return std::string(static_cast<const char*>(value), size);
}

}  // namespace kpay::core
