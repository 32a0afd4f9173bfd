// Commands against the stored state, in the batch transaction. What a command
// may ask for (docs/klarna/PAYMENTS-API.md, "Payment transaction operations"):
//   capture  only while AUTHORIZED, at most the authorized amount not yet
//            captured nor already accepted for capture (pending outbox rows)
//   refund   while AUTHORIZED / COMPLETED, at most what was captured and not
//            yet refunded nor already accepted for refund; of one capture, at
//            most that capture's unrefunded amount
//   void     only while AUTHORIZED;  cancel  a request not in a final state
//   authorize / register  no stored state needed; the context is stored
//   dispute_accept_loss  while INITIATED or PRE_ARBITRATION
//   dispute_represent    while INITIATED (≥ 1 attachment: the decoder's check)
//   dispute_appeal       while PRE_ARBITRATION
//            a dispute of the current framework, known with its transaction's
//            account, and no other operation of it pending
// Anything else is `rejected` with the reason and never reaches Klarna.
#include "commands/command_applier.hpp"

#include <algorithm>
#include <variant>

#include "commands/command_gate.hpp"
#include "kpay/core/overloaded.hpp"
#include "kpay/processor/follow_ups.hpp"

namespace kpay::processor::appliers {

namespace {

using core::Overloaded;

// What checking a command against the state decided.
struct Verdict {
  std::optional<std::string> rejection;  // why, when rejected
  std::optional<FollowUp> call;          // the Klarna call to queue
  std::string entity_id;
  std::string account_id;
  std::optional<std::int64_t> amount;  // of a capture / refund
  bool done = false;                   // register: succeeded with no call
};

Verdict accepted(std::string entity_id, std::string account_id,
                 std::optional<std::int64_t> amount = std::nullopt) {
  Verdict v;
  v.entity_id = std::move(entity_id);
  v.account_id = std::move(account_id);
  v.amount = amount;
  return v;
}

Verdict rejected(std::string why, std::string entity_id) {
  Verdict v;
  v.rejection = std::move(why);
  v.entity_id = std::move(entity_id);
  return v;
}

std::string money(std::int64_t v) {
  return std::to_string(v);
}

// A transaction a command may act on: known, with its account.
std::variant<storage::PaymentTransactionRow, std::string> usable_transaction(
    storage::Store& store, const std::string& id) {
  auto t = store.find_transaction(id);
  if (!t) return std::string("unknown payment_transaction_id");
  if (!t->account_id) return std::string("the transaction's partner account is not known yet");
  return *t;
}

bool in_state(const storage::PaymentTransactionRow& t, std::initializer_list<TransactionState> ok) {
  if (!t.state) return true;  // not learnt yet: Klarna decides
  const auto s = parse_state<TransactionState>(*t.state);
  return s && std::find(ok.begin(), ok.end(), *s) != ok.end();
}

Verdict check_capture(storage::Store& store, const CaptureCommand& c, const std::string& id) {
  auto found = usable_transaction(store, c.payment_transaction_id);
  if (auto* why = std::get_if<std::string>(&found)) return rejected(*why, c.payment_transaction_id);
  const auto& t = std::get<storage::PaymentTransactionRow>(found);
  if (!in_state(t, {TransactionState::authorized})) {
    return rejected("the transaction is " + *t.state + "; capture only while AUTHORIZED", t.id);
  }
  if (!t.amount) return rejected("the authorized amount is not known yet", t.id);
  const auto pending = store.pending_outbox_amount(t.id, storage::OutboxOperation::capture);
  const auto remaining = *t.amount - t.captured_amount - pending;
  const auto want = c.amount.value_or(remaining);
  if (remaining <= 0 || want > remaining) {
    return rejected("over_capture: amount " + money(want) + " exceeds the remaining authorized " +
                        "amount " + money(std::max<std::int64_t>(0, remaining)) + " (authorized " +
                        money(*t.amount) + ", captured " + money(t.captured_amount) + ", pending " +
                        money(pending) + ")",
                    t.id);
  }
  Verdict v = accepted(t.id, *t.account_id, want);
  v.call = Capture{t.id, want, c.reference, id, c.supplementary_capture_data};
  return v;
}

// Captured and not refunded, minus refunds accepted but not executed.
std::int64_t refundable(storage::Store& store, const storage::PaymentTransactionRow& t) {
  return t.captured_amount - t.refunded_amount -
         store.pending_outbox_amount(t.id, storage::OutboxOperation::refund_transaction) -
         store.pending_outbox_amount(t.id, storage::OutboxOperation::refund_capture);
}

std::int64_t capture_refundable(storage::Store& store, const storage::SubRecordRow& cap) {
  std::int64_t refunded = 0;
  for (const auto& r : store.sub_records(cap.transaction_id)) {
    if (r.kind == "refund" && r.capture_id == cap.id) refunded += r.amount;
  }
  return cap.amount - refunded -
         store.pending_outbox_amount(cap.transaction_id, storage::OutboxOperation::refund_capture,
                                     cap.id);
}

Verdict check_refund(storage::Store& store, const RefundCommand& c, const std::string& id) {
  std::optional<storage::SubRecordRow> cap;
  if (c.payment_capture_id) {
    cap = store.find_sub_record("capture", *c.payment_capture_id);
    if (!cap) return rejected("unknown payment_capture_id", *c.payment_capture_id);
  }
  const std::string tid = cap ? cap->transaction_id : *c.payment_transaction_id;
  auto found = usable_transaction(store, tid);
  if (auto* why = std::get_if<std::string>(&found)) return rejected(*why, tid);
  const auto& t = std::get<storage::PaymentTransactionRow>(found);
  if (!in_state(t, {TransactionState::authorized, TransactionState::completed})) {
    return rejected(
        "the transaction is " + *t.state + "; refunds only while AUTHORIZED or " + "COMPLETED",
        t.id);
  }
  const auto limit =
      std::min(refundable(store, t), cap ? capture_refundable(store, *cap) : refundable(store, t));
  if (c.amount > limit) {
    return rejected("over_refund: amount " + money(c.amount) + " exceeds what was captured and " +
                        "not yet refunded (" + money(std::max<std::int64_t>(0, limit)) +
                        (cap ? " of the capture)" : ")"),
                    t.id);
  }
  Verdict v = accepted(t.id, *t.account_id, c.amount);
  v.call = Refund{id, t.id, c.payment_capture_id, c.amount, c.reference};
  return v;
}

Verdict check_void(storage::Store& store, const VoidCommand& c, const std::string& id) {
  auto found = usable_transaction(store, c.payment_transaction_id);
  if (auto* why = std::get_if<std::string>(&found)) return rejected(*why, c.payment_transaction_id);
  const auto& t = std::get<storage::PaymentTransactionRow>(found);
  if (!in_state(t, {TransactionState::authorized})) {
    return rejected("the transaction is " + *t.state + "; void only while AUTHORIZED", t.id);
  }
  Verdict v = accepted(t.id, *t.account_id);
  v.call = Void{id, t.id};
  return v;
}

Verdict check_cancel(storage::Store& store, const CancelCommand& c, const std::string& id) {
  auto r = store.find_request(c.payment_request_id);
  if (!r) return rejected("unknown payment_request_id", c.payment_request_id);
  if (!r->account_id) return rejected("the request's partner account is not known yet", r->id);
  const auto s = r->state ? parse_state<RequestState>(*r->state) : std::nullopt;
  if (s && (*s == RequestState::completed || *s == RequestState::authorized ||
            *s == RequestState::expired || *s == RequestState::canceled ||
            *s == RequestState::declined)) {
    return rejected("the payment request is " + *r->state + "; it cannot be canceled", r->id);
  }
  Verdict v = accepted(r->id, *r->account_id);
  v.call = CancelRequest{id, r->id};
  return v;
}

// Whether a dispute operation may go to Klarna: the rejection, or the account.
struct DisputeCheck {
  std::optional<std::string> rejection;
  std::string account_id;
};

std::string state_list(std::initializer_list<DisputeState> ok) {
  std::string out;
  for (auto s : ok) {
    if (!out.empty()) out += " or ";
    out += state_name(s);
  }
  return out;
}

bool dispute_operation_pending(storage::Store& store, const std::string& id) {
  for (const auto& o : store.outbox(id)) {
    const bool open =
        o.status == storage::OutboxStatus::pending || o.status == storage::OutboxStatus::in_flight;
    if (open && storage::is_dispute_operation(o.operation)) return true;
  }
  return false;
}

// A dispute an operation may act on: known, current framework, its state one
// of `ok`, its account known (its events', else its transaction's), no
// operation pending.
DisputeCheck check_dispute(storage::Store& store, const std::string& id,
                           std::initializer_list<DisputeState> ok, std::string_view operation) {
  auto d = store.find_dispute(id);
  if (!d) return {"unknown payment_dispute_id", ""};
  if (d->framework != storage::DisputeFramework::current) {
    return {"the dispute is in Klarna's legacy framework; " + std::string(operation) +
                " is an operation of the current Dispute API",
            ""};
  }
  if (!d->state) return {"the dispute's state is not known yet", ""};
  const auto state = parse_state<DisputeState>(*d->state);
  if (!state || std::find(ok.begin(), ok.end(), *state) == ok.end()) {
    return {"wrong_state: the dispute is " + *d->state + "; " + std::string(operation) +
                " only in " + state_list(ok),
            ""};
  }
  // The account of its events (metadata.subject_account_id); a dispute stored
  // before it was kept: its transaction's.
  std::optional<std::string> account = d->account_id;
  if (!account && d->payment_transaction_id) {
    if (auto t = store.find_transaction(*d->payment_transaction_id)) account = t->account_id;
  }
  if (!account) return {"the dispute's partner account is not known yet", ""};
  if (dispute_operation_pending(store, id)) {
    return {"an operation of this dispute is in progress", ""};
  }
  return {std::nullopt, *account};
}

template <class Call>
Verdict dispute_verdict(storage::Store& store, const std::string& dispute_id,
                        std::initializer_list<DisputeState> ok, std::string_view operation,
                        Call call) {
  auto checked = check_dispute(store, dispute_id, ok, operation);
  if (checked.rejection) return rejected(*checked.rejection, dispute_id);
  Verdict v = accepted(dispute_id, checked.account_id);
  v.call = std::move(call);
  return v;
}

Verdict check_accept_loss(storage::Store& store, const DisputeAcceptLossCommand& c,
                          const std::string& id) {
  return dispute_verdict(store, c.payment_dispute_id,
                         {DisputeState::initiated, DisputeState::pre_arbitration}, "accept-loss",
                         DisputeAcceptLoss{id, c.payment_dispute_id});
}

Verdict check_represent(storage::Store& store, const DisputeRepresentCommand& c,
                        const std::string& id) {
  return dispute_verdict(
      store, c.payment_dispute_id, {DisputeState::initiated}, "represent",
      DisputeRepresent{id, c.payment_dispute_id, c.attachments, c.additional_information,
                       c.partner_proposed_refund_amount});
}

Verdict check_appeal(storage::Store& store, const DisputeAppealCommand& c, const std::string& id) {
  return dispute_verdict(
      store, c.payment_dispute_id, {DisputeState::pre_arbitration}, "appeal",
      DisputeAppeal{id, c.payment_dispute_id, c.attachments, c.additional_information});
}

storage::PaymentContextRow context_of(const std::string& command_id, const std::string& account,
                                      std::int64_t amount, const std::string& currency,
                                      CaptureMode capture, const Interoperability& x,
                                      std::int64_t now_ms) {
  storage::PaymentContextRow row;
  row.command_id = command_id;
  row.account_id = account;
  row.amount = amount;
  row.currency = currency;
  row.capture_now = capture == CaptureMode::now;
  row.interoperability_token = x.token;
  row.interoperability_data = x.data;
  row.created_at_ms = now_ms;
  return row;
}

// An interoperability token PAYMENT_PENDING_CONFIRMATION: the customer has
// approved elsewhere; Klarna asks for a confirm of the token's
// payment_confirmation_token at once, server to server, instead of an
// authorization (one operation, keyed by the command_id).
Verdict pending_confirmation_verdict(const AuthorizeCommand& c, const std::string& id,
                                     const std::string& key) {
  Verdict v = accepted(key.empty() ? c.payment_transaction_reference : key, c.partner_account_id);
  v.call = Confirm{.payment_request_id = v.entity_id,
                   .confirmation_token = *c.interoperability.payment_confirmation_token,
                   .amount = c.amount,
                   .currency = c.currency,
                   .reference = c.payment_transaction_reference,
                   .capture_now = c.capture == CaptureMode::now,
                   .command_id = id};
  return v;
}

// The initial authorization; its context is kept so that a STEP_UP_REQUIRED
// answer hands it to the payment request Klarna creates.
Verdict check_authorize(storage::Store& store, const AuthorizeCommand& c, const std::string& id,
                        const std::string& key, std::int64_t now_ms) {
  if (c.interoperability.status == InteroperabilityStatus::payment_pending_confirmation) {
    return pending_confirmation_verdict(c, id, key);
  }
  auto ctx = context_of(id, c.partner_account_id, c.amount, c.currency, c.capture,
                        c.interoperability, now_ms);
  ctx.payment_transaction_reference = c.payment_transaction_reference;
  ctx.supplementary_purchase_data = c.supplementary_purchase_data;
  store.save_payment_context(ctx);
  Verdict v = accepted(key.empty() ? c.payment_transaction_reference : key, c.partner_account_id);
  v.call = InitialAuthorization{
      .command_id = id,
      .entity_id = v.entity_id,
      .amount = c.amount,
      .currency = c.currency,
      .reference = c.payment_transaction_reference,
      .capture_now = c.capture == CaptureMode::now,
      .customer_token = c.customer_token,
      .step_up_config = c.step_up_config,
      .extras = {c.supplementary_purchase_data, c.interoperability.token, c.interoperability.data},
      .payment_option_id = c.payment_option_id,
      .request_customer_token = c.request_customer_token};
  return v;
}

Verdict check_sdk_token(const SdkTokenCommand& c, const std::string& id, const std::string& key) {
  Verdict v = accepted(key.empty() ? id : key, c.partner_account_id);
  v.call = SdkToken{id, v.entity_id, c.interoperability_token};
  return v;
}

// A context is useful only before the approval's call is queued.
Verdict check_register(storage::Store& store, const RegisterCommand& c, const std::string& id,
                       std::int64_t now_ms) {
  const std::string entity = c.payment_request_id.value_or(*c.payment_request_reference);
  if (c.payment_request_id) {
    for (const auto& o : store.outbox(*c.payment_request_id)) {
      if (o.operation == storage::OutboxOperation::final_authorization ||
          o.operation == storage::OutboxOperation::confirm) {
        return rejected("the " + std::string(storage::to_string(o.operation)) +
                            " of this payment is queued already",
                        entity);
      }
    }
  }
  auto ctx = context_of(id, c.partner_account_id, c.amount, c.currency, c.capture,
                        c.interoperability, now_ms);
  ctx.payment_request_id = c.payment_request_id;
  ctx.payment_request_reference = c.payment_request_reference;
  ctx.payment_transaction_reference = c.payment_transaction_reference;
  ctx.supplementary_purchase_data = c.supplementary_purchase_data;
  store.save_payment_context(ctx);
  Verdict v = accepted(entity, c.partner_account_id);
  v.done = true;
  return v;
}

Verdict check(storage::Store& store, const Command& c, const std::string& key,
              std::int64_t now_ms) {
  const std::string& id = c.command_id;
  return std::visit(
      Overloaded{
          [&](const RegisterCommand& r) { return check_register(store, r, id, now_ms); },
          [&](const AuthorizeCommand& a) { return check_authorize(store, a, id, key, now_ms); },
          [&](const CaptureCommand& x) { return check_capture(store, x, id); },
          [&](const RefundCommand& r) { return check_refund(store, r, id); },
          [&](const VoidCommand& v) { return check_void(store, v, id); },
          [&](const CancelCommand& x) { return check_cancel(store, x, id); },
          [&](const DisputeAcceptLossCommand& x) { return check_accept_loss(store, x, id); },
          [&](const DisputeRepresentCommand& x) { return check_represent(store, x, id); },
          [&](const DisputeAppealCommand& x) { return check_appeal(store, x, id); },
          [&](const SdkTokenCommand& x) { return check_sdk_token(x, id, key); },
      },
      c.body);
}

// A command_id seen before: the same body is a resend (nothing happens, no
// second result); another body reuses the id and is rejected.
CommandResult result_of(std::optional<std::string> id, std::optional<std::string> type,
                        CommandStatus status, std::optional<std::string> reason) {
  CommandResult r;
  r.command_id = std::move(id);
  r.type = std::move(type);
  r.status = status;
  r.reason = std::move(reason);
  return r;
}

CommandEffects seen_before(const storage::CommandRow& stored, const Command& c) {
  CommandEffects e;
  e.entity_id = stored.entity_id.value_or(stored.key);
  if (stored.body_hash == c.body_hash) {
    e.outcome = Outcome::duplicate;
    e.reason =
        "command_id already processed (" + std::string(storage::to_string(stored.status)) + ")";
    return e;
  }
  e.reason = "command_id_reused: the command_id names another command";
  e.result = result_of(c.command_id, std::string(command_type_name(c.type())),
                       CommandStatus::rejected, e.reason);
  return e;
}

std::optional<std::string> interoperability_status(const Command& c) {
  const Interoperability* x = nullptr;
  if (const auto* a = std::get_if<AuthorizeCommand>(&c.body)) x = &a->interoperability;
  if (const auto* r = std::get_if<RegisterCommand>(&c.body)) x = &r->interoperability;
  if (!x || !x->status) return std::nullopt;
  return std::string(interoperability_status_name(*x->status));
}

CommandStatus status_of(const Verdict& v) {
  if (v.rejection) return CommandStatus::rejected;
  return v.done ? CommandStatus::succeeded : CommandStatus::accepted;
}

storage::CommandRow command_row(const std::string& id, std::string type, const std::string& key,
                                std::string hash, CommandStatus status,
                                std::optional<std::string> reason, std::int64_t now_ms) {
  storage::CommandRow row;
  row.command_id = id;
  row.type = std::move(type);
  row.key = key.empty() ? id : key;
  row.body_hash = std::move(hash);
  row.status = status;
  row.reason = std::move(reason);
  row.created_at_ms = now_ms;
  row.updated_at_ms = now_ms;
  return row;
}

void queue_call(storage::Store& store, const Verdict& v, const Command& c, std::int64_t now_ms) {
  FollowUpOrigin origin;
  origin.account_id = v.account_id;
  origin.caused_by = "command:" + c.command_id;
  origin.now_ms = now_ms;
  store.insert_outbox(outbox_row(*v.call, origin));
}

}  // namespace

CommandEffects apply_command(storage::Store& store, const Command& c, const std::string& key,
                             std::int64_t now_ms, const CommandGate* gate) {
  if (auto stored = store.find_command(c.command_id)) return seen_before(*stored, c);
  // The sender's permissions and the command's age (command_gate.hpp).
  const auto refused = gate ? gate->before(store, c, now_ms) : std::nullopt;
  Verdict v = refused ? rejected(*refused, key) : check(store, c, key, now_ms);
  std::optional<SenderCharge> charge;
  if (gate && !v.rejection) {
    if (auto why = gate->after(store, c, v.account_id, v.amount, v.entity_id, now_ms, charge)) {
      v = rejected(*why, v.entity_id);
    }
  }
  const CommandStatus status = status_of(v);
  auto row = command_row(c.command_id, std::string(command_type_name(c.type())), key, c.body_hash,
                         status, v.rejection, now_ms);
  row.entity_id = v.entity_id;
  if (gate) gate->sign(row);
  // The row goes in before the call: the outbox's audit rows take the
  // command's sender from it.
  const bool inserted = store.insert_command(row);
  if (gate && charge && inserted) gate->count(*charge, now_ms);
  if (v.call) queue_call(store, v, c, now_ms);
  CommandEffects e;
  e.outcome = v.rejection ? Outcome::rejected : Outcome::applied;
  e.entity_id = v.entity_id;
  e.reason = v.rejection ? *v.rejection
                         : (v.call ? std::string(operation_name(*v.call)) + " queued"
                                   : std::string("context registered"));
  e.result = result_of(c.command_id, row.type, status, v.rejection);
  e.result->amount = v.amount;
  e.result->interoperability_status = interoperability_status(c);
  if (is_dispute_command(c.type())) e.result->payment_dispute_id = v.entity_id;
  return e;
}

CommandEffects apply_rejection(storage::Store& store, const CommandRejection& r,
                               const std::string& key, std::int64_t now_ms) {
  CommandEffects e;
  e.entity_id = key;
  if (r.command_id) {
    auto stored = store.find_command(*r.command_id);
    if (stored && stored->body_hash == r.body_hash) {
      e.outcome = Outcome::duplicate;
      e.reason =
          "command_id already processed (" + std::string(storage::to_string(stored->status)) + ")";
      return e;
    }
    if (!stored) {
      store.insert_command(command_row(*r.command_id, r.type.value_or(""), key, r.body_hash,
                                       CommandStatus::rejected, r.reason(), now_ms));
    }
  }
  e.reason = r.reason();
  e.result = result_of(r.command_id, r.type, CommandStatus::rejected, e.reason);
  return e;
}

}  // namespace kpay::processor::appliers
