// The product as separate processes for end-to-end suites: the embedded Kafka
// (in this process), klarna-receiver (HTTPS), klarna-sim (HTTPS API with Basic
// credentials, webhooks to the receiver) and klarna-processor (one, or several
// in one consumer group on one PostgreSQL state: SystemOptions::postgresql),
// plus a producer for klarna.commands and a reader of klarna.command-results.
// Shared by the end-to-end suites; one System serves a whole suite (processes
// and group joins cost seconds).
#pragma once

#include <gtest/gtest.h>
#include <simdjson.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "child_process.hpp"
#include "db_dump.hpp"
#include "http_client.hpp"
#include "kafka_reader.hpp"
#include "kpay/core/embedded_kafka.hpp"
#include "kpay/core/kafka.hpp"
#include "kpay/klarna/envelope.hpp"
#include "kpay/klarna/signature.hpp"
#include "receiver_command.hpp"
#include "tls_cert.hpp"

namespace kpay::test {

// The port a process wrote to its port file ({"port":N}), waited for.
std::uint16_t read_port(const std::string& file, const std::string& log);
// The first column of the first row; -1 while the database is not there yet.
long long query(const std::string& db, const std::string& sql);
std::string query_text(const std::string& db, const std::string& sql);
std::string str_at(simdjson::dom::element e, std::string_view key);

// A parsed klarna.command-results message.
struct Result {
  std::string raw;
  std::string command_id, status, reason, result;
  std::string payment_transaction_id, payment_request_id, payment_request_url;
  std::string payment_capture_id, payment_refund_id;
  std::string payment_dispute_id, dispute_state;
  std::string key;
  bool final() const { return status != "accepted"; }
};
Result parse_result(const ConsumedMessage& m);

struct SystemOptions {
  std::string tag;       // temp directory and log names
  std::string group_id;  // the processor's consumer group
  std::string key_id, secret, api_key;
  std::vector<std::string> sim_args;  // appended to klarna-sim's command line
  std::string processor_toml{};       // appended to the processor's configuration
  std::string more_senders{};         // commands.senders after the harness's: ', "a", "b"'
  std::string database{};             // the processor's database; default <dir>/processor.db
  // A PostgreSQL DSN: the processors keep their state there
  // (processor.store = "postgresql"), each under its own instance name
  // (proc-<i>, stable across its restarts); db() is then this DSN.
  std::string postgresql{};
  int partitions = 2;  // of every topic
};

// The running system; members in start order, so they stop in reverse.
class System {
 public:
  explicit System(SystemOptions options)
      : options_(std::move(options)), dir_(make_temp_dir(options_.tag)) {
    for (const auto& t :
         {topics_.payment_requests, topics_.payment_transactions, topics_.disputes,
          topics_.settlements, topics_.accounts, topics_.unrouted, topics_.dead_letter,
          topics_.payment_states, topics_.processor_dead_letter, topics_.commands,
          topics_.command_results, std::string("klarna.audit")}) {
      kafka_.create_topic(t, options_.partitions);
    }
    cert_ = write_self_signed_cert(dir_);
    std::ofstream(dir_ + "/secret") << options_.secret;
    std::ofstream(dir_ + "/api-key") << options_.api_key << "\n";
    std::filesystem::permissions(dir_ + "/api-key", std::filesystem::perms::owner_read |
                                                        std::filesystem::perms::owner_write);
    producer_ = core::make_kafka(
        RD_KAFKA_PRODUCER, core::make_kafka_conf({{"bootstrap.servers", kafka_.bootstrap_servers()},
                                                  {"enable.idempotence", "true"},
                                                  {"socket.timeout.ms", "10000"},
                                                  {"acks", "all"}}));
    results_.emplace(kafka_.bootstrap_servers(), std::vector<std::string>{topics_.command_results},
                     options_.partitions);
  }
  ~System() { std::filesystem::remove_all(dir_); }

  const std::string& dir() const { return dir_; }
  // The processors' state: a SQLite file, or the PostgreSQL DSN (e2e_db.hpp reads either).
  std::string db() const {
    if (!options_.postgresql.empty()) return options_.postgresql;
    return options_.database.empty() ? dir_ + "/processor.db" : options_.database;
  }
  std::string bootstrap() const { return kafka_.bootstrap_servers(); }
  const klarna::Topics& topics() const { return topics_; }

  void start_receiver() {
    ChildProcess add({binary("tools/klarnactl"), "--set", "keys.database=" + dir_ + "/keys.db",
                      "keys", "add", "--id", options_.key_id, "--secret-file", dir_ + "/secret"},
                     dir_ + "/klarnactl.log");
    ASSERT_EQ(add.wait(std::chrono::seconds(20)), 0) << read_file(dir_ + "/klarnactl.log");
    launch_receiver(0);
  }
  // SIGKILL, as a crash; restart_receiver() brings it back on the same port
  // (the sim's subscriptions point there).
  void kill_receiver() {
    receiver_->signal(SIGKILL);
    ASSERT_TRUE(receiver_->wait(std::chrono::seconds(10)));
    receiver_.reset();
  }
  void restart_receiver() { launch_receiver(receiver_port_); }
  // Appended to the receiver's command line from its next start on
  // (e.g. "--set", "log.level=debug").
  void set_receiver_args(std::vector<std::string> args) { receiver_args_ = std::move(args); }
  std::uint16_t receiver_port() const { return receiver_port_; }
  std::uint16_t sim_port() const { return sim_port_; }
  core::EmbeddedKafka& kafka() { return kafka_; }

 private:
  void launch_receiver(std::uint16_t port) {
    std::filesystem::remove(dir_ + "/receiver.port");
    receiver_.emplace(receiver_argv({.port_file = dir_ + "/receiver.port",
                                     .keys_database = dir_ + "/keys.db",
                                     .bootstrap_servers = kafka_.bootstrap_servers(),
                                     .tls = cert_,
                                     .port = port,
                                     .extra = receiver_args_}),
                      dir_ + "/receiver.log");
    receiver_port_ = read_port(dir_ + "/receiver.port", dir_ + "/receiver.log");
  }

 public:
  void start_sim() {
    std::vector<std::string> argv{
        binary("sim/klarna-sim"),
        "--port",
        "0",
        "--port-file",
        dir_ + "/sim.port",
        "--webhook-url",
        "https://127.0.0.1:" + std::to_string(receiver_port_) + "/webhooks/klarna",
        "--signing-key-id",
        options_.key_id,
        "--signing-key-file",
        dir_ + "/secret",
        "--set",
        "sim.tls=true",
        "--set",
        "sim.tls_certificate=" + cert_.certificate,
        "--set",
        "sim.tls_private_key=" + cert_.private_key,
        "--set",
        "sim.api_key=" + options_.api_key,
        "--set",
        "scenario.merchant_actions=false",
        "--set",
        "sim.seed=20261201"};
    argv.insert(argv.end(), options_.sim_args.begin(), options_.sim_args.end());
    sim_.emplace(argv, dir_ + "/sim.log");
    sim_port_ = read_port(dir_ + "/sim.port", dir_ + "/sim.log");
  }

  // `extra`: appended to the command line (e.g. "--set", "worker.stop_timeout_ms=2000").
  // `i`: which processor (0 … n-1; several only on PostgreSQL), logging to
  // processor.log (0) or processor-<i>.log.
  void start_processor(const std::vector<std::string>& extra = {}, std::size_t i = 0) {
    if (!std::filesystem::exists(dir_ + "/processor.toml")) {
      std::ofstream out(dir_ + "/processor.toml");
      out << "[processor]\n"
          << store_toml() << "batch_size = 50\nbatch_timeout_ms = 5\n"
          << postgresql_toml() << "[kafka]\nbootstrap_servers = \"" << kafka_.bootstrap_servers()
          << "\"\n"
          << "group_id = \"" << options_.group_id << "\"\n"
          << "[kafka.properties]\n\"session.timeout.ms\" = \"3000\"\n"
          << "\"heartbeat.interval.ms\" = \"300\"\n"
          << "[klarna]\nenvironment = \"custom\"\nbase_url = \"https://127.0.0.1:" << sim_port_
          << "\"\nca_file = \"" << cert_.certificate << "\"\ncredentials_file = \"" << dir_
          << "/api-key\"\nrequest_timeout_ms = 1000\n"
          << "[worker]\ninitial_backoff_ms = 50\nmax_backoff_ms = 400\nmax_attempts = 40\n"
          << "[capture]\ndefault = \"on_command\"\n"
          << "[admin]\nport = 0\n[log]\nlevel = \"info\"\n"
          << "[audit]\ntopic = \"klarna.audit\"\n"
          << "[commands]\nsenders_database = \"" << senders_db() << "\"\n"
          << "klarnactl_sender = \"" << kSender << "\"\n"
          << "senders = [\"" << kSender << "\"" << options_.more_senders << "]\n"
          << "[senders." << kSender << "]\ncommands = [\"*\"]\npartner_accounts = [\"*\"]\n"
          << options_.processor_toml;
    }
    if (!std::filesystem::exists(senders_db())) add_sender_key(kSender, kSenderKey, kSenderSecret);
    std::vector<std::string> argv{binary("processor/klarna-processor"), "--config",
                                  dir_ + "/processor.toml"};
    if (!options_.postgresql.empty()) {
      argv.insert(argv.end(), {"--set", "postgresql.instance=proc-" + std::to_string(i)});
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    if (processors_.size() <= i) processors_.resize(i + 1);
    processors_[i] = std::make_unique<ChildProcess>(argv, processor_log_file(i));
  }
  ChildProcess* processor(std::size_t i = 0) {
    return i < processors_.size() ? processors_[i].get() : nullptr;
  }
  void kill_processor(std::size_t i = 0) {
    processors_.at(i)->signal(SIGKILL);
    ASSERT_TRUE(processors_[i]->wait(std::chrono::seconds(10)));
    processors_[i].reset();
  }
  void stop_processor(std::size_t i = 0) {
    if (!processor(i)) return;
    processors_[i]->signal(SIGTERM);
    auto status = processors_[i]->wait(std::chrono::seconds(30));
    ASSERT_TRUE(status);
    EXPECT_EQ(*status, 0) << processor_log(i);
    processors_[i].reset();
  }
  std::string processor_log(std::size_t i = 0) const { return read_file(processor_log_file(i)); }
  // The processor's admin port (admin.port = 0), from its last "admin endpoint
  // listening" log line; 0 until it is logged.
  std::uint16_t processor_admin_port(std::size_t i = 0) const;

  std::string sim(const std::string& method, const std::string& path,
                  const std::string& body = "") {
    auto r = http_request(sim_port_, method, path, body,
                          {{"Authorization", "Basic " + options_.api_key}}, true);
    return r ? r->body : std::string();
  }

  // The sender every command of the harness is signed as (kpay-sender /
  // kpay-signature, docs/OPERATIONS.md "Command senders"), allowed everything.
  static constexpr const char* kSender = "e2e";
  static constexpr const char* kSenderKey = "e2e-k1";
  static constexpr const char* kSenderSecret = "e2e-sender-secret-0123456789abcdef";
  std::string senders_db() const { return dir_ + "/senders.db"; }
  // klarnactl senders add SENDER --key-id KEY --secret-file (the processor's config).
  void add_sender_key(const std::string& sender, const std::string& key,
                      const std::string& secret) {
    const std::string file = dir_ + "/sender-secret-" + sender + "-" + key;
    std::ofstream(file) << secret;
    auto [rc, out] = ctl({"senders", "add", sender, "--key-id", key, "--secret-file", file});
    ASSERT_EQ(rc, 0) << out;
  }
  using Headers = std::vector<std::pair<std::string, std::string>>;
  // The headers that sign `value` as `sender` with `key` / `secret`.
  static Headers signed_by(const std::string& sender, const std::string& key,
                           const std::string& secret, const std::string& value) {
    return {{"kpay-sender", sender},
            {"kpay-signature", "kid=" + key + ";v1=" + klarna::hmac_sha256_hex(secret, value)}};
  }
  // Produces one message on klarna.commands with exactly these headers (and
  // this Kafka timestamp, ms, when given).
  void send_with_headers(const std::string& key, const std::string& value, const Headers& headers,
                         std::int64_t timestamp_ms = 0) {
    rd_kafka_headers_t* h = rd_kafka_headers_new(headers.size() + 1);
    for (const auto& [name, v] : headers) {
      rd_kafka_header_add(h, name.c_str(), -1, v.data(), static_cast<ssize_t>(v.size()));
    }
    auto err = rd_kafka_producev(producer_.get(), RD_KAFKA_V_TOPIC(topics_.commands.c_str()),
                                 RD_KAFKA_V_KEY(key.data(), key.size()),
                                 RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
                                 RD_KAFKA_V_TIMESTAMP(timestamp_ms), RD_KAFKA_V_END);
    if (err) rd_kafka_headers_destroy(h);
    ASSERT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_EQ(rd_kafka_flush(producer_.get(), 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  }

  // Produces one command message (raw bytes, signed as kSender) and waits for its delivery.
  void send(const std::string& key, const std::string& value) {
    ASSERT_NO_FATAL_FAILURE(send_async(key, value));
    ASSERT_EQ(rd_kafka_flush(producer_.get(), 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  // The same without waiting: the (idempotent) producer keeps retrying while
  // Kafka is away.
  void send_async(const std::string& key, const std::string& value) {
    rd_kafka_headers_t* h = rd_kafka_headers_new(2);
    for (const auto& [name, v] : signed_by(kSender, kSenderKey, kSenderSecret, value)) {
      rd_kafka_header_add(h, name.c_str(), -1, v.data(), static_cast<ssize_t>(v.size()));
    }
    auto err = rd_kafka_producev(producer_.get(), RD_KAFKA_V_TOPIC(topics_.commands.c_str()),
                                 RD_KAFKA_V_KEY(key.data(), key.size()),
                                 RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
                                 RD_KAFKA_V_END);
    if (err) rd_kafka_headers_destroy(h);
    ASSERT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_poll(producer_.get(), 0);
  }

  // Every result read so far (after polling briefly).
  std::vector<Result> results() {
    std::vector<Result> out;
    for (const auto& m : results_->drain(std::chrono::milliseconds(100))) {
      out.push_back(parse_result(m));
    }
    return out;
  }
  std::vector<Result> results_for(const std::string& command_id) {
    std::vector<Result> out;
    for (auto& r : results()) {
      if (r.command_id == command_id) out.push_back(std::move(r));
    }
    return out;
  }
  // The final result of a command (rejected / succeeded / failed).
  Result final_result(const std::string& command_id,
                      std::chrono::seconds timeout = std::chrono::seconds(60)) {
    Result found;
    const bool ok = wait_until(
        [&] {
          for (auto& r : results_for(command_id)) {
            if (r.final()) {
              found = r;
              return true;
            }
          }
          return false;
        },
        timeout);
    EXPECT_TRUE(ok) << "no final result for " << command_id << "\n" << processor_log();
    return found;
  }

  // How many times the sim executed the operation with this idempotency key.
  long long executions_of(const std::string& idempotency_key) {
    simdjson::dom::parser p;
    simdjson::dom::element root;
    if (p.parse(sim("GET", "/_sim/executions")).get(root) != simdjson::SUCCESS) return -1;
    std::int64_t n = 0;
    if (root["by_idempotency_key"][idempotency_key].get_int64().get(n) != simdjson::SUCCESS) {
      return 0;
    }
    return n;
  }
  long long executions_by_route(const std::string& route) {
    simdjson::dom::parser p;
    simdjson::dom::element root;
    if (p.parse(sim("GET", "/_sim/executions")).get(root) != simdjson::SUCCESS) return -1;
    std::int64_t n = 0;
    if (root["by_route"][route].get_int64().get(n) != simdjson::SUCCESS) return 0;
    return n;
  }
  // The calls the sim received with this idempotency key (body and headers as received).
  std::vector<std::string> calls_with_key(const std::string& route, const std::string& key) {
    simdjson::dom::parser p;
    simdjson::dom::element root;
    std::vector<std::string> out;
    if (p.parse(sim("GET", "/_sim/calls?route=" + route)).get(root) != simdjson::SUCCESS) {
      return out;
    }
    for (auto c : root["calls"]) {
      if (str_at(c, "idempotency_key") == key) out.push_back(simdjson::minify(c));
    }
    return out;
  }

  // How many calls the sim received on a route (faulted ones included).
  std::size_t calls_on(const std::string& route) {
    simdjson::dom::parser p;
    simdjson::dom::element root;
    if (p.parse(sim("GET", "/_sim/calls?route=" + route)).get(root) != simdjson::SUCCESS) {
      return 0;
    }
    simdjson::dom::array calls;
    if (root["calls"].get_array().get(calls) != simdjson::SUCCESS) return 0;
    return calls.size();
  }
  // klarnactl with the processor's configuration: exit code and output.
  std::pair<int, std::string> ctl(std::vector<std::string> args) {
    std::vector<std::string> argv{binary("tools/klarnactl"), "--config", dir_ + "/processor.toml"};
    argv.insert(argv.end(), args.begin(), args.end());
    const std::string log = dir_ + "/klarnactl-" + options_.tag + ".log";
    std::filesystem::remove(log);
    ChildProcess p(argv, log);
    auto status = p.wait(std::chrono::seconds(120));
    return {status.value_or(-1), read_file(log)};
  }

 private:
  SystemOptions options_;
  std::string dir_;
  klarna::Topics topics_;
  core::EmbeddedKafka kafka_{1};
  CertFiles cert_;
  core::KafkaHandle producer_;
  std::optional<KafkaReader> results_;
  std::optional<ChildProcess> receiver_;
  std::vector<std::string> receiver_args_;
  std::uint16_t receiver_port_ = 0;
  std::optional<ChildProcess> sim_;
  std::uint16_t sim_port_ = 0;
  std::vector<std::unique_ptr<ChildProcess>> processors_;

  std::string processor_log_file(std::size_t i) const {
    return dir_ + (i == 0 ? "/processor.log" : "/processor-" + std::to_string(i) + ".log");
  }
  // The [processor] keys naming the state store.
  std::string store_toml() const {
    if (options_.postgresql.empty()) return "database = \"" + db() + "\"\n";
    return "store = \"postgresql\"\n";
  }
  // The [postgresql] section, when the state is there.
  std::string postgresql_toml() const {
    if (options_.postgresql.empty()) return "";
    return "[postgresql]\ndsn = \"" + options_.postgresql + "\"\n";
  }
};

}  // namespace kpay::test
