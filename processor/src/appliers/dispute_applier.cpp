// Disputes in both frameworks (current: INITIATED…; legacy:
// MERCHANT_EVIDENCE_PENDING…) and their deadlines. Deadlines are
// last-writer-wins by occurred_at, independent of the state outcome, so any
// delivery order ends with the newest one. No calls: accept-loss and
// represent are operator decisions (PAYMENTS-API.md §4).
#include "common.hpp"
#include "kpay/core/log.hpp"

namespace kpay::processor::appliers {

namespace {

constexpr std::string_view kCurrent = "current";
constexpr std::string_view kLegacy = "legacy";

std::string_view hinted_framework(FrameworkHint h) {
  return h == FrameworkHint::current ? kCurrent : kLegacy;
}

struct Framework {
  std::string name;
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
      return Framework{std::string(kCurrent), !p.has_representment};
    }
    return Framework{std::string(hinted_framework(a.framework)), false};
  }
  Framework f{row->framework, row->framework_inferred};
  if (a.framework == FrameworkHint::either) return f;
  const std::string_view hinted = hinted_framework(a.framework);
  if (hinted != f.name) {
    if (!f.inferred) return std::nullopt;
    // The earlier guess was wrong: re-read its state in the other framework.
    if (row->state == "PRE_ARBITRATION") {
      row->state = "LEGACY_PRE_ARBITRATION";
    } else if (row->state == "LEGACY_PRE_ARBITRATION") {
      row->state = "PRE_ARBITRATION";
    }
    f.name = std::string(hinted);
  }
  f.inferred = false;
  return f;
}

void merge_dispute_attributes(storage::DisputeRow& row, const Payload& p, bool applied) {
  if (applied) {
    overwrite(row.reason, p.dispute_reason);
    overwrite(row.amount, p.amount);
    overwrite(row.currency, p.currency);
    overwrite(row.outcome, p.dispute_outcome);
    overwrite(row.closed_at_ms, p.closed_at_ms);
  } else {
    fill(row.reason, p.dispute_reason);
    fill(row.amount, p.amount);
    fill(row.currency, p.currency);
    fill(row.outcome, p.dispute_outcome);
    fill(row.closed_at_ms, p.closed_at_ms);
  }
  fill(row.payment_transaction_id, p.payment_transaction_id);
  fill(row.payment_capture_id, p.capture_id);
}

void merge_deadlines(storage::DisputeRow& row, const Payload& p, std::int64_t t) {
  if (p.representment_expires_at_ms && t >= row.representment_as_of_ms) {
    row.representment_expires_at_ms = p.representment_expires_at_ms;
    row.representment_as_of_ms = t;
  }
  if (p.arbitration_expires_at_ms && t >= row.arbitration_as_of_ms) {
    row.arbitration_expires_at_ms = p.arbitration_expires_at_ms;
    row.arbitration_as_of_ms = t;
  }
}

}  // namespace

Effects apply_dispute_transition(StoreView& store, const Event& ev, const DisputeTransition& a) {
  Effects e;
  const std::int64_t t = ev.occurred_at_ms;
  auto row = store.find_dispute(ev.envelope.entity_id);
  const auto before = row;  // unchanged rows are not rewritten
  const auto framework = resolve_framework(row, a, ev.payload);
  if (!framework) {
    e.reason = "framework mismatch: the dispute is " + row->framework;
    e.from_state = row->state;
    return e;
  }
  const bool current_fw = framework->name == kCurrent;
  const DisputeState target = current_fw ? a.current_target : a.legacy_target;
  const auto& machine = current_fw ? current_dispute_machine() : legacy_dispute_machine();
  auto current = row ? stored_state<DisputeState>(row->state) : std::nullopt;
  e.from_state = current ? opt(state_name(*current)) : std::nullopt;
  e.to_state = opt(state_name(target));
  set_decision(e, decide(machine, current, row && row->state ? row->state_as_of_ms : 0, target, t));
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
  merge_deadlines(*row, ev.payload, t);
  if (row != before) store.save_dispute(*row);
  if (applied) {
    e.state_change = ChangeMessage("dispute", ev, e.from_state, row->state)
                         .maybe("amount", row->amount)
                         .maybe("currency", row->currency)
                         .maybe("payment_transaction_id", row->payment_transaction_id)
                         .maybe("outcome", row->outcome)
                         .done();
  }
  return e;
}

Effects apply_dispute_deadline(StoreView& store, const Event& ev,
                               const DisputeDeadlineExtended& a) {
  Effects e;
  const std::int64_t t = ev.occurred_at_ms;
  const bool representment = a.deadline == Deadline::representment;
  auto row = store.find_dispute(ev.envelope.entity_id);
  const auto before = row;  // unchanged rows are not rewritten
  if (!row) {
    row.emplace();
    row->id = ev.envelope.entity_id;
    row->framework = std::string(representment ? kCurrent : kLegacy);
    row->last_event_id = ev.envelope.event_id;
  }
  fill(row->payment_transaction_id, ev.payload.payment_transaction_id);
  e.from_state = row->state;
  e.to_state = row->state;
  auto& as_of = representment ? row->representment_as_of_ms : row->arbitration_as_of_ms;
  auto& field = representment ? row->representment_expires_at_ms : row->arbitration_expires_at_ms;
  const auto& value =
      representment ? ev.payload.representment_expires_at_ms : ev.payload.arbitration_expires_at_ms;
  const std::string which = representment ? "representment" : "arbitration";
  if (t < as_of) {
    e.outcome = Outcome::stale;
    e.reason = "a newer " + which + " deadline is known";
    if (row != before) store.save_dispute(*row);
    return e;
  }
  field = value;
  as_of = t;
  e.outcome = Outcome::applied;
  e.reason = which + " deadline set to " + core::rfc3339_ms(*value);  // decode_event: present
  if (row != before) store.save_dispute(*row);
  e.state_change = ChangeMessage("dispute", ev, row->state, row->state)
                       .maybe(representment ? "representment_expires_at" : "arbitration_expires_at",
                              std::optional(core::rfc3339_ms(*value)))
                       .done();
  return e;
}

}  // namespace kpay::processor::appliers
