// The state database's schema: every migration of schema "state", in order.
// Append migrations; never edit one that has shipped (a database written by
// an older release is migrated in place on start; StateStore refuses a newer one).
#include <array>
#include <string_view>

#include "audit_schema.hpp"
#include "check_schema.hpp"
#include "inbox_schema.hpp"
#include "kpay/storage/migrations.hpp"
#include "kpay/storage/state_store.hpp"
#include "state_schema_v1.hpp"

namespace kpay::storage {

namespace {

// The per-entity history index, filled in bulk instead of per event. An index
// maintained per row takes one insert at a random position per event, and
// every batch then writes each index page it touched: about a fifth of the
// processor's time (docs/PERFORMANCE.md). Rows past `through_seq` are not
// indexed yet; history() scans that bounded tail by rowid.
constexpr std::string_view kV2 = R"sql(
DROP INDEX history_by_entity;
CREATE TABLE history_by_entity (
  entity_hash INTEGER NOT NULL,
  seq         INTEGER NOT NULL,
  PRIMARY KEY (entity_hash, seq)
) WITHOUT ROWID;
INSERT INTO history_by_entity SELECT entity_hash, seq FROM history;
CREATE TABLE history_indexed (through_seq INTEGER NOT NULL);
INSERT INTO history_indexed SELECT COALESCE(MAX(seq), 0) FROM history;
)sql";

// The processor acts (outbox worker): where each call goes, its attempts and
// answers; the account a payment belongs to; the answer of the authorization.
// Rows written before this version get their path from their operation.
constexpr std::string_view kV3 = R"sql(
ALTER TABLE payment_requests ADD COLUMN account_id TEXT;
ALTER TABLE payment_requests ADD COLUMN authorization_result TEXT;
ALTER TABLE payment_transactions ADD COLUMN account_id TEXT;
ALTER TABLE outbox ADD COLUMN account_id TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN method TEXT NOT NULL DEFAULT 'POST';
ALTER TABLE outbox ADD COLUMN path TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN token_header TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN next_attempt_at_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN created_at_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN updated_at_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN last_status INTEGER;
ALTER TABLE outbox ADD COLUMN last_error TEXT;
ALTER TABLE outbox ADD COLUMN result TEXT;
ALTER TABLE outbox ADD COLUMN command_id TEXT;
UPDATE outbox SET path = '/payment/authorize', token_header = 'Klarna-Network-Session-Token'
  WHERE operation = 'final_authorization' AND path = '';
UPDATE outbox SET path = '/payment/confirmation-tokens/{token}/confirm'
  WHERE operation = 'confirm' AND path = '';
UPDATE outbox SET method = 'GET', request_body = '',
  path = '/payment/requests/' || replace(entity_id, ':', '%3A')
  WHERE operation = 'read_payment_request' AND path = '';
DROP INDEX outbox_by_status;
CREATE INDEX outbox_due ON outbox (status, next_attempt_at_ms, id);
CREATE INDEX outbox_by_entity ON outbox (entity_id);
)sql";

// Disputes (issue 15): the legacy framework's deadline, the outcome detail
// and the money, every deadline value ever told (extensions included), and
// the deadline warnings sent (one per deadline value and stage).
constexpr std::string_view kV5 = R"sql(
ALTER TABLE disputes ADD COLUMN evidence_response_deadline_ms INTEGER;
ALTER TABLE disputes ADD COLUMN evidence_response_as_of_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE disputes ADD COLUMN outcome_detailed TEXT;
ALTER TABLE disputes ADD COLUMN withheld_amount INTEGER;
ALTER TABLE disputes ADD COLUMN returned_amount INTEGER;
ALTER TABLE disputes ADD COLUMN fee_amount INTEGER;
CREATE TABLE dispute_deadlines (
  dispute_id  TEXT NOT NULL,
  kind        TEXT NOT NULL CHECK (kind IN ('representment', 'arbitration', 'evidence_response')),
  event_id    TEXT NOT NULL,
  deadline_ms INTEGER NOT NULL,
  as_of_ms    INTEGER NOT NULL,
  event_type  TEXT NOT NULL,
  field       TEXT NOT NULL,
  PRIMARY KEY (dispute_id, kind, event_id)
) WITHOUT ROWID;
CREATE TABLE dispute_deadline_warnings (
  dispute_id   TEXT NOT NULL,
  kind         TEXT NOT NULL,
  deadline_ms  INTEGER NOT NULL,
  stage        TEXT NOT NULL CHECK (stage IN ('window', 'passed')),
  warned_at_ms INTEGER NOT NULL,
  PRIMARY KEY (dispute_id, kind, deadline_ms, stage)
) WITHOUT ROWID;
INSERT OR IGNORE INTO dispute_deadlines
  SELECT id, 'representment', last_event_id, representment_expires_at_ms, representment_as_of_ms,
         '', 'before v5' FROM disputes WHERE representment_expires_at_ms IS NOT NULL;
INSERT OR IGNORE INTO dispute_deadlines
  SELECT id, 'arbitration', last_event_id, arbitration_expires_at_ms, arbitration_as_of_ms,
         '', 'before v5' FROM disputes WHERE arbitration_expires_at_ms IS NOT NULL;
)sql";

// Downstream commands (klarna.commands): the command inbox with each
// command's status, the payment contexts `register` gives, and the money an
// outbox row moves (so accepted-but-unexecuted captures and refunds count).
constexpr std::string_view kV4 = R"sql(
CREATE TABLE commands (
  command_id    TEXT PRIMARY KEY,
  type          TEXT NOT NULL,
  key           BLOB NOT NULL,
  body_hash     TEXT NOT NULL,
  status        TEXT NOT NULL CHECK (status IN ('accepted', 'rejected', 'succeeded', 'failed')),
  reason        TEXT,
  entity_id     TEXT,
  outbox_id     INTEGER,
  created_at_ms INTEGER NOT NULL,
  updated_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE payment_contexts (
  command_id                    TEXT PRIMARY KEY,
  payment_request_id            TEXT,
  payment_request_reference     TEXT,
  account_id                    TEXT NOT NULL,
  amount                        INTEGER NOT NULL,
  currency                      TEXT NOT NULL,
  capture_now                   INTEGER NOT NULL,
  payment_transaction_reference TEXT,
  supplementary_purchase_data   TEXT,
  interoperability_token        TEXT,
  interoperability_data         TEXT,
  created_at_ms                 INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX payment_contexts_by_request ON payment_contexts (payment_request_id);
CREATE INDEX payment_contexts_by_reference ON payment_contexts (payment_request_reference);
ALTER TABLE outbox ADD COLUMN amount INTEGER;
ALTER TABLE outbox ADD COLUMN capture_id TEXT;
)sql";

// Dead letters (klarnactl dead-letters, state_store_dead_letters.cpp): a
// poison message keeps its Kafka key and when it was recorded, so a replay is
// the original message; every replay of a dead letter (the processor's poison
// messages and the receiver's dead-letter topic alike) is recorded once per
// message, so a second replay needs --force.
constexpr std::string_view kV6 = R"sql(
ALTER TABLE poison_messages ADD COLUMN key BLOB;
ALTER TABLE poison_messages ADD COLUMN recorded_at_ms INTEGER;
CREATE TABLE dead_letter_replays (
  topic             TEXT NOT NULL,
  partition         INTEGER NOT NULL,
  offset            INTEGER NOT NULL,
  source            TEXT NOT NULL CHECK (source IN ('receiver', 'processor')),
  target_topic      TEXT NOT NULL,
  replays           INTEGER NOT NULL,
  last_replayed_ms  INTEGER NOT NULL,
  PRIMARY KEY (topic, partition, offset)
) WITHOUT ROWID;
)sql";

// Webhook intake (docs/KLARNA-FIDELITY.md): a dispute keeps the account of
// its events (filled from its transaction for disputes stored before), and
// every settlement.* event keeps the ids and report links it carried.
constexpr std::string_view kV7 = R"sql(
ALTER TABLE disputes ADD COLUMN account_id TEXT;
UPDATE disputes SET account_id = (SELECT t.account_id FROM payment_transactions t
                                   WHERE t.id = disputes.payment_transaction_id)
 WHERE account_id IS NULL;
CREATE TABLE settlement_events (
  event_id        TEXT PRIMARY KEY,
  event_type      TEXT NOT NULL,
  entity_id       TEXT NOT NULL,
  routed_by       TEXT NOT NULL,
  account_id      TEXT,
  settlement_id   TEXT,
  payout_id       TEXT,
  report_id       TEXT,
  report_json_url TEXT,
  report_csv_url  TEXT,
  amount          INTEGER,
  currency        TEXT,
  payout_date     TEXT,
  period_start    TEXT,
  period_end      TEXT,
  links_json      TEXT NOT NULL,
  occurred_at_ms  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX settlement_events_by_settlement ON settlement_events (settlement_id);
)sql";

// Offset gaps and event conflicts (state_store_gaps.cpp): every jump of a
// partition past offsets the processor never applied (deleted by retention,
// a truncated or recreated log, a restore of an older database), with the
// operator's decision and the repair reads it caused; the digest of each
// event's body, so a second message with a known event_id but another body is
// a conflict rather than a duplicate (NULL: recorded before v8, not compared).
constexpr std::string_view kV8 = R"sql(
CREATE TABLE offset_gaps (
  id             INTEGER PRIMARY KEY AUTOINCREMENT,
  topic          TEXT NOT NULL,
  partition      INTEGER NOT NULL,
  expected       INTEGER NOT NULL,
  resume_at      INTEGER NOT NULL,
  kind           TEXT NOT NULL CHECK (kind IN ('deleted', 'log_reset', 'jump')),
  skipped        INTEGER NOT NULL,
  policy         TEXT NOT NULL CHECK (policy IN ('pause', 'continue')),
  status         TEXT NOT NULL CHECK (status IN ('open', 'accepted')),
  detected_at_ms INTEGER NOT NULL,
  decided_at_ms  INTEGER,
  repaired_at_ms INTEGER,
  repair_reads   INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX offset_gaps_once ON offset_gaps (topic, partition, expected);
CREATE TABLE event_conflicts (
  event_id        TEXT NOT NULL,
  topic           TEXT NOT NULL,
  partition       INTEGER NOT NULL,
  offset          INTEGER NOT NULL,
  digest          BLOB NOT NULL,
  first_digest    BLOB NOT NULL,
  first_topic     TEXT NOT NULL,
  first_partition INTEGER NOT NULL,
  first_offset    INTEGER NOT NULL,
  recorded_at_ms  INTEGER NOT NULL,
  PRIMARY KEY (topic, partition, offset)
) WITHOUT ROWID;
ALTER TABLE inbox ADD COLUMN digest BLOB;
)sql";

// Settlements fetched and reconciled (state_store_reconciliation.cpp): a
// settlement's details as Klarna's Settlements API returned them and how far
// its fetch got (`next_page` is the transactions page to book next: a page
// answered twice is booked once); its transaction lines, one row per line by
// position; and the reconciliation's findings, one row per (kind, settlement,
// subject), so a re-run or a restart finds nothing twice. Klarna's field
// names are partly assumed (docs/klarna/SETTLEMENTS.md). payout_amount is
// what the payout status says is paid; total_settlement_amount what the
// report's totals say it should be.
constexpr std::string_view kV10 = R"sql(
CREATE TABLE settlements (
  settlement_id           TEXT PRIMARY KEY,
  account_id              TEXT NOT NULL,
  status                  TEXT NOT NULL CHECK (status IN ('fetching', 'fetched', 'reconciled')),
  currency                TEXT,
  payout_amount           INTEGER,
  total_sale_amount       INTEGER,
  total_return_amount     INTEGER,
  total_fee_amount        INTEGER,
  total_chargeback_amount INTEGER,
  total_tax_amount        INTEGER,
  total_settlement_amount INTEGER,
  payment_reference       TEXT,
  payout_date             TEXT,
  period_start            TEXT,
  period_end              TEXT,
  payout_status           TEXT,
  next_page               TEXT,
  lines_booked            INTEGER NOT NULL DEFAULT 0,
  caused_by               TEXT NOT NULL,
  created_at_ms           INTEGER NOT NULL,
  fetched_at_ms           INTEGER,
  reconciled_at_ms        INTEGER
) WITHOUT ROWID;
CREATE TABLE settlement_lines (
  settlement_id          TEXT NOT NULL,
  line_no                INTEGER NOT NULL,
  type                   TEXT NOT NULL,
  payment_transaction_id TEXT,
  capture_id             TEXT,
  refund_id              TEXT,
  dispute_id             TEXT,
  amount                 INTEGER NOT NULL,
  tax_amount             INTEGER NOT NULL DEFAULT 0,
  currency               TEXT,
  reference              TEXT,
  occurred_at            TEXT,
  PRIMARY KEY (settlement_id, line_no)
) WITHOUT ROWID;
CREATE INDEX settlement_lines_by_capture ON settlement_lines (capture_id, type);
CREATE INDEX settlement_lines_by_refund ON settlement_lines (refund_id, type);
CREATE INDEX settlement_lines_by_transaction ON settlement_lines (payment_transaction_id);
CREATE TABLE reconciliation_findings (
  finding_id     TEXT PRIMARY KEY,
  kind           TEXT NOT NULL CHECK (kind IN ('missing_in_settlement', 'unexpected_in_settlement',
                   'amount_mismatch', 'duplicate_settlement', 'payout_mismatch',
                   'currency_mismatch')),
  settlement_id  TEXT,
  subject        TEXT NOT NULL,
  ours_json      TEXT NOT NULL,
  theirs_json    TEXT NOT NULL,
  detail         TEXT NOT NULL,
  found_at_ms    INTEGER NOT NULL,
  resolved_at_ms INTEGER
) WITHOUT ROWID;
CREATE INDEX findings_by_settlement ON reconciliation_findings (settlement_id);
CREATE INDEX findings_by_time ON reconciliation_findings (found_at_ms);
)sql";

// One payment's whole story (klarnactl payments trace, state_store_traces.cpp):
// the W3C traceparent of each message in its history row, of each call in its
// outbox row, and of each message to publish; when the processor recorded a
// history row, when the receiver received the webhook (its received-at
// header) and when it was produced (the Kafka timestamp); and every attempt of
// every Klarna call (the outbox keeps only the last answer).
constexpr std::string_view kV11 = R"sql(
ALTER TABLE history ADD COLUMN traceparent TEXT;
ALTER TABLE history ADD COLUMN recorded_at_ms INTEGER;
ALTER TABLE history ADD COLUMN received_at TEXT;
ALTER TABLE history ADD COLUMN kafka_timestamp_ms INTEGER;
ALTER TABLE outbox ADD COLUMN traceparent TEXT;
ALTER TABLE publish_queue ADD COLUMN traceparent TEXT;
CREATE TABLE call_attempts (
  outbox_id             INTEGER NOT NULL,
  attempt               INTEGER NOT NULL,
  started_at_ms         INTEGER NOT NULL,
  latency_us            INTEGER NOT NULL,
  outcome               TEXT NOT NULL CHECK (outcome IN ('succeeded', 'retry', 'failed', 'conflict')),
  http_status           INTEGER,
  transport_error       TEXT,
  klarna_error_id       TEXT,
  klarna_error_code     TEXT,
  klarna_correlation_id TEXT,
  summary               TEXT,
  traceparent           TEXT,
  recorded_at_ms        INTEGER NOT NULL,
  PRIMARY KEY (outbox_id, attempt)
) WITHOUT ROWID;
CREATE INDEX commands_by_entity ON commands (entity_id);
)sql";

// Settlement lines of a type Klarna lists but the processor does not know
// are a finding of their own (reconciler.cpp): SQLite cannot alter a CHECK,
// so the findings table is rebuilt with the wider kind list.
constexpr std::string_view kV17 = R"sql(
CREATE TABLE reconciliation_findings_v17 (
  finding_id     TEXT PRIMARY KEY,
  kind           TEXT NOT NULL CHECK (kind IN ('missing_in_settlement', 'unexpected_in_settlement',
                   'amount_mismatch', 'duplicate_settlement', 'payout_mismatch',
                   'currency_mismatch', 'unrecognised_line')),
  settlement_id  TEXT,
  subject        TEXT NOT NULL,
  ours_json      TEXT NOT NULL,
  theirs_json    TEXT NOT NULL,
  detail         TEXT NOT NULL,
  found_at_ms    INTEGER NOT NULL,
  resolved_at_ms INTEGER
) WITHOUT ROWID;
INSERT INTO reconciliation_findings_v17 (finding_id, kind, settlement_id, subject, ours_json,
  theirs_json, detail, found_at_ms, resolved_at_ms)
  SELECT finding_id, kind, settlement_id, subject, ours_json, theirs_json, detail, found_at_ms,
         resolved_at_ms FROM reconciliation_findings;
DROP TABLE reconciliation_findings;
ALTER TABLE reconciliation_findings_v17 RENAME TO reconciliation_findings;
CREATE INDEX findings_by_settlement ON reconciliation_findings (settlement_id);
CREATE INDEX findings_by_time ON reconciliation_findings (found_at_ms);
)sql";

// 16: PostgreSQL's indexes by request and by transaction in id order
// (pg_schema.cpp); SQLite plans each statement with its values and keeps its
// indexes: nothing to change, recorded so both backends count alike.
constexpr std::string_view kV16 = "SELECT 1;";

// 20: the open disputes through a partial index, so that the deadline watcher
// reads the disputes not CLOSED without scanning the closed ones (a store that
// has run for years holds mostly closed disputes). Its WHERE is the one the
// open-dispute reads spell (state_store_disputes.cpp): SQLite's planner uses
// a partial index only for a query whose WHERE contains the index's term.
constexpr std::string_view kV20 = R"sql(
CREATE INDEX disputes_open ON disputes (id) WHERE COALESCE(state, '') <> 'CLOSED';
)sql";

constexpr std::array kMigrations = {
    Migration{1, "state store: entities, inbox, history, outbox, publish queue, offsets",
              kStateSchemaV1},
    Migration{2, "history index by entity filled in bulk", kV2},
    Migration{3, "outbox worker: call path, attempts, answers; payment accounts", kV3},
    Migration{4, "downstream commands: command inbox, payment contexts, outbox amounts", kV4},
    Migration{5, "disputes: legacy deadline, amounts, deadline history and warnings", kV5},
    Migration{6, "dead letters: poison keys and times, replays", kV6},
    Migration{7, "webhook intake: dispute accounts, settlement events", kV7},
    Migration{8, "offset gaps, event body digests and conflicts", kV8},
    Migration{9, "command senders and the append-only audit trail", kAuditSchemaV9},
    Migration{10, "settlements fetched, their lines, reconciliation findings", kV10},
    Migration{11,
              "traces: traceparent and times of history, outbox and publications; call attempts",
              kV11},
    Migration{12, "audit trail: the operator of an operator's action", kAuditSchemaV12},
    Migration{13, "command senders in the command's own row", kAuditSchemaV13},
    Migration{14, "inbox narrowed: topic by number, digest prefix", kInboxSchemaV14},
    Migration{16, "lookups by request and by transaction: indexes in id order (PostgreSQL)", kV16},
    Migration{17, "reconciliation findings: unrecognised_line", kV17},
    Migration{19, "CHECK constraints of three or more values as comparisons (no temporary B-tree)",
              kCheckSchemaV19},
    Migration{20, "disputes: a partial index of the open ones", kV20},
};

}  // namespace

std::span<const Migration> state_migrations() {
  return kMigrations;
}

}  // namespace kpay::storage
