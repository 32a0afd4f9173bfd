// Process plumbing shared by the daemons: signals and systemd notification.
#pragma once

#include <atomic>
#include <chrono>
#include <optional>

namespace kpay::core {

// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread and every thread it
// starts afterwards; call first thing in main() of a daemon that does not
// run Asio's signal_set. Then wait_for_signal() takes them one at a time.
// Also ignores SIGPIPE (a vanished log reader must not kill a daemon).
void block_termination_signals();
// Returns the signal number, or nullopt when `timeout` passed without one.
std::optional<int> wait_for_signal(std::chrono::milliseconds timeout);

// sd_notify(3) wrappers; they do nothing when not started by systemd.
void notify_ready();
void notify_stopping();
void notify_reloading();
void notify_watchdog();
void notify_status(const char* status);
// Half of WatchdogSec= when the watchdog is enabled for this process.
std::optional<std::chrono::microseconds> watchdog_interval();

// Liveness as the work loop reports it, for the systemd watchdog: the loop
// beats whenever it made progress or found nothing to do; a loop stuck
// (retrying a failing store, deadlocked, spinning in a library) stops
// beating, and the daemon then withholds WATCHDOG=1 so systemd restarts it
// instead of believing it healthy. Thread-safe; starts fresh.
class Heartbeat {
 public:
  using Clock = std::chrono::steady_clock;
  Heartbeat() { beat(); }
  void beat(Clock::time_point at = Clock::now()) noexcept {
    last_.store(at.time_since_epoch().count(), std::memory_order_relaxed);
  }
  Clock::time_point last() const noexcept {
    return Clock::time_point(Clock::duration(last_.load(std::memory_order_relaxed)));
  }
  // The rule the watchdog is fed by: the last beat is at most `max_age` old.
  bool fresh(Clock::time_point now, Clock::duration max_age) const noexcept {
    return now - last() <= max_age;
  }

 private:
  std::atomic<Clock::rep> last_{0};
};

}  // namespace kpay::core
