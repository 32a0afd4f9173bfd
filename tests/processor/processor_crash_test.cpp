// Crash safety: the klarna-processor binary is killed with SIGKILL at random
// moments while it consumes, restarted until it has consumed everything, and
// then stopped with SIGTERM. Its database must equal (in every meaningful
// table) an uninterrupted reference run over the same messages, with every
// message in the history exactly once.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>

#include "child_process.hpp"
#include "db_dump.hpp"
#include "http_client.hpp"
#include "kafka_support.hpp"
#include "kpay/core/embedded_kafka.hpp"
#include "lifecycles.hpp"

using namespace kpay;

namespace {

long long consumed_so_far(const std::string& db) {
  if (!std::filesystem::exists(db)) return 0;
  try {
    return test::query_int(db, "SELECT COALESCE(SUM(next_offset), 0) FROM consumer_offsets");
  } catch (const std::exception&) {
    return 0;  // not migrated yet
  }
}

}  // namespace

TEST(ProcessorCrash, SigkillAtRandomMomentsLeavesTheSameDatabase) {
  core::EmbeddedKafka kafka(1);
  klarna::Topics topics;
  topics.apply_prefix("crash.");
  kafka.create_topic(topics.payment_requests, 3);
  kafka.create_topic(topics.payment_transactions, 3);
  kafka.create_topic(topics.disputes, 2);
  kafka.create_topic(topics.settlements, 1);
  kafka.create_topic(topics.accounts, 1);
  kafka.create_topic(topics.unrouted, 1);
  kafka.create_topic(topics.payment_states, 2);
  kafka.create_topic(topics.processor_dead_letter, 1);

  auto events = test::shuffle_with_duplicates(test::make_lifecycles(900, topics, 5), 0.1, 42);
  for (auto& p : test::make_poison(topics)) events.push_back(std::move(p));
  auto produced = test::produce_events(kafka.bootstrap_servers(), events);
  const auto total = static_cast<long long>(produced.size());

  const auto dir = test::make_temp_dir("processor-crash");
  const std::string db = dir + "/state.db";
  const std::string config = dir + "/processor.toml";
  {
    std::ofstream out(config);
    out << "[processor]\ndatabase = \"" << db << "\"\nbatch_size = 20\nbatch_timeout_ms = 5\n"
        << "[kafka]\nbootstrap_servers = \"" << kafka.bootstrap_servers() << "\"\n"
        << "group_id = \"crash\"\ntopic_prefix = \"crash.\"\n"
        << "[kafka.properties]\n\"session.timeout.ms\" = \"3000\"\n"
        << "\"heartbeat.interval.ms\" = \"300\"\n"
        << "[admin]\nport = 0\n[log]\nlevel = \"warn\"\n"
        << "[worker]\nenabled = false\n";  // consumption only: no Klarna to call
  }
  const std::vector<std::string> argv = {test::binary("processor/klarna-processor"), "--config",
                                         config};
  std::mt19937 rng(2026);
  std::uniform_int_distribution<int> delay_ms(0, 120);
  int kills = 0;
  long long before = 0;
  while (kills < 4) {
    test::ChildProcess child(argv, dir + "/processor.log");
    // Wait until this run has committed something new, then kill it at a random
    // moment of its consumption.
    ASSERT_TRUE(
        test::wait_until([&] { return consumed_so_far(db) > before; }, std::chrono::seconds(60)))
        << "run " << kills << " made no progress";
    struct timespec ts {
      0, delay_ms(rng) * 1'000'000L
    };
    nanosleep(&ts, nullptr);
    child.signal(SIGKILL);
    ASSERT_TRUE(child.wait(std::chrono::seconds(10)));
    ++kills;
    before = consumed_so_far(db);
    std::cout << "SIGKILL " << kills << ": " << before << " of " << total << " committed\n";
    if (before >= total) break;
  }
  EXPECT_GE(kills, 1);
  {
    test::ChildProcess child(argv, dir + "/processor.log");
    ASSERT_TRUE(
        test::wait_until([&] { return consumed_so_far(db) >= total; }, std::chrono::seconds(90)))
        << consumed_so_far(db) << " of " << total;
    child.signal(SIGTERM);
    auto status = child.wait(std::chrono::seconds(30));
    ASSERT_TRUE(status);
    EXPECT_EQ(*status, 0) << "a clean stop after SIGTERM";
  }

  // Every message exactly once in the history; every event_id applied at most once.
  EXPECT_EQ(test::query_int(db, "SELECT COUNT(*) FROM history"), total);
  EXPECT_EQ(test::query_int(db,
                            "SELECT COUNT(*) FROM (SELECT 1 FROM history GROUP BY topic, "
                            "partition, offset HAVING COUNT(*) > 1)"),
            0);
  EXPECT_EQ(test::query_int(db,
                            "SELECT COUNT(*) FROM (SELECT 1 FROM history WHERE outcome <> "
                            "'duplicate' GROUP BY event_id HAVING COUNT(*) > 1)"),
            0);
  test::apply_reference(dir + "/reference.db", topics, produced, 64);
  EXPECT_EQ(test::dump_everything(db), test::dump_everything(dir + "/reference.db"));
  // State changes are at-least-once: after crashes some may be published twice, none lost.
  const auto applied =
      test::query_int(db, "SELECT COUNT(*) FROM history WHERE outcome = 'applied'");
  EXPECT_GE(test::topic_message_count(kafka.bootstrap_servers(), topics.payment_states, 2),
            applied);
  EXPECT_EQ(test::query_int(db, "SELECT COUNT(*) FROM publish_queue"), 0);
  std::filesystem::remove_all(dir);
}
