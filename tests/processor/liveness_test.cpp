// Bounded, honest liveness of the klarna-processor binary.
//
// The stop: with events in flight and state changes queued for publication,
// Kafka goes away (the whole cluster, or every broker down) and SIGTERM
// follows, as when Ctrl-C reaches `make run`'s Kafka and processor together.
// The processor must exit within processor.shutdown_flush_timeout_ms plus
// its documented grace (3 s); it once took 45-46 s, joining librdkafka's
// spinning main thread in rd_kafka_destroy_flags().
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>

#include "child_process.hpp"
#include "db_dump.hpp"
#include "http_client.hpp"
#include "kafka_support.hpp"
#include "kpay/core/embedded_kafka.hpp"
#include "kpay/core/process.hpp"
#include "kpay/storage/sqlite.hpp"
#include "kpay/storage/state_store.hpp"
#include "lifecycles.hpp"

using namespace kpay;
using namespace std::chrono_literals;

namespace {

constexpr auto kFlushBudget = 2000ms;
// What the processor documents on top of the flush budget (leaving the group
// at least 1 s, 1 s per Kafka handle's destroy), plus room for a loaded machine.
constexpr auto kStopBound = kFlushBudget + 3s + 3s;

long long count_or_zero(const std::string& db, const std::string& sql) {
  if (!std::filesystem::exists(db)) return 0;
  try {
    return test::query_int(db, sql);
  } catch (const std::exception&) {
    return 0;  // not migrated yet
  }
}
long long consumed_so_far(const std::string& db) {
  return count_or_zero(db, "SELECT COALESCE(SUM(next_offset), 0) FROM consumer_offsets");
}
long long unacknowledged(const std::string& db) {
  return count_or_zero(db, "SELECT COUNT(*) FROM publish_queue");
}

klarna::Topics topics_with(core::EmbeddedKafka& kafka) {
  klarna::Topics topics;
  topics.apply_prefix("live.");
  kafka.create_topic(topics.payment_requests, 3);
  kafka.create_topic(topics.payment_transactions, 3);
  kafka.create_topic(topics.disputes, 1);
  kafka.create_topic(topics.settlements, 1);
  kafka.create_topic(topics.accounts, 1);
  kafka.create_topic(topics.unrouted, 1);
  kafka.create_topic(topics.commands, 1);
  kafka.create_topic(topics.payment_states, 2);
  kafka.create_topic(topics.processor_dead_letter, 1);
  return topics;
}

std::string write_config(const std::string& dir, const std::string& bootstrap) {
  const std::string config = dir + "/processor.toml";
  std::ofstream out(config);
  out << "[processor]\ndatabase = \"" << dir << "/state.db\"\nbatch_size = 50\n"
      << "batch_timeout_ms = 5\nshutdown_flush_timeout_ms = " << kFlushBudget.count() << "\n"
      << "[kafka]\nbootstrap_servers = \"" << bootstrap << "\"\n"
      << "group_id = \"liveness\"\ntopic_prefix = \"live.\"\n"
      << "[admin]\nport = 0\n[log]\nlevel = \"info\"\n[worker]\nenabled = false\n";
  return config;
}

enum class KafkaLoss { cluster_destroyed, all_brokers_down };

// Seconds from SIGTERM to exit, or nullopt when still running after `bound`.
std::optional<double> stop_with_kafka_lost(KafkaLoss loss, std::chrono::milliseconds bound) {
  auto kafka = std::make_unique<core::EmbeddedKafka>(1);
  auto topics = topics_with(*kafka);
  test::produce_events(kafka->bootstrap_servers(), test::make_lifecycles(600, topics, 7));
  const auto dir = test::make_temp_dir("processor-liveness");
  const std::string db = dir + "/state.db";
  test::ChildProcess child({test::binary("processor/klarna-processor"), "--config",
                            write_config(dir, kafka->bootstrap_servers())},
                           dir + "/processor.log");
  EXPECT_TRUE(test::wait_until([&] { return consumed_so_far(db) > 100; }, 60s))
      << test::read_file(dir + "/processor.log");
  // Acknowledgements held back, so what the processor publishes from here on
  // stays unacknowledged: publications in flight when Kafka goes.
  kafka->set_broker_rtt(1, 60000);
  const auto queued = unacknowledged(db);
  EXPECT_TRUE(test::wait_until([&] { return unacknowledged(db) > queued; }, 30s));
  if (loss == KafkaLoss::cluster_destroyed) {
    kafka.reset();
  } else {
    kafka->set_all_brokers_down();
  }
  const auto sent = std::chrono::steady_clock::now();
  child.signal(SIGTERM);
  auto status = child.wait(bound);
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - sent).count();
  if (!status) return std::nullopt;
  EXPECT_EQ(*status, 0) << test::read_file(dir + "/processor.log");
  // Nothing acknowledged was dropped: the store still holds what Kafka never
  // confirmed, for the next start to publish.
  EXPECT_GT(unacknowledged(db), 0);
  std::cout << "stop took " << took << " s with " << unacknowledged(db)
            << " publications unacknowledged\n";
  std::filesystem::remove_all(dir);
  return took;
}

}  // namespace

TEST(ProcessorLiveness, StopIsBoundedWhenTheClusterDisappearsWithPublicationsInFlight) {
  auto took = stop_with_kafka_lost(KafkaLoss::cluster_destroyed, kStopBound);
  ASSERT_TRUE(took.has_value()) << "still running " << kStopBound.count()
                                << " ms after SIGTERM with Kafka gone";
}

TEST(ProcessorLiveness, StopIsBoundedWhenEveryBrokerIsDownWithPublicationsInFlight) {
  auto took = stop_with_kafka_lost(KafkaLoss::all_brokers_down, kStopBound);
  ASSERT_TRUE(took.has_value()) << "still running " << kStopBound.count()
                                << " ms after SIGTERM with every broker down";
}

// The freshness rule the systemd watchdog is fed by.
TEST(Heartbeat, IsFreshOnlyWithinItsMaximumAge) {
  using Clock = core::Heartbeat::Clock;
  const auto t0 = Clock::now();
  core::Heartbeat h;
  h.beat(t0);
  EXPECT_TRUE(h.fresh(t0, 1s));
  EXPECT_TRUE(h.fresh(t0 + 1s, 1s)) << "exactly max_age old still counts";
  EXPECT_FALSE(h.fresh(t0 + 1s + 1ms, 1s));
  h.beat(t0 + 5s);
  EXPECT_TRUE(h.fresh(t0 + 5500ms, 1s)) << "a new beat makes it fresh again";
  EXPECT_EQ(h.last(), t0 + 5s);
}

namespace {

// A systemd notification socket the test reads, as PID 1 would.
class NotifySocket {
 public:
  explicit NotifySocket(std::string path) : path_(std::move(path)) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path_.c_str());
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      throw std::runtime_error("cannot bind " + path_);
    }
  }
  ~NotifySocket() { ::close(fd_); }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;
  const std::string& path() const { return path_; }
  // How many datagrams containing `what` arrived since the last call.
  int drain(const std::string& what) {
    int n = 0;
    char buf[4096];
    for (;;) {
      auto got = ::recv(fd_, buf, sizeof buf, 0);
      if (got <= 0) return n;
      if (std::string_view(buf, static_cast<std::size_t>(got)).find(what) !=
          std::string_view::npos) {
        ++n;
      }
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
};

std::uint16_t logged_admin_port(const std::string& log) {
  static const std::regex re(R"("message":"admin endpoint listening".*"port":(\d+))");
  std::smatch m;
  auto text = test::read_file(log);
  return std::regex_search(text, m, re) ? static_cast<std::uint16_t>(std::stoi(m[1])) : 0;
}

int readyz(std::uint16_t port) {
  auto r = test::http_request(port, "GET", "/readyz");
  return r ? r->status : 0;
}

}  // namespace

// The watchdog is fed while the consume loop is idle or makes progress, and
// withheld while a batch is retried on a real storage fault (the database
// locked by another writer: SQLITE_BUSY), which /readyz reports; both come
// back once the store does.
TEST(ProcessorLiveness, WatchdogIsFedOnlyWhileTheConsumeLoopMakesProgress) {
  core::EmbeddedKafka kafka(1);
  auto topics = topics_with(kafka);
  const auto dir = test::make_temp_dir("processor-watchdog");
  const std::string db = dir + "/state.db";
  const std::string log = dir + "/processor.log";
  NotifySocket notify(dir + "/notify.sock");
  // WatchdogSec=2: fed every second while the last beat is at most 1 s old.
  ::setenv("NOTIFY_SOCKET", notify.path().c_str(), 1);
  ::setenv("WATCHDOG_USEC", "2000000", 1);
  test::ChildProcess child({test::binary("processor/klarna-processor"), "--config",
                            write_config(dir, kafka.bootstrap_servers())},
                           log);
  ::unsetenv("NOTIFY_SOCKET");
  ::unsetenv("WATCHDOG_USEC");
  std::uint16_t port = 0;
  ASSERT_TRUE(test::wait_until([&] { return (port = logged_admin_port(log)) != 0; }));
  ASSERT_TRUE(test::wait_until([&] { return readyz(port) == 200; }, 30s));
  // Idle, nothing to do: fed.
  ASSERT_TRUE(test::wait_until([&] { return notify.drain("WATCHDOG=1") > 0; }, 5s));

  // Another writer holds the database: every batch fails with SQLITE_BUSY.
  auto blocker = storage::Database::open(db);
  blocker.exec("BEGIN EXCLUSIVE");
  test::produce_events(kafka.bootstrap_servers(), test::make_lifecycles(20, topics, 3));
  ASSERT_TRUE(test::wait_until([&] { return readyz(port) == 503; }, 30s))
      << "a failing store must show in /readyz";
  EXPECT_NE(test::read_file(log).find("withholding the systemd watchdog"), std::string::npos);
  notify.drain("WATCHDOG=1");
  // Three feeding intervals without a single WATCHDOG=1 while the store fails.
  const auto window_end = std::chrono::steady_clock::now() + 3s;
  int fed = 0;
  test::wait_until(
      [&] {
        fed += notify.drain("WATCHDOG=1");
        return std::chrono::steady_clock::now() >= window_end;
      },
      4s);
  EXPECT_EQ(fed, 0) << "the watchdog was fed while no batch could commit";

  blocker.exec("ROLLBACK");
  EXPECT_TRUE(test::wait_until([&] { return readyz(port) == 200; }, 30s));
  EXPECT_TRUE(test::wait_until([&] { return notify.drain("WATCHDOG=1") > 0; }, 10s));
  EXPECT_GT(count_or_zero(db, "SELECT COUNT(*) FROM history"), 0) << "the batch went in";
  child.signal(SIGTERM);
  EXPECT_EQ(child.wait(kStopBound), 0);
  std::filesystem::remove_all(dir);
}

// A message that fails deterministically (here: it trips a constraint the
// test adds to the database, as a bug or an unexpected value would) must not
// stall its partition in an endless retry: it is found, recorded as poison
// with reason apply_error and dead-lettered, and every other message of its
// batch is applied.
TEST(ProcessorLiveness, AMessageThatAlwaysFailsBecomesPoisonAndThePartitionMovesOn) {
  core::EmbeddedKafka kafka(1);
  auto topics = topics_with(kafka);
  auto events = test::make_lifecycles(30, topics, 11);
  const auto produced = test::produce_events(kafka.bootstrap_servers(), events);
  const std::size_t victim = events.size() / 2;
  const auto dir = test::make_temp_dir("processor-apply-error");
  const std::string db = dir + "/state.db";
  {
    storage::StateStore store(db);
    store.database().exec(
        "CREATE TRIGGER test_reject BEFORE INSERT ON history WHEN "
        "NEW.event_id = '" +
        events[victim].event_id +
        "' BEGIN SELECT RAISE(ABORT, 'test: this event trips a constraint'); "
        "END");
  }
  test::ChildProcess child({test::binary("processor/klarna-processor"), "--config",
                            write_config(dir, kafka.bootstrap_servers())},
                           dir + "/processor.log");
  const auto total = static_cast<long long>(produced.size());
  ASSERT_TRUE(test::wait_until([&] { return consumed_so_far(db) >= total; }, 60s))
      << consumed_so_far(db) << " of " << total << "\n"
      << test::read_file(dir + "/processor.log");
  const auto& m = produced[victim];
  EXPECT_EQ(test::query_int(db,
                            "SELECT COUNT(*) FROM poison_messages WHERE reason = "
                            "'apply_error' AND topic = '" +
                                m.topic + "' AND partition = " + std::to_string(m.partition) +
                                " AND offset = " + std::to_string(m.offset)),
            1);
  EXPECT_EQ(test::query_int(db, "SELECT COUNT(*) FROM poison_messages"), 1);
  EXPECT_EQ(test::query_int(db,
                            "SELECT COUNT(*) FROM history WHERE outcome = 'rejected' AND "
                            "reason LIKE 'poison: apply_error (%test: this event trips%'"),
            1);
  EXPECT_EQ(test::query_int(db, "SELECT COUNT(*) FROM history"), total) << "each message once";
  EXPECT_TRUE(test::wait_until(
      [&] {
        return test::topic_message_count(kafka.bootstrap_servers(), topics.processor_dead_letter,
                                         1) == 1;
      },
      15s))
      << "the dead-letter copy";
  child.signal(SIGTERM);
  EXPECT_EQ(child.wait(kStopBound), 0);
  std::filesystem::remove_all(dir);
}
