// Notification management: signing keys, webhook subscriptions, simulate.
#include "api_internal.hpp"

namespace kpay::sim {

ApiResponse SimApi::Impl::signing_keys_api(const Route& route) {
  const auto& n = route.name;
  if (n == "notification.signing-keys.create") {
    if (keys.size() >= 50)
      return klarna_error(403, "RESOURCE_ERROR", "LIMIT_EXCEEDED", "At most 50 signing keys");
    std::string id = "krn:partner:global:notification:signing-key:" + uuid();
    std::string secret = token();
    StoredKey k;
    k.secret = secret;
    k.created_at = now();
    k.key = std::make_unique<klarna::SigningKey>(secret);
    keys[id] = std::move(k);
    JsonWriter w;
    w.begin_object()
        .field("signing_key_id", id)
        .field("signing_key", secret)  // shown once, as Klarna does
        .field("created_at", rfc3339_ms(now()))
        .end_object();
    return json_response(201, w.take());
  }
  if (n == "notification.signing-keys.list") {
    JsonWriter w;
    w.begin_object().key("signing_keys").begin_array();
    for (const auto& [id, k] : keys) {
      w.begin_object()
          .field("signing_key_id", id)
          .field("created_at", rfc3339_ms(k.created_at))
          .end_object();
    }
    w.end_array().end_object();
    return json_response(200, w.take());
  }
  auto it = keys.find(route.ids[0]);
  if (it == keys.end()) return not_found("signing key");
  if (n == "notification.signing-keys.delete") {
    keys.erase(it);
    return ApiResponse{204, {}, {}};
  }
  JsonWriter w;
  w.begin_object()
      .field("signing_key_id", it->first)
      .field("created_at", rfc3339_ms(it->second.created_at))
      .end_object();
  return json_response(200, w.take());
}

ApiResponse SimApi::Impl::webhooks_api(const Route& route, const Body& body) {
  const auto& n = route.name;
  auto read_fields = [&](Webhook& h, bool creating) -> std::optional<ApiResponse> {
    if (auto url = body.str("url")) h.url = *url;
    if (creating || body.child("url")) {
      if (h.url.rfind("https://", 0) != 0 && h.url.rfind("http://", 0) != 0) {
        return invalid("url", "must be an http(s) URL");
      }
    }
    if (auto types = body.child("event_types")) {
      simdjson::dom::array arr;
      if (types->get_array().get(arr) != simdjson::SUCCESS)
        return invalid("event_types", "must be an array");
      h.event_types.clear();
      for (auto e : arr) {
        std::string_view s;
        if (e.get_string().get(s) != simdjson::SUCCESS)
          return invalid("event_types", "must hold strings");
        h.event_types.emplace_back(s);
      }
    }
    if (creating && h.event_types.empty()) return invalid("event_types", "must not be empty");
    if (auto v = body.str("event_version")) h.event_version = *v;
    if (h.event_version.empty()) h.event_version = "v2";
    if (h.event_version != "v1" && h.event_version != "v2")
      return invalid("event_version", "must be v1 or v2");
    if (auto k = body.str("signing_key_id")) h.signing_key_id = *k;
    if (!keys.count(h.signing_key_id)) return invalid("signing_key_id", "unknown signing key");
    if (auto s = body.str("status")) h.status = *s;
    if (h.status.empty()) h.status = "ENABLED";
    if (h.status != "ENABLED" && h.status != "DISABLED")
      return invalid("status", "must be ENABLED or DISABLED");
    return std::nullopt;
  };
  if (n == "notification.webhooks.create") {
    Webhook h;
    if (auto err = read_fields(h, true)) return *err;
    for (const auto& [id, other] : webhooks) {
      if (other.url == h.url) return conflict("A webhook for this URL already exists");
    }
    h.id = "krn:partner:global:notification:webhook:" + uuid();
    h.created_at = h.updated_at = now();
    auto& stored = webhooks.emplace(h.id, std::move(h)).first->second;
    return json_response(201, render_webhook(stored));
  }
  if (n == "notification.webhooks.list") {
    JsonWriter w;
    w.begin_object().key("webhooks").begin_array();
    for (const auto& [id, h] : webhooks) w.raw(render_webhook(h));
    w.end_array().end_object();
    return json_response(200, w.take());
  }
  auto it = webhooks.find(route.ids[0]);
  if (it == webhooks.end()) return not_found("webhook");
  if (n == "notification.webhooks.delete") {
    webhooks.erase(it);
    return ApiResponse{204, {}, {}};
  }
  if (n == "notification.webhooks.update") {
    Webhook copy = it->second;
    if (auto err = read_fields(copy, false)) return *err;
    copy.updated_at = now();
    it->second = std::move(copy);
    return json_response(200, render_webhook(it->second));
  }
  if (n == "notification.webhooks.simulate") return simulate(it->second, body);
  return json_response(200, render_webhook(it->second));
}

ApiResponse SimApi::Impl::simulate(const Webhook& h, const Body& body) {
  auto type = body.str("event_type");
  if (!type || type->empty()) return invalid("event_type", "is required");
  auto version = body.str("event_version").value_or(h.event_version);
  if (version != "v1" && version != "v2") return invalid("event_version", "must be v1 or v2");
  // A sample payload shaped like the real one for the event's family; the
  // entity does not exist in the sim's state.
  std::string entity;
  JsonWriter w;
  w.begin_object();
  auto last_dot = type->rfind('.');
  std::string state = last_dot == std::string::npos ? "" : type->substr(last_dot + 1);
  for (auto& c : state)
    c = c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (type->rfind("payment.request.", 0) == 0) {
    entity = "krn:payment:eu1:request:" + uuid();
    w.field("payment_request_id", entity)
        .field("state", state)
        .field("amount", 1000)
        .field("currency", "USD");
  } else if (type->rfind("payment.transaction.", 0) == 0 ||
             type->rfind("payment.funding.", 0) == 0) {
    entity = "krn:payment:eu1:transaction:" + uuid();
    w.field("payment_transaction_id", entity)
        .field("state", state)
        .field("amount", 1000)
        .field("currency", "USD");
    // The operation's own fields, as on the sim's real captured / refunded events.
    if (*type == "payment.transaction.captured") {
      w.field("payment_capture_id", "krn:payment:eu1:capture:" + uuid())
          .field("capture_amount", 1000);
    } else if (*type == "payment.transaction.refunded") {
      w.field("payment_refund_id", "krn:payment:eu1:refund:" + uuid()).field("refund_amount", 1000);
    }
  } else if (type->rfind("payment.dispute.", 0) == 0) {
    entity = "krn:payment:eu1:dispute:" + uuid();
    w.field("payment_dispute_id", entity).field("state", state);
  } else if (type->rfind("settlement.", 0) == 0) {
    entity = "krn:settlement:eu1:settlement:" + uuid();
    w.field("settlement_id", entity);
  } else if (type->rfind("partner.account.", 0) == 0) {
    entity = opt.account_id;
    w.field("account_id", entity);
  }
  w.field("simulated", true).end_object();
  auto ids = emit(*type, entity, w.take(), opt.account_id, &h, version);
  if (ids.empty())
    return klarna_error(409, "RESOURCE_ERROR", "RESOURCE_CONFLICT",
                        "The webhook's signing key no longer exists");
  JsonWriter out;
  out.begin_object()
      .field("event_id", ids[0])
      .field("event_type", *type)
      .field("event_version", version)
      .end_object();
  return json_response(200, out.take());
}

}  // namespace kpay::sim
