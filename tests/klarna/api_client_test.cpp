// The Klarna API client against the real klarna-sim binary over HTTPS
// (loopback, OS-chosen port, a certificate generated per test), plus the
// pure functions: classification, percent-encoding, configuration refusals.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <simdjson.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include "client_sim.hpp"
#include "kpay/core/percent_encode.hpp"

using namespace kpay::klarna;
using namespace kpay::test;
using namespace kpay::test::client;
using namespace std::chrono_literals;

namespace {

// A payment request to read back; its GET path.
std::string make_payment_request(ApiClient& client, const std::string& key) {
  Answer a = client.call(create_request(key));
  EXPECT_EQ(a.status, 201) << a.summary() << " " << a.body;
  return account_path(kAccount) + "/payment/requests/" + json_field(a.body, {"payment_request_id"});
}

// A TCP connection from us to `port` that the peer has closed (CLOSE_WAIT in
// /proc/net/tcp): the server dropped an idle kept-alive connection.
bool has_half_closed_connection_to(std::uint16_t port) {
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);  // header
  char want[8];
  std::snprintf(want, sizeof want, ":%04X", port);
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state;
    fields >> slot >> local >> remote >> state;
    if (remote.size() >= 5 && remote.substr(remote.size() - 5) == want && state == "08")
      return true;
  }
  return false;
}

// --- a private CA for mTLS ---------------------------------------------------

using Key = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using Cert = std::unique_ptr<X509, decltype(&X509_free)>;

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  ASSERT_NE(ext, nullptr);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

Cert make_cert(EVP_PKEY* key, const char* cn, X509* issuer, EVP_PKEY* issuer_key, long serial) {
  Cert cert(X509_new(), X509_free);
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24L * 3600);
  X509_set_pubkey(cert.get(), key);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(cert.get()), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
  X509* signer = issuer ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(signer));
  if (issuer == nullptr) {
    add_ext(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(cert.get(), signer, NID_basic_constraints, "critical,CA:FALSE");
    add_ext(cert.get(), signer, NID_ext_key_usage, "clientAuth");
  }
  X509_sign(cert.get(), issuer_key ? issuer_key : key, EVP_sha256());
  return cert;
}

struct ClientCertFiles {
  std::string ca, certificate, private_key;
};

// A CA and a client certificate (P-256, as Klarna asks) signed by it.
ClientCertFiles write_client_pki(const std::string& dir) {
  Key ca_key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  Key client_key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  Cert ca = make_cert(ca_key.get(), "kpay test CA", nullptr, nullptr, 1);
  Cert client = make_cert(client_key.get(), "kpay-client", ca.get(), ca_key.get(), 2);
  ClientCertFiles f{dir + "/ca.crt", dir + "/client.crt", dir + "/client.key"};
  auto write_pem = [](const std::string& path, auto writer) {
    FILE* out = std::fopen(path.c_str(), "w");
    ASSERT_NE(out, nullptr);
    writer(out);
    std::fclose(out);
  };
  write_pem(f.ca, [&](FILE* out) { PEM_write_X509(out, ca.get()); });
  write_pem(f.certificate, [&](FILE* out) { PEM_write_X509(out, client.get()); });
  write_pem(f.private_key, [&](FILE* out) {
    PEM_write_PrivateKey(out, client_key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  });
  ::chmod(f.private_key.c_str(), 0600);
  return f;
}

// A self-signed server certificate for `san` only (e.g. "DNS:api.example.invalid").
CertFiles write_server_cert(const std::string& dir, const char* san) {
  Key key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  Cert cert(X509_new(), X509_free);
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 3);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), 24L * 3600);
  X509_set_pubkey(cert.get(), key.get());
  X509_NAME_add_entry_by_txt(X509_get_subject_name(cert.get()), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("api.example.invalid"), -1, -1,
                             0);
  X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get()));
  add_ext(cert.get(), cert.get(), NID_subject_alt_name, san);
  X509_sign(cert.get(), key.get(), EVP_sha256());
  CertFiles f{dir + "/server.crt", dir + "/server.key"};
  FILE* c = std::fopen(f.certificate.c_str(), "w");
  FILE* k = std::fopen(f.private_key.c_str(), "w");
  PEM_write_X509(c, cert.get());
  PEM_write_PrivateKey(k, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(c);
  std::fclose(k);
  return f;
}

}  // namespace

// --- pure functions -----------------------------------------------------------

TEST(ApiClientUnit, ClassifiesPerPaymentsApiTable) {
  EXPECT_EQ(classify(200, ""), Disposition::success);
  EXPECT_EQ(classify(201, ""), Disposition::success);
  EXPECT_EQ(classify(204, ""), Disposition::success);
  EXPECT_EQ(classify(409, "RESOURCE_CONFLICT"), Disposition::conflict);
  for (int s : {429, 500, 502, 503, 504}) EXPECT_EQ(classify(s, ""), Disposition::retryable) << s;
  EXPECT_EQ(classify(500, "TIMEOUT"), Disposition::retryable);
  for (int s : {400, 401, 403, 404, 413, 422}) {
    EXPECT_EQ(classify(s, ""), Disposition::permanent) << s;
  }
  EXPECT_EQ(classify(0, ""), Disposition::retryable);
  EXPECT_EQ(disposition_name(Disposition::conflict), "conflict");
}

TEST(ApiClientUnit, PercentEncodeAndAccountPath) {
  EXPECT_EQ(kpay::core::percent_encode("AZaz09-._~"), "AZaz09-._~");
  EXPECT_EQ(kpay::core::percent_encode("a b/c:d%"), "a%20b%2Fc%3Ad%25");
  EXPECT_EQ(kpay::core::percent_encode("\xC3\xA9"), "%C3%A9");
  EXPECT_EQ(account_path("krn:partner:global:account:live:LWT2XJSE"),
            "/v2/accounts/krn%3Apartner%3Aglobal%3Aaccount%3Alive%3ALWT2XJSE");
}

TEST(ApiClientUnit, Environments) {
  EXPECT_EQ(parse_environment("live"), Environment::live);
  EXPECT_EQ(parse_environment("test"), Environment::test);
  EXPECT_EQ(parse_environment("custom"), Environment::custom);
  EXPECT_THROW(parse_environment("prod"), std::invalid_argument);
  EXPECT_EQ(environment_name(Environment::test), "test");
  EXPECT_EQ(default_base_url(Environment::live), "https://api-global.klarna.com");
  EXPECT_EQ(default_base_url(Environment::test), "https://api-global.test.klarna.com");
}

TEST(ApiClientUnit, Summary) {
  Answer a;
  a.status = 429;
  a.error = ErrorBody{"e-1", "ACCESS_ERROR", "RATE_LIMITED", "slow down"};
  a.klarna_correlation_id = "c-1";
  EXPECT_EQ(a.summary(), "429 ACCESS_ERROR/RATE_LIMITED error_id=e-1 correlation_id=c-1");
  Answer t;
  t.transport_error = "timeout";
  EXPECT_EQ(t.summary(), "transport: timeout");
}

TEST(ApiClientConfig, RefusesBadSettingsNamingThem) {
  auto dir = make_temp_dir("api-client-config");
  auto expect_refused = [](ClientSettings s, const std::string& setting) {
    try {
      ApiClient client(std::move(s));
      ADD_FAILURE() << "accepted; expected a refusal naming " << setting;
    } catch (const ClientConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(setting), std::string::npos) << e.what();
    }
  };
  ClientSettings http;
  http.environment = Environment::custom;
  http.base_url = "http://127.0.0.1:1";
  expect_refused(http, "base_url");
  ClientSettings missing_ca;
  missing_ca.ca_file = dir + "/nope.pem";
  expect_refused(missing_ca, "ca_file");
  ClientSettings missing_credentials;
  missing_credentials.credentials_file = dir + "/nope";
  expect_refused(missing_credentials, "credentials_file");
  ClientSettings only_cert;
  only_cert.client_certificate_file = dir + "/c.pem";
  expect_refused(only_cert, "client_");
}

TEST(ApiClientConfig, PrivateKeyReadableByOthersIsRefused) {
  auto dir = make_temp_dir("api-client-key");
  auto pki = write_client_pki(dir);
  ::chmod(pki.private_key.c_str(), 0644);
  ClientSettings s;
  s.client_certificate_file = pki.certificate;
  s.client_private_key_file = pki.private_key;
  try {
    ApiClient client(s);
    FAIL() << "a world-readable key was accepted";
  } catch (const ClientConfigError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("client_private_key_file"), std::string::npos) << what;
    EXPECT_NE(what.find("0644"), std::string::npos) << what;
    EXPECT_EQ(what.find("PRIVATE KEY"), std::string::npos) << "key content leaked: " << what;
  }
  ::chmod(pki.private_key.c_str(), 0600);
  EXPECT_NO_THROW(ApiClient{s});
}

TEST(ApiClientConfig, PostWithoutIdempotencyKeyIsRefusedWithoutSending) {
  ClientSettings s;  // the test environment: never reached, the call is refused first
  ApiClient client(s);
  Call c = create_request("");
  Answer a = client.call(c);
  EXPECT_EQ(a.status, 0);
  EXPECT_EQ(a.transport_error, "missing idempotency key");
  EXPECT_EQ(a.disposition, Disposition::permanent);
  c.method = "PATCH";
  EXPECT_EQ(client.call(c).transport_error, "missing idempotency key");
  auto st = client.stats();
  EXPECT_EQ(st.sent, 0u);
  EXPECT_EQ(st.connections_opened, 0u);
}

// --- against klarna-sim --------------------------------------------------------

TEST(ApiClientSim, GetAndPostRoundTrip) {
  REQUIRE_SIM();
  Sim sim;
  ASSERT_TRUE(sim.up()) << sim.log();
  ApiClient client(sim.settings());
  Call create = create_request("round-trip-1", 2500);
  create.correlation_id = "corr1";
  Answer created = client.call(create);
  ASSERT_EQ(created.status, 201) << created.summary() << created.body;
  EXPECT_EQ(created.disposition, Disposition::success);
  EXPECT_FALSE(created.error.has_value());
  std::string id = json_field(created.body, {"payment_request_id"});
  ASSERT_EQ(id.find('<'), std::string::npos) << created.body;

  Answer read = client.call(get(account_path(kAccount) + "/payment/requests/" + id));
  ASSERT_EQ(read.status, 200) << read.summary();
  EXPECT_EQ(json_field(read.body, {"state"}), "SUBMITTED");
  EXPECT_EQ(json_field(read.body, {"payment_request_id"}), id);

  Answer missing = client.call(get(account_path(kAccount) + "/payment/requests/nope"));
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.disposition, Disposition::permanent);
  ASSERT_TRUE(missing.error.has_value()) << missing.body;
  EXPECT_EQ(missing.error->error_type, "RESOURCE_ERROR");
  EXPECT_FALSE(missing.error->error_id.empty());
  auto st = client.stats();
  EXPECT_EQ(st.sent, 3u);
  EXPECT_EQ(st.answered, 3u);
}

TEST(ApiClientSim, CaFileVerifiesAndSystemStoreRefusesTheTestCertificate) {
  REQUIRE_SIM();
  Sim sim;
  ASSERT_TRUE(sim.up()) << sim.log();
  {
    ApiClient client(sim.settings());
    EXPECT_EQ(client.call(get("/v2/notification/webhooks")).status, 200);
  }
  {  // by name: SNI and the DNS SAN check
    ClientSettings by_name = sim.settings();
    by_name.base_url = "https://localhost:" + std::to_string(sim.port);
    ApiClient client(by_name);
    Answer a = client.call(get("/v2/notification/webhooks"));
    EXPECT_EQ(a.status, 200) << a.summary();
  }
  ClientSettings system_store = sim.settings();
  system_store.ca_file.clear();
  ApiClient client(system_store);
  Answer a = client.call(get("/v2/notification/webhooks"));
  EXPECT_EQ(a.status, 0);
  EXPECT_EQ(a.transport_error.rfind("tls:", 0), 0u) << a.transport_error;
  EXPECT_EQ(a.disposition, Disposition::permanent) << a.transport_error;
  EXPECT_EQ(client.stats().connections_opened, 0u);
}

TEST(ApiClientSim, HostNameIsVerified) {
  REQUIRE_SIM();
  // A certificate we trust (it is the ca_file) but issued to another name:
  // connecting to 127.0.0.1 must fail the identity check.
  auto dir = make_temp_dir("api-client-name");
  Sim sim({}, write_server_cert(dir, "DNS:api.example.invalid"));
  ASSERT_TRUE(sim.up()) << sim.log();
  ApiClient client(sim.settings());
  Answer a = client.call(get("/v2/notification/webhooks"));
  EXPECT_EQ(a.status, 0);
  EXPECT_EQ(a.transport_error.rfind("tls:", 0), 0u) << a.transport_error;
  EXPECT_NE(a.transport_error.find("mismatch"), std::string::npos) << a.transport_error;
  EXPECT_EQ(a.disposition, Disposition::permanent);
}

TEST(ApiClientSim, BasicCredentials) {
  REQUIRE_SIM();
  Sim sim;  // sim.api_key = kApiKey
  ASSERT_TRUE(sim.up()) << sim.log();
  auto path = account_path(kAccount) + "/payment/requests/unknown";
  {
    ClientSettings none = sim.settings();
    none.credentials_file.clear();
    ApiClient anonymous(none);
    Answer a = anonymous.call(get(path));
    EXPECT_EQ(a.status, 401) << a.summary();
    EXPECT_EQ(a.disposition, Disposition::permanent);
  }
  {
    ClientSettings wrong = sim.settings();
    wrong.credentials_file = sim.dir + "/wrong-key";
    write_file(wrong.credentials_file, "klarna-test-key-2\n", 0600);
    ApiClient client(wrong);
    EXPECT_EQ(client.call(get(path)).status, 401);
  }
  ApiClient client(sim.settings());
  Answer a = client.call(get(path));
  EXPECT_EQ(a.status, 404) << a.summary();  // authenticated; the request does not exist
  EXPECT_EQ(client.call(get("/v2/notification/webhooks")).status, 200);
  EXPECT_EQ(a.summary().find(kApiKey), std::string::npos);
}

TEST(ApiClientSim, KeepAliveReusesOneConnection) {
  REQUIRE_SIM();
  Sim sim;
  ASSERT_TRUE(sim.up()) << sim.log();
  ApiClient client(sim.settings());
  constexpr int kCalls = 10;
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_EQ(client.call(get("/v2/notification/webhooks")).status, 200) << i;
  }
  auto st = client.stats();
  EXPECT_EQ(st.connections_opened, 1u);
  EXPECT_EQ(st.connections_reused, static_cast<std::uint64_t>(kCalls - 1));
  EXPECT_EQ(st.open_connections, 1u);
  EXPECT_EQ(st.idle_connections, 1u);
  EXPECT_EQ(st.in_flight, 0u);
}

TEST(ApiClientSim, IdleConnectionsCloseAfterIdleTimeout) {
  REQUIRE_SIM();
  Sim sim;
  ASSERT_TRUE(sim.up()) << sim.log();
  ClientSettings s = sim.settings();
  s.idle_timeout = 100ms;
  ApiClient client(s);
  ASSERT_EQ(client.call(get("/v2/notification/webhooks")).status, 200);
  EXPECT_TRUE(wait_until([&] { return client.stats().open_connections == 0; }, 10s));
  ASSERT_EQ(client.call(get("/v2/notification/webhooks")).status, 200);
  EXPECT_EQ(client.stats().connections_opened, 2u);
}

TEST(ApiClientSim, ConnectionClosedByServerWhileIdleIsReopenedOnce) {
  REQUIRE_SIM();
  Sim sim({"--set", "sim.read_timeout_ms=200"});
  ASSERT_TRUE(sim.up()) << sim.log();
  ApiClient client(sim.settings());
  ASSERT_EQ(client.call(get("/v2/notification/webhooks")).status, 200);
  // The sim closes the idle connection after 200 ms; our end is then CLOSE_WAIT.
  ASSERT_TRUE(wait_until([&] { return has_half_closed_connection_to(sim.port); }, 10s));
  Answer a = client.call(get("/v2/notification/webhooks"));
  EXPECT_EQ(a.status, 200) << a.summary();
  auto st = client.stats();
  EXPECT_EQ(st.connections_opened, 2u);  // seen closed before sending: a new one, no resend
  EXPECT_EQ(st.stale_retries, 0u);
  EXPECT_EQ(st.sent, 2u);
}

TEST(ApiClientSim, ConcurrentCallsShareABoundedPool) {
  REQUIRE_SIM();
  Sim sim({"--set", "sim.threads=2"});
  ASSERT_TRUE(sim.up()) << sim.log();
  ClientSettings s = sim.settings();
  s.max_connections = 32;
  s.io_threads = 2;
  s.request_timeout = 30s;
  ApiClient client(s);
  auto path = make_payment_request(client, "concurrency");
  ASSERT_TRUE(sim.try_set_faults(R"("*:latency:100:20")"));
  constexpr std::size_t kCalls = 200;
  Collector collector;
  for (std::size_t i = 0; i < kCalls; ++i) client.send(get(path), collector.callback());
  ASSERT_TRUE(collector.wait_for(kCalls, 60s));
  for (const auto& a : collector.answers()) ASSERT_EQ(a.status, 200) << a.summary();
  auto st = client.stats();
  EXPECT_LE(st.connections_opened, 32u);
  EXPECT_LE(st.peak_in_flight, 32u);
  // Served concurrently: with 20 ms per call, one connection at a time could
  // not have produced this peak.
  EXPECT_GE(st.peak_in_flight, 16u);
  EXPECT_GE(st.connections_opened, 2u);
  EXPECT_EQ(st.answered, kCalls + 1);
  EXPECT_EQ(st.queued, 0u);
  EXPECT_EQ(st.in_flight, 0u);
}

TEST(ApiClientSim, RateLimitedHoldsEveryLaterCall) {
  REQUIRE_SIM();
  Sim sim;
  ASSERT_TRUE(sim.up()) << sim.log();
  ApiClient client(sim.settings());
  auto path = make_payment_request(client, "limited");
  ASSERT_TRUE(sim.try_set_faults(R"("payment.requests.read:429:100:1")"));
  Answer limited = client.call(get(path));
  auto limited_at = std::chrono::steady_clock::now();
  ASSERT_EQ(limited.status, 429);
  EXPECT_EQ(limited.disposition, Disposition::retryable);
  ASSERT_TRUE(limited.retry_after.has_value());
  EXPECT_EQ(*limited.retry_after, 1000ms);
  ASSERT_TRUE(limited.error.has_value());
  EXPECT_EQ(limited.summary().rfind("429 ACCESS_ERROR/RATE_LIMITED error_id=", 0), 0u)
      << limited.summary();
  ASSERT_TRUE(sim.try_set_faults(""));
  // Every call made now waits for the hold (1 s after the 429 arrived).
  Collector collector;
  for (int i = 0; i < 5; ++i) client.send(get(path), collector.callback());
  ASSERT_TRUE(collector.wait_for(5, 30s));
  auto done_at = std::chrono::steady_clock::now();
  for (const auto& a : collector.answers()) EXPECT_EQ(a.status, 200) << a.summary();
  EXPECT_GE(done_at - limited_at, 900ms);
  auto st = client.stats();
  EXPECT_EQ(st.rate_limited, 1u);
  EXPECT_EQ(st.rate_limit_waits, 5u);
}

TEST(ApiClientSim, PacingSpacesCallStarts) {
  REQUIRE_SIM();
  Sim sim;
  ASSERT_TRUE(sim.up()) << sim.log();
  ClientSettings s = sim.settings();
  s.max_requests_per_second = 20;  // one start per 50 ms
  ApiClient client(s);
  constexpr int kCalls = 6;
  Collector collector;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kCalls; ++i)
    client.send(get("/v2/notification/webhooks"), collector.callback());
  ASSERT_TRUE(collector.wait_for(kCalls, 30s));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 250ms);  // 5 gaps of 50 ms at least
  for (const auto& a : collector.answers()) EXPECT_EQ(a.status, 200) << a.summary();
  EXPECT_GE(client.stats().rate_limit_waits, static_cast<std::uint64_t>(kCalls - 1));
}

TEST(ApiClientSim, ServerErrorIsRetryable) {
  REQUIRE_SIM();
  Sim sim;
  ASSERT_TRUE(sim.up()) << sim.log();
  ApiClient client(sim.settings());
  auto path = make_payment_request(client, "unavailable");
  ASSERT_TRUE(sim.try_set_faults(R"("payment.requests.read:503:100")"));
  Answer a = client.call(get(path));
  EXPECT_EQ(a.status, 503);
  EXPECT_EQ(a.disposition, Disposition::retryable);
  ASSERT_TRUE(a.error.has_value());
  EXPECT_EQ(a.error->error_type, "TECHNICAL_ERROR");
}

TEST(ApiClientSim, DroppedConnectionIsRetryableTransportError) {
  REQUIRE_SIM();
  Sim sim;
  ASSERT_TRUE(sim.up()) << sim.log();
  ApiClient client(sim.settings());
  auto path = make_payment_request(client, "dropped");
  ASSERT_TRUE(sim.try_set_faults(R"("payment.requests.read:drop:100")"));
  Answer a = client.call(get(path));
  EXPECT_EQ(a.status, 0);
  EXPECT_FALSE(a.transport_error.empty());
  EXPECT_EQ(a.disposition, Disposition::retryable) << a.transport_error;
  auto st = client.stats();
  EXPECT_EQ(st.transport_errors, 1u);
  // The kept-alive connection from the create failed before any answer byte:
  // resent once on a new connection (dropped again), never more.
  EXPECT_EQ(st.stale_retries, 1u);
  EXPECT_EQ(st.connections_opened, 2u);
  ASSERT_TRUE(sim.try_set_faults(""));
  EXPECT_EQ(client.call(get(path)).status, 200);  // a new connection
}

TEST(ApiClientSim, TimeoutIsRetryable) {
  REQUIRE_SIM();
  Sim sim;
  ASSERT_TRUE(sim.up()) << sim.log();
  ApiClient client(sim.settings());
  auto path = make_payment_request(client, "slow");
  ASSERT_TRUE(sim.try_set_faults(R"("payment.requests.read:timeout:100:5000")"));
  Call c = get(path);
  c.timeout = 300ms;
  Answer a = client.call(c);
  EXPECT_EQ(a.status, 0);
  EXPECT_EQ(a.transport_error, "timeout");
  EXPECT_EQ(a.disposition, Disposition::retryable);
  EXPECT_LT(a.elapsed, std::chrono::microseconds(5s));
  EXPECT_EQ(client.stats().open_connections, 0u);  // a timed-out connection is not reused
}

TEST(ApiClientSim, SameIdempotencyKeyExecutesOnce) {
  REQUIRE_SIM();
  Sim sim;
  ASSERT_TRUE(sim.up()) << sim.log();
  ApiClient client(sim.settings());
  Answer first = client.call(create_request("same-key-1"));
  Answer second = client.call(create_request("same-key-1"));
  ASSERT_EQ(first.status, 201) << first.summary();
  EXPECT_EQ(second.status, 201) << second.summary();
  EXPECT_EQ(json_field(first.body, {"payment_request_id"}),
            json_field(second.body, {"payment_request_id"}));
  EXPECT_EQ(sim.executions("payment.requests.create"), 1);
}

TEST(ApiClientSim, PostWithoutIdempotencyKeyNeverReachesTheServer) {
  REQUIRE_SIM();
  Sim sim;
  ASSERT_TRUE(sim.up()) << sim.log();
  ApiClient client(sim.settings());
  Answer a = client.call(create_request(""));
  EXPECT_EQ(a.disposition, Disposition::permanent);
  EXPECT_EQ(a.transport_error, "missing idempotency key");
  auto calls = sim.control("GET", "/_sim/calls");
  ASSERT_TRUE(calls);
  EXPECT_EQ(calls->body.find("payment/requests"), std::string::npos) << calls->body;
  EXPECT_EQ(client.stats().sent, 0u);
}

TEST(ApiClientSim, ShutdownCancelsCallsInFlightAndRefusesNewOnes) {
  REQUIRE_SIM();
  Sim sim;
  ASSERT_TRUE(sim.up()) << sim.log();
  ClientSettings s = sim.settings();
  s.max_connections = 1;
  ApiClient client(s);
  auto path = make_payment_request(client, "shutdown");
  ASSERT_TRUE(sim.try_set_faults(R"("payment.requests.read:timeout:100:30000")"));
  Collector collector;
  client.send(get(path), collector.callback());  // on the wire, held by the sim
  client.send(get(path), collector.callback());  // queued behind it
  ASSERT_TRUE(wait_until([&] { return client.stats().in_flight == 1; }, 10s));
  auto t0 = std::chrono::steady_clock::now();
  client.shutdown();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  ASSERT_TRUE(collector.wait_for(2, 1s));
  for (const auto& a : collector.answers()) {
    EXPECT_EQ(a.transport_error, "cancelled");
    EXPECT_EQ(a.disposition, Disposition::retryable);
  }
  Answer after = client.call(get(path));
  EXPECT_EQ(after.transport_error, "cancelled");
}

TEST(ApiClientSim, MutualTls) {
  REQUIRE_SIM();
  auto pki_dir = make_temp_dir("api-client-mtls");
  auto pki = write_client_pki(pki_dir);
  Sim sim({"--set", "sim.tls_client_ca=" + pki.ca});
  ASSERT_TRUE(sim.up()) << sim.log();
  {
    ApiClient anonymous(sim.settings());
    Answer a = anonymous.call(get("/v2/notification/webhooks"));
    EXPECT_EQ(a.status, 0) << a.summary();
    EXPECT_EQ(a.transport_error.rfind("tls:", 0), 0u) << a.transport_error;
    EXPECT_EQ(a.disposition, Disposition::permanent) << a.transport_error;
  }
  ClientSettings s = sim.settings();
  s.client_certificate_file = pki.certificate;
  s.client_private_key_file = pki.private_key;
  ApiClient client(s);
  Answer a = client.call(get("/v2/notification/webhooks"));
  EXPECT_EQ(a.status, 200) << a.summary();
}
