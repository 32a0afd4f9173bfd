// klarnactl senders add|list|retire|rotate|show: the keys of the services that
// send commands (commands.senders_database) and what the processor's
// configuration lets each do. Secrets are generated or read from a file,
// stored byte-exact, and never printed.
#include <fcntl.h>
#include <openssl/rand.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iostream>

#include "klarnactl.hpp"
#include "kpay/core/json_writer.hpp"
#include "kpay/core/log.hpp"
#include "kpay/processor/command_auth.hpp"
#include "kpay/storage/sender_store.hpp"
#include "security_commands.hpp"

namespace kpay::ctl {

namespace {

std::string senders_path(const GlobalOptions& g) {
  return g.load().string("commands.senders_database", storage::kDefaultSenderDatabase);
}

storage::Database open_senders(const GlobalOptions& g, bool create) {
  const auto path = senders_path(g);
  storage::Database::Options options;
  options.create = create;
  if (create) {
    create_private_file(path);
    warn_if_exposed(path);
  }
  try {
    return storage::Database::open(path, options);
  } catch (const storage::SqliteError&) {
    throw CommandFailed("cannot open sender key database '" + path +
                        "' (commands.senders_database; `senders add` creates it)");
  }
}

// 32 random bytes as 64 hex characters, written owner-only to a new file.
std::string generate_secret(const std::string& out) {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof bytes) != 1) throw CommandFailed("no randomness for a secret");
  static constexpr char kHex[] = "0123456789abcdef";
  std::string secret;
  for (unsigned char b : bytes) {
    secret += kHex[b >> 4];
    secret += kHex[b & 0xf];
  }
  const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) throw CommandFailed("cannot create '" + out + "': " + std::strerror(errno));
  const auto line = secret + "\n";
  const bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
  ::close(fd);
  if (!ok) throw CommandFailed("cannot write '" + out + "'");
  return secret;
}

struct KeySource {
  std::string key_id;
  std::string secret_file;  // read
  std::string secret_out;   // generated
};

void add_key_options(CLI::App* cmd, KeySource& k) {
  cmd->add_option("--key-id", k.key_id, "Key id (default: k1, k2, … in order)");
  auto* in = cmd->add_option("--secret-file", k.secret_file,
                             "Read the secret (at least 16 bytes) from a file, or - for stdin");
  auto* out =
      cmd->add_option("--secret-out", k.secret_out,
                      "Generate a secret and write it to this new file (0600) for the sender");
  in->excludes(out);
  out->excludes(in);
}

void add_key(const GlobalOptions& g, const std::string& sender, KeySource k, bool json) {
  if (!storage::SenderStore::valid_id(sender)) {
    throw CommandFailed("invalid sender id: 1-64 of A-Z a-z 0-9 _ -");
  }
  if (k.secret_file.empty() && k.secret_out.empty()) {
    throw CommandFailed("give --secret-out FILE (generate) or --secret-file FILE|-");
  }
  auto db = open_senders(g, true);
  storage::SenderStore store(db);
  if (k.key_id.empty()) k.key_id = "k" + std::to_string(store.list(sender).size() + 1);
  if (!storage::SenderStore::valid_id(k.key_id)) {
    throw CommandFailed("invalid key id: 1-64 of A-Z a-z 0-9 _ -");
  }
  for (const auto& existing : store.list(sender)) {
    if (existing.key_id == k.key_id) {
      throw CommandFailed("sender " + sender + " has a key " + k.key_id + " already");
    }
  }
  const auto secret =
      k.secret_out.empty() ? read_secret(k.secret_file) : generate_secret(k.secret_out);
  switch (store.add(sender, k.key_id, secret)) {
    case storage::SenderStore::AddResult::added:
      break;
    case storage::SenderStore::AddResult::already_exists:
      throw CommandFailed("sender " + sender + " has a key " + k.key_id + " already");
    case storage::SenderStore::AddResult::too_many_active:
      throw CommandFailed("10 keys of " + sender + " are active: retire one first");
    case storage::SenderStore::AddResult::invalid:
      throw CommandFailed("the secret must be at least 16 bytes");
  }
  if (json) {
    core::JsonWriter w;
    w.begin_object().field("sender", sender).field("key_id", k.key_id).field("status", "active");
    w.end_object();
    std::cout << w.str() << "\n";
  } else {
    std::cout << "added key " << k.key_id << " of sender " << sender
              << (k.secret_out.empty() ? "" : " (secret in " + k.secret_out + ")") << "\n";
  }
}

void print_keys(const std::vector<storage::SenderKeyInfo>& keys, bool json) {
  std::vector<std::vector<std::string>> rows{{"SENDER", "KEY", "STATUS", "CREATED", "RETIRED"}};
  for (const auto& k : keys) {
    if (json) {
      core::JsonWriter w;
      w.begin_object().field("sender", k.sender).field("key_id", k.key_id);
      w.field("status", k.status).field("created_at", core::rfc3339_ms(k.created_at_ms));
      if (k.retired_at_ms) w.field("retired_at", core::rfc3339_ms(*k.retired_at_ms));
      w.end_object();
      std::cout << w.str() << "\n";
      continue;
    }
    rows.push_back({k.sender, k.key_id, k.status, core::rfc3339_ms(k.created_at_ms),
                    k.retired_at_ms ? core::rfc3339_ms(*k.retired_at_ms) : "-"});
  }
  if (!json) print_table(rows);
}

std::string joined(const std::set<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out.empty() ? "-" : out;
}

void show_sender(const GlobalOptions& g, const std::string& sender, bool json) {
  const auto policy = processor::command_policy_from_config(g.load());
  auto db = open_senders(g, false);
  storage::SenderStore store(db);
  const auto keys = store.list(sender);
  const auto it = policy.senders.find(sender);
  if (keys.empty() && it == policy.senders.end()) {
    throw CommandFailed("unknown sender " + sender + " (no keys, no [senders." + sender + "])");
  }
  if (json) {
    core::JsonWriter w;
    w.begin_object().field("sender", sender).key("commands").begin_array();
    if (it != policy.senders.end()) {
      for (const auto& c : it->second.commands) w.value(c);
    }
    w.end_array().key("partner_accounts").begin_array();
    if (it != policy.senders.end()) {
      for (const auto& a : it->second.partner_accounts) w.value(a);
    }
    w.end_array().key("limits").begin_object();
    if (it != policy.senders.end()) {
      for (const auto& [currency, l] : it->second.limits) {
        w.key(currency).begin_object();
        if (l.per_command) w.field("per_command", *l.per_command);
        if (l.per_day) w.field("per_day", *l.per_day);
        w.end_object();
      }
    }
    w.end_object().field("active_keys", static_cast<std::int64_t>(store.active_count(sender)));
    w.end_object();
    std::cout << w.str() << "\n";
    return;
  }
  std::cout << "sender            " << sender << "\n";
  if (it == policy.senders.end()) {
    std::cout << "permissions       none: every command of this sender is refused "
                 "(add [senders."
              << sender << "] to the processor's configuration)\n";
  } else {
    const auto& p = it->second;
    std::cout << "commands          " << joined(p.commands) << "\n"
              << "partner accounts  " << joined(p.partner_accounts) << "\n";
    if (p.limits.empty()) std::cout << "amount limits     none\n";
    for (const auto& [currency, l] : p.limits) {
      std::cout << "limit " << currency << "         per command "
                << (l.per_command ? std::to_string(*l.per_command) : "-") << ", per day "
                << (l.per_day ? std::to_string(*l.per_day) : "-") << " (minor units)\n";
    }
  }
  std::cout << "keys\n";
  print_keys(keys, false);
}

}  // namespace

std::vector<std::pair<std::string, std::string>> command_signature_headers(
    const GlobalOptions& g, const std::string& value) {
  const auto policy = processor::command_policy_from_config(g.load());
  if (policy.klarnactl_sender.empty()) return {};
  auto db = open_senders(g, false);
  storage::SenderStore store(db);
  std::optional<storage::SenderKeySecret> newest;
  std::int64_t newest_at = -1;
  const auto infos = store.list(policy.klarnactl_sender);
  for (auto& k : store.active_keys()) {
    if (k.sender != policy.klarnactl_sender) continue;
    for (const auto& i : infos) {
      if (i.key_id == k.key_id && i.created_at_ms >= newest_at) {
        newest_at = i.created_at_ms;
        newest = k;
      }
    }
  }
  if (!newest) {
    throw CommandFailed("sender " + policy.klarnactl_sender +
                        " (commands.klarnactl_sender) has no active key");
  }
  return {{std::string(processor::kSenderHeader), newest->sender},
          {std::string(processor::kSignatureHeader),
           processor::sign_command(newest->key_id, newest->secret, value)}};
}

void register_senders_commands(CLI::App& app, const GlobalOptions& global) {
  auto* senders =
      app.add_subcommand("senders", "Services allowed to send commands, and their keys");
  senders->require_subcommand(1);
  auto json = std::make_shared<bool>(false);
  auto sender = std::make_shared<std::string>();
  auto key = std::make_shared<KeySource>();

  auto* add = senders->add_subcommand("add", "Register a sender's key (active at once)");
  add->add_option("sender", *sender, "Sender id (1-64 of A-Z a-z 0-9 _ -)")->required();
  add_key_options(add, *key);
  add->add_flag("--json", *json, "Print JSON");
  add->callback([&global, sender, key, json] { add_key(global, *sender, *key, *json); });

  auto* rotate = senders->add_subcommand(
      "rotate", "Add a new key to a sender; the old ones stay active until retired");
  rotate->add_option("sender", *sender, "Sender id")->required();
  add_key_options(rotate, *key);
  rotate->add_flag("--json", *json, "Print JSON");
  rotate->callback([&global, sender, key, json] {
    auto db = open_senders(global, false);
    if (storage::SenderStore(db).list(*sender).empty()) {
      throw CommandFailed("unknown sender " + *sender + " (senders add registers one)");
    }
    add_key(global, *sender, *key, *json);
    if (!*json) {
      std::cout << "both keys are accepted now; once the sender signs with the new one: "
                   "klarnactl senders retire "
                << *sender << " <old key>\n";
    }
  });

  auto* retire = senders->add_subcommand("retire", "Stop accepting commands signed with a key");
  auto key_id = std::make_shared<std::string>();
  retire->add_option("sender", *sender, "Sender id")->required();
  retire->add_option("key", *key_id, "Key id")->required();
  retire->add_flag("--json", *json, "Print JSON");
  retire->callback([&global, sender, key_id, json] {
    auto db = open_senders(global, false);
    storage::SenderStore store(db);
    if (!store.retire(*sender, *key_id)) {
      throw CommandFailed("sender " + *sender + " has no active key " + *key_id);
    }
    if (*json) {
      core::JsonWriter w;
      w.begin_object().field("sender", *sender).field("key_id", *key_id);
      w.field("status", "retired").end_object();
      std::cout << w.str() << "\n";
    } else {
      std::cout << "retired key " << *key_id << " of sender " << *sender << "\n";
    }
  });

  auto* list = senders->add_subcommand("list", "Every sender's keys (never their secrets)");
  list->add_flag("--json", *json, "One JSON object per key");
  list->callback([&global, json] {
    auto db = open_senders(global, false);
    print_keys(storage::SenderStore(db).list(), *json);
  });

  auto* show = senders->add_subcommand("show", "A sender's keys and permissions");
  show->add_option("sender", *sender, "Sender id")->required();
  show->add_flag("--json", *json, "Print JSON");
  show->callback([&global, sender, json] { show_sender(global, *sender, *json); });
}

}  // namespace kpay::ctl
