// klarnactl status and top against the running system (real processes: the
// receiver over HTTPS, klarna-sim, the processor on a real SQLite file, the
// embedded Kafka), and `make run` (scripts/run-demo.sh) as a whole: its live
// view's summary after DEMO_SECONDS, and its message when a port is taken.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <regex>

#include "e2e_system.hpp"

namespace kpay::test {
namespace {

using namespace std::chrono_literals;

const std::string kKeyId = "krn:partner:global:notification:signing-key:status-1";

// A loopback TCP socket on a port the OS chose; listening when asked.
struct Socket {
  int fd = -1;
  std::uint16_t port = 0;
  explicit Socket(bool listen) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
    if (listen) {
      EXPECT_EQ(::listen(fd, 4), 0);
    }
  }
  ~Socket() { close(); }
  void close() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

// `n` distinct such ports (all held while choosing, so none repeats).
std::vector<std::uint16_t> closed_ports(std::size_t n) {
  std::vector<std::unique_ptr<Socket>> held;
  std::vector<std::uint16_t> out;
  for (std::size_t i = 0; i < n; ++i) {
    held.push_back(std::make_unique<Socket>(false));
    out.push_back(held.back()->port);
  }
  return out;
}

// The demo's port variables, set to free ports; `taken` (if any) for the processor's admin.
std::vector<std::string> port_env(std::optional<std::uint16_t> taken = std::nullopt) {
  const auto p = closed_ports(4);
  return {"RECEIVER_PORT=" + std::to_string(p[0]), "SIM_PORT=" + std::to_string(p[1]),
          "RECEIVER_ADMIN_PORT=" + std::to_string(p[2]),
          "PROCESSOR_ADMIN_PORT=" + std::to_string(taken.value_or(p[3]))};
}

std::string admin_url(std::uint16_t port) {
  return "http://127.0.0.1:" + std::to_string(port);
}

// The processor logs its admin port: "admin endpoint listening" … "port":N.
std::uint16_t processor_admin_port(System& s) {
  std::uint16_t port = 0;
  const bool ok = wait_until(
      [&] {
        static const std::regex re(R"(admin endpoint listening[^\n]*"port":(\d+))");
        std::smatch m;
        const auto log = s.processor_log();
        if (!std::regex_search(log, m, re)) return false;
        port = static_cast<std::uint16_t>(std::stoi(m[1]));
        return true;
      },
      30s);
  EXPECT_TRUE(ok) << s.processor_log();
  return port;
}

std::uint16_t receiver_admin_port(System& s) {
  const auto text = read_file(s.dir() + "/receiver.port");
  const auto at = text.find("\"admin_port\":");
  return at == std::string::npos ? 0
                                 : static_cast<std::uint16_t>(std::atoi(text.c_str() + at + 13));
}

// klarnactl with arbitrary arguments: exit code and output (stdout + stderr).
std::pair<int, std::string> klarnactl(const std::string& dir, std::vector<std::string> args) {
  std::vector<std::string> argv{binary("tools/klarnactl")};
  argv.insert(argv.end(), args.begin(), args.end());
  const std::string log = dir + "/klarnactl-status.log";
  std::filesystem::remove(log);
  ChildProcess p(argv, log);
  auto status = p.wait(60s);
  return {status.value_or(-1), read_file(log)};
}

long long final_payments(const std::string& db) {
  return query(db,
               "SELECT COUNT(*) FROM payment_requests WHERE state IN "
               "('AUTHORIZED','COMPLETED','DECLINED','EXPIRED','CANCELED')");
}

TEST(KlarnactlStatus, UsageAndConfigurationErrorsExitTwo) {
  const auto dir = make_temp_dir("status-usage");
  auto [code, out] = klarnactl(dir, {"status", "--receiver-admin", "http://127.0.0.1:notaport"});
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("receiver-admin"), std::string::npos) << out;
  std::tie(code, out) = klarnactl(dir, {"status", "--processor-config", dir + "/missing.toml"});
  EXPECT_EQ(code, 2) << out;
  EXPECT_NE(out.find("missing.toml"), std::string::npos) << out;
  std::tie(code, out) = klarnactl(dir, {"top", "--interval", "0"});
  EXPECT_EQ(code, 2) << out;
  std::filesystem::remove_all(dir);
}

TEST(KlarnactlStatus, NothingRunningExitsOneNamingEach) {
  const auto dir = make_temp_dir("status-down");
  const auto ports = closed_ports(2);
  const auto r = ports[0], p = ports[1];
  auto [code, out] =
      klarnactl(dir, {"status", "--receiver-admin", admin_url(r), "--processor-admin", admin_url(p),
                      "--database", dir + "/none.db", "--timeout-ms", "500"});
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("klarna-receiver    UNREACHABLE"), std::string::npos) << out;
  EXPECT_NE(out.find("klarna-processor   UNREACHABLE"), std::string::npos) << out;
  EXPECT_NE(out.find("not ready: klarna-receiver: unreachable at " + admin_url(r)),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("no database at"), std::string::npos) << out;
  std::filesystem::remove_all(dir);
}

// One system for the whole story (processes and group joins cost seconds):
// ready → exit 0 with the figures; top follows payments to final states and
// prints its summary on SIGTERM; the processor stopped → exit 1 naming it.
TEST(KlarnactlStatus, RunningSystemReadyTopThenProcessorStopped) {
  System s({.tag = "status",
            .group_id = "status-test",
            .key_id = kKeyId,
            .secret = "status-test-secret-0123456789abcdef",
            .api_key = "status-api-key",
            .sim_args = {}});
  ASSERT_NO_FATAL_FAILURE(s.start_receiver());
  ASSERT_NO_FATAL_FAILURE(s.start_sim());
  s.start_processor();
  const auto padmin = processor_admin_port(s);
  const auto radmin = receiver_admin_port(s);
  ASSERT_NE(padmin, 0);
  ASSERT_NE(radmin, 0);
  const std::vector<std::string> where{"--config",          s.dir() + "/processor.toml",
                                       "--receiver-admin",  admin_url(radmin),
                                       "--processor-admin", admin_url(padmin)};
  auto with = [&](std::vector<std::string> args) {
    args.insert(args.end(), where.begin(), where.end());
    return args;
  };

  // The live view, plain (its output is a file), from before the payments.
  const std::string top_log = s.dir() + "/top.log";
  ChildProcess top(with({binary("tools/klarnactl"), "top", "--interval", "0.2"}), top_log);

  const auto started =
      s.sim("POST", "/_sim/scenarios",
            R"({"journeys":6,"rate":20,"mix":["approve:2","decline","expire"],"versions":["v2"]})");
  ASSERT_EQ(started.find("error"), std::string::npos) << started;
  ASSERT_TRUE(wait_until([&] { return final_payments(s.db()) >= 6; }, 90s)) << s.processor_log();

  // Ready: exit 0, human figures and JSON.
  std::pair<int, std::string> st;
  ASSERT_TRUE(
      wait_until([&] { return (st = klarnactl(s.dir(), with({"status"}))).first == 0; }, 60s))
      << st.second;
  EXPECT_NE(st.second.find("klarna-receiver    ready"), std::string::npos) << st.second;
  EXPECT_NE(st.second.find("klarna-processor   ready"), std::string::npos) << st.second;
  EXPECT_NE(st.second.find("signing keys            1"), std::string::npos) << st.second;
  EXPECT_NE(st.second.find("kafka lag"), std::string::npos) << st.second;
  EXPECT_TRUE(
      std::regex_search(st.second, std::regex(R"(payments\s+\d+, [6-9]\d* in a final state)")))
      << st.second;
  auto [jcode, json] = klarnactl(s.dir(), with({"status", "--json"}));
  EXPECT_EQ(jcode, 0) << json;
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  ASSERT_EQ(parser.parse(json).get(root), simdjson::SUCCESS) << json;
  EXPECT_TRUE(root["ready"].get_bool().value_unsafe());
  EXPECT_EQ(root["receiver"]["signing_keys"].get_double().value_unsafe(), 1.0) << json;
  EXPECT_GE(root["database"]["payments_final"].get_int64().value_unsafe(), 6) << json;
  EXPECT_GE(root["receiver"]["webhooks_accepted"].get_double().value_unsafe(), 6.0) << json;

  // top: lines while running, payments in final states, the summary on SIGTERM.
  ASSERT_TRUE(wait_until(
      [&] {
        // Final payments, and the processor's final authorizations done.
        const auto text = read_file(top_log);
        return std::regex_search(text, std::regex(R"(payments \d+ final [6-9]\d*)")) &&
               std::regex_search(text, std::regex(R"(calls succeeded [1-9])"));
      },
      60s))
      << read_file(top_log);
  top.signal(SIGTERM);
  EXPECT_EQ(top.wait(20s), 0) << read_file(top_log);
  const auto top_out = read_file(top_log);
  EXPECT_NE(top_out.find("klarnactl top: summary of"), std::string::npos) << top_out;
  EXPECT_TRUE(
      std::regex_search(top_out, std::regex(R"(payment_request\s+COMPLETED \(final\)\s+[1-9])")))
      << top_out;
  EXPECT_TRUE(std::regex_search(top_out, std::regex(R"(webhooks received\s+[1-9]\d*)"))) << top_out;
  EXPECT_TRUE(std::regex_search(top_out, std::regex(R"(final_authorization\s+succeeded [1-9])")))
      << top_out;

  // The processor stopped: exit 1, naming it and why.
  ASSERT_NO_FATAL_FAILURE(s.stop_processor());
  auto [code, out] = klarnactl(s.dir(), with({"status", "--timeout-ms", "1000"}));
  EXPECT_EQ(code, 1) << out;
  EXPECT_NE(out.find("klarna-receiver    ready"), std::string::npos) << out;
  EXPECT_NE(out.find("klarna-processor   UNREACHABLE"), std::string::npos) << out;
  EXPECT_NE(out.find("not ready: klarna-processor: unreachable at " + admin_url(padmin)),
            std::string::npos)
      << out;
}

// ---- make run (scripts/run-demo.sh) ----------------------------------------------

std::string script() {
  return std::string(KPAY_SOURCE_DIR) + "/scripts/run-demo.sh";
}

struct Demo {
  std::string dir = make_temp_dir("demo");
  std::optional<ChildProcess> process;
  void start(const std::vector<std::string>& env) {
    std::vector<std::string> argv{"/usr/bin/env", "KPAY_RUN_DIR=" + dir + "/run"};
    argv.insert(argv.end(), env.begin(), env.end());
    argv.insert(argv.end(), {"bash", script(), KPAY_BINARY_DIR});
    process.emplace(argv, dir + "/out.log");
  }
  std::string out() const { return read_file(dir + "/out.log"); }
  ~Demo() {
    if (process && process->running()) {  // stops its daemons (own sessions)
      process->signal(SIGTERM);
      process->wait(60s);
    }
    std::filesystem::remove_all(dir);
  }
};

TEST(MakeRun, PortTakenNamesItsComponentAndVariable) {
  Socket taken(true);
  Demo demo;
  demo.start(port_env(taken.port));
  auto code = demo.process->wait(30s);
  ASSERT_TRUE(code);
  EXPECT_NE(*code, 0);
  const auto out = demo.out();
  EXPECT_NE(out.find("port " + std::to_string(taken.port) + " is already in use"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("klarna-processor's admin endpoint"), std::string::npos) << out;
  EXPECT_NE(out.find("PROCESSOR_ADMIN_PORT=<port>"), std::string::npos) << out;
  // Nothing was started.
  EXPECT_FALSE(std::filesystem::exists(demo.dir + "/run/receiver.log")) << out;
}

TEST(MakeRun, DemoSecondsRunsThenSummarizesAndStops) {
  Demo demo;
  auto env = port_env();
  // 15 s: the demo's first payments are final after a few seconds and its
  // first settlement is fetched after about 10 (a demo round).
  env.push_back("DEMO_SECONDS=15");
  demo.start(env);
  auto code = demo.process->wait(150s);
  ASSERT_TRUE(code) << demo.out();
  EXPECT_EQ(*code, 0) << demo.out();
  const auto out = demo.out();
  EXPECT_NE(out.find("klarnactl top: summary of"), std::string::npos) << out;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(out, m, std::regex(R"(payments\s+(\d+), (\d+) in a final state)")))
      << out;
  EXPECT_GT(std::stoll(m[2]), 0) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex(R"(\(final\)\s+[1-9])"))) << out;
  // Every operation apart from its figures, the longest
  // (fetch_settlement_transactions) too.
  EXPECT_FALSE(std::regex_search(out, std::regex(R"([a-z_](succeeded|retried) \d)"))) << out;
  EXPECT_NE(out.find("embedded Kafka stopped"), std::string::npos) << out;
  EXPECT_NE(out.find("stopped. Logs: " + demo.dir + "/run/*.log"), std::string::npos) << out;
  // Kafka stops last; the daemons' logs are files, not the terminal.
  EXPECT_LT(out.find("klarna-receiver stopped"), out.find("embedded Kafka stopped")) << out;
  EXPECT_EQ(out.find("\"event stored\""), std::string::npos) << out;
  EXPECT_NE(read_file(demo.dir + "/run/receiver.log").find("event stored"), std::string::npos);
}

}  // namespace
}  // namespace kpay::test
