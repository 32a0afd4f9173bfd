// Settlement reports, payouts and partner accounts: one state (and, for an
// account, its payment product switch) on a records row. A report's creation
// queues its fetch; nothing else calls Klarna. Every settlement event also keeps what it carried
// (ids, report links, amount, dates) in settlement_events, whatever its
// state outcome, for the settlements fetcher and klarnactl.
#include "appliers/common.hpp"
#include "settlements/settlement_fetch.hpp"

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

// The settlement event's facts, one row per event_id; and, in the history
// reason, what keyed an event without settlement_id.
void keep_settlement_facts(StoreView& store, const Event& ev, Effects& e) {
  const auto& f = ev.payload.settlement;
  if (!f) return;
  storage::SettlementEventRow r;
  r.event_id = ev.envelope.event_id;
  r.event_type = ev.envelope.event_type;
  r.entity_id = ev.envelope.entity_id;
  r.routed_by = f->routed_by;
  r.account_id = ev.envelope.subject_account_id;
  r.settlement_id = f->settlement_id;
  r.payout_id = f->payout_id;
  r.report_id = f->report_id;
  r.report_json_url = f->report_json_url;
  r.report_csv_url = f->report_csv_url;
  r.amount = ev.payload.amount;
  r.currency = ev.payload.currency;
  r.payout_date = f->payout_date;
  r.period_start = f->period_start;
  r.period_end = f->period_end;
  r.links_json = f->links_json;
  r.occurred_at_ms = ev.occurred_at_ms;
  store.insert_settlement_event(r);
  if (f->routed_by != "settlement_id") {
    const std::string note = "no settlement_id: keyed by " + f->routed_by;
    e.reason = e.reason.empty() ? note : e.reason + "; " + note;
  }
}

// The state-change message of a settlement record, with what a fetcher needs.
std::string settlement_message(std::string_view kind, const Event& ev, const Effects& e,
                               const storage::RecordRow& row) {
  std::optional<std::string> settlement_id, payout_id, json_url, csv_url;
  if (const auto& f = ev.payload.settlement) {
    settlement_id = f->settlement_id;
    payout_id = f->payout_id;
    json_url = f->report_json_url;
    csv_url = f->report_csv_url;
  }
  return ChangeMessage(kind, ev, e.from_state, e.to_state)
      .maybe("amount", row.amount)
      .maybe("currency", row.currency)
      .maybe("settlement_id", settlement_id)
      .maybe("payout_id", payout_id)
      .maybe("report_json_url", json_url)
      .maybe("report_csv_url", csv_url)
      .maybe("payout_failed",
             e.to_state == "PAYOUT_FAILED" ? std::optional<bool>(true) : std::nullopt)
      .done();
}

// What the consumer logs of a payout that failed.
FailedPayout failed_payout(const Event& ev, const storage::RecordRow& row) {
  FailedPayout f;
  f.entity_id = row.id;
  if (const auto& facts = ev.payload.settlement) {
    f.settlement_id = facts->settlement_id;
    f.payout_id = facts->payout_id;
  }
  f.amount = row.amount;
  f.currency = row.currency;
  return f;
}

}  // namespace

Effects apply_settlement_report(StoreView& store, const Event& ev,
                                const SettlementReportTransition& a,
                                const FollowUpSettings& settings) {
  Effects e;
  if (auto row = record_transition(store, ev, "settlement_report", settlement_report_machine(),
                                   a.target, true, e)) {
    e.state_change = settlement_message("settlement_report", ev, e, *row);
  }
  keep_settlement_facts(store, ev, e);
  // Whatever the state outcome: the fetch is keyed by the settlement, so a
  // report announced twice is fetched once.
  if (a.target == SettlementReportState::created) {
    const auto& f = ev.payload.settlement;
    if (auto fetch = settlement_fetch_for(f ? f->settlement_id : std::nullopt, settings)) {
      e.follow_ups.push_back(std::move(*fetch));
      e.account_id = ev.envelope.subject_account_id.value_or("");
    }
  }
  return e;
}

Effects apply_payout(StoreView& store, const Event& ev, const PayoutTransition& a) {
  Effects e;
  if (auto row = record_transition(store, ev, "payout", payout_machine(), a.target, true, e)) {
    e.state_change = settlement_message("payout", ev, e, *row);
    if (a.target == PayoutState::failed) e.failed_payout = failed_payout(ev, *row);
  }
  keep_settlement_facts(store, ev, e);
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
