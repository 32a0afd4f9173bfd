// klarnactl payments list|show against a database the applier wrote: the
// operator sees state, amounts, links, outbox keys and the full history.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>

#include <filesystem>
#include <fstream>

#include "child_process.hpp"
#include "klarnactl_run.hpp"
#include "kpay/processor/batch_applier.hpp"
#include "kpay/processor/reconciler.hpp"
#include "kpay/storage/reconciliation_store.hpp"
#include "kpay/storage/state_store.hpp"
#include "lifecycles.hpp"

using namespace kpay;
using kpay::test::klarnactl;

TEST(KlarnactlPayments, ListAndShowWithHistory) {
  const auto dir = test::make_temp_dir("klarnactl-payments");
  const std::string db = dir + "/state.db";
  klarna::Topics topics;
  auto events = test::make_lifecycles(9, topics, 3);
  {
    storage::StateStore store(db);
    processor::BatchApplier applier(store, topics);
    std::vector<processor::InputMessage> batch;
    std::int64_t offset = 0;
    for (const auto& e : events) batch.push_back({e.topic, 0, offset++, e.key, e.body});
    applier.apply(batch);
  }
  std::ofstream(dir + "/ctl.toml") << "[processor]\ndatabase = \"" << db << "\"\n";

  auto list = klarnactl(dir, {"payments", "list"});
  ASSERT_EQ(list.status, 0) << list.output;
  EXPECT_NE(list.output.find("COMPLETED"), std::string::npos) << list.output;
  EXPECT_NE(list.output.find("AUTHORIZED"), std::string::npos);
  {  // Aligned: every row's state starts under the header's STATE, after a space.
    std::istringstream lines(list.output);
    std::string header, line;
    std::getline(lines, header);
    const auto state_col = header.find("STATE");
    ASSERT_NE(state_col, std::string::npos);
    while (std::getline(lines, line)) {
      ASSERT_GT(line.size(), state_col) << line;
      EXPECT_EQ(line[state_col - 1], ' ') << line;
      EXPECT_NE(line[state_col], ' ') << line;
    }
  }

  // Scenario 0 is a Gen 2/3 request: completed, with a linked captured transaction.
  std::string request_id;
  for (const auto& e : events) {
    if (e.event_type == "payment.request.state-change.completed") {
      request_id = e.key;
      break;
    }
  }
  ASSERT_FALSE(request_id.empty());
  auto show = klarnactl(dir, {"payments", "show", request_id});
  ASSERT_EQ(show.status, 0) << show.output;
  EXPECT_NE(show.output.find("state:     COMPLETED"), std::string::npos) << show.output;
  EXPECT_NE(show.output.find("outbox: final_authorization [pending] key=kpay-final_authorization-"),
            std::string::npos)
      << show.output;
  EXPECT_NE(show.output.find("history (3 events)"), std::string::npos) << show.output;
  EXPECT_NE(show.output.find("captured:   1000"), std::string::npos) << show.output;
  EXPECT_NE(show.output.find("refunded: 300"), std::string::npos) << show.output;
  EXPECT_EQ(show.output.find("kns-"), std::string::npos) << "tokens are never printed";

  auto json = klarnactl(dir, {"payments", "show", request_id, "--json"});
  ASSERT_EQ(json.status, 0);
  EXPECT_EQ(json.output.rfind("{\"payment_request\":", 0), 0u) << json.output;

  auto missing = klarnactl(dir, {"payments", "show", "krn:payment:eu1:request:nope"});
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.output.find("nothing known"), std::string::npos);
  std::filesystem::remove_all(dir);
}

// klarnactl settlements events: the ids and report links settlement webhooks
// carried, and what keyed one without settlement_id.
TEST(KlarnactlSettlements, EventsShowIdsAndReportLinks) {
  const auto dir = test::make_temp_dir("klarnactl-settlements");
  const std::string db = dir + "/state.db";
  klarna::Topics topics;
  const std::string meta =
      R"(","event_version":"v2","occurred_at":"2026-01-02T00:00:00Z",)"
      R"("subject_account_id":"krn:partner:global:account:test:S1"},"payload":{)";
  {
    storage::StateStore store(db);
    processor::BatchApplier applier(store, topics);
    std::vector<processor::InputMessage> batch{
        {topics.settlements, 0, 0, "stl-7",
         R"({"metadata":{"event_type":"settlement.report.created","event_id":"e-report)" + meta +
             R"("settlement_id":"stl-7","currency":"EUR","payout_amount":4200,)"
             R"("report_urls":{"json":"https://k.example/v2/settlements/stl-7",)"
             R"("csv":"https://k.example/v2/settlements/stl-7/csv"}}})"},
        {topics.settlements, 0, 1, "e-payout",
         R"({"metadata":{"event_type":"settlement.payout.failed","event_id":"e-payout)" + meta +
             R"("reason":"bank rejected"}})"},
    };
    applier.apply(batch);
  }
  std::ofstream(dir + "/ctl.toml") << "[processor]\ndatabase = \"" << db << "\"\n";
  auto list = klarnactl(dir, {"settlements", "events"});
  ASSERT_EQ(list.status, 0) << list.output;
  EXPECT_NE(list.output.find("stl-7 (by settlement_id)  4200 EUR"), std::string::npos)
      << list.output;
  EXPECT_NE(list.output.find("csv:  https://k.example/v2/settlements/stl-7/csv"), std::string::npos)
      << list.output;
  EXPECT_NE(list.output.find("e-payout (by event_id)"), std::string::npos) << list.output;
  auto json = klarnactl(dir, {"settlements", "events", "--json", "--limit", "1"});
  ASSERT_EQ(json.status, 0) << json.output;
  EXPECT_EQ(std::count(json.output.begin(), json.output.end(), '\n'), 1) << json.output;
  EXPECT_EQ(klarnactl(dir, {"settlements", "events", "--limit", "0"}).status, 2);
}

// klarnactl settlements list|show|reconcile and payments show on a reconciled
// report: totals, findings with both sides, where a capture was settled; and
// reconcile changes nothing (the processor owns findings).
TEST(KlarnactlSettlements, ListShowReconcileAndWhereACaptureWasSettled) {
  const auto dir = test::make_temp_dir("klarnactl-reconciled");
  const std::string db = dir + "/state.db";
  {
    storage::StateStore store(db);
    storage::PaymentTransactionRow t;
    t.id = "tx-1";
    t.currency = "EUR";
    t.last_event_id = "e";
    store.save_transaction(t);
    store.insert_sub_record({"capture", "cap-1", "tx-1", 900, std::nullopt, std::nullopt, 0, "e"});
    store.insert_sub_record({"capture", "cap-2", "tx-1", 100, std::nullopt, std::nullopt, 0, "e"});
    auto& recon = storage::ledger_of(store);
    storage::SettlementRow s;
    s.settlement_id = "stl-1";
    s.account_id = "acc";
    s.status = "fetched";
    s.currency = "EUR";
    s.total_settlement_amount = 1000;
    s.payout_amount = 1000;
    s.lines_booked = 1;
    s.caused_by = "e";
    s.created_at_ms = 1'767'225'600'000;
    recon.insert_settlement(s);
    storage::SettlementLineRow l;
    l.settlement_id = "stl-1";
    l.type = "SALE";
    l.amount = 1000;  // the capture was 900
    l.capture_id = "cap-1";
    l.payment_transaction_id = "tx-1";
    recon.insert_line(l);
    processor::reconcile_settlement(store, "stl-1", s.created_at_ms);
  }
  std::ofstream(dir + "/ctl.toml") << "[processor]\ndatabase = \"" << db << "\"\n";
  auto list = klarnactl(dir, {"settlements", "list"});
  ASSERT_EQ(list.status, 0) << list.output;
  EXPECT_NE(list.output.find("stl-1  reconciled net 1000 EUR  payout 1000 -  1 lines  1 open"),
            std::string::npos)
      << list.output;
  auto show = klarnactl(dir, {"settlements", "show", "stl-1", "--json"});
  ASSERT_EQ(show.status, 0) << show.output;
  EXPECT_NE(
      show.output.find(R"("kind":"amount_mismatch","settlement_id":"stl-1","subject":"cap-1")"),
      std::string::npos)
      << show.output;
  EXPECT_NE(show.output.find(
                R"("theirs":{"settlement_id":"stl-1","line_no":0,"type":"SALE","amount":1000)"),
            std::string::npos)
      << show.output;
  EXPECT_EQ(klarnactl(dir, {"settlements", "show", "stl-none"}).status, 1);
  // cap-2 is in no report: listed as not settled; reconcile is read-only.
  auto rec = klarnactl(dir, {"settlements", "reconcile", "--set", "settlements.grace_period_ms=0"});
  ASSERT_EQ(rec.status, 0) << rec.output;
  EXPECT_NE(rec.output.find("stl-1: 1 lines, 1 findings (1 open)"), std::string::npos)
      << rec.output;
  EXPECT_NE(rec.output.find("missing_in_settlement     cap-2"), std::string::npos) << rec.output;
  EXPECT_NE(rec.output.find("captures not settled yet: 100 EUR"), std::string::npos) << rec.output;
  {
    storage::StateStore store(db, true);
    EXPECT_EQ(storage::ledger_of(store).findings(0, false, 10).size(), 1u);
  }
  auto pay = klarnactl(dir, {"payments", "show", "tx-1"});
  ASSERT_EQ(pay.status, 0) << pay.output;
  EXPECT_NE(pay.output.find("settled in stl-1"), std::string::npos) << pay.output;
  EXPECT_NE(pay.output.find("not settled yet"), std::string::npos) << pay.output;
  // Resolved (what it lacked arrived later): one line, when and why it was found.
  {
    storage::StateStore store(db);
    EXPECT_EQ(
        storage::ledger_of(store).resolve_findings("amount_mismatch", "cap-1", 1'767'225'660'000),
        1);
  }
  rec = klarnactl(dir, {"settlements", "reconcile"});
  ASSERT_EQ(rec.status, 0) << rec.output;
  EXPECT_NE(rec.output.find("stl-1: 1 lines, 1 findings (0 open), all matched\n"
                            "  amount_mismatch           cap-1  resolved 2026-01-01T00:01:00.000Z"
                            " (found: capture of 900 settled as 1000)\n"
                            "missing in settlements"),
            std::string::npos)
      << rec.output;
  std::filesystem::remove_all(dir);
}
