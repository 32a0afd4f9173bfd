#include "kpay/storage/audit_log.hpp"

namespace kpay::storage {

namespace {
constexpr const char* kColumns =
    "seq, at_ms, kind, sender, command_id, operation, entity_id, outbox_id, attempt, status, "
    "detail, request, klarna_status, operator";

AuditEvent read_event(const Statement& s) {
  AuditEvent e;
  e.seq = s.int64(0);
  e.at_ms = s.int64(1);
  e.kind = s.text(2);
  e.sender = s.optional_text(3);
  e.command_id = s.optional_text(4);
  e.operation = s.optional_text(5);
  e.entity_id = s.optional_text(6);
  e.outbox_id = s.optional_int64(7);
  e.attempt = s.optional_int64(8);
  e.status = s.text(9);
  e.detail = s.optional_text(10);
  e.request = s.optional_text(11);
  e.klarna_status = s.optional_int64(12);
  e.operator_name = s.optional_text(13);
  return e;
}
}  // namespace

Statement& AuditLog::prep(std::optional<Statement>& s, std::string_view sql) {
  if (!s) s.emplace(db_.prepare(sql));
  return *s;
}

std::int64_t AuditLog::append(const AuditEvent& e) {
  auto& s = prep(append_,
                 "INSERT INTO audit_events (at_ms, kind, sender, command_id, operation, entity_id, "
                 "outbox_id, attempt, status, detail, request, klarna_status, operator) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  s.bind(1, e.at_ms).bind(2, e.kind).bind(3, e.sender).bind(4, e.command_id);
  s.bind(5, e.operation).bind(6, e.entity_id).bind(7, e.outbox_id).bind(8, e.attempt);
  s.bind(9, e.status).bind(10, e.detail).bind(11, e.request).bind(12, e.klarna_status);
  s.bind(13, e.operator_name);
  s.run();
  return db_.last_insert_rowid();
}

std::vector<AuditEvent> AuditLog::list(const AuditQuery& q) {
  std::string sql = std::string("SELECT ") + kColumns +
                    " FROM audit_events WHERE seq > ?1 AND at_ms >= ?2"
                    " AND (?3 = '' OR sender = ?3)"
                    " AND (?4 = '' OR command_id = ?4 OR outbox_id IN"
                    " (SELECT outbox_id FROM audit_events WHERE command_id = ?4))"
                    " AND (?6 = '' OR operator = ?6)"
                    " ORDER BY seq LIMIT ?5";
  auto s = db_.prepare(sql);
  s.bind(1, q.after_seq).bind(2, q.since_ms).bind(3, q.sender).bind(4, q.command_id);
  s.bind(5, static_cast<std::int64_t>(q.limit)).bind(6, q.operator_name);
  std::vector<AuditEvent> out;
  while (s.step()) out.push_back(read_event(s));
  return out;
}

std::vector<AuditEvent> AuditLog::for_outbox(std::int64_t outbox_id) {
  auto s = db_.prepare(std::string("SELECT ") + kColumns +
                       " FROM audit_events WHERE outbox_id = ? ORDER BY seq");
  s.bind(1, outbox_id);
  std::vector<AuditEvent> out;
  while (s.step()) out.push_back(read_event(s));
  return out;
}

void AuditLog::add_sender_day_total(const std::string& sender, const std::string& day,
                                    const std::string& currency, std::int64_t amount) {
  auto& total = prep(add_day_total_,
                     "INSERT INTO sender_day_totals (sender, day, currency, amount) "
                     "VALUES (?, ?, ?, ?) ON CONFLICT (sender, day, currency) "
                     "DO UPDATE SET amount = amount + excluded.amount");
  total.bind(1, sender).bind(2, day).bind(3, currency).bind(4, amount);
  total.run();
}

std::optional<std::string> AuditLog::sender_of(const std::string& command_id) {
  auto& s = prep(sender_of_, "SELECT sender FROM commands WHERE command_id = ?");
  s.bind(1, command_id);
  std::optional<std::string> sender;
  if (s.step()) sender = s.optional_text(0);
  s.reset();  // a kept statement left mid-result would hold its read open
  return sender;
}

std::int64_t AuditLog::spent(const std::string& sender, const std::string& currency,
                             const std::string& day) {
  auto& s = prep(spent_,
                 "SELECT amount FROM sender_day_totals WHERE sender = ? AND day = ? AND "
                 "currency = ?");
  s.bind(1, sender).bind(2, day).bind(3, currency);
  const std::int64_t total = s.step() ? s.int64(0) : 0;
  s.reset();
  return total;
}

std::int64_t AuditLog::published_through() {
  auto& s = prep(published_through_, "SELECT through_seq FROM audit_published");
  const std::int64_t seq = s.step() ? s.int64(0) : 0;
  s.reset();
  return seq;
}

void AuditLog::set_published_through(std::int64_t seq) {
  auto& s = prep(set_published_through_, "UPDATE audit_published SET through_seq = ?");
  s.bind(1, seq);
  s.run();
}

}  // namespace kpay::storage
