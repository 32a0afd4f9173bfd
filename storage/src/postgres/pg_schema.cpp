// The PostgreSQL state schema (pg_schema.hpp). Append migrations; never edit
// one that has shipped.
#include "postgres/pg_schema.hpp"
#include "postgres/pg_schema_v14.hpp"
#include "postgres/pg_schema_v9.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <set>

namespace kpay::storage::pg {

namespace {

// 10: settlements fetched, their lines, reconciliation findings (the tables
// of SQLite's migration 10; their ledger is pg_settlement_ledger.cpp).
constexpr std::string_view kV10 = R"sql(
CREATE TABLE settlements (
  settlement_id           TEXT PRIMARY KEY,
  account_id              TEXT NOT NULL,
  status                  TEXT NOT NULL CHECK (status IN ('fetching', 'fetched', 'reconciled')),
  currency                TEXT,
  payout_amount           BIGINT,
  total_sale_amount       BIGINT,
  total_return_amount     BIGINT,
  total_fee_amount        BIGINT,
  total_chargeback_amount BIGINT,
  total_tax_amount        BIGINT,
  total_settlement_amount BIGINT,
  payment_reference       TEXT,
  payout_date             TEXT,
  period_start            TEXT,
  period_end              TEXT,
  payout_status           TEXT,
  next_page               TEXT,
  lines_booked            BIGINT NOT NULL DEFAULT 0,
  caused_by               TEXT NOT NULL,
  created_at_ms           BIGINT NOT NULL,
  fetched_at_ms           BIGINT,
  reconciled_at_ms        BIGINT
);
CREATE TABLE settlement_lines (
  settlement_id          TEXT NOT NULL,
  line_no                BIGINT NOT NULL,
  type                   TEXT NOT NULL,
  payment_transaction_id TEXT,
  capture_id             TEXT,
  refund_id              TEXT,
  dispute_id             TEXT,
  amount                 BIGINT NOT NULL,
  tax_amount             BIGINT NOT NULL DEFAULT 0,
  currency               TEXT,
  reference              TEXT,
  occurred_at            TEXT,
  PRIMARY KEY (settlement_id, line_no)
);
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
  found_at_ms    BIGINT NOT NULL,
  resolved_at_ms BIGINT
);
CREATE INDEX findings_by_settlement ON reconciliation_findings (settlement_id);
CREATE INDEX findings_by_time ON reconciliation_findings (found_at_ms);
)sql";

// 12: the operator of an operator's action; klarnactl records requeues itself
// (with who did it), so the trigger that could not know goes (SQLite's 12).
constexpr std::string_view kV12 = R"sql(
ALTER TABLE audit_events ADD COLUMN operator TEXT;
DROP TRIGGER audit_outbox_requeued ON outbox;
DROP FUNCTION audit_outbox_requeued();
)sql";

// 13: who sent a command in the command's own row (SQLite's 13): every
// recorded sender moves there, the audit triggers read it from there, and the
// table of its own goes.
constexpr std::string_view kV13 = R"sql(
ALTER TABLE commands ADD COLUMN sender TEXT;
ALTER TABLE commands ADD COLUMN sender_key_id TEXT;
UPDATE commands SET sender = s.sender, sender_key_id = s.key_id
  FROM command_senders AS s WHERE s.command_id = commands.command_id;
CREATE OR REPLACE FUNCTION audit_sender(command TEXT) RETURNS TEXT LANGUAGE sql STABLE AS
  $$ SELECT sender FROM commands WHERE command_id = command $$;
DROP TABLE command_senders;
)sql";

// 11: traces (SQLite's 11): the W3C traceparent of history, outbox and
// publish-queue rows, a history row's times, and every attempt of every
// Klarna call.
constexpr std::string_view kV11 = R"sql(
ALTER TABLE history ADD COLUMN traceparent TEXT;
ALTER TABLE history ADD COLUMN recorded_at_ms BIGINT;
ALTER TABLE history ADD COLUMN received_at TEXT;
ALTER TABLE history ADD COLUMN kafka_timestamp_ms BIGINT;
ALTER TABLE outbox ADD COLUMN traceparent TEXT;
ALTER TABLE publish_queue ADD COLUMN traceparent TEXT;
CREATE TABLE call_attempts (
  outbox_id             BIGINT NOT NULL,
  attempt               BIGINT NOT NULL,
  started_at_ms         BIGINT NOT NULL,
  latency_us            BIGINT NOT NULL,
  outcome               TEXT NOT NULL CHECK (outcome IN ('succeeded', 'retry', 'failed', 'conflict')),
  http_status           BIGINT,
  transport_error       TEXT,
  klarna_error_id       TEXT,
  klarna_error_code     TEXT,
  klarna_correlation_id TEXT,
  summary               TEXT,
  traceparent           TEXT,
  recorded_at_ms        BIGINT NOT NULL,
  PRIMARY KEY (outbox_id, attempt)
);
CREATE INDEX commands_by_entity ON commands (entity_id);
)sql";

// Settlement lines of a type the processor does not know are a finding of
// their own (reconciler.cpp): the findings' kind list is wider.
constexpr std::string_view kV17 = R"sql(
ALTER TABLE reconciliation_findings DROP CONSTRAINT reconciliation_findings_kind_check;
ALTER TABLE reconciliation_findings ADD CONSTRAINT reconciliation_findings_kind_check
  CHECK (kind IN ('missing_in_settlement', 'unexpected_in_settlement', 'amount_mismatch',
                  'duplicate_settlement', 'payout_mismatch', 'currency_mismatch',
                  'unrecognised_line'));
)sql";

// 16: the lookups of a request's transaction and a transaction's request
// (… WHERE payment_request_id = $1 ORDER BY id LIMIT 1) by an index that
// gives both the id and its order. With the one-column index, a prepared
// statement's plan made once for any id from a young table's statistics
// walked the whole primary key in id order (1.3 ms a lookup, 40 % of the
// server's time in a pg_bench run; pg_plans_test.cpp). Same names, same
// number of indexes. SQLite's twin changes nothing (its planner picks the
// index per statement).
constexpr std::string_view kV16 = R"sql(
DROP INDEX payment_transactions_by_request;
CREATE INDEX payment_transactions_by_request ON payment_transactions (payment_request_id, id);
DROP INDEX payment_requests_by_transaction;
CREATE INDEX payment_requests_by_transaction ON payment_requests (payment_transaction_id, id);
)sql";

// 19: SQLite writes its CHECK constraints of three or more values as
// comparisons, which it evaluates without a temporary B-tree per row
// (check_schema.hpp); PostgreSQL evaluates IN lists directly: nothing to
// change, recorded so both backends count alike.
constexpr std::string_view kV19 = "SELECT 1;";

// 20: the open disputes through a partial index (SQLite's twin in
// state_schema.cpp): the deadline watcher's keyset pages (pg_state_disputes.cpp)
// spell the same WHERE, which the planner needs to prove the index applies.
constexpr std::string_view kV20 = R"sql(
CREATE INDEX disputes_open ON disputes (id) WHERE COALESCE(state, '') <> 'CLOSED';
)sql";

// Migration 9 in one piece: the tables, then the audit trail.
const std::string& v9_sql() {
  static const std::string sql = std::string(kPgSchemaV9) + std::string(kPgSchemaV9Audit);
  return sql;
}

std::array<Migration, 10> make_migrations() {
  return {
      Migration{9, "state schema as of SQLite version 9, with leases for N processors", v9_sql()},
      Migration{10, "settlements fetched, their lines, reconciliation findings", kV10},
      Migration{11,
                "traces: traceparent and times of history, outbox and publications; call attempts",
                kV11},
      Migration{12, "audit trail: the operator of an operator's action", kV12},
      Migration{13, "command senders in the command's own row", kV13},
      Migration{14, "inbox narrowed: topic by number, digest prefix (SQLite)", kPgSchemaV14},
      Migration{16, "lookups by request and by transaction: indexes in id order", kV16},
      Migration{17, "reconciliation findings: unrecognised_line", kV17},
      Migration{19, "CHECK constraints of three or more values as comparisons (SQLite)", kV19},
      Migration{20, "disputes: a partial index of the open ones", kV20}};
}

constexpr std::string_view kVersionTable = R"sql(
CREATE TABLE IF NOT EXISTS schema_version (
  schema        TEXT NOT NULL,
  version       INTEGER NOT NULL,
  name          TEXT NOT NULL,
  applied_at_ms BIGINT NOT NULL,
  PRIMARY KEY (schema, version)
))sql";

}  // namespace

std::span<const Migration> state_migrations() {
  static const std::array<Migration, 10> migrations = make_migrations();
  return migrations;
}

int schema_version(Connection& c) {
  Result exists = c.query("SELECT to_regclass('schema_version') IS NOT NULL");
  if (!exists.boolean(0, 0)) return 0;
  Result r = c.query("SELECT COALESCE(MAX(version), 0) FROM schema_version WHERE schema = 'state'");
  return static_cast<int>(r.int64(0, 0));
}

int migrate(Connection& c, std::span<const Migration> migrations) {
  Transaction tx(c);
  c.query("SELECT pg_advisory_xact_lock($1)", params(kMigrationLockKey));
  const int newest = migrations.empty() ? 0 : migrations.back().version;
  const int current = schema_version(c);
  if (current > newest) {
    throw SchemaTooNewError("database schema 'state' is at version " + std::to_string(current) +
                            ", newer than this binary supports (" + std::to_string(newest) +
                            "); upgrade the binary");
  }
  // Every migration not recorded yet, not only those above the newest
  // recorded (11 came after 12 in some databases), as in SQLite.
  std::set<int> applied;
  if (current > 0) {
    Result r = c.query("SELECT version FROM schema_version WHERE schema = 'state'");
    for (int i = 0; i < r.rows(); ++i) applied.insert(static_cast<int>(r.int64(i, 0)));
  }
  const bool all_applied =
      std::all_of(migrations.begin(), migrations.end(),
                  [&](const Migration& m) { return applied.count(m.version); });
  if (all_applied) return current;  // nothing to do: the transaction rolls back
  c.exec(kVersionTable);
  const std::int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
  for (const Migration& m : migrations) {
    if (applied.count(m.version)) continue;
    c.exec(m.sql);
    c.query(
        "INSERT INTO schema_version (schema, version, name, applied_at_ms) "
        "VALUES ('state', $1, $2, $3)",
        params(std::int64_t{m.version}, m.name, now));
  }
  tx.commit();
  return newest;
}

}  // namespace kpay::storage::pg
