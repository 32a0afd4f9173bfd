// Downstream commands, payment contexts and the counts klarnactl shows, on
// PostgreSQL (pg_state.hpp); the SQLite twins are in state_store_commands.cpp
// and state_store_overview.cpp.
#include "postgres/pg_rows.hpp"
#include "postgres/pg_state.hpp"

namespace kpay::storage::pg {

namespace {

constexpr std::string_view kContextColumns =
    "command_id, payment_request_id, payment_request_reference, account_id, amount, currency, "
    "capture_now, payment_transaction_reference, supplementary_purchase_data, "
    "interoperability_token, interoperability_data, created_at_ms";

PaymentContextRow context(const Result& r, int i) {
  PaymentContextRow c;
  c.command_id = r.text(i, 0);
  c.payment_request_id = r.optional_text(i, 1);
  c.payment_request_reference = r.optional_text(i, 2);
  c.account_id = r.text(i, 3);
  c.amount = r.int64(i, 4);
  c.currency = r.text(i, 5);
  c.capture_now = r.boolean(i, 6);
  c.payment_transaction_reference = r.optional_text(i, 7);
  c.supplementary_purchase_data = r.optional_text(i, 8);
  c.interoperability_token = r.optional_text(i, 9);
  c.interoperability_data = r.optional_text(i, 10);
  c.created_at_ms = r.int64(i, 11);
  return c;
}

std::vector<CountRow> counts(const Result& r) {
  std::vector<CountRow> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back({r.text(i, 0), r.text(i, 1), r.int64(i, 2)});
  return out;
}

}  // namespace

bool PgState::insert_command(const CommandRow& c) {
  Params p = params(c.command_id, c.type);
  p.add_bytes(c.key).add(c.body_hash).add(to_string(c.status)).add(c.reason).add(c.entity_id);
  p.add(c.outbox_id).add(c.created_at_ms).add(c.updated_at_ms).add(c.sender).add(c.sender_key_id);
  return c_.query(
               "INSERT INTO commands (command_id, type, key, body_hash, status, reason, "
               "entity_id, outbox_id, created_at_ms, updated_at_ms, sender, sender_key_id) "
               "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
               "ON CONFLICT (command_id) DO NOTHING",
               p)
             .affected() == 1;
}

std::optional<CommandRow> PgState::find_command(const std::string& command_id) {
  Result r = c_.query(
      "SELECT type, key, body_hash, status, reason, entity_id, outbox_id, created_at_ms, "
      "updated_at_ms, sender, sender_key_id FROM commands WHERE command_id = $1",
      params(command_id));
  if (r.rows() == 0) return std::nullopt;
  CommandRow c;
  c.command_id = command_id;
  c.type = r.text(0, 0);
  c.key = r.bytea(0, 1);
  c.body_hash = r.text(0, 2);
  c.status = stored(parse_command_status(r.view(0, 3)), "command status", r.text(0, 3));
  c.reason = r.optional_text(0, 4);
  c.entity_id = r.optional_text(0, 5);
  c.outbox_id = r.optional_int64(0, 6);
  c.created_at_ms = r.int64(0, 7);
  c.updated_at_ms = r.int64(0, 8);
  c.sender = r.optional_text(0, 9);
  c.sender_key_id = r.optional_text(0, 10);
  return c;
}

void PgState::finish_command(const std::string& command_id, CommandStatus status,
                             const std::optional<std::string>& reason, std::int64_t now_ms) {
  c_.write("UPDATE commands SET status = $1, reason = $2, updated_at_ms = $3 WHERE command_id = $4",
           params(to_string(status), reason, now_ms, command_id));
}

void PgState::save_payment_context(const PaymentContextRow& c) {
  Params p = params(c.command_id, c.payment_request_id, c.payment_request_reference);
  p.add(c.account_id).add(c.amount).add(c.currency).add(c.capture_now);
  p.add(c.payment_transaction_reference).add(c.supplementary_purchase_data);
  p.add(c.interoperability_token).add(c.interoperability_data).add(c.created_at_ms);
  std::string sql = "INSERT INTO payment_contexts (";
  sql.append(kContextColumns)
      .append(
          ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
          "ON CONFLICT (command_id) DO UPDATE SET payment_request_id = "
          "EXCLUDED.payment_request_id, "
          "payment_request_reference = EXCLUDED.payment_request_reference, "
          "account_id = EXCLUDED.account_id, amount = EXCLUDED.amount, "
          "currency = EXCLUDED.currency, capture_now = EXCLUDED.capture_now, "
          "payment_transaction_reference = EXCLUDED.payment_transaction_reference, "
          "supplementary_purchase_data = EXCLUDED.supplementary_purchase_data, "
          "interoperability_token = EXCLUDED.interoperability_token, "
          "interoperability_data = EXCLUDED.interoperability_data, "
          "created_at_ms = EXCLUDED.created_at_ms");
  c_.write(sql, std::move(p));
}

std::optional<PaymentContextRow> PgState::find_payment_context(
    const std::string& payment_request_id, const std::optional<std::string>& reference) {
  std::string sql = "SELECT ";
  sql.append(kContextColumns)
      .append(
          " FROM payment_contexts WHERE payment_request_id = $1 OR ($2::TEXT IS NOT NULL AND "
          "payment_request_id IS NULL AND payment_request_reference = $2) "
          "ORDER BY payment_request_id IS NULL, created_at_ms DESC, command_id DESC LIMIT 1");
  Result r = c_.query(sql, params(payment_request_id, reference));
  if (r.rows() == 0) return std::nullopt;
  return context(r, 0);
}

bool PgState::attach_payment_context(const std::string& command_id,
                                     const std::string& payment_request_id) {
  return c_.query("UPDATE payment_contexts SET payment_request_id = $1 WHERE command_id = $2",
                  params(payment_request_id, command_id))
             .affected() == 1;
}

Overview PgState::overview() {
  Overview o;
  o.payments = counts(c_.query(
      "SELECT 'payment_request', COALESCE(state, $1), COUNT(*) FROM payment_requests GROUP BY 2 "
      "UNION ALL SELECT 'payment_transaction', COALESCE(state, $1), COUNT(*) "
      "FROM payment_transactions GROUP BY 2 ORDER BY 1, 2",
      params(kNoStateYet)));
  o.calls = counts(
      c_.query("SELECT operation, status, COUNT(*) FROM outbox GROUP BY 1, 2 ORDER BY 1, 2"));
  o.commands = command_counts();
  o.dead_letters = c_.query("SELECT COUNT(*) FROM poison_messages").int64(0, 0);
  return o;
}

std::vector<CountRow> PgState::command_counts() {
  return counts(
      c_.query("SELECT type, status, COUNT(*) FROM commands GROUP BY 1, 2 ORDER BY 1, 2"));
}

}  // namespace kpay::storage::pg
