// A Processor on its own thread with its admin server, against an embedded
// Kafka and a SQLite file: what the processor's Kafka suites run.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <utility>

#include "http_client.hpp"
#include "kpay/core/admin_server.hpp"
#include "kpay/core/embedded_kafka.hpp"
#include "kpay/core/metrics.hpp"
#include "kpay/processor/consumer.hpp"
#include "kpay/storage/state_store.hpp"

namespace kpay::test {

// Stopped (as SIGTERM would) on destruction.
struct RunningProcessor {
  RunningProcessor(processor::ProcessorSettings settings, const std::string& db)
      : store(db),
        proc(std::move(settings), store, registry),
        admin(registry, [this] { return proc.readiness(); }) {
    port = admin.start("127.0.0.1", 0);
    thread = std::thread([this] { ok = proc.run(stop); });
  }
  ~RunningProcessor() { finish(); }
  bool finish() {
    if (thread.joinable()) {
      stop = true;
      thread.join();
      admin.stop();
    }
    return ok;
  }
  std::string metrics() {
    auto r = http_request(port, "GET", "/metrics");
    return r ? r->body : "";
  }
  int ready_status() {
    auto r = http_request(port, "GET", "/readyz");
    return r ? r->status : -1;
  }
  storage::StateStore store;
  core::Registry registry;
  processor::Processor proc;
  core::AdminServer admin;
  std::uint16_t port = 0;
  std::atomic<bool> stop{false};
  bool ok = false;
  std::thread thread;
};

// The value of one series in a /metrics text; -1 when absent.
inline long long metric(const std::string& text, const std::string& series) {
  auto pos = text.find("\n" + series + " ");
  if (pos == std::string::npos) return -1;
  return std::stoll(text.substr(pos + series.size() + 2));
}

// Settings for a processor in consumer group `group` on `topics`: small
// batches, a 3 s Kafka session (a suite changes what it needs).
inline processor::ProcessorSettings settings_for(const core::EmbeddedKafka& kafka,
                                                 const klarna::Topics& topics,
                                                 const std::string& group, int batch_size,
                                                 std::chrono::milliseconds batch_timeout) {
  processor::ProcessorSettings s;
  s.bootstrap_servers = kafka.bootstrap_servers();
  s.group_id = group;
  s.topics = topics;
  s.batch_size = batch_size;
  s.batch_timeout = batch_timeout;
  s.kafka_properties = {{"session.timeout.ms", "3000"}, {"heartbeat.interval.ms", "300"}};
  return s;
}

}  // namespace kpay::test
