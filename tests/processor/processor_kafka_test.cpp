// The consumer loop end to end with the embedded Kafka and a real SQLite file:
// realistic lifecycles delivered shuffled and with duplicates (plus poison)
// end in exactly the ordered stream's entity state; the database equals the
// reference run over the same messages; state changes and dead letters reach
// their topics; the admin endpoint reports it; a restart resumes without
// re-applying anything, and with a tiny prefetch bound (the prefetch wake
// sent to each of three brokers' partitions) still takes every message once.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "child_process.hpp"
#include "db_dump.hpp"
#include "http_client.hpp"
#include "kafka_support.hpp"
#include "kpay/core/admin_server.hpp"
#include "kpay/core/embedded_kafka.hpp"
#include "kpay/processor/consumer.hpp"
#include "kpay/storage/state_store.hpp"
#include "lifecycles.hpp"
#include "running_processor.hpp"

using namespace kpay;
using test::metric;
using test::RunningProcessor;

namespace {

klarna::Topics prefixed_topics(const std::string& prefix) {
  klarna::Topics t;
  t.apply_prefix(prefix);
  return t;
}

void create_topics(core::EmbeddedKafka& kafka, const klarna::Topics& t) {
  kafka.create_topic(t.payment_requests, 4);
  kafka.create_topic(t.payment_transactions, 4);
  kafka.create_topic(t.disputes, 2);
  kafka.create_topic(t.settlements, 2);
  kafka.create_topic(t.accounts, 2);
  kafka.create_topic(t.unrouted, 1);
  kafka.create_topic(t.payment_states, 2);
  kafka.create_topic(t.processor_dead_letter, 1);
}

}  // namespace

TEST(ProcessorKafka, ShuffledDuplicatedLifecyclesConvergeAndRestartResumes) {
  // Three brokers: the partitions' leaders are spread over them (the mock
  // picks each leader at random), so a prefetch wake must reach several.
  core::EmbeddedKafka kafka(3);
  const auto topics = prefixed_topics("it.");
  create_topics(kafka, topics);
  const auto dir = test::make_temp_dir("processor-kafka");

  auto ordered = test::make_lifecycles(270, topics, 11);
  auto delivered = test::shuffle_with_duplicates(ordered, 0.15, 99);
  for (auto& p : test::make_poison(topics)) delivered.push_back(std::move(p));
  const std::size_t half = delivered.size() / 2;
  std::vector<test::TestEvent> first(delivered.begin(),
                                     delivered.begin() + static_cast<std::ptrdiff_t>(half));
  std::vector<test::TestEvent> second(delivered.begin() + static_cast<std::ptrdiff_t>(half),
                                      delivered.end());

  auto settings =
      test::settings_for(kafka, topics, "processor-it", 100, std::chrono::milliseconds(20));
  const std::string db = dir + "/state.db";

  auto produced = test::produce_events(kafka.bootstrap_servers(), first);
  {
    RunningProcessor run(settings, db);
    ASSERT_TRUE(test::wait_until([&] { return run.proc.events_seen() >= first.size(); },
                                 std::chrono::seconds(60)))
        << "consumed " << run.proc.events_seen() << " of " << first.size();
    auto ready = test::http_request(run.port, "GET", "/readyz");
    ASSERT_TRUE(ready);
    EXPECT_EQ(ready->status, 200) << ready->body;
    auto metrics = test::http_request(run.port, "GET", "/metrics");
    ASSERT_TRUE(metrics);
    EXPECT_EQ(metric(metrics->body, "kpay_processor_events_total{outcome=\"applied\"}") +
                  metric(metrics->body, "kpay_processor_events_total{outcome=\"duplicate\"}") +
                  metric(metrics->body, "kpay_processor_events_total{outcome=\"stale\"}") +
                  metric(metrics->body, "kpay_processor_events_total{outcome=\"rejected\"}"),
              static_cast<long long>(first.size()))
        << metrics->body;
    EXPECT_NE(metrics->body.find("kpay_processor_batch_commit_seconds_bucket"), std::string::npos);
    EXPECT_NE(
        metrics->body.find("kpay_processor_consumer_lag{topic=\"it.klarna.payment-requests\""),
        std::string::npos);
    EXPECT_TRUE(run.finish()) << "clean stop";
  }

  // Second half to a new instance of the same group and database: it resumes
  // from the store's offsets and re-applies nothing. It reads with a 4 KiB
  // prefetch bound, which every fetch response passes (the embedded broker
  // answers one produced batch per partition and fetch; three produce calls,
  // three batches per partition or more): librdkafka then stops fetching
  // until woken, and the prefetch wake must wake every leader again.
  for (std::size_t part = 0; part < 3; ++part) {
    const auto from = second.size() * part / 3, to = second.size() * (part + 1) / 3;
    auto produced2 = test::produce_events(
        kafka.bootstrap_servers(),
        std::vector<test::TestEvent>(second.begin() + static_cast<std::ptrdiff_t>(from),
                                     second.begin() + static_cast<std::ptrdiff_t>(to)));
    produced.insert(produced.end(), produced2.begin(), produced2.end());
  }
  auto tiny_prefetch = settings;
  tiny_prefetch.kafka_properties.push_back({"queued.max.messages.kbytes", "4"});
  {
    RunningProcessor run(tiny_prefetch, db);
    ASSERT_TRUE(test::wait_until(
        [&] {
          return test::query_int(db, "SELECT COUNT(*) FROM history") >=
                 static_cast<long long>(delivered.size());
        },
        std::chrono::seconds(60)));
    EXPECT_TRUE(run.finish());
    const auto metrics = run.registry.render();
    EXPECT_GT(metric(metrics, "kpay_processor_prefetch_wakes_total{outcome=\"sent\"}"), 0)
        << metrics;
    // Every partition's leader was known and got its request (one per broker).
    EXPECT_EQ(metric(metrics, "kpay_processor_prefetch_wakes_total{outcome=\"failed\"}"), 0);
  }
  // The stored next offsets are the ends of the logs: every offset taken, none beyond.
  {
    storage::StateStore store(db);
    for (const auto& [topic, partitions] :
         std::vector<std::pair<std::string, int>>{{topics.payment_requests, 4},
                                                  {topics.payment_transactions, 4},
                                                  {topics.disputes, 2},
                                                  {topics.settlements, 2},
                                                  {topics.accounts, 2},
                                                  {topics.unrouted, 1}}) {
      long long next = 0;
      for (int p = 0; p < partitions; ++p) next += store.stored_offset(topic, p).value_or(0);
      EXPECT_EQ(next, test::topic_message_count(kafka.bootstrap_servers(), topic, partitions))
          << topic;
    }
  }

  // Exactly one history row per delivered message: nothing lost, nothing twice.
  EXPECT_EQ(test::query_int(db, "SELECT COUNT(*) FROM history"),
            static_cast<long long>(delivered.size()));
  EXPECT_EQ(test::query_int(db,
                            "SELECT COUNT(*) FROM (SELECT 1 FROM history GROUP BY topic, "
                            "partition, offset HAVING COUNT(*) > 1)"),
            0);

  // Same entity state as the ordered stream.
  test::apply_reference(
      dir + "/ordered.db", topics,
      [&] {
        std::vector<processor::InputMessage> v;
        std::int64_t o = 0;
        for (const auto& e : ordered) v.push_back({e.topic, 0, o++, e.key, e.body});
        return v;
      }(),
      200);
  EXPECT_EQ(test::dump_entities(db), test::dump_entities(dir + "/ordered.db"));
  // And the whole database equals the reference run over the same messages.
  test::apply_reference(dir + "/reference.db", topics, produced, 100);
  EXPECT_EQ(test::dump_everything(db), test::dump_everything(dir + "/reference.db"));

  // Every applied transition was published (at least once), every poison
  // message copied to the dead-letter topic, and the publish queue drained.
  const auto applied =
      test::query_int(db, "SELECT COUNT(*) FROM history WHERE outcome = 'applied'");
  EXPECT_GE(test::topic_message_count(kafka.bootstrap_servers(), topics.payment_states, 2),
            applied);
  EXPECT_EQ(test::topic_message_count(kafka.bootstrap_servers(), topics.processor_dead_letter, 1),
            3);
  EXPECT_EQ(test::query_int(db, "SELECT COUNT(*) FROM publish_queue"), 0);
  // Follow-up calls are in the outbox with their fixed keys.
  EXPECT_GT(
      test::query_int(db, "SELECT COUNT(*) FROM outbox WHERE operation = 'final_authorization'"),
      0);
  std::filesystem::remove_all(dir);
}

// A second group member joins mid-stream: the first one's revocation applies and
// commits the batch in hand before giving partitions up, and the newcomer resumes
// from the store's offsets (both share the store, as two processes on one host
// may). Every message ends in the history exactly once.
TEST(ProcessorKafka, RebalanceMidStreamLosesAndRepeatsNothing) {
  core::EmbeddedKafka kafka(1);
  const auto topics = prefixed_topics("rb.");
  create_topics(kafka, topics);
  const auto dir = test::make_temp_dir("processor-rebalance");
  const std::string db = dir + "/state.db";

  auto events = test::shuffle_with_duplicates(test::make_lifecycles(450, topics, 21), 0.1, 5);
  const std::size_t half = events.size() / 2;
  std::vector<test::TestEvent> first(events.begin(),
                                     events.begin() + static_cast<std::ptrdiff_t>(half));
  std::vector<test::TestEvent> second(events.begin() + static_cast<std::ptrdiff_t>(half),
                                      events.end());

  processor::ProcessorSettings settings;
  settings.bootstrap_servers = kafka.bootstrap_servers();
  settings.group_id = "processor-rebalance";
  settings.topics = topics;
  settings.batch_size = 25;  // small batches: a revocation finds one in hand
  settings.batch_timeout = std::chrono::milliseconds(5);
  settings.kafka_properties = {{"session.timeout.ms", "6000"}, {"heartbeat.interval.ms", "300"}};

  auto produced = test::produce_events(kafka.bootstrap_servers(), first);
  auto count = [&] { return test::query_int(db, "SELECT COUNT(*) FROM history"); };
  {
    RunningProcessor a(settings, db);
    ASSERT_TRUE(
        test::wait_until([&] { return a.proc.events_seen() > 0; }, std::chrono::seconds(30)));
    RunningProcessor b(settings, db);
    auto produced2 = test::produce_events(kafka.bootstrap_servers(), second);
    produced.insert(produced.end(), produced2.begin(), produced2.end());
    ASSERT_TRUE(test::wait_until([&] { return count() >= static_cast<long long>(events.size()); },
                                 std::chrono::seconds(90)))
        << count() << " of " << events.size();
    EXPECT_GT(b.proc.events_seen(), 0u) << "the second member took over partitions";
    EXPECT_TRUE(b.finish());
    EXPECT_TRUE(a.finish());
  }
  EXPECT_EQ(count(), static_cast<long long>(events.size()));
  EXPECT_EQ(test::query_int(db,
                            "SELECT COUNT(*) FROM (SELECT 1 FROM history GROUP BY topic, "
                            "partition, offset HAVING COUNT(*) > 1)"),
            0);
  test::apply_reference(dir + "/reference.db", topics, produced, 100);
  EXPECT_EQ(test::dump_everything(db), test::dump_everything(dir + "/reference.db"));
  std::filesystem::remove_all(dir);
}

// Messages below their partition's stored offset (applied already: by the
// processor that owns the partition now, or by an attempt of this one whose
// commit it missed) are skipped with nothing written, counted in
// kpay_processor_messages_fenced_total, and the stored offsets stand. Here
// "another processor" moves every stored offset past what is produced next.
TEST(ProcessorKafka, MessagesBelowTheStoredOffsetAreFencedAndCounted) {
  core::EmbeddedKafka kafka(1);
  const auto topics = prefixed_topics("fence.");
  create_topics(kafka, topics);
  const auto dir = test::make_temp_dir("processor-fence");
  const std::string db = dir + "/state.db";
  auto settings =
      test::settings_for(kafka, topics, "processor-fence", 50, std::chrono::milliseconds(5));
  const auto events = test::make_lifecycles(16, topics, 13);
  const std::size_t half = events.size() / 2;
  const std::vector<test::TestEvent> first(events.begin(),
                                           events.begin() + static_cast<std::ptrdiff_t>(half));
  const std::vector<test::TestEvent> second(events.begin() + static_cast<std::ptrdiff_t>(half),
                                            events.end());
  const std::vector<std::pair<std::string, int>> partitions = {
      {topics.payment_requests, 4}, {topics.payment_transactions, 4},
      {topics.disputes, 2},         {topics.settlements, 2},
      {topics.accounts, 2},         {topics.unrouted, 1}};
  constexpr std::int64_t kAhead = 1000000;
  auto history = [&] { return test::query_int(db, "SELECT COUNT(*) FROM history"); };

  test::produce_events(kafka.bootstrap_servers(), first);
  RunningProcessor run(settings, db);
  ASSERT_TRUE(test::wait_until([&] { return run.proc.events_seen() >= first.size(); },
                               std::chrono::seconds(30)));
  ASSERT_EQ(history(), static_cast<long long>(first.size()));
  {
    storage::StateStore other(db);
    storage::WriteTransaction tx(other);
    for (const auto& [topic, n] : partitions) {
      for (int p = 0; p < n; ++p) other.save_offset(topic, p, kAhead);
    }
    tx.commit();
  }
  test::produce_events(kafka.bootstrap_servers(), second);
  const std::string fenced = "kpay_processor_messages_fenced_total";
  long long counted = 0;
  EXPECT_TRUE(test::wait_until(
      [&] {
        auto m = test::http_request(run.port, "GET", "/metrics");
        counted = m ? metric(m->body, fenced) : -1;
        return counted >= static_cast<long long>(second.size());
      },
      std::chrono::seconds(30)))
      << counted << " of " << second.size();
  EXPECT_EQ(counted, static_cast<long long>(second.size()));
  EXPECT_EQ(run.proc.events_seen(), events.size());
  EXPECT_EQ(history(), static_cast<long long>(first.size())) << "nothing written for them";
  EXPECT_EQ(test::query_int(db, "SELECT COUNT(*) FROM consumer_offsets WHERE next_offset <> " +
                                    std::to_string(kAhead)),
            0)
      << "the stored offsets stand";
  auto ready = test::http_request(run.port, "GET", "/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200) << ready->body;
  EXPECT_TRUE(run.finish());
  std::filesystem::remove_all(dir);
}
