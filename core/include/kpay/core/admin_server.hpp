// The operations endpoint every daemon exposes on its own port:
//   GET /metrics  Prometheus text exposition of the registry
//   GET /healthz  200 while the process is alive and serving this endpoint
//   GET /readyz   200 when `ready()` says the dependencies (Kafka, storage) are
//                 usable, else 503 with the reason as JSON
// It runs on its own thread and io_context so a stuck data path cannot hide
// behind a stuck health check, and so callers need not include Asio.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "kpay/core/metrics.hpp"

namespace kpay::core {

struct Readiness {
  bool ready = true;
  std::string reason;  // why not ready; shown in /readyz
};

class AdminServer {
 public:
  AdminServer(Registry& registry, std::function<Readiness()> readiness);
  ~AdminServer();  // stops and joins
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Binds host:port (port 0 picks one) and starts serving; returns the bound port.
  // Throws std::runtime_error when the address cannot be bound.
  std::uint16_t start(const std::string& host, std::uint16_t port);
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kpay::core
