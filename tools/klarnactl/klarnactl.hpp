// klarnactl: the operators' command line. Each command family lives in its own
// file and registers its subcommands here; main.cpp only wires them.
#pragma once

#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <vector>

#include "kpay/core/config.hpp"

namespace kpay::ctl {

// Options every subcommand shares; filled in by CLI11 before any callback runs.
struct GlobalOptions {
  std::optional<std::string> config_file;  // the same TOML file the daemons read
  std::vector<std::string> overrides;      // --set section.key=value

  // Loads the configuration (throws core::ConfigError → exit 2).
  core::Config load() const;
};

// Exit codes: 0 ok, 1 operation failed (e.g. unknown id), 2 bad usage/config.
// Subcommand callbacks throw CommandFailed to end with code 1 and a message.
struct CommandFailed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Sending a downstream command (klarna.commands) the way a payment system does
// (commands_commands.cpp): checked with the processor's decoder, produced,
// and with `wait` followed on klarna.command-results to its final result.
struct SendOptions {
  std::string command_id;  // default: a random "ctl-…"
  std::string key;         // default: the entity the command is about
  bool wait = false;
  int timeout_s = 60;
  bool json = false;
};
// Adds --command-id, --key, --wait, --timeout, --json to `cmd`.
CLI::App* with_send_options(CLI::App* cmd, SendOptions& o);
// Fills in a random command_id when none was given (before building the JSON).
void prepare(SendOptions& o);
// Throws CommandFailed when --wait saw a final result other than succeeded.
void send(const GlobalOptions& g, const SendOptions& o, const std::string& key,
          const std::string& json);

void register_keys_commands(CLI::App& app, const GlobalOptions& global);
void register_payments_commands(CLI::App& app, const GlobalOptions& global);
void register_disputes_commands(CLI::App& app, const GlobalOptions& global);
void register_actions_commands(CLI::App& app, const GlobalOptions& global);
void register_commands_commands(CLI::App& app, const GlobalOptions& global);
void register_dead_letters_commands(CLI::App& app, const GlobalOptions& global);
void register_status_command(CLI::App& app, const GlobalOptions& global);  // status_commands.cpp
void register_top_command(CLI::App& app, const GlobalOptions& global);     // top_command.cpp

}  // namespace kpay::ctl
