// Downstream commands end to end, as separate processes over real sockets:
//   test → klarna.commands (embedded Kafka) → klarna-processor → outbox worker
//     → klarna-sim's API (HTTPS, Basic) → answer → state + klarna.command-results
// while the sim's webhooks reach the processor through klarna-receiver.
// One system serves the whole suite (process start and group joins cost
// seconds); each test uses its own command ids and payments.
#include <gtest/gtest.h>
#include <simdjson.h>
#include <sqlite3.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

#include "base64url.hpp"
#include "child_process.hpp"
#include "db_dump.hpp"
#include "e2e_system.hpp"
#include "http_client.hpp"
#include "kafka_reader.hpp"
#include "kpay/core/embedded_kafka.hpp"
#include "kpay/core/json_writer.hpp"
#include "kpay/core/kafka.hpp"
#include "kpay/klarna/envelope.hpp"
#include "kpay/processor/follow_ups.hpp"
#include "tls_cert.hpp"

using namespace kpay;
using namespace kpay::test;

namespace {

const std::string kKeyId = "krn:partner:global:notification:signing-key:cmd-0001";
const std::string kSecret = "cmd-signing-key-NOT-REAL";
const std::string kApiKey = "cmd-api-key-NOT-REAL";
const std::string kAccount = "krn:partner:global:account:test:CMDS0001";

std::string quoted(const std::string& s) {
  std::string out;
  core::append_json_string(out, s);
  return out;
}

class CommandsE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    system_ = new System({"commands-e2e", "commands", kKeyId, kSecret, kApiKey, {}});
    system_->start_receiver();
    system_->start_sim();
    system_->start_processor();
  }
  static void TearDownTestSuite() {
    system_->stop_processor();
    delete system_;
    system_ = nullptr;
  }

  static std::string authorize(const std::string& id, const std::string& reference,
                               std::int64_t amount, const std::string& extra) {
    return R"({"command_id":")" + id + R"(","type":"authorize","partner_account_id":")" + kAccount +
           R"(","amount":)" + std::to_string(amount) +
           R"(,"currency":"EUR","payment_transaction_reference":")" + reference +
           R"(","capture":"LATER")" + extra + "}";
  }
  // An authorize APPROVED (customer token): the transaction id.
  static std::string approved_transaction(const std::string& id, std::int64_t amount) {
    sys().send("ref-" + id,
               authorize(id, "ref-" + id, amount, R"(,"customer_token":"ctok-)" + id + R"(")"));
    auto r = sys().final_result(id);
    EXPECT_EQ(r.status, "succeeded") << r.raw;
    EXPECT_EQ(r.result, "APPROVED") << r.raw;
    return r.payment_transaction_id;
  }
  static Result command(const std::string& key, const std::string& json, const std::string& id) {
    sys().send(key, json);
    return sys().final_result(id);
  }
  static System& sys() { return *system_; }
  static System* system_;
};
System* CommandsE2E::system_ = nullptr;

std::string capture_cmd(const std::string& id, const std::string& txn,
                        std::optional<std::int64_t> amount) {
  return R"({"command_id":")" + id + R"(","type":"capture","payment_transaction_id":")" + txn +
         "\"" + (amount ? R"(,"amount":)" + std::to_string(*amount) : std::string()) + "}";
}
std::string refund_cmd(const std::string& id, const std::string& id_field, const std::string& of,
                       std::int64_t amount) {
  return R"({"command_id":")" + id + R"(","type":"refund",")" + id_field + R"(":")" + of +
         R"(","amount":)" + std::to_string(amount) + R"(,"reference":"refund-)" + id + "\"}";
}

TEST_F(CommandsE2E, AuthorizeApprovedForwardsTokensAndDataByteForByte) {
  const std::string token = base64url(R"({"alg":"ES256","kid":"k1"})") + "." +
                            base64url(R"({"status":"A_STATUS_NOBODY_KNOWS","sub":"x"})") + "." +
                            base64url("sig");
  const std::string data = "opaque \"interop\" data \\ with / slash, é and \t tab";
  auto json = authorize("auth-ok-1", "ref-auth-ok-1", 1000,
                        R"(,"customer_token":"ctok-secret-1","interoperability_token":)" +
                            quoted(token) + R"(,"interoperability_data":)" + quoted(data) +
                            R"(,"supplementary_purchase_data":{"purchase_reference":"p-1"})");
  sys().send("ref-auth-ok-1", json);
  const auto r = sys().final_result("auth-ok-1");
  EXPECT_EQ(r.status, "succeeded") << r.raw;
  EXPECT_EQ(r.result, "APPROVED");
  ASSERT_FALSE(r.payment_transaction_id.empty()) << r.raw;
  EXPECT_EQ(r.key, "ref-auth-ok-1") << "results go out under the command's key";
  const auto all = sys().results_for("auth-ok-1");
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].status, "accepted");
  EXPECT_NE(all[0].raw.find(R"("interoperability_status":"PAYMENT_SUPPORTED")"), std::string::npos)
      << "an unknown status counts as PAYMENT_SUPPORTED";

  // What Klarna's double received: the token and the data exactly as sent.
  const auto key = processor::idempotency_key("initial_authorization", "auth-ok-1", "");
  const auto calls = sys().calls_with_key("payment.authorize", key);
  ASSERT_EQ(calls.size(), 1u);
  simdjson::dom::parser p;
  simdjson::dom::element call = p.parse(calls[0]).value();
  EXPECT_EQ(str_at(call["headers"], "klarna-interoperability-token"), token);
  EXPECT_EQ(str_at(call["headers"], "klarna-customer-token"), "ctok-secret-1");
  simdjson::dom::parser body_parser;
  const std::string body_text = str_at(call, "body");
  simdjson::dom::element body = body_parser.parse(body_text).value();
  EXPECT_EQ(str_at(body["interoperability"], "interoperability_data"), data);
  EXPECT_EQ(str_at(body["supplementary_purchase_data"], "purchase_reference"), "p-1");

  // The transaction exists in the store, and no token reached the log.
  EXPECT_TRUE(wait_until(
      [&] {
        return query(sys().db(), "SELECT COUNT(*) FROM payment_transactions WHERE id = '" +
                                     r.payment_transaction_id +
                                     "' AND amount = 1000 AND state = 'AUTHORIZED'") == 1;
      },
      std::chrono::seconds(20)));
  const auto log = sys().processor_log();
  EXPECT_EQ(log.find("ctok-secret-1"), std::string::npos);
  EXPECT_EQ(log.find(token), std::string::npos);
}

TEST_F(CommandsE2E, PartialAndFullCaptureRefundsAndOverLimitsRejectedBeforeKlarna) {
  const auto txn = approved_transaction("auth-cap-1", 1000);
  ASSERT_FALSE(txn.empty());
  const auto captures_before = sys().executions_by_route("payment.transactions.capture");

  auto c1 = command(txn, capture_cmd("cap-1", txn, 400), "cap-1");
  EXPECT_EQ(c1.status, "succeeded") << c1.raw;
  ASSERT_FALSE(c1.payment_capture_id.empty()) << c1.raw;

  auto over = command(txn, capture_cmd("cap-over", txn, 700), "cap-over");
  EXPECT_EQ(over.status, "rejected");
  EXPECT_NE(over.reason.find("over_capture"), std::string::npos) << over.raw;

  auto r1 =
      command(txn, refund_cmd("ref-1", "payment_capture_id", c1.payment_capture_id, 150), "ref-1");
  EXPECT_EQ(r1.status, "succeeded") << r1.raw;
  EXPECT_FALSE(r1.payment_refund_id.empty());
  auto over_refund = command(
      txn, refund_cmd("ref-over", "payment_capture_id", c1.payment_capture_id, 300), "ref-over");
  EXPECT_EQ(over_refund.status, "rejected");
  EXPECT_NE(over_refund.reason.find("over_refund"), std::string::npos) << over_refund.raw;

  auto c2 = command(txn, capture_cmd("cap-rest", txn, std::nullopt), "cap-rest");  // all the rest
  EXPECT_EQ(c2.status, "succeeded") << c2.raw;
  auto r2 = command(txn, refund_cmd("ref-txn", "payment_transaction_id", txn, 100), "ref-txn");
  EXPECT_EQ(r2.status, "succeeded") << r2.raw;

  EXPECT_EQ(sys().executions_by_route("payment.transactions.capture") - captures_before, 2)
      << "the over-capture never reached Klarna";
  EXPECT_EQ(sys().executions_of(processor::idempotency_key("capture", txn, "cap-over")), 0);
  EXPECT_EQ(sys().executions_of(processor::idempotency_key("refund_capture", "ref-over", "")), 0);
  EXPECT_TRUE(wait_until(
      [&] {
        return query_text(sys().db(),
                          "SELECT state || ' ' || captured_amount || ' ' || refunded_amount "
                          "FROM payment_transactions WHERE id = '" +
                              txn + "'") == "COMPLETED 1000 250";
      },
      std::chrono::seconds(20)))
      << query_text(sys().db(),
                    "SELECT state || ' ' || captured_amount || ' ' || refunded_amount FROM "
                    "payment_transactions WHERE id = '" +
                        txn + "'");
  EXPECT_EQ(query(sys().db(),
                  "SELECT COUNT(*) FROM commands WHERE status = 'accepted' AND "
                  "entity_id = '" +
                      txn + "'"),
            0);
}

TEST_F(CommandsE2E, VoidClosesAnAuthorizedTransaction) {
  const auto txn = approved_transaction("auth-void-1", 500);
  ASSERT_FALSE(txn.empty());
  auto v = command(
      txn, R"({"command_id":"void-1","type":"void","payment_transaction_id":")" + txn + "\"}",
      "void-1");
  EXPECT_EQ(v.status, "succeeded") << v.raw;
  EXPECT_EQ(v.payment_transaction_id, txn);
  EXPECT_TRUE(wait_until(
      [&] {
        return query_text(sys().db(), "SELECT state FROM payment_transactions WHERE id = '" + txn +
                                          "'") == "CLOSED";
      },
      std::chrono::seconds(20)));
  auto again = command(txn, capture_cmd("cap-after-void", txn, 100), "cap-after-void");
  EXPECT_EQ(again.status, "rejected") << again.raw;
}

TEST_F(CommandsE2E, DeclinedIsSucceededWithResultDeclinedAndNoRetry) {
  auto r = command("ref-decline-1", authorize("auth-decline-1", "ref-decline-1", 700, ""),
                   "auth-decline-1");
  EXPECT_EQ(r.status, "succeeded") << r.raw;
  EXPECT_EQ(r.result, "DECLINED");
  const auto key = processor::idempotency_key("initial_authorization", "auth-decline-1", "");
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(sys().calls_with_key("payment.authorize", key).size(), 1u) << "never retried";
}

TEST_F(CommandsE2E, StepUpThenCustomerApprovesGivesOneFinalAuthorizationWithTheRegisteredContext) {
  auto r = command("ref-stepup-1",
                   authorize("auth-stepup-1", "ref-stepup-1", 2500,
                             R"(,"step_up_config":{"payment_request_reference":"pr-stepup-1",)"
                             R"("customer_interaction_config":{"method":"HANDOVER",)"
                             R"("return_url":"https://example.test/back"}})"),
                   "auth-stepup-1");
  EXPECT_EQ(r.status, "succeeded") << r.raw;
  EXPECT_EQ(r.result, "STEP_UP_REQUIRED");
  ASSERT_FALSE(r.payment_request_id.empty()) << r.raw;
  EXPECT_FALSE(r.payment_request_url.empty()) << r.raw;
  const auto pr = r.payment_request_id;

  // The partner registers the context the final authorization must use.
  auto reg = command(pr,
                     R"({"command_id":"reg-stepup-1","type":"register","partner_account_id":")" +
                         kAccount + R"(","payment_request_id":")" + pr +
                         R"(","amount":2500,"currency":"EUR","capture":"NOW",)"
                         R"("payment_transaction_reference":"registered-ref-1",)"
                         R"("supplementary_purchase_data":{"purchase_reference":"reg-p-1"}})",
                     "reg-stepup-1");
  EXPECT_EQ(reg.status, "succeeded") << reg.raw;

  // The customer completes in the sim; the payment continues by webhooks.
  const auto approved = sys().sim("POST", "/_sim/payment-requests/" + pr + "/approve", "{}");
  ASSERT_NE(approved.find("COMPLETED"), std::string::npos) << approved;
  ASSERT_TRUE(wait_until(
      [&] {
        return query(sys().db(),
                     "SELECT COUNT(*) FROM outbox WHERE operation = 'final_authorization' AND "
                     "entity_id = '" +
                         pr + "' AND status = 'succeeded'") == 1;
      },
      std::chrono::seconds(60)))
      << sys().processor_log();
  const auto key = query_text(sys().db(),
                              "SELECT idempotency_key FROM outbox WHERE operation = "
                              "'final_authorization' AND entity_id = '" +
                                  pr + "'");
  EXPECT_EQ(sys().executions_of(key), 1);
  const auto calls = sys().calls_with_key("payment.authorize", key);
  ASSERT_FALSE(calls.empty());
  simdjson::dom::parser p;
  const std::string body_text = str_at(p.parse(calls[0]).value(), "body");
  simdjson::dom::parser bp;
  simdjson::dom::element body = bp.parse(body_text).value();
  EXPECT_EQ(str_at(body["request_payment_transaction"], "payment_transaction_reference"),
            "registered-ref-1");
  EXPECT_EQ(str_at(body["request_payment_transaction"], "capture"), "NOW");
  EXPECT_EQ(str_at(body["supplementary_purchase_data"], "purchase_reference"), "reg-p-1");
  EXPECT_EQ(query(sys().db(),
                  "SELECT COUNT(*) FROM outbox WHERE operation = "
                  "'final_authorization' AND entity_id = '" +
                      pr + "'"),
            1);
}

TEST_F(CommandsE2E, CancelCancelsAStepUpRequest) {
  auto r = command("ref-cancel-1",
                   authorize("auth-cancel-1", "ref-cancel-1", 900,
                             R"(,"step_up_config":{"payment_request_reference":"pr-cancel-1",)"
                             R"("customer_interaction_config":{"method":"HANDOVER",)"
                             R"("return_url":"https://example.test/back"}})"),
                   "auth-cancel-1");
  ASSERT_EQ(r.result, "STEP_UP_REQUIRED") << r.raw;
  const auto pr = r.payment_request_id;
  // The request's webhooks must have arrived first (its account comes with them).
  ASSERT_TRUE(wait_until(
      [&] {
        return query(sys().db(), "SELECT COUNT(*) FROM payment_requests WHERE id = '" + pr +
                                     "' AND account_id IS NOT NULL") == 1;
      },
      std::chrono::seconds(30)));
  auto c =
      command(pr, R"({"command_id":"cancel-1","type":"cancel","payment_request_id":")" + pr + "\"}",
              "cancel-1");
  EXPECT_EQ(c.status, "succeeded") << c.raw;
  EXPECT_NE(sys().sim("GET", "/_sim/payment-requests").find("CANCELED"), std::string::npos);
  EXPECT_TRUE(wait_until(
      [&] {
        return query_text(sys().db(), "SELECT state FROM payment_requests WHERE id = '" + pr +
                                          "'") == "CANCELED";
      },
      std::chrono::seconds(20)));
}

TEST_F(CommandsE2E, BadCommandsAreRejectedWithAReasonAndThePartitionKeepsMoving) {
  const std::string key = "bad-commands-key";
  sys().send(key, "this is not json");
  sys().send(key, R"({"command_id":"bad-type","type":"explode"})");
  sys().send(key, R"({"command_id":"bad-missing","type":"capture"})");
  sys().send(key, R"({"command_id":"bad-wrong","type":"capture","payment_transaction_id":5})");
  sys().send(key, R"({"command_id":"bad-amount","type":"refund","payment_capture_id":"x",)"
                  R"("amount":"12"})");
  sys().send(key, authorize("after-bad", "ref-decline-after-bad", 100, ""));
  EXPECT_EQ(sys().final_result("after-bad").status, "succeeded") << "the partition moved on";
  EXPECT_NE(sys().final_result("bad-type").reason.find("unknown_type"), std::string::npos);
  EXPECT_NE(sys().final_result("bad-missing").reason.find("missing_field: payment_transaction_id"),
            std::string::npos);
  EXPECT_NE(sys().final_result("bad-wrong").reason.find("bad_field"), std::string::npos);
  EXPECT_NE(sys().final_result("bad-amount").reason.find("bad_field: amount"), std::string::npos);
  bool not_json = false;
  for (const auto& r : sys().results()) {
    not_json |= r.key == key && r.status == "rejected" && r.reason == "not_json";
  }
  EXPECT_TRUE(not_json);
}

TEST_F(CommandsE2E, SameCommandTwiceAndResentAfterSigkillActsOnceWithOneFinalResult) {
  const auto txn = approved_transaction("auth-dup-1", 1000);
  ASSERT_FALSE(txn.empty());
  // Delivered twice in a row.
  sys().send(txn, capture_cmd("dup-cap-1", txn, 100));
  sys().send(txn, capture_cmd("dup-cap-1", txn, 100));
  EXPECT_EQ(sys().final_result("dup-cap-1").status, "succeeded");
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_EQ(sys().results_for("dup-cap-1").size(), 2u) << "one accepted, one final";
  EXPECT_EQ(sys().executions_of(processor::idempotency_key("capture", txn, "dup-cap-1")), 1);

  // Klarna executes the capture and the answer is lost; the processor dies.
  sys().sim("POST", "/_sim/faults", R"({"rules":["payment.transactions.capture:drop-after:100"]})");
  const auto key = processor::idempotency_key("capture", txn, "kill-cap-1");
  sys().send(txn, capture_cmd("kill-cap-1", txn, 200));
  ASSERT_TRUE(wait_until([&] { return sys().executions_of(key) == 1; }, std::chrono::seconds(60)))
      << sys().processor_log();
  ASSERT_NO_FATAL_FAILURE(sys().kill_processor());
  sys().sim("POST", "/_sim/faults", R"({"rules":[]})");
  sys().start_processor();
  sys().send(txn, capture_cmd("kill-cap-1", txn, 200));  // the client resends
  EXPECT_EQ(sys().final_result("kill-cap-1").status, "succeeded");
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_EQ(sys().executions_of(key), 1) << "one Klarna operation across the crash";
  int finals = 0;
  for (const auto& r : sys().results_for("kill-cap-1")) finals += r.final();
  EXPECT_EQ(finals, 1);
  EXPECT_TRUE(wait_until(
      [&] {
        return query(sys().db(), "SELECT captured_amount FROM payment_transactions WHERE id = '" +
                                     txn + "'") == 300;
      },
      std::chrono::seconds(20)));
}

TEST_F(CommandsE2E, KlarnactlSendsTheSameCommandsAndWaitsForTheResult) {
  std::ofstream(sys().dir() + "/ctok") << "ctok-from-file\n";
  auto ctl = [&](std::vector<std::string> args) {
    // Signed as the harness's sender, with its key (docs/OPERATIONS.md, "Command senders").
    std::vector<std::string> argv{binary("tools/klarnactl"),
                                  "--set",
                                  "kafka.bootstrap_servers=" + sys().bootstrap(),
                                  "--set",
                                  "commands.senders_database=" + sys().senders_db(),
                                  "--set",
                                  std::string("commands.klarnactl_sender=") + System::kSender};
    argv.insert(argv.end(), args.begin(), args.end());
    const std::string log = sys().dir() + "/klarnactl-commands.log";
    std::filesystem::remove(log);
    ChildProcess p(argv, log);
    auto status = p.wait(std::chrono::seconds(90));
    return std::pair(status.value_or(-1), read_file(log));
  };
  auto [rc, out] = ctl({"authorize", "--account", kAccount, "--amount", "800", "--currency", "EUR",
                        "--reference", "ref-ctl-1", "--customer-token-file", sys().dir() + "/ctok",
                        "--command-id", "ctl-auth-1", "--wait", "--json"});
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find(R"("status":"accepted")"), std::string::npos) << out;
  EXPECT_NE(out.find(R"("result":"APPROVED")"), std::string::npos) << out;
  EXPECT_EQ(out.find("ctok-from-file"), std::string::npos);
  const auto txn = sys().final_result("ctl-auth-1").payment_transaction_id;
  ASSERT_FALSE(txn.empty());
  std::tie(rc, out) = ctl(
      {"capture", "--transaction", txn, "--amount", "300", "--command-id", "ctl-cap-1", "--wait"});
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("succeeded"), std::string::npos) << out;
  std::tie(rc, out) = ctl({"capture", "--transaction", txn, "--amount", "600", "--command-id",
                           "ctl-cap-over", "--wait"});
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("over_capture"), std::string::npos) << out;
  std::tie(rc, out) =
      ctl({"void", "--transaction", txn, "--command-id", "ctl-void-1", "--wait", "--json"});
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(sys().final_result("ctl-void-1").status, "succeeded");

  // The Interoperability API: the token from a file, to Klarna byte for byte.
  const std::string token = base64url(R"({"alg":"ES256"})") + "." +
                            base64url(R"({"status":"PAYMENT_SUPPORTED"})") + "." + base64url("s");
  std::ofstream(sys().dir() + "/itok") << token << "\n";
  std::tie(rc, out) = ctl({"interoperability", "sdk-token", "--account", kAccount, "--token-file",
                           sys().dir() + "/itok", "--command-id", "ctl-sdk-1", "--wait", "--json"});
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find(R"("sdk_token":"sim-sdk-token-)"), std::string::npos) << out;
  const auto key = processor::idempotency_key("sdk_token", "ctl-sdk-1", "");
  const auto calls = sys().calls_with_key("interoperability.sdk-tokens", key);
  ASSERT_EQ(calls.size(), 1u);
  simdjson::dom::parser p;
  EXPECT_EQ(str_at(p.parse(calls[0]).value()["headers"], "klarna-interoperability-token"), token);
  EXPECT_EQ(sys().processor_log().find(token), std::string::npos);
  const auto issued = out.find("sim-sdk-token-");
  ASSERT_NE(issued, std::string::npos);
  EXPECT_EQ(sys().processor_log().find(out.substr(issued, 30)), std::string::npos)
      << "the SDK token is never logged";
}

}  // namespace
