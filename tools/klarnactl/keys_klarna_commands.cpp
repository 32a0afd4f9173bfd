// klarnactl keys create | list --remote | remote-delete: signing keys at Klarna
// (Notification API, docs/klarna/WEBHOOKS.md §5). `create` asks Klarna for a new key and
// stores its secret in the local key store (keys.database) in the same run, the
// moment Klarna shows it: the secret is shown once and is never printed here.
#include <iostream>
#include <map>

#include <simdjson.h>

#include "klarnactl.hpp"
#include "kpay/core/json_writer.hpp"
#include "kpay/core/log.hpp"
#include "kpay/core/percent_encode.hpp"
#include "kpay/storage/key_store.hpp"

namespace kpay::ctl {

namespace {

constexpr const char* kKeysPath = "/v2/notification/signing-keys";

struct CreatedKey {
  std::string id, secret, created_at;
};

// The id first, so that even a broken answer names the key to delete.
CreatedKey parse_created(const std::string& body) {
  CreatedKey k;
  k.id = json_field(body, "signing_key_id");
  k.secret = json_field(body, "signing_key");
  k.created_at = json_field(body, "created_at");
  if (k.id.empty()) throw CommandFailed("Klarna's answer names no signing_key_id");
  if (k.secret.empty() || !storage::KeyStore::valid_id(k.id)) {
    throw CommandFailed("Klarna created signing key " + k.id +
                        " but its answer carries no usable secret: delete it at Klarna "
                        "(klarnactl keys remote-delete " +
                        k.id + ")");
  }
  return k;
}

// Why the key could not be stored, or empty once it is (a repeat with the same
// idempotency key gets the same key: already stored with that secret is fine).
std::string store_key(storage::KeyStore& store, const CreatedKey& k) {
  try {
    switch (store.add(k.id, k.secret)) {
      case storage::KeyStore::AddResult::added:
        return "";
      case storage::KeyStore::AddResult::already_exists:
        for (const auto& active : store.active_keys()) {
          if (active.id == k.id && active.secret == k.secret) return "";
        }
        return "a different key with this id is already registered";
      case storage::KeyStore::AddResult::too_many_active:
        return "50 keys are active already";
      case storage::KeyStore::AddResult::invalid:
        return "the id is not valid";
    }
  } catch (const storage::SqliteError& e) {
    return e.what();
  }
  return "unknown result";
}

struct CreateOptions {
  std::string idempotency_key;
  bool json = false;
};

void create_key(const GlobalOptions& g, CreateOptions o) {
  KlarnaApi api(g);  // configuration errors before anything is sent
  const std::string path = key_database_path(g);
  auto db = open_key_database(g, /*create=*/true);
  storage::KeyStore store(db);
  if (store.active_count() >= storage::KeyStore::kMaxActiveKeys) {
    throw CommandFailed("50 keys are active in " + path + " (Klarna's limit): retire one first");
  }
  if (o.idempotency_key.empty()) o.idempotency_key = new_idempotency_key();
  klarna::Call c;
  c.method = "POST";
  c.path = kKeysPath;
  c.idempotency_key = o.idempotency_key;
  const auto key = parse_created(api.expect_success(std::move(c)).body);
  if (auto why = store_key(store, key); !why.empty()) {
    throw CommandFailed(
        "Klarna created signing key " + key.id + " but it was NOT stored in " + path + ": " + why +
        "\nEither fix that and repeat with --idempotency-key " + o.idempotency_key +
        " (within 24 h Klarna answers a repeat with the same key), or delete the key at "
        "Klarna: klarnactl keys remote-delete " +
        key.id);
  }
  if (o.json) {
    core::JsonWriter w;
    w.begin_object().field("signing_key_id", key.id).field("status", "active");
    if (!key.created_at.empty()) w.field("created_at", key.created_at);
    w.field("key_database", path).end_object();
    std::cout << w.str() << "\n";
  } else {
    std::cout << key.id << "\n";
    std::cerr << "klarnactl: signing key stored in " << path
              << " (active; the secret is not shown)\n";
  }
}

struct KeyView {
  std::string local = "-";   // active | retired | -
  std::string klarna = "-";  // yes | -
  std::string created_at;
};

std::map<std::string, KeyView> local_keys(const GlobalOptions& g) {
  std::map<std::string, KeyView> keys;
  try {
    auto db = open_key_database(g, /*create=*/false);
    storage::KeyStore store(db);
    for (const auto& k : store.list()) {
      keys[k.id].local = k.status;
      keys[k.id].created_at = core::rfc3339_ms(k.created_at_ms);
    }
  } catch (const CommandFailed& e) {
    std::cerr << "klarnactl: warning: no local keys shown: " << e.what() << "\n";
  }
  return keys;
}

void print_key_views(const std::map<std::string, KeyView>& keys, bool json) {
  std::vector<std::vector<std::string>> rows{{"SIGNING_KEY_ID", "LOCAL", "KLARNA", "CREATED_AT"}};
  for (const auto& [id, v] : keys) {
    if (json) {
      core::JsonWriter w;
      w.begin_object()
          .field("id", id)
          .field("local", v.local)
          .field("at_klarna", v.klarna == "yes");
      w.field("created_at", v.created_at).end_object();
      std::cout << w.str() << "\n";
    }
    rows.push_back({id, v.local, v.klarna, v.created_at});
  }
  if (!json) print_table(rows);
}

void remote_delete(const GlobalOptions& g, const std::string& id, bool json) {
  KlarnaApi api(g);
  klarna::Call c;
  c.method = "DELETE";
  c.path = std::string(kKeysPath) + "/" + core::percent_encode(id);
  api.expect_success(std::move(c));
  if (json) {
    core::JsonWriter w;
    w.begin_object().field("signing_key_id", id).field("deleted", true).end_object();
    std::cout << w.str() << "\n";
  } else {
    std::cout << "deleted signing key " << id << " at Klarna\n";
  }
}

}  // namespace

// Klarna's keys next to the local ones: a key only at Klarna cannot be
// verified here; a key only here is not Klarna's (or was deleted there).
void list_remote_keys(const GlobalOptions& g, bool json) {
  KlarnaApi api(g);
  klarna::Call c;
  c.method = "GET";
  c.path = kKeysPath;
  const auto body = api.expect_success(std::move(c)).body;
  simdjson::dom::parser p;
  simdjson::dom::array remote;
  if (p.parse(body)["signing_keys"].get_array().get(remote) != simdjson::SUCCESS) {
    throw CommandFailed("Klarna's answer has no signing_keys list");
  }
  auto keys = local_keys(g);
  for (auto k : remote) {
    std::string_view id, created;
    if (k["signing_key_id"].get_string().get(id) != simdjson::SUCCESS) continue;
    auto& v = keys[std::string(id)];
    v.klarna = "yes";
    if (k["created_at"].get_string().get(created) == simdjson::SUCCESS) v.created_at = created;
  }
  print_key_views(keys, json);
}

void register_keys_klarna_commands(CLI::App& keys, const GlobalOptions& global) {
  auto* create = keys.add_subcommand(
      "create", "Ask Klarna for a new signing key and store its secret here (active at once)");
  auto o = std::make_shared<CreateOptions>();
  with_idempotency_key(create, o->idempotency_key);
  create->add_flag("--json", o->json,
                   R"(Print {"signing_key_id","status","created_at","key_database"})");
  create->footer(
      "Uses the [klarna] settings (as klarna-processor) and keys.database (as klarna-receiver).\n"
      "Prints the new signing_key_id; the secret goes to the key store only.");
  create->callback([&global, o] { create_key(global, *o); });

  auto* del = keys.add_subcommand("remote-delete", "Delete a signing key at Klarna");
  auto id = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  del->add_option("id", *id, "signing_key_id")->required();
  del->add_flag("--json", *json, R"(Print {"signing_key_id","deleted"})");
  del->footer("The local key store is not changed: `keys retire` stops accepting the key here.");
  del->callback([&global, id, json] { remote_delete(global, *id, *json); });
}

}  // namespace kpay::ctl
