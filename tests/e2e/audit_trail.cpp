#include "audit_trail.hpp"

#include <simdjson.h>

#include <set>
#include <sstream>

#include "e2e_db.hpp"
#include "http_client.hpp"
#include "kpay/core/log.hpp"

namespace kpay::test {

namespace {

constexpr const char* kColumns[] = {
    "seq",       "at_ms",   "kind",   "sender", "command_id", "operation",     "entity_id",
    "outbox_id", "attempt", "status", "detail", "request",    "klarna_status", "operator"};

// Every row of `sql` (read-only), each column as text or nullopt for NULL.
std::vector<std::vector<std::optional<std::string>>> select(const std::string& db,
                                                            const std::string& sql) {
  return select_rows(db, sql);
}

// A message's fields as the database's columns would hold them (at → at_ms
// is compared as the RFC 3339 text the message carries).
std::optional<std::map<std::string, std::optional<std::string>>> fields_of(
    const std::string& value) {
  simdjson::dom::parser p;
  simdjson::dom::object o;
  if (p.parse(value).get(o) != simdjson::SUCCESS) return std::nullopt;
  std::map<std::string, std::optional<std::string>> out;
  for (auto [k, v] : o) {
    std::string key(k);
    std::int64_t n = 0;
    std::string_view s;
    if (v.get_int64().get(n) == simdjson::SUCCESS) {
      out[key] = std::to_string(n);
    } else if (v.get_string().get(s) == simdjson::SUCCESS) {
      out[key] = std::string(s);
    } else {
      out[key] = "(not a string or integer)";
    }
  }
  return out;
}

// The row as its message must read: every non-NULL column under its field name.
std::map<std::string, std::optional<std::string>> expected_fields(const AuditRow& r) {
  std::map<std::string, std::optional<std::string>> out;
  for (const auto& [column, value] : r.text) {
    if (!value) continue;
    if (column == "at_ms") {
      out["at"] = core::rfc3339_ms(std::stoll(*value));
    } else {
      out[column] = value;
    }
  }
  return out;
}

std::int64_t seq_of(const std::string& value) {
  simdjson::dom::parser p;
  simdjson::dom::element e;
  std::int64_t seq = 0;
  if (p.parse(value).get(e) != simdjson::SUCCESS) return 0;
  if (e["seq"].get_int64().get(seq) != simdjson::SUCCESS) return 0;
  return seq;
}

}  // namespace

std::vector<AuditRow> audit_rows(const std::string& db) {
  std::string sql = "SELECT ";
  for (const char* c : kColumns) sql += std::string(c) + (c == kColumns[13] ? "" : ", ");
  sql += " FROM audit_events ORDER BY seq";
  std::vector<AuditRow> out;
  for (auto& row : select(db, sql)) {
    AuditRow r;
    r.seq = std::stoll(row.at(0).value_or("0"));
    for (std::size_t i = 0; i < row.size(); ++i) r.text[kColumns[i]] = row[i];
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<ConsumedMessage> read_audit_topic(const std::string& bootstrap,
                                              const std::string& topic, int partitions,
                                              const std::vector<AuditRow>& rows,
                                              std::chrono::seconds timeout) {
  KafkaReader reader(bootstrap, {topic}, partitions);
  std::set<std::int64_t> wanted;
  for (const auto& r : rows) wanted.insert(r.seq);
  std::size_t parsed = 0;
  wait_until(
      [&] {
        const auto& all = reader.drain(std::chrono::milliseconds(200));
        for (; parsed < all.size(); ++parsed) wanted.erase(seq_of(all[parsed].value));
        return wanted.empty();
      },
      timeout);
  return reader.messages();
}

std::string compare_audit_topic(const std::vector<ConsumedMessage>& messages,
                                const std::vector<AuditRow>& rows) {
  std::ostringstream problems;
  std::map<std::int64_t, const AuditRow*> by_seq;
  for (const auto& r : rows) by_seq[r.seq] = &r;
  std::set<std::int64_t> published;
  std::map<std::pair<std::string, int>, std::int64_t> last_seq;  // (key, partition) → seq
  for (const auto& m : messages) {
    const auto fields = fields_of(m.value);
    const auto seq = seq_of(m.value);
    if (!fields || seq == 0) {
      problems << "not an audit event: " << m.value << "\n";
      continue;
    }
    auto it = by_seq.find(seq);
    if (it == by_seq.end()) {
      problems << "a message for no row: " << m.value << "\n";
      continue;
    }
    const bool repeat = !published.insert(seq).second;
    const auto& row = *it->second;
    if (*fields != expected_fields(row)) problems << "differs from its row: " << m.value << "\n";
    const auto key = row.text.at("command_id").value_or(row.text.at("entity_id").value_or("audit"));
    if (m.key != key) problems << "seq " << seq << " keyed '" << m.key << "', not " << key << "\n";
    auto& last = last_seq[{m.key, m.partition}];
    // A re-publication after a crash may repeat earlier seqs; never a new one out of order.
    if (seq < last && !repeat) {
      problems << "seq " << seq << " after " << last << " on key " << m.key << "\n";
    }
    last = std::max(last, seq);
  }
  for (const auto& r : rows) {
    if (!published.count(r.seq)) problems << "row " << r.seq << " never published\n";
  }
  return problems.str();
}

std::string compare_executed_outcomes(const std::string& db,
                                      const std::map<std::string, std::int64_t>& executed,
                                      std::size_t& outcomes) {
  std::ostringstream problems;
  outcomes = 0;
  const auto calls = select(
      db,
      "SELECT o.id, o.idempotency_key, o.operation, (SELECT COUNT(*) FROM audit_events a WHERE "
      "a.outbox_id = o.id AND a.kind = 'outcome' AND a.status = 'succeeded') FROM outbox o "
      "WHERE o.operation NOT LIKE 'read%'");
  for (const auto& c : calls) {
    const auto& key = c.at(1).value_or("");
    const auto audited = std::stoll(c.at(3).value_or("0"));
    const auto it = executed.find(key);
    const std::int64_t runs = it == executed.end() ? 0 : it->second;
    outcomes += static_cast<std::size_t>(audited);
    if (runs > 0 && audited != 1) {
      problems << c.at(2).value_or("") << " (outbox " << c.at(0).value_or("") << ") executed "
               << runs << "x at the sim, " << audited << " executed outcomes in the trail\n";
    } else if (runs == 0 && audited > 0) {
      problems << c.at(2).value_or("") << " (outbox " << c.at(0).value_or("")
               << ") audited as executed, never executed at the sim\n";
    } else if (runs > 1) {
      problems << c.at(2).value_or("") << " (outbox " << c.at(0).value_or("") << ") executed "
               << runs << "x at the sim\n";
    }
  }
  const auto orphans = select(db,
                              "SELECT COUNT(*) FROM audit_events WHERE kind = 'outcome' AND "
                              "(outbox_id IS NULL OR outbox_id NOT IN (SELECT id FROM outbox))");
  if (!orphans.empty() && orphans[0].at(0).value_or("0") != "0") {
    problems << orphans[0].at(0).value_or("") << " outcome events for no call of the outbox\n";
  }
  return problems.str();
}

}  // namespace kpay::test
