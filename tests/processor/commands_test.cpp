// Downstream commands without Kafka: decoding (one row per rule of the
// contract), the interoperability token's shape, and the command applier
// through a BatchApplier on a real SQLite file (inbox, validation against the
// stored state, outbox rows, results on the publish queue).
#include <gtest/gtest.h>
#include <simdjson.h>

#include <filesystem>

#include "base64url.hpp"
#include "child_process.hpp"
#include "kpay/processor/batch_applier.hpp"
#include "kpay/processor/commands.hpp"
#include "kpay/processor/follow_ups.hpp"
#include "kpay/storage/state_store.hpp"

using namespace kpay;
using kpay::test::base64url;
using namespace kpay::processor;

namespace {

std::string jwt(std::string_view payload) {
  return base64url(R"({"alg":"ES256","typ":"JWT"})") + "." + base64url(payload) + "." +
         base64url("signature-bytes");
}

struct DecodeCase {
  const char* name;
  std::string body;
  std::string error;  // "" = decodes; else the reason's code
  std::string detail_contains = "";
};

std::vector<DecodeCase> decode_cases() {
  const std::string auth =
      R"("type":"authorize","partner_account_id":"acc","amount":100,"currency":"EUR",)"
      R"("payment_transaction_reference":"r","capture":"LATER")";
  return {
      {"not_json", "{not json", "not_json"},
      {"empty", "", "not_json"},
      {"array", "[1,2]", "not_object"},
      {"no_command_id", R"({"type":"void","payment_transaction_id":"t"})", "missing_command_id"},
      {"command_id_number", R"({"command_id":7,"type":"void"})", "bad_command_id"},
      {"command_id_too_long", R"({"command_id":")" + std::string(101, 'x') + R"(","type":"void"})",
       "bad_command_id"},
      {"no_type", R"({"command_id":"c"})", "missing_type"},
      {"unknown_type", R"({"command_id":"c","type":"explode"})", "unknown_type"},
      {"type_number", R"({"command_id":"c","type":5})", "unknown_type"},
      {"void_ok", R"({"command_id":"c","type":"void","payment_transaction_id":"t"})", ""},
      {"void_missing", R"({"command_id":"c","type":"void"})", "missing_field",
       "payment_transaction_id"},
      {"cancel_ok", R"({"command_id":"c","type":"cancel","payment_request_id":"r"})", ""},
      {"capture_all", R"({"command_id":"c","type":"capture","payment_transaction_id":"t"})", ""},
      {"capture_amount_string",
       R"({"command_id":"c","type":"capture","payment_transaction_id":"t","amount":"5"})",
       "bad_field", "amount"},
      {"capture_amount_zero",
       R"({"command_id":"c","type":"capture","payment_transaction_id":"t","amount":0})",
       "bad_field", "amount"},
      {"capture_data_not_object",
       R"({"command_id":"c","type":"capture","payment_transaction_id":"t",)"
       R"("supplementary_capture_data":[1]})",
       "bad_field", "supplementary_capture_data"},
      {"refund_no_id", R"({"command_id":"c","type":"refund","amount":5})", "missing_field"},
      {"refund_both_ids",
       R"({"command_id":"c","type":"refund","amount":5,"payment_transaction_id":"t",)"
       R"("payment_capture_id":"p"})",
       "bad_field"},
      {"refund_no_amount", R"({"command_id":"c","type":"refund","payment_capture_id":"p"})",
       "missing_field", "amount"},
      {"refund_ok", R"({"command_id":"c","type":"refund","payment_capture_id":"p","amount":5})",
       ""},
      {"authorize_ok", R"({"command_id":"c",)" + auth + "}", ""},
      {"authorize_bad_capture",
       R"({"command_id":"c","type":"authorize","partner_account_id":"acc","amount":100,)"
       R"("currency":"EUR","payment_transaction_reference":"r","capture":"SOON"})",
       "bad_field", "capture"},
      {"authorize_bad_currency",
       R"({"command_id":"c","type":"authorize","partner_account_id":"acc","amount":100,)"
       R"("currency":"euro","payment_transaction_reference":"r","capture":"NOW"})",
       "bad_field", "currency"},
      {"authorize_missing_account",
       R"({"command_id":"c","type":"authorize","amount":100,"currency":"EUR",)"
       R"("payment_transaction_reference":"r","capture":"NOW"})",
       "missing_field", "partner_account_id"},
      {"authorize_customer_token_with_newline",
       R"({"command_id":"c",)" + auth + R"(,"customer_token":"a\nb"})", "bad_field",
       "customer_token"},
      {"authorize_token_two_segments",
       R"({"command_id":"c",)" + auth + R"(,"interoperability_token":"abc.def"})",
       "bad_interoperability_token"},
      {"authorize_token_not_base64",
       R"({"command_id":"c",)" + auth + R"(,"interoperability_token":"a*c.def.ghi"})",
       "bad_interoperability_token"},
      {"authorize_token_payload_not_object",
       R"({"command_id":"c",)" + auth + R"(,"interoperability_token":")" + jwt("[1]") + "\"}",
       "bad_interoperability_token"},
      {"authorize_token_ok",
       R"({"command_id":"c",)" + auth + R"(,"interoperability_token":")" +
           jwt(R"({"status":"PAYMENT_SUPPORTED"})") + "\"}",
       ""},
      {"authorize_step_up_not_object", R"({"command_id":"c",)" + auth + R"(,"step_up_config":"x"})",
       "bad_field"},
      {"register_no_request",
       R"({"command_id":"c","type":"register","partner_account_id":"a","amount":1,)"
       R"("currency":"EUR","capture":"NOW"})",
       "missing_field", "payment_request_id or payment_request_reference"},
      {"register_ok",
       R"({"command_id":"c","type":"register","partner_account_id":"a","amount":1,)"
       R"("currency":"EUR","capture":"NOW","payment_request_reference":"ref"})",
       ""},
  };
}

TEST(Commands, DecodingFollowsTheContractTable) {
  for (const auto& c : decode_cases()) {
    SCOPED_TRACE(c.name);
    auto decoded = decode_command(c.body);
    if (c.error.empty()) {
      ASSERT_TRUE(std::holds_alternative<Command>(decoded))
          << std::get<CommandRejection>(decoded).reason();
      continue;
    }
    ASSERT_TRUE(std::holds_alternative<CommandRejection>(decoded));
    const auto& r = std::get<CommandRejection>(decoded);
    EXPECT_EQ(command_error_name(r.error), c.error) << r.reason();
    EXPECT_NE(r.reason().find(c.detail_contains), std::string::npos) << r.reason();
  }
}

TEST(Commands, TokensNeverAppearInReasons) {
  const std::string token = "eyJub3Q.secret-token-value.x";
  auto decoded = decode_command(
      R"({"command_id":"c","type":"authorize","partner_account_id":"acc","amount":100,)"
      R"("currency":"EUR","payment_transaction_reference":"r","capture":"LATER",)"
      R"("interoperability_token":")" +
      token + "\"}");
  ASSERT_TRUE(std::holds_alternative<CommandRejection>(decoded));
  EXPECT_EQ(std::get<CommandRejection>(decoded).reason().find("secret"), std::string::npos);
}

TEST(Commands, InteroperabilityStatusesByKlarnasFourNamesUnknownCountsAsSupported) {
  auto status = [](std::string_view payload) {
    auto r = check_interoperability_token(jwt(payload));
    EXPECT_TRUE(std::holds_alternative<InteroperabilityClaims>(r));
    return std::string(interoperability_status_name(std::get<InteroperabilityClaims>(r).status));
  };
  EXPECT_EQ(status(R"({"status":"SOMETHING_NEW"})"), "PAYMENT_SUPPORTED");
  EXPECT_EQ(status(R"({})"), "PAYMENT_SUPPORTED");
  EXPECT_EQ(status(R"({"status":"PAYMENT_NOT_SUPPORTED"})"), "PAYMENT_SUPPORTED");
  EXPECT_EQ(status(R"({"status":"PAYMENT_SUPPORTED"})"), "PAYMENT_SUPPORTED");
  EXPECT_EQ(status(R"({"status":"PAYMENT_UNSUPPORTED"})"), "PAYMENT_UNSUPPORTED");
  EXPECT_EQ(status(R"({"status":"PAYMENT_PREPARED"})"), "PAYMENT_PREPARED");
  EXPECT_EQ(status(R"({"status":"PAYMENT_PENDING_CONFIRMATION","payment_confirmation_token":"x"})"),
            "PAYMENT_PENDING_CONFIRMATION");
  auto pending = std::get<InteroperabilityClaims>(check_interoperability_token(
      jwt(R"({"status":"PAYMENT_PENDING_CONFIRMATION","payment_confirmation_token":"pct-1"})")));
  EXPECT_EQ(pending.payment_confirmation_token, "pct-1");
}

TEST(Commands, PendingConfirmationWithoutItsConfirmationTokenIsRejected) {
  auto decoded = decode_command(
      R"({"command_id":"c","type":"authorize","partner_account_id":"acc","amount":100,)"
      R"("currency":"EUR","payment_transaction_reference":"r","capture":"LATER",)"
      R"("interoperability_token":")" +
      jwt(R"({"status":"PAYMENT_PENDING_CONFIRMATION"})") + "\"}");
  ASSERT_TRUE(std::holds_alternative<CommandRejection>(decoded));
  EXPECT_EQ(std::get<CommandRejection>(decoded).error, CommandError::bad_interoperability_token);
}

// The exact JSON text received: escapes, number spellings, big integers, key order.
TEST(Commands, ForwardedObjectsKeepTheirExactJsonText) {
  const std::string object =
      R"({"z":"\u00e4\/x","a":10.50,"n":12345678901234567890,"e":1E+2,"s":[ 1 , {}]})";
  const std::string data = R"("d\u00e4ta \/ \"q\"")";
  auto decoded = decode_command(
      R"({"command_id":"c","type":"authorize","partner_account_id":"acc","amount":100,)"
      R"("currency":"EUR","payment_transaction_reference":"r","capture":"LATER",)"
      R"("supplementary_purchase_data":)" +
      object + R"(,"step_up_config": )" + object + R"( ,"request_customer_token":)" + object +
      R"(,"interoperability_data":)" + data + "}");
  ASSERT_TRUE(std::holds_alternative<Command>(decoded))
      << std::get<CommandRejection>(decoded).reason();
  const auto& a = std::get<AuthorizeCommand>(std::get<Command>(decoded).body);
  EXPECT_EQ(a.supplementary_purchase_data, object);
  EXPECT_EQ(a.step_up_config, object);
  EXPECT_EQ(a.request_customer_token, object);
  EXPECT_EQ(a.interoperability.data, data);
  const auto row = outbox_row(
      InitialAuthorization{
          .command_id = "c",
          .entity_id = "r",
          .amount = 100,
          .currency = "EUR",
          .reference = "r",
          .capture_now = false,
          .customer_token = std::nullopt,
          .step_up_config = a.step_up_config,
          .extras = {a.supplementary_purchase_data, std::nullopt, a.interoperability.data},
          .payment_option_id = std::nullopt,
          .request_customer_token = std::nullopt},
      FollowUpOrigin{});
  EXPECT_NE(row.request_body.find(R"("step_up_config":)" + object), std::string::npos)
      << row.request_body;
  EXPECT_NE(row.request_body.find(R"("interoperability_data":)" + data), std::string::npos)
      << row.request_body;
  auto capture =
      decode_command(R"({"command_id":"c","type":"capture","payment_transaction_id":"t",)"
                     R"("supplementary_capture_data":)" +
                     object + "}");
  ASSERT_TRUE(std::holds_alternative<Command>(capture));
  EXPECT_EQ(std::get<CaptureCommand>(std::get<Command>(capture).body).supplementary_capture_data,
            object);
}

TEST(Commands, ResendHasTheSameHashReuseDoesNot) {
  auto a = std::get<Command>(decode_command(R"({"command_id":"c","type":"void",
      "payment_transaction_id":"t"})"));
  auto b = std::get<Command>(
      decode_command(R"({"command_id":"c","type":"void","payment_transaction_id":"t"})"));
  auto c = std::get<Command>(
      decode_command(R"({"command_id":"c","type":"void","payment_transaction_id":"u"})"));
  EXPECT_EQ(a.body_hash, b.body_hash);  // whitespace does not matter
  EXPECT_NE(a.body_hash, c.body_hash);
}

// ---- the applier -------------------------------------------------------------------

class CommandApplierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::make_temp_dir("commands");
    store_.emplace(dir_ + "/state.db");
    applier_.emplace(*store_, topics_);
    storage::PaymentTransactionRow t;
    t.id = "txn-1";
    t.state = "AUTHORIZED";
    t.amount = 1000;
    t.currency = "EUR";
    t.account_id = "acc-1";
    t.last_event_id = "e0";
    store_->save_transaction(t);
  }
  void TearDown() override {
    applier_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Applies one command message; returns the results published.
  std::vector<std::string> send(const std::string& body) {
    InputMessage m{topics_.commands, 0, offset_++, "key-1", body};
    auto r = applier_->apply(std::span<const InputMessage>(&m, 1));
    std::vector<std::string> out;
    for (const auto& p : r.publications) {
      EXPECT_EQ(p.topic, topics_.command_results);
      EXPECT_EQ(p.key, "key-1");
      out.push_back(p.value);
    }
    return out;
  }
  static std::string field(const std::string& json, std::string_view key) {
    simdjson::dom::parser p;
    std::string_view v;
    if (p.parse(json)[key].get_string().get(v) != simdjson::SUCCESS) return "";
    return std::string(v);
  }
  std::string capture(const std::string& id, std::int64_t amount) {
    auto r = send(R"({"command_id":")" + id +
                  R"(","type":"capture","payment_transaction_id":"txn-1","amount":)" +
                  std::to_string(amount) + "}");
    EXPECT_EQ(r.size(), 1u);
    return r.empty() ? "" : r[0];
  }

  std::string dir_;
  klarna::Topics topics_;
  std::optional<storage::StateStore> store_;
  std::optional<BatchApplier> applier_;
  std::int64_t offset_ = 0;
};

TEST_F(CommandApplierTest, CapturesCountWhatIsAcceptedButNotExecuted) {
  EXPECT_EQ(field(capture("c1", 600), "status"), "accepted");
  const auto over = capture("c2", 500);  // 600 pending: 400 remain
  EXPECT_EQ(field(over, "status"), "rejected");
  EXPECT_NE(field(over, "reason").find("over_capture"), std::string::npos) << over;
  EXPECT_EQ(field(capture("c3", 400), "status"), "accepted");
  const auto rows = store_->outbox("txn-1");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].operation, kpay::storage::OutboxOperation::capture);
  EXPECT_EQ(rows[0].amount, 600);
  EXPECT_EQ(rows[0].command_id, "c1");
  EXPECT_EQ(store_->find_command("c2")->status, kpay::storage::CommandStatus::rejected);
}

TEST_F(CommandApplierTest, ResentCommandActsOnceAndReusedIdIsRejected) {
  EXPECT_EQ(capture("c1", 100).find("accepted") != std::string::npos, true);
  EXPECT_TRUE(send(R"({"command_id":"c1","type":"capture","payment_transaction_id":"txn-1",)"
                   R"("amount":100})")
                  .empty())
      << "a resend publishes nothing";
  const auto reused = capture("c1", 200);
  EXPECT_EQ(field(reused, "status"), "rejected");
  EXPECT_NE(field(reused, "reason").find("command_id_reused"), std::string::npos);
  EXPECT_EQ(store_->outbox("txn-1").size(), 1u);
  EXPECT_EQ(store_->find_command("c1")->status, kpay::storage::CommandStatus::accepted);
}

TEST_F(CommandApplierTest, RefundsAreBoundedByWhatWasCapturedAndNotRefunded) {
  storage::SubRecordRow cap{"capture", "cap-1", "txn-1", 300, "EUR", std::nullopt, 1, "e1"};
  store_->insert_sub_record(cap);
  auto t = *store_->find_transaction("txn-1");
  t.captured_amount = 300;
  store_->save_transaction(t);
  auto refund = [&](const std::string& id, std::int64_t amount) {
    auto r = send(R"({"command_id":")" + id +
                  R"(","type":"refund","payment_capture_id":"cap-1","amount":)" +
                  std::to_string(amount) + "}");
    return r.empty() ? std::string() : r[0];
  };
  EXPECT_EQ(field(refund("r1", 200), "status"), "accepted");
  const auto over = refund("r2", 101);
  EXPECT_EQ(field(over, "status"), "rejected");
  EXPECT_NE(field(over, "reason").find("over_refund"), std::string::npos) << over;
  EXPECT_EQ(field(refund("r3", 100), "status"), "accepted");
  const auto rows = store_->outbox("txn-1");
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].operation, kpay::storage::OutboxOperation::refund_capture);
  EXPECT_EQ(rows[0].path, "/payment/captures/cap-1/refund");
}

TEST_F(CommandApplierTest, BadCommandsAreRejectedAndTheBatchMovesOn) {
  auto r = send("not json at all");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(field(r[0], "status"), "rejected");
  EXPECT_EQ(field(r[0], "reason"), "not_json");
  r = send(R"({"command_id":"u1","type":"capture","payment_transaction_id":"unknown"})");
  EXPECT_NE(field(r.at(0), "reason").find("unknown payment_transaction_id"), std::string::npos);
  r = send(R"({"command_id":"v1","type":"void","payment_transaction_id":"txn-1"})");
  EXPECT_EQ(field(r.at(0), "status"), "accepted");
  EXPECT_EQ(store_->stored_offset(topics_.commands, 0), 3);
  EXPECT_EQ(store_->history("txn-1").size(), 1u);
}

TEST_F(CommandApplierTest, AuthorizeCarriesTokensAsHeadersAndDataAsSent) {
  const std::string token = jwt(R"({"status":"NEW_STATUS"})");
  const std::string data = R"(opaque "data" \ with ü and / slashes)";
  std::string escaped;
  for (char ch : data) {
    if (ch == '"' || ch == '\\') escaped += '\\';
    escaped += ch;
  }
  auto r = send(R"({"command_id":"a1","type":"authorize","partner_account_id":"acc-9",)"
                R"("amount":500,"currency":"EUR","payment_transaction_reference":"ref-a1",)"
                R"("capture":"LATER","customer_token":"ctok-1","interoperability_token":")" +
                token + R"(","interoperability_data":")" + escaped +
                R"(","step_up_config":{"payment_request_reference":"pr-1"}})");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(field(r[0], "status"), "accepted");
  EXPECT_EQ(field(r[0], "interoperability_status"), "PAYMENT_SUPPORTED");
  EXPECT_EQ(r[0].find("ctok"), std::string::npos);
  auto rows = store_->claim_due_outbox(std::numeric_limits<std::int64_t>::max(), 10);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].operation, kpay::storage::OutboxOperation::initial_authorization);
  const auto headers = token_headers(rows[0]);
  ASSERT_EQ(headers.size(), 2u);
  EXPECT_EQ(headers[0], (std::pair<std::string, std::string>{"Klarna-Customer-Token", "ctok-1"}));
  EXPECT_EQ(headers[1].second, token);
  simdjson::dom::parser p;
  auto body = p.parse(rows[0].request_body);
  std::string_view sent;
  ASSERT_EQ(body["interoperability"]["interoperability_data"].get_string().get(sent),
            simdjson::SUCCESS);
  EXPECT_EQ(sent, data);
  EXPECT_EQ(rows[0].request_body.find("ctok"), std::string::npos);
  EXPECT_NE(rows[0].request_body.find(R"("step_up_config":{"payment_request_reference")"),
            std::string::npos);
}

TEST_F(CommandApplierTest, ResultsReportTheTokenStatusByKlarnasNames) {
  int n = 0;
  for (std::string status : {"PAYMENT_UNSUPPORTED", "PAYMENT_PREPARED", "PAYMENT_SUPPORTED"}) {
    const auto id = "st-" + std::to_string(++n);
    auto r = send(R"({"command_id":")" + id +
                  R"(","type":"authorize","partner_account_id":"a",)"
                  R"("amount":5,"currency":"EUR","payment_transaction_reference":"r)" +
                  id + R"(","capture":"LATER","interoperability_token":")" +
                  jwt(R"({"status":")" + status + R"("})") + "\"}");
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(field(r[0], "interoperability_status"), status) << r[0];
  }
}

TEST_F(CommandApplierTest, PendingConfirmationIsQueuedAsOneConfirmKeyedByTheCommand) {
  const auto token =
      jwt(R"({"status":"PAYMENT_PENDING_CONFIRMATION","payment_confirmation_token":"pct-9"})");
  const std::string body =
      R"({"command_id":"pc-9","type":"authorize","partner_account_id":"a","amount":700,)"
      R"("currency":"EUR","payment_transaction_reference":"ref-9","capture":"NOW",)"
      R"("interoperability_token":")" +
      token + "\"}";
  auto r = send(body);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(field(r[0], "status"), "accepted");
  EXPECT_EQ(field(r[0], "interoperability_status"), "PAYMENT_PENDING_CONFIRMATION");
  EXPECT_TRUE(send(body).empty()) << "a resend acts once";
  auto rows = store_->claim_due_outbox(std::numeric_limits<std::int64_t>::max(), 10);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].operation, kpay::storage::OutboxOperation::confirm);
  EXPECT_EQ(rows[0].path, "/payment/confirmation-tokens/{token}/confirm");
  EXPECT_EQ(rows[0].call_token, "pct-9");
  EXPECT_EQ(rows[0].command_id, "pc-9");
  EXPECT_EQ(rows[0].idempotency_key, idempotency_key("confirm", "pc-9", ""));
  EXPECT_NE(rows[0].request_body.find(R"("payment_amount":700)"), std::string::npos);
  EXPECT_NE(rows[0].request_body.find(R"("capture":true)"), std::string::npos);
}

TEST_F(CommandApplierTest, SdkTokenIsOneInteroperabilityCallWithTheTokenInItsHeader) {
  const auto token = jwt(R"({"status":"PAYMENT_SUPPORTED"})");
  auto r = send(R"({"command_id":"sdk-1","type":"sdk_token","partner_account_id":"acc-1",)"
                R"("interoperability_token":")" +
                token + "\"}");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(field(r[0], "status"), "accepted");
  EXPECT_EQ(r[0].find(token), std::string::npos);
  auto rows = store_->claim_due_outbox(std::numeric_limits<std::int64_t>::max(), 10);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].operation, kpay::storage::OutboxOperation::sdk_token);
  EXPECT_EQ(rows[0].path, "/interoperability/sdk-tokens");
  EXPECT_EQ(rows[0].account_id, "acc-1");
  const auto headers = token_headers(rows[0]);
  ASSERT_EQ(headers.size(), 1u);
  EXPECT_EQ(headers[0].first, "Klarna-Interoperability-Token");
  EXPECT_EQ(headers[0].second, token);
  EXPECT_EQ(rows[0].request_body.find(token), std::string::npos);
}

}  // namespace

// ---- dispute commands ----------------------------------------------------------------

namespace kpay::processor {
namespace {

std::vector<DecodeCase> dispute_decode_cases() {
  const std::string one = R"("attachments":[{"payment_dispute_attachment_id":"att-1"}])";
  const std::string id = R"({"command_id":"c","payment_dispute_id":"d",)";
  return {
      {"accept_loss_ok",
       R"({"command_id":"c","type":"dispute_accept_loss","payment_dispute_id":"d"})", ""},
      {"accept_loss_no_id", R"({"command_id":"c","type":"dispute_accept_loss"})", "missing_field",
       "payment_dispute_id"},
      {"represent_ok",
       id + R"("type":"dispute_represent",)" + one + R"(,"additional_information":"why"})", ""},
      {"represent_with_description_and_refund",
       id + R"("type":"dispute_represent","attachments":[{"payment_dispute_attachment_id":"a",)"
            R"("description":"receipt"}],"partner_proposed_refund_amount":0})",
       ""},
      {"represent_no_attachments", id + R"("type":"dispute_represent"})", "missing_field",
       "attachments"},
      {"represent_empty_attachments", id + R"("type":"dispute_represent","attachments":[]})",
       "bad_field", "at least one"},
      {"represent_attachments_not_array",
       id + R"("type":"dispute_represent","attachments":"att-1"})", "bad_field", "array"},
      {"represent_attachment_without_id",
       id + R"("type":"dispute_represent","attachments":[{"description":"x"}]})", "bad_field",
       "payment_dispute_attachment_id"},
      {"represent_information_5000",
       id + R"("type":"dispute_represent",)" + one + R"(,"additional_information":")" +
           std::string(5000, 'x') + "\"}",
       ""},
      {"represent_information_5000_multibyte",
       id + R"("type":"dispute_represent",)" + one + R"(,"additional_information":")" +
           [] {
             std::string s;
             for (int i = 0; i < 5000; ++i) s += "\xC3\xA9";  // é: 5000 characters, 10000 bytes
             return s;
           }() +
           "\"}",
       ""},
      {"represent_information_5001",
       id + R"("type":"dispute_represent",)" + one + R"(,"additional_information":")" +
           std::string(5001, 'x') + "\"}",
       "bad_field", "additional_information"},
      {"represent_negative_refund",
       id + R"("type":"dispute_represent",)" + one + R"(,"partner_proposed_refund_amount":-1})",
       "bad_field", "partner_proposed_refund_amount"},
      {"appeal_information", id + R"("type":"dispute_appeal","additional_information":"x"})", ""},
      {"appeal_attachments", id + R"("type":"dispute_appeal",)" + one + "}", ""},
      {"appeal_nothing", id + R"("type":"dispute_appeal"})", "missing_field",
       "additional_information or attachments"},
      {"appeal_no_dispute",
       R"({"command_id":"c","type":"dispute_appeal","additional_information":"x"})",
       "missing_field", "payment_dispute_id"},
  };
}

TEST(DisputeCommands, DecodingFollowsTheContractTable) {
  for (const auto& c : dispute_decode_cases()) {
    SCOPED_TRACE(c.name);
    auto decoded = decode_command(c.body);
    if (c.error.empty()) {
      ASSERT_TRUE(std::holds_alternative<Command>(decoded))
          << std::get<CommandRejection>(decoded).reason();
      EXPECT_TRUE(is_dispute_command(std::get<Command>(decoded).type()));
      continue;
    }
    ASSERT_TRUE(std::holds_alternative<CommandRejection>(decoded));
    const auto& r = std::get<CommandRejection>(decoded);
    EXPECT_EQ(command_error_name(r.error), c.error) << r.reason();
    EXPECT_NE(r.reason().find(c.detail_contains), std::string::npos) << r.reason();
  }
}

TEST(DisputeCommands, PathPrefixIsConfigurable) {
  storage::OutboxRow row;
  row.account_id = "krn:partner:acc 1";
  row.path = "{disputes}/krn%3Ad/accept-loss";
  FollowUpSettings s;
  EXPECT_EQ(request_path(row, s),
            "/v2/accounts/krn%3Apartner%3Aacc%201/payment/disputes/krn%3Ad/accept-loss");
  s.dispute_path_prefix = "/v4/payment/disputes";
  EXPECT_EQ(request_path(row, s), "/v4/payment/disputes/krn%3Ad/accept-loss");
  row.path = "/payment/transactions/t/capture";  // other operations: unchanged
  EXPECT_EQ(request_path(row, s),
            "/v2/accounts/krn%3Apartner%3Aacc%201/payment/transactions/t/capture");
}

TEST(DisputeCommands, PrefixFromConfig) {
  auto config = [](const std::string& value) {
    return core::Config::from_string("[disputes]\napi_path_prefix = \"" + value + "\"\n");
  };
  EXPECT_EQ(follow_up_settings_from_config(config("/v4/payment/disputes")).dispute_path_prefix,
            "/v4/payment/disputes");
  EXPECT_THROW(follow_up_settings_from_config(config("v4/payment/disputes")), core::ConfigError);
  EXPECT_THROW(follow_up_settings_from_config(config("/v4/payment/disputes/")), core::ConfigError);
  EXPECT_EQ(follow_up_settings_from_config(core::Config()).dispute_path_prefix,
            "/v2/accounts/{account}/payment/disputes");
}

// The state rules, one row per (operation, stored state).
struct StateRule {
  const char* type;
  const char* state;
  bool accepted;
};
constexpr StateRule kStateRules[] = {
    {"dispute_accept_loss", "INITIATED", true},
    {"dispute_accept_loss", "PRE_ARBITRATION", true},
    {"dispute_accept_loss", "REPRESENTMENT", false},
    {"dispute_accept_loss", "ARBITRATION", false},
    {"dispute_accept_loss", "CLOSED", false},
    {"dispute_represent", "INITIATED", true},
    {"dispute_represent", "REPRESENTMENT", false},
    {"dispute_represent", "PRE_ARBITRATION", false},
    {"dispute_represent", "CLOSED", false},
    {"dispute_appeal", "PRE_ARBITRATION", true},
    {"dispute_appeal", "INITIATED", false},
    {"dispute_appeal", "REPRESENTMENT", false},
    {"dispute_appeal", "ARBITRATION", false},
    {"dispute_appeal", "CLOSED", false},
};

std::string dispute_command(const std::string& id, const std::string& type,
                            const std::string& dispute) {
  return R"({"command_id":")" + id + R"(","type":")" + type + R"(","payment_dispute_id":")" +
         dispute +
         R"(","attachments":[{"payment_dispute_attachment_id":"att-1","description":"receipt"}],)"
         R"("additional_information":"delivered on time"})";
}

class DisputeApplierTest : public CommandApplierTest {
 protected:
  void save_dispute(const std::string& id, std::optional<std::string> state,
                    std::string framework = "current", std::string txn = "txn-1") {
    storage::DisputeRow d;
    d.id = id;
    d.framework = kpay::storage::parse_dispute_framework(framework).value();
    d.state = std::move(state);
    d.payment_transaction_id = std::move(txn);
    d.last_event_id = "e-" + id;
    store_->save_dispute(d);
  }
  std::string one(const std::string& body) {
    auto r = send(body);
    EXPECT_EQ(r.size(), 1u);
    return r.empty() ? "" : r[0];
  }
};

TEST_F(DisputeApplierTest, StateIsCheckedAgainstTheStoredDisputeBeforeKlarna) {
  int n = 0;
  for (const auto& rule : kStateRules) {
    SCOPED_TRACE(std::string(rule.type) + " in " + rule.state);
    const std::string dispute = "dsp-" + std::to_string(++n);
    save_dispute(dispute, rule.state);
    const auto result = one(dispute_command("cmd-" + std::to_string(n), rule.type, dispute));
    EXPECT_EQ(field(result, "status"), rule.accepted ? "accepted" : "rejected") << result;
    EXPECT_EQ(field(result, "payment_dispute_id"), dispute);
    EXPECT_EQ(store_->outbox(dispute).size(), rule.accepted ? 1u : 0u);
    if (!rule.accepted) {
      EXPECT_NE(
          field(result, "reason").find(std::string("wrong_state: the dispute is ") + rule.state),
          std::string::npos)
          << result;
    }
  }
}

TEST_F(DisputeApplierTest, OutboxRowsAreKeyedByTheCommandUnderTheDisputePrefix) {
  save_dispute("krn:dsp:1", "INITIATED");
  EXPECT_EQ(field(one(dispute_command("rep-1", "dispute_represent", "krn:dsp:1")), "status"),
            "accepted");
  auto rows = store_->outbox("krn:dsp:1");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].operation, kpay::storage::OutboxOperation::dispute_represent);
  EXPECT_EQ(rows[0].method, "POST");
  EXPECT_EQ(rows[0].path, "{disputes}/krn%3Adsp%3A1/represent");
  EXPECT_EQ(rows[0].account_id, "acc-1") << "the dispute's transaction's account";
  EXPECT_EQ(rows[0].idempotency_key, idempotency_key("dispute_represent", "rep-1", ""));
  EXPECT_EQ(rows[0].command_id, "rep-1");
  EXPECT_EQ(rows[0].request_body,
            R"({"attachments":[{"payment_dispute_attachment_id":"att-1","description":"receipt"}],)"
            R"("additional_information":"delivered on time"})");
  // A second operation while this one is pending is refused (one at a time).
  const auto second = one(dispute_command("acc-loss-1", "dispute_accept_loss", "krn:dsp:1"));
  EXPECT_EQ(field(second, "status"), "rejected");
  EXPECT_NE(field(second, "reason").find("in progress"), std::string::npos) << second;
}

TEST_F(DisputeApplierTest, UnknownLegacyAndAccountlessDisputesAreRejected) {
  auto reason = [&](const std::string& id, const std::string& dispute) {
    return field(one(dispute_command(id, "dispute_accept_loss", dispute)), "reason");
  };
  EXPECT_EQ(reason("u1", "nope"), "unknown payment_dispute_id");
  save_dispute("legacy-1", "MERCHANT_EVIDENCE_PENDING", "legacy");
  EXPECT_NE(reason("u2", "legacy-1").find("legacy framework"), std::string::npos);
  save_dispute("no-state", std::nullopt);
  EXPECT_NE(reason("u3", "no-state").find("not known yet"), std::string::npos);
  save_dispute("no-account", "INITIATED", "current", "txn-unknown");
  EXPECT_NE(reason("u4", "no-account").find("account is not known"), std::string::npos);
  EXPECT_TRUE(store_->list_outbox(std::nullopt, 10).empty());
}

}  // namespace
}  // namespace kpay::processor
