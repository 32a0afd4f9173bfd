// Follow-up calls per second: the outbox worker executing N final
// authorizations against klarna-sim (a separate process, HTTPS, Basic
// credentials) that adds `--latency-ms` to every authorize call. With one call
// at a time the ceiling is 1/latency; pooling and concurrency must make the
// worker far faster than that. Each answer is recorded with its state effects
// (transaction created and linked) in SQLite, as in production.
//
//   worker_bench --calls 10000 --latency-ms 5 --concurrency 64 --connections 32
//
// The run stops with a message and exit status 1 when a preparation step
// fails, when the worker stalls (no answer recorded for 30 s) or when the
// counts do not match: every row it created succeeded, each authorize and each
// create executed exactly once at the sim. Only then does it print a rate: the calls over the time
// from the worker's start to the last answer recorded, with the host's CPU steal, the load average
// and the CPU time of this process and of the sim over that window.
#include <simdjson.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "child_process.hpp"
#include "http_client.hpp"
#include "kpay/core/metrics.hpp"
#include "kpay/core/percent_encode.hpp"
#include "kpay/klarna/api_client.hpp"
#include "kpay/processor/follow_ups.hpp"
#include "kpay/processor/outbox_worker.hpp"
#include "kpay/storage/state_store.hpp"
#include "tls_cert.hpp"

using namespace kpay;
using Clock = std::chrono::steady_clock;

namespace {

const std::string kAccount = "krn:partner:global:account:test:SIMACCOUNT";
const std::string kApiKey = "bench-api-key";
constexpr int kPrepareThreads = 8;
constexpr auto kStallLimit = std::chrono::seconds(30);  // no answer recorded for this long

struct Options {
  int calls = 2000, latency_ms = 5, io_threads = 1;
  std::size_t concurrency = 64, connections = 32;
};

// A step that must work for the measurement to mean anything.
struct BenchError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string field(const std::string& json, const std::string& key) {
  const auto at = json.find("\"" + key + "\":\"");
  if (at == std::string::npos) return "";
  const auto start = at + key.size() + 4;
  return json.substr(start, json.find('"', start) - start);
}

klarna::Call post(const std::string& path, const std::string& body, const std::string& key) {
  klarna::Call c;
  c.method = "POST";
  c.path = path;
  c.body = body;
  c.idempotency_key = key;
  return c;
}

// The answer's body when it has the expected status; else the run stops.
std::string expect(const klarna::Answer& a, int status, const std::string& step) {
  if (a.status != status) {
    throw BenchError(step + ": expected " + std::to_string(status) + ", got " + a.summary());
  }
  return a.body;
}

// One approved (COMPLETED, v2) payment request at the sim, stored as the
// appliers would have stored it, with its final authorization queued.
void prepare_one(klarna::ApiClient& client, storage::StateStore& store, int i) {
  const std::string base = klarna::account_path(kAccount);
  const std::string amount = std::to_string(1000 + i);
  const std::string step = "payment " + std::to_string(i) + ": ";
  const auto id =
      field(expect(client.call(post(base + "/payment/requests",
                                    R"({"currency":"EUR","amount":)" + amount +
                                        R"(,"payment_request_reference":"bench-)" + amount + "\"}",
                                    "bench-create-" + amount)),
                   201, step + "create"),
            "payment_request_id");
  if (id.empty()) throw BenchError(step + "create answered without payment_request_id");
  const std::string customer = "/_sim/payment-requests/" + core::percent_encode(id);
  expect(client.call(post(customer + "/start", R"({"flow":"v2"})", "bench-start-" + amount)), 200,
         step + "start");
  expect(client.call(post(customer + "/approve", R"({"flow":"v2"})", "bench-approve-" + amount)),
         200, step + "approve");
  klarna::Call read;
  read.method = "GET";
  read.path = base + "/payment/requests/" + core::percent_encode(id);
  const auto token =
      field(expect(client.call(read), 200, step + "read"), "klarna_network_session_token");
  if (token.empty()) throw BenchError(step + "read answered without a session token");
  storage::PaymentRequestRow row;
  row.id = id;
  row.state = "COMPLETED";
  row.amount = 1000 + i;
  row.currency = "EUR";
  row.reference = "bench-" + amount;
  row.account_id = kAccount;
  row.last_event_id = "bench";
  store.save_request(row);
  processor::FinalAuthorization f;
  f.payment_request_id = id;
  f.token = token;
  f.amount = 1000 + i;
  f.currency = "EUR";
  f.reference = row.reference;
  processor::FollowUpOrigin origin{kAccount, "bench", 0, std::nullopt, ""};
  if (!store.insert_outbox(processor::outbox_row(f, origin))) {
    throw BenchError(step + "its final authorization was already queued");
  }
}

// `calls` payments prepared by 8 threads sharing one client; the first error stops all.
void prepare(const klarna::ClientSettings& cs, const std::string& db, int calls) {
  klarna::ApiClient setup(cs);
  std::mutex mu;
  std::string first_error;
  std::atomic<bool> failed{false};
  std::vector<std::thread> workers;
  for (int t = 0; t < kPrepareThreads; ++t) {
    workers.emplace_back([&, t] {
      try {
        storage::StateStore own(db);
        for (int i = t; i < calls && !failed; i += kPrepareThreads) prepare_one(setup, own, i);
      } catch (const std::exception& e) {
        std::lock_guard lock(mu);
        if (!failed.exchange(true)) first_error = e.what();
      }
    });
  }
  for (auto& w : workers) w.join();
  if (failed) throw BenchError("preparation failed: " + first_error);
}

// CPU time: jiffies of the whole host (steal, total) from /proc/stat, and the
// user+system seconds of one process from /proc/<pid>/stat.
struct HostCpu {
  double steal = 0, total = 0;
};
HostCpu host_cpu() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  double v[10] = {};
  in >> cpu;
  for (double& x : v) in >> x;
  HostCpu h;
  for (int i = 0; i < 8; ++i) h.total += v[i];  // user … steal (guest is inside user)
  h.steal = v[7];
  return h;
}
double process_cpu_s(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = text.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(text.substr(close + 2));
  std::string skip;
  for (int i = 0; i < 11; ++i) rest >> skip;  // state … cmajflt
  double utime = 0, stime = 0;
  rest >> utime >> stime;
  return (utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}
std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string one;
  in >> one;
  return one;
}

// The sim: each authorize executed exactly once, every idempotency key once.
void check_sim(std::uint16_t port, int calls) {
  auto r = test::http_request(port, "GET", "/_sim/executions", {}, {}, true);
  if (!r || r->status != 200) throw BenchError("cannot read the sim's executions");
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(r->body).get(doc) != simdjson::SUCCESS) {
    throw BenchError("the sim's executions are not JSON");
  }
  std::int64_t authorized = 0;
  if (doc["by_route"]["payment.authorize"].get_int64().get(authorized) != simdjson::SUCCESS ||
      authorized != calls) {
    throw BenchError("the sim executed " + std::to_string(authorized) + " authorizations, not " +
                     std::to_string(calls));
  }
  simdjson::dom::object keys;
  if (doc["by_idempotency_key"].get_object().get(keys) != simdjson::SUCCESS) {
    throw BenchError("the sim's executions have no by_idempotency_key");
  }
  for (auto [key, count] : keys) {
    std::int64_t n = 0;
    if (count.get_int64().get(n) != simdjson::SUCCESS || n != 1) {
      throw BenchError("idempotency key " + std::string(key) + " executed " + std::to_string(n) +
                       " times");
    }
  }
}

struct Measured {
  double seconds = 0;  // worker start → last answer recorded
  double steal_pct = 0, bench_cpu_s = 0, sim_cpu_s = 0;
  std::string load;
  klarna::ApiClient::Stats client;
};

// Runs the worker until every queued row is done; throws when it stalls or a row failed.
Measured run_worker(const Options& o, const klarna::ClientSettings& cs, const std::string& db,
                    pid_t sim_pid) {
  storage::StateStore store(db);
  const auto queued = store.outbox_counts();
  if (queued.pending != o.calls || queued.succeeded + queued.failed + queued.in_flight != 0) {
    throw BenchError("expected " + std::to_string(o.calls) +
                     " pending rows before the run, found " + std::to_string(queued.pending));
  }
  klarna::ApiClient client(cs);
  core::Registry registry;
  processor::WorkerSettings ws;
  ws.concurrency = o.concurrency;
  ws.follow_ups.default_capture = processor::CapturePolicy::on_command;
  storage::StateStore worker_store(db);
  processor::OutboxWorker worker(ws, worker_store, client, registry, nullptr);
  Measured m;
  const auto cpu0 = host_cpu();
  const double bench0 = process_cpu_s(::getpid()), sim0 = process_cpu_s(sim_pid);
  const auto start_ms = wall_ms();
  worker.start();
  std::int64_t done = 0;
  auto progress_at = Clock::now();
  while (done < o.calls) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const auto c = store.outbox_counts();
    if (c.succeeded + c.failed > done) progress_at = Clock::now();
    done = c.succeeded + c.failed;
    if (Clock::now() - progress_at > kStallLimit) break;
  }
  const auto cpu1 = host_cpu();
  m.bench_cpu_s = process_cpu_s(::getpid()) - bench0;
  m.sim_cpu_s = process_cpu_s(sim_pid) - sim0;
  m.load = load_average();
  m.client = client.stats();
  worker.stop(std::chrono::seconds(5));
  const auto c = store.outbox_counts();
  if (c.succeeded != o.calls) {
    throw BenchError("worker stalled or failed: " + std::to_string(c.succeeded) + " of " +
                     std::to_string(o.calls) + " succeeded, " + std::to_string(c.failed) +
                     " failed, " + std::to_string(c.pending + c.in_flight) + " not done");
  }
  std::int64_t last_ms = start_ms;
  for (const auto& row :
       store.list_outbox(storage::OutboxStatus::succeeded, static_cast<std::size_t>(o.calls) + 1)) {
    last_ms = std::max(last_ms, row.updated_at_ms);
  }
  m.seconds = std::max(0.001, static_cast<double>(last_ms - start_ms) / 1000.0);
  m.steal_pct =
      cpu1.total > cpu0.total ? 100.0 * (cpu1.steal - cpu0.steal) / (cpu1.total - cpu0.total) : 0.0;
  return m;
}

std::uint16_t start_sim(test::ChildProcess& sim, const std::string& dir) {
  std::uint16_t port = 0;
  test::wait_until(
      [&] {
        auto text = test::read_file(dir + "/sim.port");
        auto at = text.find("\"port\":");
        if (at != std::string::npos) port = static_cast<std::uint16_t>(std::atoi(&text[at + 7]));
        return port != 0 || !sim.running();
      },
      std::chrono::seconds(20));
  if (port == 0) throw BenchError("klarna-sim did not start: " + test::read_file(dir + "/sim.log"));
  return port;
}

int run(const Options& o, const std::string& dir) {
  const auto cert = test::write_self_signed_cert(dir);
  std::ofstream(dir + "/api-key") << kApiKey;
  std::filesystem::permissions(
      dir + "/api-key", std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  test::ChildProcess sim(
      {test::binary("sim/klarna-sim"), "--port", "0", "--port-file", dir + "/sim.port", "--set",
       "sim.tls=true", "--set", "sim.tls_certificate=" + cert.certificate, "--set",
       "sim.tls_private_key=" + cert.private_key, "--set", "sim.api_key_file=" + dir + "/api-key",
       "--set", "sim.seed=5", "--set", "sim.log_level=warn"},
      dir + "/sim.log");
  const auto port = start_sim(sim, dir);
  klarna::ClientSettings cs;
  cs.environment = klarna::Environment::custom;
  cs.base_url = "https://127.0.0.1:" + std::to_string(port);
  cs.ca_file = cert.certificate;
  cs.credentials_file = dir + "/api-key";
  cs.max_connections = o.connections;
  cs.io_threads = o.io_threads;
  const std::string db = dir + "/state.db";
  { storage::StateStore create(db); }
  const auto prepared_at = Clock::now();
  prepare(cs, db, o.calls);
  const double prepare_s = std::chrono::duration<double>(Clock::now() - prepared_at).count();
  auto faults = test::http_request(
      port, "POST", "/_sim/faults",
      R"({"rules":["payment.authorize:latency:100:)" + std::to_string(o.latency_ms) + "\"]}", {},
      true);
  if (!faults || faults->status != 200) throw BenchError("the sim refused the latency rule");
  std::printf("prepared %d payments in %.1f s; the worker starts (sim pid %d)\n", o.calls,
              prepare_s, static_cast<int>(sim.pid()));
  std::fflush(stdout);
  const Measured m = run_worker(o, cs, db, sim.pid());
  check_sim(port, o.calls);
  std::printf(
      "worker: %d of %d final authorizations succeeded, each executed once, with %d ms latency "
      "in %.2f s = %.0f calls/s (one at a time: at most %.0f/s); concurrency %zu, connections "
      "opened %llu, peak in flight %zu, stale resends %llu; steal %.1f%%, load %s, cpu: bench "
      "%.2f s, sim %.2f s\n",
      o.calls, o.calls, o.latency_ms, m.seconds, o.calls / m.seconds, 1000.0 / o.latency_ms,
      o.concurrency, static_cast<unsigned long long>(m.client.connections_opened),
      m.client.peak_in_flight, static_cast<unsigned long long>(m.client.stale_retries), m.steal_pct,
      m.load.c_str(), m.bench_cpu_s, m.sim_cpu_s);
  sim.signal(SIGTERM);
  sim.wait(std::chrono::seconds(10));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"outbox worker: follow-up calls/s against klarna-sim with injected latency"};
  Options o;
  app.add_option("--calls", o.calls)->check(CLI::Range(1, 10'000'000));
  app.add_option("--latency-ms", o.latency_ms)->check(CLI::Range(0, 60'000));
  app.add_option("--concurrency", o.concurrency, "calls in flight at once (worker.concurrency)");
  app.add_option("--connections", o.connections, "klarna.max_connections");
  app.add_option("--io-threads", o.io_threads, "klarna.io_threads");
  CLI11_PARSE(app, argc, argv);
  const auto dir = test::make_temp_dir("worker-bench");
  int rc = 0;
  try {
    rc = run(o, dir);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "worker_bench: %s\n", e.what());
    rc = dynamic_cast<const BenchError*>(&e) ? 1 : 2;
  }
  std::filesystem::remove_all(dir);
  return rc;
}
