// The batch applier against a real SQLite file (no Kafka): per-event outcomes
// (applied / duplicate / stale / rejected), bookkeeping, links, the outbox, poison
// messages, and convergence of shuffled+duplicated streams to the ordered result.
#include <gtest/gtest.h>

#include <filesystem>

#include "child_process.hpp"
#include "db_dump.hpp"
#include "kpay/core/log.hpp"
#include "kpay/processor/batch_applier.hpp"
#include "kpay/storage/migrations.hpp"
#include "kpay/storage/state_store.hpp"
#include "lifecycles.hpp"

using namespace kpay;
using processor::BatchApplier;
using processor::InputMessage;

namespace {

constexpr std::int64_t T0 = 1'767'225'600'000;  // 2026-01-01T00:00:00Z
constexpr std::string_view kAccount = "krn:partner:global:account:test:M1";
constexpr std::string_view kTestAccount =
    R"("subject_account_id":"krn:partner:global:account:test:M1")";

// `metadata`: extra metadata fields (default: the subject account follow-up
// calls go to; without one no call is queued).
std::string body(std::string_view type, std::string_view version, std::string_view event_id,
                 std::int64_t at_ms, std::string_view payload,
                 std::string_view metadata = kTestAccount) {
  std::string b = R"({"metadata":{"event_type":")" + std::string(type) + R"(","event_id":")" +
                  std::string(event_id) + R"(","event_version":")" + std::string(version) +
                  R"(","occurred_at":")" + core::rfc3339_ms(at_ms) + "\"" +
                  (metadata.empty() ? "" : "," + std::string(metadata)) + R"(},"payload":{)" +
                  std::string(payload) + "}}";
  return b;
}

class Applier : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::make_temp_dir("applier");
    path_ = dir_ + "/state.db";
    store_ = std::make_unique<storage::StateStore>(path_);
    applier_ = std::make_unique<BatchApplier>(*store_, klarna::Topics{});
  }
  void TearDown() override {
    applier_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Applies one message as its own batch; returns the history outcome.
  std::string apply(const std::string& topic, const std::string& b) {
    InputMessage m{topic, 0, offset_++, "k", b};
    applier_->apply(std::span(&m, 1));
    auto s =
        store_->database().prepare("SELECT outcome, reason FROM history ORDER BY seq DESC LIMIT 1");
    s.step();
    last_reason_ = s.text(1);
    return s.text(0);
  }
  std::string request_event(std::string_view type, std::string_view v, const std::string& id,
                            std::int64_t at, std::string_view extra = "") {
    std::string p = R"("payment_request_id":"req-1","amount":1000,"currency":"EUR")";
    if (!extra.empty()) p += "," + std::string(extra);
    return body(type, v, id, at, p);
  }

  std::string dir_, path_, last_reason_;
  std::unique_ptr<storage::StateStore> store_;
  std::unique_ptr<BatchApplier> applier_;
  std::int64_t offset_ = 0;
  klarna::Topics topics_;
};

// Every routed (event_type, event_version) for an unseen entity creates it,
// and the same event_id again is a duplicate that changes nothing.
struct RouteCase {
  const char* topic_family;
  const char* type;
  const char* version;
  const char* payload;
};

}  // namespace

TEST_F(Applier, EveryRouteAppliesOnceThenIsDuplicate) {
  const RouteCase cases[] = {
      {"req", "payment.request.state-change.submitted", "v1", R"("payment_request_id":"r1")"},
      {"req", "payment.request.state-change.prepared", "v1", R"("payment_request_id":"r2")"},
      {"req", "payment.request.state-change.in-progress", "v1", R"("payment_request_id":"r3")"},
      {"req", "payment.request.state-change.pending-confirmation", "v1",
       R"("payment_request_id":"r4","state_context":{"payment_confirmation_token":"t"})"},
      {"req", "payment.request.state-change.authorized", "v1", R"("payment_request_id":"r5")"},
      {"req", "payment.request.state-change.expired", "v1", R"("payment_request_id":"r6")"},
      {"req", "payment.request.state-change.canceled", "v1", R"("payment_request_id":"r7")"},
      {"req", "payment.request.state-change.declined", "v1", R"("payment_request_id":"r8")"},
      {"req", "payment.request.state-change.submitted", "v2", R"("payment_request_id":"r9")"},
      {"req", "payment.request.state-change.in-progress", "v2", R"("payment_request_id":"r10")"},
      {"req", "payment.request.state-change.completed", "v2",
       R"("payment_request_id":"r11","klarna_network_session_token":"s")"},
      {"req", "payment.request.state-change.expired", "v2", R"("payment_request_id":"r12")"},
      {"req", "payment.request.state-change.canceled", "v2", R"("payment_request_id":"r13")"},
      {"req", "payment.request.state-change.declined", "v2", R"("payment_request_id":"r14")"},
      {"req", "payment.request.updated", "v2", R"("payment_request_id":"r15","amount":5)"},
      {"txn", "payment.transaction.state-change.authorized", "v2",
       R"("payment_transaction_id":"t1")"},
      {"txn", "payment.transaction.state-change.expired", "v2", R"("payment_transaction_id":"t2")"},
      {"txn", "payment.transaction.state-change.completed", "v1",
       R"("payment_transaction_id":"t3")"},
      {"txn", "payment.transaction.state-change.closed", "v2", R"("payment_transaction_id":"t4")"},
      {"txn", "payment.transaction.captured", "v2",
       R"("payment_transaction_id":"t5","payment_capture_id":"c","amount":1)"},
      {"txn", "payment.transaction.refunded", "v2",
       R"("payment_transaction_id":"t6","payment_refund_id":"r","amount":1)"},
      {"txn", "payment.transaction.chargeback", "v2",
       R"("payment_transaction_id":"t7","payment_chargeback_id":"x","amount":1)"},
      {"txn", "payment.funding.state-change.funded", "v2", R"("payment_transaction_id":"t8")"},
      {"txn", "payment.funding.state-change.expired", "v2", R"("payment_transaction_id":"t9")"},
      {"dis", "payment.dispute.state-change.initiated", "v2", R"("payment_dispute_id":"d1")"},
      {"dis", "payment.dispute.state-change.representment", "v2", R"("payment_dispute_id":"d2")"},
      {"dis", "payment.dispute.state-change.pre-arbitration", "v2", R"("payment_dispute_id":"d3")"},
      {"dis", "payment.dispute.state-change.arbitration", "v2", R"("payment_dispute_id":"d4")"},
      {"dis", "payment.dispute.state-change.closed", "v2", R"("payment_dispute_id":"d5")"},
      {"dis", "payment.dispute.state-change.merchant-evidence-pending", "v1",
       R"("payment_dispute_id":"d6")"},
      {"dis", "payment.dispute.state-change.arbitration-pending", "v1",
       R"("payment_dispute_id":"d7")"},
      {"dis", "payment.dispute.state-change.arbitration-appeal-window-open", "v1",
       R"("payment_dispute_id":"d8")"},
      {"dis", "payment.dispute.updated.representment-deadline-extended", "v2",
       R"("payment_dispute_id":"d9","updated_fields":{"representment":{"expires_at":"2026-02-01T00:00:00Z"}})"},
      {"dis", "payment.dispute.updated.arbitration-deadline-extended", "v1",
       R"("payment_dispute_id":"d10","updated_fields":{"arbitration_expires_at":"2026-02-01T00:00:00Z"})"},
      {"set", "settlement.report.created", "v1", R"("settlement_id":"s1")"},
      {"set", "settlement.report.uploaded-to-sftp", "v1", R"("settlement_id":"s2")"},
      {"set", "settlement.payout.processed", "v1", R"("payout_id":"p1")"},
      {"set", "settlement.payout.confirmed", "v1", R"("payout_id":"p2")"},
      {"set", "settlement.payout.failed", "v1", R"("payout_id":"p3")"},
      {"acc", "partner.account.change.created", "v1", R"("account_id":"a1")"},
      {"acc", "partner.account.state-change.operational", "v1", R"("account_id":"a2")"},
      {"acc", "partner.account.product.payment.state-change.enabled", "v1", R"("account_id":"a3")"},
      {"acc", "partner.account.product.payment.state-change.disabled", "v1",
       R"("account_id":"a4")"},
  };
  int n = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.type) + " " + c.version);
    std::string topic = std::string(c.topic_family) == "req"   ? topics_.payment_requests
                        : std::string(c.topic_family) == "txn" ? topics_.payment_transactions
                        : std::string(c.topic_family) == "dis" ? topics_.disputes
                        : std::string(c.topic_family) == "set" ? topics_.settlements
                                                               : topics_.accounts;
    auto b = body(c.type, c.version, "route-" + std::to_string(n++), T0, c.payload);
    EXPECT_EQ(apply(topic, b), "applied") << last_reason_;
    EXPECT_EQ(apply(topic, b), "duplicate");
  }
}

TEST_F(Applier, Gen2LifecycleAndFinalAuthorizationOutbox) {
  const auto& t = topics_.payment_requests;
  EXPECT_EQ(apply(t, request_event("payment.request.state-change.submitted", "v2", "e1", T0)),
            "applied");
  EXPECT_EQ(
      apply(t, request_event("payment.request.state-change.in-progress", "v2", "e2", T0 + 10)),
      "applied");
  auto completed =
      request_event("payment.request.state-change.completed", "v2", "e3", T0 + 20,
                    R"("state_context":{"klarna_network_session_token":"kns-secret"})");
  EXPECT_EQ(apply(t, completed), "applied");
  // Forbidden / regressing / stale / duplicate.
  EXPECT_EQ(
      apply(t, request_event("payment.request.state-change.in-progress", "v2", "e4", T0 + 15)),
      "stale");
  // Two different final states: rank cannot settle it; Klarna is read.
  EXPECT_EQ(apply(t, request_event("payment.request.state-change.canceled", "v2", "e5", T0 + 30)),
            "rejected");
  EXPECT_NE(last_reason_.find("final"), std::string::npos);
  EXPECT_NE(last_reason_.find("read queued"), std::string::npos) << last_reason_;
  EXPECT_EQ(apply(t, completed), "duplicate");
  // A Gen 1 event that would regress it is refused like a Gen 2 one (COMPLETED
  // is seen as PENDING_CONFIRMATION by v1 events: IN_PROGRESS is older).
  EXPECT_EQ(apply(t, request_event("payment.request.state-change.in-progress", "v1", "e6", T0 + 5)),
            "stale");

  auto req = store_->find_request("req-1");
  ASSERT_TRUE(req);
  EXPECT_EQ(req->state, "COMPLETED");
  EXPECT_EQ(req->account_id, kAccount);
  EXPECT_EQ(req->authorization_due_ms, T0 + 20 + 3'600'000);
  auto outbox = store_->outbox("req-1");
  ASSERT_EQ(outbox.size(), 2u);
  EXPECT_EQ(outbox[1].operation, kpay::storage::OutboxOperation::read_payment_request);
  EXPECT_EQ(outbox[1].created_by_event_id, "e5");
  EXPECT_EQ(outbox[0].operation, kpay::storage::OutboxOperation::final_authorization);
  EXPECT_EQ(outbox[0].idempotency_key,
            processor::idempotency_key("final_authorization", "req-1", "kns-secret"));
  EXPECT_EQ(outbox[0].account_id, kAccount);
  EXPECT_EQ(outbox[0].path, "/payment/authorize");
  EXPECT_EQ(outbox[0].token_header, "Klarna-Network-Session-Token");
  EXPECT_EQ(outbox[0].created_by_event_id, "e3");
  EXPECT_NE(outbox[0].request_body.find(R"("capture":"LATER")"), std::string::npos);
  EXPECT_NE(outbox[0].request_body.find(R"("amount":1000)"), std::string::npos);
  EXPECT_EQ(outbox[0].request_body.find("kns-secret"), std::string::npos)
      << "token is not in the body";
  EXPECT_EQ(store_->history("req-1").size(), 7u);
  EXPECT_EQ(store_->deadlines(T0, 0).calls_pending, 2);  // the authorization and the read
  EXPECT_EQ(store_->deadlines(T0, 0).calls_overdue, 0);
  EXPECT_EQ(store_->deadlines(T0 + 2 * 3'600'000, 0).calls_overdue, 1) << "60 min passed";
}

TEST_F(Applier, Gen1PendingConfirmationWritesConfirmOncePerToken) {
  const auto& t = topics_.payment_requests;
  auto pending = [&](const char* id, std::int64_t at, const char* token) {
    return request_event(
        "payment.request.state-change.pending-confirmation", "v1", id, at,
        std::string(R"("state_context":{"payment_confirmation_token":")") + token + "\"}");
  };
  EXPECT_EQ(apply(t, request_event("payment.request.state-change.in-progress", "v1", "g1", T0)),
            "applied");
  EXPECT_EQ(apply(t, pending("g2", T0 + 10, "tok-a")), "applied");
  EXPECT_EQ(apply(t, request_event("payment.request.state-change.submitted", "v1", "g3", T0 + 20,
                                   R"("state_reason":"CONFIRMATION_TOKEN_EXPIRED")")),
            "applied");
  EXPECT_EQ(apply(t, pending("g4", T0 + 30, "tok-b")), "applied") << last_reason_;
  EXPECT_EQ(apply(t, request_event("payment.request.state-change.authorized", "v1", "g5", T0 + 40,
                                   R"("state_context":{"payment_transaction_id":"txn-1"})")),
            "applied");
  auto outbox = store_->outbox("req-1");
  ASSERT_EQ(outbox.size(), 2u);
  EXPECT_EQ(outbox[0].operation, kpay::storage::OutboxOperation::confirm);
  EXPECT_EQ(outbox[0].idempotency_key, processor::idempotency_key("confirm", "req-1", "tok-a"));
  EXPECT_EQ(outbox[1].idempotency_key, processor::idempotency_key("confirm", "req-1", "tok-b"));
  EXPECT_EQ(store_->find_request("req-1")->payment_transaction_id, "txn-1");
}

TEST_F(Applier, CaptureAndRefundBookkeepingIsIdempotentPerId) {
  const auto& t = topics_.payment_transactions;
  auto txn = [&](std::string_view type, const char* id, std::int64_t at, std::string_view extra) {
    return body(type, "v2", id, at,
                std::string(R"("payment_transaction_id":"txn-1")") + (extra.empty() ? "" : ",") +
                    std::string(extra));
  };
  // The capture arrives before the transaction is known: it creates it, with
  // no state (a capture event carries none), which klarnactl names so.
  EXPECT_EQ(apply(t, txn("payment.transaction.captured", "c1", T0 + 10,
                         R"("payment_capture_id":"cap-1","amount":600)")),
            "applied");
  const auto counts = store_->overview().payments;
  ASSERT_EQ(counts.size(), 1u);
  EXPECT_EQ(counts[0].status, storage::kNoStateYet);
  EXPECT_EQ(store_->list_payments({}).at(0).state, storage::kNoStateYet);
  EXPECT_EQ(apply(t, txn("payment.transaction.state-change.authorized", "a1", T0,
                         R"("amount":1000,"currency":"EUR")")),
            "applied");
  // Same capture announced again under another event_id: counted once.
  EXPECT_EQ(apply(t, txn("payment.transaction.captured", "c1-again", T0 + 11,
                         R"("payment_capture_id":"cap-1","amount":600)")),
            "stale");
  EXPECT_EQ(apply(t, txn("payment.transaction.captured", "c2", T0 + 20,
                         R"("payment_capture_id":"cap-2","amount":400)")),
            "applied");
  EXPECT_EQ(
      apply(t, txn("payment.transaction.refunded", "r1", T0 + 30,
                   R"("payment_refund_id":"ref-1","payment_capture_id":"cap-1","amount":250)")),
      "applied");
  // The same event again is a duplicate (another body under "r1" would be a
  // conflict: SameEventIdWithAnotherBodyIsAConflictNotADuplicate).
  EXPECT_EQ(
      apply(t, txn("payment.transaction.refunded", "r1", T0 + 30,
                   R"("payment_refund_id":"ref-1","payment_capture_id":"cap-1","amount":250)")),
      "duplicate");
  EXPECT_EQ(apply(t, txn("payment.transaction.state-change.completed", "x1", T0 + 25, "")),
            "applied");
  // AUTHORIZED ranks before COMPLETED but claims to be later: not applied, and
  // Klarna is read instead of guessing which clock is right.
  EXPECT_EQ(apply(t, txn("payment.transaction.state-change.authorized", "x2", T0 + 40, "")),
            "stale");
  EXPECT_NE(last_reason_.find("read queued"), std::string::npos) << last_reason_;
  auto row = store_->find_transaction("txn-1");
  ASSERT_TRUE(row);
  EXPECT_EQ(row->state, "COMPLETED");
  EXPECT_EQ(row->amount, 1000);
  EXPECT_EQ(row->captured_amount, 1000);
  EXPECT_EQ(row->refunded_amount, 250);
  EXPECT_EQ(store_->sub_records("txn-1").size(), 3u);
}

TEST_F(Applier, TransactionBeforeItsRequestIsLinkedOnceKnown) {
  EXPECT_EQ(apply(topics_.payment_transactions,
                  body("payment.transaction.state-change.authorized", "v2", "l1", T0 + 50,
                       R"("payment_transaction_id":"txn-9","amount":1000)")),
            "applied");
  EXPECT_FALSE(store_->find_transaction("txn-9")->payment_request_id);
  EXPECT_EQ(apply(topics_.payment_requests,
                  request_event("payment.request.state-change.authorized", "v1", "l2", T0 + 40,
                                R"("state_context":{"payment_transaction_id":"txn-9"})")),
            "applied");
  EXPECT_EQ(store_->find_transaction("txn-9")->payment_request_id, "req-1");
}

TEST_F(Applier, DisputeDeadlinesAndLegacyFrameworkInference) {
  const auto& t = topics_.disputes;
  // A legacy dispute whose first event is one both frameworks send.
  EXPECT_EQ(apply(t, body("payment.dispute.state-change.pre-arbitration", "v1", "d1", T0 + 10,
                          R"("payment_dispute_id":"dis-1")")),
            "applied");
  EXPECT_EQ(store_->find_dispute("dis-1")->state, "PRE_ARBITRATION");
  EXPECT_TRUE(store_->find_dispute("dis-1")->framework_inferred);
  EXPECT_EQ(
      apply(
          t,
          body("payment.dispute.state-change.arbitration-pending", "v1", "d2", T0 + 20,
               R"("payment_dispute_id":"dis-1","arbitration_expires_at":"2026-01-20T00:00:00Z")")),
      "applied")
      << last_reason_;
  auto d = store_->find_dispute("dis-1");
  EXPECT_EQ(d->framework, kpay::storage::DisputeFramework::legacy);
  EXPECT_FALSE(d->framework_inferred);
  EXPECT_EQ(d->state, "ARBITRATION_PENDING");
  EXPECT_EQ(
      apply(
          t,
          body(
              "payment.dispute.updated.arbitration-deadline-extended", "v1", "d3", T0 + 30,
              R"("payment_dispute_id":"dis-1","updated_fields":{"arbitration_expires_at":"2026-01-30T00:00:00Z"})")),
      "applied");
  // An older extension does not move the deadline back.
  EXPECT_EQ(
      apply(
          t,
          body(
              "payment.dispute.updated.arbitration-deadline-extended", "v1", "d4", T0 + 25,
              R"("payment_dispute_id":"dis-1","updated_fields":{"arbitration_expires_at":"2026-01-25T00:00:00Z"})")),
      "stale");
  EXPECT_EQ(store_->find_dispute("dis-1")->arbitration_expires_at_ms,
            processor::parse_rfc3339_ms("2026-01-30T00:00:00Z"));
  // Deadline metrics: within 48 h of the extended deadline, then past it.
  const std::int64_t day = 86'400'000;
  EXPECT_EQ(store_->deadlines(T0, 2 * day).dispute_deadlines_soon, 0);
  EXPECT_EQ(store_->deadlines(T0 + 28 * day, 2 * day).dispute_deadlines_soon, 1);
  EXPECT_EQ(store_->deadlines(T0 + 30 * day, 2 * day).dispute_deadlines_passed, 1);
  // A current-framework event on a known legacy dispute is refused.
  EXPECT_EQ(apply(t, body("payment.dispute.state-change.representment", "v2", "d5", T0 + 40,
                          R"("payment_dispute_id":"dis-1")")),
            "rejected");
}

TEST_F(Applier, PoisonIsRecordedCountedAndDeadLettered) {
  storage::StateStore& s = *store_;
  std::vector<InputMessage> batch;
  std::int64_t off = 0;
  for (const auto& p : test::make_poison(topics_))
    batch.push_back({p.topic, 0, off++, p.key, p.body});
  batch.push_back(
      {topics_.payment_requests, 0, off++, "k",
       body("payment.request.teleported", "v2", "u1", T0, R"("payment_request_id":"x")")});
  batch.push_back({topics_.unrouted, 0, off++, "k", body("marketing.thing", "v1", "u2", T0, "")});
  auto result = applier_->apply(batch);
  EXPECT_EQ(result.applied, 0u);
  EXPECT_EQ(result.rejected, 5u);
  EXPECT_EQ(result.unrouted, 1u);
  EXPECT_EQ(result.poison_by_reason["not_json"], 1u);
  EXPECT_EQ(result.poison_by_reason["unknown_event_version"], 1u);
  EXPECT_EQ(result.poison_by_reason["missing_field"], 1u);
  EXPECT_EQ(result.poison_by_reason["unknown_event_type"], 1u);
  ASSERT_EQ(result.publications.size(), 4u);  // dead-letter copies, byte-exact
  for (const auto& p : result.publications) EXPECT_EQ(p.topic, topics_.processor_dead_letter);
  EXPECT_EQ(result.publications[0].value, "{not json");
  EXPECT_EQ(test::query_int(path_, "SELECT COUNT(*) FROM poison_messages"), 4);
  EXPECT_EQ(test::query_int(path_, "SELECT COUNT(*) FROM history"), 5);
  EXPECT_EQ(s.stored_offset(topics_.payment_requests, 0), 4) << "the partition keeps moving";
}

TEST_F(Applier, StateChangesArePublishedForAppliedTransitionsOnly) {
  std::vector<InputMessage> batch = {
      {topics_.payment_requests, 0, 0, "req-1",
       request_event("payment.request.state-change.in-progress", "v2", "p1", T0 + 10)},
      {topics_.payment_requests, 0, 1, "req-1",
       request_event("payment.request.state-change.submitted", "v2", "p2", T0)},  // stale
  };
  auto r = applier_->apply(batch);
  EXPECT_EQ(r.applied, 1u);
  EXPECT_EQ(r.stale, 1u);
  ASSERT_EQ(r.publications.size(), 1u);
  EXPECT_EQ(r.publications[0].topic, topics_.payment_states);
  EXPECT_EQ(r.publications[0].key, "req-1");
  EXPECT_NE(r.publications[0].value.find(R"("previous_state":null,"state":"IN_PROGRESS")"),
            std::string::npos)
      << r.publications[0].value;
  EXPECT_NE(r.publications[0].value.find(R"("event_id":"p1")"), std::string::npos);
  // Acknowledged publications are deleted with the next batch.
  EXPECT_EQ(store_->pending_publications().size(), 1u);
  std::int64_t seq = r.publications[0].seq;
  applier_->apply(std::span<const InputMessage>(), std::span(&seq, 1));
  EXPECT_TRUE(store_->pending_publications().empty());
}

// Defect A: klarna-sim sends the whole transaction with the capture's fields
// added; `amount` is the authorized amount, not the capture's.
TEST_F(Applier, PartialCaptureBooksTheCaptureAmountNotTheTransactionAmount) {
  const auto& t = topics_.payment_transactions;
  EXPECT_EQ(apply(t, body("payment.transaction.state-change.authorized", "v2", "a1", T0,
                          R"("payment_transaction_id":"txn-1","amount":10000,"currency":"EUR")")),
            "applied");
  EXPECT_EQ(
      apply(t,
            body("payment.transaction.captured", "v2", "c1", T0 + 10,
                 R"("payment_transaction_id":"txn-1","payment_transaction_reference":"o-1",)"
                 R"("state":"AUTHORIZED","amount":10000,"currency":"EUR",)"
                 R"("payment_capture_id":"cap-1","capture_amount":2500,"captured_amount":2500)")),
      "applied");
  EXPECT_EQ(last_reason_, "capture cap-1 recorded: 2500");
  // A refund names its own amount too; the capture list is read by id.
  EXPECT_EQ(
      apply(
          t,
          body("payment.transaction.refunded", "v2", "r1", T0 + 20,
               R"("payment_transaction_id":"txn-1","state":"AUTHORIZED","amount":10000,)"
               R"("payment_refund_id":"ref-1","refund_amount":700,"payment_capture_id":"cap-1")")),
      "applied");
  EXPECT_EQ(apply(t, body("payment.transaction.captured", "v2", "c2", T0 + 30,
                          R"("payment_transaction_id":"txn-1","state":"AUTHORIZED","amount":10000,)"
                          R"("payment_capture_id":"cap-2","payment_captures":[)"
                          R"({"payment_capture_id":"cap-1","capture_amount":2500},)"
                          R"({"payment_capture_id":"cap-2","capture_amount":1500}])")),
            "applied");
  auto row = store_->find_transaction("txn-1");
  ASSERT_TRUE(row);
  EXPECT_EQ(row->amount, 10000);
  EXPECT_EQ(row->captured_amount, 4000);
  EXPECT_EQ(row->refunded_amount, 700);
}

// Only the transaction's `amount` with a whole-transaction shape: nothing is
// guessed; the capture is read from Klarna (once), and booked by the worker.
TEST_F(Applier, AmbiguousCaptureAmountQueuesOneReadInsteadOfBooking) {
  const auto& t = topics_.payment_transactions;
  auto ambiguous = [&](const char* event_id, std::int64_t at) {
    return body("payment.transaction.captured", "v2", event_id, at,
                R"("payment_transaction_id":"txn-1","state":"AUTHORIZED","amount":10000,)"
                R"("currency":"EUR","payment_capture_id":"krn:capture:1")");
  };
  EXPECT_EQ(apply(t, ambiguous("c1", T0)), "applied");
  EXPECT_EQ(last_reason_, "capture amount ambiguous: read queued");
  EXPECT_TRUE(store_->sub_records("txn-1").empty());
  EXPECT_EQ(store_->find_transaction("txn-1")->captured_amount, 0);
  EXPECT_EQ(apply(t, ambiguous("c2", T0 + 1)), "applied") << "announced again: same read";
  auto outbox = store_->outbox("txn-1");
  ASSERT_EQ(outbox.size(), 1u);
  EXPECT_EQ(outbox[0].operation, kpay::storage::OutboxOperation::read_capture);
  EXPECT_EQ(outbox[0].method, "GET");
  EXPECT_EQ(outbox[0].path, "/payment/captures/krn%3Acapture%3A1");
  EXPECT_EQ(outbox[0].request_body, "");
  EXPECT_EQ(outbox[0].account_id, kAccount);
  // The worker books it from the answer; a later announcement is then stale.
  storage::SubRecordRow sub;
  sub.kind = "capture";
  sub.id = "krn:capture:1";
  sub.transaction_id = "txn-1";
  sub.amount = 2500;
  ASSERT_TRUE(store_->insert_sub_record(sub));
  EXPECT_EQ(apply(t, ambiguous("c3", T0 + 2)), "stale");
  // A minimal payload (no transaction-level fields) still books its amount.
  EXPECT_EQ(apply(t, body("payment.transaction.captured", "v2", "c4", T0 + 3,
                          R"("payment_transaction_id":"txn-1","payment_capture_id":"cap-2",)"
                          R"("amount":500)")),
            "applied");
  EXPECT_EQ(store_->find_transaction("txn-1")->captured_amount, 500);
}

// Defect B: v1 and v2 subscriptions both deliver one request. Both events
// apply to the one row; the approval causes exactly one call.
TEST_F(Applier, V1AndV2DeliveriesOfOneApprovalCauseOneCall) {
  const auto& t = topics_.payment_requests;
  auto pending = request_event("payment.request.state-change.pending-confirmation", "v1", "p1",
                               T0 + 10, R"("state_context":{"payment_confirmation_token":"pct"})");
  auto completed = request_event("payment.request.state-change.completed", "v2", "c1", T0 + 10,
                                 R"("state_context":{"klarna_network_session_token":"kns"})");
  EXPECT_EQ(apply(t, request_event("payment.request.state-change.submitted", "v1", "s1", T0)),
            "applied");
  EXPECT_EQ(apply(t, pending), "applied") << last_reason_;
  EXPECT_EQ(apply(t, completed), "applied") << last_reason_;
  EXPECT_NE(last_reason_.find("confirm queued by the v1 delivery"), std::string::npos)
      << last_reason_;
  auto outbox = store_->outbox("req-1");
  ASSERT_EQ(outbox.size(), 1u);
  EXPECT_EQ(outbox[0].operation, kpay::storage::OutboxOperation::confirm);
  EXPECT_EQ(store_->find_request("req-1")->state, "COMPLETED");
  // The v1 result still applies: the request is AUTHORIZED.
  EXPECT_EQ(apply(t, request_event("payment.request.state-change.authorized", "v1", "a1", T0 + 20,
                                   R"("state_context":{"payment_transaction_id":"txn-1"})")),
            "applied")
      << last_reason_;
  EXPECT_EQ(store_->find_request("req-1")->state, "AUTHORIZED");

  // The other order, on another request.
  auto other = [](std::string s) {
    for (auto at = s.find("req-1"); at != std::string::npos; at = s.find("req-1"))
      s.replace(at, 5, "req-2");
    return s;
  };
  auto pending2 = other(pending);
  auto completed2 = other(completed);
  pending2.replace(pending2.find("\"p1\""), 4, "\"p2\"");
  completed2.replace(completed2.find("\"c1\""), 4, "\"c2\"");
  EXPECT_EQ(apply(t, completed2), "applied") << last_reason_;
  EXPECT_EQ(apply(t, pending2), "applied") << last_reason_;
  outbox = store_->outbox("req-2");
  ASSERT_EQ(outbox.size(), 1u);
  EXPECT_EQ(outbox[0].operation, kpay::storage::OutboxOperation::final_authorization);
  EXPECT_EQ(test::query_int(path_, "SELECT COUNT(*) FROM history WHERE outcome = 'rejected'"), 0);
}

// Both subscriptions deliver: a v1 event that arrives after the v2 approval
// (held back, or Klarna's retry) must not take a COMPLETED request back. Seen
// in the full-loop test: a late v1 in-progress left a request IN_PROGRESS.
TEST_F(Applier, ALateV1EventNeverTakesAV2CompletedRequestBack) {
  const auto& t = topics_.payment_requests;
  EXPECT_EQ(apply(t, request_event("payment.request.state-change.completed", "v2", "c1", T0 + 10,
                                   R"("state_context":{"klarna_network_session_token":"kns"})")),
            "applied");
  for (auto [type, id] : {std::pair{"in-progress", "i1"}, {"submitted", "s1"}}) {
    EXPECT_NE(apply(t, request_event(std::string("payment.request.state-change.") + type, "v1", id,
                                     T0 + 20)),
              "applied")
        << type;
    EXPECT_EQ(store_->find_request("req-1")->state, "COMPLETED") << type << ": " << last_reason_;
  }
  EXPECT_EQ(store_->outbox("req-1").size(), 1u);
}

// metadata.live contradicting the deployment (test by default): the state
// applies, no call is ever queued, and it is counted.
TEST_F(Applier, AnEventFromTheOtherEnvironmentNeverCausesACall) {
  auto live = std::string(kTestAccount) + R"(,"live":true)";
  InputMessage m{topics_.payment_requests, 0, offset_++, "req-1",
                 body("payment.request.state-change.completed", "v2", "c1", T0,
                      R"("payment_request_id":"req-1","amount":1000,"currency":"EUR",)"
                      R"("klarna_network_session_token":"kns")",
                      live)};
  auto r = applier_->apply(std::span(&m, 1));
  EXPECT_EQ(r.applied, 1u);
  EXPECT_EQ(r.environment_mismatch, 1u);
  EXPECT_EQ(store_->find_request("req-1")->state, "COMPLETED");
  EXPECT_TRUE(store_->outbox("req-1").empty());
  EXPECT_EQ(store_->history("req-1").back().reason,
            "created: live=true event in a test deployment: no call");
  // live=false in a test deployment is fine.
  auto test_event = std::string(kTestAccount) + R"(,"live":false)";
  EXPECT_EQ(apply(topics_.payment_requests,
                  body("payment.request.state-change.completed", "v2", "c2", T0,
                       R"("payment_request_id":"req-2","amount":1000,"currency":"EUR",)"
                       R"("klarna_network_session_token":"kns")",
                       test_event)),
            "applied");
  EXPECT_EQ(store_->outbox("req-2").size(), 1u);
}

TEST_F(Applier, NoSubjectAccountNoCallAndTheHistorySaysWhy) {
  EXPECT_EQ(apply(topics_.payment_requests,
                  body("payment.request.state-change.completed", "v2", "c1", T0,
                       R"("payment_request_id":"req-1","amount":1000,"currency":"EUR",)"
                       R"("klarna_network_session_token":"kns")",
                       "")),
            "applied");
  EXPECT_EQ(last_reason_, "created; no subject_account_id: no call");
  EXPECT_TRUE(store_->outbox("req-1").empty());
}

// payment.transaction.state-change.authorized: the automatic capture of what
// is not captured yet (policy after_authorization, the default).
TEST_F(Applier, AuthorizedTransactionQueuesTheAutomaticCaptureOfTheRest) {
  const auto& t = topics_.payment_transactions;
  EXPECT_EQ(apply(t, body("payment.transaction.captured", "v2", "c0", T0,
                          R"("payment_transaction_id":"txn-1","payment_capture_id":"cap-0",)"
                          R"("capture_amount":300)")),
            "applied");
  EXPECT_EQ(apply(t, body("payment.transaction.state-change.authorized", "v2", "a1", T0 + 10,
                          R"("payment_transaction_id":"txn-1","amount":1000,"currency":"EUR",)"
                          R"("payment_transaction_reference":"order-1")")),
            "applied");
  EXPECT_EQ(last_reason_, "created: capture queued");
  auto outbox = store_->outbox("txn-1");
  ASSERT_EQ(outbox.size(), 1u);
  EXPECT_EQ(outbox[0].operation, kpay::storage::OutboxOperation::capture);
  EXPECT_EQ(outbox[0].path, "/payment/transactions/txn-1/capture");
  EXPECT_EQ(outbox[0].idempotency_key, processor::idempotency_key("capture", "txn-1", "auto"));
  EXPECT_EQ(outbox[0].request_body,
            R"({"capture_amount":700,"payment_capture_reference":"order-1"})");
  EXPECT_EQ(store_->find_transaction("txn-1")->account_id, kAccount);
}

TEST_F(Applier, CapturePolicyPerAccount) {
  processor::FollowUpSettings settings;
  settings.capture_by_account[std::string(kAccount)] = processor::CapturePolicy::now;
  applier_ = std::make_unique<BatchApplier>(*store_, klarna::Topics{}, settings);
  EXPECT_EQ(
      apply(topics_.payment_requests, request_event("payment.request.state-change.completed", "v2",
                                                    "c1", T0, R"("payment_token":"legacy-token")")),
      "applied");
  auto outbox = store_->outbox("req-1");
  ASSERT_EQ(outbox.size(), 1u);
  EXPECT_EQ(outbox[0].token_header, "Klarna-Payment-Token") << "the legacy token's header";
  EXPECT_NE(outbox[0].request_body.find(R"("capture":"NOW")"), std::string::npos);
  // Captured at authorization already: no capture call after it.
  EXPECT_EQ(apply(topics_.payment_transactions,
                  body("payment.transaction.state-change.authorized", "v2", "a1", T0 + 10,
                       R"("payment_transaction_id":"txn-1","amount":1000)")),
            "applied");
  EXPECT_TRUE(store_->outbox("txn-1").empty());
}

// The heart of order independence: the same lifecycles, shuffled and with
// duplicates, reach exactly the entity state of the ordered stream.
TEST(Convergence, ShuffledWithDuplicatesEqualsOrdered) {
  klarna::Topics topics;
  auto ordered = test::make_lifecycles(180, topics, 7);
  auto dir = test::make_temp_dir("converge");
  auto run = [&](const std::vector<test::TestEvent>& events, const std::string& file,
                 std::size_t batch_size) {
    storage::StateStore store(dir + "/" + file);
    BatchApplier applier(store, topics);
    std::vector<InputMessage> batch;
    std::int64_t offset = 0;
    for (const auto& e : events) {
      batch.push_back({e.topic, 0, offset++, e.key, e.body});
      if (batch.size() == batch_size) {
        applier.apply(batch);
        batch.clear();
      }
    }
    applier.apply(batch);
  };
  run(ordered, "ordered.db", 50);
  const auto expected = test::dump_entities(dir + "/ordered.db");
  EXPECT_EQ(test::query_int(dir + "/ordered.db",
                            "SELECT COUNT(*) FROM history WHERE outcome <> 'applied'"),
            0)
      << "the ordered stream applies every event";
  for (std::uint32_t seed : {1u, 2u, 3u, 4u, 5u}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    auto shuffled = test::shuffle_with_duplicates(ordered, 0.2, seed);
    const std::string file = "shuffled-" + std::to_string(seed) + ".db";
    run(shuffled, file, 1 + seed * 37);
    EXPECT_EQ(test::dump_entities(dir + "/" + file), expected);
    EXPECT_EQ(test::query_int(dir + "/" + file, "SELECT COUNT(*) FROM history"),
              static_cast<long long>(shuffled.size()));
    EXPECT_EQ(test::query_int(dir + "/" + file,
                              "SELECT COUNT(*) FROM history WHERE outcome = 'duplicate'"),
              static_cast<long long>(shuffled.size() - ordered.size()));
    EXPECT_EQ(test::query_int(dir + "/" + file,
                              "SELECT COUNT(*) FROM history WHERE outcome = 'rejected'"),
              0);
  }
  std::filesystem::remove_all(dir);
}

TEST(StateStore, RefusesANewerSchema) {
  auto dir = test::make_temp_dir("schema");
  {
    storage::StateStore store(dir + "/s.db");
    store.database().exec(
        "INSERT INTO schema_migrations (schema, version, name, applied_at) VALUES ('state', 99, "
        "'future', 0)");
  }
  EXPECT_THROW({ storage::StateStore again(dir + "/s.db"); }, storage::SchemaTooNewError);
  std::filesystem::remove_all(dir);
}

// The per-entity history index is filled in bulk (schema v2): rows before and
// after a fill, and rows a version-1 database already held, are all found.
TEST(StateStore, HistoryByEntitySpansTheBulkIndexAndAMigratedV1Database) {
  auto dir = test::make_temp_dir("history-index");
  const std::string path = dir + "/s.db";
  auto fnv1a = [](std::string_view id) {  // the stored entity_hash
    std::uint64_t h = 1469598103934665603ULL;
    for (unsigned char c : id) {
      h ^= c;
      h *= 1099511628211ULL;
    }
    return static_cast<std::int64_t>(h);
  };
  {  // What version 1 left behind: history rows under a per-row index.
    auto db = storage::Database::open(path);
    storage::migrate(db, "state", storage::state_migrations().first(1));
    auto ins = db.prepare(
        "INSERT INTO history (event_id, entity_kind, entity_id, entity_hash, event_type, "
        "event_version, occurred_at, outcome, reason, topic, partition, offset) "
        "VALUES (?, 'payment_request', ?, ?, 't', 'v1', 'at', 'applied', '', 'topic', 0, ?)");
    int offset = 0;
    for (const char* entity : {"e-1", "e-2", "e-1"}) {
      ins.bind(1, "v1-" + std::to_string(offset)).bind(2, entity).bind(3, fnv1a(entity));
      ins.bind(4, offset++);
      ins.run();
    }
  }
  storage::StateStore store(path);
  EXPECT_EQ(store.schema_version(), storage::state_migrations().back().version);
  auto ids = [&](const std::string& entity) {
    std::vector<std::string> out;
    for (const auto& h : store.history(entity)) out.push_back(h.event_id);
    return out;
  };
  EXPECT_EQ(ids("e-1"), (std::vector<std::string>{"v1-0", "v1-2"}));
  for (int i = 0; i < 3; ++i) {
    storage::HistoryRow h;
    h.event_id = "v2-" + std::to_string(i);
    h.entity_kind = "payment_request";
    h.entity_id = i == 1 ? "e-2" : "e-1";
    h.outcome = "applied";
    store.append_history(h);
  }
  // Not indexed yet: found by the tail scan.
  EXPECT_FALSE(store.index_history_if_due(100));
  EXPECT_EQ(ids("e-1"), (std::vector<std::string>{"v1-0", "v1-2", "v2-0", "v2-2"}));
  EXPECT_EQ(ids("e-2"), (std::vector<std::string>{"v1-1", "v2-1"}));
  // Indexed: the same answer, now from the index.
  EXPECT_TRUE(store.index_history_if_due(3));
  EXPECT_EQ(test::query_int(path, "SELECT COUNT(*) FROM history_by_entity"), 6);
  EXPECT_EQ(test::query_int(path, "SELECT through_seq FROM history_indexed"), 6);
  EXPECT_EQ(ids("e-1"), (std::vector<std::string>{"v1-0", "v1-2", "v2-0", "v2-2"}));
  EXPECT_EQ(ids("e-2"), (std::vector<std::string>{"v1-1", "v2-1"}));
  EXPECT_TRUE(ids("e-3").empty());
  std::filesystem::remove_all(dir);
}

TEST(Rfc3339, ParsesKlarnaTimestamps) {
  EXPECT_EQ(processor::parse_rfc3339_ms("2026-01-01T00:00:00Z"), T0);
  EXPECT_EQ(processor::parse_rfc3339_ms("2026-01-01T00:00:00.123Z"), T0 + 123);
  EXPECT_EQ(processor::parse_rfc3339_ms("2026-01-01T01:00:00+01:00"), T0);
  EXPECT_FALSE(processor::parse_rfc3339_ms("2026-01-01 00:00:00"));
  EXPECT_FALSE(processor::parse_rfc3339_ms("yesterday"));
}

// The same event_id with another body is a conflict, not a duplicate: dead-
// lettered with both digests, the state untouched; the same body again stays
// an ordinary duplicate.
TEST_F(Applier, SameEventIdWithAnotherBodyIsAConflictNotADuplicate) {
  const auto submitted = request_event("payment.request.state-change.submitted", "v2", "ev-1", T0);
  EXPECT_EQ(apply(topics_.payment_requests, submitted), "applied");
  EXPECT_EQ(apply(topics_.payment_requests, submitted), "duplicate");

  std::string other = body("payment.request.state-change.expired", "v2", "ev-1", T0 + 1000,
                           R"("payment_request_id":"req-1","amount":99999900,"currency":"EUR")");
  InputMessage m{topics_.payment_requests, 0, offset_++, "req-1", other};
  auto r = applier_->apply(std::span(&m, 1));
  EXPECT_EQ(r.conflicts, 1u);
  EXPECT_EQ(r.duplicates, 0u);
  EXPECT_EQ(r.applied, 0u);
  EXPECT_EQ(r.poison_by_reason["event_id_conflict"], 1u);
  EXPECT_EQ(store_->find_request("req-1")->state, "SUBMITTED");
  EXPECT_EQ(store_->find_request("req-1")->amount, 1000);

  auto conflicts = store_->list_conflicts(10);
  ASSERT_EQ(conflicts.size(), 1u);
  EXPECT_EQ(conflicts[0].event_id, "ev-1");
  EXPECT_EQ(conflicts[0].offset, 2);
  EXPECT_EQ(conflicts[0].first_offset, 0);
  EXPECT_EQ(conflicts[0].digest.size(), 32u);
  EXPECT_EQ(conflicts[0].first_digest.size(), 8u);  // the inbox keeps a prefix (v14)
  EXPECT_FALSE(conflicts[0].digest.starts_with(conflicts[0].first_digest));
  auto dead = store_->list_poison(10);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].reason, "event_id_conflict");
  auto s =
      store_->database().prepare("SELECT outcome, reason FROM history ORDER BY seq DESC LIMIT 1");
  s.step();
  EXPECT_EQ(s.text(0), "rejected");
  EXPECT_NE(s.text(1).find("conflict: event_id applied before with another body"),
            std::string::npos);
}
