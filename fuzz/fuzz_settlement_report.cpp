// A Settlements API answer (any bytes) → the settlement report readers the
// outbox worker runs on Klarna's answers (processor/src/settlements/): the
// CSV report, a transactions page, the details and the payout status.
// Properties: never crashes; bad input is a SettlementParseError only; a line
// read has a type and a non-negative amount; a next page is a Settlements API
// path; parse_csv is stable: its records written out fully quoted read back
// the same.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "kpay/processor/settlement_report.hpp"

namespace {

using kpay::processor::SettlementParseError;

void check_lines(const std::vector<kpay::storage::SettlementLineRow>& lines) {
  for (const auto& l : lines) {
    FUZZ_CHECK(!l.type.empty());
    FUZZ_CHECK(l.amount >= 0 && l.tax_amount >= 0);
    FUZZ_CHECK(l.type != "REVERSAL");
  }
}

std::string quoted(const std::vector<std::vector<std::string>>& records) {
  std::string out;
  for (const auto& r : records) {
    for (std::size_t i = 0; i < r.size(); ++i) {
      if (i > 0) out += ',';
      out += '"';
      for (char c : r[i]) out += c == '"' ? std::string("\"\"") : std::string(1, c);
      out += '"';
    }
    out += "\r\n";
  }
  return out;
}

void csv(std::string_view text) {
  try {
    const auto records = kpay::processor::parse_csv(text);
    for (const auto& r : records) FUZZ_CHECK(!r.empty());
    FUZZ_CHECK(kpay::processor::parse_csv(quoted(records)) == records);
  } catch (const SettlementParseError&) {
  }
  try {
    check_lines(kpay::processor::read_transactions_csv(text));
  } catch (const SettlementParseError&) {
  }
}

void json(std::string_view text) {
  try {
    const auto page = kpay::processor::read_transactions_page(text);
    check_lines(page.lines);
    if (page.next) FUZZ_CHECK(page.next->starts_with("/v2/settlements/"));
  } catch (const SettlementParseError&) {
  }
  try {
    kpay::storage::SettlementRow s;
    kpay::processor::read_settlement_details(text, s);
  } catch (const SettlementParseError&) {
  }
  try {
    kpay::processor::read_payout_status(text);
  } catch (const SettlementParseError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  csv(body);
  json(body);
  return 0;
}
