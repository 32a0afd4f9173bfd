// Settlement reports as docs/klarna/SETTLEMENTS.md describes them.
#include "kpay/processor/settlement_report.hpp"

#include <simdjson.h>

#include <initializer_list>
#include <map>

#include "settlements/settlement_types.hpp"

namespace kpay::processor {

namespace {

using simdjson::dom::element;

element parse_object(simdjson::dom::parser& parser, std::string_view json, const char* what) {
  element root;
  if (parser.parse(json.data(), json.size()).get(root) != simdjson::SUCCESS || !root.is_object()) {
    throw SettlementParseError(std::string(what) + " is not a JSON object");
  }
  return root;
}

bool field(element obj, std::string_view key, element& out) {
  return obj.is_object() && obj[key].get(out) == simdjson::SUCCESS && !out.is_null();
}

// The first of `keys` that is a non-empty string.
std::optional<std::string> text(element obj, std::initializer_list<std::string_view> keys) {
  for (auto k : keys) {
    element e;
    std::string_view v;
    if (field(obj, k, e) && e.get_string().get(v) == simdjson::SUCCESS && !v.empty()) {
      return std::string(v);
    }
  }
  return std::nullopt;
}

// The first of `keys` present: an integer (minor units). Never negative,
// except a net (total_settlement_amount, the payout), which is when returns,
// chargebacks and fees exceed sales.
std::optional<std::int64_t> amount(element obj, std::initializer_list<std::string_view> keys,
                                   bool may_be_negative = false) {
  for (auto k : keys) {
    element e;
    if (!field(obj, k, e)) continue;
    std::int64_t v = 0;
    if (e.get_int64().get(v) != simdjson::SUCCESS) {
      throw SettlementParseError(std::string(k) + " is not an integer amount");
    }
    if (v < 0 && !may_be_negative) throw SettlementParseError(std::string(k) + " is negative");
    return v;
  }
  return std::nullopt;
}

// SALE, RETURN, FEE, CHARGEBACK (v1's REVERSAL is a chargeback), upper case.
std::string line_type(std::string t) {
  for (auto& ch : t) {
    if (ch >= 'a' && ch <= 'z') ch = static_cast<char>(ch - 'a' + 'A');
  }
  return t == "REVERSAL" ? "CHARGEBACK" : t;
}

storage::SettlementLineRow read_line(element tx) {
  if (!tx.is_object()) throw SettlementParseError("a transaction is not an object");
  storage::SettlementLineRow l;
  auto type = text(tx, {"type"});
  if (!type) throw SettlementParseError("a transaction has no type");
  l.type = line_type(*type);
  auto a = amount(tx, {"amount"}, settlements::may_be_negative(l.type));
  if (!a) throw SettlementParseError("a " + l.type + " transaction has no amount");
  l.amount = *a;
  l.tax_amount = amount(tx, {"tax_amount", "vat_amount"}).value_or(0);
  l.payment_transaction_id = text(tx, {"payment_transaction_id"});
  l.capture_id = text(tx, {"payment_capture_id", "capture_id"});
  l.refund_id = text(tx, {"payment_refund_id", "refund_id"});
  l.dispute_id = text(tx, {"dispute_id", "payment_dispute_id", "reversal_reference"});
  l.currency = text(tx, {"currency_code", "currency"});
  l.reference = text(tx, {"payment_capture_reference", "payment_refund_reference",
                          "payment_transaction_reference", "payment_reference"});
  l.occurred_at = text(tx, {"transaction_date", "capture_date", "sale_date"});
  return l;
}

std::optional<std::int64_t> total(element totals, element root, std::string_view name) {
  const std::string full = "total_" + std::string(name) + "_amount";
  const std::string bare = std::string(name) + "_amount";
  const bool net = name == "settlement";
  if (totals.is_object()) {
    if (auto v = amount(totals, {full, bare}, net)) return v;
  }
  return amount(root, {full}, net);
}

}  // namespace

void read_settlement_details(std::string_view json, storage::SettlementRow& into) {
  simdjson::dom::parser parser;
  const element root = parse_object(parser, json, "the settlement");
  auto id = text(root, {"settlement_id"});
  if (id && !into.settlement_id.empty() && *id != into.settlement_id) {
    throw SettlementParseError("the answer is about settlement " + *id);
  }
  if (into.settlement_id.empty() && id) into.settlement_id = *id;
  if (auto v = text(root, {"currency_code", "currency"})) into.currency = v;
  if (auto v = text(root, {"payment_reference"})) into.payment_reference = v;
  if (auto v = text(root, {"payout_date"})) into.payout_date = v;
  if (auto v = text(root, {"interval_start"})) into.period_start = v;
  if (auto v = text(root, {"interval_end"})) into.period_end = v;
  element totals;
  if (!field(root, "totals", totals)) totals = root;
  into.total_sale_amount = total(totals, root, "sale");
  into.total_return_amount = total(totals, root, "return");
  into.total_fee_amount = total(totals, root, "fee");
  into.total_tax_amount = total(totals, root, "tax");
  into.total_settlement_amount = total(totals, root, "settlement");
  into.total_chargeback_amount = total(totals, root, "chargeback");
  if (!into.total_chargeback_amount) into.total_chargeback_amount = total(totals, root, "reversal");
}

TransactionsPage read_transactions_page(std::string_view json) {
  simdjson::dom::parser parser;
  const element root = parse_object(parser, json, "the transactions page");
  element list;
  simdjson::dom::array arr;
  if (!field(root, "transactions", list) || list.get_array().get(arr) != simdjson::SUCCESS) {
    throw SettlementParseError("the transactions page has no transactions array");
  }
  TransactionsPage page;
  for (element tx : arr) page.lines.push_back(read_line(tx));
  element pagination;
  if (field(root, "pagination", pagination)) {
    if (auto next = text(pagination, {"next"})) {
      page.next = settlements_api_path(*next);
      if (!page.next) throw SettlementParseError("pagination.next is not a Settlements API link");
    }
  }
  return page;
}

PayoutStatus read_payout_status(std::string_view json) {
  simdjson::dom::parser parser;
  const element root = parse_object(parser, json, "the payout status");
  PayoutStatus p;
  p.status = text(root, {"status"});
  p.amount = amount(root, {"amount", "payout_amount"}, true);
  p.currency = text(root, {"currency_code", "currency"});
  p.failure_reason = text(root, {"failure_reason"});
  return p;
}

std::optional<std::string> settlements_api_path(std::string_view link) {
  std::string_view path = link;
  if (auto scheme = link.find("://"); scheme != std::string_view::npos) {
    auto slash = link.find('/', scheme + 3);
    if (slash == std::string_view::npos) return std::nullopt;
    path = link.substr(slash);
  }
  if (!path.starts_with("/v2/settlements/") || path.find("..") != std::string_view::npos ||
      path.find_first_of(" \r\n#") != std::string_view::npos) {
    return std::nullopt;
  }
  return std::string(path);
}

}  // namespace kpay::processor
