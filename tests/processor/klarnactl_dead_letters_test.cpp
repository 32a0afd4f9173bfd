// klarnactl dead-letters against the running receiver and processor (separate
// processes, embedded Kafka): real dead letters of both sources are listed,
// shown and replayed, and a replay goes through the normal path:
//  - a signed webhook the receiver cannot parse is refused on replay (still
//    not routable, reason named);
//  - a receiver dead letter that the current parser routes (as an older
//    receiver with a stricter parser left it) lands on its family topic, keyed
//    by its entity, and the processor applies it exactly once — a forced
//    second replay is the processor inbox's duplicate;
//  - a processor poison message is produced again to its original topic with
//    its original key and bytes: the processor judges it again (not as a
//    duplicate of its own poison claim) and records it at its new offset.
#include <gtest/gtest.h>

#include "e2e_system.hpp"
#include "kpay/klarna/signature.hpp"
#include "lifecycles.hpp"

using namespace kpay;
using namespace kpay::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* kKeyId = "krn:partner:global:notification:signing-key:dl";
constexpr const char* kSecret = "dead-letter-secret";

class Producer {
 public:
  explicit Producer(const std::string& bootstrap)
      : p_(core::make_kafka(RD_KAFKA_PRODUCER,
                            core::make_kafka_conf({{"bootstrap.servers", bootstrap},
                                                   {"enable.idempotence", "true"}}))) {}
  void send(const std::string& topic, const std::string& key, const std::string& value,
            const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    rd_kafka_headers_t* h = rd_kafka_headers_new(headers.size());
    for (const auto& [n, v] : headers) {
      rd_kafka_header_add(h, n.c_str(), -1, v.data(), static_cast<ssize_t>(v.size()));
    }
    auto err = rd_kafka_producev(
        p_.get(), RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(key.data(), key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    ASSERT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_EQ(rd_kafka_flush(p_.get(), 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  }

 private:
  core::KafkaHandle p_;
};

// The id (first column) of the list row mentioning `needle`.
std::string id_of_row(const std::string& list, const std::string& needle) {
  std::istringstream in(list);
  for (std::string l; std::getline(in, l);) {
    if (l.find(needle) != std::string::npos) return l.substr(0, l.find(' '));
  }
  return "";
}

class KlarnactlDeadLetters : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    sys_ = new System({"ctl-dead-letters", "ctl-dead-letters", kKeyId, kSecret, "dl-api-key", {}});
    sys_->start_receiver();
    sys_->start_processor({"--set", "worker.enabled=false"});
    // The processor has created and migrated its database.
    ASSERT_TRUE(wait_until(
        [] { return query(sys_->db(), "SELECT COUNT(*) FROM dead_letter_replays") == 0; }, 30s))
        << sys_->processor_log();
  }
  static void TearDownTestSuite() {
    sys_->stop_processor();
    delete sys_;
    sys_ = nullptr;
  }
  long long db(const std::string& sql) { return query(sys_->db(), sql); }
  bool await(const std::string& sql, long long want) {
    return wait_until([&] { return db(sql) == want; }, 30s);
  }

  static System* sys_;
};
System* KlarnactlDeadLetters::sys_ = nullptr;

}  // namespace

TEST_F(KlarnactlDeadLetters, ReceiverDeadLettersAreReplayedThroughTheReceiversRouting) {
  auto& s = *sys_;
  // A real one: signed, but no envelope the receiver can read.
  const std::string garbage = "{not json at all";
  auto answer = http_request(s.receiver_port(), "POST", "/webhooks/klarna", garbage,
                             {{"Klarna-Signing-Key-Id", kKeyId},
                              {"Klarna-Signature", klarna::hmac_sha256_hex(kSecret, garbage)},
                              {"Content-Type", "application/json"}},
                             true);
  ASSERT_TRUE(answer);
  ASSERT_EQ(answer->status, 200) << answer->body;
  ASSERT_NE(answer->body.find("dead_lettered"), std::string::npos) << answer->body;

  // One an older receiver (stricter parser) left: routable now.
  klarna::Topics topics;
  const auto event = make_lifecycles(1, topics, 1).front();
  Producer producer(s.bootstrap());
  ASSERT_NO_FATAL_FAILURE(
      producer.send(s.topics().dead_letter, "", event.body,
                    {{"dead-letter-reason", "missing_event_version"},
                     {"klarna-signing-key-id", kKeyId},
                     {"klarna-signature", klarna::hmac_sha256_hex(kSecret, event.body)},
                     {"received-at", "2026-11-28T10:00:00.000Z"},
                     {"content-type", "application/json"}}));

  auto [code, list] = s.ctl({"dead-letters", "list", "--source", "receiver"});
  ASSERT_EQ(code, 0) << list;
  const auto unroutable = id_of_row(list, "not_json");
  const auto routable = id_of_row(list, "missing_event_version");
  ASSERT_EQ(unroutable.rfind(s.topics().dead_letter + "/", 0), 0u) << list;
  ASSERT_FALSE(routable.empty()) << list;

  auto [show_code, show] = s.ctl({"dead-letters", "show", unroutable});
  ASSERT_EQ(show_code, 0) << show;
  EXPECT_NE(show.find("reason:   not_json"), std::string::npos) << show;
  EXPECT_NE(show.find("signing key: " + std::string(kKeyId)), std::string::npos) << show;
  EXPECT_NE(show.find(garbage), std::string::npos) << show;
  EXPECT_EQ(show.find(klarna::hmac_sha256_hex(kSecret, garbage)), std::string::npos)
      << "the signature is not shown";

  // Still unroutable: refused with the parser's reason, and not recorded.
  auto [refused_code, refused] = s.ctl({"dead-letters", "replay", unroutable});
  EXPECT_EQ(refused_code, 1) << refused;
  EXPECT_NE(refused.find("still not routable: not_json"), std::string::npos) << refused;

  // Routable: to the family topic the receiver chooses; applied once.
  const std::string applied = "SELECT COUNT(*) FROM history WHERE event_id = '" + event.event_id +
                              "' AND outcome = 'applied'";
  const std::string duplicate = "SELECT COUNT(*) FROM history WHERE event_id = '" + event.event_id +
                                "' AND outcome = 'duplicate'";
  EXPECT_EQ(db(applied), 0);
  auto [replay_code, replayed] =
      s.ctl({"--operator", "ops-anna", "dead-letters", "replay", routable});
  ASSERT_EQ(replay_code, 0) << replayed;
  EXPECT_NE(replayed.find("produced to " + event.topic + " with key " + event.key),
            std::string::npos)
      << replayed;
  ASSERT_TRUE(await(applied, 1)) << s.processor_log();
  // Audited: who replayed what, to where; the refused replay is not an action.
  const std::string audited =
      "SELECT COUNT(*) FROM audit_events WHERE kind = 'operator' AND operator = 'ops-anna' AND "
      "status = 'replayed' AND entity_id = '" +
      event.key + "' AND detail LIKE '%dead-letters replay " + routable + " (receiver, reason " +
      "missing_event_version) to " + event.topic + " with key " + event.key + "%'";
  EXPECT_EQ(db(audited), 1);
  EXPECT_EQ(db("SELECT COUNT(*) FROM audit_events WHERE kind = 'operator' AND detail LIKE '%" +
               unroutable + "%'"),
            0);
  auto [trail_code, trail] = s.ctl({"audit", "list", "--by", "ops-anna", "--json"});
  ASSERT_EQ(trail_code, 0) << trail;
  EXPECT_NE(trail.find(R"("status":"replayed")"), std::string::npos) << trail;
  EXPECT_NE(trail.find(R"("operator":"ops-anna")"), std::string::npos) << trail;

  auto [again_code, again] = s.ctl({"dead-letters", "replay", routable});
  EXPECT_EQ(again_code, 1) << again;
  EXPECT_NE(again.find("already replayed"), std::string::npos) << again;
  auto [json_code, json] = s.ctl({"dead-letters", "show", routable, "--json"});
  ASSERT_EQ(json_code, 0) << json;
  EXPECT_NE(json.find(R"("replays":1)"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("to_topic":")" + event.topic + "\""), std::string::npos) << json;

  // Forced: the normal path again, so the processor's inbox drops it.
  auto [forced_code, forced] =
      s.ctl({"--operator", "ops-anna", "dead-letters", "replay", routable, "--force"});
  ASSERT_EQ(forced_code, 0) << forced;
  ASSERT_TRUE(await(duplicate, 1)) << s.processor_log();
  EXPECT_EQ(db(applied), 1);
  EXPECT_EQ(db("SELECT COUNT(*) FROM audit_events WHERE kind = 'operator' AND operator = "
               "'ops-anna' AND detail LIKE '%again (--force)%'"),
            1);

  // --all: the unroutable one refused (exit 1, counted), the replayed one skipped.
  auto [all_code, all] = s.ctl({"dead-letters", "replay", "--all", "--source", "receiver"});
  EXPECT_EQ(all_code, 1) << all;
  EXPECT_NE(all.find("0 replayed, 1 refused, 1 already replayed"), std::string::npos) << all;
}

TEST_F(KlarnactlDeadLetters, PoisonIsReplayedToItsTopicWithItsKeyAndJudgedAgain) {
  auto& s = *sys_;
  klarna::Topics topics;
  const auto poison = make_poison(topics)[1];  // an event_version no applier knows
  Producer producer(s.bootstrap());
  ASSERT_NO_FATAL_FAILURE(producer.send(poison.topic, poison.key, poison.body));
  const std::string recorded =
      "SELECT COUNT(*) FROM poison_messages WHERE event_id = '" + poison.event_id + "'";
  ASSERT_TRUE(await(recorded, 1)) << s.processor_log();

  auto [code, list] = s.ctl({"dead-letters", "list", "--source", "processor"});
  ASSERT_EQ(code, 0) << list;
  const auto id = id_of_row(list, "unknown_event_version");
  ASSERT_EQ(id.rfind(poison.topic + "/", 0), 0u) << list;
  auto [show_code, show] = s.ctl({"dead-letters", "show", id});
  ASSERT_EQ(show_code, 0) << show;
  EXPECT_NE(show.find("key:      " + poison.key), std::string::npos) << show;
  EXPECT_NE(show.find("event_id: " + poison.event_id), std::string::npos) << show;

  auto [replay_code, replayed] = s.ctl({"dead-letters", "replay", id});
  ASSERT_EQ(replay_code, 0) << replayed;
  EXPECT_NE(replayed.find("produced to " + poison.topic + " with key " + poison.key),
            std::string::npos)
      << replayed;
  // Judged again at its new offset (its own poison claim released), with the
  // original key and bytes; not a duplicate.
  ASSERT_TRUE(await(recorded, 2)) << s.processor_log();
  EXPECT_EQ(db("SELECT COUNT(*) FROM poison_messages WHERE event_id = '" + poison.event_id +
               "' AND key = CAST('" + poison.key + "' AS BLOB)"),
            2);
  EXPECT_EQ(db("SELECT COUNT(*) FROM history WHERE event_id = '" + poison.event_id +
               "' AND outcome = 'duplicate'"),
            0);
  auto [again_code, again] = s.ctl({"dead-letters", "replay", id});
  EXPECT_EQ(again_code, 1) << again;

  // --all: every poison message not replayed yet, each with its own bytes.
  const std::string unreadable = "{not json, replayed with --all";
  ASSERT_NO_FATAL_FAILURE(producer.send(topics.payment_transactions, "garbage-2", unreadable));
  const std::string copies = "SELECT COUNT(*) FROM poison_messages WHERE value = CAST('" +
                             unreadable + "' AS BLOB) AND key = CAST('garbage-2' AS BLOB)";
  ASSERT_TRUE(await(copies, 1)) << s.processor_log();
  auto [all_code, all] = s.ctl({"dead-letters", "replay", "--all", "--source", "processor"});
  EXPECT_EQ(all_code, 0) << all;
  EXPECT_NE(all.find("2 replayed, 0 refused, 1 already replayed"), std::string::npos) << all;
  ASSERT_TRUE(await(copies, 2)) << s.processor_log();
  ASSERT_TRUE(await(recorded, 3)) << s.processor_log();
  // Each of the three replays audited once (the skipped one is not an action),
  // by the OS user when no --operator is given.
  EXPECT_EQ(db("SELECT COUNT(*) FROM audit_events WHERE kind = 'operator' AND status = "
               "'replayed' AND detail LIKE '%(processor, reason %' AND operator IS NOT NULL "
               "AND operator <> ''"),
            3);
}
