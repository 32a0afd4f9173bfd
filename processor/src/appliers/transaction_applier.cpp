// Payment transactions: their state (AUTHORIZED, COMPLETED, EXPIRED, CLOSED)
// and their funding. An applied AUTHORIZED asks follow_ups.cpp whether the
// account's policy wants the rest captured now.
#include "appliers/common.hpp"

namespace kpay::processor::appliers {

namespace {

// payment.transaction.state-change.authorized applied: the automatic capture,
// when the account's policy asks for it (same key as the worker's path).
void authorized_follow_ups(const storage::PaymentTransactionRow& row,
                           const FollowUpSettings& settings, Effects& e) {
  e.follow_ups = on_transaction_authorized(row, settings);
  e.account_id = row.account_id.value_or("");
  e.due_by_ms = row.expires_at_ms;  // a capture after expiry fails
  if (!row.account_id) {
    auto with_account = row;
    with_account.account_id = "";
    if (!on_transaction_authorized(with_account, settings).empty()) {
      e.call_note = "capture due, but no subject_account_id";
    }
  }
}

}  // namespace

Effects apply_transaction_transition(StoreView& store, const Event& ev,
                                     const TransactionTransition& a,
                                     const FollowUpSettings& settings) {
  Effects e;
  const std::string& id = ev.envelope.entity_id;
  auto row = store.find_transaction(id);
  const auto before = row;  // unchanged rows are not rewritten
  auto current = row ? stored_state<TransactionState>(row->state) : std::nullopt;
  e.from_state = current ? opt(state_name(*current)) : std::nullopt;
  e.to_state = opt(state_name(a.target));
  const Decision d =
      decide(transaction_machine(), current, row && row->state ? row->state_as_of_ms : 0, a.target,
             ev.occurred_at_ms);
  set_decision(e, d);
  read_if_unsettled(e, d, ReadTransaction{id}, row ? row->account_id : std::nullopt, ev);
  if (e.outcome == Outcome::rejected) return e;
  const bool applied = e.outcome == Outcome::applied;
  if (!row) {
    row.emplace();
    row->id = id;
    row->last_event_id = ev.envelope.event_id;
  }
  merge_common_attributes(*row, ev, applied, e);
  if (applied) {
    row->state = std::string(state_name(a.target));
    row->state_as_of_ms = ev.occurred_at_ms;
    row->last_event_id = ev.envelope.event_id;
  }
  const bool had_request = row->payment_request_id.has_value();
  fill(row->payment_request_id, ev.payload.payment_request_id);
  if (!before && !row->payment_request_id) {
    row->payment_request_id = store.request_for_transaction(id);
  }
  if (row != before) store.save_transaction(*row);
  if (!had_request && row->payment_request_id) link_request(store, *row->payment_request_id, id);
  if (!applied) return e;
  std::optional<std::int64_t> remaining;
  if (row->amount) remaining = *row->amount - row->captured_amount;
  e.state_change = ChangeMessage("payment_transaction", ev, e.from_state, row->state)
                       .maybe("amount", row->amount)
                       .maybe("currency", row->currency)
                       .maybe("captured_amount", std::optional(row->captured_amount))
                       .maybe("refunded_amount", std::optional(row->refunded_amount))
                       .maybe("remaining_amount", remaining)
                       .maybe("payment_request_id", row->payment_request_id)
                       .done();
  if (a.target == TransactionState::authorized) authorized_follow_ups(*row, settings, e);
  return e;
}

Effects apply_funding_transition(StoreView& store, const Event& ev, const FundingTransition& a) {
  Effects e;
  const std::string& id = ev.envelope.entity_id;
  auto row = store.find_transaction(id);
  auto current = row ? stored_state<FundingState>(row->funding_state) : std::nullopt;
  e.from_state = current ? opt(state_name(*current)) : std::nullopt;
  e.to_state = opt(state_name(a.target));
  set_decision(e, decide(funding_machine(), current, row ? row->funding_as_of_ms : 0, a.target,
                         ev.occurred_at_ms));
  if (e.outcome != Outcome::applied) return e;
  if (!row) {
    row.emplace();
    row->id = id;
    row->payment_request_id = store.request_for_transaction(id);
  }
  row->funding_state = std::string(state_name(a.target));
  row->funding_as_of_ms = ev.occurred_at_ms;
  check_account(e, "the stored account", row->account_id, ev);
  fill(row->account_id, ev.envelope.subject_account_id);
  store.save_transaction(*row);
  e.state_change = ChangeMessage("payment_funding", ev, e.from_state, e.to_state).done();
  return e;
}

}  // namespace kpay::processor::appliers
