// klarna-sim as a child process on an OS-chosen loopback port, for the suites
// that talk to it over real sockets (plain HTTP, or HTTPS with a throw-away
// self-signed certificate).
#pragma once

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "child_process.hpp"
#include "http_client.hpp"
#include "test_helpers.hpp"
#include "tls_cert.hpp"

namespace kpay::sim::test {

inline const std::string kSimDefaultAuth = "Basic klarna-sim-api-key";

struct SimProcess {
  // `extra`: more klarna-sim arguments; `tls`: serve HTTPS.
  explicit SimProcess(std::vector<std::string> extra, bool tls = false) : tls(tls) {
    using namespace kpay::test;
    dir = make_temp_dir("sim-server");
    port_file = dir + "/port.json";
    std::vector<std::string> argv{binary("sim/klarna-sim"),     "--set", "sim.port=0", "--set",
                                  "sim.port_file=" + port_file, "--set", "sim.seed=11"};
    if (tls) {
      auto cert = write_self_signed_cert(dir);
      argv.insert(argv.end(),
                  {"--set", "sim.tls=true", "--set", "sim.tls_certificate=" + cert.certificate,
                   "--set", "sim.tls_private_key=" + cert.private_key});
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    proc = std::make_unique<ChildProcess>(argv, dir + "/sim.log");
    bool up = wait_until(
        [&] { return jstr(read_file(port_file), {"port"}).find('<') == std::string::npos; },
        std::chrono::seconds(15));
    EXPECT_TRUE(up) << read_file(dir + "/sim.log");
    if (up) port = static_cast<std::uint16_t>(std::stoi(jstr(read_file(port_file), {"port"})));
  }
  // With the default credentials unless `headers` has an Authorization.
  std::optional<kpay::test::HttpResponse> req(std::string_view method, const std::string& target,
                                              std::string_view body = {},
                                              std::map<std::string, std::string> headers = {}) {
    headers.emplace("Authorization", kSimDefaultAuth);
    return kpay::test::http_request(port, method, target, body, headers, tls);
  }
  std::optional<kpay::test::HttpResponse> req_without_auth(std::string_view method,
                                                           const std::string& target) {
    return kpay::test::http_request(port, method, target, {}, {}, tls);
  }
  std::string base_url() const {
    return std::string(tls ? "https" : "http") + "://127.0.0.1:" + std::to_string(port);
  }
  bool tls = false;
  std::string dir, port_file;
  std::unique_ptr<kpay::test::ChildProcess> proc;
  std::uint16_t port = 0;
};

}  // namespace kpay::sim::test
