// Follow-up calls per second: the outbox worker executing N final
// authorizations against klarna-sim (a separate process, HTTPS, Basic
// credentials) that adds `--latency-ms` to every authorize call. With one call
// at a time the ceiling is 1/latency; pooling and concurrency must make the
// worker far faster than that. Each answer is recorded with its state effects
// (transaction created and linked) in SQLite, as in production.
//
//   worker_bench --calls 2000 --latency-ms 5 --concurrency 64 --connections 32
#include <CLI/CLI.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "child_process.hpp"
#include "http_client.hpp"
#include "kpay/core/metrics.hpp"
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

// One approved (COMPLETED, v2) payment request at the sim, stored as the
// appliers would have stored it, with its final authorization queued.
void prepare_one(klarna::ApiClient& client, storage::StateStore& store, int i) {
  const std::string base = klarna::account_path(kAccount);
  const std::string amount = std::to_string(1000 + i);
  auto created = client.call(post(base + "/payment/requests",
                                  R"({"currency":"EUR","amount":)" + amount +
                                      R"(,"payment_request_reference":"bench-)" + amount + "\"}",
                                  "bench-create-" + amount));
  const auto id = field(created.body, "payment_request_id");
  const std::string customer = "/_sim/payment-requests/" + klarna::percent_encode(id);
  client.call(post(customer + "/start", R"({"flow":"v2"})", "bench-start-" + amount));
  client.call(post(customer + "/approve", R"({"flow":"v2"})", "bench-approve-" + amount));
  klarna::Call read;
  read.method = "GET";
  read.path = base + "/payment/requests/" + klarna::percent_encode(id);
  const auto token = field(client.call(read).body, "klarna_network_session_token");
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
  store.insert_outbox(processor::outbox_row(f, origin));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"outbox worker: follow-up calls/s against klarna-sim with injected latency"};
  int calls = 2000, latency_ms = 5, threads = 1;
  std::size_t concurrency = 64, connections = 32;
  app.add_option("--calls", calls);
  app.add_option("--latency-ms", latency_ms);
  app.add_option("--concurrency", concurrency, "calls in flight at once (worker.concurrency)");
  app.add_option("--connections", connections, "klarna.max_connections");
  app.add_option("--io-threads", threads, "klarna.io_threads");
  CLI11_PARSE(app, argc, argv);

  const auto dir = test::make_temp_dir("worker-bench");
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
  std::uint16_t port = 0;
  test::wait_until(
      [&] {
        auto text = test::read_file(dir + "/sim.port");
        auto at = text.find("\"port\":");
        if (at != std::string::npos) port = static_cast<std::uint16_t>(std::atoi(&text[at + 7]));
        return port != 0;
      },
      std::chrono::seconds(20));
  if (port == 0) {
    std::fprintf(stderr, "klarna-sim did not start: %s\n",
                 test::read_file(dir + "/sim.log").c_str());
    return 1;
  }

  klarna::ClientSettings cs;
  cs.environment = klarna::Environment::custom;
  cs.base_url = "https://127.0.0.1:" + std::to_string(port);
  cs.ca_file = cert.certificate;
  cs.credentials_file = dir + "/api-key";
  cs.max_connections = connections;
  cs.io_threads = threads;
  storage::StateStore store(dir + "/state.db");
  {
    klarna::ApiClient setup(cs);
    std::vector<std::thread> workers;
    for (int t = 0; t < 8; ++t) {
      workers.emplace_back([&, t] {
        storage::StateStore own(dir + "/state.db");
        for (int i = t; i < calls; i += 8) prepare_one(setup, own, i);
      });
    }
    for (auto& w : workers) w.join();
  }
  test::http_request(
      port, "POST", "/_sim/faults",
      R"({"rules":["payment.authorize:latency:100:)" + std::to_string(latency_ms) + "\"]}", {},
      true);

  klarna::ApiClient client(cs);
  core::Registry registry;
  processor::WorkerSettings ws;
  ws.concurrency = concurrency;
  ws.follow_ups.default_capture = processor::CapturePolicy::on_command;
  storage::StateStore worker_store(dir + "/state.db");
  processor::OutboxWorker worker(ws, worker_store, client, registry, nullptr);
  const auto started = Clock::now();
  worker.start();
  while (store.outbox_counts().succeeded + store.outbox_counts().failed < calls) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (Clock::now() - started > std::chrono::minutes(5)) break;
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  const auto counts = store.outbox_counts();
  const auto stats = client.stats();
  worker.stop(std::chrono::seconds(5));
  std::printf(
      "worker: %lld of %d final authorizations succeeded (%lld failed) with %d ms latency in "
      "%.2f s = %.0f calls/s (one at a time: at most %.0f/s); concurrency %zu, "
      "connections opened %llu, peak in flight %zu\n",
      static_cast<long long>(counts.succeeded), calls, static_cast<long long>(counts.failed),
      latency_ms, seconds, counts.succeeded / seconds, 1000.0 / latency_ms, concurrency,
      static_cast<unsigned long long>(stats.connections_opened), stats.peak_in_flight);
  sim.signal(SIGTERM);
  sim.wait(std::chrono::seconds(10));
  std::filesystem::remove_all(dir);
  return counts.succeeded == calls ? 0 : 1;
}
