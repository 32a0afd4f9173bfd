// klarnactl settlements list: what settlement.* webhooks carried (ids, report
// links, amounts, dates), newest first, from the processor's state store. The
// field names behind them are mostly assumed: docs/KLARNA-FIDELITY.md.
#include <iomanip>
#include <iostream>

#include "ctl_support.hpp"
#include "klarnactl.hpp"
#include "kpay/core/json_writer.hpp"
#include "kpay/core/log.hpp"

namespace kpay::ctl {

namespace {

std::string text(const std::optional<std::string>& s) {
  return s ? *s : "-";
}

void print_json(const storage::SettlementEventRow& r) {
  core::JsonWriter w;
  w.begin_object().field("event_id", r.event_id).field("event_type", r.event_type);
  w.field("entity_id", r.entity_id).field("routed_by", r.routed_by);
  auto maybe = [&w](std::string_view k, const auto& v) {
    if (v) w.field(k, *v);
  };
  maybe("account_id", r.account_id);
  maybe("settlement_id", r.settlement_id);
  maybe("payout_id", r.payout_id);
  maybe("report_id", r.report_id);
  maybe("report_json_url", r.report_json_url);
  maybe("report_csv_url", r.report_csv_url);
  maybe("amount", r.amount);
  maybe("currency", r.currency);
  maybe("payout_date", r.payout_date);
  maybe("period_start", r.period_start);
  maybe("period_end", r.period_end);
  w.key("links").raw(r.links_json);
  w.field("occurred_at", core::rfc3339_ms(r.occurred_at_ms));
  w.end_object();
  std::cout << w.take() << "\n";
}

void print_text(const storage::SettlementEventRow& r) {
  std::cout << std::left << std::setw(25) << core::rfc3339_ms(r.occurred_at_ms) << " "
            << std::setw(34) << r.event_type << " " << r.entity_id << " (by " << r.routed_by << ")";
  if (r.amount) std::cout << "  " << *r.amount << " " << text(r.currency);
  if (r.payout_date) std::cout << "  payout " << *r.payout_date;
  if (r.report_json_url) std::cout << "\n    json: " << *r.report_json_url;
  if (r.report_csv_url) std::cout << "\n    csv:  " << *r.report_csv_url;
  std::cout << "\n";
}

}  // namespace

void register_settlements_commands(CLI::App& app, const GlobalOptions& global) {
  auto* settlements =
      app.add_subcommand("settlements", "What settlement webhooks carried (processor's store)");
  settlements->require_subcommand(1);
  auto* list = settlements->add_subcommand("list", "Settlement events, newest first");
  auto limit = std::make_shared<std::size_t>(50);
  auto json = std::make_shared<bool>(false);
  add_limit(list, *limit);
  list->add_flag("--json", *json, "One JSON object per line");
  list->callback([&global, limit, json] {
    auto store = open_state_store(global, false);
    for (const auto& r : store->settlement_events(*limit)) *json ? print_json(r) : print_text(r);
  });
}

}  // namespace kpay::ctl
