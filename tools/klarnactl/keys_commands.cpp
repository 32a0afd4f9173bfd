// klarnactl keys add|list|retire: the registered Klarna signing keys.
// Secrets are read from a file or stdin, stored byte-exact, and never printed.
// `keys create`, `list --remote` and `remote-delete` ask Klarna
// (keys_klarna_commands.cpp).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>

#include "klarnactl.hpp"
#include "kpay/core/json_writer.hpp"
#include "kpay/core/log.hpp"
#include "kpay/storage/key_store.hpp"
#include "security_commands.hpp"

namespace kpay::ctl {

// The database holds the secrets: a new one is created owner-only (0600)
// before SQLite opens it (SQLite gives its -wal/-shm files the same mode and
// owner). Run as root (e.g. `keys create`, which needs the root-only API key),
// the new file goes to the owner of its directory, so the receiver's service
// user still owns /var/lib/klarna-receiver/keys.db.
void create_private_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return;
    throw CommandFailed("cannot create key database '" + path + "': " + std::strerror(errno));
  }
  const auto dir = std::filesystem::absolute(path).parent_path();
  struct stat owner {};
  if (::geteuid() == 0 && ::stat(dir.c_str(), &owner) == 0 && owner.st_uid != 0 &&
      ::fchown(fd, owner.st_uid, owner.st_gid) != 0) {
    std::cerr << "klarnactl: warning: cannot give " << path << " to the owner of " << dir.string()
              << ": " << std::strerror(errno) << "\n";
  }
  ::close(fd);
}

// An existing database readable by others is left as it is, but said.
void warn_if_exposed(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    std::cerr << "klarnactl: warning: key database " << path << " has mode " << mode
              << " (readable by others): chmod 600 it\n";
  }
}

std::string key_database_path(const GlobalOptions& g) {
  auto cfg = g.load();
  return cfg.string("keys.database", storage::kDefaultKeyDatabase);
}

// Only `keys add` and `keys create` may create the database; a typo elsewhere
// must fail loudly.
storage::Database open_key_database(const GlobalOptions& g, bool create) {
  storage::Database::Options options;
  options.create = create;
  auto path = key_database_path(g);
  if (create) {
    create_private_file(path);
    warn_if_exposed(path);
  }
  try {
    return storage::Database::open(path, options);
  } catch (const storage::SqliteError&) {
    throw CommandFailed(
        "cannot open key database '" + path +
        "' (use --config or --set keys.database=PATH; `keys add` or `keys create` creates it)");
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

namespace {

std::string key_json(const std::string& id, std::string_view status) {
  core::JsonWriter w;
  w.begin_object().field("id", id).field("status", status).end_object();
  return w.take();
}

// An unknown or already retired id is said as such, before the last-key rule.
void check_retirable(storage::KeyStore& store, const std::string& id) {
  for (const auto& k : store.list()) {
    if (k.id != id) continue;
    if (k.status == "active") return;
    throw CommandFailed("signing key " + id + " is already " + k.status);
  }
  throw CommandFailed("unknown signing key " + id + " (klarnactl keys list shows the keys)");
}

}  // namespace

void register_keys_commands(CLI::App& app, const GlobalOptions& global) {
  auto* keys = app.add_subcommand("keys", "Registered Klarna webhook signing keys");
  keys->require_subcommand(1);

  auto* add = keys->add_subcommand("add", "Register a signing key (active at once)");
  auto id = std::make_shared<std::string>();
  auto secret_file = std::make_shared<std::string>();
  add->add_option("--id", *id,
                  "signing_key_id, e.g. krn:partner:global:notification:signing-key:<uuid>")
      ->required();
  add->add_option("--secret-file", *secret_file,
                  "File holding the secret, or - for stdin (one trailing newline is dropped)")
      ->required();
  auto add_json = std::make_shared<bool>(false);
  add->add_flag("--json", *add_json, R"(Print {"id","status"} instead of a sentence)");
  add->callback([&global, id, secret_file, add_json] {
    if (!storage::KeyStore::valid_id(*id)) {
      throw CommandFailed("invalid key id: use printable ASCII without spaces");
    }
    auto db = open_key_database(global, /*create=*/true);
    storage::KeyStore store(db);
    switch (store.add(*id, read_secret(*secret_file))) {
      case storage::KeyStore::AddResult::added:
        std::cout << (*add_json ? key_json(*id, "active") : "added signing key " + *id) << "\n";
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
  auto remote = std::make_shared<bool>(false);
  list->add_flag("--remote", *remote, "Klarna's keys next to the local ones (asks Klarna)");
  list->callback([&global, json, remote] {
    if (*remote) return list_remote_keys(global, *json);
    auto db = open_key_database(global, /*create=*/false);
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
        std::cout << k.status << "\t" << core::rfc3339_ms(k.created_at_ms) << "\t" << k.id << "\n";
      }
    }
  });

  register_keys_klarna_commands(*keys, global);

  auto* retire = keys->add_subcommand("retire", "Stop accepting webhooks signed with a key");
  auto retire_id = std::make_shared<std::string>();
  retire->add_option("id", *retire_id, "signing_key_id")->required();
  auto force = std::make_shared<bool>(false);
  retire->add_flag("--force", *force,
                   "Retire even the last active key (every webhook is then refused)");
  auto retire_json = std::make_shared<bool>(false);
  retire->add_flag("--json", *retire_json, R"(Print {"id","status"} instead of a sentence)");
  retire->callback([&global, retire_id, force, retire_json] {
    auto db = open_key_database(global, /*create=*/false);
    storage::KeyStore store(db);
    check_retirable(store, *retire_id);
    if (store.active_count() <= 1 && !*force) {
      throw CommandFailed(
          "refusing to retire the last active key: every webhook would be "
          "refused; add the new key first, or pass --force");
    }
    if (!store.retire(*retire_id)) throw CommandFailed("no active key " + *retire_id);
    const char* advice =
        "Klarna retries for up to 12 h: retire a key only once Klarna has stopped signing with "
        "it for that long.\n";
    if (*retire_json) {
      std::cout << key_json(*retire_id, "retired") << "\n";
      std::cerr << advice;
    } else {
      std::cout << "retired signing key " << *retire_id << "\n" << advice;
    }
  });
}

}  // namespace kpay::ctl
