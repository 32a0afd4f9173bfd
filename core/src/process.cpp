#include "kpay/core/process.hpp"

#include <signal.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include <string>

namespace kpay::core {

namespace {
sigset_t termination_set() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  return set;
}
}  // namespace

void block_termination_signals() {
  // A process started in the background by a non-interactive shell inherits
  // SIGINT ignored; an ignored signal is discarded before sigtimedwait could
  // take it. Restore the default disposition first, then block.
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) signal(sig, SIG_DFL);
  // A log reader that went away (journald restart, a closed pipe) must not
  // kill the process: writes fail with EPIPE instead.
  signal(SIGPIPE, SIG_IGN);
  sigset_t set = termination_set();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

std::optional<int> wait_for_signal(std::chrono::milliseconds timeout) {
  sigset_t set = termination_set();
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  ts.tv_nsec = static_cast<long>((timeout.count() % 1000) * 1000000);
  int sig = sigtimedwait(&set, nullptr, &ts);
  if (sig < 0) return std::nullopt;
  return sig;
}

void notify_ready() { sd_notify(0, "READY=1"); }
void notify_stopping() { sd_notify(0, "STOPPING=1"); }
void notify_reloading() { sd_notify(0, "RELOADING=1"); }
void notify_watchdog() { sd_notify(0, "WATCHDOG=1"); }
void notify_status(const char* status) { sd_notify(0, (std::string("STATUS=") + status).c_str()); }

std::optional<std::chrono::microseconds> watchdog_interval() {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) return std::chrono::microseconds(usec / 2);
  return std::nullopt;
}

}  // namespace kpay::core
