// The outbox worker against klarna-sim as a separate process over HTTPS:
// outbox rows written as the appliers write them, sent through the real API
// client, answers applied to a real SQLite file. Faults are injected at the
// sim; what Klarna executed is read from its introspection.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "child_process.hpp"
#include "http_client.hpp"
#include "kpay/core/metrics.hpp"
#include "kpay/core/percent_encode.hpp"
#include "kpay/core/wall_clock.hpp"
#include "kpay/klarna/api_client.hpp"
#include "kpay/processor/call_deadlines.hpp"
#include "kpay/processor/follow_ups.hpp"
#include "kpay/processor/outbox_worker.hpp"
#include "kpay/storage/postgres.hpp"
#include "kpay/storage/state_store.hpp"
#include "postgres_server.hpp"
#include "tls_cert.hpp"

using namespace kpay;
using namespace kpay::test;

namespace {

const std::string kAccount = "krn:partner:global:account:test:SIMACCOUNT";
const std::string kApiKey = "worker-test-api-key";

using core::now_ms;

std::string field(const std::string& json, std::initializer_list<std::string_view> path) {
  simdjson::dom::parser p;
  simdjson::dom::element e;
  if (p.parse(json).get(e) != simdjson::SUCCESS) return "";
  for (auto k : path) {
    if (e[k].get(e) != simdjson::SUCCESS) return "";
  }
  std::string_view s;
  std::int64_t i = 0;
  if (e.get_string().get(s) == simdjson::SUCCESS) return std::string(s);
  if (e.get_int64().get(i) == simdjson::SUCCESS) return std::to_string(i);
  return "";
}

class OutboxWorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (read_file(binary("sim/klarna-sim")).empty()) GTEST_FAIL() << "klarna-sim not built";
    dir_ = make_temp_dir("outbox-worker");
    cert_ = write_self_signed_cert(dir_);
    std::ofstream(dir_ + "/api-key") << kApiKey << "\n";
    std::filesystem::permissions(dir_ + "/api-key", std::filesystem::perms::owner_read |
                                                        std::filesystem::perms::owner_write);
    sim_.emplace(std::vector<std::string>{binary("sim/klarna-sim"), "--port", "0", "--port-file",
                                          dir_ + "/sim.port", "--set", "sim.tls=true", "--set",
                                          "sim.tls_certificate=" + cert_.certificate, "--set",
                                          "sim.tls_private_key=" + cert_.private_key, "--set",
                                          "sim.api_key=" + kApiKey, "--set", "sim.seed=7"},
                 dir_ + "/sim.log");
    ASSERT_TRUE(wait_until([&] { return !field(read_file(dir_ + "/sim.port"), {"port"}).empty(); },
                           std::chrono::seconds(20)))
        << read_file(dir_ + "/sim.log");
    port_ = static_cast<std::uint16_t>(std::stoi(field(read_file(dir_ + "/sim.port"), {"port"})));
    store_ = std::make_unique<storage::StateStore>(dir_ + "/state.db");
  }
  void TearDown() override {
    worker_.reset();
    client_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  klarna::ClientSettings client_settings(const std::string& key_file) {
    klarna::ClientSettings s;
    s.environment = klarna::Environment::custom;
    s.base_url = "https://127.0.0.1:" + std::to_string(port_);
    s.ca_file = cert_.certificate;
    s.credentials_file = key_file;
    s.request_timeout = std::chrono::milliseconds(400);
    return s;
  }
  void start_worker(std::string key_file = "", processor::CapturePolicy policy =
                                                   processor::CapturePolicy::after_authorization) {
    client_.emplace(client_settings(key_file.empty() ? dir_ + "/api-key" : key_file));
    worker_store_ = std::make_unique<storage::StateStore>(dir_ + "/state.db");
    worker_.emplace(worker_settings(policy), *worker_store_, *client_, registry_, publisher());
    worker_->start();
  }
  static processor::WorkerSettings worker_settings(
      processor::CapturePolicy policy = processor::CapturePolicy::after_authorization) {
    processor::WorkerSettings ws;
    ws.initial_backoff = std::chrono::milliseconds(20);
    ws.max_backoff = std::chrono::milliseconds(100);
    ws.poll_interval = std::chrono::milliseconds(20);
    ws.max_attempts = 200;
    ws.follow_ups.default_capture = policy;
    return ws;
  }
  processor::OutboxWorker::Publish publisher() {
    return [this](std::vector<storage::PublishRow> rows) {
      std::lock_guard lock(mu_);
      for (auto& r : rows) published_.push_back(std::move(r));
    };
  }

  std::optional<HttpResponse> sim(const std::string& method, const std::string& path,
                                  const std::string& body = "") {
    return http_request(port_, method, path, body, {{"Authorization", "Basic " + kApiKey}}, true);
  }
  void faults(const std::string& rules_json) {
    auto r = sim("POST", "/_sim/faults", R"({"rules":)" + rules_json + "}");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
  }

  // A payment request the customer approved in flow `flow`; the token from a
  // read of the request. Stored as the appliers would have stored it.
  struct Approved {
    std::string id, token;
    std::int64_t amount = 0;
  };
  Approved approved(const std::string& flow, std::int64_t amount) {
    const std::string base = klarna::account_path(kAccount);
    auto created =
        sim("POST", base + "/payment/requests",
            R"({"currency":"EUR","amount":)" + std::to_string(amount) +
                R"(,"payment_request_reference":"ref-)" + std::to_string(amount) + "\"}");
    EXPECT_TRUE(created && created->status == 201) << (created ? created->body : "");
    Approved a;
    a.id = field(created->body, {"payment_request_id"});
    a.amount = amount;
    const std::string customer = "/_sim/payment-requests/" + core::percent_encode(a.id);
    const std::string flow_body = R"({"flow":")" + flow + "\"}";
    auto start = sim("POST", customer + "/start", flow_body);
    EXPECT_TRUE(start && start->status == 200) << (start ? start->body : "");
    auto approve = sim("POST", customer + "/approve", flow_body);
    EXPECT_TRUE(approve && approve->status == 200) << (approve ? approve->body : "");
    auto read = sim("GET", base + "/payment/requests/" + core::percent_encode(a.id));
    a.token = field(read->body, {"state_context", flow == "v2" ? "klarna_network_session_token"
                                                               : "payment_confirmation_token"});
    EXPECT_FALSE(a.token.empty()) << read->body;
    storage::PaymentRequestRow row;
    row.id = a.id;
    row.generation = flow == "v2" ? 2 : 1;
    row.state = flow == "v2" ? "COMPLETED" : "PENDING_CONFIRMATION";
    row.amount = amount;
    row.currency = "EUR";
    row.reference = "ref-" + std::to_string(amount);
    row.account_id = kAccount;
    row.last_event_id = "test";
    store_->save_request(row);
    return a;
  }
  std::int64_t queue(const processor::FollowUp& f) {
    processor::FollowUpOrigin origin;
    origin.account_id = kAccount;
    origin.caused_by = "test";
    origin.now_ms = now_ms();
    const auto row = processor::outbox_row(f, origin);
    EXPECT_TRUE(store_->insert_outbox(row));
    if (worker_) worker_->wake();
    return store_->outbox(row.entity_id).back().id;
  }
  processor::FinalAuthorization final_authorization(const Approved& a) {
    processor::FinalAuthorization f;
    f.payment_request_id = a.id;
    f.token = a.token;
    f.amount = a.amount;
    f.currency = "EUR";
    f.reference = "ref-" + std::to_string(a.amount);
    return f;
  }
  std::optional<storage::OutboxRow> row(std::int64_t id) { return store_->find_outbox(id); }
  bool wait_status(std::int64_t id, storage::OutboxStatus status,
                   std::chrono::milliseconds deadline = std::chrono::seconds(30)) {
    return wait_until(
        [&] {
          auto r = row(id);
          return r && r->status == status;
        },
        deadline);
  }
  std::int64_t executed(const std::string& route) {
    auto r = sim("GET", "/_sim/executions");
    auto v = field(r->body, {"by_route", route});
    return v.empty() ? 0 : std::stoll(v);
  }
  std::set<std::string> keys_received(const std::string& route) {
    auto r = sim("GET", "/_sim/calls?route=" + route);
    simdjson::dom::parser p;
    simdjson::dom::array calls;
    std::set<std::string> keys;
    if (p.parse(r->body)["calls"].get_array().get(calls) != simdjson::SUCCESS) return keys;
    for (auto c : calls) {
      std::string_view k;
      if (c["idempotency_key"].get_string().get(k) == simdjson::SUCCESS) keys.emplace(k);
    }
    return keys;
  }
  std::size_t calls_received(const std::string& route) {
    auto r = sim("GET", "/_sim/calls?route=" + route);
    simdjson::dom::parser p;
    simdjson::dom::array calls;
    if (p.parse(r->body)["calls"].get_array().get(calls) != simdjson::SUCCESS) return 0;
    return calls.size();
  }

  std::string dir_;
  CertFiles cert_;
  std::optional<ChildProcess> sim_;
  std::uint16_t port_ = 0;
  std::optional<PostgresServer> pg_;  // outlives the stores on it
  std::unique_ptr<storage::Store> store_, worker_store_;
  core::Registry registry_;
  std::optional<klarna::ApiClient> client_;
  std::optional<processor::OutboxWorker> worker_;
  std::mutex mu_;
  std::vector<storage::PublishRow> published_;
};

TEST_F(OutboxWorkerTest, FinalAuthorizationCreatesTheTransactionAndCapturesItOnce) {
  start_worker();
  const auto a = approved("v2", 11800);
  const auto id = queue(final_authorization(a));
  ASSERT_TRUE(wait_status(id, storage::OutboxStatus::succeeded)) << read_file(dir_ + "/sim.log");
  EXPECT_EQ(row(id)->result, "APPROVED");
  EXPECT_EQ(row(id)->attempts, 1);
  const auto request = store_->find_request(a.id);
  ASSERT_TRUE(request && request->payment_transaction_id);
  EXPECT_EQ(request->authorization_result, "APPROVED");
  // Capture after authorization: queued from the answer, executed, booked.
  ASSERT_TRUE(wait_until(
      [&] {
        auto t = store_->find_transaction(*request->payment_transaction_id);
        return t && t->captured_amount == 11800;
      },
      std::chrono::seconds(30)));
  const auto t = store_->find_transaction(*request->payment_transaction_id);
  EXPECT_EQ(t->payment_request_id, a.id);
  EXPECT_EQ(t->state, "COMPLETED");
  EXPECT_EQ(executed("payment.authorize"), 1);
  EXPECT_EQ(executed("payment.transactions.capture"), 1);
  // The call carried the token header and the request's amount, currency, reference.
  auto calls = sim("GET", "/_sim/calls?route=payment.authorize");
  EXPECT_NE(calls->body.find("11800"), std::string::npos) << calls->body;
  EXPECT_NE(calls->body.find("ref-11800"), std::string::npos);
  EXPECT_NE(calls->body.find(a.token), std::string::npos) << "token header as received";
  std::lock_guard lock(mu_);
  EXPECT_FALSE(published_.empty()) << "state changes handed to the producer";
}

// PostgreSQL, N processors (docs/OPERATIONS.md, "Outbox calls"): processor A
// stalls past its claim lease (Klarna answers slowly), B takes the call over;
// A's late answer is dropped (none of its effects written, counted once even
// though its first recording fails at commit and is done again), and B's
// resend with the same key is applied once. Its own PostgreSQL server (about
// a second) and a 1.2 s answer: a few seconds in all.
TEST_F(OutboxWorkerTest, OnPostgresALateAnswerAfterATakeOverIsDroppedAndAppliedOnceByTheOther) {
  using namespace std::chrono_literals;
  pg_.emplace();
  constexpr auto kLease = 300ms;
  auto open = [&](const std::string& instance) {
    storage::PostgresSettings s;
    s.dsn = pg_->dsn();
    s.instance = instance;
    s.claim_lease = kLease;
    return storage::open_postgres_store(s);
  };
  store_ = open("test");
  worker_store_ = open("proc-a");
  auto b_store = open("proc-b");
  // The first transaction that records a call attempt fails at its commit, as
  // a serialization failure (40001) would: the batch rolls back and is recorded
  // again, and what it counts must be counted once.
  pg_->fail_commits_writing("call_attempts", 1);
  auto settings = client_settings(dir_ + "/api-key");
  settings.request_timeout = 10s;
  client_.emplace(settings);
  auto ws = worker_settings();
  // A's own lease is long: it takes no row back (neither its own nor B's)
  // while the test runs; B claims with kLease.
  ws.claim_lease = 60s;
  faults(R"(["payment.authorize:latency:100:1200"])");
  worker_.emplace(ws, *worker_store_, *client_, registry_, publisher());
  worker_->start();

  const auto a = approved("v2", 12300);
  const auto id = queue(final_authorization(a));
  ASSERT_TRUE(wait_status(id, storage::OutboxStatus::in_flight, 10s));
  // B claims it once A's lease has run out (A's answer still on its way).
  std::vector<storage::OutboxRow> taken;
  ASSERT_TRUE(wait_until(
      [&] {
        taken = b_store->claim_due_outbox(
            {.now_ms = now_ms(), .limit = 10, .lease_ms = kLease.count()});
        return !taken.empty();
      },
      5s));
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].attempts, 2) << "A's answer came back before B took the call over";
  // A's answer recorded (its attempt in the trace), then A stopped.
  ASSERT_TRUE(wait_until([&] { return !store_->call_attempts(id).empty(); }, 10s));
  worker_.reset();
  EXPECT_NE(registry_.render().find("kpay_processor_outbox_record_conflicts_total 1\n"),
            std::string::npos)
      << "the first recording failed at its commit, a conflict\n"
      << registry_.render();
  EXPECT_NE(registry_.render().find("kpay_processor_outbox_record_errors_total 0\n"),
            std::string::npos)
      << "a conflict is no storage error\n"
      << registry_.render();
  EXPECT_NE(registry_.render().find("kpay_processor_outbox_answers_dropped_total 1\n"),
            std::string::npos)
      << registry_.render();
  // Nothing of A's answer: no transaction, no follow-up call, no publication.
  EXPECT_EQ(row(id)->status, storage::OutboxStatus::in_flight);
  EXPECT_FALSE(store_->find_request(a.id)->payment_transaction_id);
  EXPECT_EQ(store_->list_outbox(std::nullopt, 10).size(), 1u) << "a follow-up of A's answer";
  {
    std::lock_guard lock(mu_);
    EXPECT_TRUE(published_.empty());
  }
  auto attempts = store_->call_attempts(id);
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_NE(attempts[0].summary.value_or("").find("answer dropped"), std::string::npos);

  // B (started: it releases its own claims) resends with the same key and
  // applies the answer once.
  faults("[]");
  core::Registry b_registry;
  klarna::ApiClient b_client(settings);
  ws.claim_lease = kLease;
  processor::OutboxWorker b(ws, *b_store, b_client, b_registry, publisher());
  b.start();
  ASSERT_TRUE(wait_status(id, storage::OutboxStatus::succeeded, 20s));
  const auto request = store_->find_request(a.id);
  ASSERT_TRUE(request && request->payment_transaction_id);
  ASSERT_TRUE(wait_until(
      [&] {
        auto t = store_->find_transaction(*request->payment_transaction_id);
        return t && t->captured_amount == 12300;
      },
      20s));
  b.stop(5s);
  EXPECT_EQ(executed("payment.authorize"), 1);
  EXPECT_EQ(calls_received("payment.authorize"), 2u);
  EXPECT_EQ(keys_received("payment.authorize").size(), 1u) << "resent with the same key";
  EXPECT_EQ(executed("payment.transactions.capture"), 1);
  EXPECT_EQ(store_->call_attempts(id).size(), 2u);
  EXPECT_EQ(b_registry.render().find("kpay_processor_outbox_answers_dropped_total 1"),
            std::string::npos);
}

TEST_F(OutboxWorkerTest, ConfirmAuthorizesTheGen1Request) {
  start_worker("", processor::CapturePolicy::on_command);
  const auto a = approved("v1", 2000);
  processor::Confirm c;
  c.payment_request_id = a.id;
  c.confirmation_token = a.token;
  c.amount = 2000;
  c.currency = "EUR";
  const auto id = queue(c);
  ASSERT_TRUE(wait_status(id, storage::OutboxStatus::succeeded));
  const auto request = store_->find_request(a.id);
  EXPECT_EQ(request->state, "AUTHORIZED");
  ASSERT_TRUE(request->payment_transaction_id);
  EXPECT_EQ(executed("payment.confirm"), 1);
  EXPECT_EQ(executed("payment.transactions.capture"), 0) << "on_command: no capture";
  // The stored path keeps the token out: only the sent path had it.
  EXPECT_EQ(row(id)->path.find(a.token), std::string::npos);
}

class RetryableFault : public OutboxWorkerTest,
                       public ::testing::WithParamInterface<const char*> {};

// Each retryable fault, at 100 % until the call was tried at least three
// times; then Klarna recovers. One execution, one key, however many attempts.
TEST_P(RetryableFault, IsRetriedWithTheSameKeyUntilItSucceeds) {
  faults(std::string(R"([")") + GetParam() + "\"]");
  start_worker("", processor::CapturePolicy::on_command);
  const auto a = approved("v2", 5000);
  const auto id = queue(final_authorization(a));
  ASSERT_TRUE(wait_until([&] { return calls_received("payment.authorize") >= 3; },
                         std::chrono::seconds(30)));
  EXPECT_NE(row(id)->status, kpay::storage::OutboxStatus::failed);
  faults("[]");
  ASSERT_TRUE(wait_status(id, storage::OutboxStatus::succeeded))
      << row(id)->last_error.value_or("");
  EXPECT_GE(row(id)->attempts, 3);
  EXPECT_EQ(executed("payment.authorize"), 1);
  EXPECT_EQ(keys_received("payment.authorize").size(), 1u);
  EXPECT_EQ(store_->find_request(a.id)->authorization_result, "APPROVED");
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, RetryableFault,
    ::testing::Values("payment.authorize:429:100:0", "payment.authorize:500:100:500",
                      "payment.authorize:503:100", "payment.authorize:timeout:100:1500",
                      "payment.authorize:drop:100", "payment.authorize:drop-after:100"),
    [](const auto& info) {
      std::string name = info.param;
      name = name.substr(name.find(':') + 1);
      name = name.substr(0, name.find(':'));
      if (name == "drop-after") return std::string("DropAfterExecuting");
      if (name == "drop") return std::string("ConnectionReset");
      if (name == "timeout") return std::string("Timeout");
      return std::string("Status") + (name == "5xx" ? "503" : name) + std::to_string(info.index);
    });

TEST_F(OutboxWorkerTest, PermanentAnswersFailAtOnce) {
  start_worker("", processor::CapturePolicy::on_command);
  // 400: an amount the approved request does not have.
  auto a = approved("v2", 7000);
  auto wrong = final_authorization(a);
  wrong.amount = 7001;
  const auto bad_amount = queue(wrong);
  ASSERT_TRUE(wait_status(bad_amount, storage::OutboxStatus::failed));
  EXPECT_EQ(row(bad_amount)->last_status, 400);
  EXPECT_EQ(row(bad_amount)->attempts, 1);
  // 403: more captured than authorized.
  auto b = approved("v2", 3000);
  const auto fa = queue(final_authorization(b));
  ASSERT_TRUE(wait_status(fa, storage::OutboxStatus::succeeded));
  processor::Capture over;
  over.payment_transaction_id = *store_->find_request(b.id)->payment_transaction_id;
  over.amount = 3001;
  const auto over_capture = queue(over);
  ASSERT_TRUE(wait_status(over_capture, storage::OutboxStatus::failed));
  EXPECT_EQ(row(over_capture)->last_status, 403);
  EXPECT_EQ(row(over_capture)->attempts, 1);
  EXPECT_EQ(calls_received("payment.transactions.capture"), 1u) << "refused once, not retried";
  // A failed row can be put back by an operator.
  EXPECT_TRUE(store_->retry_outbox(over_capture, now_ms()));
  EXPECT_EQ(row(over_capture)->status, kpay::storage::OutboxStatus::pending);
}

TEST_F(OutboxWorkerTest, WrongCredentialsAre401AndNeverLogged) {
  std::ofstream(dir_ + "/wrong-key") << "not-the-key\n";
  std::filesystem::permissions(dir_ + "/wrong-key", std::filesystem::perms::owner_read |
                                                        std::filesystem::perms::owner_write);
  start_worker(dir_ + "/wrong-key", processor::CapturePolicy::on_command);
  const auto a = approved("v2", 1200);
  const auto id = queue(final_authorization(a));
  ASSERT_TRUE(wait_status(id, storage::OutboxStatus::failed));
  EXPECT_EQ(row(id)->last_status, 401);
  EXPECT_EQ(row(id)->attempts, 1);
  EXPECT_EQ(row(id)->last_error->find("not-the-key"), std::string::npos);
}

TEST_F(OutboxWorkerTest, ManyCallsRunConcurrently) {
  faults(R"(["payment.authorize:latency:100:50"])");
  std::vector<std::int64_t> ids;
  for (int i = 0; i < 40; ++i) ids.push_back(queue(final_authorization(approved("v2", 100 + i))));
  start_worker("", processor::CapturePolicy::on_command);
  ASSERT_TRUE(wait_until(
      [&] {
        return std::all_of(ids.begin(), ids.end(), [&](auto id) {
          return row(id)->status == kpay::storage::OutboxStatus::succeeded;
        });
      },
      std::chrono::seconds(60)));
  EXPECT_EQ(executed("payment.authorize"), 40);
  EXPECT_GT(client_->stats().peak_in_flight, 4u) << "calls overlap: pooled and concurrent";
}

// Deadlines are state: a call whose 60-minute window is closing is reported
// once when it enters the warning window and once when it passes, and counted.
TEST(CallDeadlineWatch, ReportsEachCallOnceWhenAtRiskAndOnceWhenOverdue) {
  const auto dir = make_temp_dir("call-deadlines");
  storage::StateStore store(dir + "/state.db");
  processor::FinalAuthorization f;
  f.payment_request_id = "krn:payment:eu1:request:r1";
  f.token = "token-1";
  f.amount = 100;
  f.currency = "EUR";
  const std::int64_t t0 = 1'800'000'000'000;
  processor::FollowUpOrigin origin{kAccount, "event-1", t0, t0 + 3'600'000, ""};
  ASSERT_TRUE(store.insert_outbox(processor::outbox_row(f, origin)));
  core::Registry registry;
  processor::CallDeadlineWatch watch(store, std::chrono::minutes(10));
  watch.register_metrics(registry);
  EXPECT_TRUE(watch.check(t0 + 40 * 60'000).empty()) << "20 minutes left: not yet";
  EXPECT_EQ(watch.check(t0 + 51 * 60'000).size(), 1u) << "9 minutes left: at risk";
  EXPECT_TRUE(watch.check(t0 + 52 * 60'000).empty()) << "reported once";
  EXPECT_EQ(watch.check(t0 + 61 * 60'000).size(), 1u) << "passed: reported again, once";
  EXPECT_TRUE(watch.check(t0 + 62 * 60'000).empty());
  const auto d = store.deadlines(t0 + 61 * 60'000, 0, 10 * 60'000);
  EXPECT_EQ(d.calls_overdue, 1);
  EXPECT_EQ(d.nearest_call_due_ms, t0 + 3'600'000);
  std::filesystem::remove_all(dir);
}

TEST(RetryDelay, GrowsExponentiallyWithJitterCappedAndHonoursTheHint) {
  processor::WorkerSettings s;
  s.initial_backoff = std::chrono::milliseconds(100);
  s.max_backoff = std::chrono::milliseconds(1000);
  using ms = std::chrono::milliseconds;
  EXPECT_EQ(processor::retry_delay(s, 1, ms(0), 0.999), ms(99));
  EXPECT_EQ(processor::retry_delay(s, 1, ms(0), 0.0), ms(50));
  EXPECT_EQ(processor::retry_delay(s, 3, ms(0), 0.999), ms(399));
  EXPECT_EQ(processor::retry_delay(s, 30, ms(0), 0.999), ms(999));
  EXPECT_EQ(processor::retry_delay(s, 1, ms(5000), 0.5), ms(5000)) << "X-Ratelimit-Reset wins";
}

}  // namespace
