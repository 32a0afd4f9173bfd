// klarna-sim as strict as Klarna and as liberal as real clients need
// (docs/KLARNA-FIDELITY.md, "Commands and calls"): STEP_UP ids where real
// clients read them, step_up_config rules, sub-partner paths without an
// account, Klarna-Correlation-Id on every answer, the Interoperability API's
// sdk-tokens, and the thin answer modes.
#include <gtest/gtest.h>

#include "kpay/sim/api.hpp"
#include "test_helpers.hpp"

using namespace kpay::sim;
using kpay::sim::test::jstr;

namespace {

// A string or number at `path` (jstr says "<missing>" / "<not json>" otherwise).
bool present(const std::string& json, std::initializer_list<std::string_view> path) {
  const auto v = jstr(json, path);
  return !v.empty() && v.front() != '<';
}

const std::string kAcct = "/v2/accounts/krn%3Apartner%3Aglobal%3Aaccount%3Atest%3ASIMACCOUNT";
const std::string kStepUp =
    R"("step_up_config":{"payment_request_reference":"pr-1","customer_interaction_config":)"
    R"({"method":"HANDOVER","return_url":"https://partner.example/back"}})";

class SimFidelity : public ::testing::Test {
 protected:
  SimFidelity() : api(ApiOptions{}, clock, nullptr) {}
  ApiResponse call(const std::string& method, const std::string& path, const std::string& body = {},
                   std::map<std::string, std::string> headers = {}) {
    headers.emplace("authorization", "Basic klarna-sim-api-key");
    return api.handle(ApiRequest{method, path, std::move(headers), body});
  }
  static std::string header(const ApiResponse& r, std::string_view name) {
    for (const auto& [k, v] : r.headers) {
      if (k == name) return v;
    }
    return "";
  }
  static std::string authorization(std::int64_t amount, const std::string& extra = "") {
    return R"({"currency":"EUR","request_payment_transaction":{"amount":)" +
           std::to_string(amount) + R"(,"payment_transaction_reference":"ref","capture":"LATER"})" +
           extra + "}";
  }
  void answers(const std::string& mode) {
    ASSERT_EQ(call("POST", "/_sim/answers", R"({"mode":")" + mode + "\"}").status, 200);
  }

  SimClock clock{1};
  SimApi api;
};

TEST_F(SimFidelity, StepUpIdsAlsoUnderCustomerInteractionAndOnlyWithStepUpConfig) {
  auto declined = call("POST", kAcct + "/payment/authorize", authorization(700));
  EXPECT_EQ(jstr(declined.body, {"payment_transaction_response", "result"}), "DECLINED");
  auto step = call("POST", kAcct + "/payment/authorize", authorization(700, "," + kStepUp));
  ASSERT_EQ(step.status, 200) << step.body;
  const auto id = jstr(step.body, {"payment_request", "payment_request_id"});
  ASSERT_FALSE(id.empty() || id.front() == '<');
  EXPECT_EQ(jstr(step.body, {"payment_request", "state_context", "customer_interaction",
                             "payment_request_id"}),
            id);
  EXPECT_TRUE(present(step.body, {"payment_request", "state_context", "customer_interaction",
                                  "payment_request_url"}));
  EXPECT_EQ(jstr(step.body, {"payment_request", "payment_request_reference"}), "pr-1");
}

TEST_F(SimFidelity, FinalAuthorizationCarryingStepUpConfigIsAccepted) {
  auto step = call("POST", kAcct + "/payment/authorize", authorization(800, "," + kStepUp));
  const auto id = jstr(step.body, {"payment_request", "payment_request_id"});
  auto approved = call("POST", "/_sim/payment-requests/" + id + "/approve", R"({"flow":"v2"})");
  const auto token = jstr(approved.body, {"state_context", "klarna_network_session_token"});
  ASSERT_FALSE(token.empty() || token.front() == '<') << approved.body;
  auto final_auth = call("POST", kAcct + "/payment/authorize", authorization(800, "," + kStepUp),
                         {{"klarna-network-session-token", token}});
  EXPECT_EQ(final_auth.status, 200) << final_auth.body;
  EXPECT_EQ(jstr(final_auth.body, {"payment_transaction_response", "result"}), "APPROVED");
}

TEST_F(SimFidelity, SubPartnerPathsWithoutAnAccountAndCorrelationIdOnEveryAnswer) {
  auto approved = call("POST", "/v2/payment/authorize", authorization(900),
                       {{"klarna-customer-token", "ctok"}});
  ASSERT_EQ(approved.status, 200) << approved.body;
  EXPECT_FALSE(header(approved, "Klarna-Correlation-Id").empty());
  const auto tx = jstr(approved.body, {"payment_transaction_response", "payment_transaction",
                                       "payment_transaction_id"});
  auto read = call("GET", kAcct + "/payment/transactions/" + tx);
  EXPECT_EQ(read.status, 200) << "the sub-partner's transaction is the sim account's";
  auto step = call("POST", "/v2/payment/authorize", authorization(900, "," + kStepUp));
  const auto id = jstr(step.body, {"payment_request", "payment_request_id"});
  auto request = call("GET", "/v2/payment/requests/" + id);
  EXPECT_EQ(request.status, 200) << request.body;
  EXPECT_EQ(call("DELETE", "/v2/payment/requests/" + id).status, 200);
  auto missing = call("GET", "/v2/payment/requests/nope");
  EXPECT_EQ(missing.status, 404);
  EXPECT_FALSE(header(missing, "Klarna-Correlation-Id").empty()) << "errors carry it too";
  EXPECT_NE(header(missing, "Klarna-Correlation-Id"), header(approved, "Klarna-Correlation-Id"));
}

TEST_F(SimFidelity, SdkTokensForAWellFormedInteroperabilityToken) {
  const std::string path = kAcct + "/interoperability/sdk-tokens";
  auto ok = call("POST", path, "", {{"klarna-interoperability-token", "aGVhZA.cGF5bG9hZA.c2ln"}});
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_TRUE(present(ok.body, {"sdk_token"}));
  EXPECT_EQ(call("POST", path, "").status, 400);
  EXPECT_EQ(call("POST", path, "", {{"klarna-interoperability-token", "not-a-jwt"}}).status, 400);
}

TEST_F(SimFidelity, ThinAnswersCarryOnlyTheNewIds) {
  answers("thin");
  auto approved = call("POST", kAcct + "/payment/authorize", authorization(1000),
                       {{"klarna-customer-token", "ctok"}});
  const auto tx = jstr(approved.body, {"payment_transaction_response", "payment_transaction",
                                       "payment_transaction_id"});
  ASSERT_FALSE(tx.empty() || tx.front() == '<') << approved.body;
  EXPECT_FALSE(
      present(approved.body, {"payment_transaction_response", "payment_transaction", "amount"}));
  auto capture =
      call("POST", kAcct + "/payment/transactions/" + tx + "/capture", R"({"capture_amount":400})");
  ASSERT_EQ(capture.status, 201);
  EXPECT_EQ(capture.body.find("capture_amount"), std::string::npos) << capture.body;
  EXPECT_TRUE(present(capture.body, {"payment_capture_id"}));
  auto refund =
      call("POST", kAcct + "/payment/transactions/" + tx + "/refund", R"({"refund_amount":100})");
  ASSERT_EQ(refund.status, 201);
  EXPECT_EQ(refund.body.find("refund_amount"), std::string::npos) << refund.body;
  auto step = call("POST", kAcct + "/payment/authorize", authorization(500, "," + kStepUp));
  EXPECT_FALSE(present(step.body, {"payment_request", "payment_request_id"})) << step.body;
  EXPECT_TRUE(present(step.body, {"payment_request", "state_context", "customer_interaction",
                                  "payment_request_id"}));
  answers("bare");
  auto bare =
      call("POST", kAcct + "/payment/transactions/" + tx + "/capture", R"({"capture_amount":100})");
  EXPECT_EQ(bare.status, 201);
  EXPECT_EQ(bare.body, "{}");
  EXPECT_EQ(call("POST", "/_sim/answers", R"({"mode":"fat"})").status, 400);
}

}  // namespace
