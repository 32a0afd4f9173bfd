// One payment's whole story on PostgreSQL (v11; klarnactl payments trace):
// every attempt of every Klarna call, and the commands and disputes of a
// payment. The SQLite twin is state_store_traces.cpp.
#include "postgres/pg_state.hpp"

namespace kpay::storage::pg {

void PgState::insert_call_attempt(const CallAttemptRow& a) {
  Params p = params(a.outbox_id, a.attempt, a.started_at_ms, a.latency_us, a.outcome);
  p.add(a.http_status).add(a.transport_error).add(a.klarna_error_id).add(a.klarna_error_code);
  p.add(a.klarna_correlation_id).add(a.summary).add(null_if_empty(a.traceparent));
  p.add(a.recorded_at_ms);
  c_.write(
      "INSERT INTO call_attempts (outbox_id, attempt, started_at_ms, latency_us, outcome, "
      "http_status, transport_error, klarna_error_id, klarna_error_code, "
      "klarna_correlation_id, summary, traceparent, recorded_at_ms) "
      "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) "
      "ON CONFLICT (outbox_id, attempt) DO UPDATE SET started_at_ms = EXCLUDED.started_at_ms, "
      "latency_us = EXCLUDED.latency_us, outcome = EXCLUDED.outcome, "
      "http_status = EXCLUDED.http_status, transport_error = EXCLUDED.transport_error, "
      "klarna_error_id = EXCLUDED.klarna_error_id, "
      "klarna_error_code = EXCLUDED.klarna_error_code, "
      "klarna_correlation_id = EXCLUDED.klarna_correlation_id, summary = EXCLUDED.summary, "
      "traceparent = EXCLUDED.traceparent, recorded_at_ms = EXCLUDED.recorded_at_ms",
      std::move(p));
}

std::vector<CallAttemptRow> PgState::call_attempts(std::int64_t outbox_id) {
  Result r = c_.query(
      "SELECT attempt, started_at_ms, latency_us, outcome, http_status, transport_error, "
      "klarna_error_id, klarna_error_code, klarna_correlation_id, summary, traceparent, "
      "recorded_at_ms FROM call_attempts WHERE outbox_id = $1 ORDER BY attempt",
      params(outbox_id));
  std::vector<CallAttemptRow> out;
  for (int i = 0; i < r.rows(); ++i) {
    CallAttemptRow a;
    a.outbox_id = outbox_id;
    a.attempt = r.int64(i, 0);
    a.started_at_ms = r.int64(i, 1);
    a.latency_us = r.int64(i, 2);
    a.outcome = r.text(i, 3);
    a.http_status = r.optional_int64(i, 4);
    a.transport_error = r.optional_text(i, 5);
    a.klarna_error_id = r.optional_text(i, 6);
    a.klarna_error_code = r.optional_text(i, 7);
    a.klarna_correlation_id = r.optional_text(i, 8);
    a.summary = r.optional_text(i, 9);
    a.traceparent = r.optional_text(i, 10).value_or("");
    a.recorded_at_ms = r.int64(i, 11);
    out.push_back(std::move(a));
  }
  return out;
}

std::vector<CommandRow> PgState::commands_for_entity(const std::string& entity_id) {
  Result r = c_.query(
      "SELECT command_id FROM commands WHERE entity_id = $1 ORDER BY created_at_ms, command_id "
      "COLLATE \"C\"",
      params(entity_id));
  std::vector<CommandRow> out;
  for (int i = 0; i < r.rows(); ++i) {
    if (auto c = find_command(r.text(i, 0))) out.push_back(std::move(*c));
  }
  return out;
}

std::vector<std::string> PgState::disputes_of_transaction(const std::string& transaction_id) {
  Result r = c_.query(
      "SELECT id FROM disputes WHERE payment_transaction_id = $1 ORDER BY state_as_of_ms, id "
      "COLLATE \"C\"",
      params(transaction_id));
  std::vector<std::string> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(r.text(i, 0));
  return out;
}

}  // namespace kpay::storage::pg
