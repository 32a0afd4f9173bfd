// Bounded, honest liveness of the klarna-processor binary.
//
// The stop: with events in flight and state changes queued for publication,
// Kafka goes away (the whole cluster, or every broker down) and SIGTERM
// follows, as when Ctrl-C reaches `make run`'s Kafka and processor together.
// The processor must exit within processor.shutdown_flush_timeout_ms plus
// its documented grace (3 s); it once took 45-46 s, joining librdkafka's
// spinning main thread in rd_kafka_destroy_flags().
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "child_process.hpp"
#include "db_dump.hpp"
#include "http_client.hpp"
#include "kafka_support.hpp"
#include "kpay/core/embedded_kafka.hpp"
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
