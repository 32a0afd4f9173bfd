// The entities: payment requests and transactions (each with its link to the
// other), their sub-records, and the other records (disputes, settlements,
// payouts, accounts) kept by kind and id.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kpay/storage/state_store.hpp"
#include "state_store_impl.hpp"

namespace kpay::storage {

namespace {

bool in_transaction(Database& db) {
  return sqlite3_get_autocommit(db.handle()) == 0;
}

// Remembers row `id` (existing or not, with its link) for the rest of the
// transaction; nothing outside one.
void remember(Database& db, std::optional<StoredLink>& slot, const std::string& id, bool exists,
              const std::optional<std::string>& link) {
  if (!in_transaction(db)) {
    slot.reset();
    return;
  }
  if (!slot) slot.emplace();
  slot->id.assign(id);  // keeps the strings' buffers from one event to the next
  slot->exists = exists;
  if (!link) {
    slot->link.reset();
  } else if (slot->link) {
    slot->link->assign(*link);
  } else {
    slot->link = link;
  }
}

// Whether an upsert of row `id` may leave its link column out of its UPDATE
// part: the row is known to be absent (the INSERT part writes the link) or
// to hold `link` already. An UPDATE that assigns an indexed column rewrites
// its index entry even for the same value, a dirty index page per upsert
// (docs/performance/processor.md, "Statement census").
bool link_unchanged(Database& db, const std::optional<StoredLink>& known, const std::string& id,
                    const std::optional<std::string>& link) {
  return known && in_transaction(db) && known->id == id && (!known->exists || known->link == link);
}

Statement& prep_joined(Database& db, std::optional<Statement>& s, std::string_view head,
                       std::string_view tail) {
  if (!s) s.emplace(db.prepare(std::string(head).append(tail)));
  return *s;
}

constexpr std::string_view kSaveRequest =
    "INSERT INTO payment_requests (id, generation, state, state_as_of_ms, reference, amount, "
    "currency, payment_transaction_id, expires_at_ms, authorization_due_ms, last_event_id, "
    "account_id, authorization_result) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
    "generation=excluded.generation, state=excluded.state, "
    "state_as_of_ms=excluded.state_as_of_ms, reference=excluded.reference, "
    "amount=excluded.amount, currency=excluded.currency, "
    "expires_at_ms=excluded.expires_at_ms, authorization_due_ms=excluded.authorization_due_ms, "
    "last_event_id=excluded.last_event_id, account_id=excluded.account_id, "
    "authorization_result=excluded.authorization_result";
constexpr std::string_view kSaveTransaction =
    "INSERT INTO payment_transactions (id, state, state_as_of_ms, reference, amount, currency, "
    "payment_request_id, expires_at_ms, captured_amount, refunded_amount, chargeback_amount, "
    "funding_state, funding_as_of_ms, last_event_id, account_id) "
    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) "
    "ON CONFLICT(id) DO UPDATE SET state=excluded.state, "
    "state_as_of_ms=excluded.state_as_of_ms, reference=excluded.reference, "
    "amount=excluded.amount, currency=excluded.currency, "
    "expires_at_ms=excluded.expires_at_ms, "
    "captured_amount=excluded.captured_amount, refunded_amount=excluded.refunded_amount, "
    "chargeback_amount=excluded.chargeback_amount, funding_state=excluded.funding_state, "
    "funding_as_of_ms=excluded.funding_as_of_ms, last_event_id=excluded.last_event_id, "
    "account_id=excluded.account_id";

}  // namespace

std::optional<PaymentRequestRow> StateStore::find_request(const std::string& id) {
  auto& s = impl_->prep(impl_->find_request,
                        "SELECT generation, state, state_as_of_ms, reference, amount, currency, "
                        "payment_transaction_id, expires_at_ms, authorization_due_ms, "
                        "last_event_id, account_id, authorization_result "
                        "FROM payment_requests WHERE id = ?");
  s.bind_view(1, id);
  std::optional<PaymentRequestRow> r;
  if (s.step()) {
    r.emplace();
    r->id = id;
    r->generation = static_cast<int>(s.int64(0));
    r->state = s.optional_text(1);
    r->state_as_of_ms = s.int64(2);
    r->reference = s.optional_text(3);
    r->amount = s.optional_int64(4);
    r->currency = s.optional_text(5);
    r->payment_transaction_id = s.optional_text(6);
    r->expires_at_ms = s.optional_int64(7);
    r->authorization_due_ms = s.optional_int64(8);
    r->last_event_id = s.text(9);
    r->account_id = s.optional_text(10);
    r->authorization_result = s.optional_text(11);
  }
  s.reset();
  remember(impl_->db, impl_->links.request, id, r.has_value(),
           r ? r->payment_transaction_id : std::nullopt);
  return r;
}

void StateStore::save_request(const PaymentRequestRow& r) {
  auto& db = impl_->db;
  auto& s = link_unchanged(db, impl_->links.request, r.id, r.payment_transaction_id)
                ? prep_joined(db, impl_->save_request_same_link, kSaveRequest, "")
                : prep_joined(db, impl_->save_request, kSaveRequest,
                              ", payment_transaction_id=excluded.payment_transaction_id");
  s.bind_view(1, r.id).bind_view(2, r.generation);
  s.bind_view(3, r.state);
  s.bind_view(4, r.state_as_of_ms);
  s.bind_view(5, r.reference);
  s.bind_view(6, r.amount);
  s.bind_view(7, r.currency);
  s.bind_view(8, r.payment_transaction_id);
  s.bind_view(9, r.expires_at_ms);
  s.bind_view(10, r.authorization_due_ms);
  s.bind_view(11, r.last_event_id);
  s.bind_view(12, r.account_id);
  s.bind_view(13, r.authorization_result);
  s.run();
  remember(db, impl_->links.request, r.id, true, r.payment_transaction_id);
}

std::optional<PaymentTransactionRow> StateStore::find_transaction(const std::string& id) {
  auto& s = impl_->prep(impl_->find_transaction,
                        "SELECT state, state_as_of_ms, reference, amount, currency, "
                        "payment_request_id, expires_at_ms, captured_amount, refunded_amount, "
                        "chargeback_amount, funding_state, funding_as_of_ms, last_event_id, "
                        "account_id FROM payment_transactions WHERE id = ?");
  s.bind_view(1, id);
  std::optional<PaymentTransactionRow> t;
  if (s.step()) {
    t.emplace();
    t->id = id;
    t->state = s.optional_text(0);
    t->state_as_of_ms = s.int64(1);
    t->reference = s.optional_text(2);
    t->amount = s.optional_int64(3);
    t->currency = s.optional_text(4);
    t->payment_request_id = s.optional_text(5);
    t->expires_at_ms = s.optional_int64(6);
    t->captured_amount = s.int64(7);
    t->refunded_amount = s.int64(8);
    t->chargeback_amount = s.int64(9);
    t->funding_state = s.optional_text(10);
    t->funding_as_of_ms = s.int64(11);
    t->last_event_id = s.text(12);
    t->account_id = s.optional_text(13);
  }
  s.reset();
  remember(impl_->db, impl_->links.transaction, id, t.has_value(),
           t ? t->payment_request_id : std::nullopt);
  return t;
}

void StateStore::save_transaction(const PaymentTransactionRow& t) {
  auto& db = impl_->db;
  auto& s = link_unchanged(db, impl_->links.transaction, t.id, t.payment_request_id)
                ? prep_joined(db, impl_->save_transaction_same_link, kSaveTransaction, "")
                : prep_joined(db, impl_->save_transaction, kSaveTransaction,
                              ", payment_request_id=excluded.payment_request_id");
  s.bind_view(1, t.id);
  s.bind_view(2, t.state);
  s.bind_view(3, t.state_as_of_ms);
  s.bind_view(4, t.reference);
  s.bind_view(5, t.amount);
  s.bind_view(6, t.currency);
  s.bind_view(7, t.payment_request_id);
  s.bind_view(8, t.expires_at_ms);
  s.bind_view(9, t.captured_amount)
      .bind_view(10, t.refunded_amount)
      .bind_view(11, t.chargeback_amount);
  s.bind_view(12, t.funding_state);
  s.bind_view(13, t.funding_as_of_ms).bind_view(14, t.last_event_id);
  s.bind_view(15, t.account_id);
  s.run();
  remember(db, impl_->links.transaction, t.id, true, t.payment_request_id);
}

std::optional<std::string> StateStore::request_for_transaction(const std::string& transaction_id) {
  auto& s = impl_->prep(impl_->request_for_transaction,
                        "SELECT id FROM payment_requests WHERE payment_transaction_id = ? "
                        "ORDER BY id LIMIT 1");
  s.bind_view(1, transaction_id);
  std::optional<std::string> id;
  if (s.step()) id = s.text(0);
  s.reset();
  return id;
}

std::optional<std::string> StateStore::transaction_for_request(const std::string& request_id) {
  auto& s = impl_->prep(impl_->transaction_for_request,
                        "SELECT id FROM payment_transactions WHERE payment_request_id = ? "
                        "ORDER BY id LIMIT 1");
  s.bind_view(1, request_id);
  std::optional<std::string> id;
  if (s.step()) id = s.text(0);
  s.reset();
  return id;
}

bool StateStore::insert_sub_record(const SubRecordRow& r) {
  auto& s = impl_->prep(impl_->insert_sub_record,
                        "INSERT OR IGNORE INTO transaction_sub_records (kind, id, transaction_id, "
                        "amount, currency, capture_id, occurred_at_ms, event_id) "
                        "VALUES (?,?,?,?,?,?,?,?)");
  s.bind_view(1, r.kind).bind_view(2, r.id).bind_view(3, r.transaction_id).bind_view(4, r.amount);
  s.bind_view(5, r.currency);
  s.bind_view(6, r.capture_id);
  s.bind_view(7, r.occurred_at_ms).bind_view(8, r.event_id);
  s.run();
  return impl_->db.changes() == 1;
}

std::vector<SubRecordRow> StateStore::sub_records(const std::string& transaction_id) {
  auto s = impl_->db.prepare(
      "SELECT kind, id, amount, currency, capture_id, occurred_at_ms, event_id "
      "FROM transaction_sub_records WHERE transaction_id = ? ORDER BY occurred_at_ms, kind, id");
  s.bind(1, transaction_id);
  std::vector<SubRecordRow> out;
  while (s.step()) {
    SubRecordRow r;
    r.kind = s.text(0);
    r.id = s.text(1);
    r.transaction_id = transaction_id;
    r.amount = s.int64(2);
    r.currency = s.optional_text(3);
    r.capture_id = s.optional_text(4);
    r.occurred_at_ms = s.int64(5);
    r.event_id = s.text(6);
    out.push_back(std::move(r));
  }
  return out;
}

std::optional<RecordRow> StateStore::find_record(const std::string& kind, const std::string& id) {
  auto& s = impl_->prep(impl_->find_record,
                        "SELECT state, state_as_of_ms, sub_state, sub_state_as_of_ms, amount, "
                        "currency, last_event_id FROM records WHERE kind = ? AND id = ?");
  s.bind_view(1, kind).bind_view(2, id);
  std::optional<RecordRow> r;
  if (s.step()) {
    r.emplace();
    r->kind = kind;
    r->id = id;
    r->state = s.optional_text(0);
    r->state_as_of_ms = s.int64(1);
    r->sub_state = s.optional_text(2);
    r->sub_state_as_of_ms = s.int64(3);
    r->amount = s.optional_int64(4);
    r->currency = s.optional_text(5);
    r->last_event_id = s.text(6);
  }
  s.reset();
  return r;
}

void StateStore::save_record(const RecordRow& r) {
  auto& s = impl_->prep(impl_->save_record,
                        "INSERT OR REPLACE INTO records (kind, id, state, state_as_of_ms, "
                        "sub_state, sub_state_as_of_ms, amount, currency, last_event_id) "
                        "VALUES (?,?,?,?,?,?,?,?,?)");
  s.bind_view(1, r.kind).bind_view(2, r.id);
  s.bind_view(3, r.state);
  s.bind_view(4, r.state_as_of_ms);
  s.bind_view(5, r.sub_state);
  s.bind_view(6, r.sub_state_as_of_ms);
  s.bind_view(7, r.amount);
  s.bind_view(8, r.currency);
  s.bind_view(9, r.last_event_id);
  s.run();
}

}  // namespace kpay::storage
