// The sim's API without a server: state machines, amounts, idempotency,
// expiry on the scalable clock, webhook management, fault rules.
#include <gtest/gtest.h>

#include "http_client.hpp"
#include "kpay/klarna/signature.hpp"
#include "kpay/sim/api.hpp"
#include "kpay/sim/faults.hpp"
#include "kpay/sim/idempotency.hpp"
#include "kpay/sim/scenario.hpp"
#include "kpay/sim/state_machines.hpp"
#include "test_helpers.hpp"

using namespace kpay::sim;
using kpay::sim::test::CapturingSink;
using kpay::sim::test::jstr;

namespace {

const std::string kAcct = "/v2/accounts/krn%3Apartner%3Aglobal%3Aaccount%3Atest%3ASIMACCOUNT";
constexpr std::int64_t kHour = 3600LL * 1000;

std::string enc(std::string id) {
  std::string out;
  for (char c : id) out += c == ':' ? std::string("%3A") : std::string(1, c);
  return out;
}

class ApiTest : public ::testing::Test {
 protected:
  ApiTest() : api(ApiOptions{}, clock, &sink) {
    api.add_signing_key("key-1", "example-signing-key-NOT-REAL");
    v2_hook = api.add_webhook("http://127.0.0.1:1/v2", {"*"}, "v2", "key-1");
    v1_hook = api.add_webhook("http://127.0.0.1:1/v1", {"payment.*"}, "v1", "key-1");
  }
  ApiResponse call(const std::string& method, const std::string& path, const std::string& body = {},
                   std::map<std::string, std::string> headers = {}) {
    return api.handle(ApiRequest{method, path, std::move(headers), body});
  }
  std::string create(std::int64_t amount = 1000) {
    auto r = call("POST", kAcct + "/payment/requests",
                  R"({"currency":"USD","amount":)" + std::to_string(amount) + "}");
    EXPECT_EQ(r.status, 201) << r.body;
    return jstr(r.body, {"payment_request_id"});
  }
  ApiResponse customer(const std::string& id, const std::string& action,
                       const std::string& flow = "v2") {
    return call("POST", "/_sim/payment-requests/" + enc(id) + "/" + action,
                R"({"flow":")" + flow + "\"}");
  }
  std::vector<std::string> types_for(const std::string& hook) const {
    std::vector<std::string> out;
    for (const auto& d : sink.deliveries) {
      if (d.webhook_id == hook) out.push_back(d.event_type);
    }
    return out;
  }
  // Approve a v2 request and authorize it; returns the transaction id.
  std::string authorized_transaction(std::int64_t amount = 1000) {
    auto id = create(amount);
    auto approved = customer(id, "approve");
    EXPECT_EQ(approved.status, 200) << approved.body;
    auto token = jstr(approved.body, {"state_context", "klarna_network_session_token"});
    auto r = call("POST", kAcct + "/payment/authorize",
                  R"({"currency":"USD","request_payment_transaction":{"amount":)" +
                      std::to_string(amount) +
                      R"(,"payment_transaction_reference":"ref","capture":"LATER"}})",
                  {{"klarna-network-session-token", token}});
    EXPECT_EQ(r.status, 200) << r.body;
    return jstr(r.body,
                {"payment_transaction_response", "payment_transaction", "payment_transaction_id"});
  }

  SimClock clock{1};
  CapturingSink sink;
  SimApi api;
  std::string v2_hook, v1_hook;
};

}  // namespace

TEST(StateMachines, Gen2RequestTable) {
  using R = RequestState;
  EXPECT_TRUE(request_transition_allowed(Generation::v2, R::submitted, R::in_progress));
  EXPECT_TRUE(request_transition_allowed(Generation::v2, R::in_progress, R::completed));
  EXPECT_TRUE(request_transition_allowed(Generation::v2, R::in_progress, R::submitted));
  EXPECT_FALSE(request_transition_allowed(Generation::v2, R::submitted, R::completed));
  EXPECT_FALSE(request_transition_allowed(Generation::v2, R::completed, R::canceled));
  EXPECT_FALSE(request_transition_allowed(Generation::v2, R::in_progress, R::pending_confirmation));
  EXPECT_FALSE(request_transition_allowed(Generation::v2, R::submitted, R::declined));
}

TEST(StateMachines, Gen1RequestTable) {
  using R = RequestState;
  EXPECT_TRUE(request_transition_allowed(Generation::v1, R::submitted, R::prepared));
  EXPECT_TRUE(request_transition_allowed(Generation::v1, R::prepared, R::pending_confirmation));
  EXPECT_TRUE(request_transition_allowed(Generation::v1, R::pending_confirmation, R::authorized));
  EXPECT_TRUE(request_transition_allowed(Generation::v1, R::pending_confirmation, R::submitted));
  EXPECT_FALSE(request_transition_allowed(Generation::v1, R::authorized, R::submitted));
  EXPECT_FALSE(request_transition_allowed(Generation::v1, R::in_progress, R::completed));
}

TEST(StateMachines, TransactionAndDisputeTables) {
  using T = TransactionState;
  EXPECT_TRUE(transaction_transition_allowed(T::authorized, T::completed));
  EXPECT_TRUE(transaction_transition_allowed(T::authorized, T::closed));
  EXPECT_TRUE(transaction_transition_allowed(T::completed, T::closed));
  EXPECT_FALSE(transaction_transition_allowed(T::closed, T::authorized));
  EXPECT_FALSE(transaction_transition_allowed(T::completed, T::authorized));
  using D = DisputeState;
  EXPECT_TRUE(dispute_transition_allowed(D::initiated, D::representment));
  EXPECT_TRUE(dispute_transition_allowed(D::pre_arbitration, D::arbitration));
  EXPECT_FALSE(dispute_transition_allowed(D::closed, D::initiated));
  EXPECT_FALSE(dispute_transition_allowed(D::initiated, D::arbitration));
  EXPECT_EQ(request_state_name(RequestState::pending_confirmation), "PENDING_CONFIRMATION");
  EXPECT_EQ(parse_request_state("IN_PROGRESS"), RequestState::in_progress);
}

TEST(IdempotencyStoreTest, ReplayConflictAndWindow) {
  IdempotencyStore s(1000);
  auto fp1 = IdempotencyStore::fingerprint("POST", "/a", "{}");
  auto fp2 = IdempotencyStore::fingerprint("POST", "/a", "{\"x\":1}");
  EXPECT_EQ(s.check("k", fp1, 0).outcome, IdempotencyStore::Outcome::execute);
  s.remember("k", fp1, {201, "first"}, 0);
  auto again = s.check("k", fp1, 999);
  EXPECT_EQ(again.outcome, IdempotencyStore::Outcome::replay);
  EXPECT_EQ(again.response.body, "first");
  EXPECT_EQ(again.response.status, 201);
  EXPECT_EQ(s.check("k", fp2, 999).outcome, IdempotencyStore::Outcome::conflict);
  EXPECT_EQ(s.check("k", fp1, 1000).outcome, IdempotencyStore::Outcome::execute);  // window over
  s.remember("t", fp1, {503, "technical"}, 0);
  EXPECT_EQ(s.check("t", fp1, 1).outcome, IdempotencyStore::Outcome::execute);  // 5xx not stored
}

TEST_F(ApiTest, Gen2JourneyCaptureRefundAndAmountChecks) {
  auto id = create(1000);
  EXPECT_EQ(customer(id, "approve").status, 200);
  auto read = call("GET", kAcct + "/payment/requests/" + enc(id));
  EXPECT_EQ(jstr(read.body, {"state"}), "COMPLETED");
  auto token = jstr(read.body, {"state_context", "klarna_network_session_token"});
  ASSERT_FALSE(token.empty());

  // Amount must match the approved request.
  auto wrong =
      call("POST", kAcct + "/payment/authorize",
           R"({"currency":"USD","request_payment_transaction":{"amount":999,"capture":"LATER"}})",
           {{"klarna-network-session-token", token}});
  EXPECT_EQ(wrong.status, 400);
  EXPECT_EQ(jstr(wrong.body, {"error_type"}), "INPUT_ERROR");

  std::string auth_body =
      R"({"currency":"USD","request_payment_transaction":{"amount":1000,"payment_transaction_reference":"r1","capture":"LATER"}})";
  auto auth = call("POST", kAcct + "/payment/authorize", auth_body,
                   {{"klarna-network-session-token", token}});
  ASSERT_EQ(auth.status, 200) << auth.body;
  EXPECT_EQ(jstr(auth.body, {"payment_transaction_response", "result"}), "APPROVED");
  auto tx = jstr(auth.body,
                 {"payment_transaction_response", "payment_transaction", "payment_transaction_id"});
  EXPECT_EQ(jstr(auth.body, {"payment_transaction_response", "payment_transaction", "state"}),
            "AUTHORIZED");
  // Repeating with the same token returns the same result, no second transaction.
  auto again = call("POST", kAcct + "/payment/authorize", auth_body,
                    {{"klarna-network-session-token", token}});
  EXPECT_EQ(again.body, auth.body);

  auto cap = [&](std::int64_t amount) {
    return call("POST", kAcct + "/payment/transactions/" + enc(tx) + "/capture",
                R"({"capture_amount":)" + std::to_string(amount) + "}");
  };
  EXPECT_EQ(cap(400).status, 201);
  auto over = cap(601);
  EXPECT_EQ(over.status, 403);
  EXPECT_EQ(jstr(over.body, {"error_code"}), "CAPTURE_NOT_ALLOWED");
  EXPECT_EQ(jstr(over.body, {"error_type"}), "INPUT_ERROR");
  EXPECT_NE(jstr(over.body, {"error_id"}), "<missing>");
  EXPECT_NE(jstr(over.body, {"error_message"}), "<missing>");
  auto t1 = call("GET", kAcct + "/payment/transactions/" + enc(tx));
  EXPECT_EQ(jstr(t1.body, {"state"}), "AUTHORIZED");  // partial capture keeps it AUTHORIZED
  EXPECT_EQ(jstr(t1.body, {"captured_amount"}), "400");
  EXPECT_EQ(cap(600).status, 201);
  EXPECT_EQ(jstr(call("GET", kAcct + "/payment/transactions/" + enc(tx)).body, {"state"}),
            "COMPLETED");
  EXPECT_EQ(cap(1).status, 403);  // nothing left, and no longer AUTHORIZED

  auto refund = [&](std::int64_t amount) {
    return call("POST", kAcct + "/payment/transactions/" + enc(tx) + "/refund",
                R"({"refund_amount":)" + std::to_string(amount) + "}");
  };
  EXPECT_EQ(refund(1001).status, 403);
  EXPECT_EQ(refund(300).status, 201);
  EXPECT_EQ(refund(701).status, 403);
  EXPECT_EQ(refund(700).status, 201);
  EXPECT_EQ(call("POST", kAcct + "/payment/transactions/" + enc(tx) + "/void", "").status, 403);

  std::vector<std::string> expected{"payment.request.state-change.submitted",
                                    "payment.request.state-change.in-progress",
                                    "payment.request.state-change.completed",
                                    "payment.transaction.state-change.authorized",
                                    "payment.transaction.captured",
                                    "payment.transaction.captured",
                                    "payment.transaction.state-change.completed",
                                    "payment.transaction.refunded",
                                    "payment.transaction.refunded"};
  EXPECT_EQ(types_for(v2_hook), expected);
}

TEST_F(ApiTest, Gen1ConfirmFlowAndVersionFiltering) {
  auto id = create(2000);
  auto approved = customer(id, "approve", "v1");
  ASSERT_EQ(approved.status, 200) << approved.body;
  EXPECT_EQ(jstr(approved.body, {"state"}), "PENDING_CONFIRMATION");
  auto token = jstr(approved.body, {"state_context", "payment_confirmation_token"});
  auto path = kAcct + "/payment/confirmation-tokens/" + token + "/confirm";
  EXPECT_EQ(call("POST", path, R"({"currency":"USD","payment_amount":1999})").status, 400);
  auto ok =
      call("POST", path, R"({"currency":"USD","payment_amount":2000,"config":{"capture":false}})");
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(jstr(ok.body, {"state"}), "AUTHORIZED");
  auto tx = jstr(ok.body, {"state_context", "payment_transaction_id"});
  EXPECT_EQ(jstr(call("GET", kAcct + "/payment/transactions/" + enc(tx)).body, {"state"}),
            "AUTHORIZED");
  // Idempotent per token.
  EXPECT_EQ(
      call("POST", path, R"({"currency":"USD","payment_amount":2000,"config":{"capture":false}})")
          .body,
      ok.body);

  std::vector<std::string> v1{
      "payment.request.state-change.submitted", "payment.request.state-change.in-progress",
      "payment.request.state-change.pending-confirmation",
      "payment.transaction.state-change.authorized", "payment.request.state-change.authorized"};
  EXPECT_EQ(types_for(v1_hook), v1);
  // pending-confirmation and request.authorized are v1-only events.
  std::vector<std::string> v2{"payment.request.state-change.submitted",
                              "payment.request.state-change.in-progress",
                              "payment.transaction.state-change.authorized"};
  EXPECT_EQ(types_for(v2_hook), v2);
  for (const auto& d : sink.deliveries) {
    EXPECT_EQ(jstr(d.body, {"metadata", "event_version"}), d.event_version);
    EXPECT_EQ(jstr(d.body, {"metadata", "webhook_id"}), d.webhook_id);
    EXPECT_EQ(jstr(d.body, {"metadata", "event_id"}), d.event_id);
  }
}

TEST_F(ApiTest, IdempotencyReplaysWithoutReexecutingAndExpiresAfter24h) {
  auto tx = authorized_transaction(1000);
  auto path = kAcct + "/payment/transactions/" + enc(tx) + "/capture";
  std::map<std::string, std::string> key{{"klarna-idempotency-key", "cap-1"}};
  auto before = sink.deliveries.size();
  auto first = call("POST", path, R"({"capture_amount":100})", key);
  ASSERT_EQ(first.status, 201);
  auto second = call("POST", path, R"({"capture_amount":100})", key);
  EXPECT_EQ(second.status, 201);
  EXPECT_EQ(second.body, first.body);  // the stored original response
  EXPECT_EQ(api.executions("payment.transactions.capture"), 1u);
  EXPECT_EQ(sink.deliveries.size(),
            before + 2);  // one captured event, 2 subscriptions; not repeated
  EXPECT_EQ(jstr(call("GET", kAcct + "/payment/transactions/" + enc(tx)).body, {"captured_amount"}),
            "100");

  auto conflict = call("POST", path, R"({"capture_amount":200})", key);
  EXPECT_EQ(conflict.status, 409);
  EXPECT_EQ(jstr(conflict.body, {"error_type"}), "INPUT_ERROR");

  auto execs = call("GET", "/_sim/executions");
  EXPECT_EQ(jstr(execs.body, {"by_idempotency_key", "cap-1"}), "1");
  auto calls = call("GET", "/_sim/calls?route=payment.transactions.capture");
  EXPECT_NE(calls.body.find(R"("idempotency_key":"cap-1","status":201,"replayed":true)"),
            std::string::npos)
      << calls.body;

  clock.advance(24 * kHour);  // the key is forgotten: the same request executes again
  auto third = call("POST", path, R"({"capture_amount":100})", key);
  EXPECT_EQ(third.status, 201);
  EXPECT_NE(jstr(third.body, {"payment_capture_id"}), jstr(first.body, {"payment_capture_id"}));
  EXPECT_EQ(api.executions("payment.transactions.capture"), 2u);

  EXPECT_EQ(call("POST", path, R"({"capture_amount":1})",
                 {{"klarna-idempotency-key", std::string(256, 'k')}})
                .status,
            400);
}

TEST_F(ApiTest, ExpiryOnTheScalableClock) {
  // Gen 1: confirmation token valid 60 min, then the request reverts to SUBMITTED.
  auto id1 = create();
  ASSERT_EQ(customer(id1, "approve", "v1").status, 200);
  // Gen 2: session token valid 60 min.
  auto id2 = create();
  auto approved = customer(id2, "approve");
  auto token = jstr(approved.body, {"state_context", "klarna_network_session_token"});
  auto id3 = create();  // untouched: expires after 3 h

  clock.advance(61 * 60 * 1000);
  api.tick();
  auto r1 = call("GET", kAcct + "/payment/requests/" + enc(id1));
  EXPECT_EQ(jstr(r1.body, {"state"}), "SUBMITTED");
  EXPECT_EQ(jstr(r1.body, {"state_reason"}), "CONFIRMATION_TOKEN_EXPIRED");
  auto late =
      call("POST", kAcct + "/payment/authorize",
           R"({"currency":"USD","request_payment_transaction":{"amount":1000,"capture":"LATER"}})",
           {{"klarna-network-session-token", token}});
  EXPECT_EQ(late.status, 400);
  EXPECT_EQ(jstr(late.body, {"error_code"}), "SESSION_TOKEN_EXPIRED");
  EXPECT_EQ(jstr(call("GET", kAcct + "/payment/requests/" + enc(id3)).body, {"state"}),
            "SUBMITTED");

  clock.advance(2 * kHour);
  api.tick();
  EXPECT_EQ(jstr(call("GET", kAcct + "/payment/requests/" + enc(id3)).body, {"state"}), "EXPIRED");
  EXPECT_EQ(jstr(call("GET", kAcct + "/payment/requests/" + enc(id2)).body, {"state"}),
            "COMPLETED");  // final
}

TEST_F(ApiTest, CancelVoidDeclineAndStepUp) {
  auto id = create();
  EXPECT_EQ(call("DELETE", kAcct + "/payment/requests/" + enc(id)).status, 204);
  EXPECT_EQ(jstr(call("GET", kAcct + "/payment/requests/" + enc(id)).body, {"state"}), "CANCELED");
  EXPECT_EQ(customer(id, "approve").status, 409);  // final

  auto done = create();
  ASSERT_EQ(customer(done, "approve").status, 200);
  EXPECT_EQ(call("DELETE", kAcct + "/payment/requests/" + enc(done)).status, 409);

  auto declined = create();
  EXPECT_EQ(jstr(customer(declined, "decline").body, {"state"}), "DECLINED");

  auto tx = authorized_transaction();
  auto v = call("POST", kAcct + "/payment/transactions/" + enc(tx) + "/void", "");
  EXPECT_EQ(v.status, 200);
  EXPECT_EQ(jstr(v.body, {"state"}), "CLOSED");  // void with no capture
  EXPECT_EQ(
      call("POST", kAcct + "/payment/transactions/" + enc(tx) + "/refund", R"({"refund_amount":1})")
          .status,
      403);

  auto step =
      call("POST", kAcct + "/payment/authorize",
           R"({"currency":"EUR","request_payment_transaction":{"amount":500,"capture":"NOW"}})");
  ASSERT_EQ(step.status, 200);
  EXPECT_EQ(jstr(step.body, {"payment_transaction_response", "result"}), "STEP_UP_REQUIRED");
  EXPECT_EQ(jstr(step.body, {"payment_request", "state"}), "SUBMITTED");
  auto direct =
      call("POST", kAcct + "/payment/authorize",
           R"({"currency":"EUR","request_payment_transaction":{"amount":500,"capture":"NOW"}})",
           {{"klarna-customer-token", "ct"}});
  EXPECT_EQ(jstr(direct.body, {"payment_transaction_response", "result"}), "APPROVED");
  EXPECT_EQ(jstr(direct.body, {"payment_transaction_response", "payment_transaction", "state"}),
            "COMPLETED");
  EXPECT_EQ(call("GET", kAcct + "/payment/transactions/nope").status, 404);
  EXPECT_EQ(jstr(call("GET", kAcct + "/payment/transactions/nope").body, {"error_type"}),
            "RESOURCE_ERROR");
}

TEST_F(ApiTest, DisputesAndSettlementsEmitEvents) {
  auto tx = authorized_transaction();
  ASSERT_EQ(call("POST", kAcct + "/payment/transactions/" + enc(tx) + "/capture",
                 R"({"capture_amount":1000})")
                .status,
            201);
  auto d = call("POST", "/_sim/disputes", R"({"payment_transaction_id":")" + tx + "\"}");
  ASSERT_EQ(d.status, 201) << d.body;
  auto did = jstr(d.body, {"payment_dispute_id"});
  EXPECT_EQ(call("POST", "/_sim/disputes/" + enc(did) + "/transition", R"({"state":"ARBITRATION"})")
                .status,
            409);
  EXPECT_EQ(
      call("POST", "/_sim/disputes/" + enc(did) + "/transition", R"({"state":"REPRESENTMENT"})")
          .status,
      200);
  auto closed = call("POST", "/_sim/disputes/" + enc(did) + "/transition",
                     R"({"state":"CLOSED","outcome":"WON"})");
  EXPECT_EQ(jstr(closed.body, {"dispute_outcome"}), "WON");
  auto s = call("POST", "/_sim/settlements", "{}");
  ASSERT_EQ(s.status, 201);
  EXPECT_EQ(jstr(s.body, {"total_amount"}), "1000");
  auto types = types_for(v2_hook);
  auto has = [&](const std::string& t) {
    return std::find(types.begin(), types.end(), t) != types.end();
  };
  EXPECT_TRUE(has("payment.dispute.state-change.initiated"));
  EXPECT_TRUE(has("payment.dispute.state-change.representment"));
  EXPECT_TRUE(has("payment.dispute.state-change.closed"));
  EXPECT_TRUE(has("settlement.report.created"));
  EXPECT_TRUE(has("settlement.payout.processed"));
  // The v1 hook subscribed to payment.* only.
  for (const auto& t : types_for(v1_hook)) EXPECT_EQ(t.rfind("payment.", 0), 0u) << t;
}

TEST_F(ApiTest, WebhookAndSigningKeyManagement) {
  auto key = call("POST", "/v2/notification/signing-keys", "");
  ASSERT_EQ(key.status, 201);
  auto key_id = jstr(key.body, {"signing_key_id"});
  auto secret = jstr(key.body, {"signing_key"});
  EXPECT_EQ(key_id.rfind("krn:partner:global:notification:signing-key:", 0), 0u);
  EXPECT_EQ(call("GET", "/v2/notification/signing-keys").body.find(secret),
            std::string::npos);  // shown once

  std::string body =
      R"({"url":"https://example.test/hook","event_types":["payment.request.*"],"event_version":"v1","signing_key_id":")" +
      key_id + R"(","status":"ENABLED"})";
  auto hook = call("POST", "/v2/notification/webhooks", body);
  ASSERT_EQ(hook.status, 201) << hook.body;
  auto hook_id = jstr(hook.body, {"webhook_id"});
  EXPECT_EQ(call("POST", "/v2/notification/webhooks", body).status, 409);
  EXPECT_EQ(call("POST", "/v2/notification/webhooks",
                 R"({"url":"https://x","event_types":["*"],"signing_key_id":"nope"})")
                .status,
            400);
  EXPECT_NE(call("GET", "/v2/notification/webhooks").body.find(hook_id), std::string::npos);
  EXPECT_EQ(jstr(call("GET", "/v2/notification/webhooks/" + enc(hook_id)).body, {"event_version"}),
            "v1");

  sink.deliveries.clear();
  auto sim = call("POST", "/v2/notification/webhooks/" + enc(hook_id) + "/simulate",
                  R"({"event_type":"payment.transaction.captured","event_version":"v2"})");
  ASSERT_EQ(sim.status, 200) << sim.body;
  ASSERT_EQ(sink.deliveries.size(), 1u);
  const auto& d = sink.deliveries[0];
  EXPECT_EQ(d.signing_key_id, key_id);
  EXPECT_EQ(jstr(d.body, {"metadata", "event_type"}), "payment.transaction.captured");
  EXPECT_EQ(jstr(d.body, {"metadata", "event_version"}), "v2");
  EXPECT_EQ(d.signature, kpay::klarna::hmac_sha256_hex(secret, d.body));

  auto patched =
      call("PATCH", "/v2/notification/webhooks/" + enc(hook_id), R"({"status":"DISABLED"})");
  EXPECT_EQ(jstr(patched.body, {"status"}), "DISABLED");
  EXPECT_EQ(call("DELETE", "/v2/notification/webhooks/" + enc(hook_id)).status, 204);
  EXPECT_EQ(call("GET", "/v2/notification/webhooks/" + enc(hook_id)).status, 404);
  EXPECT_EQ(call("DELETE", "/v2/notification/signing-keys/" + enc(key_id)).status, 204);
}

TEST_F(ApiTest, ApiKeyAndMalformedInput) {
  EXPECT_EQ(call("POST", kAcct + "/payment/requests", "{not json").status, 400);
  EXPECT_EQ(call("POST", kAcct + "/payment/requests", R"({"currency":"usd","amount":1})").status,
            400);
  EXPECT_EQ(call("POST", kAcct + "/payment/requests", R"({"currency":"USD","amount":-5})").status,
            400);
  EXPECT_EQ(call("GET", "/v2/unknown").status, 404);
  SimClock c;
  ApiOptions o;
  o.api_key = "secret";
  SimApi guarded(o, c, nullptr);
  EXPECT_EQ(guarded.handle({"GET", "/v2/notification/webhooks", {}, ""}).status, 401);
  EXPECT_EQ(
      guarded.handle({"GET", "/v2/notification/webhooks", {{"authorization", "Basic secret"}}, ""})
          .status,
      200);
}

TEST(Faults, ParseAndDecide) {
  auto r = parse_fault_rule("payment.transactions.*:429:100:7");
  EXPECT_EQ(r.kind, FaultKind::rate_limit);
  EXPECT_EQ(r.param, 7);
  EXPECT_EQ(parse_fault_rule("*:5xx:10").param, 503);
  EXPECT_EQ(parse_fault_rule("*:502:10").param, 502);
  EXPECT_EQ(parse_fault_rule("*:latency:50").param, 200);
  EXPECT_THROW(parse_fault_rule("*:explode:10"), std::invalid_argument);
  EXPECT_THROW(parse_fault_rule("*:429:101"), std::invalid_argument);
  EXPECT_THROW(parse_fault_rule("nonsense"), std::invalid_argument);

  FaultPlan plan(42);
  plan.set_rules({parse_fault_rule("payment.transactions.capture:latency:100:30"),
                  parse_fault_rule("payment.transactions.*:drop:100"),
                  parse_fault_rule("*:429:0")});
  auto d = plan.decide("payment.transactions.capture");
  EXPECT_EQ(d.added_latency_ms, 30);
  EXPECT_EQ(d.kind, FaultKind::drop);
  EXPECT_EQ(plan.decide("payment.requests.create").kind, FaultKind::none);

  plan.set_rules({parse_fault_rule("*:5xx:30")});
  int hits = 0;
  for (int i = 0; i < 2000; ++i) hits += plan.decide("x").kind == FaultKind::server_error;
  EXPECT_GT(hits, 450);  // 30 % of 2000 = 600, loose bounds
  EXPECT_LT(hits, 750);
  // A real fixed-window limit shared by the routes it matches.
  plan.set_rules({parse_fault_rule("payment.transactions.*:limit:2:60")});
  auto a = plan.decide("payment.transactions.capture");
  auto b = plan.decide("payment.transactions.refund");
  auto c = plan.decide("payment.transactions.void");
  EXPECT_EQ(a.kind, FaultKind::none);
  ASSERT_TRUE(a.rate && b.rate && c.rate);
  EXPECT_EQ(a.rate->remaining, 1);
  EXPECT_EQ(b.rate->remaining, 0);
  EXPECT_EQ(b.kind, FaultKind::none);
  EXPECT_EQ(c.kind, FaultKind::rate_limit);
  EXPECT_EQ(c.rate->limit, 2);
  EXPECT_GT(c.param, 0);
  EXPECT_LE(c.param, 60);
  EXPECT_FALSE(plan.decide("payment.requests.create").rate.has_value());
  EXPECT_THROW(parse_fault_rule("*:limit:0"), std::invalid_argument);

  EXPECT_EQ(SimApi::route_name("POST", kAcct + "/payment/transactions/x/capture"),
            "payment.transactions.capture");
  EXPECT_EQ(SimApi::route_name("POST", kAcct + "/payment/authorize"), "payment.authorize");
  EXPECT_EQ(SimApi::route_name("DELETE", kAcct + "/payment/requests/x"), "payment.requests.cancel");
}

TEST(Scenarios, AllKindsBothVersionsAndRepeatUntilStopped) {
  SimClock clock;
  CapturingSink sink;
  SimApi api(ApiOptions{}, clock, &sink);
  api.add_signing_key("k", "s");
  api.add_webhook("http://127.0.0.1:1/", {"*"}, "v2", "k");
  ScenarioRunner runner(api);
  ScenarioOptions o;
  o.journeys = 10;
  o.rate_per_second = 100000;
  o.mix = parse_mix({"approve:2", "decline", "expire", "cancel", "step-up"});
  o.versions = {"v1", "v2"};
  o.disputes = 2;
  o.settlements = 1;
  ASSERT_TRUE(runner.start(o));
  ASSERT_TRUE(kpay::test::wait_until([&] { return runner.finished_once() && !runner.running(); }));
  auto status = runner.status_json();
  EXPECT_EQ(jstr(status, {"counters", "journeys_ok"}), "10") << status;
  EXPECT_EQ(jstr(status, {"counters", "disputes_ok"}), "2") << status;
  EXPECT_EQ(jstr(status, {"counters", "settlements_ok"}), "1") << status;
  // Every kind that repeats runs in both flows (versions shift per pass over the mix).
  for (auto k : {"approve", "decline", "expire"}) {
    EXPECT_EQ(jstr(status, {"counters", std::string("journey.") + k + ".v1"}).find('<'),
              std::string::npos)
        << k;
    EXPECT_EQ(jstr(status, {"counters", std::string("journey.") + k + ".v2"}).find('<'),
              std::string::npos)
        << k;
  }
  auto state = api.handle({"GET", "/_sim/state", {}, ""}).body;
  EXPECT_EQ(jstr(state, {"payment_requests", "DECLINED"}), "2") << state;
  // Round robin over [approve, approve, decline, expire, cancel, step-up] for 10
  // journeys: approve ×4, decline ×2, expire ×2, cancel ×1, step-up ×1.
  EXPECT_EQ(jstr(state, {"payment_requests", "CANCELED"}), "1") << state;
  EXPECT_EQ(jstr(state, {"payment_requests", "EXPIRED"}), "2") << state;
  // approve and step-up end with a fully captured transaction.
  EXPECT_EQ(jstr(state, {"payment_transactions", "COMPLETED"}), "5") << state;

  o.repeat = true;
  o.journeys = 2;
  o.disputes = 0;
  o.settlements = 0;
  ASSERT_TRUE(runner.start(o));
  ASSERT_TRUE(kpay::test::wait_until([&] {
    return std::stoi("0" + jstr(runner.status_json(), {"counters", "rounds"})) >= 3;
  }));
  EXPECT_FALSE(runner.start(o));  // one at a time (a repeating run never ends by itself)
  EXPECT_EQ(runner.control({"POST", "/_sim/scenarios", {}, "{}"}).status, 409);
  auto stopped = runner.control({"DELETE", "/_sim/scenarios", {}, ""});
  EXPECT_EQ(stopped.status, 200);
  EXPECT_TRUE(kpay::test::wait_until([&] { return !runner.running(); }));
  EXPECT_EQ(parse_mix({"approve:0", "cancel"}).size(), 1u);
  EXPECT_THROW(parse_mix({"dance"}), std::invalid_argument);
}
