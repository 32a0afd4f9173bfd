// klarna-receiver as a library: the HTTPS listener wired to the key ring, the
// verifier and the Kafka publisher. main.cpp, the tests and the benchmarks all
// run this same object.
//
// Lifecycle: construct (loads keys, creates the producer; throws on start-up
// errors) → start() (binds, serves) → shutdown() (stop accepting, answer every
// request already read with its real answer, flush Kafka, bounded by
// shutdown_grace) → destroy.
#pragma once

#include <cstdint>
#include <memory>

#include "kpay/core/metrics.hpp"
#include "kpay/receiver/settings.hpp"

namespace kpay::receiver {

class Receiver {
 public:
  explicit Receiver(Settings settings);
  ~Receiver();
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;

  // Binds the webhook and admin listeners and starts the I/O threads; writes
  // the port file when configured. Throws std::runtime_error when it cannot bind.
  void start();
  std::uint16_t port() const;
  std::uint16_t admin_port() const;

  // Re-reads the signing keys now (what SIGHUP does).
  void reload_keys();
  // Graceful stop; returns true when every connection finished and Kafka
  // confirmed or failed every message within the grace period.
  bool shutdown();

  // Runs until SIGTERM/SIGINT (SIGHUP reloads keys), then shuts down.
  // Returns the process exit code.
  int run_until_signalled();

  core::Registry& metrics();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kpay::receiver
