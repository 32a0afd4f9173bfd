// The sim's API without a server: state machines, amounts, idempotency,
// expiry on the scalable clock, webhook management, fault rules.
#include <gtest/gtest.h>

#include "http_client.hpp"
#include "kpay/klarna/signature.hpp"
#include "kpay/sim/api.hpp"
#include "kpay/sim/faults.hpp"
#include "kpay/sim/idempotency.hpp"
#include "kpay/sim/options.hpp"
#include "kpay/sim/scenario.hpp"
#include "kpay/sim/state_machines.hpp"
#include "test_helpers.hpp"

using namespace kpay::sim;
using kpay::sim::test::CapturingSink;
using kpay::sim::test::jstr;

namespace {

const std::string kAcct = "/v2/accounts/krn%3Apartner%3Aglobal%3Aaccount%3Atest%3ASIMACCOUNT";
const std::string kDefaultAuth = "Basic klarna-sim-api-key";
constexpr std::int64_t kHour = 3600LL * 1000;

std::string enc(std::string id) {
  std::string out;
  for (char c : id) out += c == ':' ? std::string("%3A") : std::string(1, c);
  return out;
}

class ApiTest : public ::testing::Test {
 protected:
  explicit ApiTest(ApiOptions options = {}) : api(std::move(options), clock, &sink) {
    api.add_signing_key("key-1", "example-signing-key-NOT-REAL");
    v2_hook = api.add_webhook("http://127.0.0.1:1/v2", {"*"}, "v2", "key-1");
    v1_hook = api.add_webhook("http://127.0.0.1:1/v1", {"payment.*"}, "v1", "key-1");
  }
  // With the default credentials unless `headers` has an authorization.
  ApiResponse call(const std::string& method, const std::string& path, const std::string& body = {},
                   std::map<std::string, std::string> headers = {}) {
    headers.emplace("authorization", kDefaultAuth);
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

// Tokens living 2 h (sim.token_ttl_ms) instead of Klarna's 60 min.
class ApiTestWithTwoHourTokens : public ApiTest {
 protected:
  static ApiOptions options() {
    ApiOptions o;
    o.token_ttl_ms = 2 * kHour;
    return o;
  }
  ApiTestWithTwoHourTokens() : ApiTest(options()) {}
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

TEST(IdempotencyStoreTest, PurgeForgetsInAgeOrderAndKeepsAKeyStoredAgain) {
  IdempotencyStore s(1000);
  auto fp1 = IdempotencyStore::fingerprint("POST", "/a", "{}");
  auto fp2 = IdempotencyStore::fingerprint("POST", "/b", "{}");
  s.remember("k", fp1, {201, "first"}, 0);
  s.remember("old", fp1, {201, "old"}, 10);
  EXPECT_EQ(s.check("k", fp1, 1000).outcome, IdempotencyStore::Outcome::execute);  // forgotten
  s.remember("k", fp2, {201, "second"}, 1000);
  s.purge(1009);
  EXPECT_EQ(s.size(), 2u);
  s.purge(1010);  // "old" is due; the record of k's first use is stale and skipped
  EXPECT_EQ(s.size(), 1u);
  EXPECT_EQ(s.check("k", fp2, 1999).response.body, "second");
  s.purge(2000);
  EXPECT_EQ(s.size(), 0u);
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
  EXPECT_EQ(jstr(over.body, {"error_type"}), "RESOURCE_ERROR");
  EXPECT_NE(jstr(over.body, {"error_id"}), "<missing>");
  EXPECT_NE(jstr(over.body, {"error_message"}), "<missing>");
  auto t1 = call("GET", kAcct + "/payment/transactions/" + enc(tx));
  EXPECT_EQ(jstr(t1.body, {"state"}), "AUTHORIZED");  // partial capture keeps it AUTHORIZED
  EXPECT_EQ(jstr(t1.body, {"captured_amount"}), "400");
  EXPECT_EQ(cap(600).status, 201);
  EXPECT_EQ(jstr(call("GET", kAcct + "/payment/transactions/" + enc(tx)).body, {"state"}),
            "COMPLETED");
  auto late = cap(1);  // nothing left, and no longer AUTHORIZED
  EXPECT_EQ(late.status, 403);
  EXPECT_EQ(jstr(late.body, {"error_type"}), "RESOURCE_ERROR");
  EXPECT_EQ(jstr(late.body, {"error_code"}), "CAPTURE_NOT_ALLOWED");

  auto refund = [&](std::int64_t amount) {
    return call("POST", kAcct + "/payment/transactions/" + enc(tx) + "/refund",
                R"({"refund_amount":)" + std::to_string(amount) + "}");
  };
  auto over_refund = refund(1001);
  EXPECT_EQ(over_refund.status, 403);
  EXPECT_EQ(jstr(over_refund.body, {"error_type"}), "RESOURCE_ERROR");
  EXPECT_EQ(jstr(over_refund.body, {"error_code"}), "REFUND_NOT_ALLOWED");
  EXPECT_EQ(refund(300).status, 201);
  EXPECT_EQ(refund(701).status, 403);
  EXPECT_EQ(refund(700).status, 201);
  auto void_late = call("POST", kAcct + "/payment/transactions/" + enc(tx) + "/void", "");
  EXPECT_EQ(void_late.status, 403);
  EXPECT_EQ(jstr(void_late.body, {"error_type"}), "RESOURCE_ERROR");
  EXPECT_EQ(jstr(void_late.body, {"error_code"}), "VOID_NOT_ALLOWED");
  auto update_late = call("PATCH", kAcct + "/payment/transactions/" + enc(tx),
                          R"({"payment_transaction_reference":"x"})");
  EXPECT_EQ(update_late.status, 403);
  EXPECT_EQ(jstr(update_late.body, {"error_type"}), "RESOURCE_ERROR");

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
  EXPECT_EQ(jstr(conflict.body, {"error_type"}), "RESOURCE_ERROR");
  EXPECT_EQ(jstr(conflict.body, {"error_code"}), "RESOURCE_CONFLICT");
  EXPECT_EQ(api.executions("payment.transactions.capture"), 1u);

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

TEST_F(ApiTestWithTwoHourTokens, TokensLiveAsLongAsConfigured) {
  auto gen1 = create();
  ASSERT_EQ(customer(gen1, "approve", "v1").status, 200);
  auto gen2_token = [&] {
    auto approved = customer(create(), "approve");
    EXPECT_EQ(approved.status, 200) << approved.body;
    return jstr(approved.body, {"state_context", "klarna_network_session_token"});
  };
  auto authorize = [&](const std::string& token) {
    return call(
        "POST", kAcct + "/payment/authorize",
        R"({"currency":"USD","request_payment_transaction":{"amount":1000,"capture":"LATER"}})",
        {{"klarna-network-session-token", token}});
  };
  auto early = gen2_token(), late = gen2_token();
  auto gen1_state = [&] {
    return jstr(call("GET", kAcct + "/payment/requests/" + enc(gen1)).body, {"state"});
  };

  clock.advance(2 * kHour - 60'000);  // past Klarna's 60 min, within the 2 h
  api.tick();
  EXPECT_EQ(gen1_state(), "PENDING_CONFIRMATION");
  EXPECT_EQ(authorize(early).status, 200);

  clock.advance(2 * 60'000);
  api.tick();
  EXPECT_EQ(gen1_state(), "SUBMITTED");
  EXPECT_EQ(jstr(authorize(late).body, {"error_code"}), "SESSION_TOKEN_EXPIRED");
}

TEST(SimOptions, TokenLifetimeIsASetting) {
  auto load = [](std::vector<std::string> overrides) {
    return load_options(kpay::core::load_config(std::nullopt, overrides)).api.token_ttl_ms;
  };
  EXPECT_EQ(load({}), 60 * 60 * 1000);  // Klarna's 60 min
  EXPECT_EQ(load({"sim.token_ttl_ms=10800000"}), 3 * kHour);
  EXPECT_THROW(load({"sim.token_ttl_ms=0"}), kpay::core::ConfigError);
  EXPECT_THROW(load({"sim.token_ttl_ms=86400001"}), kpay::core::ConfigError);
}

TEST_F(ApiTest, AuthorizedTransactionExpiresOnceWhenDue) {
  auto tx = authorized_transaction();
  auto state = [&] {
    return jstr(call("GET", kAcct + "/payment/transactions/" + enc(tx)).body, {"state"});
  };
  auto expired_events = [&] {
    auto types = types_for(v2_hook);
    return std::count(types.begin(), types.end(), "payment.transaction.state-change.expired");
  };
  clock.advance(28 * 24 * kHour - 1000);
  api.tick();
  EXPECT_EQ(state(), "AUTHORIZED");
  clock.advance(1000);
  api.tick();
  EXPECT_EQ(state(), "EXPIRED");
  api.tick();
  EXPECT_EQ(expired_events(), 1);
}

TEST_F(ApiTest, CancelVoidDeclineAndStepUp) {
  auto id = create();
  auto canceled = call("DELETE", kAcct + "/payment/requests/" + enc(id));
  EXPECT_EQ(canceled.status, 200);
  EXPECT_EQ(jstr(canceled.body, {"payment_request_id"}), id);
  EXPECT_EQ(jstr(canceled.body, {"state"}), "CANCELED");
  EXPECT_EQ(jstr(canceled.body, {"state_reason"}), "PARTNER_CANCELED");
  auto again = call("DELETE", kAcct + "/payment/requests/" + enc(id));  // repeating: same answer
  EXPECT_EQ(again.status, 200);
  EXPECT_EQ(jstr(again.body, {"state"}), "CANCELED");
  EXPECT_EQ(jstr(call("GET", kAcct + "/payment/requests/" + enc(id)).body, {"state"}), "CANCELED");
  EXPECT_EQ(customer(id, "approve").status, 409);  // final

  auto done = create();
  ASSERT_EQ(customer(done, "approve").status, 200);
  auto too_late = call("DELETE", kAcct + "/payment/requests/" + enc(done));
  EXPECT_EQ(too_late.status, 409);
  EXPECT_EQ(jstr(too_late.body, {"error_code"}), "RESOURCE_CONFLICT");

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

  // STEP_UP only when step_up_config was sent (without it no customer can be asked).
  auto no_config =
      call("POST", kAcct + "/payment/authorize",
           R"({"currency":"EUR","request_payment_transaction":{"amount":500,"capture":"NOW"}})");
  ASSERT_EQ(no_config.status, 200);
  EXPECT_EQ(jstr(no_config.body, {"payment_transaction_response", "result"}), "DECLINED");
  auto step =
      call("POST", kAcct + "/payment/authorize",
           R"({"currency":"EUR","request_payment_transaction":{"amount":500,)"
           R"("capture":"NOW"},"step_up_config":{"payment_request_reference":"pr",)"
           R"("customer_interaction_config":{"method":"HANDOVER","return_url":"https://x"}}})");
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
  // The fee schedule's defaults: 30 + round(2.99 %) = 60, VAT round(25 %) = 15.
  EXPECT_EQ(jstr(s.body, {"totals", "total_sale_amount"}), "1000");
  EXPECT_EQ(jstr(s.body, {"totals", "total_settlement_amount"}), "925");
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
  EXPECT_EQ(guarded.authorization(), "Basic secret");
}

TEST(ApiAuth, DefaultKeyRequiredUnlessSwitchedOff) {
  SimClock c;
  SimApi api(ApiOptions{}, c, nullptr);
  auto refused =
      api.handle({"POST", kAcct + "/payment/requests", {}, R"({"currency":"USD","amount":1})"});
  EXPECT_EQ(refused.status, 401);
  EXPECT_EQ(jstr(refused.body, {"error_code"}), "UNAUTHORIZED");
  EXPECT_EQ(api.executions("payment.requests.create"), 0u);
  EXPECT_EQ(
      api.handle({"GET", "/v2/notification/webhooks", {{"authorization", "Basic x"}}, ""}).status,
      401);
  EXPECT_EQ(api.handle({"GET", "/v2/notification/webhooks", {{"authorization", kDefaultAuth}}, ""})
                .status,
            200);
  EXPECT_EQ(api.authorization(), kDefaultAuth);
  EXPECT_EQ(api.handle({"GET", "/_sim/state", {}, ""}).status, 200);  // /_sim: never
  // The key is not in the call log.
  EXPECT_EQ(api.handle({"GET", "/_sim/calls", {}, ""}).body.find("klarna-sim-api-key"),
            std::string::npos);

  ApiOptions off;
  off.require_auth = false;
  SimApi open_api(off, c, nullptr);
  EXPECT_EQ(open_api.handle({"GET", "/v2/notification/webhooks", {}, ""}).status, 200);
  EXPECT_EQ(open_api.authorization(), "");
}

TEST_F(ApiTest, CapturedAndRefundedEventsCarryTheOperation) {
  auto tx = authorized_transaction(1000);
  sink.deliveries.clear();
  auto cap = call("POST", kAcct + "/payment/transactions/" + enc(tx) + "/capture",
                  R"({"capture_amount":400,"payment_capture_reference":"c-1"})");
  ASSERT_EQ(cap.status, 201);
  auto capture_id = jstr(cap.body, {"payment_capture_id"});
  auto refund = call("POST", kAcct + "/payment/captures/" + enc(capture_id) + "/refund",
                     R"({"refund_amount":150,"payment_refund_reference":"r-1"})");
  ASSERT_EQ(refund.status, 201);
  std::string captured, refunded;
  for (const auto& d : sink.deliveries) {
    if (d.webhook_id != v2_hook) continue;
    if (d.event_type == "payment.transaction.captured") captured = d.body;
    if (d.event_type == "payment.transaction.refunded") refunded = d.body;
  }
  ASSERT_FALSE(captured.empty());
  EXPECT_EQ(jstr(captured, {"payload", "capture_amount"}), "400");
  EXPECT_EQ(jstr(captured, {"payload", "payment_capture_id"}), capture_id);
  EXPECT_EQ(jstr(captured, {"payload", "payment_capture_reference"}), "c-1");
  EXPECT_EQ(jstr(captured, {"payload", "amount"}), "1000");  // the authorized amount
  EXPECT_EQ(jstr(captured, {"payload", "captured_amount"}), "400");
  ASSERT_FALSE(refunded.empty());
  EXPECT_EQ(jstr(refunded, {"payload", "refund_amount"}), "150");
  EXPECT_EQ(jstr(refunded, {"payload", "payment_refund_id"}),
            jstr(refund.body, {"payment_refund_id"}));
  EXPECT_EQ(jstr(refunded, {"payload", "payment_capture_id"}), capture_id);
  EXPECT_EQ(jstr(refunded, {"payload", "refunded_amount"}), "150");

  // Capture NOW: the transaction is born COMPLETED; its captured event says how much.
  auto id = create(700);
  auto token =
      jstr(customer(id, "approve").body, {"state_context", "klarna_network_session_token"});
  sink.deliveries.clear();
  ASSERT_EQ(
      call("POST", kAcct + "/payment/authorize",
           R"({"currency":"USD","request_payment_transaction":{"amount":700,"capture":"NOW"}})",
           {{"klarna-network-session-token", token}})
          .status,
      200);
  ASSERT_FALSE(sink.deliveries.empty());
  EXPECT_EQ(sink.deliveries[0].event_type, "payment.transaction.captured");
  EXPECT_EQ(jstr(sink.deliveries[0].body, {"payload", "capture_amount"}), "700");
}

TEST_F(ApiTest, RequestReadsCarryTheTokensAClientMayHaveMissed) {
  auto v2 = create();
  ASSERT_EQ(customer(v2, "approve").status, 200);
  auto r2 = call("GET", kAcct + "/payment/requests/" + enc(v2));
  EXPECT_EQ(jstr(r2.body, {"state"}), "COMPLETED");
  EXPECT_EQ(jstr(r2.body, {"state_context", "klarna_network_session_token"})
                .rfind("krn:network:eu1:test:session-token:", 0),
            0u);
  auto v1 = create();
  ASSERT_EQ(customer(v1, "approve", "v1").status, 200);
  auto r1 = call("GET", kAcct + "/payment/requests/" + enc(v1));
  EXPECT_EQ(jstr(r1.body, {"state"}), "PENDING_CONFIRMATION");
  EXPECT_EQ(jstr(r1.body, {"state_context", "payment_confirmation_token"}).size(), 48u);
}

TEST_F(ApiTest, CallsRecordBodyAndHeadersButNeverTheCredentials) {
  auto id = create(1200);
  auto token =
      jstr(customer(id, "approve").body, {"state_context", "klarna_network_session_token"});
  std::string body =
      R"({"currency":"USD","request_payment_transaction":{"amount":1200,"capture":"LATER"}})";
  ASSERT_EQ(call("POST", kAcct + "/payment/authorize", body,
                 {{"klarna-network-session-token", token},
                  {"partner-correlation-id", "corr42"},
                  {"user-agent", "kpay-processor/1"},
                  {"klarna-integration-metadata", R"({"integrator":"kpay"})"},
                  {"content-type", "application/json"}})
                .status,
            200);
  auto calls = call("GET", "/_sim/calls?route=payment.authorize").body;
  EXPECT_EQ(calls.find("klarna-sim-api-key"), std::string::npos);
  simdjson::dom::parser p;
  simdjson::dom::element c;
  ASSERT_EQ(p.parse(calls)["calls"].at(0).get(c), simdjson::SUCCESS) << calls;
  std::string_view got_body, session, corr, agent, meta;
  ASSERT_EQ(c["body"].get_string().get(got_body), simdjson::SUCCESS);
  EXPECT_EQ(got_body, body);
  ASSERT_EQ(c["headers"]["klarna-network-session-token"].get_string().get(session),
            simdjson::SUCCESS);
  EXPECT_EQ(session, token);
  ASSERT_EQ(c["headers"]["partner-correlation-id"].get_string().get(corr), simdjson::SUCCESS);
  EXPECT_EQ(corr, "corr42");
  ASSERT_EQ(c["headers"]["user-agent"].get_string().get(agent), simdjson::SUCCESS);
  EXPECT_EQ(agent, "kpay-processor/1");
  ASSERT_EQ(c["headers"]["klarna-integration-metadata"].get_string().get(meta), simdjson::SUCCESS);
  EXPECT_EQ(meta, R"({"integrator":"kpay"})");
  EXPECT_EQ(c["headers"]["content-type"].error(), simdjson::NO_SUCH_FIELD);
  EXPECT_EQ(c["headers"]["authorization"].error(), simdjson::NO_SUCH_FIELD);
  bool mtls = true;
  ASSERT_EQ(c["mtls"].get_bool().get(mtls), simdjson::SUCCESS);
  EXPECT_FALSE(mtls);
}

TEST_F(ApiTest, ListsEveryPaymentRequestAndTransaction) {
  auto tx = authorized_transaction(900);
  ASSERT_EQ(call("POST", kAcct + "/payment/transactions/" + enc(tx) + "/capture",
                 R"({"capture_amount":300})")
                .status,
            201);
  auto pending = create(500);
  simdjson::dom::parser p;
  auto requests = call("GET", "/_sim/payment-requests").body;
  simdjson::dom::array rs;
  ASSERT_EQ(p.parse(requests)["payment_requests"].get_array().get(rs), simdjson::SUCCESS);
  ASSERT_EQ(rs.size(), 2u);
  std::string_view v;
  std::int64_t n = 0;
  ASSERT_EQ(rs.at(0)["state"].get_string().get(v), simdjson::SUCCESS);  // creation order
  EXPECT_EQ(v, "COMPLETED");
  ASSERT_EQ(rs.at(0)["payment_transaction_id"].get_string().get(v), simdjson::SUCCESS);
  EXPECT_EQ(v, tx);
  ASSERT_EQ(rs.at(1)["payment_request_id"].get_string().get(v), simdjson::SUCCESS);
  EXPECT_EQ(v, pending);
  ASSERT_EQ(rs.at(1)["amount"].get_int64().get(n), simdjson::SUCCESS);
  EXPECT_EQ(n, 500);
  ASSERT_EQ(rs.at(1)["currency"].get_string().get(v), simdjson::SUCCESS);
  EXPECT_EQ(v, "USD");

  auto transactions = call("GET", "/_sim/transactions").body;
  simdjson::dom::array ts;
  ASSERT_EQ(p.parse(transactions)["payment_transactions"].get_array().get(ts), simdjson::SUCCESS);
  ASSERT_EQ(ts.size(), 1u);
  auto t = ts.at(0);
  ASSERT_EQ(t["payment_transaction_id"].get_string().get(v), simdjson::SUCCESS);
  EXPECT_EQ(v, tx);
  ASSERT_EQ(t["state"].get_string().get(v), simdjson::SUCCESS);
  EXPECT_EQ(v, "AUTHORIZED");
  ASSERT_EQ(t["amount"].get_int64().get(n), simdjson::SUCCESS);
  EXPECT_EQ(n, 900);
  ASSERT_EQ(t["captured_amount"].get_int64().get(n), simdjson::SUCCESS);
  EXPECT_EQ(n, 300);
  ASSERT_EQ(t["refunded_amount"].get_int64().get(n), simdjson::SUCCESS);
  EXPECT_EQ(n, 0);
  ASSERT_EQ(t["payment_request_id"].get_string().get(v), simdjson::SUCCESS);
  EXPECT_FALSE(v.empty());

  // Both in one snapshot.
  auto both = call("GET", "/_sim/payments").body;
  simdjson::dom::element root;
  ASSERT_EQ(p.parse(both).get(root), simdjson::SUCCESS);
  EXPECT_EQ(root["payment_requests"].get_array().value_unsafe().size(), 2u) << both;
  EXPECT_EQ(root["payment_transactions"].get_array().value_unsafe().size(), 1u) << both;
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
  o.merchant_actions = true;  // self-driving: authorize / confirm and capture too
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

// The default scenario plays the customer (and the partner's start of a
// payment) only; an external caller's captures are what it disputes.
TEST(Scenarios, CustomerOnlyByDefaultAndDisputesWhatOthersCaptured) {
  SimClock clock;
  SimApi api(ApiOptions{}, clock, nullptr);
  ScenarioRunner runner(api);
  ScenarioOptions o;
  EXPECT_FALSE(o.merchant_actions);
  o.journeys = 12;
  o.rate_per_second = 100000;
  o.mix = parse_mix({"approve:2", "decline", "expire", "cancel", "step-up"});
  o.versions = {"v1", "v2"};
  o.disputes = 1;
  o.dispute_wait_ms = 20'000;
  ASSERT_TRUE(runner.start(o));

  // Play the merchant backend from outside: finalize and capture the first
  // COMPLETED request, reading its session token from a GET.
  auto handle = [&](const std::string& m, const std::string& path, const std::string& body = {},
                    std::map<std::string, std::string> h = {}) {
    h.emplace("authorization", kDefaultAuth);
    return api.handle({m, path, std::move(h), body});
  };
  std::string request_id;
  ASSERT_TRUE(kpay::test::wait_until([&] {
    simdjson::dom::parser p;
    simdjson::dom::array rs;
    if (p.parse(api.handle({"GET", "/_sim/payment-requests", {}, ""}).body)["payment_requests"]
            .get_array()
            .get(rs) != simdjson::SUCCESS)
      return false;
    for (auto r : rs) {
      std::string_view state, id;
      if (r["state"].get_string().get(state) == simdjson::SUCCESS && state == "COMPLETED" &&
          r["payment_request_id"].get_string().get(id) == simdjson::SUCCESS) {
        request_id = std::string(id);
        return true;
      }
    }
    return false;
  }));
  auto read = handle("GET", kAcct + "/payment/requests/" + enc(request_id));
  auto amount = jstr(read.body, {"amount"});
  auto token = jstr(read.body, {"state_context", "klarna_network_session_token"});
  auto auth = handle("POST", kAcct + "/payment/authorize",
                     R"({"currency":"USD","request_payment_transaction":{"amount":)" + amount +
                         R"(,"capture":"LATER"}})",
                     {{"klarna-network-session-token", token}});
  ASSERT_EQ(auth.status, 200) << auth.body;
  auto tx = jstr(auth.body,
                 {"payment_transaction_response", "payment_transaction", "payment_transaction_id"});
  ASSERT_EQ(handle("POST", kAcct + "/payment/transactions/" + enc(tx) + "/capture",
                   R"({"capture_amount":)" + amount + "}")
                .status,
            201);

  ASSERT_TRUE(kpay::test::wait_until([&] { return runner.finished_once() && !runner.running(); },
                                     std::chrono::seconds(30)));
  auto status = runner.status_json();
  EXPECT_EQ(jstr(status, {"counters", "journeys_ok"}), "12") << status;
  EXPECT_EQ(jstr(status, {"counters", "disputes_ok"}), "1") << status;
  EXPECT_NE(api.handle({"GET", "/_sim/state", {}, ""}).body.find(R"("disputes":{"CLOSED":1})"),
            std::string::npos);

  // The scenario itself never confirmed, finalized or captured: the one
  // authorization with a session token and the one capture are ours.
  auto execs = api.handle({"GET", "/_sim/executions", {}, ""}).body;
  EXPECT_EQ(jstr(execs, {"by_route", "payment.confirm"}), "<missing>") << execs;
  EXPECT_EQ(jstr(execs, {"by_route", "payment.transactions.capture"}), "1") << execs;
  // [approve, approve, decline, expire, cancel, step-up] × 2: two initial
  // authorizations (step-up) by the scenario, plus our final one.
  EXPECT_EQ(jstr(execs, {"by_route", "payment.authorize"}), "3") << execs;
  auto finals = api.handle({"GET", "/_sim/calls?route=payment.authorize", {}, ""}).body;
  simdjson::dom::parser p;
  simdjson::dom::array calls;
  ASSERT_EQ(p.parse(finals)["calls"].get_array().get(calls), simdjson::SUCCESS);
  int scenario_finals = 0;
  for (auto c : calls) {
    std::string_view agent;
    bool by_scenario = c["headers"]["user-agent"].get_string().get(agent) == simdjson::SUCCESS &&
                       agent == "klarna-sim-scenario";
    scenario_finals +=
        by_scenario && c["headers"]["klarna-network-session-token"].error() == simdjson::SUCCESS;
  }
  EXPECT_EQ(scenario_finals, 0) << finals;
  auto state = api.handle({"GET", "/_sim/state", {}, ""}).body;
  // 4 approve + 2 step-up requests wait, COMPLETED or PENDING_CONFIRMATION, for a merchant.
  EXPECT_EQ(std::stoi("0" + jstr(state, {"payment_requests", "COMPLETED"})) +
                std::stoi("0" + jstr(state, {"payment_requests", "PENDING_CONFIRMATION"})),
            6)
      << state;
}
