// klarnactl top: a live view of the running system for an operator (and for
// `make run`). Every --interval it reads the daemons' /readyz and /metrics and
// the processor's database (read-only), and shows payments per state,
// webhooks/s, Klarna calls and their outcomes per kind, commands, anything
// failed or overdue, dead letters. On a terminal it redraws in place; else it
// prints one plain line per interval. SIGINT/SIGTERM (or --duration) end it
// with a summary of the run; the exit code is then 0.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "klarnactl.hpp"
#include "kpay/core/log.hpp"
#include "kpay/core/process.hpp"
#include "live.hpp"

namespace kpay::ctl {

namespace {

using live::Figures;
using live::Snapshot;
using Rows = std::vector<storage::CountRow>;

const std::string kRequests = "kpay_receiver_requests_total";
const std::string kCalls = "kpay_processor_klarna_calls_total";
const std::vector<std::string> kOutcomes = {"succeeded", "retry", "failed", "conflict"};

std::string num(double v) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(0) << v;
  return o.str();
}
std::string rate(double v) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(1) << v << "/s";
  return o.str();
}
double seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}
std::string state_word(const live::Probe& p) {
  if (!p.reachable) return "UNREACHABLE";
  return p.ready ? "ready" : "NOT READY (" + p.reason + ")";
}

// What changed between two snapshots of the same counters (a restarted
// daemon starts from 0 again: then the later value is all that is known).
double delta(double later, double earlier) {
  return later >= earlier ? later - earlier : later;
}

struct Run {
  Snapshot first, previous;
  bool has_previous = false;
};

double webhooks(const Snapshot& s) {
  return live::sum(s.receiver.metrics, kRequests);
}

double webhook_rate(const Run& run, const Snapshot& now) {
  if (!run.has_previous) return 0;
  const double dt = seconds(now.at - run.previous.at);
  return dt > 0 ? delta(webhooks(now), webhooks(run.previous)) / dt : 0;
}

// A column for `labels` at least `min` wide, with a space after the longest
// (fetch_settlement_transactions is longer than the usual column).
int label_width(const std::vector<std::string>& labels, std::size_t min) {
  std::size_t w = min;
  for (const auto& l : labels) w = std::max(w, l.size() + 1);
  return static_cast<int>(w);
}

std::int64_t count_of(const Rows& rows, const std::string& group, const std::string& status) {
  std::int64_t n = 0;
  for (const auto& r : rows) {
    if ((group.empty() || r.group == group) && r.status == status) n += r.count;
  }
  return n;
}

// ---- the screen -----------------------------------------------------------------

void services_block(std::ostream& out, const Snapshot& s, const Figures& f, double per_s) {
  out << "SERVICES   klarna-receiver " << state_word(s.receiver) << "   klarna-processor "
      << state_word(s.processor) << "   database "
      << (s.db.overview ? "readable" : "UNREADABLE (" + s.db.error + ")") << "\n";
  out << "WEBHOOKS   " << rate(per_s) << "   accepted " << num(f.webhooks_accepted)
      << "   rejected " << num(f.webhooks_rejected) << "   unavailable "
      << num(f.webhooks_unavailable) << "   dead-lettered " << num(f.webhooks_dead_lettered)
      << "   signing keys " << (f.signing_keys < 0 ? "?" : num(f.signing_keys)) << "\n";
  out << "KAFKA      processor lag " << num(f.kafka_lag) << " messages\n\n";
}

void payments_block(std::ostream& out, const Snapshot& s, const Figures& f) {
  out << std::left << std::setw(21) << "PAYMENTS" << std::setw(24) << "STATE"
      << "COUNT\n";
  std::string last;
  for (const auto& r : s.db.overview ? s.db.overview->payments : Rows{}) {
    const bool fin = live::is_final_state(r.group, r.status);
    out << std::setw(21) << (r.group == last ? "" : r.group) << std::setw(24)
        << (r.status + (fin ? " (final)" : "")) << r.count << "\n";
    last = r.group;
  }
  out << std::setw(45) << "total" << f.payments << ", " << f.payments_final << " final\n\n";
}

void calls_block(std::ostream& out, const Snapshot& s) {
  const auto& pm = s.processor.metrics;
  const Rows db_calls = s.db.overview ? s.db.overview->calls : Rows{};
  auto kinds = live::label_values(pm, kCalls, "operation");
  for (const auto& r : db_calls) {
    if (std::find(kinds.begin(), kinds.end(), r.group) == kinds.end()) kinds.push_back(r.group);
  }
  std::sort(kinds.begin(), kinds.end());
  const int col = label_width(kinds, 23);
  out << std::left << std::setw(col) << "KLARNA CALLS" << std::right << std::setw(10) << "SUCCEEDED"
      << std::setw(10) << "RETRYING" << std::setw(8) << "FAILED" << std::setw(10) << "CONFLICT"
      << std::setw(9) << "PENDING" << std::setw(11) << "IN FLIGHT"
      << "\n";
  for (const auto& k : kinds) {
    out << std::left << std::setw(col) << k << std::right;
    const int widths[] = {10, 10, 8, 10};
    for (std::size_t i = 0; i < kOutcomes.size(); ++i) {
      out << std::setw(widths[i])
          << num(live::sum(pm, kCalls, {{"operation", k}, {"outcome", kOutcomes[i]}}));
    }
    out << std::setw(9) << count_of(db_calls, k, "pending") << std::setw(11)
        << count_of(db_calls, k, "in_flight") << "\n";
  }
  out << "\n";
}

void commands_block(std::ostream& out, const Snapshot& s) {
  const Rows rows = s.db.overview ? s.db.overview->commands : Rows{};
  out << std::left << std::setw(23) << "COMMANDS";
  const char* sep = "";
  for (const char* st : {"accepted", "rejected", "succeeded", "failed"}) {
    out << sep << st << " " << count_of(rows, "", st);
    sep = "   ";
  }
  out << "\n";
  // Refused before anything went to Klarna, since the processor started.
  const auto& pm = s.processor.metrics;
  const std::string refused = "kpay_processor_commands_refused_total";
  const double expired = live::sum(pm, refused, {{"reason", "expired"}});
  const double not_permitted = live::sum(pm, refused, {{"reason", "not_permitted"}});
  const double unauthenticated = live::sum(pm, refused) - expired - not_permitted;
  out << std::setw(23) << ""
      << "refused: expired " << num(expired) << "   not permitted " << num(not_permitted)
      << "   bad or no signature " << num(unauthenticated) << "\n";
}

void attention_block(std::ostream& out, const Figures& f) {
  out << std::left << std::setw(23) << "ATTENTION"
      << "calls overdue " << num(f.calls_overdue) << "   at risk " << num(f.calls_at_risk)
      << "   failed " << num(f.calls_failed) << "   disputes overdue " << num(f.disputes_overdue)
      << "\n";
  out << std::setw(23) << "SETTLEMENTS"
      << "open findings " << num(f.settlement_findings) << "   payouts failed "
      << num(f.payouts_failed) << " since start   (klarnactl settlements list)\n";
  out << std::setw(23) << "DEAD LETTERS"
      << "receiver " << num(f.webhooks_dead_lettered) << "   processor "
      << num(f.processor_dead_letters) << " since start, " << f.db_dead_letters << " recorded\n";
}

void draw_screen(const Run& run, const Snapshot& s, double interval_s) {
  const auto f = live::figures(s);
  std::ostringstream out;
  out << "\033[H\033[2J";
  out << "klarnactl top   " << core::rfc3339_now_ms().substr(11, 8) << " UTC   running "
      << num(seconds(s.at - run.first.at)) << " s   every " << interval_s
      << " s   Ctrl-C: summary and exit\n\n";
  services_block(out, s, f, webhook_rate(run, s));
  payments_block(out, s, f);
  calls_block(out, s);
  commands_block(out, s);
  attention_block(out, f);
  std::cout << out.str() << std::flush;
}

void plain_line(const Run& run, const Snapshot& s) {
  const auto f = live::figures(s);
  const auto& pm = s.processor.metrics;
  std::cout << core::rfc3339_now_ms() << " webhooks " << rate(webhook_rate(run, s)) << " accepted "
            << num(f.webhooks_accepted) << " | payments " << f.payments << " final "
            << f.payments_final << " | calls succeeded "
            << num(live::sum(pm, kCalls, {{"outcome", "succeeded"}})) << " retrying "
            << num(live::sum(pm, kCalls, {{"outcome", "retry"}})) << " failed "
            << num(live::sum(pm, kCalls, {{"outcome", "failed"}})) << " | commands "
            << (s.db.overview ? count_of(s.db.overview->commands, "", "succeeded") : 0)
            << " succeeded | lag " << num(f.kafka_lag) << " | overdue " << num(f.calls_overdue)
            << " failed " << num(f.calls_failed) << " | findings " << num(f.settlement_findings)
            << " | dead letters " << num(f.webhooks_dead_lettered + f.processor_dead_letters)
            << " | receiver " << (s.receiver.ready ? "ready" : "NOT READY") << " processor "
            << (s.processor.ready ? "ready" : "NOT READY") << std::endl;
}

// ---- the summary ----------------------------------------------------------------

void summary_calls(std::ostream& out, const Snapshot& a, const Snapshot& b) {
  auto kinds = live::label_values(b.processor.metrics, kCalls, "operation");
  const int col = label_width(kinds, 24) + 2;  // operations are indented by two
  auto line = [&](const std::string& label, const std::map<std::string, std::string>& match) {
    out << "  " << std::left << std::setw(col) << label;
    for (const auto& o : kOutcomes) {
      auto m = match;
      m["outcome"] = o;
      out << (o == kOutcomes.front() ? "" : "   ") << (o == "retry" ? "retried" : o) << " "
          << num(delta(live::sum(b.processor.metrics, kCalls, m),
                       live::sum(a.processor.metrics, kCalls, m)));
    }
    out << "\n";
  };
  line("klarna calls", {});
  for (const auto& k : kinds) line("  " + k, {{"operation", k}});
}

void summary_payments(std::ostream& out, const Snapshot& b, const Figures& f) {
  out << "  " << std::left << std::setw(26) << "payments" << f.payments << ", " << f.payments_final
      << " in a final state\n";
  for (const auto& r : b.db.overview ? b.db.overview->payments : Rows{}) {
    out << "    " << std::setw(24) << r.group << std::setw(24)
        << (r.status + (live::is_final_state(r.group, r.status) ? " (final)" : "")) << r.count
        << "\n";
  }
}

void print_summary(const Run& run, const Snapshot& last) {
  const auto& a = run.first;
  const auto f = live::figures(last);
  const auto f0 = live::figures(a);
  const double secs = seconds(last.at - a.at);
  const double received = delta(webhooks(last), webhooks(a));
  std::ostringstream out;
  out << "\nklarnactl top: summary of " << num(secs) << " s\n";
  out << "  " << std::left << std::setw(26) << "webhooks received" << num(received) << " ("
      << rate(secs > 0 ? received / secs : 0) << "): accepted "
      << num(delta(f.webhooks_accepted, f0.webhooks_accepted)) << ", rejected "
      << num(delta(f.webhooks_rejected, f0.webhooks_rejected)) << ", unavailable "
      << num(delta(f.webhooks_unavailable, f0.webhooks_unavailable)) << ", dead-lettered "
      << num(delta(f.webhooks_dead_lettered, f0.webhooks_dead_lettered)) << "\n";
  summary_calls(out, a, last);
  summary_payments(out, last, f);
  out << "  " << std::setw(26) << "failures"
      << "calls failed " << num(f.calls_failed) << ", overdue " << num(f.calls_overdue)
      << ", dead letters " << f.db_dead_letters << " recorded (receiver "
      << num(f.webhooks_dead_lettered) << " since start)\n";
  std::cout << out.str() << std::flush;
}

struct TopOptions {
  live::Targets targets;
  double interval_s = 1.0;
  double duration_s = 0;  // 0: until a signal
  bool plain = false;
};

void run_top(const GlobalOptions& global, const TopOptions& o) {
  const auto where = live::resolve(global, o.targets);
  const auto timeout = std::chrono::milliseconds(o.targets.timeout_ms);
  const bool screen = !o.plain && ::isatty(STDOUT_FILENO);
  core::block_termination_signals();
  const auto interval = std::chrono::milliseconds(std::llround(o.interval_s * 1000));
  const auto until = std::chrono::steady_clock::now() +
                     std::chrono::milliseconds(std::llround(o.duration_s * 1000));
  Run run;
  run.first = live::take(where, timeout);
  Snapshot now = run.first;
  for (;;) {
    screen ? draw_screen(run, now, o.interval_s) : plain_line(run, now);
    run.previous = now;
    run.has_previous = true;
    auto wait = interval;
    if (o.duration_s > 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      wait = std::min(wait, left);
    }
    if (core::wait_for_signal(wait)) break;
    now = live::take(where, timeout);
  }
  print_summary(run, live::take(where, timeout));
}

}  // namespace

void register_top_command(CLI::App& app, const GlobalOptions& global) {
  auto* cmd = app.add_subcommand(
      "top", "Live view of the running system; Ctrl-C (SIGINT/SIGTERM) prints a summary");
  static TopOptions o;
  live::add_target_options(cmd, o.targets);
  cmd->add_option("--interval", o.interval_s, "seconds between refreshes (default 1)")
      ->check(CLI::Range(0.1, 3600.0));
  cmd->add_option("--duration", o.duration_s, "stop after this many seconds with the summary")
      ->check(CLI::Range(0.0, 7 * 24 * 3600.0));
  cmd->add_flag("--plain", o.plain, "one line per interval even on a terminal");
  cmd->callback([&global] { run_top(global, o); });
}

}  // namespace kpay::ctl
