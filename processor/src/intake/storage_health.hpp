// What the consumer knows about its state store while commits fail: the
// kind of fault (disk full, I/O error, locked, read-only, cannot open), for
// /readyz, the log and the metric kpay_processor_state_store_failing{reason}.
//
// A full disk is told apart from other I/O errors: the store says so
// (StoreFault::disk_full; SQLite: SQLITE_FULL), or any I/O error while the
// database's filesystem has no room left for a page (statvfs; SQLite only: a
// server database has no local file). While it lasts nothing can be stored, so nothing is consumed:
// the batch in hand is retried until space returns (docs/RELIABILITY.md,
// "A full disk").
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

#include "kpay/core/log.hpp"
#include "kpay/core/metrics.hpp"
#include "kpay/storage/store_error.hpp"

namespace kpay::processor {

class StorageHealth {
 public:
  // The reasons, as the metric's label values.
  static constexpr const char* kReasons[] = {"disk_full",   "io_error",    "busy", "read_only",
                                             "cannot_open", "unreachable", "other"};

  // `database`: the state database's file (its directory is what statvfs
  // looks at); "" when the store has none (a server database).
  StorageHealth(std::string database, core::Registry& registry);

  // A storage fault made a transaction roll back (store thread). Logs the
  // change into (or between) fault kinds once; every attempt is counted by
  // the caller. True when the fault is a full disk.
  bool failed(const storage::StoreError& e);
  // A transaction committed (store thread). Logs the recovery once.
  void succeeded();

  bool ok() const;
  // "state store failing: disk full …" for /readyz; empty when ok.
  std::string reason() const;

  // The fault's kind: one of kReasons.
  static const char* classify(storage::StoreFault fault, std::int64_t free_bytes);
  // Bytes the unprivileged user may still write on the filesystem holding
  // `path` (-1 when unknown).
  static std::int64_t free_bytes(const std::string& path);

 private:
  std::string database_;
  core::Logger log_{"processor.storage"};
  mutable std::mutex mu_;
  const char* reason_ = nullptr;  // nullptr: ok
  std::string detail_;
  std::chrono::steady_clock::time_point since_{};
};

}  // namespace kpay::processor
