// The JSON Schemas in schemas/ against the webhook fixtures, with a real
// validator (valijson), both ways: every fixture passes, broken ones fail.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <valijson/adapters/nlohmann_json_adapter.hpp>
#include <valijson/schema.hpp>
#include <valijson/schema_parser.hpp>
#include <valijson/validator.hpp>

#include "child_process.hpp"
#include "kpay/klarna/envelope.hpp"
#include "kpay/klarna/signature.hpp"

using nlohmann::json;

namespace {

json load(const std::string& path) {
  return json::parse(kpay::test::read_file(path));
}

class SchemaSet {
 public:
  const valijson::Schema& get(const std::string& name) {
    auto it = schemas_.find(name);
    if (it != schemas_.end()) return *it->second;
    auto doc = load(std::string(KPAY_SCHEMAS_DIR) + "/" + name);
    auto schema = std::make_unique<valijson::Schema>();
    valijson::SchemaParser parser;
    valijson::adapters::NlohmannJsonAdapter adapter(doc);
    parser.populateSchema(adapter, *schema);
    return *schemas_.emplace(name, std::move(schema)).first->second;
  }

 private:
  std::map<std::string, std::unique_ptr<valijson::Schema>> schemas_;
};

std::string validate(const valijson::Schema& schema, const json& doc) {
  valijson::Validator validator;
  valijson::ValidationResults results;
  valijson::adapters::NlohmannJsonAdapter target(doc);
  if (validator.validate(schema, target, &results)) return {};
  std::string why;
  valijson::ValidationResults::Error e;
  while (results.popError(e)) {
    for (const auto& c : e.context) why += c;
    why += ": " + e.description + "; ";
  }
  return why;
}

std::string payload_schema_for(const std::string& event_type) {
  switch (kpay::klarna::classify_event_type(event_type)) {
    case kpay::klarna::EventFamily::payment_request:
      return "payment-request-payload.schema.json";
    case kpay::klarna::EventFamily::payment_transaction:
      return "payment-transaction-payload.schema.json";
    case kpay::klarna::EventFamily::dispute:
      return "dispute-payload.schema.json";
    case kpay::klarna::EventFamily::settlement:
      return "settlement-payload.schema.json";
    case kpay::klarna::EventFamily::account:
      return "account-payload.schema.json";
    case kpay::klarna::EventFamily::unrouted:
      return {};
  }
  return {};
}

}  // namespace

TEST(Schemas, EveryFixtureMatchesTheEnvelopeAndItsPayloadSchema) {
  SchemaSet schemas;
  int checked = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::string(KPAY_FIXTURES_DIR) + "/webhooks")) {
    auto doc = load(entry.path().string());
    EXPECT_EQ(validate(schemas.get("webhook-envelope.schema.json"), doc), "")
        << entry.path().filename();
    auto payload_schema = payload_schema_for(doc["metadata"]["event_type"].get<std::string>());
    ASSERT_FALSE(payload_schema.empty()) << entry.path().filename();
    EXPECT_EQ(validate(schemas.get(payload_schema), doc["payload"]), "") << entry.path().filename();
    ++checked;
  }
  EXPECT_GE(checked, 70);
}

TEST(Schemas, BrokenDocumentsAreRejected) {
  SchemaSet schemas;
  const auto& envelope = schemas.get("webhook-envelope.schema.json");
  EXPECT_NE(validate(envelope, json::parse(R"({"payload":{}})")), "");
  EXPECT_NE(
      validate(envelope, json::parse(R"({"metadata":{"event_type":"a.b","event_version":"v2"}})")),
      "");
  EXPECT_NE(
      validate(
          envelope,
          json::parse(R"({"metadata":{"event_id":"x","event_type":"a.b","event_version":"v3"}})")),
      "");
  EXPECT_NE(
      validate(
          envelope,
          json::parse(
              R"({"metadata":{"event_id":"x","event_type":"a.b","event_version":"v2","live":"yes"}})")),
      "");
  EXPECT_EQ(
      validate(
          envelope,
          json::parse(
              R"({"metadata":{"event_id":"x","event_type":"a.b","event_version":"v2","unknown":1},"extra":true})")),
      "");
  EXPECT_NE(validate(schemas.get("payment-request-payload.schema.json"),
                     json::parse(R"({"payment_request_id":"r","amount":-1})")),
            "");
  EXPECT_NE(validate(schemas.get("dispute-payload.schema.json"), json::parse(R"({"state":"X"})")),
            "");
}

TEST(Schemas, KafkaMessageContract) {
  SchemaSet schemas;
  const auto& contract = schemas.get("kafka-message.schema.json");
  std::string body = R"({"metadata":{"event_id":"e","event_type":"a.b","event_version":"v2"}})";
  json msg = {{"topic", "klarna.unrouted"},
              {"key", "e"},
              {"value", body},
              {"headers",
               {{"klarna-event-id", "e"},
                {"klarna-event-type", "a.b"},
                {"klarna-event-version", "v2"},
                {"klarna-signing-key-id", "k"},
                {"klarna-signature", kpay::klarna::hmac_sha256_hex("s", body)},
                {"received-at", "2026-11-21T23:10:00.123Z"},
                {"content-type", "application/json"}}}};
  EXPECT_EQ(validate(contract, msg), "");
  json dead = msg;
  dead.erase("key");
  dead["headers"].erase("klarna-event-id");
  dead["headers"].erase("klarna-event-type");
  dead["headers"].erase("klarna-event-version");
  dead["headers"]["dead-letter-reason"] = "not_json";
  EXPECT_EQ(validate(contract, dead), "");
  json bad = msg;
  bad["headers"]["klarna-signature"] = "ABC";
  EXPECT_NE(validate(contract, bad), "");
  json no_key = msg;
  no_key.erase("key");
  EXPECT_NE(validate(contract, no_key), "");
}

TEST(Schemas, CommandsResultsAndPaymentStates) {
  SchemaSet schemas;
  const auto& command = schemas.get("command.schema.json");
  const std::string jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdGF0dXMiOiJYIn0.c2ln";
  for (const char* ok : {
           R"({"command_id":"c1","type":"capture","payment_transaction_id":"t"})",
           R"({"command_id":"c2","type":"refund","payment_capture_id":"p","amount":5})",
           R"({"command_id":"c3","type":"void","payment_transaction_id":"t"})",
           R"({"command_id":"c4","type":"cancel","payment_request_id":"r"})",
           R"({"command_id":"c5","type":"register","partner_account_id":"a","amount":1,
               "currency":"EUR","capture":"NOW","payment_request_reference":"ref"})",
       }) {
    EXPECT_EQ(validate(command, json::parse(ok)), "") << ok;
  }
  json authorize = json::parse(
      R"({"command_id":"c6","type":"authorize","partner_account_id":"a","amount":100,
          "currency":"EUR","payment_transaction_reference":"r","capture":"LATER",
          "customer_token":"tok","interoperability_data":"any \"string\""})");
  authorize["interoperability_token"] = jwt;
  EXPECT_EQ(validate(command, authorize), "");
  for (const char* bad : {
           R"({"type":"void","payment_transaction_id":"t"})",
           R"({"command_id":"c","type":"explode"})",
           R"({"command_id":"c","type":"capture"})",
           R"({"command_id":"c","type":"capture","payment_transaction_id":5})",
           R"({"command_id":"c","type":"refund","amount":5})",
           R"({"command_id":"c","type":"refund","amount":0,"payment_capture_id":"p"})",
       }) {
    EXPECT_NE(validate(command, json::parse(bad)), "") << bad;
  }
  authorize["interoperability_token"] = "not.a-jwt";
  EXPECT_NE(validate(command, authorize), "");

  const auto& result = schemas.get("command-result.schema.json");
  EXPECT_EQ(validate(result, json::parse(R"({"command_id":"c","type":"authorize",
      "status":"succeeded","result":"STEP_UP_REQUIRED","payment_request_id":"r",
      "payment_request_url":"https://x","occurred_at":"2026-12-01T10:00:00.000Z"})")),
            "");
  EXPECT_EQ(validate(result, json::parse(R"({"command_id":null,"type":null,"status":"rejected",
      "reason":"not_json","occurred_at":"2026-12-01T10:00:00.000Z"})")),
            "");
  EXPECT_NE(validate(result, json::parse(R"({"command_id":"c","type":"capture",
      "status":"failed","occurred_at":"2026-12-01T10:00:00.000Z"})")),
            "")
      << "failed needs a reason";

  const auto& state = schemas.get("payment-state.schema.json");
  EXPECT_EQ(validate(state, json::parse(R"({"entity_kind":"payment_transaction","entity_id":"t",
      "previous_state":"AUTHORIZED","state":"COMPLETED","event_id":"e",
      "event_type":"payment.transaction.captured","event_version":"v2",
      "occurred_at":"2026-12-01T10:00:00Z","captured_amount":100})")),
            "");
  EXPECT_EQ(validate(state, json::parse(R"({"entity_kind":"payment_transaction","entity_id":"t",
      "previous_state":null,"state":"AUTHORIZED","source":"klarna_api",
      "operation":"initial_authorization","caused_by":"outbox:7",
      "occurred_at":"2026-12-01T10:00:00.000Z"})")),
            "");
  EXPECT_NE(validate(state, json::parse(R"({"entity_kind":"payment_transaction","entity_id":"t",
      "previous_state":null,"state":"AUTHORIZED","occurred_at":"2026-12-01T10:00:00.000Z"})")),
            "")
      << "neither an event nor an API answer";
  // A failed payout's state change (record_applier.cpp).
  EXPECT_EQ(validate(state, json::parse(R"({"entity_kind":"payout","entity_id":"s",
      "previous_state":"PAYOUT_PROCESSED","state":"PAYOUT_FAILED","event_id":"e",
      "event_type":"settlement.payout.failed","event_version":"v2",
      "occurred_at":"2026-12-01T10:00:00Z","amount":5,"currency":"EUR","settlement_id":"s",
      "payout_id":"p","payout_failed":true})")),
            "");
}

// klarna.reconciliation: the shape processor::finding_message writes
// (tests/processor/settlements_test.cpp pins the writer to it).
TEST(Schemas, ReconciliationFindings) {
  SchemaSet schemas;
  const auto& finding = schemas.get("reconciliation-finding.schema.json");
  EXPECT_EQ(validate(finding, json::parse(R"({"finding_id":"amount_mismatch:s:c",
      "kind":"amount_mismatch","settlement_id":"s","subject":"c","ours":{"amount":1},
      "theirs":{"amount":2},"detail":"d","found_at_ms":5})")),
            "");
  EXPECT_EQ(validate(finding, json::parse(R"({"finding_id":"missing_in_settlement:c",
      "kind":"missing_in_settlement","settlement_id":null,"subject":"c","ours":{"amount":1},
      "theirs":{},"detail":"d","found_at_ms":5})")),
            "");
  EXPECT_EQ(validate(finding, json::parse(R"({"finding_id":"unexpected_in_settlement:s:d",
      "kind":"unexpected_in_settlement","settlement_id":"s","subject":"d","ours":{},
      "theirs":{"amount":2},"detail":"d","found_at_ms":5,"resolved_at_ms":6})")),
            "")
      << "a resolved finding";
  EXPECT_EQ(validate(finding, json::parse(R"({"finding_id":"unrecognised_line:s:line:4",
      "kind":"unrecognised_line","settlement_id":"s","subject":"line:4","ours":{},
      "theirs":{"type":"PARTNER_BONUS","amount":250},"detail":"d","found_at_ms":5})")),
            "")
      << "a line of a type the processor does not know";
  EXPECT_NE(validate(finding, json::parse(R"({"finding_id":"x:s:c","kind":"x",
      "settlement_id":"s","subject":"c","ours":{},"theirs":{},"detail":"d","found_at_ms":5})")),
            "")
      << "an unknown kind";
  EXPECT_NE(validate(finding, json::parse(R"({"finding_id":"amount_mismatch:s:c",
      "kind":"amount_mismatch","settlement_id":"s","subject":"c","ours":{},"detail":"d",
      "found_at_ms":5})")),
            "")
      << "both sides are required";
}
