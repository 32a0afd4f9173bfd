// Everything the receiver can be told, read from the shared TOML format.
// See docs/RECEIVER.md for the annotated list and defaults.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "kpay/core/config.hpp"
#include "kpay/core/kafka.hpp"
#include "kpay/klarna/envelope.hpp"

namespace kpay::receiver {

struct ListenerSettings {
  std::string address = "0.0.0.0";
  std::uint16_t port = 8443;  // Klarna delivers to 443 or 8443 only
  std::string path = "/webhooks/klarna";
  // TLS is the default; plain HTTP only when explicitly configured (behind a TLS proxy).
  bool tls = true;
  std::string tls_certificate;  // PEM chain
  std::string tls_private_key;  // PEM
  std::size_t max_header_bytes = 16 * 1024;
  std::size_t max_body_bytes = 1024 * 1024;
  // Bodies are buffered before their signature can be checked: the bytes all
  // connections may hold at once are capped (503 + Retry-After beyond).
  std::size_t max_body_bytes_in_flight = 256 * 1024 * 1024;
  // A whole request (headers + body) must arrive within this; slow clients are cut.
  std::chrono::milliseconds read_timeout{10'000};
  // How long an idle keep-alive connection is kept.
  std::chrono::milliseconds idle_timeout{60'000};
  std::size_t max_connections = 10'000;
  int io_threads = 0;  // 0: one per core
  std::string port_file;  // when set: {"port":N,"admin_port":M} written once listening
};

struct KafkaSettings {
  std::string bootstrap_servers = "127.0.0.1:9092";
  std::string topic_prefix;
  // Klarna hears 503 + Retry-After when Kafka has not confirmed within this.
  std::chrono::milliseconds publish_timeout{5'000};
  std::chrono::seconds retry_after{10};
  // Any librdkafka property (SASL/SSL for real clusters, batching…); applied
  // after our defaults, except that acks=all and idempotence cannot be weakened.
  core::KafkaProperties properties;
};

struct Settings {
  ListenerSettings listener;
  KafkaSettings kafka;
  klarna::Topics topics;
  std::string keys_database;  // default: storage::kDefaultKeyDatabase
  std::chrono::milliseconds keys_reload_interval{1'000};
  std::string admin_address = "127.0.0.1";
  std::uint16_t admin_port = 9464;
  // Must cover a request that has just started: read_timeout + publish_timeout.
  std::chrono::milliseconds shutdown_grace{20'000};
  std::string log_level = "info";

  // Throws core::ConfigError naming the key; rejects unknown keys.
  static Settings from_config(const core::Config& config);
};

// The family topics as the receiver names them (topics.*, with
// kafka.topic_prefix), each checked to be a legal Kafka topic name (throws
// core::ConfigError naming the key). klarnactl's dead letters use it too.
klarna::Topics topics_from(const core::Config& config);

}  // namespace kpay::receiver
