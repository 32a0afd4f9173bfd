// The SQLite settlement ledger (state_store_reconciliation.cpp), owned by a
// StateStore and working on its connection.
#pragma once

#include <optional>

#include "kpay/storage/reconciliation_store.hpp"
#include "kpay/storage/sqlite.hpp"

namespace kpay::storage {

class SqliteSettlementLedger final : public SettlementLedger {
 public:
  explicit SqliteSettlementLedger(Database& db) : db_(db) {}

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
  Database& db_;
  std::optional<Statement> insert_line_;  // a report books many lines
};

}  // namespace kpay::storage
