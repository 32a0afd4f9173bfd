// Contract: SettlementLedger (reconciliation_store.hpp), through ledger_of():
// settlements, their lines and findings booked once ("false when known
// already"), the orderings klarnactl and the reconciler rely on (text
// byte-wise: "B" before "a"), what settles a capture or a refund, and the
// caller's transaction (rolled back: nothing kept).
#include <stdexcept>

#include "kpay/storage/reconciliation_store.hpp"
#include "store_contract.hpp"

namespace kpay::storage::contract {
namespace {

class SettlementLedgerContract : public StoreContract {
 protected:
  SettlementLedger& ledger() { return ledger_of(store()); }
};

SettlementRow settlement(const std::string& id, std::int64_t created_at_ms) {
  SettlementRow s;
  s.settlement_id = id;
  s.account_id = "acc-1";
  s.currency = "EUR";
  s.total_sale_amount = 12000;
  s.next_page = "/v2/settlements/" + id + "/transactions?offset=0&size=2";
  s.caused_by = "evt-" + id;
  s.created_at_ms = created_at_ms;
  return s;
}

SettlementLineRow line(const std::string& settlement_id, std::int64_t no, std::string type,
                       std::int64_t amount) {
  SettlementLineRow l;
  l.settlement_id = settlement_id;
  l.line_no = no;
  l.type = std::move(type);
  l.amount = amount;
  l.currency = "EUR";
  return l;
}

SettlementLineRow sale(const std::string& settlement_id, std::int64_t no,
                       const std::string& capture_id, std::int64_t amount) {
  auto l = line(settlement_id, no, "SALE", amount);
  l.capture_id = capture_id;
  l.payment_transaction_id = "tx-" + capture_id;
  return l;
}

FindingRow finding(const std::string& kind, const std::optional<std::string>& settlement,
                   const std::string& subject, std::int64_t found_at_ms) {
  FindingRow f;
  f.kind = kind;
  f.settlement_id = settlement;
  f.subject = subject;
  f.finding_id = kind + ":" + (settlement ? *settlement + ":" : "") + subject;
  f.ours_json = R"({"amount":100})";
  f.theirs_json = "{}";
  f.detail = "detail of " + subject;
  f.found_at_ms = found_at_ms;
  return f;
}

std::vector<std::string> ids(const std::vector<SettlementRow>& rows) {
  std::vector<std::string> out;
  for (const auto& r : rows) out.push_back(r.settlement_id);
  return out;
}
std::vector<std::string> ids(const std::vector<FindingRow>& rows) {
  std::vector<std::string> out;
  for (const auto& r : rows) out.push_back(r.finding_id);
  return out;
}
std::vector<std::string> ids(const std::vector<UnsettledRow>& rows) {
  std::vector<std::string> out;
  for (const auto& r : rows) out.push_back(r.record.id);
  return out;
}

TEST_P(SettlementLedgerContract, ASettlementIsInsertedOnceAndSavedWhole) {
  auto s = settlement("stl-1", 1000);
  EXPECT_TRUE(ledger().insert_settlement(s));
  auto again = s;
  again.status = "reconciled";
  EXPECT_FALSE(ledger().insert_settlement(again)) << "known already: its fetch was queued before";
  EXPECT_EQ(ledger().find_settlement("stl-1"), s) << "the first insert kept";
  EXPECT_FALSE(ledger().find_settlement("stl-2"));

  s.status = "fetched";
  s.next_page = std::nullopt;
  s.lines_booked = 7;
  s.payout_amount = 11000;
  s.payout_status = "PROCESSED";
  s.total_fee_amount = 300;
  s.currency = std::nullopt;
  s.fetched_at_ms = 2000;
  ledger().save_settlement(s);
  EXPECT_EQ(ledger().find_settlement("stl-1"), s) << "every column replaced, NULLs too";
  EXPECT_EQ(second_connection()->settlement_ledger()->find_settlement("stl-1"), s);
}

TEST_P(SettlementLedgerContract, SettlementsAreListedNewestFirstThenByIdByteWise) {
  for (const auto& [id, at] : std::vector<std::pair<std::string, std::int64_t>>{
           {"stl-a", 2000}, {"stl-B", 2000}, {"stl-old", 500}, {"stl-new", 3000}}) {
    ASSERT_TRUE(ledger().insert_settlement(settlement(id, at)));
  }
  EXPECT_EQ(ids(ledger().settlements(0, 10)),
            (std::vector<std::string>{"stl-new", "stl-B", "stl-a", "stl-old"}));
  EXPECT_EQ(ids(ledger().settlements(2000, 10)),
            (std::vector<std::string>{"stl-new", "stl-B", "stl-a"}))
      << "created at or after since";
  EXPECT_EQ(ids(ledger().settlements(0, 2)), (std::vector<std::string>{"stl-new", "stl-B"}));
}

TEST_P(SettlementLedgerContract, LinesAreBookedOnceAndReadInReportOrder) {
  ASSERT_TRUE(ledger().insert_settlement(settlement("stl-1", 1000)));
  auto fee = line("stl-1", 1, "FEE", 30);
  fee.tax_amount = 6;
  fee.capture_id = "cap-1";
  fee.reference = "ref-1";
  fee.occurred_at = "2026-12-01T10:00:00Z";
  auto s0 = sale("stl-1", 0, "cap-1", 1000);
  EXPECT_TRUE(ledger().insert_line(fee));
  EXPECT_TRUE(ledger().insert_line(s0));
  auto other = sale("stl-1", 0, "cap-9", 1);
  EXPECT_FALSE(ledger().insert_line(other)) << "that line of that settlement is booked already";
  EXPECT_EQ(ledger().lines("stl-1"), (std::vector<SettlementLineRow>{s0, fee}));
  EXPECT_TRUE(ledger().lines("stl-2").empty());
}

TEST_P(SettlementLedgerContract, ASaleSettlesACaptureAndAReturnARefund) {
  ASSERT_TRUE(ledger().insert_settlement(settlement("stl-b", 1000)));
  ASSERT_TRUE(ledger().insert_settlement(settlement("stl-a", 2000)));
  const auto first = sale("stl-b", 0, "cap-1", 1000);
  const auto later = sale("stl-a", 3, "cap-1", 1000);
  auto fee = line("stl-a", 0, "FEE", 30);
  fee.capture_id = "cap-1";  // names the capture, but does not settle it
  auto ret = line("stl-a", 1, "RETURN", 200);
  ret.refund_id = "ref-1";
  for (const auto& l : {later, fee, ret, first}) ASSERT_TRUE(ledger().insert_line(l));

  EXPECT_EQ(ledger().lines_settling("capture", "cap-1"),
            (std::vector<SettlementLineRow>{later, first}))
      << "by settlement id, then line";
  EXPECT_EQ(ledger().lines_settling("refund", "ref-1"), std::vector<SettlementLineRow>{ret});
  EXPECT_TRUE(ledger().lines_settling("refund", "cap-1").empty());
  EXPECT_THROW(ledger().lines_settling("chargeback", "cb-1"), std::invalid_argument);
}

// The capture settled twice is the later report's finding: created earlier,
// or at the same time with a smaller id (byte-wise).
TEST_P(SettlementLedgerContract, SettledBeforeNamesTheEarlierSettlements) {
  ASSERT_TRUE(ledger().insert_settlement(settlement("stl-early", 1000)));
  ASSERT_TRUE(ledger().insert_settlement(settlement("stl-B", 2000)));
  ASSERT_TRUE(ledger().insert_settlement(settlement("stl-a", 2000)));
  ASSERT_TRUE(ledger().insert_settlement(settlement("stl-late", 3000)));
  for (const auto& id : {"stl-early", "stl-B", "stl-a", "stl-late"}) {
    ASSERT_TRUE(ledger().insert_line(sale(id, 0, "cap-1", 1000)));
  }
  ASSERT_TRUE(ledger().insert_line(sale("stl-early", 1, "cap-1", 1000)));  // twice in one
  auto ret = line("stl-early", 2, "RETURN", 50);
  ret.refund_id = "ref-1";
  ASSERT_TRUE(ledger().insert_line(ret));

  const auto a = *ledger().find_settlement("stl-a");
  EXPECT_EQ(ledger().settled_before("capture", "cap-1", a),
            (std::vector<std::string>{"stl-B", "stl-early"}))
      << "each once, by id";
  EXPECT_EQ(ledger().settled_before("capture", "cap-1", *ledger().find_settlement("stl-B")),
            std::vector<std::string>{"stl-early"});
  EXPECT_TRUE(
      ledger().settled_before("capture", "cap-1", *ledger().find_settlement("stl-early")).empty());
  EXPECT_EQ(ledger().settled_before("refund", "ref-1", a), std::vector<std::string>{"stl-early"});
  EXPECT_TRUE(ledger().settled_before("capture", "ref-1", a).empty());
}

TEST_P(SettlementLedgerContract, AFindingIsStoredOnceAndResolvedOnce) {
  const auto amount = finding("amount_mismatch", "stl-1", "cap-1", 5000);
  const auto missing = finding("missing_in_settlement", std::nullopt, "cap-2", 4000);
  EXPECT_TRUE(ledger().insert_finding(amount));
  EXPECT_TRUE(ledger().insert_finding(missing));
  auto again = amount;
  again.detail = "found again";
  EXPECT_FALSE(ledger().insert_finding(again)) << "found before: the same finding_id";
  EXPECT_EQ(ledger().findings_of("stl-1"), std::vector<FindingRow>{amount});

  EXPECT_EQ(ledger().resolve_findings("missing_in_settlement", "cap-9", 6000), 0);
  EXPECT_EQ(ledger().resolve_findings("missing_in_settlement", "cap-2", 6000), 1);
  EXPECT_EQ(ledger().resolve_findings("missing_in_settlement", "cap-2", 7000), 0)
      << "open findings only";
  EXPECT_TRUE(ledger().resolve_finding(amount.finding_id, 8000));
  EXPECT_FALSE(ledger().resolve_finding(amount.finding_id, 9000)) << "resolved already";
  EXPECT_FALSE(ledger().resolve_finding("payout_mismatch:stl-9:payout", 9000)) << "unknown";

  auto resolved = amount;
  resolved.resolved_at_ms = 8000;
  EXPECT_EQ(ledger().findings_of("stl-1"), std::vector<FindingRow>{resolved});
  EXPECT_TRUE(ledger().open_findings_by_kind().empty());
}

TEST_P(SettlementLedgerContract, FindingsAreListedNewestFirstAndCountedOpenByKind) {
  for (const auto& f : {finding("payout_mismatch", "stl-1", "payout", 3000),
                        finding("amount_mismatch", "stl-1", "cap-b", 2000),
                        finding("amount_mismatch", "stl-1", "cap-B", 2000),
                        finding("unexpected_in_settlement", "stl-1", "cap-x", 1000),
                        finding("missing_in_settlement", std::nullopt, "cap-m", 4000),
                        finding("unrecognised_line", "stl-2", "line:3", 2500)}) {
    ASSERT_TRUE(ledger().insert_finding(f));
  }
  ASSERT_EQ(ledger().resolve_findings("unexpected_in_settlement", "cap-x", 5000), 1);

  EXPECT_EQ(ids(ledger().findings_of("stl-1")),
            (std::vector<std::string>{"amount_mismatch:stl-1:cap-B", "amount_mismatch:stl-1:cap-b",
                                      "payout_mismatch:stl-1:payout",
                                      "unexpected_in_settlement:stl-1:cap-x"}))
      << "by kind, then subject";
  EXPECT_EQ(ids(ledger().findings(0, false, 100)),
            (std::vector<std::string>{"missing_in_settlement:cap-m", "payout_mismatch:stl-1:payout",
                                      "unrecognised_line:stl-2:line:3",
                                      "amount_mismatch:stl-1:cap-B", "amount_mismatch:stl-1:cap-b",
                                      "unexpected_in_settlement:stl-1:cap-x"}));
  EXPECT_EQ(ids(ledger().findings(2500, false, 100)),
            (std::vector<std::string>{"missing_in_settlement:cap-m", "payout_mismatch:stl-1:payout",
                                      "unrecognised_line:stl-2:line:3"}))
      << "found at or after since";
  EXPECT_EQ(ids(ledger().findings(0, true, 3)),
            (std::vector<std::string>{"missing_in_settlement:cap-m", "payout_mismatch:stl-1:payout",
                                      "unrecognised_line:stl-2:line:3"}));
  EXPECT_EQ(ledger().findings(0, true, 100).size(), 5u) << "open only";
  EXPECT_EQ(ledger().open_findings_by_kind(),
            (std::map<std::string, std::int64_t>{{"amount_mismatch", 2},
                                                 {"missing_in_settlement", 1},
                                                 {"payout_mismatch", 1},
                                                 {"unrecognised_line", 1}}));
}

class UnsettledContract : public SettlementLedgerContract {
 protected:
  void SetUp() override {
    SettlementLedgerContract::SetUp();
    PaymentTransactionRow t;
    t.id = "tx-1";
    t.state = "CAPTURED";
    t.amount = 9000;
    t.currency = "SEK";
    t.last_event_id = "e0";
    store().save_transaction(t);
    // cap-a: EUR, settled; cap-b: its transaction's SEK; cap-c: no currency
    // at all (unknown transaction); cap-d: executed after the cut-off.
    add({"capture", "cap-a", "tx-1", 1000, "EUR", std::nullopt, 100, "e1"});
    add({"capture", "cap-b", "tx-1", 2000, std::nullopt, std::nullopt, 300, "e2"});
    add({"capture", "cap-c", "tx-none", 400, std::nullopt, std::nullopt, 200, "e3"});
    add({"capture", "cap-d", "tx-1", 800, "SEK", std::nullopt, 5000, "e4"});
    add({"refund", "ref-1", "tx-1", 300, "SEK", "cap-b", 400, "e5"});
    add({"refund", "ref-2", "tx-1", 100, "SEK", "cap-b", 450, "e6"});
    add({"chargeback", "cb-1", "tx-1", 50, "SEK", "cap-b", 100, "e7"});
    ASSERT_TRUE(ledger().insert_settlement(settlement("stl-1", 1000)));
    ASSERT_TRUE(ledger().insert_line(sale("stl-1", 0, "cap-a", 1000)));
    auto ret = line("stl-1", 1, "RETURN", 100);
    ret.refund_id = "ref-2";
    ASSERT_TRUE(ledger().insert_line(ret));
    auto fee = line("stl-1", 2, "FEE", 10);
    fee.capture_id = "cap-b";  // a fee does not settle its capture
    ASSERT_TRUE(ledger().insert_line(fee));
  }
  void add(SubRecordRow r) { ASSERT_TRUE(store().insert_sub_record(r)); }
};

TEST_P(UnsettledContract, CapturesAndRefundsNoLineSettlesAreUnsettled) {
  const auto captures = ledger().unsettled("capture", 1000, 100);
  EXPECT_EQ(ids(captures), (std::vector<std::string>{"cap-c", "cap-b"})) << "by occurred_at";
  ASSERT_EQ(captures.size(), 2u);
  EXPECT_EQ(captures[0].currency, std::nullopt);
  EXPECT_EQ(captures[1].currency, "SEK") << "the transaction's currency";
  const auto& b = captures[1].record;
  EXPECT_EQ(b.kind, "capture");
  EXPECT_EQ(b.transaction_id, "tx-1");
  EXPECT_EQ(b.amount, 2000);
  EXPECT_EQ(b.currency, std::nullopt) << "the record's own currency";
  EXPECT_EQ(b.occurred_at_ms, 300);
  EXPECT_EQ(b.event_id, "e2");
  EXPECT_EQ(ids(ledger().unsettled("capture", 1000, 1)), std::vector<std::string>{"cap-c"});
  EXPECT_EQ(ids(ledger().unsettled("capture", 10000, 100)),
            (std::vector<std::string>{"cap-c", "cap-b", "cap-d"}));

  const auto refunds = ledger().unsettled("refund", 1000, 100);
  EXPECT_EQ(ids(refunds), std::vector<std::string>{"ref-1"});
  ASSERT_EQ(refunds.size(), 1u);
  EXPECT_EQ(refunds[0].record.capture_id, "cap-b");
  EXPECT_THROW(ledger().unsettled("chargeback", 1000, 100), std::invalid_argument);

  EXPECT_EQ(ledger().unsettled_capture_amounts(),
            (std::map<std::string, std::int64_t>{{"", 400}, {"SEK", 2800}}))
      << "per currency, any time, \"\" when neither is known";
}

// The ledger works in the caller's transaction: rolled back, nothing is kept.
TEST_P(SettlementLedgerContract, WritesBelongToTheCallersTransaction) {
  {
    WriteTransaction tx(store());
    ASSERT_TRUE(ledger().insert_settlement(settlement("stl-1", 1000)));
    ASSERT_TRUE(ledger().insert_line(sale("stl-1", 0, "cap-1", 1000)));
    ASSERT_TRUE(ledger().insert_finding(finding("amount_mismatch", "stl-1", "cap-1", 1000)));
    EXPECT_TRUE(ledger().find_settlement("stl-1")) << "seen inside it";
  }  // not committed
  EXPECT_FALSE(ledger().find_settlement("stl-1"));
  EXPECT_TRUE(ledger().lines("stl-1").empty());
  EXPECT_TRUE(ledger().findings(0, false, 10).empty());
  {
    WriteTransaction tx(store());
    ASSERT_TRUE(ledger().insert_settlement(settlement("stl-1", 1000)));
    ASSERT_TRUE(ledger().insert_line(sale("stl-1", 0, "cap-1", 1000)));
    tx.commit();
  }
  auto other = second_connection();
  EXPECT_FALSE(ledger_of(*other).insert_settlement(settlement("stl-1", 1000)));
  EXPECT_FALSE(ledger_of(*other).insert_line(sale("stl-1", 0, "cap-1", 1000)));
  EXPECT_EQ(ledger_of(*other).lines("stl-1").size(), 1u);
}

KPAY_STORE_CONTRACT(SettlementLedgerContract);
KPAY_STORE_CONTRACT(UnsettledContract);

}  // namespace
}  // namespace kpay::storage::contract
