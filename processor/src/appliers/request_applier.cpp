// Payment requests. Gen 1 (webhooks v1) and Gen 2/3 (v2) events may both
// arrive for one request while a partner migrates its subscriptions
// (docs/klarna/PAYMENTS-API.md §1): each event is checked with its own generation's
// machine against the state so far, a state only the other generation knows
// being seen as its equivalent (kSeenAs). The approval itself
// (PENDING_CONFIRMATION in v1, COMPLETED in v2) causes one call, whichever
// delivery comes first.
#include <array>
#include <span>

#include "appliers/common.hpp"

namespace kpay::processor::appliers {

namespace {

using RS = RequestState;
using RG = RequestGeneration;

constexpr std::int64_t kFinalAuthorizationWindowMs = 60 * 60'000;  // docs/klarna/PAYMENTS-API.md §1

const StateMachine<RequestState>& machine_for(RequestGeneration g) {
  return g == RG::gen1 ? gen1_request_machine() : gen2_request_machine();
}

std::string_view generation_name(RequestGeneration g) {
  return g == RG::gen1 ? "v1" : "v2";
}

bool mentions(const StateMachine<RequestState>& m, RequestState s) {
  for (const auto& e : m.edges) {
    if (e.from == s || e.to == s) return true;
  }
  for (RequestState f : m.finals) {
    if (f == s) return true;
  }
  return false;
}

// A state only one generation has, as the other generation's events see it.
struct SeenAs {
  RequestGeneration by;
  RequestState state;
  RequestState seen_as;
};
// clang-format off
constexpr std::array kSeenAs = {
    SeenAs{RG::gen2, RS::prepared,             RS::submitted},
    SeenAs{RG::gen2, RS::pending_confirmation, RS::completed},  // approved, call due
    SeenAs{RG::gen2, RS::authorized,           RS::completed},  // approved, authorized
    SeenAs{RG::gen1, RS::completed,            RS::pending_confirmation},
};
// clang-format on

RequestState seen_by(RequestGeneration g, RequestState s) {
  if (mentions(machine_for(g), s)) return s;
  for (const auto& e : kSeenAs) {
    if (e.by == g && e.state == s) return e.seen_as;
  }
  return s;
}

// The one approval seen by both generations.
bool restates_approval(RequestState current, RequestState target) {
  return (current == RS::pending_confirmation && target == RS::completed) ||
         (current == RS::completed && target == RS::pending_confirmation);
}

Decision decide_request(const std::optional<storage::PaymentRequestRow>& row,
                        std::optional<RequestState> current, const RequestTransition& a,
                        std::int64_t t) {
  const auto& machine = machine_for(a.generation);
  const std::int64_t as_of = row ? row->state_as_of_ms : 0;
  if (!current) return decide(machine, current, as_of, a.target, t);
  const RequestState seen = seen_by(a.generation, *current);
  if (seen == *current) return decide(machine, current, as_of, a.target, t);
  if (restates_approval(*current, a.target) && t >= as_of) {
    return {Outcome::applied, "the " + std::string(generation_name(a.generation)) + " view of " +
                                  std::string(state_name(*current))};
  }
  // A state final for the generation that has it (a v2 COMPLETED) never goes
  // back through the other generation's view of it (v1 in-progress, submitted,
  // …): only the approval's own result (v1 authorized) may follow.
  const RequestGeneration owner = a.generation == RG::gen1 ? RG::gen2 : RG::gen1;
  if (machine_for(owner).is_final(*current) && a.target != RS::authorized) {
    return {t < as_of ? Outcome::stale : Outcome::rejected,
            std::string(state_name(*current)) + " is final for " +
                std::string(generation_name(owner)) + "; a " +
                std::string(generation_name(a.generation)) + " event does not move it back"};
  }
  Decision d = decide(machine, std::optional(seen), as_of, a.target, t);
  if (!d.reason.empty()) d.reason += "; ";
  d.reason += std::string(state_name(*current)) + " seen as " + std::string(state_name(seen)) +
              " by " + std::string(generation_name(a.generation));
  return d;
}

// Whether the other generation's delivery of this approval caused its call.
bool other_call_exists(StoreView& store, const std::string& request_id, bool completed) {
  const auto other =
      completed ? storage::OutboxOperation::confirm : storage::OutboxOperation::final_authorization;
  for (const auto& o : store.outbox(request_id)) {
    if (o.operation == other) return true;
  }
  return false;
}

std::string request_call_note(const RequestContext& c, bool completed) {
  const std::string state = completed ? "COMPLETED" : "PENDING_CONFIRMATION";
  if (!c.row.account_id) return "no subject_account_id";
  if (c.follow_up_exists) {
    return completed ? "confirm queued by the v1 delivery"
                     : "final_authorization queued by the v2 delivery";
  }
  const auto& token = completed ? c.session_token : c.confirmation_token;
  if (!token) {
    return state + (completed ? " without klarna_network_session_token"
                              : " without payment_confirmation_token");
  }
  if (!c.context && (!c.row.amount || !c.row.currency)) {
    return state + " without amount or currency";
  }
  if (c.context) return "priced by the context of command " + c.context->command_id;
  return "";
}

// An applied COMPLETED / PENDING_CONFIRMATION: the call it asks for.
void request_follow_ups(StoreView& store, storage::PaymentRequestRow& row, const Event& ev,
                        RequestState target, const FollowUpSettings& settings, Effects& e) {
  const bool completed = target == RS::completed;
  if (!completed && target != RS::pending_confirmation) return;
  const std::int64_t due = ev.occurred_at_ms + kFinalAuthorizationWindowMs;  // token: 60 min
  if (completed) row.authorization_due_ms = due;
  const Payload& p = ev.payload;
  RequestContext c{row,
                   p.session_token,
                   p.legacy_payment_token,
                   p.confirmation_token,
                   other_call_exists(store, row.id, completed),
                   store.find_payment_context(row.id, row.reference)};
  e.follow_ups = on_request_state(c, settings);
  e.account_id = row.account_id.value_or("");
  e.due_by_ms = due;
  e.read_discriminator = ev.envelope.event_id;
  e.call_note = request_call_note(c, completed);
}

// Links learnt by the other side, then the row saved when it changed.
void save_with_links(StoreView& store, storage::PaymentRequestRow& row,
                     const std::optional<storage::PaymentRequestRow>& before, bool had_link) {
  // A link the other side learnt earlier: only a new row can have missed it.
  if (!before && !row.payment_transaction_id) {
    row.payment_transaction_id = store.transaction_for_request(row.id);
  }
  if (row != before) store.save_request(row);
  if (!had_link && row.payment_transaction_id) {
    link_transaction(store, *row.payment_transaction_id, row.id);
  }
}

}  // namespace

Effects apply_request_transition(StoreView& store, const Event& ev, const RequestTransition& a,
                                 const FollowUpSettings& settings) {
  Effects e;
  const std::string& id = ev.envelope.entity_id;
  auto row = store.find_request(id);
  const auto before = row;  // unchanged rows are not rewritten
  const auto current = row ? stored_state<RequestState>(row->state) : std::nullopt;
  if (row && row->state && !current) {
    e.reason = "stored state unknown to this binary";
    return e;
  }
  e.from_state = current ? opt(state_name(*current)) : std::nullopt;
  e.to_state = opt(state_name(a.target));
  const Decision d = decide_request(row, current, a, ev.occurred_at_ms);
  set_decision(e, d);
  read_if_unsettled(e, d, ReadPaymentRequest{id}, row ? row->account_id : std::nullopt, ev);
  if (e.outcome == Outcome::rejected) return e;
  const bool applied = e.outcome == Outcome::applied;
  if (!row) {
    row.emplace();
    row->id = id;
    row->generation = static_cast<int>(a.generation);
    row->last_event_id = ev.envelope.event_id;
  }
  const bool had_link = row->payment_transaction_id.has_value();
  merge_common_attributes(*row, ev, applied, e);
  if (applied) {
    row->generation = static_cast<int>(a.generation);  // of the event that set the state
    row->state = std::string(state_name(a.target));
    row->state_as_of_ms = ev.occurred_at_ms;
    row->last_event_id = ev.envelope.event_id;
    overwrite(row->payment_transaction_id, ev.payload.payment_transaction_id);
    request_follow_ups(store, *row, ev, a.target, settings, e);
  } else {
    fill(row->payment_transaction_id, ev.payload.payment_transaction_id);
  }
  save_with_links(store, *row, before, had_link);
  if (applied) {
    e.state_change = ChangeMessage("payment_request", ev, e.from_state, row->state)
                         .maybe("amount", row->amount)
                         .maybe("currency", row->currency)
                         .maybe("payment_transaction_id", row->payment_transaction_id)
                         .done();
  }
  return e;
}

// payment.request.updated (v2): attributes only. It may reach a request whose
// state Gen 1 events set (both subscriptions deliver); it applies all the same.
Effects apply_request_updated(StoreView& store, const Event& ev) {
  Effects e;
  const std::int64_t t = ev.occurred_at_ms;
  auto row = store.find_request(ev.envelope.entity_id);
  const auto before = row;  // unchanged rows are not rewritten
  const bool newer = !row || t >= row->state_as_of_ms;
  if (!row) {
    row.emplace();
    row->id = ev.envelope.entity_id;
    row->generation = static_cast<int>(RG::gen2);
    row->last_event_id = ev.envelope.event_id;
  }
  e.from_state = row->state;
  e.to_state = row->state;
  const bool had_link = row->payment_transaction_id.has_value();
  merge_common_attributes(*row, ev, newer, e);
  if (newer) {
    e.outcome = Outcome::applied;
    e.reason = "attributes updated";
    overwrite(row->payment_transaction_id, ev.payload.payment_transaction_id);
    if (!row->state) row->state_as_of_ms = std::max(row->state_as_of_ms, t);
  } else {
    e.outcome = Outcome::stale;
    e.reason = "older than the current state";
    fill(row->payment_transaction_id, ev.payload.payment_transaction_id);
  }
  save_with_links(store, *row, before, had_link);
  if (newer) {
    e.state_change = ChangeMessage("payment_request", ev, row->state, row->state)
                         .maybe("amount", row->amount)
                         .maybe("currency", row->currency)
                         .done();
  }
  return e;
}

}  // namespace kpay::processor::appliers
