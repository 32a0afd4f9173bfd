#include "kpay/core/config.hpp"

#include <cerrno>
#include <cstdio>

#include <toml++/toml.h>

#include <charconv>
#include <sstream>

namespace kpay::core {

ConfigError::ConfigError(std::string key, const std::string& reason)
    : std::runtime_error(key.empty() ? reason : "key '" + key + "': " + reason),
      key_(std::move(key)) {}

struct Config::Impl {
  toml::table root;
  // Overrides in the order given, values as typed: pass-through tables take
  // them verbatim (no type guessing of e.g. a password "0x1f").
  std::vector<std::pair<std::string, std::string>> raw_overrides;
  mutable std::set<std::string> read_keys;    // exact keys read
  mutable std::set<std::string> read_tables;  // tables read whole (pass-through)

  const toml::node* find(std::string_view key) const {
    read_keys.emplace(key);
    return root.at_path(key).node();
  }
};

Config::Config() : impl_(std::make_unique<Impl>()) {}
Config::~Config() = default;
Config::Config(Config&&) noexcept = default;
Config& Config::operator=(Config&&) noexcept = default;

Config Config::from_string(std::string_view text, std::string_view source) {
  Config c;
  try {
    c.impl_->root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    msg << source << ":" << e.source().begin.line << ":" << e.source().begin.column << ": "
        << e.description();
    throw ConfigError("", "invalid TOML: " + msg.str());
  }
  return c;
}

Config Config::from_file(const std::filesystem::path& file) {
  // Say which: a service user that may not read /etc/klarna must not be told
  // the file "does not exist".
  std::error_code ec;
  const auto status = std::filesystem::status(file, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    throw ConfigError("", "config file '" + file.string() + "' cannot be read: " + ec.message());
  }
  if (!std::filesystem::exists(status)) {
    throw ConfigError("", "config file '" + file.string() + "' does not exist");
  }
  if (!std::filesystem::is_regular_file(status)) {
    throw ConfigError("", "config file '" + file.string() + "' is not a regular file");
  }
  if (std::FILE* f = std::fopen(file.c_str(), "rb")) {
    std::fclose(f);
  } else {
    throw ConfigError("", "config file '" + file.string() +
                              "' cannot be read: " + std::generic_category().message(errno));
  }
  try {
    Config c;
    c.impl_->root = toml::parse_file(file.string());
    return c;
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    msg << file.string() << ":" << e.source().begin.line << ":" << e.source().begin.column << ": "
        << e.description();
    throw ConfigError("", "invalid TOML: " + msg.str());
  }
}

void Config::apply_override(std::string_view assignment) {
  auto eq = assignment.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    throw ConfigError(std::string(assignment), "override must look like section.key=value");
  }
  std::string key(assignment.substr(0, eq));
  std::string raw(assignment.substr(eq + 1));
  impl_->raw_overrides.emplace_back(key, raw);
  toml::node_view existing = impl_->root.at_path(key);
  (void)existing;

  // Parse the value as TOML; fall back to a bare string.
  toml::table parsed;
  bool is_toml = true;
  try {
    parsed = toml::parse("v = " + raw);
  } catch (const toml::parse_error&) {
    is_toml = false;
  }

  // Walk/create intermediate tables.
  toml::table* table = &impl_->root;
  std::string_view rest = key;
  while (true) {
    auto dot = rest.find('.');
    std::string part(rest.substr(0, dot));
    if (part.empty()) throw ConfigError(key, "empty path segment in override");
    if (dot == std::string_view::npos) {
      if (is_toml) {
        table->insert_or_assign(part, std::move(*parsed.get("v")));
      } else {
        table->insert_or_assign(part, raw);
      }
      return;
    }
    auto* child = table->get(part);
    if (child == nullptr) {
      table->insert_or_assign(part, toml::table{});
      child = table->get(part);
    }
    if (!child->is_table()) throw ConfigError(key, "'" + part + "' is not a table");
    table = child->as_table();
    rest = rest.substr(dot + 1);
  }
}

bool Config::has(std::string_view key) const {
  return impl_->find(key) != nullptr;
}

std::optional<std::string> Config::optional_string(std::string_view key) const {
  const toml::node* n = impl_->find(key);
  if (n == nullptr) return std::nullopt;
  if (auto s = n->value<std::string>(); s && n->is_string()) return *s;
  throw ConfigError(std::string(key), "must be a string");
}

std::string Config::string(std::string_view key, std::string_view fallback) const {
  auto v = optional_string(key);
  return v ? *v : std::string(fallback);
}

std::int64_t Config::integer(std::string_view key, std::int64_t fallback, std::int64_t min,
                             std::int64_t max) const {
  const toml::node* n = impl_->find(key);
  if (n == nullptr) return fallback;
  if (!n->is_integer()) throw ConfigError(std::string(key), "must be an integer");
  std::int64_t v = n->as_integer()->get();
  if (v < min || v > max) {
    throw ConfigError(std::string(key), "must be between " + std::to_string(min) + " and " +
                                            std::to_string(max) + ", got " + std::to_string(v));
  }
  return v;
}

bool Config::boolean(std::string_view key, bool fallback) const {
  const toml::node* n = impl_->find(key);
  if (n == nullptr) return fallback;
  if (!n->is_boolean()) throw ConfigError(std::string(key), "must be true or false");
  return n->as_boolean()->get();
}

std::chrono::milliseconds Config::millis(std::string_view key, std::chrono::milliseconds fallback,
                                         std::chrono::milliseconds min,
                                         std::chrono::milliseconds max) const {
  return std::chrono::milliseconds(integer(key, fallback.count(), min.count(), max.count()));
}

std::vector<std::string> Config::string_list(std::string_view key,
                                             const std::vector<std::string>& fallback) const {
  const toml::node* n = impl_->find(key);
  if (n == nullptr) return fallback;
  const toml::array* arr = n->as_array();
  if (arr == nullptr) throw ConfigError(std::string(key), "must be an array of strings");
  std::vector<std::string> out;
  for (const auto& el : *arr) {
    if (!el.is_string()) throw ConfigError(std::string(key), "must be an array of strings");
    out.push_back(el.as_string()->get());
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> Config::string_table(std::string_view key) const {
  impl_->read_tables.emplace(key);
  const toml::node* n = impl_->find(key);
  std::vector<std::pair<std::string, std::string>> out;
  if (n == nullptr) return out;
  const toml::table* t = n->as_table();
  if (t == nullptr) throw ConfigError(std::string(key), "must be a table");
  // librdkafka property names contain dots ("enable.idempotence"), which TOML
  // reads as nested tables unless quoted: flatten nested tables back to dotted names.
  auto flatten = [&](auto&& self, const toml::table& table, const std::string& prefix) -> void {
    for (const auto& [k, v] : table) {
      std::string name =
          prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
      if (v.is_table()) {
        self(self, *v.as_table(), name);
      } else if (v.is_string()) {
        out.emplace_back(name, v.as_string()->get());
      } else if (v.is_integer()) {
        out.emplace_back(name, std::to_string(v.as_integer()->get()));
      } else if (v.is_boolean()) {
        out.emplace_back(name, v.as_boolean()->get() ? "true" : "false");
      } else if (v.is_floating_point()) {
        char buf[32];
        auto r = std::to_chars(buf, buf + sizeof buf, v.as_floating_point()->get());
        out.emplace_back(name, std::string(buf, r.ptr));
      } else {
        throw ConfigError(std::string(key) + "." + name, "must be a string, number or boolean");
      }
    }
  };
  flatten(flatten, *t, "");
  // `--set table.a.b=v` reaches the file's quoted "a.b" under the same
  // flattened name: the later (command line) assignment wins, verbatim.
  std::string prefix = std::string(key) + ".";
  for (const auto& [k, v] : impl_->raw_overrides) {
    if (k.rfind(prefix, 0) != 0) continue;
    std::string name = k.substr(prefix.size());
    std::string value = v;
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    std::erase_if(out, [&](const auto& entry) { return entry.first == name; });
    out.emplace_back(name, value);
  }
  return out;
}

void Config::reject_unknown_keys() const {
  auto check = [&](auto&& self, const toml::table& table, const std::string& prefix) -> void {
    for (const auto& [k, v] : table) {
      std::string name =
          prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
      if (impl_->read_tables.contains(name) || impl_->read_keys.contains(name)) continue;
      if (v.is_table()) {
        self(self, *v.as_table(), name);
        continue;
      }
      throw ConfigError(name, "unknown key (not used by this program)");
    }
  };
  check(check, impl_->root, "");
}

Config load_config(const std::optional<std::filesystem::path>& file,
                   const std::vector<std::string>& overrides) {
  Config c = file ? Config::from_file(*file) : Config();
  for (const auto& o : overrides) c.apply_override(o);
  return c;
}

}  // namespace kpay::core
