// Captures, refunds and chargebacks: sub-records of a transaction, each
// booked once by its own id (payment_capture_id, …) whoever announces it: a
// webhook here, or the outbox worker from Klarna's answer. The transaction's
// captured / refunded / chargeback totals move only when a sub-record is new.
#include "appliers/common.hpp"

namespace kpay::processor::appliers {

namespace {

std::string_view kind_name(SubRecordKind k) {
  switch (k) {
    case SubRecordKind::capture:
      return "capture";
    case SubRecordKind::refund:
      return "refund";
    case SubRecordKind::chargeback:
      break;
  }
  return "chargeback";
}

const std::optional<std::string>& sub_record_id(const Payload& p, SubRecordKind k) {
  return k == SubRecordKind::capture  ? p.capture_id
         : k == SubRecordKind::refund ? p.refund_id
                                      : p.chargeback_id;
}

std::int64_t& total_of(storage::PaymentTransactionRow& row, SubRecordKind k) {
  return k == SubRecordKind::capture  ? row.captured_amount
         : k == SubRecordKind::refund ? row.refunded_amount
                                      : row.chargeback_amount;
}

storage::SubRecordRow sub_record(const Event& ev, SubRecordKind k) {
  const Payload& p = ev.payload;
  storage::SubRecordRow sub;
  sub.kind = std::string(kind_name(k));
  sub.id = *sub_record_id(p, k);  // decode_event guarantees it
  sub.transaction_id = ev.envelope.entity_id;
  sub.amount = *p.amount;  // decode_event guarantees it unless ambiguous
  sub.currency = p.currency;
  if (k != SubRecordKind::capture) sub.capture_id = p.capture_id;
  sub.occurred_at_ms = ev.occurred_at_ms;
  sub.event_id = ev.envelope.event_id;
  return sub;
}

bool sub_record_exists(StoreView& store, const std::string& transaction_id, std::string_view kind,
                       const std::string& id) {
  for (const auto& s : store.sub_records(transaction_id)) {
    if (s.kind == kind && s.id == id) return true;
  }
  return false;
}

// What the event teaches about the transaction besides the sub-record.
void save_transaction_facts(StoreView& store, storage::PaymentTransactionRow& row, const Event& ev,
                            bool new_row) {
  fill(row.currency, ev.payload.currency);
  fill(row.account_id, ev.envelope.subject_account_id);
  const bool had_request = row.payment_request_id.has_value();
  fill(row.payment_request_id, ev.payload.payment_request_id);
  if (new_row && !row.payment_request_id) {
    row.payment_request_id = store.request_for_transaction(row.id);
  }
  store.save_transaction(row);
  if (!had_request && row.payment_request_id) link_request(store, *row.payment_request_id, row.id);
}

// Only the transaction's `amount` came with the capture / refund: booking it
// could book a partial capture as the whole amount. Read the capture / refund
// instead; the worker books it from Klarna's answer (same id, so once).
Effects queue_read(StoreView& store, const Event& ev, SubRecordKind k,
                   storage::PaymentTransactionRow& row, bool new_row) {
  Effects e;
  e.from_state = row.state;
  e.to_state = row.state;
  const std::string kind(kind_name(k));
  const std::string& id = *sub_record_id(ev.payload, k);
  if (sub_record_exists(store, row.id, kind, id)) {
    e.outcome = Outcome::stale;
    e.reason = kind + " " + id + " already recorded";
    return e;
  }
  e.outcome = Outcome::applied;
  e.reason = kind + " amount ambiguous";
  save_transaction_facts(store, row, ev, new_row);
  if (k == SubRecordKind::capture) {
    e.follow_ups.push_back(ReadCapture{row.id, id});
  } else {
    e.follow_ups.push_back(ReadRefund{row.id, id});
  }
  e.account_id = row.account_id.value_or("");
  e.read_discriminator = "book";  // one read per capture / refund, however often announced
  return e;
}

}  // namespace

Effects apply_sub_record(StoreView& store, const Event& ev, const SubRecordAdded& a) {
  const std::string& id = ev.envelope.entity_id;
  auto row = store.find_transaction(id);
  const bool new_row = !row;
  if (!row) {
    row.emplace();
    row->id = id;
    row->last_event_id = ev.envelope.event_id;
  }
  if (ev.payload.amount_ambiguous) return queue_read(store, ev, a.kind, *row, new_row);
  Effects e;
  e.from_state = row->state;
  e.to_state = row->state;
  const auto sub = sub_record(ev, a.kind);
  // The sub-record's own id is the idempotency unit: a capture is counted
  // once however many events announce it.
  if (!store.insert_sub_record(sub)) {
    e.outcome = Outcome::stale;
    e.reason = sub.kind + " " + sub.id + " already recorded";
    return e;
  }
  total_of(*row, a.kind) += sub.amount;
  e.outcome = Outcome::applied;
  e.reason = sub.kind + " " + sub.id + " recorded: " + std::to_string(sub.amount);
  save_transaction_facts(store, *row, ev, new_row);
  std::optional<std::int64_t> remaining;
  if (row->amount) remaining = *row->amount - row->captured_amount;
  e.state_change = ChangeMessage("payment_transaction", ev, row->state, row->state)
                       .maybe("amount", row->amount)
                       .maybe("currency", row->currency)
                       .maybe("captured_amount", std::optional(row->captured_amount))
                       .maybe("refunded_amount", std::optional(row->refunded_amount))
                       .maybe("chargeback_amount", std::optional(row->chargeback_amount))
                       .maybe("remaining_amount", remaining)
                       .done();
  return e;
}

}  // namespace kpay::processor::appliers
