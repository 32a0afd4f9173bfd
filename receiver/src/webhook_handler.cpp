#include "kpay/receiver/webhook_handler.hpp"

#include "kpay/core/json_writer.hpp"
#include "kpay/core/log.hpp"

namespace kpay::receiver {

namespace {

std::string_view reason_phrase(int status) {
  switch (status) {
    // The statuses the receiver answers with.
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Unknown";
  }
}

}  // namespace

std::string serialize_response(const Answer& a, unsigned http_version, bool keep_alive,
                               std::optional<std::chrono::seconds> retry_after) {
  std::string out;
  out.reserve(160 + a.body.size());
  out += http_version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  out += std::to_string(a.status);
  out += ' ';
  out += reason_phrase(a.status);
  out += "\r\nContent-Type: application/json\r\n";
  if (a.allow_post_header) out += "Allow: POST\r\n";
  if (retry_after) {
    out += "Retry-After: ";
    out += std::to_string(retry_after->count());
    out += "\r\n";
  }
  out += "Content-Length: ";
  out += std::to_string(a.body.size());
  out += "\r\n";
  if (http_version != 10 && !keep_alive) out += "Connection: close\r\n";
  if (http_version == 10 && keep_alive) out += "Connection: keep-alive\r\n";
  out += "\r\n";
  out += a.body;
  return out;
}

WebhookHandler::WebhookHandler(std::string path, const klarna::Topics& topics,
                               core::Registry& metrics)
    : path_(std::move(path)),
      topics_(topics),
      rejections_(metrics.counter("kpay_receiver_rejections_total",
                                  "Requests refused (4xx, or 503 overloaded), by reason.", {"reason"})),
      routed_(metrics.counter("kpay_receiver_events_routed_total",
                              "Verified events by event family (before Kafka confirms).",
                              {"family"})) {
  // Expose every reason at 0 so alerts can be written before the first failure.
  for (auto r : {"missing_signing_key_id", "missing_signature", "unknown_signing_key",
                 "bad_signature", "empty_body", "body_too_large", "method_not_allowed",
                 "not_found", "malformed_request", "header_too_large", "read_timeout", "overloaded"}) {
    rejections_.with({r});
  }
  for (int f = 0; f <= static_cast<int>(klarna::EventFamily::unrouted); ++f) {
    routed_by_family_[static_cast<size_t>(f)] =
        &routed_.with({klarna::family_name(static_cast<klarna::EventFamily>(f))});
  }
  routed_by_family_.back() = &routed_.with({"dead_letter"});
}

void WebhookHandler::count_rejection(std::string_view reason) const {
  rejections_.with({reason}).inc();
}

Answer WebhookHandler::error_answer(int status, std::string_view reason,
                                    std::string_view message) const {
  core::JsonWriter w;
  w.begin_object().field("error", reason).field("message", message).end_object();
  return Answer{status, w.take(), std::string(reason), status == 405};
}

Decision WebhookHandler::decide(const IncomingRequest& req, const klarna::KeyRing& keys) const {
  Decision d;
  auto reject = [&](int status, std::string_view reason, std::string_view message) {
    count_rejection(reason);
    d.reject = error_answer(status, reason, message);
    return d;
  };

  if (req.path != path_) return reject(404, "not_found", "no webhook endpoint at this path");
  if (req.method != "POST") {
    return reject(405, "method_not_allowed", "webhooks are delivered with POST");
  }
  if (req.body.empty()) return reject(400, "empty_body", "the request body is empty");
  if (!req.has_signing_key_id || req.signing_key_id.empty()) {
    return reject(400, "missing_signing_key_id", "header Klarna-Signing-Key-Id is missing");
  }
  if (!req.has_signature || req.signature.empty()) {
    return reject(400, "missing_signature", "header Klarna-Signature is missing");
  }
  const klarna::SigningKey* key = keys.find(req.signing_key_id);
  if (key == nullptr) {
    return reject(400, "unknown_signing_key",
                  "the signing key id in Klarna-Signing-Key-Id is not registered or is retired");
  }
  if (!key->verify(req.body, req.signature)) {
    // Never say what the signature should have been.
    return reject(400, "bad_signature", "Klarna-Signature does not match the request body");
  }

  // Signed by Klarna from here on: the event must be kept whatever it contains.
  auto& p = d.publish;
  p.received_at = core::rfc3339_now_ms();
  auto parsed = klarna::parse_envelope(req.body);
  core::JsonWriter w;
  if (!parsed) {
    p.topic = &topics_.dead_letter;
    p.dead_letter = true;
    p.dead_letter_reason = parsed.error.reason;
    routed_by_family_.back()->inc();
    w.begin_object()
        .field("status", "dead_lettered")
        .field("reason", parsed.error.reason)
        .field("message", parsed.error.detail)
        .end_object();
    p.on_success = Answer{200, w.take(), "dead_lettered", false};
    return d;
  }
  auto& e = *parsed.envelope;
  p.topic = &topics_.for_family(e.family);
  p.key = std::move(e.entity_id);
  p.event_id = std::move(e.event_id);
  p.event_type = std::move(e.event_type);
  p.event_version = std::move(e.event_version);
  routed_by_family_[static_cast<size_t>(e.family)]->inc();
  w.reserve(64 + p.event_id.size() + p.topic->size())  // the answer, escapes aside
      .begin_object()
      .field("status", "accepted")
      .field("event_id", p.event_id)
      .field("topic", *p.topic)
      .end_object();
  p.on_success = Answer{200, w.take(), "accepted", false};
  return d;
}

}  // namespace kpay::receiver
