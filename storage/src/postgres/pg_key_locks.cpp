// Session-level advisory locks on serialisation keys (pg_key_locks.hpp).
#include "postgres/pg_key_locks.hpp"

#include <algorithm>
#include <vector>

namespace kpay::storage::pg {

std::int64_t key_lock_id(std::string_view key) {
  std::uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a 64 offset basis
  auto mix = [&h](std::string_view bytes) {
    for (unsigned char b : bytes) {
      h ^= b;
      h *= 0x100000001b3ULL;  // FNV prime
    }
  };
  mix("kpay-key:");
  mix(key);
  return static_cast<std::int64_t>(h);
}

namespace {

// How long a session holding keys may stay idle outside a transaction: the
// connection's idle-in-transaction limit, where the server has
// idle_session_timeout (14 and later; 0: not set).
std::chrono::milliseconds idle_limit(const Connection& c) {
  if (PQserverVersion(c.handle()) < 140000) return std::chrono::milliseconds(0);
  return c.options().idle_in_transaction_timeout;
}

}  // namespace

KeyLocks::KeyLocks(Connection& c, std::span<const std::string> keys,
                   std::chrono::milliseconds timeout)
    : c_(c) {
  if (keys.empty()) return;
  std::vector<std::int64_t> ids;
  ids.reserve(keys.size());
  for (const auto& k : keys) ids.push_back(key_lock_id(k));
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  // Integers only in the text: nothing of a key reaches the SQL. The array
  // is unnested in its (increasing) order, one lock after the other; the
  // timeout is this statement's (LOCAL to its implicit transaction), while
  // the locks are the session's and outlive it.
  std::string sql = "SET LOCAL lock_timeout = " + std::to_string(timeout.count()) + "; ";
  if (const auto idle = idle_limit(c_); idle.count() > 0) {
    // The session's, kept once this implicit transaction commits (none if
    // it fails): a holder stopped outside a transaction is ended too.
    sql += "SET idle_session_timeout = " + std::to_string(idle.count()) + "; ";
  }
  sql += "SELECT pg_advisory_lock(k) FROM unnest(ARRAY[";
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i != 0) sql += ',';
    sql += std::to_string(ids[i]);
  }
  sql += "]::bigint[]) AS k";
  held_ = true;  // a failure may leave some taken: release() lets them go
  try {
    c_.exec(sql);
  } catch (...) {
    release();
    throw;
  }
}

KeyLocks::~KeyLocks() {
  release();
}

void KeyLocks::release() noexcept {
  if (!held_) return;
  held_ = false;
  if (!c_.ok()) return;  // the session is gone, and its locks with it
  // This connection holds no other session-level advisory lock (the jobs'
  // locks are transaction-scoped: pg_schema.hpp).
  PGresult* r =
      PQexec(c_.handle(), idle_limit(c_).count() > 0
                              ? "RESET idle_session_timeout; SELECT pg_advisory_unlock_all()"
                              : "SELECT pg_advisory_unlock_all()");
  const bool released = PQresultStatus(r) == PGRES_TUPLES_OK;
  PQclear(r);
  if (released || !c_.ok()) return;
  // Kept by a live session, the keys would stall every other processor:
  // a new session holds none.
  try {
    c_.reconnect();
  } catch (const PgError&) {
    // Not connected now: the next call outside a transaction connects.
  }
}

}  // namespace kpay::storage::pg
