// Load generator for the webhook receiver: distinct, correctly signed
// webhooks over keep-alive connections (plain or TLS) on loopback.
//
// Two modes:
//   --rate 0      closed loop: every connection sends its next request as soon
//                 as the previous answer arrives (maximum throughput);
//   --rate R      open loop at R requests/s in total, spread over the
//                 connections; latency is measured from the *scheduled* send
//                 time, so a stalled server cannot hide its queueing delay.
// Prints one JSON object with throughput, latency percentiles, status counts,
// and the host's CPU steal over the measured window: on a shared VM a fixed-rate
// tail is meaningless without it.
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
};

struct Stats {
  std::vector<double> latencies_ms;
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
    for (;;) {
      if (o.rate > 0) {
        if (scheduled >= end) break;
        timer.expires_at(scheduled);
        co_await timer.async_wait(kTuple);
      }
      auto t0 = o.rate > 0 ? scheduled : Clock::now();
      if (t0 >= end) break;
      long n = next.fetch_add(1);
      const auto& req = requests[static_cast<size_t>(n) % requests.size()];
      int status = 0;
      bool ok = co_await exchange(s, req, buf, status);
      auto t1 = Clock::now();
      if (t0 >= measure_from) {
        ++stats.sent;
        if (!ok) {
          ++stats.errors;
        } else {
          stats.statuses[status]++;
          stats.latencies_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
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
  for (auto& ioc : iocs) threads.emplace_back([&ioc] { ioc->run(); });
  // The steal window: from the start of measuring until the last answer.
  std::this_thread::sleep_until(run.measure_from);
  const CpuTicks before = cpu_ticks();
  for (auto& t : threads) t.join();
  const CpuTicks after = cpu_ticks();
  // 0 when /proc/stat could not be read.
  const double steal_pct = after.total <= before.total || after.steal < before.steal
                               ? 0.0
                               : 100.0 * static_cast<double>(after.steal - before.steal) /
                                     static_cast<double>(after.total - before.total);

  Stats all;
  for (auto& s : stats) {
    all.latencies_ms.insert(all.latencies_ms.end(), s.latencies_ms.begin(), s.latencies_ms.end());
    for (auto [k, v] : s.statuses) all.statuses[k] += v;
    all.errors += s.errors;
    all.sent += s.sent;
  }
  std::sort(all.latencies_ms.begin(), all.latencies_ms.end());
  auto pct = [&](double p) {
    if (all.latencies_ms.empty()) return 0.0;
    return all.latencies_ms[std::min(all.latencies_ms.size() - 1,
                                     static_cast<size_t>(p * all.latencies_ms.size()))];
  };
  // Valid only when every answer was a 2xx and nothing failed: a rate that
  // counts refusals or broken connections is not the receiver's throughput.
  long refused = 0;
  for (auto [k, v] : all.statuses) {
    if (k < 200 || k > 299) refused += v;
  }
  const bool valid = all.errors == 0 && refused == 0 && !all.latencies_ms.empty();
  if (!valid) {
    std::fprintf(stderr, "INVALID RUN: %ld errors, %ld answers not 2xx, %zu completed; rps 0\n",
                 all.errors, refused, all.latencies_ms.size());
  }
  double rps = valid ? static_cast<double>(all.latencies_ms.size()) / o.seconds : 0.0;
  std::printf(
      "{\"tls\":%s,\"connections\":%d,\"target_rate\":%.0f,\"seconds\":%.1f,\"completed\":%zu,"
      "\"rps\":%.0f,\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"errors\":%ld,"
      "\"steal_pct\":%.1f,\"statuses\":{",
      o.tls ? "true" : "false", o.connections, o.rate, o.seconds, all.latencies_ms.size(), rps,
      pct(0.5), pct(0.9), pct(0.99), all.latencies_ms.empty() ? 0.0 : all.latencies_ms.back(),
      all.errors, steal_pct);
  bool first = true;
  for (auto [k, v] : all.statuses) {
    std::printf("%s\"%d\":%ld", first ? "" : ",", k, v);
    first = false;
  }
  std::printf("},\"valid\":%s}\n", valid ? "true" : "false");
  return valid ? 0 : 1;
}
