// Commands/s through the batch applier (decode, authentication, permissions,
// command inbox, context, result, audit row; durable SQLite commits), signed
// (kpay-sender / kpay-signature verified, sender permissions checked) against
// unsigned (commands.allow_unsigned), interleaved rounds, medians. No Kafka:
// the cost of signing is the question, not the broker's.
//
//   commands_bench --commands 20000 --rounds 7 --dir /tmp
#include <sqlite3.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <span>
#include <vector>

#include "kpay/processor/batch_applier.hpp"
#include "kpay/processor/command_auth.hpp"
#include "kpay/storage/state_store.hpp"

using namespace kpay;
using Clock = std::chrono::steady_clock;

namespace {

const std::string kSecret = "bench-sender-secret-0123456789abcdef";

std::vector<processor::InputMessage> make_commands(int n, const klarna::Topics& topics, bool sign) {
  std::vector<processor::InputMessage> out;
  for (int i = 0; i < n; ++i) {
    processor::InputMessage m;
    m.topic = topics.commands;
    m.offset = i;
    m.key = "ref-" + std::to_string(i);
    m.value = R"({"command_id":"bench-)" + std::to_string(i) +
              R"(","type":"register","partner_account_id":"krn:partner:global:account:test:B1",)"
              R"("payment_request_reference":"ref-)" +
              std::to_string(i) + R"(","amount":1000,"currency":"EUR","capture":"LATER"})";
    if (sign) {
      m.headers.sender = "bench";
      m.headers.signature = processor::sign_command("k1", kSecret, m.value);
    }
    out.push_back(std::move(m));
  }
  return out;
}

// One run on a fresh database: commands/s, or -1 when the work is not all done.
double run(const std::vector<processor::InputMessage>& messages, bool sign, const std::string& dir,
           int batch, bool limits) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  storage::StateStore store(dir + "/state.db");
  klarna::Topics topics;
  processor::BatchApplier applier(store, topics);
  auto security = std::make_shared<processor::CommandSecurity>();
  security->policy.allow_unsigned = !sign;
  security->policy.senders["bench"] = {{"*"}, {"*"}, {}};
  if (limits) security->policy.senders["bench"].limits["EUR"] = {1000000, 1000000000000};
  auto ring = std::make_shared<processor::SenderKeyRing>();
  ring->add_active("bench", "k1", kSecret);
  std::shared_ptr<const processor::SenderKeyRing> keys = ring;
  security->keys = [keys] { return keys; };
  applier.secure_commands(security);
  std::uint64_t applied = 0;
  const auto start = Clock::now();
  for (std::size_t i = 0; i < messages.size(); i += batch) {
    const auto n = std::min<std::size_t>(batch, messages.size() - i);
    std::vector<processor::DecodedMessage> decoded;
    for (std::size_t j = i; j < i + n; ++j) decoded.push_back(applier.decode(messages[j]));
    applied += applier.apply(std::span<const processor::DecodedMessage>(decoded)).applied;
  }
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::int64_t succeeded = 0;
  for (const auto& c : store.command_counts()) {
    if (c.status == storage::to_string(storage::CommandStatus::succeeded)) succeeded += c.count;
  }
  if (applied != messages.size() || succeeded != static_cast<std::int64_t>(messages.size())) {
    std::cerr << "commands_bench: " << applied << " applied, " << succeeded << " succeeded, of "
              << messages.size() << "\n";
    return -1;
  }
  return static_cast<double>(messages.size()) / secs;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// CPU steal since boot as a share of all CPU time (/proc/stat).
double steal_ticks(double* total) {
  std::ifstream in("/proc/stat");
  std::string cpu;
  double v[10] = {};
  in >> cpu;
  for (double& x : v) in >> x;
  *total = 0;
  for (double x : v) *total += x;
  return v[7];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"commands_bench"};
  int commands = 20000, rounds = 7, batch = 500;
  std::string dir = "/tmp";
  app.add_option("--commands", commands, "Commands per run");
  app.add_option("--rounds", rounds, "Interleaved rounds (signed, unsigned)");
  app.add_option("--batch-size", batch, "Commands per transaction");
  app.add_option("--dir", dir, "Where the SQLite files are created");
  bool limits = false;
  app.add_flag("--limits", limits,
               "Give the sender per-command and per-day EUR limits (a read and a write more)");
  CLI11_PARSE(app, argc, argv);
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  klarna::Topics topics;
  const auto signed_msgs = make_commands(commands, topics, true);
  const auto unsigned_msgs = make_commands(commands, topics, false);
  const std::string work = dir + "/commands-bench-" + std::to_string(getpid());
  double total0 = 0, total1 = 0;
  const double steal0 = steal_ticks(&total0);
  std::vector<double> s, u;
  for (int r = 0; r < rounds; ++r) {
    const double a = run(signed_msgs, true, work, batch, limits);
    const double b = run(unsigned_msgs, false, work, batch, limits);
    if (a < 0 || b < 0) return 1;
    s.push_back(a);
    u.push_back(b);
    std::printf("round %d: signed %.0f/s  unsigned %.0f/s\n", r + 1, a, b);
  }
  const double steal = (steal_ticks(&total1) - steal0) / std::max(1.0, total1 - total0) * 100;
  std::filesystem::remove_all(work);
  std::printf(
      "commands/s median of %d%s: signed %.0f  unsigned %.0f  ratio %.3f  (CPU steal %.1f %%)\n",
      rounds, limits ? " (sender with amount limits)" : "", median(s), median(u),
      median(s) / median(u), steal);
  return 0;
}
