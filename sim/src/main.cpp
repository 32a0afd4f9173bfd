// klarna-sim: wires the components; all behaviour lives in kpay_sim.
//   klarna-sim [--config FILE] [--set section.key=value]… [shortcuts]
// Exit codes: 0 normal stop (SIGTERM/SIGINT, or scenario.exit_when_done),
// 1 start-up failure, 2 configuration error.
#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "kpay/core/config.hpp"
#include "kpay/core/json_writer.hpp"
#include "kpay/core/log.hpp"
#include "kpay/core/process.hpp"
#include "kpay/sim/api.hpp"
#include "kpay/sim/faults.hpp"
#include "kpay/sim/options.hpp"
#include "kpay/sim/scenario.hpp"
#include "kpay/sim/server.hpp"
#include "kpay/sim/webhooks.hpp"

int main(int argc, char** argv) {
  CLI::App app{"klarna-sim: a Klarna double (payments API, signed webhooks, scenarios, faults)"};
  std::optional<std::string> config_file;
  std::vector<std::string> overrides;
  app.add_option("--config", config_file, "TOML configuration file");
  app.add_option("--set", overrides, "override: section.key=value (repeatable)");
  // Shortcuts for the common by-hand uses; each is a --set.
  std::vector<std::pair<std::string, std::string>> shortcuts;
  auto shortcut = [&](const std::string& flag, const std::string& key, const std::string& help) {
    app.add_option_function<std::string>(
        flag, [&shortcuts, key](const std::string& v) { shortcuts.emplace_back(key, v); }, help);
  };
  shortcut("--port", "sim.port", "listen port (0 = any) [sim.port]");
  shortcut("--port-file", "sim.port_file",
           "write {\"port\":N} here once listening [sim.port_file]");
  shortcut("--time-scale", "sim.time_scale",
           "simulated time runs this many times faster [sim.time_scale]");
  shortcut("--token-ttl-ms", "sim.token_ttl_ms",
           "session and confirmation tokens live this long, simulated ms [sim.token_ttl_ms]");
  shortcut("--webhook-url", "webhooks.url", "subscribe this URL at start [webhooks.url]");
  shortcut("--signing-key-id", "webhooks.signing_key_id",
           "its signing key id [webhooks.signing_key_id]");
  shortcut("--signing-key-file", "webhooks.signing_key_file",
           "file holding the secret [webhooks.signing_key_file]");
  shortcut("--event-version", "webhooks.event_version", "v1 or v2 [webhooks.event_version]");
  shortcut("--journeys", "scenario.journeys", "customer journeys to drive [scenario.journeys]");
  shortcut("--rate", "scenario.rate", "journeys per second [scenario.rate]");
  shortcut("--duplicate-percent", "webhooks.duplicate_percent", "[webhooks.duplicate_percent]");
  shortcut("--reorder-percent", "webhooks.reorder_percent", "[webhooks.reorder_percent]");
  app.footer(
      "Every configuration key, the API surface, /_sim introspection, scenarios and fault "
      "rules: docs/SIM.md");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // usage errors: 2, as every program here
  }
  for (const auto& [k, v] : shortcuts) overrides.push_back(k + "=" + v);

  kpay::core::Logger log("sim");
  kpay::sim::SimOptions o;
  try {
    std::optional<std::filesystem::path> file;
    if (config_file) file = *config_file;
    auto config = kpay::core::load_config(file, overrides);
    o = kpay::sim::load_options(config);
    kpay::core::set_log_level(kpay::core::parse_log_level(o.log_level));
  } catch (const kpay::core::ConfigError& e) {
    std::fprintf(stderr, "klarna-sim: configuration error: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "klarna-sim: configuration error: %s\n", e.what());
    return 2;
  }

  // Before any thread starts, so every thread inherits the blocked mask.
  kpay::core::block_termination_signals();

  kpay::sim::SimClock clock(o.time_scale);
  kpay::sim::WebhookDispatcher dispatcher(o.dispatcher, clock,
                                          kpay::sim::make_http_transport(o.webhook_tls_verify));
  kpay::sim::SimApi api(o.api, clock, &dispatcher);
  kpay::sim::FaultPlan faults(o.seed);
  faults.set_rules(o.faults);
  kpay::sim::ScenarioRunner scenarios(api);

  api.set_control_handler("/_sim/scenarios",
                          [&](const kpay::sim::ApiRequest& r) { return scenarios.control(r); });
  api.set_control_handler(
      "/_sim/faults", [&](const kpay::sim::ApiRequest& r) -> kpay::sim::ApiResponse {
        if (r.method == "POST") {
          // {"rules":["ROUTE:KIND:PERCENT[:PARAM]", …]} replaces the rules.
          try {
            faults.set_rules(kpay::sim::parse_fault_rules_json(r.body));
          } catch (const std::invalid_argument& e) {
            return kpay::sim::klarna_error(400, "INPUT_ERROR", "VALIDATION_ERROR", e.what());
          }
        }
        kpay::core::JsonWriter w;
        w.begin_object().key("rules").begin_array();
        for (const auto& rule : faults.rules()) w.value(rule.text);
        w.end_array().end_object();
        return kpay::sim::ApiResponse{200, {{"Content-Type", "application/json"}}, w.take()};
      });
  if (o.webhook) {
    api.add_signing_key(o.webhook->signing_key_id, o.webhook->signing_key);
    auto id = api.add_webhook(o.webhook->url, o.webhook->event_types, o.webhook->event_version,
                              o.webhook->signing_key_id);
    log.info("webhook subscribed", {{"webhook_id", id},
                                    {"url", o.webhook->url},
                                    {"signing_key_id", o.webhook->signing_key_id},
                                    {"event_version", o.webhook->event_version}});
  }

  kpay::sim::ServerOptions so;
  so.listen_address = o.listen_address;
  so.port = o.port;
  so.tls = o.tls;
  so.tls_certificate = o.tls_certificate;
  so.tls_private_key = o.tls_private_key;
  so.tls_client_ca = o.tls_client_ca;
  so.body_limit = o.body_limit;
  so.read_timeout_ms = o.read_timeout_ms;
  so.threads = o.threads;
  kpay::sim::SimServer server(so, api, faults);
  std::uint16_t port = 0;
  try {
    port = server.start();
  } catch (const std::exception& e) {
    log.error("cannot start", {{"error", e.what()}});
    return 1;
  }
  api.set_public_url(!o.public_url.empty() ? o.public_url
                                           : std::string(o.tls ? "https://" : "http://") +
                                                 o.listen_address + ":" + std::to_string(port));
  if (!o.port_file.empty()) {
    // Written whole to a temporary name, then renamed: a reader never sees half a file.
    std::string tmp = o.port_file + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << "{\"port\":" << port << "}\n";
    }
    std::rename(tmp.c_str(), o.port_file.c_str());
  }
  log.info("klarna-sim listening", {{"address", o.listen_address},
                                    {"port", static_cast<unsigned>(port)},
                                    {"tls", o.tls},
                                    {"mtls", !o.tls_client_ca.empty()},
                                    {"require_auth", o.api.require_auth},
                                    {"api_key_from", o.api_key_source},
                                    {"time_scale", o.time_scale}});
  kpay::core::notify_ready();

  if (o.scenario.journeys > 0 || o.scenario.disputes > 0 || o.scenario.settlements > 0)
    scenarios.start(o.scenario);

  std::optional<std::chrono::steady_clock::time_point> drain_deadline;
  for (;;) {
    auto sig = kpay::core::wait_for_signal(std::chrono::milliseconds(o.tick_interval_ms));
    if (sig && *sig != SIGHUP) {
      log.info("stopping", {{"signal", *sig}});
      break;
    }
    api.tick();
    if (o.exit_when_done && scenarios.finished_once() && !scenarios.running()) {
      auto now = std::chrono::steady_clock::now();
      if (!drain_deadline) drain_deadline = now + std::chrono::milliseconds(o.drain_timeout_ms);
      auto c = dispatcher.counts();
      // Done when nothing is pending, or the drain deadline passed.
      if (c.pending == 0 || now >= *drain_deadline) {
        log.info("scenario done",
                 {{"delivered", c.delivered}, {"failed", c.failed}, {"pending", c.pending}});
        break;
      }
    }
  }
  kpay::core::notify_stopping();
  server.stop();
  return 0;
}
