// Settlement reports, payouts and partner accounts: one state (and, for an
// account, its payment product switch) on a records row. Recorded only; no
// calls follow from them.
#include "common.hpp"

namespace kpay::processor::appliers {

namespace {

storage::RecordRow new_record(std::string_view kind, const std::string& id) {
  storage::RecordRow r;
  r.kind = std::string(kind);
  r.id = id;
  return r;
}

// The one state of a records row; saves and returns the row when applied.
template <class State>
std::optional<storage::RecordRow> record_transition(StoreView& store, const Event& ev,
                                                    std::string_view kind,
                                                    const StateMachine<State>& machine,
                                                    State target, bool with_amount, Effects& e) {
  const std::string& id = ev.envelope.entity_id;
  auto row = store.find_record(std::string(kind), id);
  auto current = row ? stored_state<State>(row->state) : std::nullopt;
  e.from_state = current ? opt(state_name(*current)) : std::nullopt;
  e.to_state = opt(state_name(target));
  set_decision(e,
               decide(machine, current, row ? row->state_as_of_ms : 0, target, ev.occurred_at_ms));
  if (e.outcome != Outcome::applied) return std::nullopt;
  if (!row) row = new_record(kind, id);
  row->state = e.to_state;
  row->state_as_of_ms = ev.occurred_at_ms;
  row->last_event_id = ev.envelope.event_id;
  if (with_amount) {
    overwrite(row->amount, ev.payload.amount);
    overwrite(row->currency, ev.payload.currency);
  }
  store.save_record(*row);
  return row;
}

}  // namespace

Effects apply_settlement_report(StoreView& store, const Event& ev,
                                const SettlementReportTransition& a) {
  Effects e;
  if (record_transition(store, ev, "settlement_report", settlement_report_machine(), a.target, true,
                        e)) {
    e.state_change = ChangeMessage("settlement_report", ev, e.from_state, e.to_state).done();
  }
  return e;
}

Effects apply_payout(StoreView& store, const Event& ev, const PayoutTransition& a) {
  Effects e;
  if (auto row = record_transition(store, ev, "payout", payout_machine(), a.target, true, e)) {
    e.state_change = ChangeMessage("payout", ev, e.from_state, e.to_state)
                         .maybe("amount", row->amount)
                         .maybe("currency", row->currency)
                         .done();
  }
  return e;
}

Effects apply_account(StoreView& store, const Event& ev, const AccountTransition& a) {
  Effects e;
  if (record_transition(store, ev, "partner_account", account_machine(), a.target, false, e)) {
    e.state_change = ChangeMessage("partner_account", ev, e.from_state, e.to_state).done();
  }
  return e;
}

Effects apply_payment_product(StoreView& store, const Event& ev,
                              const PaymentProductTransition& a) {
  Effects e;
  const std::string& id = ev.envelope.entity_id;
  auto row = store.find_record("partner_account", id);
  auto current = row ? stored_state<PaymentProductState>(row->sub_state) : std::nullopt;
  e.from_state = current ? opt(state_name(*current)) : std::nullopt;
  e.to_state = opt(state_name(a.target));
  set_decision(e, decide(payment_product_machine(), current, row ? row->sub_state_as_of_ms : 0,
                         a.target, ev.occurred_at_ms));
  if (e.outcome != Outcome::applied) return e;
  if (!row) row = new_record("partner_account", id);
  row->sub_state = e.to_state;
  row->sub_state_as_of_ms = ev.occurred_at_ms;
  if (row->last_event_id.empty()) row->last_event_id = ev.envelope.event_id;
  store.save_record(*row);
  e.state_change =
      ChangeMessage("partner_account_payment_product", ev, e.from_state, e.to_state).done();
  return e;
}

}  // namespace kpay::processor::appliers
