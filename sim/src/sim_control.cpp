// /_sim: the customer's side, disputes, settlements, clock, reset and introspection.
#include "api_internal.hpp"

namespace kpay::sim {

// ---------------------------------------------------------------------------
// /_sim: the customer's side, disputes, settlements, clock and introspection.

ApiResponse SimApi::Impl::customer_action(const std::string& id, const std::string& action,
                                          const Body& body) {
  auto it = requests.find(id);
  if (it == requests.end()) return not_found("payment request");
  auto& r = it->second;
  auto flow = body.str("flow").value_or("");
  if (flow == "v1" &&
      (r.state == RequestState::submitted || r.state == RequestState::in_progress)) {
    r.gen = Generation::v1;
  }
  auto enter = [&]() {
    if (r.state == RequestState::submitted || r.state == RequestState::prepared) {
      move_request(r, RequestState::in_progress);
    }
  };
  bool ok = true;
  if (action == "start") {
    ok = r.state != RequestState::in_progress && move_request(r, RequestState::in_progress);
  } else if (action == "prepare") {
    r.gen = Generation::v1;
    ok = move_request(r, RequestState::prepared);
  } else if (action == "approve") {
    enter();
    if (r.gen == Generation::v1) {
      r.confirmation_token = token();
      r.token_expires_at = now() + opt.token_ttl_ms;
      ok = move_request(r, RequestState::pending_confirmation);
      if (ok) confirmation_tokens[r.confirmation_token] = r.id;
    } else {
      r.session_token = "krn:network:eu1:test:session-token:" + token();
      r.token_expires_at = now() + opt.token_ttl_ms;
      ok = move_request(r, RequestState::completed);
      if (ok) session_tokens[r.session_token] = r.id;
    }
  } else if (action == "decline") {
    enter();
    ok = move_request(r, RequestState::declined);
  } else if (action == "abandon") {
    ok = move_request(r, RequestState::submitted, "PURCHASE_FLOW_ABORTED");
  } else if (action == "expire") {
    ok = move_request(r, RequestState::expired);
  } else {
    return invalid("action", "one of start, prepare, approve, decline, abandon, expire");
  }
  if (!ok) {
    return conflict("The payment request is " + std::string(request_state_name(r.state)) +
                    "; cannot " + action);
  }
  return json_response(200, render_request(r));
}

void SimApi::Impl::reset_locked() {
  requests.clear();
  transactions.clear();
  request_deadlines.clear();
  transaction_deadlines.clear();
  captures.clear();
  refunds.clear();
  disputes.clear();
  settlements.clear();
  session_tokens.clear();
  confirmation_tokens.clear();
  calls.clear();
  executions.clear();
  key_executions.clear();
  events.clear();
  idem.clear();
  if (sink) sink->reset();
}

ApiResponse SimApi::Impl::sim_control(const ApiRequest& req, const std::vector<std::string>& s,
                                      const Body& body) {
  auto n = s.size();
  const auto& m = req.method;
  auto at = [&](std::size_t i) -> std::string { return i < n ? s[i] : std::string(); };

  if (n == 2 && at(1) == "health") return json_response(200, R"({"status":"ok"})");
  if (n == 2 && at(1) == "answers" && m == "POST") {
    auto mode = body.str("mode").value_or("");
    if (mode != "full" && mode != "thin" && mode != "bare") {
      return invalid("mode", "must be full, thin or bare");
    }
    opt.answers = mode;
    return json_response(200, R"({"mode":")" + mode + "\"}");
  }
  if (n == 2 && at(1) == "calls" && m == "GET") return list_calls(req);
  if (n == 2 && at(1) == "payment-requests" && m == "GET") return list_payment_requests();
  if (n == 2 && at(1) == "transactions" && m == "GET") return list_transactions();
  if (n == 2 && at(1) == "payments" && m == "GET") return list_payments();
  if (n == 2 && at(1) == "executions" && m == "GET") {
    JsonWriter w;
    w.begin_object().key("by_route").begin_object();
    for (const auto& [k, v] : executions) w.field(k, v);
    w.end_object().key("by_idempotency_key").begin_object();
    for (const auto& [k, v] : key_executions) w.field(k, v);
    w.end_object().end_object();
    return json_response(200, w.take());
  }
  if (n == 2 && at(1) == "webhooks" && m == "GET") {
    DeliveryFilter filter;
    filter.state = query_param(req.target, "state");
    auto limit = query_param(req.target, "limit");
    if (!limit.empty())
      filter.limit = static_cast<std::size_t>(std::strtoull(limit.c_str(), nullptr, 10));
    return json_response(
        200, sink ? sink->introspect_json(filter) : R"({"deliveries":[],"summary":{}})");
  }
  if (n == 2 && at(1) == "events" && m == "GET") {
    JsonWriter w;
    w.begin_object().key("events").begin_array();
    for (const auto& e : events) {
      w.begin_object()
          .field("event_type", e.event_type)
          .field("entity_id", e.entity_id)
          .field("at", rfc3339_ms(e.at))
          .field("deliveries", e.deliveries)
          .end_object();
    }
    w.end_array().end_object();
    return json_response(200, w.take());
  }
  if (n == 2 && at(1) == "state" && m == "GET") {
    std::map<std::string, int> rs, ts, ds;
    for (const auto& [id, r] : requests) ++rs[std::string(request_state_name(r.state))];
    for (const auto& [id, t] : transactions) ++ts[std::string(transaction_state_name(t.state))];
    for (const auto& [id, d] : disputes) ++ds[std::string(dispute_state_name(d.state))];
    JsonWriter w;
    w.begin_object();
    auto section = [&](std::string_view name, const std::map<std::string, int>& mm) {
      w.key(name).begin_object();
      for (const auto& [k, v] : mm) w.field(k, v);
      w.end_object();
    };
    section("payment_requests", rs);
    section("payment_transactions", ts);
    section("disputes", ds);
    w.field("settlements", settlements.by_id.size())
        .field("signing_keys", keys.size())
        .field("webhooks", webhooks.size())
        .field("idempotency_keys", idem.size())
        .end_object();
    return json_response(200, w.take());
  }
  if (at(1) == "clock") {
    if (n == 3 && at(2) == "advance" && m == "POST") {
      auto ms = body.integer("ms");
      if (!ms || *ms < 0) return invalid("ms", "must be a non-negative integer");
      clock.advance(*ms);
      tick_locked();
    }
    JsonWriter w;
    w.begin_object()
        .field("now", rfc3339_ms(now()))
        .field("now_ms", now())
        .field("speed", clock.speed())
        .end_object();
    return json_response(200, w.take());
  }
  if (n == 2 && at(1) == "reset" && m == "POST") {
    reset_locked();
    return json_response(200, R"({"reset":true})");
  }
  if (n == 4 && at(1) == "payment-requests" && m == "POST")
    return customer_action(at(2), at(3), body);
  if (at(1) == "disputes" && m == "POST") {
    if (n == 2) return create_dispute(body);
    if (n == 4 && at(3) == "transition") {
      auto it = disputes.find(at(2));
      if (it == disputes.end()) return not_found("dispute");
      auto to = parse_dispute_state(body.str("state").value_or(""));
      if (!to) return invalid("state", "unknown dispute state");
      if (!move_dispute(it->second, *to, body.str("outcome").value_or(""))) {
        return conflict("Dispute transition not allowed from " +
                        std::string(dispute_state_name(it->second.state)));
      }
      return json_response(200, render_dispute(it->second));
    }
    if (n == 4 && at(3) == "extend") return extend_dispute_deadline(at(2), body);
  }
  if (at(1) == "settlements") return settlement_control(req, s, body);
  return not_found("sim control route");
}

// ---------------------------------------------------------------------------
// introspection

ApiResponse SimApi::Impl::list_calls(const ApiRequest& req) const {
  auto route_filter = query_param(req.target, "route");
  JsonWriter w;
  w.begin_object().key("calls").begin_array();
  for (const auto& c : calls) {
    if (!route_filter.empty() && c.route != route_filter) continue;
    w.begin_object()
        .field("seq", c.seq)
        .field("at", rfc3339_ms(c.at))
        .field("method", c.method)
        .field("path", c.path)
        .field("route", c.route)
        .field("idempotency_key", c.idempotency_key)
        .field("status", c.status)
        .field("replayed", c.replayed);
    if (!c.fault.empty()) w.field("fault", c.fault);
    w.field("body", c.body);
    w.key("headers").begin_object();
    for (const auto& [k, v] : c.headers) w.field(k, v);
    w.end_object().field("mtls", c.mtls);
    if (c.mtls) w.field("client_certificate_subject", c.client_certificate_subject);
    w.end_object();
  }
  w.end_array().end_object();
  return json_response(200, w.take());
}

namespace {
// Pointers to the map's values in creation order.
template <class Map>
auto in_creation_order(const Map& m) {
  std::vector<const typename Map::mapped_type*> out;
  for (const auto& [id, v] : m) out.push_back(&v);
  std::sort(out.begin(), out.end(), [](const auto* a, const auto* b) { return a->seq < b->seq; });
  return out;
}
}  // namespace

void SimApi::Impl::write_payment_requests(JsonWriter& w) const {
  w.key("payment_requests").begin_array();
  for (const auto* r : in_creation_order(requests)) {
    w.begin_object()
        .field("payment_request_id", r->id)
        .field("payment_request_reference", r->reference)
        .field("state", request_state_name(r->state));
    if (!r->state_reason.empty()) w.field("state_reason", r->state_reason);
    w.field("flow", r->gen == Generation::v1 ? "v1" : "v2")
        .field("amount", r->amount)
        .field("currency", r->currency);
    if (!r->transaction_id.empty()) w.field("payment_transaction_id", r->transaction_id);
    w.field("created_at", rfc3339_ms(r->created_at))
        .field("updated_at", rfc3339_ms(r->updated_at))
        .end_object();
  }
  w.end_array();
}

void SimApi::Impl::write_transactions(JsonWriter& w) const {
  w.key("payment_transactions").begin_array();
  for (const auto* t : in_creation_order(transactions)) {
    w.begin_object()
        .field("payment_transaction_id", t->id)
        .field("payment_transaction_reference", t->reference)
        .field("state", transaction_state_name(t->state))
        .field("amount", t->amount)
        .field("currency", t->currency)
        .field("captured_amount", t->captured)
        .field("refunded_amount", t->refunded)
        .field("captures", t->captures.size())
        .field("refunds", t->refunds.size());
    if (!t->request_id.empty()) w.field("payment_request_id", t->request_id);
    w.field("created_at", rfc3339_ms(t->created_at))
        .field("updated_at", rfc3339_ms(t->updated_at))
        .end_object();
  }
  w.end_array();
}

ApiResponse SimApi::Impl::list_payment_requests() const {
  JsonWriter w;
  w.begin_object();
  write_payment_requests(w);
  w.end_object();
  return json_response(200, w.take());
}

ApiResponse SimApi::Impl::list_transactions() const {
  JsonWriter w;
  w.begin_object();
  write_transactions(w);
  w.end_object();
  return json_response(200, w.take());
}

// Both lists in one answer (one consistent snapshot).
ApiResponse SimApi::Impl::list_payments() const {
  JsonWriter w;
  w.begin_object();
  write_payment_requests(w);
  write_transactions(w);
  w.end_object();
  return json_response(200, w.take());
}

// ---------------------------------------------------------------------------
// disputes

ApiResponse SimApi::Impl::create_dispute(const Body& body) {
  auto txid = body.str("payment_transaction_id").value_or("");
  auto it = transactions.find(txid);
  if (it == transactions.end()) return not_found("payment transaction");
  auto& t = it->second;
  if (t.captures.empty()) return conflict("A dispute needs a captured transaction");
  Dispute d;
  d.id = "krn:payment:eu1:dispute:" + uuid();
  d.account = t.account;
  d.transaction_id = t.id;
  d.capture_id = t.captures.front();
  d.currency = t.currency;
  d.amount = body.integer("amount").value_or(t.captured);
  d.reason = body.str("dispute_reason").value_or("GOODS_NOT_RECEIVED");
  d.seq = ++entity_seq;
  d.created_at = d.updated_at = now();
  d.representment_expires_at = now() + 10LL * 24 * 3600 * 1000;
  auto& stored = disputes.emplace(d.id, std::move(d)).first->second;
  emit("payment.dispute.state-change.initiated", stored.id, render_dispute(stored), stored.account);
  return json_response(201, render_dispute(stored));
}

}  // namespace kpay::sim
