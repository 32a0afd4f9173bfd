// Reading Klarna's settlement reports (settlement_report.cpp): the details
// (JSON report), a page of its transactions, the CSV report and the payout
// status, as docs/klarna/SETTLEMENTS.md describes them. Names Klarna Network
// and the older v1 API spell differently are both read (payment_capture_id
// or capture_id, currency_code or currency, tax_amount or vat_amount, totals
// with or without the total_ prefix); REVERSAL lines are CHARGEBACKs.
// Bad input is a SettlementParseError naming what is wrong, never a crash.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "kpay/storage/reconciliation_store.hpp"

namespace kpay::processor {

struct SettlementParseError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The details' fields, written over `into` where the report names them
// (settlement_id is checked against `into.settlement_id` when both are set).
void read_settlement_details(std::string_view json, storage::SettlementRow& into);

struct TransactionsPage {
  std::vector<storage::SettlementLineRow> lines;  // settlement_id and line_no left to the caller
  // The next page as a path with its query ("/v2/settlements/…?offset=…"),
  // from pagination.next (a URL or a path); none on the last page.
  std::optional<std::string> next;
};
TransactionsPage read_transactions_page(std::string_view json);

// The CSV report: RFC 4180, a header line, columns found by name (unknown
// ones ignored), one transaction per record.
std::vector<storage::SettlementLineRow> read_transactions_csv(std::string_view csv);

// RFC 4180 records (fields unquoted), for read_transactions_csv and its fuzz
// target. Throws SettlementParseError on an unterminated quote or a quote
// inside an unquoted field.
std::vector<std::vector<std::string>> parse_csv(std::string_view text);

struct PayoutStatus {
  std::optional<std::string> status;  // PENDING | PROCESSED | CONFIRMED | FAILED
  std::optional<std::int64_t> amount;
  std::optional<std::string> currency;
  std::optional<std::string> failure_reason;
};
PayoutStatus read_payout_status(std::string_view json);

// The path and query of a link to the Settlements API ("https://host/v2/…" or
// "/v2/…"); none unless it is under /v2/settlements/. The host is dropped:
// every call goes to the configured Klarna base URL, with its credentials.
std::optional<std::string> settlements_api_path(std::string_view link);

}  // namespace kpay::processor
