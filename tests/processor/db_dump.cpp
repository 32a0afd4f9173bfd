#include "db_dump.hpp"

#include <stdexcept>

#include "kpay/storage/sqlite.hpp"

namespace kpay::test {

namespace {

// Raw sqlite3 here: a dump needs the column count and types of arbitrary queries.
std::string dump_query(storage::Database& db, const std::string& title, const std::string& sql) {
  std::string out = "== " + title + "\n";
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db.handle(), sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    throw std::runtime_error(std::string("dump: ") + sqlite3_errmsg(db.handle()));
  }
  const int cols = sqlite3_column_count(stmt);
  while (sqlite3_step(stmt) == SQLITE_ROW) {
    for (int c = 0; c < cols; ++c) {
      if (c > 0) out += " | ";
      if (sqlite3_column_type(stmt, c) == SQLITE_NULL) {
        out += "NULL";
      } else {
        auto* p = sqlite3_column_text(stmt, c);
        out.append(reinterpret_cast<const char*>(p), sqlite3_column_bytes(stmt, c));
      }
    }
    out += "\n";
  }
  sqlite3_finalize(stmt);
  return out;
}

std::string entities(storage::Database& db) {
  std::string out;
  out += dump_query(db, "payment_requests", "SELECT * FROM payment_requests ORDER BY id");
  out += dump_query(db, "payment_transactions", "SELECT * FROM payment_transactions ORDER BY id");
  out += dump_query(db, "transaction_sub_records",
                    "SELECT * FROM transaction_sub_records ORDER BY kind, id");
  out += dump_query(db, "disputes", "SELECT * FROM disputes ORDER BY id");
  out += dump_query(db, "records", "SELECT * FROM records ORDER BY kind, id");
  return out;
}

}  // namespace

std::string dump_entities(const std::string& db_path) {
  auto db = storage::Database::open(db_path);
  return entities(db);
}

std::string dump_everything(const std::string& db_path) {
  auto db = storage::Database::open(db_path);
  std::string out = entities(db);
  // The topic by name: its number (schema v14) depends on the order topics came in.
  out += dump_query(db, "inbox",
                    "SELECT i.event_id, t.topic, i.partition, i.offset, i.digest FROM inbox i "
                    "JOIN inbox_topics t ON t.id = i.topic_id ORDER BY i.event_id");
  out += dump_query(db, "history",
                    "SELECT event_id, entity_kind, entity_id, event_type, event_version, "
                    "occurred_at, outcome, from_state, to_state, reason, topic, partition, offset "
                    "FROM history ORDER BY topic, partition, offset");
  out += dump_query(db, "outbox",
                    "SELECT operation, entity_id, idempotency_key, request_body, call_token, "
                    "due_by_ms, status, attempts, created_by_event_id FROM outbox "
                    "ORDER BY idempotency_key");
  // recorded_at_ms is wall-clock time (as the outbox's times, left out).
  out += dump_query(db, "poison_messages",
                    "SELECT topic, partition, offset, event_id, reason, value, key "
                    "FROM poison_messages ORDER BY topic, partition, offset");
  out += dump_query(db, "consumer_offsets", "SELECT * FROM consumer_offsets ORDER BY 1, 2");
  return out;
}

long long query_int(const std::string& db_path, const std::string& sql) {
  auto db = storage::Database::open(db_path);
  auto s = db.prepare(sql);
  return s.step() ? s.int64(0) : 0;
}

}  // namespace kpay::test
