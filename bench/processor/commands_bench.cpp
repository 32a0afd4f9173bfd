// Commands/s through the batch applier (decode, authentication, permissions,
// command inbox, context, result, audit row; durable SQLite commits), signed
// (kpay-sender / kpay-signature verified, sender permissions checked) against
// unsigned (commands.allow_unsigned), interleaved rounds (the order swapped
// each round), medians of the rates, of each pair's ratio and of the CPU time
// per command (less disturbed by other processes than wall time). No Kafka:
// the cost of signing is the question, not the broker's.
//
// By default the two stages run as the processor runs them (consumer.cpp):
// a batch is decoded (signature verified, issued_at read) on this thread
// while the store thread applies and commits the one before. --serial does
// both on one thread, one after the other: the whole CPU cost on one path.
//
//   commands_bench --commands 20000 --rounds 7 --dir /tmp [--serial]
#include <sqlite3.h>
#include <time.h>
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

#include "kpay/core/log.hpp"
#include "kpay/core/serial_worker.hpp"
#include "kpay/core/wall_clock.hpp"
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

double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

struct Rate {
  double per_second = -1;         // commands/s of wall time; -1: the work is not all done
  double cpu_us_per_command = 0;  // this process's CPU time (user + system)
  // The CPU time of apply() alone (the store thread's stage: the pipeline's
  // slower one), per command.
  double apply_us_per_command = 0;
};

double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

struct Applied {
  std::uint64_t count = 0;
  double apply_cpu_seconds = 0;
};

// apply() of one decoded batch, with the CPU time it took on its thread.
void apply_batch(processor::BatchApplier& applier,
                 const std::vector<processor::DecodedMessage>& decoded, Applied& out) {
  const double t0 = thread_cpu_seconds();
  out.count += applier.apply(std::span<const processor::DecodedMessage>(decoded)).applied;
  out.apply_cpu_seconds += thread_cpu_seconds() - t0;
}

// Decodes and applies every message, `batch` per transaction. Pipelined as
// the consumer does: batch N+1 is decoded here while the store thread
// applies batch N; the next hand-over waits for that commit.
Applied apply_all(processor::BatchApplier& applier,
                  const std::vector<processor::InputMessage>& messages, int batch, bool serial) {
  auto decode = [&](std::size_t i) {
    std::vector<processor::DecodedMessage> decoded;
    const auto end = std::min<std::size_t>(i + batch, messages.size());
    for (std::size_t j = i; j < end; ++j) decoded.push_back(applier.decode(messages[j]));
    return decoded;
  };
  Applied applied;
  if (serial) {
    for (std::size_t i = 0; i < messages.size(); i += batch)
      apply_batch(applier, decode(i), applied);
    return applied;
  }
  core::SerialWorker store_thread;
  std::vector<processor::DecodedMessage> in_store;  // the batch the store thread holds
  for (std::size_t i = 0; i < messages.size(); i += batch) {
    auto next = decode(i);
    store_thread.wait_idle();
    in_store = std::move(next);
    store_thread.submit([&] { apply_batch(applier, in_store, applied); });
  }
  store_thread.wait_idle();
  return applied;
}

// One run on a fresh database.
Rate run(const std::vector<processor::InputMessage>& messages, bool sign, const std::string& dir,
         int batch, bool limits, bool serial) {
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
  const std::string first_day = kpay::core::rfc3339_ms(kpay::core::now_ms()).substr(0, 10);
  const auto start = Clock::now();
  const double cpu_start = cpu_seconds();
  const Applied done = apply_all(applier, messages, batch, serial);
  const std::uint64_t applied = done.count;
  const double secs = std::chrono::duration<double>(Clock::now() - start).count();
  const double cpu = cpu_seconds() - cpu_start;
  std::int64_t succeeded = 0;
  for (const auto& c : store.command_counts()) {
    if (c.status == storage::to_string(storage::CommandStatus::succeeded)) succeeded += c.count;
  }
  if (applied != messages.size() || succeeded != static_cast<std::int64_t>(messages.size())) {
    std::cerr << "commands_bench: " << applied << " applied, " << succeeded << " succeeded, of "
              << messages.size() << "\n";
    return {};
  }
  // Signed: every command's sender recorded and its amount in the day's total
  // (a run that crosses midnight UTC splits it over two days).
  const std::string last_day = kpay::core::rfc3339_ms(kpay::core::now_ms()).substr(0, 10);
  std::int64_t total = store.spent("bench", "EUR", first_day);
  if (last_day != first_day) total += store.spent("bench", "EUR", last_day);
  const auto last_id = "bench-" + std::to_string(messages.size() - 1);
  const bool recorded =
      store.sender_of("bench-0") == (sign ? std::optional<std::string>("bench") : std::nullopt) &&
      store.sender_of(last_id) == store.sender_of("bench-0");
  if (!recorded || total != (sign ? 1000 * static_cast<std::int64_t>(messages.size()) : 0)) {
    std::cerr << "commands_bench: senders recorded " << recorded << ", day total " << total << "\n";
    return {};
  }
  const auto n = static_cast<double>(messages.size());
  return {n / secs, cpu / n * 1e6, done.apply_cpu_seconds / n * 1e6};
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
  bool limits = false, serial = false;
  app.add_flag("--serial", serial,
               "Decode and apply on one thread, one after the other (default: pipelined as the "
               "processor does)");
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
  std::vector<double> s, u, s_cpu, u_cpu, s_apply, u_apply, pair_ratios;
  for (int r = 0; r < rounds; ++r) {
    // Signed first in even rounds, unsigned first in odd ones: neither side
    // always runs right after the other's files were deleted.
    Rate a, b;
    if (r % 2 == 0) {
      a = run(signed_msgs, true, work, batch, limits, serial);
      b = run(unsigned_msgs, false, work, batch, limits, serial);
    } else {
      b = run(unsigned_msgs, false, work, batch, limits, serial);
      a = run(signed_msgs, true, work, batch, limits, serial);
    }
    if (a.per_second < 0 || b.per_second < 0) return 1;
    s.push_back(a.per_second);
    u.push_back(b.per_second);
    s_cpu.push_back(a.cpu_us_per_command);
    s_apply.push_back(a.apply_us_per_command);
    u_apply.push_back(b.apply_us_per_command);
    u_cpu.push_back(b.cpu_us_per_command);
    pair_ratios.push_back(a.per_second / b.per_second);
    std::printf(
        "round %d: signed %.0f/s (%.1f us CPU, %.1f in apply)  unsigned %.0f/s (%.1f us CPU, %.1f "
        "in apply)\n",
        r + 1, a.per_second, a.cpu_us_per_command, a.apply_us_per_command, b.per_second,
        b.cpu_us_per_command, b.apply_us_per_command);
  }
  const double steal = (steal_ticks(&total1) - steal0) / std::max(1.0, total1 - total0) * 100;
  std::filesystem::remove_all(work);
  std::printf(
      "commands/s median of %d%s%s: signed %.0f  unsigned %.0f  ratio %.3f  (CPU steal %.1f %%)\n",
      rounds, limits ? " (sender with amount limits)" : "", serial ? " (serial)" : " (pipelined)",
      median(s), median(u), median(s) / median(u), steal);
  std::printf(
      "median of the %d pairs' ratios %.3f; CPU per command median: signed %.1f us  unsigned "
      "%.1f us  ratio %.3f\n",
      rounds, median(pair_ratios), median(s_cpu), median(u_cpu), median(u_cpu) / median(s_cpu));
  std::printf(
      "apply() CPU per command median (the store thread's stage): signed %.1f us  unsigned %.1f "
      "us  ratio %.3f\n",
      median(s_apply), median(u_apply), median(u_apply) / median(s_apply));
  return 0;
}
