#include "kpay/sim/api.hpp"

#include <algorithm>

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

void SimApi::set_public_url(std::string url) {
  std::lock_guard lk(impl_->mu);
  while (!url.empty() && url.back() == '/') url.pop_back();
  impl_->opt.public_url = std::move(url);
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
  CallRecord c = impl_->new_call(req, route_name(req.method, req.target));
  c.fault = std::string(fault);
  c.status = status;
  impl_->log_call(std::move(c));
}

std::string SimApi::authorization() const {
  return impl_->opt.require_auth ? "Basic " + impl_->opt.api_key : std::string();
}

std::vector<std::string> SimApi::disputable_transactions() const {
  std::lock_guard lk(impl_->mu);
  const auto& im = *impl_;
  std::set<std::string> disputed;
  for (const auto& [id, d] : im.disputes) disputed.insert(d.transaction_id);
  std::vector<const Transaction*> candidates;
  for (const auto& [id, t] : im.transactions) {
    if (!t.captures.empty() && !disputed.count(id)) candidates.push_back(&t);
  }
  std::sort(candidates.begin(), candidates.end(),
            [](const auto* a, const auto* b) { return a->seq < b->seq; });
  std::vector<std::string> out;
  for (const auto* t : candidates) out.push_back(t->id);
  return out;
}

void SimApi::tick() {
  std::lock_guard lk(impl_->mu);
  impl_->tick_locked();
}

// Only entities whose deadline has come are visited (see deadline_index.hpp),
// in id order as before; one that is still live afterwards is scheduled again.
void SimApi::Impl::tick_locked() {
  auto t = now();
  for (const auto& id : request_deadlines.take_due(t)) {
    auto it = requests.find(id);
    if (it == requests.end()) continue;
    auto& r = it->second;
    if (is_final(r.state)) continue;
    if (r.state == RequestState::pending_confirmation && t >= r.token_expires_at) {
      confirmation_tokens.erase(r.confirmation_token);
      r.confirmation_token.clear();
      move_request(r, RequestState::submitted, "CONFIRMATION_TOKEN_EXPIRED");
    } else if (t >= r.expires_at) {
      move_request(r, RequestState::expired);
    }
    schedule_expiry(r);
  }
  for (const auto& id : transaction_deadlines.take_due(t)) {
    auto it = transactions.find(id);
    if (it == transactions.end()) continue;
    auto& tx = it->second;
    if (tx.state == TransactionState::authorized && t >= tx.expires_at) {
      move_transaction(tx, TransactionState::expired);
    }
    schedule_expiry(tx);
  }
  settlement_tick_locked();
  idem.purge(t);
}

// The next moment tick() may have to act on `r`: its confirmation token's
// expiry while it waits for confirmation, else its own expiry.
void SimApi::Impl::schedule_expiry(const PaymentRequest& r) {
  if (is_final(r.state)) return;
  auto at = r.expires_at;
  if (r.state == RequestState::pending_confirmation) at = std::min(at, r.token_expires_at);
  request_deadlines.add(at, r.id);
}

void SimApi::Impl::schedule_expiry(const Transaction& t) {
  if (t.state == TransactionState::authorized) transaction_deadlines.add(t.expires_at, t.id);
}

ApiResponse SimApi::handle(const ApiRequest& req) {
  auto segs = impl_->canonical_dispute_path(split_path(req.target));
  // Control routes owned by other components run without our lock: they call
  // back into handle().
  if (auto h = impl_->control_handler_for(segs)) return h(req);
  std::lock_guard lk(impl_->mu);
  return impl_->handle_locked(req, segs);
}

SimApi::ControlHandler SimApi::Impl::control_handler_for(
    const std::vector<std::string>& segs) const {
  if (segs.empty() || segs[0] != "_sim") return {};
  std::string path;
  for (const auto& s : segs) path += "/" + s;
  std::lock_guard lk(mu);
  ControlHandler h;
  for (const auto& [prefix, fn] : control) {
    if (path.rfind(prefix, 0) == 0) h = fn;
  }
  return h;
}

CallRecord SimApi::Impl::new_call(const ApiRequest& req, const std::string& route) {
  CallRecord c;
  c.seq = ++call_seq;
  c.at = now();
  c.method = req.method;
  c.path = req.target;
  c.route = route;
  c.idempotency_key = req.header("klarna-idempotency-key");
  c.body = req.body;
  for (auto name : kRecordedHeaders) {
    auto it = req.headers.find(std::string(name));
    if (it != req.headers.end()) c.headers.emplace_back(it->first, it->second);
  }
  c.mtls = req.mtls_verified;
  c.client_certificate_subject = req.client_certificate_subject;
  return c;
}

void SimApi::Impl::log_call(CallRecord call) {
  if (call.route != "sim.control" && calls.size() < opt.max_calls_logged) {
    calls.push_back(std::move(call));
  }
}

// Basic credentials, compared in constant time (the key is never logged).
bool SimApi::Impl::authorized(const ApiRequest& req) const {
  if (!opt.require_auth) return true;
  const std::string given = req.header("authorization");
  auto matches = [&](const std::string& key) {
    const std::string expected = "Basic " + key;
    unsigned char diff = given.size() == expected.size() ? 0 : 1;
    for (std::size_t i = 0; i < given.size() && i < expected.size(); ++i) {
      diff |= static_cast<unsigned char>(given[i] ^ expected[i]);
    }
    return diff == 0;
  };
  const bool also = !opt.api_key_also.empty() && matches(opt.api_key_also);
  return matches(opt.api_key) || also;
}

ApiResponse SimApi::Impl::handle_locked(const ApiRequest& req,
                                        const std::vector<std::string>& segs) {
  Route route = match_route(req.method, segs);
  CallRecord call = new_call(req, route.name);
  auto finish = [&](ApiResponse r) {
    call.status = r.status;
    log_call(std::move(call));
    const bool typed = std::any_of(r.headers.begin(), r.headers.end(),
                                   [](const auto& h) { return h.first == "Content-Type"; });
    if (!r.body.empty() && !typed) r.headers.emplace_back("Content-Type", "application/json");
    if (auto corr = req.header("partner-correlation-id"); !corr.empty()) {
      r.headers.emplace_back("Partner-Correlation-Id", corr);
    }
    if (route.name != "sim.control") r.headers.emplace_back("Klarna-Correlation-Id", uuid());
    return r;
  };

  if (route.name == "unknown") return finish(not_found("route"));
  if (route.account.empty() && route.name.rfind("payment.", 0) == 0) route.account = opt.account_id;
  if (route.name != "sim.control" && !authorized(req)) {  // /_sim never needs credentials
    return finish(
        klarna_error(401, "ACCESS_ERROR", "UNAUTHORIZED", "Missing or invalid credentials"));
  }
  Body body;  // an evidence upload is multipart, not JSON
  const bool multipart = route.name == "payment.disputes.attachments.upload";
  if (!multipart && !body.parse(parser, req.body)) {
    return finish(
        klarna_error(400, "INPUT_ERROR", "INVALID_JSON", "The request body is not a JSON object"));
  }
  if (route.name == "sim.control") return finish(sim_control(req, segs, body));
  return finish(execute_once(route, req, body, call));
}

// Runs the operation, at most once per Klarna-Idempotency-Key within the window.
ApiResponse SimApi::Impl::execute_once(const Route& route, const ApiRequest& req, const Body& body,
                                       CallRecord& call) {
  bool mutating = req.method == "POST" || req.method == "PATCH";
  bool keyed = mutating && req.headers.count("klarna-idempotency-key") > 0;
  const std::string& key = call.idempotency_key;
  std::string fp;
  if (keyed) {
    if (key.empty() || key.size() > 255) {
      return invalid("Klarna-Idempotency-Key", "must be 1 to 255 characters");
    }
    fp = IdempotencyStore::fingerprint(req.method, req.target, req.body);
    auto found = idem.check(key, fp, now());
    if (found.outcome == IdempotencyStore::Outcome::replay) {
      call.replayed = true;
      return ApiResponse{found.response.status, {}, found.response.body};
    }
    if (found.outcome == IdempotencyStore::Outcome::conflict) {
      return conflict("The idempotency key was already used with a different request");
    }
  }
  ApiResponse res = dispatch(route, req, body);
  ++executions[route.name];
  if (keyed) {
    ++key_executions[key];
    idem.remember(key, fp, StoredResponse{res.status, res.body}, now());
  }
  return res;
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
    auto& r = add_request(route.account, body.str("payment_request_reference").value_or(""),
                          *currency, *amount);
    return json_response(201, render_request(r));
  }
  if (n == "payment.requests.read" || n == "payment.requests.cancel")
    return payment_request_op(route);
  if (n == "payment.authorize") return authorize(route, req, body);
  if (n == "payment.confirm") return confirm(route, body);
  if (n == "interoperability.sdk-tokens") return sdk_token(req);

  if (n.rfind("payment.transactions.", 0) == 0) return transaction_op(route, body);
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
  if (n.rfind("payment.disputes.", 0) == 0) return dispute_op(route, req, body);
  if (n.rfind("notification.signing-keys.", 0) == 0) return signing_keys_api(route);
  if (n.rfind("notification.webhooks.", 0) == 0) return webhooks_api(route, body);
  if (n.rfind("settlements.", 0) == 0) return settlements_api(route, req);
  return not_found("route");
}

// Read, or cancel (200 with the request; repeating a cancel answers the same).
ApiResponse SimApi::Impl::payment_request_op(const Route& route) {
  auto it = requests.find(route.ids[0]);
  if (it == requests.end() || it->second.account != route.account)
    return not_found("payment request");
  auto& r = it->second;
  if (route.name == "payment.requests.cancel" && r.state != RequestState::canceled &&
      !move_request(r, RequestState::canceled, "PARTNER_CANCELED")) {
    // The customer (or the clock) moved it to a final state first: re-read.
    return conflict("The payment request is " + std::string(request_state_name(r.state)) +
                    " and cannot be canceled");
  }
  return json_response(200, render_request(r));
}

ApiResponse SimApi::Impl::transaction_op(const Route& route, const Body& body) {
  const auto& n = route.name;
  auto it = transactions.find(route.ids[0]);
  if (it == transactions.end() || it->second.account != route.account)
    return not_found("payment transaction");
  auto& t = it->second;
  auto wrong_state = [&](std::string_view code, std::string_view what) {
    return klarna_error(403, "RESOURCE_ERROR", code,
                        "The transaction is " + std::string(transaction_state_name(t.state)) +
                            "; " + std::string(what) + " only while AUTHORIZED");
  };
  if (n == "payment.transactions.read") return json_response(200, render_transaction(t));
  if (n == "payment.transactions.update") {
    if (t.state != TransactionState::authorized) return wrong_state("UPDATE_NOT_ALLOWED", "update");
    if (auto ref = body.str("payment_transaction_reference")) t.reference = *ref;
    t.updated_at = now();
    return json_response(200, render_transaction(t));
  }
  if (n == "payment.transactions.capture") return capture(route, body);
  if (n == "payment.transactions.refund") return refund(route, body, false);
  if (n == "payment.transactions.void") {
    if (t.state != TransactionState::authorized) return wrong_state("VOID_NOT_ALLOWED", "void");
    ++t.operations;
    move_transaction(t, t.captured > 0 ? TransactionState::completed : TransactionState::closed);
    return shaped(200, render_transaction(t), "{}");
  }
  return not_found("route");
}

}  // namespace kpay::sim
