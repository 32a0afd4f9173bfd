// klarnactl store copy: moves the processor's SQLite state into the
// PostgreSQL database of the configuration's [postgresql] section, in one
// PostgreSQL transaction (kpay/storage/store_copy.hpp; docs/KLARNACTL.md and
// docs/OPERATIONS.md, "Moving a SQLite state to PostgreSQL": stop, copy,
// switch processor.store, start).
#include <filesystem>
#include <iostream>

#include "ctl_support.hpp"
#include "klarnactl.hpp"
#include "kpay/core/json_writer.hpp"
#include "kpay/storage/store_copy.hpp"

namespace kpay::ctl {

namespace {

struct CopyOptions {
  std::string from;  // default: processor.database
  bool json = false;
};

void print_report(const std::string& from, const storage::StoreCopyReport& r, bool json) {
  if (json) {
    core::JsonWriter w;
    w.begin_object().field("from", from).field("to", r.target);
    w.field("schema_version", std::int64_t{r.schema_version}).key("tables").begin_array();
    for (const auto& t : r.tables)
      w.begin_object().field("table", t.table).field("rows", t.rows).end_object();
    w.end_array().field("total_rows", r.total_rows()).end_object();
    std::cout << w.take() << "\n";
    return;
  }
  std::cout << "copied " << from << " (schema version " << r.schema_version << ") to PostgreSQL "
            << r.target << " in one transaction\n";
  std::vector<std::vector<std::string>> rows = {{"TABLE", "ROWS"}};
  for (const auto& t : r.tables) rows.push_back({t.table, std::to_string(t.rows)});
  rows.push_back({"total", std::to_string(r.total_rows())});
  print_table(rows);
}

void copy(const GlobalOptions& g, const CopyOptions& o) {
  const auto cfg = g.load();
  const auto settings = processor::daemon_settings_from_config(cfg);
  if (settings.postgresql.dsn.empty()) {
    throw core::ConfigError("postgresql.dsn", "is required: the database to copy into");
  }
  const std::string from = o.from.empty() ? settings.database : o.from;
  if (!std::filesystem::exists(from)) {
    throw CommandFailed("no SQLite state database at '" + from + "' (--from, processor.database)");
  }
  try {
    print_report(from, storage::copy_sqlite_to_postgres(from, settings.postgresql), o.json);
  } catch (const storage::StoreCopyRefused& e) {
    throw CommandFailed(std::string("store copy refused, nothing written: ") + e.what());
  }
}

}  // namespace

void register_store_commands(CLI::App& app, const GlobalOptions& global) {
  auto* store = app.add_subcommand("store", "Move the processor's state between backends");
  store->require_subcommand(1);
  auto o = std::make_shared<CopyOptions>();
  auto* cmd = store->add_subcommand(
      "copy",
      "Copy a stopped processor's SQLite state into the empty PostgreSQL database of "
      "[postgresql] (one transaction)");
  cmd->add_option("--from", o->from, "SQLite state database (default: processor.database)");
  cmd->add_flag("--json", o->json, "Print the summary as JSON");
  cmd->callback([&global, o] { copy(global, *o); });
}

}  // namespace kpay::ctl
