// Shared by the security suites: klarna-receiver as a separate process (real
// TLS on loopback, the embedded Kafka in this process), shell commands
// (openssl s_client), /metrics reading and process accounting (/proc).
#pragma once

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "child_process.hpp"
#include "http_client.hpp"
#include "kpay/core/embedded_kafka.hpp"
#include "kpay/klarna/envelope.hpp"
#include "kpay/klarna/signature.hpp"
#include "metric_text.hpp"
#include "receiver_command.hpp"
#include "tls_cert.hpp"

namespace kpay::test::security {

// The receiver closes connections these tests still write to: a write must
// fail with EPIPE, not kill the test.
inline const bool kSigpipeIgnored = [] {
  std::signal(SIGPIPE, SIG_IGN);
  return true;
}();

inline const std::string kKeyId = "krn:partner:global:notification:signing-key:sec-0001";
inline const std::string kSecret = "sec-SIGNING-secret-7f3a9c1e5b-NOT-REAL";

// Output (stdout and stderr) and exit status of a shell command; stdin is /dev/null.
inline std::pair<int, std::string> run_shell(const std::string& command) {
  std::string out;
  FILE* p = ::popen(("(" + command + ") </dev/null 2>&1").c_str(), "r");
  if (p == nullptr) return {-1, ""};
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), out};
}

inline std::string webhook(const std::string& event_id) {
  return R"({"metadata":{"event_type":"payment.request.state-change.completed","event_id":")" +
         event_id +
         R"(","event_version":"v2","occurred_at":"2026-11-28T12:00:00Z"},"payload":)"
         R"({"payment_request_id":"krn:payment:eu1:request:)" +
         event_id + R"(","state":"COMPLETED"}})";
}

inline std::string signature(const std::string& body) {
  return klarna::hmac_sha256_hex(kSecret, body);
}

// A complete signed POST as raw bytes, with `extra` header lines (each ending
// in \r\n) and the body framed by the caller's choice.
inline std::string signed_headers(const std::string& body) {
  return "Klarna-Signing-Key-Id: " + kKeyId + "\r\nKlarna-Signature: " + signature(body) +
         "\r\nContent-Type: application/json\r\n";
}

inline int fd_count(pid_t pid) {
  int n = 0;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

inline long rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

inline std::uint16_t json_port(const std::string& text, const std::string& field) {
  const auto at = text.find("\"" + field + "\":");
  if (at == std::string::npos) return 0;
  return static_cast<std::uint16_t>(std::atoi(text.c_str() + at + field.size() + 3));
}

// One cluster per test process; receivers isolate themselves by topic prefix.
inline core::EmbeddedKafka& shared_kafka() {
  static core::EmbeddedKafka kafka(1);
  return kafka;
}

// A signing-key database with kKeyId, made the way operators make it.
inline void add_signing_key(const std::string& dir, const std::string& keys_db) {
  const auto secret_file = dir + "/signing-secret";
  std::ofstream(secret_file) << kSecret << "\n";
  ChildProcess ctl({binary("tools/klarnactl"), "--set", "keys.database=" + keys_db, "keys", "add",
                    "--id", kKeyId, "--secret-file", secret_file},
                   dir + "/klarnactl.log");
  ASSERT_EQ(ctl.wait(std::chrono::seconds(20)), 0) << read_file(dir + "/klarnactl.log");
  ::chmod(keys_db.c_str(), 0600);  // whatever klarnactl's umask made it
}

// klarna-receiver as a process with TLS, its topics created under a unique prefix.
struct ReceiverOptions {
  std::vector<std::string> sets;  // extra "key=value" overrides
  std::optional<CertFiles> cert;  // default: a fresh P-256 self-signed certificate
  bool wait_ready = true;
  std::string shell_prefix;  // e.g. "ulimit -n 256 &&": run through /bin/sh -c "<prefix> exec …"
};

class ReceiverProcess {
 public:
  using Options = ReceiverOptions;

  explicit ReceiverProcess(Options options = Options()) : dir_(make_temp_dir("sec-receiver")) {
    static int counter = 0;
    prefix_ = "sec" + std::to_string(::getpid()) + "x" + std::to_string(++counter) + ".";
    topics_.apply_prefix(prefix_);
    for (const auto* t : all_topics()) shared_kafka().create_topic(*t, 1);
    cert_ = options.cert ? *options.cert : write_self_signed_cert(dir_);
    add_signing_key(dir_, dir_ + "/keys.db");
    auto argv = receiver_argv({.port_file = dir_ + "/ports.json",
                               .keys_database = dir_ + "/keys.db",
                               .bootstrap_servers = shared_kafka().bootstrap_servers(),
                               .tls = cert_,
                               .extra = {"--set", "kafka.topic_prefix=" + prefix_}});
    for (const auto& s : options.sets) argv.insert(argv.end(), {"--set", s});
    if (!options.shell_prefix.empty()) {
      std::string command = options.shell_prefix + " exec";
      for (const auto& a : argv) command += " '" + a + "'";
      argv = {"/bin/sh", "-c", command};
    }
    process_ = std::make_unique<ChildProcess>(argv, log_file());
    if (!options.wait_ready) return;
    EXPECT_TRUE(wait_until([&] { return port_ != 0 || read_ports(); }, std::chrono::seconds(20)))
        << log();
    EXPECT_TRUE(wait_until([&] { return ready(); }, std::chrono::seconds(20))) << log();
  }

  std::uint16_t port() const { return port_; }
  std::uint16_t admin_port() const { return admin_port_; }
  pid_t pid() const { return process_->pid(); }
  ChildProcess& process() { return *process_; }
  const std::string& dir() const { return dir_; }
  const CertFiles& cert() const { return cert_; }
  const klarna::Topics& topics() const { return topics_; }
  std::string log_file() const { return dir_ + "/receiver.log"; }
  std::string log() const { return read_file(log_file()); }
  std::vector<std::string> topic_names() const {
    std::vector<std::string> out;
    for (const auto* t : all_topics()) out.push_back(*t);
    return out;
  }

  std::string metrics() const {
    auto r = http_request(admin_port_, "GET", "/metrics");
    return r ? r->body : "";
  }
  double metric(const std::string& suffix) const { return metric_value(metrics(), suffix); }
  bool ready() const {
    auto r = http_request(admin_port_, "GET", "/readyz");
    return r && r->status == 200;
  }

  // One signed webhook on a fresh TLS connection: the status, 0 when none.
  int post_signed(const std::string& event_id,
                  std::chrono::milliseconds timeout = std::chrono::seconds(5)) const {
    try {
      HttpConnection c(port_, true, timeout);
      const auto body = webhook(event_id);
      auto r = c.request("POST", "/webhooks/klarna", body,
                         {{"Klarna-Signing-Key-Id", kKeyId},
                          {"Klarna-Signature", signature(body)},
                          {"Content-Type", "application/json"}});
      return r ? r->status : 0;
    } catch (const std::exception&) {
      return 0;  // refused or reset: the caller retries or fails
    }
  }

 private:
  std::vector<const std::string*> all_topics() const {
    return {&topics_.payment_requests, &topics_.payment_transactions,
            &topics_.disputes,         &topics_.settlements,
            &topics_.accounts,         &topics_.unrouted,
            &topics_.dead_letter};
  }
  bool read_ports() {
    const auto text = read_file(dir_ + "/ports.json");
    port_ = json_port(text, "port");
    admin_port_ = json_port(text, "admin_port");
    return port_ != 0;
  }

  std::string dir_, prefix_;
  klarna::Topics topics_;
  CertFiles cert_;
  std::unique_ptr<ChildProcess> process_;
  std::uint16_t port_ = 0, admin_port_ = 0;
};

}  // namespace kpay::test::security
