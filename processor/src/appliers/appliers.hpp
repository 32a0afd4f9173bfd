// One applier per entity kind. Each takes a decoded event, reads and writes
// its entity rows (and sub-records, links) in the caller's batch transaction,
// and returns what happened as Effects: the history outcome, the state-change
// message to publish, and the follow-up calls the change makes due. Outbox
// rows, history rows and the publish queue are the BatchApplier's: an applier
// never writes them, so every follow-up passes the same environment check.
//
//   request_applier.cpp      payment requests (Gen 1 and Gen 2/3, one row)
//   transaction_applier.cpp  payment transactions and their funding
//   sub_record_applier.cpp   captures, refunds, chargebacks (the amounts)
//   dispute_applier.cpp      disputes (both frameworks) and their deadlines
//   record_applier.cpp       settlement reports, payouts, partner accounts
//
// Which call a state asks for is decided in follow_ups.cpp, not here.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kpay/processor/events.hpp"
#include "kpay/processor/follow_ups.hpp"
#include "kpay/processor/state_machines.hpp"
#include "kpay/storage/store.hpp"

namespace kpay::processor::appliers {

// The entity tables of the store (the appliers use nothing else of it).
using StoreView = storage::Store;

struct Effects {
  Outcome outcome = Outcome::rejected;
  std::string reason;  // why (the state machine's reason, a bookkeeping note)
  std::optional<std::string> from_state;
  std::optional<std::string> to_state;
  std::string state_change;  // JSON for klarna.payment-states; empty = nothing to publish

  // Follow-up calls the change makes due, and what their outbox rows need.
  std::vector<FollowUp> follow_ups;
  std::string account_id;  // metadata.subject_account_id of the entity
  std::optional<std::int64_t> due_by_ms;
  std::string read_discriminator;  // see FollowUpOrigin
  // Why the calls are what they are ("COMPLETED without …": a read instead),
  // or why there is none although the state asks for one.
  std::string call_note;
  // The event's metadata.subject_account_id disagrees with the account stored
  // for the entity (or for a dispute's transaction): what, for the history
  // reason, the metric and the log. The stored account is kept.
  std::string account_mismatch;
  // settlement.payout.failed applied: the money did not arrive (consumer:
  // an error log and kpay_processor_settlement_payouts_failed_total).
  std::optional<FailedPayout> failed_payout;
};

// ---- payment requests (request_applier.cpp)
Effects apply_request_transition(StoreView& store, const Event& ev, const RequestTransition& a,
                                 const FollowUpSettings& settings);
Effects apply_request_updated(StoreView& store, const Event& ev);

// ---- payment transactions (transaction_applier.cpp, sub_record_applier.cpp)
Effects apply_transaction_transition(StoreView& store, const Event& ev,
                                     const TransactionTransition& a,
                                     const FollowUpSettings& settings);
Effects apply_funding_transition(StoreView& store, const Event& ev, const FundingTransition& a);
Effects apply_sub_record(StoreView& store, const Event& ev, const SubRecordAdded& a);

// ---- disputes (dispute_applier.cpp)
Effects apply_dispute_transition(StoreView& store, const Event& ev, const DisputeTransition& a);
Effects apply_dispute_deadline(StoreView& store, const Event& ev, const DisputeDeadlineExtended& a);

// ---- settlements and partner accounts (record_applier.cpp)
// settlement.report.created also queues the report's fetch (settlements/).
Effects apply_settlement_report(StoreView& store, const Event& ev,
                                const SettlementReportTransition& a,
                                const FollowUpSettings& settings);
Effects apply_payout(StoreView& store, const Event& ev, const PayoutTransition& a);
Effects apply_account(StoreView& store, const Event& ev, const AccountTransition& a);
Effects apply_payment_product(StoreView& store, const Event& ev, const PaymentProductTransition& a);

}  // namespace kpay::processor::appliers
