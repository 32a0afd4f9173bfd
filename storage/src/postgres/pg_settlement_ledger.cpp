// Settlements fetched, their lines and the reconciliation's findings on
// PostgreSQL (pg_settlement_ledger.hpp); the SQLite twin is
// state_store_reconciliation.cpp.
#include "postgres/pg_settlement_ledger.hpp"

#include "settlement_ledger_sql.hpp"

namespace kpay::storage::pg {

namespace {

std::string settlement_sql(std::string_view head, std::string_view tail) {
  std::string sql(head);
  sql.append(" (")
      .append(kSettlementColumns)
      .append(
          ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, "
          "$18, "
          "$19, $20, $21, $22) ");
  return sql.append(tail);
}

Params settlement_params(const SettlementRow& r) {
  Params p = params(r.settlement_id, r.account_id, r.status, r.currency, r.payout_amount);
  p.add(r.total_sale_amount).add(r.total_return_amount).add(r.total_fee_amount);
  p.add(r.total_chargeback_amount).add(r.total_tax_amount).add(r.total_settlement_amount);
  p.add(r.payment_reference).add(r.payout_date).add(r.period_start).add(r.period_end);
  p.add(r.payout_status).add(r.next_page).add(r.lines_booked).add(r.caused_by);
  p.add(r.created_at_ms).add(r.fetched_at_ms).add(r.reconciled_at_ms);
  return p;
}

SettlementRow settlement_row(const Result& r, int i) {
  SettlementRow s;
  s.settlement_id = r.text(i, 0);
  s.account_id = r.text(i, 1);
  s.status = r.text(i, 2);
  s.currency = r.optional_text(i, 3);
  s.payout_amount = r.optional_int64(i, 4);
  s.total_sale_amount = r.optional_int64(i, 5);
  s.total_return_amount = r.optional_int64(i, 6);
  s.total_fee_amount = r.optional_int64(i, 7);
  s.total_chargeback_amount = r.optional_int64(i, 8);
  s.total_tax_amount = r.optional_int64(i, 9);
  s.total_settlement_amount = r.optional_int64(i, 10);
  s.payment_reference = r.optional_text(i, 11);
  s.payout_date = r.optional_text(i, 12);
  s.period_start = r.optional_text(i, 13);
  s.period_end = r.optional_text(i, 14);
  s.payout_status = r.optional_text(i, 15);
  s.next_page = r.optional_text(i, 16);
  s.lines_booked = r.int64(i, 17);
  s.caused_by = r.text(i, 18);
  s.created_at_ms = r.int64(i, 19);
  s.fetched_at_ms = r.optional_int64(i, 20);
  s.reconciled_at_ms = r.optional_int64(i, 21);
  return s;
}

std::vector<SettlementLineRow> line_rows(const Result& r) {
  std::vector<SettlementLineRow> out;
  for (int i = 0; i < r.rows(); ++i) {
    SettlementLineRow l;
    l.settlement_id = r.text(i, 0);
    l.line_no = r.int64(i, 1);
    l.type = r.text(i, 2);
    l.payment_transaction_id = r.optional_text(i, 3);
    l.capture_id = r.optional_text(i, 4);
    l.refund_id = r.optional_text(i, 5);
    l.dispute_id = r.optional_text(i, 6);
    l.amount = r.int64(i, 7);
    l.tax_amount = r.int64(i, 8);
    l.currency = r.optional_text(i, 9);
    l.reference = r.optional_text(i, 10);
    l.occurred_at = r.optional_text(i, 11);
    out.push_back(std::move(l));
  }
  return out;
}

std::vector<FindingRow> finding_rows(const Result& r) {
  std::vector<FindingRow> out;
  for (int i = 0; i < r.rows(); ++i) {
    FindingRow f;
    f.finding_id = r.text(i, 0);
    f.kind = r.text(i, 1);
    f.settlement_id = r.optional_text(i, 2);
    f.subject = r.text(i, 3);
    f.ours_json = r.text(i, 4);
    f.theirs_json = r.text(i, 5);
    f.detail = r.text(i, 6);
    f.found_at_ms = r.int64(i, 7);
    f.resolved_at_ms = r.optional_int64(i, 8);
    out.push_back(std::move(f));
  }
  return out;
}

std::string select_from(std::string_view columns, std::string_view table, std::string_view rest) {
  std::string sql = "SELECT ";
  sql.append(columns).append(" FROM ").append(table).append(" ").append(rest);
  return sql;
}

}  // namespace

bool PgSettlementLedger::insert_settlement(const SettlementRow& s) {
  return live_()
             .query(settlement_sql("INSERT INTO settlements",
                                   "ON CONFLICT (settlement_id) DO NOTHING"),
                    settlement_params(s))
             .affected() == 1;
}

std::optional<SettlementRow> PgSettlementLedger::find_settlement(const std::string& id) {
  Result r = live_().query(
      select_from(kSettlementColumns, "settlements", "WHERE settlement_id = $1"), params(id));
  if (r.rows() == 0) return std::nullopt;
  return settlement_row(r, 0);
}

// The whole row, as SQLite's INSERT OR REPLACE.
void PgSettlementLedger::save_settlement(const SettlementRow& s) {
  live_().query(
      settlement_sql(
          "INSERT INTO settlements",
          "ON CONFLICT (settlement_id) DO UPDATE SET account_id = EXCLUDED.account_id, "
          "status = EXCLUDED.status, currency = EXCLUDED.currency, "
          "payout_amount = EXCLUDED.payout_amount, total_sale_amount = EXCLUDED.total_sale_amount, "
          "total_return_amount = EXCLUDED.total_return_amount, "
          "total_fee_amount = EXCLUDED.total_fee_amount, "
          "total_chargeback_amount = EXCLUDED.total_chargeback_amount, "
          "total_tax_amount = EXCLUDED.total_tax_amount, "
          "total_settlement_amount = EXCLUDED.total_settlement_amount, "
          "payment_reference = EXCLUDED.payment_reference, payout_date = EXCLUDED.payout_date, "
          "period_start = EXCLUDED.period_start, period_end = EXCLUDED.period_end, "
          "payout_status = EXCLUDED.payout_status, next_page = EXCLUDED.next_page, "
          "lines_booked = EXCLUDED.lines_booked, caused_by = EXCLUDED.caused_by, "
          "created_at_ms = EXCLUDED.created_at_ms, fetched_at_ms = EXCLUDED.fetched_at_ms, "
          "reconciled_at_ms = EXCLUDED.reconciled_at_ms"),
      settlement_params(s));
}

std::vector<SettlementRow> PgSettlementLedger::settlements(std::int64_t since_ms,
                                                           std::size_t limit) {
  Result r = live_().query(select_from(kSettlementColumns, "settlements",
                                       "WHERE created_at_ms >= $1 ORDER BY created_at_ms DESC, "
                                       "settlement_id COLLATE \"C\" LIMIT $2"),
                           params(since_ms, static_cast<std::int64_t>(limit)));
  std::vector<SettlementRow> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(settlement_row(r, i));
  return out;
}

bool PgSettlementLedger::insert_line(const SettlementLineRow& l) {
  Params p = params(l.settlement_id, l.line_no, l.type, l.payment_transaction_id, l.capture_id);
  p.add(l.refund_id).add(l.dispute_id).add(l.amount).add(l.tax_amount).add(l.currency);
  p.add(l.reference).add(l.occurred_at);
  std::string sql = "INSERT INTO settlement_lines (";
  sql.append(kLineColumns)
      .append(
          ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
          "ON CONFLICT (settlement_id, line_no) DO NOTHING");
  return live_().query(sql, p).affected() == 1;
}

std::vector<SettlementLineRow> PgSettlementLedger::lines(const std::string& settlement_id) {
  return line_rows(live_().query(
      select_from(kLineColumns, "settlement_lines", "WHERE settlement_id = $1 ORDER BY line_no"),
      params(settlement_id)));
}

std::vector<std::string> PgSettlementLedger::settled_before(const std::string& kind,
                                                            const std::string& id,
                                                            const SettlementRow& than) {
  const auto k = settles(kind);
  std::string sql =
      "SELECT DISTINCT l.settlement_id COLLATE \"C\" FROM settlement_lines l "
      "JOIN settlements s ON s.settlement_id = l.settlement_id WHERE l.";
  sql.append(k.column).append(
      " = $1 AND l.type = $2 AND (s.created_at_ms < $3 OR (s.created_at_ms = $3 AND "
      "s.settlement_id COLLATE \"C\" < $4)) ORDER BY 1");
  Result r = live_().query(sql, params(id, k.type, than.created_at_ms, than.settlement_id));
  std::vector<std::string> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(r.text(i, 0));
  return out;
}

std::vector<SettlementLineRow> PgSettlementLedger::lines_settling(const std::string& kind,
                                                                  const std::string& id) {
  const auto k = settles(kind);
  std::string where = "WHERE ";
  where.append(k.column).append(
      " = $1 AND type = $2 ORDER BY settlement_id COLLATE \"C\", line_no");
  return line_rows(
      live_().query(select_from(kLineColumns, "settlement_lines", where), params(id, k.type)));
}

bool PgSettlementLedger::insert_finding(const FindingRow& f) {
  Params p = params(f.finding_id, f.kind, f.settlement_id, f.subject, f.ours_json);
  p.add(f.theirs_json).add(f.detail).add(f.found_at_ms).add(f.resolved_at_ms);
  std::string sql = "INSERT INTO reconciliation_findings (";
  sql.append(kFindingColumns)
      .append(") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (finding_id) DO NOTHING");
  return live_().query(sql, p).affected() == 1;
}

std::int64_t PgSettlementLedger::resolve_findings(const std::string& kind,
                                                  const std::string& subject, std::int64_t now_ms) {
  return live_()
      .query(
          "UPDATE reconciliation_findings SET resolved_at_ms = $1 "
          "WHERE kind = $2 AND subject = $3 AND resolved_at_ms IS NULL",
          params(now_ms, kind, subject))
      .affected();
}

bool PgSettlementLedger::resolve_finding(const std::string& finding_id, std::int64_t now_ms) {
  return live_()
             .query(
                 "UPDATE reconciliation_findings SET resolved_at_ms = $1 "
                 "WHERE finding_id = $2 AND resolved_at_ms IS NULL",
                 params(now_ms, finding_id))
             .affected() == 1;
}

std::vector<FindingRow> PgSettlementLedger::findings_of(const std::string& settlement_id) {
  return finding_rows(live_().query(
      select_from(kFindingColumns, "reconciliation_findings",
                  "WHERE settlement_id = $1 ORDER BY kind COLLATE \"C\", subject COLLATE \"C\""),
      params(settlement_id)));
}

std::vector<FindingRow> PgSettlementLedger::findings(std::int64_t since_ms, bool open_only,
                                                     std::size_t limit) {
  std::string rest = "WHERE found_at_ms >= $1 ";
  if (open_only) rest += "AND resolved_at_ms IS NULL ";
  rest += "ORDER BY found_at_ms DESC, finding_id COLLATE \"C\" LIMIT $2";
  return finding_rows(live_().query(select_from(kFindingColumns, "reconciliation_findings", rest),
                                    params(since_ms, static_cast<std::int64_t>(limit))));
}

std::map<std::string, std::int64_t> PgSettlementLedger::open_findings_by_kind() {
  Result r = live_().query(
      "SELECT kind, COUNT(*) FROM reconciliation_findings WHERE resolved_at_ms IS NULL "
      "GROUP BY kind");
  std::map<std::string, std::int64_t> out;
  for (int i = 0; i < r.rows(); ++i) out[r.text(i, 0)] = r.int64(i, 1);
  return out;
}

std::vector<UnsettledRow> PgSettlementLedger::unsettled(const std::string& kind,
                                                        std::int64_t before_ms, std::size_t limit) {
  const auto k = settles(kind);
  std::string sql =
      "SELECT r.id, r.transaction_id, r.amount, r.currency, r.capture_id, r.occurred_at_ms, "
      "r.event_id, COALESCE(r.currency, t.currency) FROM transaction_sub_records r "
      "LEFT JOIN payment_transactions t ON t.id = r.transaction_id "
      "WHERE r.kind = $1 AND r.occurred_at_ms < $2 AND NOT EXISTS "
      "(SELECT 1 FROM settlement_lines l WHERE l.";
  sql.append(k.column).append(
      " = r.id AND l.type = $3) ORDER BY r.occurred_at_ms, r.id COLLATE \"C\" LIMIT $4");
  Result r = live_().query(sql, params(kind, before_ms, k.type, static_cast<std::int64_t>(limit)));
  std::vector<UnsettledRow> out;
  for (int i = 0; i < r.rows(); ++i) {
    UnsettledRow u;
    u.record.kind = kind;
    u.record.id = r.text(i, 0);
    u.record.transaction_id = r.text(i, 1);
    u.record.amount = r.int64(i, 2);
    u.record.currency = r.optional_text(i, 3);
    u.record.capture_id = r.optional_text(i, 4);
    u.record.occurred_at_ms = r.int64(i, 5);
    u.record.event_id = r.text(i, 6);
    u.currency = r.optional_text(i, 7);
    out.push_back(std::move(u));
  }
  return out;
}

std::map<std::string, std::int64_t> PgSettlementLedger::unsettled_capture_amounts() {
  Result r = live_().query(
      "SELECT COALESCE(r.currency, t.currency, ''), SUM(r.amount)::BIGINT "
      "FROM transaction_sub_records r LEFT JOIN payment_transactions t ON t.id = r.transaction_id "
      "WHERE r.kind = 'capture' AND NOT EXISTS "
      "(SELECT 1 FROM settlement_lines l WHERE l.capture_id = r.id AND l.type = 'SALE') "
      "GROUP BY 1");
  std::map<std::string, std::int64_t> out;
  for (int i = 0; i < r.rows(); ++i) out[r.text(i, 0)] = r.int64(i, 1);
  return out;
}

}  // namespace kpay::storage::pg
