#include "kpay/sim/api.hpp"

#include "api_internal.hpp"

namespace kpay::sim {

// ---------------------------------------------------------------------------
// helpers

std::string percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
      };
      int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

ApiResponse klarna_error(int status, std::string_view error_type, std::string_view error_code,
                         std::string_view message,
                         const std::vector<std::pair<std::string, std::string>>& validation) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char id[40];
  std::snprintf(id, sizeof id, "%016llx%016llx", static_cast<unsigned long long>(rng()),
                static_cast<unsigned long long>(rng()));
  JsonWriter w;
  w.begin_object()
      .field("error_id", std::string(id))
      .field("error_type", error_type)
      .field("error_code", error_code)
      .field("error_message", message);
  if (!validation.empty()) {
    w.key("validation_errors").begin_array();
    for (const auto& [param, reason] : validation) {
      w.begin_object().field("parameter", param).field("reason", reason).end_object();
    }
    w.end_array();
  }
  w.end_object();
  return ApiResponse{status, {}, w.take()};
}

// ---------------------------------------------------------------------------

SimApi::SimApi(ApiOptions options, SimClock& clock, DeliverySink* sink)
    : impl_(std::make_unique<Impl>(std::move(options), clock, sink)) {}
SimApi::~SimApi() = default;

std::string SimApi::route_name(std::string_view method, std::string_view target) {
  return match_route(method, split_path(target)).name;
}

std::uint64_t SimApi::executions(const std::string& route) const {
  std::lock_guard lk(impl_->mu);
  auto it = impl_->executions.find(route);
  return it == impl_->executions.end() ? 0 : it->second;
}

void SimApi::set_control_handler(std::string prefix, ControlHandler handler) {
  std::lock_guard lk(impl_->mu);
  impl_->control.emplace_back(std::move(prefix), std::move(handler));
}

void SimApi::add_signing_key(const std::string& id, const std::string& secret) {
  std::lock_guard lk(impl_->mu);
  StoredKey k;
  k.secret = secret;
  k.created_at = impl_->now();
  k.key = std::make_unique<klarna::SigningKey>(secret);
  impl_->keys[id] = std::move(k);
}

std::string SimApi::add_webhook(const std::string& url, const std::vector<std::string>& event_types,
                                const std::string& event_version,
                                const std::string& signing_key_id) {
  std::lock_guard lk(impl_->mu);
  Webhook h;
  h.id = "krn:partner:global:notification:webhook:" + impl_->uuid();
  h.url = url;
  h.event_types = event_types;
  h.event_version = event_version;
  h.signing_key_id = signing_key_id;
  h.status = "ENABLED";
  h.created_at = h.updated_at = impl_->now();
  auto id = h.id;
  impl_->webhooks.emplace(id, std::move(h));
  return id;
}

void SimApi::note_fault(const ApiRequest& req, std::string_view fault, int status) {
  std::lock_guard lk(impl_->mu);
  CallRecord c;
  c.seq = ++impl_->call_seq;
  c.at = impl_->now();
  c.method = req.method;
  c.path = req.target;
  c.route = route_name(req.method, req.target);
  c.idempotency_key = req.header("klarna-idempotency-key");
  c.fault = std::string(fault);
  c.status = status;
  if (impl_->calls.size() < impl_->opt.max_calls_logged) impl_->calls.push_back(std::move(c));
}

void SimApi::tick() {
  std::lock_guard lk(impl_->mu);
  impl_->tick_locked();
}

void SimApi::Impl::tick_locked() {
  auto t = now();
  for (auto& [id, r] : requests) {
    if (is_final(r.state)) continue;
    if (r.state == RequestState::pending_confirmation && t >= r.token_expires_at) {
      confirmation_tokens.erase(r.confirmation_token);
      r.confirmation_token.clear();
      move_request(r, RequestState::submitted, "CONFIRMATION_TOKEN_EXPIRED");
      continue;
    }
    if (t >= r.expires_at) move_request(r, RequestState::expired);
  }
  for (auto& [id, tx] : transactions) {
    if (tx.state == TransactionState::authorized && t >= tx.expires_at) {
      move_transaction(tx, TransactionState::expired);
    }
  }
  idem.purge(t);
}

ApiResponse SimApi::handle(const ApiRequest& req) {
  auto segs = split_path(req.target);
  // Control routes owned by other components run without our lock: they call
  // back into handle().
  if (!segs.empty() && segs[0] == "_sim") {
    std::string path = "/";
    for (std::size_t i = 0; i < segs.size(); ++i) path += (i ? "/" : "") + segs[i];
    ControlHandler h;
    {
      std::lock_guard lk(impl_->mu);
      for (const auto& [prefix, fn] : impl_->control) {
        if (path.rfind(prefix, 0) == 0) h = fn;
      }
    }
    if (h) return h(req);
  }

  std::lock_guard lk(impl_->mu);
  auto& im = *impl_;
  Route route = match_route(req.method, segs);
  CallRecord call;
  call.seq = ++im.call_seq;
  call.at = im.now();
  call.method = req.method;
  call.path = req.target;
  call.route = route.name;
  call.idempotency_key = req.header("klarna-idempotency-key");
  auto finish = [&](ApiResponse r) {
    call.status = r.status;
    if (route.name != "sim.control" && im.calls.size() < im.opt.max_calls_logged) {
      im.calls.push_back(std::move(call));
    }
    if (!r.body.empty()) r.headers.emplace_back("Content-Type", "application/json");
    if (auto corr = req.header("partner-correlation-id"); !corr.empty()) {
      r.headers.emplace_back("Partner-Correlation-Id", corr);
    }
    return r;
  };

  Body body;
  if (!body.parse(im.parser, req.body)) {
    return finish(
        klarna_error(400, "INPUT_ERROR", "INVALID_JSON", "The request body is not a JSON object"));
  }
  if (route.name == "sim.control") return finish(im.sim_control(req, segs, body));
  if (route.name == "unknown") return finish(not_found("route"));

  if (im.opt.api_key) {
    if (req.header("authorization") != "Basic " + *im.opt.api_key) {
      return finish(
          klarna_error(401, "ACCESS_ERROR", "UNAUTHORIZED", "Missing or invalid credentials"));
    }
  }

  bool mutating = req.method == "POST" || req.method == "PATCH";
  std::string key = mutating ? call.idempotency_key : std::string();
  std::string fp;
  if (mutating && req.headers.count("klarna-idempotency-key")) {
    if (key.empty() || key.size() > 255) {
      return finish(invalid("Klarna-Idempotency-Key", "must be 1 to 255 characters"));
    }
    fp = IdempotencyStore::fingerprint(req.method, req.target, req.body);
    auto found = im.idem.check(key, fp, im.now());
    if (found.outcome == IdempotencyStore::Outcome::replay) {
      call.replayed = true;
      return finish(ApiResponse{found.response.status, {}, found.response.body});
    }
    if (found.outcome == IdempotencyStore::Outcome::conflict) {
      return finish(klarna_error(409, "INPUT_ERROR", "IDEMPOTENCY_KEY_REUSED",
                                 "The idempotency key was already used with a different request"));
    }
  }

  ApiResponse res = im.dispatch(route, req, body);
  ++im.executions[route.name];
  if (!key.empty()) {
    ++im.key_executions[key];
    im.idem.remember(key, fp, StoredResponse{res.status, res.body}, im.now());
  }
  return finish(std::move(res));
}

ApiResponse SimApi::Impl::dispatch(const Route& route, const ApiRequest& req, const Body& body) {
  const auto& n = route.name;
  auto id = route.ids.empty() ? std::string() : route.ids[0];

  if (n == "payment.requests.create") {
    auto currency = body.str("currency");
    auto amount = body.integer("amount");
    if (!currency || !valid_currency(*currency))
      return invalid("currency", "must be an ISO 4217 code");
    if (!amount || *amount <= 0)
      return invalid("amount", "must be a positive integer in minor units");
    PaymentRequest r;
    r.id = "krn:payment:eu1:request:" + uuid();
    r.account = route.account;
    r.reference = body.str("payment_request_reference").value_or("");
    r.currency = *currency;
    r.amount = *amount;
    r.url = opt.payment_request_url_base + r.id.substr(r.id.rfind(':') + 1);
    r.created_at = r.updated_at = now();
    r.expires_at = r.created_at + opt.request_ttl_ms;
    auto& stored = requests.emplace(r.id, std::move(r)).first->second;
    emit("payment.request.state-change.submitted", stored.id, render_request(stored),
         stored.account);
    return json_response(201, render_request(stored));
  }
  if (n == "payment.requests.read" || n == "payment.requests.cancel") {
    auto it = requests.find(id);
    if (it == requests.end() || it->second.account != route.account)
      return not_found("payment request");
    auto& r = it->second;
    if (n == "payment.requests.read") return json_response(200, render_request(r));
    if (r.state == RequestState::canceled) return ApiResponse{204, {}, {}};
    if (!move_request(r, RequestState::canceled, "PARTNER_CANCELED")) {
      return conflict("The payment request is " + std::string(request_state_name(r.state)) +
                      " and cannot be canceled");
    }
    return ApiResponse{204, {}, {}};
  }
  if (n == "payment.authorize") return authorize(route, req, body);
  if (n == "payment.confirm") return confirm(route, body);

  if (n.rfind("payment.transactions.", 0) == 0) {
    auto it = transactions.find(id);
    if (it == transactions.end() || it->second.account != route.account)
      return not_found("payment transaction");
    auto& t = it->second;
    if (n == "payment.transactions.read") return json_response(200, render_transaction(t));
    if (n == "payment.transactions.update") {
      if (t.state != TransactionState::authorized)
        return conflict("Only an AUTHORIZED transaction can be updated");
      if (auto ref = body.str("payment_transaction_reference")) t.reference = *ref;
      t.updated_at = now();
      return json_response(200, render_transaction(t));
    }
    if (n == "payment.transactions.capture") return capture(route, body);
    if (n == "payment.transactions.refund") return refund(route, body, false);
    if (n == "payment.transactions.void") {
      if (t.state != TransactionState::authorized) {
        return klarna_error(403, "RESOURCE_ERROR", "VOID_NOT_ALLOWED",
                            "The transaction is " + std::string(transaction_state_name(t.state)));
      }
      ++t.operations;
      move_transaction(t, t.captured > 0 ? TransactionState::completed : TransactionState::closed);
      return json_response(200, render_transaction(t));
    }
  }
  if (n == "payment.captures.read") {
    auto it = captures.find(id);
    if (it == captures.end()) return not_found("capture");
    JsonWriter w;
    write_capture(w, it->second);
    return json_response(200, w.take());
  }
  if (n == "payment.captures.refund") return refund(route, body, true);
  if (n == "payment.refunds.read") {
    auto it = refunds.find(id);
    if (it == refunds.end()) return not_found("refund");
    JsonWriter w;
    write_refund(w, it->second);
    return json_response(200, w.take());
  }
  if (n == "payment.disputes.read" || n == "payment.disputes.accept-loss") {
    auto it = disputes.find(id);
    if (it == disputes.end() || it->second.account != route.account) return not_found("dispute");
    auto& d = it->second;
    if (n == "payment.disputes.accept-loss") {
      if (d.state != DisputeState::initiated && d.state != DisputeState::pre_arbitration) {
        return conflict("accept-loss is possible in INITIATED or PRE_ARBITRATION only");
      }
      move_dispute(d, DisputeState::closed, "LOST");
    }
    return json_response(200, render_dispute(d));
  }
  if (n.rfind("notification.signing-keys.", 0) == 0) return signing_keys_api(route);
  if (n.rfind("notification.webhooks.", 0) == 0) return webhooks_api(route, body);
  if (n == "settlements.read") {
    auto it = settlements.find(id);
    if (it == settlements.end()) return not_found("settlement");
    return json_response(200, render_settlement(it->second));
  }
  if (n == "settlements.list") {
    JsonWriter w;
    w.begin_object().key("settlements").begin_array();
    for (const auto& [sid, s] : settlements) w.raw(render_settlement(s));
    w.end_array().end_object();
    return json_response(200, w.take());
  }
  return not_found("route");
}

}  // namespace kpay::sim
