// klarnactl webhooks subscribe|list|get|update|delete|simulate: the webhook
// subscriptions at Klarna (Notification API, docs/klarna/WEBHOOKS.md §5), with the
// `[klarna]` settings the processor uses. Klarna's refusals are shown with
// their error_code and error_message (exit 1); bad usage or configuration
// exits 2 before anything is sent.
#include <simdjson.h>

#include <iostream>

#include "klarnactl.hpp"
#include "kpay/core/json_writer.hpp"
#include "kpay/core/percent_encode.hpp"
#include "kpay/storage/key_store.hpp"

namespace kpay::ctl {

namespace {

constexpr const char* kWebhooksPath = "/v2/notification/webhooks";

std::string webhook_path(const std::string& id, std::string_view rest = "") {
  return std::string(kWebhooksPath) + "/" + core::percent_encode(id) + std::string(rest);
}

// The subscription's fields; what is unset is not sent (PATCH changes only these).
struct SubscriptionFields {
  std::string url, event_version, signing_key_id, status;
  std::vector<std::string> event_types;
  std::string idempotency_key;
  bool json = false;
};

std::string fields_json(const SubscriptionFields& f) {
  core::JsonWriter w;
  w.begin_object();
  if (!f.url.empty()) w.field("url", f.url);
  if (!f.event_types.empty()) {
    w.key("event_types").begin_array();
    for (const auto& t : f.event_types) w.value(t);
    w.end_array();
  }
  if (!f.event_version.empty()) w.field("event_version", f.event_version);
  if (!f.signing_key_id.empty()) w.field("signing_key_id", f.signing_key_id);
  if (!f.status.empty()) w.field("status", f.status);
  w.end_object();
  return w.take();
}

// A subscription signing with a key the local receiver does not have would
// have every delivery refused: said (not refused: klarnactl may run elsewhere).
void warn_unless_local_key(const GlobalOptions& g, const std::string& key_id) {
  if (key_id.empty()) return;
  try {
    auto db = open_key_database(g, /*create=*/false);
    storage::KeyStore store(db);
    for (const auto& k : store.list()) {
      if (k.id == key_id && k.status == "active") return;
    }
    std::cerr << "klarnactl: warning: " << key_id << " is not an active key in "
              << key_database_path(g) << ": the receiver there refuses what it signs\n";
  } catch (const std::exception&) {
    // No local key store here: nothing to compare with.
  }
}

// One subscription as `key: value` lines.
void print_webhook(const std::string& body) {
  simdjson::dom::parser p;
  simdjson::dom::object o;
  if (p.parse(body).get_object().get(o) != simdjson::SUCCESS) {
    throw CommandFailed("Klarna's answer is not a webhook object");
  }
  for (auto [key, value] : o) {
    std::string text;
    std::string_view s;
    if (value.get_string().get(s) == simdjson::SUCCESS) {
      text = s;
    } else if (value.is_array()) {
      for (auto e : value.get_array()) {
        if (e.get_string().get(s) == simdjson::SUCCESS)
          text += (text.empty() ? "" : ",") + std::string(s);
      }
    } else {
      text = simdjson::minify(value);
    }
    std::cout << key << ": " << text << "\n";
  }
}

void send_fields(const GlobalOptions& g, SubscriptionFields f, const std::string& method,
                 const std::string& path) {
  KlarnaApi api(g);
  warn_unless_local_key(g, f.signing_key_id);
  klarna::Call c;
  c.method = method;
  c.path = path;
  c.body = fields_json(f);
  c.idempotency_key = f.idempotency_key.empty() ? new_idempotency_key() : f.idempotency_key;
  const auto body = api.expect_success(std::move(c)).body;
  const auto id = json_field(body, "webhook_id");
  if (id.empty()) throw CommandFailed("Klarna's answer names no webhook_id");
  std::cout << (f.json ? body : id) << "\n";
}

void list(const GlobalOptions& g, bool json) {
  KlarnaApi api(g);
  klarna::Call c;
  c.method = "GET";
  c.path = kWebhooksPath;
  const auto body = api.expect_success(std::move(c)).body;
  simdjson::dom::parser p;
  simdjson::dom::array hooks;
  if (p.parse(body)["webhooks"].get_array().get(hooks) != simdjson::SUCCESS) {
    throw CommandFailed("Klarna's answer has no webhooks list");
  }
  std::vector<std::vector<std::string>> rows{
      {"WEBHOOK_ID", "STATUS", "VERSION", "URL", "EVENT_TYPES", "SIGNING_KEY_ID"}};
  for (auto h : hooks) {
    const std::string one = simdjson::minify(h);
    if (json) {
      std::cout << one << "\n";
      continue;
    }
    std::string types;
    for (auto t : h["event_types"]) {
      std::string_view s;
      if (t.get_string().get(s) == simdjson::SUCCESS)
        types += (types.empty() ? "" : ",") + std::string(s);
    }
    rows.push_back({json_field(one, "webhook_id"), json_field(one, "status"),
                    json_field(one, "event_version"), json_field(one, "url"), types,
                    json_field(one, "signing_key_id")});
  }
  if (!json) print_table(rows);
}

void get(const GlobalOptions& g, const std::string& id, bool json) {
  KlarnaApi api(g);
  klarna::Call c;
  c.method = "GET";
  c.path = webhook_path(id);
  const auto body = api.expect_success(std::move(c)).body;
  if (json) {
    std::cout << body << "\n";
  } else {
    print_webhook(body);
  }
}

void remove(const GlobalOptions& g, const std::string& id, bool json) {
  KlarnaApi api(g);
  klarna::Call c;
  c.method = "DELETE";
  c.path = webhook_path(id);
  api.expect_success(std::move(c));
  if (json) {
    core::JsonWriter w;
    w.begin_object().field("webhook_id", id).field("deleted", true).end_object();
    std::cout << w.str() << "\n";
  } else {
    std::cout << "deleted webhook " << id << "\n";
  }
}

struct SimulateOptions {
  std::string id, event_type, event_version, idempotency_key;
  bool json = false;
};

void simulate(const GlobalOptions& g, const SimulateOptions& o) {
  KlarnaApi api(g);
  core::JsonWriter w;
  w.begin_object().field("event_type", o.event_type);
  if (!o.event_version.empty()) w.field("event_version", o.event_version);
  w.end_object();
  klarna::Call c;
  c.method = "POST";
  c.path = webhook_path(o.id, "/simulate");
  c.body = w.take();
  c.idempotency_key = o.idempotency_key.empty() ? new_idempotency_key() : o.idempotency_key;
  const auto body = api.expect_success(std::move(c)).body;
  if (o.json) {
    std::cout << body << "\n";
    return;
  }
  const auto event_id = json_field(body, "event_id");
  std::cout << (event_id.empty() ? "sent" : event_id) << "\n";
}

// --url, --event-type, --event-version, --signing-key-id, --status.
void add_field_options(CLI::App* cmd, SubscriptionFields& f, bool creating) {
  auto* url = cmd->add_option("--url", f.url, "Where Klarna sends the events (https://…)");
  auto* types = cmd->add_option("--event-type", f.event_types,
                                "An event type or pattern, e.g. payment.request.state-change.* "
                                "(repeatable)");
  auto* key = cmd->add_option("--signing-key-id", f.signing_key_id,
                              "The key Klarna signs with (klarnactl keys create)");
  if (creating) {
    url->required();
    types->required();
    key->required();
  }
  cmd->add_option("--event-version", f.event_version,
                  creating ? "v1 or v2 (default v2)" : "v1 or v2")
      ->check(CLI::IsMember({"v1", "v2"}));
  cmd->add_option("--status", f.status, "ENABLED or DISABLED")
      ->check(CLI::IsMember({"ENABLED", "DISABLED"}));
  with_idempotency_key(cmd, f.idempotency_key);
  cmd->add_flag("--json", f.json, "Print Klarna's answer (JSON) instead of the webhook_id");
}

void register_simulate(CLI::App& webhooks, const GlobalOptions& global) {
  auto* sim = webhooks.add_subcommand("simulate",
                                      "Have Klarna send a signed sample event to one subscription");
  auto o = std::make_shared<SimulateOptions>();
  sim->add_option("id", o->id, "webhook_id")->required();
  sim->add_option("--event-type", o->event_type, "e.g. payment.transaction.captured")->required();
  sim->add_option("--event-version", o->event_version, "v1 or v2 (default: the subscription's)")
      ->check(CLI::IsMember({"v1", "v2"}));
  with_idempotency_key(sim, o->idempotency_key);
  sim->add_flag("--json", o->json, "Print Klarna's answer (JSON) instead of the event_id");
  sim->callback([&global, o] { simulate(global, *o); });
}

}  // namespace

void register_webhooks_commands(CLI::App& app, const GlobalOptions& global) {
  auto* webhooks = app.add_subcommand("webhooks", "Webhook subscriptions at Klarna");
  webhooks->require_subcommand(1);
  webhooks->footer(
      "Uses the [klarna] settings (as klarna-processor). Exit 1: Klarna refused "
      "or is unreachable; 2: bad usage or configuration.");

  auto* subscribe = webhooks->add_subcommand("subscribe", "Subscribe a URL to event types");
  auto sf = std::make_shared<SubscriptionFields>();
  add_field_options(subscribe, *sf, /*creating=*/true);
  subscribe->callback([&global, sf] { send_fields(global, *sf, "POST", kWebhooksPath); });

  auto* update = webhooks->add_subcommand(
      "update", "Change a subscription (e.g. --signing-key-id when rotating keys)");
  auto uf = std::make_shared<SubscriptionFields>();
  auto update_id = std::make_shared<std::string>();
  update->add_option("id", *update_id, "webhook_id")->required();
  add_field_options(update, *uf, /*creating=*/false);
  update->callback([&global, uf, update_id] {
    if (uf->url.empty() && uf->event_types.empty() && uf->event_version.empty() &&
        uf->signing_key_id.empty() && uf->status.empty()) {
      throw CLI::ValidationError("update", "give at least one field to change");
    }
    send_fields(global, *uf, "PATCH", webhook_path(*update_id));
  });

  auto* ls = webhooks->add_subcommand("list", "List the subscriptions");
  auto list_json = std::make_shared<bool>(false);
  ls->add_flag("--json", *list_json, "One JSON object per subscription, as Klarna sends it");
  ls->callback([&global, list_json] { list(global, *list_json); });

  auto* show = webhooks->add_subcommand("get", "Show one subscription");
  auto get_id = std::make_shared<std::string>();
  auto get_json = std::make_shared<bool>(false);
  show->add_option("id", *get_id, "webhook_id")->required();
  show->add_flag("--json", *get_json, "Klarna's answer (JSON)");
  show->callback([&global, get_id, get_json] { get(global, *get_id, *get_json); });

  auto* del = webhooks->add_subcommand("delete", "Delete a subscription");
  auto del_id = std::make_shared<std::string>();
  auto del_json = std::make_shared<bool>(false);
  del->add_option("id", *del_id, "webhook_id")->required();
  del->add_flag("--json", *del_json, R"(Print {"webhook_id","deleted"})");
  del->callback([&global, del_id, del_json] { remove(global, *del_id, *del_json); });

  register_simulate(*webhooks, global);
}

}  // namespace kpay::ctl
