// klarnactl status: is the running system healthy? Each daemon's /readyz and
// /metrics (admin endpoint) and the processor's database, read-only: readiness,
// signing keys, Kafka lag, overdue and failed Klarna calls, dead letters.
// Exit 0 when every daemon is ready, 1 when one is not (or cannot be reached,
// or the database cannot be read), 2 on usage or configuration errors.
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>

#include "klarnactl.hpp"
#include "kpay/core/json_writer.hpp"
#include "live.hpp"

namespace kpay::ctl {

namespace {

using live::Figures;
using live::Probe;
using live::Snapshot;

std::string state_word(const Probe& p) {
  if (!p.reachable) return "UNREACHABLE";
  return p.ready ? "ready" : "NOT READY";
}

std::string num(double v) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(0) << v;
  return o.str();
}

void heading(const std::string& name, const std::string& state, const std::string& where,
             const std::string& reason) {
  std::cout << std::left << std::setw(19) << name << std::setw(13) << state << where;
  if (!reason.empty()) std::cout << "  (" << reason << ")";
  std::cout << "\n";
}

void line(const std::string& label, const std::string& value) {
  std::cout << "  " << std::left << std::setw(24) << label << value << "\n";
}

std::string by_status(const std::vector<storage::CountRow>& rows) {
  std::map<std::string, std::int64_t> per;
  std::int64_t total = 0;
  for (const auto& r : rows) {
    per[r.status] += r.count;
    total += r.count;
  }
  std::string out = std::to_string(total);
  const char* sep = ": ";
  for (const auto& [status, n] : per) {
    out += sep + status + " " + std::to_string(n);
    sep = ", ";
  }
  return out;
}

void print_human(const Snapshot& s, const Figures& f) {
  heading("klarna-receiver", state_word(s.receiver), s.receiver.endpoint.url(), s.receiver.reason);
  if (s.receiver.reachable) {
    line("signing keys", f.signing_keys < 0 ? "unknown" : num(f.signing_keys));
    line("webhooks accepted", num(f.webhooks_accepted) + "   rejected " + num(f.webhooks_rejected) +
                                  "   unavailable " + num(f.webhooks_unavailable));
    line("dead-lettered", num(f.webhooks_dead_lettered) + " since start");
  }
  heading("klarna-processor", state_word(s.processor), s.processor.endpoint.url(),
          s.processor.reason);
  if (s.processor.reachable) {
    line("kafka lag", num(f.kafka_lag) + " messages");
    line("calls overdue", num(f.calls_overdue) + "   at risk " + num(f.calls_at_risk) +
                              "   failed " + num(f.calls_failed));
    line("dead letters", num(f.processor_dead_letters) + " since start");
  }
  heading("database", s.db.overview ? "readable" : "UNREADABLE", s.db.path, s.db.error);
  if (s.db.overview) {
    line("payments", std::to_string(f.payments) + ", " + std::to_string(f.payments_final) +
                         " in a final state");
    line("klarna calls", by_status(s.db.overview->calls));
    line("commands", by_status(s.db.overview->commands));
    line("dead letters", std::to_string(f.db_dead_letters) + " recorded");
  }
}

void probe_json(core::JsonWriter& w, const Probe& p) {
  w.field("endpoint", p.endpoint.url()).field("reachable", p.reachable).field("ready", p.ready);
  if (!p.reason.empty()) w.field("reason", p.reason);
}

void counts_json(core::JsonWriter& w, const std::string& key, const std::string& group,
                 const std::string& status, const std::vector<storage::CountRow>& rows) {
  w.key(key).begin_array();
  for (const auto& r : rows) {
    w.begin_object().field(group, r.group).field(status, r.status).field("count", r.count);
    w.end_object();
  }
  w.end_array();
}

void database_json(core::JsonWriter& w, const Snapshot& s, const Figures& f) {
  w.key("database").begin_object().field("path", s.db.path);
  w.field("readable", s.db.overview.has_value());
  if (!s.db.error.empty()) w.field("error", s.db.error);
  if (s.db.overview) {
    w.field("payments", f.payments).field("payments_final", f.payments_final);
    counts_json(w, "payments_by_state", "kind", "state", s.db.overview->payments);
    counts_json(w, "calls", "operation", "status", s.db.overview->calls);
    counts_json(w, "commands", "type", "status", s.db.overview->commands);
    w.field("dead_letters", f.db_dead_letters);
  }
  w.end_object();
}

void print_json(const Snapshot& s, const Figures& f, const std::vector<std::string>& problems) {
  core::JsonWriter w;
  w.begin_object().field("ready", problems.empty());
  w.key("problems").begin_array();
  for (const auto& p : problems) w.value(p);
  w.end_array();
  w.key("receiver").begin_object();
  probe_json(w, s.receiver);
  if (s.receiver.reachable) {
    w.key("signing_keys");
    f.signing_keys < 0 ? w.null() : w.value(f.signing_keys);
    w.field("webhooks_accepted", f.webhooks_accepted)
        .field("webhooks_rejected", f.webhooks_rejected)
        .field("webhooks_unavailable", f.webhooks_unavailable)
        .field("webhooks_dead_lettered", f.webhooks_dead_lettered);
  }
  w.end_object().key("processor").begin_object();
  probe_json(w, s.processor);
  if (s.processor.reachable) {
    w.field("kafka_lag", f.kafka_lag).field("calls_overdue", f.calls_overdue);
    w.field("calls_at_risk", f.calls_at_risk).field("calls_failed", f.calls_failed);
    w.field("dead_letters", f.processor_dead_letters);
  }
  w.end_object();
  database_json(w, s, f);
  std::cout << w.end_object().take() << "\n";
}

std::vector<std::string> problems_of(const Snapshot& s) {
  std::vector<std::string> out;
  for (const auto* p : {&s.receiver, &s.processor}) {
    if (!p->ready) out.push_back("klarna-" + p->endpoint.name + ": " + p->reason);
  }
  if (!s.db.overview) out.push_back("database: " + s.db.error);
  return out;
}

}  // namespace

void register_status_command(CLI::App& app, const GlobalOptions& global) {
  auto* cmd = app.add_subcommand(
      "status",
      "Readiness and key figures of the running receiver and processor (exit 1: not ready)");
  static live::Targets targets;
  static bool json = false;
  live::add_target_options(cmd, targets);
  cmd->add_flag("--json", json, "JSON output");
  cmd->callback([&global] {
    const auto where = live::resolve(global, targets);
    const auto snap = live::take(where, std::chrono::milliseconds(targets.timeout_ms));
    const auto fig = live::figures(snap);
    const auto problems = problems_of(snap);
    json ? print_json(snap, fig, problems) : print_human(snap, fig);
    if (problems.empty()) return;
    std::string msg = "not ready: ";
    for (std::size_t i = 0; i < problems.size(); ++i) msg += (i ? "; " : "") + problems[i];
    throw CommandFailed(msg);
  });
}

}  // namespace kpay::ctl
