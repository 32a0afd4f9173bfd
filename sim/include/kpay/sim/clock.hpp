// The simulator's clock. Everything time-based in the sim (idempotency window,
// token and request expiry, webhook retry schedule) reads this clock, so a test
// can run Klarna's hours-long schedules in milliseconds:
//   sim_now = wall clock at start + real elapsed × speed + manual offset.
// `speed` is fixed at construction; advance() adds to the offset at any time.
// Thread-safe: all reads and writes are atomic.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace kpay::sim {

class SimClock {
 public:
  explicit SimClock(std::int64_t speed = 1) : speed_(speed < 1 ? 1 : speed) {
    start_wall_ms_ = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    start_steady_ = std::chrono::steady_clock::now();
  }

  // Unix milliseconds in simulated time.
  std::int64_t now_ms() const {
    auto real = std::chrono::duration_cast<std::chrono::microseconds>(
                    std::chrono::steady_clock::now() - start_steady_)
                    .count();
    return start_wall_ms_ + (real * speed_) / 1000 + offset_ms_.load(std::memory_order_relaxed);
  }
  void advance(std::int64_t ms) { offset_ms_.fetch_add(ms, std::memory_order_relaxed); }
  std::int64_t speed() const { return speed_; }
  // How long to wait in real time for `sim_ms` of simulated time to pass.
  std::chrono::microseconds real_delay(std::int64_t sim_ms) const {
    if (sim_ms <= 0) return std::chrono::microseconds(0);
    return std::chrono::microseconds(sim_ms * 1000 / speed_);
  }

 private:
  std::int64_t speed_;
  std::int64_t start_wall_ms_;
  std::chrono::steady_clock::time_point start_steady_;
  std::atomic<std::int64_t> offset_ms_{0};
};

}  // namespace kpay::sim
