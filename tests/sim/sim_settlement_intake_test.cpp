// The sim's settlement.* webhooks read by the processor's own intake
// (decode_event → settlement_fields.cpp), unchanged: ids, the JSON and CSV
// report links, amounts, currency and dates arrive where the processor keeps
// them (docs/klarna/SETTLEMENTS.md "Compatibility with the processor's intake").
#include <gtest/gtest.h>

#include "kpay/processor/events.hpp"
#include "kpay/sim/api.hpp"
#include "test_helpers.hpp"

using namespace kpay::sim;
using kpay::sim::test::CapturingSink;
using kpay::sim::test::jstr;

namespace {

const std::string kAcct = "/v2/accounts/krn%3Apartner%3Aglobal%3Aaccount%3Atest%3ASIMACCOUNT";

struct SimInProcess {
  SimInProcess() : api(ApiOptions{}, clock, &sink) {
    api.add_signing_key("key-1", "example-signing-key-NOT-REAL");
    api.add_webhook("http://127.0.0.1:1/hook", {"settlement.*"}, "v2", "key-1");
    api.set_public_url("https://sim.example:8443/");
  }
  ApiResponse call(const std::string& method, const std::string& path, const std::string& body) {
    return api.handle(
        ApiRequest{method, path, {{"authorization", "Basic klarna-sim-api-key"}}, body});
  }
  SimClock clock{1};
  CapturingSink sink;
  SimApi api;
};

kpay::processor::Event decoded(const std::string& body) {
  auto r = kpay::processor::decode_event(body, false);
  if (auto* poison = std::get_if<kpay::processor::Poison>(&r)) {
    ADD_FAILURE() << poison->reason << ": " << poison->detail;
    return {};
  }
  return std::get<kpay::processor::Event>(r);
}

}  // namespace

TEST(SettlementIntake, ProcessorReadsTheSimsSettlementWebhooks) {
  SimInProcess sim;
  // With a customer token the sim approves an initial authorization at once.
  auto auth = sim.api.handle(ApiRequest{
      "POST",
      kAcct + "/payment/authorize",
      {{"authorization", "Basic klarna-sim-api-key"}, {"klarna-customer-token", "ct"}},
      R"({"currency":"EUR","request_payment_transaction":{"amount":4000,"capture":"NOW"}})"});
  ASSERT_EQ(auth.status, 200) << auth.body;
  auto made = sim.call("POST", "/_sim/settlements",
                       R"({"faults":[{"kind":"payout_mismatch","delta":-7}]})");
  ASSERT_EQ(made.status, 201) << made.body;
  const auto id = jstr(made.body, {"settlement_id"});
  const auto total = std::stoll(jstr(made.body, {"totals", "total_settlement_amount"}));
  const auto base = "https://sim.example:8443/v2/settlements/" + [&] {
    std::string out;
    for (char c : id) out += c == ':' ? std::string("%3A") : std::string(1, c);
    return out;
  }();
  EXPECT_EQ(jstr(made.body, {"links", "json_url"}), base);

  ASSERT_EQ(sim.sink.deliveries.size(), 2u);
  const auto report = decoded(sim.sink.deliveries[0].body);
  EXPECT_EQ(report.envelope.event_type, "settlement.report.created");
  EXPECT_EQ(report.envelope.entity_id, id);
  ASSERT_NE(report.payload.settlement, nullptr);
  const auto& f = *report.payload.settlement;
  EXPECT_EQ(f.routed_by, "settlement_id");
  EXPECT_EQ(f.settlement_id, id);
  EXPECT_EQ(f.payout_id, jstr(made.body, {"payout_id"}));
  EXPECT_EQ(f.report_json_url, base);
  EXPECT_EQ(f.report_csv_url, base + "/csv");
  EXPECT_EQ(f.payout_date, jstr(made.body, {"payout_date"}));
  EXPECT_EQ(f.period_start, jstr(made.body, {"interval_start"}));
  EXPECT_EQ(f.period_end, jstr(made.body, {"interval_end"}));
  EXPECT_EQ(report.payload.amount, total);
  EXPECT_EQ(report.payload.currency, "EUR");
  EXPECT_TRUE(std::holds_alternative<kpay::processor::SettlementReportTransition>(report.action));

  const auto payout = decoded(sim.sink.deliveries[1].body);
  EXPECT_EQ(payout.envelope.event_type, "settlement.payout.processed");
  EXPECT_EQ(payout.envelope.entity_id, id);
  EXPECT_EQ(payout.payload.amount, total - 7);  // the payout's own amount
  EXPECT_EQ(payout.payload.currency, "EUR");
  EXPECT_TRUE(std::holds_alternative<kpay::processor::PayoutTransition>(payout.action));

  ASSERT_EQ(
      sim.call("POST",
               "/_sim/settlements/" + std::string(base.substr(base.rfind('/') + 1)) + "/payout",
               R"({"status":"FAILED"})")
          .status,
      200);
  ASSERT_EQ(sim.sink.deliveries.size(), 3u);
  const auto failed = decoded(sim.sink.deliveries[2].body);
  EXPECT_EQ(failed.envelope.event_type, "settlement.payout.failed");
  EXPECT_EQ(failed.envelope.entity_id, id);
  EXPECT_TRUE(std::holds_alternative<kpay::processor::PayoutTransition>(failed.action));
}
