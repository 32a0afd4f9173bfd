// Disputes, their deadline history and the deadline warnings sent, on
// PostgreSQL (pg_state.hpp); the SQLite twins are in state_store.cpp.
#include "postgres/pg_rows.hpp"
#include "postgres/pg_state.hpp"

namespace kpay::storage::pg {

namespace {

constexpr std::string_view kDisputeColumns =
    "id, framework, framework_inferred, state, state_as_of_ms, payment_transaction_id, "
    "payment_capture_id, reason, amount, currency, outcome, representment_expires_at_ms, "
    "representment_as_of_ms, arbitration_expires_at_ms, arbitration_as_of_ms, closed_at_ms, "
    "last_event_id, evidence_response_deadline_ms, evidence_response_as_of_ms, outcome_detailed, "
    "withheld_amount, returned_amount, fee_amount, account_id";

DisputeRow dispute(const Result& r, int i) {
  DisputeRow d;
  d.id = r.text(i, 0);
  d.framework = stored(parse_dispute_framework(r.view(i, 1)), "dispute framework", r.text(i, 1));
  d.framework_inferred = r.boolean(i, 2);
  d.state = r.optional_text(i, 3);
  d.state_as_of_ms = r.int64(i, 4);
  d.payment_transaction_id = r.optional_text(i, 5);
  d.payment_capture_id = r.optional_text(i, 6);
  d.reason = r.optional_text(i, 7);
  d.amount = r.optional_int64(i, 8);
  d.currency = r.optional_text(i, 9);
  d.outcome = r.optional_text(i, 10);
  d.representment_expires_at_ms = r.optional_int64(i, 11);
  d.representment_as_of_ms = r.int64(i, 12);
  d.arbitration_expires_at_ms = r.optional_int64(i, 13);
  d.arbitration_as_of_ms = r.int64(i, 14);
  d.closed_at_ms = r.optional_int64(i, 15);
  d.last_event_id = r.text(i, 16);
  d.evidence_response_deadline_ms = r.optional_int64(i, 17);
  d.evidence_response_as_of_ms = r.int64(i, 18);
  d.outcome_detailed = r.optional_text(i, 19);
  d.withheld_amount = r.optional_int64(i, 20);
  d.returned_amount = r.optional_int64(i, 21);
  d.fee_amount = r.optional_int64(i, 22);
  d.account_id = r.optional_text(i, 23);
  return d;
}

std::vector<DisputeRow> disputes(const Result& r) {
  std::vector<DisputeRow> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(dispute(r, i));
  return out;
}

std::string select_disputes(std::string_view rest) {
  std::string sql = "SELECT ";
  sql.append(kDisputeColumns).append(" FROM disputes ").append(rest);
  return sql;
}

}  // namespace

std::optional<DisputeRow> PgState::find_dispute(const std::string& id) {
  Result r = c_.query(select_disputes("WHERE id = $1"), params(id));
  if (r.rows() == 0) return std::nullopt;
  return dispute(r, 0);
}

void PgState::save_dispute(const DisputeRow& d) {
  Params p = params(d.id, to_string(d.framework), d.framework_inferred, d.state, d.state_as_of_ms);
  p.add(d.payment_transaction_id).add(d.payment_capture_id).add(d.reason).add(d.amount);
  p.add(d.currency).add(d.outcome).add(d.representment_expires_at_ms);
  p.add(d.representment_as_of_ms).add(d.arbitration_expires_at_ms).add(d.arbitration_as_of_ms);
  p.add(d.closed_at_ms).add(d.last_event_id).add(d.evidence_response_deadline_ms);
  p.add(d.evidence_response_as_of_ms).add(d.outcome_detailed).add(d.withheld_amount);
  p.add(d.returned_amount).add(d.fee_amount).add(d.account_id);
  std::string sql = "INSERT INTO disputes (";
  sql.append(kDisputeColumns)
      .append(
          ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, "
          "$18, $19, $20, $21, $22, $23, $24) ON CONFLICT (id) DO UPDATE SET "
          "framework = EXCLUDED.framework, framework_inferred = EXCLUDED.framework_inferred, "
          "state = EXCLUDED.state, state_as_of_ms = EXCLUDED.state_as_of_ms, "
          "payment_transaction_id = EXCLUDED.payment_transaction_id, "
          "payment_capture_id = EXCLUDED.payment_capture_id, reason = EXCLUDED.reason, "
          "amount = EXCLUDED.amount, currency = EXCLUDED.currency, outcome = EXCLUDED.outcome, "
          "representment_expires_at_ms = EXCLUDED.representment_expires_at_ms, "
          "representment_as_of_ms = EXCLUDED.representment_as_of_ms, "
          "arbitration_expires_at_ms = EXCLUDED.arbitration_expires_at_ms, "
          "arbitration_as_of_ms = EXCLUDED.arbitration_as_of_ms, "
          "closed_at_ms = EXCLUDED.closed_at_ms, last_event_id = EXCLUDED.last_event_id, "
          "evidence_response_deadline_ms = EXCLUDED.evidence_response_deadline_ms, "
          "evidence_response_as_of_ms = EXCLUDED.evidence_response_as_of_ms, "
          "outcome_detailed = EXCLUDED.outcome_detailed, "
          "withheld_amount = EXCLUDED.withheld_amount, "
          "returned_amount = EXCLUDED.returned_amount, fee_amount = EXCLUDED.fee_amount, "
          "account_id = EXCLUDED.account_id");
  c_.write(sql, std::move(p));
}

bool PgState::insert_dispute_deadline(const DisputeDeadlineRow& d) {
  return c_.query(
               "INSERT INTO dispute_deadlines (dispute_id, kind, event_id, deadline_ms, "
               "as_of_ms, event_type, field) VALUES ($1, $2, $3, $4, $5, $6, $7) "
               "ON CONFLICT (dispute_id, kind, event_id) DO NOTHING",
               params(d.dispute_id, d.kind, d.event_id, d.deadline_ms, d.as_of_ms, d.event_type,
                      d.field))
             .affected() == 1;
}

std::vector<DisputeDeadlineRow> PgState::dispute_deadlines(const std::string& dispute_id) {
  Result r = c_.query(
      "SELECT kind, deadline_ms, as_of_ms, event_id, event_type, field FROM dispute_deadlines "
      "WHERE dispute_id = $1 ORDER BY as_of_ms, kind, event_id",
      params(dispute_id));
  std::vector<DisputeDeadlineRow> out;
  for (int i = 0; i < r.rows(); ++i) {
    out.push_back({dispute_id, r.text(i, 0), r.int64(i, 1), r.int64(i, 2), r.text(i, 3),
                   r.text(i, 4), r.text(i, 5)});
  }
  return out;
}

// Through the partial index disputes_open (v20): the WHERE is the index's own,
// which lets the planner prove the index applies (pg_plans_test.cpp).
std::string open_disputes_sql(bool after) {
  return select_disputes(after ? "WHERE COALESCE(state, '') <> 'CLOSED' AND id > $1 "
                                 "ORDER BY id LIMIT $2"
                               : "WHERE COALESCE(state, '') <> 'CLOSED' ORDER BY id LIMIT $1");
}

std::vector<DisputeRow> PgState::open_disputes_after(const std::optional<std::string>& after_id,
                                                     std::size_t limit) {
  const auto n = static_cast<std::int64_t>(limit);
  if (!after_id) return disputes(c_.query(open_disputes_sql(false), params(n)));
  return disputes(c_.query(open_disputes_sql(true), params(*after_id, n)));
}

std::vector<DisputeRow> PgState::list_disputes(std::size_t limit) {
  return disputes(c_.query(select_disputes("ORDER BY state_as_of_ms DESC, id LIMIT $1"),
                           params(static_cast<std::int64_t>(limit))));
}

bool PgState::mark_deadline_warning(const std::string& dispute_id, const std::string& kind,
                                    std::int64_t deadline_ms, const std::string& stage,
                                    std::int64_t now_ms) {
  return c_.query(
               "INSERT INTO dispute_deadline_warnings (dispute_id, kind, deadline_ms, stage, "
               "warned_at_ms) VALUES ($1, $2, $3, $4, $5) "
               "ON CONFLICT (dispute_id, kind, deadline_ms, stage) DO NOTHING",
               params(dispute_id, kind, deadline_ms, stage, now_ms))
             .affected() == 1;
}

std::vector<bool> PgState::deadline_warnings_marked(std::span<const DeadlineWarningKey> keys) {
  std::vector<bool> out(keys.size(), false);
  if (keys.empty()) return out;
  Result r = c_.query(
      "SELECT k.i FROM unnest($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::TEXT[]) "
      "WITH ORDINALITY AS k(dispute_id, kind, deadline_ms, stage, i) "
      "JOIN dispute_deadline_warnings w USING (dispute_id, kind, deadline_ms, stage)",
      params(array_literal(keys, [](const DeadlineWarningKey& k) { return k.dispute_id; }),
             array_literal(keys, [](const DeadlineWarningKey& k) { return k.kind; }),
             array_literal(
                 keys, [](const DeadlineWarningKey& k) { return std::to_string(k.deadline_ms); }),
             array_literal(keys, [](const DeadlineWarningKey& k) { return k.stage; })));
  for (int row = 0; row < r.rows(); ++row) {
    out[static_cast<std::size_t>(r.int64(row, 0) - 1)] = true;  // ordinals count from 1
  }
  return out;
}

}  // namespace kpay::storage::pg
