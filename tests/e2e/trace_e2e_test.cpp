// One payment's whole story, end to end with the real processes (embedded
// Kafka, klarna-receiver over HTTPS, klarna-sim, klarna-processor, klarnactl):
// the receiver's traceparent header on the webhook's Kafka message → the
// processor's history row → the outbox row → the traceparent header each call
// attempt carried to klarna-sim → the header on the messages the processor
// published; and `klarnactl payments trace` listing every step once, in order.
//   - a final authorization answered 503 twice (sim fault), then 201;
//   - a webhook delivered a second time with Klarna's own traceparent: kept as
//     the trace id, listed as a duplicate;
//   - a capture command with a traceparent header and its result.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <algorithm>
#include <map>
#include <set>

#include "e2e_system.hpp"
#include "http_client.hpp"
#include "kafka_reader.hpp"
#include "kpay/core/traceparent.hpp"
#include "kpay/klarna/api_client.hpp"
#include "kpay/klarna/envelope.hpp"
#include "kpay/klarna/kafka_contract.hpp"

using namespace kpay;
using namespace kpay::test;

namespace {

const std::string kKeyId = "krn:partner:global:notification:signing-key:trace-0001";
const std::string kSecret = "trace-signing-key-NOT-REAL";
const std::string kApiKey = "trace-api-key-NOT-REAL";
const std::string kAccount = "krn:partner:global:account:test:TRACE001";
const std::string kCompleted = "payment.request.state-change.completed";

std::string trace_id(const std::string& traceparent) {
  return std::string(core::trace_id_of(traceparent));
}

// A step of `klarnactl payments trace --json`.
struct Step {
  std::string step, component, traceparent, event_id, event_type, operation, outcome, command_id,
      status, raw;
  std::int64_t at_ms = 0, outbox_id = -1, attempt = -1, http_status = 0;
};

std::int64_t int_at(simdjson::dom::element e, std::string_view key, std::int64_t otherwise) {
  std::int64_t v = 0;
  return e[key].get_int64().get(v) == simdjson::SUCCESS ? v : otherwise;
}

std::vector<Step> parse_trace(const std::string& json) {
  simdjson::dom::parser p;
  simdjson::dom::element root;
  std::vector<Step> out;
  if (p.parse(json).get(root) != simdjson::SUCCESS) return out;
  for (auto e : root["steps"]) {
    Step s;
    s.step = str_at(e, "step");
    s.component = str_at(e, "component");
    s.traceparent = str_at(e, "traceparent");
    s.event_id = str_at(e, "event_id");
    s.event_type = str_at(e, "event_type");
    s.operation = str_at(e, "operation");
    s.outcome = str_at(e, "outcome");
    s.command_id = str_at(e, "command_id");
    s.status = str_at(e, "status");
    s.at_ms = int_at(e, "at_ms", 0);
    s.outbox_id = int_at(e, "outbox_id", -1);
    s.attempt = int_at(e, "attempt", -1);
    s.http_status = int_at(e, "http_status", 0);
    s.raw = simdjson::minify(e);
    out.push_back(std::move(s));
  }
  return out;
}

std::string dump(const std::vector<Step>& steps) {
  std::string out;
  for (const auto& s : steps) out += s.raw + "\n";
  return out;
}

// Index of the only step matching `pred`; -1 (and a failure) when there is
// none or more than one.
template <class P>
int only(const std::vector<Step>& steps, P pred, const std::string& what) {
  int found = -1, count = 0;
  for (int i = 0; i < static_cast<int>(steps.size()); ++i) {
    if (pred(steps[i])) {
      found = i;
      ++count;
    }
  }
  EXPECT_EQ(count, 1) << what << "\n" << dump(steps);
  return count == 1 ? found : -1;
}

class TraceE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    system_ = new System({"trace-e2e", "trace", kKeyId, kSecret, kApiKey, {}});
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

  // A v2 payment request at the sim, started and approved by the customer:
  // its webhooks reach the processor, which queues the final authorization.
  static std::string approved_request(const std::string& reference) {
    const auto created = sys().sim(
        "POST", klarna::account_path(kAccount) + "/payment/requests",
        R"({"currency":"EUR","amount":1500,"payment_request_reference":")" + reference + R"("})");
    simdjson::dom::parser p;
    simdjson::dom::element e;
    EXPECT_EQ(p.parse(created).get(e), simdjson::SUCCESS) << created;
    const std::string id = str_at(e, "payment_request_id");
    EXPECT_FALSE(id.empty()) << created;
    sys().sim("POST", "/_sim/payment-requests/" + id + "/start", R"({"flow":"v2"})");
    const auto approved =
        sys().sim("POST", "/_sim/payment-requests/" + id + "/approve", R"({"flow":"v2"})");
    EXPECT_NE(approved.find("COMPLETED"), std::string::npos) << approved;
    return id;
  }

  static long long outbox_count(const std::string& where) {
    return query(sys().db(), "SELECT COUNT(*) FROM outbox WHERE " + where);
  }
  static std::string transaction_of(const std::string& request) {
    std::string txn;
    EXPECT_TRUE(wait_until(
        [&] {
          txn = query_text(sys().db(),
                           "SELECT payment_transaction_id FROM payment_requests "
                           "WHERE id = '" +
                               request + "'");
          return !txn.empty();
        },
        std::chrono::seconds(60)))
        << sys().processor_log();
    return txn;
  }

  static std::vector<Step> trace(const std::string& id) {
    auto [rc, out] = sys().ctl({"payments", "trace", id, "--json"});
    EXPECT_EQ(rc, 0) << out;
    return parse_trace(out);
  }

  // The messages of `topic` read so far whose header `name` is `value`.
  static std::vector<ConsumedMessage> messages(const std::string& topic, const std::string& name,
                                               const std::string& value, std::size_t at_least = 1) {
    std::vector<ConsumedMessage> out;
    KafkaReader reader(sys().bootstrap(), {topic}, 2);
    wait_until(
        [&] {
          out.clear();
          for (const auto& m : reader.drain(std::chrono::milliseconds(200))) {
            auto it = m.headers.find(name);
            if (it != m.headers.end() && it->second == value) out.push_back(m);
          }
          return out.size() >= at_least;
        },
        std::chrono::seconds(20));
    return out;
  }

  // Calls the sim received on `route` with this idempotency key: the
  // traceparent header of each.
  static std::vector<std::string> sent_traceparents(const std::string& route,
                                                    const std::string& key) {
    std::vector<std::string> out;
    for (const auto& call : sys().calls_with_key(route, key)) {
      simdjson::dom::parser p;
      out.push_back(str_at(p.parse(call).value()["headers"], "traceparent"));
    }
    return out;
  }

  static System* system_;
};

System* TraceE2E::system_ = nullptr;

TEST_F(TraceE2E, ARetriedCallIsOneTraceFromTheWebhookToKlarnaAndItsPublishedAnswer) {
  // Klarna answers the final authorization 503 until two attempts were made.
  sys().sim("POST", "/_sim/faults", R"({"rules":["payment.authorize:503:100"]})");
  const auto request = approved_request("trace-retry-1");
  const std::string row = "operation = 'final_authorization' AND entity_id = '" + request + "'";
  ASSERT_TRUE(wait_until([&] { return outbox_count(row + " AND attempts >= 2") == 1; },
                         std::chrono::seconds(60)))
      << sys().processor_log();
  sys().sim("POST", "/_sim/faults", R"({"rules":[]})");
  ASSERT_TRUE(wait_until([&] { return outbox_count(row + " AND status = 'succeeded'") == 1; },
                         std::chrono::seconds(60)))
      << sys().processor_log();
  const auto txn = transaction_of(request);

  const auto steps = trace(request);
  ASSERT_FALSE(steps.empty());
  // Each step once, in order: received → applied → queued → attempts → answer.
  const auto completed = [](const Step& s) { return s.event_type == kCompleted; };
  const int received = only(
      steps, [&](const Step& s) { return s.step == "webhook_received" && completed(s); },
      "the completed webhook received");
  const int applied = only(
      steps, [&](const Step& s) { return s.step == "applied" && completed(s); },
      "the completed webhook applied");
  const int queued = only(
      steps,
      [](const Step& s) { return s.step == "call_queued" && s.operation == "final_authorization"; },
      "the final authorization queued");
  ASSERT_GE(received, 0);
  ASSERT_GE(applied, 0);
  ASSERT_GE(queued, 0);
  EXPECT_LT(received, applied);
  EXPECT_LT(applied, queued);
  const auto outbox_id = steps[queued].outbox_id;
  std::vector<int> attempts;
  for (int i = 0; i < static_cast<int>(steps.size()); ++i) {
    if (steps[i].step == "call_attempt" && steps[i].outbox_id == outbox_id) attempts.push_back(i);
  }
  const auto recorded = query(sys().db(), "SELECT attempts FROM outbox WHERE " + row);
  ASSERT_EQ(static_cast<long long>(attempts.size()), recorded) << dump(steps);
  ASSERT_GE(attempts.size(), 3u) << dump(steps);
  for (std::size_t n = 0; n < attempts.size(); ++n) {
    const auto& a = steps[attempts[n]];
    EXPECT_EQ(a.attempt, static_cast<std::int64_t>(n + 1)) << a.raw;
    EXPECT_LT(queued, attempts[n]);
    if (n > 0) {
      EXPECT_LT(attempts[n - 1], attempts[n]);
    }
    const bool last = n + 1 == attempts.size();
    EXPECT_EQ(a.http_status, last ? 200 : 503) << a.raw;
    EXPECT_EQ(a.outcome, last ? "succeeded" : "retry") << a.raw;
  }
  const int answer = only(
      steps, [&](const Step& s) { return s.step == "answer_recorded" && s.outbox_id == outbox_id; },
      "the answer recorded");
  ASSERT_GE(answer, 0);
  EXPECT_LT(attempts.back(), answer);
  EXPECT_EQ(steps[answer].status, "succeeded");
  EXPECT_TRUE(std::is_sorted(steps.begin(), steps.end(), [](const Step& a, const Step& b) {
    return a.at_ms < b.at_ms;
  })) << dump(steps);

  // One trace id: receiver header → history → outbox → the call at the sim
  // (each attempt its own span) → the messages published.
  const auto event_id = steps[applied].event_id;
  const auto on_kafka =
      messages(sys().topics().payment_requests, klarna::contract::header::event_id, event_id);
  ASSERT_EQ(on_kafka.size(), 1u);
  const auto header = on_kafka[0].headers.at(klarna::contract::header::traceparent);
  ASSERT_TRUE(core::valid_traceparent(header)) << header;
  const auto id = trace_id(header);
  EXPECT_EQ(steps[received].traceparent, header);
  EXPECT_EQ(steps[applied].traceparent, header);
  EXPECT_EQ(
      query_text(sys().db(), "SELECT traceparent FROM history WHERE event_id = '" + event_id + "'"),
      header);
  EXPECT_EQ(query_text(sys().db(), "SELECT traceparent FROM outbox WHERE " + row), header);
  EXPECT_EQ(trace_id(steps[queued].traceparent), id);
  const auto key = query_text(sys().db(), "SELECT idempotency_key FROM outbox WHERE " + row);
  const auto sent = sent_traceparents("payment.authorize", key);
  ASSERT_EQ(sent.size(), attempts.size());
  std::set<std::string> spans;
  for (std::size_t n = 0; n < sent.size(); ++n) {
    EXPECT_EQ(trace_id(sent[n]), id) << sent[n];
    EXPECT_NE(core::span_id_of(sent[n]), core::span_id_of(header));
    spans.emplace(core::span_id_of(sent[n]));
    EXPECT_EQ(steps[attempts[n]].traceparent, sent[n]) << "the attempt's span as sent";
  }
  EXPECT_EQ(spans.size(), sent.size()) << "each attempt its own span";
  // The request's state change and the transaction the answer created.
  for (const auto& entity : {request, txn}) {
    bool traced = false;
    KafkaReader states(sys().bootstrap(), {sys().topics().payment_states}, 2);
    wait_until(
        [&] {
          for (const auto& m : states.drain(std::chrono::milliseconds(200))) {
            auto it = m.headers.find(klarna::contract::header::traceparent);
            traced |= m.key == entity && it != m.headers.end() && trace_id(it->second) == id;
          }
          return traced;
        },
        std::chrono::seconds(20));
    EXPECT_TRUE(traced) << "a payment-states message of " << entity << " with trace " << id;
  }
  // The processor's log lines of the call name the trace.
  EXPECT_NE(sys().processor_log().find(R"("trace_id":")" + id), std::string::npos);

  // The human view names every step and the trace; an unknown id fails.
  auto [rc, human] = sys().ctl({"payments", "trace", txn});
  EXPECT_EQ(rc, 0) << human;
  for (const char* what : {"webhook_received", "applied", "call_queued", "call_attempt", "HTTP 503",
                           "answer_recorded"}) {
    EXPECT_NE(human.find(what), std::string::npos) << what << "\n" << human;
  }
  EXPECT_NE(human.find("trace " + id), std::string::npos) << human;
  auto [unknown_rc, unknown] = sys().ctl({"payments", "trace", "krn:nothing:here"});
  EXPECT_EQ(unknown_rc, 1) << unknown;
}

TEST_F(TraceE2E, ADuplicateWebhookKeepsKlarnasTraceAndIsListedOnceAsDuplicate) {
  const auto request = approved_request("trace-dup-1");
  const std::string row = "operation = 'final_authorization' AND entity_id = '" + request + "'";
  ASSERT_TRUE(wait_until([&] { return outbox_count(row + " AND status = 'succeeded'") == 1; },
                         std::chrono::seconds(60)))
      << sys().processor_log();
  // The completed webhook as the sim delivered it, sent again with a
  // traceparent of Klarna's own.
  simdjson::dom::parser p;
  simdjson::dom::element root;
  ASSERT_EQ(p.parse(sys().sim("GET", "/_sim/webhooks")).get(root), simdjson::SUCCESS);
  std::string body, signature, event_id;
  for (auto d : root["deliveries"]) {
    if (str_at(d, "event_type") == kCompleted &&
        str_at(d, "body").find(request) != std::string::npos) {
      body = str_at(d, "body");
      signature = str_at(d, "signature");
      event_id = str_at(d, "event_id");
    }
  }
  ASSERT_FALSE(body.empty()) << "no completed delivery for " << request;
  const std::string klarnas = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  auto answer = http_request(sys().receiver_port(), "POST", "/webhooks/klarna", body,
                             {{"Klarna-Signing-Key-Id", kKeyId},
                              {"Klarna-Signature", signature},
                              {"Content-Type", "application/json"},
                              {"traceparent", klarnas}},
                             true);
  ASSERT_TRUE(answer);
  ASSERT_EQ(answer->status, 200) << answer->body;
  ASSERT_TRUE(wait_until(
      [&] {
        return query(sys().db(), "SELECT COUNT(*) FROM history WHERE event_id = '" + event_id +
                                     "' AND outcome = 'duplicate'") == 1;
      },
      std::chrono::seconds(30)))
      << sys().processor_log();

  const auto on_kafka =
      messages(sys().topics().payment_requests, klarna::contract::header::event_id, event_id, 2);
  ASSERT_EQ(on_kafka.size(), 2u);
  const auto& again = on_kafka[1].headers.at(klarna::contract::header::traceparent);
  EXPECT_EQ(trace_id(again), trace_id(klarnas)) << "Klarna's trace id kept";
  EXPECT_NE(core::span_id_of(again), core::span_id_of(klarnas)) << "a child span of Klarna's";
  EXPECT_NE(trace_id(on_kafka[0].headers.at(klarna::contract::header::traceparent)),
            trace_id(klarnas));

  const auto steps = trace(request);
  const int applied = only(
      steps, [&](const Step& s) { return s.step == "applied" && s.event_id == event_id; },
      "the first delivery applied");
  const int duplicate = only(
      steps, [&](const Step& s) { return s.step == "duplicate" && s.event_id == event_id; },
      "the second delivery a duplicate");
  ASSERT_GE(applied, 0);
  ASSERT_GE(duplicate, 0);
  EXPECT_LT(applied, duplicate);
  EXPECT_EQ(steps[duplicate].traceparent, again);
  EXPECT_NE(steps[duplicate].raw.find("event_id already processed"), std::string::npos);
  int received = 0;
  for (const auto& s : steps) received += s.step == "webhook_received" && s.event_id == event_id;
  EXPECT_EQ(received, 2) << "both deliveries received\n" << dump(steps);
  only(
      steps,
      [](const Step& s) { return s.step == "call_queued" && s.operation == "final_authorization"; },
      "one final authorization for both deliveries");
}

TEST_F(TraceE2E, ACommandCarriesItsTraceToKlarnaAndToItsResults) {
  const auto request = approved_request("trace-cmd-1");
  const auto txn = transaction_of(request);
  ASSERT_TRUE(wait_until(
      [&] {
        return query_text(sys().db(), "SELECT state FROM payment_transactions WHERE id = '" + txn +
                                          "'") == "AUTHORIZED";
      },
      std::chrono::seconds(30)));
  const std::string command_id = "trace-capture-1";
  const std::string json = R"({"command_id":")" + command_id +
                           R"(","type":"capture","payment_transaction_id":")" + txn +
                           R"(","amount":1500})";
  const std::string sender_trace = "00-a3ce929d0e0e47364bf92f3577b34da6-00f067aa0ba902b7-01";
  auto headers =
      System::signed_by(System::kSender, System::kSenderKey, System::kSenderSecret, json);
  headers.emplace_back("traceparent", sender_trace);
  sys().send_with_headers(txn, json, headers);
  const auto result = sys().final_result(command_id);
  ASSERT_EQ(result.status, "succeeded") << result.raw;

  // Both results (accepted, succeeded) carry the sender's trace id.
  const auto results = messages(sys().topics().command_results,
                                klarna::contract::header::traceparent, sender_trace, 2);
  EXPECT_EQ(results.size(), 2u);
  for (const auto& m : results) EXPECT_NE(m.value.find(command_id), std::string::npos);
  const std::string row = "command_id = '" + command_id + "'";
  EXPECT_EQ(query_text(sys().db(), "SELECT traceparent FROM outbox WHERE " + row), sender_trace);
  const auto key = query_text(sys().db(), "SELECT idempotency_key FROM outbox WHERE " + row);
  const auto sent = sent_traceparents("payment.transactions.capture", key);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(trace_id(sent[0]), trace_id(sender_trace));

  const auto steps = trace(command_id);  // a command id leads to its payment
  const int received = only(
      steps,
      [&](const Step& s) {
        return s.step == "command_applied" && s.event_id == "command:" + command_id;
      },
      "the command taken in");
  const int queued = only(
      steps, [&](const Step& s) { return s.step == "call_queued" && s.operation == "capture"; },
      "the capture queued");
  const int attempt = only(
      steps, [&](const Step& s) { return s.step == "call_attempt" && s.operation == "capture"; },
      "the capture sent");
  const int finished = only(
      steps,
      [&](const Step& s) { return s.step == "command_result" && s.command_id == command_id; },
      "the command's result");
  ASSERT_GE(received, 0);
  ASSERT_GE(queued, 0);
  ASSERT_GE(attempt, 0);
  ASSERT_GE(finished, 0);
  EXPECT_LT(received, queued);
  EXPECT_LT(queued, attempt);
  EXPECT_LT(attempt, finished);
  EXPECT_EQ(steps[finished].status, "succeeded");
  for (int i : {received, queued, attempt, finished}) {
    EXPECT_EQ(trace_id(steps[i].traceparent), trace_id(sender_trace)) << steps[i].raw;
  }
}

}  // namespace
