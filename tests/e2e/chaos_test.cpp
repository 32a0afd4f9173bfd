// Chaos end to end (issue 14, "Prove it"). The whole product as separate
// processes (tests/e2e/e2e_system.hpp) under a continuous flow of customer
// journeys from klarna-sim, while the test, round after round,
//   - SIGKILLs the receiver and starts it again on the same port,
//   - SIGKILLs the processor and starts it again,
//   - takes every broker of the embedded Kafka down, then up,
//   - injects Klarna faults (5xx, 429, held requests, answers lost after
//     execution, latency) on the routes the processor calls,
// and sends refund commands on klarna.commands for captured transactions.
// Then the faults stop, the system drains (waited on conditions), and:
//   - every webhook the sim got a 2xx for is in the processor's inbox and was
//     applied at most once (history);
//   - no delivery exhausted Klarna's retry schedule;
//   - every call with an idempotency key executed exactly once at the sim, and
//     the executions per operation equal what the payments need (one confirm
//     per Gen 1 authorization, one final authorization per Gen 2 one, one
//     capture per transaction, one refund per command);
//   - the processor's state equals the sim's, entity by entity;
//   - the audit trail lists every operation the sim executed exactly once as
//     an executed outcome (and nothing else), and klarna.audit carried every
//     row of it.
// KPAY_CHAOS_SECONDS sets the duration of the chaos (default 30 s for ctest;
// `make chaos` runs 420 s; at least the rounds that bring every kind of
// disturbance once), KPAY_CHAOS_ROUND_MS the length of a round,
// KPAY_CHAOS_TOKEN_TTL_MS the sim's token lifetime (kLongLivedTokensMs). A
// failed run's logs are kept (the path is printed).
// KPAY_CHAOS_STORE=postgresql (`make chaos STORE=postgresql`) runs the same
// chaos with two processors in one consumer group on one PostgreSQL state
// (a server the test starts), killed in turn, and one more disturbance every
// fourth round: PostgreSQL stopped for a second (fast shutdown, or an
// immediate one: a crash and WAL recovery) and started again.
//
// Also here: a stop (SIGTERM) while Klarna holds the processor's call ends
// within the processor's bound, and the call is sent again with the same
// idempotency key after the restart.
#include <gtest/gtest.h>
#include <simdjson.h>
#include <sqlite3.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "audit_trail.hpp"
#include "e2e_checks.hpp"
#include "e2e_db.hpp"
#include "e2e_system.hpp"
#include "postgres_server.hpp"

using namespace kpay;
using namespace kpay::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

const std::string kKeyId = "krn:partner:global:notification:signing-key:chaos-0001";
const std::string kSecret = "chaos-signing-key-NOT-REAL";
const std::string kApiKey = "chaos-api-key-NOT-REAL";

// Faults on the routes the processor calls (the scenario's own calls, which
// create the payments, are left alone). Each rule draws on its own.
const std::string kFaults =
    R"({"rules":["payment.authorize:503:20","payment.confirm:429:20:1",)"
    R"("payment.transactions.capture:drop-after:20","payment.transactions.refund:drop-after:25",)"
    R"("payment.authorize:drop-after:15","payment.confirm:drop-after:15","payment.confirm:502:10",)"
    R"("payment.transactions.*:timeout:5:1500","payment.authorize:timeout:5:1500",)"
    R"("payment.transactions.capture:500:15","payment.*:latency:30:50"]})";

// Two processors in one consumer group on the embedded Kafka (librdkafka's
// mock cluster, Debian's 2.0.2): no Kafka outage may outlast their session.
// The mock names a member by its struct's address ("%p") and takes back, as
// that member, a JoinGroup carrying an id it does not know; a real broker
// gives unique ids and answers UNKNOWN_MEMBER_ID. When an outage expires the
// members of live consumers, a consumer that keeps its id (one caught
// mid-rebalance: librdkafka checks its own session only when steady) can
// rejoin under the id the mock has just given the other consumer's new
// member at the same address, while that member's JoinGroup is parked:
// rd_kafka_mock_cgrp.c:567 `!member->resp` aborts (docs/RELIABILITY.md,
// "On PostgreSQL"). The mid-outage crash is then a SIGKILL (2.5 s down in
// all), reconnects are at most 1 s apart, and the session is 6 s.
const std::vector<std::string> kTwoMemberKafka{"--set", "kafka.properties.session.timeout.ms=6000",
                                               "--set",
                                               "kafka.properties.reconnect.backoff.max.ms=1000"};

// The PostgreSQL round's sim tokens live 3 h of sim time instead of Klarna's
// 60 min (docs/klarna/PAYMENTS-API.md): at --time-scale 60 that is 180 s
// real, against 60 s. The sim's clock runs 60× faster than the test's
// outages, which do not: a processor kill in the two-member group pauses
// consumption 10–30 s (the mock's rebalances, kTwoMemberKafka), i.e. 10–30
// min of Klarna's time, and kills, stops and outages every ~13 s on a loaded
// 2-core machine can put a follow-up a minute after its payment's approval
// (deliveries retried while the receiver is down, consumption paused): one
// made that late meets an expired token.
// That is the test's outage length against Klarna's token lifetime, not a
// processor defect: in a run with 10 min tokens every failed follow-up was the
// only call of its payment, made within 30 ms of its webhook being applied
// (docs/RELIABILITY.md, "On PostgreSQL"). 3 h is as long as a payment request
// itself lives, so a Gen 1 confirmation could not wait longer anyway.
// KPAY_CHAOS_TOKEN_TTL_MS sets it for either round (e.g. 3600000: the
// PostgreSQL round against Klarna's lifetime; the SQLite round keeps it).
constexpr long kLongLivedTokensMs = 3L * 3600 * 1000;

long env_number(const char* name, long fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return end != nullptr && *end == '\0' && n > 0 ? n : fallback;
}

// The processor's calls as the sim saw them: all, and those a fault hit.
struct CallCounts {
  std::size_t calls = 0, faulted = 0, replayed = 0;
};
CallCounts processor_calls(System& sys) {
  simdjson::dom::parser p;
  simdjson::dom::element root;
  CallCounts out;
  if (p.parse(sys.sim("GET", "/_sim/calls")).get(root) != simdjson::SUCCESS) return out;
  for (auto c : root["calls"]) {
    if (str_at(c["headers"], "user-agent").rfind("klarna-processor", 0) != 0) continue;
    ++out.calls;
    if (!str_at(c, "fault").empty()) ++out.faulted;
    bool replayed = false;
    if (c["replayed"].get_bool().get(replayed) == simdjson::SUCCESS && replayed) ++out.replayed;
  }
  return out;
}

// CPU time of the whole host, in jiffies: all, and stolen by the hypervisor.
struct CpuTimes {
  unsigned long long total = 0, steal = 0;
};
CpuTimes cpu_times() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  in >> cpu;
  CpuTimes t;
  for (int i = 0; i < 8; ++i) {
    unsigned long long v = 0;
    in >> v;
    t.total += v;
    if (i == 7) t.steal = v;
  }
  return t;
}

std::string refund_command(const std::string& id, const std::string& transaction) {
  return R"({"command_id":")" + id + R"(","type":"refund","payment_transaction_id":")" +
         transaction + R"(","amount":1,"reference":"refund-)" + id + "\"}";
}

struct Figures {
  int rounds = 0, receiver_kills = 0, processor_kills = 0, processor_stops = 0, kafka_outages = 0,
      fault_windows = 0, resent_commands = 0, postgres_restarts = 0;
  Clock::duration longest_stop{};
  std::vector<std::string> commands;  // refund command ids sent
};

// The chaos: one disturbance per round, faults on every other round, refund
// commands for transactions captured since the last round.
class Chaos {
 public:
  // `pg`: the PostgreSQL server holding the state of `processors` processors
  // (nullptr: one processor on SQLite).
  Chaos(System& sys, std::vector<std::string> processor_args, std::size_t processors = 1,
        PostgresServer* pg = nullptr)
      : sys_(sys), processor_args_(std::move(processor_args)), processors_(processors), pg_(pg) {}

  // At least `min_rounds()` rounds, however long they take: every kind of
  // disturbance at least once.
  void run(std::chrono::seconds duration, std::chrono::milliseconds round) {
    const auto end = Clock::now() + duration;
    while ((Clock::now() < end || figures_.rounds < min_rounds()) &&
           !::testing::Test::HasFatalFailure()) {
      const auto round_end = Clock::now() + round;
      const bool faults = figures_.rounds % 2 == 0;
      sys_.sim("POST", "/_sim/faults", faults ? kFaults : R"({"rules":[]})");
      figures_.fault_windows += faults;
      switch (figures_.rounds % (pg_ ? 4 : 3)) {
        case 0:
          ASSERT_NO_FATAL_FAILURE(bounce_receiver());
          break;
        case 1:
          ASSERT_NO_FATAL_FAILURE(bounce_processor());
          break;
        case 2:
          ASSERT_NO_FATAL_FAILURE(kafka_outage());
          break;
        default:
          ASSERT_NO_FATAL_FAILURE(postgres_outage());
          break;
      }
      ++figures_.rounds;
      ASSERT_NO_FATAL_FAILURE(send_refunds());
      std::this_thread::sleep_until(round_end);  // the pace of the chaos, not a wait for a result
    }
    sys_.sim("POST", "/_sim/faults", R"({"rules":[]})");
  }
  const Figures& figures() const { return figures_; }
  // Receiver kills (rounds 0 and 3, or 4), processor SIGKILLs (1, 2), a SIGTERM stop
  // (the third processor bounce: round 4, or 5 with PostgreSQL), Kafka
  // outages crashing the processor (2) and the receiver (5, or 6), fault
  // windows (even rounds); with PostgreSQL a stop (3) and a crash (7).
  int min_rounds() const { return pg_ ? 8 : 6; }

 private:
  void bounce_receiver() {
    ASSERT_NO_FATAL_FAILURE(sys_.kill_receiver());
    ++figures_.receiver_kills;
    std::this_thread::sleep_for(500ms);  // down for a while: deliveries are refused
    ASSERT_NO_FATAL_FAILURE(sys_.restart_receiver());
  }
  // SIGKILL, and every third time SIGTERM instead: a stop that cancels the
  // calls in flight and records them for a resend (timed: the bound holds).
  // Several processors: each in turn. `may_stop` false: always SIGKILL.
  void bounce_processor(bool may_stop = true) {
    const std::size_t i = static_cast<std::size_t>(bounces_) % processors_;
    if (++bounces_ % 3 == 0 && may_stop) {
      const auto started = Clock::now();
      ASSERT_NO_FATAL_FAILURE(sys_.stop_processor(i));
      figures_.longest_stop = std::max(figures_.longest_stop, Clock::now() - started);
      ++figures_.processor_stops;
    } else {
      ASSERT_NO_FATAL_FAILURE(sys_.kill_processor(i));
      ++figures_.processor_kills;
    }
    sys_.start_processor(processor_args_, i);
  }
  // PostgreSQL away for a second: a fast shutdown, or every other time an
  // immediate one (a crash: WAL recovery on the start); then started again.
  void postgres_outage() {
    if (++figures_.postgres_restarts % 2 == 1) {
      pg_->stop();
    } else {
      pg_->crash();
    }
    std::this_thread::sleep_for(1000ms);  // down for a while: the processors' stores fail
    pg_->start();
  }
  // 2.5 s without Kafka; in the middle of it a crash, the processor's or the
  // receiver's in turn, which then starts again while Kafka is still away.
  // With several processors the crash is a SIGKILL, never a SIGTERM stop: the
  // outage must stay shorter than the consumers' session timeout
  // (kTwoMemberKafka), and a stop's length is not the test's to fix.
  void kafka_outage() {
    sys_.kafka().set_all_brokers_down();
    ++figures_.kafka_outages;
    std::this_thread::sleep_for(1500ms);
    if (figures_.kafka_outages % 2 == 1) {
      ASSERT_NO_FATAL_FAILURE(bounce_processor(processors_ == 1));
    } else {
      ASSERT_NO_FATAL_FAILURE(bounce_receiver());
    }
    std::this_thread::sleep_for(1000ms);
    sys_.kafka().set_all_brokers_up();
  }
  // One refund (1 cent) for every third transaction the processor has seen
  // captured in full and not refunded yet; every fourth command sent twice.
  void send_refunds() {
    for (const auto& r : rows(sys_.db(),
                              "SELECT id FROM payment_transactions WHERE state = 'COMPLETED' AND "
                              "captured_amount = amount AND refunded_amount = 0")) {
      const auto& txn = r.at(0);
      if (!seen_.insert(txn).second || seen_.size() % 3 != 0) continue;
      const std::string id = "chaos-refund-" + std::to_string(figures_.commands.size() + 1);
      ASSERT_NO_FATAL_FAILURE(sys_.send_async(txn, refund_command(id, txn)));
      figures_.commands.push_back(id);
      if (figures_.commands.size() % 4 == 0) {  // a client resending it (same command_id)
        ASSERT_NO_FATAL_FAILURE(sys_.send_async(txn, refund_command(id, txn)));
        ++figures_.resent_commands;
      }
    }
  }

  System& sys_;
  std::vector<std::string> processor_args_;
  std::size_t processors_ = 1;
  PostgresServer* pg_ = nullptr;
  Figures figures_;
  int bounces_ = 0;
  std::set<std::string> seen_;
};

// For each call recorded failed: what it answered, and when, counted from the
// moment the receiver produced the webhook that asked for it (its Kafka
// timestamp), the processor applied that webhook, made the call and tried it
// first and last; and how many calls its payment has of that operation. A
// token refused for its age shows as a first attempt beyond the sim's token
// lifetime; a call retried with a stale token as a second call for the payment.
std::string describe_failed_calls(const std::string& db) {
  std::string out;
  for (const auto& r :
       rows(db,
            "SELECT o.operation, o.entity_id, COALESCE(o.last_error, ''), o.attempts, "
            "h.recorded_at_ms - h.kafka_timestamp_ms, o.created_at_ms - h.kafka_timestamp_ms, "
            "(SELECT MIN(a.started_at_ms) FROM call_attempts a WHERE a.outbox_id = o.id) - "
            "h.kafka_timestamp_ms, "
            "(SELECT MAX(a.started_at_ms) FROM call_attempts a WHERE a.outbox_id = o.id) - "
            "h.kafka_timestamp_ms, "
            "(SELECT COUNT(*) FROM outbox p WHERE p.entity_id = o.entity_id AND "
            "p.operation = o.operation) "
            "FROM outbox o LEFT JOIN history h ON h.event_id = o.created_by_event_id AND "
            "h.outcome = 'applied' WHERE o.status = 'failed' ORDER BY o.id")) {
    out += r.at(0) + " " + r.at(1) + ": " + r.at(2) + "; " + r.at(3) +
           " attempt(s); ms after the webhook was produced: applied " + r.at(4) + ", call made " +
           r.at(5) + ", first attempt " + r.at(6) + ", last " + r.at(7) + "; " + r.at(8) +
           " call(s) of this operation for the payment\n";
  }
  return out;
}

// The logs of a failed run, copied out of the system's directory (removed with
// it) into one kept in the temp directory, whose path is printed.
struct KeepLogsOnFailure {
  System& sys;
  ~KeepLogsOnFailure() {
    if (!::testing::Test::HasFailure()) return;
    const std::filesystem::path kept = make_temp_dir("chaos-logs");
    for (const auto& e : std::filesystem::directory_iterator(sys.dir())) {
      if (e.path().extension() == ".log") {
        std::filesystem::copy_file(e.path(), kept / e.path().filename());
      }
    }
    std::printf("chaos: the failed run's logs are in %s\n", kept.c_str());
  }
};

}  // namespace

TEST(Chaos, UnderKillsOutagesAndFaultsEveryEffectHappensOnceAndTheStatesAgree) {
  const auto duration = std::chrono::seconds(env_number("KPAY_CHAOS_SECONDS", 30));
  const auto round = std::chrono::milliseconds(env_number("KPAY_CHAOS_ROUND_MS", 5000));
  // socket.timeout.ms: librdkafka's mock cluster (Debian's 2.0.2) keeps a
  // connection open through a broker's outage and never answers the request
  // it held; the client gives up on it after this timeout (60 s by default)
  // and only then consumes again. A real broker going down drops its
  // connections. The harness's own clients do the same (e2e_system.hpp,
  // kafka_reader.cpp).
  std::vector<std::string> processor_args{"--set", "capture.default=after_authorization",
                                          "--set", "worker.stop_timeout_ms=1000",
                                          "--set", "processor.shutdown_flush_timeout_ms=2000",
                                          "--set", "kafka.properties.socket.timeout.ms=10000"};
  const char* store = std::getenv("KPAY_CHAOS_STORE");
  const bool on_postgres = store != nullptr && std::string(store) == "postgresql";
  ASSERT_TRUE(store == nullptr || *store == '\0' || on_postgres || std::string(store) == "sqlite")
      << "KPAY_CHAOS_STORE: sqlite or postgresql, not " << store;
  if (on_postgres) {
    processor_args.insert(processor_args.end(), kTwoMemberKafka.begin(), kTwoMemberKafka.end());
  }
  std::optional<PostgresServer> pg;
  SystemOptions options{"chaos",
                        "chaos",
                        kKeyId,
                        kSecret,
                        kApiKey,
                        {"--time-scale", "60", "--duplicate-percent", "10", "--reorder-percent",
                         "10", "--set", "webhooks.reorder_delay_ms=100", "--set",
                         "webhooks.timeout_ms=3000", "--set", "webhooks.workers=4"}};
  const long token_ttl_ms =
      env_number("KPAY_CHAOS_TOKEN_TTL_MS", on_postgres ? kLongLivedTokensMs : 0);
  if (token_ttl_ms > 0) {
    options.sim_args.insert(options.sim_args.end(),
                            {"--token-ttl-ms", std::to_string(token_ttl_ms)});
  }
  if (on_postgres) {
    pg.emplace();
    options.postgresql = pg->dsn();
    add_sqlite_functions(options.postgresql);  // group_concat, as the checks below use it
  }
  const std::size_t processors = on_postgres ? 2 : 1;
  System sys(options);
  const KeepLogsOnFailure keep_logs{sys};
  ASSERT_NO_FATAL_FAILURE(sys.start_receiver());
  ASSERT_NO_FATAL_FAILURE(sys.start_sim());
  // A v1 subscription too (through "localhost", so the URL differs): the Gen 1
  // flow's pending-confirmation event exists only in v1.
  const auto subscribed = sys.sim(
      "POST", "/v2/notification/webhooks",
      R"({"url":"https://localhost:)" + std::to_string(sys.receiver_port()) +
          R"(/webhooks/klarna","event_types":["*"],"event_version":"v1","signing_key_id":")" +
          kKeyId + R"(","status":"ENABLED"})");
  ASSERT_NE(subscribed.find("webhook_id"), std::string::npos) << subscribed;
  for (std::size_t i = 0; i < processors; ++i) sys.start_processor(processor_args, i);
  const auto started = sys.sim("POST", "/_sim/scenarios",
                               R"({"journeys":12,"rate":3,"repeat":true,)"
                               R"("mix":["approve:5","decline","expire","cancel"],)"
                               R"("versions":["v1","v2"]})");
  ASSERT_EQ(started.find("error"), std::string::npos) << started;

  const auto t0 = Clock::now();
  const auto cpu0 = cpu_times();
  Chaos chaos(sys, processor_args, processors, pg ? &*pg : nullptr);
  ASSERT_NO_FATAL_FAILURE(chaos.run(duration, round));
  const auto chaos_s = std::chrono::duration<double>(Clock::now() - t0).count();
  sys.sim("DELETE", "/_sim/scenarios");
  const auto& f = chaos.figures();

  States sim, ours;
  Answers answered;
  const auto drain_start = Clock::now();
  const bool settled =
      wait_until([&] { return drained(sys, f.commands, answered, sim, ours); }, 240s);
  const auto drain_s = std::chrono::duration<double>(Clock::now() - drain_start).count();
  EXPECT_TRUE(settled) << "not drained:\n"
                       << describe_differences(sim, ours)
                       << "deliveries pending: " << delivery_summary(sys)["pending"] << "\n"
                       << sys.sim("GET", "/_sim/scenarios");

  // Webhooks: none gave up; every acknowledged one reached the processor's
  // inbox; none was applied twice.
  const auto summary = delivery_summary(sys);
  EXPECT_EQ(summary.at("failed"), 0) << "a delivery exhausted Klarna's retry schedule";
  EXPECT_EQ(summary.at("pruned"), 0);
  expect_every_acknowledged_webhook_applied_once(sys);

  // Calls: each key executed once; each operation as often as the payments
  // need; every transaction captured in full.
  const auto ex = executions(sys);
  expect_each_call_executed_once(sys, ex);
  expect_operations_as_the_states_need(sim, ex, static_cast<std::int64_t>(f.commands.size()));
  for (const auto& [id, state] : sim) {
    if (id.find(":request:") == std::string::npos) {
      EXPECT_EQ(state.substr(0, 10), "COMPLETED ") << id << ": captured in full";
    }
  }
  std::map<std::string, std::string> final_status;
  for (const auto& r : sys.results()) {
    if (r.final()) final_status[r.command_id] = r.status;
  }
  for (const auto& id : f.commands) EXPECT_EQ(final_status[id], "succeeded") << id;
  EXPECT_EQ(query(sys.db(), "SELECT COUNT(*) FROM outbox WHERE status = 'failed'"), 0)
      << describe_failed_calls(sys.db());

  // The audit trail lists every executed operation exactly once: each call the
  // sim executed is one executed outcome, nothing it did not execute is one,
  // each refund command one decision (accepted, resent or not); klarna.audit carried every row
  // across the kills (at least once, field for field).
  std::size_t executed_outcomes = 0;
  EXPECT_EQ(compare_executed_outcomes(sys.db(), ex.by_key, executed_outcomes), "");
  EXPECT_EQ(static_cast<std::int64_t>(executed_outcomes),
            executed(ex, "payment.confirm") + executed(ex, "payment.authorize") +
                executed(ex, "payment.transactions.capture") +
                executed(ex, "payment.transactions.refund"));
  for (const auto& id : f.commands) {  // accepted once, resent or not
    EXPECT_EQ(query_text(sys.db(),
                         "SELECT group_concat(status) FROM audit_events WHERE kind = "
                         "'command' AND command_id = '" +
                             id + "'"),
              "accepted")
        << id;
  }
  const auto trail = audit_rows(sys.db());
  const auto published = read_audit_topic(sys.bootstrap(), "klarna.audit", 2, trail, 120s);
  EXPECT_EQ(compare_audit_topic(published, trail), "");
  std::printf(
      "chaos audit trail: %zu events, %zu executed outcomes; %zu messages on klarna.audit\n",
      trail.size(), executed_outcomes, published.size());

  const auto calls = processor_calls(sys);
  const auto cpu1 = cpu_times();
  const double steal = cpu1.total > cpu0.total
                           ? 100.0 * static_cast<double>(cpu1.steal - cpu0.steal) /
                                 static_cast<double>(cpu1.total - cpu0.total)
                           : 0.0;
  std::printf("chaos on %s (%zu processor(s), %d PostgreSQL restarts, sim tokens live %ld min): ",
              on_postgres ? "PostgreSQL" : "SQLite", processors, f.postgres_restarts,
              (token_ttl_ms > 0 ? token_ttl_ms : 3600000L) / 60000);
  std::printf(
      "%.0f s of chaos (%d rounds), drained in %.1f s; %zu webhooks acknowledged "
      "(%lld deliveries, %lld attempts), %lld events in the inbox; %d receiver kills, "
      "%d processor kills + %d SIGTERM stops (longest %.2f s), %d Kafka outages, %d fault "
      "windows; %zu processor calls at the sim "
      "(%zu faulted before executing, %zu answered from the idempotency store), %lld confirms + "
      "%lld final authorizations + %lld captures + %zu refund "
      "commands (%d sent twice) executed once each; %zu entities equal; webhook produced → "
      "applied at most %.1f s; host CPU steal %.1f %%\n",
      chaos_s, f.rounds, drain_s, delivered_event_ids(sys).size(),
      static_cast<long long>(summary.at("delivered")),
      static_cast<long long>(summary.at("attempts")), query(sys.db(), "SELECT COUNT(*) FROM inbox"),
      f.receiver_kills, f.processor_kills, f.processor_stops,
      std::chrono::duration<double>(f.longest_stop).count(), f.kafka_outages, f.fault_windows,
      calls.calls, calls.faulted, calls.replayed,
      static_cast<long long>(executed(ex, "payment.confirm")),
      static_cast<long long>(executed(ex, "payment.authorize")),
      static_cast<long long>(executed(ex, "payment.transactions.capture")), f.commands.size(),
      f.resent_commands, sim.size(),
      static_cast<double>(query(sys.db(),
                                "SELECT MAX(recorded_at_ms - kafka_timestamp_ms) FROM history "
                                "WHERE outcome = 'applied' AND topic <> 'klarna.commands'")) /
          1000.0,
      steal);
  EXPECT_GE(f.processor_kills, 1);
  EXPECT_GE(f.kafka_outages, 2) << "one crashing the processor, one the receiver";
  EXPECT_GE(f.receiver_kills, 2);
  EXPECT_GE(f.processor_stops, 1);
  EXPECT_GE(f.postgres_restarts, on_postgres ? 2 : 0) << "a stop and a crash";
  // worker.stop_timeout_ms + shutdown_flush_timeout_ms + the documented 3 s
  // (docs/RELIABILITY.md) + 3 s for a loaded machine.
  EXPECT_LE(f.longest_stop, 1s + 2s + 3s + 3s) << "a SIGTERM stop beyond its bound";
  EXPECT_GT(calls.faulted, 0u);
  for (std::size_t i = 0; i < processors; ++i) sys.stop_processor(i);
}

namespace {

// ESTABLISHED TCP connections to 127.0.0.1:port (from /proc/net/tcp): with
// nothing else talking to the sim's API, the processor's connections.
int connections_to(std::uint16_t port) {
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);  // header
  int n = 0;
  char want[8];
  std::snprintf(want, sizeof want, ":%04X", port);
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state;
    fields >> slot >> local >> remote >> state;
    n += remote.size() > 5 && remote.compare(remote.size() - 5, 5, want) == 0 && state == "01";
  }
  return n;
}

}  // namespace

// Klarna holds the final authorization (the sim's `timeout` fault: 59 s, the
// processor's request timeout 30 s) when SIGTERM comes. The stop must end
// within its bound: worker.stop_timeout_ms for the call in flight, then the
// rest of the documented stop (docs/RELIABILITY.md); and the interrupted call
// is sent again, with the same key, after the restart.
TEST(ChaosStop, EndsWithinItsBoundWhileKlarnaHoldsTheCall) {
  constexpr auto kWorkerStop = 1000ms;
  constexpr auto kFlush = 2000ms;
  // The documented stop on top of the two budgets (1 s leaving the group, 1 s
  // per Kafka handle, 0.5 s for the main loop) and 3 s for a loaded machine.
  constexpr auto kBound = kWorkerStop + kFlush + 3s + 3s;
  const std::vector<std::string> args{"--set", "klarna.request_timeout_ms=30000",
                                      "--set", "worker.stop_timeout_ms=1000",
                                      "--set", "processor.shutdown_flush_timeout_ms=2000"};
  System sys({"chaos-hang",
              "hang",
              kKeyId,
              kSecret,
              kApiKey,
              {"--journeys", "1", "--set", R"(scenario.mix=["approve"])", "--set",
               R"(scenario.versions=["v2"])", "--set",
               R"(faults.rules=["payment.authorize:timeout:100:59000"])"}});
  ASSERT_NO_FATAL_FAILURE(sys.start_receiver());
  ASSERT_NO_FATAL_FAILURE(sys.start_sim());
  sys.start_processor(args);
  // The call is claimed (in_flight) and its connection to Klarna is open.
  ASSERT_TRUE(wait_until(
      [&] {
        return query(sys.db(),
                     "SELECT COUNT(*) FROM outbox WHERE operation = "
                     "'final_authorization' AND status = 'in_flight'") == 1 &&
               connections_to(sys.sim_port()) >= 1;
      },
      60s))
      << sys.processor_log();
  const auto key = query_text(sys.db(), "SELECT idempotency_key FROM outbox");

  const auto stop_started = Clock::now();
  sys.processor()->signal(SIGTERM);
  const auto status = sys.processor()->wait(kBound);
  const auto took = Clock::now() - stop_started;
  ASSERT_TRUE(status) << "still running " << kBound.count() << " ms after SIGTERM\n"
                      << sys.processor_log();
  EXPECT_EQ(*status, 0) << sys.processor_log();
  std::printf("stop while Klarna holds the call: %.2f s (bound %.1f s)\n",
              std::chrono::duration<double>(took).count(),
              std::chrono::duration<double>(kBound).count());
  // Stopped, not killed: the process object is done with.
  ASSERT_NO_FATAL_FAILURE(sys.stop_processor());
  EXPECT_EQ(query(sys.db(), "SELECT COUNT(*) FROM outbox WHERE status IN ('pending', 'in_flight')"),
            1)
      << "the interrupted call is still to be made";
  EXPECT_EQ(sys.executions_by_route("payment.authorize"), 0) << "Klarna never executed it";

  // Klarna answers again: the same call, with the same key, executes once.
  sys.sim("POST", "/_sim/faults", R"({"rules":[]})");
  sys.start_processor(args);
  ASSERT_TRUE(wait_until(
      [&] {
        return query(sys.db(),
                     "SELECT COUNT(*) FROM outbox WHERE operation = "
                     "'final_authorization' AND status = 'succeeded'") == 1;
      },
      60s))
      << sys.processor_log();
  EXPECT_EQ(sys.executions_of(key), 1);
  EXPECT_EQ(sys.executions_by_route("payment.authorize"), 1);
  EXPECT_EQ(sys.calls_with_key("payment.authorize", key).size(), sys.calls_on("payment.authorize"))
      << "every call of the operation carried the same key";
  sys.stop_processor();
}

// Klarna's name hangs in DNS (getaddrinfo blocks 30 s: a test library
// preloaded into the processor) when SIGTERM comes. A resolve cannot be
// cancelled; the stop must still end within its bound, leaving the call to be
// sent again, with the same key, after the restart.
TEST(ChaosStop, EndsWithinItsBoundWhileKlarnasNameHangsInDns) {
#ifdef KPAY_NO_PRELOAD
  GTEST_SKIP() << "sanitizer build: no library can be preloaded before libasan";
#endif
  constexpr auto kBound = 1000ms + 2000ms + 3s + 3s;  // as above
  System sys({"chaos-dns",
              "dns",
              kKeyId,
              kSecret,
              kApiKey,
              {"--journeys", "1", "--set", R"(scenario.mix=["approve"])", "--set",
               R"(scenario.versions=["v2"])"}});
  ASSERT_NO_FATAL_FAILURE(sys.start_receiver());
  ASSERT_NO_FATAL_FAILURE(sys.start_sim());
  const std::string mark = sys.dir() + "/resolving";
  ::setenv("LD_PRELOAD", KPAY_SLOW_RESOLVER, 1);
  ::setenv("KPAY_SLOW_RESOLVE_MARK", mark.c_str(), 1);
  sys.start_processor({"--set",
                       "klarna.base_url=https://klarna.slow.test:" + std::to_string(sys.sim_port()),
                       "--set", "worker.stop_timeout_ms=1000", "--set",
                       "processor.shutdown_flush_timeout_ms=2000"});
  ::unsetenv("LD_PRELOAD");
  ::unsetenv("KPAY_SLOW_RESOLVE_MARK");
  ASSERT_TRUE(wait_until([&] { return std::filesystem::exists(mark); }, 60s))
      << sys.processor_log();
  ASSERT_EQ(query(sys.db(), "SELECT COUNT(*) FROM outbox WHERE status = 'in_flight'"), 1);

  const auto stop_started = Clock::now();
  sys.processor()->signal(SIGTERM);
  const auto status = sys.processor()->wait(kBound);
  const auto took = Clock::now() - stop_started;
  ASSERT_TRUE(status) << "still running " << kBound.count() << " ms after SIGTERM\n"
                      << sys.processor_log();
  EXPECT_EQ(*status, 0) << sys.processor_log();
  std::printf("stop while Klarna's name hangs in DNS: %.2f s (bound %.1f s)\n",
              std::chrono::duration<double>(took).count(),
              std::chrono::duration<double>(kBound).count());
  ASSERT_NO_FATAL_FAILURE(sys.stop_processor());
  EXPECT_EQ(query(sys.db(), "SELECT COUNT(*) FROM outbox WHERE status IN ('pending', 'in_flight')"),
            1)
      << "the interrupted call is still to be made";

  // With a name that resolves, the same call executes once.
  const auto key = query_text(sys.db(), "SELECT idempotency_key FROM outbox");
  sys.start_processor();
  ASSERT_TRUE(wait_until(
      [&] {
        return query(sys.db(),
                     "SELECT COUNT(*) FROM outbox WHERE operation = "
                     "'final_authorization' AND status = 'succeeded'") == 1;
      },
      60s))
      << sys.processor_log();
  EXPECT_EQ(sys.executions_of(key), 1);
  sys.stop_processor();
}
