// TLS of the running receiver (and klarna-sim, which plays Klarna's API), seen
// from outside with Debian's `openssl s_client`: TLS 1.2 and 1.3 only, and for
// TLS 1.2 only ECDHE key exchange with AEAD ciphers, for an ECDSA and an RSA
// certificate (an RSA certificate is what makes RSA key exchange possible).
//
// That the Klarna API client refuses an unverified server certificate is
// tested where the client is: tests/klarna/api_client_test.cpp
// (ApiClientSim.CaFileVerifiesAndSystemStoreRefusesTheTestCertificate: a
// certificate the trust store does not know; ApiClientSim.HostNameIsVerified:
// a trusted certificate for another name).
#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "security_support.hpp"

using namespace kpay::test;
using namespace kpay::test::security;

namespace {

struct Handshake {
  bool established = false;
  std::string protocol, cipher, output;
};

// One handshake; `args` picks the version and ciphers. @SECLEVEL=0 so the
// client offers what its defaults would not: the refusal must be the server's.
Handshake handshake(std::uint16_t port, const std::string& args) {
  auto [status, out] = run_shell("timeout 10 openssl s_client -brief -connect 127.0.0.1:" +
                                 std::to_string(port) + " " + args);
  Handshake h;
  h.output = out;
  h.established = status == 0 && out.find("CONNECTION ESTABLISHED") != std::string::npos;
  auto field = [&](const std::string& name) {
    const auto at = out.find(name);
    if (at == std::string::npos) return std::string();
    const auto end = out.find('\n', at);
    return out.substr(at + name.size(), end - at - name.size());
  };
  h.protocol = field("Protocol version: ");
  h.cipher = field("Ciphersuite: ");
  return h;
}

// Every TLS 1.2 (and older) suite this OpenSSL knows, weak ones included
// (Debian's OpenSSL 3 has no RC4, 3DES or export suites left to offer).
std::vector<std::string> every_pre_tls13_suite() {
  auto [status, out] = run_shell("openssl ciphers -v 'ALL:COMPLEMENTOFALL:@SECLEVEL=0'");
  std::vector<std::string> names;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string name, version;
    words >> name >> version;
    // PSK and SRP suites need credentials a client must bring: no server
    // certificate handshake can pick them.
    const bool needs_credentials =
        name.find("PSK") != std::string::npos || name.find("SRP") != std::string::npos;
    if (!name.empty() && version != "TLSv1.3" && !needs_credentials) names.push_back(name);
  }
  return names;
}

bool strong_tls12_suite(const std::string& name) {
  const bool ecdhe = name.rfind("ECDHE-ECDSA-", 0) == 0 || name.rfind("ECDHE-RSA-", 0) == 0;
  const bool aead =
      name.find("-GCM-") != std::string::npos || name.find("CHACHA20-POLY1305") != std::string::npos;
  return ecdhe && aead;
}

// The TLS 1.2 suites the server agrees to, each tried on its own (eight
// handshakes at a time).
std::set<std::string> accepted_tls12_suites(std::uint16_t port) {
  std::string list;
  for (const auto& suite : every_pre_tls13_suite()) list += suite + "\n";
  const auto dir = make_temp_dir("sec-suites");
  std::ofstream(dir + "/suites") << list;
  auto [status, out] = run_shell(
      "xargs -P 8 -I{} sh -c 'timeout 10 openssl s_client -brief -connect 127.0.0.1:" +
      std::to_string(port) +
      " -tls1_2 -cipher \"{}@SECLEVEL=0\" </dev/null 2>&1 | grep -q \"CONNECTION ESTABLISHED\" "
      "&& echo \"ACCEPTED {}\"' < " + dir + "/suites");
  std::filesystem::remove_all(dir);
  std::set<std::string> accepted;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("ACCEPTED ", 0) == 0) accepted.insert(line.substr(9));
  }
  return accepted;
}

void expect_versions(std::uint16_t port) {
  auto v12 = handshake(port, "-tls1_2");
  EXPECT_TRUE(v12.established) << v12.output;
  EXPECT_EQ(v12.protocol, "TLSv1.2") << v12.output;
  auto v13 = handshake(port, "-tls1_3");
  EXPECT_TRUE(v13.established) << v13.output;
  EXPECT_EQ(v13.protocol, "TLSv1.3") << v13.output;
  for (const std::string old : {"-tls1", "-tls1_1"}) {
    auto h = handshake(port, old + " -cipher 'DEFAULT@SECLEVEL=0'");
    EXPECT_FALSE(h.established) << old << "\n" << h.output;
    // The client did offer it; the server answered with a protocol_version alert.
    EXPECT_NE(h.output.find("alert protocol version"), std::string::npos) << old << "\n"
                                                                          << h.output;
  }
  for (const std::string suite :
       {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}) {
    auto h = handshake(port, "-tls1_3 -ciphersuites " + suite);
    EXPECT_TRUE(h.established) << suite << "\n" << h.output;
    EXPECT_EQ(h.cipher, suite);
  }
}

void expect_only_strong_tls12(std::uint16_t port, const std::string& key_type) {
  const auto accepted = accepted_tls12_suites(port);
  EXPECT_FALSE(accepted.empty());
  std::string list;
  for (const auto& s : accepted) {
    list += s + " ";
    EXPECT_TRUE(strong_tls12_suite(s)) << key_type << " certificate: weak suite accepted: " << s;
    EXPECT_NE(s.find(key_type == "RSA" ? "-RSA-" : "-ECDSA-"), std::string::npos) << s;
  }
  std::cout << key_type << " certificate, TLS 1.2 suites accepted: " << list << "\n";
  for (const std::string weak : {"AES128-SHA", "AES256-GCM-SHA384", "DES-CBC3-SHA", "NULL-SHA256",
                                 "ECDHE-RSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384",
                                 "DHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-NULL-SHA"}) {
    EXPECT_EQ(accepted.count(weak), 0u) << weak;
  }
}

CertFiles rsa_certificate(const std::string& dir) {
  CertFiles files{dir + "/rsa.crt", dir + "/rsa.key"};
  auto [status, out] = run_shell(
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
      "-addext subjectAltName=IP:127.0.0.1 -keyout " +
      files.private_key + " -out " + files.certificate);
  EXPECT_EQ(status, 0) << out;
  ::chmod(files.private_key.c_str(), 0600);
  return files;
}

}  // namespace

TEST(ReceiverTlsPolicy, OnlyTls12And13WithForwardSecrecyAndAead_EcdsaCertificate) {
  ReceiverProcess r;
  ASSERT_NE(r.port(), 0);
  expect_versions(r.port());
  expect_only_strong_tls12(r.port(), "ECDSA");
  // Every refused handshake was counted.
  EXPECT_GE(r.metric("receiver_tls_handshake_failures_total"), 2);
}

TEST(ReceiverTlsPolicy, OnlyForwardSecrecyAndAead_RsaCertificate) {
  const auto dir = make_temp_dir("sec-rsa");
  ReceiverProcess r({{}, rsa_certificate(dir), true, {}});
  ASSERT_NE(r.port(), 0);
  auto h = handshake(r.port(), "-tls1_2");
  EXPECT_TRUE(h.established) << h.output;
  expect_only_strong_tls12(r.port(), "RSA");
  std::filesystem::remove_all(dir);
}

TEST(SimTls, TheKlarnaDoubleOffersWhatKlarnaDoes) {
  const auto dir = make_temp_dir("sec-sim-tls");
  const auto cert = write_self_signed_cert(dir);
  ChildProcess sim({binary("sim/klarna-sim"), "--port", "0", "--port-file", dir + "/sim.port",
                    "--set", "sim.tls=true", "--set", "sim.tls_certificate=" + cert.certificate,
                    "--set", "sim.tls_private_key=" + cert.private_key},
                   dir + "/sim.log");
  std::uint16_t port = 0;
  ASSERT_TRUE(wait_until([&] { return (port = json_port(read_file(dir + "/sim.port"), "port")); },
                         std::chrono::seconds(20)))
      << read_file(dir + "/sim.log");
  expect_versions(port);
  expect_only_strong_tls12(port, "ECDSA");
  std::filesystem::remove_all(dir);
}
