// Inbox, payment entities, records, history and settlement events on
// PostgreSQL (pg_state.hpp); the SQLite twins are in state_store.cpp and
// state_store_settlements.cpp.
#include "inbox_schema.hpp"
#include "postgres/pg_state.hpp"

namespace kpay::storage::pg {

bool PgState::insert_inbox(const InboxEntry& e) {
  Params p = params(e.event_id, e.topic, e.partition, e.offset);
  // The same 8-byte digest prefix as SQLite's inbox (schema v14, inbox_schema.hpp).
  p.add_optional_bytes(e.digest.empty()
                           ? std::nullopt
                           : std::optional<std::string>(e.digest.substr(0, kInboxDigestBytes)));
  return c_.query(
               "INSERT INTO inbox (event_id, topic, partition, \"offset\", digest) "
               "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING",
               p)
             .affected() == 1;
}

std::optional<InboxEntry> PgState::find_inbox(const std::string& event_id) {
  Result r = c_.query("SELECT topic, partition, \"offset\", digest FROM inbox WHERE event_id = $1",
                      params(event_id));
  if (r.rows() == 0) return std::nullopt;
  return InboxEntry{event_id, r.text(0, 0), static_cast<std::int32_t>(r.int64(0, 1)), r.int64(0, 2),
                    r.optional_bytea(0, 3).value_or("")};
}

std::optional<PaymentRequestRow> PgState::find_request(const std::string& id) {
  Result r = c_.query(
      "SELECT generation, state, state_as_of_ms, reference, amount, currency, "
      "payment_transaction_id, expires_at_ms, authorization_due_ms, last_event_id, account_id, "
      "authorization_result FROM payment_requests WHERE id = $1",
      params(id));
  if (r.rows() == 0) return std::nullopt;
  PaymentRequestRow q;
  q.id = id;
  q.generation = static_cast<int>(r.int64(0, 0));
  q.state = r.optional_text(0, 1);
  q.state_as_of_ms = r.int64(0, 2);
  q.reference = r.optional_text(0, 3);
  q.amount = r.optional_int64(0, 4);
  q.currency = r.optional_text(0, 5);
  q.payment_transaction_id = r.optional_text(0, 6);
  q.expires_at_ms = r.optional_int64(0, 7);
  q.authorization_due_ms = r.optional_int64(0, 8);
  q.last_event_id = r.text(0, 9);
  q.account_id = r.optional_text(0, 10);
  q.authorization_result = r.optional_text(0, 11);
  return q;
}

void PgState::save_request(const PaymentRequestRow& q) {
  Params p = params(q.id, q.generation, q.state, q.state_as_of_ms, q.reference, q.amount);
  p.add(q.currency).add(q.payment_transaction_id).add(q.expires_at_ms).add(q.authorization_due_ms);
  p.add(q.last_event_id).add(q.account_id).add(q.authorization_result);
  c_.write(
      "INSERT INTO payment_requests (id, generation, state, state_as_of_ms, reference, amount, "
      "currency, payment_transaction_id, expires_at_ms, authorization_due_ms, last_event_id, "
      "account_id, authorization_result) "
      "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) "
      "ON CONFLICT (id) DO UPDATE SET generation = EXCLUDED.generation, "
      "state = EXCLUDED.state, state_as_of_ms = EXCLUDED.state_as_of_ms, "
      "reference = EXCLUDED.reference, amount = EXCLUDED.amount, currency = EXCLUDED.currency, "
      "payment_transaction_id = EXCLUDED.payment_transaction_id, "
      "expires_at_ms = EXCLUDED.expires_at_ms, "
      "authorization_due_ms = EXCLUDED.authorization_due_ms, "
      "last_event_id = EXCLUDED.last_event_id, account_id = EXCLUDED.account_id, "
      "authorization_result = EXCLUDED.authorization_result",
      std::move(p));
}

std::optional<PaymentTransactionRow> PgState::find_transaction(const std::string& id) {
  Result r = c_.query(
      "SELECT state, state_as_of_ms, reference, amount, currency, payment_request_id, "
      "expires_at_ms, captured_amount, refunded_amount, chargeback_amount, funding_state, "
      "funding_as_of_ms, last_event_id, account_id FROM payment_transactions WHERE id = $1",
      params(id));
  if (r.rows() == 0) return std::nullopt;
  PaymentTransactionRow t;
  t.id = id;
  t.state = r.optional_text(0, 0);
  t.state_as_of_ms = r.int64(0, 1);
  t.reference = r.optional_text(0, 2);
  t.amount = r.optional_int64(0, 3);
  t.currency = r.optional_text(0, 4);
  t.payment_request_id = r.optional_text(0, 5);
  t.expires_at_ms = r.optional_int64(0, 6);
  t.captured_amount = r.int64(0, 7);
  t.refunded_amount = r.int64(0, 8);
  t.chargeback_amount = r.int64(0, 9);
  t.funding_state = r.optional_text(0, 10);
  t.funding_as_of_ms = r.int64(0, 11);
  t.last_event_id = r.text(0, 12);
  t.account_id = r.optional_text(0, 13);
  return t;
}

void PgState::save_transaction(const PaymentTransactionRow& t) {
  Params p = params(t.id, t.state, t.state_as_of_ms, t.reference, t.amount, t.currency);
  p.add(t.payment_request_id).add(t.expires_at_ms).add(t.captured_amount).add(t.refunded_amount);
  p.add(t.chargeback_amount).add(t.funding_state).add(t.funding_as_of_ms).add(t.last_event_id);
  p.add(t.account_id);
  c_.write(
      "INSERT INTO payment_transactions (id, state, state_as_of_ms, reference, amount, currency, "
      "payment_request_id, expires_at_ms, captured_amount, refunded_amount, chargeback_amount, "
      "funding_state, funding_as_of_ms, last_event_id, account_id) "
      "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) "
      "ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, "
      "state_as_of_ms = EXCLUDED.state_as_of_ms, reference = EXCLUDED.reference, "
      "amount = EXCLUDED.amount, currency = EXCLUDED.currency, "
      "payment_request_id = EXCLUDED.payment_request_id, "
      "expires_at_ms = EXCLUDED.expires_at_ms, captured_amount = EXCLUDED.captured_amount, "
      "refunded_amount = EXCLUDED.refunded_amount, "
      "chargeback_amount = EXCLUDED.chargeback_amount, funding_state = EXCLUDED.funding_state, "
      "funding_as_of_ms = EXCLUDED.funding_as_of_ms, last_event_id = EXCLUDED.last_event_id, "
      "account_id = EXCLUDED.account_id",
      std::move(p));
}

// The first request of a transaction and the first transaction of a request:
// by the (foreign id, id) indexes of migration 16, whatever plan the prepared
// statement gets (pg_plans_test.cpp).
std::optional<std::string> PgState::request_for_transaction(const std::string& transaction_id) {
  Result r = c_.query(
      "SELECT id FROM payment_requests WHERE payment_transaction_id = $1 ORDER BY id LIMIT 1",
      params(transaction_id));
  if (r.rows() == 0) return std::nullopt;
  return r.text(0, 0);
}

std::optional<std::string> PgState::transaction_for_request(const std::string& request_id) {
  Result r = c_.query(
      "SELECT id FROM payment_transactions WHERE payment_request_id = $1 ORDER BY id LIMIT 1",
      params(request_id));
  if (r.rows() == 0) return std::nullopt;
  return r.text(0, 0);
}

bool PgState::insert_sub_record(const SubRecordRow& s) {
  Params p = params(s.kind, s.id, s.transaction_id, s.amount, s.currency, s.capture_id);
  p.add(s.occurred_at_ms).add(s.event_id);
  return c_.query(
               "INSERT INTO transaction_sub_records (kind, id, transaction_id, amount, currency, "
               "capture_id, occurred_at_ms, event_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
               "ON CONFLICT (kind, id) DO NOTHING",
               p)
             .affected() == 1;
}

namespace {
// kind, id, transaction_id, amount, currency, capture_id, occurred_at_ms, event_id
SubRecordRow sub_record(const Result& r, int i) {
  SubRecordRow s;
  s.kind = r.text(i, 0);
  s.id = r.text(i, 1);
  s.transaction_id = r.text(i, 2);
  s.amount = r.int64(i, 3);
  s.currency = r.optional_text(i, 4);
  s.capture_id = r.optional_text(i, 5);
  s.occurred_at_ms = r.int64(i, 6);
  s.event_id = r.text(i, 7);
  return s;
}
constexpr std::string_view kSubRecordSelect =
    "SELECT kind, id, transaction_id, amount, currency, capture_id, occurred_at_ms, event_id "
    "FROM transaction_sub_records ";
}  // namespace

std::vector<SubRecordRow> PgState::sub_records(const std::string& transaction_id) {
  Result r = c_.query(
      std::string(kSubRecordSelect) + "WHERE transaction_id = $1 ORDER BY occurred_at_ms, kind, id",
      params(transaction_id));
  std::vector<SubRecordRow> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(sub_record(r, i));
  return out;
}

std::optional<SubRecordRow> PgState::find_sub_record(const std::string& kind,
                                                     const std::string& id) {
  Result r =
      c_.query(std::string(kSubRecordSelect) + "WHERE kind = $1 AND id = $2", params(kind, id));
  if (r.rows() == 0) return std::nullopt;
  return sub_record(r, 0);
}

std::optional<RecordRow> PgState::find_record(const std::string& kind, const std::string& id) {
  Result r = c_.query(
      "SELECT state, state_as_of_ms, sub_state, sub_state_as_of_ms, amount, currency, "
      "last_event_id FROM records WHERE kind = $1 AND id = $2",
      params(kind, id));
  if (r.rows() == 0) return std::nullopt;
  return RecordRow{kind,
                   id,
                   r.optional_text(0, 0),
                   r.int64(0, 1),
                   r.optional_text(0, 2),
                   r.int64(0, 3),
                   r.optional_int64(0, 4),
                   r.optional_text(0, 5),
                   r.text(0, 6)};
}

void PgState::save_record(const RecordRow& x) {
  Params p = params(x.kind, x.id, x.state, x.state_as_of_ms, x.sub_state, x.sub_state_as_of_ms);
  p.add(x.amount).add(x.currency).add(x.last_event_id);
  c_.write(
      "INSERT INTO records (kind, id, state, state_as_of_ms, sub_state, sub_state_as_of_ms, "
      "amount, currency, last_event_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
      "ON CONFLICT (kind, id) DO UPDATE SET state = EXCLUDED.state, "
      "state_as_of_ms = EXCLUDED.state_as_of_ms, sub_state = EXCLUDED.sub_state, "
      "sub_state_as_of_ms = EXCLUDED.sub_state_as_of_ms, amount = EXCLUDED.amount, "
      "currency = EXCLUDED.currency, last_event_id = EXCLUDED.last_event_id",
      std::move(p));
}

void PgState::append_history(const HistoryRow& h) {
  Params p = params(h.event_id, h.entity_kind, h.entity_id, h.event_type, h.event_version);
  p.add(h.occurred_at).add(h.outcome).add(h.from_state).add(h.to_state).add(h.reason);
  p.add(h.topic).add(h.partition).add(h.offset).add(null_if_empty(h.traceparent));
  p.add(h.recorded_at_ms).add(null_if_empty(h.received_at)).add(h.kafka_timestamp_ms);
  c_.write_late(
      "history",
      "INSERT INTO history (event_id, entity_kind, entity_id, event_type, event_version, "
      "occurred_at, outcome, from_state, to_state, reason, topic, partition, \"offset\", "
      "traceparent, recorded_at_ms, received_at, kafka_timestamp_ms) "
      "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
      std::move(p));
}

std::vector<HistoryRow> PgState::history(const std::string& entity_id) {
  Result r = c_.query(
      "SELECT seq, event_id, entity_kind, event_type, event_version, occurred_at, outcome, "
      "from_state, to_state, reason, topic, partition, \"offset\", traceparent, "
      "recorded_at_ms, received_at, kafka_timestamp_ms FROM history "
      "WHERE entity_id = $1 ORDER BY seq",
      params(entity_id));
  std::vector<HistoryRow> out;
  for (int i = 0; i < r.rows(); ++i) {
    HistoryRow h;
    h.seq = r.int64(i, 0);
    h.event_id = r.text(i, 1);
    h.entity_kind = r.text(i, 2);
    h.entity_id = entity_id;
    h.event_type = r.text(i, 3);
    h.event_version = r.text(i, 4);
    h.occurred_at = r.text(i, 5);
    h.outcome = r.text(i, 6);
    h.from_state = r.optional_text(i, 7);
    h.to_state = r.optional_text(i, 8);
    h.reason = r.text(i, 9);
    h.topic = r.text(i, 10);
    h.partition = static_cast<std::int32_t>(r.int64(i, 11));
    h.offset = r.int64(i, 12);
    h.traceparent = r.optional_text(i, 13).value_or("");
    h.recorded_at_ms = r.optional_int64(i, 14).value_or(0);
    h.received_at = r.optional_text(i, 15).value_or("");
    h.kafka_timestamp_ms = r.optional_int64(i, 16);
    out.push_back(std::move(h));
  }
  return out;
}

bool PgState::insert_settlement_event(const SettlementEventRow& s) {
  Params p = params(s.event_id, s.event_type, s.entity_id, s.routed_by, s.account_id);
  p.add(s.settlement_id).add(s.payout_id).add(s.report_id).add(s.report_json_url);
  p.add(s.report_csv_url).add(s.amount).add(s.currency).add(s.payout_date).add(s.period_start);
  p.add(s.period_end).add(s.links_json).add(s.occurred_at_ms);
  return c_.query(
               "INSERT INTO settlement_events (event_id, event_type, entity_id, routed_by, "
               "account_id, settlement_id, payout_id, report_id, report_json_url, "
               "report_csv_url, amount, currency, payout_date, period_start, period_end, "
               "links_json, occurred_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, "
               "$11, $12, $13, $14, $15, $16, $17) ON CONFLICT (event_id) DO NOTHING",
               p)
             .affected() == 1;
}

std::vector<SettlementEventRow> PgState::settlement_events(std::size_t limit) {
  Result r = c_.query(
      "SELECT event_id, event_type, entity_id, routed_by, account_id, settlement_id, payout_id, "
      "report_id, report_json_url, report_csv_url, amount, currency, payout_date, period_start, "
      "period_end, links_json, occurred_at_ms FROM settlement_events "
      "ORDER BY occurred_at_ms DESC, event_id LIMIT $1",
      params(static_cast<std::int64_t>(limit)));
  std::vector<SettlementEventRow> out;
  for (int i = 0; i < r.rows(); ++i) {
    SettlementEventRow s;
    s.event_id = r.text(i, 0);
    s.event_type = r.text(i, 1);
    s.entity_id = r.text(i, 2);
    s.routed_by = r.text(i, 3);
    s.account_id = r.optional_text(i, 4);
    s.settlement_id = r.optional_text(i, 5);
    s.payout_id = r.optional_text(i, 6);
    s.report_id = r.optional_text(i, 7);
    s.report_json_url = r.optional_text(i, 8);
    s.report_csv_url = r.optional_text(i, 9);
    s.amount = r.optional_int64(i, 10);
    s.currency = r.optional_text(i, 11);
    s.payout_date = r.optional_text(i, 12);
    s.period_start = r.optional_text(i, 13);
    s.period_end = r.optional_text(i, 14);
    s.links_json = r.text(i, 15);
    s.occurred_at_ms = r.int64(i, 16);
    out.push_back(std::move(s));
  }
  return out;
}

}  // namespace kpay::storage::pg
