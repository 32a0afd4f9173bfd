// klarnactl audit list|show: the append-only audit trail of commands, the
// Klarna calls that change payments, and operators' actions with who did them
// (actions retry, dead-letters replay; state database,
// audit_events; docs/OPERATIONS.md, "Audit trail").
#include <iostream>

#include "ctl_support.hpp"
#include "klarnactl.hpp"
#include "kpay/core/log.hpp"
#include "kpay/processor/audit_publisher.hpp"
#include "kpay/storage/audit_trail.hpp"
#include "security_commands.hpp"

namespace kpay::ctl {

namespace {

void print_events(const std::vector<storage::AuditEvent>& events, bool json) {
  if (json) {
    for (const auto& e : events) std::cout << processor::render_audit_event(e) << "\n";
    return;
  }
  std::vector<std::vector<std::string>> rows{{"SEQ", "AT", "KIND", "SENDER", "OPERATOR", "COMMAND",
                                              "OPERATION", "ATTEMPT", "STATUS", "KLARNA",
                                              "DETAIL"}};
  for (const auto& e : events) {
    rows.push_back(
        {std::to_string(e.seq), core::rfc3339_ms(e.at_ms), e.kind, e.sender.value_or("-"),
         e.operator_name.value_or("-"), e.command_id.value_or("-"), e.operation.value_or("-"),
         e.attempt ? std::to_string(*e.attempt) : "-", e.status,
         e.klarna_status ? std::to_string(*e.klarna_status) : "-", e.detail.value_or("")});
  }
  print_table(rows);
}

}  // namespace

void register_audit_commands(CLI::App& app, const GlobalOptions& global) {
  auto* audit =
      app.add_subcommand("audit", "The audit trail: who asked for what, what Klarna answered");
  audit->require_subcommand(1);

  struct ListOptions {
    std::string since, sender, command, by;
    std::size_t limit = 1000;
    bool json = false;
  };
  auto o = std::make_shared<ListOptions>();
  auto* list = audit->add_subcommand("list", "Audit events, oldest first");
  list->add_option("--since", o->since, "Only events at or after this RFC 3339 time");
  list->add_option("--sender", o->sender, "Only this sender's events");
  list->add_option("--command", o->command, "Only this command's events (and its calls')");
  list->add_option("--by", o->by, "Only the actions of this operator (klarnactl --operator)");
  add_limit(list, o->limit);
  list->add_flag("--json", o->json, "One JSON object per event");
  list->callback([&global, o] {
    auto store = open_state_store(global, false);
    storage::AuditQuery q;
    if (!o->since.empty()) q.since_ms = parse_time_option("--since", o->since);
    q.sender = o->sender;
    q.command_id = o->command;
    q.operator_name = o->by;
    q.limit = o->limit;
    print_events(store->list_audit(q), o->json);
  });

  auto show_id = std::make_shared<std::string>();
  auto show_json = std::make_shared<bool>(false);
  auto* show =
      audit->add_subcommand("show", "One command's trail: decision, calls, attempts, outcome");
  show->add_option("command_id", *show_id, "command_id")->required();
  show->add_flag("--json", *show_json, "One JSON object per event");
  show->callback([&global, show_id, show_json] {
    auto store = open_state_store(global, false);
    storage::AuditQuery q;
    q.command_id = *show_id;
    q.limit = kMaxRows;
    auto events = store->list_audit(q);
    if (events.empty()) throw CommandFailed("no audit events for command " + *show_id);
    print_events(events, *show_json);
  });
}

}  // namespace kpay::ctl
