#include "calls/call_answers.hpp"

#include <simdjson.h>

#include <functional>
#include <map>
#include <stdexcept>

#include "kpay/core/json_writer.hpp"
#include "kpay/core/log.hpp"
#include "kpay/processor/events.hpp"
#include "settlements/settlement_fetch.hpp"

namespace kpay::processor {

namespace {

using simdjson::dom::element;
using Op = storage::OutboxOperation;

// A money answer without the new id: a read of the transaction follows.
constexpr std::string_view kReadBack = "READ_BACK";

// Reading Klarna's answers: every field optional, a wrong type reads as absent.
struct Json {
  element e;
  bool ok = false;

  Json at(std::string_view key) const {
    element child;
    if (ok && e.is_object() && e[key].get(child) == simdjson::SUCCESS && !child.is_null()) {
      return {child, true};
    }
    return {};
  }
  std::optional<std::string> str(std::string_view key) const {
    std::string_view v;
    auto child = at(key);
    if (child.ok && child.e.get_string().get(v) == simdjson::SUCCESS && !v.empty()) {
      return std::string(v);
    }
    return std::nullopt;
  }
  std::optional<std::int64_t> integer(std::string_view key) const {
    std::int64_t v = 0;
    auto child = at(key);
    if (child.ok && child.e.get_int64().get(v) == simdjson::SUCCESS) return v;
    return std::nullopt;
  }
};

Json parse(simdjson::dom::parser& parser, const std::string& body) {
  element root;
  if (parser.parse(body).get(root) != simdjson::SUCCESS || !root.is_object()) {
    throw std::runtime_error("answer is not a JSON object");
  }
  return {root, true};
}

// What the row sent (its JSON body, written by klarna_calls.cpp): where a 2xx
// answer is thin, amount, currency and references come from here.
struct Sent {
  simdjson::dom::parser parser;
  Json body;
  explicit Sent(const std::string& text) {
    element root;
    if (!text.empty() && parser.parse(text).get(root) == simdjson::SUCCESS) body = {root, true};
  }
};

template <class T>
void fill(std::optional<T>& field, const std::optional<T>& value) {
  if (!field && value) field = value;
}

// The state-change message for downstream (klarna.payment-states), caused by
// an answer instead of a webhook: `source` says so, `caused_by` names the call.
struct Change {
  core::JsonWriter w;
  Change(std::string_view kind, const std::string& id, const std::optional<std::string>& from,
         const std::optional<std::string>& to, const storage::OutboxRow& row, std::int64_t now_ms) {
    w.begin_object().field("entity_kind", kind).field("entity_id", id);
    w.key("previous_state");
    from ? w.value(*from) : w.null();
    w.key("state");
    to ? w.value(*to) : w.null();
    w.field("source", "klarna_api").field("operation", storage::to_string(row.operation));
    w.field("caused_by", "outbox:" + std::to_string(row.id));
    w.field("occurred_at", core::rfc3339_ms(now_ms));
  }
  template <class T>
  Change& maybe(std::string_view k, const std::optional<T>& v) {
    if (v) w.field(k, *v);
    return *this;
  }
  std::string done() {
    w.end_object();
    return w.take();
  }
};

void publish(AnswerContext& c, const std::string& key, std::string message) {
  storage::PublishRow row{0, c.topics.payment_states, key, std::move(message), ""};
  row.seq = c.store.enqueue_publish(row);
  c.publications.push_back(std::move(row));
}

void publish_transaction(AnswerContext& c, const storage::PaymentTransactionRow& t,
                         const std::optional<std::string>& from, const storage::OutboxRow& row) {
  std::optional<std::int64_t> remaining;
  if (t.amount) remaining = *t.amount - t.captured_amount;
  publish(c, t.id,
          Change("payment_transaction", t.id, from, t.state, row, c.now_ms)
              .maybe("amount", t.amount)
              .maybe("currency", t.currency)
              .maybe("captured_amount", std::optional(t.captured_amount))
              .maybe("refunded_amount", std::optional(t.refunded_amount))
              .maybe("remaining_amount", remaining)
              .maybe("payment_request_id", t.payment_request_id)
              .done());
}

void publish_request(AnswerContext& c, const storage::PaymentRequestRow& r,
                     const std::optional<std::string>& from, const storage::OutboxRow& row) {
  publish(c, r.id,
          Change("payment_request", r.id, from, r.state, row, c.now_ms)
              .maybe("amount", r.amount)
              .maybe("currency", r.currency)
              .maybe("payment_transaction_id", r.payment_transaction_id)
              .maybe("authorization_result", r.authorization_result)
              .done());
}

void queue(AnswerContext& c, const std::vector<FollowUp>& follow_ups,
           const storage::OutboxRow& cause, std::optional<std::int64_t> due_by = std::nullopt) {
  FollowUpOrigin origin;
  origin.account_id = cause.account_id;
  origin.caused_by = "outbox:" + std::to_string(cause.id);
  origin.now_ms = c.now_ms;
  origin.due_by_ms = due_by;
  origin.read_discriminator = origin.caused_by;
  for (const auto& f : follow_ups) c.store.insert_outbox(outbox_row(f, origin));
}

// A transaction the answer told us about: created when unknown, linked to its
// request, filled where we knew less. A state learnt from an answer keeps
// state_as_of_ms (0 for a new row), so any webhook about it still applies.
storage::PaymentTransactionRow merge_transaction(AnswerContext& c, const Json& tx,
                                                 const storage::OutboxRow& row,
                                                 const std::optional<std::string>& request_id) {
  auto id = tx.str("payment_transaction_id");
  if (!id) throw std::runtime_error("answer has no payment_transaction_id");
  auto t = c.store.find_transaction(*id);
  if (!t) {
    t.emplace();
    t->id = *id;
    t->last_event_id = "outbox:" + std::to_string(row.id);
  }
  fill(t->state, tx.str("state"));
  fill(t->amount, tx.integer("amount"));
  fill(t->currency, tx.str("currency"));
  fill(t->reference, tx.str("payment_transaction_reference"));
  fill(t->payment_request_id, request_id ? request_id : tx.str("payment_request_id"));
  if (!t->account_id && !row.account_id.empty()) t->account_id = row.account_id;
  if (row.operation == Op::initial_authorization || row.operation == Op::final_authorization) {
    // A thin APPROVED answer: the transaction is what was asked for.
    Sent sent(row.request_body);
    auto rpt = sent.body.at("request_payment_transaction");
    fill(t->amount, rpt.integer("amount"));
    fill(t->currency, sent.body.str("currency"));
    fill(t->reference, rpt.str("payment_transaction_reference"));
    fill(t->state,
         std::optional<std::string>(rpt.str("capture") == "NOW" ? "COMPLETED" : "AUTHORIZED"));
  }
  c.store.save_transaction(*t);
  return *t;
}

void link_request(AnswerContext& c, const std::string& request_id,
                  const std::optional<std::string>& transaction_id, const std::string& result,
                  const std::optional<std::string>& new_state, const storage::OutboxRow& row) {
  auto r = c.store.find_request(request_id);
  if (!r) return;  // the request's events have not arrived; the transaction links it later
  const auto before = r->state;
  if (transaction_id) r->payment_transaction_id = transaction_id;
  r->authorization_result = result;
  if (new_state) r->state = new_state;
  c.store.save_request(*r);
  publish_request(c, *r, before, row);
}

void after_authorized(AnswerContext& c, const storage::PaymentTransactionRow& t,
                      const storage::OutboxRow& row) {
  if (t.state && *t.state == "AUTHORIZED")
    queue(c, on_transaction_authorized(t, c.follow_ups), row);
}

std::string on_final_authorization(AnswerContext& c, const storage::OutboxRow& row,
                                   const Json& answer) {
  auto response = answer.at("payment_transaction_response");
  auto result = response.str("result");
  if (!result) throw std::runtime_error("answer has no payment_transaction_response.result");
  if (*result != "APPROVED") {
    link_request(c, row.entity_id, std::nullopt, *result, std::nullopt, row);
    return *result;
  }
  auto t = merge_transaction(c, response.at("payment_transaction"), row, row.entity_id);
  publish_transaction(c, t, std::nullopt, row);
  link_request(c, row.entity_id, t.id, *result, std::nullopt, row);
  after_authorized(c, t, row);
  return *result;
}

// A confirm: of a request's webhook, or of an `authorize` command whose
// interoperability token was PAYMENT_PENDING_CONFIRMATION (row.command_id;
// the request's id then comes from the answer). A 2xx is the authorization
// even when the answer is thin: a missing transaction id is read back.
std::string on_confirm(AnswerContext& c, const storage::OutboxRow& row, const Json& answer) {
  auto transaction_id = answer.at("state_context").str("payment_transaction_id");
  const auto state = answer.str("state").value_or("AUTHORIZED");
  const auto request_id =
      row.command_id ? answer.str("payment_request_id") : std::optional(row.entity_id);
  c.found.result = state == "AUTHORIZED" ? "APPROVED" : state;
  c.found.payment_request_id = request_id;
  c.found.payment_transaction_id = transaction_id;
  if (transaction_id) {
    auto r = request_id ? c.store.find_request(*request_id) : std::nullopt;
    auto t = c.store.find_transaction(*transaction_id);
    if (!t) {
      t.emplace();
      t->id = *transaction_id;
      t->last_event_id = "outbox:" + std::to_string(row.id);
    }
    fill(t->payment_request_id, request_id);
    if (r) {
      fill(t->amount, r->amount);
      fill(t->currency, r->currency);
      fill(t->reference, r->reference);
    }
    Sent sent(row.request_body);
    fill(t->amount, sent.body.integer("payment_amount"));
    fill(t->currency, sent.body.str("currency"));
    fill(t->reference, sent.body.str("payment_transaction_reference"));
    if (!t->account_id && !row.account_id.empty()) t->account_id = row.account_id;
    c.store.save_transaction(*t);
    after_authorized(c, *t, row);
  } else if (request_id) {
    queue(c, {ReadPaymentRequest{*request_id}}, row, row.due_by_ms);
  }
  if (request_id) {
    link_request(c, *request_id, transaction_id, state == "AUTHORIZED" ? "APPROVED" : "UNKNOWN",
                 state, row);
  }
  return state;
}

// A capture or refund Klarna executed, booked once per its own id whichever
// path saw it first. Returns the id.
std::string book(AnswerContext& c, const storage::OutboxRow& row, storage::SubRecordRow sub) {
  const bool capture = sub.kind == "capture";
  (capture ? c.found.payment_capture_id : c.found.payment_refund_id) = sub.id;
  c.found.payment_transaction_id = sub.transaction_id;
  sub.occurred_at_ms = c.now_ms;
  sub.event_id = "outbox:" + std::to_string(row.id);
  if (!c.store.insert_sub_record(sub)) return sub.id;  // the webhook booked it already
  auto t = c.store.find_transaction(sub.transaction_id);
  if (!t) {
    t.emplace();
    t->id = sub.transaction_id;
    t->last_event_id = sub.event_id;
  }
  const auto before = t->state;
  (capture ? t->captured_amount : t->refunded_amount) += sub.amount;
  if (capture && t->amount && t->captured_amount >= *t->amount && t->state == "AUTHORIZED") {
    t->state = "COMPLETED";
  }
  c.store.save_transaction(*t);
  publish_transaction(c, *t, before, row);
  return sub.id;
}

// The answer of a capture / refund call, or of a read of one. A 2xx means
// Klarna executed it: amount, transaction and capture come from what was sent
// when the answer lacks them, and an answer without even the new id queues a
// read of the transaction (READ_BACK: that read books it and reports the
// command's result).
std::string book_sub_record(AnswerContext& c, const storage::OutboxRow& row, const Json& answer,
                            bool capture) {
  storage::SubRecordRow sub;
  sub.kind = capture ? "capture" : "refund";
  auto id = answer.str(capture ? "payment_capture_id" : "payment_refund_id");
  // capture, refund, read_capture and read_refund rows are about the transaction.
  sub.transaction_id = answer.str("payment_transaction_id").value_or(row.entity_id);
  auto amount = answer.integer(capture ? "capture_amount" : "refund_amount");
  if (!amount) amount = row.amount;
  sub.capture_id = capture ? std::nullopt : answer.str("payment_capture_id");
  if (!capture && !sub.capture_id) sub.capture_id = row.capture_id;
  const bool executed = !is_read_operation(row.operation);
  if (executed && !id) {
    c.found.payment_transaction_id = sub.transaction_id;
    queue(c, {ReadTransaction{sub.transaction_id, row.command_id}}, row, row.due_by_ms);
    return std::string(kReadBack);
  }
  if (!id || !amount) {
    throw std::runtime_error(capture ? "capture answer lacks id or amount"
                                     : "refund answer lacks id or amount");
  }
  sub.id = *id;
  sub.amount = *amount;
  return book(c, row, std::move(sub));
}

// A read back after a thin money answer (see book_sub_record): the cause's
// operation is the one among the transaction's captures / refunds with the
// amount and reference sent and no booking yet.
void book_read_back(AnswerContext& c, const storage::OutboxRow& read, const Json& answer) {
  constexpr std::string_view kCause = "outbox:";
  if (!read.created_by_event_id.starts_with(kCause)) return;
  const auto cause = c.store.find_outbox(std::stoll(read.created_by_event_id.substr(7)));
  if (!cause || !cause->amount || cause->result != kReadBack) return;
  const bool capture = cause->operation == Op::capture;
  Sent sent(cause->request_body);
  const auto reference = capture ? sent.body.str("payment_capture_reference")
                                 : (sent.body.str("payment_refund_reference")
                                        ? sent.body.str("payment_refund_reference")
                                        : sent.body.str("refund_reference"));
  const auto id_key = capture ? "payment_capture_id" : "payment_refund_id";
  simdjson::dom::array items;
  auto list = answer.at(capture ? "payment_captures" : "payment_refunds");
  if (!list.ok || list.e.get_array().get(items) != simdjson::SUCCESS) return;
  for (element item : items) {
    Json op{item, true};
    auto id = op.str(id_key);
    const auto ref = op.str(capture ? "payment_capture_reference" : "payment_refund_reference");
    if (!id || op.integer(capture ? "capture_amount" : "refund_amount") != cause->amount) continue;
    if (reference && ref && *ref != *reference) continue;
    if (c.store.find_sub_record(capture ? "capture" : "refund", *id)) continue;
    storage::SubRecordRow sub;
    sub.kind = capture ? "capture" : "refund";
    sub.id = *id;
    sub.transaction_id = read.entity_id;
    sub.amount = *cause->amount;
    sub.capture_id = capture ? std::nullopt : op.str("payment_capture_id");
    if (!capture && !sub.capture_id) sub.capture_id = cause->capture_id;
    book(c, *cause, std::move(sub));
    return;
  }
}

// The payment request a STEP_UP_REQUIRED answer created is tracked from now
// on (a cancel command for it, its expiry, its webhooks): state, amount and
// account from the answer, else from what was sent. state_as_of_ms stays 0,
// so every webhook about it still applies.
void track_step_up_request(AnswerContext& c, const storage::OutboxRow& row, const Json& request,
                           const std::string& id) {
  auto r = c.store.find_request(id);
  const bool known = r.has_value();
  if (!r) {
    r.emplace();
    r->id = id;
    r->generation = 2;
    r->last_event_id = "outbox:" + std::to_string(row.id);
  }
  Sent sent(row.request_body);
  fill(r->state, request.str("state"));
  fill(r->state, std::optional<std::string>("SUBMITTED"));
  fill(r->amount, request.integer("amount"));
  fill(r->amount, sent.body.at("request_payment_transaction").integer("amount"));
  fill(r->currency, request.str("currency"));
  fill(r->currency, sent.body.str("currency"));
  fill(r->reference, request.str("payment_request_reference"));
  fill(r->reference, sent.body.at("step_up_config").str("payment_request_reference"));
  if (auto at = request.str("expires_at")) fill(r->expires_at_ms, parse_rfc3339_ms(*at));
  if (!r->account_id && !row.account_id.empty()) r->account_id = row.account_id;
  r->authorization_result = "STEP_UP_REQUIRED";
  c.store.save_request(*r);
  if (!known) publish_request(c, *r, std::nullopt, row);
}

// The customer token Klarna returned for request_customer_token (where it
// sits is not documented: the answer's top level, or the response's).
std::optional<std::string> returned_customer_token(const Json& answer, const Json& response) {
  for (const Json& at : {answer, response}) {
    if (auto t = at.str("customer_token")) return t;
    if (auto t = at.at("customer_token").str("customer_token")) return t;
  }
  return std::nullopt;
}

// The initial authorization (commands): APPROVED creates the transaction;
// STEP_UP_REQUIRED tracks the payment request Klarna created and hands it the
// command's context (its final authorization uses it); DECLINED changes
// nothing. The request's ids are read at the top of payment_request and under
// state_context.customer_interaction (where real clients read them).
std::string on_initial_authorization(AnswerContext& c, const storage::OutboxRow& row,
                                     const Json& answer) {
  auto response = answer.at("payment_transaction_response");
  auto result = response.str("result");
  if (!result && response.at("payment_transaction").str("payment_transaction_id")) {
    result = "APPROVED";
  }
  if (!result) throw std::runtime_error("answer has no payment_transaction_response.result");
  c.found.result = result;
  c.found.result_reason = response.str("result_reason");
  c.found.customer_token = returned_customer_token(answer, response);
  if (*result == "APPROVED") {
    if (!response.at("payment_transaction").str("payment_transaction_id")) return *result;
    auto t = merge_transaction(c, response.at("payment_transaction"), row, std::nullopt);
    publish_transaction(c, t, std::nullopt, row);
    c.found.payment_transaction_id = t.id;
    after_authorized(c, t, row);
  } else if (*result == "STEP_UP_REQUIRED") {
    auto request = answer.at("payment_request");
    auto interaction = request.at("state_context").at("customer_interaction");
    auto id = request.str("payment_request_id");
    if (!id) id = interaction.str("payment_request_id");
    auto url = interaction.str("payment_request_url");
    if (!url) url = request.str("payment_request_url");
    if (!id) throw std::runtime_error("answer has no payment_request_id");
    c.found.payment_request_id = id;
    c.found.payment_request_url = url;
    c.found.expires_at = request.str("expires_at");
    track_step_up_request(c, row, request, *id);
    if (row.command_id) c.store.attach_payment_context(*row.command_id, *id);
  }
  return *result;
}

// The Interoperability API's SDK token: handed to the command's result only
// (a secret: the row's stored result and the log say ISSUED).
std::string on_sdk_token(AnswerContext& c, const storage::OutboxRow&, const Json& answer) {
  auto token = answer.str("sdk_token");
  if (!token) throw std::runtime_error("answer has no sdk_token");
  c.found.sdk_token = token;
  return "ISSUED";
}

// Void: the transaction's new state (CLOSED, or COMPLETED after captures).
std::string on_void(AnswerContext& c, const storage::OutboxRow& row, const Json& answer) {
  auto t = c.store.find_transaction(row.entity_id);
  auto state = answer.str("state");
  c.found.payment_transaction_id = row.entity_id;
  if (!state) {  // voided, but the answer does not say into which state: read it
    queue(c, {ReadTransaction{row.entity_id, std::nullopt}}, row, row.due_by_ms);
    return "VOIDED";
  }
  if (!t) return *state;
  const auto before = t->state;
  t->state = state;
  c.store.save_transaction(*t);
  if (before != t->state) publish_transaction(c, *t, before, row);
  return *state;
}

// Cancel: the request's new state (CANCELED).
std::string on_cancel(AnswerContext& c, const storage::OutboxRow& row, const Json& answer) {
  auto r = c.store.find_request(row.entity_id);
  auto state = answer.str("state");
  c.found.payment_request_id = row.entity_id;
  if (!r || !state) return state.value_or("UNKNOWN");
  const auto before = r->state;
  r->state = state;
  c.store.save_request(*r);
  if (before != r->state) publish_request(c, *r, before, row);
  return *state;
}

// A state Klarna reports on a read is Klarna's word (the reads settle what
// the state rank could not: docs/PROCESSOR.md, "Ordering rule"). Only a name
// this binary knows is taken; state_as_of_ms is kept. True when it changed.
template <class State, class Row>
bool adopt_state(Row& row, const std::optional<std::string>& told) {
  if (!told || !parse_state<State>(*told) || row.state == told) return false;
  row.state = told;
  return true;
}

std::string on_read_request(AnswerContext& c, const storage::OutboxRow& row, const Json& answer) {
  auto r = c.store.find_request(row.entity_id);
  if (!r) return answer.str("state").value_or("UNKNOWN");
  const auto before = r->state;
  if (adopt_state<RequestState>(*r, answer.str("state"))) publish_request(c, *r, before, row);
  fill(r->amount, answer.integer("amount"));
  fill(r->currency, answer.str("currency"));
  fill(r->reference, answer.str("payment_request_reference"));
  fill(r->payment_transaction_id, answer.at("state_context").str("payment_transaction_id"));
  c.store.save_request(*r);
  auto context = answer.at("state_context");
  RequestContext rc{*r, context.str("klarna_network_session_token"), false,
                    context.str("payment_confirmation_token"), false};
  if (!rc.session_token) {
    rc.session_token = context.str("payment_token");
    rc.legacy_payment_token = rc.session_token.has_value();
  }
  for (const auto& o : c.store.outbox(r->id)) {
    if (o.operation == Op::final_authorization || o.operation == Op::confirm)
      rc.follow_up_exists = true;
  }
  // Only a state Klarna confirms now may cause the call.
  if (answer.str("state") == r->state)
    queue(c, on_request_state(rc, c.follow_ups), row, row.due_by_ms);
  return answer.str("state").value_or("UNKNOWN");
}

std::string on_read_transaction(AnswerContext& c, const storage::OutboxRow& row,
                                const Json& answer) {
  if (!answer.str("payment_transaction_id")) throw std::runtime_error("answer has no id");
  auto t = merge_transaction(c, answer, row, std::nullopt);
  const auto before = t.state;
  if (adopt_state<TransactionState>(t, answer.str("state"))) {
    c.store.save_transaction(t);
    publish_transaction(c, t, before, row);
  }
  book_read_back(c, row, answer);
  after_authorized(c, t, row);
  return t.state.value_or("UNKNOWN");
}

using Handler = std::function<std::string(AnswerContext&, const storage::OutboxRow&, const Json&)>;

// ---- disputes -----------------------------------------------------------------------
// A dispute as Klarna answered it (the resource, or nothing: accept-loss's 202
// may carry no body). Klarna's word on the state replaces ours; without it the
// documented target of the operation is used (`documented`; none: unchanged,
// the webhook will tell). state_as_of_ms is kept, so any later webhook still
// applies.
std::optional<std::string> merge_dispute(AnswerContext& c, const storage::OutboxRow& row,
                                         const Json& answer,
                                         std::optional<std::string> documented) {
  auto d = c.store.find_dispute(row.entity_id);
  if (!d) {
    d.emplace();
    d->id = row.entity_id;
    d->framework = storage::DisputeFramework::current;
    d->last_event_id = "outbox:" + std::to_string(row.id);
  }
  const auto before = d->state;
  const auto state = answer.str("state") ? answer.str("state") : std::move(documented);
  if (state) d->state = state;
  if (auto outcome = answer.str("dispute_outcome")) d->outcome = outcome;
  if (auto closed = answer.str("closed_at")) {
    if (auto ms = parse_rfc3339_ms(*closed)) d->closed_at_ms = ms;
  }
  fill(d->payment_transaction_id, answer.str("payment_transaction_id"));
  auto details = answer.at("dispute_details");
  fill(d->amount, details.integer("dispute_amount"));
  fill(d->currency, details.str("currency"));
  c.store.save_dispute(*d);
  if (before != d->state) {
    publish(c, d->id,
            Change("dispute", d->id, before, d->state, row, c.now_ms)
                .maybe("payment_transaction_id", d->payment_transaction_id)
                .maybe("outcome", d->outcome)
                .done());
  }
  c.found.payment_dispute_id = d->id;
  c.found.dispute_state = d->state;
  return d->state;
}

// accept-loss (202): CLOSED / LOST when the answer says so, else unchanged.
std::string on_dispute_accept_loss(AnswerContext& c, const storage::OutboxRow& row,
                                   const Json& answer) {
  merge_dispute(c, row, answer, std::nullopt);
  return answer.str("state").value_or("LOSS_ACCEPTED");
}

// represent (201) → REPRESENTMENT; appeal (201) → ARBITRATION.
Handler dispute_moved_to(std::string documented) {
  return [documented](AnswerContext& c, const storage::OutboxRow& row, const Json& answer) {
    return merge_dispute(c, row, answer, documented).value_or(documented);
  };
}

// A read after a 409: the state Klarna has now is ours too.
std::string on_read_dispute(AnswerContext& c, const storage::OutboxRow& row, const Json& answer) {
  if (!answer.str("state")) throw std::runtime_error("answer has no dispute state");
  return merge_dispute(c, row, answer, std::nullopt).value_or("UNKNOWN");
}

const std::map<Op, Handler>& handlers() {
  static const std::map<Op, Handler> table = {
      {Op::final_authorization, on_final_authorization},
      {Op::confirm, on_confirm},
      {Op::capture, [](auto& c, auto& row, auto& a) { return book_sub_record(c, row, a, true); }},
      {Op::read_capture,
       [](auto& c, auto& row, auto& a) { return book_sub_record(c, row, a, true); }},
      {Op::read_refund,
       [](auto& c, auto& row, auto& a) { return book_sub_record(c, row, a, false); }},
      {Op::read_payment_request, on_read_request},
      {Op::read_transaction, on_read_transaction},
      {Op::initial_authorization, on_initial_authorization},
      {Op::refund_transaction,
       [](auto& c, auto& row, auto& a) { return book_sub_record(c, row, a, false); }},
      {Op::refund_capture,
       [](auto& c, auto& row, auto& a) { return book_sub_record(c, row, a, false); }},
      {Op::void_transaction, on_void},
      {Op::cancel, on_cancel},
      {Op::dispute_accept_loss, on_dispute_accept_loss},
      {Op::dispute_represent, dispute_moved_to("REPRESENTMENT")},
      {Op::dispute_appeal, dispute_moved_to("ARBITRATION")},
      {Op::read_dispute, on_read_dispute},
      {Op::sdk_token, on_sdk_token},
  };
  return table;
}

}  // namespace

std::string apply_success(AnswerContext& c, const storage::OutboxRow& row,
                          const klarna::Answer& answer) {
  if (is_settlement_operation(row.operation)) return apply_settlement_answer(c, row, answer);
  auto it = handlers().find(row.operation);
  if (it == handlers().end()) return "recorded";  // an operation whose answer changes no state
  // A dispute operation's answer may have no body (accept-loss: 202).
  if (is_dispute_operation(row.operation) &&
      answer.body.find_first_not_of(" \t\r\n") == std::string::npos) {
    return it->second(c, row, Json{});
  }
  thread_local simdjson::dom::parser parser;
  return it->second(c, row, parse(parser, answer.body));
}

std::string queue_reread(AnswerContext& c, const storage::OutboxRow& row) {
  std::vector<FollowUp> read;
  const auto op = row.operation;
  if (op == Op::confirm && row.command_id) {
    // A token's confirm (authorize command): no request of ours to read.
  } else if (op == Op::final_authorization || op == Op::confirm || op == Op::cancel) {
    read.push_back(ReadPaymentRequest{row.entity_id});
  } else if (op == Op::capture || op == Op::refund_transaction || op == Op::refund_capture ||
             op == Op::void_transaction) {
    read.push_back(ReadTransaction{row.entity_id, std::nullopt});
  } else if (is_dispute_operation(op)) {
    // The read reports the command's final result with the state Klarna has.
    read.push_back(ReadDispute{row.entity_id, row.command_id});
  }
  if (read.empty()) return "";
  queue(c, read, row, row.due_by_ms);
  return std::string(operation_name(read.front()));
}

// A dispute operation refused with 409 was re-read (read_dispute with the
// command's id): the command failed, and the reason says what Klarna has now.
std::string conflict_reason(AnswerContext& c, const storage::OutboxRow& read,
                            const std::optional<std::string>& state_now) {
  std::string why = "conflict";
  constexpr std::string_view kCause = "outbox:";
  if (read.created_by_event_id.starts_with(kCause)) {
    const auto cause = c.store.find_outbox(std::stoll(read.created_by_event_id.substr(7)));
    if (cause && cause->last_error) why += ": " + *cause->last_error;
  }
  return why + "; re-read: the dispute is " + state_now.value_or("UNKNOWN") + " at Klarna";
}

void finish_command(AnswerContext& c, const storage::OutboxRow& row,
                    const storage::OutboxUpdate& update) {
  using storage::OutboxStatus;
  if (!row.command_id ||
      (update.status != OutboxStatus::succeeded && update.status != OutboxStatus::failed)) {
    return;
  }
  // The read queued for a dispute operation's 409 reports its result; so does
  // the read back of a money operation whose answer lacked the new id.
  if (update.result == "CONFLICT" && is_dispute_operation(row.operation)) return;
  if (update.result == kReadBack) return;
  auto command = c.store.find_command(*row.command_id);
  if (!command || command->status != storage::CommandStatus::accepted) return;
  const bool conflict_read =
      row.operation == Op::read_dispute && update.status == OutboxStatus::succeeded;
  // Klarna executed the operation the read is about: it succeeded, whatever the read.
  const bool read_back = row.operation == Op::read_transaction;
  const bool ok = (update.status == OutboxStatus::succeeded || read_back) && !conflict_read;
  CommandResult r = std::move(c.found);
  c.found = {};
  r.command_id = command->command_id;
  r.type = command->type;
  r.status = ok ? CommandStatus::succeeded : CommandStatus::failed;
  if (conflict_read) {
    r.reason = conflict_reason(c, row, r.dispute_state);
  } else if (read_back && update.status != OutboxStatus::succeeded) {
    r.reason = "executed; the read back failed: " + update.last_error.value_or("failed");
  } else if (!ok) {
    r.reason = update.last_error.value_or("failed");
    r.result.reset();  // a failed call has no authorization result
  }
  if (row.amount) r.amount = row.amount;
  c.store.finish_command(command->command_id,
                         ok ? storage::CommandStatus::succeeded : storage::CommandStatus::failed,
                         r.reason, c.now_ms);
  storage::PublishRow p{0, c.topics.command_results, command->key,
                        render_command_result(r, c.now_ms), ""};
  p.seq = c.store.enqueue_publish(p);
  c.publications.push_back(std::move(p));
}

}  // namespace kpay::processor
