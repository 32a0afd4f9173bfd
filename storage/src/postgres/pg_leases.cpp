// Claims with leases (pg_leases.hpp).
#include "postgres/pg_leases.hpp"

#include <algorithm>

#include "postgres/pg_rows.hpp"

namespace kpay::storage::pg {

namespace {

std::string claim_sql() {
  std::string sql =
      "UPDATE outbox SET status = 'in_flight', attempts = attempts + 1, updated_at_ms = $1, "
      "claimed_by = $3, lease_expires_at_ms = CASE WHEN $4 > 0 THEN $1 + $4 END "
      "WHERE id IN (SELECT id FROM outbox "
      "WHERE (status = 'pending' AND next_attempt_at_ms <= $1) "
      "OR ($4 > 0 AND status = 'in_flight' AND updated_at_ms <= $1 - $4) "
      "ORDER BY next_attempt_at_ms, id LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING ";
  sql.append(kOutboxColumns);
  return sql;
}

}  // namespace

std::vector<OutboxRow> claim_due_outbox(Connection& c, const OutboxClaim& claim) {
  static const std::string sql = claim_sql();
  auto rows = outbox_rows(c.query(sql, params(claim.now_ms, static_cast<std::int64_t>(claim.limit),
                                              claim.owner, claim.lease_ms)),
                          true);
  // RETURNING gives no order: oldest due first, as claimed.
  std::sort(rows.begin(), rows.end(), [](const OutboxRow& a, const OutboxRow& b) {
    return std::pair(a.next_attempt_at_ms, a.id) < std::pair(b.next_attempt_at_ms, b.id);
  });
  return rows;
}

bool record_outbox_answer(Connection& c, const OutboxUpdate& u) {
  Params p;
  p.add(to_string(u.status)).add(u.next_attempt_at_ms).add(u.now_ms).add(u.last_status);
  p.add(u.last_error).add(u.result).add(u.id).add(u.owner);
  return c.query(
              "UPDATE outbox SET status = $1, next_attempt_at_ms = $2, updated_at_ms = $3, "
              "last_status = COALESCE($4, last_status), last_error = $5, "
              "result = COALESCE($6, result), claimed_by = NULL, lease_expires_at_ms = NULL "
              "WHERE id = $7 AND ($8 = '' OR (status = 'in_flight' AND claimed_by = $8))",
              p)
             .affected() == 1;
}

bool hold_outbox_claim(Connection& c, std::int64_t id, const std::string& owner) {
  if (owner.empty()) return true;
  return c.query(
              "SELECT 1 FROM outbox WHERE id = $1 AND status = 'in_flight' AND claimed_by = $2 "
              "FOR UPDATE",
              params(id, owner))
             .rows() == 1;
}

std::int64_t release_outbox_claims(Connection& c, const std::string& owner, std::int64_t now_ms) {
  return c
      .query(
          "UPDATE outbox SET status = 'pending', next_attempt_at_ms = $2, updated_at_ms = $2, "
          "claimed_by = NULL, lease_expires_at_ms = NULL "
          "WHERE status = 'in_flight' AND ($1 = '' OR claimed_by = $1)",
          params(owner, now_ms))
      .affected();
}

bool hold_job(Connection& c, const std::string& job, const Claimant& who) {
  return c.query(
              "INSERT INTO job_leases AS l (job, owner, expires_ms) "
              "VALUES ($1, $2, kpay_now_ms() + $3) ON CONFLICT (job) DO UPDATE "
              "SET owner = EXCLUDED.owner, expires_ms = EXCLUDED.expires_ms "
              "WHERE l.owner = EXCLUDED.owner OR l.expires_ms <= kpay_now_ms() "
              "RETURNING owner",
              params(job, who.owner, static_cast<std::int64_t>(who.lease.count())))
             .rows() == 1;
}

void release_job(Connection& c, const std::string& job, const std::string& owner) {
  c.query("DELETE FROM job_leases WHERE job = $1 AND owner = $2", params(job, owner));
}

std::optional<std::string> job_holder(Connection& c, const std::string& job) {
  Result r = c.query("SELECT owner FROM job_leases WHERE job = $1 AND expires_ms > kpay_now_ms()",
                     params(job));
  if (r.rows() == 0) return std::nullopt;
  return r.text(0, 0);
}

}  // namespace kpay::storage::pg
