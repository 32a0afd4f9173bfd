// SIGHUP swaps the mTLS client certificate and key while calls are in flight,
// end to end: klarna-sim requires a client certificate from a test CA
// (sim.tls_client_ca) and records each call's certificate subject. Calls on
// the wire at the reload finish (none fails, none is retried); every later
// call presents the new certificate; a key that does not match the
// certificate is refused with a log line naming the setting, the previous
// pair kept and no key material logged.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <csignal>
#include <filesystem>
#include <map>

#include "e2e_system.hpp"
#include "kpay/processor/follow_ups.hpp"
#include "mtls_client.hpp"

using namespace kpay;
using namespace kpay::test;
using namespace std::chrono_literals;

namespace {

const std::string kKeyId = "krn:partner:global:notification:signing-key:mtls-0001";
const std::string kSecret = "mtls-signing-key-NOT-REAL";
const std::string kApiKey = "mtls-api-key-NOT-REAL";
const std::string kAccount = "krn:partner:global:account:test:MTLS0001";

std::string authorize(const std::string& id) {
  return R"({"command_id":")" + id + R"(","type":"authorize","partner_account_id":")" + kAccount +
         R"(","amount":10,"currency":"EUR","payment_transaction_reference":"ref-)" + id +
         R"(","capture":"LATER","customer_token":"ctok-)" + id + "\"}";
}

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Copies a PEM file over `to` atomically (rename), owner-only.
void install(const std::string& from, const std::string& to) {
  const auto tmp = to + ".new";
  std::filesystem::copy_file(from, tmp, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::permissions(
      tmp, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  std::filesystem::rename(tmp, to);
}

class MtlsReload : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_ = make_temp_dir("mtls-pki");
    ca_ = write_ca_cert(pki_, "ca", "kpay test client CA");
    old_ = write_cert_signed_by(ca_, pki_, "old", "processor-2026-old");
    new_ = write_cert_signed_by(ca_, pki_, "new", "processor-2026-new");
    // Every authorize answered after 600 ms: several on the wire at once.
    sys_.emplace(SystemOptions{"mtls-e2e",
                               "mtls",
                               kKeyId,
                               kSecret,
                               kApiKey,
                               {"--set", "sim.tls_client_ca=" + ca_.certificate, "--set",
                                R"(faults.rules=["payment.authorize:latency:100:600"])"}});
    cert_ = sys_->dir() + "/client.crt";
    key_ = sys_->dir() + "/client.key";
    install(old_.certificate, cert_);
    install(old_.private_key, key_);
    ASSERT_NO_FATAL_FAILURE(sys_->start_receiver());
    ASSERT_NO_FATAL_FAILURE(sys_->start_sim());
    sys_->start_processor({"--set", "klarna.client_certificate=" + cert_, "--set",
                           "klarna.client_private_key=" + key_});
    ASSERT_TRUE(wait_until(
        [&] { return sys_->processor_log().find("partitions assigned") != std::string::npos; },
        60s))
        << sys_->processor_log();
  }
  void TearDown() override {
    if (sys_) sys_->stop_processor();
    sys_.reset();
    std::filesystem::remove_all(pki_);
  }

  // SIGHUP, then waits for the log line that says how it went.
  void sighup_until(const std::string& line) {
    const auto before = count_of(sys_->processor_log(), line);
    sys_->processor()->signal(SIGHUP);
    ASSERT_TRUE(wait_until([&] { return count_of(sys_->processor_log(), line) > before; }, 20s))
        << sys_->processor_log();
  }

  // The client certificate subject of each authorize the sim received, by
  // idempotency key (read over mTLS: the sim asks every client for one).
  std::map<std::string, std::vector<std::string>> subjects() {
    const auto r = sim::test::https_request(sys_->sim_port(), {new_.certificate, new_.private_key},
                                            "GET", "/_sim/calls?route=payment.authorize",
                                            {{"Authorization", "Basic " + kApiKey}});
    std::map<std::string, std::vector<std::string>> out;
    simdjson::dom::parser p;
    simdjson::dom::element root;
    if (!r || p.parse(r->body).get(root) != simdjson::SUCCESS) return out;
    for (auto c : root["calls"]) {
      out[str_at(c, "idempotency_key")].push_back(str_at(c, "client_certificate_subject"));
    }
    return out;
  }
  static std::string key_of(const std::string& command_id) {
    return processor::idempotency_key("initial_authorization", command_id, "");
  }

  std::string pki_, cert_, key_;
  CertFiles ca_, old_, new_;
  std::optional<System> sys_;
};

TEST_F(MtlsReload, SighupSwapsTheClientCertificateWithCallsInFlightAndRefusesAMismatchedKey) {
  auto& sys = *sys_;
  std::vector<std::string> before, after;
  for (int i = 0; i < 8; ++i) {
    before.push_back("mtls-before-" + std::to_string(i));
    sys.send("ref-" + before.back(), authorize(before.back()));
  }
  ASSERT_TRUE(wait_until(
      [&] { return query(sys.db(), "SELECT COUNT(*) FROM outbox WHERE status = 'in_flight'") > 0; },
      30s))
      << sys.processor_log();
  install(new_.certificate, cert_);
  install(new_.private_key, key_);
  ASSERT_NO_FATAL_FAILURE(sighup_until("Klarna credentials reloaded"));
  for (int i = 0; i < 8; ++i) {
    after.push_back("mtls-after-" + std::to_string(i));
    sys.send("ref-" + after.back(), authorize(after.back()));
  }
  for (const auto& ids : {before, after}) {
    for (const auto& id : ids) {
      const auto r = sys.final_result(id);
      EXPECT_EQ(r.status, "succeeded") << id << " " << r.raw;
    }
  }
  // None failed on the wire and was sent again.
  EXPECT_EQ(query(sys.db(), "SELECT COUNT(*) FROM outbox WHERE attempts <> 1"), 0)
      << query_text(sys.db(),
                    "SELECT group_concat(command_id || ': ' || COALESCE(last_error, ''), '; ') "
                    "FROM outbox WHERE attempts <> 1");

  auto seen = subjects();
  const std::string old_subject = "CN=processor-2026-old", new_subject = "CN=processor-2026-new";
  std::size_t old_before = 0;
  for (const auto& id : before) {
    ASSERT_EQ(seen[key_of(id)].size(), 1u) << id;
    const auto& s = seen[key_of(id)][0];
    EXPECT_TRUE(s == old_subject || s == new_subject) << id << ": " << s;
    old_before += s == old_subject;
  }
  EXPECT_GE(old_before, 1u) << "no call was on the wire with the old certificate";
  for (const auto& id : after) {
    ASSERT_EQ(seen[key_of(id)].size(), 1u) << id;
    EXPECT_EQ(seen[key_of(id)][0], new_subject) << id;
  }

  // A key that does not match the certificate: refused, the pair in use kept.
  install(old_.private_key, key_);
  ASSERT_NO_FATAL_FAILURE(sighup_until("Klarna credentials reload refused"));
  const auto log = sys.processor_log();
  EXPECT_NE(log.find("client_private_key_file"), std::string::npos) << log;
  EXPECT_NE(log.find("mismatch"), std::string::npos) << log;
  const auto key_pem = read_file(old_.private_key);
  const auto body = key_pem.substr(key_pem.find('\n') + 1, 40);
  EXPECT_EQ(log.find(body), std::string::npos) << "private key material in the log";
  sys.send("ref-mtls-kept", authorize("mtls-kept"));
  EXPECT_EQ(sys.final_result("mtls-kept").status, "succeeded");
  seen = subjects();
  ASSERT_EQ(seen[key_of("mtls-kept")].size(), 1u);
  EXPECT_EQ(seen[key_of("mtls-kept")][0], new_subject);
}

}  // namespace
