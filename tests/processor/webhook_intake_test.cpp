// Webhook intake faithful to Klarna (docs/KLARNA-FIDELITY.md, "Webhook
// intake"), each against the batch applier on a real SQLite file:
//   - `payment.request.state-change.cancelled` (Klarna's event list spells it
//     so) cancels like `canceled`, and is routed like it;
//   - the state rank decides, not clocks: a later state with an earlier
//     occurred_at is applied (a v2 completed 2 s "before" its in-progress gets
//     its final authorization); where rank cannot settle it, Klarna is read
//     and the read's answer is what the state becomes;
//   - every entity's account is its envelope's subject_account_id: a dispute
//     of a transaction never seen can be answered; disagreements are surfaced;
//   - settlement events keep their ids and report links, and one without
//     settlement_id is keyed by what it has instead of being dead-lettered.
#include <gtest/gtest.h>

#include <filesystem>

#include "calls/call_answers.hpp"
#include "child_process.hpp"
#include "kpay/core/log.hpp"
#include "kpay/klarna/envelope.hpp"
#include "kpay/processor/batch_applier.hpp"
#include "kpay/storage/state_store.hpp"

using namespace kpay;
using processor::BatchApplier;
using processor::BatchResult;
using processor::InputMessage;

namespace {

constexpr std::int64_t T0 = 1'767'225'600'000;  // 2026-01-01T00:00:00Z
constexpr std::int64_t kSecond = 1000;
constexpr std::string_view kAccountA = "krn:partner:global:account:test:AAA";
constexpr std::string_view kAccountB = "krn:partner:global:account:test:BBB";

std::string body(std::string_view type, std::string_view version, std::string_view event_id,
                 std::int64_t at_ms, std::string_view payload,
                 std::string_view account = kAccountA) {
  std::string b = R"({"metadata":{"event_type":")" + std::string(type) + R"(","event_id":")" +
                  std::string(event_id) + R"(","event_version":")" + std::string(version) +
                  R"(","occurred_at":")" + core::rfc3339_ms(at_ms) + "\"";
  if (!account.empty()) b += R"(,"subject_account_id":")" + std::string(account) + "\"";
  return b + R"(},"payload":{)" + std::string(payload) + "}}";
}

class Intake : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::make_temp_dir("intake");
    store_.emplace(dir_ + "/state.db");
    applier_.emplace(*store_, topics_);
  }
  void TearDown() override {
    applier_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Applies one message (its topic chosen as the receiver would); returns the
  // history outcome and keeps the reason and the batch result.
  std::string apply(const std::string& b) {
    auto env = klarna::parse_envelope(b);
    const std::string topic = env ? topics_.for_family(env.envelope->family) : topics_.unrouted;
    InputMessage m{topic, 0, offset_++, env ? env.envelope->entity_id : "", b};
    last_ = applier_->apply(std::span(&m, 1));
    auto s =
        store_->database().prepare("SELECT outcome, reason FROM history ORDER BY seq DESC LIMIT 1");
    s.step();
    reason_ = s.text(1);
    return s.text(0);
  }
  std::vector<std::string> results(const std::string& command) {
    InputMessage m{topics_.commands, 0, offset_++, "cmd", command};
    auto r = applier_->apply(std::span(&m, 1));
    std::vector<std::string> out;
    for (const auto& p : r.publications) out.push_back(p.value);
    return out;
  }
  std::vector<std::string> operations(const std::string& entity) {
    std::vector<std::string> out;
    for (const auto& o : store_->outbox(entity)) {
      out.push_back(std::string(kpay::storage::to_string(o.operation)));
    }
    return out;
  }
  std::int64_t count(std::string_view table) {
    auto s = store_->database().prepare("SELECT COUNT(*) FROM " + std::string(table));
    s.step();
    return s.int64(0);
  }

  klarna::Topics topics_;
  std::string dir_, reason_;
  std::optional<storage::StateStore> store_;
  std::optional<BatchApplier> applier_;
  std::int64_t offset_ = 0;
  BatchResult last_;
};

using Ops = std::vector<std::string>;

// ---- defect 6: "cancelled" ------------------------------------------------------------

TEST_F(Intake, CancelledSpellingCancelsTheRequestInBothVersions) {
  EXPECT_EQ(klarna::classify_event_type("payment.request.state-change.cancelled"),
            klarna::EventFamily::payment_request);
  for (const char* version : {"v1", "v2"}) {
    SCOPED_TRACE(version);
    const std::string id = std::string("req-cancelled-") + version;
    const std::string p = R"("payment_request_id":")" + id + R"(","amount":100,"currency":"EUR")";
    ASSERT_EQ(apply(body("payment.request.state-change.submitted", version, id + "-1", T0, p)),
              "applied");
    EXPECT_EQ(apply(body("payment.request.state-change.cancelled", version, id + "-2", T0 + kSecond,
                         p + R"(,"state":"CANCELLED")")),
              "applied")
        << reason_;
    EXPECT_EQ(store_->find_request(id)->state, "CANCELED");
    // The other spelling of the same fact afterwards is "already CANCELED".
    EXPECT_EQ(apply(body("payment.request.state-change.canceled", version, id + "-3",
                         T0 + 2 * kSecond, p)),
              "stale");
  }
  EXPECT_EQ(count("poison_messages"), 0);
}

// ---- defect 7: state rank, not clocks -------------------------------------------------

TEST_F(Intake, CompletedWithAnEarlierClockThanItsInProgressIsAuthorized) {
  const std::string p = R"("payment_request_id":"req-skew","amount":11800,"currency":"EUR")";
  ASSERT_EQ(apply(body("payment.request.state-change.submitted", "v2", "s1", T0, p)), "applied");
  ASSERT_EQ(
      apply(body("payment.request.state-change.in-progress", "v2", "s2", T0 + 10 * kSecond, p)),
      "applied");
  // Klarna's services do not share one clock: completed says 2 s earlier.
  EXPECT_EQ(apply(body("payment.request.state-change.completed", "v2", "s3", T0 + 8 * kSecond,
                       p + R"(,"state_context":{"klarna_network_session_token":"tok"})")),
            "applied")
      << reason_;
  EXPECT_NE(reason_.find("the state rank decides"), std::string::npos) << reason_;
  EXPECT_NE(reason_.find("final_authorization queued"), std::string::npos) << reason_;
  EXPECT_EQ(store_->find_request("req-skew")->state, "COMPLETED");
  EXPECT_EQ(operations("req-skew"), Ops{"final_authorization"});
}

TEST_F(Intake, AMoveToAFinalStateIsNeverDroppedAsStale) {
  const std::string p = R"("payment_request_id":"req-exp")";
  ASSERT_EQ(
      apply(body("payment.request.state-change.in-progress", "v2", "x1", T0 + 60 * kSecond, p)),
      "applied");
  EXPECT_EQ(apply(body("payment.request.state-change.expired", "v2", "x2", T0, p)), "applied");
  EXPECT_EQ(store_->find_request("req-exp")->state, "EXPIRED");
  // Within one rank (SUBMITTED <-> IN_PROGRESS) the clock still orders: stale, no read.
  const std::string q = R"("payment_request_id":"req-cycle")";
  ASSERT_EQ(apply(body("payment.request.state-change.in-progress", "v2", "y1", T0 + kSecond, q)),
            "applied");
  EXPECT_EQ(apply(body("payment.request.state-change.submitted", "v2", "y2", T0, q)), "stale");
  EXPECT_TRUE(operations("req-cycle").empty());
}

TEST_F(Intake, TwoFinalRequestStatesAreSettledByReadingKlarna) {
  const std::string p = R"("payment_request_id":"req-two","amount":100,"currency":"EUR")";
  ASSERT_EQ(apply(body("payment.request.state-change.completed", "v2", "f1", T0,
                       p + R"(,"klarna_network_session_token":"tok")")),
            "applied");
  EXPECT_EQ(apply(body("payment.request.state-change.cancelled", "v2", "f2", T0 + kSecond, p)),
            "rejected");
  EXPECT_NE(reason_.find("unsettled: COMPLETED and CANCELED are both final"), std::string::npos)
      << reason_;
  EXPECT_NE(reason_.find("read queued"), std::string::npos) << reason_;
  EXPECT_EQ(operations("req-two"), (Ops{"final_authorization", "read_payment_request"}));
  EXPECT_EQ(store_->find_request("req-two")->state, "COMPLETED");  // no guess

  // The read's answer is Klarna's word: the state becomes what Klarna says.
  storage::OutboxRow read;
  for (const auto& o : store_->outbox("req-two")) {
    if (o.operation == kpay::storage::OutboxOperation::read_payment_request) read = o;
  }
  EXPECT_EQ(read.account_id, kAccountA);
  EXPECT_EQ(read.method, "GET");
  std::vector<storage::PublishRow> published;
  processor::FollowUpSettings settings;
  processor::AnswerContext c{*store_, settings, topics_, T0 + 5 * kSecond, published};
  klarna::Answer answer;
  answer.status = 200;
  answer.body = R"({"payment_request_id":"req-two","state":"CANCELED","amount":100})";
  EXPECT_EQ(processor::apply_success(c, read, answer), "CANCELED");
  EXPECT_EQ(store_->find_request("req-two")->state, "CANCELED");
  ASSERT_EQ(published.size(), 1u);
  EXPECT_NE(published[0].value.find(R"("previous_state":"COMPLETED","state":"CANCELED")"),
            std::string::npos)
      << published[0].value;
}

TEST_F(Intake, TransactionsFollowTheRankAndReadWhenRankAndClockDisagree) {
  const std::string p = R"("payment_transaction_id":"txn-skew","amount":500,"currency":"EUR")";
  ASSERT_EQ(
      apply(body("payment.transaction.state-change.authorized", "v2", "t1", T0 + 5 * kSecond, p)),
      "applied");
  EXPECT_EQ(
      apply(body("payment.transaction.state-change.completed", "v2", "t2", T0 + 3 * kSecond, p)),
      "applied")
      << reason_;
  EXPECT_EQ(store_->find_transaction("txn-skew")->state, "COMPLETED");

  // The other order: AUTHORIZED ranks before COMPLETED but says it is later.
  const std::string q = R"("payment_transaction_id":"txn-back","amount":500,"currency":"EUR")";
  ASSERT_EQ(
      apply(body("payment.transaction.state-change.completed", "v2", "u1", T0 + 3 * kSecond, q)),
      "applied");
  EXPECT_EQ(
      apply(body("payment.transaction.state-change.authorized", "v2", "u2", T0 + 5 * kSecond, q)),
      "stale");
  EXPECT_NE(reason_.find("unsettled: AUTHORIZED ranks before COMPLETED"), std::string::npos)
      << reason_;
  ASSERT_EQ(operations("txn-back"), Ops{"read_transaction"});
  EXPECT_EQ(store_->find_transaction("txn-back")->state, "COMPLETED");
  // When the clock agrees with the rank, it is plainly stale: no read.
  EXPECT_EQ(apply(body("payment.transaction.state-change.authorized", "v2", "u3", T0, q)), "stale");
  ASSERT_EQ(operations("txn-back"), Ops{"read_transaction"});

  // The read's answer sets the state Klarna has.
  const auto read = store_->outbox("txn-back").front();
  std::vector<storage::PublishRow> published;
  processor::FollowUpSettings settings;
  processor::AnswerContext c{*store_, settings, topics_, T0 + 9 * kSecond, published};
  klarna::Answer answer;
  answer.status = 200;
  answer.body = R"({"payment_transaction_id":"txn-back","state":"CLOSED","amount":500})";
  EXPECT_EQ(processor::apply_success(c, read, answer), "CLOSED");
  EXPECT_EQ(store_->find_transaction("txn-back")->state, "CLOSED");
}

TEST_F(Intake, DisputesFollowTheRankAndReadWhenRankAndClockDisagree) {
  const std::string p = R"("payment_dispute_id":"dsp-skew","payment_transaction_id":"t-x")";
  ASSERT_EQ(apply(body("payment.dispute.state-change.initiated", "v2", "d1", T0 + 5 * kSecond,
                       p + R"(,"representment":{"expires_at":"2026-01-10T00:00:00Z"})")),
            "applied");
  EXPECT_EQ(
      apply(body("payment.dispute.state-change.representment", "v2", "d2", T0 + 3 * kSecond, p)),
      "applied")
      << reason_;
  EXPECT_EQ(store_->find_dispute("dsp-skew")->state, "REPRESENTMENT");
  EXPECT_EQ(apply(body("payment.dispute.state-change.closed", "v2", "d3", T0 + kSecond,
                       p + R"(,"dispute_outcome":"WON")")),
            "applied");
  EXPECT_EQ(store_->find_dispute("dsp-skew")->state, "CLOSED");

  const std::string q = R"("payment_dispute_id":"dsp-back","payment_transaction_id":"t-y")";
  ASSERT_EQ(apply(body("payment.dispute.state-change.representment", "v2", "e1", T0 + 3 * kSecond,
                       q + R"(,"representment":{})")),
            "applied");
  EXPECT_EQ(apply(body("payment.dispute.state-change.initiated", "v2", "e2", T0 + 5 * kSecond, q)),
            "stale");
  EXPECT_NE(reason_.find("unsettled: INITIATED ranks before REPRESENTMENT"), std::string::npos)
      << reason_;
  ASSERT_EQ(operations("dsp-back"), Ops{"read_dispute"});
  EXPECT_EQ(store_->outbox("dsp-back").front().account_id, kAccountA);
  EXPECT_EQ(store_->find_dispute("dsp-back")->state, "REPRESENTMENT");
}

// ---- defect 8: the account from the envelope ------------------------------------------

TEST_F(Intake, ADisputeOfATransactionNeverSeenCanBeAnswered) {
  ASSERT_EQ(apply(body("payment.dispute.state-change.initiated", "v2", "n1", T0,
                       R"("payment_dispute_id":"dsp-new","payment_transaction_id":"txn-unseen",)"
                       R"("representment":{"expires_at":"2026-01-10T00:00:00Z"})",
                       kAccountB)),
            "applied");
  ASSERT_EQ(apply(body("payment.dispute.state-change.pre-arbitration", "v2", "n2", T0,
                       R"("payment_dispute_id":"dsp-pre","payment_transaction_id":"txn-unseen2",)"
                       R"("representment":{})",
                       kAccountB)),
            "applied");
  EXPECT_EQ(store_->find_dispute("dsp-new")->account_id, kAccountB);
  EXPECT_FALSE(store_->find_transaction("txn-unseen"));
  const std::string att =
      R"("attachments":[{"payment_dispute_attachment_id":"a1","description":"receipt"}],)"
      R"("additional_information":"delivered")";
  struct Case {
    std::string command;
    std::string dispute;
  };
  const Case cases[] = {
      {R"({"command_id":"c-rep","type":"dispute_represent","payment_dispute_id":"dsp-new",)" + att +
           "}",
       "dsp-new"},
      {R"({"command_id":"c-app","type":"dispute_appeal","payment_dispute_id":"dsp-pre",)" + att +
           "}",
       "dsp-pre"},
  };
  for (const auto& c : cases) {
    auto r = results(c.command);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_NE(r[0].find(R"("status":"accepted")"), std::string::npos) << r[0];
    ASSERT_EQ(store_->outbox(c.dispute).size(), 1u);
    EXPECT_EQ(store_->outbox(c.dispute).front().account_id, kAccountB);
  }
  // accept-loss on a third one (represent leaves an operation pending on dsp-new).
  ASSERT_EQ(apply(body("payment.dispute.state-change.initiated", "v2", "n3", T0,
                       R"("payment_dispute_id":"dsp-acc","payment_transaction_id":"txn-unseen3",)"
                       R"("representment":{})",
                       kAccountB)),
            "applied");
  auto r = results(R"({"command_id":"c-acc","type":"dispute_accept_loss",)"
                   R"("payment_dispute_id":"dsp-acc"})");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_NE(r[0].find(R"("status":"accepted")"), std::string::npos) << r[0];
  EXPECT_EQ(store_->outbox("dsp-acc").front().account_id, kAccountB);
}

TEST_F(Intake, AnAccountThatDisagreesWithTheStoredOneIsSurfaced) {
  const std::string t = R"("payment_transaction_id":"txn-acc","amount":900,"currency":"EUR")";
  ASSERT_EQ(apply(body("payment.transaction.state-change.authorized", "v2", "a1", T0, t)),
            "applied");
  EXPECT_TRUE(last_.account_mismatches.empty());
  // A dispute whose envelope names another account than its transaction's.
  EXPECT_EQ(apply(body("payment.dispute.state-change.initiated", "v2", "a2", T0 + kSecond,
                       R"("payment_dispute_id":"dsp-acc2","payment_transaction_id":"txn-acc",)"
                       R"("representment":{})",
                       kAccountB)),
            "applied");
  ASSERT_EQ(last_.account_mismatches.size(), 1u);
  EXPECT_EQ(last_.account_mismatches[0].first, "dsp-acc2");
  EXPECT_NE(reason_.find("account mismatch: its transaction's account is " +
                         std::string(kAccountA) + ", the event names " + std::string(kAccountB)),
            std::string::npos)
      << reason_;
  // A transaction event naming another account: surfaced, the stored one kept.
  EXPECT_EQ(apply(body("payment.transaction.state-change.completed", "v2", "a3", T0 + 2 * kSecond,
                       t, kAccountB)),
            "applied");
  EXPECT_EQ(last_.account_mismatches.size(), 1u);
  EXPECT_NE(reason_.find("account mismatch"), std::string::npos) << reason_;
  EXPECT_EQ(store_->find_transaction("txn-acc")->account_id, kAccountA);
  // Agreeing events say nothing.
  EXPECT_EQ(apply(body("payment.transaction.state-change.closed", "v2", "a4", T0 + 3 * kSecond, t)),
            "applied");
  EXPECT_TRUE(last_.account_mismatches.empty());
  EXPECT_EQ(reason_.find("mismatch"), std::string::npos) << reason_;
}

// ---- settlements -----------------------------------------------------------------------

TEST_F(Intake, SettlementEventsKeepTheirIdsAndReportLinks) {
  ASSERT_EQ(apply(body("settlement.report.created", "v2", "st1", T0,
                       R"("settlement_id":"stl-1","currency":"EUR","payout_amount":987654,)"
                       R"("payout_date":"2026-01-03","interval_start":"2025-12-01T00:00:00Z",)"
                       R"("report_urls":{"json":"https://api.example/v2/settlements/stl-1",)"
                       R"("csv":"https://api.example/v2/settlements/stl-1/csv"})")),
            "applied");
  auto rows = store_->settlement_events(10);
  ASSERT_EQ(rows.size(), 1u);
  const auto& r = rows[0];
  EXPECT_EQ(r.event_id, "st1");
  EXPECT_EQ(r.routed_by, "settlement_id");
  EXPECT_EQ(r.settlement_id, "stl-1");
  EXPECT_EQ(r.account_id, kAccountA);
  EXPECT_EQ(r.report_json_url, "https://api.example/v2/settlements/stl-1");
  EXPECT_EQ(r.report_csv_url, "https://api.example/v2/settlements/stl-1/csv");
  EXPECT_EQ(r.amount, 987654);
  EXPECT_EQ(r.currency, "EUR");
  EXPECT_EQ(r.payout_date, "2026-01-03");
  EXPECT_EQ(r.period_start, "2025-12-01T00:00:00Z");
  EXPECT_NE(
      r.links_json.find(R"("report_urls.csv":"https://api.example/v2/settlements/stl-1/csv")"),
      std::string::npos)
      << r.links_json;
}

TEST_F(Intake, ASettlementEventWithoutSettlementIdIsKeyedByWhatItHas) {
  EXPECT_EQ(apply(body("settlement.payout.failed", "v2", "po1", T0,
                       R"("payout_id":"pay-9","payout_amount":12,"currency":"SEK")")),
            "applied");
  EXPECT_NE(reason_.find("no settlement_id: keyed by payout_id"), std::string::npos) << reason_;
  // Neither a settlement nor a payout id: keyed by the event id, recorded.
  const std::string lonely =
      body("settlement.report.uploaded-to-sftp", "v2", "evt-lonely", T0,
           R"("sftp_path":"/out/report.csv","report_url":"https://api.example/r/1")");
  auto env = klarna::parse_envelope(lonely);
  ASSERT_TRUE(env);
  EXPECT_EQ(topics_.for_family(env.envelope->family), topics_.settlements);
  EXPECT_EQ(env.envelope->entity_id, "evt-lonely");
  EXPECT_EQ(apply(lonely), "applied") << reason_;
  EXPECT_NE(reason_.find("no settlement_id: keyed by event_id"), std::string::npos) << reason_;
  EXPECT_EQ(count("poison_messages"), 0);
  auto rows = store_->settlement_events(10);
  ASSERT_EQ(rows.size(), 2u);
  for (const auto& r : rows) {
    if (r.event_id == "po1") {
      EXPECT_EQ(r.routed_by, "payout_id");
      EXPECT_EQ(r.payout_id, "pay-9");
      EXPECT_EQ(r.amount, 12);
    } else {
      EXPECT_EQ(r.routed_by, "event_id");
      EXPECT_EQ(r.entity_id, "evt-lonely");
      EXPECT_EQ(r.report_json_url, "https://api.example/r/1");
    }
  }
  // A second delivery is a duplicate and adds no row.
  EXPECT_EQ(apply(lonely), "duplicate");
  EXPECT_EQ(store_->settlement_events(10).size(), 2u);
}

}  // namespace
