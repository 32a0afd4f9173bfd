// Disputes in both frameworks (current: INITIATED…; legacy:
// MERCHANT_EVIDENCE_PENDING…) and their deadlines. Deadlines are
// last-writer-wins by occurred_at, independent of the state outcome, so any
// delivery order ends with the newest one. No calls: accept-loss and
// represent are operator decisions (docs/klarna/PAYMENTS-API.md §4).
#include "appliers/common.hpp"
#include "kpay/core/log.hpp"

namespace kpay::processor::appliers {

namespace {

using storage::DisputeFramework;

DisputeFramework hinted_framework(FrameworkHint h) {
  return h == FrameworkHint::current ? DisputeFramework::current : DisputeFramework::legacy;
}

struct Framework {
  DisputeFramework name = DisputeFramework::current;
  bool inferred = false;
};

// The framework an event is read in: the dispute's own, a correction of an
// inferred one, or (new dispute) the hint; nullopt when the event belongs to
// the other framework of a known dispute.
std::optional<Framework> resolve_framework(std::optional<storage::DisputeRow>& row,
                                           const DisputeTransition& a, const Payload& p) {
  if (!row) {
    // pre-arbitration / closed first: only the representment object tells.
    if (a.framework == FrameworkHint::either) {
      return Framework{DisputeFramework::current, !p.has_representment};
    }
    return Framework{hinted_framework(a.framework), false};
  }
  Framework f{row->framework, row->framework_inferred};
  if (a.framework == FrameworkHint::either) return f;
  const DisputeFramework hinted = hinted_framework(a.framework);
  if (hinted != f.name) {
    if (!f.inferred) return std::nullopt;
    // The earlier guess was wrong: re-read its state in the other framework.
    if (row->state == "PRE_ARBITRATION") {
      row->state = "LEGACY_PRE_ARBITRATION";
    } else if (row->state == "LEGACY_PRE_ARBITRATION") {
      row->state = "PRE_ARBITRATION";
    }
    f.name = hinted;
  }
  f.inferred = false;
  return f;
}

void merge_dispute_attributes(storage::DisputeRow& row, const Payload& p, bool applied) {
  auto merge = [applied](auto& field, const auto& value) {
    applied ? overwrite(field, value) : fill(field, value);
  };
  merge(row.reason, p.dispute_reason);
  merge(row.amount, p.amount);
  merge(row.currency, p.currency);
  merge(row.outcome, p.dispute_outcome);
  merge(row.outcome_detailed, p.dispute_outcome_detailed);
  merge(row.closed_at_ms, p.closed_at_ms);
  merge(row.withheld_amount, p.withheld_amount);
  merge(row.returned_amount, p.returned_amount);
  merge(row.fee_amount, p.fee_amount);
  fill(row.payment_transaction_id, p.payment_transaction_id);
  fill(row.payment_capture_id, p.capture_id);
}

// Where a deadline lives on the row: its value and the occurred_at it is as of.
struct DeadlineSlot {
  std::optional<std::int64_t> storage::DisputeRow::*value;
  std::int64_t storage::DisputeRow::*as_of;
};
DeadlineSlot slot(Deadline d) {
  using R = storage::DisputeRow;
  switch (d) {
    case Deadline::representment:
      return {&R::representment_expires_at_ms, &R::representment_as_of_ms};
    case Deadline::arbitration:
      return {&R::arbitration_expires_at_ms, &R::arbitration_as_of_ms};
    case Deadline::evidence_response:
      break;
  }
  return {&R::evidence_response_deadline_ms, &R::evidence_response_as_of_ms};
}

constexpr Deadline kDeadlines[] = {Deadline::representment, Deadline::arbitration,
                                   Deadline::evidence_response};

// The value the event gives a deadline: its last reading (updated_fields last).
const Payload::DeadlineReading* reading(const Payload& p, Deadline d) {
  const Payload::DeadlineReading* found = nullptr;
  for (const auto& r : p.deadlines) {
    if (r.kind == d) found = &r;
  }
  return found;
}

// Each deadline the event names: kept in the history (every value ever told),
// and on the row when the event is not older than the value there
// (last-writer-wins by occurred_at, whatever the state outcome).
void merge_deadlines(StoreView& store, storage::DisputeRow& row, const Event& ev) {
  const std::int64_t t = ev.occurred_at_ms;
  for (Deadline d : kDeadlines) {
    const auto* r = reading(ev.payload, d);
    if (r == nullptr) continue;
    const DeadlineSlot s = slot(d);
    if (t >= row.*s.as_of) {
      row.*s.value = r->at_ms;
      row.*s.as_of = t;
    }
    store.insert_dispute_deadline({row.id, std::string(deadline_name(d)), r->at_ms, t,
                                   ev.envelope.event_id, ev.envelope.event_type,
                                   std::string(r->field)});
  }
}

// The dispute's account is its events' metadata.subject_account_id (its
// operations go there, even for a transaction never seen here); for a dispute
// whose events name none, its transaction's. Where the event, the dispute and
// the stored transaction know it and disagree, it is surfaced.
void merge_account(StoreView& store, storage::DisputeRow& row, const Event& ev, Effects& e) {
  check_account(e, "the dispute's account", row.account_id, ev);
  fill(row.account_id, ev.envelope.subject_account_id);
  if (!row.payment_transaction_id) return;
  const auto t = store.find_transaction(*row.payment_transaction_id);
  if (!t) return;
  check_account(e, "its transaction's account", t->account_id, ev);
  fill(row.account_id, t->account_id);
}

std::optional<std::string> iso(const std::optional<std::int64_t>& ms) {
  if (!ms) return std::nullopt;
  return core::rfc3339_ms(*ms);
}

// The dispute as downstream sees it on klarna.payment-states.
std::string dispute_message(const Event& ev, const std::optional<std::string>& from,
                            const storage::DisputeRow& row) {
  return ChangeMessage("dispute", ev, from, row.state)
      .maybe("amount", row.amount)
      .maybe("currency", row.currency)
      .maybe("payment_transaction_id", row.payment_transaction_id)
      .maybe("outcome", row.outcome)
      .maybe("outcome_detailed", row.outcome_detailed)
      .maybe("withheld_amount", row.withheld_amount)
      .maybe("returned_amount", row.returned_amount)
      .maybe("fee_amount", row.fee_amount)
      .maybe("representment_expires_at", iso(row.representment_expires_at_ms))
      .maybe("arbitration_expires_at", iso(row.arbitration_expires_at_ms))
      .maybe("evidence_response_deadline_at", iso(row.evidence_response_deadline_ms))
      .done();
}

}  // namespace

Effects apply_dispute_transition(StoreView& store, const Event& ev, const DisputeTransition& a) {
  Effects e;
  const std::int64_t t = ev.occurred_at_ms;
  auto row = store.find_dispute(ev.envelope.entity_id);
  const auto before = row;  // unchanged rows are not rewritten
  const auto framework = resolve_framework(row, a, ev.payload);
  if (!framework) {
    e.reason = "framework mismatch: the dispute is " + std::string(to_string(row->framework));
    e.from_state = row->state;
    return e;
  }
  const bool current_fw = framework->name == DisputeFramework::current;
  const DisputeState target = current_fw ? a.current_target : a.legacy_target;
  const auto& machine = current_fw ? current_dispute_machine() : legacy_dispute_machine();
  auto current = row ? stored_state<DisputeState>(row->state) : std::nullopt;
  e.from_state = current ? opt(state_name(*current)) : std::nullopt;
  e.to_state = opt(state_name(target));
  const Decision d =
      decide(machine, current, row && row->state ? row->state_as_of_ms : 0, target, t);
  set_decision(e, d);
  if (current_fw) {  // the legacy framework has no read in the current Dispute API
    read_if_unsettled(e, d, ReadDispute{ev.envelope.entity_id, std::nullopt},
                      row ? row->account_id : std::nullopt, ev);
  }
  if (e.outcome == Outcome::rejected) return e;
  const bool applied = e.outcome == Outcome::applied;
  if (!row) {
    row.emplace();
    row->id = ev.envelope.entity_id;
    row->last_event_id = ev.envelope.event_id;
  }
  row->framework = framework->name;
  row->framework_inferred = framework->inferred;
  if (applied) {
    row->state = std::string(state_name(target));
    row->state_as_of_ms = t;
    row->last_event_id = ev.envelope.event_id;
  }
  merge_dispute_attributes(*row, ev.payload, applied);
  merge_account(store, *row, ev, e);
  merge_deadlines(store, *row, ev);
  if (row != before) store.save_dispute(*row);
  if (applied) e.state_change = dispute_message(ev, e.from_state, *row);
  return e;
}

// A …-deadline-extended event: applied when it is the newest word on its
// deadline, stale when a newer value is known. Any other deadline it names
// is merged the same way as for state changes.
Effects apply_dispute_deadline(StoreView& store, const Event& ev,
                               const DisputeDeadlineExtended& a) {
  Effects e;
  auto row = store.find_dispute(ev.envelope.entity_id);
  const auto before = row;  // unchanged rows are not rewritten
  if (!row) {
    row.emplace();
    row->id = ev.envelope.entity_id;
    row->framework = a.deadline == Deadline::representment ? DisputeFramework::current
                                                           : DisputeFramework::legacy;
    row->last_event_id = ev.envelope.event_id;
  }
  fill(row->payment_transaction_id, ev.payload.payment_transaction_id);
  merge_account(store, *row, ev, e);
  e.from_state = row->state;
  e.to_state = row->state;
  const std::string which(deadline_name(a.deadline));
  const bool newest = ev.occurred_at_ms >= (*row).*slot(a.deadline).as_of;
  merge_deadlines(store, *row, ev);
  if (row != before) store.save_dispute(*row);
  if (!newest) {
    e.outcome = Outcome::stale;
    e.reason = "a newer " + which + " deadline is known";
    return e;
  }
  const auto value = (*row).*slot(a.deadline).value;  // decode_event: present
  e.outcome = Outcome::applied;
  e.reason = which + " deadline set to " + core::rfc3339_ms(*value);
  e.state_change = dispute_message(ev, row->state, *row);
  return e;
}

}  // namespace kpay::processor::appliers
