// Runs one of our binaries as a child process for end-to-end tests (real
// processes, real sockets). The child is killed (SIGKILL) and reaped in the
// destructor if still running, so a failing test never leaks daemons.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace kpay::test {

class ChildProcess {
 public:
  // argv[0] is the executable path. stdout/stderr go to `log_file` when given
  // (appended), else are inherited.
  ChildProcess(std::vector<std::string> argv, std::string log_file = {});
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  void signal(int sig);
  // Exit status (or 128+signal) once the child exited within `timeout`.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  bool running();

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
};

// Directory holding the built binaries (set by CMake as KPAY_BINARY_DIR), e.g.
// binary("receiver/klarna-receiver").
std::string binary(const std::string& relative);

// Reads a whole file; empty when missing.
std::string read_file(const std::string& path);
// A fresh, empty directory under the system temp dir, unique per call.
std::string make_temp_dir(const std::string& tag);

}  // namespace kpay::test
