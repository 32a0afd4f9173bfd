// klarna-processor: wires configuration, the state store, the Kafka processor
// and the admin endpoint; the work itself lives in kpay_processor.
#include <malloc.h>
#include <sqlite3.h>
#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <memory>
#include <mutex>
#include <thread>

#include "kpay/core/admin_server.hpp"
#include "kpay/core/build_commit.hpp"
#include "kpay/core/config.hpp"
#include "kpay/core/log.hpp"
#include "kpay/core/process.hpp"
#include "kpay/processor/call_deadlines.hpp"
#include "kpay/processor/consumer.hpp"
#include "kpay/processor/dispute_deadlines.hpp"
#include "kpay/processor/outbox_worker.hpp"
#include "kpay/storage/defaults.hpp"
#include "kpay/storage/migrations.hpp"
#include "kpay/storage/state_store.hpp"

using namespace kpay;

// Read by jemalloc (linked in non-sanitizer builds) at start-up. One arena:
// one thread does the work, and librdkafka's dozen threads would otherwise
// each hold an arena's worth of freed pages; those go back to the OS within a
// second. Measured: peak RSS 103-122 MiB → 92-97 MiB at batch_size 5000, with
// no loss of throughput (docs/PERFORMANCE.md).
extern "C" {
const char* malloc_conf = "narenas:1,dirty_decay_ms:1000,muzzy_decay_ms:0";
}

namespace {

// One line per dispute deadline and per Klarna call that entered its warning
// window or passed; dispute warnings also go to klarna.payment-states.
void check_deadlines(processor::DisputeDeadlineWatcher& disputes,
                     processor::CallDeadlineWatch& calls, processor::Processor& processor,
                     const core::Logger& log) {
  try {
    auto check = disputes.check();  // one transaction; rows already in publish_queue
    for (const auto& w : check.warnings) {
      log.warn(w.stage == "passed" ? "dispute deadline passed"
                                   : "dispute deadline within the warning window",
               {{"dispute_id", w.deadline.dispute_id},
                {"deadline", w.deadline.kind},
                {"due_at", core::rfc3339_ms(w.deadline.deadline_ms)},
                {"state", w.deadline.state},
                {"seconds_left", w.seconds_left}});
    }
    processor.publish_later(std::move(check.publications));
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    for (const auto& row : calls.check(now)) {
      const bool passed = *row.due_by_ms < now;
      log.warn(passed ? "Klarna call deadline passed" : "Klarna call deadline within the window",
               {{"outbox_id", row.id},
                {"operation", row.operation},
                {"entity_id", row.entity_id},
                {"status", row.status},
                {"due_at", core::rfc3339_ms(*row.due_by_ms)},
                {"seconds_left", (*row.due_by_ms - now) / 1000}});
    }
  } catch (const std::exception& e) {
    log.error("deadline check failed; retried next interval", {{"error", e.what()}});
  }
}

// WATCHDOG=1 only while the consume loop beats (progress, or nothing to
// do): a loop held by an endless retry or a bug must not look healthy to
// systemd. A beat at most one feeding interval (WatchdogSec/2) old counts,
// so a stuck loop is restarted within 1.5 x WatchdogSec. Once stopping,
// the stop's own deadlines and TimeoutStopSec bound it; feeding continues.
void feed_watchdog(const core::Heartbeat& heartbeat,
                   std::optional<std::chrono::microseconds> interval, bool stopping, bool& withheld,
                   const core::Logger& log) {
  if (!interval) return;
  const bool fresh = heartbeat.fresh(std::chrono::steady_clock::now(), *interval);
  if (fresh || stopping) {
    if (withheld) log.info("consume loop beating again; watchdog fed");
    withheld = false;
    core::notify_watchdog();
    return;
  }
  if (!withheld) {
    log.error("consume loop made no progress; withholding the systemd watchdog",
              {{"last_beat_ms_ago", std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::steady_clock::now() - heartbeat.last())
                                        .count()}});
  }
  withheld = true;
}

}  // namespace

int main(int argc, char** argv) {
  // Before any thread exists, so librdkafka's and the admin server's threads
  // inherit the mask and signals arrive only through wait_for_signal().
  core::block_termination_signals();
  // Before any other SQLite call: no global memory accounting (it takes a
  // process-wide mutex on every allocation); connections are per thread anyway.
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  // The same for glibc's malloc, in the sanitizer builds that do without jemalloc.
  mallopt(M_ARENA_MAX, 2);

  CLI::App app{"klarna-processor: Klarna payment events from Kafka into durable state"};
  std::optional<std::string> config_file;
  std::vector<std::string> overrides;
  app.add_option("-c,--config", config_file, "TOML configuration file");
  app.add_option("--set", overrides, "Override a configuration key: section.key=value");
  app.set_version_flag("--version", "klarna-processor " KPAY_VERSION);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  core::Logger log("processor");
  std::string database;
  int cache_mib = 32;
  std::string admin_host;
  std::uint16_t admin_port = 0;
  processor::ProcessorSettings settings;
  processor::WorkerSettings worker_settings;
  klarna::ClientSettings client_settings;
  processor::DeadlineWatchSettings dispute_deadline_settings;
  std::chrono::milliseconds call_warning_window{};
  try {
    std::optional<std::filesystem::path> file;
    if (config_file) file = *config_file;
    auto config = core::load_config(file, overrides);
    try {
      core::set_log_level(core::parse_log_level(config.string("log.level", "info")));
    } catch (const std::invalid_argument& e) {
      throw core::ConfigError("log.level", e.what());
    }
    database = config.string("processor.database", storage::kDefaultStateDatabase);
    cache_mib = static_cast<int>(config.integer("processor.sqlite_cache_mib", 32, 2, 1024));
    admin_host = config.string("admin.listen_address", "127.0.0.1");
    admin_port = static_cast<std::uint16_t>(config.integer("admin.port", 9102, 0, 65535));
    settings = processor::settings_from_config(config);
    worker_settings = processor::worker_settings_from_config(config);
    client_settings = processor::client_settings_from_config(config);
    dispute_deadline_settings =
        processor::deadline_watch_settings_from_config(config, settings.topics);
    call_warning_window = config.millis("worker.deadline_warning_ms", std::chrono::minutes(10),
                                        std::chrono::milliseconds(0), std::chrono::hours(24));
    config.reject_unknown_keys();
    if (worker_settings.enabled && client_settings.environment != klarna::Environment::custom &&
        client_settings.credentials_file.empty()) {
      throw core::ConfigError(
          "klarna.credentials_file",
          "is required to call Klarna's " +
              std::string(klarna::environment_name(client_settings.environment)) +
              " environment (or set worker.enabled = false)");
    }
    // Checked last: a mistyped key or a missing credential is reported first.
    if (const auto dir = std::filesystem::path(database).parent_path();
        !dir.empty() && !std::filesystem::is_directory(dir)) {
      throw core::ConfigError("processor.database",
                              "its directory '" + dir.string() +
                                  "' does not exist (the package's state directory; "
                                  "elsewhere set processor.database)");
    }
  } catch (const core::ConfigError& e) {
    std::cerr << "klarna-processor: configuration error: " << e.what() << "\n";
    return 2;
  }

  try {
    storage::StateStore store(database, false, cache_mib);
    core::Registry registry;
    core::register_build_info(registry, "klarna-processor", KPAY_VERSION, core::build_commit());
    processor::Processor processor(std::move(settings), store, registry);
    // The worker: its own connection, its own thread; declared after the
    // processor it publishes through, so it stops first.
    std::optional<storage::StateStore> worker_store;
    std::unique_ptr<klarna::ApiClient> client;
    std::unique_ptr<processor::OutboxWorker> worker;
    if (worker_settings.enabled) {
      worker_store.emplace(database, false, 8);
      client = std::make_unique<klarna::ApiClient>(client_settings);
      worker = std::make_unique<processor::OutboxWorker>(
          worker_settings, *worker_store, *client, registry,
          [&processor](std::vector<storage::PublishRow> rows) {
            processor.publish_later(std::move(rows));
          });
      processor.on_batch_committed([w = worker.get()] { w->wake(); });
      log.info(
          "outbox worker on",
          {{"klarna", client_settings.environment == klarna::Environment::custom
                          ? client_settings.base_url
                          : std::string(klarna::environment_name(client_settings.environment))},
           {"concurrency", worker_settings.concurrency}});
    } else {
      log.warn("outbox worker off (worker.enabled = false): no Klarna call is made");
    }
    // Deadlines are state: watched on the main thread, each with a connection
    // of its own; declared before the admin server whose scrapes read them.
    storage::StateStore dispute_deadline_store(database, false, 2);
    processor::DisputeDeadlineWatcher dispute_deadlines(dispute_deadline_store,
                                                        dispute_deadline_settings);
    dispute_deadlines.register_metrics(registry);
    storage::StateStore call_deadline_store(database, true, 2);
    processor::CallDeadlineWatch call_deadlines(call_deadline_store, call_warning_window);
    call_deadlines.register_metrics(registry);
    // Declared after the processor: stopped first, so a scrape never sees a
    // destroyed consumer.
    core::AdminServer admin(registry, [&processor, &worker] {
      auto r = processor.readiness();
      if (r.ready && worker && !worker->healthy()) {
        return core::Readiness{false, "outbox worker cannot use the state store"};
      }
      return r;
    });
    auto port = admin.start(admin_host, admin_port);
    log.info("admin endpoint listening",
             {{"address", admin_host}, {"port", static_cast<unsigned>(port)}});

    std::atomic<bool> stop{false};
    std::atomic<bool> finished{false};
    bool ok = true;
    if (worker) worker->start();
    std::thread consumer_thread([&] {
      ok = processor.run(stop);
      finished = true;
    });
    core::notify_ready();
    auto watchdog = core::watchdog_interval();
    bool watchdog_withheld = false;  // one log line per stall, not one per turn
    auto next_deadline_check = std::chrono::steady_clock::now();
    while (!finished.load()) {
      auto timeout = watchdog ? std::chrono::duration_cast<std::chrono::milliseconds>(*watchdog)
                              : std::chrono::milliseconds(500);
      auto sig = core::wait_for_signal(std::min(timeout, std::chrono::milliseconds(500)));
      if (sig && (*sig == SIGTERM || *sig == SIGINT)) {
        log.info("stopping: finishing the current batch", {{"signal", *sig}});
        core::notify_stopping();
        // The worker first, so its last answers are recorded and published
        // while the producer still runs; bounded by half the flush budget.
        if (worker) worker->stop(worker_settings.stop_timeout);
        stop = true;
      } else if (sig && *sig == SIGHUP) {
        log.info("SIGHUP: nothing to reload in the processor");
      }
      if (std::chrono::steady_clock::now() >= next_deadline_check) {
        next_deadline_check =
            std::chrono::steady_clock::now() +
            std::min(dispute_deadline_settings.interval, std::chrono::milliseconds(10000));
        check_deadlines(dispute_deadlines, call_deadlines, processor, log);
      }
      feed_watchdog(processor.heartbeat(), watchdog, stop.load(), watchdog_withheld, log);
    }
    consumer_thread.join();
    if (worker) worker->stop(std::chrono::milliseconds(0));
    admin.stop();
    log.info("stopped", {{"clean", ok}});
    return ok ? 0 : 1;
  } catch (const storage::SchemaTooNewError& e) {
    log.error("refusing the database", {{"error", e.what()}});
    std::cerr << "klarna-processor: " << e.what() << "\n";
    return 1;
  } catch (const klarna::ClientConfigError& e) {
    std::cerr << "klarna-processor: configuration error: " << e.what() << "\n";
    return 2;
  } catch (const core::KafkaConfigError& e) {
    std::cerr << "klarna-processor: configuration error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    log.error("start-up failed", {{"error", e.what()}});
    std::cerr << "klarna-processor: " << e.what() << "\n";
    return 1;
  }
}
