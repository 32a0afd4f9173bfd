#include "postgres/pg_rows.hpp"

namespace kpay::storage::pg {

OutboxRow outbox_row(const Result& r, int i, bool with_token) {
  OutboxRow o;
  o.id = r.int64(i, 0);
  o.operation = stored(parse_outbox_operation(r.view(i, 1)), "outbox operation", r.text(i, 1));
  o.entity_id = r.text(i, 2);
  o.idempotency_key = r.text(i, 3);
  o.request_body = r.text(i, 4);
  o.due_by_ms = r.optional_int64(i, 5);
  o.status = stored(parse_outbox_status(r.view(i, 6)), "outbox status", r.text(i, 6));
  o.created_by_event_id = r.text(i, 7);
  o.account_id = r.text(i, 8);
  o.method = r.text(i, 9);
  o.path = r.text(i, 10);
  o.token_header = r.text(i, 11);
  o.attempts = r.int64(i, 12);
  o.next_attempt_at_ms = r.int64(i, 13);
  o.created_at_ms = r.int64(i, 14);
  o.updated_at_ms = r.int64(i, 15);
  o.last_status = r.optional_int64(i, 16);
  o.last_error = r.optional_text(i, 17);
  o.result = r.optional_text(i, 18);
  o.command_id = r.optional_text(i, 19);
  o.amount = r.optional_int64(i, 20);
  o.capture_id = r.optional_text(i, 21);
  o.traceparent = r.optional_text(i, 22).value_or("");
  if (with_token) o.call_token = r.text(i, 23);
  return o;
}

std::vector<OutboxRow> outbox_rows(const Result& r, bool with_token) {
  std::vector<OutboxRow> out;
  out.reserve(static_cast<std::size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) out.push_back(outbox_row(r, i, with_token));
  return out;
}

}  // namespace kpay::storage::pg
