// State-database migrations 9, 12 and 13 (state_schema.cpp): who sent each command, and
// the audit trail (docs/OPERATIONS.md, "Audit trail"). Internal to storage/src.
//
// audit_events is append-only: triggers refuse any UPDATE or DELETE, so a row,
// once committed, stays as written. The outbox's calls that change a payment
// (every operation but reads) are recorded by triggers on the outbox itself:
// queued (what is sent: method, path, body; the tokens a call needs live in
// outbox.call_token and never reach these columns), each answered attempt and
// the outcome. Migration 9 also recorded an operator's requeue by trigger,
// without knowing the operator; migration 12 replaced it (see there).
#pragma once

#include <string_view>

namespace kpay::storage {

inline constexpr std::string_view kAuditSchemaV9 = R"sql(
CREATE TABLE command_senders (
  command_id    TEXT PRIMARY KEY,
  sender        TEXT NOT NULL,
  key_id        TEXT NOT NULL,
  currency      TEXT,
  amount        INTEGER,
  day           TEXT NOT NULL,
  created_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
-- What each sender's accepted commands moved per UTC day and currency (the
-- per-day limits read one row, not the day's commands).
CREATE TABLE sender_day_totals (
  sender   TEXT NOT NULL,
  day      TEXT NOT NULL,
  currency TEXT NOT NULL,
  amount   INTEGER NOT NULL,
  PRIMARY KEY (sender, day, currency)
) WITHOUT ROWID;

CREATE TABLE audit_events (
  seq           INTEGER PRIMARY KEY AUTOINCREMENT,
  at_ms         INTEGER NOT NULL,
  kind          TEXT NOT NULL,
  sender        TEXT,
  command_id    TEXT,
  operation     TEXT,
  entity_id     TEXT,
  outbox_id     INTEGER,
  attempt       INTEGER,
  status        TEXT NOT NULL,
  detail        TEXT,
  request       TEXT,
  klarna_status INTEGER
);
CREATE INDEX audit_events_by_command ON audit_events (command_id);
CREATE INDEX audit_events_by_outbox ON audit_events (outbox_id);
CREATE TABLE audit_published (through_seq INTEGER NOT NULL);
INSERT INTO audit_published (through_seq) VALUES (0);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;

CREATE TRIGGER audit_outbox_queued AFTER INSERT ON outbox
WHEN NEW.operation NOT LIKE 'read%'
BEGIN
  INSERT INTO audit_events (at_ms, kind, sender, command_id, operation, entity_id, outbox_id,
                            attempt, status, detail, request)
  VALUES (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER), 'call_queued',
          (SELECT sender FROM command_senders WHERE command_id = NEW.command_id),
          NEW.command_id, NEW.operation, NEW.entity_id, NEW.id, 0, 'pending',
          'caused by ' || NEW.created_by_event_id,
          NEW.method || ' ' || NEW.path ||
            CASE WHEN NEW.request_body = '' THEN '' ELSE ' ' || NEW.request_body END);
END;

CREATE TRIGGER audit_outbox_answered AFTER UPDATE OF status ON outbox
WHEN NEW.operation NOT LIKE 'read%' AND OLD.status = 'in_flight' AND NEW.status <> 'in_flight'
BEGIN
  INSERT INTO audit_events (at_ms, kind, sender, command_id, operation, entity_id, outbox_id,
                            attempt, status, detail, klarna_status)
  VALUES (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER),
          CASE WHEN NEW.status = 'pending' THEN 'attempt' ELSE 'outcome' END,
          (SELECT sender FROM command_senders WHERE command_id = NEW.command_id),
          NEW.command_id, NEW.operation, NEW.entity_id, NEW.id, NEW.attempts, NEW.status,
          NEW.last_error, NEW.last_status);
END;

CREATE TRIGGER audit_outbox_requeued AFTER UPDATE OF status ON outbox
WHEN NEW.operation NOT LIKE 'read%' AND OLD.status = 'failed' AND NEW.status = 'pending'
BEGIN
  INSERT INTO audit_events (at_ms, kind, sender, command_id, operation, entity_id, outbox_id,
                            attempt, status, detail)
  VALUES (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER), 'operator',
          (SELECT sender FROM command_senders WHERE command_id = NEW.command_id),
          NEW.command_id, NEW.operation, NEW.entity_id, NEW.id, NEW.attempts, 'requeued',
          'a failed call queued again (klarnactl actions retry)');
END;
)sql";

// Migration 12: who acted, for operators' actions. The requeue trigger could
// not know the operator, so klarnactl records each action itself (kind
// operator: a failed call requeued, a dead letter replayed) in the
// transaction that performs it, with the operator's identity.
inline constexpr std::string_view kAuditSchemaV12 = R"sql(
ALTER TABLE audit_events ADD COLUMN operator TEXT;
DROP TRIGGER audit_outbox_requeued;
)sql";

// Migration 13: who sent a command is written in the command's own row
// (commands.sender, commands.sender_key_id), not in a command_senders row of
// its own: a signed command then costs no extra row and no extra index update
// (docs/performance/commands-and-settlements.md, "Signed commands"). Every recorded sender moves
// into its command's row (the processor wrote both rows in one transaction, so each has one); the
// per-command amounts the old table also kept are summed in sender_day_totals already. The outbox's
// audit triggers read the sender from the command row.
inline constexpr std::string_view kAuditSchemaV13 = R"sql(
ALTER TABLE commands ADD COLUMN sender TEXT;
ALTER TABLE commands ADD COLUMN sender_key_id TEXT;
UPDATE commands SET sender = s.sender, sender_key_id = s.key_id
  FROM command_senders AS s WHERE s.command_id = commands.command_id;

DROP TRIGGER audit_outbox_queued;
CREATE TRIGGER audit_outbox_queued AFTER INSERT ON outbox
WHEN NEW.operation NOT LIKE 'read%'
BEGIN
  INSERT INTO audit_events (at_ms, kind, sender, command_id, operation, entity_id, outbox_id,
                            attempt, status, detail, request)
  VALUES (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER), 'call_queued',
          (SELECT sender FROM commands WHERE command_id = NEW.command_id),
          NEW.command_id, NEW.operation, NEW.entity_id, NEW.id, 0, 'pending',
          'caused by ' || NEW.created_by_event_id,
          NEW.method || ' ' || NEW.path ||
            CASE WHEN NEW.request_body = '' THEN '' ELSE ' ' || NEW.request_body END);
END;

DROP TRIGGER audit_outbox_answered;
CREATE TRIGGER audit_outbox_answered AFTER UPDATE OF status ON outbox
WHEN NEW.operation NOT LIKE 'read%' AND OLD.status = 'in_flight' AND NEW.status <> 'in_flight'
BEGIN
  INSERT INTO audit_events (at_ms, kind, sender, command_id, operation, entity_id, outbox_id,
                            attempt, status, detail, klarna_status)
  VALUES (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER),
          CASE WHEN NEW.status = 'pending' THEN 'attempt' ELSE 'outcome' END,
          (SELECT sender FROM commands WHERE command_id = NEW.command_id),
          NEW.command_id, NEW.operation, NEW.entity_id, NEW.id, NEW.attempts, NEW.status,
          NEW.last_error, NEW.last_status);
END;

DROP TABLE command_senders;
)sql";

}  // namespace kpay::storage
