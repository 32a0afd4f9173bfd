// The settlement transaction types Klarna's Settlements API lists and the
// direction of each in the payout (docs/klarna/SETTLEMENTS.md, "Transaction
// types"): +1 pays the partner, -1 takes from the payout. Amounts are never
// negative, the type gives the direction, except CORRECTION, whose amount
// carries its own sign. TAX lines add to the tax total (taken from the
// payout with the FEE lines' tax). A type not in this list is an
// unrecognised_line finding (reconciler.cpp).
#pragma once

#include <string_view>

namespace kpay::processor::settlements {

struct LineType {
  std::string_view name;
  int sign;            // +1 to the partner, -1 from the payout
  bool signed_amount;  // the amount carries its own sign (CORRECTION)
};

inline constexpr LineType kLineTypes[] = {
    {"SALE", +1, false},       {"RETURN", -1, false},
    {"CHARGEBACK", -1, false},  // v1's REVERSAL
    {"FEE", -1, false},        {"TAX", -1, false},
    {"COMMISSION", -1, false}, {"FEE_REFUND", +1, false},
    {"CORRECTION", +1, true},  {"REVERSAL_MERCHANT_PROTECTION", +1, false},
    {"CHARGE", -1, false},     {"CREDIT", +1, false},
    {"HOLDBACK", -1, false},   {"RELEASE", +1, false},
};

// The type named `name` (upper case, REVERSAL read as CHARGEBACK), or null.
constexpr const LineType* line_type_of(std::string_view name) {
  for (const auto& t : kLineTypes) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

// Whether a line of this type may have a negative amount.
constexpr bool may_be_negative(std::string_view name) {
  const auto* t = line_type_of(name);
  return t != nullptr && t->signed_amount;
}

}  // namespace kpay::processor::settlements
