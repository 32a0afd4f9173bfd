// klarnactl settlements list|show|reconcile|events: the settlement reports
// the processor fetched from Klarna, what reconciling them found, and what
// settlement.* webhooks carried, from the processor's state store
// (docs/KLARNACTL.md). `reconcile` checks again without changing anything:
// the processor stores and publishes findings, klarnactl only shows them.
#include <iomanip>
#include <iostream>
#include <sstream>

#include "ctl_support.hpp"
#include "klarnactl.hpp"
#include "kpay/core/json_writer.hpp"
#include "kpay/core/log.hpp"
#include "kpay/core/wall_clock.hpp"
#include "kpay/processor/follow_ups.hpp"
#include "kpay/processor/reconciler.hpp"
#include "kpay/storage/reconciliation_store.hpp"

namespace kpay::ctl {

namespace {

std::string text(const std::optional<std::string>& s) {
  return s ? *s : "-";
}
std::string number(const std::optional<std::int64_t>& v) {
  return v ? std::to_string(*v) : "-";
}

template <class T>
void maybe(core::JsonWriter& w, std::string_view k, const std::optional<T>& v) {
  w.key(k);
  v ? w.value(*v) : w.null();
}

// ---- settlement webhooks (events) ------------------------------------------------------

void print_event_json(const storage::SettlementEventRow& r) {
  core::JsonWriter w;
  w.begin_object().field("event_id", r.event_id).field("event_type", r.event_type);
  w.field("entity_id", r.entity_id).field("routed_by", r.routed_by);
  auto set = [&w](std::string_view k, const auto& v) {
    if (v) w.field(k, *v);
  };
  set("account_id", r.account_id);
  set("settlement_id", r.settlement_id);
  set("payout_id", r.payout_id);
  set("report_id", r.report_id);
  set("report_json_url", r.report_json_url);
  set("report_csv_url", r.report_csv_url);
  set("amount", r.amount);
  set("currency", r.currency);
  set("payout_date", r.payout_date);
  set("period_start", r.period_start);
  set("period_end", r.period_end);
  w.key("links").raw(r.links_json);
  w.field("occurred_at", core::rfc3339_ms(r.occurred_at_ms));
  w.end_object();
  std::cout << w.take() << "\n";
}

void print_event_text(const storage::SettlementEventRow& r) {
  std::cout << std::left << std::setw(25) << core::rfc3339_ms(r.occurred_at_ms) << " "
            << std::setw(34) << r.event_type << " " << r.entity_id << " (by " << r.routed_by << ")";
  if (r.amount) std::cout << "  " << *r.amount << " " << text(r.currency);
  if (r.payout_date) std::cout << "  payout " << *r.payout_date;
  if (r.report_json_url) std::cout << "\n    json: " << *r.report_json_url;
  if (r.report_csv_url) std::cout << "\n    csv:  " << *r.report_csv_url;
  std::cout << "\n";
}

// ---- fetched settlements ---------------------------------------------------------------

void settlement_json(core::JsonWriter& w, const storage::SettlementRow& s, std::size_t open) {
  w.begin_object().field("settlement_id", s.settlement_id).field("account_id", s.account_id);
  w.field("status", s.status);
  maybe(w, "currency", s.currency);
  maybe(w, "payment_reference", s.payment_reference);
  maybe(w, "total_sale_amount", s.total_sale_amount);
  maybe(w, "total_return_amount", s.total_return_amount);
  maybe(w, "total_chargeback_amount", s.total_chargeback_amount);
  maybe(w, "total_fee_amount", s.total_fee_amount);
  maybe(w, "total_tax_amount", s.total_tax_amount);
  maybe(w, "total_settlement_amount", s.total_settlement_amount);
  maybe(w, "payout_amount", s.payout_amount);
  maybe(w, "payout_status", s.payout_status);
  maybe(w, "payout_date", s.payout_date);
  maybe(w, "period_start", s.period_start);
  maybe(w, "period_end", s.period_end);
  w.field("lines", s.lines_booked).field("open_findings", open);
  w.field("created_at", core::rfc3339_ms(s.created_at_ms));
  w.key("reconciled_at");
  s.reconciled_at_ms ? w.value(core::rfc3339_ms(*s.reconciled_at_ms)) : w.null();
}

void finding_json(core::JsonWriter& w, const storage::FindingRow& f) {
  w.begin_object().field("finding_id", f.finding_id).field("kind", f.kind);
  maybe(w, "settlement_id", f.settlement_id);
  w.field("subject", f.subject).key("ours").raw(f.ours_json).key("theirs").raw(f.theirs_json);
  w.field("detail", f.detail).field("found_at", core::rfc3339_ms(f.found_at_ms));
  w.key("resolved_at");
  f.resolved_at_ms ? w.value(core::rfc3339_ms(*f.resolved_at_ms)) : w.null();
  w.end_object();
}

// A finding with both sides; a resolved one in one line when `brief` (what
// was missing arrived later, e.g. the dispute lost behind a chargeback).
void print_finding(const storage::FindingRow& f, std::string_view indent, bool brief = false) {
  std::cout << indent << std::left << std::setw(25) << f.kind << " " << f.subject << "  ";
  if (f.resolved_at_ms) {
    std::cout << "resolved " << core::rfc3339_ms(*f.resolved_at_ms) << " (found: " << f.detail
              << ")\n";
    if (brief) return;
  } else {
    std::cout << f.detail << "\n";
  }
  std::cout << indent << "    ours:   " << f.ours_json << "\n"
            << indent << "    theirs: " << f.theirs_json << "\n";
}

std::size_t open_count(const std::vector<storage::FindingRow>& findings) {
  std::size_t n = 0;
  for (const auto& f : findings) n += f.resolved_at_ms ? 0 : 1;
  return n;
}

void list(storage::Store& store, std::int64_t since, std::size_t limit, bool json) {
  auto& recon = storage::ledger_of(store);
  for (const auto& s : recon.settlements(since, limit)) {
    const auto open = open_count(recon.findings_of(s.settlement_id));
    if (json) {
      core::JsonWriter w;
      settlement_json(w, s, open);
      std::cout << w.end_object().take() << "\n";
      continue;
    }
    std::cout << std::left << std::setw(25) << core::rfc3339_ms(s.created_at_ms) << " "
              << s.settlement_id << "  " << std::setw(10) << s.status << " net "
              << number(s.total_settlement_amount) << " " << text(s.currency) << "  payout "
              << number(s.payout_amount) << " " << text(s.payout_status) << "  " << s.lines_booked
              << " lines  " << open << " open findings\n";
  }
}

void show(storage::Store& store, const std::string& id, bool json) {
  auto& recon = storage::ledger_of(store);
  auto s = recon.find_settlement(id);
  if (!s) throw CommandFailed("no settlement " + id + " fetched (klarnactl settlements list)");
  const auto findings = recon.findings_of(id);
  if (json) {
    core::JsonWriter w;
    settlement_json(w, *s, open_count(findings));
    w.key("findings").begin_array();
    for (const auto& f : findings) finding_json(w, f);
    std::cout << w.end_array().end_object().take() << "\n";
    return;
  }
  std::cout << "settlement " << s->settlement_id << " (" << s->status << ")\n"
            << "  account:    " << s->account_id << "\n"
            << "  period:     " << text(s->period_start) << " .. " << text(s->period_end) << "\n"
            << "  totals:     sales " << number(s->total_sale_amount) << "  returns "
            << number(s->total_return_amount) << "  chargebacks "
            << number(s->total_chargeback_amount) << "  fees " << number(s->total_fee_amount)
            << "  tax " << number(s->total_tax_amount) << "  net "
            << number(s->total_settlement_amount) << " " << text(s->currency) << "\n"
            << "  payout:     " << number(s->payout_amount) << " " << text(s->payout_status)
            << " on " << text(s->payout_date) << " (reference " << text(s->payment_reference)
            << ")\n"
            << "  lines:      " << s->lines_booked << "\n"
            << "  findings:   " << findings.size() << " (" << open_count(findings) << " open)\n";
  for (const auto& f : findings) print_finding(f, "    ");
}

// Every settlement fetched since `since` checked again, and the captures and
// refunds past the grace period that no report names, in a transaction that
// is rolled back: what is new would be found by the processor's next run.
void reconcile_rolled_back(storage::Store& store, std::chrono::milliseconds grace,
                           std::int64_t since, bool json) {
  auto& recon = storage::ledger_of(store);
  const auto now = core::now_ms();
  storage::WriteTransaction tx(store);  // never committed
  core::JsonWriter w;
  if (json) w.begin_object().key("settlements").begin_array();
  for (const auto& s : recon.settlements(since, 100000)) {
    if (s.status == "fetching") continue;
    const auto r = processor::reconcile_settlement(store, s.settlement_id, now);
    const auto stored = recon.findings_of(s.settlement_id);
    if (json) {
      w.begin_object().field("settlement_id", s.settlement_id).field("lines", r.lines);
      w.field("findings", stored.size()).field("open_findings", open_count(stored));
      w.field("new_findings", r.found.size()).end_object();
      continue;
    }
    std::cout << s.settlement_id << ": " << r.lines << " lines, " << stored.size() << " findings ("
              << open_count(stored) << " open)" << (open_count(stored) == 0 ? ", all matched" : "")
              << "\n";
    for (const auto& f : stored) print_finding(f, "  ", true);
  }
  const auto missing = processor::find_missing(store, now, grace);
  const auto unsettled = recon.unsettled_capture_amounts();
  if (json) {
    w.end_array().key("missing_in_settlement").begin_array();
    for (const auto& f : recon.findings(0, true, 100000)) {
      if (f.kind == processor::finding_kind::missing) finding_json(w, f);
    }
    w.end_array().key("unsettled_capture_amounts").begin_object();
    for (const auto& [currency, amount] : unsettled) w.field(currency, amount);
    std::cout << w.end_object().end_object().take() << "\n";
    return;
  }
  std::cout << "missing in settlements (executed over " << grace.count() / 1000
            << " s ago): " << missing.lines << "\n";
  for (const auto& f : recon.findings(0, true, 100000)) {
    if (f.kind == processor::finding_kind::missing) print_finding(f, "  ");
  }
  std::cout << "captures not settled yet:";
  for (const auto& [currency, amount] : unsettled) std::cout << " " << amount << " " << currency;
  std::cout << (unsettled.empty() ? " none\n" : "\n");
}

// std::cout written into `to` while it lives.
class CoutTo {
 public:
  explicit CoutTo(std::ostream& to) : old_(std::cout.rdbuf(to.rdbuf())) {}
  ~CoutTo() { std::cout.rdbuf(old_); }
  CoutTo(const CoutTo&) = delete;
  CoutTo& operator=(const CoutTo&) = delete;

 private:
  std::streambuf* old_;
};

// The report is printed once its transaction ended: a reader slow to take it
// (a pager) must not hold the transaction open, which the server would end
// after postgresql.idle_in_transaction_timeout_ms (docs/OPERATIONS.md).
void reconcile(storage::Store& store, std::chrono::milliseconds grace, std::int64_t since,
               bool json) {
  std::ostringstream report;
  {
    CoutTo capture(report);
    reconcile_rolled_back(store, grace, since, json);
  }
  std::cout << report.str();
}

}  // namespace

void register_settlements_commands(CLI::App& app, const GlobalOptions& global) {
  auto* settlements = app.add_subcommand(
      "settlements", "Settlement reports fetched and reconciled; settlement webhooks");
  settlements->require_subcommand(1);

  auto* ls = settlements->add_subcommand("list", "Settlements fetched, newest first");
  auto since = std::make_shared<std::string>();
  auto limit = std::make_shared<std::size_t>(50);
  auto json = std::make_shared<bool>(false);
  add_limit(ls, *limit);
  ls->add_option("--since", *since, "created at or after this RFC 3339 time");
  ls->add_flag("--json", *json, "One JSON object per line");
  ls->callback([&global, since, limit, json] {
    const auto from = since->empty() ? 0 : parse_time_option("--since", *since);
    list(*open_state_store(global, false), from, *limit, *json);
  });

  auto* sh = settlements->add_subcommand("show", "One settlement: totals, payout, findings");
  auto id = std::make_shared<std::string>();
  sh->add_option("ID", *id, "settlement_id")->required();
  sh->add_flag("--json", *json, "One JSON document");
  sh->callback([&global, id, json] { show(*open_state_store(global, false), *id, *json); });

  auto* rc = settlements->add_subcommand(
      "reconcile", "Check the fetched settlements again and list what is unsettled (read-only)");
  rc->add_option("--since", *since, "settlements created at or after this RFC 3339 time");
  rc->add_flag("--json", *json, "One JSON document");
  rc->callback([&global, since, json] {
    const auto from = since->empty() ? 0 : parse_time_option("--since", *since);
    const auto grace = processor::follow_up_settings_from_config(global.load()).settlements.grace;
    reconcile(*open_state_store(global, true), grace, from, *json);
  });

  auto* events = settlements->add_subcommand("events", "Settlement webhooks, newest first");
  add_limit(events, *limit);
  events->add_flag("--json", *json, "One JSON object per line");
  events->callback([&global, limit, json] {
    auto store = open_state_store(global, false);
    for (const auto& r : store->settlement_events(*limit)) {
      *json ? print_event_json(r) : print_event_text(r);
    }
  });
}

}  // namespace kpay::ctl
