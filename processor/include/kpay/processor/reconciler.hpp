// Reconciling Klarna's settlements against what the processor executed
// (reconciler.cpp; docs/OPERATIONS.md, "Settlements"). Per settlement line:
// a SALE against the capture it names, a RETURN against the refund, a
// CHARGEBACK against the transaction's chargebacks or the lost dispute, a FEE
// against a known transaction; every other type Klarna lists (HOLDBACK,
// RELEASE, FEE_REFUND, …) counted with its direction, a type not listed an
// unrecognised_line finding; per settlement: each total the report gives
// against its lines, and the payout against the lines' net.
// Across settlements: a capture or refund settled twice, and (after a grace
// period) one settled nowhere. Every difference is a typed finding stored
// once (its id is kind:settlement:subject), with both sides.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kpay/storage/reconciliation_store.hpp"
#include "kpay/storage/state_store.hpp"

namespace kpay::processor {

// The finding kinds, as stored and published.
namespace finding_kind {
inline constexpr std::string_view missing = "missing_in_settlement";
inline constexpr std::string_view unexpected = "unexpected_in_settlement";
inline constexpr std::string_view amount = "amount_mismatch";
inline constexpr std::string_view duplicate = "duplicate_settlement";
inline constexpr std::string_view payout = "payout_mismatch";
inline constexpr std::string_view currency = "currency_mismatch";
inline constexpr std::string_view unrecognised = "unrecognised_line";
inline constexpr std::string_view all[] = {missing, unexpected, amount,      duplicate,
                                           payout,  currency,   unrecognised};
}  // namespace finding_kind

struct ReconcileResult {
  std::int64_t lines = 0;                    // lines looked at
  std::vector<storage::FindingRow> found;    // new findings (stored now)
  std::int64_t resolved = 0;                 // findings resolved now (missing ones settled too)
  std::vector<storage::FindingRow> cleared;  // this settlement's findings that no longer hold
};

// Reconciles one settlement whose lines are all booked, in the caller's
// transaction: stores new findings, resolves its open findings that no longer
// hold (what they lacked arrived since) and marks the settlement reconciled.
// Running it again finds nothing new.
ReconcileResult reconcile_settlement(storage::Store& store, const std::string& settlement_id,
                                     std::int64_t now_ms);

// Every booked settlement with an open finding checked again, in the caller's
// transaction: a line reconciled before its counterpart was known (a
// CHARGEBACK before the dispute was lost, a SALE before its capture was
// booked) is resolved once it is; what is found instead (say, an
// amount_mismatch) is stored. Settlements' status is left as it is.
// Recheck::resolvable (after events are applied) looks only at settlements
// with an unexpected_in_settlement finding whose subject is now known, or a
// chargeback's amount_mismatch; Recheck::all (the periodic check) at every
// settlement with an open finding.
enum class Recheck { all, resolvable };
ReconcileResult recheck_findings(storage::Store& store, std::int64_t now_ms,
                                 Recheck which = Recheck::all);

// Captures and refunds executed before now − grace that no settlement line
// names: one missing_in_settlement finding each (once).
ReconcileResult find_missing(storage::Store& store, std::int64_t now_ms,
                             std::chrono::milliseconds grace);

// The klarna.reconciliation message of a finding
// (schemas/reconciliation-finding.schema.json); resolved_at_ms once resolved.
std::string finding_message(const storage::FindingRow& f);

// The messages of `r`'s new and resolved findings put in the publish queue
// (key: the settlement, else the subject) and appended to `publications`.
void enqueue_findings(storage::Store& store, const std::string& topic, const ReconcileResult& r,
                      std::vector<storage::PublishRow>& publications);

}  // namespace kpay::processor
