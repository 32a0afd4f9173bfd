// Opening the state store of the configured backend, without naming it in
// the caller (processor, klarnactl): they hold a storage::Store.
#pragma once

#include <memory>
#include <string>

#include "kpay/storage/store.hpp"

namespace kpay::storage {

// Process-wide backend settings; call before any store is opened and before
// other threads exist (SQLite: no global memory accounting, which takes a
// process-wide mutex on every allocation; connections are per thread anyway).
void configure_process();

struct StoreOptions {
  bool read_only = false;  // never migrates; refuses a schema older than the binary's
  int cache_mib = 32;      // page cache of this connection (SQLite; counts towards RSS)
  // SQLite: the WAL size at which a commit of this connection checkpoints
  // (copies the WAL's pages into the database file). Disk, not memory. The
  // processor's (processor.sqlite_checkpoint_mib) by default, so that a
  // klarnactl write never runs a checkpoint the processor would not yet.
  int checkpoint_mib = 512;
};

// Opens (creating and migrating unless read_only) the state store at
// `location` (SQLite: a file path). Throws SchemaTooNewError for a database
// written by a newer release, StoreError when it cannot be opened.
std::unique_ptr<Store> open_store(const std::string& location, const StoreOptions& options = {});

}  // namespace kpay::storage
