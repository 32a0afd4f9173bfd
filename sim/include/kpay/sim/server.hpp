// The sim's HTTP(S) front: one coroutine per connection (Beast,
// server-flex-awaitable shape), a read deadline and a body limit per request,
// fault injection applied before (or, for drop-after, after) SimApi::handle().
// Runs on its own io_context and threads; callers need not include Asio.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "kpay/sim/api.hpp"
#include "kpay/sim/faults.hpp"

namespace kpay::sim {

struct ServerOptions {
  std::string listen_address = "127.0.0.1";
  std::uint16_t port = 0;
  bool tls = false;
  std::string tls_certificate, tls_private_key;  // PEM files when tls
  // PEM CA file (with tls): clients must present a certificate that verifies
  // against it, else the handshake fails (mTLS).
  std::string tls_client_ca;
  std::size_t body_limit = 1 << 20;
  std::int64_t read_timeout_ms = 59'000;
  int threads = 2;
};

class SimServer {
 public:
  SimServer(ServerOptions options, SimApi& api, FaultPlan& faults);
  ~SimServer();  // stops and joins
  SimServer(const SimServer&) = delete;
  SimServer& operator=(const SimServer&) = delete;

  // Binds and starts serving; returns the bound port. Throws std::runtime_error.
  std::uint16_t start();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kpay::sim
