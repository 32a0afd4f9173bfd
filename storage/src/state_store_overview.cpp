// The read-only counts klarnactl status and top show: grouped counts over
// the payment, outbox and command tables, and the dead letters recorded.
#include "kpay/storage/state_store.hpp"

namespace kpay::storage {

namespace {

// ?1, where the query has it, reads kNoStateYet.
std::vector<CountRow> counts(Database& db, std::string_view sql) {
  auto s = db.prepare(sql);
  if (sql.find("?1") != std::string_view::npos) s.bind(1, kNoStateYet);
  std::vector<CountRow> out;
  while (s.step()) out.push_back({s.text(0), s.text(1), s.int64(2)});
  return out;
}

}  // namespace

Overview StateStore::overview() {
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

std::vector<CountRow> StateStore::command_counts() {
  return counts(database(),
                "SELECT type, status, COUNT(*) FROM commands GROUP BY 1, 2 ORDER BY 1, 2");
}

}  // namespace kpay::storage
