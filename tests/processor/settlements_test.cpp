// Settlements on a real SQLite file:
//   - a failed payout is surfaced once (BatchResult, the payment-states
//     message), not again on a redelivery;
//   - the reconciler: a settlement matching the processor's captures,
//     refunds and chargebacks finds nothing; each difference is exactly its
//     typed finding, with both sides, once however often it runs.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <optional>

#include "child_process.hpp"
#include "kpay/core/log.hpp"
#include "kpay/klarna/envelope.hpp"
#include "kpay/processor/batch_applier.hpp"
#include "kpay/processor/reconciler.hpp"
#include "kpay/processor/settlement_watch.hpp"
#include "kpay/storage/reconciliation_store.hpp"
#include "kpay/storage/state_store.hpp"

using namespace kpay;
using processor::BatchApplier;
using processor::InputMessage;
using storage::FindingRow;
using storage::SettlementLineRow;
using storage::SettlementRow;

namespace {

constexpr std::int64_t T0 = 1'767'225'600'000;  // 2026-01-01T00:00:00Z
constexpr std::int64_t kHour = 3'600'000;

std::string payout_event(std::string_view type, std::string_view event_id) {
  return R"({"metadata":{"event_type":")" + std::string(type) + R"(","event_id":")" +
         std::string(event_id) +
         R"(","event_version":"v2","occurred_at":"2026-01-02T00:00:00Z",)"
         R"("subject_account_id":"acc-1"},"payload":{"settlement_id":"stl-9",)"
         R"("payout_id":"po-9","payout_amount":987654,"currency":"EUR"}})";
}

std::string dispute_event(std::string_view type, std::string_view event_id,
                          std::string_view payload) {
  return R"({"metadata":{"event_type":")" + std::string(type) + R"(","event_id":")" +
         std::string(event_id) +
         R"(","event_version":"v2","occurred_at":"2026-01-02T00:00:00Z",)"
         R"("subject_account_id":"acc-1"},"payload":{"payment_dispute_id":"dis-1",)" +
         std::string(payload) + "}}";
}

class Settlements : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::make_temp_dir("settlements");
    store_.emplace(dir_ + "/state.db");
    recon_ = &storage::ledger_of(*store_);
  }
  void TearDown() override {
    recon_ = nullptr;
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  processor::BatchResult apply(const std::string& body) {
    auto env = klarna::parse_envelope(body);
    EXPECT_TRUE(env.envelope);
    InputMessage m{topics_.for_family(env.envelope->family), 0, offset_++, env.envelope->entity_id,
                   body};
    BatchApplier applier(*store_, topics_);
    return applier.apply(std::span(&m, 1));
  }

  // A transaction in EUR with one sub-record.
  void executed(std::string kind, std::string id, std::string tx, std::int64_t amount,
                std::int64_t at_ms = T0) {
    if (!store_->find_transaction(tx)) {
      storage::PaymentTransactionRow t;
      t.id = tx;
      t.state = "AUTHORIZED";
      t.amount = 100000;
      t.currency = "EUR";
      t.last_event_id = "e-" + tx;
      store_->save_transaction(t);
    }
    storage::SubRecordRow r;
    r.kind = std::move(kind);
    r.id = std::move(id);
    r.transaction_id = std::move(tx);
    r.amount = amount;
    r.occurred_at_ms = at_ms;
    r.event_id = "e-" + r.id;
    ASSERT_TRUE(store_->insert_sub_record(r));
  }

  void settlement(const std::string& id, std::optional<std::int64_t> payout,
                  std::string currency = "EUR") {
    SettlementRow s;
    s.settlement_id = id;
    s.account_id = "acc-1";
    s.status = "fetched";
    s.currency = currency;
    s.payout_amount = payout;
    s.caused_by = "evt-" + id;
    s.created_at_ms = T0 + static_cast<std::int64_t>(next_line_.size());  // in creation order
    ASSERT_TRUE(recon_->insert_settlement(s));
  }

  void line(const std::string& settlement, std::string type, std::int64_t amount,
            std::optional<std::string> capture = std::nullopt,
            std::optional<std::string> refund = std::nullopt, std::optional<std::string> tx = {},
            std::string currency = "EUR") {
    SettlementLineRow l;
    l.settlement_id = settlement;
    l.line_no = next_line_[settlement]++;
    l.type = std::move(type);
    l.amount = amount;
    l.capture_id = std::move(capture);
    l.refund_id = std::move(refund);
    l.payment_transaction_id = std::move(tx);
    l.currency = std::move(currency);
    ASSERT_TRUE(recon_->insert_line(l));
  }

  void chargeback_line(const std::string& settlement, std::int64_t amount,
                       const std::string& dispute) {
    SettlementLineRow l;
    l.settlement_id = settlement;
    l.line_no = next_line_[settlement]++;
    l.type = "CHARGEBACK";
    l.amount = amount;
    l.payment_transaction_id = "tx-2";
    l.dispute_id = dispute;
    l.currency = "EUR";
    ASSERT_TRUE(recon_->insert_line(l));
  }

  // The klarna.reconciliation messages among `r`'s publications.
  std::vector<std::string> findings_published(const processor::BatchResult& r) {
    std::vector<std::string> out;
    for (const auto& p : r.publications) {
      if (p.topic == topics_.reconciliation) out.push_back(p.value);
    }
    return out;
  }

  std::vector<std::string> kinds(const std::vector<FindingRow>& found) {
    std::vector<std::string> out;
    for (const auto& f : found) out.push_back(f.kind + " " + f.subject);
    return out;
  }

  // The happy book: two captures, one refund, one fee; payout 9000+5000-2000-300.
  void happy_book() {
    executed("capture", "cap-1", "tx-1", 9000);
    executed("capture", "cap-2", "tx-2", 5000);
    executed("refund", "ref-1", "tx-1", 2000);
  }
  void happy_lines(const std::string& s) {
    line(s, "SALE", 9000, "cap-1", std::nullopt, "tx-1");
    line(s, "SALE", 5000, "cap-2", std::nullopt, "tx-2");
    line(s, "RETURN", 2000, std::nullopt, "ref-1", "tx-1");
    line(s, "FEE", 300, std::nullopt, std::nullopt, "tx-1");
  }

  klarna::Topics topics_;
  std::string dir_;
  std::optional<storage::StateStore> store_;
  storage::SettlementLedger* recon_ = nullptr;
  std::int64_t offset_ = 0;
  std::map<std::string, std::int64_t> next_line_;
};

using Kinds = std::vector<std::string>;

// ---- failed payouts ---------------------------------------------------------------------

TEST_F(Settlements, AFailedPayoutIsSurfacedOnce) {
  auto r = apply(payout_event("settlement.payout.failed", "evt-f1"));
  ASSERT_EQ(r.failed_payouts.size(), 1u);
  const auto& p = r.failed_payouts[0];
  EXPECT_EQ(p.entity_id, "stl-9");
  EXPECT_EQ(p.settlement_id, "stl-9");
  EXPECT_EQ(p.payout_id, "po-9");
  EXPECT_EQ(p.amount, 987654);
  EXPECT_EQ(p.currency, "EUR");
  ASSERT_EQ(r.publications.size(), 1u);
  EXPECT_NE(r.publications[0].value.find(R"("state":"PAYOUT_FAILED")"), std::string::npos);
  EXPECT_NE(r.publications[0].value.find(R"("payout_failed":true)"), std::string::npos)
      << r.publications[0].value;
  // The same event again (a redelivery): nothing new to surface.
  EXPECT_TRUE(apply(payout_event("settlement.payout.failed", "evt-f1")).failed_payouts.empty());
  // Another delivery of the failure (new event_id): the payout is FAILED already.
  EXPECT_TRUE(apply(payout_event("settlement.payout.failed", "evt-f2")).failed_payouts.empty());
}

TEST_F(Settlements, AConfirmedPayoutIsNoFailure) {
  auto r = apply(payout_event("settlement.payout.confirmed", "evt-c1"));
  EXPECT_TRUE(r.failed_payouts.empty());
  ASSERT_EQ(r.publications.size(), 1u);
  EXPECT_EQ(r.publications[0].value.find("payout_failed"), std::string::npos);
}

// ---- the reconciler ----------------------------------------------------------------------

TEST_F(Settlements, AMatchingSettlementFindsNothing) {
  happy_book();
  settlement("stl-1", 9000 + 5000 - 2000 - 300);
  happy_lines("stl-1");
  auto r = processor::reconcile_settlement(*store_, "stl-1", T0 + kHour);
  EXPECT_EQ(r.lines, 4);
  EXPECT_EQ(kinds(r.found), Kinds{});
  EXPECT_EQ(recon_->find_settlement("stl-1")->status, "reconciled");
  // Nothing is missing: every capture and refund is settled.
  EXPECT_EQ(kinds(processor::find_missing(*store_, T0 + 1000 * kHour, std::chrono::hours(1)).found),
            Kinds{});
  EXPECT_TRUE(recon_->unsettled_capture_amounts().empty());
}

TEST_F(Settlements, ACaptureLeftOutIsMissingAfterTheGracePeriodOnly) {
  happy_book();
  executed("capture", "cap-3", "tx-3", 700, T0);
  settlement("stl-1", 11700);
  happy_lines("stl-1");
  EXPECT_EQ(kinds(processor::reconcile_settlement(*store_, "stl-1", T0 + kHour).found), Kinds{});
  const auto grace = std::chrono::hours(72);
  EXPECT_EQ(kinds(processor::find_missing(*store_, T0 + 71 * kHour, grace).found), Kinds{});
  auto found = processor::find_missing(*store_, T0 + 73 * kHour, grace).found;
  ASSERT_EQ(kinds(found), Kinds{"missing_in_settlement cap-3"});
  EXPECT_NE(found[0].ours_json.find(R"("amount":700)"), std::string::npos) << found[0].ours_json;
  EXPECT_NE(found[0].ours_json.find(R"("currency":"EUR")"), std::string::npos);
  EXPECT_EQ(found[0].theirs_json, "{}");
  EXPECT_EQ(recon_->unsettled_capture_amounts(),
            (std::map<std::string, std::int64_t>{{"EUR", 700}}));
  // Once: looking again finds nothing new.
  EXPECT_EQ(kinds(processor::find_missing(*store_, T0 + 80 * kHour, grace).found), Kinds{});
  // Settled later: the finding is resolved.
  settlement("stl-2", 700);
  line("stl-2", "SALE", 700, "cap-3", std::nullopt, "tx-3");
  auto later = processor::reconcile_settlement(*store_, "stl-2", T0 + 90 * kHour);
  EXPECT_EQ(kinds(later.found), Kinds{});
  EXPECT_EQ(later.resolved, 1);
  EXPECT_TRUE(recon_->open_findings_by_kind().empty());
}

TEST_F(Settlements, ASaleOfNoKnownCaptureIsUnexpected) {
  happy_book();
  settlement("stl-1", 11700 + 400);
  happy_lines("stl-1");
  line("stl-1", "SALE", 400, "cap-unknown", std::nullopt, "tx-9");
  auto found = processor::reconcile_settlement(*store_, "stl-1", T0).found;
  ASSERT_EQ(kinds(found), Kinds{"unexpected_in_settlement cap-unknown"});
  EXPECT_EQ(found[0].ours_json, "{}");
  EXPECT_NE(found[0].theirs_json.find(R"("capture_id":"cap-unknown")"), std::string::npos);
  EXPECT_EQ(found[0].finding_id, "unexpected_in_settlement:stl-1:cap-unknown");
}

TEST_F(Settlements, AWrongAmountIsAnAmountMismatchWithBothSides) {
  happy_book();
  settlement("stl-1", 9100 + 5000 - 2000 - 300);
  line("stl-1", "SALE", 9100, "cap-1", std::nullopt, "tx-1");
  line("stl-1", "SALE", 5000, "cap-2", std::nullopt, "tx-2");
  line("stl-1", "RETURN", 2000, std::nullopt, "ref-1", "tx-1");
  line("stl-1", "FEE", 300, std::nullopt, std::nullopt, "tx-1");
  auto found = processor::reconcile_settlement(*store_, "stl-1", T0).found;
  ASSERT_EQ(kinds(found), Kinds{"amount_mismatch cap-1"});
  EXPECT_NE(found[0].ours_json.find(R"("amount":9000)"), std::string::npos);
  EXPECT_NE(found[0].theirs_json.find(R"("amount":9100)"), std::string::npos);
}

TEST_F(Settlements, ACaptureSettledTwiceIsADuplicateOnce) {
  happy_book();
  settlement("stl-1", 11700 + 9000);
  happy_lines("stl-1");
  line("stl-1", "SALE", 9000, "cap-1", std::nullopt, "tx-1");
  EXPECT_EQ(kinds(processor::reconcile_settlement(*store_, "stl-1", T0).found),
            Kinds{"duplicate_settlement cap-1"});
  // And in a later settlement again.
  settlement("stl-2", 5000);
  line("stl-2", "SALE", 5000, "cap-2", std::nullopt, "tx-2");
  auto found = processor::reconcile_settlement(*store_, "stl-2", T0).found;
  ASSERT_EQ(kinds(found), Kinds{"duplicate_settlement cap-2"});
  EXPECT_NE(found[0].detail.find("before in stl-1"), std::string::npos) << found[0].detail;
  // The earlier report checked again does not find the same double payment
  // from its side.
  EXPECT_EQ(kinds(processor::reconcile_settlement(*store_, "stl-1", T0 + kHour).found), Kinds{});
}

TEST_F(Settlements, APayoutThatDoesNotAddUpIsAPayoutMismatch) {
  happy_book();
  settlement("stl-1", 11700 - 1);
  happy_lines("stl-1");
  auto found = processor::reconcile_settlement(*store_, "stl-1", T0).found;
  ASSERT_EQ(kinds(found), Kinds{"payout_mismatch payout"});
  EXPECT_NE(found[0].ours_json.find(R"("payout_amount":11700)"), std::string::npos);
  EXPECT_NE(found[0].theirs_json.find(R"("payout_amount":11699)"), std::string::npos);
}

TEST_F(Settlements, AReportTotalThatDisagreesWithItsLinesIsAPayoutMismatch) {
  happy_book();
  SettlementRow s;
  s.settlement_id = "stl-1";
  s.account_id = "acc-1";
  s.currency = "EUR";
  s.payout_amount = 11700;
  s.total_sale_amount = 14000;
  s.total_return_amount = 2000;
  s.total_fee_amount = 333;
  s.caused_by = "evt";
  ASSERT_TRUE(recon_->insert_settlement(s));
  happy_lines("stl-1");
  EXPECT_EQ(kinds(processor::reconcile_settlement(*store_, "stl-1", T0).found),
            Kinds{"payout_mismatch total_fee_amount"});
}

TEST_F(Settlements, ALineInAnotherCurrencyIsACurrencyMismatch) {
  happy_book();
  settlement("stl-1", 11700);
  line("stl-1", "SALE", 9000, "cap-1", std::nullopt, "tx-1", "SEK");
  line("stl-1", "SALE", 5000, "cap-2", std::nullopt, "tx-2");
  line("stl-1", "RETURN", 2000, std::nullopt, "ref-1", "tx-1");
  line("stl-1", "FEE", 300, std::nullopt, std::nullopt, "tx-1");
  auto found = processor::reconcile_settlement(*store_, "stl-1", T0).found;
  ASSERT_EQ(kinds(found), Kinds{"currency_mismatch cap-1"});
  EXPECT_NE(found[0].ours_json.find(R"("currency":"EUR")"), std::string::npos);
  EXPECT_NE(found[0].theirs_json.find(R"("currency":"SEK")"), std::string::npos);
}

TEST_F(Settlements, ChargebacksAreComparedWithTheTransactionsChargebacks) {
  happy_book();
  executed("chargeback", "cb-1", "tx-2", 1500);
  settlement("stl-1", 11700 - 1500 - 900);
  happy_lines("stl-1");
  line("stl-1", "CHARGEBACK", 1500, std::nullopt, std::nullopt, "tx-2");
  line("stl-1", "CHARGEBACK", 900, std::nullopt, std::nullopt, "tx-unknown");
  EXPECT_EQ(kinds(processor::reconcile_settlement(*store_, "stl-1", T0).found),
            Kinds{"unexpected_in_settlement tx-unknown"});
}

TEST_F(Settlements, ReconcilingAgainFindsNothingNew) {
  happy_book();
  settlement("stl-1", 1);
  happy_lines("stl-1");
  line("stl-1", "SALE", 400, "cap-unknown", std::nullopt, "tx-9");
  EXPECT_EQ(processor::reconcile_settlement(*store_, "stl-1", T0).found.size(), 2u);
  EXPECT_TRUE(processor::reconcile_settlement(*store_, "stl-1", T0 + kHour).found.empty());
  EXPECT_EQ(recon_->findings_of("stl-1").size(), 2u);
  EXPECT_EQ(recon_->open_findings_by_kind(),
            (std::map<std::string, std::int64_t>{{"payout_mismatch", 1},
                                                 {"unexpected_in_settlement", 1}}));
}

TEST_F(Settlements, AFindingMessageCarriesBothSides) {
  FindingRow f;
  f.finding_id = "amount_mismatch:s:c";
  f.kind = "amount_mismatch";
  f.settlement_id = "s";
  f.subject = "c";
  f.ours_json = R"({"amount":1})";
  f.theirs_json = R"({"amount":2})";
  f.detail = "d";
  f.found_at_ms = 5;
  EXPECT_EQ(processor::finding_message(f),
            R"({"finding_id":"amount_mismatch:s:c","kind":"amount_mismatch","settlement_id":"s",)"
            R"("subject":"c","ours":{"amount":1},"theirs":{"amount":2},"detail":"d",)"
            R"("found_at_ms":5})");
  f.resolved_at_ms = 6;  // published again once resolved
  EXPECT_NE(processor::finding_message(f).find(R"("found_at_ms":5,"resolved_at_ms":6})"),
            std::string::npos);
}

// ---- findings whose counterpart arrives later --------------------------------------------

// Klarna settled the chargeback before the processor applied the dispute's
// loss (webhooks and settlement reports race): the line is unexpected until
// the loss is applied, then the finding is resolved and published so.
TEST_F(Settlements, AChargebackSettledBeforeTheDisputeWasLostIsResolvedByTheLoss) {
  happy_book();
  apply(dispute_event("payment.dispute.state-change.initiated", "d-1",
                      R"("dispute_details":{"dispute_amount":1200,"currency":"EUR"})"));
  settlement("stl-1", 11700 - 1200);
  happy_lines("stl-1");
  chargeback_line("stl-1", 1200, "dis-1");
  EXPECT_EQ(kinds(processor::reconcile_settlement(*store_, "stl-1", T0).found),
            Kinds{"unexpected_in_settlement dis-1"});
  EXPECT_EQ(recon_->open_findings_by_kind(),
            (std::map<std::string, std::int64_t>{{"unexpected_in_settlement", 1}}));

  auto r = apply(dispute_event("payment.dispute.state-change.closed", "d-2",
                               R"("dispute_outcome":"LOST","closed_at":"2026-01-30T00:00:00Z")"));
  EXPECT_TRUE(recon_->open_findings_by_kind().empty());
  const auto stored = recon_->findings_of("stl-1");
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_TRUE(stored[0].resolved_at_ms.has_value());
  const auto published = findings_published(r);
  ASSERT_EQ(published.size(), 1u);
  EXPECT_NE(published[0].find(R"("finding_id":"unexpected_in_settlement:stl-1:dis-1")"),
            std::string::npos)
      << published[0];
  EXPECT_NE(published[0].find(R"("resolved_at_ms":)"), std::string::npos) << published[0];
  // Reconciled again: still nothing open, nothing new.
  EXPECT_TRUE(processor::reconcile_settlement(*store_, "stl-1", T0 + kHour).found.empty());
  EXPECT_TRUE(recon_->open_findings_by_kind().empty());
}

// The loss, once applied, may show a difference of its own: the unexpected
// line is resolved and the amount_mismatch found in its place.
TEST_F(Settlements, ALateLossOfAnotherAmountTurnsTheFindingIntoAnAmountMismatch) {
  happy_book();
  settlement("stl-1", 11700 - 1500);
  happy_lines("stl-1");
  chargeback_line("stl-1", 1500, "dis-1");
  EXPECT_EQ(kinds(processor::reconcile_settlement(*store_, "stl-1", T0).found),
            Kinds{"unexpected_in_settlement dis-1"});
  auto r = apply(dispute_event("payment.dispute.state-change.closed", "d-2",
                               R"("dispute_details":{"dispute_amount":1200,"currency":"EUR"},)"
                               R"("dispute_outcome":"LOST")"));
  EXPECT_EQ(recon_->open_findings_by_kind(),
            (std::map<std::string, std::int64_t>{{"amount_mismatch", 1}}));
  EXPECT_EQ(findings_published(r).size(), 2u);  // the mismatch found, the unexpected resolved
}

// A SALE settled before its capture was booked (the capture's own answer or
// webhook came later): the settlement watch's periodic check resolves it.
TEST_F(Settlements, TheSettlementWatchResolvesASaleWhoseCaptureWasBookedLater) {
  happy_book();
  settlement("stl-1", 11700 + 700);
  happy_lines("stl-1");
  line("stl-1", "SALE", 700, "cap-3", std::nullopt, "tx-3");
  EXPECT_EQ(kinds(processor::reconcile_settlement(*store_, "stl-1", T0).found),
            Kinds{"unexpected_in_settlement cap-3"});
  processor::SettlementWatch watch(*store_, std::chrono::hours(72), "klarna.reconciliation");
  auto nothing = watch.check(T0 + 1);
  EXPECT_TRUE(nothing.resolved.empty());
  EXPECT_TRUE(nothing.publications.empty());

  executed("capture", "cap-3", "tx-3", 700);
  auto check = watch.check(T0 + 2);
  EXPECT_EQ(kinds(check.resolved), Kinds{"unexpected_in_settlement cap-3"});
  EXPECT_TRUE(check.found.empty());
  ASSERT_EQ(check.publications.size(), 1u);
  EXPECT_NE(check.publications[0].value.find(R"("resolved_at_ms":)" + std::to_string(T0 + 2)),
            std::string::npos)
      << check.publications[0].value;
  EXPECT_TRUE(recon_->open_findings_by_kind().empty());
  EXPECT_TRUE(watch.check(T0 + 3).publications.empty());  // once
}

}  // namespace

// ---- transaction types beyond SALE/RETURN/FEE/CHARGEBACK --------------------------------

// Every type Klarna's Settlements API lists counts in the net with its
// direction (docs/klarna/SETTLEMENTS.md, "Transaction types"): a holdback
// and its release, a fee refunded, a commission, a TAX line, a correction.
TEST_F(Settlements, HoldbackReleaseAndFeeRefundLinesCountWithTheirDirection) {
  happy_book();
  // 9000 + 5000 − 2000 − 300 (fee) − 60 (fee's tax) − 1400 (holdback) + 900
  // (release) + 300 (fee refunded) − 50 (commission) − 10 (TAX) − 25
  // (correction) = 11355
  SettlementRow s;
  s.settlement_id = "stl-1";
  s.account_id = "acc-1";
  s.status = "fetched";
  s.currency = "EUR";
  s.payout_amount = 11355;
  s.total_settlement_amount = 11355;
  s.total_tax_amount = 70;
  s.total_fee_amount = 300;
  s.caused_by = "evt";
  ASSERT_TRUE(recon_->insert_settlement(s));
  happy_lines("stl-1");
  auto extra = [&](std::string type, std::int64_t amount, std::int64_t tax = 0) {
    SettlementLineRow l;
    l.settlement_id = "stl-1";
    l.line_no = next_line_["stl-1"]++;
    l.type = std::move(type);
    l.amount = amount;
    l.tax_amount = tax;
    l.payment_transaction_id = "tx-1";
    l.currency = "EUR";
    ASSERT_TRUE(recon_->insert_line(l));
  };
  extra("FEE", 0, 60);
  extra("HOLDBACK", 1400);
  extra("RELEASE", 900);
  extra("FEE_REFUND", 300);
  extra("COMMISSION", 50);
  extra("TAX", 10);
  extra("CORRECTION", -25);
  EXPECT_EQ(kinds(processor::reconcile_settlement(*store_, "stl-1", T0).found), Kinds{});
  // A payout that ignores the holdback does not add up: a holdback is money
  // the partner does not get now.
  auto& r = *recon_;
  auto again = r.find_settlement("stl-1");
  again->payout_amount = 11355 + 1400;
  r.save_settlement(*again);
  EXPECT_EQ(kinds(processor::reconcile_settlement(*store_, "stl-1", T0 + 1).found),
            Kinds{"payout_mismatch payout"});
}

// A type not in Klarna's list is surfaced as one finding and counted; its
// direction unknown, the net and the payout are not checked (no false
// payout_mismatch beside it).
TEST_F(Settlements, ALineOfAnUnknownTypeIsOneUnrecognisedLineFinding) {
  happy_book();
  settlement("stl-1", 11700);
  happy_lines("stl-1");
  line("stl-1", "LOYALTY_BONUS", 123, std::nullopt, std::nullopt, "tx-1");
  auto found = processor::reconcile_settlement(*store_, "stl-1", T0).found;
  ASSERT_EQ(kinds(found), Kinds{"unrecognised_line line:4"});
  EXPECT_NE(found[0].theirs_json.find(R"("type":"LOYALTY_BONUS")"), std::string::npos);
  EXPECT_NE(found[0].detail.find("LOYALTY_BONUS"), std::string::npos) << found[0].detail;
  EXPECT_EQ(recon_->open_findings_by_kind(),
            (std::map<std::string, std::int64_t>{{"unrecognised_line", 1}}));
  // Once only, however often it runs.
  EXPECT_EQ(kinds(processor::reconcile_settlement(*store_, "stl-1", T0 + 1).found), Kinds{});
}
