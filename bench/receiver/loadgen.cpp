// Load generator for the webhook receiver: distinct, correctly signed
// webhooks over keep-alive connections (plain or TLS) on loopback.
//
// Two modes:
//   --rate 0      closed loop: every connection sends its next request as soon
//                 as the previous answer arrives (maximum throughput);
//   --rate R      open loop at R requests/s in total, spread over the
//                 connections; latency is measured from the *scheduled* send
//                 time, so a stalled server cannot hide its queueing delay.
//                 `lag_*` is the generator's own delay: how long after a
//                 request could go (its scheduled time, or the previous
//                 answer on its connection if that came later) it went. It
//                 is part of the measured latency — the generator shares the
//                 CPUs with the server — and `p99_without_lag_ms` takes it
//                 out. `tail_*` says whether the slowest 1% came in a few
//                 stalls or spread over the run (--timeline: per 10 ms).
// Prints one JSON object with throughput, latency percentiles, status counts,
// and the host's CPU steal over the measured window: on a shared VM a fixed-rate
// tail is meaningless without it.
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "kpay/klarna/signature.hpp"

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

struct Options {
  std::uint16_t port = 0;
  bool tls = false;
  int connections = 32;
  double seconds = 10;
  double warmup = 2;
  double rate = 0;
  std::string path = "/webhooks/klarna";
  std::string key_id = "krn:partner:global:notification:signing-key:bench";
  std::string secret = "bench-signing-key-NOT-REAL";
  int threads = 1;
  std::string timeline;
};

// One measured request: when it was due (the schedule; in closed loop, when
// it was sent), how late the generator itself sent it, and the answer's time.
struct Sample {
  double due_ms;      // since the start of measuring
  double latency_ms;  // answer − due: what a client on that schedule waits
  double lag_ms;      // sent − max(due, previous answer): the generator's own delay
};

struct Stats {
  std::vector<Sample> samples;
  std::map<int, long> statuses;
  long errors = 0;
  long sent = 0;
};

// The machine-wide CPU counters of /proc/stat ("cpu" line), in clock ticks.
struct CpuTicks {
  unsigned long long total = 0, steal = 0;
};
CpuTicks cpu_ticks() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  unsigned long long v[8] = {};  // user nice system idle iowait irq softirq steal
  in >> cpu;
  CpuTicks t;
  for (auto& x : v) {
    if (!(in >> x)) return {};
    t.total += x;
  }
  t.steal = v[7];
  return t;
}

// This process's CPU time (user + system), all threads: the generator's own
// share of the 2 cores it shares with the server.
double own_cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  auto sec = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return sec(u.ru_utime) + sec(u.ru_stime);
}

// Nanoseconds a thread has waited in a run queue (runnable, no CPU free), from
// schedstat: the part of the measured latency that is the generator waiting
// for a CPU, not the server. `path` is /proc/thread-self or /proc/self/task/N.
double runqueue_wait_ns(const std::filesystem::path& path) {
  std::ifstream in(path / "schedstat");
  double run = 0, wait = 0;
  return in >> run >> wait ? wait : 0.0;
}

double all_threads_runqueue_wait_ns() {
  double sum = 0;
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    sum += runqueue_wait_ns(task.path());
  }
  return sum;
}

std::string make_request(const Options& o, long n) {
  char id[64];
  std::snprintf(id, sizeof id, "bench-%08ld-%d", n, getpid());
  std::string body =
      std::string(
          R"({"metadata":{"event_type":"payment.request.state-change.completed","event_id":")") +
      id +
      R"(","event_version":"v2","occurred_at":"2025-02-28T12:00:00Z","subject_account_id":"krn:partner:global:account:test:LWT2XJSE","live":false},"payload":{"payment_request_id":"krn:payment:eu1:request:)" +
      id +
      R"(","payment_request_reference":"ref","state":"COMPLETED","previous_state":"IN_PROGRESS","amount":11800,"currency":"EUR","state_context":{"klarna_network_session_token":"krn:network:eu1:test:session-token:x"}}})";
  std::string sig = kpay::klarna::hmac_sha256_hex(o.secret, body);
  return "POST " + o.path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
         "Klarna-Signing-Key-Id: " + o.key_id + "\r\nKlarna-Signature: " + sig +
         "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

template <class Stream>
asio::awaitable<bool> exchange(Stream& s, const std::string& req, asio::streambuf& buf,
                               int& status) {
  auto [wec, wn] = co_await asio::async_write(s, asio::buffer(req), kTuple);
  if (wec) co_return false;
  auto [rec, rn] = co_await asio::async_read_until(s, buf, "\r\n\r\n", kTuple);
  if (rec) co_return false;
  std::string head(asio::buffers_begin(buf.data()), asio::buffers_begin(buf.data()) + rn);
  buf.consume(rn);
  status = std::atoi(head.c_str() + 9);
  size_t cl = 0;
  auto p = head.find("Content-Length: ");
  if (p == std::string::npos) p = head.find("content-length: ");
  if (p != std::string::npos) cl = std::stoul(head.substr(p + 16));
  if (buf.size() < cl) {
    auto [bec, bn] =
        co_await asio::async_read(s, buf, asio::transfer_exactly(cl - buf.size()), kTuple);
    if (bec) co_return false;
  }
  buf.consume(cl);
  co_return true;
}

struct Run {
  Options o;
  std::vector<std::string> requests;
  std::atomic<long> next{0};
  Clock::time_point start, measure_from, end;

  template <class Stream>
  asio::awaitable<void> client(Stream& s, int index, Stats& stats) {
    asio::streambuf buf;
    asio::steady_timer timer(co_await asio::this_coro::executor);
    // Open loop: connection i sends at start + (i + k*C) / rate.
    double per_conn_interval = o.rate > 0 ? o.connections / o.rate : 0;
    auto scheduled = start + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(index / std::max(o.rate, 1e-9)));
    Clock::time_point previous_answer{};
    for (;;) {
      if (o.rate > 0) {
        if (scheduled >= end) break;
        timer.expires_at(scheduled);
        co_await timer.async_wait(kTuple);
      }
      const auto sent = Clock::now();
      auto t0 = o.rate > 0 ? scheduled : sent;
      if (t0 >= end) break;
      long n = next.fetch_add(1);
      const auto& req = requests[static_cast<size_t>(n) % requests.size()];
      int status = 0;
      bool ok = co_await exchange(s, req, buf, status);
      auto t1 = Clock::now();
      // Sent late because the previous answer came after the scheduled time
      // is the server's queueing; any later than that is the generator's.
      const auto could_go = std::max(t0, previous_answer);
      previous_answer = t1;
      if (t0 >= measure_from) {
        ++stats.sent;
        if (!ok) {
          ++stats.errors;
        } else {
          stats.statuses[status]++;
          using Ms = std::chrono::duration<double, std::milli>;
          stats.samples.push_back({Ms(t0 - measure_from).count(), Ms(t1 - t0).count(),
                                   std::max(0.0, Ms(sent - could_go).count())});
        }
      }
      if (!ok) co_return;
      if (o.rate > 0) {
        scheduled += std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(per_conn_interval));
      }
    }
  }

  asio::awaitable<void> connection(int index, Stats& stats, ssl::context* ctx) {
    auto ex = co_await asio::this_coro::executor;
    tcp::socket sock(ex);
    auto [cec] = co_await sock.async_connect(
        tcp::endpoint(asio::ip::make_address("127.0.0.1"), o.port), kTuple);
    if (cec) {
      ++stats.errors;
      co_return;
    }
    sock.set_option(tcp::no_delay(true));
    if (ctx != nullptr) {
      ssl::stream<tcp::socket> s(std::move(sock), *ctx);
      auto [hec] = co_await s.async_handshake(ssl::stream_base::client, kTuple);
      if (hec) {
        ++stats.errors;
        co_return;
      }
      co_await client(s, index, stats);
    } else {
      co_await client(sock, index, stats);
    }
  }
};

// Percentiles of a run, and where its tail lies in time: the requests above
// the p99 grouped by the 10 ms window they were due in. A tail spread over
// many windows is made by single requests; one packed into a few windows is a
// stall that every connection saw at once (a blocked thread, the scheduler).
struct Summary {
  double p50 = 0, p90 = 0, p99 = 0, max = 0, lag_p50 = 0, lag_p99 = 0, p99_without_lag = 0;
  std::size_t tail_windows = 0, tail_max_in_window = 0;
};

double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0.0;
  return sorted[std::min(sorted.size() - 1, static_cast<size_t>(p * sorted.size()))];
}

Summary summarize(const std::vector<Sample>& samples) {
  std::vector<double> lat, lag, net;
  lat.reserve(samples.size());
  lag.reserve(samples.size());
  net.reserve(samples.size());
  for (const auto& s : samples) {
    lat.push_back(s.latency_ms);
    lag.push_back(s.lag_ms);
    net.push_back(s.latency_ms - s.lag_ms);
  }
  std::sort(lat.begin(), lat.end());
  std::sort(lag.begin(), lag.end());
  std::sort(net.begin(), net.end());
  Summary out{percentile(lat, 0.5),           percentile(lat, 0.9), percentile(lat, 0.99),
              lat.empty() ? 0.0 : lat.back(), percentile(lag, 0.5), percentile(lag, 0.99),
              percentile(net, 0.99)};
  std::map<long, std::size_t> windows;
  for (const auto& s : samples) {
    if (s.latency_ms > out.p99) windows[static_cast<long>(s.due_ms / 10)]++;
  }
  out.tail_windows = windows.size();
  for (auto [w, n] : windows) out.tail_max_in_window = std::max(out.tail_max_in_window, n);
  return out;
}

// Per 10 ms of due time: requests, their p50 and worst latency, the worst
// generator lag (gnuplot-ready columns).
void write_timeline(const std::string& path, std::vector<Sample> samples) {
  std::sort(samples.begin(), samples.end(),
            [](const Sample& a, const Sample& b) { return a.due_ms < b.due_ms; });
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return;
  std::fprintf(f, "# due_ms requests p50_ms max_ms max_lag_ms\n");
  for (std::size_t i = 0; i < samples.size();) {
    const long w = static_cast<long>(samples[i].due_ms / 10);
    std::vector<double> lat;
    double max_lag = 0;
    for (; i < samples.size() && static_cast<long>(samples[i].due_ms / 10) == w; ++i) {
      lat.push_back(samples[i].latency_ms);
      max_lag = std::max(max_lag, samples[i].lag_ms);
    }
    std::sort(lat.begin(), lat.end());
    std::fprintf(f, "%ld %zu %.3f %.3f %.3f\n", w * 10, lat.size(), percentile(lat, 0.5),
                 lat.back(), max_lag);
  }
  std::fclose(f);
}

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"Signed-webhook load generator"};
  app.add_option("--port", o.port)->required();
  app.add_flag("--tls", o.tls);
  app.add_option("--connections", o.connections);
  app.add_option("--seconds", o.seconds, "Measured duration");
  app.add_option("--warmup", o.warmup, "Unmeasured warm-up before it");
  app.add_option("--rate", o.rate, "Total requests/s (0: as fast as possible)");
  app.add_option("--path", o.path);
  app.add_option("--key-id", o.key_id);
  app.add_option("--secret", o.secret);
  app.add_option("--threads", o.threads, "Client I/O threads");
  app.add_option("--timeline", o.timeline, "Write latency per 10 ms of the run to this file");
  CLI11_PARSE(app, argc, argv);

  Run run{o, {}, {}, {}, {}, {}};
  long distinct = 200000;
  run.requests.reserve(static_cast<size_t>(distinct));
  for (long i = 0; i < distinct; ++i) run.requests.push_back(make_request(o, i));

  ssl::context ctx(ssl::context::tls_client);
  ctx.set_verify_mode(ssl::verify_none);
  std::vector<std::unique_ptr<asio::io_context>> iocs;
  std::vector<Stats> stats(static_cast<size_t>(o.connections));
  run.start = Clock::now() + std::chrono::milliseconds(200);
  run.measure_from = run.start + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(o.warmup));
  run.end = run.measure_from +
            std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.seconds));
  for (int t = 0; t < o.threads; ++t) iocs.push_back(std::make_unique<asio::io_context>(1));
  for (int c = 0; c < o.connections; ++c) {
    auto& ioc = *iocs[static_cast<size_t>(c % o.threads)];
    asio::co_spawn(ioc, run.connection(c, stats[static_cast<size_t>(c)], o.tls ? &ctx : nullptr),
                   asio::detached);
  }
  std::vector<std::thread> threads;
  // Each I/O thread reads its own run-queue wait as it ends (an ended
  // thread's counters leave /proc).
  std::vector<double> wait_at_end(iocs.size(), 0.0);
  for (std::size_t t = 0; t < iocs.size(); ++t) {
    threads.emplace_back([&iocs, &wait_at_end, t] {
      iocs[t]->run();
      wait_at_end[t] = runqueue_wait_ns("/proc/thread-self");
    });
  }
  // The steal window: from the start of measuring until the last answer.
  std::this_thread::sleep_until(run.measure_from);
  const CpuTicks before = cpu_ticks();
  const double own_before = own_cpu_seconds();
  const double wait_before = all_threads_runqueue_wait_ns();
  for (auto& t : threads) t.join();
  const CpuTicks after = cpu_ticks();
  const double own_cpu = own_cpu_seconds() - own_before;
  double own_wait_ns = all_threads_runqueue_wait_ns() - wait_before;  // main thread now
  for (double w : wait_at_end) own_wait_ns += w;
  // 0 when /proc/stat could not be read.
  const double steal_pct = after.total <= before.total || after.steal < before.steal
                               ? 0.0
                               : 100.0 * static_cast<double>(after.steal - before.steal) /
                                     static_cast<double>(after.total - before.total);

  Stats all;
  for (auto& s : stats) {
    all.samples.insert(all.samples.end(), s.samples.begin(), s.samples.end());
    for (auto [k, v] : s.statuses) all.statuses[k] += v;
    all.errors += s.errors;
    all.sent += s.sent;
  }
  const Summary sum = summarize(all.samples);
  if (!o.timeline.empty()) write_timeline(o.timeline, all.samples);
  // Valid only when every answer was a 2xx and nothing failed: a rate that
  // counts refusals or broken connections is not the receiver's throughput.
  long refused = 0;
  for (auto [k, v] : all.statuses) {
    if (k < 200 || k > 299) refused += v;
  }
  const std::size_t completed = all.samples.size();
  const bool valid = all.errors == 0 && refused == 0 && completed > 0;
  if (!valid) {
    std::fprintf(stderr, "INVALID RUN: %ld errors, %ld answers not 2xx, %zu completed; rps 0\n",
                 all.errors, refused, completed);
  }
  double rps = valid ? static_cast<double>(completed) / o.seconds : 0.0;
  std::printf(
      "{\"tls\":%s,\"connections\":%d,\"target_rate\":%.0f,\"seconds\":%.1f,\"completed\":%zu,"
      "\"rps\":%.0f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,"
      "\"lag_p50_ms\":%.3f,\"lag_p99_ms\":%.3f,\"p99_without_lag_ms\":%.3f,\"tail_windows_10ms\":%"
      "zu,"
      "\"tail_max_in_window\":%zu,\"loadgen_cpu_us_per_request\":%.1f,"
      "\"loadgen_runqueue_wait_us_per_request\":%.1f,\"errors\":%ld,"
      "\"steal_pct\":%.1f,\"statuses\":{",
      o.tls ? "true" : "false", o.connections, o.rate, o.seconds, completed, rps, sum.p50, sum.p90,
      sum.p99, sum.max, sum.lag_p50, sum.lag_p99, sum.p99_without_lag, sum.tail_windows,
      sum.tail_max_in_window, completed > 0 ? own_cpu * 1e6 / static_cast<double>(completed) : 0.0,
      completed > 0 ? own_wait_ns / 1e3 / static_cast<double>(completed) : 0.0, all.errors,
      steal_pct);
  bool first = true;
  for (auto [k, v] : all.statuses) {
    std::printf("%s\"%d\":%ld", first ? "" : ",", k, v);
    first = false;
  }
  std::printf("},\"valid\":%s}\n", valid ? "true" : "false");
  return valid ? 0 : 1;
}
