// Settlements fetched from Klarna and what reconciling them found (state
// schema v10). A store's settlement ledger works on that store's connection,
// inside the caller's transaction when there is one: the outbox worker books a
// fetched page, and reconciles, in the transaction that records the call's
// answer. SQLite: state_store_reconciliation.cpp; PostgreSQL:
// postgres/pg_settlement_ledger.cpp (the same answers and orderings; the
// contract suite, tests/storage/settlement_ledger_contract_test.cpp, runs
// both).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "kpay/storage/rows.hpp"
#include "kpay/storage/store.hpp"

namespace kpay::storage {

// One settlement as Klarna's Settlements API describes it, and how far its
// fetch got. status: fetching (pages still to book) | fetched | reconciled.
struct SettlementRow {
  std::string settlement_id;
  std::string account_id;
  std::string status = "fetching";
  std::optional<std::string> currency;
  std::optional<std::int64_t> payout_amount;  // the payout status's amount
  std::optional<std::int64_t> total_sale_amount;
  std::optional<std::int64_t> total_return_amount;
  std::optional<std::int64_t> total_fee_amount;
  std::optional<std::int64_t> total_chargeback_amount;
  std::optional<std::int64_t> total_tax_amount;
  std::optional<std::int64_t> total_settlement_amount;  // net: what should be paid
  std::optional<std::string> payment_reference;
  std::optional<std::string> payout_date;
  std::optional<std::string> period_start;
  std::optional<std::string> period_end;
  std::optional<std::string> payout_status;
  // The transactions page (its path) to book next; none once all are booked.
  std::optional<std::string> next_page;
  std::int64_t lines_booked = 0;
  std::string caused_by;  // the settlement.report.created event_id
  std::int64_t created_at_ms = 0;
  std::optional<std::int64_t> fetched_at_ms;
  std::optional<std::int64_t> reconciled_at_ms;

  bool operator==(const SettlementRow&) const = default;
};

// One transaction line of a settlement, by its position in the report.
// type: SALE | RETURN | FEE | CHARGEBACK | … as Klarna names it (upper case;
// REVERSAL is stored as CHARGEBACK). Amounts in minor units, never negative:
// the type gives the direction (docs/klarna/SETTLEMENTS.md, "Conventions").
struct SettlementLineRow {
  std::string settlement_id;
  std::int64_t line_no = 0;
  std::string type;
  std::optional<std::string> payment_transaction_id;
  std::optional<std::string> capture_id;
  std::optional<std::string> refund_id;
  std::optional<std::string> dispute_id;
  std::int64_t amount = 0;
  std::int64_t tax_amount = 0;  // FEE lines: the tax on the fee
  std::optional<std::string> currency;
  std::optional<std::string> reference;
  std::optional<std::string> occurred_at;

  bool operator==(const SettlementLineRow&) const = default;
};

// A difference between what the processor executed and what Klarna settled.
// finding_id = kind:settlement:subject (missing_in_settlement: kind:subject),
// so the same difference is found once however often it is looked for.
struct FindingRow {
  std::string finding_id;
  std::string kind;
  std::optional<std::string> settlement_id;
  std::string subject;      // a capture, refund, transaction or settlement id
  std::string ours_json;    // what the processor holds ({} when nothing)
  std::string theirs_json;  // what the settlement says ({} when nothing)
  std::string detail;
  std::int64_t found_at_ms = 0;
  std::optional<std::int64_t> resolved_at_ms;

  bool operator==(const FindingRow&) const = default;
};

// A capture or refund the processor executed that no settlement line names.
struct UnsettledRow {
  SubRecordRow record;
  std::optional<std::string> currency;  // the record's, else its transaction's
};

class SettlementLedger {
 public:
  virtual ~SettlementLedger() = default;

  // false when the settlement is known already (its fetch was queued before).
  virtual bool insert_settlement(const SettlementRow& s) = 0;
  virtual std::optional<SettlementRow> find_settlement(const std::string& settlement_id) = 0;
  virtual void save_settlement(const SettlementRow& s) = 0;
  // Newest first; created at or after `since_ms`.
  virtual std::vector<SettlementRow> settlements(std::int64_t since_ms, std::size_t limit) = 0;

  // false when that line of that settlement is booked already.
  virtual bool insert_line(const SettlementLineRow& l) = 0;
  virtual std::vector<SettlementLineRow> lines(const std::string& settlement_id) = 0;
  // The settlements created before `than` (created_at_ms, then id) with a
  // SALE line of this capture (`kind` "capture") or a RETURN line of this
  // refund ("refund"): the capture settled twice is the later report's finding.
  virtual std::vector<std::string> settled_before(const std::string& kind, const std::string& id,
                                                  const SettlementRow& than) = 0;
  // The SALE lines of a capture / RETURN lines of a refund, any settlement.
  virtual std::vector<SettlementLineRow> lines_settling(const std::string& kind,
                                                        const std::string& id) = 0;

  // false when found before (the same finding_id).
  virtual bool insert_finding(const FindingRow& f) = 0;
  // Marks open findings of `kind` about `subject` resolved (e.g. a capture
  // missing from settlements turned up in one). The number resolved.
  virtual std::int64_t resolve_findings(const std::string& kind, const std::string& subject,
                                        std::int64_t now_ms) = 0;
  // Marks one finding resolved (a later check no longer finds it); false when
  // it is unknown or resolved already.
  virtual bool resolve_finding(const std::string& finding_id, std::int64_t now_ms) = 0;
  virtual std::vector<FindingRow> findings_of(const std::string& settlement_id) = 0;
  // Newest first; found at or after `since_ms`; open only when `open_only`.
  virtual std::vector<FindingRow> findings(std::int64_t since_ms, bool open_only,
                                           std::size_t limit) = 0;
  virtual std::map<std::string, std::int64_t> open_findings_by_kind() = 0;

  // Captures (kind "capture") or refunds ("refund") that occurred before
  // `before_ms` and that no settlement line names.
  virtual std::vector<UnsettledRow> unsettled(const std::string& kind, std::int64_t before_ms,
                                              std::size_t limit) = 0;
  // Sum of captures no settlement line names, per currency (the record's,
  // else its transaction's; "" when neither is known).
  virtual std::map<std::string, std::int64_t> unsettled_capture_amounts() = 0;
};

// The ledger of `store`; throws a permanent StoreError when its backend has
// none (both backends here have one; a test double may not).
SettlementLedger& ledger_of(Store& store);

}  // namespace kpay::storage
