// klarna-receiver as a process: configuration errors, SIGHUP, SIGTERM.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "harness.hpp"

using namespace kpay::test;
using namespace std::chrono_literals;

namespace {

struct ReceiverProcess {
  ReceiverProcess(kpay::core::EmbeddedKafka& kafka, std::vector<std::string> extra = {})
      : dir(make_temp_dir("receiver-proc")), prefix(unique_prefix()) {
    keys_db = dir + "/keys.db";
    add_key(std::string(kKeyId), std::string(kSecret));
    kpay::klarna::Topics topics;
    topics.apply_prefix(prefix);
    kafka.create_topic(topics.payment_requests, kPartitions);
    requests_topic = topics.payment_requests;
    std::vector<std::string> argv = {binary("receiver/klarna-receiver"),
                                     "--set", "receiver.listen_address=127.0.0.1",
                                     "--set", "receiver.port=0",
                                     "--set", "receiver.tls=false",
                                     "--set", "receiver.port_file=" + dir + "/ports.json",
                                     "--set", "keys.database=" + keys_db,
                                     "--set", "keys.reload_interval_ms=3600000",
                                     "--set", "kafka.bootstrap_servers=" + kafka.bootstrap_servers(),
                                     "--set", "kafka.topic_prefix=" + prefix,
                                     "--set", "admin.listen_address=127.0.0.1",
                                     "--set", "admin.port=0"};
    for (auto& e : extra) argv.push_back(e);
    process = std::make_unique<ChildProcess>(argv, dir + "/receiver.log");
    EXPECT_TRUE(wait_until([&] { return !read_file(dir + "/ports.json").empty(); }))
        << read_file(dir + "/receiver.log");
    auto ports = read_file(dir + "/ports.json");
    port = static_cast<std::uint16_t>(std::stoi(ports.substr(ports.find("\"port\":") + 7)));
  }

  void add_key(const std::string& id, const std::string& secret) {
    auto secret_file = dir + "/secret-" + std::to_string(++keys_added);
    std::ofstream(secret_file) << secret << "\n";
    ChildProcess ctl({binary("tools/klarnactl"), "keys", "add", "--id", id, "--secret-file",
                      secret_file, "--set", "keys.database=" + keys_db});
    ASSERT_EQ(ctl.wait(10s), 0);
  }

  std::string dir, prefix, keys_db, requests_topic;
  std::uint16_t port = 0;
  int keys_added = 0;
  std::unique_ptr<ChildProcess> process;
};

std::map<std::string, std::string> signed_headers(const std::string& body, const std::string& id,
                                                  const std::string& secret) {
  return {{"Klarna-Signing-Key-Id", id},
          {"Klarna-Signature", kpay::klarna::hmac_sha256_hex(secret, body)}};
}

}  // namespace

TEST(ReceiverProcess, BadConfigurationExitsWithCode2NamingTheKey) {
  auto dir = make_temp_dir("receiver-badcfg");
  {
    ChildProcess p({binary("receiver/klarna-receiver"), "--set", "receiver.port=70000",
                    "--set", "receiver.tls=false"},
                   dir + "/out.log");
    EXPECT_EQ(p.wait(10s), 2);
  }
  EXPECT_NE(read_file(dir + "/out.log").find("receiver.port"), std::string::npos);
  std::ofstream(dir + "/bad.toml") << "[receiver\nport = 1\n";
  ChildProcess p2({binary("receiver/klarna-receiver"), "--config", dir + "/bad.toml"},
                  dir + "/out2.log");
  EXPECT_EQ(p2.wait(10s), 2);
  EXPECT_NE(read_file(dir + "/out2.log").find("bad.toml:1"), std::string::npos);
}

TEST(ReceiverProcess, SighupReloadsKeysFromKlarnactl) {
  ReceiverProcess r(shared_kafka());
  auto body = webhook_body("payment.request.state-change.submitted", "sighup-1");
  r.add_key("krn:k-rotated", "rotated-secret");
  EXPECT_EQ(http_request(r.port, "POST", "/webhooks/klarna", body,
                         signed_headers(body, "krn:k-rotated", "rotated-secret"))
                ->status,
            400);  // the watch interval is an hour here: not yet known
  r.process->signal(SIGHUP);
  EXPECT_TRUE(wait_until([&] {
    return http_request(r.port, "POST", "/webhooks/klarna", body,
                        signed_headers(body, "krn:k-rotated", "rotated-secret"))
               ->status == 200;
  }));
  // The secret file had a trailing newline; klarnactl stored the secret without it.
  EXPECT_EQ(read_file(r.dir + "/receiver.log").find("rotated-secret"), std::string::npos);
}

TEST(ReceiverProcess, SigtermAnswersTheRequestInFlightThenExitsZero) {
  kpay::core::EmbeddedKafka kafka(1);
  ReceiverProcess r(kafka);
  auto warm = webhook_body("payment.request.state-change.submitted", "warm");
  ASSERT_EQ(http_request(r.port, "POST", "/webhooks/klarna", warm,
                         signed_headers(warm, std::string(kKeyId), std::string(kSecret)))
                ->status,
            200);
  // Slow Kafka: each acknowledgement takes ~1.5 s, so the request below is
  // still waiting for Kafka when SIGTERM arrives.
  kafka.set_broker_rtt(1, 1500);
  auto body = webhook_body("payment.request.state-change.submitted", "in-flight");
  std::optional<HttpResponse> answer;
  std::thread client([&] {
    answer = http_request(r.port, "POST", "/webhooks/klarna", body,
                          signed_headers(body, std::string(kKeyId), std::string(kSecret)));
  });
  // Wait until the receiver has the request in flight.
  auto ports = read_file(r.dir + "/ports.json");
  auto admin =
      static_cast<std::uint16_t>(std::stoi(ports.substr(ports.find("\"admin_port\":") + 13)));
  EXPECT_TRUE(wait_until([&] {
    auto m = http_request(admin, "GET", "/metrics");
    return m && m->body.find("kpay_receiver_in_flight_requests 1") != std::string::npos;
  }));
  // Which build runs: program, version and (built from a git checkout) commit.
  auto metrics = http_request(admin, "GET", "/metrics");
  ASSERT_TRUE(metrics);
  static const std::regex build_info(
      R"(kpay_build_info\{program="klarna-receiver",version="\d+\.\d+\.\d+")"
      R"((,commit="[0-9a-f]{7,40}")?\} 1\n)");
  EXPECT_TRUE(std::regex_search(metrics->body, build_info)) << metrics->body;
  r.process->signal(SIGTERM);
  client.join();
  ASSERT_TRUE(answer);
  EXPECT_EQ(answer->status, 200) << answer->body;  // its real answer, not a reset
  EXPECT_EQ(r.process->wait(20s), 0);
  // New connections are refused after shutdown.
  EXPECT_THROW(HttpConnection(r.port), std::runtime_error);
  kafka.set_broker_rtt(1, 0);
  KafkaReader reader(kafka.bootstrap_servers(), {r.requests_topic}, kPartitions);
  auto& msgs = reader.read_at_least(2, 15s);
  bool found = false;
  for (const auto& m : msgs) found |= m.value == body;
  EXPECT_TRUE(found);
}

TEST(ReceiverProcess, AMissingKeyDatabaseIsAConfigurationError) {
  auto dir = make_temp_dir("receiver-nokeys");
  ChildProcess p({binary("receiver/klarna-receiver"), "--set", "receiver.tls=false", "--set",
                  "receiver.port=0", "--set", "keys.database=" + dir + "/typo.db", "--set",
                  "admin.port=0"},
                 dir + "/out.log");
  EXPECT_EQ(p.wait(10s), 2);
  EXPECT_NE(read_file(dir + "/out.log").find("keys.database"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir + "/typo.db"));
}

TEST(ReceiverProcess, KlarnactlRefusesToRetireTheLastKey) {
  auto dir = make_temp_dir("ctl-last");
  std::ofstream(dir + "/s") << "secret";
  auto db = "keys.database=" + dir + "/keys.db";
  ChildProcess add({binary("tools/klarnactl"), "--set", db, "keys", "add", "--id", "k1",
                    "--secret-file", dir + "/s"});
  ASSERT_EQ(add.wait(10s), 0);
  ChildProcess bad_id({binary("tools/klarnactl"), "--set", db, "keys", "add", "--id", "k 2",
                       "--secret-file", dir + "/s"});
  EXPECT_EQ(bad_id.wait(10s), 1);
  ChildProcess retire({binary("tools/klarnactl"), "--set", db, "keys", "retire", "k1"});
  EXPECT_EQ(retire.wait(10s), 1);
  ChildProcess forced({binary("tools/klarnactl"), "--set", db, "keys", "retire", "k1", "--force"});
  EXPECT_EQ(forced.wait(10s), 0);
  ChildProcess list_missing({binary("tools/klarnactl"), "--set",
                             "keys.database=" + dir + "/nope.db", "keys", "list"});
  EXPECT_EQ(list_missing.wait(10s), 1);
  EXPECT_FALSE(std::filesystem::exists(dir + "/nope.db"));
}
