// The klarna-processor binary itself: configuration errors exit 2, a database
// from a newer binary is refused, and a running processor serves /healthz,
// /readyz and /metrics and stops cleanly on SIGTERM.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <iostream>
#include <regex>

#include "child_process.hpp"
#include "http_client.hpp"
#include "kpay/core/embedded_kafka.hpp"
#include "kpay/storage/state_store.hpp"

using namespace kpay;

namespace {
std::optional<int> run_to_exit(std::vector<std::string> args, const std::string& log) {
  args.insert(args.begin(), test::binary("processor/klarna-processor"));
  test::ChildProcess child(args, log);
  return child.wait(std::chrono::seconds(20));
}

// The admin port the processor logged, once it has (0 until then).
std::uint16_t logged_admin_port(const std::string& log) {
  static const std::regex re(R"("message":"admin endpoint listening".*"port":(\d+))");
  std::smatch m;
  auto text = test::read_file(log);
  return std::regex_search(text, m, re) ? static_cast<std::uint16_t>(std::stoi(m[1])) : 0;
}

// A stop ends within processor.shutdown_flush_timeout_ms (2 s in these tests)
// plus the documented 3 s of grace, with room for a loaded machine.
constexpr auto kStopBound = std::chrono::seconds(2 + 3 + 3);

// Seconds from `signal` to the child's exit status (nullopt: still running).
std::optional<std::pair<int, double>> stop_and_time(test::ChildProcess& child, int signal,
                                                    std::chrono::milliseconds bound) {
  const auto sent = std::chrono::steady_clock::now();
  child.signal(signal);
  auto status = child.wait(bound);
  if (!status) return std::nullopt;
  return std::pair{*status,
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - sent).count()};
}

// Waits until the processor is in its group with partitions assigned.
bool wait_ready(std::uint16_t port) {
  return test::wait_until(
      [&] {
        auto ready = test::http_request(port, "GET", "/readyz");
        return ready && ready->status == 200;
      },
      std::chrono::seconds(30));
}
}  // namespace

TEST(ProcessorBinary, ConfigurationErrorsExitTwo) {
  const auto dir = test::make_temp_dir("processor-config");
  EXPECT_EQ(run_to_exit({"--set", "processor.batch_size=0"}, dir + "/a.log"), 2);
  EXPECT_EQ(run_to_exit({"--set", "processor.no_such_key=1"}, dir + "/b.log"), 2);
  // Klarna's live or test environment cannot be called without credentials.
  EXPECT_EQ(run_to_exit({"--set", "klarna.environment=live"}, dir + "/c.log"), 2);
  EXPECT_NE(test::read_file(dir + "/c.log").find("klarna.credentials_file"), std::string::npos);
  EXPECT_EQ(run_to_exit({"--set", "klarna.environment=custom"}, dir + "/d.log"), 2)
      << "custom needs klarna.base_url";
  EXPECT_NE(test::read_file(dir + "/b.log").find("no_such_key"), std::string::npos);
  std::filesystem::remove_all(dir);
}

// Without processor.database the state lives where the package keeps it
// (StateDirectory=, config/processor.toml), not in whatever directory the
// process was started from; klarnactl looks in the same place.
// Where the package is installed here, both run in a mount namespace of their
// own with an empty /var/lib (unshare: as root, or as this user mapped to
// root), so the installed processor's database is never touched.
TEST(ProcessorBinary, TheDefaultDatabaseIsThePackagesStateDirectory) {
  std::vector<std::string> prefix;
  if (std::filesystem::exists("/var/lib/klarna-processor")) {
    prefix = {"/usr/bin/unshare",
              "--mount",
              "--map-root-user",
              "sh",
              "-c",
              "mount -t tmpfs tmpfs /var/lib && exec \"$@\"",
              "sh"};
  }
  const auto with_prefix = [&](std::vector<std::string> args) {
    args.insert(args.begin(), prefix.begin(), prefix.end());
    return args;
  };
  const auto dir = test::make_temp_dir("processor-default-db");
  test::ChildProcess processor(
      with_prefix({test::binary("processor/klarna-processor"), "--set", "worker.enabled=false"}),
      dir + "/p.log");
  EXPECT_EQ(processor.wait(std::chrono::seconds(20)), 2);
  const auto log = test::read_file(dir + "/p.log");
  EXPECT_NE(log.find("'processor.database'"), std::string::npos) << log;
  EXPECT_NE(log.find("'/var/lib/klarna-processor' does not exist"), std::string::npos) << log;
  test::ChildProcess ctl(with_prefix({test::binary("tools/klarnactl"), "payments", "list"}),
                         dir + "/ctl.log");
  EXPECT_EQ(ctl.wait(std::chrono::seconds(20)), 1);
  EXPECT_NE(test::read_file(dir + "/ctl.log").find("'/var/lib/klarna-processor/state.db'"),
            std::string::npos)
      << test::read_file(dir + "/ctl.log");
  std::filesystem::remove_all(dir);
}

TEST(ProcessorBinary, RefusesADatabaseFromANewerBinary) {
  const auto dir = test::make_temp_dir("processor-newer");
  {
    storage::StateStore store(dir + "/state.db");
    store.database().exec("INSERT INTO schema_migrations VALUES ('state', 99, 'future', 0)");
  }
  EXPECT_EQ(run_to_exit({"--set", "processor.database=" + dir + "/state.db", "--set",
                         "worker.enabled=false"},
                        dir + "/p.log"),
            1);
  EXPECT_NE(test::read_file(dir + "/p.log").find("newer than this binary"), std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(ProcessorBinary, ServesAdminEndpointsAndStopsCleanlyOnSigterm) {
  core::EmbeddedKafka kafka(1);
  const auto dir = test::make_temp_dir("processor-binary");
  const std::string log = dir + "/p.log";
  test::ChildProcess child(
      {test::binary("processor/klarna-processor"), "--set",
       "processor.database=" + dir + "/state.db", "--set",
       "kafka.bootstrap_servers=" + kafka.bootstrap_servers(), "--set", "admin.port=0", "--set",
       "worker.enabled=false", "--set", "processor.shutdown_flush_timeout_ms=2000"},
      log);
  std::uint16_t port = 0;
  ASSERT_TRUE(test::wait_until([&] { return (port = logged_admin_port(log)) != 0; }));
  auto health = test::http_request(port, "GET", "/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  auto metrics = test::http_request(port, "GET", "/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("kpay_processor_batch_commit_seconds"), std::string::npos);
  // Which build runs: program, version and (built from a git checkout) commit.
  static const std::regex build_info(
      R"(kpay_build_info\{program="klarna-processor",version="\d+\.\d+\.\d+")"
      R"((,commit="[0-9a-f]{7,40}")?\} 1\n)");
  EXPECT_TRUE(std::regex_search(metrics->body, build_info)) << metrics->body;
  EXPECT_NE(metrics->body.find("kpay_processor_call_deadlines{status=\"overdue\"} 0"),
            std::string::npos)
      << metrics->body;
  // The deadline watchers' first check runs right after start.
  EXPECT_TRUE(test::wait_until([&] {
    auto m = test::http_request(port, "GET", "/metrics");
    return m && m->body.find("kpay_processor_dispute_deadlines{status=\"overdue\"} 0") !=
                    std::string::npos;
  }));
  // Ready once the group assigned its partitions (a join takes ~3 s on the mock).
  EXPECT_TRUE(wait_ready(port));
  auto stopped = stop_and_time(child, SIGTERM, kStopBound);
  ASSERT_TRUE(stopped) << "still running " << kStopBound.count() << " s after SIGTERM";
  EXPECT_EQ(stopped->first, 0);
  std::cout << "stop with Kafka up took " << stopped->second << " s\n";
  EXPECT_NE(test::read_file(log).find("consumer closed"), std::string::npos);
  // Kafka up: the group was left, no handle needed abandoning.
  EXPECT_EQ(test::read_file(log).find("did not finish in time"), std::string::npos);
  std::filesystem::remove_all(dir);
}

// Ctrl-C in a terminal reaches every process at once, Kafka included: the
// processor must still stop, within its flush budget, when Kafka is gone.
// This is the idle group; with events and publications in flight (the case
// that once took 46 s) see liveness_test.cpp.
TEST(ProcessorBinary, StopsWithinItsBudgetWhenKafkaIsGone) {
  auto kafka = std::make_unique<core::EmbeddedKafka>(1);
  const auto dir = test::make_temp_dir("processor-nokafka");
  const std::string log = dir + "/p.log";
  test::ChildProcess child(
      {test::binary("processor/klarna-processor"), "--set",
       "processor.database=" + dir + "/state.db", "--set",
       "kafka.bootstrap_servers=" + kafka->bootstrap_servers(), "--set", "admin.port=0", "--set",
       "worker.enabled=false", "--set", "processor.shutdown_flush_timeout_ms=2000"},
      log);
  std::uint16_t port = 0;
  ASSERT_TRUE(test::wait_until([&] { return (port = logged_admin_port(log)) != 0; }));
  // In the group with partitions assigned.
  ASSERT_TRUE(wait_ready(port));
  kafka.reset();  // the whole cluster disappears
  auto stopped = stop_and_time(child, SIGTERM, kStopBound);
  ASSERT_TRUE(stopped) << "still running " << kStopBound.count()
                       << " s after SIGTERM with Kafka gone";
  std::cout << "stop with Kafka gone (idle group) took " << stopped->second << " s\n";
  EXPECT_NE(test::read_file(log).find("consumer closed"), std::string::npos);
  std::filesystem::remove_all(dir);
}
