// One payment's whole story (migration v11; klarnactl payments trace): every
// attempt of every Klarna call, and the links from a payment to the commands
// and disputes that concern it. The trace context of history, outbox and
// publish-queue rows is written with those rows (state_store.cpp).
#include "kpay/storage/state_store.hpp"
#include "state_store_impl.hpp"

namespace kpay::storage {

void StateStore::insert_call_attempt(const CallAttemptRow& a) {
  auto s = database().prepare(
      "INSERT OR REPLACE INTO call_attempts (outbox_id, attempt, started_at_ms, latency_us, "
      "outcome, http_status, transport_error, klarna_error_id, klarna_error_code, "
      "klarna_correlation_id, summary, traceparent, recorded_at_ms) "
      "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)");
  s.bind(1, a.outbox_id).bind(2, a.attempt).bind(3, a.started_at_ms).bind(4, a.latency_us);
  s.bind(5, a.outcome).bind(6, a.http_status).bind(7, a.transport_error);
  s.bind(8, a.klarna_error_id).bind(9, a.klarna_error_code).bind(10, a.klarna_correlation_id);
  s.bind(11, a.summary).bind(12, a.traceparent).bind(13, a.recorded_at_ms);
  s.run();
}

std::vector<CallAttemptRow> StateStore::call_attempts(std::int64_t outbox_id) {
  auto s = database().prepare(
      "SELECT attempt, started_at_ms, latency_us, outcome, http_status, transport_error, "
      "klarna_error_id, klarna_error_code, klarna_correlation_id, summary, traceparent, "
      "recorded_at_ms FROM call_attempts WHERE outbox_id = ? ORDER BY attempt");
  s.bind(1, outbox_id);
  std::vector<CallAttemptRow> out;
  while (s.step()) {
    CallAttemptRow a;
    a.outbox_id = outbox_id;
    a.attempt = s.int64(0);
    a.started_at_ms = s.int64(1);
    a.latency_us = s.int64(2);
    a.outcome = s.text(3);
    a.http_status = s.optional_int64(4);
    a.transport_error = s.optional_text(5);
    a.klarna_error_id = s.optional_text(6);
    a.klarna_error_code = s.optional_text(7);
    a.klarna_correlation_id = s.optional_text(8);
    a.summary = s.optional_text(9);
    a.traceparent = s.optional_text(10).value_or("");
    a.recorded_at_ms = s.int64(11);
    out.push_back(std::move(a));
  }
  return out;
}

std::vector<CommandRow> StateStore::commands_for_entity(const std::string& entity_id) {
  auto s = database().prepare(
      "SELECT command_id FROM commands WHERE entity_id = ? ORDER BY created_at_ms, command_id");
  s.bind(1, entity_id);
  std::vector<std::string> ids;
  while (s.step()) ids.push_back(s.text(0));
  std::vector<CommandRow> out;
  for (const auto& id : ids) {
    if (auto c = find_command(id)) out.push_back(std::move(*c));
  }
  return out;
}

std::vector<std::string> StateStore::disputes_of_transaction(const std::string& transaction_id) {
  auto s = database().prepare(
      "SELECT id FROM disputes WHERE payment_transaction_id = ? ORDER BY state_as_of_ms, id");
  s.bind(1, transaction_id);
  std::vector<std::string> out;
  while (s.step()) out.push_back(s.text(0));
  return out;
}

}  // namespace kpay::storage
