// The outbox's part of the SQLite state store (outbox_store.hpp): follow-up
// calls inserted with their idempotency key, claimed, answered, retried, and
// the deadlines they and open disputes carry.
#include <algorithm>
#include <string>

#include "kpay/storage/state_store.hpp"
#include "state_store_impl.hpp"

namespace kpay::storage {

bool StateStore::insert_outbox(const OutboxRow& o) {
  auto& s = impl_->prep(
      impl_->insert_outbox,
      "INSERT OR IGNORE INTO outbox (operation, entity_id, idempotency_key, request_body, "
      "call_token, due_by_ms, status, created_by_event_id, account_id, method, path, "
      "token_header, next_attempt_at_ms, created_at_ms, updated_at_ms, command_id, amount, "
      "capture_id, traceparent) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
  s.bind_view(1, to_string(o.operation)).bind_view(2, o.entity_id).bind_view(3, o.idempotency_key);
  s.bind_view(4, o.request_body).bind_view(5, o.call_token);
  s.bind_view(6, o.due_by_ms);
  s.bind_view(7, to_string(o.status)).bind_view(8, o.created_by_event_id);
  s.bind_view(9, o.account_id)
      .bind_view(10, o.method)
      .bind_view(11, o.path)
      .bind_view(12, o.token_header);
  s.bind_view(13, o.next_attempt_at_ms)
      .bind_view(14, o.created_at_ms)
      .bind_view(15, o.created_at_ms);
  s.bind_view(16, o.command_id);
  s.bind_view(17, o.amount);
  s.bind_view(18, o.capture_id);
  s.bind_view(19, non_empty(o.traceparent, trace_context().traceparent));
  s.run();
  return impl_->db.changes() == 1;
}

namespace {

// The columns every outbox read returns, in read_outbox_row's order.
constexpr std::string_view kOutboxColumns =
    "id, operation, entity_id, idempotency_key, request_body, due_by_ms, status, "
    "created_by_event_id, account_id, method, path, token_header, attempts, "
    "next_attempt_at_ms, created_at_ms, updated_at_ms, last_status, last_error, result, "
    "command_id, amount, capture_id, traceparent, call_token";

// call_token (the last column) only when the caller sends the call.
OutboxRow read_outbox_row(Statement& s, bool with_token) {
  OutboxRow o;
  o.id = s.int64(0);
  o.operation = stored(parse_outbox_operation(s.text(1)), "outbox operation", s.text(1));
  o.entity_id = s.text(2);
  o.idempotency_key = s.text(3);
  o.request_body = s.text(4);
  o.due_by_ms = s.optional_int64(5);
  o.status = stored(parse_outbox_status(s.text(6)), "outbox status", s.text(6));
  o.created_by_event_id = s.text(7);
  o.account_id = s.text(8);
  o.method = s.text(9);
  o.path = s.text(10);
  o.token_header = s.text(11);
  o.attempts = s.int64(12);
  o.next_attempt_at_ms = s.int64(13);
  o.created_at_ms = s.int64(14);
  o.updated_at_ms = s.int64(15);
  o.last_status = s.optional_int64(16);
  o.last_error = s.optional_text(17);
  o.result = s.optional_text(18);
  o.command_id = s.optional_text(19);
  o.amount = s.optional_int64(20);
  o.capture_id = s.optional_text(21);
  o.traceparent = s.optional_text(22).value_or("");
  if (with_token) o.call_token = s.text(23);
  return o;
}

std::vector<OutboxRow> read_outbox_rows(Statement& s, bool with_token) {
  std::vector<OutboxRow> out;
  while (s.step()) out.push_back(read_outbox_row(s, with_token));
  return out;
}

std::string outbox_select(std::string_view where) {
  std::string sql = "SELECT ";
  sql.append(kOutboxColumns).append(" FROM outbox ").append(where);
  return sql;
}

}  // namespace

// Read on the hot path (an approval checks whether the other generation's
// delivery caused its call): prepared once, reset however the read ends.
std::vector<OutboxRow> StateStore::outbox(const std::string& entity_id) {
  static const std::string sql = outbox_select("WHERE entity_id = ? ORDER BY id");
  auto& s = impl_->prep(impl_->outbox_of_entity, sql);
  const ResetAfter reset(s);
  s.bind_view(1, entity_id);
  return read_outbox_rows(s, false);
}

std::optional<OutboxRow> StateStore::find_outbox(std::int64_t id) {
  auto s = impl_->db.prepare(outbox_select("WHERE id = ?"));
  s.bind(1, id);
  auto rows = read_outbox_rows(s, false);
  if (rows.empty()) return std::nullopt;
  return std::move(rows.front());
}

std::vector<OutboxRow> StateStore::claim_due_outbox(const OutboxClaim& claim) {
  // With a lease, an in_flight row claimed (updated_at_ms) at or before
  // now - lease is due again: its claimer is presumed dead.
  std::string sql =
      claim.lease_ms > 0
          ? "UPDATE outbox SET status = 'in_flight', attempts = attempts + 1, updated_at_ms = ?1 "
            "WHERE id IN (SELECT id FROM outbox WHERE (status = 'pending' AND "
            "next_attempt_at_ms <= ?1) OR (status = 'in_flight' AND updated_at_ms <= ?1 - ?3) "
            "ORDER BY next_attempt_at_ms, id LIMIT ?2) RETURNING "
          : "UPDATE outbox SET status = 'in_flight', attempts = attempts + 1, updated_at_ms = ?1 "
            "WHERE id IN (SELECT id FROM outbox WHERE status = 'pending' AND "
            "next_attempt_at_ms <= ?1 ORDER BY next_attempt_at_ms, id LIMIT ?2) RETURNING ";
  sql.append(kOutboxColumns);
  auto s = impl_->db.prepare(sql);
  s.bind(1, claim.now_ms).bind(2, static_cast<std::int64_t>(claim.limit));
  if (claim.lease_ms > 0) s.bind(3, claim.lease_ms);
  auto rows = read_outbox_rows(s, true);
  // RETURNING gives no order guarantee: oldest due first, as claimed.
  std::sort(rows.begin(), rows.end(), [](const OutboxRow& a, const OutboxRow& b) {
    return std::pair(a.next_attempt_at_ms, a.id) < std::pair(b.next_attempt_at_ms, b.id);
  });
  return rows;
}

std::int64_t StateStore::release_in_flight_outbox(std::int64_t now_ms) {
  auto s = impl_->db.prepare(
      "UPDATE outbox SET status = 'pending', next_attempt_at_ms = ?, updated_at_ms = ? "
      "WHERE status = 'in_flight'");
  s.bind(1, now_ms).bind(2, now_ms);
  s.run();
  return impl_->db.changes();
}

bool StateStore::update_outbox(const OutboxUpdate& u) {
  auto s = impl_->db.prepare(
      "UPDATE outbox SET status = ?, next_attempt_at_ms = ?, updated_at_ms = ?, "
      "last_status = COALESCE(?, last_status), last_error = ?, result = COALESCE(?, result) "
      "WHERE id = ?");
  s.bind(1, to_string(u.status)).bind(2, u.next_attempt_at_ms).bind(3, u.now_ms);
  s.bind(4, u.last_status);
  s.bind(5, u.last_error);
  s.bind(6, u.result);
  s.bind(7, u.id);
  s.run();
  return impl_->db.changes() == 1;
}

// One processor per SQLite file (its write lock): no other processor can
// take a claim over, so this processor always holds its claims.
bool StateStore::hold_outbox_claim(std::int64_t) {
  return true;
}

bool StateStore::retry_outbox(std::int64_t id, std::int64_t now_ms) {
  auto s = impl_->db.prepare(
      "UPDATE outbox SET status = 'pending', next_attempt_at_ms = ?, updated_at_ms = ? "
      "WHERE id = ? AND status = 'failed'");
  s.bind(1, now_ms).bind(2, now_ms).bind(3, id);
  s.run();
  return impl_->db.changes() == 1;
}

std::vector<OutboxRow> StateStore::list_outbox(std::optional<OutboxStatus> status,
                                               std::size_t limit) {
  auto s =
      impl_->db.prepare(outbox_select("WHERE ?1 = '' OR status = ?1 ORDER BY id DESC LIMIT ?2"));
  s.bind(1, status ? to_string(*status) : std::string_view(""))
      .bind(2, static_cast<std::int64_t>(limit));
  return read_outbox_rows(s, false);
}

std::vector<OutboxRow> StateStore::outbox_due_within(std::int64_t now_ms, std::int64_t horizon_ms,
                                                     std::size_t limit) {
  auto s = impl_->db.prepare(
      outbox_select("WHERE status IN ('pending', 'in_flight', 'failed') AND due_by_ms IS NOT NULL "
                    "AND due_by_ms < ? ORDER BY due_by_ms, id LIMIT ?"));
  s.bind(1, now_ms + horizon_ms).bind(2, static_cast<std::int64_t>(limit));
  return read_outbox_rows(s, false);
}

std::optional<std::int64_t> StateStore::next_outbox_attempt() {
  auto s = impl_->db.prepare("SELECT MIN(next_attempt_at_ms) FROM outbox WHERE status = 'pending'");
  std::optional<std::int64_t> v;
  if (s.step()) v = s.optional_int64(0);
  return v;
}

OutboxCounts StateStore::outbox_counts() {
  auto s = impl_->db.prepare("SELECT status, COUNT(*) FROM outbox GROUP BY status");
  OutboxCounts c;
  while (s.step()) {
    const auto status = s.text(0);
    const auto n = s.int64(1);
    if (status == "pending") c.pending = n;
    if (status == "in_flight") c.in_flight = n;
    if (status == "succeeded") c.succeeded = n;
    if (status == "failed") c.failed = n;
  }
  return c;
}
DeadlineSummary StateStore::deadlines(std::int64_t now_ms, std::int64_t horizon_ms,
                                      std::int64_t call_horizon_ms) {
  DeadlineSummary d;
  auto calls = impl_->db.prepare(
      "SELECT COALESCE(SUM(status <> 'failed'), 0), "
      "COALESCE(SUM(due_by_ms IS NOT NULL AND due_by_ms < ?1), 0), "
      "COALESCE(SUM(due_by_ms IS NOT NULL AND due_by_ms >= ?1 AND due_by_ms < ?2), 0), "
      "COALESCE(SUM(status = 'failed'), 0), MIN(due_by_ms) "
      "FROM outbox WHERE status IN ('pending', 'in_flight', 'failed')");
  calls.bind(1, now_ms).bind(2, now_ms + call_horizon_ms);
  if (calls.step()) {
    d.calls_pending = calls.int64(0);
    d.calls_overdue = calls.int64(1);
    d.calls_at_risk = calls.int64(2);
    d.calls_failed = calls.int64(3);
    d.nearest_call_due_ms = calls.optional_int64(4);
  }
  // The nearest deadline of each open dispute.
  auto disputes = impl_->db.prepare(
      "SELECT COALESCE(SUM(due >= ?1 AND due < ?2), 0), COALESCE(SUM(due < ?1), 0) FROM ("
      " SELECT MIN(COALESCE(representment_expires_at_ms, arbitration_expires_at_ms),"
      "            COALESCE(arbitration_expires_at_ms, representment_expires_at_ms)) AS due"
      " FROM disputes WHERE COALESCE(state, '') <> 'CLOSED'"
      " AND (representment_expires_at_ms IS NOT NULL OR arbitration_expires_at_ms IS NOT NULL))");
  disputes.bind(1, now_ms).bind(2, now_ms + horizon_ms);
  if (disputes.step()) {
    d.dispute_deadlines_soon = disputes.int64(0);
    d.dispute_deadlines_passed = disputes.int64(1);
  }
  return d;
}

}  // namespace kpay::storage
