#include "kpay/receiver/settings.hpp"

#include <cctype>

#include "kpay/core/log.hpp"
#include "kpay/storage/key_store.hpp"

namespace kpay::receiver {

using namespace std::chrono_literals;
using core::ConfigError;

klarna::Topics topics_from(const core::Config& c) {
  klarna::Topics t;
  t.payment_requests = c.string("topics.payment_requests", t.payment_requests);
  t.payment_transactions = c.string("topics.payment_transactions", t.payment_transactions);
  t.disputes = c.string("topics.disputes", t.disputes);
  t.settlements = c.string("topics.settlements", t.settlements);
  t.accounts = c.string("topics.accounts", t.accounts);
  t.unrouted = c.string("topics.unrouted", t.unrouted);
  t.dead_letter = c.string("topics.dead_letter", t.dead_letter);
  t.apply_prefix(c.string("kafka.topic_prefix", ""));
  for (const auto& [key, name] : std::initializer_list<std::pair<const char*, const std::string*>>{
           {"topics.payment_requests", &t.payment_requests},
           {"topics.payment_transactions", &t.payment_transactions},
           {"topics.disputes", &t.disputes},
           {"topics.settlements", &t.settlements},
           {"topics.accounts", &t.accounts},
           {"topics.unrouted", &t.unrouted},
           {"topics.dead_letter", &t.dead_letter}}) {
    bool legal = !name->empty() && name->size() <= 249 && *name != "." && *name != "..";
    for (char ch : *name) {
      legal &= std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '_' || ch == '-';
    }
    if (!legal) {
      throw ConfigError(key, "'" + *name + "' (with kafka.topic_prefix) is not a legal Kafka topic "
                             "name: 1-249 of [A-Za-z0-9._-]");
    }
  }
  return t;
}

Settings Settings::from_config(const core::Config& c) {
  Settings s;
  auto& l = s.listener;
  l.address = c.string("receiver.listen_address", l.address);
  l.port = static_cast<std::uint16_t>(c.integer("receiver.port", l.port, 0, 65535));
  l.path = c.string("receiver.path", l.path);
  if (l.path.empty() || l.path.front() != '/') {
    throw ConfigError("receiver.path", "must start with '/'");
  }
  l.tls = c.boolean("receiver.tls", l.tls);
  l.tls_certificate = c.string("receiver.tls_certificate", "");
  l.tls_private_key = c.string("receiver.tls_private_key", "");
  if (l.tls && l.tls_certificate.empty()) {
    throw ConfigError("receiver.tls_certificate",
                      "required when receiver.tls = true (set receiver.tls = false only behind a "
                      "TLS-terminating proxy)");
  }
  if (l.tls && l.tls_private_key.empty()) {
    throw ConfigError("receiver.tls_private_key", "required when receiver.tls = true");
  }
  l.max_header_bytes = static_cast<std::size_t>(
      c.integer("receiver.max_header_bytes", static_cast<std::int64_t>(l.max_header_bytes), 1024,
                1024 * 1024));
  l.max_body_bytes = static_cast<std::size_t>(c.integer(
      "receiver.max_body_bytes", static_cast<std::int64_t>(l.max_body_bytes), 1, 64 * 1024 * 1024));
  l.max_body_bytes_in_flight = static_cast<std::size_t>(
      c.integer("receiver.max_body_bytes_in_flight",
                static_cast<std::int64_t>(l.max_body_bytes_in_flight),
                static_cast<std::int64_t>(l.max_body_bytes), std::int64_t{1} << 40));
  l.read_timeout = c.millis("receiver.read_timeout_ms", l.read_timeout, 10ms, 600s);
  l.idle_timeout = c.millis("receiver.idle_timeout_ms", l.idle_timeout, 10ms, 3600s);
  l.max_connections = static_cast<std::size_t>(c.integer(
      "receiver.max_connections", static_cast<std::int64_t>(l.max_connections), 1, 1'000'000));
  l.io_threads = static_cast<int>(c.integer("receiver.io_threads", 0, 0, 256));
  l.port_file = c.string("receiver.port_file", "");

  auto& k = s.kafka;
  k.bootstrap_servers = c.string("kafka.bootstrap_servers", k.bootstrap_servers);
  k.topic_prefix = c.string("kafka.topic_prefix", "");
  k.publish_timeout = c.millis("kafka.publish_timeout_ms", k.publish_timeout, 100ms, 300s);
  k.retry_after = std::chrono::seconds(c.integer("kafka.retry_after_s", 10, 1, 3600));
  k.properties = c.string_table("kafka.properties");
  // What makes a 2xx mean "durable" is not configurable.
  for (const auto& [name, value] : k.properties) {
    for (auto fixed : {"acks", "request.required.acks", "enable.idempotence", "message.timeout.ms",
                       "delivery.timeout.ms", "delivery.report.only.error", "dr_msg_cb",
                       "dr_cb"}) {
      if (name == fixed) {
        throw ConfigError("kafka.properties." + name,
                          "is fixed by the receiver (acks=all, idempotence, "
                          "message.timeout.ms = kafka.publish_timeout_ms)");
      }
    }
  }
  // A body at the size limit plus our headers must fit in one Kafka message;
  // librdkafka's default (1,000,000 bytes) is below the 1 MiB body limit.
  // The topics' max.message.bytes on the brokers must allow it too (docs/RECEIVER.md).
  bool has_max = false;
  for (const auto& [name, value] : k.properties) has_max |= name == "message.max.bytes";
  if (!has_max) {
    k.properties.insert(k.properties.begin(),
                        {"message.max.bytes", std::to_string(l.max_body_bytes + 64 * 1024)});
  }

  s.topics = topics_from(c);

  s.keys_database = c.string("keys.database", storage::kDefaultKeyDatabase);
  s.keys_reload_interval = c.millis("keys.reload_interval_ms", s.keys_reload_interval, 50ms, 3600s);
  s.admin_address = c.string("admin.listen_address", s.admin_address);
  s.admin_port = static_cast<std::uint16_t>(c.integer("admin.port", s.admin_port, 0, 65535));
  s.shutdown_grace = c.millis("receiver.shutdown_grace_ms", s.shutdown_grace, 0ms, 600s);
  if (s.shutdown_grace < l.read_timeout + k.publish_timeout + 1s) {
    throw ConfigError("receiver.shutdown_grace_ms",
                      "must be at least receiver.read_timeout_ms + kafka.publish_timeout_ms + "
                      "1000, so a request that has just begun still gets its answer");
  }
  s.log_level = c.string("log.level", s.log_level);
  try {
    core::parse_log_level(s.log_level);
  } catch (const std::invalid_argument& e) {
    throw ConfigError("log.level", e.what());
  }
  c.reject_unknown_keys();
  return s;
}

}  // namespace kpay::receiver
