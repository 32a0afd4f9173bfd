// The whole product, as separate processes over real sockets:
//   klarna-sim (customers, Klarna's API over HTTPS, signed webhooks)
//     → klarna-receiver (HTTPS) → embedded Kafka → klarna-processor
//     → outbox worker → klarna-sim's API (HTTPS, Basic credentials)
// The sim plays only the customer; every confirm, final authorization and
// capture is the processor's. Faults are injected on both sides: Klarna's API
// answers 503 / 429 / times out / executes and drops the connection, webhooks
// are duplicated and reordered, and the processor is SIGKILLed mid-run.
#include <gtest/gtest.h>
#include <simdjson.h>
#include <sqlite3.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "child_process.hpp"
#include "db_dump.hpp"
#include "e2e_checks.hpp"
#include "e2e_system.hpp"
#include "http_client.hpp"
#include "kpay/core/embedded_kafka.hpp"
#include "kpay/klarna/envelope.hpp"
#include "receiver_command.hpp"
#include "tls_cert.hpp"

using namespace kpay;
using namespace kpay::test;

namespace {

const std::string kKeyId = "krn:partner:global:notification:signing-key:loop-0001";
const std::string kSecret = "loop-signing-key-NOT-REAL";
const std::string kApiKey = "loop-api-key-NOT-REAL";

// Every row of a query as text (read-only; a test's own look into the database).
std::vector<std::vector<std::string>> query_rows(const std::string& db, const std::string& sql) {
  sqlite3* h = nullptr;
  if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(h);
    throw std::runtime_error("cannot open " + db);
  }
  sqlite3_busy_timeout(h, 5000);
  sqlite3_stmt* st = nullptr;
  std::vector<std::vector<std::string>> rows;
  if (sqlite3_prepare_v2(h, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
    sqlite3_close(h);
    throw std::runtime_error("bad query");
  }
  while (sqlite3_step(st) == SQLITE_ROW) {
    std::vector<std::string> row;
    for (int i = 0; i < sqlite3_column_count(st); ++i) {
      const auto* text = sqlite3_column_text(st, i);
      row.emplace_back(text ? reinterpret_cast<const char*>(text) : "");
    }
    rows.push_back(std::move(row));
  }
  sqlite3_finalize(st);
  sqlite3_close(h);
  return rows;
}

// The running system. Members are declared in start order, so they stop in
// reverse: the processor first, Kafka last.
class Loop {
 public:
  explicit Loop(const std::string& tag) : dir_(make_temp_dir(tag)) {
    for (const auto& t :
         {topics_.payment_requests, topics_.payment_transactions, topics_.disputes,
          topics_.settlements, topics_.accounts, topics_.unrouted, topics_.dead_letter,
          topics_.payment_states, topics_.processor_dead_letter}) {
      kafka_.create_topic(t, 2);
    }
    cert_ = write_self_signed_cert(dir_);
    std::ofstream(dir_ + "/secret") << kSecret;
    std::ofstream(dir_ + "/api-key") << kApiKey << "\n";
    std::filesystem::permissions(dir_ + "/api-key", std::filesystem::perms::owner_read |
                                                        std::filesystem::perms::owner_write);
  }
  ~Loop() { std::filesystem::remove_all(dir_); }

  const std::string& dir() const { return dir_; }
  std::string db() const { return dir_ + "/processor.db"; }
  std::uint16_t sim_port() const { return sim_port_; }

  void start_receiver() {
    ChildProcess add({binary("tools/klarnactl"), "--set", "keys.database=" + dir_ + "/keys.db",
                      "keys", "add", "--id", kKeyId, "--secret-file", dir_ + "/secret"},
                     dir_ + "/klarnactl.log");
    ASSERT_EQ(add.wait(std::chrono::seconds(20)), 0) << read_file(dir_ + "/klarnactl.log");
    receiver_.emplace(receiver_argv({.port_file = dir_ + "/receiver.port",
                                     .keys_database = dir_ + "/keys.db",
                                     .bootstrap_servers = kafka_.bootstrap_servers(),
                                     .tls = cert_}),
                      dir_ + "/receiver.log");
    receiver_port_ = read_port(dir_ + "/receiver.port", dir_ + "/receiver.log");
  }

  // The sim: HTTPS API with Basic credentials, webhooks to the receiver.
  void start_sim(const std::vector<std::string>& extra) {
    std::vector<std::string> argv{
        binary("sim/klarna-sim"),
        "--port",
        "0",
        "--port-file",
        dir_ + "/sim.port",
        "--webhook-url",
        "https://127.0.0.1:" + std::to_string(receiver_port_) + "/webhooks/klarna",
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
        "sim.seed=20261128"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    sim_.emplace(argv, dir_ + "/sim.log");
    sim_port_ = read_port(dir_ + "/sim.port", dir_ + "/sim.log");
  }

  void write_processor_config(const std::string& extra_toml = "") {
    std::ofstream out(dir_ + "/processor.toml");
    out << "[processor]\ndatabase = \"" << db() << "\"\nbatch_size = 50\nbatch_timeout_ms = 5\n"
        << "[kafka]\nbootstrap_servers = \"" << kafka_.bootstrap_servers() << "\"\n"
        << "group_id = \"loop\"\n"
        << "[kafka.properties]\n\"session.timeout.ms\" = \"3000\"\n"
        << "\"heartbeat.interval.ms\" = \"300\"\n"
        << "[klarna]\nenvironment = \"custom\"\nbase_url = \"https://127.0.0.1:" << sim_port_
        << "\"\nca_file = \"" << cert_.certificate << "\"\ncredentials_file = \"" << dir_
        << "/api-key\"\nrequest_timeout_ms = 1000\n"
        << "[worker]\ninitial_backoff_ms = 50\nmax_backoff_ms = 400\nmax_attempts = 40\n"
        << "[capture]\ndefault = \"after_authorization\"\n"
        << "[admin]\nport = 0\n[log]\nlevel = \"info\"\n"
        << extra_toml;
  }

  void start_processor() { start_processor_with({}); }
  void start_processor_with(const std::vector<std::string>& extra) {
    std::vector<std::string> argv{binary("processor/klarna-processor"), "--config",
                                  dir_ + "/processor.toml"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    processor_.emplace(argv, dir_ + "/processor.log");
  }
  void kill_processor() {
    processor_->signal(SIGKILL);
    ASSERT_TRUE(processor_->wait(std::chrono::seconds(10)));
    processor_.reset();
  }
  void stop_processor() {
    processor_->signal(SIGTERM);
    auto status = processor_->wait(std::chrono::seconds(30));
    ASSERT_TRUE(status);
    EXPECT_EQ(*status, 0) << read_file(dir_ + "/processor.log");
    processor_.reset();
  }

  std::string sim(const std::string& method, const std::string& path,
                  const std::string& body = "") {
    auto r =
        http_request(sim_port_, method, path, body, {{"Authorization", "Basic " + kApiKey}}, true);
    return r ? r->body : std::string();
  }

  // A second subscription, v1, to the same receiver (through "localhost", so
  // the URL differs) with the same key: every event reaches the receiver in
  // both versions, as during a migration Klarna supports, and the Gen 1
  // events (pending-confirmation) exist at all.
  void subscribe_v1() {
    const auto answer =
        sim("POST", "/v2/notification/webhooks",
            R"({"url":"https://localhost:)" + std::to_string(receiver_port_) +
                R"(/webhooks/klarna","event_types":["*"],"event_version":"v1","signing_key_id":")" +
                kKeyId + R"(","status":"ENABLED"})");
    ASSERT_NE(answer.find("webhook_id"), std::string::npos) << answer;
  }

 private:
  std::string dir_;
  klarna::Topics topics_;
  core::EmbeddedKafka kafka_{1};
  CertFiles cert_;
  std::optional<ChildProcess> receiver_;
  std::uint16_t receiver_port_ = 0;
  std::optional<ChildProcess> sim_;
  std::uint16_t sim_port_ = 0;
  std::optional<ChildProcess> processor_;
};

simdjson::dom::element parse(simdjson::dom::parser& p, const std::string& json) {
  simdjson::dom::element e;
  EXPECT_EQ(p.parse(json).get(e), simdjson::SUCCESS) << json;
  return e;
}

std::int64_t int_at(simdjson::dom::element e, std::string_view key) {
  std::int64_t v = 0;
  if (e[key].get_int64().get(v) != simdjson::SUCCESS) return -1;
  return v;
}

Executions executions(Loop& loop) {
  return executions_from_json(loop.sim("GET", "/_sim/executions"));
}

// (id → "STATE captured/amount") for the sim's payment requests and
// transactions, and the same read from the processor's database.
States sim_states(Loop& loop) {
  simdjson::dom::parser p;
  auto root = parse(p, loop.sim("GET", "/_sim/payments"));
  States out;
  simdjson::dom::array requests, transactions;
  if (root["payment_requests"].get_array().get(requests) == simdjson::SUCCESS) {
    for (auto r : requests) out[str_at(r, "payment_request_id")] = str_at(r, "state");
  }
  if (root["payment_transactions"].get_array().get(transactions) == simdjson::SUCCESS) {
    for (auto t : transactions) {
      out[str_at(t, "payment_transaction_id")] = str_at(t, "state") + " " +
                                                 std::to_string(int_at(t, "captured_amount")) +
                                                 "/" + std::to_string(int_at(t, "amount"));
    }
  }
  return out;
}
// As the sim's: without the refunded amount (e2e_checks' processor_states has it).
States processor_states_as_sim(const std::string& db) {
  States out;
  try {
    for (const auto& row :
         query_rows(db, "SELECT id, COALESCE(state, '?') FROM payment_requests")) {
      out[row.at(0)] = row.at(1);
    }
    for (const auto& row : query_rows(db,
                                      "SELECT id, COALESCE(state, '?') || ' ' || captured_amount "
                                      "|| '/' || COALESCE(amount, -1) FROM payment_transactions")) {
      out[row.at(0)] = row.at(1);
    }
  } catch (const std::exception&) {
    // not created or not migrated yet
  }
  return out;
}

}  // namespace

TEST(FullLoop, EveryPaymentEndsTheSameInTheProcessorAndTheSimWithEachOperationOnce) {
  Loop loop("full-loop");
  ASSERT_NO_FATAL_FAILURE(loop.start_receiver());
  ASSERT_NO_FATAL_FAILURE(loop.start_sim(
      {"--time-scale", "60", "--duplicate-percent", "20", "--reorder-percent", "20", "--set",
       "webhooks.reorder_delay_ms=100", "--set",
       R"(faults.rules=["payment.authorize:503:25","payment.confirm:429:25:1",)"
       R"("payment.transactions.capture:drop-after:25","payment.authorize:timeout:10:3000",)"
       R"("payment.confirm:drop:10","payment.*:latency:50:20"])"}));
  ASSERT_NE(loop.sim_port(), 0);
  ASSERT_NO_FATAL_FAILURE(loop.subscribe_v1());
  loop.write_processor_config();
  loop.start_processor();
  const auto started = loop.sim(
      "POST", "/_sim/scenarios",
      R"({"journeys":30,"rate":15,"mix":["approve:4","decline","expire"],"versions":["v1","v2"]})");
  ASSERT_EQ(started.find("error"), std::string::npos) << started;

  // Kill the processor once, while calls are being made, and restart it.
  ASSERT_TRUE(wait_until([&] { return query(loop.db(), "SELECT COUNT(*) FROM outbox") >= 3; },
                         std::chrono::seconds(60)))
      << read_file(loop.dir() + "/processor.log");
  ASSERT_NO_FATAL_FAILURE(loop.kill_processor());
  loop.start_processor();

  // Done: the scenario finished, every webhook delivered, and the processor's
  // view of every payment equals the sim's.
  States sim, ours;
  const bool same = wait_until(
      [&] {
        auto scenario = loop.sim("GET", "/_sim/scenarios");
        if (scenario.find("\"finished\":true") == std::string::npos) return false;
        sim = sim_states(loop);
        ours = processor_states_as_sim(loop.db());
        return !sim.empty() && sim == ours &&
               query(loop.db(), "SELECT COUNT(*) FROM outbox WHERE status <> 'succeeded'") == 0;
      },
      std::chrono::seconds(150));
  EXPECT_TRUE(same) << "sim and processor differ";
  for (const auto& [id, state] : sim) {
    EXPECT_EQ(ours[id], state) << id;
  }
  for (const auto& [id, state] : ours) {
    if (!sim.count(id)) ADD_FAILURE() << "only in the processor: " << id << " " << state;
  }
  EXPECT_EQ(query(loop.db(), "SELECT COUNT(*) FROM outbox WHERE status = 'failed'"), 0);

  // Every operation executed once per payment at the sim, however many
  // attempts the faults caused.
  const auto ex = executions(loop);
  expect_operations_as_the_states_need(sim, ex, 0);
  for (const auto& [id, state] : sim) {
    if (id.find(":request:") == std::string::npos) {
      EXPECT_EQ(state.substr(0, 9), "COMPLETED") << id << ": captured in full";
    }
  }
  EXPECT_EQ(most_per_key(ex), 1) << "an idempotency key executed twice";
  const auto attempts = query(loop.db(), "SELECT SUM(attempts) FROM outbox");
  const auto rows = query(loop.db(), "SELECT COUNT(*) FROM outbox");
  EXPECT_GT(attempts, rows) << "the faults must have caused retries";

  // No token the processor sent (session tokens in headers, confirmation
  // tokens in paths) and no credential appears in its log.
  std::set<std::string> secrets{kApiKey};
  {
    simdjson::dom::parser p;
    simdjson::dom::array calls;
    if (parse(p, loop.sim("GET", "/_sim/calls"))["calls"].get_array().get(calls) ==
        simdjson::SUCCESS) {
      for (auto c : calls) {
        std::string_view token;
        if (c["headers"]["klarna-network-session-token"].get_string().get(token) ==
            simdjson::SUCCESS) {
          secrets.emplace(token);
        }
        const auto path = str_at(c, "path");
        const auto at = path.find("/confirmation-tokens/");
        if (at != std::string::npos) {
          const auto start = at + 21;
          secrets.insert(path.substr(start, path.find('/', start) - start));
        }
      }
    }
  }
  EXPECT_GT(secrets.size(), 10u);
  const auto processor_log = read_file(loop.dir() + "/processor.log");
  for (const auto& secret : secrets) {
    EXPECT_EQ(processor_log.find(secret), std::string::npos) << "a secret in the processor's log";
  }
  std::printf(
      "full-loop: %zu entities equal; %lld calls, %lld attempts; %lld confirms, "
      "%lld final authorizations, %lld captures executed once each\n",
      sim.size(), rows, attempts, static_cast<long long>(executed(ex, "payment.confirm")),
      static_cast<long long>(executed(ex, "payment.authorize")),
      static_cast<long long>(executed(ex, "payment.transactions.capture")));
  loop.stop_processor();
}

TEST(FullLoop, KilledBetweenSendingAndRecordingResendsWithTheSameKey) {
  Loop loop("loop-kill");
  ASSERT_NO_FATAL_FAILURE(loop.start_receiver());
  // Every final authorization executes and then loses its answer.
  ASSERT_NO_FATAL_FAILURE(loop.start_sim({"--journeys", "1", "--set", R"(scenario.mix=["approve"])",
                                          "--set", R"(scenario.versions=["v2"])", "--set",
                                          R"(faults.rules=["payment.authorize:drop-after:100"])"}));
  loop.write_processor_config("");
  loop.start_processor();
  ASSERT_TRUE(wait_until(
      [&] {
        return loop.sim("GET", "/_sim/calls?route=payment.authorize").find("\"seq\"") !=
               std::string::npos;
      },
      std::chrono::seconds(60)))
      << read_file(loop.dir() + "/processor.log");
  ASSERT_NO_FATAL_FAILURE(loop.kill_processor());
  EXPECT_EQ(query(loop.db(),
                  "SELECT COUNT(*) FROM outbox WHERE operation = "
                  "'final_authorization' AND status IN ('in_flight', 'pending')"),
            1);
  EXPECT_EQ(executions(loop).by_route["payment.authorize"], 1) << "Klarna executed it";

  loop.sim("POST", "/_sim/faults", R"({"rules":[]})");
  loop.start_processor();
  ASSERT_TRUE(wait_until(
      [&] {
        return query(loop.db(),
                     "SELECT COUNT(*) FROM outbox WHERE operation = "
                     "'final_authorization' AND status = 'succeeded' AND result = "
                     "'APPROVED'") == 1;
      },
      std::chrono::seconds(60)))
      << read_file(loop.dir() + "/processor.log");
  const auto ex = executions(loop);
  EXPECT_EQ(ex.by_route.at("payment.authorize"), 1) << "executed once across the crash";
  EXPECT_EQ(most_per_key(ex), 1);
  // Every call the sim received for it carried the same key.
  simdjson::dom::parser p;
  std::set<std::string> keys;
  simdjson::dom::array calls;
  ASSERT_EQ(
      parse(p, loop.sim("GET", "/_sim/calls?route=payment.authorize"))["calls"].get_array().get(
          calls),
      simdjson::SUCCESS);
  for (auto c : calls) keys.insert(str_at(c, "idempotency_key"));
  EXPECT_GE(calls.size(), 2u);
  EXPECT_EQ(keys.size(), 1u);
  // The transaction exists and is linked, and was captured once.
  EXPECT_TRUE(wait_until(
      [&] {
        return query(loop.db(),
                     "SELECT COUNT(*) FROM payment_requests r JOIN "
                     "payment_transactions t ON t.id = r.payment_transaction_id "
                     "AND t.payment_request_id = r.id") == 1;
      },
      std::chrono::seconds(30)));
  loop.stop_processor();
}

TEST(FullLoop, PermanentAnswersFailWithoutRetry) {
  Loop loop("loop-401");
  ASSERT_NO_FATAL_FAILURE(loop.start_receiver());
  ASSERT_NO_FATAL_FAILURE(loop.start_sim({"--journeys", "1", "--set", R"(scenario.mix=["approve"])",
                                          "--set", R"(scenario.versions=["v2"])"}));
  loop.write_processor_config();
  // Credentials the sim does not know: 401 on every call.
  std::ofstream(loop.dir() + "/api-key", std::ios::trunc) << "wrong-key\n";
  loop.start_processor();
  ASSERT_TRUE(wait_until(
      [&] { return query(loop.db(), "SELECT COUNT(*) FROM outbox WHERE status = 'failed'") == 1; },
      std::chrono::seconds(60)))
      << read_file(loop.dir() + "/processor.log");
  EXPECT_EQ(query(loop.db(), "SELECT attempts FROM outbox WHERE status = 'failed'"), 1);
  EXPECT_EQ(query(loop.db(), "SELECT last_status FROM outbox WHERE status = 'failed'"), 401);
  const auto log = read_file(loop.dir() + "/processor.log");
  EXPECT_EQ(log.find("wrong-key"), std::string::npos) << "credentials in the log";
  EXPECT_EQ(log.find(kApiKey), std::string::npos);
  loop.stop_processor();

  // The operator sees it (failed, and its 60-minute deadline within two hours)
  // and puts it back once the credentials are fixed.
  auto ctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(),
                {binary("tools/klarnactl"), "--set", "processor.database=" + loop.db()});
    ChildProcess p(args, loop.dir() + "/ctl.log");
    return p.wait(std::chrono::seconds(20)).value_or(-1);
  };
  const auto id = std::to_string(query(loop.db(), "SELECT id FROM outbox WHERE status = 'failed'"));
  std::filesystem::remove(loop.dir() + "/ctl.log");
  EXPECT_EQ(ctl({"actions", "list", "--status", "failed", "--json"}), 0);
  EXPECT_NE(read_file(loop.dir() + "/ctl.log").find("\"id\":" + id), std::string::npos);
  EXPECT_EQ(ctl({"actions", "overdue", "--within", "120"}), 0);
  EXPECT_NE(read_file(loop.dir() + "/ctl.log").find("final_authorization"), std::string::npos);
  EXPECT_EQ(ctl({"actions", "retry", id}), 0);
  EXPECT_EQ(query(loop.db(), "SELECT COUNT(*) FROM outbox WHERE status = 'pending'"), 1);
  EXPECT_EQ(ctl({"actions", "retry", id}), 1) << "only a failed call can be retried";
  EXPECT_EQ(read_file(loop.dir() + "/ctl.log").find(kApiKey), std::string::npos);
  // With the right credentials the same call (same key) succeeds.
  std::ofstream(loop.dir() + "/api-key", std::ios::trunc) << kApiKey << "\n";
  loop.start_processor();
  EXPECT_TRUE(wait_until(
      [&] {
        return query(loop.db(),
                     "SELECT COUNT(*) FROM outbox WHERE operation = "
                     "'final_authorization' AND status = 'succeeded'") == 1;
      },
      std::chrono::seconds(30)))
      << read_file(loop.dir() + "/processor.log");
  loop.stop_processor();
}

// A processor configured for the live environment receives the sim's test
// events (metadata.live = false): the state applies, but no call is made.
TEST(FullLoop, EventsFromTheOtherEnvironmentNeverCauseACall) {
  Loop loop("loop-live");
  ASSERT_NO_FATAL_FAILURE(loop.start_receiver());
  ASSERT_NO_FATAL_FAILURE(loop.start_sim({"--journeys", "2", "--set", R"(scenario.mix=["approve"])",
                                          "--set", R"(scenario.versions=["v2"])"}));
  loop.write_processor_config("");
  loop.start_processor_with({"--set", "klarna.live=true"});
  ASSERT_TRUE(wait_until(
      [&] {
        return query(loop.db(),
                     "SELECT COUNT(*) FROM payment_requests WHERE state = 'COMPLETED'") == 2;
      },
      std::chrono::seconds(60)))
      << read_file(loop.dir() + "/processor.log");
  EXPECT_EQ(query(loop.db(), "SELECT COUNT(*) FROM outbox"), 0);
  EXPECT_EQ(executions(loop).by_route["payment.authorize"], 0);
  // The batch's log line follows its commit (the Kafka thread logs it).
  EXPECT_TRUE(wait_until([&] {
    return read_file(loop.dir() + "/processor.log")
               .find("events from the other Klarna environment") != std::string::npos;
  }));
  loop.stop_processor();
}
