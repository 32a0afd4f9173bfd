// klarnactl keys add|list|retire: the registered Klarna signing keys.
// Secrets are read from a file or stdin, stored byte-exact, and never printed.
#include <fstream>
#include <iostream>
#include <iterator>

#include "klarnactl.hpp"
#include "kpay/core/json_writer.hpp"
#include "kpay/core/log.hpp"
#include "kpay/storage/key_store.hpp"

namespace kpay::ctl {

namespace {

std::string keys_database(const GlobalOptions& g) {
  auto cfg = g.load();
  return cfg.string("keys.database", storage::kDefaultKeyDatabase);
}

// Only `keys add` may create the database; a typo elsewhere must fail loudly.
storage::Database open_keys(const GlobalOptions& g, bool create) {
  storage::Database::Options options;
  options.create = create;
  auto path = keys_database(g);
  try {
    return storage::Database::open(path, options);
  } catch (const storage::SqliteError&) {
    throw CommandFailed("cannot open key database '" + path +
                        "' (use --config or --set keys.database=PATH; `keys add` creates it)");
  }
}

std::string read_secret(const std::string& source) {
  std::string secret;
  if (source == "-") {
    secret.assign(std::istreambuf_iterator<char>(std::cin), {});
  } else {
    std::ifstream in(source, std::ios::binary);
    if (!in) throw CommandFailed("cannot read secret file '" + source + "'");
    secret.assign(std::istreambuf_iterator<char>(in), {});
  }
  // A file written by an editor or `echo` ends in one newline that is not part
  // of Klarna's secret; only that single trailing newline is removed.
  if (secret.ends_with("\r\n")) {
    secret.resize(secret.size() - 2);
  } else if (secret.ends_with('\n')) {
    secret.pop_back();
  }
  if (secret.empty()) throw CommandFailed("the secret is empty");
  return secret;
}

}  // namespace

void register_keys_commands(CLI::App& app, const GlobalOptions& global) {
  auto* keys = app.add_subcommand("keys", "Registered Klarna webhook signing keys");
  keys->require_subcommand(1);

  auto* add = keys->add_subcommand("add", "Register a signing key (active at once)");
  auto id = std::make_shared<std::string>();
  auto secret_file = std::make_shared<std::string>();
  add->add_option("--id", *id, "signing_key_id, e.g. krn:partner:global:notification:signing-key:<uuid>")
      ->required();
  add->add_option("--secret-file", *secret_file,
                  "File holding the secret, or - for stdin (one trailing newline is dropped)")
      ->required();
  add->callback([&global, id, secret_file] {
    if (!storage::KeyStore::valid_id(*id)) {
      throw CommandFailed("invalid key id: use printable ASCII without spaces");
    }
    auto db = open_keys(global, /*create=*/true);
    storage::KeyStore store(db);
    switch (store.add(*id, read_secret(*secret_file))) {
      case storage::KeyStore::AddResult::added:
        std::cout << "added signing key " << *id << "\n";
        return;
      case storage::KeyStore::AddResult::already_exists:
        throw CommandFailed("signing key " + *id + " already exists");
      case storage::KeyStore::AddResult::too_many_active:
        throw CommandFailed("50 keys are active already (Klarna's limit): retire one first");
      case storage::KeyStore::AddResult::invalid:
        throw CommandFailed("invalid key id");
    }
  });

  auto* list = keys->add_subcommand("list", "List keys (never their secrets)");
  auto json = std::make_shared<bool>(false);
  list->add_flag("--json", *json, "One JSON object per key");
  list->callback([&global, json] {
    auto db = open_keys(global, /*create=*/false);
    storage::KeyStore store(db);
    for (const auto& k : store.list()) {
      if (*json) {
        core::JsonWriter w;
        w.begin_object().field("id", k.id).field("status", k.status);
        w.field("created_at", core::rfc3339_ms(k.created_at_ms));
        if (k.retired_at_ms) w.field("retired_at", core::rfc3339_ms(*k.retired_at_ms));
        w.end_object();
        std::cout << w.str() << "\n";
      } else {
        std::cout << k.status << "\t" << core::rfc3339_ms(k.created_at_ms) << "\t" << k.id
                  << "\n";
      }
    }
  });

  auto* retire = keys->add_subcommand("retire", "Stop accepting webhooks signed with a key");
  auto retire_id = std::make_shared<std::string>();
  retire->add_option("id", *retire_id, "signing_key_id")->required();
  auto force = std::make_shared<bool>(false);
  retire->add_flag("--force", *force, "Retire even the last active key (every webhook is then refused)");
  retire->callback([&global, retire_id, force] {
    auto db = open_keys(global, /*create=*/false);
    storage::KeyStore store(db);
    if (store.active_count() <= 1 && !*force) {
      throw CommandFailed("refusing to retire the last active key: every webhook would be "
                          "refused; add the new key first, or pass --force");
    }
    if (!store.retire(*retire_id)) throw CommandFailed("no active key " + *retire_id);
    std::cout << "retired signing key " << *retire_id
              << "\nKlarna retries for up to 12 h: retire a key only once Klarna has stopped "
                 "signing with it for that long.\n";
  });
}

}  // namespace kpay::ctl
