// Every program exits 2 on a usage error (an unknown flag, a bad or missing
// option value), as the docs and the units' RestartPreventExitStatus=2
// assume, and says what was wrong; --help exits 0. (CLI11's own exit codes,
// e.g. 109 for an unknown flag, are not used.)
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "child_process.hpp"

using namespace kpay::test;
using namespace std::chrono_literals;

namespace {

const std::vector<std::string> kPrograms = {"receiver/klarna-receiver",
                                            "processor/klarna-processor", "sim/klarna-sim",
                                            "tools/klarna-embedded-kafka", "tools/klarnactl"};

struct Run {
  std::optional<int> status;
  std::string output;
};

Run run(const std::string& dir, const std::string& program, std::vector<std::string> args) {
  static int n = 0;
  const std::string log = dir + "/run" + std::to_string(++n) + ".log";
  args.insert(args.begin(), binary(program));
  ChildProcess child(args, log);
  Run r;
  r.status = child.wait(20s);
  r.output = read_file(log);
  return r;
}

}  // namespace

TEST(Usage, AnUnknownFlagExitsTwoNamingIt) {
  const auto dir = make_temp_dir("usage-unknown");
  for (const auto& program : kPrograms) {
    // klarnactl first wants a subcommand (and says so, also exit 2).
    auto r = program == "tools/klarnactl" ? run(dir, program, {"payments", "list", "--no-such-flag"})
                                          : run(dir, program, {"--no-such-flag"});
    EXPECT_EQ(r.status, 2) << program << ": " << r.output;
    EXPECT_NE(r.output.find("--no-such-flag"), std::string::npos) << program << ": " << r.output;
  }
  std::filesystem::remove_all(dir);
}

TEST(Usage, AMissingOptionValueExitsTwo) {
  const auto dir = make_temp_dir("usage-missing");
  for (const auto& program : {"receiver/klarna-receiver", "processor/klarna-processor",
                              "sim/klarna-sim"}) {
    auto r = run(dir, program, {"--config"});
    EXPECT_EQ(r.status, 2) << program << ": " << r.output;
    EXPECT_NE(r.output.find("--config"), std::string::npos) << program << ": " << r.output;
  }
  auto r = run(dir, "tools/klarna-embedded-kafka", {"--brokers", "99"});
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--brokers"), std::string::npos) << r.output;
  std::filesystem::remove_all(dir);
}

TEST(Usage, HelpExitsZero) {
  const auto dir = make_temp_dir("usage-help");
  for (const auto& program : kPrograms) {
    auto r = run(dir, program, {"--help"});
    EXPECT_EQ(r.status, 0) << program << ": " << r.output;
    EXPECT_NE(r.output.find("--help"), std::string::npos) << program << ": " << r.output;
  }
  std::filesystem::remove_all(dir);
}
