// The downstream commands' part of the state store (migration v4; the sender
// columns v13): the command inbox, payment contexts, and the money outbox rows have yet to move.
// Their statements run for every command and are prepared once (Impl).
#include "kpay/storage/state_store.hpp"
#include "state_store_impl.hpp"

namespace kpay::storage {

namespace {

constexpr std::string_view kContextColumns =
    "command_id, payment_request_id, payment_request_reference, account_id, amount, currency, "
    "capture_now, payment_transaction_reference, supplementary_purchase_data, "
    "interoperability_token, interoperability_data, created_at_ms";

PaymentContextRow read_context(Statement& s) {
  PaymentContextRow c;
  c.command_id = s.text(0);
  c.payment_request_id = s.optional_text(1);
  c.payment_request_reference = s.optional_text(2);
  c.account_id = s.text(3);
  c.amount = s.int64(4);
  c.currency = s.text(5);
  c.capture_now = s.int64(6) != 0;
  c.payment_transaction_reference = s.optional_text(7);
  c.supplementary_purchase_data = s.optional_text(8);
  c.interoperability_token = s.optional_text(9);
  c.interoperability_data = s.optional_text(10);
  c.created_at_ms = s.int64(11);
  return c;
}

}  // namespace

bool StateStore::insert_command(const CommandRow& c) {
  auto& s = impl_->prep(
      impl_->insert_command,
      "INSERT OR IGNORE INTO commands (command_id, type, key, body_hash, status, reason, "
      "entity_id, outbox_id, created_at_ms, updated_at_ms, sender, sender_key_id) "
      "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)");
  s.bind(1, c.command_id).bind(2, c.type).bind_blob(3, c.key).bind(4, c.body_hash);
  s.bind(5, to_string(c.status)).bind(6, c.reason).bind(7, c.entity_id).bind(8, c.outbox_id);
  s.bind(9, c.created_at_ms).bind(10, c.updated_at_ms).bind(11, c.sender);
  s.bind(12, c.sender_key_id);
  s.run();
  return database().changes() == 1;
}

std::optional<CommandRow> StateStore::find_command(const std::string& command_id) {
  auto& s = impl_->prep(impl_->find_command,
                        "SELECT type, key, body_hash, status, reason, entity_id, outbox_id, "
                        "created_at_ms, updated_at_ms, sender, sender_key_id FROM commands "
                        "WHERE command_id = ?");
  s.bind(1, command_id);
  if (!s.step()) {
    s.reset();
    return std::nullopt;
  }
  CommandRow c;
  c.command_id = command_id;
  c.type = s.text(0);
  c.key = s.blob(1);
  c.body_hash = s.text(2);
  const std::string status = s.text(3);
  c.reason = s.optional_text(4);
  c.entity_id = s.optional_text(5);
  c.outbox_id = s.optional_int64(6);
  c.created_at_ms = s.int64(7);
  c.updated_at_ms = s.int64(8);
  c.sender = s.optional_text(9);
  c.sender_key_id = s.optional_text(10);
  s.reset();  // before stored() may throw: a kept statement must not hold its read
  c.status = stored(parse_command_status(status), "command status", status);
  return c;
}

void StateStore::finish_command(const std::string& command_id, CommandStatus status,
                                const std::optional<std::string>& reason, std::int64_t now_ms) {
  auto& s = impl_->prep(
      impl_->finish_command,
      "UPDATE commands SET status = ?, reason = ?, updated_at_ms = ? WHERE command_id = ?");
  s.bind(1, to_string(status)).bind(2, reason).bind(3, now_ms).bind(4, command_id);
  s.run();
}

std::int64_t StateStore::pending_outbox_amount(const std::string& transaction_id,
                                               OutboxOperation operation,
                                               const std::optional<std::string>& capture_id) {
  auto& s = impl_->prep(
      impl_->pending_outbox_amount,
      "SELECT COALESCE(SUM(amount), 0) FROM outbox WHERE entity_id = ?1 AND operation = ?2 "
      "AND status IN ('pending', 'in_flight') AND (?3 IS NULL OR capture_id = ?3)");
  s.bind(1, transaction_id).bind(2, to_string(operation)).bind(3, capture_id);
  const std::int64_t amount = s.step() ? s.int64(0) : 0;
  s.reset();
  return amount;
}

void StateStore::save_payment_context(const PaymentContextRow& c) {
  auto& s = impl_->prep(impl_->save_payment_context, [] {
    std::string sql = "INSERT OR REPLACE INTO payment_contexts (";
    return sql.append(kContextColumns).append(") VALUES (?,?,?,?,?,?,?,?,?,?,?,?)");
  }());
  s.bind(1, c.command_id).bind(2, c.payment_request_id).bind(3, c.payment_request_reference);
  s.bind(4, c.account_id).bind(5, c.amount).bind(6, c.currency).bind(7, c.capture_now ? 1 : 0);
  s.bind(8, c.payment_transaction_reference).bind(9, c.supplementary_purchase_data);
  s.bind(10, c.interoperability_token).bind(11, c.interoperability_data);
  s.bind(12, c.created_at_ms);
  s.run();
}

std::optional<PaymentContextRow> StateStore::find_payment_context(
    const std::string& payment_request_id, const std::optional<std::string>& reference) {
  auto& s = impl_->prep(impl_->find_payment_context, [] {
    std::string sql = "SELECT ";
    return sql.append(kContextColumns)
        .append(
            " FROM payment_contexts WHERE payment_request_id = ?1 OR (?2 IS NOT NULL AND "
            "payment_request_id IS NULL AND payment_request_reference = ?2) "
            "ORDER BY payment_request_id IS NULL, created_at_ms DESC, command_id DESC LIMIT 1");
  }());
  s.bind(1, payment_request_id).bind(2, reference);
  std::optional<PaymentContextRow> c;
  if (s.step()) c = read_context(s);
  s.reset();
  return c;
}

bool StateStore::attach_payment_context(const std::string& command_id,
                                        const std::string& payment_request_id) {
  auto& s = impl_->prep(impl_->attach_payment_context,
                        "UPDATE payment_contexts SET payment_request_id = ? WHERE command_id = ?");
  s.bind(1, payment_request_id).bind(2, command_id);
  s.run();
  return database().changes() == 1;
}

std::optional<SubRecordRow> StateStore::find_sub_record(const std::string& kind,
                                                        const std::string& id) {
  auto& s = impl_->prep(impl_->find_sub_record,
                        "SELECT transaction_id, amount, currency, capture_id, occurred_at_ms, "
                        "event_id FROM transaction_sub_records WHERE kind = ? AND id = ?");
  s.bind(1, kind).bind(2, id);
  if (!s.step()) {
    s.reset();
    return std::nullopt;
  }
  SubRecordRow r;
  r.kind = kind;
  r.id = id;
  r.transaction_id = s.text(0);
  r.amount = s.int64(1);
  r.currency = s.optional_text(2);
  r.capture_id = s.optional_text(3);
  r.occurred_at_ms = s.int64(4);
  r.event_id = s.text(5);
  s.reset();
  return r;
}

}  // namespace kpay::storage
