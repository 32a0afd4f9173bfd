#include "kpay/processor/daemon_settings.hpp"

#include <filesystem>
#include <stdexcept>

#include "kpay/core/secret_files.hpp"
#include "kpay/storage/defaults.hpp"

namespace kpay::processor {

namespace {

void check_postgresql_settings(const storage::PostgresSettings& p) {
  if (p.dsn.empty()) {
    throw core::ConfigError("postgresql.dsn", "is required with processor.store = \"postgresql\"");
  }
  if (!p.password_file.empty()) {
    if (std::string problem = core::private_file_problem(p.password_file); !problem.empty()) {
      throw core::ConfigError("postgresql.password_file", problem);
    }
  }
}

// A claimed call is another processor's to take over once its lease ends:
// the lease must outlast the call it covers (one request, up to
// klarna.request_timeout_ms, then recording its answer), or a slow answer
// would routinely meet a second send of the same call (same idempotency
// key, so not a second operation at Klarna, but a second request and a
// dropped answer).
void check_claim_lease(const DaemonSettings& s) {
  if (!s.worker.enabled) return;
  const auto timeout = s.client.request_timeout;
  if (s.postgresql.claim_lease * 2 < timeout * 3) {
    throw core::ConfigError("postgresql.claim_lease_ms",
                            "is " + std::to_string(s.postgresql.claim_lease.count()) +
                                " ms: it must be at least 1.5 × klarna.request_timeout_ms (" +
                                std::to_string(timeout.count()) +
                                " ms), so that a call still waiting for Klarna's answer is "
                                "not claimed and sent again by another processor");
  }
}

}  // namespace

DaemonSettings daemon_settings_from_config(const core::Config& config) {
  DaemonSettings s;
  try {
    s.log_level = core::parse_log_level(config.string("log.level", "info"));
  } catch (const std::invalid_argument& e) {
    throw core::ConfigError("log.level", e.what());
  }
  try {
    s.store = storage::parse_store_backend(config.string("processor.store", "sqlite"));
  } catch (const std::invalid_argument& e) {
    throw core::ConfigError("processor.store", e.what());
  }
  s.postgresql.dsn = config.string("postgresql.dsn", "");
  s.postgresql.password_file = config.string("postgresql.password_file", "");
  s.postgresql.instance = config.string("postgresql.instance", "");
  s.postgresql.claim_lease = config.millis("postgresql.claim_lease_ms", s.postgresql.claim_lease,
                                           std::chrono::seconds(1), std::chrono::hours(1));
  s.postgresql.idle_in_transaction_timeout = config.millis(
      "postgresql.idle_in_transaction_timeout_ms", s.postgresql.idle_in_transaction_timeout,
      std::chrono::milliseconds(0), std::chrono::hours(1));
  s.database = config.string("processor.database", storage::kDefaultStateDatabase);
  s.cache_mib = static_cast<int>(config.integer("processor.sqlite_cache_mib", 32, 2, 1024));
  s.checkpoint_mib = static_cast<int>(
      config.integer("processor.sqlite_checkpoint_mib", s.checkpoint_mib, 4, 16384));
  s.admin_host = config.string("admin.listen_address", s.admin_host);
  s.admin_port = static_cast<std::uint16_t>(config.integer("admin.port", s.admin_port, 0, 65535));
  s.processor = settings_from_config(config);
  s.worker = worker_settings_from_config(config);
  if (s.store == storage::StoreBackend::postgresql) s.worker.claim_lease = s.postgresql.claim_lease;
  s.client = client_settings_from_config(config);
  s.dispute_deadlines = deadline_watch_settings_from_config(config, s.processor.topics);
  s.call_warning_window = config.millis("worker.deadline_warning_ms", s.call_warning_window,
                                        std::chrono::milliseconds(0), std::chrono::hours(24));
  return s;
}

void check_daemon_settings(const core::Config& config, const DaemonSettings& s) {
  config.reject_unknown_keys();
  if (s.worker.enabled && s.client.environment != klarna::Environment::custom &&
      s.client.credentials_file.empty()) {
    throw core::ConfigError("klarna.credentials_file",
                            "is required to call Klarna's " +
                                std::string(klarna::environment_name(s.client.environment)) +
                                " environment (or set worker.enabled = false)");
  }
  if (s.store == storage::StoreBackend::postgresql) {
    check_postgresql_settings(s.postgresql);
    check_claim_lease(s);
    return;
  }
  // Checked last: a mistyped key or a missing credential is reported first.
  if (const auto dir = std::filesystem::path(s.database).parent_path();
      !dir.empty() && !std::filesystem::is_directory(dir)) {
    throw core::ConfigError("processor.database",
                            "its directory '" + dir.string() +
                                "' does not exist (the package's state directory; "
                                "elsewhere set processor.database)");
  }
}

std::unique_ptr<storage::Store> open_state_store(const DaemonSettings& s,
                                                 const storage::StoreOptions& options) {
  if (s.store == storage::StoreBackend::postgresql) {
    return storage::open_postgres_store(s.postgresql, options.read_only);
  }
  // Every connection that writes checkpoints at the same WAL size.
  storage::StoreOptions sqlite = options;
  sqlite.checkpoint_mib = s.checkpoint_mib;
  return storage::open_store(s.database, sqlite);
}

}  // namespace kpay::processor
