// PostgreSQL migration 14, the twin of SQLite's (storage/src/inbox_schema.hpp).
// SQLite narrowed its inbox (topic by number, an 8-byte digest prefix) to
// write fewer pages per batch; PostgreSQL keeps the topic by name, so here
// the table and column only exist (the schemas hold the same tables and
// columns): inbox_topics stays empty and inbox.topic_id NULL. Both backends
// keep the same 8-byte digest prefix (pg_state_entities.cpp).
#pragma once

#include <string_view>

namespace kpay::storage::pg {

inline constexpr std::string_view kPgSchemaV14 = R"sql(
CREATE TABLE inbox_topics (
  id    BIGINT PRIMARY KEY,
  topic TEXT NOT NULL UNIQUE
);
ALTER TABLE inbox ADD COLUMN topic_id BIGINT;
)sql";

}  // namespace kpay::storage::pg
