// What the settlement ledger's two backends share (state_store_reconciliation.cpp
// for SQLite, postgres/pg_settlement_ledger.cpp): the column lists in the order
// each reads them, and which line settles a capture or a refund.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace kpay::storage {

inline constexpr std::string_view kSettlementColumns =
    "settlement_id, account_id, status, currency, payout_amount, total_sale_amount, "
    "total_return_amount, total_fee_amount, total_chargeback_amount, total_tax_amount, "
    "total_settlement_amount, payment_reference, payout_date, period_start, period_end, "
    "payout_status, next_page, lines_booked, caused_by, created_at_ms, fetched_at_ms, "
    "reconciled_at_ms";

inline constexpr std::string_view kLineColumns =
    "settlement_id, line_no, type, payment_transaction_id, capture_id, refund_id, dispute_id, "
    "amount, tax_amount, currency, reference, occurred_at";

inline constexpr std::string_view kFindingColumns =
    "finding_id, kind, settlement_id, subject, ours_json, theirs_json, detail, found_at_ms, "
    "resolved_at_ms";

// A capture is settled by a SALE line naming it, a refund by a RETURN line.
struct Settles {
  std::string_view column, type;
};
inline Settles settles(const std::string& kind) {
  if (kind == "capture") return {"capture_id", "SALE"};
  if (kind == "refund") return {"refund_id", "RETURN"};
  throw std::invalid_argument("settlement lines settle captures and refunds, not " + kind);
}

}  // namespace kpay::storage
