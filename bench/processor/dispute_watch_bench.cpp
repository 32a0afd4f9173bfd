// One dispute deadline check on a store that has run for years: many closed
// disputes, a few open ones, in a real SQLite file (WAL, synchronous=FULL).
// Per round, the time of DisputeDeadlineWatcher::check() and the longest time
// another connection waited for the write lock meanwhile: a writer thread
// stands in for the processor's store thread (a small write transaction every
// 2 ms), so the wait is what an event batch waits behind the check. Each
// round moves the clock one hour: `per_round` more deadlines enter the window
// and are warned about (checked: the counts must match before any figure is
// printed). Medians over the rounds, CPU steal from /proc/stat, load average.
//
// Uses only what the watcher's interface had before the open-dispute index,
// so the same file builds against an older tree to compare.
//
// --postgres: the same on a throwaway PostgreSQL server (fsync on, as
// bench/processor/durable_postgres.hpp sets it), each store a session of
// its own. There is no database-wide write lock to wait for: the writer's
// figure shows only that nothing waits; the check's time is the figure.
//
//   dispute_watch_bench --closed 200000 --open 2000 --rounds 9 --dir /tmp [--postgres]
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include "kpay/processor/dispute_deadlines.hpp"
#include "kpay/storage/state_store.hpp"
#ifdef KPAY_DISPUTE_BENCH_POSTGRES
#include "durable_postgres.hpp"
#include "kpay/storage/postgres.hpp"
#endif

using namespace kpay;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::int64_t T0 = 1'767'225'600'000;  // 2026-01-01T00:00:00Z
constexpr std::int64_t kHour = 3'600'000;
constexpr int kPerRound = 60;  // deadlines one minute apart: 60 enter the window per hour

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// CPU steal since boot and all CPU time, in ticks (/proc/stat).
double steal_ticks(double* total) {
  std::ifstream in("/proc/stat");
  std::string cpu;
  double v[8] = {};
  in >> cpu;
  *total = 0;
  for (double& x : v) {
    in >> x;
    *total += x;
  }
  return v[7];
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string one, five;
  in >> one >> five;
  return one + " " + five;
}

// `closed` closed disputes and `open` open ones (INITIATED, representment
// due 47 h + i minutes after T0), ids interleaved, in one transaction.
void seed(storage::Store& store, int closed, int open) {
  const int n = closed + open;
  const int stride = std::max(1, n / std::max(1, open));
  storage::WriteTransaction tx(store);
  int opened = 0;
  for (int j = 0; j < n; ++j) {
    char id[64];
    std::snprintf(id, sizeof id, "krn:payment:eu1:dispute:%08d", j);
    const bool is_open = opened < open && (j % stride == 0 || n - j <= open - opened);
    storage::DisputeRow d;
    d.id = id;
    d.framework = storage::DisputeFramework::current;
    d.state = is_open ? "INITIATED" : "CLOSED";
    d.state_as_of_ms = T0 - 100 * kHour;
    d.payment_transaction_id = std::string("krn:payment:eu1:transaction:") + (id + 24);
    d.reason = "GOODS_NOT_RECEIVED";
    d.amount = 1000 + j % 5000;
    d.currency = "EUR";
    d.representment_expires_at_ms =
        is_open ? T0 + 47 * kHour + opened * 60'000LL : T0 - 200 * kHour;
    d.outcome = is_open ? std::nullopt : std::optional<std::string>("WON");
    d.closed_at_ms = is_open ? std::nullopt : std::optional<std::int64_t>(T0 - 150 * kHour);
    d.last_event_id = std::string("ev-") + id;
    store.save_dispute(d);
    if (is_open) ++opened;
  }
  tx.commit();
}

// Another connection writing a small transaction every 2 ms; keeps how long
// each waited to begin (the write lock), by when it asked.
class Writer {
 public:
  explicit Writer(std::unique_ptr<storage::Store> store)
      : store_(std::move(store)), thread_([this] { run(); }) {}
  ~Writer() {
    stop_ = true;
    thread_.join();
  }
  // The longest wait of a write that asked within [from, to], and how many.
  std::pair<double, int> longest_wait(Clock::time_point from, Clock::time_point to) {
    std::lock_guard lock(mu_);
    double longest = 0;
    int n = 0;
    for (const auto& [asked, waited] : waits_) {
      if (asked < from || asked > to) continue;
      longest = std::max(longest, waited);
      ++n;
    }
    return {longest, n};
  }

 private:
  void run() {
    for (std::int64_t i = 1; !stop_; ++i) {
      const auto asked = Clock::now();
      storage::WriteTransaction tx(*store_);
      const auto got = Clock::now();
      store_->save_offset("bench.writer", 0, i);
      tx.commit();
      {
        std::lock_guard lock(mu_);
        waits_.emplace_back(asked, ms_between(asked, got));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }

  std::unique_ptr<storage::Store> store_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::pair<Clock::time_point, double>> waits_;
  std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dispute deadline check on many closed disputes"};
  int closed = 200000, open = 2000, rounds = 9;
  std::string dir = "/tmp";
  bool postgres = false;
  app.add_flag("--postgres", postgres, "a throwaway PostgreSQL server instead of a SQLite file");
  app.add_option("--closed", closed, "closed disputes");
  app.add_option("--open", open, "open disputes");
  app.add_option("--rounds", rounds, "checks, one hour apart");
  app.add_option("--dir", dir, "where the SQLite file goes");
  CLI11_PARSE(app, argc, argv);
  if (rounds * kPerRound > open) {
    std::fprintf(stderr, "--open must be at least %d for %d rounds\n", rounds * kPerRound, rounds);
    return 2;
  }
  const std::string path = dir + "/dispute-watch-bench-" + std::to_string(getpid()) + ".db";
  const auto remove = [&] {
    for (const char* s : {"", "-wal", "-shm"}) std::filesystem::remove(path + s);
  };
  remove();
  std::function<std::unique_ptr<storage::Store>()> open_store = [&] {
    return std::unique_ptr<storage::Store>(std::make_unique<storage::StateStore>(path));
  };
#ifdef KPAY_DISPUTE_BENCH_POSTGRES
  std::optional<test::PostgresServer> pg;
  if (postgres) {
    pg.emplace();
    bench::make_durable(*pg);
    open_store = [&] {
      storage::PostgresSettings s;
      s.dsn = pg->dsn();
      s.instance = "dispute-watch-bench";
      return storage::open_postgres_store(s);
    };
  }
#else
  if (postgres) {
    std::fprintf(stderr, "built without PostgreSQL support (no tests/support)\n");
    return 2;
  }
#endif
  std::vector<double> checks, waits;
  int writes = 0;
  double total0 = 0;
  double steal0 = 0;
  {
    auto store = open_store();
    const auto s0 = Clock::now();
    seed(*store, closed, open);
    std::printf("seeded %d closed + %d open disputes in %.1f s (%s)\n", closed, open,
                ms_between(s0, Clock::now()) / 1000, postgres ? "PostgreSQL" : "SQLite");
    std::int64_t now = T0;
    processor::DisputeDeadlineWatcher watcher(*store, {}, [&now] { return now; });
    Writer writer(open_store());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    steal0 = steal_ticks(&total0);
    for (int r = 0; r < rounds; ++r) {
      now = T0 + r * kHour;
      const auto a = Clock::now();
      const auto c = watcher.check();
      const auto b = Clock::now();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a write after the end
      const auto [wait, n] = writer.longest_wait(a, b + std::chrono::milliseconds(1));
      const std::int64_t due = std::int64_t{kPerRound} * (r + 1);
      if (c.stats.due_within_window != due || c.stats.overdue != 0 ||
          static_cast<int>(c.warnings.size()) != kPerRound ||
          static_cast<int>(c.publications.size()) != kPerRound) {
        std::fprintf(stderr,
                     "round %d: due %lld (want %lld), overdue %lld, warnings %zu (want %d)\n", r,
                     static_cast<long long>(c.stats.due_within_window), static_cast<long long>(due),
                     static_cast<long long>(c.stats.overdue), c.warnings.size(), kPerRound);
        return 1;
      }
      checks.push_back(ms_between(a, b));
      waits.push_back(wait);
      writes += n;
      std::printf("round %d: check %.1f ms, longest writer wait %.1f ms (%d writes asked)\n", r,
                  checks.back(), wait, n);
    }
  }
  double total1 = 0;
  const double steal = (steal_ticks(&total1) - steal0) / std::max(1.0, total1 - total0) * 100;
  remove();
  std::printf(
      "dispute check, %d closed + %d open, median of %d: check %.1f ms, longest writer wait "
      "%.1f ms, max %.1f ms; %d writes during checks (CPU steal %.1f %%, load %s)\n",
      closed, open, rounds, median(checks), median(waits),
      *std::max_element(waits.begin(), waits.end()), writes, steal, load_average().c_str());
  return 0;
}
