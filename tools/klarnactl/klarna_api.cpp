// klarnactl's calls to Klarna: one client built from the `[klarna]` section the
// processor reads (processor::client_settings_from_config), the processor's
// credentials rule, bounded retries with the same idempotency key, and error
// messages made of Klarna's own error fields.
#include <openssl/rand.h>
#include <simdjson.h>

#include <algorithm>
#include <iostream>
#include <thread>

#include "klarnactl.hpp"
#include "kpay/core/log.hpp"
#include "kpay/processor/outbox_worker.hpp"

namespace kpay::ctl {

namespace {

klarna::ClientSettings checked_settings(const GlobalOptions& g) {
  auto cfg = g.load();
  auto s = processor::client_settings_from_config(cfg);
  s.user_agent = "klarnactl";
  // The processor's rule: Klarna's own environments always need the API key.
  if (s.environment != klarna::Environment::custom && s.credentials_file.empty()) {
    throw core::ConfigError("klarna.credentials_file",
                            "is required to call Klarna's " +
                                std::string(klarna::environment_name(s.environment)) +
                                " environment");
  }
  return s;
}

// "(url: must be an http(s) URL; …)" from Klarna's validation_errors.
std::string validation_errors(const std::string& body) {
  simdjson::dom::parser p;
  simdjson::dom::array errors;
  if (p.parse(body)["validation_errors"].get_array().get(errors) != simdjson::SUCCESS) return "";
  std::string out;
  for (auto e : errors) {
    std::string_view param, reason;
    if (e["parameter"].get_string().get(param) != simdjson::SUCCESS) param = "?";
    if (e["reason"].get_string().get(reason) != simdjson::SUCCESS) reason = "";
    out += (out.empty() ? " (" : "; ") + std::string(param) + ": " + std::string(reason);
  }
  return out.empty() ? out : out + ")";
}

}  // namespace

KlarnaApi::KlarnaApi(const GlobalOptions& g) {
  // The client logs each answer at info as JSON; klarnactl says what matters itself.
  core::set_log_level(core::LogLevel::warn);
  auto s = checked_settings(g);
  base_url_ = s.environment == klarna::Environment::custom
                  ? s.base_url
                  : std::string(klarna::default_base_url(s.environment));
  try {
    client_ = std::make_unique<klarna::ApiClient>(std::move(s));
  } catch (const klarna::ClientConfigError& e) {
    throw core::ConfigError("klarna", e.what());  // names the setting, never a secret
  }
}

KlarnaApi::~KlarnaApi() = default;

klarna::Answer KlarnaApi::call(klarna::Call c, int attempts) {
  klarna::Answer a;
  for (int i = 1; i <= attempts; ++i) {
    a = client_->call(c);
    if (a.disposition != klarna::Disposition::retryable || i == attempts) break;
    std::cerr << "klarnactl: retrying (" << a.summary() << ")\n";
    std::this_thread::sleep_for(std::chrono::milliseconds(250 * i));
  }
  return a;
}

klarna::Answer KlarnaApi::expect_success(klarna::Call c, int attempts) {
  const std::string key = c.idempotency_key;
  auto a = call(std::move(c), attempts);
  if (a.disposition == klarna::Disposition::success) return a;
  std::string message = describe_failure(a);
  // Whether Klarna executed it is unknown: the same key makes a repeat safe.
  if (a.disposition == klarna::Disposition::retryable && !key.empty()) {
    message += "\nrepeat with --idempotency-key " + key + " (Klarna then executes it at most once)";
  }
  throw CommandFailed(message);
}

std::string KlarnaApi::describe_failure(const klarna::Answer& a) const {
  if (a.status == 0) {
    return "cannot reach Klarna at " + base_url_ + ": " +
           (a.transport_error.empty() ? "no answer" : a.transport_error);
  }
  std::string out = "Klarna answered " + std::to_string(a.status);
  if (a.error) {
    out += " " + a.error->error_type + "/" + a.error->error_code;
    if (!a.error->error_message.empty()) out += ": " + a.error->error_message;
    out += validation_errors(a.body);
    if (!a.error->error_id.empty()) out += " (error_id=" + a.error->error_id + ")";
  }
  if (!a.klarna_correlation_id.empty()) out += " (correlation_id=" + a.klarna_correlation_id + ")";
  return out;
}

std::string new_idempotency_key() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) throw CommandFailed("no randomness for a key");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string key = "klarnactl-";
  for (unsigned char b : bytes) {
    key += kHex[b >> 4];
    key += kHex[b & 0xf];
  }
  return key;
}

CLI::Option* with_idempotency_key(CLI::App* cmd, std::string& key) {
  return cmd->add_option("--idempotency-key", key,
                         "Klarna-Idempotency-Key (default: a new one per invocation); a "
                         "repeat with the same key is executed at most once")
      ->check([](const std::string& k) {
        return k.empty() || k.size() > 255 ? std::string("1 to 255 characters") : std::string();
      });
}

std::string json_field(const std::string& body, std::string_view key) {
  simdjson::dom::parser p;
  std::string_view v;
  if (p.parse(body)[key].get_string().get(v) != simdjson::SUCCESS) return "";
  return std::string(v);
}

void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width;
  for (const auto& row : rows) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(width[i] - row[i].size() + 2, ' ');
    }
    std::cout << line << "\n";
  }
}

}  // namespace kpay::ctl
