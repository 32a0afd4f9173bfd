// Process plumbing shared by the daemons: signals and systemd notification.
#pragma once

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

}  // namespace kpay::core
