// The payment state machines as transition tables (docs/klarna/PAYMENTS-API.md §1, §2,
// docs/klarna/WEBHOOKS.md §4). Each table lists every allowed direct transition, one per
// line, grouped by the state it leaves; a reviewer compares them to Klarna's
// documentation line by line. Rows marked "added" are not in Klarna's docs and
// are our tolerant reading of them (see docs/PROCESSOR.md).
//
// decide() is the single rule every machine obeys, chosen so that any delivery
// order of the same events converges to the state the ordered stream reaches.
// The state rank decides, not clocks: Klarna's services do not share one
// clock, so a later state may carry an earlier occurred_at. Two states have
// the same rank when each reaches the other through the table (a cycle, such
// as SUBMITTED <-> IN_PROGRESS); only then does occurred_at order them.
//   - unseen entity             → applied (the event creates it)
//   - target == current         → stale   (already there)
//   - current final, target final too → unsettled: stale when older, else
//                                 rejected, and read (Decision::read)
//   - current is final          → stale when older, else rejected (never regress)
//   - target of a later rank (reachable, not back) → applied, whatever the
//     clock (a move to a final state is never dropped as stale)
//   - target of the same rank   → applied when not older, else stale
//   - target of an earlier rank → stale; when its occurred_at is later the
//                                 clock disagrees with the rank: read
//   - otherwise                 → rejected (forbidden transition), read
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace kpay::processor {

enum class Outcome { applied, duplicate, stale, rejected };
std::string_view outcome_name(Outcome o);

// ---- payment requests --------------------------------------------------------
enum class RequestGeneration { gen1 = 1, gen2 = 2 };  // webhooks v1 / v2 (Gen 2/3)
enum class RequestState {
  submitted,
  prepared,  // Gen 1 only
  in_progress,
  pending_confirmation,  // Gen 1 only: confirm follows
  authorized,            // Gen 1 only: final
  completed,             // Gen 2/3 only: final authorization follows
  expired,
  canceled,
  declined,
};

// ---- payment transactions ------------------------------------------------------
enum class TransactionState { authorized, completed, expired, closed };
enum class FundingState { funded, expired };

// ---- disputes: both frameworks share one enum, each has its own table --------
enum class DisputeFramework { current, legacy };
enum class DisputeState {
  initiated,  // current framework
  representment,
  pre_arbitration,
  arbitration,
  merchant_evidence_pending,  // legacy framework
  legacy_pre_arbitration,     // legacy "pre-arbitration": a different meaning
  arbitration_pending,
  arbitration_appeal_window_open,
  closed,  // both
};

// ---- settlements and partner accounts ------------------------------------------
enum class SettlementReportState { created, uploaded_to_sftp };
enum class PayoutState { processed, confirmed, failed };
enum class AccountState { created, operational };
enum class PaymentProductState { enabled, disabled };

// Klarna's spelling ("PENDING_CONFIRMATION"), as stored and published.
std::string_view state_name(RequestState s);
std::string_view state_name(TransactionState s);
std::string_view state_name(FundingState s);
std::string_view state_name(DisputeState s);
std::string_view state_name(SettlementReportState s);
std::string_view state_name(PayoutState s);
std::string_view state_name(AccountState s);
std::string_view state_name(PaymentProductState s);
std::string_view framework_name(DisputeFramework f);

// Inverse of state_name; nullopt for a name this binary does not know.
template <class S>
std::optional<S> parse_state(std::string_view name);

template <class S>
struct Edge {
  S from;
  S to;
};

template <class S>
struct StateMachine {
  std::string_view name;
  std::span<const Edge<S>> edges;
  std::span<const S> finals;

  bool allows(S from, S to) const;
  bool is_final(S s) const;
  // True when `to` can be reached from `from` through one or more edges.
  bool reaches(S from, S to) const;
};

const StateMachine<RequestState>& gen1_request_machine();
const StateMachine<RequestState>& gen2_request_machine();
const StateMachine<TransactionState>& transaction_machine();
const StateMachine<FundingState>& funding_machine();
const StateMachine<DisputeState>& current_dispute_machine();
const StateMachine<DisputeState>& legacy_dispute_machine();
const StateMachine<SettlementReportState>& settlement_report_machine();
const StateMachine<PayoutState>& payout_machine();
const StateMachine<AccountState>& account_machine();
const StateMachine<PaymentProductState>& payment_product_machine();

struct Decision {
  Outcome outcome;
  std::string reason;  // why; empty for a plain allowed transition
  // Rank cannot settle it (two different final states, an earlier rank with a
  // later clock, no path either way): the entity is read from Klarna.
  bool read = false;
};

// The rule described at the top of this file. Times are Unix milliseconds of
// the events' occurred_at (0 when unknown).
template <class S>
Decision decide(const StateMachine<S>& machine, std::optional<S> current,
                std::int64_t current_as_of_ms, S target, std::int64_t occurred_at_ms);

}  // namespace kpay::processor
