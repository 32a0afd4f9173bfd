// Opening the PostgreSQL store (kpay/storage/postgres.hpp).
#include <unistd.h>

#include "kpay/storage/postgres.hpp"
#include "postgres/pg_schema.hpp"
#include "postgres/pg_store.hpp"

namespace kpay::storage {

namespace {

std::string default_instance() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  return std::string(host) + ":" + std::to_string(::getpid());
}

}  // namespace

std::unique_ptr<Store> open_postgres_store(const PostgresSettings& settings, bool read_only) {
  pg::ConnectOptions options;
  options.dsn = settings.dsn;
  options.application_name = "klarna-processor";
  options.idle_in_transaction_timeout = settings.idle_in_transaction_timeout;
  if (!settings.password_file.empty()) {
    try {
      options.password = read_password_file(settings.password_file);
    } catch (const std::runtime_error& e) {
      throw StoreError(e.what(), false);
    }
  }
  pg::Connection c = pg::Connection::open(options);
  if (read_only) {
    const int version = pg::schema_version(c);
    const int newest = pg::state_migrations().back().version;
    if (version > newest) {
      throw SchemaTooNewError("database schema 'state' is at version " + std::to_string(version) +
                              ", newer than this binary supports (" + std::to_string(newest) +
                              "); upgrade the binary");
    }
    if (version < newest) {
      throw StoreError("database schema 'state' is version " + std::to_string(version) +
                           ", this binary reads " + std::to_string(newest) +
                           ": start klarna-processor once to migrate it",
                       false);
    }
  } else {
    pg::migrate(c);
  }
  std::string instance = settings.instance.empty() ? default_instance() : settings.instance;
  return std::make_unique<pg::PgStore>(std::move(c), std::move(instance), settings.claim_lease);
}

}  // namespace kpay::storage
