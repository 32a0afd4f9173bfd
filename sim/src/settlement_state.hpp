// Internal to kpay_sim: a settlement report as the sim keeps it, and the book
// of what has been reported. The wire format: docs/klarna/SETTLEMENTS.md.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace kpay::sim {

// One line of a report. Amounts are never negative: `type` gives the sign.
struct SettlementLine {
  std::string type;  // SALE, FEE, RETURN, CHARGEBACK; HOLDBACK, RELEASE, FEE_REFUND or
                     // another (fault modes)
  std::int64_t amount = 0;
  std::string transaction_id, transaction_reference;
  std::string capture_id, capture_reference;  // SALE, FEE, a capture's RETURN, CHARGEBACK
  std::string refund_id, refund_reference;    // RETURN
  std::string dispute_id;                     // CHARGEBACK
  bool has_tax = false;                       // FEE: tax_amount and tax_rate
  std::int64_t tax_amount = 0, tax_rate = 0;
  std::int64_t at = 0;          // transaction_date
  std::int64_t capture_at = 0;  // capture_date (SALE, FEE)
};

struct SettlementTotals {
  std::int64_t sale = 0, ret = 0, chargeback = 0, fee = 0, tax = 0;
  std::int64_t holdback = 0, release = 0, fee_refund = 0;  // fault modes holdback, fee_refund
  std::int64_t settlement() const {
    return sale - ret - chargeback - fee - tax - holdback + release + fee_refund;
  }
};

// A fault mode applied to one report (docs/SIM.md "Settlements").
struct SettlementFault {
  std::string kind;            // omit_capture, duplicate_capture, wrong_amount, payout_mismatch,
                               // payout_failed, holdback, fee_refund, unknown_type
  std::string capture_id;      // the capture it concerns (chosen when not given)
  std::int64_t delta = 0;      // wrong_amount, payout_mismatch; holdback, unknown_type: amount
  std::string line_type;       // unknown_type: the line's type
  std::string failure_reason;  // payout_failed
};

struct Settlement {
  std::uint64_t seq = 0;
  std::string id, payment_reference, payout_id, currency;
  std::int64_t interval_start = 0, interval_end = 0, created_at = 0, payout_date = 0;
  std::vector<SettlementLine> lines;
  SettlementTotals totals;
  std::int64_t payout_amount = 0;
  std::string payout_status;  // PROCESSED, CONFIRMED, FAILED
  std::string failure_reason;
  std::int64_t payout_updated_at = 0;
  std::vector<SettlementFault> faults;
};

struct SettlementBook {
  std::map<std::string, Settlement> by_id;
  std::set<std::string> reported;                // capture, refund and dispute ids in some report
  std::set<std::string> withheld;                // captures left out on purpose: never reported
  std::vector<std::string> reported_captures;    // in report order (settled-twice fault)
  std::map<std::string, std::int64_t> last_cut;  // currency → last interval_end
  std::vector<SettlementFault> next_faults;      // for the next report made without its own
  std::set<std::string> unconfirmed;             // payouts PROCESSED, waiting for payout_date
  std::uint64_t seq = 0;
  std::int64_t next_run_ms = -1;  // scheduled runs (settlements.every_ms)

  // Not yet in a report and not withheld.
  bool open(const std::string& id) const { return !reported.count(id) && !withheld.count(id); }
  void clear() { *this = SettlementBook{}; }
};

}  // namespace kpay::sim
