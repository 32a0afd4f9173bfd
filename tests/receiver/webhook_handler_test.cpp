// The receiver's decision table, without sockets.
#include "kpay/receiver/webhook_handler.hpp"

#include <gtest/gtest.h>

#include "kpay/receiver/settings.hpp"

using namespace kpay;
using namespace kpay::receiver;

namespace {
struct Fixture {
  core::Registry metrics;
  klarna::Topics topics;
  WebhookHandler handler{"/webhooks/klarna", topics, metrics};
  klarna::KeyRing ring;
  Fixture() { ring.add("kid", "secret"); }

  Decision decide(std::string_view body, std::string_view kid = "kid",
                  std::optional<std::string> sig = std::nullopt, std::string_view method = "POST",
                  std::string_view path = "/webhooks/klarna") {
    std::string s = sig ? *sig : klarna::hmac_sha256_hex("secret", body);
    IncomingRequest r;
    r.method = method;
    r.path = path;
    r.body = body;
    r.signing_key_id = kid;
    r.has_signing_key_id = !kid.empty();
    storage = s;
    r.signature = storage;
    r.has_signature = true;
    return handler.decide(r, ring);
  }
  std::string storage;
};

constexpr std::string_view kBody =
    R"({"metadata":{"event_type":"payment.dispute.state-change.initiated","event_id":"e1","event_version":"v2"},"payload":{"payment_dispute_id":"d1"}})";
}  // namespace

TEST(WebhookHandler, RoutesAVerifiedEvent) {
  Fixture f;
  auto d = f.decide(kBody);
  ASSERT_FALSE(d.reject);
  EXPECT_EQ(*d.publish.topic, "klarna.disputes");
  EXPECT_EQ(d.publish.key, "d1");
  EXPECT_EQ(d.publish.event_id, "e1");
  EXPECT_FALSE(d.publish.dead_letter);
  EXPECT_EQ(d.publish.on_success.status, 200);
}

TEST(WebhookHandler, RejectionTable) {
  Fixture f;
  struct Case {
    Decision d;
    int status;
    std::string reason;
  };
  std::vector<Case> cases;
  cases.push_back({f.decide(kBody, "kid", std::nullopt, "POST", "/elsewhere"), 404, "not_found"});
  cases.push_back({f.decide(kBody, "kid", std::nullopt, "PUT"), 405, "method_not_allowed"});
  cases.push_back({f.decide(""), 400, "empty_body"});
  cases.push_back({f.decide(kBody, ""), 400, "missing_signing_key_id"});
  cases.push_back({f.decide(kBody, "kid", std::string("")), 400, "missing_signature"});
  cases.push_back({f.decide(kBody, "other"), 400, "unknown_signing_key"});
  cases.push_back({f.decide(kBody, "kid", std::string(64, '0')), 400, "bad_signature"});
  for (const auto& c : cases) {
    ASSERT_TRUE(c.d.reject) << c.reason;
    EXPECT_EQ(c.d.reject->status, c.status) << c.reason;
    EXPECT_EQ(c.d.reject->reason, c.reason);
    EXPECT_NE(c.d.reject->body.find("\"error\":\"" + c.reason + "\""), std::string::npos);
  }
  auto text = f.metrics.render();
  EXPECT_NE(text.find("kpay_receiver_rejections_total{reason=\"bad_signature\"} 1"),
            std::string::npos);
}

TEST(SerializeResponse, KeepAliveSuccessOnHttp11) {
  Answer a{200, R"({"status":"accepted"})", "accepted", false};
  EXPECT_EQ(serialize_response(a, 11, true),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 21\r\n\r\n"
            R"({"status":"accepted"})");
}

TEST(SerializeResponse, ClosingRefusalsRetryAfterAndAllow) {
  Answer refused{405, "{}", "method_not_allowed", true};
  EXPECT_EQ(serialize_response(refused, 11, false),
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\n"
            "Allow: POST\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
  Answer busy{503, "{}", "kafka_unavailable", false};
  EXPECT_EQ(serialize_response(busy, 11, true, std::chrono::seconds(5)),
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            "Retry-After: 5\r\nContent-Length: 2\r\n\r\n{}");
  Answer big{413, "", "body_too_large", false};
  EXPECT_NE(serialize_response(big, 11, false).find("413 Payload Too Large\r\n"),
            std::string::npos);
}

TEST(SerializeResponse, Http10ClosesUnlessKeptAlive) {
  Answer a{200, "{}", "accepted", false};
  EXPECT_EQ(serialize_response(a, 10, false),
            "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}");
  EXPECT_EQ(serialize_response(a, 10, true),
            "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
            "Connection: keep-alive\r\n\r\n{}");
}

TEST(WebhookHandler, SignedGarbageIsDeadLettered) {
  Fixture f;
  auto d = f.decide("{\"metadata\":");
  ASSERT_FALSE(d.reject);
  EXPECT_TRUE(d.publish.dead_letter);
  EXPECT_EQ(d.publish.dead_letter_reason, "not_json");
  EXPECT_EQ(*d.publish.topic, "klarna.dead-letter");
}

TEST(WebhookHandler, UnsignedGarbageIsRejectedNotDeadLettered) {
  Fixture f;
  auto d = f.decide("{\"metadata\":", "kid", std::string(64, 'f'));
  ASSERT_TRUE(d.reject);
  EXPECT_EQ(d.reject->reason, "bad_signature");
}

TEST(Settings, TlsNeedsCertificateAndBadValuesNameTheirKey) {
  core::Config c;
  try {
    Settings::from_config(c);
    FAIL();
  } catch (const core::ConfigError& e) {
    EXPECT_EQ(e.key(), "receiver.tls_certificate");
  }
  core::Config plain;
  plain.apply_override("receiver.tls=false");
  plain.apply_override("receiver.port=99999");
  try {
    Settings::from_config(plain);
    FAIL();
  } catch (const core::ConfigError& e) {
    EXPECT_EQ(e.key(), "receiver.port");
  }
  core::Config typo;
  typo.apply_override("receiver.tls=false");
  typo.apply_override("receiver.max_body_byte=5");
  try {
    Settings::from_config(typo);
    FAIL();
  } catch (const core::ConfigError& e) {
    EXPECT_EQ(e.key(), "receiver.max_body_byte");
  }
}

TEST(Settings, DefaultsAndPrefix) {
  core::Config c;
  c.apply_override("receiver.tls=false");
  c.apply_override("kafka.topic_prefix=eu.");
  auto s = Settings::from_config(c);
  EXPECT_EQ(s.listener.port, 8443);
  EXPECT_EQ(s.listener.path, "/webhooks/klarna");
  EXPECT_EQ(s.listener.max_body_bytes, 1024u * 1024u);
  EXPECT_EQ(s.topics.payment_requests, "eu.klarna.payment-requests");
  EXPECT_EQ(s.topics.dead_letter, "eu.klarna.dead-letter");
}
