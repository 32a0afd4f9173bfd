// Disputes (issue 15): every dispute event type of both frameworks, with their
// deadline fields and extensions, applied through the BatchApplier to a real
// SQLite file (table-driven, checkable against docs/klarna/PAYMENTS-API.md "Disputes" and
// docs/klarna/WEBHOOKS.md §4); the deadline history; and the deadline watcher against an
// injected clock (metrics figures, one warning per deadline, overdue flagged).
#include <gtest/gtest.h>

#include <filesystem>

#include "child_process.hpp"
#include "kpay/core/log.hpp"
#include "kpay/processor/batch_applier.hpp"
#include "kpay/processor/dispute_deadlines.hpp"
#include "kpay/storage/migrations.hpp"
#include "kpay/storage/state_store.hpp"

using namespace kpay;
using processor::BatchApplier;
using processor::InputMessage;

namespace {

constexpr std::int64_t T0 = 1'767'225'600'000;  // 2026-01-01T00:00:00Z
constexpr std::int64_t kHour = 3'600'000;
constexpr std::int64_t kDay = 24 * kHour;

std::string body(std::string_view type, std::string_view version, std::string_view event_id,
                 std::int64_t at_ms, std::string_view payload) {
  return R"({"metadata":{"event_type":")" + std::string(type) + R"(","event_id":")" +
         std::string(event_id) + R"(","event_version":")" + std::string(version) +
         R"(","occurred_at":")" + core::rfc3339_ms(at_ms) + R"("},"payload":{)" +
         std::string(payload) + "}}";
}

std::int64_t ms(const char* rfc3339) {
  return *processor::parse_rfc3339_ms(rfc3339);
}

class Disputes : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test::make_temp_dir("disputes");
    store_ = std::make_unique<storage::StateStore>(dir_ + "/state.db");
    applier_ = std::make_unique<BatchApplier>(*store_, klarna::Topics{});
  }
  void TearDown() override {
    applier_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Applies one webhook body as its own batch; returns the history outcome.
  std::string apply(const std::string& b) {
    InputMessage m{topics_.disputes, 0, offset_++, "k", b};
    applier_->apply(std::span(&m, 1));
    auto s =
        store_->database().prepare("SELECT outcome, reason FROM history ORDER BY seq DESC LIMIT 1");
    s.step();
    last_reason_ = s.text(1);
    return s.text(0);
  }
  std::int64_t count(std::string_view table) {
    auto s = store_->database().prepare("SELECT COUNT(*) FROM " + std::string(table));
    s.step();
    return s.int64(0);
  }

  std::string dir_, last_reason_;
  std::unique_ptr<storage::StateStore> store_;
  std::unique_ptr<BatchApplier> applier_;
  std::int64_t offset_ = 0;
  klarna::Topics topics_;
};

// One event of the catalogue on a dispute (after `prior`, when the event only
// means something on a known dispute), and what the dispute holds afterwards.
struct Case {
  const char* prior;  // event type applied first (v1), or nullptr
  const char* type;
  const char* payload;  // without payment_dispute_id
  const char* state;
  const char* framework;
  const char* representment;  // expected deadline (RFC 3339) or nullptr
  const char* arbitration;
  const char* evidence_response;
  const char* outcome;
};

constexpr const char* kRep =
    R"("representment":{"state":"REQUESTED","expires_at":"2026-01-22T00:00:00Z"})";

// clang-format off
const Case kCases[] = {
    // current framework
    {nullptr, "payment.dispute.state-change.initiated",
     R"("dispute_details":{"dispute_amount":2500,"currency":"EUR"},"representment":{"state":"REQUESTED","expires_at":"2026-01-22T00:00:00Z"})",
     "INITIATED", "current", "2026-01-22T00:00:00Z", nullptr, nullptr, nullptr},
    {nullptr, "payment.dispute.state-change.initiated",  // deadline under state_context
     R"("state_context":{"representment":{"expires_at":"2026-01-23T00:00:00Z"}})",
     "INITIATED", "current", "2026-01-23T00:00:00Z", nullptr, nullptr, nullptr},
    {"payment.dispute.state-change.initiated", "payment.dispute.state-change.representment",
     R"("representment":{"state":"SUBMITTED","expires_at":"2026-01-22T00:00:00Z"})",
     "REPRESENTMENT", "current", "2026-01-22T00:00:00Z", nullptr, nullptr, nullptr},
    {"payment.dispute.state-change.representment", "payment.dispute.state-change.pre-arbitration",
     R"("arbitration_expires_at":"2026-02-10T00:00:00Z","state_context":{"preliminary_outcome":"LOST"})",
     "PRE_ARBITRATION", "current", nullptr, "2026-02-10T00:00:00Z", nullptr, nullptr},
    {"payment.dispute.state-change.representment", "payment.dispute.state-change.pre-arbitration",
     R"("state_context":{"arbitration_expires_at":"2026-02-11T00:00:00Z"})",
     "PRE_ARBITRATION", "current", nullptr, "2026-02-11T00:00:00Z", nullptr, nullptr},
    {"payment.dispute.state-change.pre-arbitration", "payment.dispute.state-change.arbitration",
     "", "ARBITRATION", "current", nullptr, nullptr, nullptr, nullptr},
    {"payment.dispute.state-change.initiated", "payment.dispute.state-change.closed",
     R"("state_context":{"dispute_outcome":"WON","dispute_outcome_detailed":"EVIDENCE_ACCEPTED","closed_at":"2026-01-30T00:00:00Z"})",
     "CLOSED", "current", nullptr, nullptr, nullptr, "WON"},
    {"payment.dispute.state-change.initiated", "payment.dispute.state-change.closed",
     R"("dispute_outcome":"LOST","closed_at":"2026-01-30T00:00:00Z")",
     "CLOSED", "current", nullptr, nullptr, nullptr, "LOST"},
    {"payment.dispute.state-change.initiated", "payment.dispute.updated.representment-deadline-extended",
     R"("updated_fields":{"representment":{"expires_at":"2026-01-29T00:00:00Z"}},"previous_fields":{"representment":{"expires_at":"2026-01-22T00:00:00Z"}})",
     "INITIATED", "current", "2026-01-29T00:00:00Z", nullptr, nullptr, nullptr},
    {"payment.dispute.state-change.initiated", "payment.dispute.updated.representment-deadline-extended",
     R"("updated_fields":{"evidence_response_deadline_at":"2026-01-30T00:00:00Z"})",  // the SDK's shape
     "INITIATED", "current", "2026-01-30T00:00:00Z", nullptr, "2026-01-30T00:00:00Z", nullptr},
    {"payment.dispute.state-change.initiated", "payment.dispute.updated.representment-deadline-extended",
     R"("updated_fields":{"representment_expires_at":"2026-01-31T00:00:00Z"})",
     "INITIATED", "current", "2026-01-31T00:00:00Z", nullptr, nullptr, nullptr},
    // legacy framework
    {nullptr, "payment.dispute.state-change.merchant-evidence-pending",
     R"("state_context":{"evidence_response_deadline_at":"2026-01-15T00:00:00Z"})",
     "MERCHANT_EVIDENCE_PENDING", "legacy", nullptr, nullptr, "2026-01-15T00:00:00Z", nullptr},
    {nullptr, "payment.dispute.state-change.merchant-evidence-pending",
     R"("evidence_response_deadline_at":"2026-01-16T00:00:00Z")",
     "MERCHANT_EVIDENCE_PENDING", "legacy", nullptr, nullptr, "2026-01-16T00:00:00Z", nullptr},
    {"payment.dispute.state-change.merchant-evidence-pending", "payment.dispute.state-change.arbitration-pending",
     "", "ARBITRATION_PENDING", "legacy", nullptr, nullptr, nullptr, nullptr},
    {"payment.dispute.state-change.merchant-evidence-pending", "payment.dispute.state-change.pre-arbitration",
     "", "LEGACY_PRE_ARBITRATION", "legacy", nullptr, nullptr, nullptr, nullptr},
    {"payment.dispute.state-change.arbitration-pending", "payment.dispute.state-change.arbitration-appeal-window-open",
     R"("arbitration_expires_at":"2026-02-05T00:00:00Z")",
     "ARBITRATION_APPEAL_WINDOW_OPEN", "legacy", nullptr, "2026-02-05T00:00:00Z", nullptr, nullptr},
    {"payment.dispute.state-change.arbitration-pending", "payment.dispute.state-change.closed",
     R"("state_context":{"dispute_outcome":"LOST"})",
     "CLOSED", "legacy", nullptr, nullptr, nullptr, "LOST"},
    {"payment.dispute.state-change.arbitration-appeal-window-open", "payment.dispute.updated.arbitration-deadline-extended",
     R"("updated_fields":{"arbitration_expires_at":"2026-02-12T00:00:00Z"})",
     "ARBITRATION_APPEAL_WINDOW_OPEN", "legacy", nullptr, "2026-02-12T00:00:00Z", nullptr, nullptr},
    {"payment.dispute.state-change.arbitration-appeal-window-open", "payment.dispute.updated.arbitration-deadline-extended",
     R"("updated_fields":{"evidence_response_deadline_at":"2026-02-13T00:00:00Z"})",  // the SDK's shape
     "ARBITRATION_APPEAL_WINDOW_OPEN", "legacy", nullptr, "2026-02-13T00:00:00Z", "2026-02-13T00:00:00Z", nullptr},
    // a dispute first seen through its extension
    {nullptr, "payment.dispute.updated.arbitration-deadline-extended",
     R"("updated_fields":{"evidence_response_deadline_at":"2026-02-14T00:00:00Z"})",
     nullptr, "legacy", nullptr, "2026-02-14T00:00:00Z", "2026-02-14T00:00:00Z", nullptr},
};
// clang-format on

std::optional<std::int64_t> expected(const char* v) {
  if (v == nullptr) return std::nullopt;
  return ms(v);
}

}  // namespace

TEST_F(Disputes, EveryEventTypeOfBothFrameworksIsAppliedWithItsDeadlines) {
  int n = 0;
  for (const char* version : {"v1", "v2"}) {
    for (const auto& c : kCases) {
      const std::string id = "krn:payment:eu1:dispute:case-" + std::to_string(++n);
      SCOPED_TRACE(std::string(c.type) + " " + version + " " + c.payload);
      const std::string idf = R"("payment_dispute_id":")" + id + "\"";
      if (c.prior != nullptr) {
        ASSERT_EQ(apply(body(c.prior, "v1", id + "-p", T0, idf + "," + kRep)), "applied")
            << last_reason_;
      }
      const std::string payload = idf + (*c.payload ? "," : "") + c.payload;
      EXPECT_EQ(apply(body(c.type, version, id + "-e", T0 + kHour, payload)), "applied")
          << last_reason_;
      const auto d = store_->find_dispute(id);
      ASSERT_TRUE(d);
      EXPECT_EQ(d->state, c.state ? std::optional<std::string>(c.state) : std::nullopt);
      EXPECT_EQ(kpay::storage::to_string(d->framework), c.framework);
      if (c.representment) {
        EXPECT_EQ(d->representment_expires_at_ms, expected(c.representment));
      }
      EXPECT_EQ(d->arbitration_expires_at_ms, expected(c.arbitration));
      EXPECT_EQ(d->evidence_response_deadline_ms, expected(c.evidence_response));
      EXPECT_EQ(d->outcome, c.outcome ? std::optional<std::string>(c.outcome) : std::nullopt);
    }
  }
  EXPECT_EQ(count("poison_messages"), 0) << "a documented dispute event was dead-lettered";
}

TEST_F(Disputes, OutcomeAndAmountsFromWhereverKlarnaPutsThem) {
  const std::string id = R"("payment_dispute_id":"dis-money")";
  ASSERT_EQ(apply(body("payment.dispute.state-change.initiated", "v2", "m1", T0,
                       id + R"(,"dispute_details":{"dispute_amount":2500,"currency":"SEK"},)" +
                           R"("state_context":{"withheld_amount":2500,"dispute_fee_amount":300})")),
            "applied");
  ASSERT_EQ(apply(body("payment.dispute.state-change.closed", "v2", "m2", T0 + kDay,
                       id + R"(,"state_context":{"dispute_outcome":"WON",)" +
                           R"("dispute_outcome_detailed":"PARTNER_WON","returned_amount":2500})")),
            "applied");
  const auto d = store_->find_dispute("dis-money");
  EXPECT_EQ(d->amount, 2500);
  EXPECT_EQ(d->currency, "SEK");
  EXPECT_EQ(d->withheld_amount, 2500);
  EXPECT_EQ(d->fee_amount, 300);
  EXPECT_EQ(d->returned_amount, 2500);
  EXPECT_EQ(d->outcome, "WON");
  EXPECT_EQ(d->outcome_detailed, "PARTNER_WON");
  // The state change downstream sees carries them.
  auto s = store_->database().prepare("SELECT value FROM publish_queue ORDER BY seq DESC LIMIT 1");
  ASSERT_TRUE(s.step());
  const std::string msg = s.text(0);
  EXPECT_NE(msg.find(R"("returned_amount":2500)"), std::string::npos) << msg;
  EXPECT_NE(msg.find(R"("outcome":"WON")"), std::string::npos) << msg;
}

TEST_F(Disputes, ExtensionsKeepEveryDeadlineInTheHistoryAndTheNewestOnTheRow) {
  const std::string id = R"("payment_dispute_id":"dis-h")";
  ASSERT_EQ(apply(body("payment.dispute.state-change.initiated", "v2", "h1", T0, id + "," + kRep)),
            "applied");
  ASSERT_EQ(
      apply(body(
          "payment.dispute.updated.representment-deadline-extended", "v1", "h2", T0 + 2 * kDay,
          id + R"(,"updated_fields":{"evidence_response_deadline_at":"2026-02-01T00:00:00Z"})")),
      "applied");
  // An older extension arriving late is stale and does not move the deadline back.
  EXPECT_EQ(
      apply(body(
          "payment.dispute.updated.representment-deadline-extended", "v2", "h3", T0 + kDay,
          id + R"(,"updated_fields":{"representment":{"expires_at":"2026-01-25T00:00:00Z"}})")),
      "stale");
  EXPECT_EQ(store_->find_dispute("dis-h")->representment_expires_at_ms, ms("2026-02-01T00:00:00Z"));
  const auto h = store_->dispute_deadlines("dis-h");
  ASSERT_EQ(h.size(), 4u);  // initiated; h2 as representment and evidence_response; h3
  EXPECT_EQ(h[0].field, "representment.expires_at");
  EXPECT_EQ(h[1].field, "updated_fields.representment.expires_at");  // h3, older occurred_at
  EXPECT_EQ(h[1].deadline_ms, ms("2026-01-25T00:00:00Z"));
  EXPECT_EQ(h[2].kind, "evidence_response");
  EXPECT_EQ(h[3].kind, "representment");
  EXPECT_EQ(h[3].field, "updated_fields.evidence_response_deadline_at");
  // A redelivery is a duplicate and adds nothing.
  EXPECT_EQ(
      apply(body(
          "payment.dispute.updated.representment-deadline-extended", "v1", "h2", T0 + 2 * kDay,
          id + R"(,"updated_fields":{"evidence_response_deadline_at":"2026-02-01T00:00:00Z"})")),
      "duplicate");
  EXPECT_EQ(store_->dispute_deadlines("dis-h").size(), 4u);
}

TEST_F(Disputes, AnExtensionWithoutAnyDeadlineIsStillPoison) {
  EXPECT_EQ(apply(body("payment.dispute.updated.arbitration-deadline-extended", "v1", "x1", T0,
                       R"("payment_dispute_id":"dis-x","updated_fields":{})")),
            "rejected");
  EXPECT_NE(last_reason_.find("missing_field"), std::string::npos) << last_reason_;
}

// ---- the deadline watcher, on simulated time ---------------------------------

TEST_F(Disputes, WatcherShowsANearingDeadlineOnceAndFlagsItOverdue) {
  std::int64_t now = T0;
  processor::DeadlineWatchSettings settings;
  settings.window = std::chrono::hours(48);
  processor::DisputeDeadlineWatcher watcher(*store_, settings, [&now] { return now; });
  // Respond by 2026-01-22; one in REPRESENTMENT (Klarna's turn) and one closed do not count.
  ASSERT_EQ(apply(body("payment.dispute.state-change.initiated", "v2", "w1", T0,
                       R"("payment_dispute_id":"dis-w",)" + std::string(kRep))),
            "applied");
  for (const char* other : {"dis-r", "dis-c"}) {
    ASSERT_EQ(apply(body("payment.dispute.state-change.initiated", "v2", std::string(other) + "1",
                         T0, R"("payment_dispute_id":")" + std::string(other) + "\"," + kRep)),
              "applied");
  }
  ASSERT_EQ(apply(body("payment.dispute.state-change.representment", "v2", "r2", T0 + 1,
                       R"("payment_dispute_id":"dis-r")")),
            "applied");
  ASSERT_EQ(apply(body("payment.dispute.state-change.closed", "v2", "c2", T0 + 1,
                       R"("payment_dispute_id":"dis-c","dispute_outcome":"LOST")")),
            "applied");
  const std::int64_t due = ms("2026-01-22T00:00:00Z");

  auto c = watcher.check();  // 21 days before: nothing due
  EXPECT_EQ(c.stats.due_within_window, 0);
  EXPECT_EQ(c.stats.overdue, 0);
  EXPECT_EQ(c.stats.seconds_to_nearest, (due - now) / 1000);
  EXPECT_TRUE(c.warnings.empty());

  now = due - 47 * kHour;  // enters the 48 h window
  c = watcher.check();
  EXPECT_EQ(c.stats.due_within_window, 1);
  ASSERT_EQ(c.warnings.size(), 1u);
  EXPECT_EQ(c.warnings[0].deadline.dispute_id, "dis-w");
  EXPECT_EQ(c.warnings[0].stage, "window");
  EXPECT_EQ(c.warnings[0].seconds_left, 47 * 3600);
  ASSERT_EQ(c.publications.size(), 1u);
  EXPECT_GT(c.publications[0].seq, 0);
  EXPECT_EQ(c.publications[0].key, "dis-w");
  EXPECT_NE(c.publications[0].value.find(R"("entity_kind":"dispute")"), std::string::npos);
  EXPECT_NE(c.publications[0].value.find(R"("deadline_warning":{"deadline":"representment")"),
            std::string::npos)
      << c.publications[0].value;

  now += kHour;  // still inside: no second warning
  c = watcher.check();
  EXPECT_EQ(c.stats.due_within_window, 1);
  EXPECT_TRUE(c.warnings.empty());

  now = due + 1000;  // passed, dispute still INITIATED
  c = watcher.check();
  EXPECT_EQ(c.stats.overdue, 1);
  EXPECT_EQ(c.stats.due_within_window, 0);
  EXPECT_FALSE(c.stats.seconds_to_nearest);
  ASSERT_EQ(c.warnings.size(), 1u);
  EXPECT_EQ(c.warnings[0].stage, "passed");
  EXPECT_LT(c.warnings[0].seconds_left, 0);
  EXPECT_EQ(watcher.stats().overdue, 1);

  // A restart (new watcher, same store) does not warn again.
  processor::DisputeDeadlineWatcher again(*store_, settings, [&now] { return now; });
  EXPECT_TRUE(again.check().warnings.empty());
}

TEST_F(Disputes, WatcherWarnsAgainWhenAnExtensionEntersTheWindow) {
  std::int64_t now = ms("2026-01-21T00:00:00Z");  // 24 h before the first deadline
  processor::DisputeDeadlineWatcher watcher(*store_, {}, [&now] { return now; });
  ASSERT_EQ(apply(body("payment.dispute.state-change.initiated", "v2", "e1", T0,
                       R"("payment_dispute_id":"dis-e",)" + std::string(kRep))),
            "applied");
  EXPECT_EQ(watcher.check().warnings.size(), 1u);
  ASSERT_EQ(
      apply(body(
          "payment.dispute.updated.representment-deadline-extended", "v1", "e2", now,
          R"("payment_dispute_id":"dis-e","updated_fields":{"evidence_response_deadline_at":"2026-01-28T00:00:00Z"})")),
      "applied");
  auto c = watcher.check();  // moved out of the window
  EXPECT_TRUE(c.warnings.empty());
  EXPECT_EQ(c.stats.due_within_window, 0);
  now = ms("2026-01-27T00:00:00Z");
  c = watcher.check();  // one deadline, although told as representment and evidence_response
  EXPECT_EQ(c.stats.due_within_window, 1);
  ASSERT_EQ(c.warnings.size(), 1u);
  EXPECT_EQ(c.warnings[0].deadline.kind, "representment");
  EXPECT_EQ(c.warnings[0].deadline.deadline_ms, ms("2026-01-28T00:00:00Z"));
}

TEST_F(Disputes, LegacyDeadlineCountsWhileEvidenceIsAskedFor) {
  std::int64_t now = ms("2026-01-14T12:00:00Z");
  processor::DisputeDeadlineWatcher watcher(*store_, {}, [&now] { return now; });
  ASSERT_EQ(
      apply(body(
          "payment.dispute.state-change.merchant-evidence-pending", "v1", "l1", T0,
          R"("payment_dispute_id":"dis-l","state_context":{"evidence_response_deadline_at":"2026-01-15T00:00:00Z"})")),
      "applied");
  auto c = watcher.check();
  EXPECT_EQ(c.stats.due_within_window, 1);
  EXPECT_EQ(c.stats.seconds_to_nearest, 12 * 3600);
  ASSERT_EQ(apply(body("payment.dispute.state-change.arbitration-pending", "v1", "l2", T0 + kDay,
                       R"("payment_dispute_id":"dis-l")")),
            "applied");
  c = watcher.check();  // Klarna's turn now
  EXPECT_EQ(c.stats.due_within_window, 0);
}

TEST_F(Disputes, MetricsAreRegisteredFromTheLastCheck) {
  std::int64_t now = ms("2026-01-21T00:00:00Z");
  processor::DisputeDeadlineWatcher watcher(*store_, {}, [&now] { return now; });
  core::Registry registry;
  watcher.register_metrics(registry);
  EXPECT_EQ(registry.render().find("kpay_processor_dispute_deadlines{"), std::string::npos);
  ASSERT_EQ(apply(body("payment.dispute.state-change.initiated", "v2", "g1", T0,
                       R"("payment_dispute_id":"dis-g",)" + std::string(kRep))),
            "applied");
  watcher.check();
  const std::string text = registry.render();
  EXPECT_NE(text.find(R"(kpay_processor_dispute_deadlines{status="due_within_window"} 1)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(R"(kpay_processor_dispute_deadlines{status="overdue"} 0)"),
            std::string::npos);
  EXPECT_NE(text.find("kpay_processor_dispute_deadline_nearest_seconds 86400"), std::string::npos)
      << text;
}

TEST_F(Disputes, MigrationKeepsDeadlinesKnownBeforeV5) {
  const std::string path = dir_ + "/old.db";
  {
    auto db = storage::Database::open(path, {});
    storage::migrate(db, "state", storage::state_migrations().first(4));
    db.exec(
        "INSERT INTO disputes (id, framework, framework_inferred, state, state_as_of_ms, "
        "representment_expires_at_ms, representment_as_of_ms, arbitration_as_of_ms, "
        "last_event_id) VALUES ('dis-old', 'current', 0, 'INITIATED', 1, 1769040000000, 1, 0, "
        "'ev-old')");
  }
  storage::StateStore store(path);
  EXPECT_GE(store.schema_version(), 5);
  const auto h = store.dispute_deadlines("dis-old");
  ASSERT_EQ(h.size(), 1u);
  EXPECT_EQ(h[0].kind, "representment");
  EXPECT_EQ(h[0].field, "before v5");
  EXPECT_FALSE(store.find_dispute("dis-old")->evidence_response_deadline_ms);
}
