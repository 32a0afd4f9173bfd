// Small helpers the klarnactl families share (header only).
#pragma once

#include <CLI/CLI.hpp>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "klarnactl.hpp"
#include "kpay/processor/daemon_settings.hpp"
#include "kpay/processor/events.hpp"
#include "kpay/storage/defaults.hpp"
#include "kpay/storage/open_store.hpp"

namespace kpay::ctl {

constexpr std::size_t kMaxRows = 1'000'000;

// --limit N: 1 … kMaxRows; 0 or a negative value is a usage error (exit 2),
// never "everything".
inline CLI::Option* add_limit(CLI::App* cmd, std::size_t& limit) {
  return cmd->add_option("--limit", limit, "At most this many rows (1-1000000)")
      ->check(CLI::Range(std::size_t{1}, kMaxRows))
      ->capture_default_str();
}

// An RFC 3339 option value in ms since the epoch; a bad one is a usage error.
inline std::int64_t parse_time_option(const std::string& option, const std::string& text) {
  auto ms = processor::parse_rfc3339_ms(text);
  if (!ms) throw CLI::ValidationError(option, "not an RFC 3339 time: " + text);
  return *ms;
}

// The processor's state store (processor.database); it must exist. With
// processor.store = "postgresql", the processor's PostgreSQL database.
inline std::unique_ptr<storage::Store> open_state_store(const GlobalOptions& g, bool write) {
  auto cfg = g.load();
  if (cfg.string("processor.store", "sqlite") == "postgresql") {
    return processor::open_state_store(processor::daemon_settings_from_config(cfg),
                                       {.read_only = !write, .cache_mib = 8});
  }
  const auto path = cfg.string("processor.database", storage::kDefaultStateDatabase);
  if (!std::filesystem::exists(path)) {
    throw CommandFailed("no processor database at '" + path + "' (processor.database)");
  }
  return storage::open_store(path, {.read_only = !write, .cache_mib = 8});
}

}  // namespace kpay::ctl
