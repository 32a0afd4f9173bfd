// The PostgreSQL state store as the processor and klarnactl configure it:
// `processor.store = "postgresql"`, `postgresql.dsn`, `postgresql.password_file`
// (docs/OPERATIONS.md, "Running on PostgreSQL"). Built on libpq
// (storage/src/postgres); SQLite stays the default.
#pragma once

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include "kpay/storage/store.hpp"

namespace kpay::storage {

enum class StoreBackend { sqlite, postgresql };

// "sqlite" | "postgresql"; throws std::invalid_argument for another name.
StoreBackend parse_store_backend(std::string_view name);
std::string_view store_backend_name(StoreBackend b);

struct PostgresSettings {
  // libpq connection string or URI: host(s), port, dbname, user, sslmode,
  // target_session_attrs=read-write for a replicated server. A password
  // belongs in password_file, not here (the DSN is shown in errors' context).
  std::string dsn;
  // A file whose first line is the password (mode 0600/0400, like every
  // secret here); empty: none (peer or certificate authentication).
  std::string password_file;
  // How long an outbox row or a job (watchers, publish drain) claimed by a
  // processor stays its own without renewal; after that, another takes it.
  std::chrono::milliseconds claim_lease{45000};
  // The server ends a session of this store that stays idle inside a
  // transaction longer than this (idle_in_transaction_session_timeout, set
  // on each session): a processor stopped mid-transaction (SIGSTOP, a
  // debugger, a paused VM) then holds its row locks no longer, and once
  // resumed finds its session gone, reconnects and retries its batch (a
  // transient fault), which the offset fence then skips if another
  // processor applied it meanwhile. Below Kafka's session timeout (45 s by
  // default), so the locks are gone before its partitions are handed over;
  // far above any pause between a transaction's statements (nothing here
  // waits on the network inside one). 0: the server's own setting.
  std::chrono::milliseconds idle_in_transaction_timeout{30000};
  // This processor's name in its claims (unique among the processors on one
  // database). Stable across restarts (e.g. the host's name), a restarted
  // processor takes its own in_flight calls back at once; otherwise they wait
  // for their lease. Empty: host name and process id.
  std::string instance;
};

// Opens a store (one connection) on the PostgreSQL state database; creates
// and migrates its schema unless `read_only` (which refuses a schema older
// than this binary's, as SQLite's read-only stores do). Throws
// SchemaTooNewError for a database of a newer release, StoreError (transient
// when the server cannot be reached) otherwise; messages never hold the
// password.
std::unique_ptr<Store> open_postgres_store(const PostgresSettings& settings,
                                           bool read_only = false);

// The password in `path`: its first line, without the line end. Throws
// std::runtime_error naming the file (never anything read from it) when it
// cannot be read, is empty, or is readable by group or others.
std::string read_password_file(const std::string& path);

}  // namespace kpay::storage
