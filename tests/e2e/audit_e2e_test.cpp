// The audit trail as published on klarna.audit, end to end over real
// processes: commands executed, retried after 503s, failed, requeued by an
// operator (klarnactl actions retry --operator) and executed; a command
// refused for its signature. Every message read from the topic (embedded
// Kafka) must match schemas/audit-event.schema.json (valijson) and be one row
// of the database's audit_events, field for field, keyed as the contract says;
// every row is published.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validator.hpp>

#include "audit_trail.hpp"
#include "e2e_system.hpp"

using namespace kpay;
using namespace kpay::test;
using namespace std::chrono_literals;

namespace {

const std::string kKeyId = "krn:partner:global:notification:signing-key:audit-0001";
const std::string kSecret = "audit-signing-key-NOT-REAL";
const std::string kApiKey = "audit-api-key-NOT-REAL";
const std::string kAccount = "krn:partner:global:account:test:AUDIT001";

std::string authorize(const std::string& id, std::int64_t amount) {
  return R"({"command_id":")" + id + R"(","type":"authorize","partner_account_id":")" + kAccount +
         R"(","amount":)" + std::to_string(amount) +
         R"(,"currency":"EUR","payment_transaction_reference":"ref-)" + id +
         R"(","capture":"LATER","customer_token":"ctok-)" + id + "\"}";
}
std::string capture(const std::string& id, const std::string& txn, std::int64_t amount) {
  return R"({"command_id":")" + id + R"(","type":"capture","payment_transaction_id":")" + txn +
         R"(","amount":)" + std::to_string(amount) + "}";
}

// Why `doc` does not match the audit event schema; empty when it does.
std::string schema_errors(const std::string& doc) {
  static const auto schema = [] {
    auto s = std::make_unique<valijson::Schema>();
    const auto json = nlohmann::json::parse(
        read_file(std::string(KPAY_SCHEMAS_DIR) + "/audit-event.schema.json"));
    valijson::SchemaParser parser;
    valijson::adapters::NlohmannJsonAdapter adapter(json);
    parser.populateSchema(adapter, *s);
    return s;
  }();
  nlohmann::json parsed = nlohmann::json::parse(doc, nullptr, false);
  if (parsed.is_discarded()) return "not JSON";
  valijson::Validator validator;
  valijson::ValidationResults results;
  valijson::adapters::NlohmannJsonAdapter target(parsed);
  if (validator.validate(*schema, target, &results)) return {};
  std::string why;
  valijson::ValidationResults::Error e;
  while (results.popError(e)) {
    for (const auto& c : e.context) why += c;
    why += ": " + e.description + "; ";
  }
  return why;
}

TEST(AuditTopic, EveryRowIsPublishedMatchingTheSchemaAndTheDatabase) {
  // A schema that catches nothing would pass anything: it must refuse these.
  EXPECT_NE(schema_errors(R"({"seq":1,"at":"2026-12-07T00:00:00.000Z","kind":"refunded",)"
                          R"("status":"x"})"),
            "");
  EXPECT_NE(schema_errors(R"({"seq":1,"at":"2026-12-07T00:00:00.000Z","kind":"operator",)"
                          R"("status":"requeued","secret":"x"})"),
            "");

  System sys({"audit-e2e", "audit", kKeyId, kSecret, kApiKey, {}});
  ASSERT_NO_FATAL_FAILURE(sys.start_receiver());
  ASSERT_NO_FATAL_FAILURE(sys.start_sim());
  sys.start_processor({"--set", "worker.max_attempts=2"});

  sys.send("ref-aud-auth", authorize("aud-auth", 1000));
  const auto authorized = sys.final_result("aud-auth");
  ASSERT_EQ(authorized.result, "APPROVED") << authorized.raw;
  const auto txn = authorized.payment_transaction_id;

  // Klarna answers every capture 503: two attempts, then failed.
  sys.sim("POST", "/_sim/faults", R"({"rules":["payment.transactions.capture:503:100"]})");
  sys.send(txn, capture("aud-capture", txn, 1000));
  EXPECT_EQ(sys.final_result("aud-capture").status, "failed");
  sys.sim("POST", "/_sim/faults", R"({"rules":[]})");
  const auto call =
      std::to_string(query(sys.db(), "SELECT id FROM outbox WHERE command_id = 'aud-capture'"));
  auto [rc, out] = sys.ctl({"--operator", "ops-tess", "actions", "retry", call});
  ASSERT_EQ(rc, 0) << out;
  ASSERT_TRUE(wait_until(
      [&] {
        return query(sys.db(), "SELECT COUNT(*) FROM outbox WHERE id = " + call +
                                   " AND status = 'succeeded'") == 1;
      },
      60s))
      << sys.processor_log();

  // Refused for its signature (unsigned).
  sys.send_with_headers(txn, capture("aud-unsigned", txn, 1), {});
  EXPECT_EQ(sys.final_result("aud-unsigned").status, "rejected");
  ASSERT_TRUE(wait_until(
      [&] {
        return query(sys.db(),
                     "SELECT COUNT(*) FROM outbox WHERE status IN ('pending', 'in_flight')") == 0;
      },
      60s));

  const auto rows = audit_rows(sys.db());
  const auto messages = read_audit_topic(sys.bootstrap(), "klarna.audit", 2, rows, 60s);
  EXPECT_EQ(compare_audit_topic(messages, rows), "");
  std::set<std::string> kinds;
  for (const auto& m : messages) {
    EXPECT_EQ(schema_errors(m.value), "") << m.value;
    kinds.insert(nlohmann::json::parse(m.value).value("kind", ""));
  }
  EXPECT_EQ(kinds, (std::set<std::string>{"command", "refused", "call_queued", "attempt", "outcome",
                                          "operator"}));
  // The capture's call, in order: queued, a 503 to retry, failed, requeued by
  // ops-tess, executed.
  std::vector<std::string> trail;
  for (const auto& r : rows) {
    if (r.text.at("outbox_id").value_or("") != call) continue;
    trail.push_back(r.text.at("kind").value_or("") + " " + r.text.at("status").value_or("") + " " +
                    r.text.at("klarna_status").value_or("-") + " " +
                    r.text.at("operator").value_or("-"));
  }
  EXPECT_EQ(trail, (std::vector<std::string>{"call_queued pending - -", "attempt pending 503 -",
                                             "outcome failed 503 -", "operator requeued - ops-tess",
                                             "outcome succeeded 201 -"}));
  // Two operations executed at the sim, each one executed outcome.
  std::map<std::string, std::int64_t> executions;
  for (const std::string id : {"aud-auth", "aud-capture"}) {
    const auto key =
        query_text(sys.db(), "SELECT idempotency_key FROM outbox WHERE command_id = '" + id + "'");
    executions[key] = sys.executions_of(key);
  }
  std::size_t executed = 0;
  EXPECT_EQ(compare_executed_outcomes(sys.db(), executions, executed), "");
  EXPECT_EQ(executed, 2u);
  sys.stop_processor();
}

}  // namespace
