// What a 2xx answer of a payment operation does to the stored state:
// authorizations, confirm, captures and refunds booked, void, cancel, the SDK
// token, and the reads that settle what an answer left open.
#include "calls/answer_support.hpp"
#include "kpay/core/log.hpp"
#include "kpay/processor/events.hpp"

namespace kpay::processor::answers {

namespace {

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

// A state Klarna reports on a read is Klarna's word (the reads settle what
// the state rank could not: docs/PROCESSOR.md, "Ordering rule"). Only a name
// this binary knows is taken; state_as_of_ms is kept. True when it changed.
template <class State, class Row>
bool adopt_state(Row& row, const std::optional<std::string>& told) {
  if (!told || !parse_state<State>(*told) || row.state == told) return false;
  row.state = told;
  return true;
}

}  // namespace

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

}  // namespace kpay::processor::answers
