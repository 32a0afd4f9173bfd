// Claims with leases, for N processors sharing one PostgreSQL state:
//
// - outbox rows: claimed with FOR UPDATE SKIP LOCKED (two processors never
//   claim one row, and neither waits for the other's), in_flight with the
//   claimant's id and a lease expiry. The claimant records the answer only
//   while it still holds the claim; a row whose claimant died is claimed again
//   once its lease expired, and sent again with the same idempotency key.
// - job leases (job_leases): a job one processor at a time runs (the deadline
//   and dispute watchers, the publish-queue drain) is held by renewing its
//   lease before it expires; another processor takes it over after.
//
// Lease times are the database server's clock (kpay_now_ms()), never a
// processor's: processors' clocks may disagree, the server's is one.
// Call times (next_attempt_at_ms, updated_at_ms) stay the caller's `now_ms`.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kpay/storage/state_store.hpp"
#include "postgres/pg.hpp"

namespace kpay::storage::pg {

struct Claimant {
  std::string owner;                       // this processor's id (host:pid:start)
  std::chrono::milliseconds lease{30000};  // how long a claim holds without renewal
};

// Pending rows due at `now_ms` and in_flight rows whose lease expired,
// oldest due first, at most `limit`: marked in_flight for `who` with
// attempts+1, returned WITH call_token (for sending only).
std::vector<OutboxRow> claim_due_outbox(Connection& c, const Claimant& who, std::int64_t now_ms,
                                        std::size_t limit);
// Records an attempt's answer while `owner` still holds the row's claim;
// false when the claim was lost (its lease expired and another processor
// claimed the row: that one records the answer of its own resend).
bool record_outbox_answer(Connection& c, const std::string& owner, const OutboxUpdate& u);
// Extends `owner`'s claims on these rows (a call that takes longer than
// expected); returns how many it still held.
std::int64_t renew_outbox_claims(Connection& c, const Claimant& who,
                                 const std::vector<std::int64_t>& ids);
// A processor stopping cleanly gives its claims back (pending, due now);
// returns how many.
std::int64_t release_outbox_claims(Connection& c, const std::string& owner, std::int64_t now_ms);
// When the worker should look again: the earliest pending next_attempt_at_ms,
// or an in_flight lease's expiry as the caller's clock would show it.
std::optional<std::int64_t> next_outbox_wakeup(Connection& c, std::int64_t now_ms);

// Takes or renews the lease of `job` for `who`; true while `who` holds it.
bool hold_job(Connection& c, const std::string& job, const Claimant& who);
void release_job(Connection& c, const std::string& job, const std::string& owner);
// The holder of a job while its lease lasts.
std::optional<std::string> job_holder(Connection& c, const std::string& job);

}  // namespace kpay::storage::pg
