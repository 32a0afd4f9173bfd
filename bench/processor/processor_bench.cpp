// Throughput of the klarna-processor binary: N realistic events (lifecycles,
// 10% duplicates) are first produced to the embedded Kafka, then one processor
// process consumes and applies them with durable commits (WAL, synchronous=FULL)
// to a SQLite file. Measured from its first committed batch to its last, so
// the consumer-group join (≈3 s on the mock cluster) is not counted. Peak RSS is
// the child's VmHWM, read once it runs the processor (not while it is still
// a copy of this process, between fork and exec).
//
// It checks its own work before it prints a rate: the embedded Kafka keeps
// only ~5 MiB per partition, so each topic gets enough partitions for its
// share of the bytes, and every partition is verified whole (log start 0,
// end = what was produced) before the processor starts; afterwards every
// produced message must be in the history exactly once — applied, stale or
// rejected once per distinct event, duplicates exactly as many as produced,
// no dead letter, no offset gap — and the peak RSS within --max-rss-mib.
// Anything else: exit 1, no rate.
//
//   processor_bench --events 200000 --batch-size 2000 --dir /tmp
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <thread>
#include <vector>

#include "db_dump.hpp"
#include "kafka_support.hpp"
#include "kpay/core/embedded_kafka.hpp"
#include "kpay/storage/state_store.hpp"
#include "lifecycles.hpp"

using namespace kpay;
using Clock = std::chrono::steady_clock;

namespace {

// The committed offsets, read through one connection kept open: opening one
// per poll (every 5 ms) parsed the whole schema each time, CPU the processor
// it measures shares two cores with. WAL readers never block the writer.
class CommittedOffsets {
 public:
  explicit CommittedOffsets(std::string path) : path_(std::move(path)) {}
  long long read() {
    try {
      if (!db_) {
        if (!std::filesystem::exists(path_)) return 0;
        db_.emplace(storage::Database::open(path_, {.read_only = true, .create = false}));
      }
      if (!sum_)
        sum_.emplace(db_->prepare("SELECT COALESCE(SUM(next_offset), 0) FROM consumer_offsets"));
      const long long v = sum_->step() ? sum_->int64(0) : 0;
      sum_->reset();
      return v;
    } catch (const std::exception&) {
      sum_.reset();  // the table may not exist yet: prepare again next time
      return 0;
    }
  }

 private:
  std::string path_;
  std::optional<storage::Database> db_;
  std::optional<storage::Statement> sum_;
};

// Partitions per topic so that no partition holds more than ~2 MiB of the
// stream (the mock cluster drops batches beyond 5 MiB per partition).
std::map<std::string, int> partitions_for(const std::vector<test::TestEvent>& stream) {
  std::map<std::string, std::size_t> bytes;
  for (const auto& e : stream) bytes[e.topic] += e.body.size() + e.key.size() + 80;
  std::map<std::string, int> out;
  for (const auto& [topic, b] : bytes) {
    out[topic] = static_cast<int>(std::clamp<std::size_t>(b / (2u << 20) + 1, 16, 512));
  }
  return out;
}

// Every produced message is still in Kafka: log start 0, end = produced.
bool logs_whole(const std::string& bootstrap,
                const std::vector<processor::InputMessage>& produced) {
  std::map<std::pair<std::string, std::int32_t>, std::int64_t> ends;
  for (const auto& m : produced) {
    auto& e = ends[{m.topic, m.partition}];
    e = std::max(e, m.offset + 1);
  }
  auto handle = core::make_kafka(RD_KAFKA_CONSUMER,
                                 core::make_kafka_conf({{"bootstrap.servers", bootstrap}}));
  for (const auto& [tp, end] : ends) {
    std::int64_t low = -1, high = -1;
    rd_kafka_query_watermark_offsets(handle.get(), tp.first.c_str(), tp.second, &low, &high, 10000);
    if (low != 0 || high != end) {
      std::fprintf(stderr,
                   "%s/%d keeps offsets %lld..%lld of 0..%lld: the embedded Kafka dropped "
                   "messages\n",
                   tp.first.c_str(), tp.second, static_cast<long long>(low),
                   static_cast<long long>(high), static_cast<long long>(end));
      return false;
    }
  }
  return true;
}

long peak_rss_kib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

// The bytes the process passed to read/pread and write/pwrite so far (its
// /proc/PID/io rchar and wchar): the WAL and checkpoint writes, and the page
// reads the SQLite cache missed (mostly from the OS page cache).
std::pair<long long, long long> io_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/io");
  std::string key;
  long long value = 0, read = -1, written = -1;
  while (in >> key >> value) {
    if (key == "rchar:") read = value;
    if (key == "wchar:") written = value;
  }
  return {read, written};
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
  double max_rss_mib = 128;
  app.add_option("--max-rss-mib", max_rss_mib, "Fail when the processor's peak RSS exceeds this");
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
      std::uint64_t accounted = 0;
      for (std::size_t i = 0; i < messages.size(); i += static_cast<std::size_t>(batch_size)) {
        auto n = std::min<std::size_t>(static_cast<std::size_t>(batch_size), messages.size() - i);
        auto r = applier.apply(std::span(messages.data() + i, n));
        accounted += r.applied + r.duplicates + r.stale + r.rejected;
      }
      secs = std::chrono::duration<double>(Clock::now() - start).count();
      if (accounted != messages.size()) {
        std::fprintf(stderr, "INVALID RUN: %llu of %zu messages accounted for; no rate\n",
                     static_cast<unsigned long long>(accounted), messages.size());
        return 1;
      }
    }
    std::printf("applier-only: events=%zu batch_size=%d in %.3fs => %.0f events/s\n",
                messages.size(), batch_size, secs, static_cast<double>(messages.size()) / secs);
    std::filesystem::remove_all(work);
    return 0;
  }

  core::EmbeddedKafka kafka(1);
  klarna::Topics topics;
  topics.apply_prefix("bench.");
  auto ordered = test::make_lifecycles(static_cast<int>(events / 6.9), topics, 3);
  const long long distinct = static_cast<long long>(ordered.size());
  auto stream = test::shuffle_with_duplicates(std::move(ordered), 0.1, 3);
  const long long duplicates_produced = static_cast<long long>(stream.size()) - distinct;
  auto partitions = partitions_for(stream);
  for (const auto* t : {&topics.payment_requests, &topics.payment_transactions, &topics.disputes,
                        &topics.settlements, &topics.accounts, &topics.unrouted,
                        &topics.payment_states, &topics.processor_dead_letter}) {
    kafka.create_topic(*t, partitions.count(*t) ? partitions[*t] : 16);
  }
  auto produce_start = Clock::now();
  auto produced = test::produce_events(kafka.bootstrap_servers(), stream);
  const double produce_s = std::chrono::duration<double>(Clock::now() - produce_start).count();
  const long long total = static_cast<long long>(produced.size());
  stream.clear();
  stream.shrink_to_fit();
  if (!logs_whole(kafka.bootstrap_servers(), produced)) return 1;
  produced.clear();
  produced.shrink_to_fit();

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
  // The child's VmHWM counts only once it runs the processor: until execv it
  // is a copy of this process, whose RSS (the embedded Kafka holding every
  // message, ~400-600 MiB) a read of /proc/PID/status would report as the
  // processor's peak. The pipe's write end closes on exec (O_CLOEXEC), which
  // is what the parent waits for.
  int exec_pipe[2];
  if (pipe2(exec_pipe, O_CLOEXEC) != 0) {
    std::perror("pipe2");
    return 1;
  }
  pid_t pid = fork();
  if (pid == 0) {
    close(exec_pipe[0]);
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
    const char failed = 1;
    (void)!write(exec_pipe[1], &failed, 1);
    _exit(127);
  }
  close(exec_pipe[1]);
  char exec_failed = 0;
  while (read(exec_pipe[0], &exec_failed, 1) < 0 && errno == EINTR) {
  }
  close(exec_pipe[0]);
  if (exec_failed != 0) {
    std::fprintf(stderr, "cannot run %s\n", processor_binary.c_str());
    return 1;
  }
  // Poll the committed offsets (WAL readers never block the writer).
  long long first = 0;
  CommittedOffsets committed(db);
  Clock::time_point t_first{}, t_end{};
  long rss = 0;
  // Ten minutes, and one more per 100k events (a loaded VM, a growing database).
  auto deadline = Clock::now() + std::chrono::minutes(10 + events / 100000);
  while (Clock::now() < deadline) {
    long long c = committed.read();
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
  const auto [read_bytes, written_bytes] = io_bytes(pid);
  kill(pid, SIGTERM);
  int status = 0;
  struct rusage usage {};
  wait4(pid, &status, 0, &usage);
  const double cpu_s = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                       static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  if (t_end == Clock::time_point{}) {
    std::cerr << "processor did not finish: " << committed.read() << " of " << total << "\n";
    return 1;
  }
  const double secs = std::chrono::duration<double>(t_end - t_first).count();
  auto outcome = [&](const char* o) {
    return test::query_int(db,
                           std::string("SELECT COUNT(*) FROM history WHERE outcome='") + o + "'");
  };
  const auto applied = outcome("applied");
  const auto duplicates = outcome("duplicate");
  const auto stale = outcome("stale");
  const auto rejected = outcome("rejected");
  const auto dead = test::query_int(db, "SELECT COUNT(*) FROM poison_messages");
  const auto gaps = test::query_int(db, "SELECT COUNT(*) FROM offset_gaps");
  const double peak_mib = static_cast<double>(rss) / 1024.0;
  std::printf("events=%lld (distinct %lld, duplicates %lld) batch_size=%d produce=%.2fs\n", total,
              distinct, duplicates_produced, batch_size, produce_s);
  std::printf(
      "history: applied=%lld stale=%lld rejected=%lld duplicate=%lld dead-lettered=%lld "
      "offset_gaps=%lld\n",
      applied, stale, rejected, duplicates, dead, gaps);
  // Every message exactly once; the duplicates the generator made, no more.
  std::vector<std::string> wrong;
  if (applied + stale + rejected + duplicates != total) wrong.push_back("history rows != events");
  if (applied + stale + rejected - dead != distinct) wrong.push_back("distinct events unaccounted");
  if (duplicates != duplicates_produced) wrong.push_back("duplicates != duplicates produced");
  if (dead != 0) wrong.push_back("dead letters in a clean stream");
  if (gaps != 0) wrong.push_back("offset gaps");
  if (peak_mib > max_rss_mib) wrong.push_back("peak RSS above --max-rss-mib");
  std::printf("peak_rss=%.1f MiB (bound %.0f) exit=%d\n", peak_mib, max_rss_mib,
              WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  std::printf("io: written %.0f MiB (%.0f bytes per event), read %.0f MiB (SQLite and Kafka)\n",
              static_cast<double>(written_bytes) / (1 << 20),
              static_cast<double>(written_bytes) / static_cast<double>(total),
              static_cast<double>(read_bytes) / (1 << 20));
  if (!wrong.empty()) {
    for (const auto& w : wrong) std::fprintf(stderr, "INVALID RUN: %s\n", w.c_str());
    std::printf("no rate: the run is not valid; kept %s for inspection\n", work.c_str());
    return 1;
  }
  std::printf("processed=%lld (after the first batch of %lld) in %.3fs => %.0f events/s\n",
              total - first, first, secs, static_cast<double>(total - first) / secs);
  std::printf(
      "processor cpu=%.2fs for the whole run (incl. start-up and group join) => %.0f events per "
      "cpu-second\n",
      cpu_s, static_cast<double>(total) / cpu_s);
  std::filesystem::remove_all(work);
  return 0;
}
