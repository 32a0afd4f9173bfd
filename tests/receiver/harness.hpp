// A real receiver for tests: in-process Receiver object on a loopback port
// (TLS or plain), its own key database, topics under a unique prefix on an
// embedded Kafka cluster.
#pragma once

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>

#include "child_process.hpp"
#include "http_client.hpp"
#include "kafka_reader.hpp"
#include "kpay/core/embedded_kafka.hpp"
#include "kpay/klarna/signature.hpp"
#include "kpay/receiver/receiver.hpp"
#include "kpay/storage/key_store.hpp"
#include "tls_cert.hpp"

namespace kpay::test {

inline constexpr int kPartitions = 2;
inline constexpr std::string_view kKeyId = "krn:partner:global:notification:signing-key:test-1";
inline constexpr std::string_view kSecret = "example-signing-key-NOT-REAL";

inline std::string unique_prefix() {
  static std::atomic<int> n{0};
  return "t" + std::to_string(getpid()) + "-" + std::to_string(n.fetch_add(1)) + ".";
}

struct ReceiverHarness {
  ReceiverHarness(core::EmbeddedKafka& kafka, bool tls,
                  std::vector<std::string> overrides = {})
      : kafka(kafka), tls(tls), dir(make_temp_dir("receiver")), prefix(unique_prefix()) {
    keys_db = dir + "/keys.db";
    {
      auto db = storage::Database::open(keys_db);
      storage::KeyStore(db).add(std::string(kKeyId), std::string(kSecret));
    }
    // As `klarnactl keys add` creates it: the receiver refuses a database others can read.
    std::filesystem::permissions(keys_db, std::filesystem::perms::owner_read |
                                              std::filesystem::perms::owner_write);
    core::Config cfg;
    cfg.apply_override("receiver.listen_address=127.0.0.1");
    cfg.apply_override("receiver.port=0");
    cfg.apply_override(std::string("receiver.tls=") + (tls ? "true" : "false"));
    if (tls) {
      auto cert = write_self_signed_cert(dir);
      cfg.apply_override("receiver.tls_certificate=" + cert.certificate);
      cfg.apply_override("receiver.tls_private_key=" + cert.private_key);
    }
    cfg.apply_override("receiver.io_threads=2");
    cfg.apply_override("keys.database=" + keys_db);
    cfg.apply_override("keys.reload_interval_ms=100");
    cfg.apply_override("kafka.bootstrap_servers=" + kafka.bootstrap_servers());
    cfg.apply_override("kafka.topic_prefix=" + prefix);
    cfg.apply_override("kafka.publish_timeout_ms=3000");
    cfg.apply_override("admin.listen_address=127.0.0.1");
    cfg.apply_override("admin.port=0");
    cfg.apply_override("log.level=error");
    for (const auto& o : overrides) cfg.apply_override(o);
    settings = receiver::Settings::from_config(cfg);
    for (const auto* t : all_topics()) {
      if (t->rfind("never-created", 0) != 0 && t->find(".never-created") == std::string::npos) {
        kafka.create_topic(*t, kPartitions);
      }
    }
    receiver = std::make_unique<receiver::Receiver>(settings);
    receiver->start();
  }

  std::vector<const std::string*> all_topics() const {
    const auto& t = settings.topics;
    return {&t.payment_requests, &t.payment_transactions, &t.disputes, &t.settlements,
            &t.accounts,         &t.unrouted,             &t.dead_letter};
  }
  std::vector<std::string> topic_names() const {
    std::vector<std::string> out;
    for (const auto* t : all_topics()) out.push_back(*t);
    return out;
  }

  std::uint16_t port() const { return receiver->port(); }
  const std::string& path() const { return settings.listener.path; }

  std::map<std::string, std::string> signed_headers(std::string_view body,
                                                    std::string_view key_id = kKeyId,
                                                    std::string_view secret = kSecret) const {
    return {{"Klarna-Signing-Key-Id", std::string(key_id)},
            {"Klarna-Signature", klarna::hmac_sha256_hex(secret, body)},
            {"Content-Type", "application/json"}};
  }

  std::optional<HttpResponse> post(std::string_view body,
                                   const std::map<std::string, std::string>& headers) const {
    HttpConnection c(port(), tls);
    return c.request("POST", path(), body, headers);
  }
  std::optional<HttpResponse> post_signed(std::string_view body) const {
    return post(body, signed_headers(body));
  }

  std::string metrics() const {
    auto r = http_request(receiver->admin_port(), "GET", "/metrics");
    return r ? r->body : "";
  }

  core::EmbeddedKafka& kafka;
  bool tls;
  std::string dir;
  std::string prefix;
  std::string keys_db;
  receiver::Settings settings;
  std::unique_ptr<receiver::Receiver> receiver;
};

// One cluster per test binary: starting one is cheap, but sharing keeps the
// suite quick. Tests isolate themselves with topic prefixes.
inline core::EmbeddedKafka& shared_kafka() {
  static core::EmbeddedKafka kafka(1);
  return kafka;
}

inline std::string webhook_body(std::string_view event_type, std::string_view event_id,
                                std::string_view payload_json = "{}",
                                std::string_view version = "v2") {
  return std::string(R"({"metadata":{"event_type":")") + std::string(event_type) +
         R"(","event_id":")" + std::string(event_id) + R"(","event_version":")" +
         std::string(version) + R"(","occurred_at":"2025-02-28T12:00:00Z"},"payload":)" +
         std::string(payload_json) + "}";
}

}  // namespace kpay::test
