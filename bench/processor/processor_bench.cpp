// Throughput of the klarna-processor binary: N realistic events (lifecycles,
// 10% duplicates) are first produced to the embedded Kafka, then one processor
// process consumes and applies them with durable commits (WAL, synchronous=FULL)
// to a SQLite file. Measured from its first committed batch to its last, so
// the consumer-group join (≈3 s on the mock cluster) is not counted. Peak RSS is
// the child's VmHWM.
//
//   processor_bench --events 200000 --batch-size 2000 --dir /tmp
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <CLI/CLI.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>
#include <vector>

#include "db_dump.hpp"
#include "kafka_support.hpp"
#include "kpay/core/embedded_kafka.hpp"
#include "lifecycles.hpp"

using namespace kpay;
using Clock = std::chrono::steady_clock;

namespace {

long long committed(const std::string& db) {
  try {
    return test::query_int(db, "SELECT COALESCE(SUM(next_offset), 0) FROM consumer_offsets");
  } catch (const std::exception&) {
    return 0;
  }
}

long peak_rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"processor_bench"};
  long long events = 200000;
  int batch_size = 5000;
  std::string dir = "/tmp";
  app.add_option("--events", events, "Events to produce and process (approximate)");
  app.add_option("--batch-size", batch_size, "processor.batch_size");
  app.add_option("--dir", dir, "Where the SQLite file is created");
  std::string processor_binary = KPAY_PROCESSOR_BINARY;
  app.add_option("--processor", processor_binary,
                 "klarna-processor binary to run (A/B comparisons of two builds)");
  std::vector<std::string> overrides;
  app.add_option("--set", overrides, "key=value passed to klarna-processor as --set");
  bool applier_only = false;
  app.add_flag("--applier-only", applier_only,
               "No Kafka: time BatchApplier alone (decode + SQLite, durable commits)");
  CLI11_PARSE(app, argc, argv);

  if (applier_only) {
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);  // as klarna-processor's main() does
    klarna::Topics topics;
    auto stream = test::shuffle_with_duplicates(
        test::make_lifecycles(static_cast<int>(events / 6.9), topics, 3), 0.1, 3);
    std::vector<processor::InputMessage> messages;
    std::int64_t offset = 0;
    for (auto& e : stream) messages.push_back({e.topic, 0, offset++, e.key, std::move(e.body)});
    stream.clear();
    const std::string work = dir + "/processor-bench-applier-" + std::to_string(getpid());
    std::filesystem::create_directories(work);
    double secs = 0;
    {
      storage::StateStore store(work + "/state.db");
      processor::BatchApplier applier(store, topics);
      auto start = Clock::now();
      for (std::size_t i = 0; i < messages.size(); i += static_cast<std::size_t>(batch_size)) {
        auto n = std::min<std::size_t>(static_cast<std::size_t>(batch_size), messages.size() - i);
        applier.apply(std::span(messages.data() + i, n));
      }
      secs = std::chrono::duration<double>(Clock::now() - start).count();
    }
    std::printf("applier-only: events=%zu batch_size=%d in %.3fs => %.0f events/s\n",
                messages.size(), batch_size, secs, static_cast<double>(messages.size()) / secs);
    std::filesystem::remove_all(work);
    return 0;
  }

  core::EmbeddedKafka kafka(1);
  klarna::Topics topics;
  topics.apply_prefix("bench.");
  // 16 partitions per topic: the mock cluster keeps only a few MB per partition
  // (older segments are dropped), and every message must still be there.
  for (const auto* t : {&topics.payment_requests, &topics.payment_transactions, &topics.disputes,
                        &topics.settlements, &topics.accounts, &topics.unrouted,
                        &topics.payment_states, &topics.processor_dead_letter}) {
    kafka.create_topic(*t, 16);
  }
  auto stream = test::shuffle_with_duplicates(
      test::make_lifecycles(static_cast<int>(events / 6.9), topics, 3), 0.1, 3);
  auto produce_start = Clock::now();
  auto produced = test::produce_events(kafka.bootstrap_servers(), stream);
  const double produce_s = std::chrono::duration<double>(Clock::now() - produce_start).count();
  const long long total = static_cast<long long>(produced.size());
  produced.clear();
  stream.clear();
  stream.shrink_to_fit();

  const std::string work = dir + "/processor-bench-" + std::to_string(getpid());
  std::filesystem::create_directories(work);
  const std::string db = work + "/state.db";
  {
    std::ofstream cfg(work + "/processor.toml");
    cfg << "[processor]\ndatabase = \"" << db << "\"\nbatch_size = " << batch_size << "\n"
        << "[kafka]\nbootstrap_servers = \"" << kafka.bootstrap_servers() << "\"\n"
        << "group_id = \"bench\"\ntopic_prefix = \"bench.\"\n[admin]\nport = 0\n"
        << "[log]\nlevel = \"warn\"\n[worker]\nenabled = false\n";
  }
  pid_t pid = fork();
  if (pid == 0) {
    std::string cfg = work + "/processor.toml";
    std::vector<std::string> args = {processor_binary, "--config", cfg};
    for (const auto& o : overrides) {
      args.push_back("--set");
      args.push_back(o);
    }
    std::vector<char*> argv_child;
    for (auto& a : args) argv_child.push_back(a.data());
    argv_child.push_back(nullptr);
    execv(processor_binary.c_str(), argv_child.data());
    _exit(127);
  }
  // Poll the committed offsets (WAL readers never block the writer).
  long long first = 0;
  Clock::time_point t_first{}, t_end{};
  long rss = 0;
  auto deadline = Clock::now() + std::chrono::minutes(10);
  while (Clock::now() < deadline) {
    long long c = committed(db);
    if (first == 0 && c > 0) {
      first = c;
      t_first = Clock::now();
    }
    rss = std::max(rss, peak_rss_kib(pid));
    if (c >= total) {
      t_end = Clock::now();
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  rss = std::max(rss, peak_rss_kib(pid));
  kill(pid, SIGTERM);
  int status = 0;
  struct rusage usage {};
  wait4(pid, &status, 0, &usage);
  const double cpu_s = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                       static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  if (t_end == Clock::time_point{}) {
    std::cerr << "processor did not finish: " << committed(db) << " of " << total << "\n";
    return 1;
  }
  const double secs = std::chrono::duration<double>(t_end - t_first).count();
  const auto applied = test::query_int(db, "SELECT COUNT(*) FROM history WHERE outcome='applied'");
  const auto history = test::query_int(db, "SELECT COUNT(*) FROM history");
  std::printf("events=%lld batch_size=%d produce=%.2fs\n", total, batch_size, produce_s);
  std::printf("processed=%lld (after the first batch of %lld) in %.3fs => %.0f events/s\n",
              total - first, first, secs, static_cast<double>(total - first) / secs);
  std::printf("history rows=%lld applied=%lld peak_rss=%.1f MiB exit=%d\n", history, applied,
              static_cast<double>(rss) / 1024.0, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  std::printf(
      "processor cpu=%.2fs for the whole run (incl. start-up and group join) => %.0f events per "
      "cpu-second\n",
      cpu_s, static_cast<double>(total) / cpu_s);
  if (history == total)
    std::filesystem::remove_all(work);
  else
    std::printf("kept %s for inspection\n", work.c_str());
  return history == total ? 0 : 1;
}
