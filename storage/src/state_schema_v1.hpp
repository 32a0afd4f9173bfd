// State-database migration 1 (state_schema.cpp): the first schema — the
// payment entities, the inbox, the history, the outbox, the publish queue and
// the consumer offsets. Internal to storage/src. Never edit: it has shipped.
#pragma once

#include <string_view>

namespace kpay::storage {

inline constexpr std::string_view kStateSchemaV1 = R"sql(
-- The de-duplication key, kept narrow (the history row holds the rest): it is
-- probed and inserted at a random position for every event.
CREATE TABLE inbox (
  event_id  TEXT PRIMARY KEY,
  topic     TEXT NOT NULL,
  partition INTEGER NOT NULL,
  offset    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE payment_requests (
  id                     TEXT PRIMARY KEY,
  generation             INTEGER NOT NULL,
  state                  TEXT,
  state_as_of_ms         INTEGER NOT NULL,
  reference              TEXT,
  amount                 INTEGER,
  currency               TEXT,
  payment_transaction_id TEXT,
  expires_at_ms          INTEGER,
  authorization_due_ms   INTEGER,
  last_event_id          TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX payment_requests_by_transaction ON payment_requests (payment_transaction_id);

CREATE TABLE payment_transactions (
  id                 TEXT PRIMARY KEY,
  state              TEXT,
  state_as_of_ms     INTEGER NOT NULL,
  reference          TEXT,
  amount             INTEGER,
  currency           TEXT,
  payment_request_id TEXT,
  expires_at_ms      INTEGER,
  captured_amount    INTEGER NOT NULL DEFAULT 0,
  refunded_amount    INTEGER NOT NULL DEFAULT 0,
  chargeback_amount  INTEGER NOT NULL DEFAULT 0,
  funding_state      TEXT,
  funding_as_of_ms   INTEGER NOT NULL DEFAULT 0,
  last_event_id      TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX payment_transactions_by_request ON payment_transactions (payment_request_id);

CREATE TABLE transaction_sub_records (
  kind           TEXT NOT NULL CHECK (kind IN ('capture', 'refund', 'chargeback')),
  id             TEXT NOT NULL,
  transaction_id TEXT NOT NULL,
  amount         INTEGER NOT NULL,
  currency       TEXT,
  capture_id     TEXT,
  occurred_at_ms INTEGER NOT NULL,
  event_id       TEXT NOT NULL,
  PRIMARY KEY (kind, id)
) WITHOUT ROWID;
CREATE INDEX sub_records_by_transaction ON transaction_sub_records (transaction_id);

CREATE TABLE disputes (
  id                          TEXT PRIMARY KEY,
  framework                   TEXT NOT NULL CHECK (framework IN ('current', 'legacy')),
  framework_inferred          INTEGER NOT NULL,
  state                       TEXT,
  state_as_of_ms              INTEGER NOT NULL,
  payment_transaction_id      TEXT,
  payment_capture_id          TEXT,
  reason                      TEXT,
  amount                      INTEGER,
  currency                    TEXT,
  outcome                     TEXT,
  representment_expires_at_ms INTEGER,
  representment_as_of_ms      INTEGER NOT NULL,
  arbitration_expires_at_ms   INTEGER,
  arbitration_as_of_ms        INTEGER NOT NULL,
  closed_at_ms                INTEGER,
  last_event_id               TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE records (
  kind               TEXT NOT NULL,
  id                 TEXT NOT NULL,
  state              TEXT,
  state_as_of_ms     INTEGER NOT NULL,
  sub_state          TEXT,
  sub_state_as_of_ms INTEGER NOT NULL,
  amount             INTEGER,
  currency           TEXT,
  last_event_id      TEXT NOT NULL,
  PRIMARY KEY (kind, id)
) WITHOUT ROWID;

CREATE TABLE history (
  seq           INTEGER PRIMARY KEY,  -- rows are never deleted: rowids only grow
  event_id      TEXT NOT NULL,
  entity_kind   TEXT NOT NULL,
  entity_id     TEXT NOT NULL,
  entity_hash   INTEGER NOT NULL,
  event_type    TEXT NOT NULL,
  event_version TEXT NOT NULL,
  occurred_at   TEXT NOT NULL,
  outcome       TEXT NOT NULL CHECK (outcome IN ('applied', 'duplicate', 'stale', 'rejected')),
  from_state    TEXT,
  to_state      TEXT,
  reason        TEXT NOT NULL,
  topic         TEXT NOT NULL,
  partition     INTEGER NOT NULL,
  offset        INTEGER NOT NULL
);
-- Indexed by a 64-bit hash of entity_id: an 8-byte key instead of a ~70-byte
-- one keeps this index (written at a random position per event) small.
CREATE INDEX history_by_entity ON history (entity_hash, seq);

CREATE TABLE outbox (
  id                  INTEGER PRIMARY KEY AUTOINCREMENT,
  operation           TEXT NOT NULL,
  entity_id           TEXT NOT NULL,
  idempotency_key     TEXT NOT NULL UNIQUE,
  request_body        TEXT NOT NULL,
  call_token          TEXT NOT NULL,
  due_by_ms           INTEGER,
  status              TEXT NOT NULL DEFAULT 'pending',
  attempts            INTEGER NOT NULL DEFAULT 0,
  created_by_event_id TEXT NOT NULL
);
CREATE INDEX outbox_by_status ON outbox (status, id);

CREATE TABLE publish_queue (
  seq    INTEGER PRIMARY KEY AUTOINCREMENT,
  topic  TEXT NOT NULL,
  key    BLOB NOT NULL,
  value  BLOB NOT NULL,
  reason TEXT NOT NULL
);

CREATE TABLE poison_messages (
  topic     TEXT NOT NULL,
  partition INTEGER NOT NULL,
  offset    INTEGER NOT NULL,
  event_id  TEXT NOT NULL,
  reason    TEXT NOT NULL,
  value     BLOB NOT NULL,
  PRIMARY KEY (topic, partition, offset)
) WITHOUT ROWID;

CREATE TABLE consumer_offsets (
  topic       TEXT NOT NULL,
  partition   INTEGER NOT NULL,
  next_offset INTEGER NOT NULL,
  PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
)sql";

}  // namespace kpay::storage
