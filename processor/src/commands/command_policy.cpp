// The [commands] and [senders.*] settings (command_auth.hpp): permissions
// and maximum ages, checked at start.
#include <algorithm>

#include "kpay/processor/command_auth.hpp"
#include "kpay/storage/sender_store.hpp"

namespace kpay::processor {

// ---- settings --------------------------------------------------------------------

const std::vector<std::string>& known_command_type_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> out;
    for (auto t : {CommandType::register_payment, CommandType::authorize, CommandType::capture,
                   CommandType::refund, CommandType::void_transaction, CommandType::cancel,
                   CommandType::dispute_accept_loss, CommandType::dispute_represent,
                   CommandType::dispute_appeal}) {
      out.emplace_back(command_type_name(t));
    }
    // Named before its decoder exists, so permissions and ages may list it.
    if (std::find(out.begin(), out.end(), "sdk_token") == out.end()) out.emplace_back("sdk_token");
    return out;
  }();
  return names;
}

namespace {

bool known_type(const std::string& name) {
  const auto& names = known_command_type_names();
  return std::find(names.begin(), names.end(), name) != names.end();
}

// Defaults a payments engineer would choose: a customer waits on an
// authorization (or an SDK session) for minutes, not hours; a capture,
// refund, void, cancel or dispute answer is still right days later
// (an authorization holds for weeks; dispute deadlines are days).
std::chrono::milliseconds default_max_age(std::string_view type) {
  using namespace std::chrono;
  if (type == "authorize" || type == "sdk_token") return minutes(15);
  if (type == "register") return hours(1);
  return days(7);
}

std::set<std::string> name_set(const core::Config& c, const std::string& key, bool types) {
  std::set<std::string> out;
  for (auto& v : c.string_list(key, {})) {
    if (types && v != "*" && !known_type(v)) {
      throw core::ConfigError(key, "unknown command type '" + v + "'");
    }
    if (v.empty()) throw core::ConfigError(key, "empty name");
    out.insert(std::move(v));
  }
  return out;
}

std::optional<std::int64_t> limit(const core::Config& c, const std::string& key) {
  if (!c.has(key)) return std::nullopt;
  return c.integer(key, 0, 1, std::int64_t{1} << 53);
}

// The currencies a [senders.<id>.limits.<code>] may name (Klarna's markets and
// their neighbours); another code is left unread and refused as an unknown key.
constexpr const char* kCurrencies[] = {"AUD", "BGN", "BRL", "CAD", "CHF", "CNY", "CZK",
                                       "DKK", "EUR", "GBP", "HKD", "HUF", "ILS", "INR",
                                       "ISK", "JPY", "KRW", "MXN", "NOK", "NZD", "PLN",
                                       "RON", "SEK", "SGD", "TRY", "USD", "ZAR"};

SenderPermissions sender_permissions(const core::Config& c, const std::string& id) {
  const std::string base = "senders." + id;
  if (!storage::SenderStore::valid_id(id)) {
    throw core::ConfigError("commands.senders",
                            "'" + id + "' is not a sender id (1-64 of A-Z a-z 0-9 _ -)");
  }
  SenderPermissions p;
  p.commands = name_set(c, base + ".commands", true);
  if (p.commands.empty()) throw core::ConfigError(base + ".commands", "names no command type");
  p.partner_accounts = name_set(c, base + ".partner_accounts", false);
  if (p.partner_accounts.empty()) {
    throw core::ConfigError(base + ".partner_accounts", "names no account (\"*\": any)");
  }
  for (const char* currency : kCurrencies) {
    const std::string key = base + ".limits." + currency;
    // Only the two keys are read: anything else in the table is an unknown key.
    AmountLimit l{limit(c, key + ".per_command"), limit(c, key + ".per_day")};
    if (!l.per_command && !l.per_day) continue;
    if (l.per_command && l.per_day && *l.per_command > *l.per_day) {
      throw core::ConfigError(key + ".per_command", "is larger than per_day");
    }
    p.limits.emplace(currency, l);
  }
  return p;
}

}  // namespace

std::chrono::milliseconds CommandPolicy::max_age_for(std::string_view type) const {
  auto it = max_age.find(std::string(type));
  return it != max_age.end() ? it->second : default_max_age(type);
}

CommandPolicy command_policy_from_config(const core::Config& c) {
  CommandPolicy p;
  p.allow_unsigned = c.boolean("commands.allow_unsigned", false);
  p.senders_database = c.string("commands.senders_database", storage::kDefaultSenderDatabase);
  p.senders_poll = c.millis("commands.senders_poll_ms", p.senders_poll,
                            std::chrono::milliseconds(100), std::chrono::minutes(10));
  p.klarnactl_sender = c.string("commands.klarnactl_sender", "");
  if (const auto topic = c.string("audit.topic", ""); !topic.empty()) {
    p.audit_topic = c.string("kafka.topic_prefix", "") + topic;
  }
  if (!p.klarnactl_sender.empty() && !storage::SenderStore::valid_id(p.klarnactl_sender)) {
    throw core::ConfigError("commands.klarnactl_sender", "a sender id is 1-64 of A-Z a-z 0-9 _ -");
  }
  // A key naming no known type is left unread: reject_unknown_keys() refuses it.
  for (const auto& type : known_command_type_names()) {
    const std::string key = "commands.max_age_s." + type;
    if (c.has(key)) p.max_age[type] = std::chrono::seconds(c.integer(key, 0, 1, 365LL * 24 * 3600));
  }
  // [senders.<id>] of each id listed; a section not listed is an unknown key.
  for (const auto& id : c.string_list("commands.senders", {})) {
    if (p.senders.contains(id))
      throw core::ConfigError("commands.senders", "lists " + id + " twice");
    p.senders[id] = sender_permissions(c, id);
  }
  return p;
}

}  // namespace kpay::processor
