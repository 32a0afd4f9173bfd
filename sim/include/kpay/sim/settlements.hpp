// klarna-sim's settlements: how reports are produced from the sim's own
// captures, refunds and lost disputes (the wire format is
// docs/klarna/SETTLEMENTS.md; the controls and settings docs/SIM.md).
#pragma once

#include <cstdint>

namespace kpay::sim {

struct SettlementOptions {
  // A settlement per currency with anything unsettled, every this many
  // milliseconds of simulated time (`settlements.every_ms`); 0: only on demand
  // (POST /_sim/settlements).
  std::int64_t every_ms = 0;
  // The fee schedule, per capture: fee = fixed + round(amount × percent_bp /
  // 10000); VAT on it = round(fee × tax_bp / 10000).
  std::int64_t fee_fixed = 30;
  std::int64_t fee_percent_bp = 299;
  std::int64_t fee_tax_bp = 2500;
  // The payout date is the report's creation plus this (simulated time); the
  // payout is CONFIRMED when the clock reaches it.
  std::int64_t payout_delay_ms = 24LL * 3600 * 1000;
};

}  // namespace kpay::sim
