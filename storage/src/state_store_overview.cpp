// The read-only counts klarnactl status and top show: grouped counts over
// the payment, outbox and command tables, and the dead letters recorded.
#include "kpay/storage/state_store.hpp"

namespace kpay::storage {

namespace {

// ?1, where the query has it, reads kNoStateYet.
std::vector<StateStore::CountRow> counts(Database& db, std::string_view sql) {
  auto s = db.prepare(sql);
  if (sql.find("?1") != std::string_view::npos) s.bind(1, kNoStateYet);
  std::vector<StateStore::CountRow> out;
  while (s.step()) out.push_back({s.text(0), s.text(1), s.int64(2)});
  return out;
}

}  // namespace

StateStore::Overview StateStore::overview() {
  Overview o;
  o.payments = counts(database(),
                      "SELECT 'payment_request', COALESCE(state, ?1), COUNT(*) "
                      "FROM payment_requests GROUP BY 2 "
                      "UNION ALL "
                      "SELECT 'payment_transaction', COALESCE(state, ?1), COUNT(*) "
                      "FROM payment_transactions GROUP BY 2 ORDER BY 1, 2");
  o.calls = counts(database(),
                   "SELECT operation, status, COUNT(*) FROM outbox GROUP BY 1, 2 ORDER BY 1, 2");
  o.commands = command_counts();
  auto poison = database().prepare("SELECT COUNT(*) FROM poison_messages");
  if (poison.step()) o.dead_letters = poison.int64(0);
  return o;
}

std::vector<StateStore::CountRow> StateStore::command_counts() {
  return counts(database(),
                "SELECT type, status, COUNT(*) FROM commands GROUP BY 1, 2 ORDER BY 1, 2");
}

StateStore::DeadlineSummary StateStore::deadlines(std::int64_t now_ms, std::int64_t horizon_ms,
                                                  std::int64_t call_horizon_ms) {
  DeadlineSummary d;
  auto calls = database().prepare(
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
  auto disputes = database().prepare(
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
