// klarna-embedded-kafka: librdkafka's mock cluster as a standalone process, for
// `make run`, benchmarks and manual testing. NOT DURABLE: all data lives in this
// process's memory and is lost when it exits.
#include <CLI/CLI.hpp>
#include <csignal>
#include <fstream>
#include <iostream>

#include "kpay/core/embedded_kafka.hpp"
#include "kpay/core/log.hpp"
#include "kpay/core/process.hpp"

int main(int argc, char** argv) {
  CLI::App app{"Embedded (in-memory, non-durable) Kafka cluster for development and tests"};
  int brokers = 1;
  int partitions = 4;
  std::vector<std::string> topics;
  std::string bootstrap_file;
  app.add_option("--brokers", brokers, "Number of mock brokers")->check(CLI::Range(1, 9));
  app.add_option("--partitions", partitions, "Partitions per created topic")->check(CLI::Range(1, 256));
  app.add_option("--topic", topics, "Topic to create up front (repeatable)");
  app.add_option("--bootstrap-file", bootstrap_file,
                 "Write bootstrap.servers to this file once listening");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // usage errors: 2, as every program here
  }

  kpay::core::block_termination_signals();
  kpay::core::Logger log("embedded-kafka");
  try {
    kpay::core::EmbeddedKafka kafka(brokers);
    for (const auto& t : topics) kafka.create_topic(t, partitions);
    if (!bootstrap_file.empty()) {
      std::string tmp = bootstrap_file + ".tmp";
      std::ofstream(tmp) << kafka.bootstrap_servers() << "\n";
      std::rename(tmp.c_str(), bootstrap_file.c_str());
    }
    std::cout << kafka.bootstrap_servers() << std::endl;
    log.info("embedded Kafka listening (in memory, not durable)",
             {{"bootstrap_servers", kafka.bootstrap_servers()}, {"brokers", brokers}});
    kpay::core::notify_ready();
    for (;;) {
      auto sig = kpay::core::wait_for_signal(std::chrono::seconds(1));
      if (sig && *sig != SIGHUP) break;
    }
    log.info("stopping embedded Kafka");
  } catch (const std::exception& e) {
    log.error("embedded Kafka failed", {{"error", e.what()}});
    return 1;
  }
  return 0;
}
