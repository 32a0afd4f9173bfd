// Settlements fetched, their lines and the reconciliation's findings (v10).
#include "kpay/storage/reconciliation_store.hpp"

#include "settlement_ledger_sql.hpp"
#include "sqlite_settlement_ledger.hpp"
#include "state_store_impl.hpp"

namespace kpay::storage {

namespace {

constexpr std::string_view kSettlementValues = "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";

void bind_settlement(Statement& s, const SettlementRow& r) {
  s.bind(1, r.settlement_id).bind(2, r.account_id).bind(3, r.status).bind(4, r.currency);
  s.bind(5, r.payout_amount).bind(6, r.total_sale_amount).bind(7, r.total_return_amount);
  s.bind(8, r.total_fee_amount).bind(9, r.total_chargeback_amount).bind(10, r.total_tax_amount);
  s.bind(11, r.total_settlement_amount).bind(12, r.payment_reference).bind(13, r.payout_date);
  s.bind(14, r.period_start).bind(15, r.period_end).bind(16, r.payout_status);
  s.bind(17, r.next_page).bind(18, r.lines_booked).bind(19, r.caused_by);
  s.bind(20, r.created_at_ms).bind(21, r.fetched_at_ms).bind(22, r.reconciled_at_ms);
}

SettlementRow read_settlement(const Statement& s) {
  SettlementRow r;
  r.settlement_id = s.text(0);
  r.account_id = s.text(1);
  r.status = s.text(2);
  r.currency = s.optional_text(3);
  r.payout_amount = s.optional_int64(4);
  r.total_sale_amount = s.optional_int64(5);
  r.total_return_amount = s.optional_int64(6);
  r.total_fee_amount = s.optional_int64(7);
  r.total_chargeback_amount = s.optional_int64(8);
  r.total_tax_amount = s.optional_int64(9);
  r.total_settlement_amount = s.optional_int64(10);
  r.payment_reference = s.optional_text(11);
  r.payout_date = s.optional_text(12);
  r.period_start = s.optional_text(13);
  r.period_end = s.optional_text(14);
  r.payout_status = s.optional_text(15);
  r.next_page = s.optional_text(16);
  r.lines_booked = s.int64(17);
  r.caused_by = s.text(18);
  r.created_at_ms = s.int64(19);
  r.fetched_at_ms = s.optional_int64(20);
  r.reconciled_at_ms = s.optional_int64(21);
  return r;
}

SettlementLineRow read_line(const Statement& s) {
  SettlementLineRow l;
  l.settlement_id = s.text(0);
  l.line_no = s.int64(1);
  l.type = s.text(2);
  l.payment_transaction_id = s.optional_text(3);
  l.capture_id = s.optional_text(4);
  l.refund_id = s.optional_text(5);
  l.dispute_id = s.optional_text(6);
  l.amount = s.int64(7);
  l.tax_amount = s.int64(8);
  l.currency = s.optional_text(9);
  l.reference = s.optional_text(10);
  l.occurred_at = s.optional_text(11);
  return l;
}

FindingRow read_finding(const Statement& s) {
  FindingRow f;
  f.finding_id = s.text(0);
  f.kind = s.text(1);
  f.settlement_id = s.optional_text(2);
  f.subject = s.text(3);
  f.ours_json = s.text(4);
  f.theirs_json = s.text(5);
  f.detail = s.text(6);
  f.found_at_ms = s.int64(7);
  f.resolved_at_ms = s.optional_int64(8);
  return f;
}

}  // namespace

bool SqliteSettlementLedger::insert_settlement(const SettlementRow& r) {
  auto s = db_.prepare("INSERT OR IGNORE INTO settlements (" + std::string(kSettlementColumns) +
                       ") VALUES " + std::string(kSettlementValues));
  bind_settlement(s, r);
  s.run();
  return db_.changes() == 1;
}

std::optional<SettlementRow> SqliteSettlementLedger::find_settlement(const std::string& id) {
  auto s = db_.prepare("SELECT " + std::string(kSettlementColumns) +
                       " FROM settlements WHERE settlement_id = ?");
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  return read_settlement(s);
}

void SqliteSettlementLedger::save_settlement(const SettlementRow& r) {
  auto s = db_.prepare("INSERT OR REPLACE INTO settlements (" + std::string(kSettlementColumns) +
                       ") VALUES " + std::string(kSettlementValues));
  bind_settlement(s, r);
  s.run();
}

std::vector<SettlementRow> SqliteSettlementLedger::settlements(std::int64_t since_ms,
                                                               std::size_t limit) {
  auto s = db_.prepare("SELECT " + std::string(kSettlementColumns) +
                       " FROM settlements WHERE created_at_ms >= ? "
                       "ORDER BY created_at_ms DESC, settlement_id LIMIT ?");
  s.bind(1, since_ms).bind(2, static_cast<std::int64_t>(limit));
  std::vector<SettlementRow> out;
  while (s.step()) out.push_back(read_settlement(s));
  return out;
}

bool SqliteSettlementLedger::insert_line(const SettlementLineRow& l) {
  if (!insert_line_) {
    insert_line_.emplace(db_.prepare("INSERT OR IGNORE INTO settlement_lines (" +
                                     std::string(kLineColumns) +
                                     ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"));
  }
  auto& s = *insert_line_;
  s.bind(1, l.settlement_id).bind(2, l.line_no).bind(3, l.type);
  s.bind(4, l.payment_transaction_id).bind(5, l.capture_id).bind(6, l.refund_id);
  s.bind(7, l.dispute_id).bind(8, l.amount).bind(9, l.tax_amount).bind(10, l.currency);
  s.bind(11, l.reference).bind(12, l.occurred_at);
  s.run();
  return db_.changes() == 1;
}

std::vector<SettlementLineRow> SqliteSettlementLedger::lines(const std::string& settlement_id) {
  auto s = db_.prepare("SELECT " + std::string(kLineColumns) +
                       " FROM settlement_lines WHERE settlement_id = ? ORDER BY line_no");
  s.bind(1, settlement_id);
  std::vector<SettlementLineRow> out;
  while (s.step()) out.push_back(read_line(s));
  return out;
}

std::vector<std::string> SqliteSettlementLedger::settled_before(const std::string& kind,
                                                                const std::string& id,
                                                                const SettlementRow& than) {
  const auto k = settles(kind);
  auto s = db_.prepare(
      "SELECT DISTINCT l.settlement_id FROM settlement_lines l "
      "JOIN settlements s ON s.settlement_id = l.settlement_id WHERE l." +
      std::string(k.column) +
      " = ? AND l.type = ? AND (s.created_at_ms < ? OR (s.created_at_ms = ? AND "
      "s.settlement_id < ?)) ORDER BY l.settlement_id");
  s.bind(1, id).bind(2, k.type).bind(3, than.created_at_ms).bind(4, than.created_at_ms);
  s.bind(5, than.settlement_id);
  std::vector<std::string> out;
  while (s.step()) out.push_back(s.text(0));
  return out;
}

std::vector<SettlementLineRow> SqliteSettlementLedger::lines_settling(const std::string& kind,
                                                                      const std::string& id) {
  const auto k = settles(kind);
  auto s = db_.prepare("SELECT " + std::string(kLineColumns) + " FROM settlement_lines WHERE " +
                       std::string(k.column) + " = ? AND type = ? ORDER BY settlement_id, line_no");
  s.bind(1, id).bind(2, k.type);
  std::vector<SettlementLineRow> out;
  while (s.step()) out.push_back(read_line(s));
  return out;
}

bool SqliteSettlementLedger::insert_finding(const FindingRow& f) {
  auto s = db_.prepare("INSERT OR IGNORE INTO reconciliation_findings (" +
                       std::string(kFindingColumns) + ") VALUES (?,?,?,?,?,?,?,?,?)");
  s.bind(1, f.finding_id).bind(2, f.kind).bind(3, f.settlement_id).bind(4, f.subject);
  s.bind(5, f.ours_json).bind(6, f.theirs_json).bind(7, f.detail).bind(8, f.found_at_ms);
  s.bind(9, f.resolved_at_ms);
  s.run();
  return db_.changes() == 1;
}

std::int64_t SqliteSettlementLedger::resolve_findings(const std::string& kind,
                                                      const std::string& subject,
                                                      std::int64_t now_ms) {
  auto s = db_.prepare(
      "UPDATE reconciliation_findings SET resolved_at_ms = ? "
      "WHERE kind = ? AND subject = ? AND resolved_at_ms IS NULL");
  s.bind(1, now_ms).bind(2, kind).bind(3, subject);
  s.run();
  return db_.changes();
}

bool SqliteSettlementLedger::resolve_finding(const std::string& finding_id, std::int64_t now_ms) {
  auto s = db_.prepare(
      "UPDATE reconciliation_findings SET resolved_at_ms = ? "
      "WHERE finding_id = ? AND resolved_at_ms IS NULL");
  s.bind(1, now_ms).bind(2, finding_id);
  s.run();
  return db_.changes() == 1;
}

std::vector<FindingRow> SqliteSettlementLedger::findings_of(const std::string& settlement_id) {
  auto s = db_.prepare("SELECT " + std::string(kFindingColumns) +
                       " FROM reconciliation_findings WHERE settlement_id = ? "
                       "ORDER BY kind, subject");
  s.bind(1, settlement_id);
  std::vector<FindingRow> out;
  while (s.step()) out.push_back(read_finding(s));
  return out;
}

std::vector<FindingRow> SqliteSettlementLedger::findings(std::int64_t since_ms, bool open_only,
                                                         std::size_t limit) {
  auto s = db_.prepare("SELECT " + std::string(kFindingColumns) +
                       " FROM reconciliation_findings WHERE found_at_ms >= ? " +
                       (open_only ? "AND resolved_at_ms IS NULL " : "") +
                       "ORDER BY found_at_ms DESC, finding_id LIMIT ?");
  s.bind(1, since_ms).bind(2, static_cast<std::int64_t>(limit));
  std::vector<FindingRow> out;
  while (s.step()) out.push_back(read_finding(s));
  return out;
}

std::map<std::string, std::int64_t> SqliteSettlementLedger::open_findings_by_kind() {
  auto s = db_.prepare(
      "SELECT kind, COUNT(*) FROM reconciliation_findings WHERE resolved_at_ms IS NULL "
      "GROUP BY kind");
  std::map<std::string, std::int64_t> out;
  while (s.step()) out[s.text(0)] = s.int64(1);
  return out;
}

std::vector<UnsettledRow> SqliteSettlementLedger::unsettled(const std::string& kind,
                                                            std::int64_t before_ms,
                                                            std::size_t limit) {
  const auto k = settles(kind);
  auto s = db_.prepare(
      "SELECT r.id, r.transaction_id, r.amount, r.currency, r.capture_id, r.occurred_at_ms, "
      "r.event_id, COALESCE(r.currency, t.currency) FROM transaction_sub_records r "
      "LEFT JOIN payment_transactions t ON t.id = r.transaction_id "
      "WHERE r.kind = ? AND r.occurred_at_ms < ? AND NOT EXISTS "
      "(SELECT 1 FROM settlement_lines l WHERE l." +
      std::string(k.column) + " = r.id AND l.type = ?) ORDER BY r.occurred_at_ms, r.id LIMIT ?");
  s.bind(1, kind).bind(2, before_ms).bind(3, k.type).bind(4, static_cast<std::int64_t>(limit));
  std::vector<UnsettledRow> out;
  while (s.step()) {
    UnsettledRow u;
    u.record.kind = kind;
    u.record.id = s.text(0);
    u.record.transaction_id = s.text(1);
    u.record.amount = s.int64(2);
    u.record.currency = s.optional_text(3);
    u.record.capture_id = s.optional_text(4);
    u.record.occurred_at_ms = s.int64(5);
    u.record.event_id = s.text(6);
    u.currency = s.optional_text(7);
    out.push_back(std::move(u));
  }
  return out;
}

std::map<std::string, std::int64_t> SqliteSettlementLedger::unsettled_capture_amounts() {
  auto s = db_.prepare(
      "SELECT COALESCE(r.currency, t.currency, ''), SUM(r.amount) FROM transaction_sub_records r "
      "LEFT JOIN payment_transactions t ON t.id = r.transaction_id "
      "WHERE r.kind = 'capture' AND NOT EXISTS "
      "(SELECT 1 FROM settlement_lines l WHERE l.capture_id = r.id AND l.type = 'SALE') "
      "GROUP BY 1");
  std::map<std::string, std::int64_t> out;
  while (s.step()) out[s.text(0)] = s.int64(1);
  return out;
}

SettlementLedger* StateStore::settlement_ledger() {
  if (!impl_->ledger) impl_->ledger = std::make_unique<SqliteSettlementLedger>(impl_->db);
  return impl_->ledger.get();
}

SettlementLedger& ledger_of(Store& store) {
  if (auto* ledger = store.settlement_ledger()) return *ledger;
  throw StoreError("settlements are not kept by this state store", false);
}

}  // namespace kpay::storage
