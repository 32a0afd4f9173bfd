// Webhook signing and delivery: signatures checked with the receiver's
// verifier (kpay::klarna::SigningKey::verify) and with the openssl CLI; the
// dispatcher's retry schedule on a sped-up clock, duplicates and reordering,
// over real loopback HTTP.
#include <gtest/gtest.h>

#include "http_client.hpp"
#include "kpay/klarna/signature.hpp"
#include "kpay/sim/api.hpp"
#include "kpay/sim/webhooks.hpp"
#include "test_helpers.hpp"

using namespace kpay::sim;
using kpay::sim::test::CapturingSink;
using kpay::sim::test::jstr;
using kpay::sim::test::openssl_hmac;
using kpay::sim::test::WebhookEndpoint;
using kpay::test::wait_until;

namespace {
const std::string kAcct = "/v2/accounts/krn%3Apartner%3Aglobal%3Aaccount%3Atest%3ASIMACCOUNT";
const std::string kSecret = "example-signing-key-NOT-REAL";

Delivery make_delivery(const std::string& url, int n) {
  Delivery d;
  d.url = url;
  d.webhook_id = "wh";
  d.signing_key_id = "key-1";
  d.event_id = "evt-" + std::to_string(n);
  d.event_type = "payment.request.state-change.submitted";
  d.event_version = "v2";
  d.body = R"({"metadata":{"event_id":"evt-)" + std::to_string(n) + R"("},"payload":{}})";
  d.signature = kpay::klarna::hmac_sha256_hex(kSecret, d.body);
  return d;
}
}  // namespace

TEST(Signatures, DocumentedTestVectorWithOpensslCli) {
  std::string body =
      R"({"metadata":{"event_type":"payment.request.state-change.completed","event_id":"00000000-0000-4000-8000-000000000000","event_version":"v2"},"payload":{"state":"COMPLETED"}})";
  ASSERT_EQ(body.size(), 171u);
  const std::string expected = "09259eb5ff0e54a1f2a8f57ccc10f4e5d35800b056696a11071ce4e3d549d83f";
  EXPECT_EQ(kpay::klarna::hmac_sha256_hex(kSecret, body), expected);
  EXPECT_EQ(openssl_hmac(kSecret, body), expected);
}

TEST(Signatures, EveryEmittedWebhookVerifiesWithReceiverVerifierAndOpenssl) {
  SimClock clock;
  CapturingSink sink;
  SimApi api(ApiOptions{}, clock, &sink);
  api.add_signing_key("krn:partner:global:notification:signing-key:test", kSecret);
  api.add_webhook("http://127.0.0.1:1/a", {"*"}, "v2",
                  "krn:partner:global:notification:signing-key:test");
  api.add_webhook("http://127.0.0.1:1/b", {"*"}, "v1",
                  "krn:partner:global:notification:signing-key:test");
  ApiRequest create{"POST",
                    kAcct + "/payment/requests",
                    {{"authorization", api.authorization()}},
                    R"({"currency":"SEK","amount":4200})"};
  auto r = api.handle(create);
  ASSERT_EQ(r.status, 201);
  auto id = jstr(r.body, {"payment_request_id"});
  std::string enc;
  for (char c : id) enc += c == ':' ? std::string("%3A") : std::string(1, c);
  api.handle({"POST", "/_sim/payment-requests/" + enc + "/approve", {}, R"({"flow":"v1"})"});
  ASSERT_GE(sink.deliveries.size(), 4u);

  kpay::klarna::SigningKey verifier(kSecret);
  kpay::klarna::SigningKey wrong("another-key");
  for (const auto& d : sink.deliveries) {
    EXPECT_EQ(d.signature.size(), 64u);
    EXPECT_EQ(d.signature.find_first_not_of("0123456789abcdef"), std::string::npos)
        << "lowercase hex";
    EXPECT_TRUE(verifier.verify(d.body, d.signature)) << d.event_type;
    EXPECT_FALSE(wrong.verify(d.body, d.signature));
    EXPECT_FALSE(verifier.verify(d.body + " ", d.signature));
    EXPECT_EQ(openssl_hmac(kSecret, d.body), d.signature) << d.event_type;
  }
}

TEST(Dispatcher, DeliversSignedBytesAndRetriesOnKlarnasScheduleScaled) {
  // Fails twice (500, then 404), then accepts: three attempts, spaced by the
  // first two steps of the schedule (10 s, 2 min) at 1e5× speed.
  WebhookEndpoint endpoint([](int n) { return n < 2 ? (n == 0 ? 500 : 404) : 204; });
  SimClock clock(100'000);
  DispatcherOptions o;
  o.workers = 1;
  o.timeout = std::chrono::milliseconds(2000);
  WebhookDispatcher dispatcher(o, clock, make_http_transport(false));
  auto d = make_delivery(endpoint.url(), 1);
  auto start = clock.now_ms();
  dispatcher.enqueue(d);
  ASSERT_TRUE(
      wait_until([&] { return dispatcher.counts().delivered == 1; }, std::chrono::seconds(10)));
  auto elapsed_sim = clock.now_ms() - start;
  EXPECT_GE(elapsed_sim, 130'000);  // 10 s + 2 min of simulated time passed
  auto got = endpoint.received();
  ASSERT_EQ(got.size(), 3u);
  for (const auto& g : got) {
    EXPECT_EQ(g.body, d.body);
    EXPECT_EQ(g.header("klarna-signature"), d.signature);
    EXPECT_EQ(g.header("klarna-signing-key-id"), "key-1");
    EXPECT_EQ(g.header("content-type"), "application/json");
    EXPECT_EQ(g.head.rfind("POST /hook HTTP/1.1", 0), 0u);
  }
  auto json = dispatcher.introspect_json({});
  EXPECT_EQ(jstr(json, {"summary", "attempts"}), "3");
  EXPECT_NE(json.find(R"("status":500)"), std::string::npos);
  EXPECT_NE(json.find(R"("status":204)"), std::string::npos);
}

TEST(Dispatcher, PermanentFailureAfterSixRetries) {
  WebhookEndpoint endpoint([](int) { return 503; });
  SimClock clock(10'000'000);  // 12 h of retries in a few ms
  DispatcherOptions o;
  o.workers = 1;
  WebhookDispatcher dispatcher(o, clock, make_http_transport(false));
  dispatcher.enqueue(make_delivery(endpoint.url(), 1));
  ASSERT_TRUE(
      wait_until([&] { return dispatcher.counts().failed == 1; }, std::chrono::seconds(20)));
  EXPECT_EQ(endpoint.count(), 7u);  // 1 attempt + 6 retries
  EXPECT_EQ(dispatcher.counts().attempts, 7u);
}

TEST(Dispatcher, ConnectionRefusedIsRetriedAndRecorded) {
  SimClock clock(10'000'000);
  DispatcherOptions o;
  o.workers = 1;
  WebhookDispatcher dispatcher(o, clock, make_http_transport(false));
  // Port 1 on loopback: nothing listens there.
  dispatcher.enqueue(make_delivery("http://127.0.0.1:1/hook", 1));
  ASSERT_TRUE(
      wait_until([&] { return dispatcher.counts().failed == 1; }, std::chrono::seconds(20)));
  auto json = dispatcher.introspect_json({});
  EXPECT_NE(json.find("connect"), std::string::npos) << json;
}

TEST(Dispatcher, DuplicatesAreIdenticalBytesAndSignature) {
  WebhookEndpoint endpoint([](int) { return 200; });
  SimClock clock;
  DispatcherOptions o;
  o.duplicate_percent = 100;
  WebhookDispatcher dispatcher(o, clock, make_http_transport(false));
  for (int i = 0; i < 5; ++i) dispatcher.enqueue(make_delivery(endpoint.url(), i));
  ASSERT_TRUE(wait_until([&] { return dispatcher.counts().delivered == 10; }));
  auto got = endpoint.received();
  ASSERT_EQ(got.size(), 10u);
  std::map<std::string, int> per_body;
  for (const auto& g : got) {
    ++per_body[g.body];
    EXPECT_EQ(g.header("klarna-signature"), kpay::klarna::hmac_sha256_hex(kSecret, g.body));
  }
  EXPECT_EQ(per_body.size(), 5u);
  for (const auto& [b, n] : per_body) EXPECT_EQ(n, 2) << b;
  EXPECT_NE(dispatcher.introspect_json({}).find(R"("duplicate_of":1)"), std::string::npos);
}

TEST(Dispatcher, ReorderLetsLaterDeliveriesOvertake) {
  WebhookEndpoint endpoint([](int) { return 200; });
  SimClock clock;
  DispatcherOptions o;
  o.workers = 1;
  o.reorder_percent = 50;
  o.reorder_delay = std::chrono::milliseconds(200);
  o.seed = 7;  // fixed: which deliveries are held back is deterministic
  WebhookDispatcher dispatcher(o, clock, make_http_transport(false));
  for (int i = 0; i < 20; ++i) dispatcher.enqueue(make_delivery(endpoint.url(), i));
  ASSERT_TRUE(wait_until([&] { return dispatcher.counts().delivered == 20; }));
  auto got = endpoint.received();
  ASSERT_EQ(got.size(), 20u);
  std::vector<int> order;
  for (const auto& g : got)
    order.push_back(std::stoi(jstr(g.body, {"metadata", "event_id"}).substr(4)));
  EXPECT_FALSE(std::is_sorted(order.begin(), order.end())) << "expected at least one inversion";
  std::sort(order.begin(), order.end());
  for (int i = 0; i < 20; ++i) EXPECT_EQ(order[static_cast<std::size_t>(i)], i);  // nothing lost
}

TEST(Dispatcher, IntrospectionFilterAndMemoryBound) {
  WebhookEndpoint endpoint([](int) { return 200; });
  SimClock clock;
  DispatcherOptions o;
  o.workers = 1;
  o.max_records = 3;
  WebhookDispatcher dispatcher(o, clock, make_http_transport(false));
  for (int i = 0; i < 10; ++i) {
    dispatcher.enqueue(make_delivery(endpoint.url(), i));
    ASSERT_TRUE(wait_until([&] { return endpoint.count() == static_cast<std::size_t>(i + 1); }));
  }
  ASSERT_TRUE(wait_until([&] { return dispatcher.counts().pending == 0; }));
  auto all = dispatcher.introspect_json({});
  EXPECT_EQ(
      std::stoi(jstr(all, {"summary", "deliveries"})) + std::stoi(jstr(all, {"summary", "pruned"})),
      10);
  EXPECT_LE(std::stoi(jstr(all, {"summary", "deliveries"})), 3);
  auto newest = dispatcher.introspect_json({"delivered", 1});
  simdjson::dom::parser p;
  simdjson::dom::array arr;
  ASSERT_EQ(p.parse(newest)["deliveries"].get_array().get(arr), simdjson::SUCCESS);
  ASSERT_EQ(arr.size(), 1u);
  std::string_view id;
  ASSERT_EQ(arr.at(0)["event_id"].get_string().get(id), simdjson::SUCCESS);
  EXPECT_EQ(id, "evt-9");
  EXPECT_NE(dispatcher.introspect_json({"failed", 0}).find(R"("deliveries":[])"),
            std::string::npos);
}
