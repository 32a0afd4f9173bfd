// What `klarnactl status` and `klarnactl top` read from the RUNNING system:
// each daemon's admin endpoint (/readyz, /metrics over plain HTTP on
// admin.listen_address:admin.port) and the processor's database, read-only.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "klarnactl.hpp"
#include "kpay/storage/postgres.hpp"
#include "kpay/storage/rows.hpp"

namespace kpay::ctl::live {

// One sample of the Prometheus text format: name{labels} value.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};
using Metrics = std::vector<Sample>;

// Parses the text exposition format (0.0.4); comment and malformed lines are
// skipped, never fatal.
Metrics parse_prometheus(const std::string& text);
// The sum of every sample named `name` whose labels include `match`.
double sum(const Metrics& m, const std::string& name,
           const std::map<std::string, std::string>& match = {});
// The distinct values of `label` among the samples named `name`, sorted.
std::vector<std::string> label_values(const Metrics& m, const std::string& name,
                                      const std::string& label);

// Where a daemon's admin endpoint is.
struct Endpoint {
  std::string name;  // "receiver" | "processor"
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::string url() const;
};
// "http://host:port", "host:port" or ":port"; throws core::ConfigError (exit 2).
Endpoint parse_endpoint(const std::string& name, const std::string& text);

// One look at a daemon: reachable at all, ready, why not, and its metrics.
struct Probe {
  Endpoint endpoint;
  bool reachable = false;
  bool ready = false;
  std::string reason;  // why not reachable / not ready
  Metrics metrics;
};
Probe probe(const Endpoint& e, std::chrono::milliseconds timeout);

// The processor database's counts; `error` says why they are missing.
struct Database {
  std::string path;
  std::optional<storage::Overview> overview;
  std::string error;
};
Database read_database(const std::string& path);
// The same from the processor's PostgreSQL state (processor.store =
// "postgresql"): one read-only connection per look.
Database read_database(const storage::PostgresSettings& settings);

// A payment request or transaction state no event can move any more.
bool is_final_state(const std::string& kind, const std::string& state);

// The options status and top share, and what they resolve to.
struct Targets {
  std::optional<std::string> receiver_config, processor_config;
  std::optional<std::string> receiver_admin, processor_admin;
  std::optional<std::string> database;
  int timeout_ms = 2000;
};
void add_target_options(CLI::App* cmd, Targets& t);
struct Resolved {
  Endpoint receiver, processor;
  std::string database;
  // Set when the processor's configuration says processor.store =
  // "postgresql" and no --database names a SQLite file: read from there.
  std::optional<storage::PostgresSettings> postgresql;
};
// The processor's settings come from --processor-config, else the global
// --config/--set; the receiver's from --receiver-config; an explicit
// --*-admin URL wins over both; --database (a SQLite file) over the
// configuration's store. Throws core::ConfigError (exit 2).
Resolved resolve(const GlobalOptions& g, const Targets& t);

// Everything at one moment.
struct Snapshot {
  std::chrono::steady_clock::time_point at;
  Probe receiver, processor;
  Database db;
};
Snapshot take(const Resolved& r, std::chrono::milliseconds timeout);

// Figures derived from a snapshot (metrics names: kpay_receiver_*, kpay_processor_*).
struct Figures {
  double webhooks_accepted = 0, webhooks_rejected = 0, webhooks_unavailable = 0,
         webhooks_dead_lettered = 0;
  double signing_keys = -1;  // -1: unknown
  double kafka_lag = 0;
  double calls_overdue = 0, calls_failed = 0, calls_at_risk = 0;
  double processor_dead_letters = 0;  // poison messages since the processor started
  double disputes_overdue = 0;
  // Settlement reconciliation: open findings, payouts failed since start.
  double settlement_findings = 0, payouts_failed = 0;
  std::int64_t payments = 0, payments_final = 0;
  std::int64_t db_dead_letters = 0;
};
Figures figures(const Snapshot& s);

}  // namespace kpay::ctl::live
