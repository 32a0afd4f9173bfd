// The errors every state store backend throws (storage/README.md, "Errors").
//
// A caller never looks at a backend's own codes: it asks is_transient().
// Transient: the database was busy, locked, out of disk, unreachable or
// restarting — the same work may succeed later, so the processor rolls its
// batch back, reports not-ready and retries. Not transient: the work itself is
// wrong (a constraint, a schema mismatch, a bug); retrying gives the same error.
#pragma once

#include <stdexcept>
#include <string>

namespace kpay::storage {

// What kind of fault a transient error is, for operators (/readyz, the
// metric kpay_processor_state_store_failing{reason}): each backend maps its own
// codes onto these. `conflict`: another writer's transaction changed the same
// rows at the same time (PostgreSQL: serialization failure 40001, deadlock
// 40P01), normal with several processors on one database: the store is
// healthy, the rolled-back work is simply done again.
enum class StoreFault {
  disk_full,
  io_error,
  busy,
  read_only,
  cannot_open,
  unreachable,
  conflict,
  other
};

class StoreError : public std::runtime_error {
 public:
  StoreError(const std::string& what, bool transient, StoreFault fault = StoreFault::other)
      : std::runtime_error(what), transient_(transient), fault_(fault) {}
  bool is_transient() const noexcept { return transient_; }
  StoreFault fault() const noexcept { return fault_; }

 private:
  bool transient_;
  StoreFault fault_;
};

// A database written by a newer release (its schema version is above the
// newest this binary knows). Refused before anything is written.
class SchemaTooNewError : public StoreError {
 public:
  explicit SchemaTooNewError(const std::string& what) : StoreError(what, false) {}
};

}  // namespace kpay::storage
