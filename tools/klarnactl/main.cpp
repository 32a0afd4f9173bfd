#include <iostream>

#include "klarnactl.hpp"
#include "kpay/core/kafka.hpp"
#include "kpay/processor/daemon_settings.hpp"
#include "kpay/receiver/settings.hpp"
#include "kpay/storage/sqlite.hpp"
#include "security_commands.hpp"

namespace kpay::ctl {

namespace {

bool is_unknown_key(const core::ConfigError& e) {
  return std::string_view(e.what()).find("unknown key") != std::string_view::npos;
}

// Runs one program's reader over `c`, so the keys it reads are marked known.
// A bad value is that program's business (it refuses the file when it starts);
// here it only ends the reading early.
template <class Reader>
void read_as(core::Config& c, Reader&& reader) {
  try {
    reader(c);
  } catch (const core::ConfigError&) {
  }
}

// klarnactl reads the receiver's file (keys) and the processor's (payments,
// commands, dead letters), so a key is unknown when neither program reads it:
// both readers run over one copy of the configuration, then whatever is left
// unread is a typo. receiver.tls = false keeps the receiver's reader from
// stopping at a processor file's missing certificate.
void reject_keys_unknown_to_every_owner(const std::optional<std::filesystem::path>& file,
                                        std::vector<std::string> overrides) {
  overrides.push_back("receiver.tls=false");
  auto c = core::load_config(file, overrides);
  read_as(c, [](core::Config& cfg) { receiver::Settings::from_config(cfg); });
  read_as(c, [](core::Config& cfg) { processor::daemon_settings_from_config(cfg); });
  try {
    c.reject_unknown_keys();
  } catch (const core::ConfigError& e) {
    if (!is_unknown_key(e)) throw;
    throw core::ConfigError(e.key(),
                            "unknown key (read by neither klarna-receiver nor klarna-processor)");
  }
}

}  // namespace

core::Config GlobalOptions::load() const {
  std::optional<std::filesystem::path> file;
  if (config_file) file = *config_file;
  reject_keys_unknown_to_every_owner(file, overrides);
  return core::load_config(file, overrides);
}

}  // namespace kpay::ctl

int main(int argc, char** argv) {
  CLI::App app{"klarnactl: operate the Klarna webhook receiver and payment processor"};
  app.require_subcommand(1);
  app.fallthrough();  // --config/--set may follow the subcommand
  kpay::ctl::GlobalOptions global;
  app.add_option("-c,--config", global.config_file, "TOML configuration file (as the daemons use)");
  app.add_option("--set", global.overrides, "Override a configuration key: section.key=value");
  app.add_option("--operator", global.operator_name,
                 "Who acts, for the audit trail (default: $SUDO_USER, $USER, the uid's account)")
      ->each(kpay::ctl::check_operator_name);
  app.set_version_flag("--version", "klarnactl " KPAY_VERSION);
  kpay::ctl::register_keys_commands(app, global);
  kpay::ctl::register_senders_commands(app, global);
  kpay::ctl::register_audit_commands(app, global);
  kpay::ctl::register_payments_commands(app, global);
  kpay::ctl::register_disputes_commands(app, global);
  kpay::ctl::register_actions_commands(app, global);
  kpay::ctl::register_commands_commands(app, global);
  kpay::ctl::register_webhooks_commands(app, global);
  kpay::ctl::register_dead_letters_commands(app, global);
  kpay::ctl::register_settlements_commands(app, global);
  kpay::ctl::register_gaps_commands(app, global);
  kpay::ctl::register_status_command(app, global);
  kpay::ctl::register_top_command(app, global);
  kpay::ctl::register_store_commands(app, global);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  } catch (const kpay::core::ConfigError& e) {
    std::cerr << "klarnactl: configuration error: " << e.what() << "\n";
    return 2;
  } catch (const kpay::ctl::CommandFailed& e) {
    std::cerr << "klarnactl: " << e.what() << "\n";
    return 1;
  } catch (const kpay::storage::StoreError& e) {
    std::cerr << "klarnactl: database error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "klarnactl: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
