// Configuration shared by every binary: one TOML file, overridable from the
// command line with `--set section.key=value`.
//
// Contract: every accessor validates what it reads and throws ConfigError naming
// the dotted key and the reason; binaries catch it at start-up and exit with code 2.
// After a binary has read all its settings it calls reject_unknown_keys(), so a
// typo in a key is refused at start instead of being silently ignored.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kpay::core {

class ConfigError : public std::runtime_error {
 public:
  ConfigError(std::string key, const std::string& reason);
  const std::string& key() const noexcept { return key_; }

 private:
  std::string key_;
};

class Config {
 public:
  Config();  // empty: every accessor returns its fallback
  ~Config();
  Config(Config&&) noexcept;
  Config& operator=(Config&&) noexcept;

  static Config from_file(const std::filesystem::path& file);
  static Config from_string(std::string_view toml_text, std::string_view source = "<string>");

  // `dotted.key=value`; value is parsed as a TOML value (42, true, "text", [..]),
  // and taken as a bare string when it is not one.
  void apply_override(std::string_view assignment);

  bool has(std::string_view key) const;
  std::string string(std::string_view key, std::string_view fallback) const;
  std::optional<std::string> optional_string(std::string_view key) const;
  std::int64_t integer(std::string_view key, std::int64_t fallback, std::int64_t min,
                       std::int64_t max) const;
  bool boolean(std::string_view key, bool fallback) const;
  // Durations are integers in milliseconds (keys end in `_ms` by convention).
  std::chrono::milliseconds millis(std::string_view key, std::chrono::milliseconds fallback,
                                   std::chrono::milliseconds min,
                                   std::chrono::milliseconds max) const;
  std::vector<std::string> string_list(std::string_view key,
                                       const std::vector<std::string>& fallback) const;
  // Every entry of a table as (name, value-as-string): used to pass arbitrary
  // properties through to librdkafka. The whole table counts as known.
  std::vector<std::pair<std::string, std::string>> string_table(std::string_view key) const;

  // Throws ConfigError for the first key present in the file that no accessor read.
  void reject_unknown_keys() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Standard start-up: load `file` (if given), apply overrides in order.
Config load_config(const std::optional<std::filesystem::path>& file,
                   const std::vector<std::string>& overrides);

}  // namespace kpay::core
