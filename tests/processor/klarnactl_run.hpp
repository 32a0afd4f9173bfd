// Runs klarnactl with a test's configuration (DIR/ctl.toml) to completion and
// captures what it printed.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "child_process.hpp"

namespace kpay::test {

struct CliResult {
  int status;
  std::string output;
};

inline CliResult klarnactl(const std::string& dir, std::vector<std::string> args) {
  static int n = 0;
  const std::string out = dir + "/out-" + std::to_string(n++) + ".txt";
  args.insert(args.begin(), {binary("tools/klarnactl"), "--config", dir + "/ctl.toml"});
  ChildProcess child(args, out);
  auto status = child.wait(std::chrono::seconds(20));
  return {status.value_or(-1), read_file(out)};
}

}  // namespace kpay::test
