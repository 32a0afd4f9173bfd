// klarnactl payments list|show: read-only views of the processor's state store
// (processor.database): state, amounts, deadlines, follow-up calls and the full
// transition history. Tokens in the outbox are never read back or printed.
#include <algorithm>
#include <cctype>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "ctl_support.hpp"
#include "klarnactl.hpp"
#include "kpay/core/json_writer.hpp"
#include "kpay/core/log.hpp"
#include "kpay/storage/defaults.hpp"
#include "kpay/storage/reconciliation_store.hpp"
#include "kpay/storage/store.hpp"

namespace kpay::ctl {

namespace {

std::string money(const std::optional<std::int64_t>& amount,
                  const std::optional<std::string>& currency) {
  if (!amount) return "-";
  return std::to_string(*amount) + (currency ? " " + *currency : "");
}

std::string when(std::int64_t ms) {
  return ms > 0 ? core::rfc3339_ms(ms) : "-";
}
std::string when(const std::optional<std::int64_t>& ms) {
  return ms ? when(*ms) : "-";
}
std::string text(const std::optional<std::string>& s) {
  return s ? *s : "-";
}

void print_history(const std::vector<storage::HistoryRow>& rows) {
  std::cout << "  history (" << rows.size() << " events):\n";
  for (const auto& h : rows) {
    std::cout << "    " << std::left << std::setw(24)
              << (h.occurred_at.empty() ? "-" : h.occurred_at) << " " << std::setw(9) << h.outcome
              << " " << text(h.from_state) << " -> " << text(h.to_state) << "  " << h.event_type
              << " " << h.event_version << "  event_id=" << h.event_id;
    if (!h.reason.empty()) std::cout << "  (" << h.reason << ")";
    std::cout << "\n";
  }
}

void history_json(core::JsonWriter& w, const std::vector<storage::HistoryRow>& rows) {
  w.key("history").begin_array();
  for (const auto& h : rows) {
    w.begin_object().field("event_id", h.event_id).field("event_type", h.event_type);
    w.field("event_version", h.event_version).field("occurred_at", h.occurred_at);
    w.field("outcome", h.outcome);
    w.key("from_state");
    h.from_state ? w.value(*h.from_state) : w.null();
    w.key("to_state");
    h.to_state ? w.value(*h.to_state) : w.null();
    w.field("reason", h.reason).field("topic", h.topic).field("partition", h.partition);
    w.field("offset", h.offset).end_object();
  }
  w.end_array();
}

template <class T>
void opt_field(core::JsonWriter& w, std::string_view k, const std::optional<T>& v) {
  w.key(k);
  v ? w.value(*v) : w.null();
}

// The settlements whose SALE (capture) or RETURN (refund) lines name a
// sub-record; none for chargebacks (settled by dispute) or before any report.
std::vector<std::string> settled_in(storage::Store& store, const storage::SubRecordRow& s) {
  std::vector<std::string> out;
  if (s.kind != "capture" && s.kind != "refund") return out;
  for (const auto& l : storage::ledger_of(store).lines_settling(s.kind, s.id)) {
    if (out.empty() || out.back() != l.settlement_id) out.push_back(l.settlement_id);
  }
  return out;
}

void show_transaction(storage::Store& store, const storage::PaymentTransactionRow& t, bool json,
                      core::JsonWriter& w) {
  auto subs = store.sub_records(t.id);
  std::optional<std::int64_t> remaining;
  if (t.amount) remaining = *t.amount - t.captured_amount;
  if (json) {
    w.key("payment_transaction").begin_object().field("id", t.id);
    opt_field(w, "state", t.state);
    opt_field(w, "amount", t.amount);
    opt_field(w, "currency", t.currency);
    w.field("captured_amount", t.captured_amount).field("refunded_amount", t.refunded_amount);
    w.field("chargeback_amount", t.chargeback_amount);
    opt_field(w, "remaining_amount", remaining);
    opt_field(w, "payment_request_id", t.payment_request_id);
    opt_field(w, "funding_state", t.funding_state);
    w.key("expires_at");
    t.expires_at_ms ? w.value(core::rfc3339_ms(*t.expires_at_ms)) : w.null();
    w.key("sub_records").begin_array();
    for (const auto& s : subs) {
      w.begin_object().field("kind", s.kind).field("id", s.id).field("amount", s.amount);
      opt_field(w, "capture_id", s.capture_id);
      w.key("settled_in").begin_array();
      for (const auto& id : settled_in(store, s)) w.value(id);
      w.end_array();
      w.field("event_id", s.event_id).end_object();
    }
    w.end_array();
    history_json(w, store.history(t.id));
    w.end_object();
    return;
  }
  std::cout << "payment transaction " << t.id << "\n"
            << "  state:      " << text(t.state) << " (since " << when(t.state_as_of_ms) << ")\n"
            << "  amount:     " << money(t.amount, t.currency) << "\n"
            << "  captured:   " << t.captured_amount << "   refunded: " << t.refunded_amount
            << "   chargebacks: " << t.chargeback_amount
            << "   remaining: " << (remaining ? std::to_string(*remaining) : "-") << "\n"
            << "  request:    " << text(t.payment_request_id) << "\n"
            << "  expires_at: " << when(t.expires_at_ms) << "   funding: " << text(t.funding_state)
            << "\n";
  for (const auto& s : subs) {
    std::cout << "  " << std::left << std::setw(10) << s.kind << " " << s.id << "  " << s.amount
              << (s.capture_id ? "  (capture " + *s.capture_id + ")" : "") << "  at "
              << when(s.occurred_at_ms);
    if (s.kind == "capture" || s.kind == "refund") {
      const auto in = settled_in(store, s);
      std::cout << (in.empty() ? "  not settled yet" : "  settled in " + in.front());
      for (std::size_t i = 1; i < in.size(); ++i) std::cout << ", " << in[i];
    }
    std::cout << "\n";
  }
  print_history(store.history(t.id));
}

void show_request(storage::Store& store, const storage::PaymentRequestRow& r, bool json,
                  core::JsonWriter& w) {
  const auto outbox = store.outbox(r.id);
  if (json) {
    w.key("payment_request").begin_object().field("id", r.id);
    w.field("generation", r.generation);
    opt_field(w, "state", r.state);
    opt_field(w, "amount", r.amount);
    opt_field(w, "currency", r.currency);
    opt_field(w, "reference", r.reference);
    opt_field(w, "payment_transaction_id", r.payment_transaction_id);
    w.key("authorization_due");
    r.authorization_due_ms ? w.value(core::rfc3339_ms(*r.authorization_due_ms)) : w.null();
    w.key("outbox").begin_array();
    for (const auto& o : outbox) {
      w.begin_object()
          .field("operation", storage::to_string(o.operation))
          .field("idempotency_key", o.idempotency_key);
      w.field("status", storage::to_string(o.status))
          .field("created_by_event_id", o.created_by_event_id);
      w.end_object();
    }
    w.end_array();
    history_json(w, store.history(r.id));
    w.end_object();
    return;
  }
  std::cout << "payment request " << r.id << " (Gen " << r.generation << ")\n"
            << "  state:     " << text(r.state) << " (since " << when(r.state_as_of_ms) << ")\n"
            << "  amount:    " << money(r.amount, r.currency)
            << "   reference: " << text(r.reference) << "\n"
            << "  expires:   " << when(r.expires_at_ms)
            << "   final authorization due: " << when(r.authorization_due_ms) << "\n"
            << "  transaction: " << text(r.payment_transaction_id) << "\n";
  for (const auto& o : outbox) {
    std::cout << "  outbox: " << o.operation << " [" << o.status << "] key=" << o.idempotency_key
              << " due " << when(o.due_by_ms) << "\n";
  }
  print_history(store.history(r.id));
}

void show_dispute(storage::Store& store, const storage::DisputeRow& d, bool json,
                  core::JsonWriter& w) {
  if (json) {
    w.key("dispute")
        .begin_object()
        .field("id", d.id)
        .field("framework", storage::to_string(d.framework));
    opt_field(w, "state", d.state);
    opt_field(w, "outcome", d.outcome);
    opt_field(w, "amount", d.amount);
    opt_field(w, "currency", d.currency);
    opt_field(w, "payment_transaction_id", d.payment_transaction_id);
    w.key("representment_expires_at");
    d.representment_expires_at_ms ? w.value(core::rfc3339_ms(*d.representment_expires_at_ms))
                                  : w.null();
    w.key("arbitration_expires_at");
    d.arbitration_expires_at_ms ? w.value(core::rfc3339_ms(*d.arbitration_expires_at_ms))
                                : w.null();
    history_json(w, store.history(d.id));
    w.end_object();
    return;
  }
  std::cout << "dispute " << d.id << " (" << d.framework << " framework"
            << (d.framework_inferred ? ", inferred" : "") << ")\n"
            << "  state:    " << text(d.state) << " (since " << when(d.state_as_of_ms)
            << ")   outcome: " << text(d.outcome) << "\n"
            << "  amount:   " << money(d.amount, d.currency) << "   reason: " << text(d.reason)
            << "\n  transaction: " << text(d.payment_transaction_id) << "\n"
            << "  representment deadline: " << when(d.representment_expires_at_ms)
            << "   arbitration deadline: " << when(d.arbitration_expires_at_ms) << "\n";
  print_history(store.history(d.id));
}

// A settlement report, payout or partner account record.
void show_record(storage::Store& store, const char* kind, const storage::RecordRow& rec, bool json,
                 core::JsonWriter& w) {
  if (json) {
    w.key(kind).begin_object().field("id", rec.id);
    opt_field(w, "state", rec.state);
    opt_field(w, "sub_state", rec.sub_state);
    opt_field(w, "amount", rec.amount);
    opt_field(w, "currency", rec.currency);
    history_json(w, store.history(rec.id));
    w.end_object();
    return;
  }
  std::cout << kind << " " << rec.id << "\n  state: " << text(rec.state)
            << (rec.sub_state ? "   payment product: " + *rec.sub_state : "")
            << "   amount: " << money(rec.amount, rec.currency) << "\n";
  print_history(store.history(rec.id));
}

// Everything known under `id`: a request with its transaction, a transaction
// (naming its request), a dispute, a record. Throws CommandFailed for none.
void show_payment(storage::Store& store, const std::string& id, bool json) {
  core::JsonWriter w;
  w.begin_object();
  bool found = false;
  std::optional<std::string> linked_transaction;
  if (auto r = store.find_request(id)) {
    found = true;
    linked_transaction = r->payment_transaction_id;
    show_request(store, *r, json, w);
  }
  std::optional<storage::PaymentTransactionRow> txn = store.find_transaction(id);
  if (!txn && linked_transaction) txn = store.find_transaction(*linked_transaction);
  if (txn) {
    found = true;
    if (!json && linked_transaction) std::cout << "\n";
    show_transaction(store, *txn, json, w);
    if (!linked_transaction && txn->payment_request_id && txn->id == id) {
      if (json) {
        w.field("payment_request_id", *txn->payment_request_id);
      } else {
        std::cout << "  (klarnactl payments show " << *txn->payment_request_id
                  << " for the request)\n";
      }
    }
  }
  if (auto d = store.find_dispute(id)) {
    found = true;
    show_dispute(store, *d, json, w);
  }
  for (const char* kind : {"settlement_report", "payout", "partner_account"}) {
    if (auto rec = store.find_record(kind, id)) {
      found = true;
      show_record(store, kind, *rec, json, w);
    }
  }
  if (!found) throw CommandFailed("nothing known with id '" + id + "'");
  if (json) std::cout << w.end_object().str() << "\n";
}

void print_payments(const std::vector<storage::PaymentSummary>& rows, bool json) {
  // Columns as wide as their widest value (Klarna ids are ~70 characters),
  // so a state never runs into an id.
  std::size_t id_width = 2, state_width = 5;
  for (const auto& p : rows) {
    id_width = std::max(id_width, p.id.size());
    state_width = std::max(state_width, p.state.size());
  }
  const int id_col = static_cast<int>(id_width) + 2;
  const int state_col = static_cast<int>(state_width) + 2;
  if (!json) {
    std::cout << std::left << std::setw(20) << "KIND" << std::setw(id_col) << "ID"
              << std::setw(state_col) << "STATE" << std::setw(14) << "AMOUNT" << std::setw(10)
              << "CAPTURED" << std::setw(10) << "REFUNDED"
              << "UPDATED\n";
  }
  for (const auto& p : rows) {
    if (json) {
      core::JsonWriter w;
      w.begin_object().field("kind", p.kind).field("id", p.id).field("state", p.state);
      opt_field(w, "amount", p.amount);
      opt_field(w, "currency", p.currency);
      w.field("captured_amount", p.captured_amount).field("refunded_amount", p.refunded_amount);
      opt_field(w, "linked_id", p.linked_id);
      w.field("updated_as_of", when(p.updated_as_of_ms)).end_object();
      std::cout << w.str() << "\n";
      continue;
    }
    std::cout << std::left << std::setw(20) << p.kind << std::setw(id_col) << p.id
              << std::setw(state_col) << p.state << std::setw(14) << money(p.amount, p.currency)
              << std::setw(10) << p.captured_amount << std::setw(10) << p.refunded_amount
              << when(p.updated_as_of_ms) << "\n";
  }
}

}  // namespace

void register_payments_commands(CLI::App& app, const GlobalOptions& global) {
  auto* payments = app.add_subcommand("payments", "Payment state (from the processor's store)");
  payments->require_subcommand(1);

  register_payments_trace(*payments, global);  // payments_trace.cpp

  auto* list = payments->add_subcommand("list", "Payment requests and transactions, newest first");
  auto filter = std::make_shared<storage::PaymentFilter>();
  auto since = std::make_shared<std::string>();
  auto list_json = std::make_shared<bool>(false);
  add_limit(list, filter->limit);
  list->add_option("--kind", filter->kind, "payment_request | payment_transaction")
      ->check(CLI::IsMember({"payment_request", "payment_transaction"}));
  list->add_option("--state", filter->state, "Only this state (e.g. AUTHORIZED)")
      ->transform([](std::string v) {
        for (auto& c : v) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        return v;
      });
  list->add_option("--since", *since, "Only those updated at or after this RFC 3339 time");
  list->add_flag("--json", *list_json, "One JSON object per line");
  list->callback([&global, filter, since, list_json] {
    if (!since->empty()) filter->since_ms = parse_time_option("--since", *since);
    auto store = open_state_store(global, false);
    print_payments(store->list_payments(*filter), *list_json);
  });

  auto* show = payments->add_subcommand(
      "show", "One payment request, transaction, dispute or settlement record with its history");
  auto id = std::make_shared<std::string>();
  auto show_json = std::make_shared<bool>(false);
  show->add_option("ID", *id, "payment_request_id, payment_transaction_id, dispute or record id")
      ->required();
  show->add_flag("--json", *show_json, "Print one JSON document");
  show->callback([&global, id, show_json] {
    auto store = open_state_store(global, false);
    show_payment(*store, *id, *show_json);
  });
}

}  // namespace kpay::ctl
