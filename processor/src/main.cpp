// klarna-processor: wires configuration, the state store, the Kafka processor
// and the admin endpoint; the work itself lives in kpay_processor.
#include <malloc.h>
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "kpay/core/admin_server.hpp"
#include "kpay/core/build_commit.hpp"
#include "kpay/core/config.hpp"
#include "kpay/core/log.hpp"
#include "kpay/core/process.hpp"
#include "kpay/core/wall_clock.hpp"
#include "kpay/processor/audit_publisher.hpp"
#include "kpay/processor/call_deadlines.hpp"
#include "kpay/processor/command_counts.hpp"
#include "kpay/processor/consumer.hpp"
#include "kpay/processor/daemon_settings.hpp"
#include "kpay/processor/dispute_deadlines.hpp"
#include "kpay/processor/outbox_worker.hpp"
#include "kpay/processor/settlement_watch.hpp"
#include "kpay/storage/defaults.hpp"
#include "kpay/storage/open_store.hpp"
#include "kpay/storage/reconciliation_store.hpp"

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
// Captures and refunds no settlement report named within the grace period:
// each found once, logged and published on klarna.reconciliation; open
// findings that no longer hold resolved, logged and published too.
void check_settlements(processor::SettlementWatch& settlements, processor::Processor& processor,
                       const core::Logger& log) {
  try {
    auto check = settlements.check(core::now_ms());
    for (const auto& f : check.found) {
      log.warn("settlement finding",
               {{"kind", f.kind}, {"subject", f.subject}, {"detail", f.detail}});
    }
    for (const auto& f : check.resolved) {
      log.info("settlement finding resolved", {{"kind", f.kind}, {"subject", f.subject}});
    }
    processor.publish_later(std::move(check.publications));
  } catch (const std::exception& e) {
    log.error("settlement check failed; retried next interval", {{"error", e.what()}});
  }
}

// Between checks: the settlement watch's job kept (several processors on
// PostgreSQL), so that its figures stay with one processor.
void hold_settlement_watch(processor::SettlementWatch& settlements, const core::Logger& log) {
  try {
    settlements.hold();
  } catch (const std::exception& e) {
    log.error("settlement watch cannot renew its job; retried next turn", {{"error", e.what()}});
  }
}

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
                {"operation", std::string(storage::to_string(row.operation))},
                {"entity_id", row.entity_id},
                {"status", std::string(storage::to_string(row.status))},
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

// SIGHUP: the credentials file, CA file and mTLS certificate and key read
// anew; calls in flight finish with the old ones. A file that cannot be used
// is refused and the old credentials kept.
void reload_klarna_credentials(klarna::ApiClient& client, const core::Logger& log) {
  std::string error;
  if (client.reload(error)) {
    log.info("Klarna credentials reloaded; calls in flight finish with the previous ones");
  } else {
    log.error("Klarna credentials reload refused; keeping the previous ones", {{"error", error}});
  }
}

// When the credentials in use were loaded and when the client certificate
// expires (mTLS), for the rotation alerts (config/alerts/kpay-commands.rules.yml).
void register_credential_metrics(core::Registry& registry, const klarna::ApiClient* client) {
  registry.gauge_callback(
      "kpay_processor_klarna_credentials_loaded_timestamp_seconds",
      "Unix time the Klarna API credentials in use were loaded (start or SIGHUP).", {}, [client] {
        return std::vector<core::GaugeSample>{
            {{}, static_cast<double>(client->credentials_loaded_at_ms()) / 1000}};
      });
  registry.gauge_callback(
      "kpay_processor_klarna_client_certificate_expiry_timestamp_seconds",
      "Unix time the mTLS client certificate in use expires (absent without mTLS).", {}, [client] {
        std::vector<core::GaugeSample> out;
        if (auto at = client->client_certificate_not_after_ms()) {
          out.push_back({{}, static_cast<double>(*at) / 1000});
        }
        return out;
      });
}

// Several processors on one database: renews this processor's claims on the
// publications it has not seen acknowledged yet, and publishes those of a
// processor whose claims ran out (it died before Kafka acknowledged them).
void take_over_publications(storage::Store& store, processor::Processor& processor,
                            const core::Logger& log) {
  try {
    auto rows = store.take_over_publications();
    if (rows.empty()) return;
    log.info("publishing the queued messages of a processor whose claims ran out",
             {{"messages", rows.size()}});
    processor.publish_later(std::move(rows));
  } catch (const std::exception& e) {
    log.error("publish queue take-over failed; retried next interval", {{"error", e.what()}});
  }
}

// New audit events onto the audit topic (through the publish queue).
void publish_audit(processor::AuditPublisher& audit, processor::Processor& processor,
                   const core::Logger& log) {
  try {
    auto rows = audit.take();
    if (!rows.empty()) processor.publish_later(std::move(rows));
  } catch (const std::exception& e) {
    log.error("audit publication failed; retried next turn", {{"error", e.what()}});
  }
}

// The outbox worker: its own connection and thread, calling Klarna and
// publishing what it learns through the processor's queue. Declared after
// the processor it publishes through, so it stops first.
struct Worker {
  std::unique_ptr<storage::Store> store;
  std::unique_ptr<klarna::ApiClient> client;
  std::unique_ptr<processor::OutboxWorker> worker;
};

void make_worker(Worker& w, const processor::DaemonSettings& s, core::Registry& registry,
                 processor::Processor& processor, const core::Logger& log) {
  if (!s.worker.enabled) {
    log.warn("outbox worker off (worker.enabled = false): no Klarna call is made");
    return;
  }
  w.store = processor::open_state_store(s, {.read_only = false, .cache_mib = 8});
  w.client = std::make_unique<klarna::ApiClient>(s.client);
  w.worker = std::make_unique<processor::OutboxWorker>(
      s.worker, *w.store, *w.client, registry, [&processor](std::vector<storage::PublishRow> rows) {
        processor.publish_later(std::move(rows));
      });
  processor.on_batch_committed([worker = w.worker.get()] { worker->wake(); });
  register_credential_metrics(registry, w.client.get());
  log.info("outbox worker on",
           {{"klarna", s.client.environment == klarna::Environment::custom
                           ? s.client.base_url
                           : std::string(klarna::environment_name(s.client.environment))},
            {"concurrency", s.worker.concurrency}});
}

// The main thread until the consume loop ends: signals, deadline checks and
// the watchdog. The worker is stopped first on SIGTERM, so its last answers
// are recorded and published while the producer still runs.
void supervise(const std::atomic<bool>& finished, std::atomic<bool>& stop,
               processor::Processor& processor, processor::OutboxWorker* worker,
               const processor::DaemonSettings& s,
               processor::DisputeDeadlineWatcher& dispute_deadlines,
               processor::CallDeadlineWatch& call_deadlines, processor::AuditPublisher* audit,
               klarna::ApiClient* client, processor::SettlementWatch* settlements,
               storage::Store& main_store, const core::Logger& log) {
  // Jobs and publish-queue claims (several processors on PostgreSQL) are
  // renewed at least three times per lease.
  const auto lease_turn = std::clamp(
      std::chrono::duration_cast<std::chrono::milliseconds>(s.postgresql.claim_lease / 3),
      std::chrono::milliseconds(500), std::chrono::milliseconds(10000));
  auto watchdog = core::watchdog_interval();
  bool watchdog_withheld = false;  // one log line per stall, not one per turn
  auto next_deadline_check = std::chrono::steady_clock::now();
  // The settlement watch's job is renewed each lease turn; the processor
  // holding it checks every check interval.
  auto next_settlement_turn = std::chrono::steady_clock::now();
  auto next_settlement_check = next_settlement_turn;
  while (!finished.load()) {
    auto timeout = watchdog ? std::chrono::duration_cast<std::chrono::milliseconds>(*watchdog)
                            : std::chrono::milliseconds(500);
    auto sig = core::wait_for_signal(std::min(timeout, std::chrono::milliseconds(500)));
    if (sig && (*sig == SIGTERM || *sig == SIGINT)) {
      log.info("stopping: finishing the current batch", {{"signal", *sig}});
      core::notify_stopping();
      if (worker) worker->stop(s.worker.stop_timeout);  // bounded by half the flush budget
      stop = true;
    } else if (sig && *sig == SIGHUP) {
      log.info("SIGHUP: reloading the Klarna credentials and the command senders' keys");
      processor.reload_sender_keys();  // a refused file is logged, the old keys kept
      if (client) reload_klarna_credentials(*client, log);
      log.info("SIGHUP: reload done");
    }
    if (std::chrono::steady_clock::now() >= next_deadline_check) {
      next_deadline_check =
          std::chrono::steady_clock::now() + std::min(s.dispute_deadlines.interval, lease_turn);
      check_deadlines(dispute_deadlines, call_deadlines, processor, log);
      take_over_publications(main_store, processor, log);
    }
    if (settlements && std::chrono::steady_clock::now() >= next_settlement_turn) {
      const auto now = std::chrono::steady_clock::now();
      const auto interval = s.worker.follow_ups.settlements.check_interval;
      next_settlement_turn = now + std::min(interval, lease_turn);
      if (now >= next_settlement_check) {
        next_settlement_check = now + interval;
        check_settlements(*settlements, processor, log);
      } else {
        hold_settlement_watch(*settlements, log);
      }
    }
    if (audit) publish_audit(*audit, processor, log);
    feed_watchdog(processor.heartbeat(), watchdog, stop.load(), watchdog_withheld, log);
  }
}

// Runs the daemon with settings already checked; its exit code.
int run(processor::DaemonSettings s, const core::Logger& log) {
  auto store = processor::open_state_store(s, {.read_only = false, .cache_mib = s.cache_mib});
  core::Registry registry;
  core::register_build_info(registry, "klarna-processor", KPAY_VERSION, core::build_commit());
  processor::Processor processor(s.processor, *store, registry);
  Worker worker;
  make_worker(worker, s, registry, processor, log);
  // Deadlines are state: watched on the main thread, each with a connection
  // of its own; declared before the admin server whose scrapes read them.
  auto dispute_deadline_store =
      processor::open_state_store(s, {.read_only = false, .cache_mib = 2});
  processor::DisputeDeadlineWatcher dispute_deadlines(*dispute_deadline_store, s.dispute_deadlines);
  dispute_deadlines.register_metrics(registry);
  auto call_deadline_store = processor::open_state_store(s, {.read_only = true, .cache_mib = 2});
  processor::CallDeadlineWatch call_deadlines(*call_deadline_store, s.call_warning_window);
  call_deadlines.register_metrics(registry);
  auto settlement_store = processor::open_state_store(s, {.read_only = false, .cache_mib = 2});
  std::optional<processor::SettlementWatch> settlements;
  if (settlement_store->settlement_ledger() != nullptr) {
    settlements.emplace(*settlement_store, s.worker.follow_ups.settlements.grace,
                        s.worker.topics.reconciliation);
    settlements->register_metrics(registry);
  }
  auto command_count_store = processor::open_state_store(s, {.read_only = true, .cache_mib = 2});
  processor::CommandCounts command_counts(*command_count_store);
  command_counts.register_metrics(registry);
  // Declared after the processor: stopped first, so a scrape never sees a
  // destroyed consumer.
  core::AdminServer admin(registry, [&processor, &worker] {
    auto r = processor.readiness();
    if (r.ready && worker.worker && !worker.worker->healthy()) {
      return core::Readiness{false, "outbox worker cannot use the state store"};
    }
    return r;
  });
  auto port = admin.start(s.admin_host, s.admin_port);
  log.info("admin endpoint listening",
           {{"address", s.admin_host}, {"port", static_cast<unsigned>(port)}});

  std::unique_ptr<storage::Store> audit_store;
  std::optional<processor::AuditPublisher> audit;
  if (s.processor.commands && !s.processor.commands->audit_topic.empty()) {
    audit_store = processor::open_state_store(s, {.read_only = false, .cache_mib = 2});
    audit.emplace(*audit_store, s.processor.commands->audit_topic);
  }
  std::atomic<bool> stop{false};
  std::atomic<bool> finished{false};
  bool ok = true;
  if (worker.worker) worker.worker->start();
  std::thread consumer_thread([&] {
    ok = processor.run(stop);
    finished = true;
  });
  core::notify_ready();
  supervise(finished, stop, processor, worker.worker.get(), s, dispute_deadlines, call_deadlines,
            audit ? &*audit : nullptr, worker.client.get(), settlements ? &*settlements : nullptr,
            *dispute_deadline_store, log);
  consumer_thread.join();
  if (worker.worker) worker.worker->stop(std::chrono::milliseconds(0));
  admin.stop();
  log.info("stopped", {{"clean", ok}});
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  // Before any thread exists, so librdkafka's and the admin server's threads
  // inherit the mask and signals arrive only through wait_for_signal().
  core::block_termination_signals();
  // Before any store is opened (open_store.hpp).
  storage::configure_process();
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
  processor::DaemonSettings settings;
  try {
    std::optional<std::filesystem::path> file;
    if (config_file) file = *config_file;
    auto config = core::load_config(file, overrides);
    settings = processor::daemon_settings_from_config(config);
    core::set_log_level(settings.log_level);
    processor::check_daemon_settings(config, settings);
  } catch (const core::ConfigError& e) {
    std::cerr << "klarna-processor: configuration error: " << e.what() << "\n";
    return 2;
  }

  try {
    return run(std::move(settings), log);
  } catch (const storage::SchemaTooNewError& e) {
    log.error("refusing the database", {{"error", e.what()}});
    std::cerr << "klarna-processor: " << e.what() << "\n";
    return 1;
  } catch (const core::ConfigError& e) {  // e.g. a sender key file others may read
    std::cerr << "klarna-processor: configuration error: " << e.what() << "\n";
    return 2;
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
