// Payment operations: authorization (initial and final), Gen 1 confirm, capture and refund,
// with Klarna's amount rules.
#include "api_internal.hpp"

namespace kpay::sim {

ApiResponse SimApi::Impl::authorize(const Route& route, const ApiRequest& req, const Body& body) {
  auto currency = body.str("currency");
  auto rpt = body.child("request_payment_transaction");
  if (!currency || !valid_currency(*currency))
    return invalid("currency", "must be an ISO 4217 code");
  if (!rpt) return invalid("request_payment_transaction", "is required");
  auto amount = Body::integer(*rpt, "amount");
  if (!amount || *amount <= 0)
    return invalid("request_payment_transaction.amount", "must be a positive integer");
  auto reference = Body::str(*rpt, "payment_transaction_reference").value_or("");
  auto capture_mode = Body::str(*rpt, "capture").value_or("LATER");
  if (capture_mode != "NOW" && capture_mode != "LATER") {
    return invalid("request_payment_transaction.capture", "must be NOW or LATER");
  }
  std::string session = req.header("klarna-network-session-token");
  if (session.empty()) session = req.header("klarna-payment-token");

  auto respond = [&](std::string_view result, std::string_view reason, const Transaction* tx,
                     const PaymentRequest* pr) {
    JsonWriter w;
    if (opt.answers != "full") {  // as thin as the documents allow
      w.begin_object().key("payment_transaction_response").begin_object().field("result", result);
      if (tx) {
        w.key("payment_transaction").begin_object().field("payment_transaction_id", tx->id);
        w.end_object();
      }
      w.end_object();
      if (pr) {
        w.key("payment_request").begin_object().key("state_context").begin_object();
        w.key("customer_interaction").begin_object().field("payment_request_id", pr->id);
        w.field("payment_request_url", pr->url).end_object().end_object().end_object();
      }
      w.end_object();
      return w.take();
    }
    w.begin_object().key("payment_transaction_response").begin_object().field("result", result);
    if (!reason.empty()) w.field("result_reason", reason);
    if (tx) {
      w.key("payment_transaction");
      write_transaction(w, *tx);
    }
    w.end_object();
    if (pr) {
      w.key("payment_request");
      write_request(w, *pr);
    }
    w.end_object();
    return w.take();
  };

  if (!session.empty()) {
    // Final authorization (Gen 2/3).
    auto tok = session_tokens.find(session);
    if (tok == session_tokens.end()) {
      return klarna_error(400, "INPUT_ERROR", "INVALID_SESSION_TOKEN",
                          "Unknown Klarna-Network-Session-Token");
    }
    auto& pr = requests.at(tok->second);
    if (pr.account != route.account) return not_found("payment request");
    // Repeating the call with the same token returns the same result.
    if (!pr.authorize_response.empty()) return json_response(200, pr.authorize_response);
    if (now() >= pr.token_expires_at) {
      return klarna_error(400, "INPUT_ERROR", "SESSION_TOKEN_EXPIRED",
                          "The session token expired; the approval is lost");
    }
    if (*currency != pr.currency)
      return invalid("currency", "must match the approved payment request");
    if (*amount != pr.amount)
      return invalid("request_payment_transaction.amount",
                     "must match the approved payment request");
    // Real clients send the step_up_config of the initial call again: accepted, unused.
    auto& tx =
        create_transaction(pr.account, reference, *amount, *currency, pr.id, capture_mode == "NOW");
    pr.transaction_id = tx.id;
    pr.authorize_response = respond("APPROVED", "", &tx, nullptr);
    return json_response(200, pr.authorize_response);
  }

  // Initial authorization. Sim rules (no real customer here):
  //   reference containing "decline"          → DECLINED
  //   Klarna-Customer-Token header present    → APPROVED (with a customer token when
  //                                              request_customer_token asked for one)
  //   step_up_config present                  → STEP_UP_REQUIRED, a payment request is created
  //   otherwise                               → DECLINED (no customer can be asked)
  if (reference.find("decline") != std::string::npos) {
    return json_response(200, respond("DECLINED", "PURCHASE_DECLINED", nullptr, nullptr));
  }
  if (!req.header("klarna-customer-token").empty()) {
    auto& tx =
        create_transaction(route.account, reference, *amount, *currency, "", capture_mode == "NOW");
    auto answer = respond("APPROVED", "", &tx, nullptr);
    if (body.child("request_customer_token") && answer.size() > 1) {
      answer.pop_back();  // the closing brace: add the token Klarna issued
      answer += R"(,"customer_token":{"customer_token":"krn:customer-token:)" + uuid() + "\"}}";
    }
    return json_response(200, answer);
  }
  auto step_up = body.child("step_up_config");
  if (!step_up || !step_up->is_object()) {
    return json_response(200, respond("DECLINED", "STEP_UP_NOT_CONFIGURED", nullptr, nullptr));
  }
  auto request_reference = Body::str(*step_up, "payment_request_reference").value_or(reference);
  auto& stored =
      add_request(route.account, request_reference, *currency, *amount, "STEP_UP_REQUIRED");
  return json_response(
      200, respond("STEP_UP_REQUIRED", "CUSTOMER_INTERACTION_REQUIRED", nullptr, &stored));
}

ApiResponse SimApi::Impl::confirm(const Route& route, const Body& body) {
  const auto& token = route.ids[0];
  auto it = confirmation_tokens.find(token);
  if (it == confirmation_tokens.end()) return not_found("payment confirmation token");
  auto& pr = requests.at(it->second);
  if (pr.account != route.account) return not_found("payment confirmation token");
  if (!pr.authorize_response.empty())
    return json_response(200, pr.authorize_response);  // idempotent per token
  if (pr.state != RequestState::pending_confirmation) {
    return conflict("The payment request is " + std::string(request_state_name(pr.state)));
  }
  auto currency = body.str("currency");
  auto amount = body.integer("payment_amount");
  if (!currency || *currency != pr.currency)
    return invalid("currency", "must match the payment request");
  if (!amount || *amount != pr.amount)
    return invalid("payment_amount", "must match the payment request");
  bool capture_now = false;
  if (auto cfg = body.child("config")) capture_now = Body::boolean(*cfg, "capture").value_or(false);
  auto reference = body.str("payment_transaction_reference").value_or(pr.reference);
  auto& tx = create_transaction(pr.account, reference, pr.amount, pr.currency, pr.id, capture_now);
  pr.transaction_id = tx.id;
  move_request(pr, RequestState::authorized);
  if (opt.answers == "full") {
    pr.authorize_response = render_request(pr);
  } else {  // only the new id
    JsonWriter w;
    w.begin_object().field("payment_request_id", pr.id).key("state_context").begin_object();
    w.field("payment_transaction_id", tx.id).end_object().end_object();
    pr.authorize_response = w.take();
  }
  return json_response(200, pr.authorize_response);
}

// The Interoperability API: an SDK token for a well-formed interoperability
// token (a JWT: three dot-separated segments), sent in its header.
ApiResponse SimApi::Impl::sdk_token(const ApiRequest& req) {
  const std::string jwt = req.header("klarna-interoperability-token");
  if (jwt.empty()) return invalid("Klarna-Interoperability-Token", "is required");
  if (std::count(jwt.begin(), jwt.end(), '.') != 2) {
    return klarna_error(400, "INPUT_ERROR", "INVALID_INTEROPERABILITY_TOKEN",
                        "The interoperability token is not a JWT");
  }
  return json_response(200, R"({"sdk_token":"sim-sdk-token-)" + token() + "\"}");
}

ApiResponse SimApi::Impl::capture(const Route& route, const Body& body) {
  auto& t = transactions.at(route.ids[0]);
  auto amount = body.integer("capture_amount");
  if (!amount || *amount <= 0) return invalid("capture_amount", "must be a positive integer");
  if (t.state != TransactionState::authorized) {
    return klarna_error(403, "RESOURCE_ERROR", "CAPTURE_NOT_ALLOWED",
                        "The transaction is " + std::string(transaction_state_name(t.state)) +
                            "; captures are possible only while AUTHORIZED");
  }
  if (t.captures.size() >= 200 || t.operations >= 500) {
    return klarna_error(403, "RESOURCE_ERROR", "OPERATION_LIMIT_EXCEEDED",
                        "The transaction reached its capture or operation limit");
  }
  if (*amount > t.amount - t.captured) {
    return klarna_error(403, "RESOURCE_ERROR", "CAPTURE_NOT_ALLOWED",
                        "Captured amount is higher than the remaining authorized amount",
                        {{"capture_amount", "exceeds remaining authorized amount " +
                                                std::to_string(t.amount - t.captured)}});
  }
  const auto& c = add_capture(t, *amount, body.str("payment_capture_reference").value_or(""));
  emit("payment.transaction.captured", t.id, render_transaction(t, {.capture = &c}), t.account);
  if (t.captured == t.amount) move_transaction(t, TransactionState::completed);
  JsonWriter w;
  write_capture(w, c);
  return shaped(201, w.take(), R"({"payment_capture_id":")" + c.id + "\"}", "{}");
}

ApiResponse SimApi::Impl::refund(const Route& route, const Body& body, bool of_capture) {
  Capture* cap = nullptr;
  Transaction* t = nullptr;
  if (of_capture) {
    auto it = captures.find(route.ids[0]);
    if (it == captures.end()) return not_found("capture");
    cap = &it->second;
    t = &transactions.at(cap->transaction_id);
  } else {
    t = &transactions.at(route.ids[0]);
  }
  if (t->account != route.account) return not_found("payment transaction");
  auto amount = body.integer("refund_amount");
  if (!amount || *amount <= 0) return invalid("refund_amount", "must be a positive integer");
  if ((t->state != TransactionState::authorized && t->state != TransactionState::completed) ||
      t->captured == 0) {
    return klarna_error(
        403, "RESOURCE_ERROR", "REFUND_NOT_ALLOWED",
        "Refunds need an AUTHORIZED or COMPLETED transaction with at least one capture");
  }
  if (t->refunds.size() >= 200 || t->operations >= 500) {
    return klarna_error(403, "RESOURCE_ERROR", "OPERATION_LIMIT_EXCEEDED",
                        "Refund or operation limit reached");
  }
  std::int64_t refundable = cap ? cap->amount - cap->refunded : t->captured - t->refunded;
  if (*amount > refundable) {
    return klarna_error(
        403, "RESOURCE_ERROR", "REFUND_NOT_ALLOWED",
        "Refunded amount is higher than the captured amount not yet refunded",
        {{"refund_amount", "exceeds refundable amount " + std::to_string(refundable)}});
  }
  Refund r;
  r.id = "krn:payment:eu1:refund:" + uuid();
  r.transaction_id = t->id;
  r.capture_id = cap ? cap->id : "";
  r.reference =
      body.str("payment_refund_reference").value_or(body.str("refund_reference").value_or(""));
  r.amount = *amount;
  r.created_at = now();
  if (cap) cap->refunded += *amount;
  t->refunded += *amount;
  t->refunds.push_back(r.id);
  ++t->operations;
  t->updated_at = now();
  auto& stored = refunds.emplace(r.id, std::move(r)).first->second;
  emit("payment.transaction.refunded", t->id, render_transaction(*t, {.refund = &stored}),
       t->account);
  JsonWriter w;
  write_refund(w, stored);
  return shaped(201, w.take(), R"({"payment_refund_id":")" + stored.id + "\"}", "{}");
}

}  // namespace kpay::sim
