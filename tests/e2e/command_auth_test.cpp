// Who may move money, end to end over real processes: signed commands
// (kpay-sender / kpay-signature), per-sender permissions, the age limit and
// the audit trail. test → klarna.commands (embedded Kafka) → klarna-processor
// → klarna-sim (HTTPS); every refusal is checked at the sim: nothing executed.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <regex>

#include "e2e_system.hpp"
#include "kpay/core/log.hpp"
#include "kpay/core/wall_clock.hpp"
#include "kpay/processor/follow_ups.hpp"

using namespace kpay;
using namespace kpay::test;

namespace {

const std::string kKeyId = "krn:partner:global:notification:signing-key:auth-0001";
const std::string kSecret = "auth-signing-key-NOT-REAL";
const std::string kApiKey = "auth-api-key-NOT-REAL";
const std::string kAccount = "krn:partner:global:account:test:AUTH0001";
const std::string kOtherAccount = "krn:partner:global:account:test:OTHER001";
const std::string kRotatorSecret1 = "rotator-secret-one-0123456789";
const std::string kRotatorSecret2 = "rotator-secret-two-0123456789";
const std::string kRefundsSecret = "refunds-secret-0123456789abcdef";
const std::string kLimitedSecret = "limited-secret-0123456789abcdef";

const std::string kPolicy = R"(
[commands.max_age_s]
authorize = 60
[senders.refunds]
commands = ["refund"]
partner_accounts = ["*"]
[senders.rotator]
commands = ["*"]
partner_accounts = ["*"]
[senders.limited]
commands = ["authorize", "capture"]
partner_accounts = [")" + kAccount +
                            R"("]
[senders.limited.limits.EUR]
per_command = 1000
per_day = 1500
)";

using kpay::core::now_ms;

std::string authorize(const std::string& id, std::int64_t amount,
                      const std::string& account = kAccount, const std::string& extra = "") {
  return R"({"command_id":")" + id + R"(","type":"authorize","partner_account_id":")" + account +
         R"(","amount":)" + std::to_string(amount) +
         R"(,"currency":"EUR","payment_transaction_reference":"ref-)" + id +
         R"(","capture":"LATER","customer_token":"ctok-)" + id + "\"" + extra + "}";
}
std::string capture(const std::string& id, const std::string& txn, std::int64_t amount) {
  return R"({"command_id":")" + id + R"(","type":"capture","payment_transaction_id":")" + txn +
         R"(","amount":)" + std::to_string(amount) + "}";
}

class CommandAuthE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    SystemOptions o{"auth-e2e", "auth", kKeyId,  kSecret,
                    kApiKey,    {},     kPolicy, R"(, "refunds", "rotator", "limited")"};
    system_ = new System(o);
    system_->start_receiver();
    system_->start_sim();
    system_->start_processor();
    system_->add_sender_key("refunds", "r1", kRefundsSecret);
    system_->add_sender_key("rotator", "k1", kRotatorSecret1);
    system_->add_sender_key("limited", "l1", kLimitedSecret);
    reload();
  }
  static void TearDownTestSuite() {
    system_->stop_processor();
    delete system_;
    system_ = nullptr;
  }
  static System& sys() { return *system_; }

  // SIGHUP, then waits until the processor has reloaded (the keys are read
  // after the signal, so every change made before it is in).
  static void reload() {
    const auto done = [] {
      const auto log = sys().processor_log();
      std::size_t n = 0;
      for (auto at = log.find("SIGHUP: reload done"); at != std::string::npos;
           at = log.find("SIGHUP: reload done", at + 1)) {
        ++n;
      }
      return n;
    };
    // Not before the processor handles signals (a SIGHUP before main() kills it).
    ASSERT_TRUE(wait_until(
        [] { return sys().processor_log().find("partitions assigned") != std::string::npos; },
        std::chrono::seconds(60)))
        << sys().processor_log();
    const auto before = done();
    sys().processor()->signal(SIGHUP);
    ASSERT_TRUE(wait_until([&] { return done() > before; }, std::chrono::seconds(20)))
        << sys().processor_log();
  }
  // A transaction authorized (APPROVED) by the harness's sender.
  static std::string approved(const std::string& id, std::int64_t amount) {
    sys().send("ref-" + id, authorize(id, amount));
    auto r = sys().final_result(id);
    EXPECT_EQ(r.result, "APPROVED") << r.raw;
    return r.payment_transaction_id;
  }
  // The one result of a refused command: rejected with `reason` first.
  static void expect_refused_once(const std::string& id, const std::string& reason) {
    const auto r = sys().final_result(id);
    EXPECT_EQ(r.status, "rejected") << r.raw;
    EXPECT_EQ(r.reason.rfind(reason, 0), 0u) << r.raw;
    // results_for(): every result of `id` read so far.
    EXPECT_EQ(sys().results_for(id).size(), 1u) << "a second result for " << id;
    EXPECT_EQ(query(sys().db(), "SELECT COUNT(*) FROM audit_events WHERE command_id = '" + id +
                                    "' AND status = 'rejected'"),
              1)
        << id << " rejected once in the audit trail";
  }
  static std::size_t authorize_calls(const std::string& id) {
    return sys()
        .calls_with_key("payment.authorize",
                        processor::idempotency_key("initial_authorization", id, ""))
        .size();
  }
  static System* system_;
};
System* CommandAuthE2E::system_ = nullptr;

TEST_F(CommandAuthE2E, EveryBadSignatureIsRefusedOnceNothingReachesKlarnaAndTheMessageIsKept) {
  const auto txn = approved("auth-base-1", 1000);
  ASSERT_FALSE(txn.empty());
  const auto captures_before = sys().calls_on("payment.transactions.capture");

  const auto forged = capture("auth-forged", txn, 100);
  sys().send_with_headers(
      txn, forged, System::signed_by(System::kSender, System::kSenderKey, "guessed", forged));
  expect_refused_once("auth-forged", "bad_signature");

  // A real signature, of another body: the signature covers the exact bytes.
  const auto signed_body = capture("auth-replay", txn, 100);
  const auto other_body = capture("auth-replay", txn, 900);
  sys().send_with_headers(
      txn, other_body,
      System::signed_by(System::kSender, System::kSenderKey, System::kSenderSecret, signed_body));
  expect_refused_once("auth-replay", "bad_signature");

  sys().send_with_headers(txn, capture("auth-unsigned", txn, 100), {});
  expect_refused_once("auth-unsigned", "unsigned");

  const auto unknown = capture("auth-unknown", txn, 100);
  sys().send_with_headers(txn, unknown, System::signed_by("nobody", "k1", "whatever", unknown));
  expect_refused_once("auth-unknown", "unknown_sender");

  const auto malformed = capture("auth-malformed", txn, 100);
  sys().send_with_headers(txn, malformed,
                          {{"kpay-sender", System::kSender}, {"kpay-signature", "v1=abc"}});
  expect_refused_once("auth-malformed", "malformed_signature");

  EXPECT_EQ(sys().calls_on("payment.transactions.capture"), captures_before)
      << "a refused command reached Klarna";
  // Each raw message is kept as a dead letter, by reason.
  EXPECT_EQ(query(sys().db(), "SELECT COUNT(*) FROM poison_messages WHERE reason LIKE 'command_%'"),
            5);
  EXPECT_EQ(query(sys().db(),
                  "SELECT COUNT(*) FROM poison_messages WHERE reason = 'command_bad_signature'"),
            2);
  // The forged command's id is not taken from its real sender: it still works.
  const auto real = capture("auth-forged", txn, 100);
  sys().send(txn, real);
  EXPECT_TRUE(wait_until(
      [] {
        for (const auto& r : sys().results_for("auth-forged")) {
          if (r.status == "succeeded") return true;
        }
        return false;
      },
      std::chrono::seconds(60)))
      << sys().processor_log();
  EXPECT_EQ(sys().calls_on("payment.transactions.capture"), captures_before + 1);

  auto [rc, out] = sys().ctl({"audit", "show", "auth-forged", "--json"});
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find(R"("kind":"refused")"), std::string::npos) << out;
  EXPECT_NE(out.find(R"("kind":"command","sender":"e2e")"), std::string::npos) << out;
  EXPECT_NE(out.find(R"("kind":"outcome")"), std::string::npos) << out;
  EXPECT_NE(out.find(R"("status":"succeeded")"), std::string::npos) << out;
}

TEST_F(CommandAuthE2E, SendersDoOnlyWhatTheirPermissionsSay) {
  const auto txn = approved("perm-base-1", 1000);
  ASSERT_FALSE(txn.empty());
  const auto captures_before = sys().calls_on("payment.transactions.capture");

  // A refund service that tries a capture.
  const auto c = capture("perm-refunds-capture", txn, 100);
  sys().send_with_headers(txn, c, System::signed_by("refunds", "r1", kRefundsSecret, c));
  expect_refused_once("perm-refunds-capture", "not_permitted");
  EXPECT_EQ(sys().calls_on("payment.transactions.capture"), captures_before);

  // limited: authorize ≤ 1000 EUR per command, 1500 per day, one account.
  auto send_limited = [](const std::string& id, const std::string& body) {
    sys().send_with_headers("ref-" + id, body,
                            System::signed_by("limited", "l1", kLimitedSecret, body));
  };
  send_limited("perm-over-command", authorize("perm-over-command", 1001));
  expect_refused_once("perm-over-command", "not_permitted: amount 1001 EUR exceeds");
  send_limited("perm-other-account", authorize("perm-other-account", 10, kOtherAccount));
  expect_refused_once("perm-other-account", "not_permitted: sender limited may not act");
  send_limited("perm-day-1", authorize("perm-day-1", 1000));
  EXPECT_EQ(sys().final_result("perm-day-1").status, "succeeded");
  send_limited("perm-day-2", authorize("perm-day-2", 600));
  expect_refused_once("perm-day-2", "not_permitted: amount 600 EUR would take today's total");
  send_limited("perm-dispute", R"({"command_id":"perm-dispute","type":"dispute_accept_loss",)"
                               R"("payment_dispute_id":"krn:payment:eu1:dispute:x"})");
  expect_refused_once("perm-dispute", "not_permitted: sender limited may not send");
  for (const auto* id : {"perm-over-command", "perm-other-account", "perm-day-2"}) {
    EXPECT_EQ(authorize_calls(id), 0u) << id;
  }
  EXPECT_EQ(authorize_calls("perm-day-1"), 1u);
  EXPECT_EQ(
      query(sys().db(), "SELECT COUNT(*) FROM payment_contexts WHERE command_id LIKE 'perm-%'"), 2)
      << "a refused authorize keeps no payment context";

  auto [rc, out] = sys().ctl({"senders", "show", "limited"});
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("authorize, capture"), std::string::npos) << out;
  EXPECT_NE(out.find("per command 1000, per day 1500"), std::string::npos) << out;
}

TEST_F(CommandAuthE2E, RotationAcceptsBothKeysDuringTheOverlapThenOnlyTheNewOne) {
  auto send_as = [](const std::string& id, const std::string& key, const std::string& secret) {
    const auto body = authorize(id, 10);
    sys().send_with_headers("ref-" + id, body, System::signed_by("rotator", key, secret, body));
    return sys().final_result(id);
  };
  EXPECT_EQ(send_as("rot-1-old", "k1", kRotatorSecret1).status, "succeeded");
  std::ofstream(sys().dir() + "/rotator-k2") << kRotatorSecret2;
  auto [rc, out] = sys().ctl({"senders", "rotate", "rotator", "--key-id", "k2", "--secret-file",
                              sys().dir() + "/rotator-k2"});
  ASSERT_EQ(rc, 0) << out;
  reload();
  EXPECT_EQ(send_as("rot-2-old", "k1", kRotatorSecret1).status, "succeeded");
  EXPECT_EQ(send_as("rot-2-new", "k2", kRotatorSecret2).status, "succeeded");
  std::tie(rc, out) = sys().ctl({"senders", "retire", "rotator", "k1"});
  ASSERT_EQ(rc, 0) << out;
  reload();
  const auto body = authorize("rot-3-old", 10);
  sys().send_with_headers("ref-rot-3-old", body,
                          System::signed_by("rotator", "k1", kRotatorSecret1, body));
  expect_refused_once("rot-3-old", "retired_key");
  EXPECT_EQ(authorize_calls("rot-3-old"), 0u);
  EXPECT_EQ(send_as("rot-3-new", "k2", kRotatorSecret2).status, "succeeded");
  std::tie(rc, out) = sys().ctl({"senders", "list", "--json"});
  EXPECT_NE(out.find(R"("sender":"rotator","key_id":"k1","status":"retired")"), std::string::npos)
      << out;
}

TEST_F(CommandAuthE2E, CommandsQueuedLongerThanTheirMaximumAgeAreRejectedExpiredOnRestart) {
  const auto txn = approved("age-base-1", 1000);
  ASSERT_FALSE(txn.empty());
  sys().stop_processor();
  const auto two_minutes_ago = now_ms() - 120'000;
  // authorize may be 60 s old here; capture keeps the default (days).
  const auto by_issued_at =
      authorize("age-old-issued", 10, kAccount,
                R"(,"issued_at":")" + core::rfc3339_ms(two_minutes_ago) + "\"");
  sys().send_with_headers(
      "ref-age-old-issued", by_issued_at,
      System::signed_by(System::kSender, System::kSenderKey, System::kSenderSecret, by_issued_at));
  const auto by_timestamp = authorize("age-old-kafka", 10);
  sys().send_with_headers(
      "ref-age-old-kafka", by_timestamp,
      System::signed_by(System::kSender, System::kSenderKey, System::kSenderSecret, by_timestamp),
      two_minutes_ago);
  const auto young = authorize("age-young", 10);
  sys().send("ref-age-young", young);
  const auto old_capture = capture("age-old-capture", txn, 100);
  sys().send_with_headers(
      txn, old_capture,
      System::signed_by(System::kSender, System::kSenderKey, System::kSenderSecret, old_capture),
      two_minutes_ago);
  sys().start_processor();
  expect_refused_once("age-old-issued", "expired");
  expect_refused_once("age-old-kafka", "expired");
  EXPECT_EQ(sys().final_result("age-young").status, "succeeded");
  EXPECT_EQ(sys().final_result("age-old-capture").status, "succeeded");
  EXPECT_EQ(authorize_calls("age-old-issued"), 0u);
  EXPECT_EQ(authorize_calls("age-old-kafka"), 0u);
  EXPECT_EQ(authorize_calls("age-young"), 1u);
}

}  // namespace

namespace {

const std::string kNewApiKey = "auth-api-key-ROTATED-NOT-REAL";

// SIGHUP re-reads the Klarna credentials while calls are in flight: a sim
// that, like Klarna during a partner's rotation, accepts the old and the new
// API key; each authorize answered after 600 ms.
class CredentialsReloadE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    SystemOptions o{"creds-e2e",
                    "creds",
                    kKeyId,
                    kSecret,
                    kApiKey,
                    {"--set", "sim.api_key_also=" + kNewApiKey, "--set",
                     R"(faults.rules=["payment.authorize:latency:100:600"])"}};
    system_ = new System(o);
    system_->start_receiver();
    system_->start_sim();
    system_->start_processor();
  }
  static void TearDownTestSuite() {
    system_->stop_processor();
    delete system_;
    system_ = nullptr;
  }
  static System& sys() { return *system_; }
  static std::size_t log_count(const std::string& what) {
    const auto log = sys().processor_log();
    std::size_t n = 0;
    for (auto at = log.find(what); at != std::string::npos; at = log.find(what, at + 1)) ++n;
    return n;
  }
  static void write_key(const std::string& key, std::filesystem::perms mode) {
    const auto path = sys().dir() + "/api-key";
    std::filesystem::permissions(
        path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    std::ofstream(path, std::ios::trunc) << key << "\n";
    std::filesystem::permissions(path, mode);
  }
  // SIGHUP, then waits for the log line that says how it went.
  static void sighup_until(const std::string& line) {
    const auto before = log_count(line);
    sys().processor()->signal(SIGHUP);
    ASSERT_TRUE(wait_until([&] { return log_count(line) > before; }, std::chrono::seconds(20)))
        << sys().processor_log();
  }
  static System* system_;
};
System* CredentialsReloadE2E::system_ = nullptr;

TEST_F(CredentialsReloadE2E, SighupSwapsCredentialsWithCallsInFlightAndRefusesABadFile) {
  const auto owner_only = std::filesystem::perms::owner_read | std::filesystem::perms::owner_write;
  std::vector<std::string> ids;
  for (int i = 0; i < 8; ++i) {
    ids.push_back("creds-before-" + std::to_string(i));
    sys().send("ref-" + ids.back(), authorize(ids.back(), 10));
  }
  ASSERT_TRUE(wait_until(
      [] {
        return query(sys().db(), "SELECT COUNT(*) FROM outbox WHERE status = 'in_flight'") > 0;
      },
      std::chrono::seconds(30)))
      << sys().processor_log();
  write_key(kNewApiKey, owner_only);
  ASSERT_NO_FATAL_FAILURE(sighup_until("Klarna credentials reloaded"));
  for (int i = 0; i < 8; ++i) {
    ids.push_back("creds-after-" + std::to_string(i));
    sys().send("ref-" + ids.back(), authorize(ids.back(), 10));
  }
  for (const auto& id : ids) {
    const auto r = sys().final_result(id);
    EXPECT_EQ(r.status, "succeeded") << id << " " << r.raw;
  }
  EXPECT_EQ(query(sys().db(), "SELECT COUNT(*) FROM outbox WHERE last_status = 401"), 0);

  // A file others may read is refused: the old credentials stay in use.
  write_key("auth-api-key-WRONG", std::filesystem::perms::owner_read |
                                      std::filesystem::perms::owner_write |
                                      std::filesystem::perms::others_read);
  ASSERT_NO_FATAL_FAILURE(sighup_until("Klarna credentials reload refused"));
  EXPECT_EQ(sys().processor_log().find("auth-api-key-WRONG"), std::string::npos);
  sys().send("ref-creds-kept", authorize("creds-kept", 10));
  EXPECT_EQ(sys().final_result("creds-kept").status, "succeeded");

  // A usable file with a key Klarna does not know: the next call carries it.
  write_key("auth-api-key-WRONG", owner_only);
  ASSERT_NO_FATAL_FAILURE(sighup_until("Klarna credentials reloaded"));
  sys().send("ref-creds-wrong", authorize("creds-wrong", 10));
  const auto r = sys().final_result("creds-wrong");
  EXPECT_EQ(r.status, "failed") << r.raw;
  EXPECT_NE(r.reason.find("401"), std::string::npos) << r.raw;
}

}  // namespace
