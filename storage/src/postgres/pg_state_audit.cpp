// The audit trail and the command senders' day totals on PostgreSQL
// (pg_state.hpp); the SQLite twin is audit_log.cpp. audit_events is
// append-only: its triggers (pg_schema.cpp) refuse UPDATE, DELETE, TRUNCATE.
#include "postgres/pg_state.hpp"

namespace kpay::storage::pg {

namespace {

constexpr std::string_view kAuditColumns =
    "seq, at_ms, kind, sender, command_id, operation, entity_id, outbox_id, attempt, "
    "status, detail, request, klarna_status, operator";

std::vector<AuditEvent> audit_events(const Result& r) {
  std::vector<AuditEvent> out;
  for (int i = 0; i < r.rows(); ++i) {
    AuditEvent e;
    e.seq = r.int64(i, 0);
    e.at_ms = r.int64(i, 1);
    e.kind = r.text(i, 2);
    e.sender = r.optional_text(i, 3);
    e.command_id = r.optional_text(i, 4);
    e.operation = r.optional_text(i, 5);
    e.entity_id = r.optional_text(i, 6);
    e.outbox_id = r.optional_int64(i, 7);
    e.attempt = r.optional_int64(i, 8);
    e.status = r.text(i, 9);
    e.detail = r.optional_text(i, 10);
    e.request = r.optional_text(i, 11);
    e.klarna_status = r.optional_int64(i, 12);
    e.operator_name = r.optional_text(i, 13);
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace

std::int64_t PgState::append_audit(const AuditEvent& e) {
  Params p = params(e.at_ms, e.kind, e.sender, e.command_id, e.operation, e.entity_id);
  p.add(e.outbox_id).add(e.attempt).add(e.status).add(e.detail).add(e.request).add(e.klarna_status);
  p.add(e.operator_name);
  return c_
      .query(
          "INSERT INTO audit_events (at_ms, kind, sender, command_id, operation, entity_id, "
          "outbox_id, attempt, status, detail, request, klarna_status, operator) "
          "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING seq",
          p)
      .int64(0, 0);
}

std::vector<AuditEvent> PgState::list_audit(const AuditQuery& q) {
  Result r = c_.query(std::string("SELECT ").append(kAuditColumns) +
                          " FROM audit_events "
                          "WHERE seq > $1 AND at_ms >= $2 AND ($3 = '' OR sender = $3) "
                          "AND ($4 = '' OR command_id = $4 OR outbox_id IN "
                          "(SELECT outbox_id FROM audit_events WHERE command_id = $4)) "
                          "AND ($6 = '' OR operator = $6) ORDER BY seq LIMIT $5",
                      params(q.after_seq, q.since_ms, q.sender, q.command_id,
                             static_cast<std::int64_t>(q.limit), q.operator_name));
  return audit_events(r);
}

std::vector<AuditEvent> PgState::audit_of_outbox(std::int64_t outbox_id) {
  return audit_events(c_.query(std::string("SELECT ").append(kAuditColumns) +
                                   " FROM audit_events WHERE outbox_id = $1 ORDER BY seq",
                               params(outbox_id)));
}

void PgState::add_sender_day_total(const std::string& sender, const std::string& day,
                                   const std::string& currency, std::int64_t amount) {
  c_.write(
      "INSERT INTO sender_day_totals AS t (sender, day, currency, amount) VALUES ($1, $2, $3, $4) "
      "ON CONFLICT (sender, day, currency) DO UPDATE SET amount = t.amount + EXCLUDED.amount",
      params(sender, day, currency, amount));
}

std::optional<std::string> PgState::sender_of(const std::string& command_id) {
  Result r = c_.query("SELECT sender FROM commands WHERE command_id = $1", params(command_id));
  if (r.rows() == 0) return std::nullopt;
  return r.optional_text(0, 0);
}

std::int64_t PgState::spent(const std::string& sender, const std::string& currency,
                            const std::string& day) {
  return c_
      .query(
          "SELECT COALESCE(SUM(amount), 0) FROM sender_day_totals "
          "WHERE sender = $1 AND day = $2 AND currency = $3",
          params(sender, day, currency))
      .int64(0, 0);
}

std::int64_t PgState::audit_published_through() {
  Result r = c_.query("SELECT through_seq FROM audit_published");
  return r.rows() ? r.int64(0, 0) : 0;
}

void PgState::lock_audit_trail() {
  c_.exec("LOCK TABLE audit_events IN SHARE ROW EXCLUSIVE MODE");
}

void PgState::set_audit_published_through(std::int64_t seq) {
  c_.query("UPDATE audit_published SET through_seq = $1", params(seq));
}

}  // namespace kpay::storage::pg
