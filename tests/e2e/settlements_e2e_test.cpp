// Settlements end to end, as separate processes over real sockets: payments
// authorized and captured through klarna.commands → klarna-processor → the
// outbox worker → klarna-sim; the sim settles them (POST /_sim/settlements,
// with its fault modes) and sends settlement.* webhooks through
// klarna-receiver → Kafka → klarna-processor, which fetches the report from
// the sim's Settlements API (details, pages, payout status) and reconciles it.
//   - a faithful report: zero findings;
//   - each fault mode: exactly its finding, once (a failed payout: the payout
//     FAILED, no finding; holdback and fee_refund lines: none; a line of an
//     unknown type: unrecognised_line);
//   - the processor killed in the middle of a fetch: nothing booked twice.
// One system serves the suite; the tests run in order (omit_capture, whose
// capture stays out of every later report, comes last).
//
// SettlementsOnPostgresE2E: the same reconciliation with two processors in one
// consumer group on one PostgreSQL state, the one fetching a report killed
// mid-fetch: the same findings, each once, its gauge reported by one processor.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <regex>

#include "e2e_db.hpp"
#include "e2e_system.hpp"
#include "kpay/klarna/api_client.hpp"
#include "postgres_server.hpp"

using namespace kpay;
using namespace kpay::test;
using namespace std::chrono_literals;

namespace {

const std::string kKeyId = "krn:partner:global:notification:signing-key:stl-0001";
const std::string kSecret = "stl-signing-key-NOT-REAL";
const std::string kApiKey = "stl-api-key-NOT-REAL";
const std::string kAccount = "krn:partner:global:account:test:STLS0001";
constexpr auto kGrace = 12s;

class SettlementsE2E : public ::testing::Test {
 protected:
  static SystemOptions options(const std::string& tag) {
    SystemOptions o{tag, tag, kKeyId, kSecret, kApiKey, {}};
    o.processor_toml = "[settlements]\npage_size = 2\ngrace_period_ms = " +
                       std::to_string(std::chrono::milliseconds(kGrace).count()) +
                       "\ncheck_interval_ms = 300\n";
    return o;
  }
  static void SetUpTestSuite() {
    system_ = new System(options("settlements-e2e"));
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
  static System* system_;

  // An authorized payment of `amount` EUR, captured in full; its capture id.
  static std::string captured(const std::string& name, int amount) {
    const std::string auth = "auth-" + name;
    sys().send("ref-" + name,
               R"({"command_id":")" + auth + R"(","type":"authorize","partner_account_id":")" +
                   kAccount + R"(","amount":)" + std::to_string(amount) +
                   R"(,"currency":"EUR","payment_transaction_reference":"ref-)" + name +
                   R"(","capture":"LATER","customer_token":"ctok-)" + name + R"("})");
    const auto a = sys().final_result(auth);
    EXPECT_EQ(a.status, "succeeded") << a.raw;
    const auto txn = a.payment_transaction_id;
    sys().send(txn, R"({"command_id":"cap-)" + name +
                        R"(","type":"capture","payment_transaction_id":")" + txn + "\"}");
    const auto c = sys().final_result("cap-" + name);
    EXPECT_EQ(c.status, "succeeded") << c.raw;
    EXPECT_FALSE(c.payment_capture_id.empty()) << c.raw;
    return c.payment_capture_id;
  }

  // A report now, in EUR, with these fault modes (JSON array); its id.
  static std::string settle(const std::string& faults = "[]") {
    const auto r =
        sys().sim("POST", "/_sim/settlements", R"({"currency":"EUR","faults":)" + faults + "}");
    simdjson::dom::parser p;
    simdjson::dom::element e;
    if (p.parse(r).get(e) != simdjson::SUCCESS || str_at(e, "settlement_id").empty()) {
      ADD_FAILURE() << "no settlement: " << r;
      return "";
    }
    return str_at(e, "settlement_id");
  }

  static std::string quoted(const std::string& s) { return "'" + s + "'"; }

  // The report fetched, reconciled, and its payout status read: every fetch
  // call of the settlement done.
  static bool reconciled(const std::string& id) {
    return wait_until(
        [&] {
          return query_text(sys().db(), "SELECT status FROM settlements WHERE settlement_id = " +
                                            quoted(id)) == "reconciled" &&
                 query(sys().db(), "SELECT COUNT(*) FROM outbox WHERE entity_id = " + quoted(id) +
                                       " AND status <> 'succeeded'") == 0 &&
                 query(sys().db(), "SELECT COUNT(*) FROM outbox WHERE entity_id = " + quoted(id) +
                                       " AND operation = 'fetch_payout_status'") == 1;
        },
        60s);
  }

  // "kind subject" of every finding of the settlement, sorted.
  static std::string findings(const std::string& id) {
    return query_text(sys().db(),
                      "SELECT COALESCE(GROUP_CONCAT(k, ', '), '') FROM (SELECT kind || ' ' || "
                      "subject AS k FROM reconciliation_findings WHERE settlement_id = " +
                          quoted(id) + " ORDER BY k) AS f");
  }
  static long long lines(const std::string& id) {
    return query(sys().db(),
                 "SELECT COUNT(*) FROM settlement_lines WHERE settlement_id = " + quoted(id));
  }
};
System* SettlementsE2E::system_ = nullptr;

TEST_F(SettlementsE2E, AFaithfulReportHasNoFindings) {
  const auto a = captured("happy-a", 10000);
  const auto b = captured("happy-b", 2500);
  const auto id = settle();
  ASSERT_TRUE(reconciled(id)) << sys().processor_log();
  EXPECT_EQ(findings(id), "");
  EXPECT_EQ(lines(id), 4) << "a SALE and a FEE line per capture";
  for (const auto& cap : {a, b}) {
    EXPECT_EQ(query(sys().db(),
                    "SELECT COUNT(*) FROM settlement_lines WHERE type = 'SALE' AND "
                    "capture_id = " +
                        quoted(cap)),
              1);
  }
  EXPECT_EQ(query_text(sys().db(),
                       "SELECT payout_status FROM settlements WHERE settlement_id = " + quoted(id)),
            "PROCESSED");
  // Announced once by the sim, fetched once.
  EXPECT_EQ(query(sys().db(), "SELECT COUNT(*) FROM outbox WHERE entity_id = " + quoted(id) +
                                  " AND operation = 'fetch_settlement'"),
            1);
}

TEST_F(SettlementsE2E, AWrongAmountIsAnAmountMismatch) {
  const auto cap = captured("wrong", 4000);
  const auto id = settle(R"([{"kind":"wrong_amount"}])");
  ASSERT_TRUE(reconciled(id)) << sys().processor_log();
  EXPECT_EQ(findings(id), "amount_mismatch " + cap);
}

TEST_F(SettlementsE2E, ACaptureSettledTwiceIsADuplicate) {
  const auto cap = captured("twice", 3000);
  const auto id = settle(R"([{"kind":"duplicate_capture","payment_capture_id":")" + cap + "\"}]");
  ASSERT_TRUE(reconciled(id)) << sys().processor_log();
  EXPECT_EQ(findings(id), "duplicate_settlement " + cap);
}

TEST_F(SettlementsE2E, APayoutThatDoesNotAddUpIsAPayoutMismatch) {
  captured("payout", 5000);
  const auto id = settle(R"([{"kind":"payout_mismatch"}])");
  ASSERT_TRUE(reconciled(id)) << sys().processor_log();
  EXPECT_EQ(findings(id), "payout_mismatch payout");
}

// Klarna's other transaction types, each in its direction: a holdback of
// 1000 and a release of 500 taken from and added to the payout, a fee
// refunded; the sim's totals and payout count them, and so does the processor.
TEST_F(SettlementsE2E, HoldbackReleaseAndFeeRefundLinesReconcile) {
  captured("holdback", 7000);
  const auto id = settle(R"([{"kind":"holdback","delta":1000},{"kind":"fee_refund"}])");
  ASSERT_TRUE(reconciled(id)) << sys().processor_log();
  EXPECT_EQ(findings(id), "");
  EXPECT_EQ(query_text(sys().db(),
                       "SELECT GROUP_CONCAT(type, ' ') FROM (SELECT type FROM settlement_lines "
                       "WHERE settlement_id = " +
                           quoted(id) + " ORDER BY line_no) AS l"),
            "SALE FEE HOLDBACK RELEASE FEE_REFUND");
}

// A type Klarna does not list: one unrecognised_line finding and nothing
// else (no payout_mismatch from a line whose direction is unknown).
TEST_F(SettlementsE2E, ALineOfAnUnknownTypeIsOneUnrecognisedLine) {
  captured("unknown", 4000);
  const auto id = settle(R"([{"kind":"unknown_type","type":"PARTNER_BONUS","delta":250}])");
  ASSERT_TRUE(reconciled(id)) << sys().processor_log();
  EXPECT_EQ(findings(id), "unrecognised_line line:2");
}

TEST_F(SettlementsE2E, AFailedPayoutIsSurfacedWithoutAFinding) {
  captured("failed", 6000);
  const auto id = settle(R"([{"kind":"payout_failed"}])");
  ASSERT_TRUE(reconciled(id)) << sys().processor_log();
  EXPECT_EQ(findings(id), "");
  EXPECT_TRUE(wait_until(
      [&] {
        return query_text(sys().db(), "SELECT state FROM records WHERE kind = 'payout' AND id = " +
                                          quoted(id)) == "PAYOUT_FAILED";
      },
      30s));
  // The error is logged after the batch commits: wait for it, do not race it.
  EXPECT_TRUE(wait_until(
      [&] { return sys().processor_log().find("settlement payout failed") != std::string::npos; },
      30s))
      << sys().processor_log();
}

TEST_F(SettlementsE2E, KilledInTheMiddleOfAFetchNothingIsBookedTwice) {
  for (int i = 0; i < 3; ++i) captured("restart-" + std::to_string(i), 1000 + i);
  // Each transactions page takes 300 ms: the kill lands between pages.
  sys().sim("POST", "/_sim/faults", R"({"rules":["settlements.transactions:latency:100:300"]})");
  const auto id = settle();
  ASSERT_TRUE(wait_until(
      [&] {
        return query(sys().db(), "SELECT lines_booked FROM settlements WHERE settlement_id = " +
                                     quoted(id)) >= 2;
      },
      60s))
      << sys().processor_log();
  sys().kill_processor();
  const auto booked = lines(id);
  EXPECT_LT(booked, 6) << "the kill came after the last page: nothing was tested";
  sys().start_processor();
  ASSERT_TRUE(reconciled(id)) << sys().processor_log();
  sys().sim("POST", "/_sim/faults", R"({"rules":[]})");
  EXPECT_EQ(lines(id), 6);
  EXPECT_EQ(
      query(sys().db(), "SELECT lines_booked FROM settlements WHERE settlement_id = " + quoted(id)),
      6);
  EXPECT_EQ(query(sys().db(),
                  "SELECT COUNT(*) FROM (SELECT capture_id FROM settlement_lines "
                  "WHERE settlement_id = " +
                      quoted(id) + " AND type = 'SALE' GROUP BY capture_id HAVING COUNT(*) > 1)"),
            0);
  EXPECT_EQ(findings(id), "");
}

// Two processors on one PostgreSQL state (SettlementsOnPostgresE2E below).
class SettlementsOnPostgresE2E : public SettlementsE2E {
 protected:
  static void SetUpTestSuite() {
    pg_ = new PostgresServer();
    add_sqlite_functions(pg_->dsn());  // GROUP_CONCAT, as findings() uses it
    auto o = options("settlements-pg-e2e");
    o.postgresql = pg_->dsn();
    system_ = new System(o);
    system_->start_receiver();
    system_->start_sim();
    // A claimed call or job is taken over 1.5 s after its processor died.
    for (std::size_t i : {0, 1}) {
      system_->start_processor({"--set", "postgresql.claim_lease_ms=1500"}, i);
    }
  }
  static void TearDownTestSuite() {
    system_->stop_processor(1);
    system_->stop_processor(0);
    delete system_;
    system_ = nullptr;
    delete pg_;
    pg_ = nullptr;
  }
  static std::string logs() { return sys().processor_log(0) + sys().processor_log(1); }
  // The settlement fetch calls processor `i` recorded as succeeded.
  static std::size_t fetches(std::size_t i) {
    const auto log = sys().processor_log(i);
    std::size_t n = 0;
    for (auto at = log.find("\"Klarna call succeeded\""); at != std::string::npos;
         at = log.find("\"Klarna call succeeded\"", at + 1)) {
      n += log.substr(at, log.find('\n', at) - at).find("\"fetch_") != std::string::npos ? 1 : 0;
    }
    return n;
  }
  // kpay_processor_settlement_findings{kind} as processor `i` reports it; -1
  // without a sample (it does not hold the settlement-watch job), -2 when its
  // metrics cannot be read.
  static double findings_gauge(std::size_t i, const std::string& kind) {
    const auto port = sys().processor_admin_port(i);
    const auto r = port ? http_request(port, "GET", "/metrics") : std::nullopt;
    if (!r || r->status != 200) return -2;
    const std::regex sample("kpay_processor_settlement_findings\\{kind=\"" + kind + "\"\\} (\\S+)");
    std::smatch m;
    return std::regex_search(r->body, m, sample) ? std::stod(m[1]) : -1;
  }
  static PostgresServer* pg_;
};
PostgresServer* SettlementsOnPostgresE2E::pg_ = nullptr;

// A report with a wrong amount and a capture settled twice, fetched in four
// pages by two processors; the one fetching the pages is SIGKILLed between
// two of them and the other takes its claimed call over after the lease:
// exactly the report's two findings, each once, as on SQLite; every line booked
// once; the open findings reported by one processor (the job's holder).
TEST_F(SettlementsOnPostgresE2E, TwoProcessorsFindAWrongAmountAndADuplicateOnceThroughAKill) {
  const auto wrong = captured("pg-wrong", 4000);
  const auto twice = captured("pg-twice", 3000);
  captured("pg-right", 2000);
  double a = -2, b = -2;  // the gauge's sample on each processor
  auto one_reports = [&](double value) {
    a = findings_gauge(0, "amount_mismatch");
    b = findings_gauge(1, "amount_mismatch");
    return (a == value && b == -1) || (a == -1 && b == value);
  };
  EXPECT_TRUE(wait_until([&] { return one_reports(0); }, 30s)) << a << " " << b;
  // Each transactions page takes 300 ms: the kill lands between pages.
  sys().sim("POST", "/_sim/faults", R"({"rules":["settlements.transactions:latency:100:300"]})");
  const auto id =
      settle(R"([{"kind":"wrong_amount","payment_capture_id":")" + wrong +
             R"("},{"kind":"duplicate_capture","payment_capture_id":")" + twice + "\"}]");
  ASSERT_TRUE(wait_until(
      [&] {
        return query(sys().db(), "SELECT lines_booked FROM settlements WHERE settlement_id = " +
                                     quoted(id)) >= 2;
      },
      60s))
      << logs();
  const std::size_t fetcher = fetches(1) > fetches(0) ? 1 : 0;
  sys().kill_processor(fetcher);
  EXPECT_LT(lines(id), 7) << "the kill came after the last page: nothing was taken over";
  ASSERT_TRUE(reconciled(id)) << logs();
  sys().sim("POST", "/_sim/faults", R"({"rules":[]})");
  std::cout << "killed proc-" << fetcher << " after its " << fetches(fetcher)
            << " fetch answers; proc-" << 1 - fetcher << " answered " << fetches(1 - fetcher)
            << "\n";
  EXPECT_GT(fetches(1 - fetcher), 0u) << "the survivor fetched the rest";
  EXPECT_EQ(findings(id), "amount_mismatch " + wrong + ", duplicate_settlement " + twice);
  EXPECT_EQ(lines(id), 7) << "a SALE and a FEE line per capture, the duplicated SALE";
  EXPECT_EQ(
      query(sys().db(), "SELECT lines_booked FROM settlements WHERE settlement_id = " + quoted(id)),
      7);
  EXPECT_EQ(query(sys().db(), "SELECT COUNT(*) FROM outbox WHERE entity_id = " + quoted(id)), 6)
      << "details, four transactions pages, the payout status: each queued once";
  // The survivor holds the settlement-watch job once the dead one's lease ran out.
  EXPECT_TRUE(wait_until(
      [&] {
        const double v = findings_gauge(1 - fetcher, "amount_mismatch");
        (fetcher == 0 ? b : a) = v;
        return v == 1;
      },
      30s))
      << "survivor " << (fetcher == 0 ? b : a);
}

// Last: the capture left out stays out of every later report.
TEST_F(SettlementsE2E, ACaptureLeftOutIsMissingAfterTheGracePeriod) {
  const auto left_out = captured("left-out", 7000);
  captured("kept", 800);
  const auto id = settle(R"([{"kind":"omit_capture","payment_capture_id":")" + left_out + "\"}]");
  ASSERT_TRUE(reconciled(id)) << sys().processor_log();
  EXPECT_EQ(findings(id), "");
  const std::string missing =
      "SELECT COUNT(*) FROM reconciliation_findings WHERE kind = "
      "'missing_in_settlement' AND subject = " +
      quoted(left_out);
  ASSERT_TRUE(wait_until([&] { return query(sys().db(), missing) == 1; }, kGrace + 30s))
      << sys().processor_log();
  // Once (its id is the capture's), and nothing else is missing.
  EXPECT_EQ(query(sys().db(),
                  "SELECT COUNT(*) FROM reconciliation_findings WHERE kind = "
                  "'missing_in_settlement'"),
            1);
}

}  // namespace
