// klarnactl payments trace ID [--json]: one payment's timeline across the
// components, read from the processor's state database only (no log
// scraping): each webhook as the receiver took it in (its received-at header,
// the Kafka topic/partition/offset it was published at and the Kafka
// timestamp), what the processor made of it (applied, duplicate, stale,
// rejected, and why), the Klarna calls it queued, every attempt of each
// (status, latency, Klarna's error id and correlation id), the answer
// recorded, the commands that acted on the payment and their results, the
// audit rows that are not already one of these steps. Each step names its W3C
// trace id: grep the daemons' logs for it (docs/OPERATIONS.md, "Tracing one
// payment"). Output shape: docs/KLARNACTL.md, "payments trace".
#include <algorithm>
#include <iomanip>
#include <iostream>
#include <set>
#include <sstream>
#include <tuple>
#include <variant>

#include "ctl_support.hpp"
#include "klarnactl.hpp"
#include "kpay/core/json_writer.hpp"
#include "kpay/core/log.hpp"
#include "kpay/core/traceparent.hpp"

namespace kpay::ctl {

namespace {

using Extra = std::vector<std::pair<std::string, std::variant<std::string, std::int64_t>>>;

// One line of the timeline.
struct Step {
  std::int64_t at_ms = 0;
  int rank = 0;           // orders steps of the same millisecond: cause before effect
  std::int64_t seq = 0;   // then the order they were found in
  std::string component;  // receiver | processor | klarna | operator
  std::string step;       // webhook_received | applied | duplicate | … (below)
  std::string entity_id;
  std::string traceparent;
  std::string detail;  // one human sentence
  Extra extra;         // the same facts as fields, for --json
};

// What the trace is about: the request, its transaction, their disputes
// (ids, and the rows when stored: a transaction may be known only from a
// capture event).
struct Payment {
  std::optional<std::string> request_id, transaction_id;
  std::optional<storage::PaymentRequestRow> request;
  std::optional<storage::PaymentTransactionRow> transaction;
  std::vector<std::string> disputes;
};

void with_request(storage::Store& store, Payment& p, const std::string& request_id) {
  p.request_id = request_id;
  p.request = store.find_request(request_id);
}

void with_transaction(storage::Store& store, Payment& p, const std::string& transaction_id) {
  p.transaction_id = transaction_id;
  p.transaction = store.find_transaction(transaction_id);
  p.disputes = store.disputes_of_transaction(transaction_id);
}

// Follows the links from whatever `id` is: a payment request, a transaction,
// a capture / refund / chargeback, a dispute, or a command acting on one.
Payment resolve(storage::Store& store, const std::string& id, int depth = 0) {
  Payment p;
  std::optional<std::string> txn;
  if (auto r = store.find_request(id)) {
    with_request(store, p, id);
    txn = r->payment_transaction_id;
    if (!txn) txn = store.transaction_for_request(id);
    if (txn) with_transaction(store, p, *txn);
    return p;
  }
  if (store.find_transaction(id)) txn = id;
  for (const char* kind : {"capture", "refund", "chargeback"}) {
    if (auto sub = store.find_sub_record(kind, id); !txn && sub) txn = sub->transaction_id;
  }
  if (txn) {
    with_transaction(store, p, *txn);
    std::optional<std::string> request;
    if (p.transaction) request = p.transaction->payment_request_id;
    if (!request) request = store.request_for_transaction(*txn);
    if (request) with_request(store, p, *request);
    return p;
  }
  if (auto d = store.find_dispute(id)) {
    if (d->payment_transaction_id && depth == 0) p = resolve(store, *d->payment_transaction_id, 1);
    if (std::find(p.disputes.begin(), p.disputes.end(), id) == p.disputes.end()) {
      p.disputes.push_back(id);
    }
    return p;
  }
  if (auto c = store.find_command(id); c && c->entity_id && depth == 0) {
    return resolve(store, *c->entity_id, 1);
  }
  return p;
}

std::vector<std::string> entities(const Payment& p) {
  std::vector<std::string> out;
  if (p.request_id) out.push_back(*p.request_id);
  if (p.transaction_id) out.push_back(*p.transaction_id);
  for (const auto& d : p.disputes) out.push_back(d);
  return out;
}

std::string where(const std::string& topic, std::int32_t partition, std::int64_t offset) {
  return topic + "/" + std::to_string(partition) + "@" + std::to_string(offset);
}

class Timeline {
 public:
  explicit Timeline(storage::Store& store) : store_(store) {}

  void add_entity(const std::string& entity_id) {
    for (const auto& h : store_.history(entity_id)) add_history(h);
    for (const auto& o : store_.outbox(entity_id)) add_call(o);
    for (const auto& c : store_.commands_for_entity(entity_id)) add_command(c);
  }

  std::vector<Step> steps() {
    std::stable_sort(steps_.begin(), steps_.end(), [](const Step& a, const Step& b) {
      return std::tie(a.at_ms, a.rank, a.seq) < std::tie(b.at_ms, b.rank, b.seq);
    });
    return steps_;
  }

 private:
  Step& add(std::int64_t at_ms, int rank, std::string component, std::string step,
            std::string entity_id, std::string traceparent, std::string detail) {
    steps_.push_back({at_ms,
                      rank,
                      next_seq_++,
                      std::move(component),
                      std::move(step),
                      std::move(entity_id),
                      std::move(traceparent),
                      std::move(detail),
                      {}});
    return steps_.back();
  }

  void add_history(const storage::HistoryRow& h) {
    const bool command = h.entity_kind == "command";
    const auto coordinates = where(h.topic, h.partition, h.offset);
    // The webhook as the receiver took it in (rows written since v11 know when).
    if (!command && (!h.received_at.empty() || h.kafka_timestamp_ms)) {
      auto at = processor::parse_rfc3339_ms(h.received_at);
      std::string detail = h.event_type + " " + h.event_id + " published to " + coordinates;
      auto& s = add(at.value_or(h.kafka_timestamp_ms.value_or(h.recorded_at_ms)), 0, "receiver",
                    "webhook_received", h.entity_id, h.traceparent, detail);
      s.extra = {{"event_id", h.event_id},
                 {"event_type", h.event_type},
                 {"topic", h.topic},
                 {"partition", std::int64_t{h.partition}},
                 {"offset", h.offset}};
      if (h.kafka_timestamp_ms) s.extra.emplace_back("kafka_timestamp_ms", *h.kafka_timestamp_ms);
    }
    std::string detail = (command ? h.event_type + " " + h.event_id.substr(8) : h.event_type) +
                         " from " + coordinates;
    if (h.from_state || h.to_state) {
      detail += ": " + h.from_state.value_or("-") + " -> " + h.to_state.value_or("-");
    }
    if (!h.reason.empty()) detail += " (" + h.reason + ")";
    const std::int64_t at = h.recorded_at_ms != 0
                                ? h.recorded_at_ms
                                : processor::parse_rfc3339_ms(h.occurred_at).value_or(0);
    auto& s = add(at, 1, "processor", command ? "command_" + h.outcome : h.outcome, h.entity_id,
                  h.traceparent, detail);
    s.extra = {{"event_id", h.event_id}, {"event_type", h.event_type},
               {"outcome", h.outcome},   {"reason", h.reason},
               {"topic", h.topic},       {"partition", std::int64_t{h.partition}},
               {"offset", h.offset},     {"occurred_at", h.occurred_at}};
    if (h.from_state) s.extra.emplace_back("from_state", *h.from_state);
    if (h.to_state) s.extra.emplace_back("to_state", *h.to_state);
  }

  void add_call(const storage::OutboxRow& o) {
    const std::string operation(storage::to_string(o.operation));
    const std::string status(storage::to_string(o.status));
    const std::string cause = o.command_id ? "command " + *o.command_id : o.created_by_event_id;
    auto& q = add(o.created_at_ms, 2, "processor", "call_queued", o.entity_id, o.traceparent,
                  operation + " " + o.method + " " + o.path + " (outbox " + std::to_string(o.id) +
                      ", key " + o.idempotency_key + ", caused by " + cause + ")");
    q.extra = {{"outbox_id", o.id},
               {"operation", operation},
               {"method", o.method},
               {"path", o.path},
               {"idempotency_key", o.idempotency_key},
               {"caused_by", cause}};
    for (const auto& a : store_.call_attempts(o.id)) add_attempt(o, a);
    if (o.status == storage::OutboxStatus::succeeded || o.status == storage::OutboxStatus::failed) {
      std::string detail = operation + " " + status;
      if (o.result) detail += ", result " + *o.result;
      if (o.last_error && o.status == storage::OutboxStatus::failed) detail += ": " + *o.last_error;
      detail += " after " + std::to_string(o.attempts) + " attempt(s)";
      auto& r = add(o.updated_at_ms, 4, "processor", "answer_recorded", o.entity_id, o.traceparent,
                    detail);
      r.extra = {{"outbox_id", o.id}, {"status", status}, {"attempts", o.attempts}};
      if (o.result) r.extra.emplace_back("result", *o.result);
      if (o.last_error) r.extra.emplace_back("last_error", *o.last_error);
    }
    for (const auto& e : store_.audit_of_outbox(o.id)) {
      if (e.kind != "operator") continue;  // queued / attempt / outcome are the steps above
      add_audit(e);
    }
  }

  void add_attempt(const storage::OutboxRow& o, const storage::CallAttemptRow& a) {
    std::ostringstream detail;
    const std::string operation(storage::to_string(o.operation));
    detail << operation << " attempt " << a.attempt << ": "
           << (a.http_status ? "HTTP " + std::to_string(*a.http_status)
                             : a.transport_error.value_or("no answer"))
           << " " << a.outcome << " in " << std::fixed << std::setprecision(1)
           << static_cast<double>(a.latency_us) / 1000.0 << " ms";
    if (a.klarna_error_id) detail << ", error_id " << *a.klarna_error_id;
    if (a.klarna_correlation_id) detail << ", Klarna-Correlation-Id " << *a.klarna_correlation_id;
    auto& s =
        add(a.started_at_ms, 3, "klarna", "call_attempt", o.entity_id, a.traceparent, detail.str());
    s.extra = {{"outbox_id", o.id},
               {"operation", operation},
               {"attempt", a.attempt},
               {"outcome", a.outcome},
               {"latency_ms", a.latency_us / 1000}};
    if (a.http_status) s.extra.emplace_back("http_status", *a.http_status);
    if (a.transport_error) s.extra.emplace_back("transport_error", *a.transport_error);
    if (a.klarna_error_id) s.extra.emplace_back("klarna_error_id", *a.klarna_error_id);
    if (a.klarna_error_code) s.extra.emplace_back("klarna_error_code", *a.klarna_error_code);
    if (a.klarna_correlation_id) {
      s.extra.emplace_back("klarna_correlation_id", *a.klarna_correlation_id);
    }
  }

  void add_command(const storage::CommandRow& c) {
    const std::string status(storage::to_string(c.status));
    if (c.status != storage::CommandStatus::accepted) {
      std::string detail = c.type + " " + c.command_id + ": " + status;
      if (c.reason) detail += " (" + *c.reason + ")";
      auto& s = add(c.updated_at_ms, 5, "processor", "command_result", c.entity_id.value_or(""),
                    trace_of_command(c), detail);
      s.extra = {{"command_id", c.command_id}, {"type", c.type}, {"status", status}};
      if (c.reason) s.extra.emplace_back("reason", *c.reason);
    }
    storage::AuditQuery q;
    q.command_id = c.command_id;
    for (const auto& e : store_.list_audit(q)) {
      if (e.kind == "command" || e.kind == "refused") add_audit(e);
    }
  }

  // A command's trace: that of its history row (the message it came in).
  std::string trace_of_command(const storage::CommandRow& c) {
    if (!c.entity_id) return "";
    for (const auto& h : store_.history(*c.entity_id)) {
      if (h.event_id == "command:" + c.command_id) return h.traceparent;
    }
    return "";
  }

  void add_audit(const storage::AuditEvent& e) {
    std::string detail = e.kind + " " + e.status;
    if (e.operation) detail += " " + *e.operation;
    if (e.command_id) detail += " command " + *e.command_id;
    if (e.sender) detail += " by " + *e.sender;
    if (e.detail) detail += ": " + *e.detail;
    auto& s = add(e.at_ms, 6, e.kind == "operator" ? "operator" : "processor", "audit",
                  e.entity_id.value_or(""), "", detail);
    s.extra = {{"audit_seq", e.seq}, {"kind", e.kind}, {"status", e.status}};
    if (e.sender) s.extra.emplace_back("sender", *e.sender);
  }

  storage::Store& store_;
  std::vector<Step> steps_;
  std::int64_t next_seq_ = 0;
};

void print_json(const std::string& query, const Payment& p, const std::vector<Step>& steps) {
  core::JsonWriter w;
  w.begin_object().field("query", query);
  w.key("payment_request");
  if (p.request_id) {
    w.begin_object().field("id", *p.request_id).key("state");
    p.request&& p.request->state ? w.value(*p.request->state) : w.null();
    w.end_object();
  } else {
    w.null();
  }
  w.key("payment_transaction");
  if (p.transaction_id) {
    w.begin_object().field("id", *p.transaction_id).key("state");
    p.transaction&& p.transaction->state ? w.value(*p.transaction->state) : w.null();
    w.end_object();
  } else {
    w.null();
  }
  w.key("disputes").begin_array();
  for (const auto& d : p.disputes) w.value(d);
  w.end_array();
  w.key("steps").begin_array();
  for (const auto& s : steps) {
    w.begin_object().field("at", core::rfc3339_ms(s.at_ms)).field("at_ms", s.at_ms);
    w.field("component", s.component).field("step", s.step).field("entity_id", s.entity_id);
    w.field("trace_id", core::trace_id_of(s.traceparent));
    w.field("traceparent", s.traceparent).field("detail", s.detail);
    for (const auto& [k, v] : s.extra) {
      w.key(k);
      std::visit([&w](const auto& x) { w.value(x); }, v);
    }
    w.end_object();
  }
  w.end_array().end_object();
  std::cout << w.str() << "\n";
}

void print_human(const Payment& p, const std::vector<Step>& steps) {
  auto state = [](const auto& row) {
    return row && row->state ? *row->state : std::string(storage::kNoStateYet);
  };
  if (p.request_id) {
    std::cout << "payment request      " << *p.request_id << "  " << state(p.request) << "\n";
  }
  if (p.transaction_id) {
    std::cout << "payment transaction  " << *p.transaction_id << "  " << state(p.transaction)
              << "\n";
  }
  for (const auto& d : p.disputes) std::cout << "dispute              " << d << "\n";
  std::set<std::string> traces;
  for (const auto& s : steps) {
    if (auto t = core::trace_id_of(s.traceparent); !t.empty()) traces.emplace(t);
  }
  std::cout << steps.size() << " steps, " << traces.size()
            << " trace id(s); grep the logs for trace_id=<id>\n\n";
  std::size_t step_width = 4;
  for (const auto& s : steps) step_width = std::max(step_width, s.step.size());
  std::cout << std::left << std::setw(26) << "TIME (UTC)" << std::setw(11) << "COMPONENT"
            << std::setw(static_cast<int>(step_width) + 2) << "STEP"
            << "WHAT\n";
  for (const auto& s : steps) {
    std::cout << std::left << std::setw(26) << (s.at_ms > 0 ? core::rfc3339_ms(s.at_ms) : "-")
              << std::setw(11) << s.component << std::setw(static_cast<int>(step_width) + 2)
              << s.step << s.detail;
    if (auto t = core::trace_id_of(s.traceparent); !t.empty()) std::cout << "  trace " << t;
    std::cout << "\n";
  }
}

}  // namespace

void register_payments_trace(CLI::App& payments, const GlobalOptions& global) {
  auto* trace = payments.add_subcommand(
      "trace", "One payment's timeline: webhooks, decisions, Klarna calls, commands, audit");
  auto id = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  trace
      ->add_option("ID", *id,
                   "payment_request_id, payment_transaction_id, capture/refund/chargeback id, "
                   "dispute id or command_id")
      ->required();
  trace->add_flag("--json", *json, "Print one JSON document");
  trace->callback([&global, id, json] {
    auto store = open_state_store(global, false);
    const Payment p = resolve(*store, *id);
    const auto ids = entities(p);
    if (ids.empty()) throw CommandFailed("nothing known with id '" + *id + "'");
    Timeline timeline(*store);
    for (const auto& e : ids) timeline.add_entity(e);
    const auto steps = timeline.steps();
    if (*json) {
      print_json(*id, p, steps);
    } else {
      print_human(p, steps);
    }
  });
}

}  // namespace kpay::ctl
