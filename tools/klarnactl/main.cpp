#include <iostream>

#include "klarnactl.hpp"
#include "kpay/core/kafka.hpp"
#include "kpay/storage/sqlite.hpp"

namespace kpay::ctl {
core::Config GlobalOptions::load() const {
  std::optional<std::filesystem::path> file;
  if (config_file) file = *config_file;
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
  app.set_version_flag("--version", "klarnactl " KPAY_VERSION);
  kpay::ctl::register_keys_commands(app, global);
  kpay::ctl::register_payments_commands(app, global);
  kpay::ctl::register_disputes_commands(app, global);
  kpay::ctl::register_actions_commands(app, global);
  kpay::ctl::register_commands_commands(app, global);
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
  } catch (const kpay::storage::SqliteError& e) {
    std::cerr << "klarnactl: database error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "klarnactl: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
