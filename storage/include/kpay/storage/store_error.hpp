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

class StoreError : public std::runtime_error {
 public:
  StoreError(const std::string& what, bool transient)
      : std::runtime_error(what), transient_(transient) {}
  bool is_transient() const noexcept { return transient_; }

 private:
  bool transient_;
};

// A database written by a newer release (its schema version is above the
// newest this binary knows). Refused before anything is written.
class SchemaTooNewError : public StoreError {
 public:
  explicit SchemaTooNewError(const std::string& what) : StoreError(what, false) {}
};

}  // namespace kpay::storage
