// Everything klarna-processor reads from its configuration, in one place: the
// daemon's main and klarnactl (which must know every key the processor reads,
// to refuse the others) both use it.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "kpay/core/config.hpp"
#include "kpay/core/log.hpp"
#include "kpay/klarna/api_client.hpp"
#include "kpay/processor/consumer.hpp"
#include "kpay/processor/dispute_deadlines.hpp"
#include "kpay/processor/outbox_worker.hpp"
#include "kpay/storage/open_store.hpp"
#include "kpay/storage/postgres.hpp"

namespace kpay::processor {

struct DaemonSettings {
  core::LogLevel log_level = core::LogLevel::info;
  // processor.store: where the state lives (docs/OPERATIONS.md, "Running on
  // PostgreSQL"); `database` and `cache_mib` are SQLite's, `postgresql` the server's.
  storage::StoreBackend store = storage::StoreBackend::sqlite;
  std::string database;  // default: storage::kDefaultStateDatabase
  int cache_mib = 32;
  // processor.sqlite_checkpoint_mib: the WAL size at which SQLite checkpoints.
  int checkpoint_mib = 512;
  storage::PostgresSettings postgresql;
  std::string admin_host = "127.0.0.1";
  std::uint16_t admin_port = 9102;
  ProcessorSettings processor;
  WorkerSettings worker;
  klarna::ClientSettings client;
  DeadlineWatchSettings dispute_deadlines;
  std::chrono::milliseconds call_warning_window{std::chrono::minutes(10)};
};

// Reads every key the processor reads (throws core::ConfigError naming the
// key of a bad value). Does not refuse unknown keys: check_daemon_settings.
DaemonSettings daemon_settings_from_config(const core::Config& config);

// What the daemon checks before it starts, in this order: unknown keys, the
// API credentials live/test need while the worker is on, the PostgreSQL DSN
// and password file (processor.store = "postgresql") or the SQLite
// database's directory. Throws core::ConfigError naming the key.
void check_daemon_settings(const core::Config& config, const DaemonSettings& s);

// Opens a store (one connection) of the configured backend: SQLite's file
// `database` or the PostgreSQL database of `postgresql`.
std::unique_ptr<storage::Store> open_state_store(const DaemonSettings& s,
                                                 const storage::StoreOptions& options);

}  // namespace kpay::processor
