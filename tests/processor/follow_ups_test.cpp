// The follow-up table (follow_ups.hpp): which call a request / transaction
// state asks for under which policy, and the outbox row each call becomes
// (method, path, token header, body, idempotency key). Keys must not depend
// on the path that decided the call: the webhook path (BatchApplier) and a
// direct decision (the outbox worker's path) give the same key.
#include <gtest/gtest.h>

#include <filesystem>

#include "child_process.hpp"
#include "kpay/core/config.hpp"
#include "kpay/core/log.hpp"
#include "kpay/processor/batch_applier.hpp"
#include "kpay/processor/follow_ups.hpp"
#include "kpay/storage/state_store.hpp"

using namespace kpay;
using namespace kpay::processor;

namespace {

constexpr std::string_view kAccount = "krn:partner:global:account:test:M1";

storage::PaymentRequestRow request(std::string_view state, bool priced = true,
                                   bool with_account = true) {
  storage::PaymentRequestRow r;
  r.id = "krn:payment:eu1:request:r1";
  r.state = std::string(state);
  if (priced) {
    r.amount = 11800;
    r.currency = "USD";
  }
  r.reference = "ref-123";
  if (with_account) r.account_id = std::string(kAccount);
  return r;
}

// One row of the request table.
struct RequestCase {
  const char* name;
  storage::PaymentRequestRow row;
  std::optional<std::string> session_token;
  bool legacy = false;
  std::optional<std::string> confirmation_token;
  bool exists = false;
  CapturePolicy policy = CapturePolicy::after_authorization;
  // Expected: "" = nothing; else the operation and the outbox row's parts.
  std::string operation;
  std::string method;
  std::string path;
  std::string token_header;
  std::string body;
  std::string key_discriminator;  // with (operation, request id)
};

FollowUpOrigin origin() {
  FollowUpOrigin o;
  o.account_id = std::string(kAccount);
  o.caused_by = "event-1";
  o.now_ms = 1000;
  o.due_by_ms = 5000;
  o.read_discriminator = "event-1";
  return o;
}

}  // namespace

TEST(FollowUps, RequestStateTable) {
  const std::string encoded_id = "krn%3Apayment%3Aeu1%3Arequest%3Ar1";
  // clang-format off
  const RequestCase cases[] = {
      {"v2 completed, policy after_authorization: final authorization, capture LATER",
       request("COMPLETED"), "kns", false, std::nullopt, false, CapturePolicy::after_authorization,
       "final_authorization", "POST", "/payment/authorize", "Klarna-Network-Session-Token",
       R"({"currency":"USD","request_payment_transaction":{"amount":11800,"payment_transaction_reference":"ref-123","capture":"LATER"}})",
       "kns"},
      {"v2 completed, policy now: capture NOW",
       request("COMPLETED"), "kns", false, std::nullopt, false, CapturePolicy::now,
       "final_authorization", "POST", "/payment/authorize", "Klarna-Network-Session-Token",
       R"({"currency":"USD","request_payment_transaction":{"amount":11800,"payment_transaction_reference":"ref-123","capture":"NOW"}})",
       "kns"},
      {"v2 completed with the legacy payment_token: its own header",
       request("COMPLETED"), "legacy-tok", true, std::nullopt, false, CapturePolicy::on_command,
       "final_authorization", "POST", "/payment/authorize", "Klarna-Payment-Token",
       R"({"currency":"USD","request_payment_transaction":{"amount":11800,"payment_transaction_reference":"ref-123","capture":"LATER"}})",
       "legacy-tok"},
      {"v1 pending confirmation: confirm, token in the path placeholder",
       request("PENDING_CONFIRMATION"), std::nullopt, false, "pct", false, CapturePolicy::after_authorization,
       "confirm", "POST", "/payment/confirmation-tokens/{token}/confirm", "",
       R"({"currency":"USD","payment_amount":11800,"payment_transaction_reference":"ref-123","config":{"capture":false}})",
       "pct"},
      {"v1 pending confirmation, policy now: capture true",
       request("PENDING_CONFIRMATION"), std::nullopt, false, "pct", false, CapturePolicy::now,
       "confirm", "POST", "/payment/confirmation-tokens/{token}/confirm", "",
       R"({"currency":"USD","payment_amount":11800,"payment_transaction_reference":"ref-123","config":{"capture":true}})",
       "pct"},
      {"completed without its token: read the request",
       request("COMPLETED"), std::nullopt, false, std::nullopt, false, CapturePolicy::now,
       "read_payment_request", "GET", "/payment/requests/" + encoded_id, "", "", "event-1"},
      {"pending confirmation without its token: read",
       request("PENDING_CONFIRMATION"), "kns", false, std::nullopt, false, CapturePolicy::now,
       "read_payment_request", "GET", "/payment/requests/" + encoded_id, "", "", "event-1"},
      {"completed without amount/currency: read, never a guessed price",
       request("COMPLETED", false), "kns", false, std::nullopt, false, CapturePolicy::now,
       "read_payment_request", "GET", "/payment/requests/" + encoded_id, "", "", "event-1"},
      {"the other generation's call exists: nothing",
       request("COMPLETED"), "kns", false, std::nullopt, true, CapturePolicy::now,
       "", "", "", "", "", ""},
      {"no account to call for: nothing",
       request("COMPLETED", true, false), "kns", false, std::nullopt, false, CapturePolicy::now,
       "", "", "", "", "", ""},
      {"a state that asks for nothing",
       request("IN_PROGRESS"), "kns", false, "pct", false, CapturePolicy::now,
       "", "", "", "", "", ""},
      {"v1 authorized: nothing",
       request("AUTHORIZED"), "kns", false, "pct", false, CapturePolicy::now,
       "", "", "", "", "", ""},
  };
  // clang-format on
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    FollowUpSettings s;
    s.capture_by_account[std::string(kAccount)] = c.policy;
    RequestContext ctx{c.row, c.session_token, c.legacy, c.confirmation_token, c.exists};
    const auto follow_ups = on_request_state(ctx, s);
    if (c.operation.empty()) {
      EXPECT_TRUE(follow_ups.empty());
      continue;
    }
    ASSERT_EQ(follow_ups.size(), 1u);
    EXPECT_EQ(operation_name(follow_ups[0]), c.operation);
    const auto row = outbox_row(follow_ups[0], origin());
    EXPECT_EQ(kpay::storage::to_string(row.operation), c.operation);
    EXPECT_EQ(row.method, c.method);
    EXPECT_EQ(row.path, c.path);
    EXPECT_EQ(row.token_header, c.token_header);
    EXPECT_EQ(row.request_body, c.body);
    EXPECT_EQ(row.entity_id, c.row.id);
    EXPECT_EQ(row.account_id, kAccount);
    EXPECT_EQ(row.created_by_event_id, "event-1");
    EXPECT_EQ(row.due_by_ms, 5000);
    EXPECT_EQ(row.created_at_ms, 1000);
    EXPECT_EQ(row.next_attempt_at_ms, 1000);
    EXPECT_EQ(row.idempotency_key, idempotency_key(c.operation, c.row.id, c.key_discriminator));
    EXPECT_EQ(row.request_body.find(row.call_token.empty() ? "\x01" : row.call_token),
              std::string::npos)
        << "the token is never in the body";
    if (c.operation != "read_payment_request") {
      EXPECT_EQ(row.call_token, c.key_discriminator);
      EXPECT_EQ(row.path.find(row.call_token), std::string::npos) << "nor in the stored path";
    }
  }
}

struct TransactionCase {
  const char* name;
  std::optional<std::string> state;
  std::optional<std::int64_t> amount;
  std::int64_t captured = 0;
  bool with_account = true;
  CapturePolicy policy = CapturePolicy::after_authorization;
  std::optional<std::int64_t> expected_capture;  // nullopt: no call
};

TEST(FollowUps, TransactionAuthorizedTable) {
  using CP = CapturePolicy;
  // clang-format off
  const TransactionCase cases[] = {
      {"authorized, nothing captured: capture all",     "AUTHORIZED", 1000, 0,    true,  CP::after_authorization, 1000},
      {"partly captured: capture the rest",             "AUTHORIZED", 1000, 400,  true,  CP::after_authorization, 600},
      {"state not learnt yet (an APPROVED answer)",     std::nullopt, 1000, 0,    true,  CP::after_authorization, 1000},
      {"fully captured: nothing",                       "AUTHORIZED", 1000, 1000, true,  CP::after_authorization, std::nullopt},
      {"amount unknown: nothing",                       "AUTHORIZED", std::nullopt, 0, true, CP::after_authorization, std::nullopt},
      {"policy now (captured at authorization)",        "AUTHORIZED", 1000, 0,    true,  CP::now,        std::nullopt},
      {"policy on_command",                             "AUTHORIZED", 1000, 0,    true,  CP::on_command, std::nullopt},
      {"no longer AUTHORIZED",                          "COMPLETED",  1000, 0,    true,  CP::after_authorization, std::nullopt},
      {"no account to call for",                        "AUTHORIZED", 1000, 0,    false, CP::after_authorization, std::nullopt},
  };
  // clang-format on
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    storage::PaymentTransactionRow t;
    t.id = "krn:payment:eu1:transaction:t1";
    t.state = c.state;
    t.amount = c.amount;
    t.captured_amount = c.captured;
    t.reference = "order-1";
    if (c.with_account) t.account_id = std::string(kAccount);
    FollowUpSettings s;
    s.default_capture = c.policy;
    const auto follow_ups = on_transaction_authorized(t, s);
    if (!c.expected_capture) {
      EXPECT_TRUE(follow_ups.empty());
      continue;
    }
    ASSERT_EQ(follow_ups.size(), 1u);
    const auto row = outbox_row(follow_ups[0], origin());
    EXPECT_EQ(row.operation, kpay::storage::OutboxOperation::capture);
    EXPECT_EQ(row.method, "POST");
    EXPECT_EQ(row.path, "/payment/transactions/krn%3Apayment%3Aeu1%3Atransaction%3At1/capture");
    EXPECT_EQ(row.request_body, R"({"capture_amount":)" + std::to_string(*c.expected_capture) +
                                    R"(,"payment_capture_reference":"order-1"})");
    EXPECT_EQ(row.token_header, "");
    EXPECT_EQ(row.entity_id, t.id);
    // The automatic capture's key: whatever the amount, whoever decided it.
    EXPECT_EQ(row.idempotency_key, idempotency_key("capture", t.id, "auto"));
    EXPECT_FALSE(row.command_id);
  }
}

TEST(FollowUps, ReadsAndCommandedCaptures) {
  auto o = origin();
  o.read_discriminator = "book";
  const auto cap = outbox_row(ReadCapture{"txn-1", "krn:capture:1"}, o);
  EXPECT_EQ(cap.operation, kpay::storage::OutboxOperation::read_capture);
  EXPECT_EQ(cap.method, "GET");
  EXPECT_EQ(cap.path, "/payment/captures/krn%3Acapture%3A1");
  EXPECT_EQ(cap.entity_id, "txn-1") << "booked into its transaction";
  EXPECT_EQ(cap.request_body, "");
  EXPECT_EQ(cap.idempotency_key, idempotency_key("read_capture", "krn:capture:1", "book"));
  const auto ref = outbox_row(ReadRefund{"txn-1", "r 1/x"}, o);
  EXPECT_EQ(ref.path, "/payment/refunds/r%201%2Fx");
  const auto txn = outbox_row(ReadTransaction{"txn-1", std::nullopt}, o);
  EXPECT_EQ(txn.path, "/payment/transactions/txn-1");
  EXPECT_EQ(txn.operation, kpay::storage::OutboxOperation::read_transaction);
  Capture commanded;
  commanded.payment_transaction_id = "txn-1";
  commanded.amount = 5;
  commanded.command_id = "cmd-7";
  const auto c = outbox_row(commanded, o);
  EXPECT_EQ(c.idempotency_key, idempotency_key("capture", "txn-1", "cmd-7"));
  EXPECT_EQ(c.command_id, "cmd-7");
  EXPECT_EQ(c.request_body, R"({"capture_amount":5})");
}

// The key format must never change: rows written by older binaries and
// Klarna's 24 h idempotency window depend on it.
TEST(FollowUps, IdempotencyKeyIsStable) {
  const auto key = idempotency_key("final_authorization", "req-1", "kns");
  EXPECT_EQ(key.rfind("kpay-final_authorization-", 0), 0u);
  EXPECT_EQ(key.size(), std::string("kpay-final_authorization-").size() + 32);
  EXPECT_EQ(key, idempotency_key("final_authorization", "req-1", "kns"));
  EXPECT_NE(key, idempotency_key("final_authorization", "req-1", "kns2"));
  EXPECT_NE(idempotency_key("a", "b\nc", ""), idempotency_key("a", "b", "c"));
  // The value itself, computed independently (Python's hashlib: the first
  // 16 bytes of SHA-256("final_authorization\nreq-1\nkns") in hex).
  EXPECT_EQ(key, "kpay-final_authorization-bba1f79a361e35b1d064abc57091652a");
}

TEST(FollowUps, SettingsFromConfig) {
  auto c = core::Config::from_string(R"(
[capture]
default = "on_command"
[capture.accounts]
"krn:partner:global:account:live:A" = "now"
"krn:partner:global:account:live:B" = "after_authorization"
[klarna]
environment = "live"
)");
  auto s = follow_up_settings_from_config(c);
  EXPECT_EQ(s.default_capture, CapturePolicy::on_command);
  EXPECT_EQ(s.capture_for("krn:partner:global:account:live:A"), CapturePolicy::now);
  EXPECT_EQ(s.capture_for("krn:partner:global:account:live:B"), CapturePolicy::after_authorization);
  EXPECT_EQ(s.capture_for("other"), CapturePolicy::on_command);
  EXPECT_TRUE(s.live);
  EXPECT_NO_THROW(c.reject_unknown_keys());

  auto defaults = follow_up_settings_from_config(core::Config());
  EXPECT_EQ(defaults.default_capture, CapturePolicy::after_authorization);
  EXPECT_FALSE(defaults.live);

  auto custom = core::Config::from_string("[klarna]\nenvironment = \"custom\"\nlive = true\n");
  EXPECT_TRUE(follow_up_settings_from_config(custom).live);

  auto key_of = [](std::string_view toml) {
    try {
      follow_up_settings_from_config(core::Config::from_string(toml));
    } catch (const core::ConfigError& e) {
      return e.key();
    }
    return std::string("(no error)");
  };
  EXPECT_EQ(key_of("[capture]\ndefault = \"later\"\n"), "capture.default");
  EXPECT_EQ(key_of("[capture.accounts]\nA = \"sometimes\"\n"), "capture.accounts.A");
  EXPECT_EQ(key_of("[klarna]\nenvironment = \"staging\"\n"), "klarna.environment");
  for (auto p : {CapturePolicy::now, CapturePolicy::after_authorization, CapturePolicy::on_command})
    EXPECT_EQ(parse_capture_policy(capture_policy_name(p)), p);
}

// The webhook path (an authorized event through the BatchApplier) and a
// direct decision on the stored row (what the worker does after an APPROVED
// answer) produce the same outbox key: one row, one capture.
TEST(FollowUps, WebhookAndDirectPathsGiveTheSameCaptureKey) {
  const auto dir = test::make_temp_dir("follow-ups");
  {
    storage::StateStore store(dir + "/state.db");
    BatchApplier applier(store, klarna::Topics{});
    const std::string body =
        R"({"metadata":{"event_type":"payment.transaction.state-change.authorized",)"
        R"("event_id":"a1","event_version":"v2","occurred_at":"2026-01-01T00:00:00Z",)"
        R"("subject_account_id":"krn:partner:global:account:test:M1","live":false},)"
        R"("payload":{"payment_transaction_id":"txn-1","amount":1000,"currency":"EUR"}})";
    InputMessage m{klarna::Topics{}.payment_transactions, 0, 0, "txn-1", body};
    applier.apply(std::span(&m, 1));
    auto webhook_rows = store.outbox("txn-1");
    ASSERT_EQ(webhook_rows.size(), 1u);

    auto t = store.find_transaction("txn-1");
    ASSERT_TRUE(t);
    const auto direct = on_transaction_authorized(*t, FollowUpSettings{});
    ASSERT_EQ(direct.size(), 1u);
    FollowUpOrigin o;
    o.account_id = *t->account_id;
    o.caused_by = "outbox:1";
    o.read_discriminator = "outbox:1";
    const auto row = outbox_row(direct[0], o);
    EXPECT_EQ(row.idempotency_key, webhook_rows[0].idempotency_key);
    EXPECT_EQ(row.request_body, webhook_rows[0].request_body);
    EXPECT_FALSE(store.insert_outbox(row)) << "the outbox keeps one row";
    EXPECT_EQ(store.outbox("txn-1").size(), 1u);
  }
  std::filesystem::remove_all(dir);
}
