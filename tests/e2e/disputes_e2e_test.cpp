// Dispute operations end to end, as separate processes over real sockets:
//   dispute_* commands → klarna.commands (embedded Kafka) → klarna-processor
//     (state checked against the stored dispute) → outbox worker → klarna-sim's
//     Dispute API (HTTPS, Basic) → answer → dispute state + klarna.command-results
//   klarnactl disputes upload|download → the Klarna client → klarna-sim
// while the sim's webhooks (the dispute opened, moved) reach the processor
// through klarna-receiver. One system serves the whole suite.
#include <gtest/gtest.h>
#include <simdjson.h>
#include <sqlite3.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

#include "child_process.hpp"
#include "db_dump.hpp"
#include "http_client.hpp"
#include "kafka_reader.hpp"
#include "kpay/core/embedded_kafka.hpp"
#include "kpay/core/json_writer.hpp"
#include "kpay/core/kafka.hpp"
#include "kpay/klarna/api_client.hpp"
#include "kpay/klarna/envelope.hpp"
#include "kpay/processor/follow_ups.hpp"
#include "tls_cert.hpp"

using namespace kpay;
using namespace kpay::test;

namespace {

const std::string kKeyId = "krn:partner:global:notification:signing-key:dsp-0001";
const std::string kSecret = "dsp-signing-key-NOT-REAL";
const std::string kApiKey = "dsp-api-key-NOT-REAL";
const std::string kAccount = "krn:partner:global:account:test:DSPS0001";
// Every event but payment.dispute.state-change.representment: a dispute moved
// to REPRESENTMENT in the sim (not by us) leaves our stored state stale, so an
// operation then meets Klarna's 409 (ConflictIsReReadAndReported).
const std::string kEventTypes =
    R"(webhooks.event_types=["payment.request.*","payment.transaction.*",)"
    R"("payment.dispute.state-change.initiated","payment.dispute.state-change.pre-arbitration",)"
    R"("payment.dispute.state-change.arbitration","payment.dispute.state-change.closed",)"
    R"("payment.dispute.updated.*"])";

std::uint16_t read_port(const std::string& file, const std::string& log) {
  std::uint16_t port = 0;
  const bool ok = wait_until(
      [&] {
        const auto text = read_file(file);
        const auto at = text.find("\"port\":");
        if (at == std::string::npos) return false;
        port = static_cast<std::uint16_t>(std::atoi(text.c_str() + at + 7));
        return port != 0;
      },
      std::chrono::seconds(30));
  EXPECT_TRUE(ok) << "no port in " << file << "\n" << read_file(log);
  return port;
}

std::string query_text(const std::string& db, const std::string& sql) {
  sqlite3* h = nullptr;
  std::string out;
  if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(h, 5000);
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(h, sql.c_str(), -1, &st, nullptr) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0) != nullptr) {
      out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(h);
  return out;
}

std::string str_at(simdjson::dom::element e, std::string_view key) {
  std::string_view v;
  if (e[key].get_string().get(v) != simdjson::SUCCESS) return "";
  return std::string(v);
}

// A parsed result message.
struct Result {
  std::string raw;
  std::string command_id, status, reason, result;
  std::string payment_transaction_id, payment_request_id, payment_request_url;
  std::string payment_capture_id, payment_refund_id;
  std::string payment_dispute_id, dispute_state;
  std::string key;
  bool final() const { return status != "accepted"; }
};

Result parse_result(const ConsumedMessage& m) {
  simdjson::dom::parser p;
  simdjson::dom::element e;
  Result r;
  r.raw = m.value;
  r.key = m.key;
  if (p.parse(m.value).get(e) != simdjson::SUCCESS) return r;
  r.command_id = str_at(e, "command_id");
  r.status = str_at(e, "status");
  r.reason = str_at(e, "reason");
  r.result = str_at(e, "result");
  r.payment_transaction_id = str_at(e, "payment_transaction_id");
  r.payment_request_id = str_at(e, "payment_request_id");
  r.payment_request_url = str_at(e, "payment_request_url");
  r.payment_capture_id = str_at(e, "payment_capture_id");
  r.payment_refund_id = str_at(e, "payment_refund_id");
  r.payment_dispute_id = str_at(e, "payment_dispute_id");
  r.dispute_state = str_at(e, "dispute_state");
  return r;
}

// The running system; members in start order, so they stop in reverse.
class System {
 public:
  System() : dir_(make_temp_dir("disputes-e2e")) {
    for (const auto& t :
         {topics_.payment_requests, topics_.payment_transactions, topics_.disputes,
          topics_.settlements, topics_.accounts, topics_.unrouted, topics_.dead_letter,
          topics_.payment_states, topics_.processor_dead_letter, topics_.commands,
          topics_.command_results}) {
      kafka_.create_topic(t, 2);
    }
    cert_ = write_self_signed_cert(dir_);
    std::ofstream(dir_ + "/secret") << kSecret;
    std::ofstream(dir_ + "/api-key") << kApiKey << "\n";
    std::filesystem::permissions(dir_ + "/api-key", std::filesystem::perms::owner_read |
                                                        std::filesystem::perms::owner_write);
    producer_ = core::make_kafka(
        RD_KAFKA_PRODUCER, core::make_kafka_conf({{"bootstrap.servers", kafka_.bootstrap_servers()},
                                                  {"enable.idempotence", "true"},
                                                  {"acks", "all"}}));
    results_.emplace(kafka_.bootstrap_servers(), std::vector<std::string>{topics_.command_results},
                     2);
  }
  ~System() { std::filesystem::remove_all(dir_); }

  const std::string& dir() const { return dir_; }
  std::string db() const { return dir_ + "/processor.db"; }
  std::string bootstrap() const { return kafka_.bootstrap_servers(); }
  const klarna::Topics& topics() const { return topics_; }

  void start_receiver() {
    ChildProcess add({binary("tools/klarnactl"), "--set", "keys.database=" + dir_ + "/keys.db",
                      "keys", "add", "--id", kKeyId, "--secret-file", dir_ + "/secret"},
                     dir_ + "/klarnactl.log");
    ASSERT_EQ(add.wait(std::chrono::seconds(20)), 0) << read_file(dir_ + "/klarnactl.log");
    receiver_.emplace(
        std::vector<std::string>{binary("receiver/klarna-receiver"),
                                 "--set",
                                 "receiver.listen_address=127.0.0.1",
                                 "--set",
                                 "receiver.port=0",
                                 "--set",
                                 "receiver.tls=true",
                                 "--set",
                                 "receiver.tls_certificate=" + cert_.certificate,
                                 "--set",
                                 "receiver.tls_private_key=" + cert_.private_key,
                                 "--set",
                                 "receiver.port_file=" + dir_ + "/receiver.port",
                                 "--set",
                                 "keys.database=" + dir_ + "/keys.db",
                                 "--set",
                                 "kafka.bootstrap_servers=" + kafka_.bootstrap_servers(),
                                 "--set",
                                 "admin.listen_address=127.0.0.1",
                                 "--set",
                                 "admin.port=0"},
        dir_ + "/receiver.log");
    receiver_port_ = read_port(dir_ + "/receiver.port", dir_ + "/receiver.log");
  }

  void start_sim() {
    sim_.emplace(std::vector<std::string>{binary("sim/klarna-sim"),
                                          "--port",
                                          "0",
                                          "--port-file",
                                          dir_ + "/sim.port",
                                          "--webhook-url",
                                          "https://127.0.0.1:" + std::to_string(receiver_port_) +
                                              "/webhooks/klarna",
                                          "--signing-key-id",
                                          kKeyId,
                                          "--signing-key-file",
                                          dir_ + "/secret",
                                          "--set",
                                          "sim.tls=true",
                                          "--set",
                                          "sim.tls_certificate=" + cert_.certificate,
                                          "--set",
                                          "sim.tls_private_key=" + cert_.private_key,
                                          "--set",
                                          "sim.api_key=" + kApiKey,
                                          "--set",
                                          "scenario.merchant_actions=false",
                                          "--set",
                                          kEventTypes,
                                          "--set",
                                          "sim.seed=20261201"},
                 dir_ + "/sim.log");
    sim_port_ = read_port(dir_ + "/sim.port", dir_ + "/sim.log");
  }

  void start_processor() {
    if (!std::filesystem::exists(dir_ + "/processor.toml")) {
      std::ofstream out(dir_ + "/processor.toml");
      out << "[processor]\ndatabase = \"" << db() << "\"\nbatch_size = 50\nbatch_timeout_ms = 5\n"
          << "[kafka]\nbootstrap_servers = \"" << kafka_.bootstrap_servers() << "\"\n"
          << "group_id = \"disputes\"\n"
          << "[kafka.properties]\n\"session.timeout.ms\" = \"3000\"\n"
          << "\"heartbeat.interval.ms\" = \"300\"\n"
          << "[klarna]\nenvironment = \"custom\"\nbase_url = \"https://127.0.0.1:" << sim_port_
          << "\"\nca_file = \"" << cert_.certificate << "\"\ncredentials_file = \"" << dir_
          << "/api-key\"\nrequest_timeout_ms = 1000\n"
          << "[worker]\ninitial_backoff_ms = 50\nmax_backoff_ms = 400\nmax_attempts = 40\n"
          << "[capture]\ndefault = \"on_command\"\n"
          << "[admin]\nport = 0\n[log]\nlevel = \"info\"\n";
    }
    processor_.emplace(std::vector<std::string>{binary("processor/klarna-processor"), "--config",
                                                dir_ + "/processor.toml"},
                       dir_ + "/processor.log");
  }
  void kill_processor() {
    processor_->signal(SIGKILL);
    ASSERT_TRUE(processor_->wait(std::chrono::seconds(10)));
    processor_.reset();
  }
  void stop_processor() {
    if (!processor_) return;
    processor_->signal(SIGTERM);
    auto status = processor_->wait(std::chrono::seconds(30));
    ASSERT_TRUE(status);
    EXPECT_EQ(*status, 0) << read_file(dir_ + "/processor.log");
    processor_.reset();
  }
  std::string processor_log() const { return read_file(dir_ + "/processor.log"); }

  std::string sim(const std::string& method, const std::string& path,
                  const std::string& body = "") {
    auto r =
        http_request(sim_port_, method, path, body, {{"Authorization", "Basic " + kApiKey}}, true);
    return r ? r->body : std::string();
  }

  // Produces one command message (raw bytes) and waits for its delivery.
  void send(const std::string& key, const std::string& value) {
    auto err = rd_kafka_producev(producer_.get(), RD_KAFKA_V_TOPIC(topics_.commands.c_str()),
                                 RD_KAFKA_V_KEY(key.data(), key.size()),
                                 RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                                 RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    ASSERT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_EQ(rd_kafka_flush(producer_.get(), 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
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
    const std::string log = dir_ + "/klarnactl-disputes.log";
    std::filesystem::remove(log);
    ChildProcess p(argv, log);
    auto status = p.wait(std::chrono::seconds(120));
    return {status.value_or(-1), read_file(log)};
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

 private:
  std::string dir_;
  klarna::Topics topics_;
  core::EmbeddedKafka kafka_{1};
  CertFiles cert_;
  core::KafkaHandle producer_;
  std::optional<KafkaReader> results_;
  std::optional<ChildProcess> receiver_;
  std::uint16_t receiver_port_ = 0;
  std::optional<ChildProcess> sim_;
  std::uint16_t sim_port_ = 0;
  std::optional<ChildProcess> processor_;
};

class DisputesE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    system_ = new System();
    system_->start_receiver();
    system_->start_sim();
    system_->start_processor();
  }
  static void TearDownTestSuite() {
    system_->stop_processor();
    delete system_;
    system_ = nullptr;
  }
  static System& sys() { return *system_; }
  static System* system_;

  static Result command(const std::string& key, const std::string& json, const std::string& id) {
    sys().send(key, json);
    return sys().final_result(id);
  }

  // An authorized, captured transaction (commands), disputed in the sim; the
  // dispute's INITIATED webhook applied. Returns the dispute id.
  static std::string open_dispute(const std::string& name) {
    const std::string auth = "auth-" + name;
    sys().send("ref-" + name,
               R"({"command_id":")" + auth + R"(","type":"authorize","partner_account_id":")" +
                   kAccount + R"(","amount":1000,"currency":"EUR",)" +
                   R"("payment_transaction_reference":"ref-)" + name +
                   R"(","capture":"LATER","customer_token":"ctok-)" + name + R"("})");
    const auto a = sys().final_result(auth);
    EXPECT_EQ(a.status, "succeeded") << a.raw;
    const auto txn = a.payment_transaction_id;
    const auto cap = command(txn,
                             R"({"command_id":"cap-)" + name +
                                 R"(","type":"capture","payment_transaction_id":")" + txn + "\"}",
                             "cap-" + name);
    EXPECT_EQ(cap.status, "succeeded") << cap.raw;
    const auto created =
        sys().sim("POST", "/_sim/disputes", R"({"payment_transaction_id":")" + txn + "\"}");
    simdjson::dom::parser p;
    simdjson::dom::element e;
    if (p.parse(created).get(e) != simdjson::SUCCESS) {
      ADD_FAILURE() << "no dispute: " << created;
      return "";
    }
    const auto id = str_at(e, "payment_dispute_id");
    EXPECT_TRUE(wait_for_state(id, "INITIATED")) << sys().processor_log();
    return id;
  }
  static std::string stored_state(const std::string& dispute) {
    return query_text(sys().db(), "SELECT state FROM disputes WHERE id = '" + dispute + "'");
  }
  static bool wait_for_state(const std::string& dispute, const std::string& state) {
    return wait_until([&] { return stored_state(dispute) == state; }, std::chrono::seconds(30));
  }
  // Klarna's (the sim's) state of the dispute.
  static std::string sim_state(const std::string& dispute) {
    simdjson::dom::parser p;
    simdjson::dom::element e;
    const auto body = sys().sim("GET", "/v2/accounts/" + klarna::percent_encode(kAccount) +
                                           "/payment/disputes/" + klarna::percent_encode(dispute));
    if (p.parse(body).get(e) != simdjson::SUCCESS) return "";
    return str_at(e, "state");
  }
  static void sim_transition(const std::string& dispute, const std::string& state) {
    const auto r = sys().sim("POST", "/_sim/disputes/" + dispute + "/transition",
                             R"({"state":")" + state + "\"}");
    ASSERT_NE(r.find(state), std::string::npos) << r;
  }
  // A small valid PDF written to the test's directory.
  static std::string pdf(const std::string& name) {
    const std::string path = sys().dir() + "/" + name + ".pdf";
    std::ofstream(path, std::ios::binary)
        << "%PDF-1.4\n% evidence for " << name << "\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n";
    return path;
  }
  static std::string upload(const std::string& dispute, const std::string& file) {
    auto [rc, out] = sys().ctl({"disputes", "upload", dispute, file});
    EXPECT_EQ(rc, 0) << out;
    while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
    const auto line = out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1);
    return line;
  }
  static std::string represent_cmd(const std::string& id, const std::string& dispute,
                                   const std::string& attachment) {
    return R"({"command_id":")" + id + R"(","type":"dispute_represent","payment_dispute_id":")" +
           dispute + R"(","attachments":[{"payment_dispute_attachment_id":")" + attachment +
           R"(","description":"proof of delivery"}],"additional_information":"Delivered."})";
  }
  static std::string simple_cmd(const std::string& id, const std::string& type,
                                const std::string& dispute, const std::string& extra = "") {
    return R"({"command_id":")" + id + R"(","type":")" + type + R"(","payment_dispute_id":")" +
           dispute + "\"" + extra + "}";
  }
};
System* DisputesE2E::system_ = nullptr;

TEST_F(DisputesE2E, UploadThenRepresentMovesTheDisputeToRepresentment) {
  const auto dispute = open_dispute("rep-1");
  ASSERT_FALSE(dispute.empty());
  // Refused before sending: not an accepted type, larger than 7 MB.
  const auto uploads_before = sys().calls_on("payment.disputes.attachments.upload");
  std::ofstream(sys().dir() + "/notes.txt") << "plain text is no evidence\n";
  auto [rc, out] = sys().ctl({"disputes", "upload", dispute, sys().dir() + "/notes.txt"});
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("not a PDF, JPEG, PNG or DOCX"), std::string::npos) << out;
  {
    std::ofstream big(sys().dir() + "/big.pdf", std::ios::binary);
    big << "%PDF-1.4\n" << std::string(7'000'001 - 9, 'x');
  }
  std::tie(rc, out) = sys().ctl({"disputes", "upload", dispute, sys().dir() + "/big.pdf"});
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("at most 7 MB"), std::string::npos) << out;
  EXPECT_EQ(sys().calls_on("payment.disputes.attachments.upload"), uploads_before)
      << "refused files never reach Klarna";

  const auto file = pdf("rep-1");
  const auto attachment = upload(dispute, file);
  ASSERT_NE(attachment.find("dispute-attachment"), std::string::npos) << attachment;
  EXPECT_EQ(upload(dispute, file), attachment) << "the same file again: the same key, one upload";

  const auto r = command(dispute, represent_cmd("rep-1", dispute, attachment), "rep-1");
  EXPECT_EQ(r.status, "succeeded") << r.raw;
  EXPECT_EQ(r.payment_dispute_id, dispute);
  EXPECT_EQ(r.dispute_state, "REPRESENTMENT") << r.raw;
  EXPECT_EQ(sim_state(dispute), "REPRESENTMENT");
  EXPECT_TRUE(wait_for_state(dispute, "REPRESENTMENT"));
  EXPECT_EQ(sys().executions_of(processor::idempotency_key("dispute_represent", "rep-1", "")), 1);
  // What Klarna received: the attachment and the text, Klarna's names.
  const auto calls = sys().calls_with_key(
      "payment.disputes.represent", processor::idempotency_key("dispute_represent", "rep-1", ""));
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_NE(calls[0].find(attachment), std::string::npos) << calls[0];

  // download: the bytes uploaded.
  std::tie(rc, out) = sys().ctl(
      {"disputes", "download", dispute, attachment, "--output", sys().dir() + "/back.pdf"});
  EXPECT_EQ(rc, 0) << out;
  EXPECT_EQ(read_file(sys().dir() + "/back.pdf"), read_file(file));
  // Operators' remote views.
  std::tie(rc, out) = sys().ctl({"disputes", "show", dispute, "--remote"});
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("\"state\":\"REPRESENTMENT\""), std::string::npos) << out;
  std::tie(rc, out) = sys().ctl({"disputes", "list", "--remote", "--account", kAccount, "--json"});
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find(dispute), std::string::npos) << out;
}

TEST_F(DisputesE2E, AcceptLossThroughKlarnactlClosesTheDispute) {
  const auto dispute = open_dispute("loss-1");
  ASSERT_FALSE(dispute.empty());
  auto [rc, out] =
      sys().ctl({"disputes", "accept-loss", dispute, "--command-id", "loss-1", "--wait", "--json",
                 "--set", "kafka.bootstrap_servers=" + sys().bootstrap()});
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find(R"("status":"succeeded")"), std::string::npos) << out;
  EXPECT_NE(out.find(R"("dispute_state":"CLOSED")"), std::string::npos) << out;
  // accepted, then one final (klarnactl stops at the final; accepted may be
  // published after it: the contract only promises one final result).
  std::vector<std::string> statuses;
  for (const auto& x : sys().results_for("loss-1")) statuses.push_back(x.status);
  EXPECT_EQ(statuses.size(), 2u);
  EXPECT_EQ(std::count(statuses.begin(), statuses.end(), "accepted"), 1);
  EXPECT_EQ(statuses.front(), "accepted") << "per key, accepted before the final result";
  EXPECT_EQ(sim_state(dispute), "CLOSED");
  EXPECT_TRUE(wait_for_state(dispute, "CLOSED"));
  EXPECT_EQ(query_text(sys().db(), "SELECT outcome FROM disputes WHERE id = '" + dispute + "'"),
            "LOST");
  EXPECT_EQ(sys().executions_of(processor::idempotency_key("dispute_accept_loss", "loss-1", "")),
            1);
}

TEST_F(DisputesE2E, AppealFromPreArbitrationMovesToArbitration) {
  const auto dispute = open_dispute("appeal-1");
  ASSERT_FALSE(dispute.empty());
  sim_transition(dispute, "REPRESENTMENT");
  sim_transition(dispute, "PRE_ARBITRATION");
  ASSERT_TRUE(wait_for_state(dispute, "PRE_ARBITRATION")) << sys().processor_log();
  const auto attachment = upload(dispute, pdf("appeal-1"));
  const auto r = command(dispute,
                         simple_cmd("appeal-1", "dispute_appeal", dispute,
                                    R"(,"additional_information":"The customer signed for it.",)"
                                    R"("attachments":[{"payment_dispute_attachment_id":")" +
                                        attachment + R"("}])"),
                         "appeal-1");
  EXPECT_EQ(r.status, "succeeded") << r.raw;
  EXPECT_EQ(r.dispute_state, "ARBITRATION") << r.raw;
  EXPECT_EQ(sim_state(dispute), "ARBITRATION");
  EXPECT_TRUE(wait_for_state(dispute, "ARBITRATION"));
}

TEST_F(DisputesE2E, WrongStateIsRefusedBeforeKlarna) {
  const auto dispute = open_dispute("wrong-1");
  ASSERT_FALSE(dispute.empty());
  const auto appeals = sys().calls_on("payment.disputes.appeal");
  const auto r = command(
      dispute,
      simple_cmd("wrong-appeal-1", "dispute_appeal", dispute, R"(,"additional_information":"x")"),
      "wrong-appeal-1");
  EXPECT_EQ(r.status, "rejected") << r.raw;
  EXPECT_NE(r.reason.find("wrong_state: the dispute is INITIATED"), std::string::npos) << r.raw;
  // Bad fields are refused too (the decoder): represent without attachments.
  const auto bad =
      command(dispute, simple_cmd("wrong-rep-1", "dispute_represent", dispute), "wrong-rep-1");
  EXPECT_EQ(bad.status, "rejected") << bad.raw;
  EXPECT_NE(bad.reason.find("missing_field: attachments"), std::string::npos) << bad.raw;
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(sys().calls_on("payment.disputes.appeal"), appeals) << "no call reached Klarna";
  EXPECT_EQ(sim_state(dispute), "INITIATED");
}

TEST_F(DisputesE2E, ConflictIsReReadAndReported) {
  const auto dispute = open_dispute("conflict-1");
  ASSERT_FALSE(dispute.empty());
  // Klarna moves it; its webhook does not reach us (not subscribed): stale.
  sim_transition(dispute, "REPRESENTMENT");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_EQ(stored_state(dispute), "INITIATED");
  const auto r = command(dispute, simple_cmd("conflict-loss-1", "dispute_accept_loss", dispute),
                         "conflict-loss-1");
  EXPECT_EQ(r.status, "failed") << r.raw;
  EXPECT_NE(r.reason.find("409"), std::string::npos) << r.raw;
  EXPECT_NE(r.reason.find("re-read: the dispute is REPRESENTMENT"), std::string::npos) << r.raw;
  EXPECT_EQ(r.dispute_state, "REPRESENTMENT") << r.raw;
  EXPECT_EQ(stored_state(dispute), "REPRESENTMENT") << "the re-read state is ours now";
  EXPECT_EQ(sim_state(dispute), "REPRESENTMENT") << "nothing executed";
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  int finals = 0;
  for (const auto& x : sys().results_for("conflict-loss-1")) finals += x.final();
  EXPECT_EQ(finals, 1) << "exactly one final result";
}

TEST_F(DisputesE2E, EachOperationExecutesOnceUnderFaults) {
  const auto rep = open_dispute("fault-rep");
  const auto loss = open_dispute("fault-loss");
  const auto appeal = open_dispute("fault-appeal");
  ASSERT_FALSE(rep.empty() || loss.empty() || appeal.empty());
  sim_transition(appeal, "REPRESENTMENT");
  sim_transition(appeal, "PRE_ARBITRATION");
  ASSERT_TRUE(wait_for_state(appeal, "PRE_ARBITRATION"));
  sys().sim("POST", "/_sim/faults",
            R"({"rules":["payment.disputes.*:503:50","payment.disputes.*:drop-after:30"]})");
  const auto attachment = upload(rep, pdf("fault-rep"));  // klarnactl retries with its key
  ASSERT_NE(attachment.find("dispute-attachment"), std::string::npos) << attachment;
  sys().send(rep, represent_cmd("fault-rep-1", rep, attachment));
  sys().send(loss, simple_cmd("fault-loss-1", "dispute_accept_loss", loss));
  sys().send(appeal, simple_cmd("fault-appeal-1", "dispute_appeal", appeal,
                                R"(,"additional_information":"appeal under faults")"));
  EXPECT_EQ(sys().final_result("fault-rep-1", std::chrono::seconds(90)).status, "succeeded");
  EXPECT_EQ(sys().final_result("fault-loss-1", std::chrono::seconds(90)).status, "succeeded");
  EXPECT_EQ(sys().final_result("fault-appeal-1", std::chrono::seconds(90)).status, "succeeded");
  sys().sim("POST", "/_sim/faults", R"({"rules":[]})");
  EXPECT_EQ(sys().executions_of(processor::idempotency_key("dispute_represent", "fault-rep-1", "")),
            1);
  EXPECT_EQ(
      sys().executions_of(processor::idempotency_key("dispute_accept_loss", "fault-loss-1", "")),
      1);
  EXPECT_EQ(sys().executions_of(processor::idempotency_key("dispute_appeal", "fault-appeal-1", "")),
            1);
  EXPECT_EQ(sim_state(rep), "REPRESENTMENT");
  EXPECT_EQ(sim_state(loss), "CLOSED");
  EXPECT_EQ(sim_state(appeal), "ARBITRATION");
  EXPECT_TRUE(wait_for_state(rep, "REPRESENTMENT"));
  EXPECT_TRUE(wait_for_state(loss, "CLOSED"));
  EXPECT_TRUE(wait_for_state(appeal, "ARBITRATION"));
  // The faults really happened: the calls outnumber the executions.
  EXPECT_GT(sys().calls_on("payment.disputes.represent") +
                sys().calls_on("payment.disputes.accept-loss") +
                sys().calls_on("payment.disputes.appeal"),
            3u);
}

}  // namespace
