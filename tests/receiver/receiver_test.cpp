// The receiver over real sockets (TLS and plain) with the embedded Kafka.
#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "harness.hpp"

using namespace kpay::test;
using namespace std::chrono_literals;

namespace {

// The test vector from docs/klarna/WEBHOOKS.md §1.
constexpr std::string_view kVectorBody =
    R"({"metadata":{"event_type":"payment.request.state-change.completed","event_id":"00000000-0000-4000-8000-000000000000","event_version":"v2"},"payload":{"state":"COMPLETED"}})";
constexpr std::string_view kVectorSig =
    "09259eb5ff0e54a1f2a8f57ccc10f4e5d35800b056696a11071ce4e3d549d83f";

std::string error_of(const std::optional<HttpResponse>& r) {
  if (!r) return "<no response>";
  auto p = r->body.find("\"error\":\"");
  if (p == std::string::npos) return "<no error field>";
  p += 9;
  return r->body.substr(p, r->body.find('"', p) - p);
}

}  // namespace

TEST(ReceiverTls, DocumentedTestVectorIsAcceptedAndStoredByteExact) {
  ReceiverHarness h(shared_kafka(), /*tls=*/true);
  auto r = h.post(kVectorBody, {{"Klarna-Signing-Key-Id", std::string(kKeyId)},
                                {"Klarna-Signature", std::string(kVectorSig)},
                                {"Content-Type", "application/json"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_NE(r->body.find(R"("status":"accepted")"), std::string::npos);

  KafkaReader reader(h.kafka.bootstrap_servers(), {h.settings.topics.payment_requests},
                     kPartitions);
  auto& msgs = reader.read_at_least(1, 15s);
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].value, kVectorBody);
  EXPECT_EQ(msgs[0].key, "00000000-0000-4000-8000-000000000000");  // no request id: event_id
  EXPECT_EQ(msgs[0].headers.at("klarna-event-id"), "00000000-0000-4000-8000-000000000000");
  EXPECT_EQ(msgs[0].headers.at("klarna-event-type"), "payment.request.state-change.completed");
  EXPECT_EQ(msgs[0].headers.at("klarna-event-version"), "v2");
  EXPECT_EQ(msgs[0].headers.at("klarna-signing-key-id"), kKeyId);
  EXPECT_EQ(msgs[0].headers.at("klarna-signature"), kVectorSig);
  EXPECT_EQ(msgs[0].headers.at("content-type"), "application/json");
  EXPECT_EQ(msgs[0].headers.at("received-at").size(), 24u);  // 2026-11-21T23:10:00.123Z
}

TEST(ReceiverTls, OnlyTls12AndNewerAreOffered) {
  ReceiverHarness h(shared_kafka(), /*tls=*/true);
  {
    HttpConnection modern(h.port(), true);
    auto v = modern.tls_version();
    EXPECT_TRUE(v == "TLSv1.3" || v == "TLSv1.2") << v;
  }
  // A TLS 1.1 client must fail the handshake.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(h.port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_security_level(ctx, 0);
  SSL_CTX_set_min_proto_version(ctx, TLS1_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_1_VERSION);
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  EXPECT_NE(SSL_connect(ssl), 1);
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  ::close(fd);
}

TEST(ReceiverTls, OneByteChangesFail) {
  ReceiverHarness h(shared_kafka(), true);
  std::string body(kVectorBody);
  body[body.size() - 4] = 'X';
  auto r = h.post(body, {{"Klarna-Signing-Key-Id", std::string(kKeyId)},
                         {"Klarna-Signature", std::string(kVectorSig)}});
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(error_of(r), "bad_signature");
  EXPECT_EQ(r->body.find(kVectorSig), std::string::npos);  // never echo signatures

  std::string sig(kVectorSig);
  sig[0] = sig[0] == '0' ? '1' : '0';
  r = h.post(kVectorBody,
             {{"Klarna-Signing-Key-Id", std::string(kKeyId)}, {"Klarna-Signature", sig}});
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(error_of(r), "bad_signature");
  auto expected_good = kpay::klarna::hmac_sha256_hex(kSecret, kVectorBody);
  EXPECT_EQ(r->body.find(expected_good), std::string::npos);
}

TEST(ReceiverPlain, HeaderNamesAreCaseInsensitive) {
  ReceiverHarness h(shared_kafka(), false);
  int i = 0;
  for (auto [kid, sig] : std::vector<std::pair<std::string, std::string>>{
           {"klarna-signing-key-id", "klarna-signature"},
           {"KLARNA-SIGNING-KEY-ID", "KLARNA-SIGNATURE"},
           {"Klarna-Signing-Key-ID", "Klarna-Signature"}}) {
    auto body =
        webhook_body("payment.request.state-change.submitted", "case-" + std::to_string(i++));
    auto r = h.post(
        body, {{kid, std::string(kKeyId)}, {sig, kpay::klarna::hmac_sha256_hex(kSecret, body)}});
    EXPECT_EQ(r->status, 200) << kid << " " << r->body;
  }
}

TEST(ReceiverPlain, TwoActiveKeysWorkAndARetiredKeyStops) {
  ReceiverHarness h(shared_kafka(), false);
  const std::string second_id = "krn:partner:global:notification:signing-key:test-2";
  const std::string second_secret = "second secret\twith tab";
  {
    auto db = kpay::storage::Database::open(h.keys_db);
    kpay::storage::KeyStore(db).add(second_id, second_secret);
  }
  auto body = webhook_body("payment.request.state-change.submitted", "two-keys");
  // Picked up without a restart (data_version watch).
  ASSERT_TRUE(wait_until([&] {
    return h.post(body, h.signed_headers(body, second_id, second_secret))->status == 200;
  }));
  EXPECT_EQ(h.post_signed(body)->status, 200);  // the first key still works

  {
    auto db = kpay::storage::Database::open(h.keys_db);
    ASSERT_TRUE(kpay::storage::KeyStore(db).retire(std::string(kKeyId)));
  }
  ASSERT_TRUE(wait_until([&] { return error_of(h.post_signed(body)) == "unknown_signing_key"; }));
  EXPECT_EQ(h.post(body, h.signed_headers(body, second_id, second_secret))->status, 200);
  EXPECT_NE(h.metrics().find("kpay_receiver_signing_keys 1"), std::string::npos);
}

TEST(ReceiverPlain, ReloadKeysOnDemand) {
  ReceiverHarness h(shared_kafka(), false, {"keys.reload_interval_ms=3600000"});
  auto body = webhook_body("payment.request.state-change.submitted", "reload");
  {
    auto db = kpay::storage::Database::open(h.keys_db);
    kpay::storage::KeyStore(db).add("k-new", "new-secret");
  }
  h.receiver->reload_keys();  // what SIGHUP does
  EXPECT_EQ(h.post(body, h.signed_headers(body, "k-new", "new-secret"))->status, 200);
}

TEST(ReceiverPlain, EveryCatalogueEventLandsOnItsTopicWithKeyHeadersAndExactBytes) {
  ReceiverHarness h(shared_kafka(), false);
  struct Expect {
    std::string topic, key, body, event_id;
  };
  std::vector<Expect> expected;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::string(KPAY_FIXTURES_DIR) + "/webhooks")) {
    auto name = entry.path().filename().string();
    auto body = read_file(entry.path().string());
    auto env = kpay::klarna::parse_envelope(body);
    ASSERT_TRUE(env) << name;
    const auto& t = h.settings.topics;
    std::string topic;
    auto& et = env.envelope->event_type;
    std::string payload_key;
    if (et.rfind("payment.request.", 0) == 0) {
      topic = t.payment_requests;
      payload_key = "payment_request_id";
    } else if (et.rfind("payment.transaction.", 0) == 0 || et.rfind("payment.funding.", 0) == 0) {
      topic = t.payment_transactions;
      payload_key = "payment_transaction_id";
    } else if (et.rfind("payment.dispute.", 0) == 0) {
      topic = t.disputes;
      payload_key = "payment_dispute_id";
    } else if (et.rfind("settlement.", 0) == 0) {
      topic = t.settlements;
      payload_key = "settlement_id";
    } else if (et.rfind("partner.account.", 0) == 0) {
      topic = t.accounts;
      payload_key = "account_id";
    }
    ASSERT_FALSE(topic.empty()) << name;
    // The expected key is read from the body text itself, not via our parser.
    auto kp = body.find("\"" + payload_key + "\":\"");
    ASSERT_NE(kp, std::string::npos) << name;
    kp += payload_key.size() + 4;
    expected.push_back(
        {topic, body.substr(kp, body.find('"', kp) - kp), body, env.envelope->event_id});
    auto r = h.post_signed(body);
    ASSERT_EQ(r->status, 200) << name << ": " << r->body;
  }
  ASSERT_GE(expected.size(), 70u);

  // Bodies a re-serializing parser would change: whitespace, escapes, key
  // order, unknown fields, top-level duplicates of metadata fields.
  std::vector<std::string> odd = {
      "{\n  \"payload\" : { \"payment_request_id\" : \"krn:payment:eu1:request:odd-1\" } ,\n"
      "  \"metadata\" : {\"event_version\":\"v2\",\"event_id\":\"odd-1\",\n\t\"event_type\":"
      "\"payment.request.state-change.in-progress\"}\n}\n",
      R"({"metadata":{"event_type":"payment.request.updated","event_id":"odd-2","event_version":"v2","note":"caf\u00e9 \ud83d\ude00 \"q\" \/"},"payload":{"payment_request_id":"krn:payment:eu1:request:odd-2","name":"Zoë 😀"}})",
      R"({"event_type":"ignored.here","metadata":{"event_type":"settlement.payout.failed","event_id":"odd-3","event_version":"v1"},"payload":{"settlement_id":"s-odd-3","amount":1.5e3}})",
  };
  for (const auto& body : odd) {
    auto r = h.post_signed(body);
    ASSERT_EQ(r->status, 200) << body << r->body;
  }
  expected.push_back(
      {h.settings.topics.payment_requests, "krn:payment:eu1:request:odd-1", odd[0], "odd-1"});
  expected.push_back(
      {h.settings.topics.payment_requests, "krn:payment:eu1:request:odd-2", odd[1], "odd-2"});
  expected.push_back({h.settings.topics.settlements, "s-odd-3", odd[2], "odd-3"});

  KafkaReader reader(h.kafka.bootstrap_servers(), h.topic_names(), kPartitions);
  auto& msgs = reader.read_at_least(expected.size(), 30s);
  ASSERT_EQ(msgs.size(), expected.size());
  std::map<std::string, const ConsumedMessage*> by_id;
  for (const auto& m : msgs) by_id[m.headers.at("klarna-event-id")] = &m;
  for (const auto& e : expected) {
    auto it = by_id.find(e.event_id);
    ASSERT_NE(it, by_id.end()) << e.event_id;
    EXPECT_EQ(it->second->topic, e.topic) << e.event_id;
    EXPECT_EQ(it->second->key, e.key) << e.event_id;
    EXPECT_EQ(it->second->value, e.body) << e.event_id;
    EXPECT_EQ(it->second->headers.at("klarna-signature"),
              kpay::klarna::hmac_sha256_hex(kSecret, e.body));
  }
}

TEST(ReceiverPlain, UnknownEventTypesAreKeptOnTheUnroutedTopic) {
  ReceiverHarness h(shared_kafka(), false);
  auto body = webhook_body("brand.new.event", "unrouted-1");
  auto r = h.post_signed(body);
  EXPECT_EQ(r->status, 200);
  KafkaReader reader(h.kafka.bootstrap_servers(), {h.settings.topics.unrouted}, kPartitions);
  auto& msgs = reader.read_at_least(1, 15s);
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(msgs[0].value, body);
  EXPECT_EQ(msgs[0].key, "unrouted-1");
}

TEST(ReceiverPlain, SignedButUnusableBodiesGoToTheDeadLetterTopic) {
  ReceiverHarness h(shared_kafka(), false);
  std::vector<std::pair<std::string, std::string>> cases = {
      {"not json at all", "not_json"},
      {R"({"metadata":{"event_type":"x","event_version":"v1"}})", "missing_event_id"},
      {"[1,2,3]", "not_object"},
  };
  for (const auto& [body, reason] : cases) {
    auto r = h.post_signed(body);
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_NE(r->body.find("dead_lettered"), std::string::npos);
    EXPECT_NE(r->body.find(reason), std::string::npos);
  }
  KafkaReader reader(h.kafka.bootstrap_servers(), {h.settings.topics.dead_letter}, kPartitions);
  auto& msgs = reader.read_at_least(cases.size(), 15s);
  ASSERT_EQ(msgs.size(), cases.size());
  std::set<std::string> reasons, bodies;
  for (const auto& m : msgs) {
    reasons.insert(m.headers.at("dead-letter-reason"));
    bodies.insert(m.value);
  }
  EXPECT_EQ(reasons, (std::set<std::string>{"not_json", "missing_event_id", "not_object"}));
  EXPECT_TRUE(bodies.contains("not json at all"));
  EXPECT_NE(h.metrics().find("kpay_receiver_requests_total{outcome=\"dead_lettered\"} 3"),
            std::string::npos);
}

TEST(ReceiverPlain, BadRequestsGetTheirStatusAndReasonAndTheProcessStaysUp) {
  ReceiverHarness h(shared_kafka(), false, {"receiver.read_timeout_ms=300"});
  auto body = webhook_body("payment.request.state-change.submitted", "bad-inputs");
  auto sig = kpay::klarna::hmac_sha256_hex(kSecret, body);

  auto r = h.post(body, {{"Klarna-Signature", sig}});
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(error_of(r), "missing_signing_key_id");
  EXPECT_EQ(r->header("content-type"), "application/json");

  r = h.post(body, {{"Klarna-Signing-Key-Id", std::string(kKeyId)}});
  EXPECT_EQ(error_of(r), "missing_signature");

  r = h.post(body, {{"Klarna-Signing-Key-Id", "krn:nope"}, {"Klarna-Signature", sig}});
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(error_of(r), "unknown_signing_key");

  r = h.post(body, {{"Klarna-Signing-Key-Id", std::string(kKeyId)},
                    {"Klarna-Signature", std::string(64, 'a')}});
  EXPECT_EQ(error_of(r), "bad_signature");

  r = h.post("", h.signed_headers(""));
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(error_of(r), "empty_body");

  std::string big(1024 * 1024 + 1, 'x');
  r = h.post(big, h.signed_headers(big));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(error_of(r), "body_too_large");
  std::string exact(1024 * 1024, ' ');
  exact.replace(0, body.size(), body);  // 1 MiB exactly: allowed
  EXPECT_EQ(h.post(exact, h.signed_headers(exact))->status, 200);

  {
    HttpConnection c(h.port());
    r = c.request("GET", h.path(), "");
    EXPECT_EQ(r->status, 405);
    EXPECT_EQ(r->header("allow"), "POST");
    EXPECT_EQ(error_of(r), "method_not_allowed");
    EXPECT_TRUE(c.wait_closed(5s));  // refused clients do not keep the connection
  }
  {
    HttpConnection c(h.port());
    r = c.request("POST", "/other", body, h.signed_headers(body));
    EXPECT_EQ(r->status, 404);
    EXPECT_EQ(error_of(r), "not_found");
  }
  {
    HttpConnection c(h.port());
    c.send_raw("THIS IS NOT HTTP\r\n\r\n");
    r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_EQ(error_of(r), "malformed_request");
    EXPECT_TRUE(c.wait_closed(5s));
  }
  {
    // Request smuggling shape: both Content-Length and chunked.
    HttpConnection c(h.port());
    c.send_raw("POST " + h.path() +
               " HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
               "5\r\nhello\r\n0\r\n\r\n");
    r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_EQ(error_of(r), "malformed_request");
  }
  {
    // Slow client: headers never finish; the connection is cut.
    HttpConnection c(h.port());
    c.send_raw("POST " + h.path() + " HTTP/1.1\r\nHost: x\r\n");
    EXPECT_TRUE(c.wait_closed(5s));
  }
  {
    // Slow body: announced 100 bytes, sends 10.
    HttpConnection c(h.port());
    c.send_raw("POST " + h.path() +
               " HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789");
    EXPECT_TRUE(c.wait_closed(5s));
  }
  // Still serving after all of it.
  EXPECT_EQ(h.post_signed(body)->status, 200);
  auto m = h.metrics();
  for (auto reason :
       {"missing_signing_key_id", "missing_signature", "unknown_signing_key", "bad_signature",
        "empty_body", "body_too_large", "method_not_allowed", "not_found", "malformed_request"}) {
    EXPECT_NE(m.find(std::string("kpay_receiver_rejections_total{reason=\"") + reason + "\"} "),
              std::string::npos)
        << reason;
    EXPECT_EQ(m.find(std::string("kpay_receiver_rejections_total{reason=\"") + reason + "\"} 0"),
              std::string::npos)
        << reason << " was not counted";
  }
  EXPECT_TRUE(wait_until([&] {
    return h.metrics().find("kpay_receiver_rejections_total{reason=\"read_timeout\"} 2") !=
           std::string::npos;
  }));
  // Secrets never reach the metrics.
  EXPECT_EQ(m.find(std::string(kSecret)), std::string::npos);
}

TEST(ReceiverPlain, Http10ChunkedAndPipelinedRequests) {
  ReceiverHarness h(shared_kafka(), false);
  auto b1 = webhook_body("payment.request.state-change.submitted", "pipe-1");
  auto b2 = webhook_body("payment.request.state-change.submitted", "pipe-2");
  auto hdrs = [&](const std::string& b) {
    return "Klarna-Signing-Key-Id: " + std::string(kKeyId) +
           "\r\nKlarna-Signature: " + kpay::klarna::hmac_sha256_hex(kSecret, b) +
           "\r\nContent-Type: application/json\r\n";
  };
  {
    HttpConnection c(h.port());
    c.send_raw("POST " + h.path() + " HTTP/1.0\r\n" + hdrs(b1) +
               "Content-Length: " + std::to_string(b1.size()) + "\r\n\r\n" + b1);
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->version, "HTTP/1.0");
    EXPECT_TRUE(c.wait_closed(5s));  // HTTP/1.0 without keep-alive closes
  }
  {
    // Two requests in one write: answered in order on the same connection.
    HttpConnection c(h.port());
    std::string two;
    for (const auto& b : {b1, b2}) {
      two += "POST " + h.path() + " HTTP/1.1\r\nHost: x\r\n" + hdrs(b) +
             "Content-Length: " + std::to_string(b.size()) + "\r\n\r\n" + b;
    }
    c.send_raw(two);
    auto r1 = c.read_response();
    auto r2 = c.read_response();
    ASSERT_TRUE(r1 && r2);
    EXPECT_EQ(r1->status, 200);
    EXPECT_EQ(r2->status, 200);
    EXPECT_NE(r1->body.find("pipe-1"), std::string::npos);
    EXPECT_NE(r2->body.find("pipe-2"), std::string::npos);
  }
  {
    HttpConnection c(h.port());
    auto b3 = webhook_body("payment.request.state-change.submitted", "chunked-1");
    std::string chunked = "POST " + h.path() + " HTTP/1.1\r\nHost: x\r\n" + hdrs(b3) +
                          "Transfer-Encoding: chunked\r\n\r\n";
    auto half = b3.size() / 2;
    char sz[32];
    std::snprintf(sz, sizeof sz, "%zx\r\n", half);
    chunked += sz + b3.substr(0, half) + "\r\n";
    std::snprintf(sz, sizeof sz, "%zx\r\n", b3.size() - half);
    chunked += sz + b3.substr(half) + "\r\n0\r\n\r\n";
    c.send_raw(chunked);
    auto r = c.read_response();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200) << r->body;
  }
  KafkaReader reader(h.kafka.bootstrap_servers(), {h.settings.topics.payment_requests},
                     kPartitions);
  auto& msgs = reader.read_at_least(4, 15s);
  EXPECT_EQ(msgs.size(), 4u);
}

TEST(ReceiverPlain, ExpectContinueIsHonoured) {
  ReceiverHarness h(shared_kafka(), false);
  auto b = webhook_body("payment.request.state-change.submitted", "expect-1");
  HttpConnection c(h.port());
  c.send_raw("POST " + h.path() + " HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n" +
             "Klarna-Signing-Key-Id: " + std::string(kKeyId) +
             "\r\nKlarna-Signature: " + kpay::klarna::hmac_sha256_hex(kSecret, b) +
             "\r\nContent-Length: " + std::to_string(b.size()) + "\r\n\r\n");
  auto cont = c.read_response();
  ASSERT_TRUE(cont);
  EXPECT_EQ(cont->status, 100);
  c.send_raw(b);
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

// Kafka down: 503 + Retry-After within the deadline, never a 2xx for an event
// that is not in Kafka; after recovery Klarna's retry lands.
TEST(ReceiverKafkaDown, Answers503UntilKafkaIsBackThenTheRetryLands) {
  kpay::core::EmbeddedKafka kafka(1);
  ReceiverHarness h(kafka, false, {"kafka.publish_timeout_ms=1500"});
  auto body = webhook_body("payment.request.state-change.completed", "down-1",
                           R"({"payment_request_id":"krn:payment:eu1:request:down-1"})");
  ASSERT_EQ(
      h.post_signed(webhook_body("payment.request.state-change.submitted", "warm-up"))->status,
      200);

  kafka.set_all_brokers_down();
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto started = std::chrono::steady_clock::now();
    auto r = h.post_signed(body);
    auto took = std::chrono::steady_clock::now() - started;
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503) << r->body;
    EXPECT_EQ(error_of(r), "kafka_unavailable");
    EXPECT_EQ(r->header("retry-after"), "10");
    EXPECT_LT(took, 1500ms + 500ms);  // the deadline, plus scheduling slack
  }
  std::set<std::string> reasons;  // every /readyz body seen while Kafka is down
  EXPECT_TRUE(wait_until([&] {
    auto r = kpay::test::http_request(h.receiver->admin_port(), "GET", "/readyz");
    if (r && r->status == 503) reasons.insert(r->body);
    return r && r->status == 503;
  }));
  for (const auto& body : reasons) {
    EXPECT_NE(body.find("kafka unreachable: "), std::string::npos) << body;
    EXPECT_EQ(body.find("Success"), std::string::npos) << body;  // no error text of NO_ERROR
  }

  kafka.set_all_brokers_up();
  ASSERT_TRUE(wait_until([&] { return h.post_signed(body)->status == 200; }, 30s));

  KafkaReader reader(kafka.bootstrap_servers(), {h.settings.topics.payment_requests}, kPartitions);
  reader.read_at_least(2, 15s);
  auto& msgs = reader.drain(500ms);
  std::size_t copies = 0;
  for (const auto& m : msgs) copies += m.value == body ? 1 : 0;
  EXPECT_GE(copies, 1u);  // duplicates are acceptable, loss is not
  EXPECT_NE(h.metrics().find("kpay_receiver_requests_total{outcome=\"unavailable\"}"),
            std::string::npos);
}

TEST(ReceiverKafkaDown, StartsWithoutKafkaAndSaysNotReady) {
  // A loopback port nobody listens on.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  auto dead = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));

  ReceiverHarness h(shared_kafka(), false,
                    {"kafka.bootstrap_servers=" + dead, "kafka.publish_timeout_ms=1000"});
  // From the first answer on, /readyz says what is wrong: before the first
  // metadata probe ended it once said "kafka unreachable: Success".
  std::set<std::string> reasons;
  EXPECT_TRUE(wait_until([&] {
    auto r = http_request(h.receiver->admin_port(), "GET", "/readyz");
    if (r) reasons.insert(r->body);
    return r && r->status == 503 && r->body.find("kafka unreachable: ") != std::string::npos;
  }));
  for (const auto& body : reasons) {
    EXPECT_EQ(body.find("Success"), std::string::npos) << body;
    EXPECT_TRUE(body.find("kafka not checked yet") != std::string::npos ||
                body.find("kafka unreachable: ") != std::string::npos)
        << body;
  }
  EXPECT_EQ(http_request(h.receiver->admin_port(), "GET", "/healthz")->status, 200);
  auto r = h.post_signed(webhook_body("payment.request.state-change.submitted", "no-kafka"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
}

// Started while Kafka is down (a restart in the middle of an outage), the
// receiver answers 503 and, once Kafka is back, stores webhooks again. Its
// producer's first errors reach librdkafka's main queue at once; queued
// before the delivery-report descriptor was enabled they used to leave that
// queue non-empty with no wake-up written (librdkafka writes one only when
// the queue turns non-empty), so no delivery report was ever served and
// every webhook got 503 until the next restart (seen in the chaos test,
// docs/RELIABILITY.md "On PostgreSQL"). Ten receivers, as the race depends on
// the scheduling (the old code failed every run with ten, 2 of 3 with five);
// about 10 s, mostly librdkafka's reconnect backoff after the refusals.
TEST(ReceiverKafkaDown, StartedWhileKafkaIsDownStoresWebhooksOnceItIsBack) {
  kpay::core::EmbeddedKafka kafka(1);
  kafka.set_all_brokers_down();
  std::vector<std::unique_ptr<ReceiverHarness>> receivers;
  for (int i = 0; i < 10; ++i) {
    receivers.push_back(std::make_unique<ReceiverHarness>(
        kafka, false, std::vector<std::string>{"kafka.publish_timeout_ms=1000"}));
  }
  for (auto& h : receivers) {  // each has met the refusal
    ASSERT_TRUE(wait_until([&] {
      auto r = http_request(h->receiver->admin_port(), "GET", "/readyz");
      return r && r->status == 503 && r->body.find("kafka unreachable") != std::string::npos;
    }));
  }
  kafka.set_all_brokers_up();
  for (std::size_t i = 0; i < receivers.size(); ++i) {
    auto body =
        webhook_body("payment.request.state-change.submitted", "after-outage-" + std::to_string(i));
    EXPECT_TRUE(wait_until([&] { return receivers[i]->post_signed(body)->status == 200; }, 20s))
        << "receiver " << i << " never stored a webhook after Kafka came back";
  }
}

TEST(ReceiverPlain, ConnectionsAboveTheLimitAreClosedAndCounted) {
  ReceiverHarness h(shared_kafka(), false, {"receiver.max_connections=2"});
  HttpConnection a(h.port());
  HttpConnection b(h.port());
  auto body = webhook_body("payment.request.state-change.submitted", "limit");
  // Both are served (and so both are counted before the third arrives).
  EXPECT_EQ(a.request("POST", h.path(), body, h.signed_headers(body))->status, 200);
  EXPECT_EQ(b.request("POST", h.path(), body, h.signed_headers(body))->status, 200);
  HttpConnection c(h.port());
  EXPECT_TRUE(c.wait_closed(5s));
  EXPECT_NE(h.metrics().find("kpay_receiver_connections_refused_total 1"), std::string::npos);
  EXPECT_EQ(a.request("POST", h.path(), body, h.signed_headers(body))->status, 200);
}

TEST(ReceiverPlain, AmbiguousFramingIsRefused) {
  ReceiverHarness h(shared_kafka(), false);
  auto body = webhook_body("payment.request.state-change.submitted", "framing");
  for (const std::string& head :
       {std::string("Transfer-Encoding: gzip\r\nContent-Length: ") + std::to_string(body.size()),
        std::string("Transfer-Encoding: chunked\r\nContent-Length: ") + std::to_string(body.size()),
        std::string("Transfer-Encoding: chunked, identity")}) {
    HttpConnection c(h.port());
    c.send_raw("POST " + h.path() + " HTTP/1.1\r\nHost: x\r\n" + head + "\r\n\r\n" + body);
    auto r = c.read_response();
    ASSERT_TRUE(r) << head;
    EXPECT_EQ(r->status, 400) << head;
    EXPECT_EQ(error_of(r), "malformed_request") << head;
    EXPECT_TRUE(c.wait_closed(5s));
  }
  HttpConnection c(h.port());
  c.send_raw("POST " + h.path() + " HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
  auto r = c.read_response();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
}

TEST(ReceiverPlain, BodyBytesInFlightAreCapped) {
  // Room for one 1 MiB body at a time.
  ReceiverHarness h(shared_kafka(), false, {"receiver.max_body_bytes_in_flight=1048576"});
  HttpConnection slow(h.port());
  slow.send_raw("POST " + h.path() + " HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n");
  // The reservation is taken once the header is read; a second large body
  // is then refused with 503 and Retry-After.
  ASSERT_TRUE(wait_until([&] {
    HttpConnection c(h.port());
    c.send_raw("POST " + h.path() + " HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n");
    auto r = c.read_response();
    return r && r->status == 503 && error_of(r) == "overloaded" && r->header("retry-after") == "10";
  }));
}

TEST(ReceiverPlain, NoActiveKeysMeansNotReady) {
  ReceiverHarness h(shared_kafka(), false);
  {
    auto db = kpay::storage::Database::open(h.keys_db);
    ASSERT_TRUE(kpay::storage::KeyStore(db).retire(std::string(kKeyId)));
  }
  EXPECT_TRUE(wait_until([&] {
    auto r = http_request(h.receiver->admin_port(), "GET", "/readyz");
    return r && r->status == 503 && r->body.find("no active signing keys") != std::string::npos;
  }));
}

TEST(ReceiverPlain, AMissingTopicMeansNotReady) {
  ReceiverHarness h(shared_kafka(), false, {"topics.disputes=never-created-disputes"});
  EXPECT_TRUE(wait_until([&] {
    auto r = http_request(h.receiver->admin_port(), "GET", "/readyz");
    return r && r->status == 503 && r->body.find("never-created-disputes") != std::string::npos;
  }));
}

// Shutdown cancels the connections as a task group: `total` closes every
// connection waiting for its next request (after a request, or before the
// first), plain and TLS, so the receiver drains well inside a grace period
// far shorter than the idle timeout, and reports it drained.
TEST(ReceiverShutdown, IdleConnectionsCloseAndTheReceiverDrains) {
  for (bool tls : {false, true}) {
    ReceiverHarness h(shared_kafka(), tls,
                      {"receiver.idle_timeout_ms=600000", "receiver.shutdown_grace_ms=30000"});
    HttpConnection used(h.port(), tls);
    auto body = webhook_body("payment.request.state-change.submitted",
                             std::string("idle-") + (tls ? "tls" : "plain"));
    auto r = used.request("POST", h.path(), body, h.signed_headers(body));
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    HttpConnection fresh(h.port(), tls);  // connected, nothing sent
    EXPECT_TRUE(h.receiver->shutdown()) << "tls=" << tls;
    EXPECT_TRUE(used.wait_closed(5s)) << "tls=" << tls;
    EXPECT_TRUE(fresh.wait_closed(5s)) << "tls=" << tls;
  }
}
