// The settlement ledger on PostgreSQL (reconciliation_store.hpp): settlements
// fetched, their lines and the reconciliation's findings over the tables of
// pg_schema.cpp's migrations 10 and 17, on the store's connection and inside
// the caller's transaction. The same answers and orderings as SQLite's
// (state_store_reconciliation.cpp): "false when known already" is ON CONFLICT
// DO NOTHING; text is ordered byte-wise (COLLATE "C"), as SQLite orders it.
//
// Several processors: two that insert the same settlement, line or finding at
// once are serialised by the unique index, and under the store's REPEATABLE
// READ the second fails with a serialization failure (transient: its
// transaction is retried and then sees the row, so answers false).
#pragma once

#include <functional>

#include "kpay/storage/reconciliation_store.hpp"
#include "postgres/pg.hpp"

namespace kpay::storage::pg {

class PgSettlementLedger final : public SettlementLedger {
 public:
  // `live`: the store's connection, re-established first when it was lost
  // outside a transaction (PgStore::live()).
  explicit PgSettlementLedger(std::function<Connection&()> live) : live_(std::move(live)) {}

  bool insert_settlement(const SettlementRow& s) override;
  std::optional<SettlementRow> find_settlement(const std::string& settlement_id) override;
  void save_settlement(const SettlementRow& s) override;
  std::vector<SettlementRow> settlements(std::int64_t since_ms, std::size_t limit) override;
  bool insert_line(const SettlementLineRow& l) override;
  std::vector<SettlementLineRow> lines(const std::string& settlement_id) override;
  std::vector<std::string> settled_before(const std::string& kind, const std::string& id,
                                          const SettlementRow& than) override;
  std::vector<SettlementLineRow> lines_settling(const std::string& kind,
                                                const std::string& id) override;
  bool insert_finding(const FindingRow& f) override;
  std::int64_t resolve_findings(const std::string& kind, const std::string& subject,
                                std::int64_t now_ms) override;
  bool resolve_finding(const std::string& finding_id, std::int64_t now_ms) override;
  std::vector<FindingRow> findings_of(const std::string& settlement_id) override;
  std::vector<FindingRow> findings(std::int64_t since_ms, bool open_only,
                                   std::size_t limit) override;
  std::map<std::string, std::int64_t> open_findings_by_kind() override;
  std::vector<UnsettledRow> unsettled(const std::string& kind, std::int64_t before_ms,
                                      std::size_t limit) override;
  std::map<std::string, std::int64_t> unsettled_capture_amounts() override;

 private:
  std::function<Connection&()> live_;
};

}  // namespace kpay::storage::pg
