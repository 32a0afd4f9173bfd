#include "kpay/sim/options.hpp"

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace kpay::sim {

namespace {
std::string read_secret_file(const std::string& key, const std::string& path,
                             std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw core::ConfigError(key, "cannot read '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  // One trailing newline is dropped (as klarnactl does), nothing else.
  if (!s.empty() && s.back() == '\n') s.pop_back();
  if (s.empty()) throw core::ConfigError(key, "the " + std::string(what) + " file is empty");
  return s;
}

// sim.api_key / sim.api_key_file (at most one), else the fixed default key.
void load_auth(const core::Config& c, SimOptions& o) {
  auto key = c.optional_string("sim.api_key");
  auto file = c.optional_string("sim.api_key_file");
  o.api.require_auth = c.boolean("sim.require_auth", true);
  if (key && file) throw core::ConfigError("sim.api_key_file", "set sim.api_key or this, not both");
  if (key && key->empty()) throw core::ConfigError("sim.api_key", "must not be empty");
  if (key) {
    o.api.api_key = *key;
    o.api_key_source = "sim.api_key";
  } else if (file) {
    o.api.api_key = read_secret_file("sim.api_key_file", *file, "API key");
    o.api_key_source = "sim.api_key_file";
  }
  o.api.api_key_also = c.string("sim.api_key_also", "");
}

void load_tls(const core::Config& c, SimOptions& o) {
  o.tls = c.boolean("sim.tls", false);
  o.tls_certificate = c.string("sim.tls_certificate", "");
  o.tls_private_key = c.string("sim.tls_private_key", "");
  o.tls_client_ca = c.string("sim.tls_client_ca", "");
  if (o.tls && (o.tls_certificate.empty() || o.tls_private_key.empty())) {
    throw core::ConfigError("sim.tls", "needs sim.tls_certificate and sim.tls_private_key");
  }
  if (!o.tls_client_ca.empty() && !o.tls) {
    throw core::ConfigError("sim.tls_client_ca", "needs sim.tls = true (mTLS is TLS)");
  }
}
// settlements.*: the schedule, the fee schedule and the payout delay.
void load_settlements(const core::Config& c, SettlementOptions& s) {
  s.every_ms = c.millis("settlements.every_ms", std::chrono::milliseconds(0),
                        std::chrono::milliseconds(0), std::chrono::hours(24 * 366))
                   .count();
  s.fee_fixed = c.integer("settlements.fee_fixed", s.fee_fixed, 0, 1'000'000'000);
  s.fee_percent_bp = c.integer("settlements.fee_percent_bp", s.fee_percent_bp, 0, 10'000);
  s.fee_tax_bp = c.integer("settlements.fee_tax_bp", s.fee_tax_bp, 0, 10'000);
  s.payout_delay_ms =
      c.millis("settlements.payout_delay_ms", std::chrono::milliseconds(s.payout_delay_ms),
               std::chrono::milliseconds(0), std::chrono::hours(24 * 366))
          .count();
}
}  // namespace

SimOptions load_options(const core::Config& c) {
  SimOptions o;
  o.listen_address = c.string("sim.listen_address", o.listen_address);
  o.port = static_cast<std::uint16_t>(c.integer("sim.port", o.port, 0, 65535));
  o.port_file = c.string("sim.port_file", "");
  load_tls(c, o);
  o.time_scale = c.integer("sim.time_scale", 1, 1, 100'000'000);
  o.seed = static_cast<std::uint64_t>(c.integer("sim.seed", 0, 0, INT64_MAX));
  o.tick_interval_ms = c.millis("sim.tick_interval_ms", std::chrono::milliseconds(100),
                                std::chrono::milliseconds(1), std::chrono::milliseconds(60'000))
                           .count();
  o.body_limit = static_cast<std::size_t>(c.integer("sim.body_limit", 1 << 20, 1024, 64 << 20));
  o.read_timeout_ms = c.millis("sim.read_timeout_ms", std::chrono::milliseconds(59'000),
                               std::chrono::milliseconds(100), std::chrono::hours(1))
                          .count();
  o.threads = static_cast<int>(c.integer("sim.threads", 2, 1, 64));
  o.log_level = c.string("sim.log_level", "info");

  o.api.account_id = c.string("sim.account_id", o.api.account_id);
  o.api.dispute_path_prefix = c.string("sim.dispute_path_prefix", o.api.dispute_path_prefix);
  if (o.api.dispute_path_prefix.empty() || o.api.dispute_path_prefix.front() != '/') {
    throw core::ConfigError("sim.dispute_path_prefix", "must be a path starting with /");
  }
  o.api.answers = c.string("sim.answers", o.api.answers);
  if (o.api.answers != "full" && o.api.answers != "thin" && o.api.answers != "bare") {
    throw core::ConfigError("sim.answers", "must be full, thin or bare");
  }
  load_auth(c, o);
  // Klarna's session and confirmation tokens live 60 min (docs/klarna/PAYMENTS-API.md);
  // longer only for tests whose outages outlast that at a high sim.time_scale.
  o.api.token_ttl_ms = c.millis("sim.token_ttl_ms", std::chrono::milliseconds(o.api.token_ttl_ms),
                                std::chrono::seconds(1), std::chrono::hours(24))
                           .count();
  o.api.seed = o.seed;
  o.public_url = c.string("sim.public_url", "");
  load_settlements(c, o.api.settlements);

  auto& d = o.dispatcher;
  d.workers = static_cast<int>(c.integer("webhooks.workers", 2, 1, 64));
  d.timeout = c.millis("webhooks.timeout_ms", std::chrono::milliseconds(10'000),
                       std::chrono::milliseconds(10), std::chrono::minutes(5));
  d.duplicate_percent = static_cast<int>(c.integer("webhooks.duplicate_percent", 0, 0, 100));
  d.reorder_percent = static_cast<int>(c.integer("webhooks.reorder_percent", 0, 0, 100));
  d.reorder_delay = c.millis("webhooks.reorder_delay_ms", std::chrono::milliseconds(300),
                             std::chrono::milliseconds(0), std::chrono::minutes(10));
  d.seed = o.seed;
  d.max_records =
      static_cast<std::size_t>(c.integer("webhooks.max_records", 200'000, 1, 100'000'000));
  o.webhook_tls_verify = c.boolean("webhooks.tls_verify", false);
  if (auto url = c.optional_string("webhooks.url")) {
    StartupWebhook w;
    w.url = *url;
    w.signing_key_id = c.string("webhooks.signing_key_id", "");
    auto file = c.string("webhooks.signing_key_file", "");
    if (w.signing_key_id.empty())
      throw core::ConfigError("webhooks.signing_key_id", "required with webhooks.url");
    if (file.empty())
      throw core::ConfigError("webhooks.signing_key_file", "required with webhooks.url");
    w.signing_key = read_secret_file("webhooks.signing_key_file", file, "signing key");
    w.event_version = c.string("webhooks.event_version", "v2");
    if (w.event_version != "v1" && w.event_version != "v2") {
      throw core::ConfigError("webhooks.event_version", "must be v1 or v2");
    }
    w.event_types = c.string_list("webhooks.event_types", {"*"});
    o.webhook = std::move(w);
  } else {
    // Read so they count as known even without a URL.
    (void)c.string("webhooks.signing_key_id", "");
    (void)c.string("webhooks.signing_key_file", "");
    (void)c.string("webhooks.event_version", "v2");
    (void)c.string_list("webhooks.event_types", {});
  }

  for (const auto& rule : c.string_list("faults.rules", {})) {
    try {
      o.faults.push_back(parse_fault_rule(rule));
    } catch (const std::invalid_argument& e) {
      throw core::ConfigError("faults.rules", e.what());
    }
  }

  auto& s = o.scenario;
  s.account_id = o.api.account_id;
  s.journeys = static_cast<int>(c.integer("scenario.journeys", 0, 0, 10'000'000));
  s.rate_per_second = static_cast<double>(c.integer("scenario.rate", 10, 1, 1'000'000));
  try {
    s.mix = parse_mix(c.string_list("scenario.mix", {"approve"}));
  } catch (const std::invalid_argument& e) {
    throw core::ConfigError("scenario.mix", e.what());
  }
  s.versions = c.string_list("scenario.versions", {"v2"});
  for (const auto& v : s.versions) {
    if (v != "v1" && v != "v2")
      throw core::ConfigError("scenario.versions", "entries must be v1 or v2");
  }
  if (s.versions.empty()) throw core::ConfigError("scenario.versions", "must not be empty");
  s.disputes = static_cast<int>(c.integer("scenario.disputes", 0, 0, 1'000'000));
  s.settlements = static_cast<int>(c.integer("scenario.settlements", 0, 0, 1'000'000));
  s.merchant_actions = c.boolean("scenario.merchant_actions", false);
  s.dispute_wait_ms = c.millis("scenario.dispute_wait_ms", std::chrono::milliseconds(5'000),
                               std::chrono::milliseconds(0), std::chrono::hours(1))
                          .count();
  s.repeat = c.boolean("scenario.repeat", false);
  o.exit_when_done = c.boolean("scenario.exit_when_done", false);
  o.drain_timeout_ms = c.millis("scenario.drain_timeout_ms", std::chrono::milliseconds(30'000),
                                std::chrono::milliseconds(0), std::chrono::hours(24))
                           .count();
  c.reject_unknown_keys();
  return o;
}

}  // namespace kpay::sim
