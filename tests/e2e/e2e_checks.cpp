#include "e2e_checks.hpp"

#include <algorithm>

#include <gtest/gtest.h>

#include <sstream>

#include "e2e_db.hpp"

namespace kpay::test {

std::vector<std::vector<std::string>> rows(const std::string& db, const std::string& sql) {
  std::vector<std::vector<std::string>> out;
  for (auto& r : select_rows(db, sql)) {
    std::vector<std::string> row;
    for (auto& v : r) row.push_back(v.value_or(""));
    out.push_back(std::move(row));
  }
  return out;
}

std::int64_t int_at(simdjson::dom::element e, std::string_view key) {
  std::int64_t v = 0;
  if (e[key].get_int64().get(v) != simdjson::SUCCESS) return -1;
  return v;
}

States sim_states(System& sys) {
  simdjson::dom::parser p;
  simdjson::dom::element root;
  States out;
  if (p.parse(sys.sim("GET", "/_sim/payments")).get(root) != simdjson::SUCCESS) return out;
  simdjson::dom::array requests, transactions;
  if (root["payment_requests"].get_array().get(requests) == simdjson::SUCCESS) {
    for (auto r : requests) out[str_at(r, "payment_request_id")] = str_at(r, "state");
  }
  if (root["payment_transactions"].get_array().get(transactions) == simdjson::SUCCESS) {
    for (auto t : transactions) {
      out[str_at(t, "payment_transaction_id")] =
          str_at(t, "state") + " " + std::to_string(int_at(t, "captured_amount")) + "/" +
          std::to_string(int_at(t, "refunded_amount")) + "/" + std::to_string(int_at(t, "amount"));
    }
  }
  return out;
}

States processor_states(const std::string& db) {
  States out;
  for (const auto& r : rows(db, "SELECT id, COALESCE(state, '?') FROM payment_requests")) {
    out[r.at(0)] = r.at(1);
  }
  for (const auto& r :
       rows(db,
            "SELECT id, COALESCE(state, '?') || ' ' || captured_amount || '/' || refunded_amount "
            "|| '/' || COALESCE(amount, -1) FROM payment_transactions")) {
    out[r.at(0)] = r.at(1);
  }
  return out;
}

std::string describe_differences(const States& sim, const States& ours) {
  std::ostringstream out;
  int shown = 0;
  for (const auto& [id, state] : sim) {
    auto it = ours.find(id);
    const std::string mine = it == ours.end() ? "(missing)" : it->second;
    if (mine != state && shown++ < 20)
      out << id << ": sim " << state << ", processor " << mine << "\n";
  }
  for (const auto& [id, state] : ours) {
    if (!sim.count(id) && shown++ < 20) out << id << ": only in the processor (" << state << ")\n";
  }
  return out.str();
}

std::map<std::string, std::int64_t> delivery_summary(System& sys) {
  simdjson::dom::parser p;
  simdjson::dom::element root;
  std::map<std::string, std::int64_t> out;
  if (p.parse(sys.sim("GET", "/_sim/webhooks?limit=1")).get(root) != simdjson::SUCCESS) return out;
  simdjson::dom::object summary;
  if (root["summary"].get_object().get(summary) != simdjson::SUCCESS) return out;
  for (auto [k, v] : summary) out[std::string(k)] = v.get_int64().value_unsafe();
  return out;
}

std::set<std::string> delivered_event_ids(System& sys) {
  simdjson::dom::parser p;
  simdjson::dom::element root;
  std::set<std::string> out;
  if (p.parse(sys.sim("GET", "/_sim/webhooks?state=delivered")).get(root) != simdjson::SUCCESS) {
    return out;
  }
  for (auto d : root["deliveries"]) out.insert(str_at(d, "event_id"));
  return out;
}

Executions executions_from_json(std::string_view json) {
  simdjson::dom::parser p;
  simdjson::dom::element root;
  Executions out;
  if (p.parse(json.data(), json.size()).get(root) != simdjson::SUCCESS) return out;
  simdjson::dom::object routes, keys;
  if (root["by_route"].get_object().get(routes) == simdjson::SUCCESS) {
    for (auto [k, v] : routes) out.by_route[std::string(k)] = v.get_int64().value_unsafe();
  }
  if (root["by_idempotency_key"].get_object().get(keys) == simdjson::SUCCESS) {
    for (auto [k, v] : keys) out.by_key[std::string(k)] = v.get_int64().value_unsafe();
  }
  return out;
}

Executions executions(System& sys) {
  return executions_from_json(sys.sim("GET", "/_sim/executions"));
}

std::int64_t most_per_key(const Executions& ex) {
  std::int64_t most = 0;
  for (const auto& [key, n] : ex.by_key) most = std::max(most, n);
  return most;
}

std::int64_t executed(const Executions& ex, const std::string& route) {
  const auto it = ex.by_route.find(route);
  return it == ex.by_route.end() ? 0 : it->second;
}

Activity activity(System& sys) {
  auto d = delivery_summary(sys);  // empty when the sim did not answer: -1 below
  const auto deliveries =
      d.count("pending") == 0 ? -1 : d["pending"] + d["delivered"] + d["failed"];
  return {query(sys.db(), "SELECT COUNT(*) FROM outbox"), deliveries,
          query(sys.db(), "SELECT COUNT(*) FROM inbox")};
}

bool drained(System& sys, const std::vector<std::string>& commands, Answers& answered, States& sim,
             States& ours) {
  const auto before = activity(sys);
  answered.clear();
  for (const auto& r : sys.results()) {  // every result read so far
    if (r.final()) answered[r.command_id].push_back(r.status);
  }
  for (const auto& id : commands) {
    if (!answered.count(id)) return false;
  }
  if (query(sys.db(), "SELECT COUNT(*) FROM outbox WHERE status IN ('pending', 'in_flight')") !=
      0) {
    return false;
  }
  // Published and acknowledged (rows are deleted with the next batch).
  if (query(sys.db(), "SELECT COUNT(*) FROM publish_queue") != 0) return false;
  if (sys.sim("GET", "/_sim/scenarios").find("\"finished\":true") == std::string::npos) {
    return false;
  }
  if (delivery_summary(sys)["pending"] != 0) return false;
  // Consumed: every acknowledged webhook in the inbox (a rebalance pauses
  // consumption while the states may already agree with the sim's).
  std::set<std::string> inbox;
  for (const auto& r : rows(sys.db(), "SELECT event_id FROM inbox")) inbox.insert(r.at(0));
  for (const auto& id : delivered_event_ids(sys)) {
    if (!inbox.count(id)) return false;
  }
  sim = sim_states(sys);
  ours = processor_states(sys.db());
  return !sim.empty() && sim == ours && activity(sys) == before;
}

void expect_every_acknowledged_webhook_applied_once(System& sys) {
  std::set<std::string> inbox;
  for (const auto& r : rows(sys.db(), "SELECT event_id FROM inbox")) inbox.insert(r.at(0));
  std::size_t missing = 0;
  std::string examples;
  const auto delivered = delivered_event_ids(sys);
  for (const auto& id : delivered) {
    if (inbox.count(id)) continue;
    if (++missing <= 5) examples += " " + id;
  }
  EXPECT_EQ(missing, 0u) << "acknowledged webhooks the processor never applied, e.g." << examples
                         << " (" << delivered.size() << " acknowledged; the inbox read "
                         << inbox.size() << " rows, it counts "
                         << query(sys.db(), "SELECT COUNT(*) FROM inbox") << ")";
  EXPECT_TRUE(rows(sys.db(),
                   "SELECT event_id FROM history WHERE outcome = 'applied' "
                   "GROUP BY event_id HAVING COUNT(*) > 1")
                  .empty())
      << "an event applied twice";
}

void expect_each_call_executed_once(System& sys, const Executions& ex) {
  std::int64_t other_than_once = 0;
  for (const auto& [key, n] : ex.by_key) other_than_once += n != 1;
  EXPECT_EQ(other_than_once, 0) << "idempotency keys executed other than once";
  std::size_t unexecuted = 0;
  for (const auto& r : rows(sys.db(), "SELECT idempotency_key FROM outbox WHERE method = 'POST'")) {
    const auto it = ex.by_key.find(r.at(0));
    unexecuted += it == ex.by_key.end() || it->second != 1;
  }
  EXPECT_EQ(unexecuted, 0u) << "an outbox call not executed exactly once";
}

void expect_operations_as_the_states_need(const States& sim, const Executions& ex,
                                          std::int64_t refund_commands) {
  std::int64_t v1_authorized = 0, v2_completed = 0, transactions = 0;
  for (const auto& [id, state] : sim) {
    if (id.find(":request:") != std::string::npos) {
      v1_authorized += state == "AUTHORIZED";
      v2_completed += state == "COMPLETED";
    } else {
      ++transactions;
    }
  }
  EXPECT_GT(v1_authorized, 0);
  EXPECT_GT(v2_completed, 0);
  EXPECT_EQ(executed(ex, "payment.confirm"), v1_authorized);
  EXPECT_EQ(executed(ex, "payment.authorize"), v2_completed);
  EXPECT_EQ(executed(ex, "payment.transactions.capture"), transactions);
  EXPECT_EQ(executed(ex, "payment.transactions.refund"), refund_commands);
}

}  // namespace kpay::test
