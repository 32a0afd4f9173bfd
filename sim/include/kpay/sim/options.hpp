// klarna-sim's configuration: TOML file + `--set section.key=value`, read with
// kpay::core::Config (unknown keys are refused). Every key with its default is
// listed in docs/SIM.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kpay/core/config.hpp"
#include "kpay/sim/api.hpp"
#include "kpay/sim/faults.hpp"
#include "kpay/sim/scenario.hpp"
#include "kpay/sim/webhooks.hpp"

namespace kpay::sim {

struct StartupWebhook {
  std::string url;
  std::string signing_key_id;
  std::string signing_key;  // secret read from signing_key_file; never logged
  std::string event_version = "v2";
  std::vector<std::string> event_types{"*"};
};

struct SimOptions {
  std::string listen_address = "127.0.0.1";
  std::uint16_t port = 12112;
  std::string port_file;
  std::string public_url;  // sim.public_url; empty: from the listening address
  bool tls = false;
  std::string tls_certificate, tls_private_key;
  std::string tls_client_ca;  // PEM CA file: when set, clients must present a certificate it signed
  std::int64_t time_scale = 1;
  std::uint64_t seed = 0;
  std::int64_t tick_interval_ms = 100;
  std::size_t body_limit = 1 << 20;
  std::int64_t read_timeout_ms = 59'000;  // Klarna closes a request idle for 59 s
  int threads = 2;
  std::string log_level = "info";
  ApiOptions api;
  std::string api_key_source = "default";  // where api.api_key came from (logged, never the key)
  DispatcherOptions dispatcher;
  bool webhook_tls_verify = false;
  std::optional<StartupWebhook> webhook;
  std::vector<FaultRule> faults;
  ScenarioOptions scenario;
  bool exit_when_done = false;
  std::int64_t drain_timeout_ms = 30'000;
};

// Throws core::ConfigError (exit 2) on a bad value; calls reject_unknown_keys().
SimOptions load_options(const core::Config& config);

}  // namespace kpay::sim
