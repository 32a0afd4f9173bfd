// Commands and calls as Klarna specifies and sends them (docs/KLARNA-FIDELITY.md,
// "Commands and calls"), against klarna-sim as a separate process over HTTPS:
// commands applied as the processor applies them (BatchApplier on a real
// SQLite file), calls made by the outbox worker through the real API client,
// results read from what the worker publishes, and what Klarna received read
// from the sim's call log. The sim's answer shape (full / thin / bare) is
// switched per test.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <filesystem>
#include <fstream>
#include <mutex>

#include "base64url.hpp"
#include "child_process.hpp"
#include "http_client.hpp"
#include "kpay/core/metrics.hpp"
#include "kpay/core/percent_encode.hpp"
#include "kpay/klarna/api_client.hpp"
#include "kpay/processor/batch_applier.hpp"
#include "kpay/processor/follow_ups.hpp"
#include "kpay/processor/outbox_worker.hpp"
#include "kpay/storage/state_store.hpp"
#include "tls_cert.hpp"

using namespace kpay;
using namespace kpay::test;

namespace {

const std::string kAccount = "krn:partner:global:account:test:SIMACCOUNT";
const std::string kApiKey = "fidelity-test-api-key";
const std::string kStepUp =
    R"({"payment_request_reference":"pr-\u00e4\/1","payment_request_expires_at":)"
    R"("2030-01-01T00:00:00Z","customer_interaction_config":{"method":"HANDOVER",)"
    R"("return_url":"https:\/\/partner.example\/back?x=10.50"}})";

std::string at(const std::string& json, std::initializer_list<std::string_view> path) {
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

std::string jwt(std::string_view payload) {
  return base64url(R"({"alg":"ES256","kid":"k1"})") + "." + base64url(payload) + "." +
         base64url("signature");
}

class FidelityCalls : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir("fidelity-calls");
    cert_ = write_self_signed_cert(dir_);
    std::ofstream(dir_ + "/api-key") << kApiKey << "\n";
    std::filesystem::permissions(dir_ + "/api-key", std::filesystem::perms::owner_read |
                                                        std::filesystem::perms::owner_write);
    sim_.emplace(std::vector<std::string>{binary("sim/klarna-sim"), "--port", "0", "--port-file",
                                          dir_ + "/sim.port", "--set", "sim.tls=true", "--set",
                                          "sim.tls_certificate=" + cert_.certificate, "--set",
                                          "sim.tls_private_key=" + cert_.private_key, "--set",
                                          "sim.api_key=" + kApiKey},
                 dir_ + "/sim.log");
    ASSERT_TRUE(wait_until([&] { return !at(read_file(dir_ + "/sim.port"), {"port"}).empty(); },
                           std::chrono::seconds(20)))
        << read_file(dir_ + "/sim.log");
    port_ = static_cast<std::uint16_t>(std::stoi(at(read_file(dir_ + "/sim.port"), {"port"})));
    store_.emplace(dir_ + "/state.db");
    applier_.emplace(*store_, topics_);
    klarna::ClientSettings cs;
    cs.environment = klarna::Environment::custom;
    cs.base_url = "https://127.0.0.1:" + std::to_string(port_);
    cs.ca_file = cert_.certificate;
    cs.credentials_file = dir_ + "/api-key";
    cs.request_timeout = std::chrono::milliseconds(2000);
    client_.emplace(cs);
    processor::WorkerSettings ws;
    ws.initial_backoff = std::chrono::milliseconds(20);
    ws.max_backoff = std::chrono::milliseconds(100);
    ws.poll_interval = std::chrono::milliseconds(20);
    ws.follow_ups.default_capture = processor::CapturePolicy::on_command;
    ws.topics = topics_;
    worker_store_.emplace(dir_ + "/state.db");
    worker_.emplace(ws, *worker_store_, *client_, registry_,
                    [this](std::vector<storage::PublishRow> rows) {
                      std::lock_guard lock(mu_);
                      for (auto& r : rows) {
                        if (r.topic == topics_.command_results) results_.push_back(r.value);
                      }
                    });
    worker_->start();
  }
  void TearDown() override {
    worker_.reset();
    client_.reset();
    applier_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  std::optional<HttpResponse> sim(const std::string& method, const std::string& path,
                                  const std::string& body = "",
                                  std::map<std::string, std::string> headers = {}) {
    headers.emplace("Authorization", "Basic " + kApiKey);
    return http_request(port_, method, path, body, headers, true);
  }
  void answers(const std::string& mode) {
    auto r = sim("POST", "/_sim/answers", R"({"mode":")" + mode + "\"}");
    ASSERT_TRUE(r && r->status == 200);
  }
  // Applies one command as the processor does; its immediate results are kept.
  void send(const std::string& key, const std::string& body) {
    processor::InputMessage m{topics_.commands, 0, offset_++, key, body};
    auto r = applier_->apply(std::span<const processor::InputMessage>(&m, 1));
    std::lock_guard lock(mu_);
    for (const auto& p : r.publications) {
      if (p.topic == topics_.command_results) results_.push_back(p.value);
    }
    worker_->wake();
  }
  std::vector<std::string> results_of(const std::string& id) {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (const auto& r : results_) {
      if (at(r, {"command_id"}) == id) out.push_back(r);
    }
    return out;
  }
  // The command's final result (rejected, succeeded or failed).
  std::string final_result(const std::string& id) {
    std::string found;
    wait_until(
        [&] {
          for (const auto& r : results_of(id)) {
            if (at(r, {"status"}) != "accepted") found = r;
          }
          return !found.empty();
        },
        std::chrono::seconds(30));
    return found;
  }
  std::string command(const std::string& key, const std::string& body, const std::string& id) {
    send(key, body);
    return final_result(id);
  }
  static std::string authorize(const std::string& id, std::int64_t amount,
                               const std::string& extra) {
    return R"({"command_id":")" + id + R"(","type":"authorize","partner_account_id":")" + kAccount +
           R"(","amount":)" + std::to_string(amount) +
           R"(,"currency":"EUR","payment_transaction_reference":"ref-)" + id +
           R"(","capture":"LATER")" + extra + "}";
  }
  // The calls the sim received on `route`, each {method, path, body, headers, …}.
  std::vector<std::string> calls(const std::string& route) {
    auto r = sim("GET", "/_sim/calls?route=" + route);
    simdjson::dom::parser p;
    simdjson::dom::array list;
    std::vector<std::string> out;
    if (!r || p.parse(r->body)["calls"].get_array().get(list) != simdjson::SUCCESS) return out;
    for (auto c : list) out.push_back(simdjson::minify(c));
    return out;
  }
  std::int64_t executed(const std::string& route) {
    auto v = at(sim("GET", "/_sim/executions")->body, {"by_route", route});
    return v.empty() ? 0 : std::stoll(v);
  }
  // An APPROVED transaction (customer token), its id.
  std::string approved(const std::string& id, std::int64_t amount) {
    const auto r = command("ref-" + id, authorize(id, amount, R"(,"customer_token":"ct-1")"), id);
    EXPECT_EQ(at(r, {"status"}), "succeeded") << r;
    EXPECT_EQ(at(r, {"result"}), "APPROVED") << r;
    return at(r, {"payment_transaction_id"});
  }

  std::string dir_;
  CertFiles cert_;
  std::optional<ChildProcess> sim_;
  std::uint16_t port_ = 0;
  klarna::Topics topics_;
  std::optional<storage::StateStore> store_, worker_store_;
  std::optional<processor::BatchApplier> applier_;
  std::optional<klarna::ApiClient> client_;
  core::Registry registry_;
  std::optional<processor::OutboxWorker> worker_;
  std::mutex mu_;
  std::vector<std::string> results_;
  std::int64_t offset_ = 0;
};

// Defect 2: a PAYMENT_PENDING_CONFIRMATION token is confirmed at once with its
// payment_confirmation_token, once, keyed by the command; no authorization.
TEST_F(FidelityCalls, PendingConfirmationTokenIsConfirmedOnceKeyedByTheCommand) {
  auto created = sim("POST", klarna::account_path(kAccount) + "/payment/requests",
                     R"({"currency":"EUR","amount":1500,"payment_request_reference":"gen1"})");
  ASSERT_TRUE(created && created->status == 201);
  const auto request = at(created->body, {"payment_request_id"});
  auto approve = sim("POST", "/_sim/payment-requests/" + core::percent_encode(request) + "/approve",
                     R"({"flow":"v1"})");
  const auto confirmation = at(approve->body, {"state_context", "payment_confirmation_token"});
  ASSERT_FALSE(confirmation.empty()) << approve->body;
  const auto token = jwt(R"({"status":"PAYMENT_PENDING_CONFIRMATION","shopping_session_id":"s",)"
                         R"("payment_confirmation_token":")" +
                         confirmation + R"("})");
  const auto body = authorize("pc-1", 1500, R"(,"interoperability_token":")" + token + "\"");
  const auto r = command("ref-pc-1", body, "pc-1");
  EXPECT_EQ(at(r, {"status"}), "succeeded") << r;
  EXPECT_EQ(at(r, {"result"}), "APPROVED") << r;
  EXPECT_EQ(at(r, {"payment_request_id"}), request) << r;
  EXPECT_FALSE(at(r, {"payment_transaction_id"}).empty()) << r;
  const auto first = results_of("pc-1").front();
  EXPECT_EQ(at(first, {"interoperability_status"}), "PAYMENT_PENDING_CONFIRMATION") << first;
  send("ref-pc-1", body);  // a resend acts once
  EXPECT_EQ(executed("payment.confirm"), 1);
  EXPECT_EQ(executed("payment.authorize"), 0);
  const auto rows = store_->outbox("ref-pc-1");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].idempotency_key, processor::idempotency_key("confirm", "pc-1", ""));
  EXPECT_EQ(rows[0].path.find(confirmation), std::string::npos) << "the token stays out of paths";
  EXPECT_EQ(r.find(confirmation), std::string::npos);
}

// Defect 3: a STEP_UP answer with its ids only under customer_interaction is
// read, and the request it created is tracked at once (a cancel right after).
TEST_F(FidelityCalls, StepUpIdsOnlyNestedAndTheRequestIsTrackedAtOnce) {
  answers("thin");
  const auto r =
      command("ref-su-1", authorize("su-1", 2500, R"(,"step_up_config":)" + kStepUp), "su-1");
  ASSERT_EQ(at(r, {"status"}), "succeeded") << r;
  EXPECT_EQ(at(r, {"result"}), "STEP_UP_REQUIRED");
  const auto request = at(r, {"payment_request_id"});
  ASSERT_FALSE(request.empty()) << r;
  EXPECT_FALSE(at(r, {"payment_request_url"}).empty()) << r;
  const auto c = command(
      request,
      R"({"command_id":"su-cancel","type":"cancel","payment_request_id":")" + request + "\"}",
      "su-cancel");
  EXPECT_EQ(at(c, {"status"}), "succeeded") << c;
  EXPECT_EQ(at(sim("GET", klarna::account_path(kAccount) + "/payment/requests/" +
                              core::percent_encode(request))
                   ->body,
               {"state"}),
            "CANCELED");
  const auto row = store_->find_request(request);
  ASSERT_TRUE(row);
  EXPECT_EQ(row->account_id, kAccount);
  EXPECT_EQ(row->amount, 2500);
}

// Defect 4: money answers carrying only the new id are success, booked with
// what was sent; the APPROVED transaction's amount comes from the request.
TEST_F(FidelityCalls, ThinMoneyAnswersAreSuccessBookedWithWhatWasSent) {
  answers("thin");
  const auto tx = approved("thin-a", 1000);
  ASSERT_FALSE(tx.empty());
  const auto cap = command(tx,
                           R"({"command_id":"thin-c","type":"capture","payment_transaction_id":")" +
                               tx + R"(","amount":400})",
                           "thin-c");
  EXPECT_EQ(at(cap, {"status"}), "succeeded") << cap;
  EXPECT_FALSE(at(cap, {"payment_capture_id"}).empty()) << cap;
  EXPECT_EQ(at(cap, {"amount"}), "400");
  const auto ref = command(tx,
                           R"({"command_id":"thin-r","type":"refund","payment_transaction_id":")" +
                               tx + R"(","amount":100,"reference":"rf-1"})",
                           "thin-r");
  EXPECT_EQ(at(ref, {"status"}), "succeeded") << ref;
  EXPECT_FALSE(at(ref, {"payment_refund_id"}).empty()) << ref;
  const auto t = store_->find_transaction(tx);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->amount, 1000);
  EXPECT_EQ(t->captured_amount, 400);
  EXPECT_EQ(t->refunded_amount, 100);
  const auto tx2 = approved("thin-v", 300);
  const auto v = command(
      tx2, R"({"command_id":"thin-void","type":"void","payment_transaction_id":")" + tx2 + "\"}",
      "thin-void");
  EXPECT_EQ(at(v, {"status"}), "succeeded") << v;
}

// Defect 4: an answer without even the new id: the id is read back.
TEST_F(FidelityCalls, BareMoneyAnswersAreReadBackNeverFailed) {
  const auto tx = approved("bare-a", 1000);
  answers("bare");
  const auto cap = command(tx,
                           R"({"command_id":"bare-c","type":"capture","payment_transaction_id":")" +
                               tx + R"(","amount":600,"reference":"cap-ref"})",
                           "bare-c");
  EXPECT_EQ(at(cap, {"status"}), "succeeded") << cap;
  const auto capture_id = at(cap, {"payment_capture_id"});
  ASSERT_FALSE(capture_id.empty()) << cap;
  const auto read = sim("GET", klarna::account_path(kAccount) + "/payment/captures/" +
                                   core::percent_encode(capture_id));
  EXPECT_EQ(at(read->body, {"capture_amount"}), "600") << "the id read back is Klarna's capture";
  const auto ref = command(tx,
                           R"({"command_id":"bare-r","type":"refund","payment_capture_id":")" +
                               capture_id + R"(","amount":200})",
                           "bare-r");
  EXPECT_EQ(at(ref, {"status"}), "succeeded") << ref;
  EXPECT_FALSE(at(ref, {"payment_refund_id"}).empty()) << ref;
  EXPECT_EQ(store_->find_transaction(tx)->captured_amount, 600);
  EXPECT_EQ(store_->find_transaction(tx)->refunded_amount, 200);
  EXPECT_EQ(executed("payment.transactions.capture"), 1);
}

// Defects 5 and 6: forwarded objects reach Klarna as the exact JSON text
// received; payment_option_id and request_customer_token go through; the
// result carries the customer token Klarna returned.
TEST_F(FidelityCalls, ForwardedDataReachesKlarnaByteForByte) {
  const std::string purchase =
      R"({"purchase_reference":"p-\u00e4\/1","line_items":[{"name":"M\u00fcsli",)"
      R"("unit_price":10.50,"quantity":1,"ean":12345678901234567890}],"customer":{}})";
  const std::string data = R"("opaque \u00e4 data with \/ slash and \"quotes\"")";
  const std::string request_token =
      R"({"scopes":["payment:customer_present"],"customer_token_reference":"ctr-\u00e4"})";
  const auto interop = jwt(R"({"status":"PAYMENT_PREPARED","shopping_session_id":"s"})");
  const auto body =
      authorize("fwd-1", 1050,
                R"(,"customer_token":"ct-fwd","interoperability_token":")" + interop +
                    R"(","interoperability_data":)" + data + R"(,"supplementary_purchase_data":)" +
                    purchase + R"(,"step_up_config":)" + kStepUp +
                    R"(,"payment_option_id":"opt-7","request_customer_token":)" + request_token);
  const auto r = command("ref-fwd-1", body, "fwd-1");
  EXPECT_EQ(at(r, {"status"}), "succeeded") << r;
  EXPECT_FALSE(at(r, {"customer_token"}).empty()) << r;
  EXPECT_EQ(at(results_of("fwd-1").front(), {"interoperability_status"}), "PAYMENT_PREPARED");
  const auto sent = calls("payment.authorize");
  ASSERT_EQ(sent.size(), 1u);
  const auto received = at(sent[0], {"body"});
  EXPECT_NE(received.find(R"("supplementary_purchase_data":)" + purchase), std::string::npos)
      << received;
  EXPECT_NE(received.find(R"("step_up_config":)" + kStepUp), std::string::npos) << received;
  EXPECT_NE(received.find(R"("interoperability_data":)" + data), std::string::npos) << received;
  EXPECT_NE(received.find(R"("request_customer_token":)" + request_token), std::string::npos);
  EXPECT_NE(received.find(R"("payment_option_id":"opt-7")"), std::string::npos) << received;
  EXPECT_EQ(at(sent[0], {"headers", "klarna-interoperability-token"}), interop);
}

// The Interoperability API: sdk_token → POST …/interoperability/sdk-tokens with
// the token header byte for byte; the result carries the SDK token, the
// outbox row does not.
TEST_F(FidelityCalls, SdkTokenCommandAsksTheInteroperabilityApi) {
  const auto token = jwt(R"({"status":"PAYMENT_SUPPORTED","shopping_session_id":"s"})");
  const auto r = command("sdk-key",
                         R"({"command_id":"sdk-1","type":"sdk_token","partner_account_id":")" +
                             kAccount + R"(","interoperability_token":")" + token + "\"}",
                         "sdk-1");
  EXPECT_EQ(at(r, {"status"}), "succeeded") << r;
  const auto sdk = at(r, {"sdk_token"});
  EXPECT_EQ(sdk.rfind("sim-sdk-token-", 0), 0u) << r;
  const auto sent = calls("interoperability.sdk-tokens");
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(at(sent[0], {"headers", "klarna-interoperability-token"}), token);
  EXPECT_EQ(at(sent[0], {"path"}), klarna::account_path(kAccount) + "/interoperability/sdk-tokens");
  EXPECT_FALSE(at(sent[0], {"idempotency_key"}).empty());
  const auto rows = store_->outbox("sdk-key");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].result, "ISSUED");
  EXPECT_EQ(rows[0].request_body.find(token), std::string::npos);
}

// One call of the fixture, placeholders filled in; sent to the sim process.
struct ReplayedCall {
  std::string method, path, body;
  std::map<std::string, std::string> headers;
};

std::string fill(std::string text, const std::map<std::string, std::string>& values) {
  for (const auto& [name, value] : values) {
    for (auto at = text.find(name); at != std::string::npos; at = text.find(name, at)) {
      text.replace(at, name.size(), value);
      at += value.size();
    }
  }
  return text;
}

ReplayedCall fixture_call(const std::string& name, const std::map<std::string, std::string>& v) {
  static const std::string text =
      read_file(KPAY_FIXTURES_DIR "/klarna-network-client/authorization-calls.json");
  simdjson::dom::parser p;
  simdjson::dom::element call = p.parse(text)[name];
  ReplayedCall c;
  c.method = std::string(call["method"].get_string().value());
  c.path = fill(std::string(call["path"].get_string().value()), v);
  c.body = fill(std::string(call["body"].get_string().value()), v);
  for (auto [k, value] : call["headers"].get_object()) {
    c.headers[std::string(k)] = fill(std::string(value.get_string().value()), v);
  }
  return c;
}

// A real Klarna Network client's request shapes, replayed against the sim
// process: initial authorization with step_up_config, payment_option_id and
// the interoperability token; the STEP_UP ids read from customer_interaction
// only; the final authorization sending step_up_config again; a token charge.
TEST_F(FidelityCalls, RealClientRequestShapesReplayAgainstTheSim) {
  std::map<std::string, std::string> v = {
      {"{account}", core::percent_encode(kAccount)},
      {"{key}", "replay1"},
      {"{interoperability_token}", jwt(R"({"status":"PAYMENT_PREPARED"})")}};
  auto send_call = [&](const std::string& name) {
    const auto c = fixture_call(name, v);
    auto headers = c.headers;
    headers.emplace("Authorization", "Basic " + kApiKey);
    auto r = http_request(port_, c.method, c.path, c.body, headers, true);
    EXPECT_TRUE(r) << name;
    return r ? *r : HttpResponse{};
  };
  const auto initial = send_call("initial_authorization");
  ASSERT_EQ(initial.status, 200) << initial.body;
  EXPECT_FALSE(initial.headers.count("klarna-correlation-id") == 0);
  EXPECT_EQ(at(initial.body, {"payment_transaction_response", "result"}), "STEP_UP_REQUIRED");
  const auto request = at(initial.body, {"payment_request", "state_context", "customer_interaction",
                                         "payment_request_id"});
  const auto url = at(initial.body, {"payment_request", "state_context", "customer_interaction",
                                     "payment_request_url"});
  ASSERT_FALSE(request.empty()) << initial.body;
  EXPECT_FALSE(url.empty());
  const auto sent = calls("payment.authorize");
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(at(sent[0], {"body"}), fixture_call("initial_authorization", v).body);
  EXPECT_EQ(at(sent[0], {"headers", "klarna-interoperability-token"}),
            v["{interoperability_token}"]);

  auto approved =
      sim("POST", "/_sim/payment-requests/" + core::percent_encode(request) + "/approve",
          R"({"flow":"v2"})");
  v["{session_token}"] = at(approved->body, {"state_context", "klarna_network_session_token"});
  ASSERT_FALSE(v["{session_token}"].empty()) << approved->body;
  const auto final_auth = send_call("final_authorization");
  ASSERT_EQ(final_auth.status, 200) << final_auth.body;
  EXPECT_EQ(at(final_auth.body, {"payment_transaction_response", "result"}), "APPROVED");
  EXPECT_FALSE(at(final_auth.body,
                  {"payment_transaction_response", "payment_transaction", "payment_transaction_id"})
                   .empty());

  v["{customer_token}"] = "krn:customer-token:replay";
  const auto charge = send_call("token_charge");
  ASSERT_EQ(charge.status, 200) << charge.body;
  EXPECT_EQ(at(charge.body, {"payment_transaction_response", "result"}), "APPROVED");
  EXPECT_EQ(at(charge.body, {"payment_transaction_response", "payment_transaction", "state"}),
            "COMPLETED");
}

}  // namespace
