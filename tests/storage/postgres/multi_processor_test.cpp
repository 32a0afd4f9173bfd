// Two klarna-processor binaries in one consumer group on one PostgreSQL state
// (processor.store = "postgresql"), the embedded Kafka, lifecycles with
// duplicates and poison messages; one processor SIGKILLed mid-run and started
// again (a rebalance each way). Every message must be in the history exactly
// once, every event applied at most once, and the payments the same as an
// uninterrupted SQLite reference run over the same messages; klarnactl reads
// that state through the same configuration. After the crash, three batches
// fail to commit as a serialization failure (40001) would: each is counted as
// a conflict and retried at once, logged as a warning, never as a store error.
// Then, with the last messages flowing, one processor is stopped (SIGSTOP)
// past its Kafka session, the other takes its partitions over, and the
// stopped one resumes (SIGCONT) with whatever batch it held: a batch the
// other applied meanwhile is skipped by the offset fence, never recorded
// twice, and counted in kpay_processor_messages_fenced_total as its warnings
// say (docs/OPERATIONS.md, "A stalled processor's batch"). Stopped inside a
// transaction, it holds its rows 2 s at most (idle_in_transaction_timeout_ms):
// resumed, it reconnects and its batch is fenced.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "child_process.hpp"
#include "db_dump.hpp"
#include "http_client.hpp"
#include "kafka_support.hpp"
#include "kpay/core/embedded_kafka.hpp"
#include "lifecycles.hpp"
#include "postgres_server.hpp"

using namespace kpay;

namespace {

// One integer from the PostgreSQL state; -1 while it cannot be read (not
// migrated yet).
long long pg_int(const std::string& dsn, const std::string& sql) {
  PGconn* c = PQconnectdb(dsn.c_str());
  long long v = -1;
  if (PQstatus(c) == CONNECTION_OK) {
    PGresult* r = PQexec(c, sql.c_str());
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && !PQgetisnull(r, 0, 0)) {
      v = std::stoll(PQgetvalue(r, 0, 0));
    }
    PQclear(r);
  }
  PQfinish(c);
  return v;
}

// The partitions of the processor's last assignment in its log ("partitions
// assigned", level info; eager rebalancing: each assignment is its whole
// share), 0 before the first one or after a revocation.
int assigned(const std::string& log_path) {
  const std::string log = test::read_file(log_path);
  const auto at = log.rfind("\"partitions assigned\"");
  const auto revoked = log.rfind("\"partitions revoked\"");
  if (at == std::string::npos || (revoked != std::string::npos && revoked > at)) return 0;
  const auto count = log.find("\"count\":", at);
  return count == std::string::npos ? 0 : std::atoi(log.c_str() + count + 8);
}

// The admin port of the processor's last start, from its log; 0 if none.
std::uint16_t admin_port(const std::string& log) {
  const auto at = log.rfind("\"admin endpoint listening\"");
  if (at == std::string::npos) return 0;
  const auto port = log.find("\"port\":", at);
  return port == std::string::npos ? 0
                                   : static_cast<std::uint16_t>(std::atoi(log.c_str() + port + 7));
}

// Messages the processor's last start reported fenced in its warnings.
long long fenced_in_log(const std::string& log) {
  const auto start = log.rfind("\"admin endpoint listening\"");
  long long n = 0;
  std::istringstream lines(start == std::string::npos ? std::string() : log.substr(start));
  for (std::string line; std::getline(lines, line);) {
    if (line.find("below the partition's stored offset fenced") == std::string::npos) continue;
    const auto count = line.find("\"count\":");
    if (count != std::string::npos) n += std::atoll(line.c_str() + count + 8);
  }
  return n;
}

// kpay_processor_messages_fenced_total of the processor behind `port`; -1
// when it cannot be read.
long long fenced_metric(std::uint16_t port) {
  const std::string series = "\nkpay_processor_messages_fenced_total ";
  auto r = test::http_request(port, "GET", "/metrics");
  if (!r || r->status != 200) return -1;
  const auto at = r->body.find(series);
  return at == std::string::npos ? -1 : std::atoll(r->body.c_str() + at + series.size());
}

std::string write_config(const std::string& dir, const std::string& name, const std::string& dsn,
                         const std::string& bootstrap) {
  const std::string path = dir + "/" + name + ".toml";
  std::ofstream out(path);
  out << "[processor]\nstore = \"postgresql\"\nbatch_size = 20\nbatch_timeout_ms = 5\n"
      << "[postgresql]\ndsn = \"" << dsn << "\"\ninstance = \"" << name
      << "\"\n"
      // A processor stopped inside a transaction holds its rows 2 s at most.
      << "idle_in_transaction_timeout_ms = 2000\n"
      << "[kafka]\nbootstrap_servers = \"" << bootstrap << "\"\n"
      << "group_id = \"multi\"\ntopic_prefix = \"multi.\"\n"
      << "[kafka.properties]\n\"session.timeout.ms\" = \"3000\"\n"
      << "\"heartbeat.interval.ms\" = \"300\"\n"
      << "[admin]\nport = 0\n[log]\nlevel = \"info\"\n"
      << "[worker]\nenabled = false\n";  // consumption only: no Klarna to call
  return path;
}

}  // namespace

TEST(MultiProcessorPostgres, TwoProcessorsAndACrashApplyEveryMessageOnce) {
  core::EmbeddedKafka kafka(1);
  klarna::Topics topics;
  topics.apply_prefix("multi.");
  kafka.create_topic(topics.payment_requests, 4);
  kafka.create_topic(topics.payment_transactions, 4);
  kafka.create_topic(topics.disputes, 2);
  kafka.create_topic(topics.settlements, 1);
  kafka.create_topic(topics.accounts, 1);
  kafka.create_topic(topics.unrouted, 1);
  kafka.create_topic(topics.payment_states, 2);
  kafka.create_topic(topics.processor_dead_letter, 1);
  auto events = test::shuffle_with_duplicates(test::make_lifecycles(600, topics, 5), 0.1, 7);
  for (auto& p : test::make_poison(topics)) events.push_back(std::move(p));
  // Produced in two parts: the second one only for the stall at the end.
  const auto split = events.begin() + static_cast<std::ptrdiff_t>(events.size() * 7 / 10);
  auto produced = test::produce_events(kafka.bootstrap_servers(), {events.begin(), split});
  const auto first_part = static_cast<long long>(produced.size());
  const auto total = static_cast<long long>(events.size());

  test::PostgresServer pg;
  const std::string dsn = pg.dsn();
  const auto dir = test::make_temp_dir("multi-processor");
  auto consumed = [&] {
    return pg_int(dsn, "SELECT COALESCE(SUM(next_offset), 0) FROM consumer_offsets");
  };
  const std::vector<std::string> a = {test::binary("processor/klarna-processor"), "--config",
                                      write_config(dir, "proc-a", dsn, kafka.bootstrap_servers())};
  const std::vector<std::string> b = {test::binary("processor/klarna-processor"), "--config",
                                      write_config(dir, "proc-b", dsn, kafka.bootstrap_servers())};
  {
    test::ChildProcess first(a, dir + "/proc-a.log");
    auto second = std::make_unique<test::ChildProcess>(b, dir + "/proc-b.log");
    // Mid-run: both in the group, a third of the messages committed.
    ASSERT_TRUE(
        test::wait_until([&] { return consumed() > first_part / 3; }, std::chrono::seconds(90)))
        << test::read_file(dir + "/proc-a.log") << test::read_file(dir + "/proc-b.log");
    second->signal(SIGKILL);
    ASSERT_TRUE(second->wait(std::chrono::seconds(10)));
    std::cout << "proc-b SIGKILLed at " << consumed() << " of " << total << " committed\n";
    // The next three batches to commit fail at COMMIT with SQLSTATE 40001
    // (installed while the group rebalances: consumption has paused).
    pg.fail_commits_writing("inbox", 3);
    second = std::make_unique<test::ChildProcess>(b, dir + "/proc-b.log");
    ASSERT_TRUE(
        test::wait_until([&] { return consumed() >= first_part; }, std::chrono::seconds(120)))
        << consumed() << " of " << first_part << "\n"
        << test::read_file(dir + "/proc-a.log") << test::read_file(dir + "/proc-b.log");

    // The stall: both in the group, the rest of the messages flowing; proc-a
    // stopped until proc-b holds every partition (its session lapsed), or
    // for 10 s when proc-b cannot rebalance meanwhile (its batch waits on
    // rows the stopped processor's open transaction holds).
    // Eager rebalancing: both holding partitions, they hold all of them.
    int partitions = 0;
    ASSERT_TRUE(test::wait_until(
        [&] {
          const int in_a = assigned(dir + "/proc-a.log"), in_b = assigned(dir + "/proc-b.log");
          partitions = in_a + in_b;
          return in_a > 0 && in_b > 0;
        },
        std::chrono::seconds(60)))
        << test::read_file(dir + "/proc-a.log") << test::read_file(dir + "/proc-b.log");
    const auto rest = test::produce_events(kafka.bootstrap_servers(), {split, events.end()});
    produced.insert(produced.end(), rest.begin(), rest.end());
    ASSERT_TRUE(
        test::wait_until([&] { return consumed() > first_part + 40; }, std::chrono::seconds(60)));
    first.signal(SIGSTOP);
    const auto stopped_at = consumed();
    const bool taken_over = test::wait_until(
        [&] { return assigned(dir + "/proc-b.log") == partitions; }, std::chrono::seconds(10));
    first.signal(SIGCONT);
    std::cout << "proc-a stopped at " << stopped_at << " of " << total << ", resumed at "
              << consumed() << (taken_over ? " (proc-b held every partition)" : "") << "\n";
    ASSERT_TRUE(test::wait_until([&] { return consumed() >= total; }, std::chrono::seconds(120)))
        << consumed() << " of " << total << "\n"
        << test::read_file(dir + "/proc-a.log") << test::read_file(dir + "/proc-b.log");
    // Every message a processor skipped below the stored offset is counted
    // in its kpay_processor_messages_fenced_total, as its warnings say.
    long long metric = -1, logged = -1;
    const bool counted = test::wait_until(
        [&] {
          const std::string la = test::read_file(dir + "/proc-a.log");
          const std::string lb = test::read_file(dir + "/proc-b.log");
          const long long ma = fenced_metric(admin_port(la)), mb = fenced_metric(admin_port(lb));
          metric = ma < 0 || mb < 0 ? -1 : ma + mb;
          logged = fenced_in_log(la) + fenced_in_log(lb);
          return metric == logged;
        },
        std::chrono::seconds(10));
    EXPECT_TRUE(counted) << metric << " fenced in the metrics, " << logged << " in the warnings";
    std::cout << "messages fenced: " << metric << " (metrics), " << logged << " (warnings)\n";
    for (test::ChildProcess* p : {&first, second.get()}) {
      p->signal(SIGTERM);
      auto status = p->wait(std::chrono::seconds(30));
      ASSERT_TRUE(status);
      EXPECT_EQ(*status, 0) << "a clean stop after SIGTERM";
    }
  }
  // The injected conflicts: each one warning, no error; the store stayed healthy.
  EXPECT_GT(pg_int(dsn, "SELECT last_value FROM inbox_commits"), 3);
  const std::string logs =
      test::read_file(dir + "/proc-a.log") + test::read_file(dir + "/proc-b.log");
  // Two processors in REPEATABLE READ may also really conflict (a rebalance
  // hands a partition over while its old owner's batch is committing, or
  // events on two partitions touch one payment): those are warned about and
  // retried too, and shown here, but only the injected ones are counted.
  std::size_t injected = 0;
  std::istringstream lines(logs);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("below the partition's stored offset fenced") != std::string::npos) {
      std::cout << "a stale batch fenced: " << line << "\n";
    }
    if (line.find("idle-in-transaction timeout") != std::string::npos) {
      std::cout << "a session ended while its processor was stopped: " << line << "\n";
    }
    if (line.find("another processor changed the same rows") != std::string::npos) {
      if (line.find("injected at commit") != std::string::npos) {
        ++injected;
      } else {
        std::cout << "a real conflict, retried: " << line << "\n";
      }
    }
    if (line.find("SQLSTATE 40001") == std::string::npos &&
        line.find("SQLSTATE 40P01") == std::string::npos) {
      continue;
    }
    EXPECT_EQ(line.find("\"level\":\"error\""), std::string::npos) << line;
  }
  EXPECT_EQ(injected, 3u) << logs;
  EXPECT_EQ(pg_int(dsn, "SELECT COUNT(*) FROM history"), total);
  EXPECT_EQ(pg_int(dsn,
                   "SELECT COUNT(*) FROM (SELECT 1 FROM history GROUP BY topic, partition, "
                   "\"offset\" HAVING COUNT(*) > 1) AS d"),
            0);
  EXPECT_EQ(pg_int(dsn,
                   "SELECT COUNT(*) FROM (SELECT 1 FROM history WHERE outcome <> 'duplicate' "
                   "GROUP BY event_id HAVING COUNT(*) > 1) AS d"),
            0);
  EXPECT_EQ(pg_int(dsn, "SELECT COUNT(*) FROM publish_queue"), 0);

  // klarnactl reads the same PostgreSQL state through the processor's configuration.
  {
    test::ChildProcess ctl(
        {test::binary("tools/klarnactl"), "--config", a[2], "payments", "list", "--limit", "3"},
        dir + "/klarnactl.log");
    EXPECT_EQ(ctl.wait(std::chrono::seconds(30)), 0) << test::read_file(dir + "/klarnactl.log");
    EXPECT_NE(test::read_file(dir + "/klarnactl.log").find("krn:"), std::string::npos)
        << test::read_file(dir + "/klarnactl.log");
  }

  const std::string reference = dir + "/reference.db";
  test::apply_reference(reference, topics, produced, 64);
  for (const char* sql :
       {"SELECT COUNT(*) FROM payment_requests", "SELECT COUNT(*) FROM payment_transactions",
        "SELECT COUNT(*) FROM disputes", "SELECT COUNT(*) FROM inbox",
        "SELECT COUNT(*) FROM transaction_sub_records", "SELECT COUNT(*) FROM poison_messages",
        "SELECT COALESCE(SUM(captured_amount), 0) FROM payment_transactions",
        "SELECT COALESCE(SUM(refunded_amount), 0) FROM payment_transactions",
        "SELECT COUNT(*) FROM payment_requests WHERE state = 'COMPLETED'",
        "SELECT COUNT(*) FROM payment_transactions WHERE state = 'CAPTURED'",
        "SELECT COUNT(*) FROM history WHERE outcome = 'applied'"}) {
    EXPECT_EQ(pg_int(dsn, sql), test::query_int(reference, sql)) << sql;
  }
  std::filesystem::remove_all(dir);
}
