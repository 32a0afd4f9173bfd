// State-database migration 14 (state_schema.cpp): the inbox narrowed.
// Internal to storage/src.
//
// Every event inserts one inbox row at a random position (event ids are
// random), and every batch then writes each inbox page it touched: the
// inbox's width decides how many pages a batch dirties while the table is
// small against the batch, and how much of the page cache it takes after
// (docs/performance/processor.md, "SQLite toward 50k events/s"). A row held the
// topic's name (~30 bytes) and the body's whole SHA-256 (32 bytes) next to
// a ~36-byte event id. Now the topic is a number (inbox_topics, a few rows
// read once per topic) and the digest its first 8 bytes: two bodies of one
// event_id that differ are still told apart (a match by chance is 2^-64;
// the webhooks are signed besides), and a conflict reports that prefix.
#pragma once

#include <cstddef>
#include <string_view>

namespace kpay::storage {

// The length of the digest prefix the SQLite inbox keeps.
inline constexpr std::size_t kInboxDigestBytes = 8;

inline constexpr std::string_view kInboxSchemaV14 = R"sql(
CREATE TABLE inbox_topics (
  id    INTEGER PRIMARY KEY,
  topic TEXT NOT NULL UNIQUE
);
INSERT INTO inbox_topics (topic) SELECT DISTINCT topic FROM inbox ORDER BY topic;
CREATE TABLE inbox_v14 (
  event_id  TEXT PRIMARY KEY,
  topic_id  INTEGER NOT NULL,
  partition INTEGER NOT NULL,
  offset    INTEGER NOT NULL,
  digest    BLOB
) WITHOUT ROWID;
INSERT INTO inbox_v14 (event_id, topic_id, partition, offset, digest)
  SELECT i.event_id, t.id, i.partition, i.offset, substr(i.digest, 1, 8)
  FROM inbox i JOIN inbox_topics t ON t.topic = i.topic;
DROP TABLE inbox;
ALTER TABLE inbox_v14 RENAME TO inbox;
)sql";

}  // namespace kpay::storage
