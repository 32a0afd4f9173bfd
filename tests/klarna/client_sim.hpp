// What the Klarna API client's tests share: klarna-sim over HTTPS as a child
// process (loopback, OS-chosen port, a certificate generated per test), calls
// to make at it, and a collector of asynchronous answers.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "child_process.hpp"
#include "http_client.hpp"
#include "kpay/klarna/api_client.hpp"
#include "tls_cert.hpp"

namespace kpay::test::client {

inline const std::string kAccount = "krn:partner:global:account:test:SIMACCOUNT";
inline const std::string kApiKey = "klarna-test-key-1";

// A string or integer field of a JSON document ("<missing>", "<not json>", "<other>").
std::string json_field(const std::string& json, std::initializer_list<std::string_view> path);
void write_file(const std::string& path, const std::string& text, unsigned mode);

// klarna-sim over HTTPS as a child process. `exit_code` is set when it refused
// to start (2: a configuration key or value it does not accept).
struct Sim {
  explicit Sim(std::vector<std::string> extra = {}, std::optional<CertFiles> server_cert = {});
  bool up() const { return port != 0; }
  std::string log() const;
  std::string base_url() const { return "https://127.0.0.1:" + std::to_string(port); }
  // The sim's own control surface, over a separate (unverified) connection.
  std::optional<HttpResponse> control(std::string_view method, const std::string& target,
                                      std::string_view body = {});
  // Replaces the fault rules ("" clears them); false when the sim refused them.
  bool try_set_faults(const std::string& rules);
  // Operations executed on `route` (idempotent replays not counted); -1 when unreachable.
  int executions(const std::string& route);
  klarna::ClientSettings settings() const;

  std::string dir, credentials_file;
  CertFiles cert;
  std::unique_ptr<ChildProcess> proc;
  std::uint16_t port = 0;
  std::optional<int> exit_code;
};

bool sim_built();

klarna::Call get(std::string path);
// POST …/payment/requests with `key` as its idempotency key.
klarna::Call create_request(std::string key, int amount = 1500);

// Many calls in flight; waits (bounded) for all answers.
class Collector {
 public:
  std::function<void(klarna::Answer)> callback();
  bool wait_for(std::size_t n, std::chrono::milliseconds limit);
  std::vector<klarna::Answer> answers();

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<klarna::Answer> answers_;
};

}  // namespace kpay::test::client

#define REQUIRE_SIM()                                                              \
  do {                                                                             \
    if (!::kpay::test::client::sim_built())                                        \
      GTEST_SKIP() << "klarna-sim not built (" << binary("sim/klarna-sim") << ")"; \
  } while (0)
