#include "kpay/processor/batch_applier.hpp"

#include <openssl/evp.h>

#include "kpay/core/json_writer.hpp"
#include "kpay/core/log.hpp"

namespace kpay::processor {

namespace {

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

constexpr std::int64_t kFinalAuthorizationWindowMs = 60 * 60 * 1000;  // PAYMENTS-API.md §1

// Fill an attribute that is still unknown (any non-rejected event may do this).
template <class T>
void fill(std::optional<T>& field, const std::optional<T>& value) {
  if (!field && value) field = value;
}
// Overwrite with what an applied (newest) event says, when it says it.
template <class T>
void overwrite(std::optional<T>& field, const std::optional<T>& value) {
  if (value) field = value;
}

// The attributes payment requests and transactions share: an applied event
// (the newest) overwrites what it says, any other event only fills gaps.
template <class Row>
void merge_common_attributes(Row& row, const Payload& p, bool applied) {
  if (applied) {
    overwrite(row.reference, p.reference);
    overwrite(row.amount, p.amount);
    overwrite(row.currency, p.currency);
    overwrite(row.expires_at_ms, p.expires_at_ms);
  } else {
    fill(row.reference, p.reference);
    fill(row.amount, p.amount);
    fill(row.currency, p.currency);
    fill(row.expires_at_ms, p.expires_at_ms);
  }
}

std::optional<std::string> opt(std::string_view s) {
  return std::string(s);
}

storage::RecordRow new_record(std::string kind, const std::string& id) {
  storage::RecordRow r;
  r.kind = std::move(kind);
  r.id = id;
  return r;
}

}  // namespace

std::string idempotency_key(std::string_view operation, std::string_view entity_id,
                            std::string_view discriminator) {
  std::string material;
  material.reserve(operation.size() + entity_id.size() + discriminator.size() + 2);
  material.append(operation).push_back('\n');
  material.append(entity_id).push_back('\n');
  material.append(discriminator);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(material.data(), material.size(), digest, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string key = "kpay-";
  key += operation;
  key += '-';
  for (unsigned i = 0; i < 16 && i < len; ++i) {  // 128 bits: collisions are not a concern
    key += kHex[digest[i] >> 4];
    key += kHex[digest[i] & 0xf];
  }
  return key;
}

struct BatchApplier::Step {
  Outcome outcome = Outcome::rejected;
  std::string reason;
  std::optional<std::string> from_state;
  std::optional<std::string> to_state;
  // Set when the event changed something downstream should hear about.
  std::string state_change;  // JSON; empty = nothing to publish
};

BatchApplier::BatchApplier(storage::StateStore& store, klarna::Topics topics)
    : store_(store), topics_(std::move(topics)) {}

DecodedMessage BatchApplier::decode(InputMessage m) const {
  auto decoded = decode_event(m.value, m.topic == topics_.unrouted);
  // Only a poison message needs its raw bytes again (dead-letter copy); a
  // decoded event lets them go, which keeps the two batches in hand small.
  if (std::holds_alternative<Event>(decoded)) std::string().swap(m.value);
  return {std::move(m), std::move(decoded)};
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
  storage::Transaction tx(store_.database());
  for (std::int64_t seq : acknowledged) store_.delete_published(seq);
  for (const auto& d : batch) {
    apply_one(d, out);
    auto& next = out.next_offsets[{d.message.topic, d.message.partition}];
    next = std::max(next, d.message.offset + 1);
  }
  for (const auto& [tp, next] : out.next_offsets) store_.save_offset(tp.first, tp.second, next);
  store_.index_history_if_due();
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
    if (!store_.insert_inbox({env.event_id, m.topic, m.partition, m.offset})) {
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
  store_.insert_poison(
      {m.topic, m.partition, m.offset, p.envelope ? p.envelope->event_id : "", p.reason, m.value});
  storage::PublishRow dlq{0, topics_.processor_dead_letter, m.key, m.value, p.reason};
  dlq.seq = store_.enqueue_publish(dlq);
  out.publications.push_back(std::move(dlq));
}

void BatchApplier::apply_one(const DecodedMessage& d, BatchResult& out) {
  const InputMessage& m = d.message;
  const auto& decoded = d.decoded;
  if (const auto* p = std::get_if<Poison>(&decoded)) {
    record_poison(m, *p, out);
    return;
  }
  const Event& ev = std::get<Event>(decoded);
  const auto& env = ev.envelope;
  const std::string kind(entity_kind(ev.action));

  storage::HistoryRow h;
  h.event_id = env.event_id;
  h.entity_kind = kind;
  h.entity_id = env.entity_id;
  h.event_type = env.event_type;
  h.event_version = env.event_version;
  h.occurred_at = env.occurred_at;
  h.topic = m.topic;
  h.partition = m.partition;
  h.offset = m.offset;

  if (!store_.insert_inbox({env.event_id, m.topic, m.partition, m.offset})) {
    h.outcome = "duplicate";
    h.reason = "event_id already processed";
    store_.append_history(h);
    ++out.duplicates;
    return;
  }

  Step step;
  if (std::holds_alternative<Unrouted>(ev.action)) {
    step.outcome = Outcome::rejected;
    step.reason = "unrouted: no state machine for this event type; recorded only";
    ++out.unrouted;
  } else {
    apply_event(ev, step);
  }
  h.outcome = std::string(outcome_name(step.outcome));
  h.reason = std::move(step.reason);
  h.from_state = std::move(step.from_state);
  h.to_state = std::move(step.to_state);
  store_.append_history(h);

  switch (step.outcome) {
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
  if (step.outcome == Outcome::applied && !step.state_change.empty()) {
    storage::PublishRow row{0, topics_.payment_states, env.entity_id, std::move(step.state_change),
                            ""};
    row.seq = store_.enqueue_publish(row);
    out.publications.push_back(std::move(row));
  }
}

namespace {

// The state-change message downstream consumes (klarna.payment-states).
struct ChangeMessage {
  core::JsonWriter w;
  ChangeMessage(std::string_view kind, const Event& ev, const std::optional<std::string>& from,
                const std::optional<std::string>& to) {
    w.begin_object();
    w.field("entity_kind", kind).field("entity_id", ev.envelope.entity_id);
    w.key("previous_state");
    from ? w.value(*from) : w.null();
    w.key("state");
    to ? w.value(*to) : w.null();
    w.field("event_id", ev.envelope.event_id).field("event_type", ev.envelope.event_type);
    w.field("event_version", ev.envelope.event_version);
    w.field("occurred_at", ev.envelope.occurred_at);
  }
  template <class T>
  ChangeMessage& maybe(std::string_view k, const std::optional<T>& v) {
    if (v) w.field(k, *v);
    return *this;
  }
  std::string done() {
    w.end_object();
    return w.take();
  }
};

template <class S>
std::optional<S> stored_state(const std::optional<std::string>& name) {
  if (!name) return std::nullopt;
  return parse_state<S>(*name);
}

}  // namespace

void BatchApplier::apply_event(const Event& ev, Step& step) {
  const auto& env = ev.envelope;
  const auto& p = ev.payload;
  const std::int64_t t = ev.occurred_at_ms;
  const std::string& id = env.entity_id;

  auto set_decision = [&](const Decision& d) {
    step.outcome = d.outcome;
    step.reason = d.reason;
  };

  // Transaction-side half of the request ↔ transaction link: whichever side
  // arrives second completes it, so the link does not depend on order.
  auto link_transaction = [&](const std::string& transaction_id, const std::string& request_id) {
    auto txn = store_.find_transaction(transaction_id);
    if (txn && !txn->payment_request_id) {
      txn->payment_request_id = request_id;
      store_.save_transaction(*txn);
    }
  };
  // Settlement reports, payouts and partner accounts: one state on a records
  // row. Saves and returns the row when the transition applied.
  auto record_transition = [&](const char* kind, const auto& machine, auto target,
                               bool with_amount) -> std::optional<storage::RecordRow> {
    using State = decltype(target);
    auto row = store_.find_record(kind, id);
    auto current = row ? stored_state<State>(row->state) : std::nullopt;
    step.from_state = current ? opt(state_name(*current)) : std::nullopt;
    step.to_state = opt(state_name(target));
    set_decision(decide(machine, current, row ? row->state_as_of_ms : 0, target, t));
    if (step.outcome != Outcome::applied) return std::nullopt;
    if (!row) row = new_record(kind, id);
    row->state = step.to_state;
    row->state_as_of_ms = t;
    row->last_event_id = env.event_id;
    if (with_amount) {
      overwrite(row->amount, p.amount);
      overwrite(row->currency, p.currency);
    }
    store_.save_record(*row);
    return row;
  };
  auto link_request = [&](const std::string& request_id, const std::string& transaction_id) {
    auto req = store_.find_request(request_id);
    if (req && !req->payment_transaction_id) {
      req->payment_transaction_id = transaction_id;
      store_.save_request(*req);
    }
  };

  std::visit(
      Overloaded{
          // ---------------------------------------------------------------- requests
          [&](const RequestTransition& a) {
            auto row = store_.find_request(id);
            const auto before = row;  // unchanged rows are not rewritten
            const int gen = static_cast<int>(a.generation);
            if (row && row->state && row->generation != gen) {
              step.outcome = Outcome::rejected;
              step.reason =
                  "generation mismatch: the request is Gen " + std::to_string(row->generation);
              step.from_state = row->state;
              step.to_state = opt(state_name(a.target));
              return;
            }
            const auto& machine = a.generation == RequestGeneration::gen1 ? gen1_request_machine()
                                                                          : gen2_request_machine();
            auto current = row ? stored_state<RequestState>(row->state) : std::nullopt;
            if (row && row->state && !current) {
              step.outcome = Outcome::rejected;
              step.reason = "stored state unknown to this binary";
              return;
            }
            step.from_state = current ? opt(state_name(*current)) : std::nullopt;
            step.to_state = opt(state_name(a.target));
            set_decision(decide(machine, current, row ? row->state_as_of_ms : 0, a.target, t));
            if (step.outcome == Outcome::rejected) return;
            const bool is_new = !row;
            if (!row) {
              row.emplace();
              row->id = id;
            }
            row->generation = gen;
            const bool had_link = row->payment_transaction_id.has_value();
            merge_common_attributes(*row, p, step.outcome == Outcome::applied);
            if (step.outcome == Outcome::applied) {
              row->state = std::string(state_name(a.target));
              row->state_as_of_ms = t;
              row->last_event_id = env.event_id;
              overwrite(row->payment_transaction_id, p.payment_transaction_id);
            } else {
              fill(row->payment_transaction_id, p.payment_transaction_id);
            }
            if (is_new && step.outcome != Outcome::applied) row->last_event_id = env.event_id;

            // Follow-up calls, due from an applied transition only.
            if (step.outcome == Outcome::applied && a.target == RequestState::completed) {
              row->authorization_due_ms = t + kFinalAuthorizationWindowMs;
              storage::OutboxRow o;
              o.entity_id = id;
              o.created_by_event_id = env.event_id;
              o.due_by_ms = row->authorization_due_ms;
              if (p.session_token) {
                core::JsonWriter body;
                body.begin_object();
                if (row->currency) body.field("currency", *row->currency);
                body.key("request_payment_transaction").begin_object();
                if (row->amount) body.field("amount", *row->amount);
                if (row->reference) body.field("payment_transaction_reference", *row->reference);
                body.field("capture", "LATER").end_object().end_object();
                o.operation = "final_authorization";
                o.request_body = body.take();
                o.call_token = *p.session_token;
                o.idempotency_key = idempotency_key(o.operation, id, *p.session_token);
              } else {
                // The approval cannot be used without its token: read the request.
                o.operation = "read_payment_request";
                o.request_body = "{}";
                o.idempotency_key = idempotency_key(o.operation, id, env.event_id);
                step.reason = "COMPLETED without klarna_network_session_token: read queued";
              }
              store_.insert_outbox(o);
            }
            if (step.outcome == Outcome::applied &&
                a.target == RequestState::pending_confirmation) {
              storage::OutboxRow o;
              o.entity_id = id;
              o.created_by_event_id = env.event_id;
              o.due_by_ms = t + kFinalAuthorizationWindowMs;  // token valid 60 min
              if (p.confirmation_token) {
                core::JsonWriter body;
                body.begin_object();
                if (row->currency) body.field("currency", *row->currency);
                if (row->amount) body.field("payment_amount", *row->amount);
                if (row->reference) body.field("payment_transaction_reference", *row->reference);
                body.key("config").begin_object().field("capture", false).end_object();
                body.end_object();
                o.operation = "confirm";
                o.request_body = body.take();
                o.call_token = *p.confirmation_token;
                o.idempotency_key = idempotency_key(o.operation, id, *p.confirmation_token);
              } else {
                o.operation = "read_payment_request";
                o.request_body = "{}";
                o.idempotency_key = idempotency_key(o.operation, id, env.event_id);
                step.reason =
                    "PENDING_CONFIRMATION without payment_confirmation_token: read queued";
              }
              store_.insert_outbox(o);
            }
            // A link the other side learnt earlier: only a new row can have missed it.
            if (!before && !row->payment_transaction_id) {
              row->payment_transaction_id = store_.transaction_for_request(id);
            }
            if (row != before) store_.save_request(*row);
            if (!had_link && row->payment_transaction_id) {
              link_transaction(*row->payment_transaction_id, id);
            }
            if (step.outcome == Outcome::applied) {
              step.state_change = ChangeMessage("payment_request", ev, step.from_state, row->state)
                                      .maybe("amount", row->amount)
                                      .maybe("currency", row->currency)
                                      .maybe("payment_transaction_id", row->payment_transaction_id)
                                      .done();
            }
          },
          [&](const RequestUpdated&) {
            auto row = store_.find_request(id);
            const auto before = row;  // unchanged rows are not rewritten
            if (row && row->generation != 2 && row->state) {
              step.outcome = Outcome::rejected;
              step.reason = "payment.request.updated is v2; the request is Gen 1";
              return;
            }
            const bool newer = !row || t >= row->state_as_of_ms;
            if (!row) {
              row.emplace();
              row->id = id;
              row->generation = 2;
              row->last_event_id = env.event_id;
            }
            step.from_state = row->state;
            step.to_state = row->state;
            const bool had_link = row->payment_transaction_id.has_value();
            merge_common_attributes(*row, p, newer);
            if (newer) {
              step.outcome = Outcome::applied;
              step.reason = "attributes updated";
              overwrite(row->payment_transaction_id, p.payment_transaction_id);
              if (!row->state) row->state_as_of_ms = std::max(row->state_as_of_ms, t);
            } else {
              step.outcome = Outcome::stale;
              step.reason = "older than the current state";
              fill(row->payment_transaction_id, p.payment_transaction_id);
            }
            // A link the other side learnt earlier: only a new row can have missed it.
            if (!before && !row->payment_transaction_id) {
              row->payment_transaction_id = store_.transaction_for_request(id);
            }
            if (row != before) store_.save_request(*row);
            if (!had_link && row->payment_transaction_id) {
              link_transaction(*row->payment_transaction_id, id);
            }
            if (step.outcome == Outcome::applied) {
              step.state_change = ChangeMessage("payment_request", ev, row->state, row->state)
                                      .maybe("amount", row->amount)
                                      .maybe("currency", row->currency)
                                      .done();
            }
          },
          // ------------------------------------------------------------ transactions
          [&](const TransactionTransition& a) {
            auto row = store_.find_transaction(id);
            const auto before = row;  // unchanged rows are not rewritten
            auto current = row ? stored_state<TransactionState>(row->state) : std::nullopt;
            step.from_state = current ? opt(state_name(*current)) : std::nullopt;
            step.to_state = opt(state_name(a.target));
            set_decision(decide(transaction_machine(), current,
                                row && row->state ? row->state_as_of_ms : 0, a.target, t));
            if (step.outcome == Outcome::rejected) return;
            if (!row) {
              row.emplace();
              row->id = id;
              row->last_event_id = env.event_id;
            }
            merge_common_attributes(*row, p, step.outcome == Outcome::applied);
            if (step.outcome == Outcome::applied) {
              row->state = std::string(state_name(a.target));
              row->state_as_of_ms = t;
              row->last_event_id = env.event_id;
            }
            const bool had_request = row->payment_request_id.has_value();
            fill(row->payment_request_id, p.payment_request_id);
            if (!before && !row->payment_request_id) {
              row->payment_request_id = store_.request_for_transaction(id);
            }
            if (row != before) store_.save_transaction(*row);
            if (!had_request && row->payment_request_id) link_request(*row->payment_request_id, id);
            if (step.outcome == Outcome::applied) {
              std::optional<std::int64_t> remaining;
              if (row->amount) remaining = *row->amount - row->captured_amount;
              step.state_change =
                  ChangeMessage("payment_transaction", ev, step.from_state, row->state)
                      .maybe("amount", row->amount)
                      .maybe("currency", row->currency)
                      .maybe("captured_amount", std::optional(row->captured_amount))
                      .maybe("refunded_amount", std::optional(row->refunded_amount))
                      .maybe("remaining_amount", remaining)
                      .maybe("payment_request_id", row->payment_request_id)
                      .done();
            }
          },
          [&](const SubRecordAdded& a) {
            auto row = store_.find_transaction(id);
            const bool new_row = !row;
            if (!row) {
              row.emplace();
              row->id = id;
              row->last_event_id = env.event_id;
            }
            storage::SubRecordRow sub;
            sub.transaction_id = id;
            sub.amount = *p.amount;  // decode_event guarantees it
            sub.currency = p.currency;
            sub.occurred_at_ms = t;
            sub.event_id = env.event_id;
            std::int64_t* total = nullptr;
            switch (a.kind) {
              case SubRecordKind::capture:
                sub.kind = "capture";
                sub.id = *p.capture_id;
                total = &row->captured_amount;
                break;
              case SubRecordKind::refund:
                sub.kind = "refund";
                sub.id = *p.refund_id;
                sub.capture_id = p.capture_id;
                total = &row->refunded_amount;
                break;
              case SubRecordKind::chargeback:
                sub.kind = "chargeback";
                sub.id = *p.chargeback_id;
                sub.capture_id = p.capture_id;
                total = &row->chargeback_amount;
                break;
            }
            step.from_state = row->state;
            step.to_state = row->state;
            // The sub-record's own id is the idempotency unit: a capture is
            // counted once however many events announce it.
            if (!store_.insert_sub_record(sub)) {
              step.outcome = Outcome::stale;
              step.reason = sub.kind + " " + sub.id + " already recorded";
              return;
            }
            *total += sub.amount;
            step.outcome = Outcome::applied;
            step.reason = sub.kind + " " + sub.id + " recorded: " + std::to_string(sub.amount);
            fill(row->currency, p.currency);
            const bool had_request = row->payment_request_id.has_value();
            fill(row->payment_request_id, p.payment_request_id);
            if (new_row && !row->payment_request_id) {
              row->payment_request_id = store_.request_for_transaction(id);
            }
            store_.save_transaction(*row);
            if (!had_request && row->payment_request_id) link_request(*row->payment_request_id, id);
            std::optional<std::int64_t> remaining;
            if (row->amount) remaining = *row->amount - row->captured_amount;
            step.state_change =
                ChangeMessage("payment_transaction", ev, row->state, row->state)
                    .maybe("amount", row->amount)
                    .maybe("currency", row->currency)
                    .maybe("captured_amount", std::optional(row->captured_amount))
                    .maybe("refunded_amount", std::optional(row->refunded_amount))
                    .maybe("chargeback_amount", std::optional(row->chargeback_amount))
                    .maybe("remaining_amount", remaining)
                    .done();
          },
          [&](const FundingTransition& a) {
            auto row = store_.find_transaction(id);
            auto current = row ? stored_state<FundingState>(row->funding_state) : std::nullopt;
            step.from_state = current ? opt(state_name(*current)) : std::nullopt;
            step.to_state = opt(state_name(a.target));
            set_decision(
                decide(funding_machine(), current, row ? row->funding_as_of_ms : 0, a.target, t));
            if (step.outcome != Outcome::applied) return;
            if (!row) {
              row.emplace();
              row->id = id;
              row->payment_request_id = store_.request_for_transaction(id);
            }
            row->funding_state = std::string(state_name(a.target));
            row->funding_as_of_ms = t;
            store_.save_transaction(*row);
            step.state_change =
                ChangeMessage("payment_funding", ev, step.from_state, step.to_state).done();
          },
          // ---------------------------------------------------------------- disputes
          [&](const DisputeTransition& a) {
            auto row = store_.find_dispute(id);
            const auto before = row;  // unchanged rows are not rewritten
            std::string framework;
            bool inferred = false;
            if (row) {
              framework = row->framework;
              inferred = row->framework_inferred;
              if (a.framework != FrameworkHint::either) {
                const std::string hinted =
                    a.framework == FrameworkHint::current ? "current" : "legacy";
                if (hinted != framework) {
                  if (!inferred) {
                    step.outcome = Outcome::rejected;
                    step.reason = "framework mismatch: the dispute is " + framework;
                    step.from_state = row->state;
                    return;
                  }
                  // The earlier guess was wrong: re-read its state in the other framework.
                  if (row->state == "PRE_ARBITRATION")
                    row->state = "LEGACY_PRE_ARBITRATION";
                  else if (row->state == "LEGACY_PRE_ARBITRATION")
                    row->state = "PRE_ARBITRATION";
                  framework = hinted;
                }
                inferred = false;
              }
            } else if (a.framework == FrameworkHint::either) {
              // pre-arbitration / closed first: only the representment object tells.
              framework = "current";
              inferred = !p.has_representment;
            } else {
              framework = a.framework == FrameworkHint::current ? "current" : "legacy";
            }
            const bool current_fw = framework == "current";
            const DisputeState target = current_fw ? a.current_target : a.legacy_target;
            const auto& machine = current_fw ? current_dispute_machine() : legacy_dispute_machine();
            auto current = row ? stored_state<DisputeState>(row->state) : std::nullopt;
            step.from_state = current ? opt(state_name(*current)) : std::nullopt;
            step.to_state = opt(state_name(target));
            set_decision(
                decide(machine, current, row && row->state ? row->state_as_of_ms : 0, target, t));
            if (step.outcome == Outcome::rejected) return;
            if (!row) {
              row.emplace();
              row->id = id;
              row->last_event_id = env.event_id;
            }
            row->framework = framework;
            row->framework_inferred = inferred;
            if (step.outcome == Outcome::applied) {
              row->state = std::string(state_name(target));
              row->state_as_of_ms = t;
              row->last_event_id = env.event_id;
              overwrite(row->reason, p.dispute_reason);
              overwrite(row->amount, p.amount);
              overwrite(row->currency, p.currency);
              overwrite(row->outcome, p.dispute_outcome);
              overwrite(row->closed_at_ms, p.closed_at_ms);
            } else {
              fill(row->reason, p.dispute_reason);
              fill(row->amount, p.amount);
              fill(row->currency, p.currency);
              fill(row->outcome, p.dispute_outcome);
              fill(row->closed_at_ms, p.closed_at_ms);
            }
            fill(row->payment_transaction_id, p.payment_transaction_id);
            fill(row->payment_capture_id, p.capture_id);
            // Deadlines are last-writer-wins by occurred_at, independent of the
            // state outcome, so any delivery order ends with the newest one.
            if (p.representment_expires_at_ms && t >= row->representment_as_of_ms) {
              row->representment_expires_at_ms = p.representment_expires_at_ms;
              row->representment_as_of_ms = t;
            }
            if (p.arbitration_expires_at_ms && t >= row->arbitration_as_of_ms) {
              row->arbitration_expires_at_ms = p.arbitration_expires_at_ms;
              row->arbitration_as_of_ms = t;
            }
            if (row != before) store_.save_dispute(*row);
            if (step.outcome == Outcome::applied) {
              step.state_change = ChangeMessage("dispute", ev, step.from_state, row->state)
                                      .maybe("amount", row->amount)
                                      .maybe("currency", row->currency)
                                      .maybe("payment_transaction_id", row->payment_transaction_id)
                                      .maybe("outcome", row->outcome)
                                      .done();
            }
          },
          [&](const DisputeDeadlineExtended& a) {
            auto row = store_.find_dispute(id);
            const auto before = row;  // unchanged rows are not rewritten
            if (!row) {
              row.emplace();
              row->id = id;
              row->framework = a.deadline == Deadline::representment ? "current" : "legacy";
              row->last_event_id = env.event_id;
            }
            fill(row->payment_transaction_id, p.payment_transaction_id);
            step.from_state = row->state;
            step.to_state = row->state;
            auto& as_of = a.deadline == Deadline::representment ? row->representment_as_of_ms
                                                                : row->arbitration_as_of_ms;
            auto& field = a.deadline == Deadline::representment ? row->representment_expires_at_ms
                                                                : row->arbitration_expires_at_ms;
            const auto& value = a.deadline == Deadline::representment
                                    ? p.representment_expires_at_ms
                                    : p.arbitration_expires_at_ms;
            const char* which =
                a.deadline == Deadline::representment ? "representment" : "arbitration";
            if (t < as_of) {
              step.outcome = Outcome::stale;
              step.reason = std::string("a newer ") + which + " deadline is known";
              if (row != before) store_.save_dispute(*row);
              return;
            }
            field = value;
            as_of = t;
            step.outcome = Outcome::applied;
            step.reason = std::string(which) + " deadline set to " + core::rfc3339_ms(*value);
            if (row != before) store_.save_dispute(*row);
            step.state_change =
                ChangeMessage("dispute", ev, row->state, row->state)
                    .maybe(a.deadline == Deadline::representment ? "representment_expires_at"
                                                                 : "arbitration_expires_at",
                           std::optional(core::rfc3339_ms(*value)))
                    .done();
          },
          // ----------------------------------------------- settlements and accounts
          [&](const SettlementReportTransition& a) {
            if (record_transition("settlement_report", settlement_report_machine(), a.target,
                                  true)) {
              step.state_change =
                  ChangeMessage("settlement_report", ev, step.from_state, step.to_state).done();
            }
          },
          [&](const PayoutTransition& a) {
            if (auto row = record_transition("payout", payout_machine(), a.target, true)) {
              step.state_change = ChangeMessage("payout", ev, step.from_state, step.to_state)
                                      .maybe("amount", row->amount)
                                      .maybe("currency", row->currency)
                                      .done();
            }
          },
          [&](const AccountTransition& a) {
            if (record_transition("partner_account", account_machine(), a.target, false)) {
              step.state_change =
                  ChangeMessage("partner_account", ev, step.from_state, step.to_state).done();
            }
          },
          [&](const PaymentProductTransition& a) {
            auto row = store_.find_record("partner_account", id);
            auto current = row ? stored_state<PaymentProductState>(row->sub_state) : std::nullopt;
            step.from_state = current ? opt(state_name(*current)) : std::nullopt;
            step.to_state = opt(state_name(a.target));
            set_decision(decide(payment_product_machine(), current,
                                row ? row->sub_state_as_of_ms : 0, a.target, t));
            if (step.outcome != Outcome::applied) return;
            if (!row) row = new_record("partner_account", id);
            row->sub_state = step.to_state;
            row->sub_state_as_of_ms = t;
            if (row->last_event_id.empty()) row->last_event_id = env.event_id;
            store_.save_record(*row);
            step.state_change =
                ChangeMessage("partner_account_payment_product", ev, step.from_state, step.to_state)
                    .done();
          },
          [&](const Unrouted&) {},
      },
      ev.action);
}

}  // namespace kpay::processor
