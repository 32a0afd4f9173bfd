// Row ↔ struct mapping shared by the PostgreSQL store's parts.
#pragma once

#include <string>
#include <string_view>

#include "kpay/storage/rows.hpp"
#include "kpay/storage/status.hpp"
#include "postgres/pg.hpp"
#include "state_store_impl.hpp"  // stored(): a status read back

namespace kpay::storage::pg {

// The outbox columns in the order outbox_row() reads them; call_token last.
inline constexpr std::string_view kOutboxColumns =
    "id, operation, entity_id, idempotency_key, request_body, due_by_ms, status, "
    "created_by_event_id, account_id, method, path, token_header, attempts, "
    "next_attempt_at_ms, created_at_ms, updated_at_ms, last_status, last_error, result, "
    "command_id, amount, capture_id, traceparent, call_token";

// A PostgreSQL array literal ("{"a","b"}") of `items`, each quoted.
template <class Items, class Text>
std::string array_literal(const Items& items, Text text) {
  std::string out = "{";
  for (const auto& item : items) {
    if (out.size() > 1) out += ',';
    out += '"';
    for (char ch : text(item)) {
      if (ch == '"' || ch == '\\') out += '\\';
      out += ch;
    }
    out += '"';
  }
  return out + "}";
}

// call_token only when the caller sends the call.
OutboxRow outbox_row(const Result& r, int row, bool with_token);
std::vector<OutboxRow> outbox_rows(const Result& r, bool with_token);

}  // namespace kpay::storage::pg
