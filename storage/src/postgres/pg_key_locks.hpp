// Serialisation keys of write transactions on PostgreSQL
// (UnitOfWork::begin_write_serialised; storage/README.md, "Unit of work").
//
// A write transaction is REPEATABLE READ: its snapshot is taken at its first
// statement, so a lock taken inside it cannot make it see a commit that came
// while it waited. The keys are therefore held by session-level advisory
// locks taken before BEGIN and released after COMMIT or ROLLBACK: a
// transaction that waited for one begins after the holder's commit and reads
// it. Every key maps to one 64-bit lock id (key_lock_id); the ids are taken
// in increasing order in one statement, so two store objects that each want
// several keys wait for each other in one direction only (no deadlock), and
// nobody waits for a key while inside a transaction. A wait is bounded by
// kKeyLockTimeout (then 55P03: transient, the caller retries).
//
// A processor that dies while holding keys: its session ends and the server
// releases them. One that loses its connection: the same, once the server
// notices the session is gone (TCP keepalive). One stopped while holding
// them (SIGSTOP, a debugger, a paused VM): inside the transaction the
// session's idle_in_transaction_session_timeout ends it; outside (keys
// taken, the transaction not begun yet, or committed and the keys not yet
// released) idle_session_timeout does, set to the same value while the keys
// are held (PostgreSQL 14 or later) and reset when they are released, so an
// idle session holding nothing is never ended. Until then the waiters fail
// transiently after kKeyLockTimeout and retry.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "postgres/pg.hpp"

namespace kpay::storage::pg {

inline constexpr std::chrono::milliseconds kKeyLockTimeout{10000};

// FNV-1a 64 of "kpay-key:" + key: the same id on every processor and release.
std::int64_t key_lock_id(std::string_view key);

class KeyLocks {
 public:
  // Takes the locks of `keys` on `c` (none: nothing), waiting at most
  // `timeout` for each. Throws PgError (55P03 after the timeout: transient),
  // then holds none.
  KeyLocks(Connection& c, std::span<const std::string> keys,
           std::chrono::milliseconds timeout = kKeyLockTimeout);
  // Releases them (a lost connection released them on the server already).
  ~KeyLocks();
  KeyLocks(const KeyLocks&) = delete;
  KeyLocks& operator=(const KeyLocks&) = delete;

 private:
  void release() noexcept;
  Connection& c_;
  bool held_ = false;
};

}  // namespace kpay::storage::pg
