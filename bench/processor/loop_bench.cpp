// Webhook received → Klarna call latency through the whole product, at a
// given payment rate: klarna-sim approves `--payments` v2 payments at
// `--rate` per second and delivers each `completed` webhook to klarna-receiver
// (plain HTTP), which publishes it to the embedded Kafka; klarna-processor
// applies it and its outbox worker makes the final authorization at the sim.
// Latency per payment = the sim's clock when the authorize call arrived minus
// when it started the `completed` delivery that was answered 2xx (both on the sim's clock, time
// scale 1). The subscription carries only `completed` events, so the load is
// one webhook and one API call per payment.
//
// --store postgresql --processors N: N processors in one consumer group share
// a PostgreSQL state (a throwaway server made durable, durable_postgres.hpp)
// instead of one processor on SQLite. --latency-ms L: the sim answers every
// authorize call L ms late (a fault rule), as Klarna's network would.
//
//   loop_bench --payments 10000 --rate 1000
//   loop_bench --payments 3000 --rate 300 --store postgresql --processors 3 --latency-ms 5
#include <simdjson.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <thread>

#include "child_process.hpp"
#ifdef KPAY_LOOP_BENCH_POSTGRES
#include "durable_postgres.hpp"
#include "kpay/storage/postgres.hpp"
#endif
#include "http_client.hpp"
#include "kpay/core/embedded_kafka.hpp"
#include "kpay/klarna/envelope.hpp"
#include "kpay/processor/events.hpp"
#include "tls_cert.hpp"

using namespace kpay;

namespace {

const std::string kKeyId = "krn:partner:global:notification:signing-key:bench-0001";

std::uint16_t read_port(const std::string& file) {
  std::uint16_t port = 0;
  test::wait_until(
      [&] {
        auto text = test::read_file(file);
        auto at = text.find("\"port\":");
        if (at != std::string::npos) port = static_cast<std::uint16_t>(std::atoi(&text[at + 7]));
        return port != 0;
      },
      std::chrono::seconds(30));
  return port;
}

std::string get(std::uint16_t port, const std::string& path) {
  auto r = test::http_request(port, "GET", path, {}, {}, /*tls=*/true);
  return r ? r->body : std::string();
}

std::int64_t ms(std::string_view rfc3339) {
  return processor::parse_rfc3339_ms(rfc3339).value_or(0);
}

// payment_request_reference → when the sim's `completed` delivery got its 2xx.
std::map<std::string, std::int64_t> completed_at(std::uint16_t sim) {
  std::map<std::string, std::int64_t> out;
  simdjson::dom::parser p, body_parser;
  simdjson::dom::array deliveries;
  if (p.parse(get(sim, "/_sim/webhooks"))["deliveries"].get_array().get(deliveries)) return out;
  for (auto d : deliveries) {
    std::string_view body, state;
    simdjson::dom::array attempts;
    if (d["body"].get_string().get(body) || d["state"].get_string().get(state) ||
        state != "delivered" || d["attempts"].get_array().get(attempts) || attempts.size() == 0) {
      continue;
    }
    std::string_view at, reference;
    if (attempts.at(attempts.size() - 1)["at"].get_string().get(at)) continue;
    if (body_parser.parse(body)["payload"]["payment_request_reference"].get_string().get(
            reference)) {
      continue;
    }
    out[std::string(reference)] = ms(at);
  }
  return out;
}

// payment_transaction_reference (= the request's reference) → when the sim
// received the final authorization.
std::map<std::string, std::int64_t> authorized_at(std::uint16_t sim) {
  std::map<std::string, std::int64_t> out;
  simdjson::dom::parser p, body_parser;
  simdjson::dom::array calls;
  if (p.parse(get(sim, "/_sim/calls?route=payment.authorize"))["calls"].get_array().get(calls)) {
    return out;
  }
  for (auto c : calls) {
    std::string_view at, body, reference;
    if (c["at"].get_string().get(at) || c["body"].get_string().get(body)) continue;
    if (body_parser.parse(body)["request_payment_transaction"]["payment_transaction_reference"]
            .get_string()
            .get(reference)) {
      continue;
    }
    out.emplace(std::string(reference), ms(at));  // the first attempt
  }
  return out;
}

double percentile(std::vector<std::int64_t> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return static_cast<double>(v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1))]);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"webhook received -> Klarna call latency through the whole product"};
  int payments = 10000, rate = 1000, processors = 1, latency_ms = 0;
  std::string store = "sqlite";
  app.add_option("--payments", payments);
  app.add_option("--rate", rate, "payments approved per second");
  app.add_option("--store", store, "sqlite | postgresql")
      ->check(CLI::IsMember({"sqlite", "postgresql"}));
  app.add_option("--processors", processors, "processors (postgresql only)")
      ->check(CLI::Range(1, 8));
  app.add_option("--latency-ms", latency_ms, "added to every authorize call by the sim");
  CLI11_PARSE(app, argc, argv);
  if (store == "sqlite" && processors != 1) {
    std::fprintf(stderr, "--processors > 1 needs --store postgresql\n");
    return 2;
  }

  const auto dir = test::make_temp_dir("loop-bench");
  klarna::Topics topics;
  core::EmbeddedKafka kafka(1);
  for (const auto& t : {topics.payment_requests, topics.payment_transactions, topics.disputes,
                        topics.settlements, topics.accounts, topics.unrouted, topics.dead_letter,
                        topics.payment_states, topics.processor_dead_letter}) {
    kafka.create_topic(t, 4);
  }
  const auto cert = test::write_self_signed_cert(dir);
  std::ofstream(dir + "/secret") << "loop-bench-signing-key";
  std::ofstream(dir + "/api-key") << "loop-bench-api-key";
  std::filesystem::permissions(
      dir + "/api-key", std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  test::ChildProcess({test::binary("tools/klarnactl"), "--set", "keys.database=" + dir + "/keys.db",
                      "keys", "add", "--id", kKeyId, "--secret-file", dir + "/secret"},
                     dir + "/ctl.log")
      .wait(std::chrono::seconds(20));
  test::ChildProcess receiver(
      {test::binary("receiver/klarna-receiver"), "--set", "receiver.listen_address=127.0.0.1",
       "--set", "receiver.port=0", "--set", "receiver.tls=false", "--set",
       "receiver.port_file=" + dir + "/receiver.port", "--set", "keys.database=" + dir + "/keys.db",
       "--set", "kafka.bootstrap_servers=" + kafka.bootstrap_servers(), "--set", "admin.port=0",
       "--set", "log.level=warn"},
      dir + "/receiver.log");
  const auto receiver_port = read_port(dir + "/receiver.port");
  test::ChildProcess sim({test::binary("sim/klarna-sim"),
                          "--port",
                          "0",
                          "--port-file",
                          dir + "/sim.port",
                          "--webhook-url",
                          "http://127.0.0.1:" + std::to_string(receiver_port) + "/webhooks/klarna",
                          "--signing-key-id",
                          kKeyId,
                          "--signing-key-file",
                          dir + "/secret",
                          "--set",
                          "sim.api_key_file=" + dir + "/api-key",
                          "--set",
                          "sim.log_level=warn",
                          "--set",
                          "sim.tls=true",
                          "--set",
                          "sim.tls_certificate=" + cert.certificate,
                          "--set",
                          "sim.tls_private_key=" + cert.private_key,
                          "--set",
                          R"(webhooks.event_types=["payment.request.state-change.completed"])",
                          "--set",
                          "webhooks.workers=8",
                          "--set",
                          "sim.threads=2"},
                         dir + "/sim.log");
  const auto sim_port = read_port(dir + "/sim.port");
  std::string store_config = "[processor]\ndatabase = \"" + dir + "/state.db\"\n";
#ifdef KPAY_LOOP_BENCH_POSTGRES
  std::optional<test::PostgresServer> pg;
  if (store == "postgresql") {
    pg.emplace();
    bench::make_durable(*pg);
    storage::PostgresSettings schema;
    schema.dsn = pg->dsn();
    storage::open_postgres_store(schema);  // the schema, before the processors
    store_config = "dsn = \"" + pg->dsn() + "\"\n[processor]\nstore = \"postgresql\"\n";
  }
#else
  if (store == "postgresql") {
    std::fprintf(stderr, "built without PostgreSQL support (no tests/support)\n");
    return 2;
  }
#endif
  for (int i = 1; i <= processors; ++i) {
    std::ofstream cfg(dir + "/processor" + std::to_string(i) + ".toml");
    if (store == "postgresql") cfg << "[postgresql]\ninstance = \"p" << i << "\"\n";  // then dsn
    cfg << store_config << "batch_size = 500\n"
        << "batch_timeout_ms = 5\n[kafka]\nbootstrap_servers = \"" << kafka.bootstrap_servers()
        << "\"\n[klarna]\nenvironment = \"custom\"\nbase_url = \"https://127.0.0.1:" << sim_port
        << "\"\nca_file = \"" << cert.certificate << "\"\ncredentials_file = \"" << dir
        << "/api-key\"\n"
        << "[capture]\ndefault = \"on_command\"\n[admin]\nport = 0\n[log]\nlevel = \"warn\"\n"
        << "[kafka.properties]\n\"fetch.wait.max.ms\" = \"10\"\n";
  }
  std::vector<std::unique_ptr<test::ChildProcess>> running;
  for (int i = 1; i <= processors; ++i) {
    const std::string n = std::to_string(i);
    running.push_back(std::make_unique<test::ChildProcess>(
        std::vector<std::string>{test::binary("processor/klarna-processor"), "--config",
                                 dir + "/processor" + n + ".toml"},
        dir + "/processor" + n + ".log"));
  }
  // The group join (~3 s on the mock; more while several join).
  std::this_thread::sleep_for(std::chrono::seconds(5 + 2 * (processors - 1)));
  if (latency_ms > 0) {
    auto faults = test::http_request(
        sim_port, "POST", "/_sim/faults",
        R"({"rules":["payment.authorize:latency:100:)" + std::to_string(latency_ms) + "\"]}", {},
        true);
    if (!faults || faults->status != 200) {
      std::fprintf(stderr, "the sim refused the latency rule\n");
      return 1;
    }
  }

  const auto body = R"({"journeys":)" + std::to_string(payments) + R"(,"rate":)" +
                    std::to_string(rate) + R"(,"mix":["approve"],"versions":["v2"]})";
  test::http_request(sim_port, "POST", "/_sim/scenarios", body, {}, /*tls=*/true);
  const auto started = std::chrono::steady_clock::now();
  std::map<std::string, std::int64_t> calls;
  test::wait_until(
      [&] {
        calls = authorized_at(sim_port);
        return static_cast<int>(calls.size()) >= payments;
      },
      std::chrono::seconds(120));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  const auto delivered = completed_at(sim_port);
  std::vector<std::int64_t> latencies;
  for (const auto& [reference, at] : calls) {
    if (auto it = delivered.find(reference); it != delivered.end()) {
      latencies.push_back(at - it->second);
    }
  }
  // Valid only when every payment made its call and each was matched to its
  // webhook: a latency over fewer would hide the ones that never came.
  const bool valid =
      static_cast<int>(calls.size()) == payments && static_cast<int>(latencies.size()) == payments;
  if (valid) {
    std::printf(
        "loop: %s x%d, +%d ms: %d payments at %d/s: %zu final authorizations in %.1f s (%.0f "
        "calls/s); webhook 2xx -> Klarna call latency p50 %.0f ms, p99 %.0f ms, max %.0f ms (%zu "
        "measured)\n",
        store.c_str(), processors, latency_ms, payments, rate, calls.size(), seconds,
        static_cast<double>(calls.size()) / seconds, percentile(latencies, 0.5),
        percentile(latencies, 0.99), percentile(latencies, 1.0), latencies.size());
  } else {
    std::fprintf(stderr,
                 "INVALID RUN: %d payments, %zu final authorizations, %zu matched to their "
                 "webhook; no latency printed (logs in %s)\n",
                 payments, calls.size(), latencies.size(), dir.c_str());
  }
  for (auto& p : running) p->signal(SIGTERM);
  for (auto& p : running) p->wait(std::chrono::seconds(30));
  sim.signal(SIGTERM);
  sim.wait(std::chrono::seconds(10));
  receiver.signal(SIGTERM);
  receiver.wait(std::chrono::seconds(10));
  if (!valid) return 1;
  std::filesystem::remove_all(dir);
  return 0;
}
