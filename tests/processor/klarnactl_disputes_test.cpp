// klarnactl disputes list|show|due against a database the applier wrote: a
// dispute nearing its deadline is listed as due before the deadline (at a
// simulated "now"), an overdue one is flagged, and show has the deadline
// history of an extension.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "child_process.hpp"
#include "klarnactl_run.hpp"
#include "kpay/core/log.hpp"
#include "kpay/processor/batch_applier.hpp"
#include "kpay/storage/state_store.hpp"

using namespace kpay;
using kpay::test::klarnactl;

namespace {

std::string event(std::string_view type, std::string_view id, std::string_view at,
                  std::string_view payload) {
  return R"({"metadata":{"event_type":")" + std::string(type) + R"(","event_id":")" +
         std::string(id) + R"(","event_version":"v2","occurred_at":")" + std::string(at) +
         R"("},"payload":{)" + std::string(payload) + "}}";
}

}  // namespace

TEST(KlarnactlDisputes, ListShowAndDueAtASimulatedNow) {
  const auto dir = test::make_temp_dir("klarnactl-disputes");
  const std::string db = dir + "/state.db";
  klarna::Topics topics;
  {
    storage::StateStore store(db);
    processor::BatchApplier applier(store, topics);
    const std::vector<std::string> bodies = {
        event(
            "payment.dispute.state-change.initiated", "e1", "2026-01-01T00:00:00Z",
            R"("payment_dispute_id":"dis-soon","dispute_details":{"dispute_amount":700,"currency":"EUR"},"representment":{"expires_at":"2026-01-10T00:00:00Z"})"),
        event(
            "payment.dispute.updated.representment-deadline-extended", "e2", "2026-01-02T00:00:00Z",
            R"("payment_dispute_id":"dis-soon","updated_fields":{"evidence_response_deadline_at":"2026-01-12T00:00:00Z"})"),
        event(
            "payment.dispute.state-change.initiated", "e3", "2026-01-01T00:00:00Z",
            R"("payment_dispute_id":"dis-late","representment":{"expires_at":"2026-01-05T00:00:00Z"})"),
        event(
            "payment.dispute.state-change.initiated", "e4", "2026-01-01T00:00:00Z",
            R"("payment_dispute_id":"dis-far","representment":{"expires_at":"2026-03-01T00:00:00Z"})"),
    };
    std::vector<processor::InputMessage> batch;
    std::int64_t offset = 0;
    for (const auto& b : bodies) batch.push_back({topics.disputes, 0, offset++, "k", b});
    applier.apply(batch);
  }
  std::ofstream(dir + "/ctl.toml") << "[processor]\ndatabase = \"" << db << "\"\n";

  auto list = klarnactl(dir, {"disputes", "list"});
  ASSERT_EQ(list.status, 0) << list.output;
  EXPECT_NE(list.output.find("dis-soon"), std::string::npos) << list.output;
  EXPECT_NE(list.output.find("700 EUR"), std::string::npos) << list.output;

  // 2026-01-11: dis-soon (extended to the 12th) is due within 48 h, dis-late overdue.
  auto due = klarnactl(dir, {"disputes", "due", "--now", "2026-01-11T00:00:00Z"});
  ASSERT_EQ(due.status, 0) << due.output;
  EXPECT_NE(due.output.find("1 due, 1 overdue"), std::string::npos) << due.output;
  EXPECT_NE(due.output.find("OVERDUE 2026-01-05T00:00:00.000Z"), std::string::npos) << due.output;
  EXPECT_EQ(due.output.find("dis-far"), std::string::npos) << due.output;
  auto json = klarnactl(dir, {"disputes", "due", "--now", "2026-01-11T00:00:00Z", "--json"});
  ASSERT_EQ(json.status, 0);
  EXPECT_NE(
      json.output.find(
          R"("payment_dispute_id":"dis-soon","deadline":"representment","due_at":"2026-01-12T00:00:00.000Z","seconds_left":86400,"overdue":false)"),
      std::string::npos)
      << json.output;
  EXPECT_NE(json.output.find(R"("payment_dispute_id":"dis-late")"), std::string::npos);

  auto show = klarnactl(dir, {"disputes", "show", "dis-soon", "--json"});
  ASSERT_EQ(show.status, 0) << show.output;
  EXPECT_NE(show.output.find(R"("field":"updated_fields.evidence_response_deadline_at")"),
            std::string::npos)
      << show.output;
  EXPECT_NE(show.output.find(R"("evidence_response_deadline_at":"2026-01-12T00:00:00.000Z")"),
            std::string::npos);
  EXPECT_EQ(klarnactl(dir, {"disputes", "show", "nope"}).status, 1);
  // A bad --now is a usage error (2), like every other bad option value.
  EXPECT_EQ(klarnactl(dir, {"disputes", "due", "--now", "yesterday"}).status, 2);
}
