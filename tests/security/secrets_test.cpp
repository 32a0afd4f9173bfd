// No secret in any log, metric or error of a full run. The whole system runs
// as separate processes (embedded Kafka, klarna-receiver, klarna-sim,
// klarna-processor, klarnactl) through a journey mix with failures: Klarna
// 500/503 answers, forged and unknown-key webhooks, commands carrying
// interoperability and customer tokens (one malformed), klarnactl calls that
// Klarna refuses, a credentials file klarnactl must refuse, a wrong API key.
// Then every log file, every /metrics and /readyz body and every klarnactl
// output is searched for every form of every secret. A positive control shows
// the search finds each secret where it legitimately is. SEC_DUMP=1 prints
// every text searched.
//
// Not in this run: mTLS to Klarna. klarna-sim serves its /_sim control
// endpoints on the API listener, so requiring client certificates there
// would shut the harness out; the mTLS key's refusal message is checked in
// file_modes_test.cpp and the handshake in tests/klarna/api_client_test.cpp.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <cstdlib>
#include <set>

#include "base64url.hpp"
#include "e2e_system.hpp"
#include "kpay/core/json_writer.hpp"
#include "kpay/klarna/signature.hpp"

using namespace kpay;
using namespace kpay::test;

namespace {

const std::string kKeyId = "krn:partner:global:notification:signing-key:leak-0001";
const std::string kSecret = "leak-SIGNING-secret-c0ffee42-NOT-REAL";
const std::string kApiKey = "leak-API-key-9d8e7f6a-NOT-REAL";
const std::string kAccount = "krn:partner:global:account:test:LEAK0001";
const std::string kCustomerToken = "leak-CUSTOMER-token-5a5a5a";

std::string base64(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                       (static_cast<unsigned char>(in[i + 1]) << 8) |
                       static_cast<unsigned char>(in[i + 2]);
    for (int s : {18, 12, 6, 0}) out += kAlphabet[(v >> s) & 63];
  }
  if (i < in.size()) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    if (i + 1 < in.size()) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < in.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::string hex(std::string_view in) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : in) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  return out;
}

std::string quoted(const std::string& s) {
  std::string out;
  core::append_json_string(out, s);
  return out;
}

// A secret and the forms it could leak in.
struct Needle {
  std::string what, text;
};

// A place secrets must not be: a log file, an HTTP body, a command's output.
struct Haystack {
  std::string where, text;
};

std::vector<Needle> forms(const std::string& what, const std::string& secret) {
  std::vector<Needle> out{{what, secret}, {what + " (base64)", base64(secret)},
                          {what + " (base64url)", base64url(secret)},
                          {what + " (hex)", hex(secret)}};
  // Base64 of a string shifted by one or two bytes inside a longer text.
  for (const std::string prefix : {"x", "xy"}) {
    auto b = base64(prefix + secret);
    out.push_back({what + " (base64, offset " + std::to_string(prefix.size()) + ")",
                   b.substr(4, b.size() - 8)});
  }
  return out;
}

std::vector<std::string> leaks(const std::vector<Needle>& needles,
                               const std::vector<Haystack>& haystacks) {
  std::vector<std::string> found;
  for (const auto& h : haystacks) {
    for (const auto& n : needles) {
      if (n.text.size() >= 8 && h.text.find(n.text) != std::string::npos) {
        found.push_back(n.what + " in " + h.where);
      }
    }
  }
  return found;
}

// The base64 lines of a PEM private key.
std::vector<Needle> pem_body(const std::string& what, const std::string& pem) {
  std::vector<Needle> out;
  std::istringstream in(pem);
  std::string line, all;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '-') continue;
    out.push_back({what + " (PEM line)", line});
    all += line;
  }
  out.push_back({what + " (PEM body)", all});
  return out;
}

std::uint16_t json_port(const std::string& text, const std::string& field) {
  const auto at = text.find("\"" + field + "\":");
  if (at == std::string::npos) return 0;
  return static_cast<std::uint16_t>(std::atoi(text.c_str() + at + field.size() + 3));
}

std::string authorize(const std::string& id, const std::string& extra) {
  return R"({"command_id":")" + id + R"(","type":"authorize","partner_account_id":")" + kAccount +
         R"(","amount":1000,"currency":"EUR","payment_transaction_reference":"ref-)" + id +
         R"(","capture":"LATER")" + extra + "}";
}

}  // namespace

TEST(NoSecretLeaks, FullRunWithFailuresLeavesNoSecretInLogsMetricsOrErrors) {
  // Everything at debug level: a secret must not leak at any level.
  System sys({"leak-e2e", "leak", kKeyId, kSecret, kApiKey, {"--set", "sim.log_level=debug"}});
  sys.set_receiver_args({"--set", "log.level=debug"});
  sys.start_receiver();
  sys.start_sim();
  sys.start_processor({"--set", "log.level=debug"});
  const auto dir = sys.dir();
  const auto receiver_port = json_port(read_file(dir + "/receiver.port"), "port");
  const auto receiver_admin = json_port(read_file(dir + "/receiver.port"), "admin_port");
  ASSERT_NE(receiver_port, 0);

  // Klarna misbehaves on the way: some authorizations and captures fail first.
  sys.sim("POST", "/_sim/faults",
          R"({"rules":["payment.authorize:500:30","payment.transactions.capture:503:40"]})");

  // 1. Customers: a scenario of journeys (approved, declined, cancelled,
  //    step-up) whose webhooks go through the receiver; the processor makes
  //    the follow-up calls, some failing first.
  const auto scenario = sys.sim(
      "POST", "/_sim/scenarios",
      R"({"journeys":8,"rate":50,"mix":["approve:2","decline","cancel","step-up"]})");
  ASSERT_NE(scenario.find("running"), std::string::npos) << scenario;

  // 2. Commands carrying tokens; one token is malformed (rejected).
  const std::string token = base64url(R"({"alg":"ES256","kid":"leak"})") + "." +
                            base64url(R"({"status":"PAYMENT_SUPPORTED","sub":"leak-INTEROP-sub-77"})") +
                            "." + base64url("leak-INTEROP-signature-bytes");
  const std::string bad_token = "leak-BAD-INTEROP-token-without-dots-31337";
  sys.send("ref-leak-1", authorize("leak-1", R"(,"customer_token":)" + quoted(kCustomerToken) +
                                                 R"(,"interoperability_token":)" + quoted(token)));
  sys.send("ref-leak-2", authorize("leak-2", R"(,"interoperability_token":)" + quoted(bad_token)));
  const auto authorized = sys.final_result("leak-1");
  EXPECT_EQ(authorized.status, "succeeded") << authorized.raw;
  const auto rejected = sys.final_result("leak-2");
  EXPECT_EQ(rejected.status, "rejected") << rejected.raw;
  if (!authorized.payment_transaction_id.empty()) {
    sys.send("ref-leak-1", R"({"command_id":"leak-3","type":"capture","payment_transaction_id":")" +
                               authorized.payment_transaction_id + R"(","amount":600})");
    EXPECT_EQ(sys.final_result("leak-3").status, "succeeded");
  }

  // 3. Forged webhooks: a wrong signature, an unknown key, a signature made
  //    with the API key; and one genuine, so the receiver's paths all ran.
  std::vector<std::string> expected_signatures;
  for (int i = 0; i < 3; ++i) {
    const std::string body =
        R"({"metadata":{"event_type":"payment.request.state-change.completed","event_id":"leak-forged-)" +
        std::to_string(i) + R"(","event_version":"v2"},"payload":{}})";
    expected_signatures.push_back(klarna::hmac_sha256_hex(kSecret, body));
    const std::map<std::string, std::string> headers[] = {
        {{"Klarna-Signing-Key-Id", kKeyId}, {"Klarna-Signature", std::string(64, 'a')}},
        {{"Klarna-Signing-Key-Id", "krn:unknown"}, {"Klarna-Signature", std::string(64, 'b')}},
        {{"Klarna-Signing-Key-Id", kKeyId},
         {"Klarna-Signature", klarna::hmac_sha256_hex(kApiKey, body)}}};
    auto r = http_request(receiver_port, "POST", "/webhooks/klarna", body, headers[i], true);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << r->body;
  }

  // 4. klarnactl: Klarna refuses (404), a credentials file others can read,
  //    a wrong API key (401), and normal calls.
  std::vector<Haystack> outputs;
  auto ctl = [&](const std::string& name, std::vector<std::string> args) {
    auto [status, out] = sys.ctl(std::move(args));
    outputs.push_back({"klarnactl " + name + " (exit " + std::to_string(status) + ")", out});
    return status;
  };
  EXPECT_NE(ctl("webhooks get unknown", {"webhooks", "get", "no-such-webhook"}), 0);
  EXPECT_NE(ctl("disputes show --remote unknown",
                {"disputes", "show", "--remote", "no-such-dispute", "--account", kAccount}),
            0);
  EXPECT_EQ(ctl("webhooks list", {"webhooks", "list"}), 0);
  std::ofstream(dir + "/open-api-key") << kApiKey << "\n";  // 0644: refused
  EXPECT_EQ(ctl("credentials file others can read",
                {"--set", "klarna.credentials_file=" + dir + "/open-api-key", "webhooks", "list"}),
            2);
  const std::string wrong_key = "leak-WRONG-api-key-424242";
  std::ofstream(dir + "/wrong-api-key") << wrong_key << "\n";
  std::filesystem::permissions(dir + "/wrong-api-key", std::filesystem::perms::owner_read);
  EXPECT_EQ(ctl("wrong API key",
                {"--set", "klarna.credentials_file=" + dir + "/wrong-api-key", "webhooks", "list"}),
            1);
  EXPECT_EQ(ctl("keys list", {"--set", "keys.database=" + dir + "/keys.db", "keys", "list"}), 0);

  // 5. The scenario finished and its webhooks reached Kafka through the receiver.
  EXPECT_TRUE(wait_until(
      [&] { return sys.sim("GET", "/_sim/scenarios").find("\"finished\":true") != std::string::npos; },
      std::chrono::seconds(60)))
      << sys.sim("GET", "/_sim/scenarios");
  EXPECT_TRUE(wait_until(
      [&] {
        auto r = http_request(receiver_admin, "GET", "/metrics");
        const auto at = r ? r->body.find("receiver_requests_total{outcome=\"accepted\"} ")
                          : std::string::npos;
        return at != std::string::npos && std::atoi(r->body.c_str() + r->body.find(' ', at)) >= 10;
      },
      std::chrono::seconds(30)));

  // Every place a secret must not be.
  std::vector<Haystack> places = outputs;
  const auto processor_admin = [&] {
    std::istringstream in(sys.processor_log());
    std::string line;
    while (std::getline(in, line)) {
      if (line.find("admin endpoint listening") != std::string::npos) return json_port(line, "port");
    }
    return std::uint16_t{0};
  }();
  ASSERT_NE(processor_admin, 0) << sys.processor_log();
  for (auto [name, port] : {std::pair{"receiver", receiver_admin}, {"processor", processor_admin}}) {
    for (const std::string path : {"/metrics", "/readyz", "/healthz"}) {
      auto r = http_request(port, "GET", path);
      ASSERT_TRUE(r) << name << path;
      places.push_back({std::string(name) + " " + path, r->body});
    }
  }
  sys.stop_processor();
  std::size_t logs = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() == ".log") {
      places.push_back({entry.path().filename().string(), read_file(entry.path().string())});
      ++logs;
    }
  }
  EXPECT_GE(logs, 3u) << "receiver, sim and processor logs expected";

  // Every secret, in every form.
  std::vector<Needle> needles;
  for (auto& n : forms("signing secret", kSecret)) needles.push_back(n);
  for (auto& n : forms("API key", kApiKey)) needles.push_back(n);
  for (auto& n : forms("API key (Basic)", "Basic " + kApiKey)) needles.push_back(n);
  for (auto& n : forms("wrong API key", wrong_key)) needles.push_back(n);
  for (auto& n : forms("interoperability token", token)) needles.push_back(n);
  needles.push_back({"interoperability token payload", token.substr(token.find('.') + 1)});
  for (auto& n : forms("malformed interoperability token", bad_token)) needles.push_back(n);
  for (auto& n : forms("customer token", kCustomerToken)) needles.push_back(n);
  for (auto& n : pem_body("receiver TLS private key", read_file(dir + "/tls.key"))) {
    needles.push_back(n);
  }
  for (const auto& s : expected_signatures) needles.push_back({"expected signature of a forgery", s});

  const auto found = leaks(needles, places);
  std::string report;
  for (const auto& f : found) report += "  " + f + "\n";
  EXPECT_TRUE(found.empty()) << "secrets leaked:\n" << report;
  std::size_t bytes = 0;
  for (const auto& p : places) {
    bytes += p.text.size();
    std::cout << "  searched " << p.where << ": " << p.text.size() << " bytes\n";
    if (std::getenv("SEC_DUMP")) std::cout << p.text << "\n";
  }
  std::cout << "searched " << places.size() << " places (" << bytes << " bytes) for "
            << needles.size() << " secret forms: " << found.size() << " found\n";
  EXPECT_GT(bytes, 10'000u) << "the run produced suspiciously little output";

  // Positive control: the same search finds each secret where it is meant to be.
  const std::vector<Haystack> sources{
      {"secret file", read_file(dir + "/secret")},
      {"api-key file", read_file(dir + "/api-key")},
      {"TLS key file", read_file(dir + "/tls.key")},
      {"a Basic header, base64 of both keys",
       "Authorization: Basic " + kApiKey + "\n" + base64(kSecret) + " " + hex(kApiKey)},
      {"the commands", authorize("x", quoted(token) + quoted(bad_token) + quoted(kCustomerToken))}};
  const auto control = leaks(needles, sources);
  const std::set<std::string> seen(control.begin(), control.end());
  for (const std::string expected :
       {"signing secret in secret file", "API key in api-key file",
        "receiver TLS private key (PEM line) in TLS key file",
        "API key (Basic) in a Basic header, base64 of both keys",
        "signing secret (base64) in a Basic header, base64 of both keys",
        "API key (hex) in a Basic header, base64 of both keys",
        "interoperability token in the commands", "malformed interoperability token in the commands",
        "customer token in the commands"}) {
    EXPECT_EQ(seen.count(expected), 1u) << "the search missed: " << expected;
  }
}
