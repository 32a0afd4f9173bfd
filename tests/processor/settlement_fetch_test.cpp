// Fetching settlement reports (docs/klarna/SETTLEMENTS.md) on a real SQLite
// file, the answers applied as the outbox worker applies them:
//   - settlement.report.created queues one fetch per settlement, however
//     often the report is announced;
//   - details → pages → reconciled, each page booked once even when its
//     answer is recorded twice; findings published on klarna.reconciliation;
//   - the readers: JSON pages, the CSV report (RFC 4180, columns by name),
//     details, payout status; bad input is an error, never a crash.
#include <gtest/gtest.h>

#include <filesystem>

#include "calls/call_answers.hpp"
#include "child_process.hpp"
#include "kpay/klarna/envelope.hpp"
#include "kpay/processor/batch_applier.hpp"
#include "kpay/processor/settlement_report.hpp"
#include "kpay/storage/reconciliation_store.hpp"
#include "kpay/storage/state_store.hpp"

using namespace kpay;
using processor::SettlementParseError;

namespace {

constexpr std::int64_t T0 = 1'767'225'600'000;  // 2026-01-01T00:00:00Z
constexpr std::string_view kId = "krn:settlement:eu1:settlement:s1";

std::string report_created(std::string_view event_id) {
  return R"({"metadata":{"event_type":"settlement.report.created","event_id":")" +
         std::string(event_id) +
         R"(","event_version":"v2","occurred_at":"2026-01-02T00:00:00Z",)"
         R"("subject_account_id":"acc-1"},"payload":{"settlement_id":")" +
         std::string(kId) +
         R"(","settlement_amount":12700,"currency":"EUR","links":{"json_url":)"
         R"("https://elsewhere.example/v2/settlements/x"}}})";
}

class SettlementFetch : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::make_temp_dir("settlement-fetch");
    store_.emplace(dir_ + "/state.db");
    settings_.settlements.page_size = 2;
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  void announce(std::string_view event_id) {
    auto body = report_created(event_id);
    auto env = klarna::parse_envelope(body);
    processor::InputMessage m{topics_.settlements, 0, offset_++, env.envelope->entity_id, body};
    processor::BatchApplier(*store_, topics_, settings_).apply(std::span(&m, 1));
  }

  std::vector<storage::OutboxRow> rows(std::string_view operation) {
    std::vector<storage::OutboxRow> out;
    for (auto& o : store_->outbox(std::string(kId))) {
      if (storage::to_string(o.operation) == operation) out.push_back(std::move(o));
    }
    return out;
  }

  std::string answer(const storage::OutboxRow& row, std::string body) {
    processor::AnswerContext c{*store_, settings_, topics_, T0, published_};
    klarna::Answer a;
    a.status = 200;
    a.body = std::move(body);
    return processor::apply_success(c, row, a);
  }

  // A capture of 10000 and one of 3000 on two transactions (EUR).
  void book() {
    for (auto [tx, cap, amount] : {std::tuple{"t1", "c1", 10000}, std::tuple{"t2", "c2", 3000}}) {
      storage::PaymentTransactionRow t;
      t.id = tx;
      t.currency = "EUR";
      t.last_event_id = "e";
      store_->save_transaction(t);
      storage::SubRecordRow r{"capture", cap, tx, amount, std::nullopt, std::nullopt, T0, "e"};
      ASSERT_TRUE(store_->insert_sub_record(r));
    }
  }

  klarna::Topics topics_;
  processor::FollowUpSettings settings_;
  std::string dir_;
  std::optional<storage::StateStore> store_;
  std::vector<storage::PublishRow> published_;
  std::int64_t offset_ = 0;
};

constexpr std::string_view kDetails =
    R"({"settlement_id":"krn:settlement:eu1:settlement:s1","currency_code":"EUR",)"
    R"("payment_reference":"K7Q2M9XA4D","totals":{"total_sale_amount":13000,)"
    R"("total_return_amount":0,"total_chargeback_amount":0,"total_fee_amount":250,)"
    R"("total_tax_amount":50,"total_settlement_amount":12700}})";

std::string page(std::string_view lines, std::string_view next) {
  std::string p = R"({"transactions":[)" + std::string(lines) + R"(],"pagination":{"count":2)";
  if (!next.empty()) p += R"(,"next":"https://api.example)" + std::string(next) + "\"";
  return p + "}}";
}

constexpr std::string_view kPage1 =
    R"({"type":"SALE","amount":10000,"currency_code":"EUR","payment_transaction_id":"t1",)"
    R"("payment_capture_id":"c1"},{"type":"FEE","amount":200,"tax_amount":50,)"
    R"("currency_code":"EUR","payment_transaction_id":"t1","payment_capture_id":"c1"})";
constexpr std::string_view kPage2 =
    R"({"type":"SALE","amount":3000,"currency_code":"EUR","payment_transaction_id":"t2",)"
    R"("payment_capture_id":"c2"},{"type":"FEE","amount":50,"currency_code":"EUR",)"
    R"("payment_transaction_id":"t2","payment_capture_id":"c2"})";

TEST_F(SettlementFetch, AReportAnnouncedTwiceIsFetchedOnce) {
  announce("evt-1");
  announce("evt-2");  // another delivery of the same report
  auto fetch = rows("fetch_settlement");
  ASSERT_EQ(fetch.size(), 1u);
  EXPECT_EQ(fetch[0].method, "GET");
  EXPECT_EQ(fetch[0].account_id, "acc-1");
  // From the configured base URL, never the link's host.
  EXPECT_EQ(processor::request_path(fetch[0], settings_),
            "/v2/settlements/krn%3Asettlement%3Aeu1%3Asettlement%3As1");
}

TEST_F(SettlementFetch, NothingIsFetchedWhenFetchingIsOff) {
  settings_.settlements.fetch = false;
  announce("evt-1");
  EXPECT_TRUE(store_->outbox(std::string(kId)).empty());
}

TEST_F(SettlementFetch, PagesAreBookedOnceThenTheSettlementIsReconciled) {
  book();
  announce("evt-1");
  EXPECT_EQ(answer(rows("fetch_settlement")[0], std::string(kDetails)), "FETCHING");
  ASSERT_EQ(rows("fetch_settlement_transactions").size(), 1u);
  ASSERT_EQ(rows("fetch_payout_status").size(), 1u);
  const auto first = rows("fetch_settlement_transactions")[0];
  EXPECT_EQ(
      processor::request_path(first, settings_),
      "/v2/settlements/krn%3Asettlement%3Aeu1%3Asettlement%3As1/transactions?offset=0&size=2");
  const std::string next = "/v2/settlements/s1/transactions?offset=2&size=2";
  EXPECT_EQ(answer(first, page(kPage1, next)), "BOOKED 2 lines");
  // The same page's answer recorded again (a restart before the row's status
  // was): nothing booked twice.
  EXPECT_EQ(answer(first, page(kPage1, next)), "BOOKED_BEFORE");
  auto pages = rows("fetch_settlement_transactions");
  ASSERT_EQ(pages.size(), 2u);
  EXPECT_EQ(processor::request_path(pages[1], settings_), next);
  EXPECT_EQ(answer(pages[1], page(kPage2, "")), "RECONCILED 4 lines, 0 new findings");
  auto& recon = storage::ledger_of(*store_);
  EXPECT_EQ(recon.lines(std::string(kId)).size(), 4u);
  EXPECT_EQ(recon.find_settlement(std::string(kId))->status, "reconciled");
  EXPECT_TRUE(published_.empty());
  // The payout status: 1 short of the net; published once.
  const auto payout = rows("fetch_payout_status")[0];
  EXPECT_EQ(answer(payout, R"({"status":"PROCESSED","amount":12699,"currency_code":"EUR"})"),
            "RECONCILED 4 lines, 1 new findings");
  ASSERT_EQ(published_.size(), 1u);
  EXPECT_EQ(published_[0].topic, "klarna.reconciliation");
  EXPECT_EQ(published_[0].key, kId);
  EXPECT_NE(published_[0].value.find(R"("kind":"payout_mismatch")"), std::string::npos);
  EXPECT_EQ(answer(payout, R"({"status":"PROCESSED","amount":12699})"),
            "RECONCILED 4 lines, 0 new findings");
  EXPECT_EQ(published_.size(), 1u);
}

TEST_F(SettlementFetch, TheCsvReportIsOneCall) {
  book();
  settings_.settlements.csv = true;
  announce("evt-1");
  answer(rows("fetch_settlement")[0], std::string(kDetails));
  auto csv = rows("fetch_settlement_csv");
  ASSERT_EQ(csv.size(), 1u);
  EXPECT_EQ(processor::request_path(csv[0], settings_),
            "/v2/settlements/krn%3Asettlement%3Aeu1%3Asettlement%3As1/csv");
  const std::string body =
      "settlement_id,type,amount,currency_code,payment_transaction_id,payment_capture_id,"
      "tax_amount,extra\r\n"
      "s1,SALE,10000,EUR,t1,c1,,x\r\ns1,FEE,200,EUR,t1,c1,50,\r\n"
      "s1,SALE,3000,EUR,t2,c2,,\r\ns1,FEE,50,EUR,t2,c2,,\r\n";
  EXPECT_EQ(answer(csv[0], body), "RECONCILED 4 lines, 0 new findings");
}

TEST_F(SettlementFetch, AnUnreadableAnswerIsAnError) {
  announce("evt-1");
  EXPECT_THROW(answer(rows("fetch_settlement")[0], "not json"), std::runtime_error);
  EXPECT_THROW(answer(rows("fetch_settlement")[0], R"({"settlement_id":"other"})"),
               std::runtime_error);
  answer(rows("fetch_settlement")[0], std::string(kDetails));
  const auto first = rows("fetch_settlement_transactions")[0];
  EXPECT_THROW(answer(first, R"({"transactions":[{"type":"SALE","amount":-5}]})"),
               SettlementParseError);
  EXPECT_THROW(answer(first, R"({"transactions":[{"amount":5}]})"), SettlementParseError);
  EXPECT_THROW(answer(first, page(kPage1, "/v3/elsewhere")), SettlementParseError);
  // Nothing of a refused page was booked.
  EXPECT_TRUE(storage::ledger_of(*store_).lines(std::string(kId)).empty());
}

// ---- the readers -------------------------------------------------------------------------

TEST(SettlementReport, DetailsReadBothSpellingsOfTheTotals) {
  storage::SettlementRow s;
  processor::read_settlement_details(kDetails, s);
  EXPECT_EQ(s.settlement_id, kId);
  EXPECT_EQ(s.currency, "EUR");
  EXPECT_EQ(s.total_sale_amount, 13000);
  EXPECT_EQ(s.total_tax_amount, 50);
  EXPECT_EQ(s.total_settlement_amount, 12700);
  storage::SettlementRow v1;
  processor::read_settlement_details(
      R"({"currency":"SEK","totals":{"sale_amount":5,"reversal_amount":2,"fee_amount":1}})", v1);
  EXPECT_EQ(v1.currency, "SEK");
  EXPECT_EQ(v1.total_sale_amount, 5);
  EXPECT_EQ(v1.total_chargeback_amount, 2);
  EXPECT_EQ(v1.total_fee_amount, 1);
  EXPECT_EQ(v1.total_settlement_amount, std::nullopt);
  // A net may be negative (returns and fees above sales); a line's amount not.
  storage::SettlementRow negative;
  processor::read_settlement_details(R"({"totals":{"total_settlement_amount":-40}})", negative);
  EXPECT_EQ(negative.total_settlement_amount, -40);
  EXPECT_THROW(processor::read_settlement_details(R"({"totals":{"total_sale_amount":-1}})", v1),
               SettlementParseError);
  EXPECT_EQ(processor::read_payout_status(R"({"amount":-40})").amount, -40);
}

TEST(SettlementReport, LinesReadKlarnaNetworkAndV1Names) {
  auto p = processor::read_transactions_page(
      R"({"transactions":[{"type":"sale","amount":1,"capture_id":"c","currency":"EUR"},)"
      R"({"type":"REVERSAL","amount":2,"reversal_reference":"d","payment_transaction_id":"t"},)"
      R"({"type":"RETURN","amount":3,"payment_refund_id":"r","vat_amount":0}]})");
  ASSERT_EQ(p.lines.size(), 3u);
  EXPECT_EQ(p.lines[0].type, "SALE");
  EXPECT_EQ(p.lines[0].capture_id, "c");
  EXPECT_EQ(p.lines[1].type, "CHARGEBACK");
  EXPECT_EQ(p.lines[1].dispute_id, "d");
  EXPECT_EQ(p.lines[2].refund_id, "r");
  EXPECT_EQ(p.next, std::nullopt);
}

// Every type is kept as Klarna names it (the reconciler knows their
// directions); only CORRECTION's amount may be negative.
TEST(SettlementReport, LinesOfEveryTypeAreReadInJsonAndCsv) {
  auto p = processor::read_transactions_page(
      R"({"transactions":[{"type":"HOLDBACK","amount":1},{"type":"release","amount":2},)"
      R"({"type":"FEE_REFUND","amount":3},{"type":"CORRECTION","amount":-4},)"
      R"({"type":"SOMETHING_NEW","amount":5}]})");
  ASSERT_EQ(p.lines.size(), 5u);
  EXPECT_EQ(p.lines[1].type, "RELEASE");
  EXPECT_EQ(p.lines[3].amount, -4);
  EXPECT_EQ(p.lines[4].type, "SOMETHING_NEW");
  EXPECT_THROW(
      processor::read_transactions_page(R"({"transactions":[{"type":"HOLDBACK","amount":-1}]})"),
      SettlementParseError);
  auto lines = processor::read_transactions_csv(
      "type,amount\r\nholdback,10\r\nRELEASE,7\r\nFEE_REFUND,3\r\ncorrection,-2\r\n");
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0].type, "HOLDBACK");
  EXPECT_EQ(lines[3].type, "CORRECTION");
  EXPECT_EQ(lines[3].amount, -2);
  EXPECT_THROW(processor::read_transactions_csv("type,amount\r\nRELEASE,-1\r\n"),
               SettlementParseError);
}

TEST(SettlementReport, CsvIsRfc4180) {
  using Records = std::vector<std::vector<std::string>>;
  EXPECT_EQ(processor::parse_csv("a,b\r\n\"x, \"\"y\"\"\",\r\n\r\n\"line\nbreak\",z"),
            (Records{{"a", "b"}, {"x, \"y\"", ""}, {"line\nbreak", "z"}}));
  EXPECT_EQ(processor::parse_csv("\xEF\xBB\xBFtype\n"), (Records{{"type"}}));
  EXPECT_THROW(processor::parse_csv("\"open"), SettlementParseError);
  EXPECT_THROW(processor::parse_csv("a\"b"), SettlementParseError);
  EXPECT_THROW(processor::parse_csv("\"a\"b"), SettlementParseError);
  EXPECT_THROW(processor::read_transactions_csv("settlement_id\r\ns1\r\n"), SettlementParseError);
  EXPECT_THROW(processor::read_transactions_csv("type,amount\r\nSALE,12x\r\n"),
               SettlementParseError);
  EXPECT_THROW(processor::read_transactions_csv("type,amount\r\nSALE,-1\r\n"),
               SettlementParseError);
  // Columns by name, in any order.
  auto lines = processor::read_transactions_csv("amount,unknown,type\n7,,fee\n");
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].type, "FEE");
  EXPECT_EQ(lines[0].amount, 7);
}

TEST(SettlementReport, PayoutStatusAndLinks) {
  auto p = processor::read_payout_status(
      R"({"status":"FAILED","amount":5,"currency_code":"EUR","failure_reason":"X"})");
  EXPECT_EQ(p.status, "FAILED");
  EXPECT_EQ(p.amount, 5);
  EXPECT_EQ(p.failure_reason, "X");
  EXPECT_EQ(processor::settlements_api_path("https://h:1/v2/settlements/s/transactions?offset=2"),
            "/v2/settlements/s/transactions?offset=2");
  EXPECT_EQ(processor::settlements_api_path("/v2/settlements/s"), "/v2/settlements/s");
  EXPECT_EQ(processor::settlements_api_path("https://h/v2/accounts/a"), std::nullopt);
  EXPECT_EQ(processor::settlements_api_path("https://h/v2/settlements/../accounts"), std::nullopt);
  EXPECT_EQ(processor::settlements_api_path("https://h"), std::nullopt);
}

}  // namespace
