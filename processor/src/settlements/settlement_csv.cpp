// The CSV settlement report (docs/klarna/SETTLEMENTS.md, "The CSV report"):
// RFC 4180, read by a small parser fuzzed by fuzz/fuzz_settlement_csv.cpp.
// Debian's candidates were not clearly better: libcsv-dev (C, callbacks per
// field and record) needs as much glue as this; libfccp-dev (fast-cpp-csv-
// parser) fixes the column count at compile time and rejects a missing
// column, where Klarna's column set is configured per partner.
#include <charconv>
#include <initializer_list>
#include <map>

#include "kpay/processor/settlement_report.hpp"
#include "settlements/settlement_types.hpp"

namespace kpay::processor {

namespace {

// One field from `at` (just after a separator or a line start); leaves `at`
// on the separator, the line end or the end.
std::string read_field(std::string_view text, std::size_t& at) {
  std::string out;
  if (at < text.size() && text[at] == '"') {
    ++at;
    for (;;) {
      if (at >= text.size()) throw SettlementParseError("CSV: a quoted field is not closed");
      const char ch = text[at++];
      if (ch != '"') {
        out += ch;
      } else if (at < text.size() && text[at] == '"') {
        out += '"';
        ++at;
      } else {
        break;
      }
    }
    if (at < text.size() && text[at] != ',' && text[at] != '\r' && text[at] != '\n') {
      throw SettlementParseError("CSV: text after a closing quote");
    }
    return out;
  }
  while (at < text.size() && text[at] != ',' && text[at] != '\r' && text[at] != '\n') {
    if (text[at] == '"') throw SettlementParseError("CSV: a quote inside an unquoted field");
    out += text[at++];
  }
  return out;
}

std::optional<std::string> cell(const std::vector<std::string>& record,
                                const std::map<std::string, std::size_t>& columns,
                                std::initializer_list<std::string_view> names) {
  for (auto name : names) {
    auto it = columns.find(std::string(name));
    if (it != columns.end() && it->second < record.size() && !record[it->second].empty()) {
      return record[it->second];
    }
  }
  return std::nullopt;
}

// An amount in minor units: never negative, except where the line's type
// carries its own sign (CORRECTION, settlements/settlement_types.hpp).
std::optional<std::int64_t> money(const std::optional<std::string>& v, std::string_view name,
                                  bool may_be_negative = false) {
  if (!v) return std::nullopt;
  std::int64_t out = 0;
  auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (ec != std::errc() || end != v->data() + v->size() || (out < 0 && !may_be_negative)) {
    throw SettlementParseError(
        "CSV: " + std::string(name) +
        (may_be_negative ? " is not an integer" : " is not a non-negative integer"));
  }
  return out;
}

storage::SettlementLineRow csv_line(const std::vector<std::string>& r,
                                    const std::map<std::string, std::size_t>& columns) {
  storage::SettlementLineRow l;
  auto type = cell(r, columns, {"type"});
  if (!type) throw SettlementParseError("CSV: a record has no type");
  for (auto& ch : *type) {
    if (ch >= 'a' && ch <= 'z') ch = static_cast<char>(ch - 'a' + 'A');
  }
  l.type = *type == "REVERSAL" ? "CHARGEBACK" : *type;
  auto a = money(cell(r, columns, {"amount"}), "amount", settlements::may_be_negative(l.type));
  if (!a) throw SettlementParseError("CSV: a " + l.type + " record has no amount");
  l.amount = *a;
  l.tax_amount = money(cell(r, columns, {"tax_amount", "vat_amount"}), "tax_amount").value_or(0);
  l.payment_transaction_id = cell(r, columns, {"payment_transaction_id"});
  l.capture_id = cell(r, columns, {"payment_capture_id", "capture_id"});
  l.refund_id = cell(r, columns, {"payment_refund_id", "refund_id"});
  l.dispute_id = cell(r, columns, {"dispute_id", "payment_dispute_id", "reversal_reference"});
  l.currency = cell(r, columns, {"currency_code", "currency"});
  l.reference = cell(r, columns,
                     {"payment_capture_reference", "payment_refund_reference",
                      "payment_transaction_reference", "payment_reference"});
  l.occurred_at = cell(r, columns, {"transaction_date", "capture_date", "sale_date"});
  return l;
}

}  // namespace

std::vector<std::vector<std::string>> parse_csv(std::string_view text) {
  std::vector<std::vector<std::string>> records;
  std::size_t at = 0;
  if (text.starts_with("\xEF\xBB\xBF")) at = 3;  // a UTF-8 byte order mark
  while (at < text.size()) {
    std::vector<std::string> record;
    for (;;) {
      record.push_back(read_field(text, at));
      if (at < text.size() && text[at] == ',') {
        ++at;
        continue;
      }
      break;
    }
    if (at < text.size() && text[at] == '\r') ++at;
    if (at < text.size() && text[at] == '\n') ++at;
    // A blank line (one empty field) is no record.
    if (!(record.size() == 1 && record[0].empty())) records.push_back(std::move(record));
  }
  return records;
}

std::vector<storage::SettlementLineRow> read_transactions_csv(std::string_view csv) {
  auto records = parse_csv(csv);
  if (records.empty()) throw SettlementParseError("CSV: no header line");
  std::map<std::string, std::size_t> columns;
  for (std::size_t i = 0; i < records[0].size(); ++i) columns.emplace(records[0][i], i);
  if (!columns.contains("type") || !columns.contains("amount")) {
    throw SettlementParseError("CSV: the header names no type or amount column");
  }
  std::vector<storage::SettlementLineRow> lines;
  lines.reserve(records.size() - 1);
  for (std::size_t i = 1; i < records.size(); ++i) lines.push_back(csv_line(records[i], columns));
  return lines;
}

}  // namespace kpay::processor
