// Offset gaps with the embedded Kafka and a real SQLite file: a partition
// truncated under a stopped processor (the mock cluster keeps about 5 MiB
// per partition and drops the oldest batches), a topic recreated (a fresh
// cluster, shorter log), and a restore of an older database. Each gap is
// detected once, nothing past it is applied without the policy's consent,
// the operator's accept resumes the partition without a restart, a repair
// queues reads of the open entities; restarts report no gap again.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include "child_process.hpp"
#include "db_dump.hpp"
#include "http_client.hpp"
#include "kafka_reader.hpp"
#include "kafka_support.hpp"
#include "kpay/core/admin_server.hpp"
#include "kpay/core/embedded_kafka.hpp"
#include "kpay/processor/consumer.hpp"
#include "kpay/processor/gap_repair.hpp"
#include "kpay/storage/state_store.hpp"
#include "lifecycles.hpp"
#include "running_processor.hpp"

using namespace kpay;
using test::metric;
using test::RunningProcessor;

namespace {

klarna::Topics gap_topics() {
  klarna::Topics t;
  t.apply_prefix("gap.");
  return t;
}

void create_topics(core::EmbeddedKafka& kafka, const klarna::Topics& t) {
  for (const auto* topic : {&t.payment_requests, &t.payment_transactions, &t.disputes,
                            &t.settlements, &t.accounts, &t.unrouted, &t.commands,
                            &t.payment_states, &t.processor_dead_letter, &t.command_results}) {
    kafka.create_topic(*topic, 1);
  }
}

processor::ProcessorSettings settings_for(const core::EmbeddedKafka& kafka,
                                          const klarna::Topics& topics, const std::string& group) {
  auto s = test::settings_for(kafka, topics, group, 200, std::chrono::milliseconds(20));
  s.gap_check_interval = std::chrono::milliseconds(100);
  return s;
}

// The first event of each payment request: requests left open (SUBMITTED).
std::vector<test::TestEvent> open_requests(const klarna::Topics& topics, int payments,
                                           std::uint32_t seed) {
  std::vector<test::TestEvent> out;
  std::set<std::string> seen;
  for (auto& e : test::make_lifecycles(payments, topics, seed)) {
    if (e.topic == topics.payment_requests && seen.insert(e.key).second) out.push_back(e);
  }
  return out;
}

// The later events of the same requests (what the gap will swallow).
std::vector<test::TestEvent> later_request_events(const klarna::Topics& topics, int payments,
                                                  std::uint32_t seed) {
  std::vector<test::TestEvent> out;
  std::set<std::string> seen;
  for (auto& e : test::make_lifecycles(payments, topics, seed)) {
    if (e.topic == topics.payment_requests && !seen.insert(e.key).second) out.push_back(e);
  }
  return out;
}

// ~7 MiB of unusable messages (dead-lettered when consumed): the mock
// cluster keeps ~5 MiB per partition, so the oldest batches are dropped.
void flood(const std::string& bootstrap, const std::string& topic) {
  std::vector<test::TestEvent> filler;
  for (int i = 0; i < 70; ++i) {
    filler.push_back({topic, "filler-" + std::to_string(i), std::string(100 * 1024, 'x'), "", ""});
  }
  test::produce_events(bootstrap, filler);
}

std::int64_t log_start(const std::string& bootstrap, const std::string& topic) {
  auto handle = core::make_kafka(RD_KAFKA_CONSUMER,
                                 core::make_kafka_conf({{"bootstrap.servers", bootstrap}}));
  std::int64_t low = -1, high = -1;
  rd_kafka_query_watermark_offsets(handle.get(), topic.c_str(), 0, &low, &high, 10000);
  return low;
}

long long count(const std::string& db, const std::string& sql) {
  return test::query_int(db, sql);
}

// Runs until every event of `events` (and no more) is in the history.
void apply_all(processor::ProcessorSettings s, const std::string& db, long long expected_rows) {
  RunningProcessor run(std::move(s), db);
  ASSERT_TRUE(
      test::wait_until([&] { return count(db, "SELECT COUNT(*) FROM history") >= expected_rows; },
                       std::chrono::seconds(60)));
  EXPECT_EQ(metric(run.metrics(), "kpay_processor_offset_gaps_open"), 0);
  EXPECT_TRUE(run.finish());
}

}  // namespace

TEST(OffsetGaps, TruncatedPartitionPausesUntilAcceptedAndRepairReadsOpenEntities) {
  core::EmbeddedKafka kafka(1);
  const auto topics = gap_topics();
  create_topics(kafka, topics);
  const auto dir = test::make_temp_dir("offset-gaps");
  const std::string db = dir + "/state.db";
  const auto settings = settings_for(kafka, topics, "gaps-truncated");

  auto first = open_requests(topics, 30, 7);
  const auto a = static_cast<long long>(first.size());
  test::produce_events(kafka.bootstrap_servers(), first);
  apply_all(settings, db, a);
  ASSERT_EQ(count(db, "SELECT next_offset FROM consumer_offsets WHERE topic = '" +
                          topics.payment_requests + "'"),
            a);

  // Stopped: the requests' later events arrive and are pushed out of the log.
  test::produce_events(kafka.bootstrap_servers(), later_request_events(topics, 30, 7));
  flood(kafka.bootstrap_servers(), topics.payment_requests);
  const auto low = log_start(kafka.bootstrap_servers(), topics.payment_requests);
  ASSERT_GT(low, a) << "the mock cluster kept the whole log; the test needs it truncated";

  {
    RunningProcessor run(settings, db);
    ASSERT_TRUE(test::wait_until([&] { return count(db, "SELECT COUNT(*) FROM offset_gaps") > 0; },
                                 std::chrono::seconds(60)));
    // The loop goes on for other partitions: a settlement event is applied...
    test::produce_events(kafka.bootstrap_servers(),
                         {{topics.settlements, "probe", "{not json", "", ""}});
    ASSERT_TRUE(test::wait_until(
        [&] {
          return count(db, "SELECT COUNT(*) FROM history WHERE topic = '" + topics.settlements +
                               "'") == 1;
        },
        std::chrono::seconds(30)));
    // ...while nothing past the gap is.
    EXPECT_EQ(count(db, "SELECT COUNT(*) FROM history WHERE topic = '" + topics.payment_requests +
                            "' AND offset >= " + std::to_string(a)),
              0);
    EXPECT_EQ(count(db, "SELECT COUNT(*) FROM offset_gaps"), 1);
    EXPECT_EQ(count(db, "SELECT expected FROM offset_gaps"), a);
    EXPECT_EQ(count(db, "SELECT resume_at FROM offset_gaps"), low);
    EXPECT_EQ(count(db, "SELECT skipped FROM offset_gaps"), low - a);
    EXPECT_EQ(count(db,
                    "SELECT COUNT(*) FROM offset_gaps WHERE kind = 'deleted' AND "
                    "status = 'open' AND policy = 'pause'"),
              1);
    ASSERT_TRUE(test::wait_until([&] { return run.ready_status() == 503; }));
    const auto m = run.metrics();
    EXPECT_EQ(metric(m, "kpay_processor_offset_gaps_total{kind=\"deleted\"}"), 1) << m;
    EXPECT_EQ(metric(m, "kpay_processor_events_skipped_total"), low - a);
    EXPECT_EQ(metric(m, "kpay_processor_partitions_paused"), 1);

    // Downstream is told on klarna.payment-states.
    test::KafkaReader states(kafka.bootstrap_servers(), {topics.payment_states}, 1);
    auto told = [&] {
      for (const auto& msg : states.messages()) {
        if (msg.key == "offset-gap:" + topics.payment_requests + "/0" &&
            msg.value.find("\"type\":\"offset_gap\"") != std::string::npos &&
            msg.value.find("\"expected_offset\":" + std::to_string(a)) != std::string::npos) {
          return true;
        }
      }
      states.read_at_least(states.messages().size() + 1, std::chrono::milliseconds(200));
      return false;
    };
    EXPECT_TRUE(test::wait_until(told, std::chrono::seconds(20)));

    // Repair: the open requests of the partition are read again from Klarna.
    storage::StateStore ops(db);
    auto gap = ops.list_gaps(kpay::storage::GapStatus::open, 10).at(0);
    {
      storage::Transaction tx(ops.database());
      auto repair = processor::queue_gap_repair(ops, gap, 1);
      tx.commit();
      EXPECT_EQ(repair.queued, a);
      EXPECT_EQ(repair.final, 0);
    }
    EXPECT_EQ(count(db,
                    "SELECT COUNT(*) FROM outbox WHERE operation = 'read_payment_request' "
                    "AND created_by_event_id = 'gap:" +
                        std::to_string(gap.id) + "'"),
              a);
    {  // a second repair of the same gap queues nothing new
      storage::Transaction tx(ops.database());
      auto again = processor::queue_gap_repair(ops, gap, 2);
      tx.commit();
      EXPECT_EQ(again.queued, 0);
      EXPECT_EQ(again.already, a);
    }
    EXPECT_EQ(ops.find_gap(gap.id)->repair_reads, a);
    EXPECT_EQ(count(db, "SELECT COUNT(*) FROM outbox WHERE operation = 'read_payment_request'"), a);

    // The operator accepts: the partition resumes without a restart.
    ASSERT_TRUE(ops.accept_gap(gap.id, 3));
    ASSERT_TRUE(test::wait_until(
        [&] {
          return count(db, "SELECT COUNT(*) FROM history WHERE topic = '" +
                               topics.payment_requests + "' AND offset >= " + std::to_string(low)) >
                 0;
        },
        std::chrono::seconds(30)));
    ASSERT_TRUE(test::wait_until([&] { return run.ready_status() == 200; }));
    EXPECT_EQ(count(db, "SELECT COUNT(*) FROM history WHERE topic = '" + topics.payment_requests +
                            "' AND offset >= " + std::to_string(a) + " AND offset < " +
                            std::to_string(low)),
              0);
    EXPECT_TRUE(run.finish());
  }

  // A restart reports nothing again.
  {
    RunningProcessor run(settings, db);
    ASSERT_TRUE(
        test::wait_until([&] { return run.ready_status() == 200; }, std::chrono::seconds(30)));
    EXPECT_EQ(metric(run.metrics(), "kpay_processor_offset_gaps_total{kind=\"deleted\"}"), -1);
    EXPECT_EQ(count(db, "SELECT COUNT(*) FROM offset_gaps"), 1);
    EXPECT_TRUE(run.finish());
  }
}

TEST(OffsetGaps, RecreatedTopicWithPolicyContinueGoesOnAndSaysSo) {
  const auto topics = gap_topics();
  const auto dir = test::make_temp_dir("offset-gaps-recreated");
  const std::string db = dir + "/state.db";
  auto first = open_requests(topics, 30, 8);
  const auto a = static_cast<long long>(first.size());
  {
    core::EmbeddedKafka kafka(1);
    create_topics(kafka, topics);
    test::produce_events(kafka.bootstrap_servers(), first);
    apply_all(settings_for(kafka, topics, "gaps-recreated"), db, a);
  }
  // The same topics again, on a cluster whose log starts over at 0.
  core::EmbeddedKafka kafka(1);
  create_topics(kafka, topics);
  auto again = open_requests(topics, 5, 9);
  const auto c = static_cast<long long>(again.size());
  ASSERT_LT(c, a);
  test::produce_events(kafka.bootstrap_servers(), again);
  auto settings = settings_for(kafka, topics, "gaps-recreated");
  settings.on_offset_gap = processor::ProcessorSettings::GapPolicy::go_on;
  {
    RunningProcessor run(settings, db);
    ASSERT_TRUE(test::wait_until([&] { return count(db, "SELECT COUNT(*) FROM history") == a + c; },
                                 std::chrono::seconds(60)));
    EXPECT_EQ(count(db,
                    "SELECT COUNT(*) FROM offset_gaps WHERE kind = 'log_reset' AND "
                    "expected = " +
                        std::to_string(a) +
                        " AND resume_at = 0 AND policy = 'continue' AND status = 'open'"),
              1);
    EXPECT_EQ(metric(run.metrics(), "kpay_processor_offset_gaps_total{kind=\"log_reset\"}"), 1);
    ASSERT_TRUE(test::wait_until([&] { return run.ready_status() == 503; }));
    EXPECT_TRUE(run.finish());
  }
  // The stored position follows the new log (not the old, higher one).
  EXPECT_EQ(count(db, "SELECT next_offset FROM consumer_offsets WHERE topic = '" +
                          topics.payment_requests + "'"),
            c);
  {
    storage::StateStore ops(db);
    ASSERT_TRUE(ops.accept_gap(ops.list_gaps(kpay::storage::GapStatus::open, 1).at(0).id, 1));
  }
  {
    RunningProcessor run(settings, db);
    ASSERT_TRUE(
        test::wait_until([&] { return run.ready_status() == 200; }, std::chrono::seconds(30)));
    EXPECT_EQ(count(db, "SELECT COUNT(*) FROM offset_gaps"), 1);
    EXPECT_EQ(metric(run.metrics(), "kpay_processor_offset_gaps_total{kind=\"log_reset\"}"), -1);
    EXPECT_TRUE(run.finish());
  }
}

TEST(OffsetGaps, RestoredOlderDatabaseWhoseNextEventsAreGoneIsAGap) {
  core::EmbeddedKafka kafka(1);
  const auto topics = gap_topics();
  create_topics(kafka, topics);
  const auto dir = test::make_temp_dir("offset-gaps-restore");
  const std::string db = dir + "/state.db";
  const auto settings = settings_for(kafka, topics, "gaps-restore");
  auto first = open_requests(topics, 20, 10);
  const auto a = static_cast<long long>(first.size());
  test::produce_events(kafka.bootstrap_servers(), first);
  apply_all(settings, db, a);
  std::filesystem::copy_file(db, dir + "/backup.db");  // closed cleanly: no WAL left

  auto later = later_request_events(topics, 20, 10);
  test::produce_events(kafka.bootstrap_servers(), later);
  apply_all(settings, db, a + static_cast<long long>(later.size()));
  flood(kafka.bootstrap_servers(), topics.payment_requests);
  const auto low = log_start(kafka.bootstrap_servers(), topics.payment_requests);
  ASSERT_GT(low, a);

  std::filesystem::copy_file(dir + "/backup.db", db,
                             std::filesystem::copy_options::overwrite_existing);
  RunningProcessor run(settings, db);
  ASSERT_TRUE(test::wait_until([&] { return count(db, "SELECT COUNT(*) FROM offset_gaps") > 0; },
                               std::chrono::seconds(60)));
  ASSERT_TRUE(test::wait_until([&] { return run.ready_status() == 503; }));
  EXPECT_EQ(count(db, "SELECT COUNT(*) FROM offset_gaps WHERE kind = 'deleted' AND expected = " +
                          std::to_string(a)),
            1);
  EXPECT_EQ(count(db, "SELECT COUNT(*) FROM history WHERE topic = '" + topics.payment_requests +
                          "' AND offset >= " + std::to_string(a)),
            0);
  storage::StateStore ops(db);
  storage::Transaction tx(ops.database());
  auto repair =
      processor::queue_gap_repair(ops, ops.list_gaps(kpay::storage::GapStatus::open, 1).at(0), 1);
  tx.commit();
  EXPECT_EQ(repair.queued, a) << "every request of the restored database is open";
  EXPECT_TRUE(run.finish());
}
