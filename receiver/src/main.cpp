// klarna-receiver: verified Klarna webhooks into Kafka, acknowledged only when durable.
#include <CLI/CLI.hpp>
#include <iostream>

#include "kpay/core/build_commit.hpp"
#include "kpay/core/config.hpp"
#include "kpay/core/kafka.hpp"
#include "kpay/core/log.hpp"
#include "kpay/core/process.hpp"
#include "kpay/receiver/receiver.hpp"
#include "openssl_memory.hpp"

int main(int argc, char** argv) {
  // Before anything can make OpenSSL allocate.
  const bool openssl_memory_routed = kpay::receiver::route_openssl_memory();
  CLI::App app{"klarna-receiver: Klarna webhooks, verified, into Kafka"};
  std::optional<std::string> config_file;
  std::vector<std::string> overrides;
  app.add_option("-c,--config", config_file, "TOML configuration file");
  app.add_option("--set", overrides, "Override a configuration key: section.key=value");
  app.set_version_flag("--version", "klarna-receiver " KPAY_VERSION);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // usage errors: 2, as every program here
  }

  kpay::core::Logger log("receiver");
  std::optional<kpay::receiver::Settings> settings;
  try {
    std::optional<std::filesystem::path> file;
    if (config_file) file = *config_file;
    auto config = kpay::core::load_config(file, overrides);
    settings = kpay::receiver::Settings::from_config(config);
    kpay::core::set_log_level(kpay::core::parse_log_level(settings->log_level));
    if (!openssl_memory_routed) {
      log.warn("OpenSSL allocated before start-up; its frees keep the default path");
    }
  } catch (const kpay::core::ConfigError& e) {
    std::cerr << "klarna-receiver: configuration error: " << e.what() << "\n";
    return 2;
  }
  // Signals are taken by the receiver's own handling; block them before any
  // thread starts so none is delivered to a librdkafka thread.
  kpay::core::block_termination_signals();
  try {
    kpay::receiver::Receiver receiver(std::move(*settings));
    kpay::core::register_build_info(receiver.metrics(), "klarna-receiver", KPAY_VERSION,
                                    kpay::core::build_commit());
    receiver.start();
    return receiver.run_until_signalled();
  } catch (const kpay::core::ConfigError& e) {
    std::cerr << "klarna-receiver: configuration error: " << e.what() << "\n";
    return 2;
  } catch (const kpay::core::KafkaConfigError& e) {
    std::cerr << "klarna-receiver: configuration error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    log.error("start-up failed", {{"error", e.what()}});
    return 1;
  }
}
