// One batch, one transaction: inbox, the entity appliers (appliers/), one
// history row per message, outbox rows for the follow-ups they report,
// publish-queue rows, offsets.
#include "kpay/processor/batch_applier.hpp"

#include <chrono>
#include <memory>

#include "appliers/appliers.hpp"
#include "commands/command_applier.hpp"
#include "commands/command_gate.hpp"
#include "intake/batch_fence.hpp"
#include "kpay/core/log.hpp"
#include "kpay/core/overloaded.hpp"
#include "kpay/core/wall_clock.hpp"
#include "kpay/processor/gap_repair.hpp"
#include "kpay/processor/reconciler.hpp"
#include "sha256.hpp"

namespace kpay::processor {

namespace {

using core::Overloaded;

appliers::Effects apply_event(storage::Store& store, const Event& ev,
                              const FollowUpSettings& settings) {
  using namespace appliers;
  return std::visit(
      Overloaded{
          [&](const RequestTransition& a) {
            return apply_request_transition(store, ev, a, settings);
          },
          [&](const RequestUpdated&) { return apply_request_updated(store, ev); },
          [&](const TransactionTransition& a) {
            return apply_transaction_transition(store, ev, a, settings);
          },
          [&](const SubRecordAdded& a) { return apply_sub_record(store, ev, a); },
          [&](const FundingTransition& a) { return apply_funding_transition(store, ev, a); },
          [&](const DisputeTransition& a) { return apply_dispute_transition(store, ev, a); },
          [&](const DisputeDeadlineExtended& a) { return apply_dispute_deadline(store, ev, a); },
          [&](const SettlementReportTransition& a) {
            return apply_settlement_report(store, ev, a, settings);
          },
          [&](const PayoutTransition& a) { return apply_payout(store, ev, a); },
          [&](const AccountTransition& a) { return apply_account(store, ev, a); },
          [&](const PaymentProductTransition& a) { return apply_payment_product(store, ev, a); },
          [&](const Unrouted&) {
            Effects e;
            e.reason = "unrouted: no state machine for this event type; recorded only";
            return e;
          },
      },
      ev.action);
}

using core::now_ms;

std::string joined(std::string a, std::string_view separator, std::string_view b) {
  if (b.empty()) return a;
  if (!a.empty()) a += separator;
  a += b;
  return a;
}

// "read queued" / "final_authorization queued" for the history reason.
std::string queued_note(const std::vector<FollowUp>& follow_ups) {
  std::string note;
  for (const auto& f : follow_ups) {
    const std::string_view op = operation_name(f);
    note = joined(std::move(note), ", ", op.starts_with("read_") ? "read" : op);
  }
  return note + " queued";
}

// The event's environment against the deployment's: a follow-up call with
// the wrong credentials must never happen (docs/klarna/PAYMENTS-API.md, environment).
bool environment_mismatch(const Event& ev, const FollowUpSettings& s) {
  return ev.envelope.live && *ev.envelope.live != s.live;
}

std::string mismatch_note(const FollowUpSettings& s) {
  return s.live ? "live=false event in a live deployment: no call"
                : "live=true event in a test deployment: no call";
}

// The follow-ups an applied event reported become outbox rows with their
// keys fixed now, unless the event came from the other environment or names
// no account to call for. Returns the history reason.
std::string queue_follow_ups(storage::Store& store, const FollowUpSettings& settings,
                             const Event& ev, appliers::Effects& e, BatchResult& out) {
  if (!e.follow_ups.empty() && e.account_id.empty()) {
    e.follow_ups.clear();
    e.call_note = joined(std::move(e.call_note), "; ", "no subject_account_id");
  }
  std::string reason = joined(std::move(e.reason), "; ", e.call_note);
  if (environment_mismatch(ev, settings) && !std::holds_alternative<Unrouted>(ev.action)) {
    ++out.environment_mismatch;
    return joined(std::move(reason), ": ", mismatch_note(settings));
  }
  if (e.follow_ups.empty()) {
    return e.call_note.empty() ? reason : joined(std::move(reason), ": ", "no call");
  }
  FollowUpOrigin origin;
  origin.account_id = e.account_id;
  origin.caused_by = ev.envelope.event_id;
  origin.now_ms = now_ms();
  origin.due_by_ms = e.due_by_ms;
  origin.read_discriminator = e.read_discriminator;
  for (const auto& f : e.follow_ups) store.insert_outbox(outbox_row(f, origin));
  return joined(std::move(reason), ": ", queued_note(e.follow_ups));
}

// SHA-256 of a body, raw (32 bytes): the inbox keeps it per event_id (empty,
// as before, if OpenSSL fails: the event is applied without one).
std::string body_digest(std::string_view body) {
  return sha256(body);
}

void count(Outcome o, BatchResult& out) {
  switch (o) {
    case Outcome::applied:
      ++out.applied;
      break;
    case Outcome::duplicate:
      ++out.duplicates;
      break;
    case Outcome::stale:
      ++out.stale;
      break;
    case Outcome::rejected:
      ++out.rejected;
      break;
  }
}

// The refusal with what the body says of itself (command_id, type); the raw
// value stays for the dead-letter copy.
DecodedMessage refused_command(InputMessage m, CommandRefusal r,
                               const std::variant<Command, CommandRejection>& command) {
  if (const auto* c = std::get_if<Command>(&command)) {
    r.command_id = c->command_id;
    r.type = std::string(command_type_name(c->type()));
  } else {
    r.command_id = std::get<CommandRejection>(command).command_id;
    r.type = std::get<CommandRejection>(command).type;
  }
  return {std::move(m), std::move(r)};
}

}  // namespace

BatchApplier::BatchApplier(storage::Store& store, klarna::Topics topics,
                           FollowUpSettings follow_ups)
    : store_(store),
      topics_(std::move(topics)),
      follow_ups_(std::move(follow_ups)),
      day_totals_(std::make_unique<appliers::SenderDayTotals>()) {}

BatchApplier::~BatchApplier() = default;

DecodedMessage BatchApplier::decode(InputMessage m) const {
  if (m.topic == topics_.commands) {
    CommandOrigin origin;
    auto refusal = authenticate_command(m, origin);
    auto command = decode_command(m.value);
    if (refusal) return refused_command(std::move(m), std::move(*refusal), command);
    std::string().swap(m.value);  // the command holds what it needs
    if (auto* c = std::get_if<Command>(&command)) {
      return {std::move(m), std::move(*c), std::move(origin)};
    }
    return {std::move(m), std::move(std::get<CommandRejection>(command)), std::move(origin)};
  }
  auto decoded = decode_event(m.value, m.topic == topics_.unrouted);
  m.digest = body_digest(m.value);
  // Only a poison message needs its raw bytes again (dead-letter copy); a
  // decoded event lets them go, which keeps the two batches in hand small.
  if (auto* ev = std::get_if<Event>(&decoded)) {
    std::string().swap(m.value);
    return {std::move(m), std::move(*ev)};
  }
  return {std::move(m), std::move(std::get<Poison>(decoded))};
}

BatchResult BatchApplier::apply(std::span<const InputMessage> batch,
                                std::span<const std::int64_t> acknowledged) {
  std::vector<DecodedMessage> decoded;
  decoded.reserve(batch.size());
  for (const auto& m : batch) decoded.push_back(decode(m));
  return apply(std::span<const DecodedMessage>(decoded), acknowledged);
}

BatchResult BatchApplier::apply(std::span<const DecodedMessage> batch,
                                std::span<const std::int64_t> acknowledged) {
  BatchResult out;
  day_totals_->clear();  // nothing of a batch that failed
  // Before any lock: a batch applied already in full (this processor lost
  // its partitions) is finished without the transaction (batch_fence.hpp).
  BatchFence fence(store_, batch);
  if (fence.nothing_left()) return finish_fenced(batch, fence, acknowledged);
  // Begun after any other processor's batch that may add to the same
  // senders' day totals committed (sender_day_totals.hpp).
  const auto keys = security_ ? appliers::day_total_keys(batch, security_->policy,
                                                         [&](const DecodedMessage& d) {
                                                           return fence.below_committed(d.message);
                                                         })
                              : std::vector<std::string>();
  storage::WriteTransaction tx(store_, keys);
  // First: on PostgreSQL it takes the snapshot and the partitions' rows.
  fence.lock(store_);
  for (std::int64_t seq : acknowledged) store_.delete_published(seq);
  for (const auto& d : batch) {
    auto& next = out.next_offsets[{d.message.topic, d.message.partition}];
    next = std::max(next, d.message.offset + 1);
    if (!fence.holds_back(d.message, out)) apply_traced(d, out);
  }
  day_totals_->flush(store_);
  recheck_settlements(out);
  fence.save_offsets(store_, out);
  store_.index_history_if_due();
  tx.commit();
  return out;
}

// Every message below its partition's committed offset: skipped and
// reported as the fence does in the transaction, no offset written (the
// stored ones stand, and are the batch's next offsets). Only the
// acknowledged publications need a transaction, of their own, without the
// partitions' rows.
BatchResult BatchApplier::finish_fenced(std::span<const DecodedMessage> batch,
                                        const BatchFence& fence,
                                        std::span<const std::int64_t> acknowledged) {
  BatchResult out;
  for (const auto& d : batch) {
    auto& next = out.next_offsets[{d.message.topic, d.message.partition}];
    next = std::max(next, d.message.offset + 1);
    fence.holds_back(d.message, out);
  }
  fence.save_offsets(store_, out);  // writes nothing: every partition is behind
  if (!acknowledged.empty()) {
    storage::WriteTransaction tx(store_);
    for (std::int64_t seq : acknowledged) store_.delete_published(seq);
    tx.commit();
  }
  return out;
}

// Every row the message causes (history, outbox, publications) carries its
// trace: the store's context for rows written anywhere below, and the
// publications' copies produced after the commit.
void BatchApplier::apply_traced(const DecodedMessage& d, BatchResult& out) {
  const auto first = out.publications.size();
  const auto& m = d.message;
  store_.set_trace_context({m.traceparent, m.received_at, m.timestamp_ms});
  try {
    apply_one(d, out);
  } catch (...) {
    store_.set_trace_context({});
    throw;
  }
  store_.set_trace_context({});
  for (auto i = first; i < out.publications.size(); ++i) {
    if (out.publications[i].traceparent.empty()) out.publications[i].traceparent = m.traceparent;
  }
}

// A dispute closed LOST or a capture, refund or chargeback booked may be what
// an open settlement finding lacked: Klarna may settle before its webhook is
// applied (docs/OPERATIONS.md, "Settlements").
void BatchApplier::recheck_settlements(BatchResult& out) {
  if (!recheck_settlements_) return;
  recheck_settlements_ = false;
  if (store_.settlement_ledger() == nullptr) return;
  enqueue_findings(store_, topics_.reconciliation,
                   recheck_findings(store_, now_ms(), Recheck::resolvable), out.publications);
}

BatchResult BatchApplier::record_apply_error(const DecodedMessage& d, std::string_view what) {
  const std::span<const DecodedMessage> one(&d, 1);
  BatchFence fence(store_, one);
  if (fence.nothing_left()) return finish_fenced(one, fence, {});
  BatchResult out;
  storage::WriteTransaction tx(store_);
  fence.lock(store_);
  const InputMessage& m = d.message;
  out.next_offsets[{m.topic, m.partition}] = m.offset + 1;
  if (!fence.holds_back(m, out)) {
    store_.set_trace_context({m.traceparent, m.received_at, m.timestamp_ms});
    record_poison(m, Poison{"apply_error", std::string(what), std::nullopt}, out);
    store_.set_trace_context({});
    if (!out.publications.empty()) out.publications.back().traceparent = m.traceparent;
  }
  fence.save_offsets(store_, out);
  tx.commit();
  return out;
}

void BatchApplier::record_poison(const InputMessage& m, const Poison& p, BatchResult& out) {
  const std::string coordinates =
      m.topic + "/" + std::to_string(m.partition) + "/" + std::to_string(m.offset);
  storage::HistoryRow h;
  h.topic = m.topic;
  h.partition = m.partition;
  h.offset = m.offset;
  h.outcome = "rejected";
  h.reason = "poison: " + p.reason + " (" + p.detail + ")";
  if (p.envelope) {
    const auto& env = *p.envelope;
    if (!store_.insert_inbox({env.event_id, m.topic, m.partition, m.offset, ""})) {
      h.outcome = "duplicate";
      h.reason = "event_id already processed";
      ++out.duplicates;
    }
    h.event_id = env.event_id;
    h.entity_kind = "poison";
    h.entity_id = env.entity_id;
    h.event_type = env.event_type;
    h.event_version = env.event_version;
    h.occurred_at = env.occurred_at;
  } else {
    h.event_id = "poison:" + coordinates;
    h.entity_kind = "poison";
    h.entity_id = m.key.empty() ? h.event_id : m.key;
  }
  store_.append_history(h);
  if (h.outcome == "duplicate") return;
  ++out.rejected;
  ++out.poison_by_reason[p.reason];
  store_.insert_poison({m.topic, m.partition, m.offset, p.envelope ? p.envelope->event_id : "",
                        p.reason, m.value, m.key});
  storage::PublishRow dlq{0, topics_.processor_dead_letter, m.key, m.value, p.reason};
  dlq.seq = store_.enqueue_publish(dlq);
  out.publications.push_back(std::move(dlq));
}

namespace {

appliers::CommandEffects command_effects(storage::Store& store, const DecodedMessage& d,
                                         const Command& c, std::int64_t now,
                                         const CommandSecurity* security,
                                         appliers::SenderDayTotals& totals) {
  if (!security) return appliers::apply_command(store, c, d.message.key, now);
  const appliers::CommandGate gate(security->policy, d.origin, totals);
  return appliers::apply_command(store, c, d.message.key, now, &gate);
}
appliers::CommandEffects command_effects(storage::Store& store, const DecodedMessage& d,
                                         const CommandRejection& r, std::int64_t now,
                                         const CommandSecurity*, appliers::SenderDayTotals&) {
  return appliers::apply_rejection(store, r, d.message.key, now);
}

std::string history_type(const std::optional<std::string>& type) {
  return "command." + type.value_or("unknown");
}

}  // namespace

template <class C>
void BatchApplier::apply_command_message(const DecodedMessage& d, const C& command,
                                         BatchResult& out) {
  const InputMessage& m = d.message;
  const std::int64_t now = now_ms();
  auto effects = command_effects(store_, d, command, now, security_.get(), *day_totals_);
  if (auto kind = appliers::gate_refusal_kind(effects.reason)) ++out.commands_refused[*kind];
  storage::HistoryRow h;
  const auto& result = effects.result;
  const std::optional<std::string> id =
      result ? result->command_id : std::optional<std::string>(command.command_id);
  const std::string coordinates =
      m.topic + "/" + std::to_string(m.partition) + "/" + std::to_string(m.offset);
  h.event_id = "command:" + id.value_or(coordinates);
  h.entity_kind = "command";
  h.entity_id = effects.entity_id.empty() ? h.event_id : effects.entity_id;
  h.event_type = history_type(result ? result->type : std::nullopt);
  h.occurred_at = core::rfc3339_ms(now);
  h.recorded_at_ms = now;  // the time its outbox row and result carry
  h.outcome = std::string(outcome_name(effects.outcome));
  h.reason = effects.reason;
  h.topic = m.topic;
  h.partition = m.partition;
  h.offset = m.offset;
  store_.append_history(h);
  count(effects.outcome, out);
  if (!result) return;
  audit_command(d, *result, now);
  storage::PublishRow row{0, topics_.command_results, m.key.empty() ? id.value_or("") : m.key,
                          render_command_result(*result, now), ""};
  row.seq = store_.enqueue_publish(row);
  out.publications.push_back(std::move(row));
}

bool BatchApplier::record_conflict(const InputMessage& m, storage::HistoryRow& h,
                                   BatchResult& out) {
  auto first = store_.find_inbox(h.event_id);
  // The store may keep a prefix of the first digest (SQLite: 8 bytes).
  if (!first || first->digest.empty() || m.digest.empty() ||
      std::string_view(m.digest).starts_with(first->digest)) {
    return false;  // the same event again (or recorded before digests were kept)
  }
  storage::EventConflictRow c{h.event_id,    m.topic,       m.partition,  m.offset,
                              m.digest,      first->digest, first->topic, first->partition,
                              first->offset, now_ms()};
  store_.insert_conflict(c);
  const std::string detail = "sha256 " + digest_hex(m.digest) + " differs from the applied " +
                             digest_hex(first->digest) + " at " + first->topic + "/" +
                             std::to_string(first->partition) + "/" + std::to_string(first->offset);
  h.outcome = "rejected";
  h.reason = "conflict: event_id applied before with another body (" + detail + ")";
  store_.append_history(h);
  ++out.conflicts;
  ++out.rejected;
  ++out.poison_by_reason["event_id_conflict"];
  // The body was let go after decoding: the dead letter names the message
  // by its coordinates (and Kafka still has it).
  store_.insert_poison(
      {m.topic, m.partition, m.offset, h.event_id, "event_id_conflict", m.value, m.key});
  storage::PublishRow dlq{0, topics_.processor_dead_letter, m.key, m.value, "event_id_conflict"};
  dlq.seq = store_.enqueue_publish(dlq);
  out.publications.push_back(std::move(dlq));
  return true;
}

void BatchApplier::apply_one(const DecodedMessage& d, BatchResult& out) {
  const InputMessage& m = d.message;
  if (const auto* p = std::get_if<Poison>(&d.decoded)) {
    record_poison(m, *p, out);
    return;
  }
  if (const auto* c = std::get_if<Command>(&d.decoded)) {
    apply_command_message(d, *c, out);
    return;
  }
  if (const auto* r = std::get_if<CommandRejection>(&d.decoded)) {
    apply_command_message(d, *r, out);
    return;
  }
  if (const auto* r = std::get_if<CommandRefusal>(&d.decoded)) {
    record_command_refusal(d, *r, out);
    return;
  }
  const Event& ev = std::get<Event>(d.decoded);
  const auto& env = ev.envelope;
  storage::HistoryRow h;
  h.event_id = env.event_id;
  h.entity_kind = std::string(entity_kind(ev.action));
  h.entity_id = env.entity_id;
  h.event_type = env.event_type;
  h.event_version = env.event_version;
  h.occurred_at = env.occurred_at;
  h.topic = m.topic;
  h.partition = m.partition;
  h.offset = m.offset;
  // Taken before the follow-ups are queued: a trace lists the event first.
  h.recorded_at_ms = now_ms();
  if (!store_.insert_inbox({env.event_id, m.topic, m.partition, m.offset, m.digest})) {
    if (record_conflict(m, h, out)) return;
    h.outcome = "duplicate";
    h.reason = "event_id already processed";
    store_.append_history(h);
    ++out.duplicates;
    return;
  }
  auto effects = apply_event(store_, ev, follow_ups_);
  if (std::holds_alternative<DisputeTransition>(ev.action) ||
      std::holds_alternative<SubRecordAdded>(ev.action)) {
    recheck_settlements_ = true;
  }
  if (std::holds_alternative<Unrouted>(ev.action)) ++out.unrouted;
  if (!effects.account_mismatch.empty()) {
    out.account_mismatches.emplace_back(env.entity_id, effects.account_mismatch);
    effects.reason = joined(std::move(effects.reason), "; ", effects.account_mismatch);
  }
  if (effects.failed_payout) out.failed_payouts.push_back(std::move(*effects.failed_payout));
  h.outcome = std::string(outcome_name(effects.outcome));
  h.reason = queue_follow_ups(store_, follow_ups_, ev, effects, out);
  h.from_state = std::move(effects.from_state);
  h.to_state = std::move(effects.to_state);
  store_.append_history(h);
  count(effects.outcome, out);
  if (effects.outcome == Outcome::applied && !effects.state_change.empty()) {
    storage::PublishRow row{0, topics_.payment_states, env.entity_id,
                            std::move(effects.state_change), ""};
    row.seq = store_.enqueue_publish(row);
    out.publications.push_back(std::move(row));
  }
}

}  // namespace kpay::processor
