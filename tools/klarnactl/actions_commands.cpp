// klarnactl actions list|overdue|retry: the processor's outbox of Klarna calls
// (confirm, final authorization, capture, reads). Tokens are never read back
// or printed. `retry` puts a failed call back to pending, due now; the worker
// sends it again with its original idempotency key, so Klarna executes the
// operation at most once whatever happened before. Each retry is recorded in
// the audit trail with the operator (--operator, else the OS user).
#include <chrono>
#include <filesystem>
#include <iomanip>
#include <iostream>

#include "ctl_support.hpp"
#include "klarnactl.hpp"
#include "kpay/core/json_writer.hpp"
#include "kpay/core/log.hpp"
#include "kpay/core/wall_clock.hpp"
#include "kpay/storage/audit_log.hpp"
#include "kpay/storage/defaults.hpp"
#include "kpay/storage/store.hpp"

namespace kpay::ctl {

namespace {

using core::now_ms;

std::string when(std::int64_t ms) {
  return ms > 0 ? core::rfc3339_ms(ms) : "-";
}

void row_json(core::JsonWriter& w, const storage::OutboxRow& o) {
  w.begin_object().field("id", o.id).field("operation", storage::to_string(o.operation));
  w.field("entity_id", o.entity_id).field("account_id", o.account_id);
  w.field("method", o.method).field("path", o.path).field("status", storage::to_string(o.status));
  w.field("attempts", o.attempts).field("idempotency_key", o.idempotency_key);
  w.field("created_at", when(o.created_at_ms)).field("updated_at", when(o.updated_at_ms));
  w.key("next_attempt_at");
  o.status == storage::OutboxStatus::pending ? w.value(when(o.next_attempt_at_ms)) : w.null();
  w.key("due_by");
  o.due_by_ms ? w.value(core::rfc3339_ms(*o.due_by_ms)) : w.null();
  w.key("last_status");
  o.last_status ? w.value(*o.last_status) : w.null();
  w.key("last_error");
  o.last_error ? w.value(*o.last_error) : w.null();
  w.key("result");
  o.result ? w.value(*o.result) : w.null();
  w.key("command_id");
  o.command_id ? w.value(*o.command_id) : w.null();
  w.field("caused_by", o.created_by_event_id).end_object();
}

void print_rows(const std::vector<storage::OutboxRow>& rows, bool json) {
  if (json) {
    core::JsonWriter w;
    w.begin_object().key("actions").begin_array();
    for (const auto& o : rows) row_json(w, o);
    w.end_array().end_object();
    std::cout << w.take() << "\n";
    return;
  }
  std::cout << std::left << std::setw(7) << "ID" << std::setw(21) << "OPERATION" << std::setw(10)
            << "STATUS" << std::setw(9) << "ATTEMPTS" << std::setw(26) << "DUE BY"
            << "ENTITY / LAST ANSWER\n";
  for (const auto& o : rows) {
    std::cout << std::setw(7) << o.id << std::setw(21) << o.operation << std::setw(10) << o.status
              << std::setw(9) << o.attempts << std::setw(26)
              << (o.due_by_ms ? core::rfc3339_ms(*o.due_by_ms) : "-") << o.entity_id;
    if (o.result) std::cout << "  result=" << *o.result;
    if (o.last_error) std::cout << "  last_error=" << *o.last_error;
    std::cout << "\n";
  }
}

// failed → pending and the operator's audit event, in one transaction: the
// call is not requeued unless the trail says who did it.
void requeue(const GlobalOptions& g, storage::Store& store, std::int64_t id) {
  storage::WriteTransaction tx(store);
  if (!store.retry_outbox(id, now_ms())) {
    auto row = store.find_outbox(id);
    throw CommandFailed(row ? "call " + std::to_string(id) + " is " +
                                  std::string(storage::to_string(row->status)) +
                                  ", not failed: nothing to retry"
                            : "no call with id " + std::to_string(id));
  }
  const auto row = store.find_outbox(id);
  auto e = operator_event(g, "requeued",
                          "klarnactl actions retry: a failed call queued again (attempts so far " +
                              std::to_string(row->attempts) + ", original idempotency key)");
  if (row->command_id) e.sender = store.sender_of(*row->command_id);
  e.command_id = row->command_id;
  e.operation = std::string(storage::to_string(row->operation));
  e.entity_id = row->entity_id;
  e.outbox_id = row->id;
  e.attempt = row->attempts;
  store.append_audit(e);
  tx.commit();
}

}  // namespace

void register_actions_commands(CLI::App& app, const GlobalOptions& global) {
  auto* actions = app.add_subcommand("actions", "The processor's Klarna calls (outbox)");
  actions->require_subcommand(1);

  auto* list = actions->add_subcommand("list", "Calls, newest first");
  static std::string status;
  static int limit = 50;
  static bool list_json = false;
  list->add_option("--status", status, "pending | in_flight | succeeded | failed")
      ->check(CLI::IsMember({"pending", "in_flight", "succeeded", "failed"}));
  list->add_option("--limit", limit, "at most this many rows")->check(CLI::Range(1, 100000));
  list->add_flag("--json", list_json, "JSON output");
  list->callback([&global] {
    auto store = open_state_store(global, false);
    print_rows(
        store->list_outbox(storage::parse_outbox_status(status), static_cast<std::size_t>(limit)),
        list_json);
  });

  auto* overdue = actions->add_subcommand(
      "overdue", "Calls not done whose deadline passed or is within --within minutes");
  static int within = 10;
  static bool overdue_json = false;
  overdue->add_option("--within", within, "minutes ahead that count as at risk (default 10)")
      ->check(CLI::Range(0, 7 * 24 * 60));
  overdue->add_flag("--json", overdue_json, "JSON output");
  overdue->callback([&global] {
    auto store = open_state_store(global, false);
    print_rows(store->outbox_due_within(now_ms(), std::int64_t{within} * 60'000, 1000),
               overdue_json);
  });

  auto* retry = actions->add_subcommand(
      "retry", "Put a failed call back to pending (sent again with its original key)");
  static std::int64_t id = 0;
  retry->add_option("id", id, "the call's id (actions list)")
      ->required()
      ->check(CLI::PositiveNumber);
  retry->callback([&global] {
    auto store = open_state_store(global, true);
    const auto by = operator_identity(global);
    requeue(global, *store, id);
    std::cout << "call " << id << " is pending again; the worker sends it with its original key"
              << " (audited: operator " << by << ")\n";
  });
}

}  // namespace kpay::ctl
