// Claims with leases, for N processors sharing one PostgreSQL state
// (storage/README.md, "Outbox: claims, leases, answers"):
//
// - outbox rows: claimed with FOR UPDATE SKIP LOCKED (two processors never
//   claim one row, and neither waits for the other's), in_flight under the
//   claimer's name (claimed_by). With a lease, an in_flight row claimed at or
//   before now - lease is claimed again (its claimer presumed dead) and sent
//   again with the same idempotency key; the answer is recorded only while
//   the row is still in_flight under the name that sends it. Lease times are
//   the callers' clocks (now_ms): processors' hosts keep time (NTP); a skew
//   between two shortens or lengthens a lease by that much.
// - job leases (job_leases): a job one processor at a time runs (a watcher)
//   is held by renewing its lease before it expires; another processor takes
//   it over after. These use the database server's clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kpay/storage/rows.hpp"
#include "postgres/pg.hpp"

namespace kpay::storage::pg {

struct Claimant {
  std::string owner;                       // this processor's name
  std::chrono::milliseconds lease{30000};  // how long a claim holds without renewal
};

// OutboxStore::claim_due_outbox: due pending rows, and (lease_ms > 0)
// in_flight rows claimed at or before now - lease; oldest due first; marked
// in_flight for claim.owner with attempts+1; returned WITH call_token.
std::vector<OutboxRow> claim_due_outbox(Connection& c, const OutboxClaim& claim);
// OutboxStore::update_outbox: with an owner, only while the row is in_flight
// under it (false: the claim was lost); without one (a single processor),
// by id alone.
bool record_outbox_answer(Connection& c, const OutboxUpdate& u);
// OutboxStore::hold_outbox_claim: without an owner (a single processor)
// true; else locks the row (FOR UPDATE, until the transaction ends: a
// claimer's SKIP LOCKED passes it by) while it is in_flight under `owner`;
// false when the claim was lost.
bool hold_outbox_claim(Connection& c, std::int64_t id, const std::string& owner);
// OutboxStore::release_in_flight_outbox: `owner`'s in_flight rows (all of
// them when empty) become pending, due now; returns how many.
std::int64_t release_outbox_claims(Connection& c, const std::string& owner, std::int64_t now_ms);

// Takes or renews the lease of `job` for `who`; true while `who` holds it.
bool hold_job(Connection& c, const std::string& job, const Claimant& who);
void release_job(Connection& c, const std::string& job, const std::string& owner);
// The holder of a job while its lease lasts.
std::optional<std::string> job_holder(Connection& c, const std::string& job);

}  // namespace kpay::storage::pg
