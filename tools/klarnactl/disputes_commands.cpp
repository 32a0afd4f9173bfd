// klarnactl disputes list|show|due: read-only views of the disputes in the
// processor's state store (processor.database): state, framework, outcome,
// money, every deadline with its history, and what is due within a window or
// already overdue — the same rule the processor's deadline watcher uses
// (kpay/processor/dispute_deadlines.hpp). Operations on disputes (accept loss,
// evidence, represent, appeal) come with the command pipeline.
#include <filesystem>
#include <iomanip>
#include <iostream>

#include "klarnactl.hpp"
#include "kpay/core/json_writer.hpp"
#include "kpay/core/log.hpp"
#include "kpay/processor/dispute_deadlines.hpp"
#include "kpay/processor/events.hpp"
#include "kpay/storage/state_store.hpp"

namespace kpay::ctl {

namespace {

std::unique_ptr<storage::StateStore> open_store(const GlobalOptions& g) {
  auto cfg = g.load();
  const auto path = cfg.string("processor.database", "processor.db");
  if (!std::filesystem::exists(path)) {
    throw CommandFailed("no processor database at '" + path + "' (processor.database)");
  }
  return std::make_unique<storage::StateStore>(path, /*read_only=*/true, /*cache_mib=*/8);
}

std::string when(const std::optional<std::int64_t>& ms) {
  return ms ? core::rfc3339_ms(*ms) : "-";
}
std::string text(const std::optional<std::string>& s) {
  return s ? *s : "-";
}
std::string money(const std::optional<std::int64_t>& amount,
                  const std::optional<std::string>& currency) {
  if (!amount) return "-";
  return std::to_string(*amount) + (currency ? " " + *currency : "");
}

template <class T>
void opt_field(core::JsonWriter& w, std::string_view k, const std::optional<T>& v) {
  w.key(k);
  v ? w.value(*v) : w.null();
}
void opt_time(core::JsonWriter& w, std::string_view k, const std::optional<std::int64_t>& ms) {
  opt_field(w, k, ms ? std::optional(core::rfc3339_ms(*ms)) : std::nullopt);
}

// "now" for `due`: --now (RFC 3339, e.g. simulated time) or the clock.
std::int64_t now_ms(const std::string& now) {
  if (now.empty()) return processor::DisputeDeadlineWatcher::system_now_ms();
  auto ms = processor::parse_rfc3339_ms(now);
  if (!ms) throw CommandFailed("--now is not an RFC 3339 time: " + now);
  return *ms;
}

void dispute_json(core::JsonWriter& w, const storage::DisputeRow& d) {
  w.begin_object().field("payment_dispute_id", d.id).field("framework", d.framework);
  w.field("framework_inferred", d.framework_inferred);
  opt_field(w, "state", d.state);
  w.field("state_as_of", core::rfc3339_ms(d.state_as_of_ms));
  opt_field(w, "payment_transaction_id", d.payment_transaction_id);
  opt_field(w, "payment_capture_id", d.payment_capture_id);
  opt_field(w, "reason", d.reason);
  opt_field(w, "amount", d.amount);
  opt_field(w, "currency", d.currency);
  opt_field(w, "withheld_amount", d.withheld_amount);
  opt_field(w, "returned_amount", d.returned_amount);
  opt_field(w, "fee_amount", d.fee_amount);
  opt_field(w, "outcome", d.outcome);
  opt_field(w, "outcome_detailed", d.outcome_detailed);
  opt_time(w, "closed_at", d.closed_at_ms);
  opt_time(w, "representment_expires_at", d.representment_expires_at_ms);
  opt_time(w, "arbitration_expires_at", d.arbitration_expires_at_ms);
  opt_time(w, "evidence_response_deadline_at", d.evidence_response_deadline_ms);
}

void print_row(const storage::DisputeRow& d) {
  std::cout << std::left << std::setw(32) << text(d.state) << std::setw(8) << d.framework
            << std::setw(14) << money(d.amount, d.currency) << std::setw(6) << text(d.outcome)
            << " " << d.id << "\n";
}

void list(const GlobalOptions& g, std::size_t limit, bool json) {
  auto store = open_store(g);
  for (const auto& d : store->list_disputes(limit)) {
    if (!json) {
      print_row(d);
      continue;
    }
    core::JsonWriter w;
    dispute_json(w, d);
    w.end_object();
    std::cout << w.str() << "\n";
  }
}

void history_json(core::JsonWriter& w, const std::vector<storage::DisputeDeadlineRow>& rows) {
  w.key("deadline_history").begin_array();
  for (const auto& h : rows) {
    w.begin_object().field("deadline", h.kind).field("due_at", core::rfc3339_ms(h.deadline_ms));
    w.field("as_of", core::rfc3339_ms(h.as_of_ms)).field("event_id", h.event_id);
    w.field("event_type", h.event_type).field("field", h.field).end_object();
  }
  w.end_array();
}

void print_dispute(const storage::DisputeRow& d,
                   const std::vector<storage::DisputeDeadlineRow>& deadlines) {
  std::cout << "dispute " << d.id << "\n  state: " << text(d.state) << " (" << d.framework
            << (d.framework_inferred ? ", inferred" : "") << ") as of "
            << core::rfc3339_ms(d.state_as_of_ms)
            << "\n  transaction: " << text(d.payment_transaction_id)
            << "  capture: " << text(d.payment_capture_id) << "\n  reason: " << text(d.reason)
            << "  outcome: " << text(d.outcome) << " " << text(d.outcome_detailed)
            << "  closed: " << when(d.closed_at_ms)
            << "\n  disputed: " << money(d.amount, d.currency)
            << "  withheld: " << money(d.withheld_amount, d.currency)
            << "  returned: " << money(d.returned_amount, d.currency)
            << "  fee: " << money(d.fee_amount, d.currency) << "\n  deadlines: representment "
            << when(d.representment_expires_at_ms) << "  arbitration "
            << when(d.arbitration_expires_at_ms) << "  evidence response "
            << when(d.evidence_response_deadline_ms) << "\n  deadline history (" << deadlines.size()
            << "):\n";
  for (const auto& h : deadlines) {
    std::cout << "    " << core::rfc3339_ms(h.as_of_ms) << "  " << std::left << std::setw(18)
              << h.kind << core::rfc3339_ms(h.deadline_ms) << "  " << h.field << "  "
              << h.event_type << " event_id=" << h.event_id << "\n";
  }
}

void show(const GlobalOptions& g, const std::string& id, bool json) {
  auto store = open_store(g);
  auto d = store->find_dispute(id);
  if (!d) throw CommandFailed("no dispute with id " + id);
  const auto deadlines = store->dispute_deadlines(id);
  const auto history = store->history(id);
  if (!json) {
    print_dispute(*d, deadlines);
    std::cout << "  events: " << history.size() << " (klarnactl payments show " << id
              << " for the full history)\n";
    return;
  }
  core::JsonWriter w;
  dispute_json(w, *d);
  history_json(w, deadlines);
  w.field("events", static_cast<std::int64_t>(history.size()));
  w.end_object();
  std::cout << w.str() << "\n";
}

// Deadlines the partner must meet, nearest first: overdue ones and those
// within the window. Exit 0 either way (a report, not a check).
void due(const GlobalOptions& g, std::int64_t window_hours, const std::string& now_text,
         bool json) {
  auto store = open_store(g);
  const std::int64_t now = now_ms(now_text);
  const std::int64_t window_ms = window_hours * 3'600'000;
  const auto open = store->open_disputes();
  const auto deadlines = processor::actionable_deadlines(open);
  const auto stats = processor::summarize(deadlines, now, window_ms);
  if (!json) {
    std::cout << "now " << core::rfc3339_ms(now) << ", window " << window_hours
              << " h: " << stats.due_within_window << " due, " << stats.overdue << " overdue\n";
  }
  for (const auto& d : deadlines) {
    if (d.deadline_ms >= now + window_ms) break;
    const bool overdue = d.deadline_ms < now;
    const std::int64_t left_s = (d.deadline_ms - now) / 1000;
    if (!json) {
      std::cout << (overdue ? "OVERDUE " : "due     ") << core::rfc3339_ms(d.deadline_ms) << "  "
                << std::left << std::setw(18) << d.kind << std::setw(32)
                << (d.state.empty() ? "-" : d.state) << d.dispute_id << "\n";
      continue;
    }
    core::JsonWriter w;
    w.begin_object().field("payment_dispute_id", d.dispute_id).field("deadline", d.kind);
    w.field("due_at", core::rfc3339_ms(d.deadline_ms)).field("seconds_left", left_s);
    w.field("overdue", overdue).field("state", d.state).field("framework", d.framework);
    opt_field(w, "amount", d.amount);
    opt_field(w, "currency", d.currency);
    w.end_object();
    std::cout << w.str() << "\n";
  }
}

}  // namespace

void register_disputes_commands(CLI::App& app, const GlobalOptions& global) {
  auto* disputes = app.add_subcommand("disputes", "Disputes and their deadlines (read-only)");
  disputes->require_subcommand(1);

  auto* ls = disputes->add_subcommand("list", "Disputes, newest state first");
  auto limit = std::make_shared<std::size_t>(50);
  auto list_json = std::make_shared<bool>(false);
  ls->add_option("--limit", *limit, "At most this many rows")->capture_default_str();
  ls->add_flag("--json", *list_json, "One JSON object per line");
  ls->callback([&global, limit, list_json] { list(global, *limit, *list_json); });

  auto* sh = disputes->add_subcommand("show", "One dispute: money, outcome, deadline history");
  auto id = std::make_shared<std::string>();
  auto show_json = std::make_shared<bool>(false);
  sh->add_option("ID", *id, "payment_dispute_id")->required();
  sh->add_flag("--json", *show_json, "Print one JSON document");
  sh->callback([&global, id, show_json] { show(global, *id, *show_json); });

  auto* du = disputes->add_subcommand(
      "due", "Deadlines to meet within the window, and overdue ones (nearest first)");
  auto hours = std::make_shared<std::int64_t>(48);
  auto now = std::make_shared<std::string>();
  auto due_json = std::make_shared<bool>(false);
  du->add_option("--window-hours", *hours, "How far ahead counts as due")
      ->check(CLI::Range(1, 720))
      ->capture_default_str();
  du->add_option("--now", *now, "Evaluate at this RFC 3339 time (default: the clock)");
  du->add_flag("--json", *due_json, "One JSON object per line");
  du->callback([&global, hours, now, due_json] { due(global, *hours, *now, *due_json); });
}

}  // namespace kpay::ctl
