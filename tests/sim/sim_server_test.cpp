// klarna-sim as a process: HTTP(S) surface, fault injection per route,
// idempotent retry after a dropped answer, signed webhook delivery with
// retries to a loopback endpoint, scenarios, configuration errors.
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>

#include "child_process.hpp"
#include "http_client.hpp"
#include "kpay/klarna/signature.hpp"
#include "mtls_client.hpp"
#include "sim_process.hpp"
#include "test_helpers.hpp"
#include "tls_cert.hpp"

using namespace kpay::test;
using kpay::sim::test::jstr;
using kpay::sim::test::openssl_hmac;
using kpay::sim::test::WebhookEndpoint;

namespace {

const std::string kAcct = "/v2/accounts/krn%3Apartner%3Aglobal%3Aaccount%3Atest%3ASIMACCOUNT";
const std::string kSecret = "sim-server-test-secret";
const std::string kDefaultAuth = "Basic klarna-sim-api-key";

using Sim = kpay::sim::test::SimProcess;

std::string write_secret(const std::string& dir) {
  std::string path = dir + "/secret";
  std::ofstream(path) << kSecret << "\n";  // one trailing newline is dropped
  return path;
}

}  // namespace

TEST(SimServer, ApiOverHttpAndBodyLimit) {
  Sim sim({"--set", "sim.body_limit=1024"});
  auto r = sim.req("POST", kAcct + "/payment/requests", R"({"currency":"USD","amount":1500})",
                   {{"Content-Type", "application/json"}, {"Partner-Correlation-Id", "corr-1"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 201) << r->body;
  EXPECT_EQ(r->header("content-type"), "application/json");
  EXPECT_EQ(r->header("partner-correlation-id"), "corr-1");
  EXPECT_EQ(jstr(r->body, {"state"}), "SUBMITTED");
  auto missing = sim.req("GET", "/v2/nothing/here");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(jstr(missing->body, {"error_type"}), "RESOURCE_ERROR");
  auto big = sim.req("POST", kAcct + "/payment/requests", std::string(4096, ' '));
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
}

TEST(SimServer, FaultInjectionPerRoute) {
  Sim sim({"--set", R"(faults.rules=["payment.requests.create:429:100:3"])"});
  std::string create = R"({"currency":"USD","amount":100})";
  auto limited = sim.req("POST", kAcct + "/payment/requests", create);
  ASSERT_TRUE(limited);
  EXPECT_EQ(limited->status, 429);
  EXPECT_EQ(jstr(limited->body, {"error_type"}), "ACCESS_ERROR");
  EXPECT_EQ(jstr(limited->body, {"error_code"}), "RATE_LIMITED");
  EXPECT_EQ(limited->header("x-ratelimit-limit"), "100");
  EXPECT_EQ(limited->header("x-ratelimit-remaining"), "0");
  EXPECT_EQ(limited->header("x-ratelimit-reset"), "3");
  // Other routes are untouched; the refused call never executed.
  EXPECT_EQ(sim.req("GET", "/v2/notification/webhooks")->status, 200);
  auto execs = sim.req("GET", "/_sim/executions");
  EXPECT_EQ(jstr(execs->body, {"by_route", "payment.requests.create"}), "<missing>");
  EXPECT_NE(sim.req("GET", "/_sim/calls")->body.find(R"("fault":"429")"), std::string::npos);

  auto set = [&](const std::string& rules) {
    auto r = sim.req("POST", "/_sim/faults", R"({"rules":[)" + rules + "]}");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
  };
  set(R"("payment.requests.*:502:100")");
  auto bad_gateway = sim.req("POST", kAcct + "/payment/requests", create);
  EXPECT_EQ(bad_gateway->status, 502);
  EXPECT_EQ(jstr(bad_gateway->body, {"error_type"}), "TECHNICAL_ERROR");

  set(R"("*:timeout:100:100")");
  auto timed_out = sim.req("POST", kAcct + "/payment/requests", create);
  EXPECT_EQ(timed_out->status, 500);
  EXPECT_EQ(jstr(timed_out->body, {"error_code"}), "TIMEOUT");

  set(R"("payment.requests.create:drop:100")");
  EXPECT_FALSE(sim.req("POST", kAcct + "/payment/requests", create).has_value());

  set(R"("payment.requests.create:latency:100:150")");
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(sim.req("POST", kAcct + "/payment/requests", create)->status, 201);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(150));

  set(R"("notification.webhooks.list:limit:2:60")");
  auto l1 = sim.req("GET", "/v2/notification/webhooks");
  auto l2 = sim.req("GET", "/v2/notification/webhooks");
  auto l3 = sim.req("GET", "/v2/notification/webhooks");
  EXPECT_EQ(l1->status, 200);
  EXPECT_EQ(l1->header("x-ratelimit-limit"), "2");
  EXPECT_EQ(l1->header("x-ratelimit-remaining"), "1");
  EXPECT_EQ(l2->header("x-ratelimit-remaining"), "0");
  EXPECT_EQ(l3->status, 429);
  EXPECT_EQ(jstr(l3->body, {"error_code"}), "RATE_LIMITED");
  EXPECT_EQ(l3->header("x-ratelimit-limit"), "2");
  EXPECT_FALSE(l3->header("x-ratelimit-reset").empty());

  auto bad = sim.req("POST", "/_sim/faults", R"({"rules":["*:explode:5"]})");
  EXPECT_EQ(bad->status, 400);
}

TEST(SimServer, DroppedAnswerThenRetryWithSameKeyReturnsStoredResponse) {
  Sim sim({"--set", R"(faults.rules=["payment.requests.create:drop-after:100"])"});
  std::string body = R"({"currency":"EUR","amount":2500})";
  std::map<std::string, std::string> key{{"Klarna-Idempotency-Key", "create-once"}};
  EXPECT_FALSE(sim.req("POST", kAcct + "/payment/requests", body, key)
                   .has_value());  // executed, answer lost
  ASSERT_EQ(sim.req("POST", "/_sim/faults", R"({"rules":[]})")->status, 200);
  auto retry = sim.req("POST", kAcct + "/payment/requests", body, key);
  ASSERT_TRUE(retry);
  EXPECT_EQ(retry->status, 201);
  auto execs = sim.req("GET", "/_sim/executions")->body;
  EXPECT_EQ(jstr(execs, {"by_idempotency_key", "create-once"}), "1");
  EXPECT_EQ(jstr(execs, {"by_route", "payment.requests.create"}), "1");
  EXPECT_EQ(jstr(sim.req("GET", "/_sim/state")->body, {"payment_requests", "SUBMITTED"}), "1");
  auto conflict =
      sim.req("POST", kAcct + "/payment/requests", R"({"currency":"EUR","amount":2501})", key);
  EXPECT_EQ(conflict->status, 409);
}

TEST(SimServer, SignedWebhooksWithRetriesOverHttp) {
  WebhookEndpoint endpoint([](int n) { return n == 0 ? 500 : 200; });
  auto dir = make_temp_dir("sim-hook");
  Sim sim({"--webhook-url", endpoint.url(), "--signing-key-id",
           "krn:partner:global:notification:signing-key:t1", "--signing-key-file",
           write_secret(dir), "--time-scale", "100000"});
  ASSERT_EQ(
      sim.req("POST", kAcct + "/payment/requests", R"({"currency":"USD","amount":700})")->status,
      201);
  ASSERT_TRUE(wait_until([&] { return endpoint.count() >= 2; }));
  auto got = endpoint.received();
  EXPECT_EQ(got[0].body, got[1].body);  // the retry sends the same bytes
  kpay::klarna::SigningKey verifier(kSecret);
  for (const auto& g : got) {
    EXPECT_EQ(g.header("klarna-signing-key-id"), "krn:partner:global:notification:signing-key:t1");
    EXPECT_TRUE(verifier.verify(g.body, g.header("klarna-signature")));
    EXPECT_EQ(openssl_hmac(kSecret, g.body), g.header("klarna-signature"));
    EXPECT_EQ(jstr(g.body, {"metadata", "event_type"}), "payment.request.state-change.submitted");
  }
  ASSERT_TRUE(wait_until([&] {
    auto w = sim.req("GET", "/_sim/webhooks");
    return w && jstr(w->body, {"summary", "delivered"}) == "1";
  }));
  auto w = sim.req("GET", "/_sim/webhooks")->body;
  EXPECT_EQ(jstr(w, {"summary", "attempts"}), "2");
}

TEST(SimServer, ScenarioRunsAndExitsWhenDone) {
  WebhookEndpoint endpoint([](int) { return 200; });
  auto dir = make_temp_dir("sim-scn");
  Sim sim({"--webhook-url",
           endpoint.url(),
           "--signing-key-id",
           "kid",
           "--signing-key-file",
           write_secret(dir),
           "--journeys",
           "10",
           "--rate",
           "500",
           "--set",
           R"(scenario.mix=["approve:2","decline","expire","cancel","step-up"])",
           "--set",
           R"(scenario.versions=["v1","v2"])",
           "--set",
           "scenario.disputes=2",
           "--set",
           "scenario.settlements=1",
           "--set",
           "scenario.exit_when_done=true",
           "--set",
           "scenario.merchant_actions=true"});
  auto code = sim.proc->wait(std::chrono::seconds(30));
  ASSERT_TRUE(code.has_value()) << read_file(sim.dir + "/sim.log");
  EXPECT_EQ(*code, 0);
  std::set<std::string> families;
  for (const auto& g : endpoint.received()) {
    auto type = jstr(g.body, {"metadata", "event_type"});
    families.insert(type.substr(0, type.find('.', type.find('.') + 1)));
  }
  EXPECT_TRUE(families.count("payment.request"));
  EXPECT_TRUE(families.count("payment.transaction"));
  EXPECT_TRUE(families.count("payment.dispute"));
  EXPECT_TRUE(families.count("settlement.report"));
}

TEST(SimServer, TlsListener) {
  auto dir = make_temp_dir("sim-tls");
  std::string cmd =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "
      "/CN=127.0.0.1 -keyout " +
      dir + "/key.pem -out " + dir + "/cert.pem >/dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  Sim sim({"--set", "sim.tls=true", "--set", "sim.tls_certificate=" + dir + "/cert.pem", "--set",
           "sim.tls_private_key=" + dir + "/key.pem"});
  HttpConnection conn(sim.port, true);
  auto r = conn.request("GET", "/_sim/health", "");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_FALSE(conn.tls_version().empty());
}

TEST(SimServer, ConfigurationErrorsExitWith2) {
  for (auto bad : {"faults.rules=[\"*:explode:1\"]", "sim.unknown_key=1", "sim.time_scale=0",
                   "scenario.mix=[\"dance\"]", "sim.tls_client_ca=/tmp/ca.pem",
                   "sim.api_key_file=/nonexistent/key",
                   "sim.api_key=", "settlements.fee_percent_bp=10001", "settlements.every_ms=-1"}) {
    ChildProcess p({binary("sim/klarna-sim"), "--set", bad}, make_temp_dir("sim-cfg") + "/log");
    auto code = p.wait(std::chrono::seconds(10));
    ASSERT_TRUE(code.has_value()) << bad;
    EXPECT_EQ(*code, 2) << bad;
  }
  // A shortcut flag is its key, checked the same way.
  ChildProcess p({binary("sim/klarna-sim"), "--token-ttl-ms", "0"},
                 make_temp_dir("sim-cfg") + "/log");
  EXPECT_EQ(p.wait(std::chrono::seconds(10)), 2) << "--token-ttl-ms 0";
}

TEST(SimServer, BasicCredentialsRequiredByDefault) {
  Sim sim({});
  auto none = sim.req_without_auth("GET", "/v2/notification/webhooks");
  ASSERT_TRUE(none);
  EXPECT_EQ(none->status, 401);
  EXPECT_EQ(jstr(none->body, {"error_type"}), "ACCESS_ERROR");
  auto wrong = sim.req("GET", "/v2/notification/webhooks", {}, {{"Authorization", "Basic nope"}});
  EXPECT_EQ(wrong->status, 401);
  EXPECT_EQ(sim.req("GET", "/v2/notification/webhooks")->status, 200);  // the default key
  EXPECT_EQ(sim.req_without_auth("GET", "/_sim/health")->status, 200);  // control: never
  EXPECT_EQ(sim.req_without_auth("GET", "/_sim/calls")->status, 200);
  EXPECT_EQ(read_file(sim.dir + "/sim.log").find("klarna-sim-api-key"), std::string::npos);
}

TEST(SimServer, ApiKeyFileAndAuthSwitchedOff) {
  auto dir = make_temp_dir("sim-key");
  std::ofstream(dir + "/api-key") << "file-key-NOT-REAL\n";  // one trailing newline dropped
  Sim keyed({"--set", "sim.api_key_file=" + dir + "/api-key"});
  EXPECT_EQ(keyed.req("GET", "/v2/notification/webhooks")->status, 401);  // not the default
  auto ok = keyed.req("GET", "/v2/notification/webhooks", {},
                      {{"Authorization", "Basic file-key-NOT-REAL"}});
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(read_file(keyed.dir + "/sim.log").find("file-key-NOT-REAL"), std::string::npos)
      << "the key is never logged";

  Sim unguarded({"--set", "sim.require_auth=false"});
  EXPECT_EQ(unguarded.req_without_auth("GET", "/v2/notification/webhooks")->status, 200);
}

TEST(SimServer, MutualTlsRequiresAVerifiedClientCertificate) {
  auto dir = make_temp_dir("sim-mtls");
  auto server = write_self_signed_cert(dir);
  auto ca = write_ca_cert(dir, "ca", "sim test partner CA");
  auto good = write_cert_signed_by(ca, dir, "client", "partner-client");
  auto other_ca = write_ca_cert(dir, "other-ca", "someone else");
  auto rogue = write_cert_signed_by(other_ca, dir, "rogue", "rogue-client");
  Sim sim({"--set", "sim.tls=true", "--set", "sim.tls_certificate=" + server.certificate, "--set",
           "sim.tls_private_key=" + server.private_key, "--set",
           "sim.tls_client_ca=" + ca.certificate});
  ASSERT_NE(sim.port, 0);
  const std::map<std::string, std::string> auth{{"Authorization", kDefaultAuth}};
  using kpay::sim::test::https_request;

  EXPECT_FALSE(https_request(sim.port, {}, "GET", "/_sim/health"))
      << "no client certificate: the handshake fails";
  EXPECT_FALSE(
      https_request(sim.port, {rogue.certificate, rogue.private_key}, "GET", "/_sim/health"))
      << "a certificate from another CA: the handshake fails";

  auto r = https_request(sim.port, {good.certificate, good.private_key}, "GET",
                         "/v2/notification/webhooks", auth);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->header("klarna-mtls-verification-status"), "VERIFIED");

  auto calls = https_request(sim.port, {good.certificate, good.private_key}, "GET", "/_sim/calls");
  ASSERT_TRUE(calls);
  simdjson::dom::parser p;
  simdjson::dom::element call;
  ASSERT_EQ(p.parse(calls->body)["calls"].at(0).get(call), simdjson::SUCCESS) << calls->body;
  bool mtls = false;
  std::string_view subject;
  ASSERT_EQ(call["mtls"].get_bool().get(mtls), simdjson::SUCCESS);
  EXPECT_TRUE(mtls);
  ASSERT_EQ(call["client_certificate_subject"].get_string().get(subject), simdjson::SUCCESS);
  EXPECT_EQ(subject, "CN=partner-client");
}

// ---- the Dispute API over HTTPS (issue 15) -----------------------------------

namespace {

// A multipart/form-data body with one `file` part.
std::string multipart(const std::string& boundary, const std::string& name, const std::string& type,
                      const std::string& bytes) {
  return "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + name +
         "\"\r\nContent-Type: " + type + "\r\n\r\n" + bytes + "\r\n--" + boundary + "--\r\n";
}

struct DisputeApi {
  explicit DisputeApi(std::vector<std::string> extra = {}) {
    dir = make_temp_dir("sim-disputes");
    const std::string cmd =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj "
        "/CN=127.0.0.1 -keyout " +
        dir + "/key.pem -out " + dir + "/cert.pem >/dev/null 2>&1";
    EXPECT_EQ(std::system(cmd.c_str()), 0);
    extra.insert(extra.end(),
                 {"--set", "sim.tls=true", "--set", "sim.tls_certificate=" + dir + "/cert.pem",
                  "--set", "sim.tls_private_key=" + dir + "/key.pem"});
    sim = std::make_unique<Sim>(extra);
  }
  std::optional<HttpResponse> req(std::string_view method, const std::string& target,
                                  std::string_view body = {},
                                  std::map<std::string, std::string> headers = {}) {
    headers.emplace("Authorization", kDefaultAuth);
    return http_request(sim->port, method, target, body, headers, /*tls=*/true);
  }
  // A captured transaction (capture NOW) and a dispute opened on it.
  std::string open_dispute() {
    auto tx =
        req("POST", kAcct + "/payment/authorize",
            R"({"currency":"EUR","request_payment_transaction":{"amount":900,"capture":"NOW"}})",
            {{"Klarna-Customer-Token", "ct"}});
    EXPECT_TRUE(tx && tx->status == 200) << (tx ? tx->body : "no answer");
    const auto txid = jstr(tx->body, {"payment_transaction_response", "payment_transaction",
                                      "payment_transaction_id"});
    auto d = req("POST", "/_sim/disputes", R"({"payment_transaction_id":")" + txid + "\"}");
    EXPECT_TRUE(d && d->status == 201);
    return jstr(d->body, {"payment_dispute_id"});
  }
  std::string upload(const std::string& base, const std::string& name, const std::string& type,
                     const std::string& bytes, int expect) {
    auto r = req("POST", base + "/attachments", multipart("b0undary", name, type, bytes),
                 {{"Content-Type", "multipart/form-data; boundary=b0undary"}});
    if (!r) {
      ADD_FAILURE() << "no answer to the upload";
      return {};
    }
    EXPECT_EQ(r->status, expect) << r->body;
    return jstr(r->body, {"payment_dispute_attachment_id"});
  }
  std::string dir;
  std::unique_ptr<Sim> sim;
};

std::string enc(const std::string& id) {
  std::string out;
  for (char c : id) out += c == ':' ? std::string("%3A") : std::string(1, c);
  return out;
}

}  // namespace

TEST(SimServer, DisputeApiRepresentAcceptLossAppealAndWrongStates) {
  DisputeApi api;
  const std::string pdf = "%PDF-1.4 evidence";
  // Represent with an uploaded file: INITIATED → REPRESENTMENT.
  const auto d1 = api.open_dispute();
  const std::string b1 = kAcct + "/payment/disputes/" + enc(d1);
  EXPECT_EQ(api.req("POST", b1 + "/represent", R"({"attachments":[]})")->status, 400);
  api.upload(b1, "note.txt", "text/plain", "plain text", 400);             // not an accepted type
  api.upload(b1, "fake.pdf", "application/pdf", "not really a pdf", 400);  // bytes do not match
  const auto att = api.upload(b1, "receipt.pdf", "application/pdf", pdf, 201);
  ASSERT_FALSE(att.empty());
  auto rep = api.req("POST", b1 + "/represent",
                     R"({"attachments":[{"payment_dispute_attachment_id":")" + att +
                         R"(","description":"receipt"}],"additional_information":"delivered"})");
  ASSERT_TRUE(rep);
  EXPECT_EQ(rep->status, 201) << rep->body;
  EXPECT_EQ(jstr(rep->body, {"state"}), "REPRESENTMENT");
  auto dl = api.req("GET", b1 + "/attachments/" + enc(att) + "/download");
  ASSERT_TRUE(dl);
  EXPECT_EQ(dl->status, 200);
  EXPECT_EQ(dl->body, pdf);
  EXPECT_EQ(dl->header("content-type"), "application/pdf");
  // Wrong state: 409 RESOURCE_CONFLICT.
  auto again = api.req("POST", b1 + "/represent",
                       R"({"attachments":[{"payment_dispute_attachment_id":")" + att + "\"}]}");
  EXPECT_EQ(again->status, 409);
  EXPECT_EQ(jstr(again->body, {"error_code"}), "RESOURCE_CONFLICT");
  EXPECT_EQ(api.req("POST", b1 + "/accept-loss")->status, 409);
  EXPECT_EQ(api.req("POST", b1 + "/appeal", R"({"additional_information":"x"})")->status, 409);
  // Accept loss in INITIATED: 202, CLOSED LOST.
  const auto d2 = api.open_dispute();
  auto lost = api.req("POST", kAcct + "/payment/disputes/" + enc(d2) + "/accept-loss");
  EXPECT_EQ(lost->status, 202);
  EXPECT_EQ(jstr(lost->body, {"state"}), "CLOSED");
  EXPECT_EQ(jstr(lost->body, {"dispute_outcome"}), "LOST");
  // Appeal in PRE_ARBITRATION (after a preliminary LOST): → ARBITRATION.
  ASSERT_EQ(
      api.req("POST", "/_sim/disputes/" + enc(d1) + "/transition", R"({"state":"PRE_ARBITRATION"})")
          ->status,
      200);
  auto appeal = api.req("POST", b1 + "/appeal", R"({"additional_information":"new facts"})");
  EXPECT_EQ(appeal->status, 201) << appeal->body;
  EXPECT_EQ(jstr(appeal->body, {"state"}), "ARBITRATION");
  // List with filters.
  auto list = api.req("GET", kAcct + "/payment/disputes?state=CLOSED");
  ASSERT_TRUE(list);
  EXPECT_EQ(list->status, 200);
  EXPECT_EQ(jstr(list->body, {"pagination", "count"}), "1");
}

TEST(SimServer, DisputeEvidenceUpTo7MBAndAConfigurablePrefix) {
  DisputeApi api({"--set", "sim.dispute_path_prefix=/v4/payment/disputes"});
  const auto d = api.open_dispute();
  // The default prefix is not served once another is configured.
  EXPECT_EQ(api.req("GET", kAcct + "/payment/disputes/" + enc(d))->status, 404);
  const std::string base = "/v4/payment/disputes/" + enc(d);
  EXPECT_EQ(api.req("GET", base)->status, 200);
  const std::string png = "\x89PNG" + std::string(6'999'000, 'x');  // above sim.body_limit
  EXPECT_FALSE(api.upload(base, "photo.png", "image/png", png, 201).empty());
  api.upload(base, "huge.png", "image/png", "\x89PNG" + std::string(7'000'001, 'x'), 413);
}

TEST(SimServer, DeadlineExtensionsAnnouncedInBothShapes) {
  WebhookEndpoint endpoint([](int) { return 200; });
  auto dir = make_temp_dir("sim-extend");
  DisputeApi api({"--webhook-url", endpoint.url(), "--signing-key-id",
                  "krn:partner:global:notification:signing-key:t1", "--signing-key-file",
                  write_secret(dir)});
  const auto d = api.open_dispute();
  const std::string ctl = "/_sim/disputes/" + enc(d) + "/extend";
  EXPECT_EQ(api.req("POST", ctl, R"({"deadline":"arbitration"})")->status, 409);  // INITIATED
  ASSERT_EQ(api.req("POST", ctl, R"({"extend_by_ms":86400000})")->status, 200);
  ASSERT_EQ(api.req("POST", ctl, R"({"shape":"legacy"})")->status, 200);
  ASSERT_TRUE(wait_until([&] {
    int n = 0;
    for (const auto& r : endpoint.received()) {
      n += jstr(r.body, {"metadata", "event_type"}) ==
           "payment.dispute.updated.representment-deadline-extended";
    }
    return n == 2;
  }));
  std::vector<std::string> bodies;
  for (const auto& r : endpoint.received()) {
    if (jstr(r.body, {"metadata", "event_type"}) ==
        "payment.dispute.updated.representment-deadline-extended") {
      bodies.push_back(r.body);
    }
  }
  ASSERT_EQ(bodies.size(), 2u);
  const auto current =
      jstr(bodies[0], {"payload", "updated_fields", "representment", "expires_at"});
  const auto previous =
      jstr(bodies[0], {"payload", "previous_fields", "representment", "expires_at"});
  EXPECT_FALSE(current.empty());
  EXPECT_LT(previous, current);
  const auto legacy =
      jstr(bodies[1], {"payload", "updated_fields", "evidence_response_deadline_at"});
  EXPECT_GT(legacy, current);  // 7 more days
  EXPECT_EQ(jstr(bodies[1], {"payload", "representment", "expires_at"}), legacy);
}
